//! A Redis that stalls and callers who hang up: no second partner call, no
//! wait left behind, the fleet's quota held.

use super::*;

/// A slow Redis reply is never a second partner call: 40 duplicates at
/// once over two replicas, Encore answering after 300 ms, Redis stalled for
/// 200 ms (`DEBUG SLEEP`) in the middle of the burst, with a reply timeout of
/// 50 ms: a claim whose reply is late is asked again, not guessed untaken.
/// One partner call and one link in every one of 20 runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_never_makes_a_second_partner_call() {
    let redis = RedisServer::start().await;
    let short = |o: &str| {
        let mut c = replica(o, &redis, "");
        c.state.timeout = Duration::from_millis(50);
        c
    };
    let a = Harness::with_config(short).await;
    let b = second(&a, short(a.sim.origin())).await;
    until_connected(&a.gw).await;
    until_connected(&b.0).await;
    for run in 0..20 {
        let before = a.calls(Route::EncoreOffers);
        plan(&a, Route::EncoreOffers, &["delay:300"]);
        let body = encore_body();
        let key = format!("stalled-{run}");
        let key = [("idempotency-key", key.as_str())];
        let stall = async {
            tokio::time::sleep(Duration::from_millis(5 * (run % 3))).await;
            redis.stall("0.2").await;
        };
        let burst = join_all((0..40).map(|n| {
            let (gw, body) = (if n % 2 == 0 { &a.gw } else { &b.0 }, body.clone());
            async move {
                tokio::time::sleep(Duration::from_millis(15 + 4 * n)).await;
                post_to(gw, &key, &body).await
            }
        }));
        let (answers, ()) = futures_util::future::join(burst, stall).await;
        let links: std::collections::BTreeSet<String> = answers
            .iter()
            .filter_map(|x| x.json()["offer"]["clickUrl"].as_str().map(String::from))
            .collect();
        assert!(answers.iter().all(|x| x.status == 200), "run {run}");
        assert_eq!(
            a.calls(Route::EncoreOffers) - before,
            1,
            "run {run}: one partner call for 40 duplicates"
        );
        assert_eq!(links.len(), 1, "run {run}: one link: {links:?}");
    }
    b.0.shutdown().await;
    a.stop().await;
}

/// A caller that hangs up while the same request is in flight on another
/// replica leaves nothing behind on its own replica: the key's next call
/// there gets the fleet's answer at once. (Its lead in the replica's own
/// store stayed after the call was dropped, so every later call for the
/// key waited out its deadline there and got the fallback: found as a
/// replay benchmark that fell to 13 req/s after a run's end cut calls off.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_who_hangs_up_while_another_replica_leads_leaves_no_wait_behind() {
    let redis = RedisServer::start().await;
    let (a, b) = connected_pair(&redis).await;
    for run in 0..3 {
        plan(&a, Route::EncoreOffers, &["delay:600"]);
        let body = encore_body();
        let key = format!("hung-up-{run}");
        let key = [("idempotency-key", key.as_str())];
        // In flight on b by now; this caller on a waits for b's answer.
        let hang_up = hang_up_after(&a.gw, ENCORE_PATH, &key, &body, (150, 300));
        let (led, ()) = futures_util::future::join(post_to(&b.0, &key, &body), hang_up).await;
        assert_eq!(led.status, 200, "run {run}");
        let started = Instant::now();
        let again = post_to(&a.gw, &key, &body).await;
        let took = started.elapsed();
        assert_eq!(
            (
                again.status.as_u16(),
                again.json()["offer"]["clickUrl"].clone()
            ),
            (200, led.json()["offer"]["clickUrl"].clone()),
            "run {run}: the fleet's answer, replayed: {:?}",
            again.body
        );
        assert!(took < Duration::from_millis(500), "run {run}: {took:?}");
    }
    b.0.shutdown().await;
    a.stop().await;
}

/// A call waiting on its own replica behind a caller who then hangs up
/// (the same request in flight on another replica) gets the fleet's
/// answer: it claims the key again. (It was answered 500, "the first call
/// with this key was lost".)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_waiting_behind_a_caller_who_hangs_up_gets_the_fleets_answer() {
    let redis = RedisServer::start().await;
    let (a, b) = connected_pair(&redis).await;
    for run in 0..3 {
        plan(&a, Route::EncoreOffers, &["delay:800"]);
        let body = encore_body();
        let key = format!("behind-hung-up-{run}");
        let key = [("idempotency-key", key.as_str())];
        // b leads; a caller on a waits for b's answer from 150 ms and hangs
        // up at 400; from 250 another caller on a waits behind it.
        let behind = async {
            tokio::time::sleep(Duration::from_millis(250)).await;
            post_to(&a.gw, &key, &body).await
        };
        let (led, (), behind) = tokio::join!(
            post_to(&b.0, &key, &body),
            hang_up_after(&a.gw, ENCORE_PATH, &key, &body, (150, 400)),
            behind
        );
        assert_eq!(led.status, 200, "run {run}");
        assert_eq!(
            (
                behind.status.as_u16(),
                behind.json()["offer"]["clickUrl"].clone()
            ),
            (200, led.json()["offer"]["clickUrl"].clone()),
            "run {run}: the fleet's answer, replayed: {:?}",
            behind.body
        );
    }
    assert_eq!(a.calls(Route::EncoreOffers), 3, "one partner call a key");
    b.0.shutdown().await;
    a.stop().await;
}

