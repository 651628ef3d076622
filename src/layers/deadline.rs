//! Deadline: one clock for the whole call. It stamps the request with when the
//! call must be over (the retry layer plans against it, each try's timeout is
//! capped by it) and enforces it, so a call never takes longer, whatever the
//! layers inside do.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use super::ProxyService;
use crate::call::clock;
use crate::call::error::{CallError, GatewayError};
use crate::call::request::{ProxyRequest, ProxyResponse};
use crate::call::route::PerRoute;
use crate::config::Config;

/// Each route's deadline (`deadline_ms`).
type Deadlines = Arc<PerRoute<Duration>>;

pub struct Deadline<S> {
    deadlines: Deadlines,
    next: S,
}

pub struct DeadlineLayer(Deadlines);

impl DeadlineLayer {
    pub fn new(config: &Config) -> DeadlineLayer {
        DeadlineLayer(Arc::new(PerRoute::new(|r| config.resilience(r).deadline)))
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, next: S) -> Deadline<S> {
        Deadline {
            deadlines: self.0.clone(),
            next,
        }
    }
}

impl<S: ProxyService> ProxyService for Deadline<S> {
    fn call(
        &self,
        mut req: ProxyRequest,
    ) -> impl Future<Output = Result<ProxyResponse, GatewayError>> + Send + '_ {
        async move {
            let deadline = clock::now() + *self.deadlines.get(req.route());
            req.deadline = Some(deadline);
            match tokio::time::timeout_at(deadline, self.next.call(req)).await {
                Ok(result) => result,
                Err(_) => Err(GatewayError::Call(CallError::DeadlineExceeded)),
            }
        }
    }
}
