//! Fallback, retries, the deadline, the retry budget and the circuit, on the
//! paused clock: backoffs, `Retry-After` waits and cooldowns take no real time
//! and every duration read is exact.

use offergate::call::clock;
use offergate::call::route::Route;

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn failures_fall_back_and_pass_through_when_fallback_is_off() {
    let s = Stack::new();
    s.plan(&[Step::Status(500)]);
    assert_no_offer(
        &s.post(ENCORE_PATH, &[], &encore_body("c1")).await,
        "upstream_status_500",
    );
    assert_eq!(s.calls(Route::EncoreOffers), 1, "a 500 is not retried");

    let s = Stack::with(|c| {
        c.encore.resilience.soft_fallback = false;
        c.encore.resilience.circuit.failure_threshold = 100;
    });
    s.plan(&[Step::Status(500)]);
    s.plan(&[Step::Unreachable; 4]);
    let a = s.post(ENCORE_PATH, &[], &encore_body("c1")).await;
    assert_eq!(
        (a.status.as_u16(), a.body.as_ref()),
        (500, &b"{\"success\":false}"[..])
    );
    let b = s.post(ENCORE_PATH, &[], &encore_body("c2")).await;
    assert_eq!(
        (b.status.as_u16(), b.code().as_str()),
        (502, "upstream_unreachable")
    );
}

