//! The upstream's metrics: every partner try by status, its duration, and
//! Encore's fill rate.

use crate::call::problem::Problem;
use prometheus::{Histogram, IntCounter, IntCounterVec};

use crate::call::meaning::OfferResult;
use crate::call::route::Route;
use crate::metrics::Metrics;

/// Statuses resolved once per route: the forwarded call's `200`, and the two
/// labels that are not codes. Others are looked up when they happen.
const RESOLVED: [&str; 3] = ["200", "timeout", "error"];

pub(super) struct UpstreamMetrics {
    requests: IntCounterVec,
    /// `requests` for each route and [`RESOLVED`] status: no label lookup
    /// (a hash and a lock) on a forwarded call.
    resolved: [[IntCounter; 3]; 2],
    duration: [Histogram; 2],
    /// `offer`, `no_offer`.
    offers: [IntCounter; 2],
}

impl UpstreamMetrics {
    pub(super) fn register(m: &Metrics) -> Result<UpstreamMetrics, Problem> {
        let duration = m.histogram_vec(
            "offergate_upstream_duration_seconds",
            "Duration of each partner call (one try), per route.",
            &["route"],
        )?;
        let offers = m.counter_vec(
            "offergate_offers_total",
            "Encore 200 answers with an offer and without one (the partner's fill rate).",
            &["result"],
        )?;
        let requests = m.counter_vec(
            "offergate_upstream_requests_total",
            "Calls to partners by route and status code (or error, timeout).",
            &["route", "status"],
        )?;
        // What an operator alerts on (a refused key, a partner's 429 or 5xx)
        // at 0 from the start.
        Metrics::zeroed(
            &requests,
            &[
                &Route::ALL.map(Route::as_str),
                &["401", "403", "429", "500", "503"],
            ],
        );
        Ok(UpstreamMetrics {
            resolved: Route::ALL
                .map(|r| RESOLVED.map(|s| requests.with_label_values(&[r.as_str(), s]))),
            requests,
            duration: Route::ALL.map(|r| duration.with_label_values(&[r.as_str()])),
            offers: ["offer", "no_offer"].map(|r| offers.with_label_values(&[r])),
        })
    }

    /// One partner call; `status` is the code, `error` or `timeout`.
    pub(super) fn upstream_call(&self, route: Route, status: &str, seconds: f64) {
        match RESOLVED.iter().position(|s| *s == status) {
            Some(i) => self.resolved[route.index()][i].inc(),
            None => self
                .requests
                .with_label_values(&[route.as_str(), status])
                .inc(),
        }
        self.duration[route.index()].observe(seconds);
    }

    /// One Encore 200 delivered from the partner.
    pub(super) fn offer(&self, result: OfferResult) {
        self.offers[usize::from(result == OfferResult::NoOffer)].inc();
    }
}
