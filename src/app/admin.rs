//! The admin listener: `/healthz` (the process runs), `/readyz` (config loaded
//! and serving; 503 while starting or draining, so a load balancer stops sending
//! before the proxy stops accepting) and `/metrics` (Prometheus text).
//! It is a separate port so metrics and probes never share the proxy's limits.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;

use crate::call::error::{GatewayError, Refusal};
use crate::config::OnStateError;
use crate::edge::respond;
use crate::state::Redis;

#[derive(Clone)]
pub struct Admin {
    pub metrics: Arc<crate::metrics::Metrics>,
    pub ready: Arc<AtomicBool>,
    /// The shared state backend, when there is one: its health is part of
    /// readiness.
    pub state: Option<Redis>,
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// An admin error, answered in the error shape by the one error renderer.
fn error(e: GatewayError) -> Response<Full<Bytes>> {
    let answer = respond::answer(e);
    let mut r = Response::new(Full::new(answer.body));
    *r.status_mut() = answer.status;
    *r.headers_mut() = answer.headers;
    r
}

impl Admin {
    pub fn answer<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        // As strict as the proxy on what a request names: an origin-form
        // target, and one well-formed Host.
        if req.uri().scheme().is_some() || req.uri().authority().is_some() {
            return error(GatewayError::Refused(Refusal::InvalidTarget));
        }
        let mut hosts = req.headers().get_all(http::header::HOST).iter();
        let host_ok = match (hosts.next(), hosts.next()) {
            (Some(h), None) => crate::edge::host::host_of(h.as_bytes()).is_some(),
            _ => false,
        };
        if !host_ok {
            return error(GatewayError::Refused(Refusal::InvalidHost(
                "send exactly one well-formed Host header".into(),
            )));
        }
        let path = req.uri().path();
        if !matches!(path, "/healthz" | "/readyz" | "/metrics") {
            return error(GatewayError::Refused(Refusal::NotFound {
                serves: "GET /healthz, GET /readyz and GET /metrics",
            }));
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return error(GatewayError::Refused(Refusal::MethodNotAllowed {
                allow: "GET, HEAD",
            }));
        }
        match path {
            "/healthz" => text(StatusCode::OK, "text/plain", "ok\n"),
            "/readyz" => self.readiness(),
            _ => text(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.metrics.render(),
            ),
        }
    }
}

impl Admin {
    /// 200 while serving, 503 while starting or draining. A degraded shared
    /// state is reported in the body; it makes offergate unready only where
    /// calls would fail without it (`on_error = "fail_closed"`).
    fn readiness(&self) -> Response<Full<Bytes>> {
        if !self.ready.load(Ordering::Acquire) {
            return text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n");
        }
        match &self.state {
            None => text(StatusCode::OK, "text/plain", "ready\n"),
            Some(redis) if !redis.degraded() => {
                text(StatusCode::OK, "text/plain", "ready\nstate: redis ok\n")
            }
            Some(redis) => match redis.on_error() {
                OnStateError::FailOpen => text(
                    StatusCode::OK,
                    "text/plain",
                    "ready\nstate: redis degraded (fail_open: serving without cross-replica de-duplication or fleet-wide limits)\n",
                ),
                OnStateError::FailClosed => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "not ready\nstate: redis unavailable (fail_closed)\n",
                ),
            },
        }
    }
}

impl<B> hyper::service::Service<Request<B>> for Admin {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn call(&self, req: Request<B>) -> Self::Future {
        std::future::ready(Ok(self.answer(&req)))
    }
}
