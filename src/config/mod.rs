//! Configuration: TOML file + `OFFERGATE_*` environment overrides + secrets from
//! env or file, validated once at start into typed values.
//!
//! Every problem found is reported together, each naming its key, so an operator
//! fixes a file in one pass. Nothing downstream re-checks or panics on config.

mod env;
mod raw;
mod secret;

pub use env::{apply_overrides, Env, MapEnv, ProcessEnv};
pub use secret::{Secret, SecretSource};

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use serde::Serialize;

use raw::{RawConfig, RawRoute};

/// The validated, effective configuration.
#[derive(Clone, Debug, Serialize)]
pub struct Config {
    pub server: ServerConfig,
    pub log: LogConfig,
    pub tls: TlsConfig,
    pub encore: EncoreConfig,
    pub besitos: BesitosConfig,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// Origin (and optional path prefix) callers use to reach offergate; Besitos
    /// page URLs are rewritten to it. `None`: `http://<bound listen address>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_base_url: Option<BaseUrl>,
    pub body_limit_bytes: usize,
    #[serde(rename = "header_read_timeout_ms", serialize_with = "as_ms")]
    pub header_read_timeout: Duration,
    #[serde(rename = "body_read_timeout_ms", serialize_with = "as_ms")]
    pub body_read_timeout: Duration,
    #[serde(rename = "shutdown_grace_ms", serialize_with = "as_ms")]
    pub shutdown_grace: Duration,
    /// Lower-cased host names (without port) accepted in `Host`; empty: any.
    pub allowed_hosts: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbound_token: Option<Secret>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
    pub access_log: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct TlsConfig {
    /// PEM files whose certificates are trusted in addition to the webpki roots.
    pub extra_ca_files: Vec<PathBuf>,
}

/// How offergate reaches one partner.
#[derive(Clone, Debug, Serialize)]
pub struct UpstreamConfig {
    pub base_url: BaseUrl,
    pub allow_plain_http: bool,
    #[serde(rename = "connect_timeout_ms", serialize_with = "as_ms")]
    pub connect_timeout: Duration,
    #[serde(rename = "request_timeout_ms", serialize_with = "as_ms")]
    pub request_timeout: Duration,
    pub max_response_bytes: usize,
    #[serde(rename = "pool_idle_timeout_ms", serialize_with = "as_ms")]
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct EncoreConfig {
    #[serde(flatten)]
    pub upstream: UpstreamConfig,
    pub api_key: Secret,
}

#[derive(Clone, Debug, Serialize)]
pub struct BesitosConfig {
    #[serde(flatten)]
    pub upstream: UpstreamConfig,
    /// Bearer token per `partner_id`.
    pub partners: BTreeMap<String, Secret>,
}

/// An `http(s)://host[:port][/prefix]` URL with no query, fragment or userinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl {
    pub scheme: Scheme,
    pub authority: Authority,
    /// Empty, or starts with `/` and has no trailing `/`.
    pub path_prefix: String,
}

impl BaseUrl {
    pub fn parse(s: &str) -> Result<BaseUrl, String> {
        let uri: http::Uri = s.parse().map_err(|e| format!("`{s}` is not a URL: {e}"))?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::HTTP,
            Some("https") => Scheme::HTTPS,
            Some(other) => return Err(format!("`{s}`: scheme {other} is not http or https")),
            None => return Err(format!("`{s}` needs a scheme (https://...)")),
        };
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("`{s}` has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("`{s}`: credentials in the URL are not allowed"));
        }
        if authority.host().is_empty() {
            return Err(format!("`{s}` has no host"));
        }
        if uri.query().is_some() || s.contains('#') {
            return Err(format!("`{s}`: a base URL takes no query or fragment"));
        }
        let path_prefix = uri.path().trim_end_matches('/').to_string();
        Ok(BaseUrl {
            scheme,
            authority,
            path_prefix,
        })
    }

    /// `http://<addr>`, the default public base URL.
    pub fn for_socket(addr: SocketAddr) -> BaseUrl {
        let authority = Authority::try_from(addr.to_string().as_str())
            .expect("a socket address is a valid authority");
        BaseUrl {
            scheme: Scheme::HTTP,
            authority,
            path_prefix: String::new(),
        }
    }

