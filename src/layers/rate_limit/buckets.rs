//! The in-process token buckets (GCRA, governor, on offergate's clock).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock as _;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::call::clock::{self, Clock, Instant};
use crate::config::{Rate, RateLimitConfig};

pub(super) fn quota(rate: Rate) -> Quota {
    let period = Duration::from_secs_f64(1.0 / rate.per_second).max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
    // `with_period` only refuses a zero period, which `max` above rules out.
    Quota::with_period(period)
        .unwrap_or(Quota::per_second(burst))
        .allow_burst(burst)
}

/// A bucket on offergate's clock (so paused-clock tests move it).
pub(super) type Bucket =
    RateLimiter<NotKeyed, InMemoryState, Clock, NoOpMiddleware<std::time::Instant>>;
/// One bucket per caller, on the same clock. Keyed by the caller id's
/// XXH3-128 (a lookup builds no `Box<str>`: an allocation per call before),
/// hashed with foldhash (several times cheaper than the default SipHash).
type KeyedBuckets = RateLimiter<
    u128,
    DashMapStateStore<u128, foldhash::fast::RandomState>,
    Clock,
    NoOpMiddleware<std::time::Instant>,
>;

/// One route's per-caller buckets.
pub struct CallerBuckets {
    shared: KeyedBuckets,
    overrides: HashMap<String, Bucket>,
    max_tracked: usize,
    /// Milliseconds since `born` at the last purge.
    last_purge_ms: AtomicU64,
    born: Instant,
}

impl CallerBuckets {
    pub fn new(config: &RateLimitConfig) -> CallerBuckets {
        CallerBuckets {
            shared: RateLimiter::dashmap_with_clock_and_hasher(
                quota(config.client),
                Clock,
                foldhash::fast::RandomState::default(),
            ),
            overrides: config
                .client_overrides
                .iter()
                .map(|(id, rate)| {
                    (
                        id.clone(),
                        RateLimiter::direct_with_clock(quota(*rate), Clock),
                    )
                })
                .collect(),
            born: clock::now(),
            max_tracked: config.max_tracked_clients,
            last_purge_ms: AtomicU64::new(0),
        }
    }

    /// One permit for `caller`, or how long until there is one.
    pub fn check(&self, caller: &str) -> Result<(), Duration> {
        let verdict = match self.overrides.get(caller) {
            Some(own) => own.check(),
            None => {
                self.purge_if_due();
                self.shared
                    .check_key(&xxhash_rust::xxh3::xxh3_128(caller.as_bytes()))
            }
        };
        verdict.map_err(|not_until| not_until.wait_time_from(Clock.now()))
    }

    /// Drops callers whose bucket is full again (they are as good as new):
    /// every second, and past `max_tracked` every 100 ms. Not on every call
    /// past it: when more callers than that are active at once, a purge
    /// frees nothing, and each call would scan the whole map for nothing.
    /// Whether it purged, for tests.
    fn purge_if_due(&self) -> bool {
        let now_ms = clock::now().duration_since(self.born).as_millis() as u64;
        let last = self.last_purge_ms.load(Ordering::Relaxed);
        let since = now_ms.saturating_sub(last);
        let due = since >= 1_000 || (since >= 100 && self.shared.len() >= self.max_tracked);
        let purging = due
            && self
                .last_purge_ms
                .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok();
        if purging {
            self.shared.retain_recent();
            self.shared.shrink_to_fit();
        }
        purging
    }

    /// Callers tracked now.
    pub fn tracked(&self) -> usize {
        self.shared.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config(client: Rate, overrides: &[(&str, Rate)], max_tracked: usize) -> RateLimitConfig {
        RateLimitConfig {
            enabled: true,
            partner: Rate {
                per_second: 100.0,
                burst: 100,
            },
            client,
            client_overrides: overrides
                .iter()
                .map(|(k, r)| (k.to_string(), *r))
                .collect::<BTreeMap<_, _>>(),
            max_wait: Duration::ZERO,
            on_limit: crate::config::OnLimit::Fallback,
            enforce: true,
            max_tracked_clients: max_tracked,
        }
    }

    #[test]
    fn each_caller_has_its_own_bucket_and_overrides_theirs() {
        let b = CallerBuckets::new(&config(
            Rate {
                per_second: 1.0,
                burst: 3,
            },
            &[(
                "big",
                Rate {
                    per_second: 1.0,
                    burst: 10,
                },
            )],
            1_000,
        ));
        assert_eq!((0..10).filter(|_| b.check("a").is_ok()).count(), 3);
        assert_eq!(
            (0..10).filter(|_| b.check("b").is_ok()).count(),
            3,
            "a's flood leaves b alone"
        );
        assert_eq!((0..20).filter(|_| b.check("big").is_ok()).count(), 10);
        let wait = b.check("a").unwrap_err();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
    }

    #[test]
    fn fractional_rates() {
        let q = quota(Rate {
            per_second: 0.5,
            burst: 1,
        });
        assert_eq!(q.replenish_interval(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn tracked_callers_stay_bounded() {
        // Buckets refill in 1 ms, so a caller is forgettable almost at once.
        let b = CallerBuckets::new(&config(
            Rate {
                per_second: 1_000.0,
                burst: 1,
            },
            &[],
            1_000,
        ));
        // 50,000 new callers a second: over the cap of 1,000 within 20 ms,
        // purged every 100 ms from then on.
        for i in 0..100_000 {
            let _ = b.check(&format!("client-{i}"));
            if i % 100 == 0 {
                tokio::time::advance(Duration::from_millis(2)).await;
            }
        }
        assert!(b.tracked() <= 6_000, "tracked {}", b.tracked());
        // A second on, everyone's bucket is full again: all forgotten.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(b.purge_if_due());
        let _ = b.check("one-more");
        assert!(b.tracked() <= 1_001, "tracked {}", b.tracked());
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_cap_with_every_caller_active_a_purge_is_not_run_per_call() {
        // One call a second each: nobody is forgettable within the test.
        let b = CallerBuckets::new(&config(
            Rate {
                per_second: 1.0,
                burst: 1,
            },
            &[],
            100,
        ));
        for i in 0..300 {
            let _ = b.check(&format!("client-{i}"));
        }
        assert_eq!(b.tracked(), 300, "a purge frees no one active");
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(b.purge_if_due(), "past the cap, after 100 ms");
        assert!(!b.purge_if_due(), "not again at once");
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(b.purge_if_due());
    }
}
