//! A keep-alive HTTP/1.1 connection pool to one partner, on hyper's
//! connection-level client.
//!
//! Why not hyper-util's pooled `Client`: every partner call checked a
//! connection out of its generic pool (a hash map keyed by scheme and host,
//! behind a lock, with waiters and extensions), and it was a measurable share
//! of a forwarded call. One partner is one host, so the pool here is a stack of
//! idle connections: pop one, wait until it is ready, send, and push it back
//! once the answer is read. The connection's I/O still runs in hyper's own
//! task, so HTTP/1.1 framing stays hyper's.

use crate::call::problem::Problem;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, Once, Weak};
use std::time::Duration;

use crate::call::body::read_whole;
use crate::call::clock::{self, Instant};
use bytes::Bytes;
use futures_util::FutureExt;
use http::uri::PathAndQuery;
use http::{header, HeaderValue, Request, Response, Uri};
use http_body_util::{Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower::ServiceExt;

use crate::call::error::{Cause, UpstreamFailure};
use crate::config::{BaseUrl, UpstreamConfig};

/// A keep-alive connection pool to one partner. Clones share the pool.
#[derive(Clone)]
pub struct PartnerClient {
    shared: Arc<Shared>,
}

struct Shared {
    connector: HttpsConnector<HttpConnector>,
    config: UpstreamConfig,
    /// The partner's origin, what the connector dials.
    origin: Uri,
    /// The `Host` header every request carries.
    host: HeaderValue,
    /// Idle connections, the most recently used on top.
    idle: Mutex<Vec<Idle>>,
    /// The idle reaper starts with the first connection put back (inside the
    /// runtime, wherever the pool was built).
    reaper: Once,
}

struct Idle {
    sender: SendRequest<Full<Bytes>>,
    since: Instant,
}

/// HTTP/1.1 over TCP, or TLS with `tls`: no Nagle delay, TCP keep-alive,
/// `connect_timeout` per connect. The partners' pools use it, and the
/// traces' exporter.
pub fn connector(
    tls: rustls::ClientConfig,
    connect_timeout: Duration,
) -> hyper_rustls::HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http)
}

impl PartnerClient {
    /// A pool for `config.base_url`. Each connection's I/O runs as a Tokio
    /// task, and a task closes connections idle for longer than
    /// `pool_idle_timeout`.
    pub fn new(
        config: &UpstreamConfig,
        tls: rustls::ClientConfig,
    ) -> Result<PartnerClient, Problem> {
        let connector = connector(tls, config.connect_timeout);
        let base = &config.base_url;
        let origin = Uri::builder()
            .scheme(base.scheme.clone())
            .authority(base.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| Problem(format!("base_url: {e}")))?;
        let host = HeaderValue::from_str(base.authority.as_str())
            .map_err(|e| Problem(format!("base_url: the host is not a valid header: {e}")))?;
        let shared = Arc::new(Shared {
            connector,
            config: config.clone(),
            origin,
            host,
            idle: Mutex::new(Vec::new()),
            reaper: Once::new(),
        });
        Ok(PartnerClient { shared })
    }

    pub fn base_url(&self) -> &BaseUrl {
        &self.shared.config.base_url
    }

    pub fn config(&self) -> &UpstreamConfig {
        &self.shared.config
    }

    /// Sends one request (its URI: the path and query on this partner) and
    /// reads the whole answer, within `timeout` of `started` (when the caller
    /// began the try: it has read the clock already).
    pub fn send(
        &self,
        mut req: Request<Full<Bytes>>,
        started: Instant,
        timeout: Duration,
    ) -> impl Future<Output = Result<(http::response::Parts, Bytes), UpstreamFailure>> + Send + '_
    {
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::from(path);
        req.headers_mut()
            .insert(header::HOST, self.shared.host.clone());
        let limit = self.shared.config.max_response_bytes;
        // The request is moved in, not held twice (an `async fn` would keep
        // its argument beside the moved copy: rust-lang/rust#62958).
        let call = async move {
            let (resp, sender) = self.exchange(req, started).await?;
            let (parts, body) = resp.into_parts();
            let body = read_whole(Limited::new(body, limit)).await.map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    UpstreamFailure::InvalidBody(
                        format!("answer is larger than {limit} bytes").into(),
                    )
                } else {
                    UpstreamFailure::Reset(Cause::boxed(e))
                }
            })?;
            // Only a connection whose answer was read to the end is reused: a
            // timed-out or failed call drops it, and hyper closes it.
            self.check_in(sender);
            Ok((parts, body))
        };
        // A combinator, not an `async` block: the block would keep `call`
        // beside the timeout that holds it (1.2 KB more in every layer's
        // state, each moved once per call).
        tokio::time::timeout_at(started + timeout, call)
            .map(|r| r.unwrap_or(Err(UpstreamFailure::Timeout)))
    }

    /// Sends on an idle connection when one is alive, else on a new one. A
    /// request refused by an idle connection before any of it was written
    /// (the partner closed it meanwhile) goes on to the next: nothing reached
    /// the partner, so this is not a retry.
    async fn exchange(
        &self,
        mut req: Request<Full<Bytes>>,
        now: Instant,
    ) -> Result<(Response<Incoming>, SendRequest<Full<Bytes>>), UpstreamFailure> {
        while let Some(mut sender) = self.check_out(now) {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, sender)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(UpstreamFailure::Reset(Cause::new(e.into_error()))),
                },
            }
        }
        // Boxed: the connector's future (2.4 KB) would otherwise size every
        // call's state, and a new connection is the rare case.
        let mut sender = Box::pin(self.connect()).await?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| UpstreamFailure::Reset(Cause::new(e)))?;
        Ok((resp, sender))
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, UpstreamFailure> {
        let io = self
            .shared
            .connector
            .clone()
            .oneshot(self.shared.origin.clone())
            .await
            .map_err(|e| UpstreamFailure::Connect(Cause::boxed(e)))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| UpstreamFailure::Connect(Cause::new(e)))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "partner connection ended");
            }
        });
        Ok(sender)
    }

    fn check_out(&self, now: Instant) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.shared.idle();
        while let Some(conn) = idle.pop() {
            if self.shared.usable(&conn, now) {
                return Some(conn.sender);
            }
        }
        None
    }

    fn check_in(&self, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        self.shared.reaper.call_once(|| {
            reap_idle(
                Arc::downgrade(&self.shared),
                self.shared.config.pool_idle_timeout,
            )
        });
        let mut idle = self.shared.idle();
        if idle.len() < self.shared.config.pool_max_idle_per_host {
            idle.push(Idle {
                sender,
                since: clock::now(),
            });
        }
    }

    /// Idle connections now (tests).
    pub fn idle_connections(&self) -> usize {
        self.shared.idle().len()
    }
}

