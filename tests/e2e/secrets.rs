//! Secrets stay secret: with recognisable canary secrets configured (from
//! env and from a file), a run of good, bad and failing calls is scanned
//! everywhere an operator or a caller could read: every log line (debug,
//! JSON), `/metrics`, every answer body and header, `check-config`. And the
//! partner receives the configured credential, never the caller's own.

use std::process::Command;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::fleet::{signal, Fleet};
use crate::support::*;

const CANARY: &str = "CANARY";
const KEY: &str = "pk_live_CANARYencore7";
const TOKEN: &str = "CANARYbesitos8";
const INBOUND: &str = "CANARYinbound9";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_anywhere_and_the_callers_credentials_stay_home() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("inbound_token");
    std::fs::write(&token_file, format!("{INBOUND}\n")).unwrap();
    let log_path = dir.path().join("offergate.log");
    let env = [
        ("ENCORE_API_KEY", KEY),
        ("BESITOS_TOKEN", TOKEN),
        (
            "OFFERGATE_SERVER__INBOUND_TOKEN_FILE",
            token_file.to_str().unwrap(),
        ),
        ("OFFERGATE_LOG__LEVEL", "debug"),
        ("OFFERGATE_LOG__FORMAT", "json"),
    ];
    let mut f = Fleet::start(&env, Some(std::fs::File::create(&log_path).unwrap())).await;
    let mut seen = Vec::<String>::new();
    let call = |path: &str, headers: &[(&str, &str)], body: &str| {
        let mut req = Request::post(format!("http://{}{path}", f.listen))
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        send_with(
            &f.client,
            req.body(Full::new(Bytes::from(body.to_string()))).unwrap(),
        )
    };
    let token = ("x-offergate-token", INBOUND);
    let callers_own = [
        token,
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("x-api-key", "pk_live_CALLERcanary"),
        ("authorization", "Bearer CALLERcanary"),
    ];
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, String, u16);
    let cases: Vec<Case> = vec![
        (ENCORE_PATH.into(), callers_own.to_vec(), encore_body(), 200),
        (ENCORE_PATH.into(), vec![], encore_body(), 401),
        (
            ENCORE_PATH.into(),
            vec![("x-offergate-token", "CANARYinbound")],
            encore_body(),
            401,
        ),
        // Twice, one of them right: a check and a log must never read different ones.
        (
            ENCORE_PATH.into(),
            vec![token, ("x-offergate-token", "other")],
            encore_body(),
            401,
        ),
        (
            ENCORE_PATH.into(),
            vec![token],
            r#"{"clientId":"#.into(),
            400,
        ),
        (besitos_path("eafLst9T"), vec![token], "{}".into(), 200),
        (besitos_path("nope"), vec![token], "{}".into(), 404),
    ];
    for (path, headers, body, status) in &cases {
        let a = call(path, headers, body).await;
        assert_eq!(a.status.as_u16(), *status, "{path}: {:?}", a.body);
        seen.push(format!(
            "{:?}\n{}",
            a.headers,
            String::from_utf8_lossy(&a.body)
        ));
    }
    // The partner got the configured key, and nothing of the caller's own.
    let last = send_with(
        &f.client,
        Request::get(format!(
            "http://{}/__sim/last?route=encore_offers",
            f.sim_addr
        ))
        .body(Full::new(Bytes::new()))
        .unwrap(),
    )
    .await;
    let last = String::from_utf8_lossy(&last.body).to_string();
    assert!(
        last.contains(KEY),
        "the partner received the configured key: {last}"
    );
    assert!(
        !last.contains("CALLERcanary") && !last.contains(INBOUND),
        "{last}"
    );
    // Partner failures and their fallbacks.
    f.slow_partner(0, 0).await;
    for fault in ["500", "429:1", "malformed"] {
        let plan = serde_json::json!({"route": "encore_offers", "plan": [fault]});
        let req = Request::post(format!("http://{}/__sim/faults", f.sim_addr))
            .body(Full::new(Bytes::from(plan.to_string())))
            .unwrap();
        send_with(&f.client, req).await;
        let a = call(ENCORE_PATH, &[token], &encore_body()).await;
        seen.push(format!(
            "{:?}\n{}",
            a.headers,
            String::from_utf8_lossy(&a.body)
        ));
    }
    for path in ["/metrics", "/readyz", "/healthz", "/nope"] {
        let a = send_with(
            &f.client,
            Request::get(format!("http://{}{path}", f.admin))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await;
        seen.push(String::from_utf8_lossy(&a.body).to_string());
    }
    let copy = crate::support::shipped_config_in(dir.path(), KEY, TOKEN);
    let check = Command::new(env!("CARGO_BIN_EXE_offergate"))
        .args(["check-config", "-c", &copy])
        .envs(env)
        .output()
        .unwrap();
    assert!(check.status.success());
    seen.push(String::from_utf8_lossy(&check.stdout).to_string());
    seen.push(String::from_utf8_lossy(&check.stderr).to_string());
    signal(&f.gw.0, "TERM");
    let _ = f.gw.0.wait();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.lines().count() > 10,
        "the debug log was captured:\n{log}"
    );
    assert!(
        log.contains(r#""fallback":"upstream_status_500""#),
        "the access log names the fallback reason:\n{log}"
    );
    for field in [
        r#""partner_status":500"#,
        r#""tries":1"#,
        r#""traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01""#,
    ] {
        assert!(
            log.contains(field),
            "the access log carries {field}:\n{log}"
        );
    }
    seen.extend(log.lines().map(str::to_string));
    let found: Vec<&String> = seen.iter().filter(|t| t.contains(CANARY)).collect();
    println!(
        "secrets: {} outputs scanned ({} log lines), {} with a secret",
        seen.len(),
        log.lines().count(),
        found.len()
    );
    assert!(
        found.is_empty(),
        "secrets found in {} of {} outputs: {found:#?}",
        found.len(),
        seen.len()
    );
}