    /// Whether the host is this machine, where plain HTTP leaks nothing.
    pub fn is_loopback(&self) -> bool {
        let host = self
            .authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<IpAddr>()
                .map(|ip| ip.is_loopback())
                .unwrap_or(false)
    }

    /// `scheme://authority/prefix` + `path_and_query` (which starts with `/`).
    pub fn join(&self, path_and_query: &str) -> String {
        let mut s = String::with_capacity(64 + path_and_query.len());
        s.push_str(self.scheme.as_str());
        s.push_str("://");
        s.push_str(self.authority.as_str());
        s.push_str(&self.path_prefix);
        s.push_str(path_and_query);
        s
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.join(""))
    }
}

impl Serialize for BaseUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn as_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// Every problem in a config, each with the key it concerns.
#[derive(Debug)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn one(msg: String) -> Self {
        ConfigError {
            problems: vec![msg],
        }
    }
}

/// Where `run` and `check-config` look when no `-c` is given.
pub const DEFAULT_PATH: &str = "config/offergate.toml";

impl Config {
    /// Reads, overrides and validates the file at `path`.
    pub fn load(path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::one(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml(&text, env).map_err(|mut e| {
            for p in &mut e.problems {
                *p = format!("{}: {p}", path.display());
            }
            e
        })
    }

    /// Parses, overrides and validates a TOML document.
    pub fn from_toml(text: &str, env: &dyn Env) -> Result<Config, ConfigError> {
        let mut doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::one(format!("not valid TOML: {e}")))?;
        apply_overrides(&mut doc, env).map_err(ConfigError::one)?;
        let raw: RawConfig =
            serde_path_to_error::deserialize(toml::Value::Table(doc)).map_err(|e| {
                let path = e.path().to_string();
                ConfigError::one(format!("{path}: {}", e.into_inner()))
            })?;
        validate(raw, env)
    }

    /// The embedded configuration of `offergate demo`: both partners point at the
    /// built-in simulator, with its public test credentials.
    pub fn demo(listen: SocketAddr, admin_listen: SocketAddr, simulator: SocketAddr) -> Config {
        let upstream = |addr: SocketAddr| UpstreamConfig {
            base_url: BaseUrl::for_socket(addr),
            allow_plain_http: true,
            connect_timeout: Duration::from_millis(1_000),
            request_timeout: Duration::from_millis(2_000),
            max_response_bytes: 1024 * 1024,
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 64,
        };
        Config {
            server: ServerConfig {
                listen,
                admin_listen,
                public_base_url: None,
                body_limit_bytes: 64 * 1024,
                header_read_timeout: Duration::from_secs(5),
                body_read_timeout: Duration::from_secs(5),
                shutdown_grace: Duration::from_secs(5),
                allowed_hosts: Vec::new(),
                inbound_token: None,
            },
            log: LogConfig {
                level: "info".into(),
                format: LogFormat::Text,
                access_log: true,
            },
            tls: TlsConfig::default(),
            encore: EncoreConfig {
                upstream: upstream(simulator),
                api_key: Secret::builtin(crate::simulator::DEMO_ENCORE_KEY),
            },
            besitos: BesitosConfig {
                upstream: upstream(simulator),
                partners: BTreeMap::from([(
                    crate::simulator::DEMO_BESITOS_PARTNER.to_string(),
                    Secret::builtin(crate::simulator::DEMO_BESITOS_TOKEN),
                )]),
            },
        }
    }

    /// The effective config as TOML, secrets redacted (`check-config`).
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

/// Collects problems instead of stopping at the first.
struct Problems(Vec<String>);

impl Problems {
    fn check<T>(&mut self, key: &str, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(format!("{key}: {e}"));
                None
            }
        }
    }
    fn push(&mut self, msg: String) {
        self.0.push(msg);
    }
}

fn socket(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("`{s}` is not an IP:port address (e.g. 127.0.0.1:8787)"))
}

fn millis(v: u64, min: u64, max: u64) -> Result<Duration, String> {
    if v < min || v > max {
        return Err(format!("{v} is outside {min}..={max} ms"));
    }
    Ok(Duration::from_millis(v))
}

fn bounded(v: u64, min: u64, max: u64) -> Result<usize, String> {
    if v < min || v > max {
        return Err(format!("{v} is outside {min}..={max}"));
    }
    Ok(v as usize)
}

