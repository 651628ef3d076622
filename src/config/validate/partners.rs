//! `[encore]` and `[besitos]`: the connection, resilience, idempotency and
//! rate-limit keys both partner sections share, and what belongs to one only
//! (Encore's key, Besitos's partners).

use std::collections::BTreeMap;
use std::time::Duration;

use http::uri::Scheme;

use super::super::parse::{bounded, choice, host_name, millis, on_limit, per_second, Problems};
use super::super::raw::{
    RawIdempotency, RawIntegrator, RawRateLimit, RawRetry, RawRoute, RouteDefaults,
    BESITOS_DEFAULTS, ENCORE_DEFAULTS,
};
use super::super::*;

/// The partner id the shipped config carries until the operator sets theirs.
const PLACEHOLDER_PARTNER_ID: &str = "REPLACE-WITH-YOUR-PARTNER-ID";

/// `[encore]`: the shared keys, and the publishable key.
pub(super) fn encore(r: &RawRoute, env: &dyn Env, p: &mut Problems) -> Option<EncoreConfig> {
    let route = route("encore", r, &ENCORE_DEFAULTS, p);
    if !r.partners.is_empty() {
        p.push("encore.partners: not a key of [encore] (partners belong to [besitos])".into());
    }
    let api_key = p.keep(Secret::load(
        "encore.api_key",
        r.api_key_env.as_deref(),
        r.api_key_file.as_deref(),
        env,
    ));
    if let Some(k) = &api_key {
        let v = k.expose();
        if !(v.starts_with("pk_test_") || v.starts_with("pk_live_")) {
            p.push(
                "encore.api_key: the key does not start with pk_test_ or pk_live_ (Encore publishable keys do)"
                    .into(),
            );
        }
    }
    let integrator = integrator(r.integrator.as_ref(), p);
    let offer_link_host = match &r.offer_link_host {
        None => Some(crate::partners::encore::LINK_HOST.to_string()),
        Some(h) => p.check("encore.offer_link_host", host_name(h)),
    };
    let modes = [
        ("pseudonym", ChatIdMode::Pseudonym),
        ("as_sent", ChatIdMode::AsSent),
    ];
    let chat_id = p.check(
        "encore.chat_id",
        choice(r.chat_id.as_deref().unwrap_or("pseudonym"), &modes),
    );
    let chat_id_key = match chat_id {
        Some(ChatIdMode::Pseudonym) => p
            .keep(
                Secret::load(
                    "encore.chat_id_key",
                    r.chat_id_key_env.as_deref(),
                    r.chat_id_key_file.as_deref(),
                    env,
                )
                .map_err(|e| {
                    crate::call::problem::Problem(format!(
                        "{e}: the key of the pseudonym Encore gets as chatId (the same on every replica; or chat_id = \"as_sent\")"
                    ))
                }),
            )
            .inspect(|key| {
                if key.expose().len() < 16 {
                    p.push("encore.chat_id_key: at least 16 characters (a random secret, e.g. `openssl rand -hex 32`)".into());
                }
            })
            .map(Some),
        // A key given anyway is not read: the mode can be switched by an
        // override alone.
        Some(ChatIdMode::AsSent) => Some(None),
        None => None,
    };
    let (upstream, resilience) = route?;
    Some(EncoreConfig {
        upstream,
        resilience,
        api_key: api_key?,
        offer_link_host: offer_link_host?,
        integrator: integrator?,
        chat_id: chat_id?,
        chat_id_key: chat_id_key?,
    })
}

