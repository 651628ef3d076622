//! Header hygiene at both edges: which caller headers may travel to a partner,
//! which partner headers may travel back, and the request id.
//!
//! Toward the partner, an allowlist, not a denylist: a header offergate did not
//! think of (`X-HTTP-Method-Override`, `X-Original-URL`, `Forwarded`,
//! `X-Forwarded-Host`, `Content-Encoding`, a 64 KiB custom header) could change
//! what the partner does with a request offergate validated. What travels:
//! the trace context, only when valid (one W3C `traceparent`, a `tracestate`
//! of at most 512 bytes), plus what offergate sets itself (the credential,
//! `Content-Type: application/json`, `x-request-id`, `Accept`, `User-Agent`,
//! `Host`, `Content-Length`).
//! Toward the caller, an allowlist too: a partner's answer brings back only
//! what a caller of it needs, `Content-Type`, and `Retry-After` on a 429 or
//! 503. Nothing else a partner sends (`Location`, `Set-Cookie`, CORS, HSTS,
//! `WWW-Authenticate`, hop-by-hop headers, or offergate's own names such as
//! `x-offergate-fallback` and `idempotent-replayed`) reaches the caller:
//! offergate's own headers are only ever written by offergate. An answer
//! whose headers exceed [`MAX_PARTNER_HEADER_BYTES`], or that is encoded
//! (`Content-Encoding` other than `identity`: offergate does not decode, and
//! the body checks read plain JSON), is not an answer at all.

use crate::call::problem::Problem;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};
use std::sync::OnceLock;

/// The request id header, read from callers and sent to partners.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The header a caller authenticates with when an inbound token is configured.
pub static X_OFFERGATE_TOKEN: HeaderName = HeaderName::from_static("x-offergate-token");
/// The response header naming why a fallback was answered.
pub static X_OFFERGATE_FALLBACK: HeaderName = HeaderName::from_static("x-offergate-fallback");
/// The caller's idempotency key (used by offergate, never forwarded).
pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Asks for the composed message on an offer (integrator rules).
pub static X_OFFERGATE_COMPOSE: HeaderName = HeaderName::from_static("x-offergate-compose");
/// W3C trace context, logged in the access line.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The vendors' part of the trace context, passed on with a valid parent.
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The most header bytes (names and values) a partner's answer may carry;
/// Envoy's default is 60 KiB, nginx's proxy buffer 4 to 8 KiB, and a partner
/// of offergate's sends a few hundred.
pub const MAX_PARTNER_HEADER_BYTES: usize = 16 * 1024;

/// The most `tracestate` bytes passed on (W3C Trace Context asks vendors
/// to keep at least 512; more is dropped, not cut).
pub const MAX_TRACESTATE_BYTES: usize = 512;

/// The caller's headers that may be sent to a partner, in a new map with room
/// for the few offergate adds: the trace context, when it is valid. The
/// `Content-Type` is offergate's own (`application/json`, set by the partner
/// call): the body was validated as UTF-8 JSON, whatever the caller wrote.
pub fn to_partner(caller: &HeaderMap) -> HeaderMap {
    // Room for the trace context and the six offergate adds (the credential,
    // `x-request-id`, `Content-Type`, `Content-Length`, `Accept`,
    // `User-Agent`): one allocation.
    let mut out = HeaderMap::with_capacity(9);
    let mut parents = caller.get_all(&TRACEPARENT).iter();
    if let (Some(parent), None) = (parents.next(), parents.next()) {
        if valid_traceparent(parent.as_bytes()) {
            out.insert(TRACEPARENT.clone(), parent.clone());
            let state_bytes: usize = caller.get_all(&TRACESTATE).iter().map(|v| v.len()).sum();
            if state_bytes <= MAX_TRACESTATE_BYTES {
                for state in caller.get_all(&TRACESTATE) {
                    out.append(TRACESTATE.clone(), state.clone());
                }
            }
        }
    }
    out
}

/// Bodies up to this many bytes get a [`content_length`] made once.
const SHARED_LENGTHS: usize = 4096;

/// The `Content-Length` of a partner request whose body is `len` bytes.
/// Left unset, hyper formats one per request (two heap allocations); the
/// values up to [`SHARED_LENGTHS`] are slices of one text made at first
/// use, so a request's copy allocates nothing.
pub fn content_length(len: usize) -> HeaderValue {
    static TEXT: OnceLock<String> = OnceLock::new();
    static VALUES: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    let values = VALUES.get_or_init(|| {
        let text = TEXT.get_or_init(|| (0..SHARED_LENGTHS).map(|n| n.to_string()).collect());
        let mut at = 0;
        (0..SHARED_LENGTHS)
            .map(|n| {
                let digits = n.checked_ilog10().map_or(1, |d| d as usize + 1);
                let value = HeaderValue::from_static(&text[at..at + digits]);
                at += digits;
                value
            })
            .collect()
    });
    match values.get(len) {
        Some(value) => value.clone(),
        None => HeaderValue::from(len),
    }
}

