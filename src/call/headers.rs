//! Header hygiene at both edges: which caller headers may travel to a partner,
//! which partner headers may travel back, and the request id.
//!
//! Removed toward the partner: hop-by-hop headers (RFC 9110 7.6.1, including every
//! name listed in `Connection`), the caller's own credentials (`X-API-Key`,
//! `Authorization`, `Proxy-Authorization`, `Cookie`), offergate's own control
//! headers (`Idempotency-Key`, `x-offergate-token`), `Host` and `Content-Length`
//! (the client sets both for the partner), and `Accept-Encoding` (offergate
//! reads the partner's JSON, so it asks for it uncompressed).
//! Removed toward the caller: hop-by-hop headers, `Content-Length` (recomputed)
//! and `Set-Cookie` (partner session state is no business of the caller's app).

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};

/// The request id header, read from callers and sent to partners.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The header a caller authenticates with when an inbound token is configured.
pub static X_OFFERGATE_TOKEN: HeaderName = HeaderName::from_static("x-offergate-token");
/// The caller's idempotency key (used by offergate, never forwarded).
pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Encore's credential header.
pub static X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const NOT_TO_PARTNER: [HeaderName; 8] = [
    header::HOST,
    header::CONTENT_LENGTH,
    header::AUTHORIZATION,
    header::COOKIE,
    header::ACCEPT_ENCODING,
    header::EXPECT,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("proxy-connection"),
];

const NOT_TO_PARTNER_OURS: [&HeaderName; 3] = [&X_OFFERGATE_TOKEN, &IDEMPOTENCY_KEY, &X_REQUEST_ID];

const NOT_TO_CALLER: [HeaderName; 2] = [header::CONTENT_LENGTH, header::SET_COOKIE];

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed = connection_listed(headers);
    for name in listed.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// The caller's headers that may be sent to a partner, in a new map with room
/// for the few offergate adds. Built by filtering, not by cloning and removing:
/// one hash per header kept instead of one per name refused.
pub fn to_partner(caller: &HeaderMap) -> HeaderMap {
    let listed = connection_listed(caller);
    let mut out = HeaderMap::with_capacity(caller.keys_len() + 4);
    for (name, value) in caller {
        let refused = HOP_BY_HOP.contains(name)
            || NOT_TO_PARTNER.contains(name)
            || NOT_TO_PARTNER_OURS.contains(&name)
            || listed.contains(name);
        if !refused {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The names a `Connection` header lists (hop-by-hop by declaration), except
/// those removed anyway: `Connection: keep-alive`, on nearly every answer,
/// allocates nothing.
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|name| {
            !HOP_BY_HOP
                .iter()
                .any(|h| h.as_str().eq_ignore_ascii_case(name))
        })
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect()
}

/// The partner's headers that may be sent back to the caller.
pub fn to_caller(partner: &mut HeaderMap) {
    strip_hop_by_hop(partner);
    for name in &NOT_TO_CALLER {
        partner.remove(name);
    }
}

/// The caller's `x-request-id` when it is a sane token (1 to 128 visible ASCII
/// characters), else a new UUID, so ids in logs stay greppable and bounded.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| (0x21..=0x7e).contains(c)) {
            return v.clone();
        }
    }
    let id = uuid::Uuid::new_v4();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf))
        .unwrap_or(HeaderValue::from_static("invalid"))
}

/// Whether a `Content-Type` value is JSON (`application/json`, `+json` types,
/// parameters such as `charset` allowed).
pub fn is_json_content_type(value: &HeaderValue) -> bool {
    let Ok(s) = value.to_str() else { return false };
    let essence = s
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_credentials_and_hop_by_hop_never_reach_the_partner() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("x-api-key", "pk_live_caller"),
            ("authorization", "Bearer caller"),
            ("cookie", "s=1"),
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("idempotency-key", "k1"),
            ("x-offergate-token", "t"),
            ("host", "127.0.0.1:8787"),
            ("accept-encoding", "gzip"),
            ("user-agent", "platform/1.0"),
            ("x-tenant", "acme"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        h.append("x-tenant", HeaderValue::from_static("second"));
        let out = to_partner(&h);
        let names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["user-agent", "x-tenant"]);
        let tenants: Vec<_> = out.get_all("x-tenant").iter().collect();
        assert_eq!(tenants, ["acme", "second"], "every value of a kept header");
    }

    #[test]
    fn request_id_kept_or_made() {
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("has space"));
        let made = request_id(&h);
        assert_eq!(made.len(), 36);
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/vnd.x+json",
        ] {
            assert!(is_json_content_type(&HeaderValue::from_static(ok)), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "",
            "application/jsonx",
        ] {
            assert!(
                !is_json_content_type(&HeaderValue::from_static(bad)),
                "{bad}"
            );
        }
    }
}
