//! The one place an error becomes an HTTP answer: the status and count its
//! row of the table gives (`call::meaning`), the headers it needs (`Allow`,
//! `Retry-After`) and the error's JSON shape. The proxy and the admin
//! listener both answer through [`answer`].
//!
//! `{"success":false,"error":{"code":"<snake_case>","message":"<what to fix>"}}`

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue};

use crate::call::error::{CallError, GatewayError, Refusal};
use crate::call::request::ProxyResponse;

/// The answer for `error`, as its row of the table says.
pub fn answer(error: GatewayError) -> ProxyResponse {
    // A partner status passes through as the partner sent it.
    let error = match error {
        GatewayError::Call(CallError::PartnerStatus(partner)) => return *partner,
        other => other,
    };
    let meaning = error.meaning();
    let extra = match &error {
        GatewayError::Refused(refusal) => refusal_header(refusal),
        GatewayError::Call(e) => call_header(e),
    };
    let body = serde_json::json!({
        "success": false,
        "error": { "code": meaning.code, "message": error.to_string() },
    });
    let mut resp = ProxyResponse::json(meaning.status, Bytes::from(body.to_string()));
    if let Some((name, value)) = extra {
        resp.headers.insert(name, value);
    }
    resp.outcome = meaning.outcome;
    resp
}

fn refusal_header(refusal: &Refusal) -> Option<(header::HeaderName, HeaderValue)> {
    match refusal {
        Refusal::MethodNotAllowed { allow } => {
            Some((header::ALLOW, HeaderValue::from_static(allow)))
        }
        Refusal::AdminTokenNeeded => Some((
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"offergate admin\""),
        )),
        _ => None,
    }
}

/// When a caller may try again: after a circuit's cooldown or a limit's wait.
fn call_header(e: &CallError) -> Option<(header::HeaderName, HeaderValue)> {
    match e {
        CallError::CircuitOpen { retry_after }
        | CallError::Paused { retry_after }
        | CallError::RateLimited { retry_after, .. } => {
            Some((header::RETRY_AFTER, retry_after_secs(*retry_after)))
        }
        CallError::Overloaded => Some((header::RETRY_AFTER, retry_after_secs(Duration::ZERO))),
        _ => None,
    }
}

/// `Retry-After` in whole seconds, at least 1 (0 would invite a retry storm).
pub fn retry_after_secs(d: Duration) -> HeaderValue {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    HeaderValue::from(secs.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::meaning::every_error;
    use crate::call::request::Outcome;
    use http::StatusCode;

    /// Every error is answered as its row says, in the error shape.
    #[test]
    fn every_error_is_answered_as_the_table_says() {
        for e in every_error() {
            let what = format!("{e:?}");
            let m = e.meaning();
            let passes_through = matches!(e, GatewayError::Call(CallError::PartnerStatus(_)));
            let waits = matches!(
                e,
                GatewayError::Call(
                    CallError::CircuitOpen { .. }
                        | CallError::Paused { .. }
                        | CallError::RateLimited { .. }
                        | CallError::Overloaded
                )
            );
            let r = answer(e);
            assert_eq!((r.status, r.outcome), (m.status, m.outcome), "{what}");
            assert_eq!(r.headers.contains_key(header::RETRY_AFTER), waits, "{what}");
            if passes_through {
                assert_eq!(r.body, "{}", "{what}");
                continue;
            }
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["success"], false, "{what}");
            assert_eq!(v["error"]["code"], m.code, "{what}");
            assert!(
                !v["error"]["message"].as_str().unwrap().is_empty(),
                "{what}"
            );
        }
    }

    #[test]
    fn renders_the_error_shape() {
        let r = answer(GatewayError::invalid(
            "attributes.platform",
            "must be one of android, ios, web",
        ));
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.outcome, Outcome::Rejected);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["success"], false);
        assert_eq!(v["error"]["code"], "invalid_request");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("attributes.platform: "));
        let r = answer(GatewayError::Refused(Refusal::MethodNotAllowed {
            allow: "POST",
        }));
        assert_eq!(r.headers.get(header::ALLOW).unwrap(), "POST");
        let wait = Duration::from_millis(1_200);
        let r = answer(GatewayError::Call(CallError::CircuitOpen {
            retry_after: wait,
        }));
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.outcome, Outcome::Failed);
        assert_eq!(
            r.headers.get(header::RETRY_AFTER).unwrap(),
            "2",
            "rounded up"
        );
        assert_eq!(retry_after_secs(Duration::ZERO), "1", "never 0");
    }

    #[test]
    fn overload_and_panics_answer_in_the_same_shape() {
        let r = answer(GatewayError::Call(CallError::Overloaded));
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers.get(header::RETRY_AFTER).unwrap(), "1");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"]["code"], "overloaded");
        let r = answer(GatewayError::Call(CallError::Panic));
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"]["code"], "internal_error");
    }

    #[test]
    fn a_partner_status_passes_through_as_sent() {
        let mut partner = ProxyResponse::json(StatusCode::BAD_GATEWAY, Bytes::from_static(b"{}"));
        partner
            .headers
            .insert("x-partner", HeaderValue::from_static("1"));
        let r = answer(GatewayError::Call(CallError::PartnerStatus(Box::new(
            partner,
        ))));
        assert_eq!(
            (r.status, r.outcome),
            (StatusCode::BAD_GATEWAY, Outcome::Forwarded)
        );
        assert_eq!(r.headers.get("x-partner").unwrap(), "1");
        assert_eq!(r.body, "{}");
    }
}
