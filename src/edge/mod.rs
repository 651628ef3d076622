//! The caller-facing service hyper runs on every proxy connection.
//!
//! It is the one place where a request enters and an answer leaves: request id,
//! admission, the proxy stack, rendering of errors, `x-request-id` on the answer,
//! the request metrics and the access log line. Its error type is `Infallible`:
//! every failure becomes an answer, the connection is never dropped on the caller.

pub mod admission;
pub mod respond;
pub mod validate;

use crate::call::clock;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Body;
use tower::Service;

use crate::call::error::GatewayError;
use crate::call::headers::{self, X_REQUEST_ID};
use crate::call::request::{ProxyRequest, ProxyResponse};
use crate::edge::admission::Admission;
use crate::metrics::Metrics;

/// Everything between admission and the partner, type-erased so the edge does
/// not change as layers are added, and shared: the edge calls it once per
/// request for the price of one reference count, not a boxed clone of the stack.
#[derive(Clone)]
pub struct ProxyService(Arc<dyn Fn(ProxyRequest) -> ProxyFuture + Send + Sync>);

pub type ProxyFuture = BoxFuture<'static, Result<ProxyResponse, GatewayError>>;

impl ProxyService {
    pub fn new<S>(stack: S) -> ProxyService
    where
        S: Service<
                ProxyRequest,
                Response = ProxyResponse,
                Error = GatewayError,
                Future = ProxyFuture,
            > + Clone
            + Send
            + Sync
            + 'static,
    {
        // Every layer is always ready: each drives the one below with `oneshot`.
        ProxyService(Arc::new(move |req| stack.clone().call(req)))
    }

    pub fn call(&self, req: ProxyRequest) -> ProxyFuture {
        (self.0)(req)
    }
}

#[derive(Clone)]
pub struct Edge {
    shared: Arc<EdgeShared>,
    stack: ProxyService,
}

struct EdgeShared {
    admission: Admission,
    metrics: Arc<Metrics>,
    access_log: bool,
}

impl Edge {
    pub fn new(
        admission: Admission,
        stack: ProxyService,
        metrics: Arc<Metrics>,
        access_log: bool,
    ) -> Edge {
        Edge {
            shared: Arc::new(EdgeShared {
                admission,
                metrics,
                access_log,
            }),
            stack,
        }
    }

    /// Handles one request to completion; never fails.
    pub async fn handle<B>(self, req: Request<B>) -> Response<Full<Bytes>>
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
        let (route, answer) = match self.shared.admission.admit(req, request_id.clone()).await {
            Ok(proxy_req) => {
                let route = proxy_req.route();
                let answer = match self.stack.call(proxy_req).await {
                    Ok(resp) => resp,
                    Err(e) => respond::answer(e),
                };
                (Some(route), answer)
            }
            Err((route, e)) => {
                if route.is_none() {
                    self.shared.metrics.unrouted(e.code());
                }
                (route, respond::answer(e))
            }
        };
        let elapsed = started.elapsed();
        if let Some(route) = route {
            self.shared
                .metrics
                .request_done(route, answer.outcome, elapsed.as_secs_f64());
        }
        if self.shared.access_log {
            tracing::info!(
                target: "offergate::access",
                request_id = request_id.to_str().unwrap_or("-"),
                method = %method.as_ref().map(|m| m.as_str()).unwrap_or("-"),
                path = path.as_deref().unwrap_or("-"),
                route = route.map(|r| r.as_str()).unwrap_or("-"),
                status = answer.status.as_u16(),
                outcome = answer.outcome.as_str(),
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                "request"
            );
        }
        render(answer, request_id)
    }
}

fn render(answer: ProxyResponse, request_id: http::HeaderValue) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(answer.body));
    *resp.status_mut() = answer.status;
    *resp.headers_mut() = answer.headers;
    resp.headers_mut().insert(X_REQUEST_ID.clone(), request_id);
    resp
}

impl<B> hyper::service::Service<Request<B>> for Edge
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn call(&self, req: Request<B>) -> Self::Future {
        let edge = self.clone();
        Box::pin(async move { Ok(edge.handle(req).await) })
    }
}
