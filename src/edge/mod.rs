//! The caller-facing service hyper runs on every proxy connection.
//!
//! It is the one place where a request enters and an answer leaves, in this
//! order: request id; load shedding (`server.max_in_flight`: the excess is
//! answered 503 at once, before anything is read, so an overload degrades
//! instead of queueing); admission; the proxy stack; errors rendered
//! (`respond.rs`); `x-request-id` on the answer; the request metrics and the
//! access log line. A panic anywhere in admission or the stack is caught here
//! and answered 500 in the error shape (`offergate_panics_total`). Its error
//! type is `Infallible`: the connection is never dropped on the caller.

pub mod admission;
mod metrics;
pub mod respond;
pub mod validate;

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
use crate::call::error::GatewayError;
use crate::call::headers::{self, X_OFFERGATE_FALLBACK, X_REQUEST_ID};
use crate::call::request::{CallInfo, ProxyRequest, ProxyResponse};
use crate::call::route::Route;
use crate::call::service::ProxyService;
use crate::config::{Config, Live, Secrets};
use crate::integrator::{compose, eligibility};
use crate::metrics::Metrics;
use admission::Admission;
use metrics::EdgeMetrics;

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
    /// One permit per call in flight; none left: the call is shed at once.
    in_flight: Semaphore,
    /// The integrator rules of the eligibility endpoint.
    rules: eligibility::Rules,
    /// Compose the message for every offer (`[encore.integrator] compose`).
    compose: bool,
}

impl<S: ProxyService> Edge<S> {
    /// The edge in front of `stack`, its metrics registered in `metrics`.
    pub fn new(
        config: &Config,
        stack: S,
        metrics: &Metrics,
        secrets: Arc<Live<Secrets>>,
    ) -> Result<Edge<S>, String> {
        Ok(Edge {
            shared: Arc::new(EdgeShared {
                stack,
                admission: Admission::new(config, secrets),
                metrics: EdgeMetrics::register(metrics)?,
                access_log: config.log.access_log,
                in_flight: Semaphore::new(config.server.max_in_flight),
                rules: (&config.encore.integrator).into(),
                compose: config.encore.integrator.compose,
            }),
        })
    }

