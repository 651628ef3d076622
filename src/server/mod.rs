//! Accepting connections and running HTTP/1.1 on them: one loop shared by the
//! proxy, admin and simulator listeners.
//!
//! Keep-alive is on, `TCP_NODELAY` is set (small JSON answers must not wait on
//! Nagle), a header read timeout bounds slow-loris clients and idle keep-alive
//! connections (hyper runs it while waiting for the next request too), the
//! header block is capped (431), TLS is optional. Open connections are capped
//! (`conns.rs`: the longest-idle one makes room). Accept errors (out of file
//! descriptors) back off exponentially instead of spinning. Shutdown takes
//! up the callers already waiting in the listen backlog, stops accepting,
//! asks every connection to close once its request is answered, and waits
//! for them for a grace period.

mod conns;

use std::sync::Arc;

use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use conns::Admit;
pub use conns::Conns;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Per-listener settings.
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    pub header_read_timeout: Duration,
    /// The request line and headers together; past it hyper answers 431.
    pub max_header_bytes: usize,
    /// How long open connections may finish after shutdown begins.
    pub grace: Duration,
    /// Open connections at most (see `conns.rs`).
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_read_timeout: Duration::from_secs(5),
            max_header_bytes: 16 * 1024,
            grace: Duration::from_secs(5),
            max_connections: 10_000,
        }
    }
}

/// A shutdown signal: `true` once shutdown has begun.
pub type ShutdownRx = watch::Receiver<bool>;

/// Resolves when shutdown begins (or its sender is gone).
pub async fn shutdown_requested(mut rx: ShutdownRx) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Serves `service` on `listener` until `shutdown`, then drains; `conns`
/// holds its open connections (a gauge may read how many). `service` makes
/// each connection's service from its peer's address.
pub async fn serve<M, S, B>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    service: M,
    opts: ServeOptions,
    conns: Arc<Conns>,
    shutdown: ShutdownRx,
) where
    M: Fn(std::net::SocketAddr) -> S,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + Unpin + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let stop = shutdown_requested(shutdown.clone());
    tokio::pin!(stop);
    let mut accept_errors = AcceptErrors::default();
    // Runs HTTP/1.1 on an admitted connection, in a task of its own; with
    // `keep_alive` off it answers one request and closes.
    let start = |stream: tokio::net::TcpStream,
                 peer: std::net::SocketAddr,
                 id: u64,
                 conn: Arc<conns::Conn>,
                 keep_alive: bool| {
        let _ = stream.set_nodelay(true);
        let service = TrackedService {
            inner: service(peer),
            conns: conns.clone(),
            conn: conn.clone(),
        };
        let tls = tls.clone();
        let conns = conns.clone();
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(opts.header_read_timeout)
                .max_header_size(opts.max_header_bytes)
                .keep_alive(keep_alive);
            let result = match tls {
                None => run_conn(&http, TokioIo::new(stream), service, &conn).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(opts.header_read_timeout, acceptor.accept(stream))
                            .await;
                    match handshake {
                        Ok(Ok(tls_stream)) => {
                            run_conn(&http, TokioIo::new(tls_stream), service, &conn).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => Ok(()),
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            conns.remove(id);
        });
    };
    // A caller accepted but not yet admitted when shutdown began.
    let mut accepted = None;
    'serving: loop {
        // At the cap with every connection busy, nothing is accepted until
        // one goes or turns idle: callers wait in the listen backlog rather
        // than being accepted to be closed with no answer.
        // (A room notice sent while no one waits is kept for the next
        // wait: none is lost between the look and the wait.)
        while !conns.has_room(opts.max_connections) {
            tokio::select! {
                _ = &mut stop => break 'serving,
                _ = conns.room.notified() => {}
            }
        }
        let (stream, peer) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    accept_errors.reset();
                    a
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    let wait = accept_errors.next(&e);
                    tokio::select! {
                        _ = &mut stop => break,
                        _ = tokio::time::sleep(wait) => continue,
                    }
                }
            },
        };
        // The room seen above may have been taken since (an idle
        // connection got a request): this caller waits for the next.
        let (id, conn) = loop {
            match conns.admit(opts.max_connections) {
                Admit::Serve(id, conn) => break (id, conn),
                Admit::Refuse => tokio::select! {
                    _ = &mut stop => {
                        // Answered with the callers in the backlog, below.
                        accepted = Some((stream, peer));
                        break 'serving;
                    }
                    _ = conns.room.notified() => {}
                },
            }
        };
        start(stream, peer, id, conn, true);
    }
    // Each connection closes once its request in hand is answered.
    conns.close_all();
    // Callers already connected, waiting in the listen backlog, would be
    // reset when the listener closes: each is taken up, its request read
    // and answered, then closed; the listener closes.
    for (stream, peer) in accepted.into_iter().chain(queued(listener)) {
        if let Admit::Serve(id, conn) = conns.admit(usize::MAX) {
            start(stream, peer, id, conn, false);
        }
    }
    let drained = async {
        loop {
            let emptied = conns.emptied.notified();
            tokio::pin!(emptied);
            emptied.as_mut().enable();
            if conns.is_empty() {
                return;
            }
            emptied.await;
        }
    };
    tokio::select! {
        _ = drained => {}
        _ = tokio::time::sleep(opts.grace) => {
            tracing::warn!(open = conns.len(), "grace period over, closing remaining connections");
        }
    }
}

