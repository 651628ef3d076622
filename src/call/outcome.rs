//! The contract's outcome table, in one place: what a partner try's result means
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

use crate::call::error::{GatewayError, UpstreamFailure};
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
}

impl Reason {
    pub fn as_str(&self) -> Cow<'static, str> {
        match self {
            Reason::UpstreamStatus(s) => Cow::Owned(format!("upstream_status_{}", s.as_u16())),
            Reason::UpstreamTimeout => Cow::Borrowed("upstream_timeout"),
            Reason::UpstreamUnreachable => Cow::Borrowed("upstream_unreachable"),
            Reason::InvalidUpstreamBody => Cow::Borrowed("invalid_upstream_body"),
            Reason::CircuitOpen => Cow::Borrowed("circuit_open"),
            Reason::RateLimited => Cow::Borrowed("rate_limited"),
            Reason::RetryBudgetExhausted => Cow::Borrowed("retry_budget_exhausted"),
            Reason::DeadlineExceeded => Cow::Borrowed("deadline_exceeded"),
        }
    }
}

/// Whether a failed try may be repeated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// The request provably did not take effect (429, 503, never sent).
    Safe,
    /// It may have reached the partner (timeout, reset after sending): only
    /// where the route allows it (`retry_ambiguous`).
    Ambiguous,
    Never,
}

/// What a try's result means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Give the caller this result as it is (the partner's 200 or 400, or an
    /// offergate error that is not about the partner).
    Deliver,
    Failure {
        reason: Reason,
        retry: Retry,
        /// The partner's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
        /// Counts toward opening the circuit.
        trips_circuit: bool,
    },
}

impl Verdict {
    fn failure(reason: Reason, retry: Retry, trips_circuit: bool) -> Verdict {
        Verdict::Failure {
            reason,
            retry,
            retry_after: None,
            trips_circuit,
        }
    }
}

/// Classifies one try's result (the table above).
pub fn classify(result: &Result<ProxyResponse, GatewayError>) -> Verdict {
    match result {
        Ok(resp) => classify_status(resp.status, &resp.headers),
        Err(GatewayError::Upstream(f)) => match f {
            UpstreamFailure::Connect(_) => {
                Verdict::failure(Reason::UpstreamUnreachable, Retry::Safe, true)
            }
            UpstreamFailure::Reset(_) => {
                Verdict::failure(Reason::UpstreamUnreachable, Retry::Ambiguous, true)
            }
            UpstreamFailure::Timeout => {
                Verdict::failure(Reason::UpstreamTimeout, Retry::Ambiguous, true)
            }
            UpstreamFailure::InvalidBody(_) => {
                Verdict::failure(Reason::InvalidUpstreamBody, Retry::Never, true)
            }
        },
        Err(GatewayError::DeadlineExceeded) => {
            Verdict::failure(Reason::DeadlineExceeded, Retry::Never, false)
        }
        Err(GatewayError::CircuitOpen { .. }) => {
            Verdict::failure(Reason::CircuitOpen, Retry::Never, false)
        }
        Err(GatewayError::RateLimited { .. }) => {
            Verdict::failure(Reason::RateLimited, Retry::Never, false)
        }
        Err(GatewayError::RetryBudgetExhausted(_)) => {
            Verdict::failure(Reason::RetryBudgetExhausted, Retry::Never, false)
        }
        Err(_) => Verdict::Deliver,
    }
}

fn classify_status(status: StatusCode, headers: &HeaderMap) -> Verdict {
    let reason = Reason::UpstreamStatus(status);
    match status.as_u16() {
        200 | 400 => Verdict::Deliver,
        429 | 503 => Verdict::Failure {
            reason,
            retry: Retry::Safe,
            retry_after: retry_after(headers, SystemTime::now()),
            trips_circuit: true,
        },
        401 | 403 => Verdict::failure(reason, Retry::Never, true),
        402..=499 => Verdict::failure(reason, Retry::Never, false),
        _ => Verdict::failure(reason, Retry::Never, true),
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
    use bytes::Bytes;

    fn status(code: u16) -> Result<ProxyResponse, GatewayError> {
        Ok(ProxyResponse::json(
            StatusCode::from_u16(code).unwrap(),
            Bytes::new(),
        ))
    }

    fn retry_of(v: Verdict) -> Option<Retry> {
        match v {
            Verdict::Failure { retry, .. } => Some(retry),
            Verdict::Deliver => None,
        }
    }

    #[test]
    fn follows_the_contract_table() {
        assert_eq!(classify(&status(200)), Verdict::Deliver);
        assert_eq!(classify(&status(400)), Verdict::Deliver);
        for code in [401, 403, 409, 404, 422, 500, 502, 504, 501, 599, 204, 302] {
            assert_eq!(
                retry_of(classify(&status(code))),
                Some(Retry::Never),
                "{code}"
            );
        }
        for code in [429, 503] {
            assert_eq!(
                retry_of(classify(&status(code))),
                Some(Retry::Safe),
                "{code}"
            );
        }
        let up = |f| Err(GatewayError::Upstream(f));
        assert_eq!(
            retry_of(classify(&up(UpstreamFailure::Connect("refused".into())))),
            Some(Retry::Safe)
        );
        assert_eq!(
            retry_of(classify(&up(UpstreamFailure::Reset("eof".into())))),
            Some(Retry::Ambiguous)
        );
        assert_eq!(
            retry_of(classify(&up(UpstreamFailure::Timeout))),
            Some(Retry::Ambiguous)
        );
        assert_eq!(
            retry_of(classify(&up(UpstreamFailure::InvalidBody("x".into())))),
            Some(Retry::Never)
        );
        assert_eq!(classify(&Err(GatewayError::NotFound)), Verdict::Deliver);
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