    /// Handles one request to completion; never fails, never drops the caller:
    /// overload is shed with 503, a panic anywhere below answers 500.
    pub fn handle<B>(self, req: Request<B>) -> impl Future<Output = Response<Full<Bytes>>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = clock::now();
        let request_id = headers::request_id(req.headers());
        let (method, path) = if self.shared.access_log {
            (
                Some(req.method().clone()),
                Some(req.uri().path().chars().take(200).collect::<String>()),
            )
        } else {
            (None, None)
        };
        let traceparent = self.shared.access_log.then(|| {
            req.headers()
                .get(&headers::TRACEPARENT)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.chars().take(64).collect::<String>())
        });
        // An `async move` block, not an `async fn`: the request is held once,
        // not twice (rust-lang/rust#62958), in the state every call moves.
        async move {
            let mut trace: Option<Arc<CallInfo>> = None;
            let mut route = None;
            let answer = match self.shared.in_flight.try_acquire() {
                // Shed before anything is read: an overload degrades, it does not queue.
                Err(_) => {
                    self.shared.metrics.shed("max_in_flight");
                    respond::answer(GatewayError::Overloaded)
                }
                Ok(_permit) => {
                    let call = self.admit_and_call(req, request_id.clone(), &mut route, &mut trace);
                    match AssertUnwindSafe(call).catch_unwind().await {
                        Ok(answer) => answer,
                        Err(panic) => {
                            self.shared.metrics.panicked();
                            tracing::error!(
                                request_id = request_id.to_str().unwrap_or("-"),
                                panic = panic_message(&*panic),
                                "panic while handling a request; answered 500"
                            );
                            respond::answer(GatewayError::Panic)
                        }
                    }
                }
            };
            let elapsed = started.elapsed();
            if let Some(route) = route {
                self.shared
                    .metrics
                    .request_done(route, answer.outcome, elapsed.as_secs_f64());
            }
            // The access line is not allowed to cost the answer: a panic in
            // it (a writer's, a formatter's) is caught and counted like any.
            let log = || {
                tracing::info!(
                    target: "offergate::access",
                    request_id = request_id.to_str().unwrap_or("-"),
                    method = %method.as_ref().map(|m| m.as_str()).unwrap_or("-"),
                    path = path.as_deref().unwrap_or("-"),
                    route = route.map(|r| r.as_str()).unwrap_or("-"),
                    status = answer.status.as_u16(),
                    outcome = answer.outcome.as_str(),
                    fallback = answer
                        .headers
                        .get(&X_OFFERGATE_FALLBACK)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-"),
                    partner_status = trace.as_ref().and_then(|t| t.trace.last_status()).unwrap_or(0),
                    attempts = trace.as_ref().map_or(0, |t| t.trace.tries()),
                    traceparent = traceparent.flatten().as_deref().unwrap_or("-"),
                    duration_ms = elapsed.as_secs_f64() * 1000.0,
                    "request"
                )
            };
            if self.shared.access_log && std::panic::catch_unwind(AssertUnwindSafe(log)).is_err() {
                self.shared.metrics.panicked();
            }
            render(answer, request_id)
        }
    }

    /// Admission, then the stack; `route` is set as soon as it is known, so
    /// even a panic later on is counted under it.
    async fn admit_and_call<B>(
        &self,
        req: Request<B>,
        request_id: HeaderValue,
        route: &mut Option<Route>,
        trace: &mut Option<Arc<CallInfo>>,
    ) -> ProxyResponse
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if req.uri().path() == eligibility::PATH && req.uri().authority().is_none() {
            // Boxed: its state would size every proxied call's.
            return Box::pin(self.eligibility(req)).await;
        }
        match self.shared.admission.admit(req, request_id).await {
            Ok(proxy_req) => {
                *route = Some(proxy_req.route());
                *trace = Some(proxy_req.call.clone());
                let compose = (proxy_req.route() == Route::EncoreOffers)
                    .then(|| self.composing(&proxy_req))
                    .flatten();
                match self.shared.stack.call(proxy_req).await {
                    Ok(mut resp) => {
                        if let (Some(language), 200) = (compose, resp.status.as_u16()) {
                            if let Some(body) = compose::compose(&resp.body, language.as_deref()) {
                                resp.body = body;
                            }
                        }
                        resp
                    }
                    Err(e) => {
                        // A panic the stack caught itself (a spawned call's).
                        if matches!(e, GatewayError::Panic) {
                            self.shared.metrics.panicked();
                        }
                        respond::answer(e)
                    }
                }
            }
            Err((known, e)) => {
                *route = known;
                if known.is_none() {
                    self.shared.metrics.unrouted(e.code());
                }
                respond::answer(e)
            }
        }
    }
}

impl<S: ProxyService> Edge<S> {
    /// `Some(language)` when the answer to `req` is to carry a composed
    /// message (the request asks, or the config always does).
    fn composing(&self, req: &ProxyRequest) -> Option<Option<String>> {
        if !(self.shared.compose
            || compose::asked(req.call.headers.get(&headers::X_OFFERGATE_COMPOSE)))
        {
            return None;
        }
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        Some(body["attributes"]["language"].as_str().map(str::to_string))
    }

    /// `POST /offergate/v1/encore/eligibility`: the doc's "when to call us",
    /// answered here; no partner call.
    async fn eligibility<B>(&self, req: Request<B>) -> ProxyResponse
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let body = match self.shared.admission.admit_own(req).await {
            Ok(body) => body,
            Err(e) => {
                self.shared.metrics.eligibility("invalid");
                return respond::answer(e);
            }
        };
        let now_ms = clock::wall_ms();
        match eligibility::decide(&body, &self.shared.rules, now_ms) {
            Ok(decision) => {
                self.shared.metrics.eligibility(decision.result());
                let body = serde_json::to_vec(&decision).unwrap_or_default();
                ProxyResponse::json(http::StatusCode::OK, Bytes::from(body))
            }
            Err(e) => {
                self.shared.metrics.eligibility("invalid");
                respond::answer(e)
            }
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("-")
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
    /// The one box of a call: the edge's future holds the whole stack's.
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
