//! The config file as written: plain serde structs that refuse unknown keys.
//! Every default lives here, next to the key it belongs to; `config/offergate.toml`
//! documents each one. Validation into typed values happens in [`super::Config`].

use crate::call::problem::Problem;
use serde::Deserialize;

use super::OnLimit;
use std::path::PathBuf;

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: RawServer,
    pub log: RawLog,
    pub tls: RawTls,
    pub encore: RawRoute,
    pub besitos: RawRoute,
    pub state: RawState,
    pub reload: RawReload,
    pub tracing: RawTracing,
}

/// `[tracing]`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct RawTracing {
    pub otlp_endpoint: Option<String>,
    pub sample_ratio: f64,
    pub service_name: String,
}

impl Default for RawTracing {
    fn default() -> Self {
        RawTracing {
            otlp_endpoint: None,
            sample_ratio: 1.0,
            service_name: "offergate".into(),
        }
    }
}

/// `[reload]`.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawReload {
    pub watch: bool,
}

/// The thread file's name in the state directory, when `thread_file` is
/// not set.
/// The words carriers and messaging platforms treat as an opt-out.
pub const DEFAULT_OPT_OUT_KEYWORDS: [&str; 6] =
    ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"];

pub const DEFAULT_THREAD_FILE: &str = "threads.redb";

/// `[state]`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct RawState {
    pub backend: String,
    pub redis_url: Option<String>,
    pub redis_password_env: Option<String>,
    pub redis_password_file: Option<PathBuf>,
    pub key_prefix: String,
    pub timeout_ms: u64,
    pub on_error: String,
    /// Unset: [`DEFAULT_THREAD_FILE`] in the state directory; `""`: none.
    pub thread_file: Option<String>,
    pub topology: String,
    pub redis_nodes: Vec<String>,
    pub sentinel_master_name: Option<String>,
    pub redis_username: Option<String>,
    pub tls: Option<RawStateTls>,
}

/// `[state.tls]`: TLS to Redis with a CA of its own and a client certificate.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawStateTls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
}

impl Default for RawState {
    fn default() -> Self {
        RawState {
            backend: "memory".into(),
            redis_url: None,
            redis_password_env: None,
            redis_password_file: None,
            key_prefix: "offergate".into(),
            timeout_ms: 250,
            on_error: "fail_open".into(),
            thread_file: None,
            topology: "single".into(),
            redis_nodes: Vec::new(),
            sentinel_master_name: None,
            redis_username: None,
            tls: None,
        }
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: String,
    pub admin_listen: String,
    pub public_base_url: Option<String>,
    pub body_limit_bytes: u64,
    pub header_read_timeout_ms: u64,
    pub body_read_timeout_ms: u64,
    pub shutdown_grace_ms: u64,
    pub drain_delay_ms: u64,
    pub body_budget_bytes: u64,
    pub max_in_flight: u64,
    pub max_headers: u64,
    pub max_connections: u64,
    pub max_header_bytes: u64,
    pub allowed_hosts: Vec<String>,
    pub inbound_token_env: Option<String>,
    pub inbound_token_file: Option<PathBuf>,
    pub admin_token_env: Option<String>,
    pub admin_token_file: Option<PathBuf>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "127.0.0.1:8787".into(),
            admin_listen: "127.0.0.1:9787".into(),
            public_base_url: None,
            body_limit_bytes: 64 * 1024,
            header_read_timeout_ms: 5_000,
            body_read_timeout_ms: 5_000,
            shutdown_grace_ms: 10_000,
            drain_delay_ms: 0,
            body_budget_bytes: 64 * 1024 * 1024,
            max_in_flight: 1_024,
            max_headers: 64,
            max_connections: 1_024,
            max_header_bytes: 16 * 1024,
            allowed_hosts: Vec::new(),
            inbound_token_env: None,
            inbound_token_file: None,
            admin_token_env: None,
            admin_token_file: None,
        }
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub level: String,
    pub format: String,
    pub access_log: bool,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            level: "info".into(),
            format: "text".into(),
            access_log: true,
        }
    }
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    pub extra_ca_files: Vec<PathBuf>,
}

