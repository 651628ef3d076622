//! Circuit breaker per partner. After `failure_threshold` consecutive failed
//! tries, or while a partner 429's `Retry-After` runs, calls are refused at once
//! (`circuit_open`, which falls back) instead of waiting on a partner that is
//! down. After `cooldown`, one probe at a time is let through: success closes
//! the circuit, failure opens it again for another cooldown.
//!
//! A partner's 429 pause (`pause.rs`) is set here, from the answer, and
//! refuses tries here while it runs.
//!
//! The breaker sits inside the retry layer, so each try is checked and counted,
//! and a retry finds the circuit open as soon as it opens. What counts as a
//! failure is the partner's health in the error table (`call/meaning.rs`). The `offergate_circuit_open`
//! gauge is read from the breakers at scrape time, so it is never stale.

use crate::call::problem::Problem;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::StatusCode;

use tower::Layer;

use super::pause::{AnyPauses, PauseBoard};
use super::ProxyService;
use crate::call::clock::{self, Instant};
use crate::call::error::{CallError, GatewayError};
use crate::call::meaning::{asked_wait, Health, Reason};
use crate::call::request::{ProxyRequest, ProxyResponse};
use crate::call::route::{PerRoute, Route};
use crate::config::{CircuitConfig, Config};
use crate::metrics::Metrics;

pub struct Circuit<S> {
    shared: Arc<Shared>,
    next: S,
}

pub struct CircuitLayer(Arc<Shared>);

impl<S> Layer<S> for CircuitLayer {
    type Service = Circuit<S>;

    fn layer(&self, next: S) -> Circuit<S> {
        Circuit {
            shared: self.0.clone(),
            next,
        }
    }
}

/// Every partner's breaker; the layer decides with them, the admin console
/// reads them.
pub type Breakers = Arc<PerRoute<Breaker>>;

/// One breaker per partner, as `config` sets them.
pub fn breakers(config: &Config) -> Breakers {
    Arc::new(PerRoute::new(|r| {
        Breaker::new(r, config.resilience(r).circuit.clone())
    }))
}

/// What every call of the layer shares.
struct Shared {
    breakers: Breakers,
    /// Where a 429's pause is set: here, and for the fleet when shared.
    pauses: Arc<AnyPauses>,
    retry_after_cap: PerRoute<Duration>,
}

impl CircuitLayer {
    /// The layer over `breakers`, honouring and setting `pauses`; its gauge
    /// registered in `metrics`.
    pub fn new(
        config: &Config,
        breakers: Breakers,
        pauses: Arc<AnyPauses>,
        metrics: &Metrics,
    ) -> Result<CircuitLayer, Problem> {
        let (read, paused) = (breakers.clone(), pauses.clone());
        metrics.route_gauge(
            "offergate_circuit_open",
            "1 while the route's partner circuit is open (or paused by a 429), else 0.",
            move |r| i64::from(paused.left(r).is_some() || read.get(r).is_open()),
        )?;
        Ok(CircuitLayer(Arc::new(Shared {
            breakers,
            pauses,
            retry_after_cap: PerRoute::new(|r| config.resilience(r).retry.retry_after_cap),
        })))
    }
}

