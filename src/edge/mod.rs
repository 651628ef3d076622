//! The caller-facing service hyper runs on every proxy connection, and the
//! one file that shows a request's whole path, top to bottom ([`Edge::handle`]):
//!
//! 1. request id (the caller's, when sane, or a new one);
//! 2. a panic catch around everything below: 500 in the error shape
//!    (`offergate_panics_total`), never a dropped connection;
//! 3. the router (`router.rs`): a partner route, or offergate's own
//!    (`own_routes.rs`), or a refusal;
//! 4. admission (`admission.rs`): Host, token, partner, content type, body
//!    (read within its limit and timeout), the partner's JSON rules; what it
//!    learned travels on typed;
//! 5. shedding: past `server.max_in_flight` calls in flight, 503 at once;
//!    a slot is taken only once the body is read, so slow bodies hold
//!    connections (`server.max_connections`), never the slots of calls;
//! 6. the stack (`app/stack.rs`: fallback, idempotency, thread cap,
//!    deadline, caller limit, retry, circuit, partner quota, the partner);
//! 7. the composed message, when asked;
//! 8. errors rendered (`respond.rs`), `x-request-id`, the request metrics
//!    and the access log line.
//!
//! Its error type is `Infallible`: the connection is never dropped on the caller.

pub mod admission;
mod conversation;
pub mod host;
mod metrics;
mod own_routes;
pub mod recent;
pub mod respond;
pub mod router;

use crate::call::problem::Problem;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use hyper::body::Body;
use tokio::sync::Semaphore;

use crate::call::clock;
use crate::call::error::{CallError, GatewayError};
use crate::call::headers::{self, X_OFFERGATE_FALLBACK, X_REQUEST_ID};
use crate::call::request::{CallInfo, ProxyResponse};
use crate::call::route::{AnyRoute, OwnRoute, Route};
use crate::call::service::ProxyService;
use crate::call::spans::{CallSpan, Ended, SpanParent, Tracing};
use crate::config::{Config, Live, Secrets};
use crate::conversation::AnyThreads;
use crate::integrator::rules::Rules;
use crate::layers::idempotency::AnyStore;
use crate::metrics::Metrics;
use crate::partners::encore::compose;
use crate::state::Redis;
use admission::Admission;
use metrics::EdgeMetrics;
use recent::{Answered, Recent};
use router::Handler;

/// The caller-facing service in front of `stack` (everything between
/// admission and the partner, `app/stack.rs`). A tower service: a clone per
/// request is one reference count, and tower or tower-http middleware can
/// wrap it; hyper runs it through hyper-util's `TowerToHyperService`.
pub struct Edge<S> {
    shared: Arc<EdgeShared<S>>,
}

impl<S> Clone for Edge<S> {
    fn clone(&self) -> Self {
        Edge {
            shared: self.shared.clone(),
        }
    }
}

struct EdgeShared<S> {
    stack: S,
    admission: Admission,
    metrics: EdgeMetrics,
    access_log: bool,
    /// Where an offer's link must point, for composing a stored answer.
    link_host: String,
    /// One permit per call in flight; none left: the call is shed at once.
    in_flight: Semaphore,
    /// The Encore doc's integrator rules.
    rules: Rules,
    /// The eligibility endpoint's body limit.
    eligibility_body_limit: usize,
    /// What offergate keeps of each thread.
    threads: Arc<AnyThreads>,
    /// The conversation endpoint's answers, one per message id.
    answers: AnyStore,
    /// How long a redelivery waits for the first delivery's answer.
    message_deadline: std::time::Duration,
    /// How long a message's answer is replayed.
    message_ttl: std::time::Duration,
    /// What is kept of each call: the last requests (the admin console),
    /// its span (traces over OTLP, when on).
    observed: Observed,
}

/// What the edge keeps of each call besides its metrics and access line.
#[derive(Clone)]
pub struct Observed {
    /// The last requests answered, for the admin console.
    pub recent: Arc<Recent>,
    /// Spans, when `[tracing]` names a collector.
    pub tracing: Option<Tracing>,
    /// `offergate_idempotency_total`, where the conversation endpoint counts
    /// its own answer store's lookups.
    pub lookups: prometheus::IntCounterVec,
}

impl<S: ProxyService> Edge<S> {
    /// The edge in front of `stack`, its metrics registered in `metrics`.
    pub fn new(
        config: &Config,
        stack: S,
        metrics: &Metrics,
        secrets: Arc<Live<Secrets>>,
        threads: Arc<AnyThreads>,
        state: Option<&Redis>,
        observed: Observed,
    ) -> Result<Edge<S>, Problem> {
        let encore = &config.encore.resilience;
        // Sized and shared as the offers route's answers.
        let answers = AnyStore::for_route(config, Route::EncoreOffers, state, None);
        let edge_metrics = EdgeMetrics::register(metrics, &observed.lookups)?;
        Ok(Edge {
            shared: Arc::new(EdgeShared {
                stack,
                admission: Admission::new(
                    config,
                    secrets,
                    edge_metrics.shed_counter("body_budget"),
                ),
                metrics: edge_metrics,
                access_log: config.log.access_log,
                link_host: config.encore.offer_link_host.clone(),
                in_flight: Semaphore::new(config.server.max_in_flight),
                rules: Rules::new(&config.encore.integrator, &config.encore.offer_link_host),
                eligibility_body_limit: config.encore.integrator.body_limit_bytes,
                threads,
                answers,
                // The whole Encore call's deadline, and a second for the rest.
                message_deadline: encore.deadline + std::time::Duration::from_secs(1),
                message_ttl: encore.idempotency.ttl,
                observed,
            }),
        })
    }

