//! Rate limits against the simulator: the partner's quota, each caller's fair
//! share, the partner's own 429 pause, and replays that spend nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use offergate::call::route::Route;
use offergate::config::{Rate, RateLimitConfig};

use crate::support::*;

fn limits(r: &mut RateLimitConfig, partner: (f64, u32), client: (f64, u32), max_wait_ms: u64) {
    r.partner = Rate {
        per_second: partner.0,
        burst: partner.1,
    };
    r.client = Rate {
        per_second: client.0,
        burst: client.1,
    };
    r.max_wait = Duration::from_millis(max_wait_ms);
}

const PLENTY: (f64, u32) = (100_000.0, 100_000);

/// An Encore body for `client`, in a conversation of its own.
fn body_for(client: &str) -> String {
    encore_body().replace("client-42", client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_above_the_partner_limit_lets_burst_plus_rate_through() {
    let h = Arc::new(
        Harness::with_config(|o| {
            tuned(o, |c| {
                limits(&mut c.encore.resilience.rate_limit, (10.0, 5), PLENTY, 0);
                limits(&mut c.besitos.resilience.rate_limit, (10.0, 3), PLENTY, 0);
            })
        })
        .await,
    );
    let started = Instant::now();
    let calls = (0..30).map(|i| {
        let h = h.clone();
        tokio::spawn(async move {
            h.post(ENCORE_PATH, &[], &body_for(&format!("op-{i}")))
                .await
        })
    });
    let answers: Vec<Answer> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    let reached = h.calls(Route::EncoreOffers);
    let allowed = 5 + (10.0 * elapsed).ceil() as u64;
    assert!(
        (5..=allowed).contains(&reached),
        "{reached} calls reached the partner in {elapsed:.3}s"
    );
    let limited: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.fallback() == Some("rate_limited"))
        .collect();
    assert_eq!(limited.len() as u64 + reached, 30);
    assert!(
        limited
            .iter()
            .all(|a| a.status == 200 && a.json()["offer"].is_null()),
        "Encore: the soft fallback"
    );
    let m = h.metrics().await;
    assert_sample(
        &m,
        r#"offergate_rate_limited_total{mode="enforced",route="encore_offers",scope="partner"}"#,
        limited.len() as f64,
    );

    // Besitos answers 429 with Retry-After and the error shape.
    let mut rejected = 0;
    for i in 0..8 {
        let a = h
            .post(
                &besitos_path(PARTNER),
                &[],
                &format!("{{\"hours_to\":{}}}", 40 + i),
            )
            .await;
        if a.status == 429 {
            rejected += 1;
            assert_eq!(a.code(), "rate_limited");
            let secs: u64 = a
                .headers
                .get("retry-after")
                .unwrap()
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(secs >= 1, "whole seconds, at least 1");
        }
    }
    assert!(rejected >= 4, "{rejected}");
    assert_eq!(h.calls(Route::BesitosGoals), 8 - rejected);
    Arc::into_inner(h).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_flooding_client_does_not_starve_another() {
    let h = Harness::with_config(|o| {
        tuned(o, |c| {
            limits(&mut c.encore.resilience.rate_limit, PLENTY, (2.0, 3), 0)
        })
    })
    .await;
    let mut served = 0;
    for _ in 0..20 {
        let a = h.post(ENCORE_PATH, &[], &body_for("busy-restaurant")).await;
        if a.fallback().is_none() {
            served += 1;
        } else {
            assert_eq!(a.fallback(), Some("rate_limited"));
        }
    }
    assert!((3..=4).contains(&served), "{served}");
    let other = h.post(ENCORE_PATH, &[], &body_for("quiet-shop")).await;
    assert_eq!((other.status.as_u16(), other.fallback()), (200, None));
    assert!(other.json()["offer"].is_object());
    assert_eq!(h.calls(Route::EncoreOffers), served + 1);
    let m = h.metrics().await;
    assert_sample(
        &m,
        r#"offergate_rate_limited_total{mode="enforced",route="encore_offers",scope="client"}"#,
        (20 - served) as f64,
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_overrides_give_a_big_operator_more() {
    let h = Harness::with_config(|o| {
        tuned(o, |c| {
            let r = &mut c.encore.resilience.rate_limit;
            limits(r, PLENTY, (1.0, 2), 0);
            r.client_overrides.insert(
                "big-operator".into(),
                Rate {
                    per_second: 1.0,
                    burst: 6,
                },
            );
        })
    })
    .await;
    let mut served = 0;
    for _ in 0..8 {
        served += u64::from(
            h.post(ENCORE_PATH, &[], &body_for("big-operator"))
                .await
                .fallback()
                .is_none(),
        );
    }
    assert_eq!(served, 6);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_is_served_while_the_limit_is_spent() {
    let h = Harness::with_config(|o| {
        tuned(o, |c| {
            limits(&mut c.encore.resilience.rate_limit, PLENTY, (0.1, 1), 0)
        })
    })
    .await;
    let body = body_for("one-call-budget");
    let key = [("idempotency-key", "order-77")];
    let first = h.post(ENCORE_PATH, &key, &body).await;
    assert_eq!(first.fallback(), None);
    let limited = h.post(ENCORE_PATH, &[], &body_for("one-call-budget")).await;
    assert_eq!(limited.fallback(), Some("rate_limited"));
    let replay = h.post(ENCORE_PATH, &key, &body).await;
    assert_eq!(replay.headers.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(replay.body, first.body);
    assert_eq!(h.calls(Route::EncoreOffers), 1);
    h.stop().await;
}
