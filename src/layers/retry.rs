//! Retry: repeat a failed try when the outcome table says it is safe, with
//! exponential backoff and full jitter, honouring `Retry-After`, inside the
//! call's deadline and within a retry budget.
//!
//! - Jitter: AWS's "full jitter": each wait is drawn uniformly from zero to the
//!   backoff ceiling (200 ms, 1 s, 5 s by default). Replicas that failed together
//!   spread out instead of returning in lockstep, and the expected extra load on
//!   a struggling partner is half that of fixed delays.
//! - `Retry-After` (seconds or HTTP date) sets the wait when it is longer, plus
//!   up to 10 % spread for the same lockstep reason; above `retry_after_cap` the
//!   try is not repeated.
//! - Deadline: a retry starts only if after its wait at least `min_try` of the
//!   deadline is left; otherwise the last result stands (and falls back).
//! - Budget (tower's `TpsBudget`): each call deposits, each retry withdraws,
//!   over a sliding window; retries may add at most `budget_percent` of recent
//!   calls plus `budget_min_per_second`. A retry waiting in backoff has already
//!   withdrawn. Past the budget a failure falls back at once
//!   (`retry_budget_exhausted`): an outage does not multiply the partner's load.
//!
//! The request body is replayed from memory (`ProxyRequest` holds `Bytes`).

use crate::call::problem::Problem;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::call::clock::{self, Instant};
use tower::retry::budget::{Budget, TpsBudget};

use tower::Layer;

use super::ProxyService;
use crate::call::error::RetryType as RetryKind;
use crate::call::error::{code, CallError, GatewayError};
use crate::call::meaning::asked_wait;
use crate::call::request::{ProxyRequest, ProxyResponse};
use crate::call::route::PerRoute;
use crate::config::{Config, RetryConfig};
use crate::metrics::Metrics;
use prometheus::IntCounterVec;

pub struct Retry<S> {
    shared: Arc<Shared>,
    next: S,
}

pub struct RetryLayer(Arc<Shared>);

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, next: S) -> Retry<S> {
        Retry {
            shared: self.0.clone(),
            next,
        }
    }
}

/// What every call of the layer shares.
struct Shared {
    per_route: PerRoute<RoutePolicy>,
    /// `offergate_retries_total{route,reason}`.
    retries: IntCounterVec,
}

/// One route's retry rules and its budget.
pub struct RoutePolicy {
    config: RetryConfig,
    budget: TpsBudget,
}

impl RetryLayer {
    pub fn new(config: &Config, metrics: &Metrics) -> Result<RetryLayer, Problem> {
        let retries = metrics.counter_vec(
            "offergate_retries_total",
            "Partner tries repeated, by route and the failure that caused it.",
            &["route", "reason"],
        )?;
        // What is retried when it fails (the error table, call/meaning.rs).
        Metrics::zeroed(
            &retries,
            &[
                &crate::call::route::COUNTED_AS,
                &[
                    "upstream_status_429",
                    "upstream_status_503",
                    code::UPSTREAM_UNREACHABLE,
                    code::UPSTREAM_TIMEOUT,
                ],
            ],
        );
        Ok(RetryLayer(Arc::new(Shared {
            per_route: PerRoute::new(|r| RoutePolicy::new(config.resilience(r).retry.clone())),
            retries,
        })))
    }
}

impl RoutePolicy {
    pub fn new(config: RetryConfig) -> RoutePolicy {
        // Config validation keeps these inside TpsBudget's accepted ranges.
        let budget = TpsBudget::new(
            config.budget_window,
            config.budget_min_per_second,
            config.budget_percent / 100.0,
        );
        RoutePolicy { config, budget }
    }

