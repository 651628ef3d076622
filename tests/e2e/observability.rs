//! What operators watch: every metric that the Grafana dashboard and the
//! Prometheus rules name exists in `/metrics` of a running gateway, with the
//! label names they use; and a real Prometheus scraping `offergate demo` reads
//! a series back through its query API.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::fleet::Killed;
use crate::support::*;

/// `name -> label names` of every sample in a Prometheus text exposition.
fn exposed(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, labels) = match line.split_once('{') {
            Some((name, rest)) => (name, rest.split_once('}').map_or("", |(l, _)| l)),
            None => (line.split_whitespace().next().unwrap_or_default(), ""),
        };
        let entry = out.entry(name.to_string()).or_default();
        for pair in labels.split(',').filter(|p| !p.is_empty()) {
            if let Some((k, _)) = pair.split_once('=') {
                entry.insert(k.to_string());
            }
        }
    }
    out
}

/// `(name, label, value)` of every sample's labels.
fn exposed_values(text: &str) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        if let Some((name, rest)) = line.split_once('{') {
            let labels = rest.split_once('}').map_or("", |(l, _)| l);
            for pair in labels.split(',') {
                if let Some((k, v)) = pair.split_once('=') {
                    out.insert((
                        name.to_string(),
                        k.to_string(),
                        v.trim_matches('"').to_string(),
                    ));
                }
            }
        }
    }
    out
}

/// Every PromQL expression of the dashboard and the rules.
fn expressions() -> Vec<String> {
    let root = env!("CARGO_MANIFEST_DIR");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/deploy/grafana/offergate.json")).unwrap(),
    )
    .unwrap();
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    // Rules: `expr: ...` on one line, or `expr: |` and the indented lines after.
    let rules =
        std::fs::read_to_string(format!("{root}/deploy/prometheus/offergate.rules.yml")).unwrap();
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        if rest.trim() == "|" {
            // The block: the lines indented deeper than `expr:`.
            let indent = line.len() - line.trim_start().len();
            let mut block = String::new();
            while let Some(next) = lines.peek() {
                if next.len() - next.trim_start().len() <= indent {
                    break;
                }
                block.push_str(next.trim());
                block.push(' ');
                lines.next();
            }
            exprs.push(block);
        } else {
            exprs.push(rest.to_string());
        }
    }
    exprs
}