    /// Handles one request to completion; never fails, never drops the caller:
    /// overload is shed with 503, a panic anywhere answers 500: below the
    /// edge (counted under the call's route), or in the edge's own span,
    /// log and record steps (answered here, with nothing else of the call).
    pub fn handle<B>(self, req: Request<B>) -> impl Future<Output = Response<Full<Bytes>>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let request_id = headers::request_id(req.headers());
        let shared = self.shared.clone();
        let id = request_id.clone();
        AssertUnwindSafe(self.serve(req, request_id))
            .catch_unwind()
            .map(move |served| {
                served.unwrap_or_else(|panic| {
                    shared.metrics.panicked();
                    tracing::error!(
                        request_id = id.to_str().unwrap_or("-"),
                        panic = panic_message(&*panic),
                        "panic in the edge's own steps; answered 500"
                    );
                    render(respond::answer(GatewayError::Call(CallError::Panic)), id)
                })
            })
    }

    /// [`Edge::handle`] but for its last resort. Everything runs when the
    /// future is first polled, inside that catch.
    #[allow(clippy::manual_async_fn)]
    fn serve<B>(
        self,
        req: Request<B>,
        request_id: HeaderValue,
    ) -> impl Future<Output = Response<Full<Bytes>>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // An `async move` block, not an `async fn`: the request is held once,
        // not twice (rust-lang/rust#62958), in the state every call moves.
        async move {
            test_panic("prelude");
            let started = clock::now();
            let (method, path) = if self.shared.access_log {
                (
                    Some(req.method().clone()),
                    Some(req.uri().path().chars().take(200).collect::<String>()),
                )
            } else {
                (None, None)
            };
            let span = self.shared.observed.tracing.as_ref().map(|t| {
                let host = req
                    .headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok());
                t.start_call(req.headers(), req.method(), req.uri().path(), host)
            });
            let traceparent = self.shared.access_log.then(|| {
                req.headers()
                    .get(&headers::TRACEPARENT)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.chars().take(64).collect::<String>())
            });
            let mut trace: Option<Arc<CallInfo>> = None;
            let mut route = None;
            let parent = span.as_ref().and_then(CallSpan::parent);
            let call = self.route_and_call(req, request_id.clone(), parent, &mut route, &mut trace);
            let answer = match AssertUnwindSafe(call).catch_unwind().await {
                Ok(answer) => answer,
                Err(panic) => {
                    self.shared.metrics.panicked();
                    tracing::error!(
                        request_id = request_id.to_str().unwrap_or("-"),
                        panic = panic_message(&*panic),
                        "panic while handling a request; answered 500"
                    );
                    respond::answer(GatewayError::Call(CallError::Panic))
                }
            };
            let elapsed = started.elapsed();
            // Read once, for the access line, the span and the console's ring.
            let fallback = answer.headers.get(&X_OFFERGATE_FALLBACK);
            let duration_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
            if let Some(route) = route {
                self.shared
                    .metrics
                    .request_done(route, answer.outcome, elapsed.as_secs_f64());
            }
            // The access line is not allowed to cost the answer: a panic in
            // it (a writer's, a formatter's) is caught and counted like any.
            let log = || {
                test_panic("log");
                tracing::info!(
                    target: "offergate::access",
                    request_id = request_id.to_str().unwrap_or("-"),
                    method = %method.as_ref().map(|m| m.as_str()).unwrap_or("-"),
                    path = path.as_deref().unwrap_or("-"),
                    route = route.map(|r| r.as_str()).unwrap_or("-"),
                    status = answer.status.as_u16(),
                    outcome = answer.outcome.as_str(),
                    fallback = fallback.and_then(|v| v.to_str().ok()).unwrap_or("-"),
                    // Absent when no partner was called.
                    partner_status = trace.as_ref().and_then(|t| t.trace.last_status()),
                    tries = trace.as_ref().map_or(0, |t| t.trace.tries()),
                    traceparent = traceparent.flatten().as_deref().unwrap_or("-"),
                    duration_us,
                    "request"
                )
            };
            if self.shared.access_log && std::panic::catch_unwind(AssertUnwindSafe(log)).is_err() {
                self.shared.metrics.panicked();
            }
            test_panic("span");
            if let Some(span) = span {
                let reason = fallback.and_then(|v| v.to_str().ok());
                end_span(span, route, &answer, reason, trace.as_deref());
            }
            test_panic("record");
            self.shared.observed.recent.record(Answered {
                at: started + elapsed,
                route,
                status: answer.status.as_u16(),
                fallback: fallback.map(|v| v.as_bytes()),
                duration_us,
                request_id: request_id.as_bytes(),
                caller: trace.as_ref().and_then(|t| t.client_id.as_deref()),
            });
            render(answer, request_id)
        }
    }

    /// The router, then the handler; `route` is set as soon as it is known,
    /// so even a panic later on is counted under it.
    async fn route_and_call<B>(
        &self,
        req: Request<B>,
        request_id: HeaderValue,
        span: Option<SpanParent>,
        route: &mut Option<AnyRoute>,
        trace: &mut Option<Arc<CallInfo>>,
    ) -> ProxyResponse
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let handler = match router::route(req.method(), req.uri()) {
            Ok(handler) => handler,
            Err(e) => {
                self.shared.metrics.unrouted(e.meaning().code);
                return respond::answer(e);
            }
        };
        let any = match &handler {
            Handler::Partner(target) => AnyRoute::Partner(target.route()),
            Handler::Own(own) => AnyRoute::Own(*own),
        };
        *route = Some(any);
        // In flight until answered (dropped on every way out, a panic's too).
        let _flying = self.shared.metrics.flying(any);
        let target = match handler {
            Handler::Partner(target) => target,
            // Each boxed: their state would size every proxied call's.
            Handler::Own(own) => {
                return match own {
                    OwnRoute::EncoreEligibility => Box::pin(self.eligibility(req)).await,
                    OwnRoute::EncoreMessages => {
                        Box::pin(self.message(req, request_id, span, trace)).await
                    }
                    _ => Box::pin(self.thread_change(req, own)).await,
                };
            }
        };
        let proxy_req = match self
            .shared
            .admission
            .admit(req, target, request_id, span)
            .await
        {
            Ok(proxy_req) => proxy_req,
            Err(e) => return respond::answer(e),
        };
        // The call's in-flight slot, taken once its body is read: a slow
        // body holds a connection (`server.max_connections`), never a slot.
        // None left: shed at once, an overload degrades instead of queueing.
        let Ok(_slot) = self.shared.in_flight.try_acquire() else {
            self.shared.metrics.shed("max_in_flight");
            return respond::answer(GatewayError::Call(CallError::Overloaded));
        };
        *trace = Some(proxy_req.call.clone());
        let compose = proxy_req.call.compose.clone();
        match self.shared.stack.call(proxy_req).await {
            Ok(mut resp) => {
                if let (Some(asked), 200) = (compose, resp.status.as_u16()) {
                    // The partner call composed it as it read the answer; an
                    // answer from the store is read here, once.
                    let body = match resp.composed.as_deref() {
                        Some(composed) => compose::add(&resp.body, composed),
                        None => compose::compose(
                            &resp.body,
                            asked.language.as_deref(),
                            &self.shared.link_host,
                        ),
                    };
                    if let Some(body) = body {
                        resp.body = body;
                    }
                }
                resp
            }
            Err(e) => {
                // A panic the stack caught itself (a leader's, in its own task).
                if matches!(e, GatewayError::Call(CallError::Panic)) {
                    self.shared.metrics.panicked();
                }
                respond::answer(e)
            }
        }
    }
}

