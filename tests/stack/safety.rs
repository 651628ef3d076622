//! The edge's promises: a panic anywhere below becomes a 500 answer in the
//! error shape, never a dropped connection; past `server.max_in_flight` calls
//! are shed at once with 503 and `Retry-After`.

use futures_util::future::join_all;
use offergate::call::route::Route;

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn a_panic_becomes_a_500_answer_and_is_counted() {
    // Idempotency off: the panic unwinds through the layers to the edge.
    let s = Stack::with(|c| c.encore.resilience.idempotency.enabled = false);
    s.plan(&[Step::Panic]);
    let a = s.post(ENCORE_PATH, &[], &encore_body("c1")).await;
    assert_eq!(
        (a.status.as_u16(), a.code().as_str()),
        (500, "internal_error")
    );
    assert_eq!(a.json()["success"], false);
    assert!(a.headers.get("x-request-id").is_some());
    assert_eq!(s.sample("offergate_panics_total"), 1.0);
    assert_eq!(
        s.sample(r#"offergate_requests_total{outcome="failed",route="encore_offers"}"#),
        1.0,
        "counted under its route"
    );
    // The stack still serves.
    assert_eq!(
        s.post(ENCORE_PATH, &[], &encore_body("c2")).await.status,
        200
    );

    // Idempotency on: the call runs as its own task, which catches it.
    let s = Stack::new();
    s.plan(&[Step::Panic]);
    let a = s.post(ENCORE_PATH, &[], &encore_body("c1")).await;
    assert_eq!(
        (a.status.as_u16(), a.code().as_str()),
        (500, "internal_error")
    );
    assert_eq!(s.sample("offergate_panics_total"), 1.0);
    let retry = s.post(ENCORE_PATH, &[], &encore_body("c1")).await;
    assert!(
        !retry.replayed() && retry.status == 200,
        "nothing was stored"
    );
}

#[tokio::test(start_paused = true)]
async fn past_max_in_flight_calls_are_shed_at_once() {
    let s = Stack::with(|c| c.server.max_in_flight = 2);
    s.plan(&[Step::Slow(ms(1_000)), Step::Slow(ms(1_000))]);
    let calls = (0..3).map(|n| s.post(ENCORE_PATH, &[], encore_body(&format!("c{n}"))));
    let answers = join_all(calls).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status.as_u16()).collect();
    assert_eq!(statuses, [200, 200, 503]);
    let shed = &answers[2];
    assert_eq!(shed.code(), "overloaded");
    assert_eq!(shed.headers.get("retry-after").unwrap(), "1");
    assert_eq!(
        s.calls(Route::EncoreOffers),
        2,
        "the shed call was not forwarded"
    );
    assert_eq!(
        s.sample(r#"offergate_shed_total{reason="max_in_flight"}"#),
        1.0
    );
    // Once the two are done, calls are taken again.
    assert_eq!(
        s.post(ENCORE_PATH, &[], &encore_body("c9")).await.status,
        200
    );
}
