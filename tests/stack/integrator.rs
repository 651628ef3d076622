//! The integrator rules through the whole stack: the eligibility endpoint on
//! offergate's own prefix, with no partner call.

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
                .header("host", "x")
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
