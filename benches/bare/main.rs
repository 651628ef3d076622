//! `bare`: the reference ceiling of the load benchmark. The least a hyper 1 +
//! tokio HTTP/1.1 proxy can do for the Encore route: read the request, send it
//! on an idle keep-alive connection to the partner (a stack of them, like
//! offergate's pool) with the key injected, and relay the answer. No
//! validation, no limits, no idempotency, no metrics, no timers.
//!
//!     bare LISTEN PARTNER KEY [WORKER_THREADS]
//!     bare 127.0.0.1:18851 127.0.0.1:18801 pk_test_bench_key 1
//!
//! Built and started by `benches/load/run.sh`; not part of offergate.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// The same allocator as offergate, so the comparison is of the code.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Partner {
    addr: SocketAddr,
    host: HeaderValue,
    key: HeaderValue,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl Partner {
    async fn connection(&self) -> Option<SendRequest<Full<Bytes>>> {
        let idle = self.idle.lock().ok()?.pop();
        if let Some(mut sender) = idle {
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
        let stream = TcpStream::connect(self.addr).await.ok()?;
        stream.set_nodelay(true).ok()?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(conn);
        Some(sender)
    }

    async fn forward(&self, req: Request<Incoming>) -> Option<Response<Full<Bytes>>> {
        let (parts, body) = req.into_parts();
        let body = body.collect().await.ok()?.to_bytes();
        let mut out = Request::post(parts.uri.path()).body(Full::new(body)).ok()?;
        let h = out.headers_mut();
        h.insert(header::HOST, self.host.clone());
        if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
            h.insert(header::CONTENT_TYPE, ct.clone());
        }
        h.insert("x-api-key", self.key.clone());
        let mut sender = self.connection().await?;
        let (parts, body) = sender.send_request(out).await.ok()?.into_parts();
        let body = body.collect().await.ok()?.to_bytes();
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(sender);
        }
        Some(Response::from_parts(parts, Full::new(body)))
    }
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, partner, key, rest @ ..] = args.as_slice() else {
        return Err("usage: bare LISTEN PARTNER KEY [WORKER_THREADS]".into());
    };
    let threads = match rest.first() {
        Some(n) => n.parse().map_err(|e| format!("worker threads: {e}"))?,
        None => 1,
    };
    let listen: SocketAddr = listen.parse().map_err(|e| format!("listen: {e}"))?;
    let partner = Arc::new(Partner {
        addr: partner.parse().map_err(|e| format!("partner: {e}"))?,
        host: HeaderValue::from_str(partner).map_err(|e| e.to_string())?,
        key: HeaderValue::from_str(key).map_err(|e| e.to_string())?,
        idle: Mutex::new(Vec::new()),
    });
    // The runtime offergate picks for the same thread count (cli::runtime).
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    let runtime = builder.enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await.map_err(|e| e.to_string())?;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let partner = partner.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let partner = partner.clone();
                    async move {
                        let answer = partner.forward(req).await.unwrap_or_else(|| {
                            let mut bad = Response::new(Full::new(Bytes::new()));
                            *bad.status_mut() = StatusCode::BAD_GATEWAY;
                            bad
                        });
                        Ok::<_, Infallible>(answer)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
