//! What a partner's 200 must look like, and the Besitos page-URL rewrite.
//!
//! A 200 that is not the documented JSON is a failure, not an answer: passing it
//! on would break the caller's parser (and, with issue 3, it falls back). Besitos
//! answers are Laravel paginators whose page URLs point at the partner's host;
//! they are rewritten to offergate's public base URL so a caller that follows
//! `next_page_url` stays behind the gateway. Other URLs are left alone.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use crate::call::base_url::BaseUrl;
use crate::call::outcome::OfferResult;

/// The parts of an Encore 200 that are checked. Borrowed and typed, not a
/// `Value`: every forwarded answer passes here, and fields not named are
/// skipped without allocating.
#[derive(Deserialize)]
struct EncoreAnswer<'a> {
    success: bool,
    /// Required, may be null: `deserialize_with` turns off serde's "a missing
    /// `Option` is `None`".
    #[serde(borrow, deserialize_with = "present")]
    offer: Option<OfferHead<'a>>,
}

#[derive(Deserialize)]
struct OfferHead<'a> {
    #[serde(rename = "clickUrl", borrow)]
    click_url: Cow<'a, str>,
}

fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

/// Checks an Encore 200: `{"success":true,"offer":null|{"clickUrl":"...",...}}`.
pub fn check_encore(body: &[u8]) -> Result<OfferResult, String> {
    let answer: EncoreAnswer =
        crate::call::json::from_bytes(body).map_err(|e| format!("not the documented JSON: {e}"))?;
    if !answer.success {
        return Err("`success` is not true".into());
    }
    match answer.offer {
        None => Ok(OfferResult::NoOffer),
        Some(offer) if !offer.click_url.is_empty() => Ok(OfferResult::Offer),
        Some(_) => Err("`offer.clickUrl` is empty".into()),
    }
}

/// Paginator fields that hold a URL of the partner's own endpoint.
const PAGE_URL_FIELDS: [&str; 5] = [
    "first_page_url",
    "next_page_url",
    "prev_page_url",
    "last_page_url",
    "path",
];

/// Checks a Besitos 200 (an object with a `data` array) and rewrites its page
/// URLs onto `public`. `partner_prefix` is the path prefix of the partner's base
/// URL, removed before ours is put in front.
pub fn rewrite_besitos(
    body: &[u8],
    public: &BaseUrl,
    partner_prefix: &str,
) -> Result<Bytes, String> {
    let mut v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object_mut().ok_or("not a JSON object")?;
    if !obj.get("data").is_some_and(Value::is_array) {
        return Err("`data` is missing or not an array".into());
    }
    let mut changed = false;
    for field in PAGE_URL_FIELDS {
        if let Some(Value::String(url)) = obj.get_mut(field) {
            changed |= rewrite_one(url, public, partner_prefix);
        }
    }
    if let Some(Value::Array(links)) = obj.get_mut("links") {
        for link in links {
            if let Some(Value::String(url)) = link.get_mut("url") {
                changed |= rewrite_one(url, public, partner_prefix);
            }
        }
    }
    if !changed {
        return Ok(Bytes::copy_from_slice(body));
    }
    serde_json::to_vec(&v)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

/// Replaces the origin of an absolute http(s) URL; relative or odd values stay.
fn rewrite_one(url: &mut String, public: &BaseUrl, partner_prefix: &str) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
        return false;
    }
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let pq = pq
        .strip_prefix(partner_prefix)
        .filter(|rest| rest.starts_with('/'))
        .unwrap_or(pq);
    let new = public.join(pq);
    if new == *url {
        return false;
    }
    *url = new;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encore_documented_shapes() {
        assert_eq!(
            check_encore(br#"{"success":true,"offer":null}"#),
            Ok(OfferResult::NoOffer)
        );
        assert_eq!(
            check_encore(br#"{"success":true,"offer":{"clickUrl":"https://link.encorekit.com/a","title":"t"}}"#),
            Ok(OfferResult::Offer)
        );
        assert_eq!(
            check_encore(br#"{"offer":{"title":"\u00e9","clickUrl":"https:\/\/l.test\/a"},"success":true,"extra":[1,{}]}"#),
            Ok(OfferResult::Offer),
            "escapes, key order and unknown fields"
        );
        for bad in [
            &b"{\"success\":tru"[..],
            b"[]",
            b"{\"success\":false,\"offer\":null}",
            b"{\"success\":true}",
            b"{\"success\":true,\"offer\":{}}",
            b"{\"success\":true,\"offer\":{\"clickUrl\":\"\"}}",
            b"{\"success\":true,\"offer\":[]}",
            b"{\"success\":\"true\",\"offer\":null}",
            b"<html>",
        ] {
            assert!(
                check_encore(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn rewrites_every_page_url_and_nothing_else() {
        let public = BaseUrl::parse("https://gw.example:8443/og").unwrap();
        let body = br#"{"current_page":1,"data":[{"message":"see http://besitos-service.test/x"}],
            "first_page_url":"http://besitos-service.test/data/messages/p/upcoming-goals?page=1",
            "next_page_url":"http://besitos-service.test/data/messages/p/upcoming-goals?page=2",
            "prev_page_url":null,
            "last_page_url":"https://wall.besitos.ai/data/messages/p/upcoming-goals?page=9",
            "path":"http://besitos-service.test/data/messages/p/upcoming-goals",
            "links":[{"url":null,"label":"prev"},{"url":"http://besitos-service.test/data/messages/p/upcoming-goals?page=1","label":"1"}],
            "per_page":"2"}"#;
        let out = rewrite_besitos(body, &public, "").unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let base = "https://gw.example:8443/og/data/messages/p/upcoming-goals";
        assert_eq!(v["first_page_url"], format!("{base}?page=1"));
        assert_eq!(v["next_page_url"], format!("{base}?page=2"));
        assert_eq!(v["prev_page_url"], Value::Null);
        assert_eq!(v["last_page_url"], format!("{base}?page=9"));
        assert_eq!(v["path"], base);
        assert_eq!(v["links"][0]["url"], Value::Null);
        assert_eq!(v["links"][1]["url"], format!("{base}?page=1"));
        assert_eq!(v["data"][0]["message"], "see http://besitos-service.test/x");
        assert_eq!(v["per_page"], "2");
        // key order is kept
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys[0], "current_page");
        assert_eq!(keys[1], "data");
    }

    #[test]
    fn strips_the_partner_prefix() {
        let public = BaseUrl::parse("http://127.0.0.1:8787").unwrap();
        let body =
            br#"{"data":[],"path":"https://wall.besitos.ai/v2/data/messages/p/upcoming-goals"}"#;
        let v: Value =
            serde_json::from_slice(&rewrite_besitos(body, &public, "/v2").unwrap()).unwrap();
        assert_eq!(
            v["path"],
            "http://127.0.0.1:8787/data/messages/p/upcoming-goals"
        );
    }

    #[test]
    fn refuses_undocumented_besitos_bodies() {
        let public = BaseUrl::parse("http://127.0.0.1:1").unwrap();
        for bad in [&b"{\"data\":{}}"[..], b"{}", b"not json", b"[]"] {
            assert!(rewrite_besitos(bad, &public, "").is_err());
        }
    }
}
