//! The only place offergate's request path is put together. Read top to bottom
//! in the order a request meets each piece:
//!
//! ```text
//! caller ─▶ Edge            request id, access log, metrics, errors → answers
//!           └ Admission     target, Host, token, partner, content type, body, JSON rules
//!             └ (layers)    idempotency, rate limits, fallback, circuit, retry: later issues,
//!                           each a tower layer added below in its place
//!               └ Upstream  credential injection, one pooled call, 200-body check,
//!                           Besitos page-URL rewrite ─▶ partner
//! ```

use std::sync::Arc;

use tower::util::BoxCloneService;
use tower::ServiceBuilder;

use crate::admission::Admission;
use crate::config::{BaseUrl, Config};
use crate::edge::Edge;
use crate::error::GatewayError;
use crate::metrics::Metrics;
use crate::proxy::{ProxyRequest, ProxyResponse};
use crate::upstream::Upstream;

/// Everything between admission and the partner, as one cloneable service.
pub type ProxyService = BoxCloneService<ProxyRequest, ProxyResponse, GatewayError>;

/// Builds the caller-facing service for `config`.
///
/// `public_base_url` is where callers reach this gateway (Besitos page URLs are
/// rewritten to it); `metrics` is the registry every layer records into.
pub fn build(
    config: &Config,
    public_base_url: BaseUrl,
    metrics: Arc<Metrics>,
) -> Result<Edge, String> {
    let upstream = Upstream::new(config, public_base_url, metrics.clone())?;
    let proxy = ServiceBuilder::new()
        // Type-erased so the edge does not change as layers are added above.
        .layer(BoxCloneService::layer())
        .service(upstream);
    Ok(Edge::new(
        Admission::new(config),
        proxy,
        metrics,
        config.log.access_log,
    ))
}
