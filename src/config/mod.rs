//! Configuration: TOML file + `OFFERGATE_*` environment overrides + secrets from
//! env or file, validated once at start into typed values.
//!
//! Every problem found is reported together, each naming its key, so an operator
//! fixes a file in one pass. Nothing downstream re-checks or panics on config.

mod env;
mod error;
pub mod files;
mod live;
mod parse;
mod raw;
mod resilience;
mod secret;
mod state;
mod validate;

pub use env::{apply_overrides, Env, MapEnv, ProcessEnv};
use error::syntax_error;
pub use error::ConfigError;
pub use live::{Live, Secrets};
/// The check `[log] level` passes, for a level set at run time.
pub use parse::log_filter as check_log_filter;
pub use resilience::{
    CircuitConfig, IdempotencyConfig, OnLimit, Rate, RateLimitConfig, ResilienceConfig, RetryConfig,
};
pub use secret::{Secret, SecretSource};
pub use state::{OnStateError, StateBackend, StateConfig, StateTls, ThreadFile, Topology};

pub use crate::call::base_url::BaseUrl;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    pub state: StateConfig,
    pub reload: ReloadConfig,
    pub tracing: TracingConfig,
}

/// Traces over OTLP: off unless a collector is named.
#[derive(Clone, Debug, Serialize)]
pub struct TracingConfig {
    /// Where spans are sent (OTLP over HTTP, protobuf): the collector's
    /// traces URL, `/v1/traces` added to the base the setting (or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`) gives. `None`: tracing off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// The share of calls traced when the caller's `traceparent` does not
    /// decide (a sampled parent is always followed, an unsampled one never).
    pub sample_ratio: f64,
    /// The `service.name` the spans carry.
    pub service_name: String,
}

/// Reloading without a restart.
#[derive(Clone, Debug, Serialize)]
pub struct ReloadConfig {
    /// Also reload when the config file or a secret file changes (checked
    /// every second), not only on SIGHUP.
    pub watch: bool,
}

/// The Encore doc's integrator rules.
#[derive(Clone, Debug, Serialize)]
pub struct IntegratorConfig {
    /// A message this long after the previous one starts a re-engagement.
    #[serde(rename = "idle_gap_ms", serialize_with = "as_ms")]
    pub idle_gap: Duration,
    /// Offers one thread may show (0: no cap).
    pub thread_cap: u32,
    /// How far back shown offers count toward the cap.
    #[serde(rename = "thread_window_ms", serialize_with = "as_ms")]
    pub thread_window: Duration,
    /// Compose the message for every offer, not only when a caller asks.
    pub compose: bool,
    /// Which messages the idle gap is measured from.
    pub idle_gap_basis: IdleGapBasis,
    /// Whole-message texts (any case) that opt a thread out.
    pub opt_out_keywords: Vec<String>,
    /// The eligibility endpoint's body limit (a thread's history is long).
    pub body_limit_bytes: usize,
}

/// What silence starts an idle gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IdleGapBasis {
    /// The end user's messages only: the doc's "the diner went quiet and
    /// came back", which an outbound reminder does not interrupt.
    Inbound,
    /// Any message, either way.
    Any,
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
    /// After a stop signal, how long the proxy listener still takes new
    /// calls (with `/readyz` already 503) before it drains: for a sidecar
    /// stopped together with its app, which may still be making calls.
    #[serde(rename = "drain_delay_ms", serialize_with = "as_ms")]
    pub drain_delay: Duration,
    /// Request bodies being read at once, in bytes, over every connection:
    /// past it a call is shed with 503 (`offergate_shed_total{reason="body_budget"}`).
    pub body_budget_bytes: usize,
    /// Calls in flight at once; past it a call is answered 503 at once.
    pub max_in_flight: usize,
    /// Open caller connections; at the cap the longest-idle one is closed.
    pub max_connections: usize,
    /// Request headers accepted; more answers 431 (below the partners' limits).
    pub max_headers: usize,
    /// The request line and headers together, in bytes; more answers 431.
    pub max_header_bytes: usize,
    /// Lower-cased host names (without port) accepted in `Host`; empty: any.
    pub allowed_hosts: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbound_token: Option<Secret>,
    /// Lets a request change the admin listener's state (`PUT /log-level`)
    /// from another host; loopback needs none. Reading never needs it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<Secret>,
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
    #[serde(rename = "try_timeout_ms", serialize_with = "as_ms")]
    pub try_timeout: Duration,
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
    /// The one host an offer's `clickUrl` may point at, over https (the
    /// partner's short links; another for a sandbox).
    pub offer_link_host: String,
    pub integrator: IntegratorConfig,
    /// What Encore receives as `chatId`.
    pub chat_id: ChatIdMode,
    /// The pseudonym's key (with [`ChatIdMode::Pseudonym`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_id_key: Option<Secret>,
    #[serde(flatten)]
    pub resilience: ResilienceConfig,
}

/// What Encore receives as `chatId`: a keyed pseudonym of the caller's (an
/// end user's phone number stays here), or the caller's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatIdMode {
    Pseudonym,
    AsSent,
}

#[derive(Clone, Debug, Serialize)]
pub struct BesitosConfig {
    #[serde(flatten)]
    pub upstream: UpstreamConfig,
    #[serde(flatten)]
    pub resilience: ResilienceConfig,
    /// Bearer token per `partner_id`.
    pub partners: BTreeMap<String, Secret>,
}

fn as_ms_list<S: serde::Serializer>(d: &[Duration], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(d.iter().map(|d| d.as_millis() as u64))
}

fn as_opt_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.map_or(0, |d| d.as_millis() as u64))
}

