//! Where permits come from: [`Permits`], with this replica's buckets
//! ([`LocalPermits`]) and the fleet's on Redis (`fleet.rs`), and the one
//! short wait for a permit both layers use ([`Wait`]).

use std::future::Future;
use std::time::Duration;

use governor::clock::Clock as _;
use governor::RateLimiter;

use super::buckets::{quota, Bucket, CallerBuckets};
use super::fleet::FleetPermits;
use crate::call::ahead::Ahead;
use crate::call::clock::{self, Clock, Instant};
use crate::call::route::{PerRoute, Route};
use crate::config::{Config, RateLimitConfig};
use crate::layers::pause::Pauses;

pub use crate::call::ahead::Decision;

/// A route's buckets: each caller's fair share (`clientId` / `partner_id`),
/// and the quota offergate may spend on the partner. Both answer
/// [`Decision::Paused`] while the partner's 429 pause runs.
///
/// `ahead` is the call's: an answer given there ahead (`call/ahead.rs`) is
/// taken instead of asked, and a backend that answers the first try's quota
/// with the caller's bucket (the fleet's, while the circuit is closed)
/// leaves it there for that try.
pub trait Permits: Send + Sync + 'static {
    /// The partner's pause, then the caller's bucket.
    fn caller<'a>(
        &'a self,
        route: Route,
        caller: &'a str,
        ahead: &'a mut Ahead,
    ) -> impl Future<Output = Decision> + Send + 'a;
    /// The partner's pause, then the partner's quota, for one try.
    fn partner<'a>(
        &'a self,
        route: Route,
        ahead: &'a mut Ahead,
    ) -> impl Future<Output = Decision> + Send + 'a;
}

/// This replica's own buckets, on offergate's clock.
pub struct LocalPermits {
    callers: PerRoute<CallerBuckets>,
    quotas: PerRoute<Bucket>,
    pauses: Pauses,
}

impl LocalPermits {
    pub fn new(config: &Config, pauses: Pauses) -> LocalPermits {
        let limits = |r: Route| &config.resilience(r).rate_limit;
        LocalPermits {
            callers: PerRoute::new(|r| CallerBuckets::new(limits(r))),
            quotas: PerRoute::new(|r| {
                RateLimiter::direct_with_clock(quota(limits(r).partner), Clock)
            }),
            pauses,
        }
    }

    pub fn caller_now(&self, route: Route, caller: &str) -> Decision {
        if let Some(left) = self.pauses.get(route).left() {
            return Decision::Paused(left);
        }
        match self.callers.get(route).check(caller) {
            Ok(()) => Decision::Permit,
            Err(wait) => Decision::Wait(wait),
        }
    }

    pub fn partner_now(&self, route: Route) -> Decision {
        if let Some(left) = self.pauses.get(route).left() {
            return Decision::Paused(left);
        }
        match self.quotas.get(route).check() {
            Ok(()) => Decision::Permit,
            Err(not_until) => Decision::Wait(not_until.wait_time_from(Clock.now())),
        }
    }

    /// The partner's pause, as this replica knows it.
    pub fn pauses(&self) -> &Pauses {
        &self.pauses
    }
}

impl Permits for LocalPermits {
    fn caller<'a>(
        &'a self,
        route: Route,
        caller: &'a str,
        _: &'a mut Ahead,
    ) -> impl Future<Output = Decision> + Send + 'a {
        std::future::ready(self.caller_now(route, caller))
    }

    fn partner<'a>(
        &'a self,
        route: Route,
        _: &'a mut Ahead,
    ) -> impl Future<Output = Decision> + Send + 'a {
        std::future::ready(self.partner_now(route))
    }
}

/// The permits `[state]` asks for.
pub enum AnyPermits {
    Local(LocalPermits),
    Fleet(FleetPermits),
}

impl Permits for AnyPermits {
    fn caller<'a>(
        &'a self,
        route: Route,
        caller: &'a str,
        ahead: &'a mut Ahead,
    ) -> impl Future<Output = Decision> + Send + 'a {
        async move {
            match self {
                AnyPermits::Local(local) => local.caller_now(route, caller),
                AnyPermits::Fleet(fleet) => fleet.caller(route, caller, ahead).await,
            }
        }
    }

    fn partner<'a>(
        &'a self,
        route: Route,
        ahead: &'a mut Ahead,
    ) -> impl Future<Output = Decision> + Send + 'a {
        async move {
            match self {
                AnyPermits::Local(local) => local.partner_now(route),
                AnyPermits::Fleet(fleet) => fleet.partner(route, ahead).await,
            }
        }
    }
}

