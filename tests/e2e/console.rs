//! The operator's console on the admin listener: the page in a real browser
//! (`tests/browser/console.py`, headless Chromium through selenium), and its
//! JSON endpoints on the real binary run from the shipped config.

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::fleet::Fleet;
use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_offergate");

/// What a person sees: `offergate demo` driven into an open circuit, the
/// console read in Chromium, with scripts on and off. The screenshot is left
/// in `target/console.png` (the README's is one of these).
#[test]
fn the_console_in_a_real_browser() {
    let shot = format!("{}/target/console.png", env!("CARGO_MANIFEST_DIR"));
    // Where the screenshot goes exists even when the build's target
    // directory is elsewhere (CARGO_TARGET_DIR).
    std::fs::create_dir_all(format!("{}/target", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let script = format!("{}/tests/browser/console.py", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .args([&script, BIN, &shot])
        .output()
        .expect("python3 runs (tests/run installs selenium, chromium and chromium-driver)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "console.py failed:\n{said}");
    assert!(said.contains("every check passed"), "{said}");
    assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000));
}

async fn admin_json(f: &Fleet, path: &str) -> serde_json::Value {
    let req = Request::get(format!("http://{}{path}", f.admin))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let a = send_with(&f.client, req).await;
    assert_eq!(
        a.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&a.body)
    );
    a.json()
}

async fn put_level(f: &Fleet, level: &str, token: Option<&str>) -> (u16, String) {
    let mut req = Request::put(format!("http://{}/log-level", f.admin));
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let a = send_with(
        &f.client,
        req.body(Full::new(Bytes::from(level.to_string()))).unwrap(),
    )
    .await;
    (
        a.status.as_u16(),
        String::from_utf8_lossy(&a.body).into_owned(),
    )
}

/// The binary as shipped: `/config` is the file that runs (its SHA-256, no
/// secret), `/status` counts the calls and shows a refused reload with its
/// reason (the old config serving on), `/requests` lists the last calls
/// newest first without a caller id, and the log level changes at run time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_endpoints_of_the_running_binary() {
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("admin_token");
    std::fs::write(&token_file, "admin-s3cret\n").unwrap();
    let token_path = token_file.display().to_string();
    let f = Fleet::start(
        &[
            ("OFFERGATE_SERVER__ADMIN_TOKEN_FILE", token_path.as_str()),
            ("OFFERGATE_LOG__LEVEL", "warn"),
        ],
        None,
    )
    .await;
    for _ in 0..3 {
        let a = f
            .post(ENCORE_PATH, &serde_json::from_str(&encore_body()).unwrap())
            .await;
        assert_eq!(a.status, 200);
    }

    let config_path = f.dir.path().join("offergate.toml");
    let text = std::fs::read(&config_path).unwrap();
    let sha = ring::digest::digest(&ring::digest::SHA256, &text);
    let sha: String = sha.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let config = admin_json(&f, "/config").await;
    assert_eq!(config["sha256"], sha.as_str());
    assert_eq!(config["path"], config_path.display().to_string().as_str());
    let shown = config.to_string();
    assert!(
        !shown.contains("pk_live_signals") && !shown.contains("admin-s3cret"),
        "{shown}"
    );
    assert!(shown.contains("<redacted, from file"), "{shown}");
    assert_eq!(config["config"]["encore"]["rate_limit"]["enforce"], true);

    let status = eventually(Duration::from_secs(5), "the calls are sampled", || async {
        let s = admin_json(&f, "/status").await;
        (s["routes"][0]["requests_total"] == 3).then_some(s)
    })
    .await;
    assert_eq!(status["routes"][0]["route"], "encore_offers");
    assert_eq!(status["config"]["sha256"], sha.as_str());
    assert!(status["config"]["last_reload"].is_null());
    assert_eq!(status["partners"][0]["circuit"]["state"], "closed");
    assert_eq!(status["state"]["backend"], "memory");
    assert!(status["routes"][0]["p99_ms"].as_f64().is_some());

    let requests = admin_json(&f, "/requests?limit=2").await;
    let listed = requests["requests"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed[0]["at_ms"].as_i64() >= listed[1]["at_ms"].as_i64());
    assert_eq!(listed[0]["route"], "encore_offers");
    assert!(!requests.to_string().contains("client-"), "{requests}");
    assert_eq!(requests["capacity"], 256);

    // A broken file: refused, shown with its reason, the old one serving.
    std::fs::write(&config_path, "[server\nlisten = ").unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", &f.gw.0.id().to_string()])
        .status()
        .unwrap()
        .success());
    let refused = eventually(Duration::from_secs(10), "the refusal is shown", || async {
        let s = admin_json(&f, "/status").await;
        (s["config"]["last_reload"]["result"] == "failure").then_some(s)
    })
    .await;
    let problems = refused["config"]["last_reload"]["problems"].to_string();
    assert!(problems.contains("offergate.toml"), "{problems}");
    assert_eq!(
        refused["config"]["sha256"],
        sha.as_str(),
        "the old one runs"
    );
    let a = f
        .post(ENCORE_PATH, &serde_json::from_str(&encore_body()).unwrap())
        .await;
    assert_eq!(a.status, 200);
    // Put back: applied, its digest shown.
    std::fs::write(&config_path, &text).unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", &f.gw.0.id().to_string()])
        .status()
        .unwrap()
        .success());
    eventually(Duration::from_secs(10), "the reload is shown", || async {
        let s = admin_json(&f, "/status").await;
        (s["config"]["last_reload"]["result"] == "success").then_some(())
    })
    .await;

    // The log level, from loopback (with or without the token).
    assert_eq!(
        put_level(&f, "info,offergate::access=off", Some("admin-s3cret")).await,
        (200, "info,offergate::access=off\n".into())
    );
    let (status, body) = put_level(&f, "chatty", None).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a level"), "{body}");
    let req = Request::get(format!("http://{}/log-level", f.admin))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let a = send_with(&f.client, req).await;
    assert_eq!(&a.body[..], b"info,offergate::access=off\n");
}
