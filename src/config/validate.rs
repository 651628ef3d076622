//! From the raw file to a [`Config`]: every key checked, every problem collected
//! with its key, cross-field rules applied, secrets loaded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use http::uri::{Authority, Scheme};

use super::raw::{RawConfig, RawIdempotency, RawRateLimit, RawRetry, RawRoute};
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
    let max_in_flight = p.check(
        "server.max_in_flight",
        bounded(s.max_in_flight, 1, 1_000_000),
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

    let encore_route = route("encore", &raw.encore, &ENCORE_DEFAULTS, &mut p);
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

    let besitos_route = route("besitos", &raw.besitos, &BESITOS_DEFAULTS, &mut p);
    if raw.besitos.api_key_env.is_some() || raw.besitos.api_key_file.is_some() {
        p.push("besitos.api_key_env/api_key_file: not keys of [besitos]; each [[besitos.partners]] has token_env or token_file".into());
    }
    let mut partners = BTreeMap::new();
    for (i, raw_partner) in raw.besitos.partners.iter().enumerate() {
        let key = format!("besitos.partners[{i}]");
        if let Err(e) = crate::call::route::check_partner_id(&raw_partner.id) {
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
            max_in_flight: max_in_flight.ok_or_else(missing)?,
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
            upstream: encore_route.clone().ok_or_else(missing)?.0,
            resilience: encore_route.ok_or_else(missing)?.1,
            api_key: api_key.ok_or_else(missing)?,
        },
        besitos: BesitosConfig {
            upstream: besitos_route.clone().ok_or_else(missing)?.0,
            resilience: besitos_route.ok_or_else(missing)?.1,
            partners,
        },
    })
}

