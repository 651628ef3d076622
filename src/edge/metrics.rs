//! The edge's metrics: every request by route and outcome, its duration,
//! refusals before a route was known, panics caught, and calls shed.

use crate::call::problem::Problem;
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge};

use crate::call::request::Outcome;
use crate::call::route::{AnyRoute, OwnRoute};
use crate::integrator::rules;
use crate::layers::idempotency::{Lookup, Lookups};
use crate::metrics::Metrics;

pub(super) struct EdgeMetrics {
    /// Resolved once per route and outcome: no label lookup per request.
    requests: [[IntCounter; 6]; 7],
    request_duration: [Histogram; 7],
    in_flight: [IntGauge; 7],
    unrouted: IntCounterVec,
    panics: IntCounter,
    shed: IntCounterVec,
    eligibility: IntCounterVec,
    decisions: IntCounterVec,
    /// The conversation endpoint's own answer store, counted as the
    /// idempotency layer counts its.
    answers: Lookups,
}

impl EdgeMetrics {
    pub(super) fn register(m: &Metrics, lookups: &IntCounterVec) -> Result<EdgeMetrics, Problem> {
        let requests = m.counter_vec(
            "offergate_requests_total",
            "Requests by route and how they ended.",
            &["route", "outcome"],
        )?;
        let duration = m.histogram_vec(
            "offergate_request_duration_seconds",
            "Time from request received to answer ready, per route.",
            &["route"],
        )?;
        let per_route = |r: AnyRoute| {
            Outcome::ALL.map(|o| requests.with_label_values(&[r.as_str(), o.as_str()]))
        };
        let metrics = EdgeMetrics {
            requests: AnyRoute::ALL.map(per_route),
            request_duration: AnyRoute::ALL.map(|r| duration.with_label_values(&[r.as_str()])),
            in_flight: {
                let g = m.gauge_vec(
                    "offergate_in_flight",
                    "Requests being handled now, per route (admitted and not yet answered).",
                    &["route"],
                )?;
                AnyRoute::ALL.map(|r| g.with_label_values(&[r.as_str()]))
            },
            unrouted: m.counter_vec(
                "offergate_unrouted_requests_total",
                "Requests refused before a route was known (unknown path, method, target or host), by error code.",
                &["code"],
            )?,
            panics: m.counter(
                "offergate_panics_total",
                "Panics caught while handling a request (each answered 500); a bug to report.",
            )?,
            shed: m.counter_vec(
                "offergate_shed_total",
                "Requests refused at once with 503 because offergate was overloaded, by reason.",
                &["reason"],
            )?,
            eligibility: m.counter_vec(
                "offergate_eligibility_total",
                "Eligibility answers by result: eligible, mid_thread, thread_cap, opted_out, invalid.",
                &["result"],
            )?,
            decisions: m.counter_vec(
                "offergate_conversation_decisions_total",
                "Conversation endpoint decisions by decision (offer, skip) and reason (none for an offer).",
                &["decision", "reason"],
            )?,
            answers: Lookups::new(lookups, OwnRoute::EncoreMessages.as_str()),
        };
        // Each series of a closed label set at 0 from the start.
        Metrics::zeroed(&metrics.shed, &[&["max_in_flight", "body_budget"]]);
        Metrics::zeroed(
            &metrics.eligibility,
            &[&[
                "eligible",
                rules::MID_THREAD,
                rules::THREAD_CAP,
                rules::OPTED_OUT,
                "invalid",
            ]],
        );
        Metrics::zeroed(&metrics.decisions, &[&["offer"], &["none"]]);
        Metrics::zeroed(
            &metrics.decisions,
            &[
                &["skip"],
                &[rules::MID_THREAD, rules::THREAD_CAP, rules::OPTED_OUT],
            ],
        );
        Ok(metrics)
    }

    pub(super) fn request_done(&self, route: AnyRoute, outcome: Outcome, seconds: f64) {
        self.requests[route.index()][outcome as usize].inc();
        self.request_duration[route.index()].observe(seconds);
    }

    /// Counts a request of `route` in flight until the guard is dropped.
    pub(super) fn flying(&self, route: AnyRoute) -> Flying<'_> {
        let gauge = &self.in_flight[route.index()];
        gauge.inc();
        Flying(gauge)
    }

    pub(super) fn unrouted(&self, code: &'static str) {
        self.unrouted.with_label_values(&[code]).inc();
    }

    pub(super) fn panicked(&self) {
        self.panics.inc();
    }

    pub(super) fn eligibility(&self, result: &'static str) {
        self.eligibility.with_label_values(&[result]).inc();
    }

    pub(super) fn decided(&self, decision: &str, reason: Option<&str>) {
        self.decisions
            .with_label_values(&[decision, reason.unwrap_or("none")])
            .inc();
    }

    pub(super) fn answer_lookup(&self, found: Lookup) {
        self.answers.count(found);
    }

    /// The shed counter of `reason`, for a part of the edge that sheds.
    pub(super) fn shed_counter(&self, reason: &'static str) -> IntCounter {
        self.shed.with_label_values(&[reason])
    }

    pub(super) fn shed(&self, reason: &'static str) {
        self.shed.with_label_values(&[reason]).inc();
    }
}

/// One request in flight, counted until dropped.
pub(super) struct Flying<'a>(&'a IntGauge);

impl Drop for Flying<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