fn validate(raw: RawConfig, env: &dyn Env) -> Result<Config, ConfigError> {
    let mut p = Problems(Vec::new());
    let s = &raw.server;
    let listen = p.check("server.listen", socket(&s.listen));
    let admin_listen = p.check("server.admin_listen", socket(&s.admin_listen));
    if let (Some(a), Some(b)) = (listen, admin_listen) {
        if a == b && a.port() != 0 {
            p.push("server.admin_listen: must differ from server.listen".into());
        }
    }
    let public_base_url = match &s.public_base_url {
        Some(u) => p
            .check("server.public_base_url", BaseUrl::parse(u))
            .map(Some),
        None => Some(None),
    };
    let body_limit_bytes = p.check(
        "server.body_limit_bytes",
        bounded(s.body_limit_bytes, 256, 16 * 1024 * 1024),
    );
    let header_read_timeout = p.check(
        "server.header_read_timeout_ms",
        millis(s.header_read_timeout_ms, 10, 600_000),
    );
    let body_read_timeout = p.check(
        "server.body_read_timeout_ms",
        millis(s.body_read_timeout_ms, 10, 600_000),
    );
    let shutdown_grace = p.check(
        "server.shutdown_grace_ms",
        millis(s.shutdown_grace_ms, 0, 600_000),
    );
    let mut allowed_hosts = Vec::new();
    for (i, h) in s.allowed_hosts.iter().enumerate() {
        let h = h.trim().to_ascii_lowercase();
        if h.is_empty()
            || Authority::try_from(h.as_str())
                .map(|a| a.as_str() != a.host())
                .unwrap_or(true)
        {
            p.push(format!(
                "server.allowed_hosts[{i}]: `{h}` is not a bare host name (no port, no scheme)"
            ));
        } else {
            allowed_hosts.push(h);
        }
    }
    let inbound_token = match (&s.inbound_token_env, &s.inbound_token_file) {
        (None, None) => Some(None),
        (e, f) => p
            .check(
                "server",
                Secret::load("server.inbound_token", e.as_deref(), f.as_deref(), env),
            )
            .map(Some),
    };
    if let (Some(addr), Some(None)) = (listen, &inbound_token) {
        if !addr.ip().is_loopback() {
            p.push(format!(
                "server.listen: {addr} is reachable from other hosts, so callers must authenticate: \
                 set server.inbound_token_env or server.inbound_token_file"
            ));
        }
    }

    let log_level = raw.log.level.trim().to_string();
    if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
        p.push(format!(
            "log.level: `{log_level}` is not a level or filter (e.g. info, debug, offergate=debug)"
        ));
    }
    let format = match raw.log.format.as_str() {
        "text" => Some(LogFormat::Text),
        "json" => Some(LogFormat::Json),
        other => {
            p.push(format!("log.format: `{other}` is not text or json"));
            None
        }
    };
    for (i, f) in raw.tls.extra_ca_files.iter().enumerate() {
        if !f.is_file() {
            p.push(format!(
                "tls.extra_ca_files[{i}]: {} is not a readable file",
                f.display()
            ));
        }
    }

    let encore_up = upstream("encore", &raw.encore, "https://api.encorekit.com", &mut p);
    if !raw.encore.partners.is_empty() {
        p.push("encore.partners: not a key of [encore] (partners belong to [besitos])".into());
    }
    let api_key = p.check(
        "encore",
        Secret::load(
            "encore.api_key",
            raw.encore.api_key_env.as_deref(),
            raw.encore.api_key_file.as_deref(),
            env,
        ),
    );
    if let Some(k) = &api_key {
        let v = k.expose();
        if !(v.starts_with("pk_test_") || v.starts_with("pk_live_")) {
            p.push(
                "encore.api_key: the key does not start with pk_test_ or pk_live_ (Encore publishable keys do)"
                    .into(),
            );
        }
    }

    let besitos_up = upstream("besitos", &raw.besitos, "https://wall.besitos.ai", &mut p);
    if raw.besitos.api_key_env.is_some() || raw.besitos.api_key_file.is_some() {
        p.push("besitos.api_key_env/api_key_file: not keys of [besitos]; each [[besitos.partners]] has token_env or token_file".into());
    }
    let mut partners = BTreeMap::new();
    for (i, raw_partner) in raw.besitos.partners.iter().enumerate() {
        let key = format!("besitos.partners[{i}]");
        if let Err(e) = crate::route::check_partner_id(&raw_partner.id) {
            p.push(format!("{key}.id: {e}"));
            continue;
        }
        if partners.contains_key(&raw_partner.id) {
            p.push(format!("{key}.id: `{}` is listed twice", raw_partner.id));
            continue;
        }
        if let Some(token) = p.check(
            &key,
            Secret::load(
                &format!("{key}.token"),
                raw_partner.token_env.as_deref(),
                raw_partner.token_file.as_deref(),
                env,
            ),
        ) {
            partners.insert(raw_partner.id.clone(), token);
        }
    }
    if raw.besitos.partners.is_empty() {
        p.push("besitos.partners: at least one [[besitos.partners]] with id and token_env or token_file is required".into());
    }

    if !p.0.is_empty() {
        return Err(ConfigError { problems: p.0 });
    }
    // Every `None` above pushed a problem, so these are all present.
    let missing = || ConfigError::one("internal: validated value missing".into());
    Ok(Config {
        server: ServerConfig {
            listen: listen.ok_or_else(missing)?,
            admin_listen: admin_listen.ok_or_else(missing)?,
            public_base_url: public_base_url.ok_or_else(missing)?,
            body_limit_bytes: body_limit_bytes.ok_or_else(missing)?,
            header_read_timeout: header_read_timeout.ok_or_else(missing)?,
            body_read_timeout: body_read_timeout.ok_or_else(missing)?,
            shutdown_grace: shutdown_grace.ok_or_else(missing)?,
            allowed_hosts,
            inbound_token: inbound_token.ok_or_else(missing)?,
        },
        log: LogConfig {
            level: log_level,
            format: format.ok_or_else(missing)?,
            access_log: raw.log.access_log,
        },
        tls: TlsConfig {
            extra_ca_files: raw.tls.extra_ca_files,
        },
        encore: EncoreConfig {
            upstream: encore_up.ok_or_else(missing)?,
            api_key: api_key.ok_or_else(missing)?,
        },
        besitos: BesitosConfig {
            upstream: besitos_up.ok_or_else(missing)?,
            partners,
        },
    })
}