/// The connections waiting in `listener`'s backlog, taken without waiting
/// (at most a backlog's worth), and the listener closed.
fn queued(listener: TcpListener) -> Vec<(tokio::net::TcpStream, std::net::SocketAddr)> {
    let Ok(listener) = listener.into_std() else {
        return Vec::new();
    };
    let mut taken = Vec::new();
    // Non-blocking: an empty backlog ends it (WouldBlock), as does an error.
    while taken.len() < 4096 {
        let Ok((stream, peer)) = listener.accept() else {
            break;
        };
        if stream.set_nonblocking(true).is_ok() {
            if let Ok(stream) = tokio::net::TcpStream::from_std(stream) {
                taken.push((stream, peer));
            }
        }
    }
    taken
}

/// Runs HTTP/1.1 on one connection until it ends; asked to close (the cap
/// made room, or shutdown began), it finishes the request in hand first.
async fn run_conn<I, S, B>(
    http: &hyper::server::conn::http1::Builder,
    io: I,
    service: S,
    conn: &conns::Conn,
) -> Result<(), hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    let connection = http.serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        biased;
        result = connection.as_mut() => return result,
        _ = conn.asked_to_close() => connection.as_mut().graceful_shutdown(),
    }
    connection.await
}

/// The listener's service, marking its connection busy while it answers.
#[derive(Clone)]
struct TrackedService<S> {
    inner: S,
    conns: Arc<Conns>,
    conn: Arc<conns::Conn>,
}

impl<S, R> hyper::service::Service<R> for TrackedService<S>
where
    S: hyper::service::Service<R>,
    S::Future: Unpin,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = conns::Tracked<S::Future>;

    fn call(&self, req: R) -> Self::Future {
        self.conns.track(&self.conn, self.inner.call(req))
    }
}

/// Accept errors: waits growing from 5 ms to 1 s, and one log line a second
/// at most, so a process out of file descriptors neither spins nor floods
/// its log.
#[derive(Default)]
struct AcceptErrors {
    wait: Duration,
    suppressed: u64,
    last_logged: Option<tokio::time::Instant>,
}

impl AcceptErrors {
    fn next(&mut self, e: &std::io::Error) -> Duration {
        self.wait = (self.wait * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
        let now = tokio::time::Instant::now();
        if self
            .last_logged
            .is_none_or(|at| now - at >= Duration::from_secs(1))
        {
            tracing::warn!(error = %e, suppressed = self.suppressed, retry_in_ms = self.wait.as_millis() as u64, "accept failed");
            self.last_logged = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        self.wait
    }

    fn reset(&mut self) {
        self.wait = Duration::ZERO;
    }
}
