//! The console's view of the metrics: once a second the registry is read
//! and what the console shows is kept (five minutes of it), so rates,
//! percentiles and the charts come from the same counters Prometheus
//! scrapes, and a call pays nothing for them.

use std::collections::{BTreeMap, VecDeque};

use prometheus::proto::MetricFamily;

use crate::call::clock::{self, Instant};
use crate::call::route::{AnyRoute, Route};

/// A histogram's cumulative buckets, as Prometheus keeps them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Hist {
    /// (upper bound, observations at or under it), ascending; `+Inf` last.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
}

impl Hist {
    /// Adds `other`'s observations (same bucket bounds, or none yet).
    fn add(&mut self, other: &Hist) {
        if self.buckets.is_empty() {
            self.buckets = other.buckets.clone();
        } else if self.buckets.len() == other.buckets.len() {
            for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
                mine.1 += theirs.1;
            }
        }
        self.count += other.count;
    }

    /// What was observed since `earlier`.
    pub fn since(&self, earlier: &Hist) -> Hist {
        if earlier.buckets.len() != self.buckets.len() {
            return self.clone();
        }
        Hist {
            buckets: self
                .buckets
                .iter()
                .zip(&earlier.buckets)
                .map(|(now, then)| (now.0, now.1.saturating_sub(then.1)))
                .collect(),
            count: self.count.saturating_sub(earlier.count),
        }
    }

    /// The `q` quantile in seconds, interpolated within its bucket as
    /// Prometheus's `histogram_quantile` does; `None` with no observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut lower = (0.0, 0u64);
        for &(bound, count) in &self.buckets {
            if count as f64 >= rank {
                if bound.is_infinite() {
                    // Past the last finite bound: that bound is all we know.
                    return Some(lower.0);
                }
                let inside = (count - lower.1) as f64;
                let into = if inside > 0.0 {
                    (rank - lower.1 as f64) / inside
                } else {
                    1.0
                };
                return Some(lower.0 + (bound - lower.0) * into);
            }
            lower = (bound, count);
        }
        Some(lower.0)
    }
}

/// One route's counters at one moment.
#[derive(Clone, Debug, Default)]
pub struct RouteCounts {
    pub requests: f64,
    /// Soft fallbacks by reason.
    pub fallbacks: BTreeMap<String, f64>,
    /// Idempotency lookups by result (miss, hit, coalesced, conflict).
    pub idempotency: BTreeMap<String, f64>,
    /// Answers stored for replay.
    pub stored: f64,
    pub duration: Hist,
}

/// Everything the console reads from the registry at one moment.
#[derive(Clone, Debug)]
pub struct Sample {
    pub at: Instant,
    pub wall_ms: i64,
    /// By `AnyRoute::index`.
    pub routes: Vec<RouteCounts>,
    /// Tries sent to each partner, by `Route::index`.
    pub tries: [f64; 2],
    /// Every state-backend operation's duration together.
    pub state_latency: Hist,
    /// The conversation endpoint's decisions, by `offer` or the skip's reason.
    pub decisions: BTreeMap<String, f64>,
}

impl Sample {
    /// Reads `families` (one `Metrics::gather`).
    pub fn read(families: &[MetricFamily]) -> Sample {
        let mut s = Sample {
            at: clock::now(),
            wall_ms: clock::wall_ms(),
            routes: vec![RouteCounts::default(); AnyRoute::ALL.len()],
            tries: [0.0; 2],
            state_latency: Hist::default(),
            decisions: BTreeMap::new(),
        };
        for family in families {
            for m in family.get_metric() {
                let label = |name: &str| {
                    m.get_label()
                        .iter()
                        .find(|l| l.name() == name)
                        .map(|l| l.value())
                };
                let route = label("route").and_then(|r| {
                    AnyRoute::ALL
                        .iter()
                        .position(|a| a.as_str() == r)
                        .map(|i| (i, r))
                });
                let counter = m.get_counter().get_value();
                match (family.name(), route) {
                    ("offergate_requests_total", Some((i, _))) => s.routes[i].requests += counter,
                    ("offergate_fallbacks_total", Some((i, _))) => {
                        if let Some(reason) = label("reason") {
                            *s.routes[i].fallbacks.entry(reason.into()).or_default() += counter;
                        }
                    }
                    ("offergate_idempotency_total", Some((i, _))) => {
                        if let Some(result) = label("result") {
                            *s.routes[i].idempotency.entry(result.into()).or_default() += counter;
                        }
                    }
                    ("offergate_idempotency_entries", Some((i, _))) => {
                        s.routes[i].stored = m.get_gauge().get_value();
                    }
                    ("offergate_request_duration_seconds", Some((i, _))) => {
                        s.routes[i].duration = hist(m);
                    }
                    ("offergate_upstream_requests_total", Some((_, r))) => {
                        if let Some(p) = Route::ALL.iter().position(|p| p.as_str() == r) {
                            s.tries[p] += counter;
                        }
                    }
                    ("offergate_state_latency_seconds", _) => s.state_latency.add(&hist(m)),
                    ("offergate_conversation_decisions_total", _) => {
                        let key = match (label("decision"), label("reason")) {
                            (Some("offer"), _) => "offer",
                            (_, Some(reason)) => reason,
                            _ => continue,
                        };
                        *s.decisions.entry(key.into()).or_default() += counter;
                    }
                    _ => {}
                }
            }
        }
        s
    }

