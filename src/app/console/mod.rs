//! The operator's console on the admin listener: what this replica is doing
//! now, read without a Prometheus. `GET /` is one self-contained page
//! (`page.rs`, no outside script, font or style) rendered from what `GET
//! /status` and `GET /requests` answer, and fetched again every 2 s.
//! `GET /config` is the loaded config with every secret redacted.
//!
//! Everything shown comes from what the gateway keeps anyway: the metrics
//! registry (sampled once a second, `sample.rs`), the breakers and pauses the
//! layers decide with, the state backend's health, the config board the
//! reloads write, and the ring of recent requests the edge fills.

mod page;
mod sample;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::app::reload::{ConfigBoard, Loaded};
use crate::call::clock::{self, Instant};
use crate::call::route::{AnyRoute, Route};
use crate::config::{Config, OnStateError};
use crate::edge::recent::Recent;
use crate::layers::circuit::Breakers;
use crate::layers::pause::Pauses;
use crate::metrics::Metrics;
use crate::state::Redis;
use sample::{rate, History, Sample};

pub use page::{content_security_policy, render_page};

/// How far back the rates look, and the percentiles.
const RATE_WINDOW: Duration = Duration::from_secs(10);
const PERCENTILE_WINDOW: Duration = Duration::from_secs(60);
/// The charts: a point every 10 s over five minutes.
const CHART_STEP: usize = 10;

/// What the console reads from.
pub struct Console {
    started: Instant,
    started_ms: i64,
    metrics: Arc<Metrics>,
    recent: Arc<Recent>,
    breakers: Breakers,
    pauses: Pauses,
    state: Option<Redis>,
    state_describe: String,
    board: Arc<ConfigBoard>,
    /// Each partner's quota (per second, burst) where its limits are on.
    quotas: [Option<(f64, u32)>; 2],
    ready: Arc<AtomicBool>,
    history: Mutex<History>,
}

/// The pieces of a running gateway the console reads.
pub struct Sources {
    pub metrics: Arc<Metrics>,
    pub recent: Arc<Recent>,
    pub breakers: Breakers,
    pub pauses: Pauses,
    pub state: Option<Redis>,
    pub board: Arc<ConfigBoard>,
    pub ready: Arc<AtomicBool>,
}

impl Console {
    pub fn new(config: &Config, s: Sources) -> Console {
        let quotas = Route::ALL.map(|r| {
            let limits = &config.resilience(r).rate_limit;
            limits
                .enabled
                .then_some((limits.partner.per_second, limits.partner.burst))
        });
        let console = Console {
            started: clock::now(),
            started_ms: clock::wall_ms(),
            metrics: s.metrics,
            recent: s.recent,
            breakers: s.breakers,
            pauses: s.pauses,
            state: s.state,
            state_describe: config.state.describe(),
            board: s.board,
            quotas,
            ready: s.ready,
            history: Mutex::new(History::default()),
        };
        console.sample();
        console
    }

    /// Reads the registry once into the history.
    pub fn sample(&self) {
        let s = Sample::read(&self.metrics.gather());
        self.history().push(s);
    }