impl<S: ProxyService> ProxyService for Circuit<S> {
    fn call(
        &self,
        req: ProxyRequest,
    ) -> impl Future<Output = Result<ProxyResponse, GatewayError>> + Send + '_ {
        async move {
            let route = req.route();
            let this = &*self.shared;
            if let Some(retry_after) = this.pauses.left(route) {
                return Err(GatewayError::Call(CallError::Paused { retry_after }));
            }
            let permit = this.breakers.get(route).admit().map_err(|retry_after| {
                GatewayError::Call(CallError::CircuitOpen { retry_after })
            })?;
            let result = self.next.call(req).await;
            let error = match &result {
                Ok(_) => {
                    permit.record(Some(true));
                    return result;
                }
                Err(e) => e,
            };
            let meaning = error.meaning();
            // A partner's 429 with a wait: every try of the route pauses.
            if let (Some(Reason::UpstreamStatus(StatusCode::TOO_MANY_REQUESTS)), Some(asked)) =
                (meaning.fallback, asked_wait(error))
            {
                let pause_for = asked.min(*this.retry_after_cap.get(route));
                this.pauses.pause(route, pause_for).await;
            }
            match meaning.health {
                Health::Healthy => permit.record(Some(true)),
                Health::Unknown => permit.record(None),
                Health::Failing => permit.failed(meaning.fallback),
            }
            result
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// One partner's circuit state.
pub struct Breaker {
    /// Whose circuit this is, for the log lines.
    route: Route,
    state: Mutex<State>,
    config: CircuitConfig,
}

struct State {
    mode: Mode,
    /// The last failure that counted, and when the circuit last opened (Unix
    /// ms): what the admin console shows as the reason.
    last_failure: Option<Reason>,
    opened_at_ms: i64,
}

/// A breaker as the admin console shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Look {
    /// `closed`, `open` or `half_open` (a probe may go, or is under way).
    pub state: &'static str,
    /// Consecutive failures counted while closed.
    pub failures: u32,
    pub failure_threshold: u32,
    /// While open: how long until a probe may go.
    pub closes_in: Option<Duration>,
    /// The last failure that counted (`upstream_timeout`, `upstream_status_503`).
    pub last_failure: Option<String>,
    /// When it last opened, Unix ms; 0: never.
    pub opened_at_ms: i64,
}

/// Leave to make one try. Dropped without a verdict (the caller went away),
/// a probe frees its slot for the next caller.
pub struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    recorded: bool,
}

impl Breaker {
    pub fn new(route: Route, config: CircuitConfig) -> Breaker {
        Breaker {
            route,
            state: Mutex::new(State {
                mode: Mode::Closed { failures: 0 },
                last_failure: None,
                opened_at_ms: 0,
            }),
            config,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A permit, or how long until the partner may be tried again. Reads the
    /// clock only when the circuit is not closed.
    pub fn admit(&self) -> Result<Permit<'_>, Duration> {
        let mut s = self.lock();
        if let Mode::Open { until } = s.mode {
            let left = until.saturating_duration_since(clock::now());
            if !left.is_zero() {
                return Err(left);
            }
        }
        let probe = match s.mode {
            Mode::Closed { .. } => false,
            Mode::Open { .. } | Mode::HalfOpen { probing: false } => {
                s.mode = Mode::HalfOpen { probing: true };
                true
            }
            // Someone else is probing; its answer decides soon.
            Mode::HalfOpen { probing: true } => return Err(self.config.cooldown),
        };
        Ok(Permit {
            breaker: self,
            probe,
            recorded: false,
        })
    }

    /// Whether calls are being refused now (the gauge).
    pub fn is_open(&self) -> bool {
        !matches!(self.lock().mode, Mode::Closed { .. })
    }

    /// What the breaker is doing now.
    pub fn look(&self) -> Look {
        let s = self.lock();
        let (state, failures, closes_in) = match s.mode {
            Mode::Closed { failures } => ("closed", failures, None),
            Mode::Open { until } => match until.saturating_duration_since(clock::now()) {
                left if left.is_zero() => ("half_open", 0, None),
                left => ("open", 0, Some(left)),
            },
            Mode::HalfOpen { .. } => ("half_open", 0, None),
        };
        Look {
            state,
            failures,
            failure_threshold: self.config.failure_threshold,
            closes_in,
            last_failure: s.last_failure.map(|r| r.as_str().into_owned()),
            opened_at_ms: s.opened_at_ms,
        }
    }

    /// `Some(true)`: the partner answered usably; `Some(false)`: it failed
    /// (`failure` says how, when known); `None`: nothing learned.
    fn record(&self, probe: bool, healthy: Option<bool>, failure: Option<Reason>) {
        let mut s = self.lock();
        if failure.is_some() {
            s.last_failure = failure;
        }
        let was_open = matches!(s.mode, Mode::Open { .. });
        s.mode = match (s.mode, probe, healthy) {
            (_, true, Some(true)) => Mode::Closed { failures: 0 },
            (_, true, Some(false)) => Mode::Open {
                until: clock::now() + self.config.cooldown,
            },
            (_, true, None) => Mode::HalfOpen { probing: false },
            (Mode::Closed { .. }, false, Some(true)) => Mode::Closed { failures: 0 },
            (Mode::Closed { failures }, false, Some(false)) => {
                let failures = failures + 1;
                if failures >= self.config.failure_threshold {
                    tracing::warn!(
                        route = self.route.as_str(),
                        failures,
                        cooldown_ms = self.config.cooldown.as_millis() as u64,
                        "circuit opened: the partner keeps failing"
                    );
                    Mode::Open {
                        until: clock::now() + self.config.cooldown,
                    }
                } else {
                    Mode::Closed { failures }
                }
            }
            // Late answers of tries admitted before the circuit opened.
            (mode, false, _) => mode,
        };
        if matches!(s.mode, Mode::Open { .. }) && !was_open {
            s.opened_at_ms = clock::wall_ms();
        }
    }
}

impl Permit<'_> {
    pub fn record(mut self, healthy: Option<bool>) {
        self.recorded = true;
        self.breaker.record(self.probe, healthy, None);
    }