/// Why no permit came within the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Paused(Duration),
    Limited(Duration),
    Unavailable,
}

/// The short wait for a permit: up to `max_wait`, never past the call's
/// deadline. The layer asks its bucket, hands each answer to
/// [`Wait::after`], and sleeps or stops as it says.
pub struct Wait<'a> {
    config: &'a RateLimitConfig,
    deadline: Option<Instant>,
    give_up: Option<Instant>,
}

/// What to do after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Done(Result<Passed, Refused>),
    /// Ask again after this long.
    Sleep(Duration),
}

impl<'a> Wait<'a> {
    pub fn new(config: &'a RateLimitConfig, deadline: Option<Instant>) -> Wait<'a> {
        Wait {
            config,
            deadline,
            give_up: None,
        }
    }

    pub fn after(&mut self, decision: Decision) -> Step {
        let (wait, refused) = match decision {
            // The common case, a permit at once, reads no clock.
            Decision::Permit => return Step::Done(Ok(Passed::Permit)),
            Decision::Unavailable => return Step::Done(Err(Refused::Unavailable)),
            Decision::Wait(w) => (w, Refused::Limited(w)),
            Decision::Paused(p) => (p, Refused::Paused(p)),
        };
        let give_up = *self.give_up.get_or_insert_with(|| {
            let latest = clock::now() + self.config.max_wait;
            self.deadline.map_or(latest, |d| d.min(latest))
        });
        let too_long = clock::now() + wait > give_up;
        if !self.config.enforce && matches!(refused, Refused::Limited(_)) {
            // Shadow mode: the call goes on at once. Had the limit been
            // enforced it would have waited (and passed) or been refused.
            return Step::Done(Ok(if too_long {
                Passed::Shadowed
            } else {
                Passed::Permit
            }));
        }
        if too_long {
            return Step::Done(Err(refused));
        }
        Step::Sleep(wait)
    }
}

/// How a call passed its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passed {
    /// With a permit (after a short wait, maybe).
    Permit,
    /// Without one, in shadow mode (`enforce = false`): enforced, the limit
    /// would have refused it.
    Shadowed,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Rate;
    use std::collections::BTreeMap;

    fn config(max_wait: Duration) -> RateLimitConfig {
        RateLimitConfig {
            enabled: true,
            partner: Rate {
                per_second: 20.0,
                burst: 1,
            },
            client: Rate {
                per_second: 20.0,
                burst: 1,
            },
            client_overrides: BTreeMap::new().into_iter().collect(),
            max_wait,
            on_limit: crate::config::OnLimit::Fallback,
            enforce: true,
            max_tracked_clients: 100,
        }
    }

    /// A permit from `check`, as a layer waits for one.
    async fn acquire(
        check: impl Fn() -> Decision,
        config: &RateLimitConfig,
        deadline: Option<Instant>,
    ) -> Result<Passed, Refused> {
        let mut wait = Wait::new(config, deadline);
        loop {
            match wait.after(check()) {
                Step::Done(result) => return result,
                Step::Sleep(d) => tokio::time::sleep(d).await,
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn waits_briefly_then_gives_up() {
        let limiter: Bucket = RateLimiter::direct_with_clock(
            quota(Rate {
                per_second: 20.0,
                burst: 1,
            }),
            Clock,
        );
        let check = || match limiter.check() {
            Ok(()) => Decision::Permit,
            Err(n) => Decision::Wait(n.wait_time_from(Clock.now())),
        };
        assert!(acquire(check, &config(Duration::ZERO), None).await.is_ok());
        // The next permit is 50 ms away: a 100 ms wait gets it, no wait does not.
        assert!(matches!(
            acquire(check, &config(Duration::ZERO), None).await,
            Err(Refused::Limited(_))
        ));
        let started = clock::now();
        assert!(acquire(check, &config(Duration::from_millis(100)), None)
            .await
            .is_ok());
        assert!(clock::now() - started >= Duration::from_millis(30));
        // Never past the deadline, whatever max_wait says.
        let deadline = clock::now() + Duration::from_millis(10);
        assert!(
            acquire(check, &config(Duration::from_secs(5)), Some(deadline))
                .await
                .is_err()
        );
        // A pause is waited out like a bucket, and named when it is not.
        let paused = || Decision::Paused(Duration::from_secs(3));
        assert_eq!(
            acquire(paused, &config(Duration::from_millis(100)), None).await,
            Err(Refused::Paused(Duration::from_secs(3)))
        );
    }
}
