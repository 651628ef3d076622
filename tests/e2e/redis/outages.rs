//! Redis trouble: answered per `on_error`, healed after; a replica killed
//! holding a lock; an outage, a lost answer, a dropped connection; opt-outs
//! kept or refused.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_trouble_is_answered_per_on_error_and_healed_after() {
    let mut redis = RedisServer::start().await;
    let a = Harness::with_config(|o| replica(o, &redis, "")).await;
    let b = second(&a, replica(a.sim.origin(), &redis, "")).await;
    let closed = second(
        &a,
        replica(a.sim.origin(), &redis, "on_error = \"fail_closed\"\n"),
    )
    .await;
    until_connected(&a.gw).await;
    until_connected(&b.0).await;
    until_connected(&closed.0).await;

    redis.kill();
    let deadline = Duration::from_millis(1_000 + 500);
    for n in 0..3 {
        let started = Instant::now();
        let open = post_to(if n % 2 == 0 { &a.gw } else { &b.0 }, &[], &encore_body()).await;
        assert_eq!(
            (open.status.as_u16(), open.fallback()),
            (200, None),
            "fail_open forwards"
        );
        assert!(started.elapsed() < deadline, "{:?}", started.elapsed());
        let started = Instant::now();
        let shut = post_to(&closed.0, &[], &encore_body()).await;
        assert_eq!(
            shut.fallback(),
            Some("state_unavailable"),
            "fail_closed falls back"
        );
        assert!(started.elapsed() < deadline, "{:?}", started.elapsed());
    }
    let m = a.metrics().await;
    assert!(
        m.contains("offergate_state_errors_total{backend=\"redis\",op=\"claim\"}"),
        "{m}"
    );
    // The console says so, and what each replica does meanwhile.
    let shown = closed.0.console.status()["state"].clone();
    assert_eq!(
        (&shown["backend"], &shown["healthy"], &shown["on_error"]),
        (
            &serde_json::json!("redis"),
            &serde_json::json!(false),
            &serde_json::json!("fail_closed")
        ),
        "{shown}"
    );

    redis.restart().await;
    until_connected(&a.gw).await;
    until_connected(&b.0).await;
    let body = encore_body();
    let key = [("idempotency-key", "after-the-outage")];
    let first = a.post(ENCORE_PATH, &key, &body).await;
    let again = post_to(&b.0, &key, &body).await;
    assert!(
        again.replayed() && again.body == first.body,
        "de-duplication works again"
    );
    let shown = eventually(Duration::from_secs(5), "the console sees Redis", || async {
        a.gw.console.sample();
        let s = a.gw.console.status()["state"].clone();
        (s["healthy"] == true && s["latency_p50_ms"].is_number()).then_some(s)
    })
    .await;
    assert!(
        shown["describe"]
            .as_str()
            .unwrap()
            .starts_with("redis single"),
        "{shown}"
    );
    closed.0.shutdown().await;
    b.0.shutdown().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_holding_a_lock_frees_the_key_at_the_lock_expiry() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    // Replica A: the real binary, so it can be SIGKILLed mid-call.
    let a = crate::fleet::Fleet::start(
        &[
            ("OFFERGATE_STATE__BACKEND", "redis"),
            ("OFFERGATE_STATE__REDIS_URL", url.as_str()),
            ("OFFERGATE_STATE__TIMEOUT_MS", "250"),
        ],
        None,
    )
    .await;
    // Replica B: in this process, the same simulator and Redis.
    let b = Gateway::start(replica(&format!("http://{}", a.sim_addr), &redis, ""))
        .await
        .expect("replica B");
    until_connected(&b).await;
    a.slow_partner(1, 4_000).await;
    let body = encore_body();
    let key = [("idempotency-key", "held-by-a-dead-replica")];
    // A takes the lock and calls the (slow) partner...
    let to_a = {
        let (listen, body) = (a.listen, body.clone());
        tokio::spawn(async move {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<http_body_util::Full<bytes::Bytes>>();
            let req = http::Request::post(format!("http://{listen}{ENCORE_PATH}"))
                .header("content-type", "application/json")
                .header("idempotency-key", "held-by-a-dead-replica")
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .unwrap();
            client.request(req).await.is_ok()
        })
    };
    a.partner_reached(1).await;
    // ...and dies holding it.
    crate::fleet::signal(&a.gw.0, "KILL");
    assert!(!to_a.await.unwrap(), "A's caller lost its connection");
    // B waits for A's answer up to its own deadline, then falls back.
    let waited = post_to(&b, &key, &body).await;
    assert_eq!(waited.fallback(), Some("deadline_exceeded"));
    // At the lock's expiry (A's deadline + 1 s) the key is free: B leads.
    let led = post_to(&b, &key, &body).await;
    assert!(
        led.json()["offer"]["clickUrl"].is_string(),
        "{:?}",
        led.body
    );
    let calls = send_with(
        &a.client,
        http::Request::get(format!("http://{}/__sim/calls", a.sim_addr))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap(),
    )
    .await
    .json()["encore_offers"]
        .as_u64();
    assert_eq!(calls, Some(2), "A's call and B's, no more");
    b.shutdown().await;
}

