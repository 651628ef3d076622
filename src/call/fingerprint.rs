//! A request's fingerprint: XXH3-128 over its route, partner, page and
//! canonical JSON body. Two requests with the same fingerprint ask the partner
//! the same question, so one answer serves both.
//!
//! Why not a cryptographic hash: the fingerprint only tells a caller's own
//! requests apart (a derived idempotency key, or a reused key's body), and
//! the caller is the platform beside offergate, not an adversary. XXH3-128 is
//! stable across machines and versions (replicas share keys on Redis), and
//! the odds that two different requests ever collide are about n² / 2¹²⁹:
//! below 10⁻¹⁸ after 10¹⁰ requests. It costs a tenth of SHA-256's
//! instructions per call (benches/README.md).
//!
//! Canonical JSON: object keys sorted, no insignificant whitespace, strings and
//! numbers re-encoded by serde_json. So `{"b":1, "a":"x"}` and `{"a":"x","b":1}`
//! match; `1` and `1.0`, or `"1"` and `1`, do not. An empty body is `{}` (both
//! ask Besitos for everything).

use xxhash_rust::xxh3::xxh3_128;

use crate::call::json::Json;
use crate::call::route::Target;

pub type Fingerprint = [u8; 16];

pub fn fingerprint(target: &Target, body: &[u8]) -> Fingerprint {
    let mut out = Vec::new();
    write_target(target, &mut out);
    out.extend_from_slice(&canonical(body));
    xxh3_128(&out).to_be_bytes()
}

/// The fingerprint of a body already parsed (admission parses it once to
/// validate it; `None`: no body). Same result as [`fingerprint`].
pub fn fingerprint_of(target: &Target, json: Option<&Json>) -> Fingerprint {
    thread_local! {
        /// The canonical form is written here and hashed at once: one buffer
        /// per thread, not an allocation per request.
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with_borrow_mut(|out| {
        out.clear();
        write_target(target, out);
        match json {
            Some(v) => v.write_canonical(out),
            None => out.extend_from_slice(b"{}"),
        }
        let fingerprint = xxh3_128(out).to_be_bytes();
        // A huge body's buffer is not kept for the thread's lifetime.
        if out.capacity() > 64 * 1024 {
            *out = Vec::new();
        }
        fingerprint
    })
}

/// What the body is hashed after: route, partner and page, each ended by a
/// NUL (which no route, partner id or page number contains).
fn write_target(target: &Target, out: &mut Vec<u8>) {
    out.extend_from_slice(target.route().as_str().as_bytes());
    out.push(0);
    out.extend_from_slice(target.partner_id().unwrap_or_default().as_bytes());
    out.push(0);
    out.extend_from_slice(&target.page().unwrap_or(1).to_le_bytes());
    out.push(0);
}

/// Lowercase hex of `bytes`, appended to `out`: how fingerprints, thread ids
/// and hashed caller ids are written into store and Redis keys.
pub fn push_hex(bytes: &[u8], out: &mut String) {
    for b in bytes {
        let [high, low] = hex_pair(*b);
        out.push(char::from(high));
        out.push(char::from(low));
    }
}

/// The two lowercase hex digits of `b`.
pub fn hex_pair(b: u8) -> [u8; 2] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(bytes, &mut out);
    out
}

/// The canonical form of a JSON body; bytes that are not JSON stand for themselves.
pub fn canonical(body: &[u8]) -> Vec<u8> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return b"{}".to_vec();
    }
    match Json::parse(body) {
        Ok(v) => {
            let mut out = Vec::with_capacity(body.len());
            v.write_canonical(&mut out);
            out
        }
        Err(_) => body.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::route::Route;

    fn t(route: Route, partner: Option<&str>, page: Option<u32>) -> Target {
        match route {
            Route::EncoreOffers => Target::Encore,
            Route::BesitosGoals => Target::Besitos {
                partner_id: partner.unwrap_or_default().to_string(),
                page,
            },
        }
    }

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let a = br#"{"clientId":"c","chatId":"x","attributes":{"countryCode":"US","language":"en","platform":"ios"}}"#;
        let b = b"{ \"attributes\" : { \"platform\":\"ios\", \"language\":\"en\",\"countryCode\":\"US\" },\n \"chatId\":\"x\", \"clientId\":\"c\" }";
        let e = t(Route::EncoreOffers, None, None);
        assert_eq!(fingerprint(&e, a), fingerprint(&e, b));
        assert_eq!(canonical(b), br#"{"attributes":{"countryCode":"US","language":"en","platform":"ios"},"chatId":"x","clientId":"c"}"#);
    }

    #[test]
    fn values_route_partner_and_page_do() {
        let e = t(Route::EncoreOffers, None, None);
        assert_ne!(
            fingerprint(&e, br#"{"n":1}"#),
            fingerprint(&e, br#"{"n":1.0}"#)
        );
        assert_ne!(
            fingerprint(&e, br#"{"n":1}"#),
            fingerprint(&e, br#"{"n":"1"}"#)
        );
        assert_ne!(
            fingerprint(&e, br#"{"a":[1,2]}"#),
            fingerprint(&e, br#"{"a":[2,1]}"#)
        );
        let body = br#"{"hours_to":48}"#;
        let p1 = t(Route::BesitosGoals, Some("p1"), None);
        assert_ne!(
            fingerprint(&p1, body),
            fingerprint(&t(Route::BesitosGoals, Some("p2"), None), body)
        );
        assert_ne!(
            fingerprint(&p1, body),
            fingerprint(&t(Route::BesitosGoals, Some("p1"), Some(2)), body)
        );
        assert_eq!(
            fingerprint(&p1, body),
            fingerprint(&t(Route::BesitosGoals, Some("p1"), Some(1)), body)
        );
        assert_eq!(fingerprint(&p1, b""), fingerprint(&p1, b"{}"));
    }

    #[test]
    fn from_a_parsed_value_is_the_same() {
        let e = t(Route::EncoreOffers, None, None);
        let body = br#"{ "b": [1, {"y":2,"x":"s"}], "a": null }"#;
        let v = Json::parse(body).unwrap();
        assert_eq!(fingerprint_of(&e, Some(&v)), fingerprint(&e, body));
        assert_eq!(canonical(body), br#"{"a":null,"b":[1,{"x":"s","y":2}]}"#);
        let b = t(Route::BesitosGoals, Some("p"), None);
        assert_eq!(fingerprint_of(&b, None), fingerprint(&b, b""));
    }
}

#[cfg(test)]
mod stability {
    use super::*;
    use crate::call::thread::thread_id;

    /// Replicas of different builds share keys on Redis: the same request
    /// must hash the same on every build, so these values may never change
    /// without a new key format.
    #[test]
    fn fingerprints_and_thread_ids_are_stable_across_builds() {
        let t = Target::Encore;
        let fp = fingerprint(&t, br#"{"chatId":"x","clientId":"c"}"#);
        assert_eq!(hex(&fp), "f41241d427820ad507a494281290ede1");
        assert_eq!(
            hex(&thread_id("c", "x")),
            "7f72c11a990d4c38afcf8d21082602a0"
        );
        assert_eq!(hex(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
    }
}