/// A W3C `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`, lowercase, neither
/// id all zeros; a later version (not `ff`) may add fields after a `-`.
pub fn valid_traceparent(v: &[u8]) -> bool {
    let hex = |b: &[u8]| b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let zero = |b: &[u8]| b.iter().all(|c| *c == b'0');
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return false;
    }
    let (version, trace, parent, flags) = (&v[..2], &v[3..35], &v[36..52], &v[53..55]);
    let fields = hex(version) && hex(trace) && hex(parent) && hex(flags);
    let later = match version {
        b"00" => v.len() == 55,
        b"ff" => false,
        _ => v.len() == 55 || v[55] == b'-',
    };
    fields && later && !zero(trace) && !zero(parent)
}

/// Whether a partner's answer headers are acceptable at all: within
/// [`MAX_PARTNER_HEADER_BYTES`] and not encoded. `Err` says why not.
pub fn check_partner_headers(partner: &HeaderMap) -> Result<(), Problem> {
    let bytes: usize = partner
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if bytes > MAX_PARTNER_HEADER_BYTES {
        return Err(format!(
            "the answer's headers hold {bytes} bytes, more than the {MAX_PARTNER_HEADER_BYTES} accepted"
        ).into());
    }
    // Framed both ways, an answer means one thing to offergate and may mean
    // another to whatever is between (request smuggling's shape): refused,
    // as nginx and Envoy refuse it.
    if partner.contains_key(header::CONTENT_LENGTH)
        && partner.contains_key(header::TRANSFER_ENCODING)
    {
        return Err("the answer is framed by both Content-Length and Transfer-Encoding".into());
    }
    for encoding in partner.get_all(header::CONTENT_ENCODING) {
        if !encoding.as_bytes().eq_ignore_ascii_case(b"identity") {
            return Err(format!(
                "the answer is encoded (Content-Encoding: {}), which offergate does not decode",
                String::from_utf8_lossy(encoding.as_bytes())
            )
            .into());
        }
    }
    Ok(())
}

/// Leaves in `partner` only the headers a caller gets back: `Content-Type`,
/// and `Retry-After` when `status` asks the caller to wait (429, 503). In
/// place: the answer's own map, cleared and refilled, no new one per call.
pub fn to_caller(partner: &mut HeaderMap, status: http::StatusCode) {
    let content_type = partner.get(header::CONTENT_TYPE).cloned();
    let retry_after = matches!(status.as_u16(), 429 | 503)
        .then(|| partner.get(header::RETRY_AFTER).cloned())
        .flatten();
    partner.clear();
    if let Some(ct) = content_type {
        partner.insert(header::CONTENT_TYPE, ct);
    }
    if let Some(after) = retry_after {
        partner.insert(header::RETRY_AFTER, after);
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
    // A v4 UUID from fastrand's per-thread generator: request ids must be
    // unique, not secret, and this skips a ChaCha round per request.
    let id = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid();
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf))
        .unwrap_or(HeaderValue::from_static("invalid"))
}

/// Whether a JSON `Content-Type` names no charset or UTF-8 (`utf-8`,
/// `utf8`, quoted or not, any case).
pub fn utf8_charset(value: &HeaderValue) -> bool {
    // No parameters, as nearly every caller sends: nothing to look at.
    if !value.as_bytes().contains(&b';') {
        return true;
    }
    let Ok(text) = value.to_str() else {
        return false;
    };
    text.split(';').skip(1).all(|param| {
        let Some((name, v)) = param.split_once('=') else {
            return true;
        };
        if !name.trim().eq_ignore_ascii_case("charset") {
            return true;
        }
        let v = v.trim().trim_matches('"');
        v.eq_ignore_ascii_case("utf-8") || v.eq_ignore_ascii_case("utf8")
    })
}