/// Redis frozen for 3 s under `fail_open`, three times: meanwhile each
/// replica answers alone (a key sent to both gets two links, as fail_open
/// promises), and once Redis answers again every key has one answer
/// fleet-wide, every time: the first replica asked shares its own, the
/// other adopts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_the_fleet_answers_each_key_with_one_link() {
    let redis = RedisServer::start().await;
    let a = Harness::with_config(|o| replica(o, &redis, "")).await;
    let b = second(&a, replica(a.sim.origin(), &redis, "")).await;
    for outage in 0..3 {
        until_connected(&a.gw).await;
        until_connected(&b.0).await;
        redis.freeze(true);
        // A chat of its own per key (the thread cap stays out of the way).
        let keys: Vec<(String, String)> = (0..20)
            .map(|n| (format!("outage-{outage}-{n}"), encore_body()))
            .collect();
        let mut during = Vec::new();
        for (k, body) in &keys {
            let h = [("idempotency-key", k.as_str())];
            let x = a.post(ENCORE_PATH, &h, body).await;
            let y = post_to(&b.0, &h, body).await;
            // The first calls may wait out Redis's timeout and fall back.
            let offers = x.json()["offer"].is_object() && y.json()["offer"].is_object();
            during.push(offers && x.body != y.body);
        }
        let split = during.iter().filter(|s| **s).count();
        assert!(
            split >= 12,
            "outage {outage}: each replica answered alone: {split} of 20 keys split"
        );
        redis.freeze(false);
        until_connected(&a.gw).await;
        until_connected(&b.0).await;
        let calls = a.calls(Route::EncoreOffers);
        for (k, body) in &keys {
            let h = [("idempotency-key", k.as_str())];
            let (x, y) = if k.ends_with('0') || k.ends_with('5') {
                let y = post_to(&b.0, &h, body).await;
                (a.post(ENCORE_PATH, &h, body).await, y)
            } else {
                let x = a.post(ENCORE_PATH, &h, body).await;
                (x, post_to(&b.0, &h, body).await)
            };
            assert_eq!(x.status, 200);
            assert_eq!(
                x.body, y.body,
                "outage {outage}, {k}: one link on every replica"
            );
            let again = post_to(&b.0, &h, body).await;
            assert_eq!(again.body, x.body, "outage {outage}, {k}: and it stays");
        }
        assert_eq!(
            a.calls(Route::EncoreOffers),
            calls,
            "outage {outage}: no partner call after the outage"
        );
    }
    b.0.shutdown().await;
    a.stop().await;
}