    /// Every route's requests.
    pub fn requests(&self) -> f64 {
        self.routes.iter().map(|r| r.requests).sum()
    }

    /// Every route's fallbacks.
    pub fn fallbacks(&self) -> f64 {
        self.routes.iter().flat_map(|r| r.fallbacks.values()).sum()
    }

    /// Every route's request durations together.
    pub fn duration(&self) -> Hist {
        let mut all = Hist::default();
        for r in &self.routes {
            all.add(&r.duration);
        }
        all
    }
}

fn hist(m: &prometheus::proto::Metric) -> Hist {
    let h = m.get_histogram();
    let mut buckets: Vec<(f64, u64)> = h
        .get_bucket()
        .iter()
        .map(|b| (b.upper_bound(), b.cumulative_count()))
        .collect();
    if buckets.last().is_none_or(|b| b.0.is_finite()) {
        buckets.push((f64::INFINITY, h.get_sample_count()));
    }
    Hist {
        buckets,
        count: h.get_sample_count(),
    }
}

/// The last [`History::KEEP`] samples, one a second.
#[derive(Default)]
pub struct History {
    samples: VecDeque<Sample>,
}

impl History {
    /// Five minutes, and the sample before them.
    pub const KEEP: usize = 301;

    pub fn push(&mut self, s: Sample) {
        if self.samples.len() == Self::KEEP {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
    }

    pub fn latest(&self) -> Option<&Sample> {
        self.samples.back()
    }

    /// The newest sample at least `ago` older than the latest (or the
    /// oldest kept).
    pub fn before(&self, ago: std::time::Duration) -> Option<&Sample> {
        let latest = self.latest()?;
        self.samples
            .iter()
            .rev()
            .find(|s| latest.at.saturating_duration_since(s.at) >= ago)
            .or_else(|| self.samples.front())
    }

    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.samples.iter()
    }
}

/// Per second between two samples; 0 when they are the same moment.
pub fn rate(now: f64, then: f64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        0.0
    } else {
        ((now - then) / seconds).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(buckets: &[(f64, u64)]) -> Hist {
        Hist {
            buckets: buckets.to_vec(),
            count: buckets.last().map_or(0, |b| b.1),
        }
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket_as_prometheus_does() {
        let hist = h(&[(0.01, 50), (0.1, 90), (1.0, 100), (f64::INFINITY, 100)]);
        assert!((hist.quantile(0.5).unwrap() - 0.01).abs() < 1e-9);
        // 99th of 100: in (0.1, 1.0], 9 of its 10 observations in.
        assert!((hist.quantile(0.99).unwrap() - 0.91).abs() < 1e-9);
        assert_eq!(h(&[(0.1, 0), (f64::INFINITY, 0)]).quantile(0.5), None);
        let beyond = h(&[(0.1, 1), (f64::INFINITY, 10)]);
        assert_eq!(beyond.quantile(0.99), Some(0.1));
    }

    #[test]
    fn a_window_is_the_difference_of_two_samples() {
        let then = h(&[(0.1, 10), (f64::INFINITY, 10)]);
        let now = h(&[(0.1, 12), (f64::INFINITY, 20)]);
        assert_eq!(now.since(&then), h(&[(0.1, 2), (f64::INFINITY, 10)]));
        assert_eq!(rate(30.0, 10.0, 10.0), 2.0);
        assert_eq!(rate(30.0, 10.0, 0.0), 0.0);
    }

    #[test]
    fn the_registry_is_read_by_route() {
        let m = crate::metrics::Metrics::new();
        let requests = m
            .counter_vec("offergate_requests_total", "r", &["route", "outcome"])
            .unwrap();
        requests
            .with_label_values(&["encore_offers", "forwarded"])
            .inc_by(3);
        requests
            .with_label_values(&["encore_offers", "fallback"])
            .inc_by(2);
        let fallbacks = m
            .counter_vec("offergate_fallbacks_total", "f", &["route", "reason"])
            .unwrap();
        fallbacks
            .with_label_values(&["encore_offers", "circuit_open"])
            .inc_by(2);
        let tries = m
            .counter_vec(
                "offergate_upstream_requests_total",
                "u",
                &["route", "status"],
            )
            .unwrap();
        tries.with_label_values(&["besitos_goals", "200"]).inc();
        let s = Sample::read(&m.gather());
        let encore = &s.routes[AnyRoute::Partner(Route::EncoreOffers).index()];
        assert_eq!(encore.requests, 5.0);
        assert_eq!(encore.fallbacks["circuit_open"], 2.0);
        assert_eq!(s.tries, [0.0, 1.0]);
        assert_eq!((s.requests(), s.fallbacks()), (5.0, 2.0));
    }
}
