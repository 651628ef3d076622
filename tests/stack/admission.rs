//! Admission: what fails a local check is answered at once and never reaches
//! the partner.

use offergate::call::route::Route;

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn refused_requests_never_reach_the_partner() {
    let s = Stack::new();
    let bad_country = encore_body("c1").replace("\"US\"", "\"us\"");
    for (path, headers, body, status, code) in [
        ("/nope", vec![], encore_body("c1"), 404, "not_found"),
        (ENCORE_PATH, vec![], bad_country, 400, "invalid_request"),
        (
            ENCORE_PATH,
            vec![],
            "[]".to_string(),
            400,
            "invalid_request",
        ),
        (
            ENCORE_PATH,
            vec![("idempotency-key", "has space")],
            encore_body("c2"),
            400,
            "invalid_request",
        ),
        (
            "/data/messages/other/upcoming-goals",
            vec![],
            "{}".to_string(),
            404,
            "unknown_partner",
        ),
        (
            ENCORE_PATH,
            vec![],
            "x".repeat(70 * 1024),
            413,
            "payload_too_large",
        ),
    ] {
        let a = s.post(path, &headers, &body).await;
        assert_eq!(
            (a.status.as_u16(), a.code().as_str()),
            (status, code),
            "{path}"
        );
    }
    assert_eq!(
        s.calls(Route::EncoreOffers) + s.calls(Route::BesitosGoals),
        0
    );
    assert_eq!(
        s.sample(r#"offergate_requests_total{outcome="rejected",route="encore_offers"}"#),
        4.0
    );
    assert_eq!(
        s.sample(r#"offergate_unrouted_requests_total{code="not_found"}"#),
        1.0
    );
}

#[tokio::test(start_paused = true)]
async fn an_admitted_call_is_forwarded_once() {
    let s = Stack::new();
    let a = s.post(ENCORE_PATH, &[], &encore_body("c1")).await;
    assert_eq!(a.status, 200);
    assert!(a.json()["offer"]["clickUrl"].is_string());
    assert!(a.headers.get("x-request-id").is_some());
    assert_eq!(s.calls(Route::EncoreOffers), 1);
    let b = s.post(&besitos_path(), &[], "").await;
    assert_eq!(b.status, 200, "Besitos takes an empty body");
    assert_eq!(s.calls(Route::BesitosGoals), 1);
}
