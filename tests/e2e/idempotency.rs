//! One partner call per logical request: replays, coalescing, conflicts, body
//! keys, scoping, expiry and bounds, asserted on the simulator's call counts.

use std::sync::Arc;
use std::time::Duration;

use offergate::call::route::Route;
use offergate::config::Secret;
use tokio::io::AsyncWriteExt;

use crate::support::*;

async fn harness(f: impl FnOnce(&mut offergate::Config) + Send + 'static) -> Harness {
    Harness::with_config(|o| tuned(o, f)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_with_the_same_key_replays_the_same_short_link() {
    let h = harness(|_| {}).await;
    let body = encore_body();
    let first = h
        .post(ENCORE_PATH, &[("idempotency-key", "webhook-123")], &body)
        .await;
    assert_eq!(first.status, 200);
    assert!(!first.replayed());
    let again = h
        .post(ENCORE_PATH, &[("idempotency-key", "webhook-123")], &body)
        .await;
    assert_eq!(again.status, 200);
    assert!(again.replayed());
    assert_eq!(again.body, first.body, "the same short link");
    assert_eq!(
        again.headers.get("content-type").unwrap(),
        "application/json"
    );
    assert_eq!(h.calls(Route::EncoreOffers), 1);
    let seen = h.sim.state.last(Route::EncoreOffers).unwrap();
    assert!(
        seen.headers.get("idempotency-key").is_none(),
        "our header stays with us"
    );
    let m = h.metrics().await;
    assert_sample(
        &m,
        r#"offergate_idempotency_total{result="miss",route="encore_offers"}"#,
        1.0,
    );
    assert_sample(
        &m,
        r#"offergate_idempotency_total{result="hit",route="encore_offers"}"#,
        1.0,
    );
    assert_sample(
        &m,
        r#"offergate_idempotency_entries{route="encore_offers"}"#,
        1.0,
    );
    assert_sample(
        &m,
        r#"offergate_requests_total{outcome="replayed",route="encore_offers"}"#,
        1.0,
    );
    assert_sample(
        &m,
        r#"offergate_requests_total{outcome="forwarded",route="encore_offers"}"#,
        1.0,
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_duplicates_cost_exactly_one_call() {
    let h = Arc::new(harness(|_| {}).await);
    plan(&h, Route::EncoreOffers, &["delay:200"]);
    let body = Arc::new(encore_body());
    let calls = (0..50).map(|_| {
        let (h, body) = (h.clone(), body.clone());
        tokio::spawn(async move {
            h.post(ENCORE_PATH, &[("idempotency-key", "same")], &body)
                .await
        })
    });
    let answers: Vec<Answer> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(h.calls(Route::EncoreOffers), 1);
    assert!(answers
        .iter()
        .all(|a| a.status == 200 && a.body == answers[0].body));
    assert_eq!(
        answers.iter().filter(|a| !a.replayed()).count(),
        1,
        "one leader, 49 shared"
    );
    let m = h.metrics().await;
    let shared = sample(
        &m,
        r#"offergate_idempotency_total{result="coalesced",route="encore_offers"}"#,
    ) + sample(
        &m,
        r#"offergate_idempotency_total{result="hit",route="encore_offers"}"#,
    );
    assert_eq!(shared, 49.0);
    Arc::into_inner(h).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_with_another_body_is_422_and_not_forwarded() {
    let h = harness(|_| {}).await;
    let a = h
        .post(ENCORE_PATH, &[("idempotency-key", "k")], &encore_body())
        .await;
    assert_eq!(a.status, 200);
    let b = h
        .post(ENCORE_PATH, &[("idempotency-key", "k")], &encore_body())
        .await;
    assert_eq!(
        (b.status.as_u16(), b.code().as_str()),
        (422, "idempotency_key_reused")
    );
    // Also while the first is still in flight.
    plan(&h, Route::EncoreOffers, &["delay:200"]);
    let slow_body = encore_body();
    let slow = h.post(ENCORE_PATH, &[("idempotency-key", "k2")], &slow_body);
    let clash = async {
        // Once the first has reached the (slow) partner.
        eventually(
            Duration::from_secs(5),
            "the first call is in flight",
            || async { (h.calls(Route::EncoreOffers) == 2).then_some(()) },
        )
        .await;
        h.post(ENCORE_PATH, &[("idempotency-key", "k2")], &encore_body())
            .await
    };
    let (first, second) = tokio::join!(slow, clash);
    assert_eq!(first.status, 200);
    assert_eq!(second.status, 422);
    assert_eq!(h.calls(Route::EncoreOffers), 2);
    let m = h.metrics().await;
    assert_sample(
        &m,
        r#"offergate_idempotency_total{result="conflict",route="encore_offers"}"#,
        2.0,
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallbacks_are_not_replayed_but_partner_400s_are() {
    let h = harness(|_| {}).await;
    plan(&h, Route::EncoreOffers, &["500"]);
    let body = encore_body();
    let a = h
        .post(ENCORE_PATH, &[("idempotency-key", "retry-me")], &body)
        .await;
    assert_eq!(
        a.headers.get("x-offergate-fallback").unwrap(),
        "upstream_status_500"
    );
    let b = h
        .post(ENCORE_PATH, &[("idempotency-key", "retry-me")], &body)
        .await;
    assert!(!b.replayed() && b.headers.get("x-offergate-fallback").is_none());
    assert!(
        b.json()["offer"].is_object(),
        "the retry reached the partner"
    );
    assert_eq!(h.calls(Route::EncoreOffers), 2);

    plan(&h, Route::EncoreOffers, &["400"]);
    let body = encore_body();
    let c = h
        .post(ENCORE_PATH, &[("idempotency-key", "bad")], &body)
        .await;
    let d = h
        .post(ENCORE_PATH, &[("idempotency-key", "bad")], &body)
        .await;
    assert_eq!((c.status.as_u16(), d.status.as_u16()), (400, 400));
    assert!(d.replayed());
    assert_eq!(c.body, d.body);
    assert_eq!(h.calls(Route::EncoreOffers), 3);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_scoped_to_route_and_partner() {
    let h = harness(|c| {
        c.besitos
            .partners
            .insert("secondPartner".into(), Secret::builtin(TOKEN));
    })
    .await;
    let key = [("idempotency-key", "shared-key")];
    let encore = encore_body();
    for _ in 0..2 {
        assert_eq!(h.post(ENCORE_PATH, &key, &encore).await.status, 200);
        assert_eq!(h.post(&besitos_path(PARTNER), &key, "{}").await.status, 200);
        assert_eq!(
            h.post(&besitos_path("secondPartner"), &key, "{}")
                .await
                .status,
            200
        );
    }
    assert_eq!(h.calls(Route::EncoreOffers), 1);
    assert_eq!(h.calls(Route::BesitosGoals), 2, "one per partner");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_answers_are_bounded() {
    let h = harness(|c| {
        let i = &mut c.encore.resilience.idempotency;
        i.max_entries = 20;
        i.max_bytes = 64 * 1024;
    })
    .await;
    for n in 0..100 {
        let a = h
            .post(
                ENCORE_PATH,
                &[("idempotency-key", &format!("key-{n}"))],
                &encore_body(),
            )
            .await;
        assert_eq!(a.status, 200);
    }
    let m = h.metrics().await;
    let entries = sample(
        &m,
        r#"offergate_idempotency_entries{route="encore_offers"}"#,
    );
    assert!(entries > 0.0 && entries <= 20.0, "{entries}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_first_caller_causes_no_second_call() {
    let h = harness(|_| {}).await;
    plan(&h, Route::EncoreOffers, &["delay:250"]);
    let body = encore_body();
    // The first caller sends, then hangs up before the answer.
    let mut s = tokio::net::TcpStream::connect(h.gw.proxy_addr)
        .await
        .unwrap();
    let req = format!(
        "POST {ENCORE_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nIdempotency-Key: webhook-9\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    eventually(
        Duration::from_secs(5),
        "the call reaches the partner",
        || async { (h.calls(Route::EncoreOffers) == 1).then_some(()) },
    )
    .await;
    drop(s);
    // The platform's retry arrives while the call is still in flight.
    let retry = h
        .post(ENCORE_PATH, &[("idempotency-key", "webhook-9")], &body)
        .await;
    assert_eq!(retry.status, 200);
    assert!(retry.json()["offer"].is_object());
    let later = h
        .post(ENCORE_PATH, &[("idempotency-key", "webhook-9")], &body)
        .await;
    assert_eq!(later.body, retry.body);
    assert_eq!(h.calls(Route::EncoreOffers), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_keys_are_refused_naming_the_header() {
    let h = harness(|_| {}).await;
    let long = "k".repeat(256);
    for bad in ["has space", long.as_str(), "tab\there", "é"] {
        let a = h
            .post(ENCORE_PATH, &[("idempotency-key", bad)], &encore_body())
            .await;
        assert_eq!(
            (a.status.as_u16(), a.code().as_str()),
            (400, "invalid_request"),
            "{bad}"
        );
        assert!(
            a.message().starts_with("Idempotency-Key"),
            "{}",
            a.message()
        );
    }
    let twice = format!(
        "POST {ENCORE_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nIdempotency-Key: a\r\nIdempotency-Key: b\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{ENCORE_BODY}",
        ENCORE_BODY.len()
    );
    let (status, body) = raw(h.gw.proxy_addr, twice.as_bytes()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        h.post(
            ENCORE_PATH,
            &[("idempotency-key", &"k".repeat(255))],
            &encore_body()
        )
        .await
        .status,
        200
    );
    assert_eq!(h.calls(Route::EncoreOffers), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_count_as_written_for_what_makes_two_requests_one() {
    let h = Harness::start().await;
    let with = |n: &str| ENCORE_BODY.replace("\"clientId\"", &format!("\"n\":{n},\"clientId\""));
    let key = [("idempotency-key", "big-number")];
    let a = h
        .post(ENCORE_PATH, &key, &with("18446744073709551616"))
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let b = h
        .post(ENCORE_PATH, &key, &with("18446744073709551617"))
        .await;
    assert_eq!(
        (b.status.as_u16(), b.code().as_str()),
        (422, "idempotency_key_reused")
    );
    // Without a key, the body decides: 0.1 and its long double are two requests.
    let c = h.post(ENCORE_PATH, &[], &with("0.1")).await;
    let d = h
        .post(
            ENCORE_PATH,
            &[],
            &with("0.1000000000000000055511151231257827"),
        )
        .await;
    assert!(!c.replayed() && !d.replayed());
    // Whitespace and key order still do not matter.
    let e = h
        .post(ENCORE_PATH, &[], &with("0.1").replace(":", " : "))
        .await;
    assert!(e.replayed(), "{:?}", e.body);
    assert_eq!(h.calls(Route::EncoreOffers), 3);
}
