//! Rate limits and the partner's 429 pause, on the paused clock.

use offergate::call::clock;
use offergate::call::route::Route;
use offergate::config::Rate;

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn a_partner_429_pauses_forwarding_for_its_retry_after() {
    let s = Stack::with(|c| c.encore.resilience.retry.max_retries = 0);
    s.plan(&[Step::TooMany(1)]);
    let paused_at = clock::now();
    assert_no_offer(
        &s.post(ENCORE_PATH, &[], &encore_body("c0")).await,
        "upstream_status_429",
    );
    for n in 0..5 {
        let t = clock::now();
        let b = s
            .post(ENCORE_PATH, &[], &encore_body(&format!("c{n}x")))
            .await;
        assert_no_offer(&b, "circuit_open");
        assert!(clock::now() - t <= ms(250), "the short wait at most");
    }
    assert_eq!(s.calls(Route::EncoreOffers), 1, "nothing sent while paused");
    assert_eq!(
        s.sample(r#"offergate_rate_limited_total{mode="enforced",route="encore_offers",scope="upstream"}"#),
        5.0
    );
    // Close to the end of the pause, the short wait bridges it.
    tokio::time::advance(ms(850).saturating_sub(clock::now() - paused_at)).await;
    let c = s.post(ENCORE_PATH, &[], &encore_body("c9")).await;
    assert_eq!((c.status.as_u16(), c.fallback()), (200, None));
    assert!(clock::now() - paused_at >= ms(1_000));
    assert_eq!(s.calls(Route::EncoreOffers), 2);
}

#[tokio::test(start_paused = true)]
async fn a_short_wait_smooths_a_burst_instead_of_refusing() {
    let s = Stack::with(|c| {
        c.encore.resilience.rate_limit.client = Rate {
            per_second: 10.0,
            burst: 1,
        }
    });
    let started = clock::now();
    for n in 0..3 {
        let a = s
            .post(ENCORE_PATH, &[], &encore_body(&format!("steady-{n}")))
            .await;
        assert_eq!(a.fallback(), None, "waited for a permit");
    }
    assert_eq!(clock::now() - started, ms(200), "two waits of 100 ms");
    assert_eq!(s.calls(Route::EncoreOffers), 3);
}

#[tokio::test(start_paused = true)]
async fn past_the_wait_encore_falls_back_and_besitos_answers_429() {
    let s = Stack::with(|c| {
        let one = Rate {
            per_second: 0.5,
            burst: 1,
        };
        c.encore.resilience.rate_limit.partner = one;
        c.besitos.resilience.rate_limit.partner = one;
    });
    assert_eq!(
        s.post(ENCORE_PATH, &[], &encore_body("a")).await.fallback(),
        None
    );
    assert_no_offer(
        &s.post(ENCORE_PATH, &[], &encore_body("b")).await,
        "rate_limited",
    );
    assert_eq!(s.post(&besitos_path(), &[], "{}").await.status, 200);
    let limited = s.post(&besitos_path(), &[], r#"{"hours_to":1}"#).await;
    assert_eq!(
        (limited.status.as_u16(), limited.code().as_str()),
        (429, "rate_limited")
    );
    assert_eq!(limited.headers.get("retry-after").unwrap(), "2");
    assert_eq!(
        s.calls(Route::EncoreOffers) + s.calls(Route::BesitosGoals),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn shadow_mode_counts_what_would_be_limited_and_lets_it_through() {
    let tight = Rate {
        per_second: 1.0,
        burst: 2,
    };
    let s = Stack::with(|c| {
        let limits = &mut c.encore.resilience.rate_limit;
        limits.client = tight;
        limits.partner = tight;
        limits.enforce = false;
    });
    let started = clock::now();
    for n in 0..6 {
        let a = s
            .post(ENCORE_PATH, &[], &encore_body(&format!("shadow-{n}")))
            .await;
        assert_eq!(a.fallback(), None, "call {n} went on");
        assert!(a.json()["offer"].is_object());
    }
    assert_eq!(clock::now(), started, "no call waited");
    assert_eq!(s.calls(Route::EncoreOffers), 6);
    // Enforced, four of the six would have been refused by each bucket.
    for scope in ["client", "partner"] {
        assert_eq!(
            s.sample(&format!(
                r#"offergate_rate_limited_total{{mode="shadow",route="encore_offers",scope="{scope}"}}"#
            )),
            4.0,
            "{scope}"
        );
    }
    // The same burst enforced: refused, and counted as such.
    let s = Stack::with(|c| {
        let limits = &mut c.encore.resilience.rate_limit;
        limits.client = tight;
        limits.max_wait = ms(0);
    });
    let mut refused = 0;
    for n in 0..6 {
        let a = s
            .post(ENCORE_PATH, &[], &encore_body(&format!("enforced-{n}")))
            .await;
        refused += usize::from(a.fallback() == Some("rate_limited"));
    }
    assert_eq!(refused, 4);
    assert_eq!(
        s.sample(
            r#"offergate_rate_limited_total{mode="enforced",route="encore_offers",scope="client"}"#
        ),
        4.0
    );
}