fn as_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// Where `run` and `check-config` look when no `-c` is given.
pub const DEFAULT_PATH: &str = "config/offergate.toml";

/// The shipped file with its secrets read from `ENCORE_API_KEY` and
/// `BESITOS_TOKEN`, partner `eafLst9T` and `chatId` as sent: for tests
/// about anything else.
#[cfg(test)]
pub(crate) fn shipped_reading_env() -> String {
    include_str!("../../config/offergate.toml")
        .replace(
            "api_key_file = \"/run/secrets/offergate/encore_api_key\"",
            "api_key_env = \"ENCORE_API_KEY\"",
        )
        .replace(
            "token_file = \"/run/secrets/offergate/besitos_token\"",
            "token_env = \"BESITOS_TOKEN\"",
        )
        .replace("REPLACE-WITH-YOUR-PARTNER-ID", "eafLst9T")
        .replace("chat_id = \"pseudonym\"", "chat_id = \"as_sent\"")
        .replace(
            "chat_id_key_file = \"/run/secrets/offergate/chat_id_key\" # or chat_id_key_env\n",
            "",
        )
}

impl Config {
    /// What is worth saying about a valid config without refusing it: each
    /// secret file that its group or others may read.
    pub fn warnings(&self) -> Vec<String> {
        let secrets = Secrets::of(self);
        let named = std::iter::once(("encore.api_key_file", &secrets.encore_key))
            .chain(
                secrets
                    .partners
                    .values()
                    .map(|s| ("besitos.partners.token_file", s)),
            )
            .chain(
                secrets
                    .inbound_token
                    .iter()
                    .map(|s| ("server.inbound_token_file", s)),
            )
            .chain(
                secrets
                    .admin_token
                    .iter()
                    .map(|s| ("server.admin_token_file", s)),
            )
            .chain(
                self.encore
                    .chat_id_key
                    .iter()
                    .map(|s| ("encore.chat_id_key_file", s)),
            )
            .chain(
                self.state
                    .redis_password
                    .iter()
                    .map(|s| ("state.redis_password_file", s)),
            );
        let mut out = Vec::new();
        for (key, secret) in named {
            if let SecretSource::File(path) = secret.source() {
                if let Some(mode) = files::open_to_others(path) {
                    out.push(format!(
                        "{key}: {} may be read by its group or others (mode {mode:03o}); `chmod 600` it",
                        path.display()
                    ));
                }
            }
        }
        out
    }

    /// Reads, overrides and validates the file at `path`.
    pub fn load(path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        Self::load_with_digest(path, env).map(|(config, _)| config)
    }

    /// [`Config::load`], with the SHA-256 (hex) of the bytes it read: which
    /// file is live, for the log and the operator.
    pub fn load_with_digest(path: &Path, env: &dyn Env) -> Result<(Config, String), ConfigError> {
        let (text, digest) = Self::read_file(path)?;
        let config = Self::from_toml(&text, env).map_err(|e| e.in_file(path))?;
        Ok((config, digest))
    }

    /// The text of the config file at `path`, and the SHA-256 (hex) of its
    /// bytes.
    pub fn read_file(path: &Path) -> Result<(String, String), ConfigError> {
        let text = files::read_text(path, files::MAX_CONFIG_BYTES).map_err(ConfigError::one)?;
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        let digest = crate::call::fingerprint::hex(digest.as_ref());
        Ok((text, digest))
    }

    /// Parses, overrides and validates a TOML document.
    pub fn from_toml(text: &str, env: &dyn Env) -> Result<Config, ConfigError> {
        let mut doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::one(syntax_error(text, &e)))?;
        let overridden = apply_overrides(&mut doc, env).map_err(ConfigError::one)?;
        let raw: RawConfig = match raw::deserialize(toml::Value::Table(doc.clone())) {
            Ok(raw) => raw,
            // serde stops at the first key that does not fit; find them all,
            // then check the rest of the file as if those keys were not
            // there, so one pass names every problem.
            Err(first) => {
                let bad = raw::every_bad_key(&doc);
                let mut problems: Vec<String> = bad
                    .iter()
                    .map(
                        |(path, e)| match overridden.iter().find(|(set, _)| set == path) {
                            Some((_, var)) => {
                                format!("{e} (set by the environment variable {var})")
                            }
                            None => e.clone(),
                        },
                    )
                    .collect();
                if problems.is_empty() {
                    problems.push(first.to_string());
                    return Err(ConfigError { problems });
                }
                let paths: Vec<Vec<String>> = bad.into_iter().map(|(path, _)| path).collect();
                let rest = raw::without(&doc, &paths);
                if let Ok(raw) = raw::deserialize(toml::Value::Table(rest)) {
                    if let Err(e) = validate(raw, env) {
                        problems.extend(e.problems);
                    }
                }
                return Err(ConfigError { problems });
            }
        };
        validate(raw, env)
    }

    /// How `route`'s partner is reached.
    pub fn upstream(&self, route: crate::call::route::Route) -> &UpstreamConfig {
        match route {
            crate::call::route::Route::EncoreOffers => &self.encore.upstream,
            crate::call::route::Route::BesitosGoals => &self.besitos.upstream,
        }
    }

    /// How `route` survives a failing partner.
    pub fn resilience(&self, route: crate::call::route::Route) -> &ResilienceConfig {
        match route {
            crate::call::route::Route::EncoreOffers => &self.encore.resilience,
            crate::call::route::Route::BesitosGoals => &self.besitos.resilience,
        }
    }

    /// The effective config as TOML, secrets redacted (`check-config`).
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

#[cfg(test)]
mod tests;
