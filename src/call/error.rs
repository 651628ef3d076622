//! offergate's failures as plain data, after pingora's error type: a
//! [`Refusal`] is the caller's to fix, a [`CallError`] is a call that failed.
//! What each one means (its code, status, whether it is retried, what it
//! tells the circuit, its fallback reason) is one table, `call::meaning`.
//! Messages say what to fix and never carry a secret: the partner's key and
//! tokens are not reachable from here.

use std::sync::Arc;
use std::time::Duration;

use super::request::ProxyResponse;

/// Where a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The caller's request is wrong or not allowed: fixing it is the caller's job.
    Caller,
    /// The partner failed, is failing, or was too slow.
    Partner,
    /// offergate itself: its own limits, or a bug.
    Offergate,
}

/// Whether a failed try may be repeated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryType {
    /// The request provably did not take effect (429, 503, never sent).
    Safe,
    /// It may have reached the partner (timeout, reset after sending): only
    /// where the route allows it (`retry_ambiguous`).
    Ambiguous,
    /// Repeating it cannot help.
    Never,
}

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

/// What caused a failure: the error itself, kept with its chain of sources,
/// and shown as the whole chain, `outer: inner: root`.
#[derive(Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Cause {
        Cause(Arc::new(error))
    }

    /// A boxed error, as hyper-util's connector and body limits give them.
    pub fn boxed(error: Box<dyn std::error::Error + Send + Sync>) -> Cause {
        Cause(Arc::from(error))
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(inner) = next {
            write!(f, ": {inner}")?;
            next = inner.source();
        }
        Ok(())
    }
}

impl std::fmt::Debug for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

/// Two causes are the same when they read the same (errors are not `Eq`).
impl PartialEq for Cause {
    fn eq(&self, other: &Cause) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Cause {}

/// A cause that is only words (a URL offergate could not build).
impl From<&str> for Cause {
    fn from(message: &str) -> Cause {
        Cause::new(crate::call::problem::Problem::from(message))
    }
}

impl From<String> for Cause {
    fn from(message: String) -> Cause {
        Cause::new(crate::call::problem::Problem::from(message))
    }
}

/// Why a call to a partner did not produce a usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// Could not connect (refused, DNS, TLS handshake, connect timeout): the
    /// request never left.
    Connect(Cause),
    /// The per-try timeout passed with no complete answer.
    Timeout,
    /// The connection broke after the request was (or may have been) sent.
    Reset(Cause),
    /// A 200 whose body is not the documented JSON, or over the size limit.
    InvalidBody(crate::call::problem::Problem),
}

/// Everything that keeps a call from ending with the partner's 200 or 400,
/// split by whom it concerns: a [`Refusal`] is the caller's to fix; a
/// [`CallError`] is a call that failed, at the partner or in offergate.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Call(#[from] CallError),
}

/// A request refused before anything reached a partner, because of what the
/// caller sent.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    #[error("no such route; this listener serves {serves}")]
    NotFound { serves: &'static str },
    #[error("this route answers {allow} only")]
    MethodNotAllowed { allow: &'static str },
    #[error("absolute-form request targets are refused: offergate is not a forward proxy; send an origin-form path")]
    InvalidTarget,
    #[error("{0}")]
    InvalidHost(String),
    #[error("partner_id `{0}` is not configured in [[besitos.partners]]")]
    UnknownPartner(String),
    #[error("this thread has no offer with that clickUrl (never shown, already freed, or out of the window)")]
    UnknownOffer,
    #[error("missing or wrong x-offergate-token")]
    Unauthorized,
    /// A change on the admin listener from another host, with no or the wrong token.
    #[error("missing or wrong admin token: send Authorization: Bearer <the token in server.admin_token_env or server.admin_token_file>")]
    AdminTokenNeeded,
    /// A change on the admin listener from another host, where no token is set.
    #[error("the console and changes are served to loopback only, to a request that names a loopback host in Host (localhost, 127.0.0.1, [::1]); set server.admin_token_env or server.admin_token_file to allow other hosts with Authorization: Bearer <token> (/metrics, /healthz and /readyz are open)")]
    AdminLoopbackOnly,
    #[error("{field}: {message}")]
    InvalidRequest { field: String, message: String },
    #[error("more than {limit} request headers (server.max_headers); send fewer")]
    TooManyHeaders { limit: usize },
    #[error("request body is larger than the {limit}-byte limit")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request body did not arrive within the read timeout")]
    BodyTimeout,
    #[error("this Idempotency-Key was already used for a different request; use a new key for a new request")]
    IdempotencyKeyReused,
}

/// A call that did not end with the partner's answer, with its cause where
/// one exists.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    // The partner's.
    #[error("{}", upstream_message(.0))]
    Upstream(UpstreamFailure),
    /// The partner answered, with a status that is neither its 200 nor its
    /// 400: its answer, for a caller that asked for statuses to pass through.
    #[error("the partner answered {}", .0.status)]
    PartnerStatus(Box<ProxyResponse>),
    #[error("the partner is failing; offergate stopped calling it for now (circuit open)")]
    CircuitOpen { retry_after: Duration },
    /// The partner asked for a pause (429 with `Retry-After`), which every
    /// replica keeps: answered as an open circuit is.
    #[error(
        "the partner asked offergate to pause; offergate stopped calling it for now (circuit open)"
    )]
    Paused { retry_after: Duration },
    #[error("the call's deadline passed before the partner answered")]
    DeadlineExceeded,
    /// A retry was refused by the retry budget; `last` is the try's failure.
    #[error("the partner is failing and the retry budget is spent ({last})")]
    RetryBudgetExhausted { last: Box<GatewayError> },

    // offergate's own.
    #[error("offergate's {} rate limit for this route is spent; retry after the Retry-After seconds", .scope.as_str())]
    RateLimited {
        scope: LimitScope,
        retry_after: Duration,
    },
    #[error(
        "offergate is at its limit (server.max_in_flight calls in flight, or server.body_budget_bytes of bodies being read); retry after the Retry-After seconds"
    )]
    Overloaded,
    #[error("the shared state backend cannot be reached and state.on_error is fail_closed")]
    StateUnavailable,
    #[error("internal error: {0}")]
    Internal(String),
    #[error("internal error: offergate failed while handling this request")]
    Panic,
}

/// The codes a failure shares with the fallback reason it becomes
/// (`meaning::Reason`): written once, here.
pub mod code {
    pub const UPSTREAM_UNREACHABLE: &str = "upstream_unreachable";
    pub const UPSTREAM_TIMEOUT: &str = "upstream_timeout";
    pub const INVALID_UPSTREAM_BODY: &str = "invalid_upstream_body";
    pub const CIRCUIT_OPEN: &str = "circuit_open";
    pub const DEADLINE_EXCEEDED: &str = "deadline_exceeded";
    pub const RETRY_BUDGET_EXHAUSTED: &str = "retry_budget_exhausted";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const STATE_UNAVAILABLE: &str = "state_unavailable";
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
    /// The caller's request is wrong at `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        GatewayError::Refused(Refusal::InvalidRequest {
            field: field.into(),
            message: message.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_reads_as_its_whole_chain() {
        let io = std::io::Error::other(crate::call::problem::Problem::from("root"));
        assert_eq!(Cause::new(io).to_string(), "root");
        let cause = Cause::from("outer");
        assert_eq!(cause, Cause::from("outer".to_string()));
    }
}