    /// How long to wait before retry number `done + 1`, or `None` to stop.
    pub fn delay(
        &self,
        done: u32,
        kind: RetryKind,
        retry_after: Option<Duration>,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Option<Duration> {
        let c = &self.config;
        let allowed = match kind {
            RetryKind::Safe => true,
            RetryKind::Ambiguous => c.retry_ambiguous,
            RetryKind::Never => false,
        };
        if !allowed || done >= c.max_retries {
            return None;
        }
        let ceiling = *c.backoff.get(done as usize).or(c.backoff.last())?;
        let mut delay = jitter_up_to(ceiling);
        if let Some(asked) = retry_after {
            if asked > c.retry_after_cap {
                return None;
            }
            delay = delay.max(asked + jitter_up_to(asked / 10));
        }
        if let Some(deadline) = deadline {
            if now + delay + c.min_try > deadline {
                return None;
            }
        }
        Some(delay)
    }
}

/// Uniform in `0..=ceiling`.
fn jitter_up_to(ceiling: Duration) -> Duration {
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

impl<S: ProxyService> ProxyService for Retry<S> {
    fn call(
        &self,
        mut req: ProxyRequest,
    ) -> impl Future<Output = Result<ProxyResponse, GatewayError>> + Send + '_ {
        async move {
            let route = req.route();
            let counted_as = req.counted_as();
            let policy = self.shared.per_route.get(route);
            policy.budget.deposit();
            let mut done = 0;
            loop {
                let last = match self.next.call(req.next_try()).await {
                    Err(e) => e,
                    ok => return ok,
                };
                let meaning = last.meaning();
                let (Some(reason), Some(delay)) = (
                    meaning.fallback,
                    policy.delay(
                        done,
                        meaning.retry,
                        asked_wait(&last),
                        req.deadline,
                        clock::now(),
                    ),
                ) else {
                    return Err(last);
                };
                if !policy.budget.withdraw() {
                    return Err(GatewayError::Call(CallError::RetryBudgetExhausted {
                        last: Box::new(last),
                    }));
                }
                self.shared
                    .retries
                    .with_label_values(&[counted_as, &reason.as_str()])
                    .inc();
                tokio::time::sleep(delay).await;
                done += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(ambiguous: bool) -> RoutePolicy {
        RoutePolicy::new(RetryConfig {
            max_retries: 3,
            backoff: vec![
                Duration::from_millis(200),
                Duration::from_secs(1),
                Duration::from_secs(5),
            ],
            retry_after_cap: Duration::from_secs(30),
            retry_ambiguous: ambiguous,
            min_try: Duration::from_millis(100),
            budget_percent: 20.0,
            budget_min_per_second: 3,
            budget_window: Duration::from_secs(10),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn full_jitter_under_each_ceiling_and_at_most_three() {
        let p = policy(false);
        let now = clock::now();
        for (done, ceiling) in [(0, 200), (1, 1_000), (2, 5_000)] {
            let draws: Vec<Duration> = (0..500)
                .filter_map(|_| p.delay(done, RetryKind::Safe, None, None, now))
                .collect();
            assert_eq!(draws.len(), 500);
            let max = *draws.iter().max().unwrap();
            let min = *draws.iter().min().unwrap();
            assert!(
                max <= Duration::from_millis(ceiling),
                "retry {done}: {max:?}"
            );
            // Spread over the whole range, not clustered: the lockstep guard.
            assert!(
                min < Duration::from_millis(ceiling / 10)
                    && max > Duration::from_millis(ceiling * 9 / 10)
            );
        }
        assert_eq!(
            p.delay(3, RetryKind::Safe, None, None, now),
            None,
            "max_retries"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn ambiguous_tries_follow_the_route() {
        let now = clock::now();
        assert_eq!(
            policy(false).delay(0, RetryKind::Ambiguous, None, None, now),
            None
        );
        assert!(policy(true)
            .delay(0, RetryKind::Ambiguous, None, None, now)
            .is_some());
        assert_eq!(
            policy(true).delay(0, RetryKind::Never, None, None, now),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_and_deadline() {
        let p = policy(false);
        let now = clock::now();
        let d = p
            .delay(0, RetryKind::Safe, Some(Duration::from_secs(1)), None, now)
            .unwrap();
        assert!(
            d >= Duration::from_secs(1) && d <= Duration::from_millis(1_100),
            "{d:?}"
        );
        assert_eq!(
            p.delay(0, RetryKind::Safe, Some(Duration::from_secs(31)), None, now),
            None,
            "over the cap"
        );
        // 1 s Retry-After with 1.05 s left: no time for a try after it.
        let deadline = now + Duration::from_millis(1_050);
        assert_eq!(
            p.delay(
                0,
                RetryKind::Safe,
                Some(Duration::from_secs(1)),
                Some(deadline),
                now
            ),
            None
        );
        // 200 ms ceiling with 350 ms left always fits (200 + 100 min try).
        let deadline = now + Duration::from_millis(350);
        assert!(p
            .delay(0, RetryKind::Safe, None, Some(deadline), now)
            .is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn budget_allows_a_share_plus_a_floor() {
        let p = RoutePolicy::new(RetryConfig {
            budget_percent: 20.0,
            budget_min_per_second: 0,
            budget_window: Duration::from_secs(1),
            ..policy(false).config
        });
        for _ in 0..100 {
            p.budget.deposit();
        }
        let granted = (0..100).filter(|_| p.budget.withdraw()).count();
        assert_eq!(granted, 20, "20 % of 100 calls");
        tokio::time::advance(Duration::from_millis(1_100)).await;
        assert!(!p.budget.withdraw(), "old deposits expire with the window");
    }
}