/// `[besitos]`: the shared keys, and a token per partner.
pub(super) fn besitos(r: &RawRoute, env: &dyn Env, p: &mut Problems) -> Option<BesitosConfig> {
    let route = route("besitos", r, &BESITOS_DEFAULTS, p);
    if r.integrator.is_some() {
        p.push(
            "besitos.integrator: not a key of [besitos] (the integrator rules are Encore's)".into(),
        );
    }
    if r.offer_link_host.is_some() {
        p.push("besitos.offer_link_host: not a key of [besitos] (offers are Encore's)".into());
    }
    if r.chat_id.is_some() || r.chat_id_key_env.is_some() || r.chat_id_key_file.is_some() {
        p.push("besitos.chat_id: not a key of [besitos] (chatId is Encore's)".into());
    }
    if r.api_key_env.is_some() || r.api_key_file.is_some() {
        p.push("besitos.api_key_env/api_key_file: not keys of [besitos]; each [[besitos.partners]] has token_env or token_file".into());
    }
    let mut partners = BTreeMap::new();
    for (i, raw_partner) in r.partners.iter().enumerate() {
        let key = format!("besitos.partners[{i}]");
        if raw_partner.id == PLACEHOLDER_PARTNER_ID {
            p.push(format!(
                "{key}.id: `{PLACEHOLDER_PARTNER_ID}` is the shipped placeholder; put the partner id Besitos gave you here"
            ));
        } else if let Err(e) = crate::partners::besitos::check_partner_id(&raw_partner.id) {
            p.push(format!("{key}.id: {e}"));
            continue;
        }
        if partners.contains_key(&raw_partner.id) {
            p.push(format!("{key}.id: `{}` is listed twice", raw_partner.id));
            continue;
        }
        if let Some(token) = p.keep(Secret::load(
            &format!("{key}.token"),
            raw_partner.token_env.as_deref(),
            raw_partner.token_file.as_deref(),
            env,
        )) {
            partners.insert(raw_partner.id.clone(), token);
        }
    }
    if r.partners.is_empty() {
        p.push("besitos.partners: at least one [[besitos.partners]] with id and token_env or token_file is required".into());
    }
    let (upstream, resilience) = route?;
    Some(BesitosConfig {
        upstream,
        resilience,
        partners,
    })
}

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

/// `[encore.integrator]`.
fn integrator(r: Option<&RawIntegrator>, p: &mut Problems) -> Option<IntegratorConfig> {
    let default = RawIntegrator::default();
    let r = r.unwrap_or(&default);
    let idle_gap = p.check(
        "encore.integrator.idle_gap_ms",
        millis(r.idle_gap_ms, 1_000, 365 * 24 * 3_600_000),
    );
    let thread_cap = p.check(
        "encore.integrator.thread_cap",
        bounded(r.thread_cap, 0, 1_000),
    );
    let thread_window = p.check(
        "encore.integrator.thread_window_ms",
        millis(r.thread_window_ms, 1_000, 365 * 24 * 3_600_000),
    );
    let bases = [
        ("inbound", IdleGapBasis::Inbound),
        ("any", IdleGapBasis::Any),
    ];
    let idle_gap_basis = p.check(
        "encore.integrator.idle_gap_basis",
        choice(&r.idle_gap_basis, &bases),
    );
    let body_limit = p.check(
        "encore.integrator.body_limit_bytes",
        bounded(r.body_limit_bytes, 1024, 16 * 1024 * 1024),
    );
    let mut keywords = Vec::new();
    for (i, word) in r.opt_out_keywords.iter().enumerate() {
        let word = word.trim();
        if word.is_empty() || word.chars().count() > 64 || word.chars().any(char::is_control) {
            p.push(format!(
                "encore.integrator.opt_out_keywords[{i}]: must be 1 to 64 characters of text"
            ));
        } else {
            keywords.push(crate::partners::encore::words::opt_out_word(word));
        }
    }
    Some(IntegratorConfig {
        idle_gap: idle_gap?,
        thread_cap: thread_cap? as u32,
        thread_window: thread_window?,
        compose: r.compose,
        idle_gap_basis: idle_gap_basis?,
        opt_out_keywords: keywords,
        body_limit_bytes: body_limit?,
    })
}

/// A token bucket from its two keys, each checked and named on its own.
fn rate_at(
    key_rate: &str,
    rate: f64,
    key_burst: &str,
    burst: u64,
    p: &mut Problems,
) -> Option<Rate> {
    let rate = p.check(key_rate, per_second(rate));
    let burst = p.check(key_burst, bounded(burst, 1, 1_000_000));
    Some(Rate {
        per_second: rate?,
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
    let partner = rate_at(
        &k("partner_per_second"),
        r.partner_per_second.unwrap_or(d.partner.0),
        &k("partner_burst"),
        r.partner_burst.unwrap_or(d.partner.1),
        p,
    );
    let client = rate_at(
        &k("client_per_second"),
        r.client_per_second.unwrap_or(d.client.0),
        &k("client_burst"),
        r.client_burst.unwrap_or(d.client.1),
        p,
    );
    let mut overrides = BTreeMap::new();
    for (id, o) in &r.client_overrides {
        let key = k(&format!("client_overrides.\"{id}\""));
        if let Some(rate) = rate_at(
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
        Some(s) => p.check(&k("on_limit"), on_limit(s)),
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
        enforce: r.enforce,
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
