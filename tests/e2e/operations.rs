//! Operations as shipped, through the real binary and the shipped config:
//! a refused key and an absent Redis speak in the log once per change, the
//! ready line says what runs, the access line's fields. (A fresh `/metrics`
//! against the dashboard and the rules: `observability.rs`.)

use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::fleet::{signal, Fleet, Killed};
use crate::redis_server::RedisServer;
use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_offergate");

async fn metrics_page(f: &Fleet) -> String {
    let req = Request::get(format!("http://{}/metrics", f.admin))
        .body(Full::new(Bytes::new()))
        .unwrap();
    String::from_utf8_lossy(&send_with(&f.client, req).await.body).to_string()
}

/// A refused key: one ERROR naming the partner when the partner starts
/// refusing (not one per call), one line when it accepts again; the ready
/// line names what runs; the access line's
/// duration is whole microseconds and names no partner status where none
/// was called; `healthcheck` refuses a name that is no address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_is_logged_once_per_change_and_the_ready_line_says_what_runs() {
    let log_dir = tempfile::tempdir().unwrap();
    let log_path = log_dir.path().join("offergate.log");
    let log = std::fs::File::create(&log_path).unwrap();
    // The simulator takes one key and answers 401 to any other.
    let f = Fleet::start_sim(
        &["--encore-key", "pk_live_right"],
        &[
            ("ENCORE_API_KEY", "pk_live_wrong"),
            ("OFFERGATE_LOG__FORMAT", "json"),
        ],
        Some(log),
    )
    .await;
    for _ in 0..4 {
        let a = f
            .post(ENCORE_PATH, &serde_json::from_str(&encore_body()).unwrap())
            .await;
        assert_eq!(a.headers["x-offergate-fallback"], "upstream_status_401");
    }
    let a = f
        .post(ENCORE_PATH, &serde_json::json!({"clientId": 1}))
        .await;
    assert_eq!(a.status, 400);
    let page = metrics_page(&f).await;
    assert!(
        page.contains(r#"offergate_upstream_requests_total{route="encore_offers",status="401"} 4"#),
        "{page}"
    );
    // The rotation: the key file rewritten, picked up by reload.watch. A
    // call sent before the reload lands would be one more refusal and could
    // open the circuit: the test waits for the reload, as an operator reads it.
    std::fs::write(
        f.dir.path().join("secrets/encore_api_key"),
        "pk_live_right\n",
    )
    .unwrap();
    eventually(Duration::from_secs(10), "the reload is counted", || async {
        let page = metrics_page(&f).await;
        let reloads = page
            .lines()
            .find_map(|l| l.strip_prefix(r#"offergate_config_reloads_total{result="success"} "#))
            .and_then(|n| n.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        (reloads >= 1.0).then_some(())
    })
    .await;
    eventually(
        Duration::from_secs(10),
        "the rotated key is used",
        || async {
            let a = f
                .post(ENCORE_PATH, &serde_json::from_str(&encore_body()).unwrap())
                .await;
            a.json()["offer"]["clickUrl"].is_string().then_some(())
        },
    )
    .await;
    let lines = || std::fs::read_to_string(&log_path).unwrap();
    eventually(Duration::from_secs(5), "the return is logged", || async {
        lines()
            .contains("accepts offergate's credential again")
            .then_some(())
    })
    .await;
    let text = lines();
    let refused: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("refuses offergate's credential"))
        .collect();
    assert_eq!(refused.len(), 1, "one line for four refusals:\n{text}");
    let e: serde_json::Value = serde_json::from_str(refused[0]).unwrap();
    assert_eq!(e["level"], "ERROR");
    assert_eq!(e["partner"], "encore");
    assert_eq!(e["status"], 401);
    assert!(
        e["message"].as_str().unwrap().contains("api_key_file"),
        "{e}"
    );
    assert!(
        !text.contains("pk_live_wrong") && !text.contains("pk_live_right"),
        "no key in the log"
    );

    // The ready line.
    let ready: serde_json::Value = serde_json::from_str(
        text.lines()
            .find(|l| l.contains("offergate ready"))
            .expect("a ready line"),
    )
    .unwrap();
    let config = f.dir.path().join("offergate.toml");
    let sha = {
        let d = ring::digest::digest(&ring::digest::SHA256, &std::fs::read(&config).unwrap());
        d.as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let fields = &ready;
    assert_eq!(fields["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(fields["config"], config.display().to_string());
    assert_eq!(fields["config_sha256"], sha);
    assert!(
        fields["state"]
            .as_str()
            .unwrap()
            .starts_with("memory (threads in "),
        "{fields}"
    );
    assert_eq!(fields["encore"], format!("http://{}", f.sim_addr));
    assert_eq!(fields["besitos"], format!("http://{}", f.sim_addr));

    // The access lines: microseconds, and a partner status only where a
    // partner answered.
    let access: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| l.contains("offergate::access"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        access.iter().all(|a| a["duration_us"].is_u64()),
        "{access:?}"
    );
    let refused_call = access.iter().find(|a| a["status"] == 400).unwrap();
    assert!(
        refused_call.get("partner_status").is_none(),
        "{refused_call}"
    );
    assert!(access.iter().any(|a| a["partner_status"] == 401));

    // healthcheck: a name that is no address is refused, clearly.
    let nowhere = Command::new(BIN)
        .args(["healthcheck", "--admin", "no-such-host.invalid:9787"])
        .output()
        .unwrap();
    assert_eq!(nowhere.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&nowhere.stderr).contains("no-such-host.invalid"));
}

/// Redis not answering at start: a warning within a second or two (not
/// silence while `/readyz` says 503), naming where it looked; one line when
/// it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_redis_is_a_warning_at_start_and_its_return_a_line() {
    let redis = RedisServer::start().await;
    redis.freeze(true);
    let dir = tempfile::tempdir().unwrap();
    let config = shipped_config_in(dir.path(), "pk_live_x", "t");
    let log_path = dir.path().join("offergate.log");
    let free = || {
        std::net::TcpListener::bind("127.0.0.4:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (listen, admin) = (free(), free());
    let gw = Killed(
        Command::new(BIN)
            .args(["run", "-c", &config])
            .env("OFFERGATE_STATE__BACKEND", "redis")
            .env("OFFERGATE_STATE__REDIS_URL", redis.url())
            .env("OFFERGATE_SERVER__LISTEN", listen.to_string())
            .env("OFFERGATE_SERVER__ADMIN_LISTEN", admin.to_string())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let readyz = || async {
        let req = Request::get(format!("http://{admin}/readyz"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(2), client.request(req))
            .await
            .ok()?
            .ok()?;
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .ok()?;
        Some(String::from_utf8_lossy(&body.to_bytes()).to_string())
    };
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let started = std::time::Instant::now();
    eventually(
        Duration::from_secs(5),
        "a warning that Redis does not answer",
        || async {
            log()
                .lines()
                .any(|l| l.contains("WARN") && l.contains("does not answer"))
                .then_some(())
        },
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let warned = log();
    let line = warned
        .lines()
        .find(|l| l.contains("does not answer"))
        .unwrap();
    assert!(
        line.contains(&format!("redis single {}", redis.addr)),
        "{line}"
    );
    // fail_open, as shipped: still ready, and it says what it lacks.
    assert!(readyz().await.is_some_and(|b| b.contains("redis degraded")));
    redis.freeze(false);
    eventually(
        Duration::from_secs(15),
        "Redis ok once it answers",
        || async {
            readyz()
                .await
                .is_some_and(|b| b.contains("redis ok"))
                .then_some(())
        },
    )
    .await;
    eventually(Duration::from_secs(5), "its return is logged", || async {
        log().contains("answers again").then_some(())
    })
    .await;
    assert_eq!(
        log()
            .lines()
            .filter(|l| l.contains("does not answer"))
            .count(),
        1,
        "one warning for one outage:\n{}",
        log()
    );
    signal(&gw.0, "TERM");
}
