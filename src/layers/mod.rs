//! offergate's own tower layers, one concern per file. Each concern implements
//! [`Wrap`] (its logic around the next service); [`Around`] and [`AroundLayer`]
//! supply the plumbing once for all of them. `app/stack.rs` composes them.

// Layers return `async move` blocks on purpose (see `Wrap`).
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

use tower::{Layer, Service, ServiceExt};

use crate::call::error::GatewayError;
use crate::call::request::{ProxyRequest, ProxyResponse};

pub use crate::call::service::Inner;

/// One concern's logic around the next service.
///
/// Implementations are plain functions returning an `async move` block, not
/// `async fn`s: an `async fn` keeps its arguments twice in its state
/// (rust-lang/rust#62958), and every layer of every call holds the request
/// (with a 216-byte request, the stack's future was 5.4 KB with `async fn`
/// and 3.6 KB without).
pub trait Wrap: Send + Sync + 'static {
    fn call<'a, S: Inner>(
        &'a self,
        inner: &'a S,
        req: ProxyRequest,
    ) -> impl Future<Output = Result<ProxyResponse, GatewayError>> + Send + 'a;
}

/// A [`Wrap`] around an inner service. Shared behind one `Arc`, so a clone
/// (the idempotency leader's task takes one) costs one count.
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

impl<W: Wrap, S: Inner> Inner for Around<W, S> {
    fn call(
        &self,
        req: ProxyRequest,
    ) -> impl Future<Output = Result<ProxyResponse, GatewayError>> + Send + '_ {
        self.0.wrap.call(&self.0.inner, req)
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

/// Any tower service as the innermost [`Inner`]: the stack tier's and the
/// benchmarks' in-memory partners.
#[derive(Clone)]
pub struct FromService<S>(pub S);

impl<S> Inner for FromService<S>
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
