//! Configuration: TOML file + `OFFERGATE_*` environment overrides + secrets from
//! env or file, validated once at start into typed values.
//!
//! Every problem found is reported together, each naming its key, so an operator
//! fixes a file in one pass. Nothing downstream re-checks or panics on config.

mod env;
mod raw;
mod secret;
mod validate;

pub use env::{apply_overrides, Env, MapEnv, ProcessEnv};
pub use secret::{Secret, SecretSource};

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use serde::Serialize;

use raw::RawConfig;
use validate::validate;

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

#[cfg(test)]
mod tests;
