//! Rate limits: spend the partner's quota fairly, and back off when the partner
//! says so. Token buckets (GCRA, governor) at two levels:
//!
//! - [`CallerLimit`], once per call (below idempotency, so a replay spends
//!   nothing): a partner 429's pause (scope `upstream`, the state the circuit
//!   pause, `pause.rs`), then the caller's own bucket (scope `client`), keyed by
//!   `clientId` for Encore and `partner_id` for Besitos, with per-key overrides.
//!   One busy operator cannot starve the others.
//! - [`PartnerQuota`], once per try (inside the retry layer, so retries spend
//!   from the same quota): the quota offergate may spend on the partner (scope
//!   `partner`).
//!
//! When a bucket is empty the call waits for a permit up to `max_wait_ms`,
//! never past its deadline; then it is refused with `rate_limited`, which the
//! fallback layer turns into the route's `on_limit` answer (Encore: the soft
//! fallback; Besitos: 429 with `Retry-After`). A pause that outlasts the wait
//! answers `circuit_open`, as for any partner the circuit keeps us from.
//!
//! Keyed state is bounded: callers whose bucket is full again are purged every
//! second, and every 100 ms while more than `max_tracked_clients` are tracked.
//!
//! Where the permits come from is [`Permits`]'s (`permits.rs`): this
//! replica's buckets, or with `[state] backend = "redis"` the fleet's
//! (`fleet.rs`), this replica's behind them for `fail_open`. Neither layer
//! knows which.

mod buckets;
mod fleet;
mod permits;

use crate::call::problem::Problem;
use std::future::Future;
use std::sync::Arc;

use prometheus::IntCounterVec;
use tower::Layer;

use super::circuit::Breakers;
use super::pause::Pauses;
use super::ProxyService;
use crate::call::error::{CallError, GatewayError, LimitScope};
use crate::call::request::{ProxyRequest, ProxyResponse};
use crate::call::route::PerRoute;
use crate::config::{Config, RateLimitConfig};
use crate::metrics::Metrics;
use crate::state::Redis;
pub use buckets::CallerBuckets;
pub use fleet::{FleetPermits, LimitPlan};
pub use permits::{AnyPermits, Decision, LocalPermits, Passed, Permits};
use permits::{Refused, Step, Wait};

/// The permits `[state]` asks for, shared by both layers.
pub fn permits(
    config: &Config,
    pauses: Pauses,
    breakers: Breakers,
    shared: Option<Redis>,
) -> Arc<AnyPermits> {
    let local = LocalPermits::new(config, pauses);
    Arc::new(match shared {
        None => AnyPermits::Local(local),
        Some(redis) => AnyPermits::Fleet(fleet::FleetPermits::new(config, redis, local, breakers)),
    })
}

/// `offergate_rate_limited_total{route,scope,mode}`, shared by both layers here.
#[derive(Clone)]
pub struct LimitedCounter(IntCounterVec);

impl LimitedCounter {
    pub fn register(metrics: &Metrics) -> Result<LimitedCounter, Problem> {
        metrics
            .counter_vec(
                "offergate_rate_limited_total",
                "Calls refused by a rate limit after the short wait, by route, scope (partner, client, upstream) and mode (enforced; shadow: enforce = false, the call went on).",
                &["route", "scope", "mode"],
            )
            .map(|c| {
                Metrics::zeroed(
                    &c,
                    &[
                        &crate::call::route::COUNTED_AS,
                        &[LimitScope::Partner, LimitScope::Client, LimitScope::Upstream]
                            .map(LimitScope::as_str),
                        &["enforced", "shadow"],
                    ],
                );
                LimitedCounter(c)
            })
    }

    /// One more under `route` (the label the call is counted as).
    fn inc(&self, route: &str, scope: LimitScope, mode: &str) {
        self.0
            .with_label_values(&[route, scope.as_str(), mode])
            .inc();
    }
}

/// What a limit layer shares across its calls: which bucket it takes from,
/// the route's limits, the permits, the counter.
struct Shared {
    /// `Client`: the caller's fair share, once per call; `Partner`: the
    /// partner's quota, once per try.
    scope: LimitScope,
    config: PerRoute<RateLimitConfig>,
    permits: Arc<AnyPermits>,
    limited: LimitedCounter,
}