    /// Samples once a second, for as long as the gateway runs.
    pub async fn sample_every_second(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.sample();
        }
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `GET /status`: everything the page shows (its schema is in docs/operating.md, "The console").
    pub fn status(&self) -> Value {
        let history = self.history();
        let (Some(now), Some(rated), Some(pct)) = (
            history.latest(),
            history.before(RATE_WINDOW),
            history.before(PERCENTILE_WINDOW),
        ) else {
            return json!({});
        };
        let rate_secs = now.at.saturating_duration_since(rated.at).as_secs_f64();
        let routes: Vec<Value> = AnyRoute::ALL
            .iter()
            .map(|route| {
                let i = route.index();
                let (n, r, p) = (&now.routes[i], &rated.routes[i], &pct.routes[i]);
                let window = n.duration.since(&p.duration);
                let fallbacks_then: f64 = r.fallbacks.values().sum();
                let fallbacks_now: f64 = n.fallbacks.values().sum();
                let count = |k: &str| n.idempotency.get(k).copied().unwrap_or(0.0) as u64;
                json!({
                    "route": route.as_str(),
                    "requests_total": n.requests as u64,
                    "requests_per_second": round(rate(n.requests, r.requests, rate_secs)),
                    "p50_ms": window.quantile(0.5).map(ms),
                    "p99_ms": window.quantile(0.99).map(ms),
                    "fallbacks_total": n
                        .fallbacks
                        .iter()
                        .filter(|(_, v)| **v > 0.0)
                        .map(|(k, v)| (k.clone(), json!(*v as u64)))
                        .collect::<serde_json::Map<_, _>>(),
                    "fallbacks_per_second": round(rate(fallbacks_now, fallbacks_then, rate_secs)),
                    "idempotency": {
                        "hits": count("hit"),
                        "coalesced": count("coalesced"),
                        "misses": count("miss"),
                        "conflicts": count("conflict"),
                        "stored": n.stored as u64,
                    },
                })
            })
            .collect();
        // The conversation endpoint's decisions: an offer, or a skip's reason.
        let decisions: serde_json::Map<String, Value> = now
            .decisions
            .iter()
            .map(|(key, total)| {
                let then = rated.decisions.get(key).copied().unwrap_or(0.0);
                (
                    key.clone(),
                    json!({"total": *total as u64, "per_second": round(rate(*total, then, rate_secs))}),
                )
            })
            .collect();
        let partners: Vec<Value> = Route::ALL
            .iter()
            .map(|&route| self.partner(route, now, rated, rate_secs))
            .collect();
        let state_window = now.state_latency.since(&pct.state_latency);
        let state = match &self.state {
            None => json!({"backend": "memory", "describe": self.state_describe, "healthy": true}),
            Some(redis) => json!({
                "backend": "redis",
                "describe": self.state_describe,
                "healthy": !redis.degraded(),
                "on_error": match redis.on_error() {
                    OnStateError::FailOpen => "fail_open",
                    OnStateError::FailClosed => "fail_closed",
                },
                "latency_p50_ms": state_window.quantile(0.5).map(ms),
                "latency_p99_ms": state_window.quantile(0.99).map(ms),
            }),
        };
        let chart = chart(&history);
        drop(history);
        let config = self.board.read(provenance);
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "ready": self.ready.load(Ordering::Acquire),
            "started_at_ms": self.started_ms,
            "uptime_seconds": self.started.elapsed().as_secs(),
            "now_ms": clock::wall_ms(),
            "config": config,
            "rate_window_seconds": RATE_WINDOW.as_secs(),
            "percentile_window_seconds": PERCENTILE_WINDOW.as_secs(),
            "routes": routes,
            "decisions": decisions,
            "partners": partners,
            "state": state,
            "chart": {"step_seconds": CHART_STEP, "points": chart},
            "recent_requests": self.recent.capacity(),
        })
    }

    fn partner(&self, route: Route, now: &Sample, then: &Sample, secs: f64) -> Value {
        let look = self.breakers.get(route).look();
        let pause = self.pauses.get(route).left();
        let tries = rate(now.tries[route.index()], then.tries[route.index()], secs);
        let quota = self.quotas[route.index()].map(|(per_second, burst)| {
            json!({
                "per_second": per_second,
                "burst": burst,
                "tries_per_second": round(tries),
                "in_use": round(if per_second > 0.0 { tries / per_second } else { 0.0 }),
            })
        });
        json!({
            "route": route.as_str(),
            "partner": route.partner(),
            "circuit": {
                "state": look.state,
                "failures": look.failures,
                "failure_threshold": look.failure_threshold,
                "closes_in_ms": look.closes_in.map(|d| d.as_millis() as u64),
                "last_failure": look.last_failure,
                "opened_at_ms": (look.opened_at_ms > 0).then_some(look.opened_at_ms),
            },
            "pause": pause.map(|left| json!({"left_ms": left.as_millis() as u64, "reason": "the partner answered 429 with Retry-After"})),
            "tries_per_second": round(tries),
            "quota": quota,
        })
    }

    /// `GET /requests`: the last `limit` requests, newest first.
    pub fn requests(&self, limit: usize) -> Value {
        json!({
            "capacity": self.recent.capacity(),
            "requests": self.recent.list(limit),
        })
    }

    /// `GET /config`: the loaded config, secrets redacted (each shows where
    /// it is read from, never its value).
    pub fn config(&self) -> Value {
        self.board.read(|loaded| {
            let mut shown = provenance(loaded);
            shown["config"] = serde_json::to_value(&loaded.config).unwrap_or(Value::Null);
            shown
        })
    }
}

/// Where the loaded config came from and how the last reload went: the
/// head of `/config`, and `/status`'s `config`.
fn provenance(loaded: &Loaded) -> Value {
    json!({
        "path": loaded.origin.as_ref().map(|o| o.path.display().to_string()),
        "sha256": loaded.origin.as_ref().map(|o| o.sha256.clone()),
        "loaded_at_ms": loaded.loaded_at_ms,
        "last_reload": loaded.last_reload,
    })
}

/// A point every [`CHART_STEP`] samples back from the latest, oldest first
/// (the oldest step may be shorter): requests and fallbacks per second and
/// the p99 over each step.
fn chart(history: &History) -> Vec<Value> {
    let samples: Vec<&Sample> = history.samples().collect();
    let mut picks: Vec<&Sample> = samples.iter().rev().step_by(CHART_STEP).copied().collect();
    if let Some(&oldest) = samples.first() {
        if picks.last().is_some_and(|p| !std::ptr::eq(*p, oldest)) {
            picks.push(oldest);
        }
    }
    picks.reverse();
    picks
        .windows(2)
        .map(|w| {
            let (a, b) = (w[0], w[1]);
            let secs = b.at.saturating_duration_since(a.at).as_secs_f64();
            json!({
                "at_ms": b.wall_ms,
                "requests_per_second": round(rate(b.requests(), a.requests(), secs)),
                "fallbacks_per_second": round(rate(b.fallbacks(), a.fallbacks(), secs)),
                "p99_ms": b.duration().since(&a.duration()).quantile(0.99).map(ms),
            })
        })
        .collect()
}

fn ms(seconds: f64) -> f64 {
    round(seconds * 1000.0)
}

/// Three decimals: what a person reads, and a stable JSON.
fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
