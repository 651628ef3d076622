//! The admin listener: `/healthz` (the process runs), `/readyz` (config loaded
//! and serving; 503 while starting or draining, so a load balancer stops sending
//! before the proxy stops accepting) and `/metrics` (Prometheus text); the
//! operator's console (`/`, `/status`, `/config`, `/requests`, `console/`);
//! and `PUT /log-level`, the one change it accepts, as linkerd2-proxy's
//! `/proxy-log-level`. Probes and scrapes (`/healthz`, `/readyz`,
//! `/metrics`) are open to any client; the console's reads (the config, the
//! recent requests) and the change are served to loopback named as
//! loopback (a page elsewhere that rebinds its name to 127.0.0.1 sends its
//! own Host), or with the admin token from elsewhere. It is a separate port
//! so metrics and probes never share the proxy's limits.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Body;

use crate::app::console::{content_security_policy, render_page, Console};
use crate::app::telemetry::SetLevel;
use crate::call::error::{GatewayError, Refusal};
use crate::config::{Live, OnStateError, Secrets};
use crate::edge::respond;
use crate::state::Redis;

#[derive(Clone)]
pub struct Admin {
    pub metrics: Arc<crate::metrics::Metrics>,
    pub ready: Arc<AtomicBool>,
    /// The shared state backend, when there is one: its health is part of
    /// readiness.
    pub state: Option<Redis>,
    pub console: Arc<Console>,
    /// Where the admin token is read (a reload may change it).
    pub secrets: Arc<Live<Secrets>>,
    /// Who this connection is from: loopback may change the log level.
    pub peer: Option<SocketAddr>,
}

/// What the admin listener serves, for a wrong path's answer.
const SERVES: &str =
    "GET /, /status, /config, /requests, /healthz, /readyz, /metrics and GET or PUT /log-level";

/// The longest `PUT /log-level` body read.
const LEVEL_BODY_LIMIT: usize = 1024;

type Answer = Response<Full<Bytes>>;

fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Answer {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A JSON document, never cached: it is live.
fn json(value: &serde_json::Value) -> Answer {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    let mut r = text(StatusCode::OK, "application/json", body);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// An admin error, answered in the error shape by the one error renderer.
fn error(e: GatewayError) -> Answer {
    let answer = respond::answer(e);
    let mut r = Response::new(Full::new(answer.body));
    *r.status_mut() = answer.status;
    *r.headers_mut() = answer.headers;
    r
}

impl Admin {
    /// This listener's service for a connection from `peer`.
    pub fn for_peer(&self, peer: SocketAddr) -> Admin {
        Admin {
            peer: Some(peer),
            ..self.clone()
        }
    }

    /// Answers `req`; the body is read only for `PUT /log-level`.
    pub async fn handle<B>(self, req: Request<B>) -> Answer
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if let Err(refused) = self.check_request_line(&req) {
            return error(refused);
        }
        let path = req.uri().path();
        let read = req.method() == Method::GET || req.method() == Method::HEAD;
        let open = matches!(path, "/healthz" | "/readyz" | "/metrics");
        if !open {
            if let Err(e) = self.trusted(&req) {
                return error(e);
            }
        }
        match path {
            "/healthz" | "/readyz" | "/metrics" | "/" | "/status" | "/config" | "/requests"
                if !read =>
            {
                error(GatewayError::Refused(Refusal::MethodNotAllowed {
                    allow: "GET, HEAD",
                }))
            }
            "/healthz" => text(StatusCode::OK, "text/plain", "ok\n"),
            "/readyz" => self.readiness(),
            "/metrics" => text(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.metrics.render(),
            ),
            "/" => self.page(),
            "/status" => json(&self.console.status()),
            "/config" => json(&self.console.config()),
            "/requests" => match requests_limit(req.uri().query()) {
                Ok(limit) => json(&self.console.requests(limit)),
                Err(e) => error(e),
            },
            "/log-level" => match *req.method() {
                Method::GET | Method::HEAD => self.log_level(),
                Method::PUT => self.set_log_level(req).await,
                _ => error(GatewayError::Refused(Refusal::MethodNotAllowed {
                    allow: "GET, HEAD, PUT",
                })),
            },
            _ => error(GatewayError::Refused(Refusal::NotFound { serves: SERVES })),
        }
    }

    /// As strict as the proxy on what a request names: an origin-form
    /// target, and one well-formed Host.
    fn check_request_line<B>(&self, req: &Request<B>) -> Result<(), GatewayError> {
        if req.uri().scheme().is_some() || req.uri().authority().is_some() {
            return Err(GatewayError::Refused(Refusal::InvalidTarget));
        }
        let mut hosts = req.headers().get_all(http::header::HOST).iter();
        let host_ok = match (hosts.next(), hosts.next()) {
            (Some(h), None) => crate::edge::host::host_of(h.as_bytes()).is_some(),
            _ => false,
        };
        if !host_ok {
            return Err(GatewayError::Refused(Refusal::InvalidHost(
                "send exactly one well-formed Host header".into(),
            )));
        }
        Ok(())
    }

    fn page(&self) -> Answer {
        let status = self.console.status();
        let requests = self.console.requests(50);
        let mut r = text(
            StatusCode::OK,
            "text/html; charset=utf-8",
            render_page(&status, &requests),
        );
        let h = r.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if let Ok(csp) = HeaderValue::from_str(content_security_policy()) {
            h.insert(header::CONTENT_SECURITY_POLICY, csp);
        }
        r
    }

    fn log_level(&self) -> Answer {
        match crate::app::telemetry::log_level() {
            Some(level) => text(StatusCode::OK, "text/plain", format!("{level}\n")),
            None => text(
                StatusCode::OK,
                "text/plain",
                "this process installed no log subscriber\n",
            ),
        }
    }

    /// Whether the console and its change may be served: to loopback named
    /// as loopback, or with the admin token.
    fn trusted<B>(&self, req: &Request<B>) -> Result<(), GatewayError> {
        let secrets = self.secrets.get();
        let mut sent = req.headers().get_all(header::AUTHORIZATION).iter();
        let bearer = match (sent.next(), sent.next()) {
            (Some(v), None) => v.as_bytes().strip_prefix(b"Bearer "),
            _ => None,
        };
        if let (Some(token), Some(bearer)) = (&secrets.admin_token, bearer) {
            if token.matches(bearer) {
                return Ok(());
            }
        }
        // From this host, and named as this host: a web page elsewhere that
        // rebinds its DNS name to 127.0.0.1 sends its own name as Host.
        if self.peer.is_some_and(|p| p.ip().is_loopback()) && names_loopback(req) {
            return Ok(());
        }
        Err(GatewayError::Refused(match secrets.admin_token {
            Some(_) => Refusal::AdminTokenNeeded,
            None => Refusal::AdminLoopbackOnly,
        }))
    }

    async fn set_log_level<B>(&self, req: Request<B>) -> Answer
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let read = http_body_util::Limited::new(req.into_body(), LEVEL_BODY_LIMIT);
        let body = match tokio::time::timeout(
            std::time::Duration::from_secs(5),
            http_body_util::BodyExt::collect(read),
        )
        .await
        {
            Ok(Ok(body)) => body.to_bytes(),
            Ok(Err(_)) => {
                return error(GatewayError::Refused(Refusal::PayloadTooLarge {
                    limit: LEVEL_BODY_LIMIT,
                }))
            }
            Err(_) => return error(GatewayError::Refused(Refusal::BodyTimeout)),
        };
        let Ok(directives) = std::str::from_utf8(&body) else {
            return error(GatewayError::invalid(
                "body",
                "send the level as UTF-8 text",
            ));
        };
        if directives.trim().is_empty() {
            return error(GatewayError::invalid(
                "body",
                "send a level (trace, debug, info, warn, error, off) or target=level directives",
            ));
        }
        match crate::app::telemetry::set_log_level(directives) {
            Ok(level) => text(StatusCode::OK, "text/plain", format!("{level}\n")),
            Err(SetLevel::Invalid(why)) => error(GatewayError::invalid("body", why)),
            Err(SetLevel::NoSubscriber) => error(GatewayError::invalid(
                "body",
                "this process installed no log subscriber to change",
            )),
        }
    }
}

/// Whether the request's Host is `localhost` or a loopback address.
fn names_loopback<B>(req: &Request<B>) -> bool {
    let Some(host) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| crate::edge::host::host_of(h.as_bytes()))
    else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `?limit=N` (1 and up; default and most: the whole ring).
fn requests_limit(query: Option<&str>) -> Result<usize, GatewayError> {
    let mut limit = usize::MAX;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("limit", n)) => {
                limit = n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    GatewayError::invalid("limit", "a whole number of requests, 1 or more")
                })?
            }
            _ => {
                return Err(GatewayError::invalid(
                    "query",
                    "the only parameter is limit=N",
                ))
            }
        }
    }
    Ok(limit)
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

impl<B> hyper::service::Service<Request<B>> for Admin
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Answer;
    type Error = Infallible;
    /// Boxed: the admin listener is not the hot path.
    type Future = BoxFuture<'static, Result<Answer, Infallible>>;

    fn call(&self, req: Request<B>) -> Self::Future {
        Box::pin(self.clone().handle(req).map(Ok))
    }
}

#[cfg(test)]
mod tests;
