//! The one shape of every service on the request path below the edge: the
//! layers (`layers/`) and the partner call (`upstream/`) both implement it.

use std::future::Future;

use crate::call::error::GatewayError;
use crate::call::request::{ProxyRequest, ProxyResponse};

/// One call toward the partner, as a layer sees the rest of the stack: one
/// request, one future that borrows the service. Not tower's `Service`, whose
/// future must be a named type: a stack of `async` layers would box one
/// future per layer per call (7 allocations, and each state moved into its
/// box; `benches/README.md`). Here the stack's layers nest into one future,
/// boxed where hyper needs a named one (the edge). `layers::FromTower` and
/// `layers::IntoTower` join it to tower middleware in either direction.
///
/// Implementations return an `async move` block rather than being `async
/// fn`s: an `async fn` keeps its arguments twice in its state
/// (rust-lang/rust#62958), and every layer of every call holds the request.
pub trait ProxyService: Send + Sync + 'static {
    fn call(
        &self,
        req: ProxyRequest,
    ) -> impl Future<Output = Result<ProxyResponse, GatewayError>> + Send + '_;
}
