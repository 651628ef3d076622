//! offergate's per-call layers, one concern per file. Each concern is a
//! [`ProxyService`] around the next one (`X<S>`, with the concern's settings
//! and state shared behind one `Arc`) and a tower [`Layer`](tower::Layer)
//! that makes it (`XLayer`), as tower's own middleware pairs them
//! (`Timeout` / `TimeoutLayer`). `app/stack.rs` composes them with tower's
//! `ServiceBuilder`.
//!
//! The one vocabulary of a call below the edge is [`ProxyService`];
//! [`FromTower`] lets any tower service stand below it (the stack tier's and
//! the benchmarks' in-memory partners), [`IntoTower`] lets tower middleware
//! wrap it.

// Layers return `async move` blocks on purpose (see `ProxyService`).
#![allow(clippy::manual_async_fn)]

pub mod circuit;
pub mod deadline;
pub mod fallback;
pub mod idempotency;
pub mod pause;
pub mod rate_limit;
pub mod retry;
pub mod thread_cap;

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use tower::{Service, ServiceExt};

use crate::call::error::GatewayError;
use crate::call::request::{ProxyRequest, ProxyResponse};

pub use crate::call::service::ProxyService;

/// A tower service as a [`ProxyService`]: calls a clone of it, as tower's
/// `oneshot` does, so its `poll_ready` is honoured.
#[derive(Clone)]
pub struct FromTower<S>(pub S);

impl<S> ProxyService for FromTower<S>
where
    S: Service<ProxyRequest, Response = ProxyResponse, Error = GatewayError, Future: Send>
        + Clone
        + Send
        + Sync
        + 'static,
{
    fn call(
        &self,
        req: ProxyRequest,
    ) -> impl Future<Output = Result<ProxyResponse, GatewayError>> + Send + '_ {
        self.0.clone().oneshot(req)
    }
}

/// A [`ProxyService`] as a tower service, for tower middleware around (part
/// of) the stack. Its future is boxed (tower's must be a named type): one
/// allocation per call where it is used; the gateway's own path does not.
pub struct IntoTower<S>(pub Arc<S>);

impl<S> Clone for IntoTower<S> {
    fn clone(&self) -> Self {
        IntoTower(self.0.clone())
    }
}

impl<S: ProxyService> Service<ProxyRequest> for IntoTower<S> {
    type Response = ProxyResponse;
    type Error = GatewayError;
    type Future = BoxFuture<'static, Result<ProxyResponse, GatewayError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: ProxyRequest) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.call(req).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::error::CallError;
    use crate::call::request::ProxyResponse;
    use std::time::Duration;

    /// tower middleware (its `Timeout`) wraps a part of the stack through
    /// [`IntoTower`], and the result stands in the stack again through
    /// [`FromTower`].
    #[tokio::test(start_paused = true)]
    async fn tower_middleware_wraps_a_proxy_service_both_ways() {
        #[derive(Clone)]
        struct Slow;
        impl ProxyService for Slow {
            fn call(
                &self,
                _: ProxyRequest,
            ) -> impl Future<Output = Result<ProxyResponse, GatewayError>> + Send + '_ {
                async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok(ProxyResponse::json(http::StatusCode::OK, "{}".into()))
                }
            }
        }
        let timed = tower::ServiceBuilder::new()
            .map_err(|_: tower::BoxError| GatewayError::Call(CallError::DeadlineExceeded))
            .timeout(Duration::from_secs(1))
            .service(IntoTower(Arc::new(Slow)));
        let back = FromTower(timed);
        let req = ProxyRequest {
            ahead: Default::default(),
            target: crate::call::route::Target::Encore,
            body: bytes::Bytes::from_static(b"{}"),
            deadline: None,
            call: Arc::new(crate::call::request::CallInfo::new(
                http::HeaderValue::from_static("id"),
                http::HeaderMap::new(),
            )),
        };
        let result = back.call(req).await;
        assert!(matches!(
            result,
            Err(GatewayError::Call(CallError::DeadlineExceeded))
        ));
    }
}
