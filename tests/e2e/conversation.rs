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
