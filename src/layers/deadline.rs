//! Deadline: one clock for the whole call. It stamps the request with when the
//! call must be over (the retry layer plans against it, each try's timeout is
//! capped by it) and enforces it, so a call never takes longer, whatever the
//! layers inside do.

use std::future::Future;
use std::time::Duration;

use crate::call::clock;

use super::{AroundLayer, Inner, Wrap};
use crate::call::error::GatewayError;
use crate::call::request::{ProxyRequest, ProxyResponse};
use crate::call::route::PerRoute;
use crate::config::Config;

pub struct Deadline {
    per_route: PerRoute<Duration>,
}

impl Deadline {
    pub fn layer(config: &Config) -> AroundLayer<Deadline> {
        AroundLayer::new(Deadline {
            per_route: PerRoute::new(|r| config.resilience(r).deadline),
        })
    }
}

impl Wrap for Deadline {
    fn call<'a, S: Inner>(
        &'a self,
        inner: &'a S,
        mut req: ProxyRequest,
    ) -> impl Future<Output = Result<ProxyResponse, GatewayError>> + Send + 'a {
        async move {
            let deadline = clock::now() + *self.per_route.get(req.route());
            req.deadline = Some(deadline);
            match tokio::time::timeout_at(deadline, inner.call(req)).await {
                Ok(result) => result,
                Err(_) => Err(GatewayError::DeadlineExceeded),
            }
        }
    }
}
