//! Reloading without a restart (SIGHUP) on the real binary: a rotated key is
//! used from the next call on, calls in flight lose nothing, an invalid
//! config is refused and the old one keeps serving, and settings that need a
//! restart are named.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::fleet::{signal, Fleet};
use crate::support::*;

/// The shipped config with the Encore key read from `key_file`.
fn config_with_key_file(key_file: &std::path::Path) -> String {
    let dir = key_file.parent().unwrap().join("shipped");
    let copy = shipped_config_in(&dir, "pk_live_unused", "t");
    std::fs::read_to_string(copy).unwrap().replace(
        &format!("{}/encore_api_key", dir.join("secrets").display()),
        &key_file.display().to_string(),
    )
}

/// A directory holding an Encore key file with `key` and the shipped config
/// reading it: (the directory, the key file, the config file).
fn with_key_file(key: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("encore_api_key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let config = dir.path().join("offergate.toml");
    std::fs::write(&config, config_with_key_file(&key_file)).unwrap();
    (dir, key_file, config)
}

async fn key_seen_by_partner(f: &Fleet) -> String {
    let req = Request::get(format!(
        "http://{}/__sim/last?route=encore_offers",
        f.sim_addr
    ))
    .body(Full::new(Bytes::new()))
    .unwrap();
    send_with(&f.client, req).await.json()["headers"]["x-api-key"][0]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn metric(f: &Fleet, series: &str) -> f64 {
    let req = Request::get(format!("http://{}/metrics", f.admin))
        .body(Full::new(Bytes::new()))
        .unwrap();
    sample(
        &String::from_utf8_lossy(&send_with(&f.client, req).await.body),
        series,
    )
}

/// Sends SIGHUP and waits until the reload counter moves.
/// Replaces `key_file` with `key` as a Kubernetes Secret update does (a new
/// file renamed over it, no signal sent), then waits for the watch's reload.
async fn replaced_and_reloaded(f: &Fleet, key_file: &Path, key: &str) {
    let next = key_file.with_extension("next");
    std::fs::write(&next, format!("{key}\n")).unwrap();
    std::fs::rename(&next, key_file).unwrap();
    eventually(
        Duration::from_secs(10),
        "the replaced key file is reloaded",
        || async {
            (metric(f, r#"offergate_config_reloads_total{result="success"}"#).await >= 1.0)
                .then_some(())
        },
    )
    .await;
}

async fn reload(f: &Fleet, result: &str) {
    let series = format!("offergate_config_reloads_total{{result=\"{result}\"}}");
    let before = metric(f, &series).await;
    signal(&f.gw.0, "HUP");
    let what = format!("a reload counted as {result}");
    eventually(Duration::from_secs(10), &what, || async {
        (metric(f, &series).await > before).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_used_from_the_next_call_and_a_bad_config_is_refused() {
    let (dir, key_file, config) = with_key_file("pk_live_first_key");
    let log_path = dir.path().join("offergate.log");
    let f = Fleet::start_with(
        config.to_str().unwrap(),
        &[],
        Some(std::fs::File::create(&log_path).unwrap()),
    )
    .await;
    assert_eq!(f.calls(1, 0).await, 1);
    assert_eq!(key_seen_by_partner(&f).await, "pk_live_first_key");

    // Rotation while 30 calls are in flight: none is lost.
    std::fs::write(&key_file, "pk_live_second_key\n").unwrap();
    let calls_before = f.partner_calls().await;
    f.slow_partner(30, 400).await;
    let in_flight = f.calls(30, 0);
    let rotate = async {
        // Once every call has reached the (slow) partner.
        f.partner_reached(calls_before + 30).await;
        reload(&f, "success").await;
    };
    let (answered, ()) = tokio::join!(in_flight, rotate);
    assert_eq!(answered, 30, "no call lost to the reload");
    assert_eq!(f.calls(1, 0).await, 1);
    assert_eq!(
        key_seen_by_partner(&f).await,
        "pk_live_second_key",
        "the next call uses the new key"
    );

    // An invalid config is refused; the running one keeps serving.
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        good.replace("try_timeout_ms = 1500", "try_timeout_ms = 0"),
    )
    .unwrap();
    std::fs::write(&key_file, "pk_live_third_key\n").unwrap();
    reload(&f, "failure").await;
    assert_eq!(f.calls(1, 0).await, 1);
    assert_eq!(
        key_seen_by_partner(&f).await,
        "pk_live_second_key",
        "the old config serves on"
    );

    // A setting that cannot change live is applied at the next restart, and said so.
    std::fs::write(
        &config,
        good.replace("max_in_flight = 1024", "max_in_flight = 1000"),
    )
    .unwrap();
    reload(&f, "success").await;
    assert_eq!(f.calls(1, 0).await, 1);
    assert_eq!(key_seen_by_partner(&f).await, "pk_live_third_key");
    assert!(metric(&f, "offergate_config_last_reload_success_timestamp_seconds").await > 1.7e9);

    signal(&f.gw.0, "TERM");
    let mut f = f;
    exit_of(&mut f.gw.0, Duration::from_secs(10));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("config reload refused") && log.contains("encore.try_timeout_ms"),
        "{log}"
    );
    assert!(log.contains("needs_restart=server"), "{log}");
    assert!(!log.contains("pk_live_"), "no key in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_reload_watch_a_rewritten_key_file_is_picked_up_without_a_signal() {
    let (_dir, key_file, config) = with_key_file("pk_live_watched_one");
    // The shipped default: no setting of the test's own turns it on.
    assert!(std::fs::read_to_string(&config)
        .unwrap()
        .contains("\nwatch = true\n"));
    let f = Fleet::start_with(config.to_str().unwrap(), &[], None).await;
    assert_eq!(f.calls(1, 0).await, 1);
    assert_eq!(key_seen_by_partner(&f).await, "pk_live_watched_one");
    replaced_and_reloaded(&f, &key_file, "pk_live_watched_two").await;
    assert_eq!(f.calls(1, 0).await, 1);
    assert_eq!(key_seen_by_partner(&f).await, "pk_live_watched_two");
}

/// A key file replaced at once when the gateway says it is ready (its watch
/// may not have looked at the files yet) is still picked up: the watch
/// starts from the files as the config was read, not as it first finds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_reload_watch_a_key_file_replaced_while_starting_is_picked_up() {
    for round in 0..3 {
        let (_dir, key_file, config) = with_key_file("pk_live_started_one");
        let f = Fleet::start_with(config.to_str().unwrap(), &[], None).await;
        replaced_and_reloaded(&f, &key_file, "pk_live_started_two").await;
        assert_eq!(f.calls(1, 0).await, 1);
        assert_eq!(
            key_seen_by_partner(&f).await,
            "pk_live_started_two",
            "round {round}"
        );
    }
}

/// SIGHUPs sent together right after a key file is rewritten (a reload
/// reads a file only once it has stood unchanged, so the first is still
/// reading when the others arrive): the others join it, the newest key is
/// applied, and no reload is counted or shown as refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_asked_for_during_a_read_join_it_and_none_is_refused() {
    let (_dir, key_file, config) = with_key_file("pk_live_first_key");
    let f = Fleet::start_with(config.to_str().unwrap(), &[], None).await;
    let refused = r#"offergate_config_reloads_total{result="failure"}"#;
    for round in 0..5 {
        let key = format!("pk_live_round_{round}_key");
        std::fs::write(&key_file, format!("{key}\n")).unwrap();
        for _ in 0..3 {
            signal(&f.gw.0, "HUP");
        }
        eventually(
            Duration::from_secs(10),
            "the newest key is used",
            || async {
                assert_eq!(f.calls(1, 0).await, 1);
                (key_seen_by_partner(&f).await == key).then_some(())
            },
        )
        .await;
        assert_eq!(metric(&f, refused).await, 0.0, "round {round}");
    }
    let req = Request::get(format!("http://{}/status", f.admin))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let status = send_with(&f.client, req).await.json();
    assert_eq!(
        status["config"]["last_reload"]["result"], "success",
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_that_cannot_be_read_refuses_the_reload_and_never_stops_serving() {
    let (_dir, key_file, config) = with_key_file("pk_live_steady_key");
    let good = std::fs::read_to_string(&config).unwrap();
    let mut f = Fleet::start_with(config.to_str().unwrap(), &[], None).await;
    let pid = f.gw.0.id();
    let rss_before = crate::fleet::rss_kib(pid);

    // The config replaced by a FIFO nobody writes to: the read would wait forever.
    std::fs::remove_file(&config).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&config)
        .status()
        .unwrap();
    assert!(made.success());
    reload(&f, "failure").await;
    let started = std::time::Instant::now();
    assert_eq!(
        f.calls(5, 0).await,
        5,
        "calls answered after the refused reload"
    );
    assert_eq!(f.status(f.admin, "/healthz").await, Some(200));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // A secret pointed at an endless device: refused, not read until memory runs out.
    std::fs::remove_file(&config).unwrap();
    std::fs::write(&config, &good).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &key_file).unwrap();
    reload(&f, "failure").await;
    assert_eq!(f.calls(1, 0).await, 1);
    assert_eq!(key_seen_by_partner(&f).await, "pk_live_steady_key");
    let rss_after = crate::fleet::rss_kib(pid);
    assert!(
        rss_after < rss_before + 16 * 1024,
        "RSS {rss_before} -> {rss_after} KiB"
    );

    // The drain is not held up by anything a reload left behind.
    signal(&f.gw.0, "TERM");
    let exit = exit_of(&mut f.gw.0, Duration::from_secs(10));
    assert!(exit.success(), "{exit:?}");
}

/// A file rewritten in two steps (`pk_live_` first, the rest 4 ms later; a
/// config whose token line comes last) under SIGHUP storms and the watch:
/// a reload reads a file only once it has stood unchanged, so the partner
/// never gets half a key and no call ever passes without the inbound token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_in_two_steps_is_never_read_half_written() {
    use std::io::Write;
    let key = "pk_live_the_whole_key_0123456789";
    let (dir, key_file, config) = with_key_file(key);
    let token_file = dir.path().join("inbound_token");
    std::fs::write(&token_file, "caller-token-123\n").unwrap();
    let with_token = std::fs::read_to_string(&config).unwrap().replace(
        "[server]\n",
        &format!(
            "[server]\ninbound_token_file = \"{}\"\n",
            token_file.display()
        ),
    );
    std::fs::write(&config, &with_token).unwrap();
    // The simulator takes exactly the whole key: half of it answers 401.
    let f = Fleet::start_full_with(config.to_str().unwrap(), &["--encore-key", key], &[]).await;
    let call = |token: Option<&'static str>| {
        let mut req = Request::post(format!("http://{}{ENCORE_PATH}", f.listen))
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("x-offergate-token", t);
        }
        let req = req.body(Full::new(Bytes::from(encore_body()))).unwrap();
        let client = f.client.clone();
        async move { send_with(&client, req).await }
    };
    let two_steps = |path: &std::path::Path, text: &str, cut: usize| {
        let mut file = std::fs::File::create(path).unwrap();
        file.write_all(&text.as_bytes()[..cut]).unwrap();
        file.flush().unwrap();
        signal(&f.gw.0, "HUP");
        std::thread::sleep(Duration::from_millis(4));
        file.write_all(&text.as_bytes()[cut..]).unwrap();
    };
    let cut = with_token.find("inbound_token_file").unwrap();
    for round in 0..12 {
        two_steps(&key_file, &format!("{key}\n"), "pk_live_".len());
        if round % 3 == 0 {
            two_steps(&config, &with_token, cut);
        }
        for _ in 0..4 {
            let with = call(Some("caller-token-123")).await;
            assert_eq!(
                with.headers.get("x-offergate-fallback"),
                None,
                "round {round}: the partner got half a key"
            );
            let without = call(None).await;
            assert_eq!(
                without.status, 401,
                "round {round}: a call passed without the token"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(
        metric(
            &f,
            r#"offergate_upstream_requests_total{route="encore_offers",status="401"}"#
        )
        .await,
        0.0
    );
}