impl Shared {
    fn idle(&self) -> MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether an idle connection may carry a request at `now`: still open,
    /// and idle for no longer than `pool_idle_timeout`.
    fn usable(&self, conn: &Idle, now: Instant) -> bool {
        let stale = now
            .checked_sub(self.config.pool_idle_timeout)
            .is_some_and(|fresh_since| conn.since < fresh_since);
        !stale && !conn.sender.is_closed()
    }
}

/// Closes connections idle for longer than `timeout` (or closed by the
/// partner), checking every half of it; ends with the pool.
fn reap_idle(pool: Weak<Shared>, timeout: Duration) {
    let period = (timeout / 2).max(Duration::from_millis(100));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(shared) = pool.upgrade() else { return };
            let now = clock::now();
            shared.idle().retain(|c| shared.usable(c, now));
        }
    });
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    use super::*;

    /// A partner on loopback answering `{}` to everything. With `idle_close`,
    /// it drops each connection 20 ms after accepting it, without a word (an
    /// idle timeout on the partner's side). Returns its address and a count of
    /// the connections it accepted.
    async fn partner(idle_close: bool) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let answer = hyper::service::service_fn(|_req| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
                    });
                    let serve = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), answer);
                    if idle_close {
                        let _ = tokio::time::timeout(Duration::from_millis(20), serve).await;
                    } else {
                        let _ = serve.await;
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn client(addr: std::net::SocketAddr, idle_timeout: Duration) -> PartnerClient {
        let toml = format!(
            "[encore]\nbase_url = \"http://{addr}\"\napi_key_env = \"K\"\nchat_id = \"as_sent\"\n\
             [besitos]\nbase_url = \"http://{addr}\"\n\
             [[besitos.partners]]\nid = \"p\"\ntoken_env = \"K\"\n"
        );
        let env = crate::config::MapEnv::from([("K", "pk_test_pool")]);
        let mut config = crate::config::Config::from_toml(&toml, &env)
            .unwrap()
            .encore
            .upstream;
        config.pool_idle_timeout = idle_timeout;
        let tls = crate::upstream::tls::tls_config(&[]).unwrap();
        PartnerClient::new(&config, tls).unwrap()
    }

    async fn call(c: &PartnerClient) -> Result<Bytes, UpstreamFailure> {
        let req = Request::post("/x")
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        c.send(req, clock::now(), Duration::from_secs(5))
            .await
            .map(|(_, body)| body)
    }

    #[tokio::test]
    async fn sequential_calls_share_one_connection() {
        let (addr, accepted) = partner(false).await;
        let c = client(addr, Duration::from_secs(60));
        for _ in 0..20 {
            assert_eq!(call(&c).await.unwrap(), "{}");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(c.idle_connections(), 1);
    }

    #[tokio::test]
    async fn concurrent_calls_open_connections_and_keep_them() {
        let (addr, accepted) = partner(false).await;
        let c = client(addr, Duration::from_secs(60));
        let calls: Vec<_> = (0..8).map(|_| call(&c)).collect();
        for r in futures_util::future::join_all(calls).await {
            assert_eq!(r.unwrap(), "{}");
        }
        let opened = accepted.load(Ordering::SeqCst);
        assert!((1..=8).contains(&opened), "{opened}");
        assert_eq!(c.idle_connections(), opened);
        for _ in 0..8 {
            call(&c).await.unwrap();
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            opened,
            "reused, not reopened"
        );
    }

    #[tokio::test]
    async fn a_connection_the_partner_closed_is_replaced_without_failing_the_call() {
        let (addr, accepted) = partner(true).await;
        let c = client(addr, Duration::from_secs(60));
        for i in 1..=3 {
            assert_eq!(call(&c).await.unwrap(), "{}");
            assert_eq!(c.idle_connections(), 1, "kept: nothing said it would close");
            // Past the partner's idle close.
            tokio::time::sleep(Duration::from_millis(80)).await;
            assert_eq!(accepted.load(Ordering::SeqCst), i);
        }
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_idle_timeout() {
        let (addr, accepted) = partner(false).await;
        let c = client(addr, Duration::from_millis(200));
        call(&c).await.unwrap();
        assert_eq!(c.idle_connections(), 1);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(c.idle_connections(), 0);
        call(&c).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_partner_that_is_not_there_is_a_connect_failure() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let c = client(addr, Duration::from_secs(60));
        assert!(matches!(call(&c).await, Err(UpstreamFailure::Connect(_))));
    }
}
