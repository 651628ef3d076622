//! What every result of a call means, in one table the compiler checks:
//! [`GatewayError::meaning`]. For each refusal and each call error it gives the
//! code, the status it is answered with, how it counts, whether the try may be
//! repeated, what it says of the partner's health, whether its answer may be
//! stored for replay, and the fallback reason it gives. The retry, circuit,
//! fallback and idempotency layers and the edge read these columns; none
//! decides them again.
//!
//! For a partner's answers, the table reads:
//!
//! | partner answers                               | retried              | partner's health | caller gets   |
//! |-----------------------------------------------|----------------------|------------------|---------------|
//! | 200 (documented JSON), 400                    | no                   | healthy          | the answer    |
//! | 402, 404-428, 430-499 (one caller's concern)  | no                   | healthy          | soft fallback |
//! | 401, 403                                      | no                   | failing          | soft fallback |
//! | 429, 503                                      | yes                  | failing          | soft fallback |
//! | 500, 502, 504, other 5xx                      | no                   | failing          | soft fallback |
//! | any other status (204, 3xx, ...)              | no                   | failing          | soft fallback |
//! | connect error, refused (never sent)           | yes                  | failing          | soft fallback |
//! | per-try timeout, reset after sending          | if `retry_ambiguous` | failing          | soft fallback |
//! | 200 whose body is not the documented JSON     | no                   | failing          | soft fallback |

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use http::{header, HeaderMap, StatusCode};

use super::error::{
    code, CallError, ErrorSource, GatewayError, Refusal, RetryType, UpstreamFailure,
};
use super::request::{Outcome, ProxyResponse};

/// One row of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meaning {
    /// The error body's `code`, and the metric label.
    pub code: &'static str,
    /// Whom the failure concerns.
    pub source: ErrorSource,
    /// The status it is answered with when it is answered as an error.
    pub status: StatusCode,
    /// How it counts in `offergate_requests_total` when answered as an error.
    pub outcome: Outcome,
    /// Whether the try that failed so may be repeated.
    pub retry: RetryType,
    /// What it tells the circuit about the partner.
    pub health: Health,
    /// Whether the answer may be stored and replayed under its
    /// Idempotency-Key (only the partner's own 200 and 400 are).
    pub storable: bool,
    /// The soft fallback's reason, where the route's fallback may answer in
    /// its place; `None`: answered as it is.
    pub fallback: Option<Reason>,
}

/// What a try's end says about the partner, for the circuit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// The partner is unwell or unusable for everyone: counts toward opening.
    Failing,
    /// The partner answered as a working partner does.
    Healthy,
    /// Nothing: the try never reached a verdict on the partner (offergate's
    /// own limit, deadline or failure, or the caller's mistake).
    Unknown,
}

/// Why a call did not end with the partner's answer: the `x-offergate-fallback`
/// header value and the `reason` metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    UpstreamStatus(StatusCode),
    UpstreamTimeout,
    UpstreamUnreachable,
    InvalidUpstreamBody,
    CircuitOpen,
    RateLimited,
    RetryBudgetExhausted,
    DeadlineExceeded,
    StateUnavailable,
}

impl Reason {
    /// Every reason but a partner status's (an open set): the `reason` label
    /// values a dashboard can count on from the start.
    pub const FIXED: [Reason; 8] = [
        Reason::UpstreamTimeout,
        Reason::UpstreamUnreachable,
        Reason::InvalidUpstreamBody,
        Reason::CircuitOpen,
        Reason::RateLimited,
        Reason::RetryBudgetExhausted,
        Reason::DeadlineExceeded,
        Reason::StateUnavailable,
    ];

