//! How an answer is kept in Redis for the fleet: a few header bytes and
//! the body, read back only when written by this format.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use super::store::{Answer, Stored};
use crate::call::fingerprint::Fingerprint;
use crate::call::request::{Outcome, ProxyResponse};

/// The stored answer's layout: version (1) · fingerprint (16) · status (2,
/// big-endian) · content-type length (1) · content type · body. An answer
/// another version wrote is not read (the caller's partner call goes ahead).
const FORMAT: u8 = 2;
const HEAD: usize = 1 + 16 + 2 + 1;

pub(super) fn encode(s: &Stored) -> Vec<u8> {
    let ct = s.content_type.as_ref().map_or(&b""[..], |v| v.as_bytes());
    let ct = &ct[..ct.len().min(255)];
    let mut out = Vec::with_capacity(HEAD + ct.len() + s.body.len());
    out.push(FORMAT);
    out.extend_from_slice(&s.fingerprint);
    out.extend_from_slice(&s.status.as_u16().to_be_bytes());
    out.push(ct.len() as u8);
    out.extend_from_slice(ct);
    out.extend_from_slice(&s.body);
    out
}

pub(super) fn decode(bytes: &[u8], ttl: Duration) -> Option<Stored> {
    if bytes.first() != Some(&FORMAT) {
        return None;
    }
    let fingerprint: Fingerprint = bytes.get(1..17)?.try_into().ok()?;
    let status =
        StatusCode::from_u16(u16::from_be_bytes(bytes.get(17..19)?.try_into().ok()?)).ok()?;
    let ct_len = usize::from(*bytes.get(19)?);
    let ct = bytes.get(HEAD..HEAD + ct_len)?;
    Some(Stored {
        fingerprint,
        status,
        content_type: (!ct.is_empty())
            .then(|| HeaderValue::from_bytes(ct).ok())
            .flatten(),
        body: Bytes::copy_from_slice(bytes.get(HEAD + ct_len..)?),
        ttl,
        ask_fleet_after: None,
    })
}

/// The answer a stored one gives this replica's waiters.
pub(super) fn answer_of(s: &Stored) -> Answer {
    let mut resp = ProxyResponse::json(s.status, s.body.clone());
    match &s.content_type {
        Some(ct) => resp.headers.insert(http::header::CONTENT_TYPE, ct.clone()),
        None => resp.headers.remove(http::header::CONTENT_TYPE),
    };
    resp.outcome = Outcome::Forwarded;
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_through_their_encoding() {
        let s = Stored {
            fingerprint: [7; 16],
            status: StatusCode::BAD_REQUEST,
            content_type: Some(HeaderValue::from_static("application/json; charset=utf-8")),
            body: Bytes::from_static(br#"{"success":false}"#),
            ttl: Duration::from_secs(1),
            ask_fleet_after: None,
        };
        assert!(
            decode(&encode(&s)[..30], Duration::ZERO).is_none(),
            "truncated"
        );
        let mut other_version = encode(&s);
        other_version[0] = 1;
        assert!(decode(&other_version, Duration::ZERO).is_none());
        let back = decode(&encode(&s), Duration::from_secs(1)).unwrap();
        assert_eq!(
            (back.fingerprint, back.status, back.content_type, back.body),
            (s.fingerprint, s.status, s.content_type, s.body)
        );
    }
}
