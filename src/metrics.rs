//! The Prometheus registry of one gateway and the metrics the contract names.
//!
//! Each gateway owns its registry (no global statics), so tests running several
//! gateways in one process read only their own numbers. Label values are bounded
//! by construction: a [`Route`], an [`Outcome`], a status code or a closed error
//! kind; never a caller identifier, key or token.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::call::error::LimitScope;
use crate::call::outcome::OfferResult;
use crate::call::outcome::Reason;
use crate::call::request::Outcome;
use crate::call::route::Route;

/// Latency buckets for a sidecar: sub-millisecond local work up to slow partners.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Handles to every metric, resolved once so the hot path does no label lookups
/// for the per-request counters.
pub struct Metrics {
    registry: Registry,
    requests: [[IntCounter; 5]; 2],
    request_duration: [prometheus::Histogram; 2],
    unrouted: IntCounterVec,
    upstream_requests: IntCounterVec,
    upstream_duration: [prometheus::Histogram; 2],
    retries: IntCounterVec,
    fallbacks: IntCounterVec,
    rate_limited: IntCounterVec,
    /// `offer`, `no_offer`.
    offers: [IntCounter; 2],
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "offergate_requests_total",
                "Requests by route and how they ended.",
            ),
            &["route", "outcome"],
        )
        .expect("valid metric");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "offergate_request_duration_seconds",
                "Time from request received to answer ready, per route.",
            )
            .buckets(BUCKETS.to_vec()),
            &["route"],
        )
        .expect("valid metric");
        let unrouted = IntCounterVec::new(
            Opts::new(
                "offergate_unrouted_requests_total",
                "Requests refused before a route was known (unknown path, method, target or host), by error code.",
            ),
            &["code"],
        )
        .expect("valid metric");
        let upstream_requests = IntCounterVec::new(
            Opts::new(
                "offergate_upstream_requests_total",
                "Calls to partners by route and status code (or error, timeout).",
            ),
            &["route", "status"],
        )
        .expect("valid metric");
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "offergate_upstream_duration_seconds",
                "Duration of each partner call (one try), per route.",
            )
            .buckets(BUCKETS.to_vec()),
            &["route"],
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "offergate_build_info",
                "Always 1; the version label tells the build.",
            ),
            &["version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let retries = IntCounterVec::new(
            Opts::new(
                "offergate_retries_total",
                "Partner tries repeated, by route and the failure that caused it.",
            ),
            &["route", "reason"],
        )
        .expect("valid metric");
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "offergate_rate_limited_total",
                "Calls refused by a rate limit after the short wait, by route and scope (partner, client, upstream).",
            ),
            &["route", "scope"],
        )
        .expect("valid metric");
        let fallbacks = IntCounterVec::new(
            Opts::new(
                "offergate_fallbacks_total",
                "Soft fallbacks answered, by route and reason.",
            ),
            &["route", "reason"],
        )
        .expect("valid metric");
        let offers = IntCounterVec::new(
            Opts::new(
                "offergate_offers_total",
                "Encore 200 answers with an offer and without one (the partner's fill rate).",
            ),
            &["result"],
        )
        .expect("valid metric");

        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_duration.clone()),
            Box::new(unrouted.clone()),
            Box::new(upstream_requests.clone()),
            Box::new(upstream_duration.clone()),
            Box::new(build_info),
            Box::new(retries.clone()),
            Box::new(fallbacks.clone()),
            Box::new(rate_limited.clone()),
            Box::new(offers.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        let per_route =
            |r: Route| Outcome::ALL.map(|o| requests.with_label_values(&[r.as_str(), o.as_str()]));
        Metrics {
            requests: [
                per_route(Route::EncoreOffers),
                per_route(Route::BesitosGoals),
            ],
            request_duration: Route::ALL.map(|r| request_duration.with_label_values(&[r.as_str()])),
            upstream_duration: Route::ALL
                .map(|r| upstream_duration.with_label_values(&[r.as_str()])),
            unrouted,
            upstream_requests,
            retries,
            fallbacks,
            rate_limited,
            offers: ["offer", "no_offer"].map(|r| offers.with_label_values(&[r])),
            registry,
        }
    }

    /// The registry later features register their metrics in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn request_done(&self, route: Route, outcome: Outcome, seconds: f64) {
        self.requests[route.index()][outcome as usize].inc();
        self.request_duration[route.index()].observe(seconds);
    }

    pub fn unrouted(&self, code: &'static str) {
        self.unrouted.with_label_values(&[code]).inc();
    }

    /// One partner call; `status` is the code, `error` or `timeout`.
    pub fn upstream_call(&self, route: Route, status: &str, seconds: f64) {
        self.upstream_requests
            .with_label_values(&[route.as_str(), status])
            .inc();
        self.upstream_duration[route.index()].observe(seconds);
    }

    pub fn retry(&self, route: Route, reason: Reason) {
        self.retries
            .with_label_values(&[route.as_str(), &reason.as_str()])
            .inc();
    }

    pub fn fallback(&self, route: Route, reason: Reason) {
        self.fallbacks
            .with_label_values(&[route.as_str(), &reason.as_str()])
            .inc();
    }

    pub fn rate_limited(&self, route: Route, scope: LimitScope) {
        self.rate_limited
            .with_label_values(&[route.as_str(), scope.as_str()])
            .inc();
    }

    /// One Encore 200 delivered from the partner.
    pub fn offer(&self, result: OfferResult) {
        self.offers[usize::from(result == OfferResult::NoOffer)].inc();
    }

    /// Registers a `{route}` gauge whose values are read by `read` at scrape
    /// time, so they are never stale (circuit state, stored answers).
    pub fn register_route_gauge(
        &self,
        name: &str,
        help: &str,
        read: impl Fn(Route) -> i64 + Send + Sync + 'static,
    ) -> Result<(), String> {
        let gauge =
            IntGaugeVec::new(Opts::new(name, help), &["route"]).map_err(|e| e.to_string())?;
        self.registry
            .register(Box::new(RouteGauge {
                gauge,
                read: Box::new(read),
            }))
            .map_err(|e| format!("{name}: {e}"))
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

/// A per-route gauge computed when scraped.
struct RouteGauge {
    gauge: IntGaugeVec,
    read: Box<dyn Fn(Route) -> i64 + Send + Sync>,
}

impl prometheus::core::Collector for RouteGauge {
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

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
