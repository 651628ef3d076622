//! What a call costs in Redis round trips, counted with `MONITOR` on a
//! redis-server of the test's own: every command a replica sends for one
//! call. The bounds are the README's ("Running a fleet on managed Redis");
//! a change that adds a round trip fails here.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::fleet::Killed;
use crate::redis_server::RedisServer;
use crate::support::*;

/// `redis-cli MONITOR`'s lines, as they come.
struct Monitor {
    _child: Killed,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Monitor {
    async fn start(redis: &RedisServer) -> Monitor {
        let mut child = Command::new("redis-cli")
            .args([
                "-h",
                &redis.addr.ip().to_string(),
                "-p",
                &redis.addr.port().to_string(),
                "MONITOR",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-cli (tests/run installs redis-tools)");
        let out = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let m = Monitor {
            _child: Killed(child),
            lines,
        };
        // MONITOR answers OK once it listens.
        eventually(Duration::from_secs(5), "MONITOR listens", || async {
            m.lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("OK"))
                .then_some(())
        })
        .await;
        m
    }

    /// The commands seen during `call` (the health PINGs aside): each one a
    /// round trip, as each is awaited before the next is sent.
    async fn during<F: std::future::Future<Output = ()>>(&self, call: F) -> Vec<String> {
        // Marks of their own before and after, so only this call's commands
        // count.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (before, after) = (format!("before-{n}"), format!("after-{n}"));
        let mark = |m: &str| {
            crate::redis_server::redis_cli(self.addr(), &["ECHO", m]);
        };
        mark(&before);
        call.await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        mark(&after);
        let quoted = |m: &str| format!("\"{m}\"");
        let lines = eventually(Duration::from_secs(5), "the marks are seen", || async {
            let l = self.lines.lock().unwrap().clone();
            l.iter().any(|x| x.contains(&quoted(&after))).then_some(l)
        })
        .await;
        let start = lines
            .iter()
            .position(|l| l.contains(&quoted(&before)))
            .unwrap();
        let end = lines
            .iter()
            .position(|l| l.contains(&quoted(&after)))
            .unwrap();
        lines[start + 1..end]
            .iter()
            // A script's own commands are shown as `[0 lua]`: not round trips.
            .filter(|l| !l.contains(" lua] ") && !l.contains("\"PING\""))
            .cloned()
            .collect()
    }

    fn addr(&self) -> std::net::SocketAddr {
        ADDR.with(|a| a.get().unwrap())
    }
}

thread_local! {
    static ADDR: std::cell::Cell<Option<std::net::SocketAddr>> = const { std::cell::Cell::new(None) };
}

#[tokio::test(flavor = "current_thread")]
async fn a_forwarded_call_costs_the_round_trips_the_readme_says() {
    let redis = RedisServer::start().await;
    ADDR.with(|a| a.set(Some(redis.addr)));
    let url = redis.url();
    let h = Harness::with_config(|o| {
        config_for(
            o,
            "",
            &format!("[state]\nbackend = \"redis\"\nredis_url = \"{url}\"\ntimeout_ms = 2000\n"),
        )
    })
    .await;
    // Connected, and the scripts loaded (a first call loads each): calls
    // reach Redis, their finish included.
    eventually(Duration::from_secs(10), "calls reach Redis", || async {
        let a = h.post(ENCORE_PATH, &[], &encore_body()).await;
        let finished = h
            .metrics()
            .await
            .lines()
            .find(|l| l.starts_with("offergate_state_latency_seconds_count{op=\"finish\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0);
        (a.json()["offer"]["clickUrl"].is_string() && finished > 0).then_some(())
    })
    .await;
    h.post(&besitos_path(PARTNER), &[], "{}").await;
    // A retry too, so the partner quota's own script is loaded before the
    // count (a first use costs a SCRIPT LOAD once per Redis).
    plan(
        &h,
        offergate::call::route::Route::EncoreOffers,
        &["503", "ok"],
    );
    h.post(ENCORE_PATH, &[], &encore_body()).await;
    let monitor = Monitor::start(&redis).await;
    // (Those of the calls made before Redis was connected are not counted.)
    let errors_before = state_errors(&h.metrics().await);

    let body = encore_body();
    let key = [("idempotency-key", "round-trips-1")];
    let forward = monitor
        .during(async {
            let a = h.post(ENCORE_PATH, &key, &body).await;
            assert!(
                a.json()["offer"]["clickUrl"].is_string(),
                "{}",
                String::from_utf8_lossy(&a.body)
            );
        })
        .await;
    let replay = monitor
        .during(async {
            let a = h.post(ENCORE_PATH, &key, &body).await;
            assert_eq!(a.headers["idempotent-replayed"], "true");
        })
        .await;
    let besitos = monitor
        .during(async {
            let a = h
                .post(
                    &besitos_path(PARTNER),
                    &[("idempotency-key", "round-trips-2")],
                    "{}",
                )
                .await;
            assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        })
        .await;
    // A partner 503, then the offer: the retry's quota is asked for (the
    // first try's came with the caller's bucket).
    let before = h.calls(offergate::call::route::Route::EncoreOffers);
    plan(
        &h,
        offergate::call::route::Route::EncoreOffers,
        &["503", "ok"],
    );
    let retried = monitor
        .during(async {
            let a = h.post(ENCORE_PATH, &[], &encore_body()).await;
            assert!(
                a.json()["offer"]["clickUrl"].is_string(),
                "{}",
                String::from_utf8_lossy(&a.body)
            );
        })
        .await;
    assert_eq!(
        h.calls(offergate::call::route::Route::EncoreOffers) - before,
        2,
        "two tries"
    );
    assert!(
        retried.len() == forward.len() + 1,
        "{} round trips with a retry:\n{retried:#?}",
        retried.len()
    );
    let limits = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| l.contains(":pause:partner"))
            .count()
    };
    assert_eq!(
        limits(&retried),
        2,
        "one limit script per try: {retried:#?}"
    );
    // An Encore offer: one script before the partner (the claim, the
    // thread's slot, the caller's bucket with the first try's quota and the
    // pause), then one sent as the caller is answered (the finish, which
    // keeps the offer's link in the thread too).
    assert!(
        forward.len() == 2,
        "{} round trips for a forwarded Encore call:\n{forward:#?}",
        forward.len()
    );
    let admission = &forward[0];
    for part in [
        ":lock:",
        ":thread:",
        ":caller:",
        ":pause:partner",
        ":quota:partner",
    ] {
        assert!(
            admission.contains(part),
            "the first is the whole admission: {admission}"
        );
    }
    let finish = &forward[1];
    for part in [":answer:", ":lock:", ":thread:", "\"l:"] {
        assert!(
            finish.contains(part),
            "the second is the finish with the link: {finish}"
        );
    }
    // Besitos has no thread: the claim with the limits, the finish.
    assert!(
        besitos.len() == 2,
        "{} round trips for a forwarded Besitos call:\n{besitos:#?}",
        besitos.len()
    );
    assert!(
        besitos[0].contains(":lock:") && besitos[0].contains(":pause:partner"),
        "{besitos:#?}"
    );
    // A replay this replica answered itself costs none.
    assert!(
        replay.is_empty(),
        "{} round trips for a replay:\n{replay:#?}",
        replay.len()
    );
    // Every call above reached Redis (none fell back to this replica's own
    // state after an error): the counts are of the fleet's path.
    assert_eq!(
        state_errors(&h.metrics().await),
        errors_before,
        "state errors during the counts"
    );
    println!(
        "round trips: forward {}, besitos {}, replay {}\n{forward:#?}\n{besitos:#?}\n{replay:#?}",
        forward.len(),
        besitos.len(),
        replay.len()
    );
    h.stop().await;
}

/// Shared-state calls that failed so far, all operations together.
fn state_errors(page: &str) -> u64 {
    page.lines()
        .filter(|l| l.starts_with("offergate_state_errors_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// What a stopping replica sent in the background (its last calls'
/// finishes) lands before it exits: the fleet finds the answer stored and
/// the key free, not locked until the lock expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_stops_leaves_its_last_answers_stored() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let mut f = crate::fleet::Fleet::start(
        &[
            ("OFFERGATE_STATE__BACKEND", "redis"),
            ("OFFERGATE_STATE__REDIS_URL", url.as_str()),
            ("OFFERGATE_STATE__TIMEOUT_MS", "2000"),
        ],
        None,
    )
    .await;
    eventually(Duration::from_secs(10), "Redis answers", || async {
        let req = http::Request::get(format!("http://{}/readyz", f.admin))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let ready = send_with(&f.client, req).await;
        String::from_utf8_lossy(&ready.body)
            .contains("redis ok")
            .then_some(())
    })
    .await;
    // The partner slow, and Redis frozen while it answers: each finish is
    // still on its way when the caller has the answer and the stop begins.
    f.slow_partner(10, 300).await;
    let calls = futures_util::future::join_all((0..10).map(|n| {
        let body: serde_json::Value = serde_json::from_str(&encore_body()).unwrap();
        let f = &f;
        async move {
            let req = http::Request::post(format!("http://{}{ENCORE_PATH}", f.listen))
                .header("content-type", "application/json")
                .header("idempotency-key", format!("stopping-{n}"))
                .body(http_body_util::Full::new(bytes::Bytes::from(
                    body.to_string(),
                )))
                .unwrap();
            send_with(&f.client, req).await
        }
    }));
    let freeze = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        redis.freeze(true);
    };
    let (answers, ()) = futures_util::future::join(calls, freeze).await;
    assert!(answers.iter().all(|a| a.status == 200));
    crate::fleet::signal(&f.gw.0, "TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.freeze(false);
    let status = crate::support::exit_of(&mut f.gw.0, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    for n in 0..10 {
        let key = format!("{{key//stopping-{n}}}");
        let stored = crate::redis_server::redis_cli(
            redis.addr,
            &["EXISTS", &format!("offergate:encore_offers:answer:{key}")],
        );
        let locked = crate::redis_server::redis_cli(
            redis.addr,
            &["EXISTS", &format!("offergate:encore_offers:lock:{key}")],
        );
        assert_eq!(
            (
                stored.as_deref().map(str::trim),
                locked.as_deref().map(str::trim)
            ),
            (Some("1"), Some("0")),
            "stopping-{n}: stored, not locked"
        );
    }
}
