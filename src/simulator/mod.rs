//! A built-in simulator of both partner APIs, for `offergate demo`, the tests,
//! the benchmarks, and integrators who want to prove what reaches a partner.
//!
//! It answers as the partner docs describe (see [`encore`] and [`besitos`]),
//! plays scripted faults ([`faults`]) and counts every call it receives. Control
//! endpoints on the same listener:
//! - `GET /__sim/calls`: `{"encore_offers": N, "besitos_goals": N}`
//! - `POST /__sim/faults`: `{"route": "encore_offers", "plan": ["503", "ok"]}`
//! - `POST /__sim/reset`: counters to zero, plans and recordings cleared
//! - `GET /__sim/last?route=R`: the last request received on a route (method,
//!   path, headers, body), so a test can see exactly what offergate sent.

pub mod besitos;
mod control;
pub mod encore;
pub mod faults;
mod partner;

use crate::call::problem::Problem;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::call::route::Route;
use crate::server::{serve, Conns, ServeOptions};
use faults::{Fault, Plan, SlowBody};
use partner::{partner_answer, PartnerTarget};

/// What the simulator accepts.
#[derive(Clone, Default)]
pub struct SimConfig {
    /// Exactly this `X-API-Key`; `None`: any `pk_test_`/`pk_live_` key.
    pub encore_key: Option<String>,
    /// Exactly this bearer token; `None`: any non-empty token.
    pub besitos_token: Option<String>,
    /// Serve https with this acceptor.
    pub tls: Option<TlsAcceptor>,
}

/// A request as the simulator received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The body the simulator answered (empty for faults with no answer).
    pub answered: Bytes,
}

/// The simulator's shared state; tests may read it directly.
pub struct SimState {
    calls: [AtomicU64; 2],
    plans: [Mutex<Plan>; 2],
    last: [Mutex<Option<Recorded>>; 2],
    config: SimConfig,
    origin: String,
    goals: Vec<besitos::Goal>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SimState {
    /// Calls received on `route` since start or the last reset.
    pub fn calls(&self, route: Route) -> u64 {
        self.calls[route.index()].load(Ordering::SeqCst)
    }

    /// Scripts the next answers of `route`.
    pub fn set_plan(&self, route: Route, plan: Vec<Fault>) {
        lock(&self.plans[route.index()]).replace(plan);
    }

    /// The last request received on `route`.
    pub fn last(&self, route: Route) -> Option<Recorded> {
        lock(&self.last[route.index()]).clone()
    }

    pub fn reset(&self) {
        for r in Route::ALL {
            self.calls[r.index()].store(0, Ordering::SeqCst);
            lock(&self.plans[r.index()]).clear();
            *lock(&self.last[r.index()]) = None;
        }
    }
}

/// A running simulator.
pub struct Simulator {
    pub addr: SocketAddr,
    pub state: Arc<SimState>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Simulator {
    /// Binds `addr` (port 0: any free port) and starts serving.
    pub async fn start(addr: SocketAddr, config: SimConfig) -> Result<Simulator, Problem> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Problem(format!("cannot listen on {addr} for the simulator: {e}")))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let tls = config.tls.clone();
        let state = Arc::new(SimState {
            calls: Default::default(),
            plans: Default::default(),
            last: Default::default(),
            origin: format!("{scheme}://{addr}"),
            goals: besitos::dataset(),
            config,
        });
        let (shutdown, rx) = watch::channel(false);
        let svc = SimService {
            state: state.clone(),
        };
        let opts = ServeOptions {
            grace: std::time::Duration::from_millis(200),
            ..ServeOptions::default()
        };
        let task = tokio::spawn(serve(
            listener,
            tls,
            move |_| svc.clone(),
            opts,
            Arc::new(Conns::new()),
            rx,
        ));
        Ok(Simulator {
            addr,
            state,
            shutdown,
            task,
        })
    }

    /// `http(s)://addr`.
    pub fn origin(&self) -> &str {
        &self.state.origin
    }

    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

type SimBody = BoxBody<Bytes, Infallible>;

/// The `reset` fault: hyper closes the connection when the service fails.
#[derive(Debug)]
struct DropConnection;
impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("simulated connection reset")
    }
}
impl std::error::Error for DropConnection {}

#[derive(Clone)]
struct SimService {
    state: Arc<SimState>,
}

fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<SimBody> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

impl hyper::service::Service<Request<Incoming>> for SimService {
    type Response = Response<SimBody>;
    type Error = DropConnection;
    type Future = BoxFuture<'static, Result<Response<SimBody>, DropConnection>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let state = self.state.clone();
        Box::pin(async move { handle(state, req).await })
    }
}

async fn handle(
    state: Arc<SimState>,
    req: Request<Incoming>,
) -> Result<Response<SimBody>, DropConnection> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, 1024 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                r#"{"message":"too large"}"#,
            ))
        }
    };
    let path = parts.uri.path();
    if let Some(control) = path.strip_prefix("/__sim/") {
        return Ok(control::answer(
            &state,
            &parts.method,
            control,
            parts.uri.query(),
            &body,
        ));
    }
    let target = match PartnerTarget::parse(&parts.method, &parts.uri) {
        Ok(t) => t,
        Err((status, message)) => {
            return Ok(json_response(
                status,
                json!({ "message": message }).to_string(),
            ))
        }
    };
    let route = target.route;
    state.calls[route.index()].fetch_add(1, Ordering::SeqCst);
    *lock(&state.last[route.index()]) = Some(Recorded {
        method: parts.method.clone(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts.headers.clone(),
        body: body.clone(),
        answered: Bytes::new(),
    });
    let fault = lock(&state.plans[route.index()]).take_next();
    match fault {
        Fault::Ok => {}
        Fault::Delay(d) => tokio::time::sleep(d).await,
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Ok(json_response(status, json!({"success": false, "error": {"code": "simulated", "message": format!("simulated {code}")}}).to_string()));
        }
        Fault::TooMany { retry_after_secs } => {
            let mut r = json_response(
                StatusCode::TOO_MANY_REQUESTS,
                r#"{"success":false,"error":{"code":"rate_limited","message":"Too many requests"}}"#,
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            return Ok(r);
        }
        Fault::Hang => {
            tokio::time::sleep(faults::HANG).await;
            return Err(DropConnection);
        }
        Fault::Reset => return Err(DropConnection),
        Fault::Malformed => return Ok(json_response(StatusCode::OK, r#"{"success":tru"#)),
        Fault::Slow => {
            let (status, answer) = partner_answer(&state, &parts.headers, &target, &body);
            let mut r = json_response(status, Bytes::new());
            *r.body_mut() = SlowBody::new(answer, faults::SLOW, 10).boxed();
            return Ok(r);
        }
    }
    let (status, answer) = partner_answer(&state, &parts.headers, &target, &body);
    if let Some(last) = lock(&state.last[route.index()]).as_mut() {
        last.answered = answer.clone();
    }
    Ok(json_response(status, answer))
}

/// A TLS acceptor from PEM certificate chain and private key (tests generate a
/// self-signed pair; `offergate simulate --tls-cert --tls-key` reads files).
pub fn tls_acceptor(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsAcceptor, Problem> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Problem(format!("certificate: {e}")))?;
    if certs.is_empty() {
        return Err("certificate: no PEM certificate found".into());
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| Problem(format!("private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Problem(format!("certificate and key: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
