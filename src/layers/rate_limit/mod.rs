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
//! With `[state] backend = "redis"` both buckets and the pause are fleet-wide
//! (`shared.rs`); the in-process buckets stay as the `fail_open` fallback.

mod buckets;
mod shared;

use governor::clock::Clock as _;
use governor::RateLimiter;
use prometheus::IntCounterVec;
use std::future::Future;
use std::sync::Arc;

use tower::Layer;

use super::pause::Pauses;
use super::ProxyService;
use crate::call::clock::Clock;
use crate::call::error::{GatewayError, LimitScope};
use crate::call::request::{ProxyRequest, ProxyResponse};
use crate::call::route::{PerRoute, Route};
use crate::config::{Config, OnStateError, RateLimitConfig};
use crate::metrics::Metrics;
use crate::state::Redis;
pub use buckets::CallerBuckets;
use buckets::{acquire, quota, Bucket};
pub use shared::pause_key;
use shared::Refusal;

/// A fleet-wide permit for `scope` from `bucket`, for `req`'s route and
/// within its deadline: `Some(Ok)` granted, `Some(Err)` refused (the error to
/// answer), `None` when Redis gave no decision and `fail_open` leaves it to
/// this replica's own buckets.
#[allow(clippy::too_many_arguments)]
async fn fleet_permit(
    redis: &Redis,
    bucket: &str,
    scope: LimitScope,
    rate: crate::config::Rate,
    config: &RateLimitConfig,
    req: &ProxyRequest,
    pause: &super::pause::PartnerPause,
    limited: &LimitedCounter,
) -> Option<Result<(), GatewayError>> {
    let route = req.route();
    let permit = shared::acquire(
        redis,
        bucket,
        route,
        rate,
        config.max_wait,
        req.deadline,
        pause,
    );
    // Boxed, as every Redis wait in the layers: its state would otherwise
    // sit in every call's future, Redis or not.
    match Box::pin(permit).await {
        Ok(()) => Some(Ok(())),
        Err(Refusal::Paused(retry_after)) => {
            limited.inc(route, LimitScope::Upstream);
            Some(Err(GatewayError::CircuitOpen { retry_after }))
        }
        Err(Refusal::Limited(retry_after)) => {
            limited.inc(route, scope);
            Some(Err(GatewayError::RateLimited { scope, retry_after }))
        }
        Err(Refusal::Unavailable) => match redis.on_error() {
            OnStateError::FailOpen => None,
            OnStateError::FailClosed => Some(Err(GatewayError::StateUnavailable)),
        },
    }
}

/// `offergate_rate_limited_total{route,scope}`, shared by both layers here.
#[derive(Clone)]
pub struct LimitedCounter(IntCounterVec);

impl LimitedCounter {
    pub fn register(metrics: &Metrics) -> Result<LimitedCounter, String> {
        metrics
            .counter_vec(
                "offergate_rate_limited_total",
                "Calls refused by a rate limit after the short wait, by route and scope (partner, client, upstream).",
                &["route", "scope"],
            )
            .map(LimitedCounter)
    }

    fn inc(&self, route: Route, scope: LimitScope) {
        self.0
            .with_label_values(&[route.as_str(), scope.as_str()])
            .inc();
    }
}

/// Per call: the partner's pause, then the caller's bucket.
pub struct CallerLimit<S> {
    shared: Arc<CallerShared>,
    next: S,
}

pub struct CallerLimitLayer(Arc<CallerShared>);

impl<S> Layer<S> for CallerLimitLayer {
    type Service = CallerLimit<S>;

    fn layer(&self, next: S) -> CallerLimit<S> {
        CallerLimit {
            shared: self.0.clone(),
            next,
        }
    }
}

/// What every call of the caller limit shares.
struct CallerShared {
    per_route: PerRoute<(RateLimitConfig, CallerBuckets)>,
    pauses: Pauses,
    limited: LimitedCounter,
    shared: Option<Redis>,
}

impl CallerLimitLayer {
    pub fn new(
        config: &Config,
        pauses: Pauses,
        limited: LimitedCounter,
        shared: Option<Redis>,
    ) -> CallerLimitLayer {
        CallerLimitLayer(Arc::new(CallerShared {
            per_route: PerRoute::new(|r| {
                let c = config.resilience(r).rate_limit.clone();
                let buckets = CallerBuckets::new(&c);
                (c, buckets)
            }),
            pauses,
            limited,
            shared,
        }))
    }
}

