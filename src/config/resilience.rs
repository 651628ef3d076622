//! How each route survives a failing or busy partner, as configured:
//! deadline, retries, circuit, idempotency, rate limits.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::{as_ms, as_ms_list, as_opt_ms};

/// How one route survives a failing partner: deadline, retries, circuit, fallback.
#[derive(Clone, Debug, Serialize)]
pub struct ResilienceConfig {
    /// The most a call may take, retries and backoff included.
    #[serde(rename = "deadline_ms", serialize_with = "as_ms")]
    pub deadline: Duration,
    /// Answer the partner's own "nothing for you" body on failure (else 502/504).
    pub soft_fallback: bool,
    pub retry: RetryConfig,
    pub circuit: CircuitConfig,
    pub idempotency: IdempotencyConfig,
    pub rate_limit: RateLimitConfig,
}

/// A token bucket: `per_second` refill (fractions allowed), `burst` capacity.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

/// What a caller gets when a limit trips and the short wait did not help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnLimit {
    /// The soft fallback, reason `rate_limited`.
    Fallback,
    /// 429 with `Retry-After` and the error shape.
    Reject,
}

/// How much of the partner's quota offergate spends, and how fairly.
#[derive(Clone, Debug, Serialize)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// The whole route (every try, retries included).
    pub partner: Rate,
    /// Per caller: `clientId` for Encore, `partner_id` for Besitos.
    pub client: Rate,
    /// Per-caller exceptions (a big operator may get more).
    pub client_overrides: BTreeMap<String, Rate>,
    /// The longest a call waits for a permit (never past its deadline).
    #[serde(rename = "max_wait_ms", serialize_with = "as_ms")]
    pub max_wait: Duration,
    pub on_limit: OnLimit,
    /// Callers tracked before idle ones are purged early.
    pub max_tracked_clients: usize,
    /// `false`: shadow mode. What the limits would refuse is counted
    /// (`mode="shadow"`) and let through, to roll a quota out safely.
    pub enforce: bool,
}

/// De-duplication of one route's calls.
#[derive(Clone, Debug, Serialize)]
pub struct IdempotencyConfig {
    /// Off: every call reaches the partner, keys are ignored.
    pub enabled: bool,
    /// How long an answer stored under an `Idempotency-Key` is replayed.
    #[serde(rename = "ttl_ms", serialize_with = "as_ms")]
    pub ttl: Duration,
    /// Without the header, identical bodies within this window are one call;
    /// `None`: off.
    #[serde(rename = "body_key_window_ms", serialize_with = "as_opt_ms")]
    pub body_key_window: Option<Duration>,
    pub max_entries: u64,
    pub max_bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RetryConfig {
    pub max_retries: u32,
    /// Backoff ceilings per retry (full jitter below each); the last repeats.
    #[serde(rename = "backoff_ms", serialize_with = "as_ms_list")]
    pub backoff: Vec<Duration>,
    /// The longest partner `Retry-After` honoured (and paused for).
    #[serde(rename = "retry_after_cap_ms", serialize_with = "as_ms")]
    pub retry_after_cap: Duration,
    /// Retry a try that may have reached the partner (timeout, reset after sending).
    pub retry_ambiguous: bool,
    /// A retry starts only if at least this much of the deadline is left after its backoff.
    #[serde(rename = "min_try_ms", serialize_with = "as_ms")]
    pub min_try: Duration,
    pub budget_percent: f32,
    pub budget_min_per_second: u32,
    #[serde(rename = "budget_window_ms", serialize_with = "as_ms")]
    pub budget_window: Duration,
}

#[derive(Clone, Debug, Serialize)]
pub struct CircuitConfig {
    /// Consecutive failed tries that open the circuit.
    pub failure_threshold: u32,
    /// How long it stays open before one probe may test the partner.
    #[serde(rename = "cooldown_ms", serialize_with = "as_ms")]
    pub cooldown: Duration,
}