fn upstream(
    section: &str,
    r: &RawRoute,
    default_url: &str,
    p: &mut Problems,
) -> Option<UpstreamConfig> {
    let url_key = format!("{section}.base_url");
    let base_url = p.check(
        &url_key,
        BaseUrl::parse(r.base_url.as_deref().unwrap_or(default_url)),
    );
    if let Some(b) = &base_url {
        if b.scheme == Scheme::HTTP && !b.is_loopback() && !r.allow_plain_http {
            p.push(format!(
                "{url_key}: plain http to {} would send the partner credential unencrypted; \
                 use https, or set {section}.allow_plain_http = true",
                b.authority
            ));
        }
    }
    let k = |name: &str| format!("{section}.{name}");
    let connect_timeout = p.check(
        &k("connect_timeout_ms"),
        millis(r.connect_timeout_ms, 1, 60_000),
    );
    let request_timeout = p.check(
        &k("request_timeout_ms"),
        millis(r.request_timeout_ms, 1, 600_000),
    );
    let max_response_bytes = p.check(
        &k("max_response_bytes"),
        bounded(r.max_response_bytes, 1024, 64 * 1024 * 1024),
    );
    let pool_idle_timeout = p.check(
        &k("pool_idle_timeout_ms"),
        millis(r.pool_idle_timeout_ms, 0, 3_600_000),
    );
    let pool_max_idle_per_host = p.check(
        &k("pool_max_idle_per_host"),
        bounded(r.pool_max_idle_per_host, 0, 10_000),
    );
    Some(UpstreamConfig {
        base_url: base_url?,
        allow_plain_http: r.allow_plain_http,
        connect_timeout: connect_timeout?,
        request_timeout: request_timeout?,
        max_response_bytes: max_response_bytes?,
        pool_idle_timeout: pool_idle_timeout?,
        pool_max_idle_per_host: pool_max_idle_per_host?,
    })
}

#[cfg(test)]
mod tests;