/// Ends a call's span with how the call ended.
fn end_span(
    mut span: CallSpan,
    route: Option<AnyRoute>,
    answer: &ProxyResponse,
    fallback: Option<&str>,
    call: Option<&CallInfo>,
) {
    if let Some(route) = route {
        span.routed(route.as_str());
    }
    let keyed = call.is_some_and(|c| c.idempotency_key.is_some());
    span.end(Ended {
        status: answer.status.as_u16(),
        outcome: answer.outcome.as_str(),
        fallback,
        idempotency: match answer.outcome {
            crate::call::request::Outcome::Replayed => Some("replayed"),
            _ if keyed => Some("new"),
            _ => None,
        },
        tries: call.map_or(0, |c| c.trace.tries()),
    });
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("-")
}

#[cfg(test)]
thread_local! {
    /// Where a unit test makes the edge's own steps panic (`app/stack.rs`'s
    /// tests); nothing in a build.
    pub(crate) static PANIC_AT: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

#[inline]
fn test_panic(place: &'static str) {
    #[cfg(test)]
    if PANIC_AT.get() == Some(place) {
        panic!("a test's panic in the edge's {place} step");
    }
    let _ = place;
}

fn render(answer: ProxyResponse, request_id: http::HeaderValue) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(answer.body));
    *resp.status_mut() = answer.status;
    *resp.headers_mut() = answer.headers;
    resp.headers_mut().insert(X_REQUEST_ID.clone(), request_id);
    resp
}

impl<S, B> tower::Service<Request<B>> for Edge<S>
where
    S: ProxyService,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    /// The edge's box of a call (its future holds the whole stack's); the
    /// idempotency leader boxes the other (`layers/idempotency/finish.rs`).
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    /// Always ready: overload is shed per call (`max_in_flight`), with an
    /// answer, never by holding the connection back.
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        Box::pin(self.clone().handle(req).map(Ok))
    }
}