#[tokio::test(start_paused = true)]
async fn retryable_failures_are_retried_with_backoff_then_answered() {
    let s = Stack::new();
    s.plan(&[Step::Status(503), Step::Unreachable]);
    let started = clock::now();
    let a = s.post(ENCORE_PATH, &[], &encore_body("c1")).await;
    assert_eq!((a.status.as_u16(), a.fallback()), (200, None));
    assert_eq!(s.calls(Route::EncoreOffers), 3);
    // Full jitter: two waits, under 200 ms and 1 s.
    assert!(
        clock::now() - started <= ms(1_200),
        "{:?}",
        clock::now() - started
    );
    assert_eq!(
        s.sample(r#"offergate_retries_total{reason="upstream_status_503",route="encore_offers"}"#),
        1.0
    );
}

#[tokio::test(start_paused = true)]
async fn a_429_retry_after_is_waited_out_and_pauses_the_partner() {
    let s = Stack::new();
    s.plan(&[Step::TooMany(1)]);
    let started = clock::now();
    let first = s.post(ENCORE_PATH, &[], &encore_body("c1"));
    let during = async {
        tokio::time::sleep(ms(300)).await;
        let t = clock::now();
        let b = s.post(ENCORE_PATH, &[], &encore_body("c2")).await;
        (b, clock::now() - t)
    };
    let (a, (b, b_took)) = tokio::join!(first, during);
    assert!(a.json()["offer"].is_object(), "answered after the wait");
    let took = clock::now() - started;
    assert!(took >= ms(1_000) && took <= ms(1_100), "waited {took:?}");
    // While the Retry-After runs, other calls fall back at once, unsent.
    assert_no_offer(&b, "circuit_open");
    assert_eq!(b_took, ms(0));
    assert_eq!(s.calls(Route::EncoreOffers), 2);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_past_the_deadline_falls_back_at_once() {
    let s = Stack::new();
    s.plan(&[Step::TooMany(3)]);
    let started = clock::now();
    assert_no_offer(
        &s.post(ENCORE_PATH, &[], &encore_body("c1")).await,
        "upstream_status_429",
    );
    assert_eq!(clock::now() - started, ms(0));
    assert_eq!(s.calls(Route::EncoreOffers), 1);
}

#[tokio::test(start_paused = true)]
async fn a_call_never_takes_longer_than_its_deadline() {
    let s = Stack::with(|c| {
        let r = &mut c.encore.resilience;
        r.deadline = ms(800);
        r.circuit.failure_threshold = 100;
    });
    s.plan(&[Step::Status(503); 30]);
    for chat in ["c1", "c2", "c3"] {
        let started = clock::now();
        assert_no_offer(
            &s.post(ENCORE_PATH, &[], &encore_body(chat)).await,
            "upstream_status_503",
        );
        assert!(
            clock::now() - started <= ms(800),
            "{:?}",
            clock::now() - started
        );
    }
    // A partner that never answers is cut at the deadline exactly.
    let s = Stack::with(|c| c.encore.resilience.deadline = ms(800));
    s.plan(&[Step::Hang]);
    let started = clock::now();
    let hung = s.post(ENCORE_PATH, &[], &encore_body("c4")).await;
    assert_no_offer(&hung, "deadline_exceeded");
    assert_eq!(
        clock::now() - started,
        ms(800),
        "cut at the deadline exactly"
    );
}

#[tokio::test(start_paused = true)]
async fn the_circuit_opens_stops_calls_and_closes_when_the_partner_recovers() {
    let s = Stack::with(|c| {
        c.encore.resilience.circuit.failure_threshold = 3;
        c.encore.resilience.circuit.cooldown = ms(300);
    });
    s.plan(&[Step::Status(500); 4]);
    for chat in ["a", "b", "c"] {
        assert_no_offer(
            &s.post(ENCORE_PATH, &[], &encore_body(chat)).await,
            "upstream_status_500",
        );
    }
    assert_eq!(
        s.sample(r#"offergate_circuit_open{route="encore_offers"}"#),
        1.0
    );
    assert_eq!(
        s.sample(r#"offergate_circuit_open{route="besitos_goals"}"#),
        0.0
    );
    for n in 0..20 {
        let a = s
            .post(ENCORE_PATH, &[], &encore_body(&format!("open-{n}")))
            .await;
        assert_no_offer(&a, "circuit_open");
    }
    assert_eq!(
        s.calls(Route::EncoreOffers),
        3,
        "nothing reaches the partner while open"
    );

    // After the cooldown one probe goes; the partner still fails: open again.
    tokio::time::advance(ms(300)).await;
    assert_no_offer(
        &s.post(ENCORE_PATH, &[], &encore_body("p1")).await,
        "upstream_status_500",
    );
    assert_no_offer(
        &s.post(ENCORE_PATH, &[], &encore_body("p2")).await,
        "circuit_open",
    );
    assert_eq!(s.calls(Route::EncoreOffers), 4);

    // Recovered: the next probe closes it and traffic flows.
    tokio::time::advance(ms(300)).await;
    for chat in ["r1", "r2", "r3"] {
        let a = s.post(ENCORE_PATH, &[], &encore_body(chat)).await;
        assert_eq!((a.status.as_u16(), a.fallback()), (200, None));
    }
    assert_eq!(s.calls(Route::EncoreOffers), 7);
    assert_eq!(
        s.sample(r#"offergate_circuit_open{route="encore_offers"}"#),
        0.0
    );
    assert_eq!(
        s.sample(r#"offergate_fallbacks_total{reason="circuit_open",route="encore_offers"}"#),
        21.0
    );
}

#[tokio::test(start_paused = true)]
async fn with_the_budget_spent_failures_fall_back_without_retrying() {
    let s = Stack::with(|c| {
        let r = &mut c.encore.resilience;
        r.retry.budget_percent = 0.0;
        r.retry.budget_min_per_second = 1;
        r.retry.budget_window = ms(1_000);
        r.circuit.failure_threshold = 100;
    });
    s.plan(&[Step::Status(503); 10]);
    let mut reasons = Vec::new();
    for chat in ["a", "b", "c"] {
        let a = s.post(ENCORE_PATH, &[], &encore_body(chat)).await;
        reasons.push(a.fallback().unwrap().to_string());
    }
    assert!(
        reasons.contains(&"retry_budget_exhausted".to_string()),
        "{reasons:?}"
    );
    assert!(s.calls(Route::EncoreOffers) < 6, "retries were refused");
}
