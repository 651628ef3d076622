//! The outcome table, in one place: what a partner try's result means
//! for retries, the circuit breaker and the soft fallback.
//!
//! | partner answers                               | retried            | caller gets     |
//! |-----------------------------------------------|--------------------|-----------------|
//! | 200 (documented JSON)                         | no                 | the answer      |
//! | 400                                           | no                 | the answer      |
//! | 401, 403, 409, other 4xx                      | no                 | soft fallback   |
//! | 429, 503                                      | yes                | soft fallback   |
//! | 500, 502, 504, other 5xx                      | no                 | soft fallback   |
//! | connect error, refused (never sent)           | yes                | soft fallback   |
//! | per-try timeout, reset after sending          | if `retry_ambiguous` | soft fallback |
//! | 200 whose body is not the documented JSON     | no                 | soft fallback   |
//!
//! Which failures count against the circuit: everything that says the partner is
//! unwell or unusable for everyone (5xx, 429, 401/403, timeouts, unreachable,
//! invalid answers), not what concerns one caller (400, 409, other 4xx).

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use http::{header, HeaderMap, StatusCode};

use super::error::RetryType;

use crate::call::error::{code, CallError, GatewayError, UpstreamFailure};
use crate::call::request::ProxyResponse;

/// Whether an Encore answer carried an offer (the fill-rate metric).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfferResult {
    Offer,
    NoOffer,
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

/// What a try's result means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Give the caller this result as it is (the partner's 200 or 400, or an
    /// offergate error that is not about the partner).
    Deliver,
    Failure {
        reason: Reason,
        retry: RetryType,
        /// The partner's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
        /// Counts toward opening the circuit.
        trips_circuit: bool,
    },
}

impl Verdict {
    fn failure(reason: Reason, retry: RetryType, trips_circuit: bool) -> Verdict {
        Verdict::Failure {
            reason,
            retry,
            retry_after: None,
            trips_circuit,
        }
    }
}

/// A partner's answer as a try's result: its 200 and its 400 are answers to
/// deliver; any other status is a failure the layers decide about (the table
/// above), carried as an error that holds the answer.
pub fn partner_answer(answer: ProxyResponse) -> Result<ProxyResponse, GatewayError> {
    match answer.status {
        StatusCode::OK | StatusCode::BAD_REQUEST => Ok(answer),
        _ => Err(GatewayError::Call(CallError::PartnerStatus(Box::new(
            answer,
        )))),
    }
}

/// Classifies one try's result (the table above). Only errors can be
/// failures: the upstream answers `Ok` for the partner's 200 and 400 alone.
pub fn classify(result: &Result<ProxyResponse, GatewayError>) -> Verdict {
    match result {
        Ok(_) => Verdict::Deliver,
        // The caller's to fix: answered as it is, nothing about the partner.
        Err(GatewayError::Refused(_)) => Verdict::Deliver,
        Err(GatewayError::Call(e)) => classify_call(e),
    }
}

/// A failed call, by the table above. Every error is listed, so a new one
/// must be placed here before it compiles.
fn classify_call(e: &CallError) -> Verdict {
    let retry = e.retry();
    let failure = |reason, trips| Verdict::failure(reason, retry, trips);
    match e {
        CallError::Upstream(f) => match f {
            UpstreamFailure::Connect(_) | UpstreamFailure::Reset(_) => {
                failure(Reason::UpstreamUnreachable, true)
            }
            UpstreamFailure::Timeout => failure(Reason::UpstreamTimeout, true),
            UpstreamFailure::InvalidBody(_) => failure(Reason::InvalidUpstreamBody, true),
        },
        CallError::PartnerStatus(answer) => {
            let status = answer.status;
            Verdict::Failure {
                reason: Reason::UpstreamStatus(status),
                retry,
                retry_after: (retry == RetryType::Safe)
                    .then(|| retry_after(&answer.headers, crate::call::clock::wall()))
                    .flatten(),
                trips_circuit: !matches!(status.as_u16(), 402 | 404..=428 | 430..=499),
            }
        }
        CallError::DeadlineExceeded => failure(Reason::DeadlineExceeded, false),
        CallError::CircuitOpen { .. } => failure(Reason::CircuitOpen, false),
        CallError::RateLimited { .. } => failure(Reason::RateLimited, false),
        CallError::StateUnavailable => failure(Reason::StateUnavailable, false),
        CallError::RetryBudgetExhausted { .. } => failure(Reason::RetryBudgetExhausted, false),
        // offergate's own, which say nothing about the partner: answered as they are.
        CallError::Overloaded | CallError::Internal(_) | CallError::Panic => Verdict::Deliver,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::error::Refusal;
    use bytes::Bytes;

    /// What the upstream hands back for a partner answer with `code`.
    fn status(code: u16) -> Result<ProxyResponse, GatewayError> {
        partner_answer(ProxyResponse::json(
            StatusCode::from_u16(code).unwrap(),
            Bytes::new(),
        ))
    }

    fn retry_of(v: Verdict) -> Option<RetryType> {
        match v {
            Verdict::Failure { retry, .. } => Some(retry),
            Verdict::Deliver => None,
        }
    }

    #[test]
    fn follows_the_outcome_table() {
        assert_eq!(classify(&status(200)), Verdict::Deliver);
        assert_eq!(classify(&status(400)), Verdict::Deliver);
        for code in [401, 403, 409, 404, 422, 500, 502, 504, 501, 599, 204, 302] {
            assert_eq!(
                retry_of(classify(&status(code))),
                Some(RetryType::Never),
                "{code}"
            );
        }
        for code in [429, 503] {
            assert_eq!(
                retry_of(classify(&status(code))),
                Some(RetryType::Safe),
                "{code}"
            );
        }
        let up = |f| Err(GatewayError::Call(CallError::Upstream(f)));
        assert_eq!(
            retry_of(classify(&up(UpstreamFailure::Connect("refused".into())))),
            Some(RetryType::Safe)
        );
        assert_eq!(
            retry_of(classify(&up(UpstreamFailure::Reset("eof".into())))),
            Some(RetryType::Ambiguous)
        );
        assert_eq!(
            retry_of(classify(&up(UpstreamFailure::Timeout))),
            Some(RetryType::Ambiguous)
        );
        assert_eq!(
            retry_of(classify(&up(UpstreamFailure::InvalidBody("x".into())))),
            Some(RetryType::Never)
        );
        assert_eq!(
            classify(&Err(GatewayError::Refused(Refusal::NotFound {
                serves: "x"
            }))),
            Verdict::Deliver
        );
    }

    #[test]
    fn circuit_counts_partner_health_not_caller_mistakes() {
        let trips = |code| {
            matches!(
                classify(&status(code)),
                Verdict::Failure {
                    trips_circuit: true,
                    ..
                }
            )
        };
        assert!(trips(500) && trips(503) && trips(429) && trips(401));
        assert!(!trips(409) && !trips(404));
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
