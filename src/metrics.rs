//! The Prometheus registry of one gateway. Each concern registers its own
//! metric families here when it is built (the edge its request counters, the
//! upstream its partner calls, each layer its own) and keeps the handles; this
//! module only registers, reads gauges at scrape time, and renders.
//!
//! Each gateway owns its registry (no global statics), so tests running several
//! gateways in one process read only their own numbers. Label values are bounded
//! by construction: a route, an outcome, a status code or a closed error kind;
//! never a caller identifier, key or token.

use crate::call::problem::Problem;
use prometheus::core::Collector;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::call::route::Route;

/// Latency buckets for a sidecar: sub-millisecond local work up to slow partners.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A gauge's value, read when scraped.
pub type ReadGauge = Box<dyn Fn() -> i64 + Send + Sync>;

/// One gateway's registry.
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// A registry holding `offergate_build_info` and the process's own
    /// `process_*` family (resident memory, CPU, open file descriptors:
    /// what a container's limits are about).
    pub fn new() -> Metrics {
        let metrics = Metrics {
            registry: Registry::new(),
        };
        if let Ok(info) = metrics.gauge_vec(
            "offergate_build_info",
            "Always 1; the version label tells the build.",
            &["version"],
        ) {
            info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        }
        #[cfg(target_os = "linux")]
        if let Err(e) = metrics.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )) {
            tracing::warn!(error = %e, "cannot report the process_* metrics");
        }
        metrics
    }

    /// Creates each series of `family` whose labels take every combination
    /// of `values` (one list per label), at 0: a healthy gateway shows the
    /// family from its start, so dashboards and `rate()` see a zero, not a gap.
    pub fn zeroed<B: prometheus::core::MetricVecBuilder>(
        family: &prometheus::core::MetricVec<B>,
        values: &[&[&str]],
    ) {
        fn each<B: prometheus::core::MetricVecBuilder>(
            family: &prometheus::core::MetricVec<B>,
            values: &[&[&str]],
            picked: &mut Vec<String>,
        ) {
            let Some((first, rest)) = values.split_first() else {
                let labels: Vec<&str> = picked.iter().map(String::as_str).collect();
                let _ = family.get_metric_with_label_values(&labels);
                return;
            };
            for v in *first {
                picked.push((*v).to_string());
                each(family, rest, picked);
                picked.pop();
            }
        }
        each(family, values, &mut Vec::new());
    }

    /// Registers a gauge family with one label whose series are read when
    /// scraped, one reader per label value (open connections per listener).
    pub fn gauge_fns(
        &self,
        name: &str,
        help: &str,
        label: &str,
        series: Vec<(&'static str, ReadGauge)>,
    ) -> Result<(), Problem> {
        let gauge = IntGaugeVec::new(Opts::new(name, help), &[label])
            .map_err(|e| Problem(format!("metric {name}: {e}")))?;
        self.registry
            .register(Box::new(GaugeFns { gauge, series }))
            .map_err(|e| Problem(format!("metric {name}: {e}")))
    }

    fn register<C: Collector + Clone + 'static>(&self, name: &str, c: C) -> Result<C, Problem> {
        self.registry
            .register(Box::new(c.clone()))
            .map_err(|e| Problem(format!("metric {name}: {e}")))?;
        Ok(c)
    }

    pub fn counter(&self, name: &str, help: &str) -> Result<IntCounter, Problem> {
        let c = IntCounter::new(name, help).map_err(|e| Problem(format!("metric {name}: {e}")))?;
        self.register(name, c)
    }

    pub fn counter_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, Problem> {
        let c = IntCounterVec::new(Opts::new(name, help), labels)
            .map_err(|e| Problem(format!("metric {name}: {e}")))?;
        self.register(name, c)
    }

    pub fn gauge_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntGaugeVec, Problem> {
        let g = IntGaugeVec::new(Opts::new(name, help), labels)
            .map_err(|e| Problem(format!("metric {name}: {e}")))?;
        self.register(name, g)
    }

    /// Registers a gauge made by its owner.
    pub fn register_gauge(&self, gauge: prometheus::IntGauge) -> Result<(), Problem> {
        self.register("gauge", gauge).map(drop)
    }

    /// A latency histogram with offergate's buckets.
    pub fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<HistogramVec, Problem> {
        let h = HistogramVec::new(
            HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
            labels,
        )
        .map_err(|e| Problem(format!("metric {name}: {e}")))?;
        self.register(name, h)
    }

    /// Registers a `{route}` gauge whose values are read by `read` at scrape
    /// time, so they are never stale (circuit state, stored answers).
    pub fn route_gauge(
        &self,
        name: &str,
        help: &str,
        read: impl Fn(Route) -> i64 + Send + Sync + 'static,
    ) -> Result<(), Problem> {
        let gauge =
            IntGaugeVec::new(Opts::new(name, help), &["route"]).map_err(|e| e.to_string())?;
        self.registry
            .register(Box::new(RouteGauge {
                gauge,
                read: Box::new(read),
            }))
            .map_err(|e| Problem(format!("metric {name}: {e}")))
    }

    /// Registers a counter whose value is read by `read` at scrape time (a
    /// count kept outside the registry, such as dropped log lines).
    pub fn counter_fn(
        &self,
        name: &str,
        help: &str,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Result<(), Problem> {
        let counter = IntCounter::new(name, help).map_err(|e| e.to_string())?;
        self.registry
            .register(Box::new(CounterFn {
                counter,
                read: Box::new(read),
            }))
            .map_err(|e| Problem(format!("metric {name}: {e}")))
    }

    /// Every family's current values (the admin console samples them).
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }

    /// Prometheus text exposition of everything registered.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(8 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        buf
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A counter read from elsewhere when scraped.
struct CounterFn {
    counter: IntCounter,
    read: Box<dyn Fn() -> u64 + Send + Sync>,
}

