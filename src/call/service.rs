//! The one shape of every service on the request path below the edge: the
//! layers (`layers/`) and the partner call (`upstream/`) both implement it.

use std::future::Future;

use crate::call::error::GatewayError;
use crate::call::request::{ProxyRequest, ProxyResponse};

/// The rest of the stack toward the partner, as a layer sees it: one call,
/// one future. Not tower's `Service`, whose future must be a named type, so
/// a stack of `async fn` layers boxes one future per layer per call (7
/// allocations and the moves of each state into its box: `benches/README.md`).
/// Here the whole stack's call is one future, boxed once by the edge.
/// tower's `Layer` and `ServiceBuilder` still compose it (`app/stack.rs`).
pub trait Inner: Clone + Send + Sync + 'static {
    fn call(
        &self,
        req: ProxyRequest,
    ) -> impl Future<Output = Result<ProxyResponse, GatewayError>> + Send + '_;
}