/// One partner section (`[encore]` or `[besitos]`). Both share this struct so the
/// connection keys are spelled once; the keys that belong to one partner only
/// (`api_key_*` to Encore, `partners` to Besitos) are checked in validation.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct RawRoute {
    /// `None` means the partner's production URL.
    pub base_url: Option<String>,
    pub allow_plain_http: bool,
    pub connect_timeout_ms: u64,
    /// `None`: the route's default (Encore 1500, Besitos 2000).
    pub try_timeout_ms: Option<u64>,
    /// `None`: the route's default (Encore 2500, Besitos 5000).
    pub deadline_ms: Option<u64>,
    pub soft_fallback: bool,
    pub retry: RawRetry,
    pub circuit: RawCircuit,
    pub idempotency: RawIdempotency,
    pub rate_limit: RawRateLimit,
    pub max_response_bytes: u64,
    pub pool_idle_timeout_ms: u64,
    pub pool_max_idle_per_host: u64,
    pub api_key_env: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub partners: Vec<RawPartner>,
    /// Encore only: the one host an offer's `clickUrl` may point at.
    pub offer_link_host: Option<String>,
    /// Encore only: what Encore receives as `chatId` (`pseudonym`, `as_sent`).
    pub chat_id: Option<String>,
    pub chat_id_key_env: Option<String>,
    pub chat_id_key_file: Option<PathBuf>,
    /// `[encore.integrator]`; Encore only.
    pub integrator: Option<RawIntegrator>,
}

/// `[encore.integrator]`: the doc's "when to call us" rules.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct RawIntegrator {
    pub idle_gap_ms: u64,
    pub thread_cap: u64,
    pub thread_window_ms: u64,
    pub compose: bool,
    pub idle_gap_basis: String,
    pub opt_out_keywords: Vec<String>,
    pub body_limit_bytes: u64,
}

impl Default for RawIntegrator {
    fn default() -> Self {
        RawIntegrator {
            idle_gap_ms: 12 * 3_600_000,
            thread_cap: 3,
            thread_window_ms: 30 * 24 * 3_600_000,
            compose: false,
            idle_gap_basis: "inbound".into(),
            opt_out_keywords: DEFAULT_OPT_OUT_KEYWORDS.map(String::from).to_vec(),
            // 1,000 messages of a few hundred bytes each, with room.
            body_limit_bytes: 1024 * 1024,
        }
    }
}

impl Default for RawRoute {
    fn default() -> Self {
        RawRoute {
            base_url: None,
            allow_plain_http: false,
            connect_timeout_ms: 1_000,
            try_timeout_ms: None,
            deadline_ms: None,
            soft_fallback: true,
            retry: RawRetry::default(),
            circuit: RawCircuit::default(),
            idempotency: RawIdempotency::default(),
            rate_limit: RawRateLimit::default(),
            max_response_bytes: 1024 * 1024,
            pool_idle_timeout_ms: 90_000,
            pool_max_idle_per_host: 64,
            api_key_env: None,
            api_key_file: None,
            partners: Vec::new(),
            offer_link_host: None,
            chat_id: None,
            chat_id_key_env: None,
            chat_id_key_file: None,
            integrator: None,
        }
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawPartner {
    pub id: String,
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
}

/// `[encore.retry]` / `[besitos.retry]`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct RawRetry {
    pub max_retries: u64,
    pub backoff_ms: Vec<u64>,
    pub retry_after_cap_ms: u64,
    /// `None`: the route's default (Encore false, Besitos true).
    pub retry_ambiguous: Option<bool>,
    pub min_try_ms: u64,
    pub budget_percent: f64,
    pub budget_min_per_second: u64,
    pub budget_window_ms: u64,
}

impl Default for RawRetry {
    fn default() -> Self {
        RawRetry {
            max_retries: 3,
            backoff_ms: vec![200, 1_000, 5_000],
            retry_after_cap_ms: 30_000,
            retry_ambiguous: None,
            min_try_ms: 100,
            budget_percent: 20.0,
            budget_min_per_second: 3,
            budget_window_ms: 10_000,
        }
    }
}

/// `[encore.circuit]` / `[besitos.circuit]`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct RawCircuit {
    pub failure_threshold: u64,
    pub cooldown_ms: u64,
}

impl Default for RawCircuit {
    fn default() -> Self {
        RawCircuit {
            failure_threshold: 5,
            cooldown_ms: 5_000,
        }
    }
}

/// `[encore.idempotency]` / `[besitos.idempotency]`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct RawIdempotency {
    pub enabled: bool,
    pub ttl_ms: u64,
    /// `None`: the route's default (Encore 300000, Besitos 30000); 0: off.
    pub body_key_window_ms: Option<u64>,
    pub max_entries: u64,
    pub max_bytes: u64,
}

