//! The rate limits fleet-wide, on Redis: one GCRA script per decision, on
//! Redis's own clock, that also reads the partner's pause (one round trip for
//! both). So N replicas together spend at most the configured quota, and a
//! 429 seen by one pauses them all. A decision Redis cannot give is this
//! replica's own buckets' (`fail_open`) or a refusal (`fail_closed`), as
//! `state/fleet.rs` decides for all shared state.

use std::future::Future;

use ring::digest::{digest, SHA256};

use super::permits::{Decision, LocalPermits, Permits};
use crate::call::ahead::Ahead;
use crate::call::clock;
use crate::call::route::{PerRoute, Route};
use crate::config::{Config, Rate, RateLimitConfig};
use crate::layers::circuit::Breakers;
use crate::layers::pause::pause_key;
use crate::state::fleet::fleet_first;
use crate::state::{Limit, Redis};

/// The fleet's buckets, this replica's behind them.
pub struct FleetPermits {
    redis: Redis,
    local: LocalPermits,
    /// The quota is asked with the caller's bucket only while the route's
    /// circuit is closed: a call asks the circuit before the quota, on either
    /// backend, so an open circuit spends no quota.
    breakers: Breakers,
    config: PerRoute<RateLimitConfig>,
    /// Each route's pause and quota keys, made once.
    keys: Box<PerRoute<(String, String)>>,
}

impl FleetPermits {
    pub fn new(
        config: &Config,
        redis: Redis,
        local: LocalPermits,
        breakers: Breakers,
    ) -> FleetPermits {
        FleetPermits {
            breakers,
            keys: Box::new(PerRoute::new(|r| {
                (pause_key(&redis, r), quota_key(&redis, r))
            })),
            redis,
            local,
            config: PerRoute::new(|r| config.resilience(r).rate_limit.clone()),
        }
    }

    /// One decision of the fleet's `bucket` at `rate` (and on a permit, with
    /// `then`, of the partner's quota too, in the same round trip).
    async fn decide(
        &self,
        route: Route,
        bucket: String,
        rate: Rate,
        then: Option<(&str, Rate)>,
    ) -> Result<(Decision, Option<Decision>), crate::state::StateError> {
        let pause = &self.keys.get(route).0;
        let limit = self.redis.limit(&bucket, pause, rate, then).await?;
        Ok(self.decided(route, limit))
    }

    /// What Redis's answer means; a pause found is mirrored into this
    /// replica's, so its circuit sees it too.
    pub fn decided(&self, route: Route, limit: Limit) -> (Decision, Option<Decision>) {
        match limit {
            Limit {
                paused: Some(left), ..
            } => {
                self.local
                    .pauses()
                    .get(route)
                    .pause_until(clock::now() + left);
                (Decision::Paused(left), None)
            }
            Limit {
                wait: Some(wait), ..
            } => (Decision::Wait(wait), None),
            Limit { then, .. } => (
                Decision::Permit,
                then.map(|wait| wait.map_or(Decision::Permit, Decision::Wait)),
            ),
        }
    }

    /// What [`Permits::caller`] asks Redis: the caller's bucket, and while
    /// the circuit is closed the first try's quota after it.
    pub fn plan(&self, route: Route, caller: &str) -> LimitPlan {
        let config = self.config.get(route);
        let (pause, quota) = self.keys.get(route);
        let closed = !self.breakers.get(route).is_open();
        LimitPlan {
            bucket: caller_key(&self.redis, route, caller),
            pause: pause.clone(),
            quota: closed.then(|| quota.clone()),
            rate: config
                .client_overrides
                .get(caller)
                .copied()
                .unwrap_or(config.client),
            quota_rate: config.partner,
        }
    }
}

/// A call's caller-then-quota decision, as Redis is asked it (alone, or
/// with the claim).
pub struct LimitPlan {
    bucket: String,
    pause: String,
    quota: Option<String>,
    rate: Rate,
    quota_rate: Rate,
}

impl LimitPlan {
    pub fn ask(&self) -> crate::state::LimitAsk<'_> {
        crate::state::LimitAsk {
            bucket: &self.bucket,
            pause: &self.pause,
            quota: self.quota.as_deref(),
            rate: self.rate,
            quota_rate: self.quota_rate,
        }
    }
}

impl Permits for FleetPermits {
    fn caller<'a>(
        &'a self,
        route: Route,
        caller: &'a str,
        ahead: &'a mut Ahead,
    ) -> impl Future<Output = Decision> + Send + 'a {
        async move {
            if let Some(given) = ahead.take_caller() {
                return given;
            }
            let plan = self.plan(route, caller);
            let then = plan.quota.as_deref().map(|q| (q, plan.quota_rate));
            let ask = self.decide(route, plan.bucket.clone(), plan.rate, then);
            // Without Redis, this replica's caller bucket; its quota is
            // asked by the try, as ever.
            let (decision, quota) = fleet_first(&self.redis, ask, || {
                (self.local.caller_now(route, caller), None)
            })
            .await
            .unwrap_or((Decision::Unavailable, None));
            if quota == Some(Decision::Permit) {
                ahead.give_quota(Decision::Permit);
            }
            decision
        }
    }

    fn partner<'a>(
        &'a self,
        route: Route,
        ahead: &'a mut Ahead,
    ) -> impl Future<Output = Decision> + Send + 'a {
        async move {
            if ahead.take_quota() == Some(Decision::Permit) {
                return Decision::Permit;
            }
            let rate = self.config.get(route).partner;
            let bucket = self.keys.get(route).1.clone();
            let ask = async {
                let decided = self.decide(route, bucket, rate, None).await;
                decided.map(|(d, _)| d)
            };
            fleet_first(&self.redis, ask, || self.local.partner_now(route))
                .await
                .unwrap_or(Decision::Unavailable)
        }
    }
}

/// The route's partner quota.
fn quota_key(redis: &Redis, route: Route) -> String {
    redis.route_key(route, "quota", "partner")
}

/// One caller's bucket. The caller's id is hashed: a clientId is part of a
/// request body, and no body content is stored in Redis.
fn caller_key(redis: &Redis, route: Route, caller: &str) -> String {
    let hash = digest(&SHA256, caller.as_bytes());
    let mut id = String::with_capacity(24);
    crate::call::fingerprint::push_hex(&hash.as_ref()[..12], &mut id);
    redis.route_key(route, "caller", &id)
}
