//! offergate's own routes on the proxy listener, answered without a partner
//! call. `POST /offergate/v1/encore/eligibility`: the Encore doc's "when to
//! call us" (`integrator/eligibility.rs`).

use bytes::Bytes;
use http::Request;
use hyper::body::Body;

use super::{respond, Edge};
use crate::call::error::{CallError, GatewayError};
use crate::call::request::ProxyResponse;
use crate::call::service::ProxyService;
use crate::call::thread::thread_id;
use crate::conversation::Threads;
use crate::integrator::eligibility;

impl<S: ProxyService> Edge<S> {
    /// The eligibility handler: offergate's own admission, then the rules.
    pub(super) async fn eligibility<B>(&self, req: Request<B>) -> ProxyResponse
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limit = Some(self.shared.eligibility_body_limit);
        let body = match self.shared.admission.admit_own(req, limit).await {
            Ok(body) => body,
            Err(e) => {
                self.shared.metrics.eligibility("invalid");
                return respond::answer(e);
            }
        };
        match eligibility::read(&body, &self.shared.rules) {
            Ok(asked) => {
                // What offergate itself recorded of the thread counts too.
                let thread = thread_id(&asked.client_id, &asked.chat_id);
                let known = match self.shared.threads.known(thread).await {
                    Ok(known) => known,
                    Err(_) => {
                        return respond::answer(GatewayError::Call(CallError::StateUnavailable))
                    }
                };
                let now = self.shared.threads.now_ms();
                let decision = eligibility::decide(&asked, &self.shared.rules, now, &known);
                self.shared.metrics.eligibility(decision.result());
                let body = serde_json::to_vec(&decision).unwrap_or_default();
                let mut resp = ProxyResponse::json(http::StatusCode::OK, Bytes::from(body));
                resp.outcome = crate::call::request::Outcome::Answered;
                resp
            }
            Err(e) => {
                self.shared.metrics.eligibility("invalid");
                respond::answer(e)
            }
        }
    }
}