impl Default for RawIdempotency {
    fn default() -> Self {
        RawIdempotency {
            enabled: true,
            ttl_ms: 24 * 3600 * 1000,
            body_key_window_ms: None,
            max_entries: 100_000,
            max_bytes: 32 * 1024 * 1024,
        }
    }
}

/// `[encore.rate_limit]` / `[besitos.rate_limit]`. `None`: the route's default.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields, default)]
pub struct RawRateLimit {
    pub enabled: bool,
    pub partner_per_second: Option<f64>,
    pub partner_burst: Option<u64>,
    pub client_per_second: Option<f64>,
    pub client_burst: Option<u64>,
    pub client_overrides: std::collections::BTreeMap<String, RawClientLimit>,
    pub max_wait_ms: u64,
    /// `fallback` or `reject`.
    pub on_limit: Option<String>,
    pub max_tracked_clients: u64,
    pub enforce: bool,
}

impl Default for RawRateLimit {
    fn default() -> Self {
        RawRateLimit {
            enabled: true,
            partner_per_second: None,
            partner_burst: None,
            client_per_second: None,
            client_burst: None,
            client_overrides: Default::default(),
            max_wait_ms: 250,
            on_limit: None,
            max_tracked_clients: 100_000,
            enforce: true,
        }
    }
}

/// One entry of `client_overrides`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawClientLimit {
    pub per_second: f64,
    pub burst: u64,
}

/// The raw config from a TOML document; `Err` names the first key that does
/// not fit, with its path.
pub fn deserialize(doc: toml::Value) -> Result<RawConfig, Problem> {
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        // The message's first line: toml's next ones repeat the key, or
        // quote the file.
        let inner = e.into_inner().to_string();
        Problem(format!(
            "{path}: {}",
            inner.lines().next().unwrap_or("").trim()
        ))
    })
}

/// Every key of `doc` that does not fit, each tried on its own (a document
/// holding only that key, every other one at its default).
/// Each comes with its path, so the rest of the file can be checked without it.
pub fn every_bad_key(doc: &toml::Table) -> Vec<(Vec<String>, String)> {
    fn walk(table: &toml::Table, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
        for (key, value) in table {
            path.push(key.clone());
            match value {
                toml::Value::Table(t) if !t.is_empty() => walk(t, path, out),
                leaf => {
                    let mut doc = leaf.clone();
                    for name in path.iter().rev() {
                        let mut t = toml::Table::new();
                        t.insert(name.clone(), doc);
                        doc = toml::Value::Table(t);
                    }
                    if let Err(e) = deserialize(doc) {
                        let e = e.to_string();
                        if !out.iter().any(|(_, seen)| *seen == e) {
                            out.push((path.clone(), e));
                        }
                    }
                }
            }
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk(doc, &mut Vec::new(), &mut out);
    out
}

/// `doc` without the keys at `paths`.
pub fn without(doc: &toml::Table, paths: &[Vec<String>]) -> toml::Table {
    fn remove(table: &mut toml::Table, path: &[String]) {
        match path {
            [] => {}
            [last] => {
                table.remove(last);
            }
            [first, rest @ ..] => {
                if let Some(toml::Value::Table(t)) = table.get_mut(first) {
                    remove(t, rest);
                }
            }
        }
    }
    let mut doc = doc.clone();
    for path in paths {
        remove(&mut doc, path);
    }
    doc
}

/// What differs between the two partner sections when a key is left out.
pub struct RouteDefaults {
    pub base_url: &'static str,
    pub try_timeout_ms: u64,
    pub deadline_ms: u64,
    pub body_key_window_ms: u64,
    pub partner: (f64, u64),
    pub client: (f64, u64),
    pub on_limit: OnLimit,
    /// Encore mints a short link per call, so a try that may have arrived is not
    /// repeated; Besitos is a read.
    pub retry_ambiguous: bool,
}

pub const ENCORE_DEFAULTS: RouteDefaults = RouteDefaults {
    base_url: "https://api.encorekit.com",
    try_timeout_ms: 1_500,
    deadline_ms: 2_500,
    body_key_window_ms: 300_000,
    partner: (50.0, 50),
    client: (5.0, 10),
    on_limit: OnLimit::Fallback,
    retry_ambiguous: false,
};

pub const BESITOS_DEFAULTS: RouteDefaults = RouteDefaults {
    base_url: "https://wall.besitos.ai",
    try_timeout_ms: 2_000,
    deadline_ms: 5_000,
    body_key_window_ms: 30_000,
    partner: (20.0, 20),
    client: (10.0, 20),
    on_limit: OnLimit::Reject,
    retry_ambiguous: true,
};