    pub fn as_str(&self) -> Cow<'static, str> {
        match self {
            Reason::UpstreamStatus(s) => Cow::Owned(format!("upstream_status_{}", s.as_u16())),
            Reason::UpstreamTimeout => Cow::Borrowed(code::UPSTREAM_TIMEOUT),
            Reason::UpstreamUnreachable => Cow::Borrowed(code::UPSTREAM_UNREACHABLE),
            Reason::InvalidUpstreamBody => Cow::Borrowed(code::INVALID_UPSTREAM_BODY),
            Reason::CircuitOpen => Cow::Borrowed(code::CIRCUIT_OPEN),
            Reason::RateLimited => Cow::Borrowed(code::RATE_LIMITED),
            Reason::RetryBudgetExhausted => Cow::Borrowed(code::RETRY_BUDGET_EXHAUSTED),
            Reason::DeadlineExceeded => Cow::Borrowed(code::DEADLINE_EXCEEDED),
            Reason::StateUnavailable => Cow::Borrowed(code::STATE_UNAVAILABLE),
        }
    }
}

impl GatewayError {
    /// This error's row of the table.
    pub fn meaning(&self) -> Meaning {
        match self {
            GatewayError::Refused(refusal) => refusal.meaning(),
            GatewayError::Call(error) => error.meaning(),
        }
    }
}

impl Refusal {
    /// A refusal is the caller's to fix: answered as it is, never retried,
    /// never stored, nothing about the partner.
    fn meaning(&self) -> Meaning {
        use Refusal::*;
        use StatusCode as S;
        let (code, status) = match self {
            NotFound { .. } => ("not_found", S::NOT_FOUND),
            MethodNotAllowed { .. } => ("method_not_allowed", S::METHOD_NOT_ALLOWED),
            InvalidTarget => ("invalid_request_target", S::BAD_REQUEST),
            InvalidHost(_) => ("invalid_host", S::BAD_REQUEST),
            UnknownPartner(_) => ("unknown_partner", S::NOT_FOUND),
            UnknownOffer => ("unknown_offer", S::NOT_FOUND),
            Unauthorized | AdminTokenNeeded => ("unauthorized", S::UNAUTHORIZED),
            AdminLoopbackOnly => ("forbidden", S::FORBIDDEN),
            InvalidRequest { .. } => ("invalid_request", S::BAD_REQUEST),
            TooManyHeaders { .. } => ("too_many_headers", S::REQUEST_HEADER_FIELDS_TOO_LARGE),
            PayloadTooLarge { .. } => ("payload_too_large", S::PAYLOAD_TOO_LARGE),
            UnsupportedMediaType(_) => ("unsupported_media_type", S::UNSUPPORTED_MEDIA_TYPE),
            BodyTimeout => ("request_timeout", S::REQUEST_TIMEOUT),
            IdempotencyKeyReused => ("idempotency_key_reused", S::UNPROCESSABLE_ENTITY),
        };
        Meaning {
            code,
            source: ErrorSource::Caller,
            status,
            outcome: Outcome::Rejected,
            retry: RetryType::Never,
            health: Health::Unknown,
            storable: false,
            fallback: None,
        }
    }
}