impl<S: ProxyService> ProxyService for CallerLimit<S> {
    fn call(
        &self,
        req: ProxyRequest,
    ) -> impl Future<Output = Result<ProxyResponse, GatewayError>> + Send + '_ {
        async move {
            let route = req.route();
            let this = &*self.shared;
            let (config, buckets) = this.per_route.get(route);
            if !config.enabled {
                return self.next.call(req).await;
            }
            let pause = this.pauses.get(route);
            if let (Some(redis), Some(caller)) = (&this.shared, req.caller()) {
                let rate = config
                    .client_overrides
                    .get(caller)
                    .copied()
                    .unwrap_or(config.client);
                let bucket = shared::caller_key(redis, route, caller);
                let scope = LimitScope::Client;
                let permit = fleet_permit(
                    redis,
                    &bucket,
                    scope,
                    rate,
                    config,
                    &req,
                    pause,
                    &this.limited,
                );
                match permit.await {
                    Some(Ok(())) => return self.next.call(req).await,
                    Some(Err(e)) => return Err(e),
                    None => {}
                }
            }
            let pause = acquire(
                || pause.left().map_or(Ok(()), Err),
                config.max_wait,
                req.deadline,
            );
            if let Err(retry_after) = pause.await {
                this.limited.inc(route, LimitScope::Upstream);
                return Err(GatewayError::CircuitOpen { retry_after });
            }
            if let Some(caller) = req.caller() {
                if let Err(retry_after) =
                    acquire(|| buckets.check(caller), config.max_wait, req.deadline).await
                {
                    this.limited.inc(route, LimitScope::Client);
                    return Err(GatewayError::RateLimited {
                        scope: LimitScope::Client,
                        retry_after,
                    });
                }
            }
            self.next.call(req).await
        }
    }
}

/// Per try: the quota offergate may spend on the partner.
pub struct PartnerQuota<S> {
    shared: Arc<QuotaShared>,
    next: S,
}

pub struct PartnerQuotaLayer(Arc<QuotaShared>);

impl<S> Layer<S> for PartnerQuotaLayer {
    type Service = PartnerQuota<S>;

    fn layer(&self, next: S) -> PartnerQuota<S> {
        PartnerQuota {
            shared: self.0.clone(),
            next,
        }
    }
}

/// What every try through the partner quota shares.
struct QuotaShared {
    per_route: PerRoute<(RateLimitConfig, Bucket)>,
    limited: LimitedCounter,
    pauses: Pauses,
    shared: Option<Redis>,
}

impl PartnerQuotaLayer {
    pub fn new(
        config: &Config,
        limited: LimitedCounter,
        pauses: Pauses,
        shared: Option<Redis>,
    ) -> PartnerQuotaLayer {
        PartnerQuotaLayer(Arc::new(QuotaShared {
            per_route: PerRoute::new(|r| {
                let c = config.resilience(r).rate_limit.clone();
                let limiter = RateLimiter::direct_with_clock(quota(c.partner), Clock);
                (c, limiter)
            }),
            limited,
            pauses,
            shared,
        }))
    }
}

impl<S: ProxyService> ProxyService for PartnerQuota<S> {
    fn call(
        &self,
        req: ProxyRequest,
    ) -> impl Future<Output = Result<ProxyResponse, GatewayError>> + Send + '_ {
        async move {
            let route = req.route();
            let this = &*self.shared;
            let (config, limiter) = this.per_route.get(route);
            if let (true, Some(redis)) = (config.enabled, &this.shared) {
                let bucket = shared::quota_key(redis, route);
                let (scope, pause) = (LimitScope::Partner, this.pauses.get(route));
                let permit = fleet_permit(
                    redis,
                    &bucket,
                    scope,
                    config.partner,
                    config,
                    &req,
                    pause,
                    &this.limited,
                );
                match permit.await {
                    Some(Ok(())) => return self.next.call(req).await,
                    Some(Err(e)) => return Err(e),
                    None => {}
                }
            }
            if config.enabled {
                let check = || limiter.check().map_err(|n| n.wait_time_from(Clock.now()));
                if let Err(retry_after) = acquire(check, config.max_wait, req.deadline).await {
                    this.limited.inc(route, LimitScope::Partner);
                    return Err(GatewayError::RateLimited {
                        scope: LimitScope::Partner,
                        retry_after,
                    });
                }
            }
            self.next.call(req).await
        }
    }
}
