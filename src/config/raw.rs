//! The config file as written: plain serde structs that refuse unknown keys.
//! Every default lives here, next to the key it belongs to; `config/offergate.toml`
//! documents each one. Validation into typed values happens in [`super::Config`].

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: RawServer,
    pub log: RawLog,
    pub tls: RawTls,
    pub encore: RawRoute,
    pub besitos: RawRoute,
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
    pub allowed_hosts: Vec<String>,
    pub inbound_token_env: Option<String>,
    pub inbound_token_file: Option<PathBuf>,
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
            allowed_hosts: Vec::new(),
            inbound_token_env: None,
            inbound_token_file: None,
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
    pub request_timeout_ms: u64,
    pub max_response_bytes: u64,
    pub pool_idle_timeout_ms: u64,
    pub pool_max_idle_per_host: u64,
    pub api_key_env: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub partners: Vec<RawPartner>,
}

impl Default for RawRoute {
    fn default() -> Self {
        RawRoute {
            base_url: None,
            allow_plain_http: false,
            connect_timeout_ms: 1_000,
            request_timeout_ms: 2_000,
            max_response_bytes: 1024 * 1024,
            pool_idle_timeout_ms: 90_000,
            pool_max_idle_per_host: 64,
            api_key_env: None,
            api_key_file: None,
            partners: Vec::new(),
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