/// On a fresh gateway, run as shipped (the binary, the shipped config, no
/// call made yet): a dashboard must not show gaps on a healthy gateway, nor
/// an alert's `rate()` miss its first events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_gateway_exposes_every_metric_and_label_the_dashboard_and_the_rules_read() {
    let f = crate::fleet::Fleet::start(&[], None).await;
    let page = {
        let req = http::Request::get(format!("http://{}/metrics", f.admin))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        String::from_utf8_lossy(&send_with(&f.client, req).await.body).to_string()
    };
    let have = exposed(&page);
    let values = exposed_values(&page);
    let mut missing = Vec::new();
    let mut checked = 0;
    let exprs = expressions();
    assert_eq!(
        exprs.len(),
        18 + 20,
        "every dashboard target and every rule read"
    );
    for expr in exprs {
        let names: Vec<&str> = expr
            .match_indices("offergate_")
            .map(|(i, _)| {
                let rest = &expr[i..];
                &rest[..rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len())]
            })
            .collect();
        let mut labels_here = BTreeSet::new();
        for name in &names {
            checked += 1;
            match have.get(*name) {
                None => missing.push(format!("{name} (in `{}`)", expr.trim())),
                Some(labels) => labels_here.extend(labels.iter().cloned()),
            }
            // Matchers right after the name: `name{k="v", ...}`.
            let after = &expr[expr.find(name).unwrap_or(0) + name.len()..];
            if let Some(inner) = after.strip_prefix('{').and_then(|s| s.split_once('}')) {
                for pair in inner.0.split(',') {
                    let key = pair
                        .split(['=', '!', '~'])
                        .next()
                        .unwrap_or_default()
                        .trim();
                    if !have.get(*name).is_some_and(|l| l.contains(key)) {
                        missing.push(format!("label {key} of {name}"));
                    }
                    // A value asked for (`=`, or each of `=~"a|b"`) has its
                    // series, at 0 if nothing happened yet.
                    let wanted: Vec<&str> = match pair.split_once("=~") {
                        Some((_, v)) => v.trim().trim_matches('"').split('|').collect(),
                        None if !pair.contains('!') => pair
                            .split_once('=')
                            .map(|(_, v)| vec![v.trim().trim_matches('"')])
                            .unwrap_or_default(),
                        None => vec![],
                    };
                    for value in wanted {
                        if !values.contains(&(name.to_string(), key.to_string(), value.to_string()))
                        {
                            missing.push(format!("{name}{{{key}=\"{value}\"}}"));
                        }
                    }
                }
            }
        }
        // Grouping labels must exist on a metric of the same expression.
        for (i, _) in expr.match_indices("by (") {
            let inner = &expr[i + 4..];
            for label in inner[..inner.find(')').unwrap_or(0)]
                .split(',')
                .map(str::trim)
            {
                if !["le", "job", "instance"].contains(&label) && !labels_here.contains(label) {
                    missing.push(format!("label {label} grouped in `{}`", expr.trim()));
                }
            }
        }
    }
    assert!(checked >= 25, "{checked} metric references checked");
    assert!(missing.is_empty(), "not exposed:\n{}", missing.join("\n"));
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_cpu_seconds_total",
    ] {
        assert!(have.contains_key(name), "{name} missing");
    }
    for route in ["encore_offers", "besitos_goals", "encore_messages"] {
        assert!(
            page.contains(&format!("offergate_in_flight{{route=\"{route}\"}} 0")),
            "in flight for {route}:\n{page}"
        );
    }
    assert!(
        page.contains("offergate_connections_open{listener=\"proxy\"} 0"),
        "{page}"
    );
    assert!(
        page.contains("offergate_connections_open{listener=\"admin\"}"),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_demo_and_answers_a_query() {
    let free = || {
        std::net::TcpListener::bind("127.0.0.6:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (listen, admin, sim, prom) = (free(), free(), free(), free());
    let _demo = Killed(
        Command::new(env!("CARGO_BIN_EXE_offergate"))
            .args([
                "demo",
                "--listen",
                &listen.to_string(),
                "--admin-listen",
                &admin.to_string(),
            ])
            .args(["--simulator-listen", &sim.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: offergate\n    static_configs:\n      - targets: [\"{admin}\"]\n"
        ),
    )
    .unwrap();
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={prom}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus runs (tests/run installs Debian's prometheus)"),
    );
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let get = |url: String| {
        let client = client.clone();
        async move {
            let req = http::Request::get(url)
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            match tokio::time::timeout(Duration::from_secs(2), client.request(req)).await {
                Ok(Ok(r)) => {
                    use http_body_util::BodyExt;
                    r.into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default()
                }
                _ => bytes::Bytes::new(),
            }
        }
    };
    // Three offers through the demo.
    eventually(Duration::from_secs(20), "the demo answers", || async {
        (!get(format!("http://{admin}/readyz")).await.is_empty()).then_some(())
    })
    .await;
    for n in 0..3 {
        let req = http::Request::post(format!("http://{listen}{ENCORE_PATH}"))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                ENCORE_BODY.replace("8b3f", &format!("{n}b3f")),
            )))
            .unwrap();
        assert_eq!(send_with(&client, req).await.status, 200);
    }
    // Prometheus scrapes every second; read the series back.
    let query =
        "offergate_requests_total%7Broute%3D%22encore_offers%22%2Coutcome%3D%22forwarded%22%7D";
    eventually(
        Duration::from_secs(30),
        "Prometheus answers the series with 3",
        || async {
            let body = get(format!("http://{prom}/api/v1/query?query={query}")).await;
            let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
            (v["data"]["result"][0]["value"][1] == "3").then_some(())
        },
    )
    .await;
}