    /// The try failed in a way that counts toward opening, for `reason`.
    pub fn failed(mut self, reason: Option<Reason>) {
        self.recorded = true;
        self.breaker.record(self.probe, Some(false), reason);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.recorded && self.probe {
            self.breaker.record(true, None, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(
            Route::EncoreOffers,
            CircuitConfig {
                failure_threshold: 3,
                cooldown: Duration::from_secs(5),
            },
        )
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_then_one_probe_closes_it() {
        let b = breaker();
        for _ in 0..2 {
            b.admit().unwrap().record(Some(false));
        }
        b.admit().unwrap().record(Some(true));
        for _ in 0..2 {
            b.admit().unwrap().record(Some(false));
        }
        assert!(!b.is_open(), "a success in between resets the count");
        b.admit().unwrap().record(Some(false));
        assert!(b.is_open());
        let wait = b.admit().err().unwrap();
        assert_eq!(wait, Duration::from_secs(5));

        tokio::time::advance(Duration::from_secs(5)).await;
        let probe = b.admit().unwrap();
        assert!(b.admit().is_err(), "one probe at a time");
        probe.record(Some(false));
        assert!(b.admit().is_err(), "a failed probe reopens");

        tokio::time::advance(Duration::from_secs(5)).await;
        b.admit().unwrap().record(Some(true));
        assert!(!b.is_open());
        assert!(b.admit().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn the_console_sees_why_and_for_how_long_it_is_open() {
        let b = breaker();
        assert_eq!(b.look().state, "closed");
        b.admit().unwrap().failed(Some(Reason::UpstreamTimeout));
        assert_eq!((b.look().state, b.look().failures), ("closed", 1));
        for _ in 0..2 {
            b.admit()
                .unwrap()
                .failed(Some(Reason::UpstreamStatus(StatusCode::BAD_GATEWAY)));
        }
        let look = b.look();
        assert_eq!(look.state, "open");
        assert_eq!(look.closes_in, Some(Duration::from_secs(5)));
        assert_eq!(look.last_failure.as_deref(), Some("upstream_status_502"));
        assert!(look.opened_at_ms > 0);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(b.look().closes_in, Some(Duration::from_secs(3)));
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(b.look().state, "half_open");
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_frees_the_slot() {
        let b = breaker();
        for _ in 0..3 {
            b.admit().unwrap().record(Some(false));
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(b.admit().unwrap());
        assert!(b.admit().is_ok(), "the next caller may probe");
    }
}