/// Redis comes back empty (restarted without persistence; a failover to a
/// replica the answers had not reached loses them the same way), three
/// times. Past the call's deadline, the replica that led a key shares its
/// copy again when asked first: the other replays the same link and the
/// partner is not called. Where the other replica is asked first, it calls
/// the partner once and the leader then takes that answer: one link on
/// every replica either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_redis_loses_is_shared_again_by_the_replica_that_led_it() {
    let mut redis = RedisServer::start().await;
    let a = Harness::with_config(|o| replica(o, &redis, "")).await;
    let b = second(&a, replica(a.sim.origin(), &redis, "")).await;
    let deadline = replica(a.sim.origin(), &redis, "")
        .encore
        .resilience
        .deadline;
    for round in 0..3 {
        until_connected(&a.gw).await;
        until_connected(&b.0).await;
        // Led by a, replayed by b.
        let mut keys = Vec::new();
        for n in 0..10 {
            let (key, body) = (format!("lost-{round}-{n}"), encore_body());
            let h = [("idempotency-key", key.as_str())];
            let first = post_to(&a.gw, &h, &body).await;
            assert!(first.json()["offer"].is_object());
            assert!(post_to(&b.0, &h, &body).await.replayed());
            keys.push((key, body, first.body));
        }
        let led_at = Instant::now();
        redis.kill();
        redis.restart().await;
        until_connected(&a.gw).await;
        until_connected(&b.0).await;
        tokio::time::sleep(deadline.saturating_sub(led_at.elapsed())).await;
        let calls = a.calls(Route::EncoreOffers);
        for (n, (key, body, first)) in keys.iter().enumerate() {
            let h = [("idempotency-key", key.as_str())];
            let leader_first = n < 5;
            let (x, y) = if leader_first {
                let x = post_to(&a.gw, &h, body).await;
                (x, post_to(&b.0, &h, body).await)
            } else {
                let y = post_to(&b.0, &h, body).await;
                (post_to(&a.gw, &h, body).await, y)
            };
            assert_eq!(x.body, y.body, "round {round}, {key}: one link on both");
            assert_eq!(
                x.body == *first,
                leader_first,
                "round {round}, {key}: the leader's link where it was asked first"
            );
            let again = post_to(&b.0, &h, body).await;
            assert_eq!(again.body, x.body, "round {round}, {key}: and it stays");
        }
        assert_eq!(
            a.calls(Route::EncoreOffers) - calls,
            5,
            "round {round}: a partner call only where the replica that did not lead was asked first"
        );
    }
    b.0.shutdown().await;
    a.stop().await;
}

/// Redis drops every client connection: a call whose script may run twice
/// (the claim, the finish) is sent once more on the new connection, and
/// the caller sees nothing of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_costs_a_repeatable_call_nothing() {
    let redis = RedisServer::start().await;
    let a = Harness::with_config(|o| replica(o, &redis, "")).await;
    until_connected(&a.gw).await;
    let mut lost = 0.0;
    for n in 0..5 {
        crate::redis_server::redis_cli(redis.addr, &["client", "kill", "type", "normal"])
            .expect("redis-cli kills the connections");
        let key = format!("dropped-{n}");
        let x = a
            .post(ENCORE_PATH, &[("idempotency-key", &key)], &encore_body())
            .await;
        assert_eq!((x.status.as_u16(), x.fallback()), (200, None));
        let m = a.metrics().await;
        lost = sample(
            &m,
            r#"offergate_state_errors_total{backend="redis",op="claim"}"#,
        ) + sample(
            &m,
            r#"offergate_state_errors_total{backend="redis",op="finish"}"#,
        );
    }
    assert_eq!(lost, 0.0, "no claim or finish failed");
    a.stop().await;
}