/// Sends `body` to `path` on `gw` with `headers`, `connect_ms` into the
/// test, and hangs up at `hang_up_ms`, unanswered.
async fn hang_up_after(
    gw: &Gateway,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    (connect_ms, hang_up_ms): (u64, u64),
) {
    use tokio::io::AsyncWriteExt;
    tokio::time::sleep(Duration::from_millis(connect_ms)).await;
    let mut s = tokio::net::TcpStream::connect(gw.proxy_addr).await.unwrap();
    let headers: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(hang_up_ms - connect_ms)).await;
    drop(s);
}

/// The conversation endpoint likewise: a delivery waiting on its replica
/// behind one whose caller hangs up (the same message being decided on
/// another replica) gets that decision, replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_waiting_behind_one_that_hangs_up_gets_the_fleets_decision() {
    const MESSAGES: &str = "/offergate/v1/encore/messages";
    let redis = RedisServer::start().await;
    let (a, b) = connected_pair(&redis).await;
    let now = offergate::call::clock::wall_ms();
    for run in 0..3 {
        plan(&a, Route::EncoreOffers, &["delay:800"]);
        let mut m = message(&format!("wamid.behind-{run}"), now - 60_000);
        m["chatId"] = serde_json::json!(format!("wa:1555000{run}"));
        let text = m.to_string();
        let behind = async {
            tokio::time::sleep(Duration::from_millis(250)).await;
            post_path(&a.gw, MESSAGES, &m).await
        };
        let (first, (), behind) = tokio::join!(
            post_path(&b.0, MESSAGES, &m),
            hang_up_after(&a.gw, MESSAGES, &[], &text, (150, 400)),
            behind
        );
        assert_eq!(
            first.json()["decision"],
            "offer",
            "run {run}: {:?}",
            first.body
        );
        assert_eq!(
            (behind.status.as_u16(), behind.replayed(), &behind.body),
            (200, true, &first.body),
            "run {run}: the fleet's decision, replayed"
        );
    }
    assert_eq!(a.calls(Route::EncoreOffers), 3, "one Encore call a message");
    b.0.shutdown().await;
    a.stop().await;
}

/// The fleet's partner quota holds while Redis stalls: a late reply is not
/// a permit this replica grants itself. 30 calls over two replicas with a
/// quota of 5 a second (burst 5), Redis stalled 200 ms as they start: no
/// more reach the partner than the quota allows over the time they took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_quota_holds_while_redis_stalls() {
    let redis = RedisServer::start().await;
    let tight = |o: &str| {
        let mut c = replica(o, &redis, "");
        c.state.timeout = Duration::from_millis(50);
        c.encore.resilience.rate_limit.partner.per_second = 5.0;
        c.encore.resilience.rate_limit.partner.burst = 5;
        c.encore.resilience.retry.max_retries = 0;
        // The limits asked on their own, as for calls without a claim.
        c.encore.resilience.idempotency.enabled = false;
        c
    };
    let a = Harness::with_config(tight).await;
    let b = second(&a, tight(a.sim.origin())).await;
    until_connected(&a.gw).await;
    until_connected(&b.0).await;
    let started = Instant::now();
    let calls = join_all((0..30).map(|n| {
        let gw = if n % 2 == 0 { &a.gw } else { &b.0 };
        async move {
            tokio::time::sleep(Duration::from_millis(10 + 10 * n)).await;
            post_to(gw, &[], &encore_body()).await
        }
    }));
    let (calls, ()) = futures_util::future::join(calls, redis.stall("0.2")).await;
    let took = started.elapsed().as_secs_f64();
    assert!(calls.iter().all(|c| c.status == 200));
    let reached = a.calls(Route::EncoreOffers);
    let allowed = 5 + (5.0 * took).ceil() as u64;
    assert!(
        reached <= allowed,
        "{reached} calls reached the partner in {took:.2} s; the quota allows {allowed}"
    );
    b.0.shutdown().await;
    a.stop().await;
}