impl CallError {
    fn meaning(&self) -> Meaning {
        use CallError::*;
        use Health::{Failing, Healthy, Unknown};
        use RetryType::{Ambiguous, Never, Safe};
        use StatusCode as S;
        use UpstreamFailure::{Connect, InvalidBody, Reset, Timeout};
        // The partner's failures: counted as failed, the fallback may answer.
        let partner = |code, status, retry, health, reason| Meaning {
            code,
            source: ErrorSource::Partner,
            status,
            outcome: Outcome::Failed,
            retry,
            health,
            storable: false,
            fallback: Some(reason),
        };
        // offergate's own: nothing about the partner, never retried.
        let own = |code, status, outcome, fallback| Meaning {
            code,
            source: ErrorSource::Offergate,
            status,
            outcome,
            retry: Never,
            health: Unknown,
            storable: false,
            fallback,
        };
        match self {
            Upstream(Connect(_)) => partner(
                code::UPSTREAM_UNREACHABLE,
                S::BAD_GATEWAY,
                Safe,
                Failing,
                Reason::UpstreamUnreachable,
            ),
            Upstream(Reset(_)) => partner(
                code::UPSTREAM_UNREACHABLE,
                S::BAD_GATEWAY,
                Ambiguous,
                Failing,
                Reason::UpstreamUnreachable,
            ),
            Upstream(Timeout) => partner(
                code::UPSTREAM_TIMEOUT,
                S::GATEWAY_TIMEOUT,
                Ambiguous,
                Failing,
                Reason::UpstreamTimeout,
            ),
            Upstream(InvalidBody(_)) => partner(
                code::INVALID_UPSTREAM_BODY,
                S::BAD_GATEWAY,
                Never,
                Failing,
                Reason::InvalidUpstreamBody,
            ),
            // Answered as the partner sent it when the fallback is off.
            PartnerStatus(answer) => Meaning {
                outcome: Outcome::Forwarded,
                ..partner(
                    "upstream_status",
                    answer.status,
                    match answer.status {
                        S::TOO_MANY_REQUESTS | S::SERVICE_UNAVAILABLE => Safe,
                        _ => Never,
                    },
                    match answer.status.as_u16() {
                        402 | 404..=428 | 430..=499 => Healthy,
                        _ => Failing,
                    },
                    Reason::UpstreamStatus(answer.status),
                )
            },
            CircuitOpen { .. } | Paused { .. } => partner(
                code::CIRCUIT_OPEN,
                S::SERVICE_UNAVAILABLE,
                Never,
                Unknown,
                Reason::CircuitOpen,
            ),
            DeadlineExceeded => partner(
                code::DEADLINE_EXCEEDED,
                S::GATEWAY_TIMEOUT,
                Never,
                Unknown,
                Reason::DeadlineExceeded,
            ),
            RetryBudgetExhausted { .. } => partner(
                code::RETRY_BUDGET_EXHAUSTED,
                S::BAD_GATEWAY,
                Never,
                Unknown,
                Reason::RetryBudgetExhausted,
            ),
            RateLimited { .. } => own(
                code::RATE_LIMITED,
                S::TOO_MANY_REQUESTS,
                Outcome::Rejected,
                Some(Reason::RateLimited),
            ),
            StateUnavailable => own(
                code::STATE_UNAVAILABLE,
                S::SERVICE_UNAVAILABLE,
                Outcome::Failed,
                Some(Reason::StateUnavailable),
            ),
            Overloaded => own("overloaded", S::SERVICE_UNAVAILABLE, Outcome::Failed, None),
            Internal(_) | Panic => own(
                "internal_error",
                S::INTERNAL_SERVER_ERROR,
                Outcome::Failed,
                None,
            ),
        }
    }
}

/// Whether a try's result may be stored and replayed: the partner's own 200
/// or 400, relayed; for an error, its row says.
pub fn storable(result: &Result<ProxyResponse, GatewayError>) -> bool {
    match result {
        Ok(r) => r.outcome == Outcome::Forwarded && matches!(r.status.as_u16(), 200 | 400),
        Err(e) => e.meaning().storable,
    }
}

/// A partner's answer as a try's result: its 200 and its 400 are answers to
/// deliver; any other status is a failure the table decides about, carried as
/// an error that holds the answer.
pub fn partner_answer(answer: ProxyResponse) -> Result<ProxyResponse, GatewayError> {
    match answer.status {
        StatusCode::OK | StatusCode::BAD_REQUEST => Ok(answer),
        _ => Err(GatewayError::Call(CallError::PartnerStatus(Box::new(
            answer,
        )))),
    }
}

/// How long the partner asked offergate to wait, with a status worth
/// repeating (429, 503) and a `Retry-After`.
pub fn asked_wait(error: &GatewayError) -> Option<Duration> {
    match error {
        GatewayError::Call(CallError::PartnerStatus(answer))
            if error.meaning().retry == RetryType::Safe =>
        {
            retry_after(&answer.headers, crate::call::clock::wall())
        }
        _ => None,
    }
}

/// `Retry-After` as delay-seconds or an HTTP date, relative to `now`.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Whether an Encore answer carried an offer (the fill-rate metric).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfferResult {
    Offer,
    NoOffer,
}