/// An opt-out on a fleet is kept where every replica reads it, or refused so
/// the platform retries: never kept in one replica's memory under
/// `fail_open`. Kept without expiry, it survives Redis evicting under
/// `volatile-lru` (the managed services' default), which takes every key
/// with a TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opt_out_is_kept_by_redis_through_eviction_or_refused_when_it_cannot_be() {
    use crate::redis_server::redis_cli;
    let redis = RedisServer::start().await;
    let (a, b) = connected_pair(&redis).await;
    let now = offergate::call::clock::wall_ms();
    let thread = |chat: &str| serde_json::json!({"clientId": "client-42", "chatId": chat});
    let out = post_path(&a.gw, "/offergate/v1/encore/opt-out", &thread("kept")).await;
    assert_eq!(out.json(), serde_json::json!({"opted_out": true}));
    let keys = redis_cli(redis.addr, &["--scan", "--pattern", "*conversation*"]).unwrap();
    let key = keys.lines().next().expect("the thread's conversation key");
    assert_eq!(
        redis_cli(redis.addr, &["PTTL", key]).unwrap().trim(),
        "-1",
        "an opted-out thread has no expiry"
    );

    // Redis full under volatile-lru: it evicts what has a TTL.
    let used: u64 = redis_cli(redis.addr, &["INFO", "memory"])
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    let limit = (used + 2 * 1024 * 1024).to_string();
    redis_cli(redis.addr, &["CONFIG", "SET", "maxmemory", &limit]).unwrap();
    redis_cli(
        redis.addr,
        &["CONFIG", "SET", "maxmemory-policy", "volatile-lru"],
    )
    .unwrap();
    let fill = "for i = 1, 500 do redis.call('SET', KEYS[1] .. i, string.rep('x', 1000), 'PX', 600000) end return 1";
    for n in 0..20 {
        let prefix = format!("fill:{n}:");
        redis_cli(redis.addr, &["EVAL", fill, "1", &prefix]).unwrap();
    }
    let evicted: u64 = redis_cli(redis.addr, &["INFO", "stats"])
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("evicted_keys:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(evicted > 1_000, "Redis evicted ({evicted} keys)");
    let mut later = message("wamid.k1", now);
    later["chatId"] = serde_json::json!("kept");
    let v = post_path(&b.0, "/offergate/v1/encore/messages", &later)
        .await
        .json();
    assert_eq!(v["reason"], "opted_out", "{v}");
    redis_cli(redis.addr, &["CONFIG", "SET", "maxmemory", "0"]).unwrap();

    // Redis stalls: an opt-out is refused (503, retry), not kept here only.
    redis.freeze(true);
    let refused = post_path(&a.gw, "/offergate/v1/encore/opt-out", &thread("stalled")).await;
    let mut stop = message("wamid.s1", now);
    stop["chatId"] = serde_json::json!("stalled-2");
    stop["text"] = serde_json::json!("STOP");
    let stop_refused = post_path(&a.gw, "/offergate/v1/encore/messages", &stop).await;
    redis.freeze(false);
    assert_eq!(refused.status, 503, "{:?}", refused.body);
    assert_eq!(refused.json()["error"]["code"], "state_unavailable");
    assert_eq!(stop_refused.status, 503, "{:?}", stop_refused.body);
    until_connected(&a.gw).await;
    // Retried once Redis answers: kept, and the other replica sees both.
    let out = post_path(&a.gw, "/offergate/v1/encore/opt-out", &thread("stalled")).await;
    assert_eq!(out.status, 200);
    let again = post_path(&a.gw, "/offergate/v1/encore/messages", &stop).await;
    assert_eq!(again.json()["reason"], "opted_out");
    // The other replica's health watch saw the stall too: until it sees
    // Redis again it decides alone (`fail_open`), without the fleet's
    // opt-outs.
    until_connected(&b.0).await;
    for (chat, id) in [("stalled", "wamid.x1"), ("stalled-2", "wamid.x2")] {
        let mut m = message(id, now + 1_000);
        m["chatId"] = serde_json::json!(chat);
        let v = post_path(&b.0, "/offergate/v1/encore/messages", &m)
            .await
            .json();
        assert_eq!(v["reason"], "opted_out", "{chat}: {v}");
    }
    assert_eq!(a.calls(Route::EncoreOffers), 0);
    b.0.shutdown().await;
    a.stop().await;
}
