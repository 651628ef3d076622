//! A harness: simulator + gateway on free loopback ports, a plain HTTP client,
//! and a raw-socket client for requests a normal client refuses to send.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use offergate::call::route::Route;
use offergate::config::MapEnv;
use offergate::{Config, Gateway, SimConfig, Simulator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The credentials the gateway is configured with and the simulator demands.
pub const KEY: &str = "pk_test_configured_key";
pub const TOKEN: &str = "configured-besitos-token";
pub const PARTNER: &str = "eafLst9T";
/// The key of the pseudonym Encore gets as `chatId`, in every test config.
pub const CHAT_ID_KEY: &str = "test-chat-id-key-0123456789";

/// The shipped `config/offergate.toml`.
pub fn shipped_config() -> String {
    format!("{}/config/offergate.toml", env!("CARGO_MANIFEST_DIR"))
}

/// The shipped config made runnable the way its header tells a user to: its
/// two secret files written (mode 0600) into `dir`, which stands in for
/// `/run/secrets/offergate`, and the placeholder partner id replaced by
/// [`PARTNER`]. Returns the copy's path.
pub fn shipped_config_in(dir: &std::path::Path, key: &str, token: &str) -> String {
    use std::os::unix::fs::OpenOptionsExt;
    let text = std::fs::read_to_string(shipped_config()).unwrap();
    assert!(
        text.contains("/run/secrets/offergate/") && text.contains("REPLACE-WITH-YOUR-PARTNER-ID")
    );
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    for (name, value) in [
        ("encore_api_key", key),
        ("besitos_token", token),
        ("chat_id_key", CHAT_ID_KEY),
    ] {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(secrets.join(name))
            .unwrap();
        std::io::Write::write_all(&mut f, format!("{value}\n").as_bytes()).unwrap();
    }
    let text = text
        .replace(
            "/run/secrets/offergate/",
            &format!("{}/", secrets.display()),
        )
        .replace("REPLACE-WITH-YOUR-PARTNER-ID", PARTNER);
    let path = dir.join("offergate.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

pub const ENCORE_PATH: &str = "/encore/publisher/sdk/v1/offers/message";
pub const ENCORE_BODY: &str = r#"{"clientId":"client-42","chatId":"8b3f7c10-9d4e-4d2a-91a1-3f0e8a1c0b5d","attributes":{"countryCode":"US","language":"en","platform":"ios"}}"#;

/// An Encore body with a chatId no other call in this process uses: a distinct
/// logical request, never de-duplicated.
pub fn encore_body() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ENCORE_BODY.replace("8b3f7c10-9d4e-4d2a-91a1-3f0e8a1c0b5d", &format!("chat-{n}"))
}

pub fn besitos_path(partner: &str) -> String {
    format!("/data/messages/{partner}/upcoming-goals")
}

pub struct Harness {
    pub sim: Simulator,
    pub gw: Gateway,
    client: Client<HttpConnector, Full<Bytes>>,
}

#[path = "../common/answer.rs"]
mod answer;
pub use answer::Answer;
#[path = "../common/eventually.rs"]
mod waiting;
pub use waiting::eventually;

/// A gateway config file pointing both partners at `sim`, plus `extra` TOML
/// lines appended to it, loaded through the real loader with secrets from env.
pub fn config_for(sim_origin: &str, extra_server: &str, extra: &str) -> Config {
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
{extra_server}
[log]
access_log = false
[encore]
base_url = "{sim_origin}"
api_key_env = "TEST_ENCORE_KEY"
chat_id_key_env = "TEST_CHAT_ID_KEY"
[besitos]
base_url = "{sim_origin}"
[[besitos.partners]]
id = "{PARTNER}"
token_env = "TEST_BESITOS_TOKEN"
{extra}
"#
    );
    let env = MapEnv::from([
        ("TEST_ENCORE_KEY", KEY),
        ("TEST_CHAT_ID_KEY", CHAT_ID_KEY),
        ("TEST_BESITOS_TOKEN", TOKEN),
        ("TEST_INBOUND_TOKEN", "caller-token-123"),
    ]);
    let mut c = Config::from_toml(&toml, &env).unwrap_or_else(|e| panic!("{e}"));
    // In memory unless a test is about the thread file: tests run side by side.
    c.state.thread_file = None;
    c
}

/// `config_for` with the resilience layers out of the way: no retries, no
/// fallback, a circuit that never opens, no de-duplication. What the caller
/// sees of raw failures.
pub fn config_bare(sim_origin: &str) -> Config {
    tuned(sim_origin, |c| {
        for r in [&mut c.encore.resilience, &mut c.besitos.resilience] {
            r.soft_fallback = false;
            r.retry.max_retries = 0;
            r.retry.retry_after_cap = Duration::ZERO;
            r.circuit.failure_threshold = 1_000;
            r.idempotency.enabled = false;
        }
    })
}

/// `config_for` with short timings for resilience tests, then `f` applied to it.
pub fn tuned(sim_origin: &str, f: impl FnOnce(&mut Config)) -> Config {
    let mut c = config_for(sim_origin, "", "");
    for (up, res) in [
        (&mut c.encore.upstream, &mut c.encore.resilience),
        (&mut c.besitos.upstream, &mut c.besitos.resilience),
    ] {
        up.try_timeout = Duration::from_millis(300);
        res.deadline = Duration::from_millis(1_000);
        res.retry.backoff = vec![
            Duration::from_millis(20),
            Duration::from_millis(50),
            Duration::from_millis(100),
        ];
        res.retry.min_try = Duration::from_millis(50);
        res.retry.budget_min_per_second = 1_000;
        res.circuit.failure_threshold = 3;
        res.circuit.cooldown = Duration::from_millis(300);
        // Out of the way unless a test is about them.
        let plenty = offergate::config::Rate {
            per_second: 100_000.0,
            burst: 100_000,
        };
        res.rate_limit.partner = plenty;
        res.rate_limit.client = plenty;
    }
    f(&mut c);
    c
}

pub fn strict_sim() -> SimConfig {
    SimConfig {
        encore_key: Some(KEY.into()),
        besitos_token: Some(TOKEN.into()),
        tls: None,
    }
}

impl Harness {
    pub async fn start() -> Harness {
        Self::with_config(|origin| config_for(origin, "", "")).await
    }

    pub async fn with_config(make: impl FnOnce(&str) -> Config) -> Harness {
        Self::with_sim(strict_sim(), make).await
    }

    pub async fn with_sim(sim: SimConfig, make: impl FnOnce(&str) -> Config) -> Harness {
        let sim = Simulator::start(any_port(), sim)
            .await
            .expect("simulator starts");
        let gw = Gateway::start(make(sim.origin()))
            .await
            .expect("gateway starts");
        Harness {
            sim,
            gw,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub fn proxy_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gw.proxy_addr)
    }

    pub fn calls(&self, route: Route) -> u64 {
        self.sim.state.calls(route)
    }

    pub fn total_calls(&self) -> u64 {
        Route::ALL.iter().map(|r| self.calls(*r)).sum()
    }

    /// POST `body` to the gateway with `headers` (JSON content type unless given).
    pub async fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        self.send(post_request(&self.proxy_url(path), headers, body))
            .await
    }

    pub async fn send(&self, req: Request<Full<Bytes>>) -> Answer {
        send_with(&self.client, req).await
    }

    pub async fn metrics(&self) -> String {
        metrics_of(&self.gw).await
    }

    pub async fn stop(self) {
        self.gw.shutdown().await;
        self.sim.shutdown().await;
    }
}

