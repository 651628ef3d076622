//! offergate's own failures, and the one place that turns them into an HTTP answer.
//!
//! Each variant knows its status, its stable `code` (snake_case, in the JSON body)
//! and the outcome it counts as. Messages say what to fix and never carry a
//! secret: the partner's key and tokens are not reachable from here.

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};

use crate::call::request::ProxyResponse;

/// Which limit refused a call: the `scope` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    /// The quota offergate may spend on the partner.
    Partner,
    /// One caller's share (`clientId` / `partner_id`).
    Client,
    /// The partner asked for a pause (429 with `Retry-After`).
    Upstream,
}

impl LimitScope {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitScope::Partner => "partner",
            LimitScope::Client => "client",
            LimitScope::Upstream => "upstream",
        }
    }
}

/// Why a call to a partner did not produce a usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// Could not connect (refused, DNS, TLS handshake, connect timeout): the
    /// request never left.
    Connect(String),
    /// The per-try timeout passed with no complete answer.
    Timeout,
    /// The connection broke after the request was (or may have been) sent.
    Reset(String),
    /// A 200 whose body is not the documented JSON, or over the size limit.
    InvalidBody(String),
}

/// Everything offergate answers on its own instead of relaying the partner.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error("no such route; offergate serves POST /encore/publisher/sdk/v1/offers/message and POST /data/messages/{{partner_id}}/upcoming-goals")]
    NotFound,
    #[error("only POST is served on this route")]
    MethodNotAllowed,
    #[error("absolute-form request targets are refused: offergate is not a forward proxy; send an origin-form path")]
    InvalidTarget,
    #[error("{0}")]
    InvalidHost(String),
    #[error("partner_id `{0}` is not configured in [[besitos.partners]]")]
    UnknownPartner(String),
    #[error("missing or wrong x-offergate-token")]
    Unauthorized,
    #[error("{field}: {message}")]
    InvalidRequest { field: String, message: String },
    #[error("request body is larger than the {limit}-byte limit")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request body did not arrive within the read timeout")]
    BodyTimeout,
    #[error("{}", upstream_message(.0))]
    Upstream(UpstreamFailure),
    #[error("the partner is failing; offergate stopped calling it for now (circuit open)")]
    CircuitOpen { retry_after: std::time::Duration },
    #[error("offergate's {} rate limit for this route is spent; retry after the Retry-After seconds", .scope.as_str())]
    RateLimited {
        scope: LimitScope,
        retry_after: std::time::Duration,
    },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("this Idempotency-Key was already used for a different request; use a new key for a new request")]
    IdempotencyKeyReused,
    #[error("the call's deadline passed before the partner answered")]
    DeadlineExceeded,
    /// Retries were refused by the retry budget; carries the last try's result.
    #[error("the partner is failing and the retry budget is spent")]
    RetryBudgetExhausted(Box<Result<ProxyResponse, GatewayError>>),
}

fn upstream_message(f: &UpstreamFailure) -> String {
    match f {
        UpstreamFailure::Connect(e) => format!("the partner could not be reached: {e}"),
        UpstreamFailure::Timeout => "the partner did not answer in time".into(),
        UpstreamFailure::Reset(e) => format!("the connection to the partner broke: {e}"),
        UpstreamFailure::InvalidBody(e) => {
            format!("the partner answered a body that is not its documented JSON: {e}")
        }
    }
}

impl GatewayError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        GatewayError::InvalidRequest {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        use GatewayError::*;
        match self {
            NotFound | UnknownPartner(_) => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            InvalidTarget | InvalidHost(_) | InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Unauthorized => StatusCode::UNAUTHORIZED,
            PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Upstream(UpstreamFailure::Timeout) | DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Upstream(_) | RetryBudgetExhausted(_) => StatusCode::BAD_GATEWAY,
            CircuitOpen { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable machine-readable code in the error body.
    pub fn code(&self) -> &'static str {
        use GatewayError::*;
        match self {
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            InvalidTarget => "invalid_request_target",
            InvalidHost(_) => "invalid_host",
            UnknownPartner(_) => "unknown_partner",
            Unauthorized => "unauthorized",
            InvalidRequest { .. } => "invalid_request",
            PayloadTooLarge { .. } => "payload_too_large",
            UnsupportedMediaType(_) => "unsupported_media_type",
            IdempotencyKeyReused => "idempotency_key_reused",
            RateLimited { .. } => "rate_limited",
            Internal(_) => "internal_error",
            BodyTimeout => "request_timeout",
            Upstream(UpstreamFailure::Connect(_)) | Upstream(UpstreamFailure::Reset(_)) => {
                "upstream_unreachable"
            }
            Upstream(UpstreamFailure::Timeout) => "upstream_timeout",
            Upstream(UpstreamFailure::InvalidBody(_)) => "invalid_upstream_body",
            CircuitOpen { .. } => "circuit_open",
            DeadlineExceeded => "deadline_exceeded",
            RetryBudgetExhausted(_) => "retry_budget_exhausted",
        }
    }

    /// The `outcome` label of `offergate_requests_total`.
    pub fn outcome(&self) -> crate::call::request::Outcome {
        use GatewayError::*;
        match self {
            Upstream(_)
            | CircuitOpen { .. }
            | DeadlineExceeded
            | RetryBudgetExhausted(_)
            | Internal(_) => crate::call::request::Outcome::Failed,
            _ => crate::call::request::Outcome::Rejected,
        }
    }

    /// The single rendering of an offergate error.
    pub fn into_response(self) -> ProxyResponse {
        let body = serde_json::json!({
            "success": false,
            "error": { "code": self.code(), "message": self.to_string() },
        });
        let mut resp = ProxyResponse::json(self.status(), Bytes::from(body.to_string()));
        match &self {
            GatewayError::MethodNotAllowed => {
                resp.headers
                    .insert(header::ALLOW, HeaderValue::from_static("POST"));
            }
            GatewayError::CircuitOpen { retry_after }
            | GatewayError::RateLimited { retry_after, .. } => {
                resp.headers
                    .insert(header::RETRY_AFTER, retry_after_secs(*retry_after));
            }
            _ => {}
        }
        resp.outcome = self.outcome();
        resp
    }
}

/// `Retry-After` in whole seconds, at least 1 (0 would invite a retry storm).
pub fn retry_after_secs(d: std::time::Duration) -> HeaderValue {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    HeaderValue::from(secs.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_contract_shape() {
        let r = GatewayError::invalid("attributes.platform", "must be one of android, ios, web")
            .into_response();
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["success"], false);
        assert_eq!(v["error"]["code"], "invalid_request");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("attributes.platform: "));
        let r = GatewayError::MethodNotAllowed.into_response();
        assert_eq!(r.headers.get(header::ALLOW).unwrap(), "POST");
        let wait = std::time::Duration::from_millis(1_200);
        let r = GatewayError::CircuitOpen { retry_after: wait }.into_response();
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            r.headers.get(header::RETRY_AFTER).unwrap(),
            "2",
            "rounded up"
        );
        assert_eq!(retry_after_secs(std::time::Duration::ZERO), "1", "never 0");
    }
}
