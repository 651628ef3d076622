//! The per-thread cap on the offers route, from the Encore doc: a thread (a
//! `clientId` and `chatId`) gets at most `[encore.integrator] thread_cap`
//! offers over `thread_window_ms`, and none once it opted out. Past the cap
//! (or opted out) the caller gets `{"success":true,"offer":null}` with
//! `x-offergate-skipped: thread_cap` (or `opted_out`), and the partner is
//! not called.
//!
//! A slot is taken before the call and given back unless an offer was
//! served, then kept for that offer's link (which `unsent` can free), all
//! under one lock or one Redis script: 20 concurrent calls for one chat
//! never exceed the cap. The layer sits below idempotency: a replay never
//! counts twice. The counts are the thread's, kept by `conversation/` for
//! every route that asks (the conversation endpoint's calls come through
//! here too), so there is one count per thread.

use crate::call::problem::Problem;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use prometheus::IntCounterVec;
use tower::Layer;

use super::ProxyService;
use crate::call::error::{CallError, GatewayError};
use crate::call::request::{OfferServed, Outcome, ProxyRequest, ProxyResponse};
use crate::call::route::{OwnRoute, Route};
use crate::conversation::{skip_reason, AnyThreads, NoSlot, Threads};
use crate::metrics::Metrics;
use crate::state::fleet::Unavailable;

/// Set on an answer skipped by an integrator rule.
pub static X_OFFERGATE_SKIPPED: HeaderName = HeaderName::from_static("x-offergate-skipped");

pub struct ThreadCap<S> {
    shared: Arc<Shared>,
    next: S,
}

pub struct ThreadCapLayer(Arc<Shared>);

impl<S> Layer<S> for ThreadCapLayer {
    type Service = ThreadCap<S>;

    fn layer(&self, next: S) -> ThreadCap<S> {
        ThreadCap {
            shared: self.0.clone(),
            next,
        }
    }
}

/// What every call of the layer shares.
struct Shared {
    threads: Arc<AnyThreads>,
    skipped: IntCounterVec,
}

impl ThreadCapLayer {
    pub fn new(metrics: &Metrics, threads: Arc<AnyThreads>) -> Result<ThreadCapLayer, Problem> {
        let skipped = metrics.counter_vec(
            "offergate_skipped_total",
            "Calls answered without an offer by an integrator rule, by route and reason (thread_cap, opted_out).",
            &["route", "reason"],
        )?;
        Metrics::zeroed(
            &skipped,
            &[
                &[
                    Route::EncoreOffers.as_str(),
                    OwnRoute::EncoreMessages.as_str(),
                ],
                &["thread_cap", "opted_out"],
            ],
        );
        Ok(ThreadCapLayer(Arc::new(Shared { threads, skipped })))
    }
}

impl Shared {
    fn skip(&self, counted_as: &str, why: NoSlot) -> ProxyResponse {
        self.skipped
            .with_label_values(&[counted_as, skip_reason(why)])
            .inc();
        let mut resp = ProxyResponse::json(
            StatusCode::OK,
            Bytes::from_static(br#"{"success":true,"offer":null}"#),
        );
        resp.headers.insert(
            X_OFFERGATE_SKIPPED.clone(),
            HeaderValue::from_static(skip_reason(why)),
        );
        resp.outcome = Outcome::Rejected;
        resp
    }
}

impl<S: ProxyService> ProxyService for ThreadCap<S> {
    fn call(
        &self,
        mut req: ProxyRequest,
    ) -> impl Future<Output = Result<ProxyResponse, GatewayError>> + Send + '_ {
        async move {
            let this = &*self.shared;
            let thread = match (req.route(), req.call.thread) {
                (Route::EncoreOffers, Some(thread)) => thread,
                _ => return self.next.call(req).await,
            };
            let held = match this.threads.reserve(thread, &mut req.ahead).await {
                Ok(Ok(held)) => held,
                Ok(Err(why)) => return Ok(this.skip(req.counted_as(), why)),
                Err(Unavailable) => return Err(GatewayError::Call(CallError::StateUnavailable)),
            };
            let mut result = self.next.call(req).await;
            if let Ok(served) = &mut result {
                if let Some(OfferServed { link }) = served.offer {
                    // An offer was shown: the slot stays taken, for its link.
                    served.keep_slot = held.keep(link);
                }
            }
            result
        }
    }
}
