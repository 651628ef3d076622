//! offergate's own tower layers, one concern per file. Each concern implements
//! [`Wrap`] (its logic around the next service); [`Around`] and [`AroundLayer`]
//! supply the tower plumbing once for all of them. `stack.rs` composes them.

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
use tower::{Layer, Service};

use crate::call::error::GatewayError;
use crate::call::request::{ProxyRequest, ProxyResponse};

/// The service a layer wraps: the rest of the stack toward the partner.
/// `Sync` because layers share it behind an `Arc` ([`Around`]).
pub trait Inner:
    Service<ProxyRequest, Response = ProxyResponse, Error = GatewayError, Future: Send>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> Inner for S where
    S: Service<ProxyRequest, Response = ProxyResponse, Error = GatewayError, Future: Send>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// One concern's logic around the next service.
pub trait Wrap: Send + Sync + 'static {
    fn call<S: Inner>(
        self: Arc<Self>,
        inner: S,
        req: ProxyRequest,
    ) -> impl Future<Output = Result<ProxyResponse, GatewayError>> + Send;
}

/// A [`Wrap`] around an inner service. Shared behind one `Arc`, so a clone
/// (one per call and layer) costs one count, not one per layer below.
pub struct Around<W, S>(Arc<AroundShared<W, S>>);

struct AroundShared<W, S> {
    wrap: Arc<W>,
    inner: S,
}

impl<W, S> Clone for Around<W, S> {
    fn clone(&self) -> Self {
        Around(self.0.clone())
    }
}

impl<W: Wrap, S: Inner> Service<ProxyRequest> for Around<W, S> {
    type Response = ProxyResponse;
    type Error = GatewayError;
    type Future = BoxFuture<'static, Result<ProxyResponse, GatewayError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        // The wrapped call drives the inner service's readiness itself (oneshot).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: ProxyRequest) -> Self::Future {
        Box::pin(self.0.wrap.clone().call(self.0.inner.clone(), req))
    }
}

/// The tower layer of a [`Wrap`].
pub struct AroundLayer<W>(Arc<W>);

impl<W> AroundLayer<W> {
    pub fn new(wrap: W) -> Self {
        AroundLayer(Arc::new(wrap))
    }
}

impl<W, S> Layer<S> for AroundLayer<W> {
    type Service = Around<W, S>;

    fn layer(&self, inner: S) -> Around<W, S> {
        Around(Arc::new(AroundShared {
            wrap: self.0.clone(),
            inner,
        }))
    }
}
