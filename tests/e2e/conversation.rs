//! The conversation endpoint through the real binary with the shipped
//! configuration: a thread survives a restart (the thread file), every new
//! route has its own `route` label, and the eligibility endpoint takes a
//! thread longer than the proxy's body limit.

use std::time::Duration;

use serde_json::json;

use crate::fleet::{signal, Fleet};
use crate::support::{exit_of, sample, send_with};

const MESSAGES: &str = "/offergate/v1/encore/messages";

fn message(id: &str, at: i64) -> serde_json::Value {
    json!({
        "clientId": "client-42", "chatId": "wa:15550001111:15551234567",
        "messageId": id, "sentAt": at / 1000, "text": "hi",
        "attributes": {"countryCode": "US", "language": "en", "platform": "ios"},
    })
}

async fn metrics_of(f: &Fleet) -> String {
    let req = http::Request::get(format!("http://{}/metrics", f.admin))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    String::from_utf8_lossy(&send_with(&f.client, req).await.body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_the_default_configuration_keeps_the_thread() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("threads.redb");
    let env = [("OFFERGATE_STATE__THREAD_FILE", file.to_str().unwrap())];
    let now = offergate::call::clock::wall_ms();

    let mut f = Fleet::start(&env, None).await;
    // WhatsApp's Unix seconds, as its webhook sends them.
    let first = f
        .post(MESSAGES, &message("wamid.1", now - 120_000))
        .await
        .json();
    assert_eq!(
        (first["decision"].as_str(), first["trigger"].as_str()),
        (Some("offer"), Some("first_message"))
    );
    assert!(first["composed"]["text"]
        .as_str()
        .unwrap()
        .contains(first["offer"]["clickUrl"].as_str().unwrap()));
    let metrics = metrics_of(&f).await;
    assert_eq!(
        sample(
            &metrics,
            r#"offergate_requests_total{outcome="forwarded",route="encore_messages"}"#
        ),
        1.0
    );
    signal(&f.gw.0, "TERM");
    assert!(exit_of(&mut f.gw.0, Duration::from_secs(10)).success());
    assert!(file.exists(), "the thread file was written");
    let calls = f.partner_calls().await;
    drop(f);

    // A new process on the same file: the next message is mid-thread, not a
    // first message, and the offer shown before still counts.
    let f = Fleet::start(&env, None).await;
    let next = f
        .post(MESSAGES, &message("wamid.2", now - 60_000))
        .await
        .json();
    assert_eq!(
        (
            next["decision"].as_str(),
            next["reason"].as_str(),
            next["offers_shown"].as_u64()
        ),
        (Some("skip"), Some("mid_thread"), Some(1))
    );
    // The first message again (its answer was in the old process's memory):
    // recognised, it changes nothing and gets no second offer.
    let again = f
        .post(MESSAGES, &message("wamid.1", now - 120_000))
        .await
        .json();
    assert_eq!(
        (again["decision"].as_str(), again["offers_shown"].as_u64()),
        (Some("skip"), Some(1))
    );
    assert_eq!(f.partner_calls().await, 0, "the new simulator saw no call");
    assert!(calls >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eligibility_endpoint_takes_a_long_thread_and_is_a_route_of_its_own() {
    let f = Fleet::start(&[], None).await;
    // 300 messages of 200 characters: past the proxy's 64 KiB body limit,
    // within the eligibility endpoint's own.
    let base = offergate::call::clock::wall_ms() - 300 * 60_000;
    let messages: Vec<_> = (0..300)
        .map(|n| {
            let direction = if n % 2 == 0 || n == 299 {
                "inbound"
            } else {
                "outbound"
            };
            json!({"direction": direction, "text": "x".repeat(200), "timestamp": base + n * 60_000})
        })
        .collect();
    let body = json!({"clientId": "c", "chatId": "long", "messages": messages});
    assert!(body.to_string().len() > 64 * 1024);
    let answer = f.post("/offergate/v1/encore/eligibility", &body).await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.json()["reason"], "mid_thread");
    let opt = f
        .post(
            "/offergate/v1/encore/opt-out",
            &json!({"clientId": "c", "chatId": "long"}),
        )
        .await;
    assert_eq!(opt.json(), json!({"opted_out": true}));
    let metrics = metrics_of(&f).await;
    for series in [
        r#"offergate_requests_total{outcome="answered",route="encore_eligibility"}"#,
        r#"offergate_requests_total{outcome="answered",route="encore_opt_out"}"#,
    ] {
        assert_eq!(sample(&metrics, series), 1.0, "{series}");
    }
    assert!(metrics
        .contains(r#"offergate_request_duration_seconds_count{route="encore_eligibility"} 1"#));
}

/// An opt-out lasts until the opt-in, as the shipped configuration runs:
/// one sent before the thread has any message (a platform back-filling its
/// list), the default keywords however they are written, on the offers
/// route as on the messages endpoint, across a restart on the same file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opt_out_lasts_until_the_opt_in_across_a_restart_and_on_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("threads.redb");
    let env = [("OFFERGATE_STATE__THREAD_FILE", file.to_str().unwrap())];
    let now = offergate::call::clock::wall_ms();
    let on = |chat: &str, id: &str, text: &str, at: i64| {
        let mut m = message(id, at);
        m["chatId"] = json!(chat);
        m["text"] = json!(text);
        m
    };
    let offer_body = |chat: &str| {
        json!({"clientId": "client-42", "chatId": chat,
               "attributes": {"countryCode": "US", "language": "en", "platform": "ios"}})
    };

    let mut f = Fleet::start(&env, None).await;
    // Back-filled: no message yet on this thread.
    let out = f
        .post(
            "/offergate/v1/encore/opt-out",
            &json!({"clientId": "client-42", "chatId": "listed"}),
        )
        .await;
    assert_eq!(out.json(), json!({"opted_out": true}));
    // A default keyword, written in full-width letters with a zero-width
    // space: the thread opts out.
    let stop = f
        .post(
            MESSAGES,
            &on("typed", "wamid.s1", "ＳＴ\u{200B}ＯＰ", now - 60_000),
        )
        .await
        .json();
    assert_eq!(
        (stop["decision"].as_str(), stop["reason"].as_str()),
        (Some("skip"), Some("opted_out"))
    );
    // The offers route refuses both threads, without calling Encore.
    for chat in ["listed", "typed"] {
        let answer = f
            .post("/encore/publisher/sdk/v1/offers/message", &offer_body(chat))
            .await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json()["offer"], serde_json::Value::Null);
        assert_eq!(answer.headers["x-offergate-skipped"], "opted_out");
    }
    assert_eq!(f.partner_calls().await, 0);
    signal(&f.gw.0, "TERM");
    assert!(exit_of(&mut f.gw.0, Duration::from_secs(10)).success());
    drop(f);

    // The next process on the same file: both still opted out, 13 h later,
    // on a first message too; an opt-in gives offers again.
    let f = Fleet::start(&env, None).await;
    for (chat, id) in [("listed", "wamid.l1"), ("typed", "wamid.s2")] {
        let v = f.post(MESSAGES, &on(chat, id, "hi", now)).await.json();
        assert_eq!(
            (v["decision"].as_str(), v["reason"].as_str()),
            (Some("skip"), Some("opted_out")),
            "{chat}"
        );
    }
    let back = f
        .post(
            "/offergate/v1/encore/opt-in",
            &json!({"clientId": "client-42", "chatId": "listed"}),
        )
        .await;
    assert_eq!(back.json(), json!({"opted_out": false}));
    let answer = f
        .post(
            "/encore/publisher/sdk/v1/offers/message",
            &offer_body("listed"),
        )
        .await;
    assert!(answer.json()["offer"]["clickUrl"].is_string());
    assert_eq!(f.partner_calls().await, 1);
}

/// What Encore receives as `chatId` from the shipped configuration: never
/// the caller's (here a WhatsApp phone number), but its keyed pseudonym, the
/// same from the offers route and the conversation endpoint and from every
/// replica with the same key; `chat_id = "as_sent"` sends the caller's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encore_never_receives_an_end_users_phone_number() {
    let phone_chat = "106540352242922:14155551234";
    let last_chat_id = |f: &Fleet| {
        let req = http::Request::get(format!(
            "http://{}/__sim/last?route=encore_offers",
            f.sim_addr
        ))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
        let client = f.client.clone();
        async move {
            let last = send_with(&client, req).await.json();
            let body: serde_json::Value =
                serde_json::from_str(last["body"].as_str().unwrap()).unwrap();
            body["chatId"].as_str().unwrap().to_string()
        }
    };
    let a = Fleet::start(&[], None).await;
    let b = Fleet::start(&[], None).await;
    let offer = json!({"clientId": "client-42", "chatId": phone_chat,
        "attributes": {"countryCode": "US", "language": "en", "platform": "ios"}});
    assert_eq!(
        a.post("/encore/publisher/sdk/v1/offers/message", &offer)
            .await
            .status,
        200
    );
    let mut m = message("wamid.p1", offergate::call::clock::wall_ms());
    m["chatId"] = json!(phone_chat);
    assert_eq!(b.post(MESSAGES, &m).await.json()["decision"], "offer");
    let (from_a, from_b) = (last_chat_id(&a).await, last_chat_id(&b).await);
    assert!(
        from_a.starts_with("og_") && !from_a.contains("1415555"),
        "{from_a}"
    );
    assert_eq!(
        from_a, from_b,
        "one thread is one id at Encore, on every replica"
    );
    drop((a, b));

    let raw = Fleet::start(&[("OFFERGATE_ENCORE__CHAT_ID", "as_sent")], None).await;
    raw.post("/encore/publisher/sdk/v1/offers/message", &offer)
        .await;
    assert_eq!(last_chat_id(&raw).await, phone_chat);
}

/// A conversation message's Encore call is the messages route's, wherever
/// it shows: its fallback and its replays are counted under
/// `encore_messages` (never as an offers call), and its access line carries
/// the tries and the partner's status, under the field names the README
/// lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_messages_encore_call_is_counted_and_logged_under_its_own_route() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("offergate.log");
    let f = Fleet::start(
        &[("OFFERGATE_LOG__FORMAT", "json")],
        Some(std::fs::File::create(&log_path).unwrap()),
    )
    .await;
    let now = offergate::call::clock::wall_ms();
    let offered = f.post(MESSAGES, &message("wamid.r1", now)).await;
    assert_eq!(offered.json()["decision"], "offer");
    let again = f.post(MESSAGES, &message("wamid.r1", now)).await;
    assert!(again.replayed());
    // Encore fails every try of the next first message: the fallback's.
    let plan = json!({"route": "encore_offers", "plan": ["503", "503", "503", "503"]});
    let req = http::Request::post(format!("http://{}/__sim/faults", f.sim_addr))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            plan.to_string(),
        )))
        .unwrap();
    assert_eq!(send_with(&f.client, req).await.status, 200);
    let mut other = message("wamid.r2", now);
    other["chatId"] = json!("another-thread");
    let failed = f.post(MESSAGES, &other).await.json();
    assert_eq!(failed["reason"], "upstream_status_503", "{failed}");

    let metrics = metrics_of(&f).await;
    let count = |series: &str| sample(&metrics, series);
    assert_eq!(
        count(r#"offergate_fallbacks_total{reason="upstream_status_503",route="encore_messages"}"#),
        1.0
    );
    assert_eq!(
        count(r#"offergate_fallbacks_total{reason="upstream_status_503",route="encore_offers"}"#),
        0.0,
        "not an offers call"
    );
    assert_eq!(
        count(r#"offergate_idempotency_total{result="hit",route="encore_messages"}"#),
        1.0
    );
    assert!(
        count(r#"offergate_retries_total{reason="upstream_status_503",route="encore_messages"}"#)
            >= 1.0
    );
    assert_eq!(
        count(r#"offergate_requests_total{outcome="forwarded",route="encore_offers"}"#),
        0.0
    );

    signal(&f.gw.0, "TERM");
    let mut f = f;
    assert!(exit_of(&mut f.gw.0, Duration::from_secs(10)).success());
    let text = std::fs::read_to_string(&log_path).unwrap();
    let access: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.contains("offergate::access"))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|a| a["route"] == "encore_messages")
        .collect();
    assert_eq!(access.len(), 3, "{access:?}");
    assert_eq!(
        (
            access[0]["tries"].as_u64(),
            access[0]["partner_status"].as_u64()
        ),
        (Some(1), Some(200))
    );
    assert_eq!(
        access[1]["tries"], 0,
        "a replay calls nobody: {}",
        access[1]
    );
    assert!(access[2]["tries"].as_u64().unwrap() >= 2, "{}", access[2]);
    assert_eq!(access[2]["partner_status"], 503);
    // The operating guide's field list is the log's.
    let readme =
        std::fs::read_to_string(format!("{}/docs/operating.md", env!("CARGO_MANIFEST_DIR")))
            .unwrap();
    let para = readme
        .split("One access line per call (`offergate::access`), with these fields:")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("docs/operating.md lists the access line's fields");
    let listed: std::collections::BTreeSet<&str> = para
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect();
    let logged: std::collections::BTreeSet<&str> = access[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .filter(|k| !["message", "level", "target", "timestamp"].contains(k))
        .collect();
    assert_eq!(
        listed, logged,
        "docs/operating.md's access-line fields against the log's"
    );
}

/// The eligibility endpoint counts the offer links a messaging client makes
/// tappable, however the thread wrote them, and nothing that only looks
/// like one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eligibility_endpoint_counts_offer_links_as_a_client_taps_them() {
    let f = Fleet::start(&[], None).await;
    let base = offergate::call::clock::wall_ms() - 3_600_000;
    let counted = [
        "Tap https://me@link.encorekit.com/a!",
        "(//link.encorekit.com/b)",
        "https://link%2Eencorekit%2Ecom/c",
        "ｌｉｎｋ．ｅｎｃｏｒｅｋｉｔ．ｃｏｍ/d",
        "link\u{3002}encorekit\u{3002}com/e",
        "https://link.encorekit.com:/f",
        "<a href=https://link.encorekit.com/g>claim</a>",
        "Wait...link.encorekit.com/h.",
        "https://link.encore\u{ad}kit.com/i link.\u{200b}encorekit.com/j",
        // The same offer again is not another.
        "again: https://LINK.encorekit.com/a/?utm=x",
    ];
    let look_alikes = [
        "https://link.encorekit.com@evil.example/x",
        "https://link.encorekit.com%40evil.example/x",
        "me@link.encorekit.com/x",
        "https://evil.example/?u=link.encorekit.com/x",
        "link.encorekit.com.evil.example/x",
        "xlink.encorekit.com/x",
        "https://link.encorekit.com:65536/x",
    ];
    let mut messages: Vec<_> = counted
        .iter()
        .chain(&look_alikes)
        .enumerate()
        .map(|(n, text)| json!({"direction": "outbound", "text": text, "timestamp": base + n as i64 * 1000}))
        .collect();
    messages.push(json!({"direction": "inbound", "text": "hi", "timestamp": base + 60_000}));
    let body = json!({"clientId": "c", "chatId": "links", "messages": messages});
    let answer = f.post("/offergate/v1/encore/eligibility", &body).await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.json()["offers_shown"], 10, "{}", answer.json());

    // A message of 30,000 distinct links (about 1 MiB) is counted whole.
    let many: String = (0..30_000)
        .map(|i| format!("link.encorekit.com/o{i} "))
        .collect();
    let body = json!({"clientId": "c", "chatId": "many-links", "messages": [
        {"direction": "outbound", "text": many, "timestamp": base},
        {"direction": "inbound", "text": "hi", "timestamp": base + 60_000},
    ]});
    let answer = f.post("/offergate/v1/encore/eligibility", &body).await;
    assert_eq!(answer.json()["offers_shown"], 30_000, "{}", answer.json());
}