/// Whether a `Content-Type` value is JSON (`application/json`, `+json` types,
/// parameters such as `charset` allowed).
pub fn is_json_content_type(value: &HeaderValue) -> bool {
    // What nearly every caller sends, recognised by one comparison.
    if value.as_bytes() == b"application/json" {
        return true;
    }
    let Ok(s) = value.to_str() else { return false };
    // Compared without lowercasing a copy: this runs on every request.
    let essence = s.split(';').next().unwrap_or("").trim().as_bytes();
    let starts = |p: &[u8]| essence.len() >= p.len() && essence[..p.len()].eq_ignore_ascii_case(p);
    let ends = |p: &[u8]| {
        essence.len() >= p.len() && essence[essence.len() - p.len()..].eq_ignore_ascii_case(p)
    };
    essence.eq_ignore_ascii_case(b"application/json") || (starts(b"application/") && ends(b"+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_content_length_reads_as_the_length_it_was_made_for() {
        let edges = [0, 1, 9, 10, 99, 100, 999, 1000, 4095, 4096, 4097, 65_536];
        for len in (0..SHARED_LENGTHS + 10).chain(edges) {
            assert_eq!(
                content_length(len).to_str().ok(),
                Some(len.to_string().as_str()),
                "{len}"
            );
        }
    }

    #[test]
    fn only_the_allowlist_reaches_the_partner() {
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
            ("x-http-method-override", "DELETE"),
            ("x-original-url", "/admin"),
            ("forwarded", "for=1.2.3.4;host=evil"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-host", "evil.example"),
            ("content-encoding", "gzip"),
            ("content-type", "application/json"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let out = to_partner(&h);
        let names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["traceparent"]);
    }

    #[test]
    fn only_a_valid_trace_context_travels() {
        let good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        assert!(valid_traceparent(good.as_bytes()));
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            assert!(!valid_traceparent(bad.as_bytes()), "{bad}");
        }
        assert!(valid_traceparent(
            b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-later"
        ));
        let mut h = HeaderMap::new();
        h.insert(&TRACEPARENT, HeaderValue::from_static(good));
        h.insert(&TRACESTATE, HeaderValue::from_static("a=1,b=2"));
        assert_eq!(to_partner(&h).len(), 2);
        h.insert(
            &TRACESTATE,
            HeaderValue::from_str(&"x".repeat(600)).unwrap(),
        );
        assert_eq!(
            to_partner(&h).len(),
            1,
            "an oversized tracestate is dropped"
        );
        h.append(&TRACEPARENT, HeaderValue::from_static(good));
        assert!(to_partner(&h).is_empty(), "two parents: neither");
        let mut big = HeaderMap::new();
        big.insert(
            &TRACEPARENT,
            HeaderValue::from_str(&"0".repeat(8000)).unwrap(),
        );
        assert!(to_partner(&big).is_empty());
    }

    #[test]
    fn utf8_charsets() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF8\"",
        ] {
            assert!(utf8_charset(&HeaderValue::from_static(ok)), "{ok}");
        }
        for bad in [
            "application/json; charset=latin1",
            "application/json; charset=\"iso-8859-1\"",
        ] {
            assert!(!utf8_charset(&HeaderValue::from_static(bad)), "{bad}");
        }
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
    fn only_what_a_caller_needs_goes_back() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "close, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("content-length", "12"),
            ("set-cookie", "a=1"),
            ("set-cookie2", "b=2"),
            ("upgrade", "h2c"),
            ("location", "https://evil.example/"),
            ("refresh", "0; url=https://evil.example/"),
            ("access-control-allow-origin", "*"),
            ("strict-transport-security", "max-age=63072000"),
            ("www-authenticate", "Basic"),
            ("x-offergate-fallback", "forged"),
            ("x-offergate-skipped", "thread_cap"),
            ("idempotent-replayed", "true"),
            ("retry-after", "3"),
            ("content-type", "application/json"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let names = |status| {
            let mut m = h.clone();
            to_caller(&mut m, status);
            let mut n: Vec<String> = m.keys().map(|k| k.as_str().to_string()).collect();
            n.sort_unstable();
            n
        };
        assert_eq!(names(http::StatusCode::OK), ["content-type"]);
        assert_eq!(
            names(http::StatusCode::TOO_MANY_REQUESTS),
            ["content-type", "retry-after"]
        );
    }

    #[test]
    fn large_or_encoded_partner_headers_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(check_partner_headers(&h).is_ok());
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        assert!(check_partner_headers(&h).is_ok());
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(check_partner_headers(&h).unwrap_err().contains("gzip"));
        h.remove(header::CONTENT_ENCODING);
        for i in 0..50 {
            let name = HeaderName::from_bytes(format!("x-pad-{i}").as_bytes()).unwrap();
            h.insert(name, HeaderValue::from_str(&"a".repeat(400)).unwrap());
        }
        assert!(check_partner_headers(&h).unwrap_err().contains("more than"));
    }

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/vnd.x+json",
            "APPLICATION/VND.X+JSON ; charset=utf-8",
        ] {
            assert!(is_json_content_type(&HeaderValue::from_static(ok)), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "",
            "application/jsonx",
            "text/x+json",
            "application/json-seq",
        ] {
            assert!(
                !is_json_content_type(&HeaderValue::from_static(bad)),
                "{bad}"
            );
        }
    }
}
