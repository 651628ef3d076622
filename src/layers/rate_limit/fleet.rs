//! The rate limits fleet-wide, on Redis: one GCRA script per decision, on
//! Redis's own clock, that also reads the partner's pause (one round trip for
//! both). So N replicas together spend at most the configured quota, and a
//! 429 seen by one pauses them all. A decision Redis cannot give is this
//! replica's own buckets' (`fail_open`) or a refusal (`fail_closed`), as
//! `state/fleet.rs` decides for all shared state.

use std::future::Future;

use ring::digest::{digest, SHA256};

use super::permits::{Decision, LocalPermits, Permits};
use crate::call::clock;
use crate::call::route::{PerRoute, Route};
use crate::config::{Config, Rate, RateLimitConfig};
use crate::state::fleet::fleet_first;
use crate::state::{Limit, Redis};

/// The fleet's buckets, this replica's behind them.
pub struct FleetPermits {
    redis: Redis,
    local: LocalPermits,
    config: PerRoute<RateLimitConfig>,
    /// Each route's pause and quota keys, made once.
    keys: Box<PerRoute<(String, String)>>,
}

impl FleetPermits {
    pub fn new(config: &Config, redis: Redis, local: LocalPermits) -> FleetPermits {
        FleetPermits {
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

    /// What `caller_then_quota` asks Redis, for a one-script admission.
    pub fn plan(&self, route: Route, caller: &str) -> LimitPlan {
        let config = self.config.get(route);
        let (pause, quota) = self.keys.get(route);
        LimitPlan {
            bucket: caller_key(&self.redis, route, caller),
            pause: pause.clone(),
            quota: quota.clone(),
            rate: config
                .client_overrides
                .get(caller)
                .copied()
                .unwrap_or(config.client),
            quota_rate: config.partner,
        }
    }
}

/// A call's caller-then-quota decision, as a one-script admission asks it.
pub struct LimitPlan {
    bucket: String,
    pause: String,
    quota: String,
    rate: Rate,
    quota_rate: Rate,
}

impl LimitPlan {
    pub fn ask(&self) -> crate::state::LimitAsk<'_> {
        crate::state::LimitAsk {
            bucket: &self.bucket,
            pause: &self.pause,
            quota: &self.quota,
            rate: self.rate,
            quota_rate: self.quota_rate,
        }
    }
}

impl Permits for FleetPermits {
    fn caller_then_quota<'a>(
        &'a self,
        route: Route,
        caller: &'a str,
    ) -> impl Future<Output = (Decision, Option<Decision>)> + Send + 'a {
        async move {
            let plan = self.plan(route, caller);
            let then = Some((plan.quota.as_str(), plan.quota_rate));
            let ask = self.decide(route, plan.bucket.clone(), plan.rate, then);
            // Without Redis, this replica's caller bucket; its quota is
            // asked by the try, as ever.
            fleet_first(&self.redis, ask, || {
                (self.local.caller_now(route, caller), None)
            })
            .await
            .unwrap_or((Decision::Unavailable, None))
        }
    }

    fn partner(&self, route: Route) -> impl Future<Output = Decision> + Send + '_ {
        async move {
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

/// The key of the partner's fleet-wide pause.
pub fn pause_key(redis: &Redis, route: Route) -> String {
    redis.route_key(route, "pause", "partner")
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