/// A POST of `body` to `url` with `headers` (JSON content type unless given).
fn post_request(url: &str, headers: &[(&str, &str)], body: &str) -> Request<Full<Bytes>> {
    let mut req = Request::builder().method(Method::POST).uri(url);
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        req = req.header("content-type", "application/json");
    }
    for (k, v) in headers {
        req = req.header(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    req.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

/// [`Harness::post`] for a gateway started on its own (a second replica, a
/// gateway in front of another partner).
pub async fn post_to_gateway(
    gw: &Gateway,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let url = format!("http://{}{path}", gw.proxy_addr);
    send_with(&client, post_request(&url, headers, body)).await
}

/// What `gw`'s admin listener shows on `/metrics`.
pub async fn metrics_of(gw: &Gateway) -> String {
    let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let req = Request::get(format!("http://{}/metrics", gw.admin_addr))
        .body(Full::new(Bytes::new()))
        .unwrap();
    String::from_utf8_lossy(&send_with(&client, req).await.body).into_owned()
}

pub async fn send_with(
    client: &Client<HttpConnector, Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Answer {
    let resp = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .expect("answer within 20 s")
        .expect("request succeeds");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// An address nothing listens on, so connecting is refused. On 127.0.0.2:
/// every other test listens on 127.0.0.1, so none can take it meanwhile.
pub fn closed_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Scripts the simulator's next answers on `route` (the simulator's plan items).
pub fn plan(h: &Harness, route: offergate::call::route::Route, items: &[&str]) {
    let faults = items
        .iter()
        .map(|i| offergate::simulator::faults::Fault::parse(i).unwrap());
    h.sim.state.set_plan(route, faults.collect());
}

pub fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Sends raw bytes on a fresh connection and returns the status and body of the
/// answer (the request should carry `Connection: close`).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A metric sample's value from Prometheus text, 0 when absent.
/// Asserts the value of one series (name and labels as exposed), naming it
/// when it differs.
#[track_caller]
pub fn assert_sample(metrics: &str, name_and_labels: &str, want: f64) {
    assert_eq!(sample(metrics, name_and_labels), want, "{name_and_labels}");
}

pub fn sample(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(name_and_labels)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// Sends raw bytes on a fresh connection and reads until the server closes
/// it (or 5 s pass): every status line answered, in order. Empty: the server
/// closed the connection without an answer.
pub async fn raw_statuses(addr: SocketAddr, request: &[u8]) -> Vec<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    // The server may close before it has read everything; that is an answer too.
    let _ = s.write_all(request).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    // Answers follow each other's bodies directly: find every status line.
    let text = String::from_utf8_lossy(&buf);
    let mut statuses = Vec::new();
    let mut rest = text.as_ref();
    while let Some(at) = rest.find("HTTP/1.") {
        let line = &rest[at..];
        if let Some(code) = line.get(9..12).and_then(|c| c.parse().ok()) {
            if line.as_bytes().get(8) == Some(&b' ') {
                statuses.push(code);
            }
        }
        rest = &rest[at + 7..];
    }
    statuses
}

/// The `offergate ready` line of a JSON log file, once it is written.
pub fn ready_line(log: &std::path::Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains("offergate ready"))?;
    Some(serde_json::from_str(line).expect("the ready line is JSON"))
}

/// [`eventually`] for a check that blocks (a child process, a file).
pub fn eventually_blocking<T>(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for `child` to exit (after a signal), at most `within`.
pub fn exit_of(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    eventually_blocking(within, "the process exits", || {
        child.try_wait().ok().flatten()
    })
}
