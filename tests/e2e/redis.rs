//! Two replicas over one Redis, in front of one simulator: idempotency, the
//! partner quota and the partner's 429 pause hold for the fleet; Redis
//! trouble is answered per `on_error`; a replica killed while holding a lock
//! frees its key at the lock's expiry.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use offergate::call::route::Route;
use offergate::{Config, Gateway};

use crate::redis_cluster::RedisCluster;
use crate::redis_sentinel::RedisSentinel;
use crate::redis_server::{RedisServer, SecureRedis};
use crate::support::*;

/// Where the replicas share their state: the `[state]` lines of one Redis
/// or of a cluster.
pub trait Shared {
    fn state(&self) -> String;
    /// Clears every key between two behaviours (where they could meet).
    fn clear(&self) {}
}

/// Every fleet behaviour on `redis`, one after another (the quota last:
/// the partner's pause it leaves would refuse the others' calls).
async fn every_fleet_behaviour(redis: &dyn Shared) {
    duplicates_cost_one_partner_call(redis).await;
    redis.clear();
    thread_cap_counted_across_replicas(redis).await;
    redis.clear();
    conversation_is_the_fleets(redis).await;
    redis.clear();
    quota_and_pause_hold_for_the_fleet(redis).await;
    redis.clear();
}

impl Shared for RedisServer {
    fn state(&self) -> String {
        format!(
            "[state]\nbackend = \"redis\"\nredis_url = \"{}\"\ntimeout_ms = 250\n",
            self.url()
        )
    }
}

impl Shared for SecureRedis {
    fn state(&self) -> String {
        SecureRedis::state(self)
    }
}

impl Shared for RedisSentinel {
    fn state(&self) -> String {
        RedisSentinel::state(self)
    }

    fn clear(&self) {
        self.flush();
    }
}

impl Shared for RedisCluster {
    fn state(&self) -> String {
        RedisCluster::state(self)
    }

    fn clear(&self) {
        self.flush();
    }
}

/// A replica's config: the test config, on `redis`.
fn replica(origin: &str, redis: &dyn Shared, extra: &str) -> Config {
    let state = format!("{}{extra}", redis.state());
    let mut c = config_for(origin, "", &state);
    for r in [&mut c.encore.resilience, &mut c.besitos.resilience] {
        r.rate_limit.client.per_second = 10_000.0;
        r.rate_limit.client.burst = 10_000;
        r.rate_limit.partner.per_second = 10_000.0;
        r.rate_limit.partner.burst = 10_000;
    }
    c
}

/// A second replica beside the harness's, same simulator, same Redis.
async fn second(_beside: &Harness, config: Config) -> Harness2 {
    Harness2(Gateway::start(config).await.expect("second replica"))
}

struct Harness2(Gateway);

async fn post_to(gw: &Gateway, headers: &[(&str, &str)], body: &str) -> Answer {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let mut req = http::Request::post(format!("http://{}{ENCORE_PATH}", gw.proxy_addr))
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send_with(
        &client,
        req.body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap(),
    )
    .await
}

/// Two replicas of the test config on `redis`, each connected to it.
async fn connected_pair(redis: &dyn Shared) -> (Harness, Harness2) {
    let a = Harness::with_config(|o| replica(o, redis, "")).await;
    let b = second(&a, replica(a.sim.origin(), redis, "")).await;
    until_connected(&a.gw).await;
    until_connected(&b.0).await;
    (a, b)
}