/// What differs between the two partner sections when a key is left out.
pub(super) struct RouteDefaults {
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

pub(super) const ENCORE_DEFAULTS: RouteDefaults = RouteDefaults {
    base_url: "https://api.encorekit.com",
    try_timeout_ms: 1_500,
    deadline_ms: 2_500,
    body_key_window_ms: 300_000,
    partner: (50.0, 50),
    client: (5.0, 10),
    on_limit: OnLimit::Fallback,
    retry_ambiguous: false,
};

pub(super) const BESITOS_DEFAULTS: RouteDefaults = RouteDefaults {
    base_url: "https://wall.besitos.ai",
    try_timeout_ms: 2_000,
    deadline_ms: 5_000,
    body_key_window_ms: 30_000,
    partner: (20.0, 20),
    client: (10.0, 20),
    on_limit: OnLimit::Reject,
    retry_ambiguous: true,
};

fn route(
    section: &str,
    r: &RawRoute,
    d: &RouteDefaults,
    p: &mut Problems,
) -> Option<(UpstreamConfig, ResilienceConfig)> {
    let url_key = format!("{section}.base_url");
    let base_url = p.check(
        &url_key,
        BaseUrl::parse(r.base_url.as_deref().unwrap_or(d.base_url)),
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
    let try_timeout = p.check(
        &k("try_timeout_ms"),
        millis(r.try_timeout_ms.unwrap_or(d.try_timeout_ms), 1, 600_000),
    );
    let deadline = p.check(
        &k("deadline_ms"),
        millis(r.deadline_ms.unwrap_or(d.deadline_ms), 1, 600_000),
    );
    if let (Some(t), Some(dl)) = (try_timeout, deadline) {
        if t > dl {
            p.push(format!(
                "{}: {} ms is longer than {} ({} ms), so no try could use it",
                k("try_timeout_ms"),
                t.as_millis(),
                k("deadline_ms"),
                dl.as_millis()
            ));
        }
    }
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
    let retry = retry(&format!("{section}.retry"), &r.retry, d, deadline, p);
    let circuit = &r.circuit;
    let failure_threshold = p.check(
        &k("circuit.failure_threshold"),
        bounded(circuit.failure_threshold, 1, 100_000),
    );
    let cooldown = p.check(
        &k("circuit.cooldown_ms"),
        millis(circuit.cooldown_ms, 1, 3_600_000),
    );
    let idempotency = idempotency(&format!("{section}.idempotency"), &r.idempotency, d, p);
    let rate_limit = rate_limit(&format!("{section}.rate_limit"), &r.rate_limit, d, p);
    let upstream = UpstreamConfig {
        base_url: base_url?,
        allow_plain_http: r.allow_plain_http,
        connect_timeout: connect_timeout?,
        try_timeout: try_timeout?,
        max_response_bytes: max_response_bytes?,
        pool_idle_timeout: pool_idle_timeout?,
        pool_max_idle_per_host: pool_max_idle_per_host?,
    };
    let resilience = ResilienceConfig {
        deadline: deadline?,
        soft_fallback: r.soft_fallback,
        retry: retry?,
        circuit: CircuitConfig {
            failure_threshold: failure_threshold? as u32,
            cooldown: cooldown?,
        },
        idempotency: idempotency?,
        rate_limit: rate_limit?,
    };
    Some((upstream, resilience))
}

fn rate(
    key_rate: &str,
    per_second: f64,
    key_burst: &str,
    burst: u64,
    p: &mut Problems,
) -> Option<Rate> {
    let ok_rate = per_second.is_finite() && per_second > 0.0 && per_second <= 1_000_000.0;
    if !ok_rate {
        p.push(format!(
            "{key_rate}: {per_second} must be a rate above 0 (fractions allowed, e.g. 0.5) and at most 1000000"
        ));
    }
    let burst = p.check(key_burst, bounded(burst, 1, 1_000_000));
    ok_rate.then_some(Rate {
        per_second,
        burst: burst? as u32,
    })
}

fn rate_limit(
    section: &str,
    r: &RawRateLimit,
    d: &RouteDefaults,
    p: &mut Problems,
) -> Option<RateLimitConfig> {
    let k = |name: &str| format!("{section}.{name}");
    let partner = rate(
        &k("partner_per_second"),
        r.partner_per_second.unwrap_or(d.partner.0),
        &k("partner_burst"),
        r.partner_burst.unwrap_or(d.partner.1),
        p,
    );
    let client = rate(
        &k("client_per_second"),
        r.client_per_second.unwrap_or(d.client.0),
        &k("client_burst"),
        r.client_burst.unwrap_or(d.client.1),
        p,
    );
    let mut overrides = BTreeMap::new();
    for (id, o) in &r.client_overrides {
        let key = k(&format!("client_overrides.\"{id}\""));
        if let Some(rate) = rate(
            &format!("{key}.per_second"),
            o.per_second,
            &format!("{key}.burst"),
            o.burst,
            p,
        ) {
            overrides.insert(id.clone(), rate);
        }
    }
    let max_wait = p.check(&k("max_wait_ms"), millis(r.max_wait_ms, 0, 60_000));
    let on_limit = match r.on_limit.as_deref() {
        None => Some(d.on_limit),
        Some("fallback") => Some(OnLimit::Fallback),
        Some("reject") => Some(OnLimit::Reject),
        Some(other) => {
            p.push(format!(
                "{}: `{other}` is not fallback or reject",
                k("on_limit")
            ));
            None
        }
    };
    let max_tracked_clients = p.check(
        &k("max_tracked_clients"),
        bounded(r.max_tracked_clients, 1, 100_000_000),
    );
    if overrides.len() != r.client_overrides.len() {
        return None;
    }
    Some(RateLimitConfig {
        enabled: r.enabled,
        partner: partner?,
        client: client?,
        client_overrides: overrides,
        max_wait: max_wait?,
        on_limit: on_limit?,
        max_tracked_clients: max_tracked_clients?,
    })
}

fn idempotency(
    section: &str,
    r: &RawIdempotency,
    d: &RouteDefaults,
    p: &mut Problems,
) -> Option<IdempotencyConfig> {
    let k = |name: &str| format!("{section}.{name}");
    let ttl = p.check(&k("ttl_ms"), millis(r.ttl_ms, 1, 30 * 24 * 3600 * 1000));
    let window_ms = r.body_key_window_ms.unwrap_or(d.body_key_window_ms);
    let body_key_window = match window_ms {
        0 => Some(None),
        ms => p
            .check(&k("body_key_window_ms"), millis(ms, 1, 24 * 3600 * 1000))
            .map(Some),
    };
    let max_entries = p.check(&k("max_entries"), bounded(r.max_entries, 1, 100_000_000));
    let max_bytes = p.check(
        &k("max_bytes"),
        bounded(r.max_bytes, 64 * 1024, 64 * 1024 * 1024 * 1024),
    );
    Some(IdempotencyConfig {
        enabled: r.enabled,
        ttl: ttl?,
        body_key_window: body_key_window?,
        max_entries: max_entries? as u64,
        max_bytes: max_bytes? as u64,
    })
}

fn retry(
    section: &str,
    r: &RawRetry,
    d: &RouteDefaults,
    deadline: Option<Duration>,
    p: &mut Problems,
) -> Option<RetryConfig> {
    let k = |name: &str| format!("{section}.{name}");
    let max_retries = p.check(&k("max_retries"), bounded(r.max_retries, 0, 10));
    let mut backoff = Vec::with_capacity(r.backoff_ms.len());
    for (i, ms) in r.backoff_ms.iter().enumerate() {
        if let Some(d) = p.check(
            &format!("{section}.backoff_ms[{i}]"),
            millis(*ms, 1, 60_000),
        ) {
            backoff.push(d);
        }
    }
    if r.backoff_ms.is_empty() && r.max_retries > 0 {
        p.push(format!(
            "{}: empty, but max_retries is {}; give at least one delay (the last one repeats)",
            k("backoff_ms"),
            r.max_retries
        ));
    }
    let retry_after_cap = p.check(
        &k("retry_after_cap_ms"),
        millis(r.retry_after_cap_ms, 0, 3_600_000),
    );
    let min_try = p.check(&k("min_try_ms"), millis(r.min_try_ms, 1, 600_000));
    if let (Some(m), Some(dl)) = (min_try, deadline) {
        if m > dl {
            p.push(format!(
                "{}: {} ms is longer than the deadline ({} ms), so no retry could ever start",
                k("min_try_ms"),
                m.as_millis(),
                dl.as_millis()
            ));
        }
    }
    let budget_percent = if (0.0..=1000.0).contains(&r.budget_percent) {
        Some(r.budget_percent as f32)
    } else {
        p.push(format!(
            "{}: {} is outside 0..=1000",
            k("budget_percent"),
            r.budget_percent
        ));
        None
    };
    let budget_min_per_second = p.check(
        &k("budget_min_per_second"),
        bounded(r.budget_min_per_second, 0, 1_000_000),
    );
    let budget_window = p.check(
        &k("budget_window_ms"),
        millis(r.budget_window_ms, 1_000, 60_000),
    );
    Some(RetryConfig {
        max_retries: max_retries? as u32,
        backoff: if backoff.len() == r.backoff_ms.len() {
            backoff
        } else {
            return None;
        },
        retry_after_cap: retry_after_cap?,
        retry_ambiguous: r.retry_ambiguous.unwrap_or(d.retry_ambiguous),
        min_try: min_try?,
        budget_percent: budget_percent?,
        budget_min_per_second: budget_min_per_second? as u32,
        budget_window: budget_window?,
    })
}