/// One of every error, for the tests that walk the table. The match below
/// has no wildcard: a new variant does not compile until it is listed here.
#[cfg(test)]
pub fn every_error() -> Vec<GatewayError> {
    use bytes::Bytes;
    fn listed(e: &GatewayError) {
        use CallError as C;
        use Refusal as R;
        match e {
            GatewayError::Refused(
                R::NotFound { .. }
                | R::MethodNotAllowed { .. }
                | R::InvalidTarget
                | R::InvalidHost(_)
                | R::UnknownPartner(_)
                | R::UnknownOffer
                | R::Unauthorized
                | R::AdminTokenNeeded
                | R::AdminLoopbackOnly
                | R::InvalidRequest { .. }
                | R::TooManyHeaders { .. }
                | R::PayloadTooLarge { .. }
                | R::UnsupportedMediaType(_)
                | R::BodyTimeout
                | R::IdempotencyKeyReused,
            ) => {}
            GatewayError::Call(
                C::Upstream(
                    UpstreamFailure::Connect(_)
                    | UpstreamFailure::Timeout
                    | UpstreamFailure::Reset(_)
                    | UpstreamFailure::InvalidBody(_),
                )
                | C::PartnerStatus(_)
                | C::CircuitOpen { .. }
                | C::Paused { .. }
                | C::DeadlineExceeded
                | C::RetryBudgetExhausted { .. }
                | C::RateLimited { .. }
                | C::Overloaded
                | C::StateUnavailable
                | C::Internal(_)
                | C::Panic,
            ) => {}
        }
    }
    let wait = Duration::from_secs(2);
    let partner = |status: u16| {
        CallError::PartnerStatus(Box::new(ProxyResponse::json(
            StatusCode::from_u16(status).expect("a status"),
            Bytes::from_static(b"{}"),
        )))
    };
    let refused = [
        Refusal::NotFound { serves: "/x" },
        Refusal::MethodNotAllowed { allow: "POST" },
        Refusal::InvalidTarget,
        Refusal::InvalidHost("bad host".into()),
        Refusal::UnknownPartner("p".into()),
        Refusal::UnknownOffer,
        Refusal::Unauthorized,
        Refusal::AdminTokenNeeded,
        Refusal::AdminLoopbackOnly,
        Refusal::InvalidRequest {
            field: "f".into(),
            message: "m".into(),
        },
        Refusal::TooManyHeaders { limit: 1 },
        Refusal::PayloadTooLarge { limit: 1 },
        Refusal::UnsupportedMediaType("text/plain".into()),
        Refusal::BodyTimeout,
        Refusal::IdempotencyKeyReused,
    ];
    let failed = [
        CallError::Upstream(UpstreamFailure::Connect("refused".into())),
        CallError::Upstream(UpstreamFailure::Timeout),
        CallError::Upstream(UpstreamFailure::Reset("eof".into())),
        CallError::Upstream(UpstreamFailure::InvalidBody("not JSON".into())),
        partner(401),
        partner(403),
        partner(409),
        partner(429),
        partner(500),
        partner(503),
        CallError::CircuitOpen { retry_after: wait },
        CallError::Paused { retry_after: wait },
        CallError::DeadlineExceeded,
        CallError::RetryBudgetExhausted {
            last: Box::new(GatewayError::Call(partner(503))),
        },
        CallError::RateLimited {
            scope: crate::call::error::LimitScope::Client,
            retry_after: wait,
        },
        CallError::Overloaded,
        CallError::StateUnavailable,
        CallError::Internal("x".into()),
        CallError::Panic,
    ];
    let all: Vec<GatewayError> = refused
        .into_iter()
        .map(GatewayError::from)
        .chain(failed.into_iter().map(GatewayError::from))
        .collect();
    all.iter().for_each(listed);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// What the upstream hands back for a partner answer with `code`.
    fn status(code: u16) -> Result<ProxyResponse, GatewayError> {
        partner_answer(ProxyResponse::json(
            StatusCode::from_u16(code).unwrap(),
            Bytes::new(),
        ))
    }

    fn meaning(result: &Result<ProxyResponse, GatewayError>) -> Option<Meaning> {
        result.as_ref().err().map(GatewayError::meaning)
    }

    #[test]
    fn every_error_has_a_consistent_row() {
        let all = every_error();
        for e in &all {
            let m = e.meaning();
            let what = format!("{e:?}");
            assert!(!m.storable, "no error's answer is replayed: {what}");
            assert!(
                m.status.is_client_error() || m.status.is_server_error(),
                "{what}"
            );
            match m.source {
                // The caller's to fix: answered as it is.
                ErrorSource::Caller => {
                    assert_eq!(m.outcome, Outcome::Rejected, "{what}");
                    assert_eq!(m.retry, RetryType::Never, "{what}");
                    assert_eq!(m.health, Health::Unknown, "{what}");
                    assert_eq!(m.fallback, None, "{what}");
                }
                // Only the partner can be failing or be retried.
                ErrorSource::Offergate => {
                    assert_eq!(m.retry, RetryType::Never, "{what}");
                    assert_eq!(m.health, Health::Unknown, "{what}");
                }
                // Every partner failure has a fallback reason.
                ErrorSource::Partner => assert!(m.fallback.is_some(), "{what}"),
            }
            // A fixed reason's label is the error's own code.
            if let Some(reason) = m.fallback.filter(|r| Reason::FIXED.contains(r)) {
                assert_eq!(reason.as_str(), m.code, "{what}");
            }
        }
        // Every fixed reason is given by some error.
        for reason in Reason::FIXED {
            assert!(
                all.iter().any(|e| e.meaning().fallback == Some(reason)),
                "{reason:?}"
            );
        }
    }

    #[test]
    fn follows_the_partner_table() {
        for code in [200, 400] {
            assert!(status(code).is_ok(), "{code}");
            assert!(storable(&status(code)), "{code}");
        }
        let row = |code| meaning(&status(code)).expect("a failure");
        for code in [401, 403, 409, 404, 422, 500, 502, 504, 501, 599, 204, 302] {
            assert_eq!(row(code).retry, RetryType::Never, "{code}");
            assert!(!storable(&status(code)), "{code}");
        }
        for code in [429, 503] {
            assert_eq!(row(code).retry, RetryType::Safe, "{code}");
        }
        for code in [500, 503, 429, 401, 403, 302] {
            assert_eq!(row(code).health, Health::Failing, "{code}");
        }
        for code in [409, 404, 402, 430] {
            assert_eq!(row(code).health, Health::Healthy, "{code}");
        }
        let up = |f| GatewayError::Call(CallError::Upstream(f)).meaning().retry;
        assert_eq!(
            up(UpstreamFailure::Connect("refused".into())),
            RetryType::Safe
        );
        assert_eq!(
            up(UpstreamFailure::Reset("eof".into())),
            RetryType::Ambiguous
        );
        assert_eq!(up(UpstreamFailure::Timeout), RetryType::Ambiguous);
        assert_eq!(
            up(UpstreamFailure::InvalidBody("x".into())),
            RetryType::Never
        );
    }

    #[test]
    fn the_partners_wait_is_read_only_where_a_retry_may_follow() {
        let with_wait = |code| {
            let mut answer = ProxyResponse::json(StatusCode::from_u16(code).unwrap(), Bytes::new());
            answer
                .headers
                .insert(header::RETRY_AFTER, "3".parse().unwrap());
            partner_answer(answer).unwrap_err()
        };
        assert_eq!(asked_wait(&with_wait(429)), Some(Duration::from_secs(3)));
        assert_eq!(asked_wait(&with_wait(503)), Some(Duration::from_secs(3)));
        assert_eq!(asked_wait(&with_wait(500)), None);
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        h.insert(header::RETRY_AFTER, later.parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(90)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        h.insert(header::RETRY_AFTER, past.parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert(header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h, now), None);
        assert_eq!(
            Reason::UpstreamStatus(StatusCode::SERVICE_UNAVAILABLE).as_str(),
            "upstream_status_503"
        );
    }
}
