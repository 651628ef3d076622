//! The integrator rules through the whole stack: the eligibility endpoint on
//! offergate's own prefix, with no partner call.

use futures_util::future::join_all;
use offergate::call::route::Route;

use crate::support::*;

const ELIGIBILITY: &str = "/offergate/v1/encore/eligibility";

#[tokio::test(start_paused = true)]
async fn the_eligibility_endpoint_answers_from_the_thread_alone() {
    let s = Stack::new();
    let thread = |messages: serde_json::Value| {
        serde_json::json!({"clientId": "c", "chatId": "t", "messages": messages}).to_string()
    };
    let first = s
        .post(ELIGIBILITY, &[], thread(serde_json::json!([{"direction": "inbound", "text": "hi", "timestamp": "2026-11-23T10:00:00Z"}])))
        .await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.json(),
        serde_json::json!({"eligible": true, "trigger": "first_message", "reason": null, "offers_shown": 0})
    );
    let mid = s
        .post(ELIGIBILITY, &[], thread(serde_json::json!([
            {"direction": "inbound", "text": "hi", "timestamp": "2026-11-23T10:00:00Z"},
            {"direction": "outbound", "text": "Get it: https://link.encorekit.com/a", "timestamp": "2026-11-23T10:00:01Z"},
            {"direction": "inbound", "text": "thanks", "timestamp": "2026-11-23T10:05:00+00:00"},
        ])))
        .await;
    assert_eq!(
        mid.json(),
        serde_json::json!({"eligible": false, "trigger": null, "reason": "mid_thread", "offers_shown": 1})
    );
    let bad = s
        .post(ELIGIBILITY, &[], r#"{"clientId":"c","chatId":"t"}"#)
        .await;
    assert_eq!(
        (bad.status.as_u16(), bad.code().as_str()),
        (400, "invalid_request")
    );
    let get = s
        .send(
            http::Request::get(ELIGIBILITY)
                .header("host", "localhost")
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
        .await;
    assert_eq!(get.status, 405);
    assert_eq!(
        s.calls(Route::EncoreOffers) + s.calls(Route::BesitosGoals),
        0,
        "no partner call"
    );
    assert_eq!(
        s.sample(r#"offergate_eligibility_total{result="eligible"}"#),
        1.0
    );
    assert_eq!(
        s.sample(r#"offergate_eligibility_total{result="mid_thread"}"#),
        1.0
    );
    assert_eq!(
        s.sample(r#"offergate_eligibility_total{result="invalid"}"#),
        2.0
    );
}

fn chat(n: usize) -> String {
    // Other messages of one thread: same clientId and chatId, other text.
    encore_body("thread-1").replace(
        "\"ios\"",
        if n.is_multiple_of(2) {
            "\"ios\""
        } else {
            "\"android\""
        },
    )
}

#[tokio::test(start_paused = true)]
async fn the_per_thread_cap_holds_across_calls_replays_and_concurrency() {
    let s = Stack::with(|c| c.encore.resilience.idempotency.body_key_window = None);
    // A 200 without an offer is not an offer shown.
    s.plan(&[Step::NoOffer]);
    assert!(s.post(ENCORE_PATH, &[], chat(0)).await.json()["offer"].is_null());
    for n in 1..=3 {
        let a = s
            .post(
                ENCORE_PATH,
                &[("idempotency-key", &format!("m{n}"))],
                chat(n),
            )
            .await;
        assert!(a.json()["offer"]["clickUrl"].is_string(), "offer {n}");
    }
    // A replay of an offer already shown does not count again.
    assert!(s
        .post(ENCORE_PATH, &[("idempotency-key", "m3")], chat(3))
        .await
        .replayed());
    let capped = s.post(ENCORE_PATH, &[], chat(4)).await;
    assert_eq!(capped.status, 200);
    assert_eq!(capped.body, NO_OFFER.as_bytes());
    assert_eq!(
        capped.headers.get("x-offergate-skipped").unwrap(),
        "thread_cap"
    );
    assert_eq!(
        s.calls(Route::EncoreOffers),
        4,
        "the capped call reached no partner"
    );
    assert_eq!(
        s.sample(r#"offergate_skipped_total{reason="thread_cap",route="encore_offers"}"#),
        1.0
    );
    // Another thread is not affected.
    assert!(s
        .post(ENCORE_PATH, &[], encore_body("thread-2"))
        .await
        .json()["offer"]
        .is_object());

    // 20 at once for one new chat: never more than the cap.
    let s = Stack::with(|c| c.encore.resilience.idempotency.enabled = false);
    s.plan(&[Step::Slow(ms(200)); 20]);
    let bodies: Vec<String> = (0..20).map(|_| encore_body("busy-thread")).collect();
    let answers = join_all(bodies.iter().map(|b| s.post(ENCORE_PATH, &[], b))).await;
    let offers = answers
        .iter()
        .filter(|a| a.json()["offer"].is_object())
        .count();
    assert_eq!(offers, 3);
    assert_eq!(s.calls(Route::EncoreOffers), 3);
}

#[tokio::test(start_paused = true)]
async fn a_thread_cap_of_zero_turns_it_off_and_the_window_frees_slots() {
    let s = Stack::with(|c| {
        c.encore.resilience.idempotency.enabled = false;
        c.encore.integrator.thread_window = ms(60_000);
    });
    for _ in 0..3 {
        s.post(ENCORE_PATH, &[], encore_body("t")).await;
    }
    assert!(s
        .post(ENCORE_PATH, &[], encore_body("t"))
        .await
        .headers
        .contains_key("x-offergate-skipped"));
    tokio::time::advance(ms(60_000)).await;
    assert!(
        s.post(ENCORE_PATH, &[], encore_body("t")).await.json()["offer"].is_object(),
        "the window passed"
    );

    let s = Stack::with(|c| {
        c.encore.resilience.idempotency.enabled = false;
        c.encore.integrator.thread_cap = 0;
    });
    for _ in 0..5 {
        assert!(s.post(ENCORE_PATH, &[], encore_body("t")).await.json()["offer"].is_object());
    }
}

#[tokio::test(start_paused = true)]
async fn a_composed_message_on_request_with_the_link_verbatim() {
    let s = Stack::new();
    let body = encore_body("composed").replace("\"en\"", "\"es-MX\"");
    let plain = s.post(ENCORE_PATH, &[], encore_body("plain")).await;
    assert!(plain.json().get("composed").is_none(), "only when asked");
    let a = s
        .post(ENCORE_PATH, &[("x-offergate-compose", "true")], &body)
        .await;
    let v = a.json();
    let url = v["offer"]["clickUrl"].as_str().unwrap();
    let text = v["composed"]["text"].as_str().unwrap();
    assert!(text.contains(url), "{text}");
    assert!(
        text.ends_with("Desbloqueado por nuestro socio EncoreKit"),
        "{text}"
    );
    assert_eq!(v["composed"]["language"], "es");
    // The composition rides on replays too, and never on a no-offer answer.
    let again = s
        .post(ENCORE_PATH, &[("x-offergate-compose", "true")], &body)
        .await;
    assert!(again.replayed() && again.json()["composed"]["text"] == text);
    s.plan(&[Step::NoOffer]);
    let none = s
        .post(
            ENCORE_PATH,
            &[("x-offergate-compose", "true")],
            encore_body("no-offer"),
        )
        .await;
    assert_eq!(none.body, NO_OFFER.as_bytes());
}
