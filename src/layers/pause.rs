//! A partner's request to stop calling it for a while: a 429 whose
//! `Retry-After` offergate honours. The circuit layer sets it (it sees each
//! try's answer) and refuses tries while it runs; the caller limit, once per
//! call, waits out a pause shorter than its wait. One pause per route, shared
//! by both layers, so neither keeps a copy of the other's state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::future::Future;

use crate::call::clock::{self, Instant};
use crate::call::route::{PerRoute, Route};
use crate::state::Redis;

/// Every route's pause, as this replica knows it.
pub type Pauses = Arc<PerRoute<PartnerPause>>;

pub fn pauses() -> Pauses {
    Arc::new(PerRoute::new(|_| PartnerPause::new()))
}

/// Where a partner's pause is set: this replica's ([`Pauses`]), and with
/// `[state] backend = "redis"` the fleet's ([`FleetPauses`]), so a 429 seen
/// by one replica pauses them all (the rate-limit script reads it).
pub trait PauseBoard: Send + Sync + 'static {
    /// Pauses `route`'s partner for `length`; a longer pause already set stands.
    fn pause(&self, route: Route, length: Duration) -> impl Future<Output = ()> + Send + '_;
    /// How much of `route`'s pause is left, as this replica knows it.
    fn left(&self, route: Route) -> Option<Duration>;
}

impl PauseBoard for Pauses {
    fn pause(&self, route: Route, length: Duration) -> impl Future<Output = ()> + Send + '_ {
        self.get(route).pause_until(clock::now() + length);
        std::future::ready(())
    }

    fn left(&self, route: Route) -> Option<Duration> {
        self.get(route).left()
    }
}

/// The key of the partner's fleet-wide pause (the rate-limit script reads it).
pub fn pause_key(redis: &Redis, route: Route) -> String {
    redis.route_key(route, "pause", "partner")
}

/// The fleet's pause on Redis, this replica's beside it.
pub struct FleetPauses {
    pub local: Pauses,
    pub redis: Redis,
}

impl PauseBoard for FleetPauses {
    fn pause(&self, route: Route, length: Duration) -> impl Future<Output = ()> + Send + '_ {
        self.local.get(route).pause_until(clock::now() + length);
        async move {
            // Not published: this replica pauses all the same, and the others
            // learn of the pause from the partner itself.
            let key = pause_key(&self.redis, route);
            let _ = self.redis.pause(&key, length).await;
        }
    }

    fn left(&self, route: Route) -> Option<Duration> {
        self.local.get(route).left()
    }
}

/// The pauses `[state]` asks for.
pub enum AnyPauses {
    Local(Pauses),
    Fleet(FleetPauses),
}

impl PauseBoard for AnyPauses {
    async fn pause(&self, route: Route, length: Duration) {
        match self {
            AnyPauses::Local(local) => local.pause(route, length).await,
            // Rare (a 429 with `Retry-After`): boxed.
            AnyPauses::Fleet(fleet) => Box::pin(fleet.pause(route, length)).await,
        }
    }

    fn left(&self, route: Route) -> Option<Duration> {
        match self {
            AnyPauses::Local(local) => local.left(route),
            AnyPauses::Fleet(fleet) => fleet.left(route),
        }
    }
}

/// The pause board `[state]` asks for, over this replica's `local` pauses.
pub fn board(local: Pauses, shared: Option<Redis>) -> Arc<AnyPauses> {
    Arc::new(match shared {
        None => AnyPauses::Local(local),
        Some(redis) => AnyPauses::Fleet(FleetPauses { local, redis }),
    })
}

/// One partner's pause. Stored as nanoseconds after `origin` (0: none), so the
/// common case, no pause, is one atomic load and no clock read.
pub struct PartnerPause {
    origin: Instant,
    until_nanos: AtomicU64,
}

impl PartnerPause {
    pub fn new() -> PartnerPause {
        PartnerPause {
            origin: clock::now(),
            until_nanos: AtomicU64::new(0),
        }
    }

    /// No calls until `until`; a longer pause already set stands.
    pub fn pause_until(&self, until: Instant) {
        let nanos = u64::try_from(until.saturating_duration_since(self.origin).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        self.until_nanos.fetch_max(nanos, Ordering::AcqRel);
    }

    /// How much of the pause is left, if one runs now.
    pub fn left(&self) -> Option<Duration> {
        match self.until_nanos.load(Ordering::Acquire) {
            0 => None,
            nanos => {
                let left = (self.origin + Duration::from_nanos(nanos))
                    .saturating_duration_since(clock::now());
                (!left.is_zero()).then_some(left)
            }
        }
    }
}

impl Default for PartnerPause {
    fn default() -> Self {
        PartnerPause::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pause_runs_until_it_ends_and_the_longer_one_wins() {
        let p = PartnerPause::new();
        assert_eq!(p.left(), None);
        p.pause_until(clock::now() + Duration::from_secs(2));
        p.pause_until(clock::now() + Duration::from_secs(1));
        assert_eq!(p.left(), Some(Duration::from_secs(2)));
        tokio::time::advance(Duration::from_millis(1_500)).await;
        assert_eq!(p.left(), Some(Duration::from_millis(500)));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(p.left(), None);
    }
}