impl Collector for CounterFn {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.counter.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        // Counts only grow: move the counter up to the value read.
        let (now, seen) = ((self.read)(), self.counter.get());
        if now > seen {
            self.counter.inc_by(now - seen);
        }
        self.counter.collect()
    }
}

/// Gauges read from elsewhere when scraped, one per label value.
struct GaugeFns {
    gauge: IntGaugeVec,
    series: Vec<(&'static str, ReadGauge)>,
}

impl Collector for GaugeFns {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        for (value, read) in &self.series {
            self.gauge.with_label_values(&[value]).set(read());
        }
        self.gauge.collect()
    }
}

/// A per-route gauge computed when scraped.
struct RouteGauge {
    gauge: IntGaugeVec,
    read: Box<dyn Fn(Route) -> i64 + Send + Sync>,
}

impl Collector for RouteGauge {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        for r in Route::ALL {
            self.gauge
                .with_label_values(&[r.as_str()])
                .set((self.read)(r));
        }
        self.gauge.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_registers_once_and_renders() {
        let m = Metrics::new();
        let c = m.counter_vec("offergate_x_total", "x", &["route"]).unwrap();
        c.with_label_values(&["encore_offers"]).inc();
        assert!(m.counter_vec("offergate_x_total", "x", &["route"]).is_err());
        m.route_gauge("offergate_y", "y", |r| r.index() as i64)
            .unwrap();
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains(r#"offergate_x_total{route="encore_offers"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"offergate_y{route="besitos_goals"} 1"#),
            "{text}"
        );
        assert!(text.contains("offergate_build_info{version="), "{text}");
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
    }

    #[test]
    fn a_zeroed_family_shows_every_combination_at_zero() {
        let m = Metrics::new();
        let c = m
            .counter_vec("offergate_z_total", "z", &["a", "b"])
            .unwrap();
        Metrics::zeroed(&c, &[&["x", "y"], &["1", "2", "3"]]);
        let text = String::from_utf8(m.render()).unwrap();
        let lines = text.lines().filter(|l| l.starts_with("offergate_z_total{"));
        assert_eq!(lines.clone().count(), 6, "{text}");
        assert!(lines.clone().all(|l| l.ends_with(" 0")), "{text}");
        assert!(
            text.contains(r#"offergate_z_total{a="y",b="3"} 0"#),
            "{text}"
        );
        m.gauge_fns(
            "offergate_g",
            "g",
            "listener",
            vec![("proxy", Box::new(|| 7))],
        )
        .unwrap();
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains(r#"offergate_g{listener="proxy"} 7"#),
            "{text}"
        );
    }
}
