//! From the raw file to a [`Config`]: every key checked, every problem collected
//! with its key, cross-field rules applied, secrets loaded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use http::uri::{Authority, Scheme};

use super::raw::{RawConfig, RawRoute};
use super::*;

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

pub(super) fn validate(raw: RawConfig, env: &dyn Env) -> Result<Config, ConfigError> {
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
