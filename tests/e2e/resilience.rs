//! Retries, deadlines, the retry budget, the circuit breaker and the soft
//! fallback, row by row of the error table (`call/meaning.rs`), against the
//! simulator's scripted faults. Every test checks what reached the partner.

use std::time::{Duration, Instant};

use offergate::call::route::Route;

use crate::support::*;

const NO_OFFER: &str = r#"{"success":true,"offer":null}"#;

/// Asserts a soft fallback for Encore with `reason`.
fn assert_no_offer(a: &Answer, reason: &str) {
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body, NO_OFFER.as_bytes(), "a body callers already parse");
    assert_eq!(a.fallback(), Some(reason));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_503s_then_the_offer_after_exactly_three_calls() {
    let h = Harness::with_config(|o| tuned(o, |_| {})).await;
    plan(&h, Route::EncoreOffers, &["503", "503", "ok"]);
    let a = h.post(ENCORE_PATH, &[], &encore_body()).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.fallback(), None);
    assert!(a.json()["offer"]["clickUrl"].is_string());
    assert_eq!(h.calls(Route::EncoreOffers), 3);
    let m = h.metrics().await;
    assert_sample(
        &m,
        r#"offergate_retries_total{reason="upstream_status_503",route="encore_offers"}"#,
        2.0,
    );
    assert_sample(&m, r#"offergate_offers_total{result="offer"}"#, 1.0);
    assert_sample(
        &m,
        r#"offergate_requests_total{outcome="forwarded",route="encore_offers"}"#,
        1.0,
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_passes_through_after_one_call() {
    let h = Harness::with_config(|o| tuned(o, |_| {})).await;
    plan(&h, Route::EncoreOffers, &["400"]);
    let a = h.post(ENCORE_PATH, &[], &encore_body()).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["error"]["code"], "simulated", "the partner's body");
    assert_eq!(a.fallback(), None);
    assert_eq!(h.calls(Route::EncoreOffers), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_statuses_fall_back_after_one_call() {
    let h =
        Harness::with_config(|o| tuned(o, |c| c.encore.resilience.circuit.failure_threshold = 100))
            .await;
    for (n, code) in ["500", "502", "504", "401", "403", "409", "404"]
        .into_iter()
        .enumerate()
    {
        plan(&h, Route::EncoreOffers, &[code]);
        let a = h.post(ENCORE_PATH, &[], &encore_body()).await;
        assert_no_offer(&a, &format!("upstream_status_{code}"));
        assert_eq!(
            h.calls(Route::EncoreOffers),
            n as u64 + 1,
            "{code} is not retried"
        );
    }
    let m = h.metrics().await;
    assert_sample(
        &m,
        r#"offergate_fallbacks_total{reason="upstream_status_500",route="encore_offers"}"#,
        1.0,
    );
    assert_sample(
        &m,
        r#"offergate_requests_total{outcome="fallback",route="encore_offers"}"#,
        7.0,
    );
    assert_sample(
        &m,
        r#"offergate_retries_total{reason="upstream_status_500",route="encore_offers"}"#,
        0.0,
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_encore_is_not_retried_and_falls_back_in_time() {
    let h = Harness::with_config(|o| tuned(o, |_| {})).await;
    plan(&h, Route::EncoreOffers, &["hang"]);
    let started = Instant::now();
    let a = h.post(ENCORE_PATH, &[], &encore_body()).await;
    let took = started.elapsed();
    assert_no_offer(&a, "upstream_timeout");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(600),
        "{took:?}"
    );
    assert_eq!(
        h.calls(Route::EncoreOffers),
        1,
        "a try that may have minted a link is not repeated"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_besitos_is_retried_and_never_outlives_the_deadline() {
    let h = Harness::with_config(|o| {
        tuned(o, |c| c.besitos.resilience.circuit.failure_threshold = 100)
    })
    .await;
    plan(&h, Route::BesitosGoals, &["hang", "hang", "hang", "hang"]);
    let started = Instant::now();
    let a = h
        .post(&format!("{}?page=2", besitos_path(PARTNER)), &[], "{}")
        .await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1_000 + 150),
        "deadline 1 s, took {took:?}"
    );
    assert_eq!(a.status, 200);
    let reason = a.fallback().unwrap();
    assert!(
        reason == "upstream_timeout" || reason == "deadline_exceeded",
        "{reason}"
    );
    let page = a.json();
    assert_eq!(page["data"], serde_json::json!([]));
    assert_eq!(page["current_page"], 2);
    assert_eq!(
        page["path"],
        format!("http://{}{}", h.gw.proxy_addr, besitos_path(PARTNER))
    );
    for field in [
        "first_page_url",
        "from",
        "next_page_url",
        "per_page",
        "prev_page_url",
        "to",
    ] {
        assert!(
            page.get(field).is_some(),
            "{field} present in the empty page"
        );
    }
    assert!(
        h.calls(Route::BesitosGoals) >= 2,
        "Besitos is a read: the timeout is retried"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_retried_then_falls_back() {
    let closed = closed_addr();
    let h = Harness::with_config(|_| {
        tuned(&format!("http://{closed}"), |c| {
            c.encore.resilience.circuit.failure_threshold = 100
        })
    })
    .await;
    let a = h.post(ENCORE_PATH, &[], &encore_body()).await;
    assert_no_offer(&a, "upstream_unreachable");
    let m = h.metrics().await;
    assert_sample(
        &m,
        r#"offergate_retries_total{reason="upstream_unreachable",route="encore_offers"}"#,
        3.0,
    );
    assert_sample(
        &m,
        r#"offergate_upstream_requests_total{route="encore_offers",status="error"}"#,
        4.0,
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_after_sending_is_retried_for_besitos_only() {
    let h = Harness::with_config(|o| tuned(o, |_| {})).await;
    plan(&h, Route::EncoreOffers, &["reset", "ok"]);
    plan(&h, Route::BesitosGoals, &["reset", "ok"]);
    let a = h.post(ENCORE_PATH, &[], &encore_body()).await;
    assert_no_offer(&a, "upstream_unreachable");
    assert_eq!(h.calls(Route::EncoreOffers), 1);
    let b = h.post(&besitos_path(PARTNER), &[], "{}").await;
    assert_eq!(b.status, 200);
    assert_eq!(b.fallback(), None);
    assert_eq!(b.json()["data"].as_array().unwrap().len(), 5);
    assert_eq!(h.calls(Route::BesitosGoals), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_slow_answers() {
    let h = Harness::with_config(|o| tuned(o, |_| {})).await;
    plan(&h, Route::EncoreOffers, &["malformed"]);
    let a = h.post(ENCORE_PATH, &[], &encore_body()).await;
    assert_no_offer(&a, "invalid_upstream_body");
    assert_eq!(h.calls(Route::EncoreOffers), 1);
    // A body trickling past the try timeout is a timeout; Besitos retries it.
    plan(&h, Route::BesitosGoals, &["slow", "ok"]);
    let b = h.post(&besitos_path(PARTNER), &[], "{}").await;
    assert_eq!((b.status.as_u16(), b.fallback()), (200, None));
    assert_eq!(h.calls(Route::BesitosGoals), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_fallback_off_statuses_pass_through_and_own_failures_are_errors() {
    let h = Harness::with_config(|o| {
        tuned(o, |c| {
            c.encore.resilience.soft_fallback = false;
            c.encore.resilience.circuit.failure_threshold = 2;
            c.encore.resilience.circuit.cooldown = Duration::from_secs(30);
        })
    })
    .await;
    plan(&h, Route::EncoreOffers, &["500", "hang"]);
    let a = h.post(ENCORE_PATH, &[], &encore_body()).await;
    assert_eq!(a.status, 500);
    assert_eq!(
        a.json()["error"]["code"],
        "simulated",
        "the partner's own 500"
    );
    let b = h.post(ENCORE_PATH, &[], &encore_body()).await;
    assert_eq!(
        (b.status.as_u16(), b.code().as_str()),
        (504, "upstream_timeout")
    );
    let c = h.post(ENCORE_PATH, &[], &encore_body()).await;
    assert_eq!(
        (c.status.as_u16(), c.code().as_str()),
        (503, "circuit_open")
    );
    let retry_after: u64 = c
        .headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    assert_eq!(h.calls(Route::EncoreOffers), 2);
    let m = h.metrics().await;
    assert_sample(
        &m,
        r#"offergate_requests_total{outcome="failed",route="encore_offers"}"#,
        2.0,
    );
    h.stop().await;
}
