//! Soft fallback: a failing partner must never hurt the end user. Every failure
//! of the outcome table (after retries) becomes a 200 with the partner's own
//! "nothing for you" body, which callers already handle, and the header
//! `x-offergate-fallback: <reason>` says why:
//! - Encore: `{"success":true,"offer":null}` (the docs: skip the promo step);
//! - Besitos: an empty page, every paginator field present.
//!
//! With `soft_fallback = false` on a route, partner statuses pass through and
//! offergate's own failures are answered as errors (502 / 503 / 504). A rate
//! limit is answered as the route's `on_limit` says: the fallback (Encore's
//! default) or 429 with `Retry-After` (Besitos's).

use crate::call::problem::Problem;
use http::{HeaderValue, StatusCode};
use std::future::Future;
use std::sync::Arc;

use tower::Layer;

use super::ProxyService;
use crate::call::error::{CallError, GatewayError};
use crate::call::headers::X_OFFERGATE_FALLBACK;
use crate::call::meaning::Reason;
use crate::call::request::Outcome;
use crate::call::request::{ProxyRequest, ProxyResponse};
use crate::call::route::{PerRoute, Target};
use crate::config::{BaseUrl, Config, OnLimit};
use crate::metrics::Metrics;
use crate::partners;
use prometheus::IntCounterVec;

pub struct Fallback<S> {
    shared: Arc<Shared>,
    next: S,
}

pub struct FallbackLayer(Arc<Shared>);

impl<S> Layer<S> for FallbackLayer {
    type Service = Fallback<S>;

    fn layer(&self, next: S) -> Fallback<S> {
        Fallback {
            shared: self.0.clone(),
            next,
        }
    }
}

/// What every call of the layer shares.
struct Shared {
    soft: PerRoute<bool>,
    on_limit: PerRoute<OnLimit>,
    public_base_url: BaseUrl,
    /// `offergate_fallbacks_total{route,reason}`.
    fallbacks: IntCounterVec,
}

impl FallbackLayer {
    pub fn new(
        config: &Config,
        public_base_url: BaseUrl,
        metrics: &Metrics,
    ) -> Result<FallbackLayer, Problem> {
        let fallbacks = metrics.counter_vec(
            "offergate_fallbacks_total",
            "Soft fallbacks answered, by route and reason.",
            &["route", "reason"],
        )?;
        let reasons = Reason::FIXED.map(|r| r.as_str());
        let reasons: Vec<&str> = reasons.iter().map(|r| r.as_ref()).collect();
        Metrics::zeroed(&fallbacks, &[&crate::call::route::COUNTED_AS, &reasons]);
        Ok(FallbackLayer(Arc::new(Shared {
            soft: PerRoute::new(|r| config.resilience(r).soft_fallback),
            on_limit: PerRoute::new(|r| config.resilience(r).rate_limit.on_limit),
            public_base_url,
            fallbacks,
        })))
    }
}

impl Shared {
    /// The soft answer for `target`.
    pub fn answer(&self, target: &Target, reason: Reason) -> ProxyResponse {
        let body = partners::fallback_body(target, &self.public_base_url);
        let mut resp = ProxyResponse::json(StatusCode::OK, body);
        let value =
            HeaderValue::from_str(&reason.as_str()).unwrap_or(HeaderValue::from_static("unknown"));
        resp.headers.insert(X_OFFERGATE_FALLBACK.clone(), value);
        resp.outcome = Outcome::Fallback;
        resp
    }
}

impl<S: ProxyService> ProxyService for Fallback<S> {
    fn call(
        &self,
        req: ProxyRequest,
    ) -> impl Future<Output = Result<ProxyResponse, GatewayError>> + Send + '_ {
        async move {
            let shared = &*self.shared;
            let target = req.target.clone();
            let counted_as = req.counted_as();
            let result = self.next.call(req).await;
            // Budget exhaustion carries the last try's failure: fall back for the
            // budget's reason, or pass that failure through when fallback is off.
            let (result, budget_spent) = match result {
                Err(GatewayError::Call(CallError::RetryBudgetExhausted { last })) => {
                    (Err(*last), true)
                }
                other => (other, false),
            };
            let Some(reason) = result.as_ref().err().and_then(|e| e.meaning().fallback) else {
                return result;
            };
            let rejects_limits = reason == Reason::RateLimited
                && *shared.on_limit.get(target.route()) == OnLimit::Reject;
            if !*shared.soft.get(target.route()) || rejects_limits {
                return result;
            }
            let reason = if budget_spent {
                Reason::RetryBudgetExhausted
            } else {
                reason
            };
            shared
                .fallbacks
                .with_label_values(&[counted_as, &reason.as_str()])
                .inc();
            Ok(shared.answer(&target, reason))
        }
    }
}
