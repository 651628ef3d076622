//! A request's fingerprint: SHA-256 over its route, partner, page and canonical
//! JSON body. Two requests with the same fingerprint ask the partner the same
//! question, so one answer serves both.
//!
//! Canonical JSON: object keys sorted, no insignificant whitespace, strings and
//! numbers re-encoded by serde_json. So `{"b":1, "a":"x"}` and `{"a":"x","b":1}`
//! match; `1` and `1.0`, or `"1"` and `1`, do not. An empty body is `{}` (both
//! ask Besitos for everything).

use ring::digest::{Context, SHA256};

use crate::call::json::Json;
use crate::call::route::Target;

pub type Fingerprint = [u8; 32];

pub fn fingerprint(target: &Target, body: &[u8]) -> Fingerprint {
    hash(target, &canonical(body))
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
        match json {
            Some(v) => v.write_canonical(out),
            None => out.extend_from_slice(b"{}"),
        }
        let fingerprint = hash(target, out);
        // A huge body's buffer is not kept for the thread's lifetime.
        if out.capacity() > 64 * 1024 {
            *out = Vec::new();
        }
        fingerprint
    })
}

fn hash(target: &Target, canonical_body: &[u8]) -> Fingerprint {
    let mut ctx = Context::new(&SHA256);
    ctx.update(target.route.as_str().as_bytes());
    ctx.update(b"\0");
    ctx.update(target.partner_id.as_deref().unwrap_or_default().as_bytes());
    ctx.update(b"\0");
    ctx.update(&target.page.unwrap_or(1).to_le_bytes());
    ctx.update(b"\0");
    ctx.update(canonical_body);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
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
        Target {
            route,
            partner_id: partner.map(str::to_string),
            page,
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
