//! Idempotency through the whole stack: replay, coalescing, conflicts, and
//! the windows and TTLs on the paused clock.

use futures_util::future::join_all;
use offergate::call::route::Route;

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn a_duplicate_is_replayed_and_concurrent_ones_share_one_call() {
    let s = Stack::new();
    let key = [("idempotency-key", "order-1")];
    let a = s.post(ENCORE_PATH, &key, &encore_body("c1")).await;
    let b = s.post(ENCORE_PATH, &key, &encore_body("c1")).await;
    assert!(!a.replayed() && b.replayed());
    assert_eq!(a.body, b.body, "the same short link");
    assert_eq!(s.calls(Route::EncoreOffers), 1);

    // Twenty at once while the partner is slow: one call, one answer for all.
    s.plan(&[Step::Slow(ms(500))]);
    let calls = (0..20).map(|_| {
        s.post(
            ENCORE_PATH,
            &[("idempotency-key", "k20")],
            encore_body("c20"),
        )
    });
    let answers = join_all(calls).await;
    assert_eq!(s.calls(Route::EncoreOffers), 2);
    assert!(answers
        .iter()
        .all(|a| a.status == 200 && a.body == answers[0].body));
    assert_eq!(answers.iter().filter(|a| a.replayed()).count(), 19);
    assert_eq!(
        s.sample(r#"offergate_idempotency_total{result="coalesced",route="encore_offers"}"#),
        19.0
    );
}

#[tokio::test(start_paused = true)]
async fn the_same_key_with_another_body_is_422_and_not_forwarded() {
    let s = Stack::new();
    let key = [("idempotency-key", "k")];
    assert_eq!(
        s.post(ENCORE_PATH, &key, &encore_body("c1")).await.status,
        200
    );
    let b = s.post(ENCORE_PATH, &key, &encore_body("c2")).await;
    assert_eq!(
        (b.status.as_u16(), b.code().as_str()),
        (422, "idempotency_key_reused")
    );
    assert_eq!(s.calls(Route::EncoreOffers), 1);
}

#[tokio::test(start_paused = true)]
async fn identical_bodies_without_a_key_replay_inside_the_window_only() {
    let s = Stack::with(|c| c.encore.resilience.idempotency.body_key_window = Some(ms(400)));
    let body = encore_body("c1");
    let a = s.post(ENCORE_PATH, &[], &body).await;
    // Same request, other key order and spacing: the same logical call.
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let reordered = format!(
        "{{ \"attributes\": {}, \"chatId\": {}, \"clientId\": {} }}",
        v["attributes"], v["chatId"], v["clientId"]
    );
    let b = s.post(ENCORE_PATH, &[], &reordered).await;
    assert!(b.replayed());
    assert_eq!(a.body, b.body);
    tokio::time::advance(ms(399)).await;
    assert!(
        s.post(ENCORE_PATH, &[], &body).await.replayed(),
        "still inside"
    );
    tokio::time::advance(ms(1)).await;
    let c = s.post(ENCORE_PATH, &[], &body).await;
    assert!(!c.replayed());
    assert_ne!(a.body, c.body, "after the window: a new call, a new link");
    assert_eq!(s.calls(Route::EncoreOffers), 2);
}

#[tokio::test(start_paused = true)]
async fn stored_answers_expire_with_their_ttl() {
    let s = Stack::with(|c| c.encore.resilience.idempotency.ttl = ms(300));
    let key = [("idempotency-key", "short-lived")];
    let body = encore_body("c1");
    s.post(ENCORE_PATH, &key, &body).await;
    tokio::time::advance(ms(299)).await;
    assert!(s.post(ENCORE_PATH, &key, &body).await.replayed());
    tokio::time::advance(ms(1)).await;
    assert!(!s.post(ENCORE_PATH, &key, &body).await.replayed());
    assert_eq!(s.calls(Route::EncoreOffers), 2);
}

#[tokio::test(start_paused = true)]
async fn fallbacks_are_not_stored_so_a_retry_reaches_the_partner() {
    let s = Stack::new();
    s.plan(&[Step::Status(500)]);
    let key = [("idempotency-key", "retry-me")];
    assert_no_offer(
        &s.post(ENCORE_PATH, &key, &encore_body("c1")).await,
        "upstream_status_500",
    );
    let again = s.post(ENCORE_PATH, &key, &encore_body("c1")).await;
    assert!(again.json()["offer"].is_object() && !again.replayed());
    assert_eq!(s.calls(Route::EncoreOffers), 2);
}