/// Waits until `gw` reaches Redis (its `/readyz` says so).
async fn until_connected(gw: &Gateway) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    eventually(
        Duration::from_secs(20),
        "the replica reaches Redis",
        || async {
            let req = http::Request::get(format!("http://{}/readyz", gw.admin_addr))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            String::from_utf8_lossy(&send_with(&client, req).await.body)
                .contains("redis ok")
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_on_two_replicas_cost_one_partner_call() {
    duplicates_cost_one_partner_call(&RedisServer::start().await).await;
}

async fn duplicates_cost_one_partner_call(redis: &dyn Shared) {
    let a = Harness::with_config(|o| replica(o, redis, "")).await;
    let b = second(&a, replica(a.sim.origin(), redis, "")).await;
    until_connected(&a.gw).await;
    until_connected(&b.0).await;

    let body = encore_body();
    let key = [("idempotency-key", "webhook-1")];
    let first = a.post(ENCORE_PATH, &key, &body).await;
    let again = post_to(&b.0, &key, &body).await;
    assert!(first.json()["offer"]["clickUrl"].is_string());
    assert!(again.replayed(), "the other replica replays");
    assert_eq!(again.body, first.body, "the same short link");
    assert_eq!(a.calls(Route::EncoreOffers), 1);

    // 50 at once, spread over both, while the partner is slow: one call.
    plan(&a, Route::EncoreOffers, &["delay:300"]);
    let body = encore_body();
    let key = [("idempotency-key", "webhook-2")];
    let answers = join_all((0..50).map(|n| {
        let (gw, body) = (if n % 2 == 0 { &a.gw } else { &b.0 }, body.clone());
        async move { post_to(gw, &key, &body).await }
    }))
    .await;
    assert!(answers
        .iter()
        .all(|x| x.status == 200 && x.body == answers[0].body));
    assert_eq!(
        a.calls(Route::EncoreOffers),
        2,
        "one call for fifty duplicates"
    );

    // A duplicate on the other replica hears the leader's finish (pub/sub)
    // and asks Redis once more then: three asks in all (found in flight,
    // again once subscribed, the answer; a fourth only if the finish took
    // longer than the 250 ms fallback), where a 25 ms poll would ask six
    // times over the leader's 110 ms left, and answer 12 ms late on the
    // median. Counted on the waiter's own metrics: a busy machine slows
    // the answer, not the count.
    let asks = |m: &str| {
        sample(m, r#"offergate_state_latency_seconds_count{op="claim"}"#)
            + sample(m, r#"offergate_state_latency_seconds_count{op="admit"}"#)
    };
    let mut lags = Vec::new();
    for n in 0..7 {
        plan(&a, Route::EncoreOffers, &["delay:150"]);
        let body = encore_body();
        let key = format!("webhook-heard-{n}");
        let key = [("idempotency-key", key.as_str())];
        let asked_before = asks(&metrics_of(&b.0).await);
        let lead = async {
            let answer = post_to(&a.gw, &key, &body).await;
            (answer, offergate::call::clock::now())
        };
        let waiter = async {
            tokio::time::sleep(Duration::from_millis(40)).await;
            let answer = post_to(&b.0, &key, &body).await;
            (answer, offergate::call::clock::now())
        };
        let ((led, led_at), (waited, waited_at)) = futures_util::future::join(lead, waiter).await;
        assert!(
            waited.replayed() && waited.body == led.body,
            "the leader's answer"
        );
        let asked = asks(&metrics_of(&b.0).await) - asked_before;
        assert!(
            asked <= 4.0,
            "the waiter heard the finish: it asked Redis {asked} times"
        );
        lags.push(waited_at.saturating_duration_since(led_at));
    }
    lags.sort();
    println!("waiters answered after their leaders by {lags:?}");

    // The same key with another body, on the other replica: 422.
    let changed = post_to(&b.0, &[("idempotency-key", "webhook-1")], &encore_body()).await;
    assert_eq!(
        (changed.status.as_u16(), changed.code().as_str()),
        (422, "idempotency_key_reused")
    );
    assert_eq!(a.calls(Route::EncoreOffers), 2 + 7);
    b.0.shutdown().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partner_quota_and_its_pause_hold_for_the_fleet() {
    quota_and_pause_hold_for_the_fleet(&RedisServer::start().await).await;
}

async fn quota_and_pause_hold_for_the_fleet(redis: &dyn Shared) {
    let tune = |mut c: Config| {
        let r = &mut c.encore.resilience;
        r.rate_limit.partner.per_second = 0.5;
        r.rate_limit.partner.burst = 5;
        r.rate_limit.max_wait = Duration::ZERO;
        r.retry.max_retries = 0;
        r.idempotency.enabled = false;
        c
    };
    let a = Harness::with_config(|o| tune(replica(o, redis, ""))).await;
    let b = second(&a, tune(replica(a.sim.origin(), redis, ""))).await;
    until_connected(&a.gw).await;
    until_connected(&b.0).await;
    let mut through = 0;
    for n in 0..30 {
        let gw = if n % 2 == 0 { &a.gw } else { &b.0 };
        let x = post_to(gw, &[], &encore_body()).await;
        through += usize::from(x.fallback().is_none());
    }
    assert!(
        a.calls(Route::EncoreOffers) <= 6,
        "{} partner calls",
        a.calls(Route::EncoreOffers)
    );
    assert_eq!(through as u64, a.calls(Route::EncoreOffers));
    assert!(through >= 5, "the burst went through");

    // A 429 seen by one replica pauses the other.
    let c = Harness::with_config(|o| {
        let mut c = tune(replica(o, redis, "key_prefix = \"pause\"\n"));
        c.encore.resilience.rate_limit.partner.per_second = 1_000.0;
        c
    })
    .await;
    let d = second(&c, {
        let mut x = tune(replica(c.sim.origin(), redis, "key_prefix = \"pause\"\n"));
        x.encore.resilience.rate_limit.partner.per_second = 1_000.0;
        x
    })
    .await;
    until_connected(&c.gw).await;
    until_connected(&d.0).await;
    plan(&c, Route::EncoreOffers, &["429:3"]);
    let seen = c.post(ENCORE_PATH, &[], &encore_body()).await;
    assert_eq!(seen.fallback(), Some("upstream_status_429"));
    let other = post_to(&d.0, &[], &encore_body()).await;
    assert_eq!(
        other.fallback(),
        Some("circuit_open"),
        "the other replica is paused too"
    );
    assert_eq!(c.calls(Route::EncoreOffers), 1);
    d.0.shutdown().await;
    c.stop().await;
    b.0.shutdown().await;
    a.stop().await;
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_demos_on_one_redis_replay_each_others_answers() {
    let redis = RedisServer::start().await;
    let free = || {
        std::net::TcpListener::bind("127.0.0.5:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let mut demos = Vec::new();
    for _ in 0..2 {
        let (listen, admin, sim) = (free(), free(), free());
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_offergate"))
            .args(["demo", "--state", "redis", "--redis-url", &redis.url()])
            .args([
                "--listen",
                &listen.to_string(),
                "--admin-listen",
                &admin.to_string(),
            ])
            .args(["--simulator-listen", &sim.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        demos.push((crate::fleet::Killed(child), listen, admin, sim));
    }
    for (_, _, admin, _) in &demos {
        eventually(Duration::from_secs(20), "a demo reaches Redis", || async {
            let req = http::Request::get(format!("http://{admin}/readyz"))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            let r = tokio::time::timeout(Duration::from_secs(1), client.request(req))
                .await
                .ok()?
                .ok()?;
            use http_body_util::BodyExt;
            let body = r.into_body().collect().await.ok()?.to_bytes();
            String::from_utf8_lossy(&body)
                .contains("redis ok")
                .then_some(())
        })
        .await;
    }
    let body = ENCORE_BODY;
    let mut links = Vec::new();
    for (_, listen, _, _) in &demos {
        let req = http::Request::post(format!("http://{listen}{ENCORE_PATH}"))
            .header("content-type", "application/json")
            .header("idempotency-key", "one-webhook")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        let a = send_with(&client, req).await;
        links.push(a.json()["offer"]["clickUrl"].clone());
    }
    assert!(links[0].is_string());
    assert_eq!(
        links[0], links[1],
        "the second demo replays the first's short link"
    );
    // Only the first demo's simulator was called.
    let mut calls = Vec::new();
    for (_, _, _, sim) in &demos {
        let req = http::Request::get(format!("http://{sim}/__sim/calls"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        calls.push(send_with(&client, req).await.json()["encore_offers"].as_u64());
    }
    assert_eq!(calls, [Some(1), Some(0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_thread_cap_is_counted_across_replicas() {
    thread_cap_counted_across_replicas(&RedisServer::start().await).await;
}

async fn thread_cap_counted_across_replicas(redis: &dyn Shared) {
    let a = Harness::with_config(|o| replica(o, redis, "")).await;
    let b = second(&a, replica(a.sim.origin(), redis, "")).await;
    until_connected(&a.gw).await;
    until_connected(&b.0).await;
    let mut offers = 0;
    let mut skipped = 0;
    for n in 0..6 {
        // One thread, six different messages (the platform varies, so the
        // bodies are not duplicates of each other).
        let body = ENCORE_BODY.replace("\"ios\"", ["\"ios\"", "\"android\"", "\"web\""][n % 3]);
        let body = body.replace("client-42", &format!("client-42\",\"n\":\"{n}"));
        let x = post_to(if n % 2 == 0 { &a.gw } else { &b.0 }, &[], &body).await;
        offers += usize::from(x.json()["offer"].is_object());
        skipped += usize::from(x.headers.contains_key("x-offergate-skipped"));
    }
    assert_eq!(
        (offers, skipped),
        (3, 3),
        "the cap of 3 holds for the fleet"
    );
    assert_eq!(a.calls(Route::EncoreOffers), 3);
    b.0.shutdown().await;
    a.stop().await;
}

async fn post_path(gw: &Gateway, path: &str, body: &serde_json::Value) -> Answer {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let req = http::Request::post(format!("http://{}{path}", gw.proxy_addr))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap();
    send_with(&client, req).await
}

fn message(id: &str, at: i64) -> serde_json::Value {
    serde_json::json!({
        "clientId": "client-42", "chatId": "wa:15550001111:15551234567",
        "messageId": id, "sentAt": at, "text": "hi",
        "attributes": {"countryCode": "US", "language": "en", "platform": "ios"},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_is_the_fleets_redeliveries_included() {
    conversation_is_the_fleets(&RedisServer::start().await).await;
}

async fn conversation_is_the_fleets(redis: &dyn Shared) {
    let a = Harness::with_config(|o| replica(o, redis, "")).await;
    let b = second(&a, replica(a.sim.origin(), redis, "")).await;
    until_connected(&a.gw).await;
    until_connected(&b.0).await;
    let now = offergate::call::clock::wall_ms();
    // One webhook delivered ten times at once, to both replicas, while
    // Encore takes its time: one decision, one Encore call, one answer.
    plan(&a, Route::EncoreOffers, &["delay:300"]);
    let first = message("wamid.1", now - 60_000);
    let deliveries = (0..10).map(|n| {
        let gw = if n % 2 == 0 { &a.gw } else { &b.0 };
        post_path(gw, "/offergate/v1/encore/messages", &first)
    });
    let answers = join_all(deliveries).await;
    assert_eq!(
        a.calls(Route::EncoreOffers),
        1,
        "one Encore call for ten deliveries"
    );
    let body = &answers[0].body;
    for x in &answers {
        assert_eq!(x.status, 200);
        assert_eq!(&x.body, body, "the same answer to every delivery");
    }
    assert_eq!(answers.iter().filter(|x| x.replayed()).count(), 9);
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(
        (v["decision"].as_str(), v["offers_shown"].as_u64()),
        (Some("offer"), Some(1))
    );
    let link = v["offer"]["clickUrl"].as_str().unwrap().to_string();

    // The thread is the fleet's: the next message on the other replica is mid-thread.
    let next = post_path(
        &b.0,
        "/offergate/v1/encore/messages",
        &message("wamid.2", now - 30_000),
    )
    .await;
    let v = next.json();
    assert_eq!(
        (v["reason"].as_str(), v["offers_shown"].as_u64()),
        (Some("mid_thread"), Some(1))
    );
    // An offer one replica minted, freed on the other; an opt-out likewise.
    let thread =
        serde_json::json!({"clientId": "client-42", "chatId": "wa:15550001111:15551234567"});
    let mut unsent = thread.clone();
    unsent["clickUrl"] = serde_json::json!(link);
    let freed = post_path(&b.0, "/offergate/v1/encore/offers/unsent", &unsent).await;
    assert_eq!(
        freed.json(),
        serde_json::json!({"freed": true, "offers_shown": 0})
    );
    post_path(&a.gw, "/offergate/v1/encore/opt-out", &thread).await;
    let mut later = message("wamid.3", now);
    later["previousMessageAt"] = serde_json::json!(now - 13 * 3_600_000);
    let v = post_path(&b.0, "/offergate/v1/encore/messages", &later)
        .await
        .json();
    assert_eq!(v["reason"], "opted_out");
    // The offers route refuses the opted-out thread too, on either replica
    // (the slot's script reads the opt-out), without calling Encore.
    let offer_body =
        serde_json::json!({"clientId": "client-42", "chatId": "wa:15550001111:15551234567",
        "attributes": {"countryCode": "US", "language": "en", "platform": "ios"}})
        .to_string();
    for gw in [&a.gw, &b.0] {
        let refused = post_to(gw, &[], &offer_body).await;
        assert_eq!(refused.headers["x-offergate-skipped"], "opted_out");
        assert!(refused.json()["offer"].is_null());
    }
    assert_eq!(a.calls(Route::EncoreOffers), 1);
    b.0.shutdown().await;
    a.stop().await;
}

/// The fleet's behaviours, each as on one Redis, on a Redis Cluster of 3
/// masters and 3 replicas: every script's keys share a slot (its hash tag),
/// and redis-rs's cluster client routes each to its master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fleet_behaviour_holds_on_a_cluster() {
    every_fleet_behaviour(&RedisCluster::start().await).await;
}

/// The same over TLS with a private CA and a client certificate, as an ACL
/// user allowed only the README's minimal set of commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fleet_behaviour_holds_over_tls_as_a_minimal_acl_user() {
    every_fleet_behaviour(&SecureRedis::start().await).await;
}

/// A server whose certificate names only a host name, never the address
/// offergate is given (a private DNS name behind an IP, as managed
/// services and service meshes hand out): without `[state.tls]
/// server_name` the certificate is refused and offergate never connects;
/// with it, every fleet behaviour holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_is_verified_against_server_name() {
    let redis = SecureRedis::start_named("redis.offergate.test").await;
    let unnamed = StateLines(
        redis
            .state()
            .replace(", server_name = \"redis.offergate.test\"", ""),
    );
    never_connects(&unnamed).await;
    every_fleet_behaviour(&redis).await;
}

/// The Sentinel master and its replica over TLS only, their certificate
/// naming only a host name: the master the sentinels name (an address) is
/// verified as `server_name`, and refused without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_master_is_verified_against_server_name() {
    let sentinel = RedisSentinel::start_tls("redis.offergate.test").await;
    let named = StateLines(sentinel.state());
    assert!(named.state().contains("server_name"));
    never_connects(&StateLines(
        named
            .state()
            .replace(", server_name = \"redis.offergate.test\"", ""),
    ))
    .await;
    duplicates_cost_one_partner_call(&named).await;
}

/// A replica on `state` that, 2 s after it starts, has not reached Redis.
async fn never_connects(state: &dyn Shared) {
    assert!(!state.state().contains("server_name"));
    let a = Harness::with_config(|o| replica(o, state, "")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let req = http::Request::get(format!("http://{}/readyz", a.gw.admin_addr))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let ready = String::from_utf8_lossy(&send_with(&client, req).await.body).to_string();
    assert!(
        ready.contains("redis") && !ready.contains("redis ok"),
        "not connected: the certificate does not name the address: {ready}"
    );
    a.stop().await;
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

/// The fleet's behaviours on a master found through Sentinel (1 master, 1
/// replica, 3 sentinels); then the master is killed under load from two
/// replicas: every caller is answered within its deadline, both follow the
/// promoted replica, and the fleet replays across replicas again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fleet_behaviour_holds_on_sentinel_and_a_failover_is_followed() {
    let mut sentinel = RedisSentinel::start().await;
    every_fleet_behaviour(&sentinel).await;

    let master = sentinel.master;
    let state = StateLines(sentinel.state());
    // Every key lives on the one master.
    let replica = sentinel.replica;
    let kill = || {
        caught_up(master, replica, Duration::from_secs(3));
        let held = answers_held(&[replica]);
        sentinel.kill_master();
        held
    };
    let followed = failover_under_load(&state, kill, |_| true).await;
    assert_eq!(
        sentinel.current_master(),
        sentinel.replica,
        "the replica was promoted"
    );
    assert_ne!(sentinel.current_master(), master);
    // The sentinels' 1 s of silence, their failover, and offergate's next look.
    assert!(
        followed < Duration::from_secs(6),
        "followed after {followed:?}"
    );
}

/// Two replicas on `shared` serving about 60 calls a second for 8 s, `kill`
/// called after 1 s: every caller is answered within its deadline; the time
/// from the kill until a key replays across the replicas again. Then every
/// key answered before the kill is asked of both replicas again: one answer
/// on both, and its first answer with no partner call wherever the nodes
/// left alive held it at the kill. Redis replicates asynchronously (on a
/// busy machine the replica can be half a second behind), so the master may
/// die with answers its replica never had: where the replica that led such
/// a key is asked first, it shares its copy again; where the other is, the
/// partner is asked once more, and only then.
async fn failover_under_load(
    shared: &dyn Shared,
    // Kills the master, and says which keys' answers the nodes left alive
    // held just before.
    mut kill: impl FnMut() -> std::collections::HashSet<String>,
    // Whether a call's duplicate check tells anything (its key lives on
    // the master that is killed).
    telling: impl Fn(&str) -> bool,
) -> Duration {
    let a = Harness::with_config(|o| replica(o, shared, "")).await;
    let b = second(&a, replica(a.sim.origin(), shared, "")).await;
    until_connected(&a.gw).await;
    until_connected(&b.0).await;
    let deadline = replica(a.sim.origin(), shared, "")
        .encore
        .resilience
        .deadline;
    let started = Instant::now();
    let mut killed_at = None;
    let mut held = std::collections::HashSet::new();
    let (mut answered, mut slow, mut n) = (0, 0, 0);
    let mut followed_after: Option<Duration> = None;
    // The telling keys answered before the kill: key, body, answer, when,
    // whether replica a led it.
    let mut before = Vec::new();
    // About 100 calls a second for 8 s, the master killed after 1 s.
    while started.elapsed() < Duration::from_secs(10) {
        if killed_at.is_none() && started.elapsed() > Duration::from_secs(1) {
            held = kill();
            killed_at = Some(Instant::now());
        }
        let key = format!("failover-{n}");
        let (gw, other) = if n % 2 == 0 {
            (&a.gw, &b.0)
        } else {
            (&b.0, &a.gw)
        };
        let t = Instant::now();
        let body = encore_body();
        let x = post_to(gw, &[("idempotency-key", &key)], &body).await;
        answered += usize::from(x.status == 200);
        if killed_at.is_none() && x.json()["offer"].is_object() && telling(&key) {
            let led_by_a = n % 2 == 0;
            before.push((
                key.clone(),
                body.clone(),
                x.body.clone(),
                Instant::now(),
                led_by_a,
            ));
        }
        slow += usize::from(t.elapsed() > deadline + Duration::from_millis(200));
        n += 1;
        // A telling call's duplicate on the other replica: replayed once
        // both are on the same (new) master.
        if let (Some(at), None, true) = (killed_at, followed_after, telling(&key)) {
            let y = post_to(other, &[("idempotency-key", &key)], &body).await;
            if x.json()["offer"].is_object() && y.replayed() && y.body == x.body {
                followed_after = Some(at.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(answered, n, "every caller answered");
    assert_eq!(slow, 0, "none past its deadline");
    let followed_after = followed_after.expect("the fleet followed the new master under load");
    let killed_at = killed_at.expect("killed");
    // Both replicas on the new master again (a replica still serving from
    // its own state under fail_open would answer alone): on a busy machine
    // one may follow later than the pair that showed the fleet following.
    until_connected(&a.gw).await;
    until_connected(&b.0).await;
    let calls = a.calls(Route::EncoreOffers);
    assert!(
        before.iter().any(|(key, ..)| held.contains(key)),
        "the replica had some answers at the kill: {} answered before it, {} held by the nodes left",
        before.len(),
        held.len()
    );
    // Asked of a, then b: a shares again what it led and the new master
    // lost; what b led is asked of the partner once more.
    let (mut lost, mut shared_again) = (Vec::new(), 0);
    for (key, body, first, at, led_by_a) in &before {
        let h = [("idempotency-key", key.as_str())];
        let (x, y) = (
            post_to(&a.gw, &h, body).await,
            post_to(&b.0, &h, body).await,
        );
        assert_eq!(x.body, y.body, "{key}: one answer on both replicas");
        if x.body != *first {
            assert!(
                !held.contains(key) && !led_by_a,
                "{key} lost, though {}",
                if *led_by_a {
                    "the replica asked first led it"
                } else {
                    "the new master had it"
                }
            );
            lost.push(killed_at.saturating_duration_since(*at));
        } else if !held.contains(key) {
            shared_again += 1;
        }
    }
    assert_eq!(
        a.calls(Route::EncoreOffers) - calls,
        lost.len() as u64,
        "a partner call only for an answer the new master never had"
    );
    eprintln!(
        "failover: {n} calls answered, none late; the fleet replayed across replicas {followed_after:?} after the kill; \
         of {} keys answered before it, {} the replicas held at the kill, {shared_again} were shared again by their leader, \
         {} asked of the partner again (answered {lost:?} before the kill)",
        before.len(),
        before.iter().filter(|(key, ..)| held.contains(key)).count(),
        lost.len()
    );
    b.0.shutdown().await;
    a.stop().await;
    followed_after
}

/// The master that serves the limits' slot (and so the partner quota) is
/// killed under load: its replica takes over after the cluster's node
/// timeout, redis-rs's cluster client follows, every caller is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_master_failover_is_followed_under_load() {
    let mut cluster = RedisCluster::start().await;
    cluster.replicas_in_sync().await;
    let master = cluster.master_of("encore_offers");
    // The idempotency keys whose answers live on that master too.
    let ranges = cluster.slots_of(master);
    let on_master: std::collections::HashSet<String> = (0..2_000)
        .map(|n| format!("failover-{n}"))
        .filter(|k| {
            let s = crate::redis_cluster::slot(&format!("key//{k}"));
            ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&s))
        })
        .collect();
    assert_eq!(
        crate::redis_cluster::slot("encore_offers"),
        crate::redis_server::redis_cli(master, &["cluster", "keyslot", "encore_offers"])
            .and_then(|slot| slot.trim().parse::<u16>().ok())
            .expect("redis-cli names the slot"),
        "the test's slot function is Redis's"
    );
    let state = StateLines(cluster.state());
    let others: Vec<_> = cluster
        .nodes
        .iter()
        .filter(|n| **n != master)
        .copied()
        .collect();
    let kill = || {
        let held = answers_held(&others);
        cluster.kill(master);
        held
    };
    let followed = failover_under_load(&state, kill, |k| on_master.contains(k)).await;
    let now = eventually(
        Duration::from_secs(10),
        "a replica serves the slot",
        || async {
            let m = std::panic::catch_unwind(|| cluster.master_of("encore_offers")).ok()?;
            (m != master).then_some(m)
        },
    )
    .await;
    assert_ne!(now, master, "a replica took the slot");
    // The cluster's 2 s node timeout, the promotion, the client's refresh.
    assert!(
        followed < Duration::from_secs(8),
        "followed after {followed:?}"
    );
}

/// The idempotency keys whose answers `nodes` hold now, as callers named
/// them.
fn answers_held(nodes: &[std::net::SocketAddr]) -> std::collections::HashSet<String> {
    nodes
        .iter()
        .filter_map(|n| crate::redis_server::redis_cli(*n, &["--scan", "--pattern", "*:answer:*"]))
        .flat_map(|keys| {
            keys.lines()
                .filter_map(|k| {
                    let id = k.split_once('{')?.1.strip_suffix('}')?;
                    id.rsplit('/').next().map(str::to_string)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Waits, `within` at most, until `replica` has applied what `master` had
/// written when asked. Replication is asynchronous: beside the rest of the
/// suite on a 2-core machine the master was killed, twice, with none of the
/// answers on its replica (79 answered, 0 held). Answers written after this
/// look may still be lost with the master, the case the test is about.
fn caught_up(master: std::net::SocketAddr, replica: std::net::SocketAddr, within: Duration) {
    let offset = |node, field: &str| {
        crate::redis_server::redis_cli(node, &["info", "replication"])?
            .lines()
            .find_map(|l| l.strip_prefix(field)?.trim().parse::<u64>().ok())
    };
    let Some(target) = offset(master, "master_repl_offset:") else {
        return;
    };
    let until = Instant::now() + within;
    while Instant::now() < until
        && offset(replica, "slave_repl_offset:").is_none_or(|at| at < target)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `[state]` lines as they are.
struct StateLines(String);

impl Shared for StateLines {
    fn state(&self) -> String {
        self.0.clone()
    }
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
