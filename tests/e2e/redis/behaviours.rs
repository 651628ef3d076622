//! What holds for a fleet on any topology: one partner call for duplicates,
//! the partner quota and its pause, the per-thread cap and the conversation
//! counted across replicas.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_on_two_replicas_cost_one_partner_call() {
    duplicates_cost_one_partner_call(&RedisServer::start().await).await;
}

pub(super) async fn duplicates_cost_one_partner_call(redis: &dyn Shared) {
    let (a, b) = connected_pair(redis).await;

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

pub(super) async fn quota_and_pause_hold_for_the_fleet(redis: &dyn Shared) {
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

pub(super) async fn thread_cap_counted_across_replicas(redis: &dyn Shared) {
    let (a, b) = connected_pair(redis).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_is_the_fleets_redeliveries_included() {
    conversation_is_the_fleets(&RedisServer::start().await).await;
}

pub(super) async fn conversation_is_the_fleets(redis: &dyn Shared) {
    let (a, b) = connected_pair(redis).await;
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