impl Shared {
    fn new(
        scope: LimitScope,
        config: &Config,
        permits: Arc<AnyPermits>,
        limited: LimitedCounter,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            scope,
            config: PerRoute::new(|r| config.resilience(r).rate_limit.clone()),
            permits,
            limited,
        })
    }

    /// A refusal as the error to answer, counted under its scope.
    fn refuse(&self, route: &str, refused: Refused) -> GatewayError {
        match refused {
            Refused::Paused(retry_after) => {
                self.limited.inc(route, LimitScope::Upstream, "enforced");
                GatewayError::Call(CallError::Paused { retry_after })
            }
            Refused::Limited(retry_after) => {
                self.limited.inc(route, self.scope, "enforced");
                GatewayError::Call(CallError::RateLimited {
                    scope: self.scope,
                    retry_after,
                })
            }
            Refused::Unavailable => GatewayError::Call(CallError::StateUnavailable),
        }
    }
}

/// A permit before the call goes on: the caller's bucket ([`CallerLimit`],
/// once per call) or the partner's quota ([`PartnerQuota`], once per try);
/// both wait out the partner's pause.
pub struct Limit<S> {
    shared: Arc<Shared>,
    next: S,
}

/// Per call: the partner's pause, then the caller's bucket.
pub type CallerLimit<S> = Limit<S>;

/// Per try: the quota offergate may spend on the partner.
pub type PartnerQuota<S> = Limit<S>;

pub struct CallerLimitLayer(Arc<Shared>);

impl CallerLimitLayer {
    pub fn new(config: &Config, permits: Arc<AnyPermits>, limited: LimitedCounter) -> Self {
        CallerLimitLayer(Shared::new(LimitScope::Client, config, permits, limited))
    }
}

impl<S> Layer<S> for CallerLimitLayer {
    type Service = Limit<S>;

    fn layer(&self, next: S) -> Limit<S> {
        Limit {
            shared: self.0.clone(),
            next,
        }
    }
}

pub struct PartnerQuotaLayer(Arc<Shared>);

impl PartnerQuotaLayer {
    pub fn new(config: &Config, permits: Arc<AnyPermits>, limited: LimitedCounter) -> Self {
        PartnerQuotaLayer(Shared::new(LimitScope::Partner, config, permits, limited))
    }
}

impl<S> Layer<S> for PartnerQuotaLayer {
    type Service = Limit<S>;

    fn layer(&self, next: S) -> Limit<S> {
        Limit {
            shared: self.0.clone(),
            next,
        }
    }
}

impl<S: ProxyService> ProxyService for Limit<S> {
    fn call(
        &self,
        mut req: ProxyRequest,
    ) -> impl Future<Output = Result<ProxyResponse, GatewayError>> + Send + '_ {
        async move {
            let route = req.route();
            let this = &*self.shared;
            let config = this.config.get(route);
            if config.enabled {
                let (counted_as, deadline) = (req.counted_as(), req.deadline);
                // Every call has its caller (clientId, partner_id); an empty
                // one still waits out the partner's pause.
                let (caller, ahead) = req.caller_and_ahead();
                let caller = caller.unwrap_or_default();
                let mut wait = Wait::new(config, deadline);
                let passed = loop {
                    let decision = match this.scope {
                        LimitScope::Partner => this.permits.partner(route, ahead).await,
                        // No layer is made for `Upstream` (the pause's scope).
                        LimitScope::Client | LimitScope::Upstream => {
                            this.permits.caller(route, caller, ahead).await
                        }
                    };
                    match wait.after(decision) {
                        Step::Done(passed) => break passed,
                        Step::Sleep(wait) => tokio::time::sleep(wait).await,
                    }
                };
                match passed {
                    Ok(Passed::Permit) => {}
                    Ok(Passed::Shadowed) => this.limited.inc(counted_as, this.scope, "shadow"),
                    Err(refused) => return Err(this.refuse(counted_as, refused)),
                }
            }
            self.next.call(req).await
        }
    }
}
