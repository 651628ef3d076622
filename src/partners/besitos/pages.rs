//! A Besitos 200 is a Laravel paginator whose page URLs point at the
//! partner's host; they are rewritten onto offergate's public base URL, so a
//! caller that follows `next_page_url` stays behind the gateway. Other URLs
//! are left alone.

use crate::call::problem::Problem;
use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::call::base_url::BaseUrl;
use crate::call::json::{write_string, Members};

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
///
/// Only the top level is parsed: `data` (the bulk of a page) and every member
/// not rewritten are copied as the partner wrote them, where parsing the
/// whole page into a `Value` and writing it out again cost ~26 k instructions
/// and ~35 allocations a call (callgrind).
pub fn rewrite_answer(
    body: &[u8],
    public: &BaseUrl,
    partner_prefix: &str,
) -> Result<Bytes, Problem> {
    let Members(members) = crate::call::json::from_bytes(body)
        .map_err(|e| Problem(format!("not a JSON object: {e}")))?;
    // A key twice: the caller's parser and ours might read different pages.
    for (i, (key, _)) in members.iter().enumerate() {
        if members[..i].iter().any(|(k, _)| k == key) {
            return Err(Problem(format!("the key `{key}` appears twice")));
        }
    }
    let is_array = |raw: &RawValue| raw.get().starts_with('[');
    if !members.iter().any(|(k, v)| k == "data" && is_array(v)) {
        return Err("`data` is missing or not an array".into());
    }
    // The new text of each member whose URLs moved.
    let rewritten: Vec<Option<String>> = members
        .iter()
        .map(|(key, raw)| {
            if PAGE_URL_FIELDS.contains(&key.as_ref()) {
                rewrite_url_value(raw, public, partner_prefix)
            } else if key == "links" && is_array(raw) {
                rewrite_links(raw, public, partner_prefix)
            } else {
                None
            }
        })
        .collect();
    let moved = rewritten.iter().flatten().count();
    if moved == 0 {
        return Ok(Bytes::copy_from_slice(body));
    }
    let mut out = Vec::with_capacity(body.len() + 64 * moved);
    out.push(b'{');
    for (i, ((key, raw), new)) in members.iter().zip(&rewritten).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(key, &mut out);
        out.push(b':');
        let text = new.as_deref().unwrap_or(raw.get());
        out.extend_from_slice(text.as_bytes());
    }
    out.push(b'}');
    Ok(Bytes::from(out))
}

/// A page-URL member's new JSON text, if it is a URL that moves.
fn rewrite_url_value(raw: &RawValue, public: &BaseUrl, partner_prefix: &str) -> Option<String> {
    // Not a string (`null` on the first or last page): nothing to rewrite, and
    // no error value made to find that out.
    if !raw.get().starts_with('"') {
        return None;
    }
    let mut url: String = serde_json::from_str(raw.get()).ok()?;
    match rewrite_one(&mut url, public, partner_prefix) {
        Page::Moved => Some(Value::String(url).to_string()),
        Page::Stays => None,
        Page::NotALink => Some("null".to_string()),
    }
}

/// `links` with each `url` rewritten, as JSON text, if any moved. Small: a
/// `Value` is fine here.
fn rewrite_links(raw: &RawValue, public: &BaseUrl, partner_prefix: &str) -> Option<String> {
    let mut links: Value = serde_json::from_str(raw.get()).ok()?;
    let mut changed = false;
    for link in links.as_array_mut()? {
        if let Some(slot) = link.get_mut("url") {
            if let Value::String(url) = slot {
                match rewrite_one(url, public, partner_prefix) {
                    Page::Moved => changed = true,
                    Page::Stays => {}
                    Page::NotALink => {
                        *slot = Value::Null;
                        changed = true;
                    }
                }
            }
        }
    }
    changed.then(|| links.to_string())
}

/// What becomes of one page URL.
enum Page {
    /// An absolute http(s) URL, now on offergate's public base URL.
    Moved,
    /// A path on the host the caller used (offergate's), or already ours.
    Stays,
    /// Not a page of the partner's a caller may follow (`javascript:`,
    /// `//elsewhere`, `data:`): never passed on as a link.
    NotALink,
}

/// Moves an absolute http(s) URL onto `public`; a path stays; anything
/// else is not a link.
fn rewrite_one(url: &mut String, public: &BaseUrl, partner_prefix: &str) -> Page {
    let is_path = url.starts_with('/') && !url.starts_with("//") && !url.contains('\\');
    let Ok(uri) = url.parse::<http::Uri>() else {
        return Page::NotALink;
    };
    if uri.scheme().is_none() && is_path {
        return Page::Stays;
    }
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
        return Page::NotALink;
    }
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let pq = pq
        .strip_prefix(partner_prefix)
        .filter(|rest| rest.starts_with('/'))
        .unwrap_or(pq);
    let new = public.join(pq);
    if new == *url {
        return Page::Stays;
    }
    *url = new;
    Page::Moved
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let out = rewrite_answer(body, &public, "").unwrap();
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
    fn page_urls_that_are_not_links_of_the_partners_are_dropped_and_keys_are_unique() {
        let public = BaseUrl::parse("http://gw.test").unwrap();
        let body = br#"{"data":[],"next_page_url":"javascript:alert(1)","prev_page_url":"//evil.example/x","first_page_url":"data:text/html,x","path":"/data/messages/p/upcoming-goals","links":[{"url":"javascript:x","label":"1"}]}"#;
        let v: Value = serde_json::from_slice(&rewrite_answer(body, &public, "").unwrap()).unwrap();
        assert_eq!(v["next_page_url"], Value::Null);
        assert_eq!(v["prev_page_url"], Value::Null);
        assert_eq!(v["first_page_url"], Value::Null);
        assert_eq!(v["path"], "/data/messages/p/upcoming-goals");
        assert_eq!(v["links"][0]["url"], Value::Null);
        assert_eq!(v["links"][0]["label"], "1");
        let twice = br#"{"data":[],"data":[{"message":"other"}]}"#;
        assert!(rewrite_answer(twice, &public, "")
            .unwrap_err()
            .contains("twice"));
    }

    #[test]
    fn strips_the_partner_prefix() {
        let public = BaseUrl::parse("http://127.0.0.1:8787").unwrap();
        let body =
            br#"{"data":[],"path":"https://wall.besitos.ai/v2/data/messages/p/upcoming-goals"}"#;
        let v: Value =
            serde_json::from_slice(&rewrite_answer(body, &public, "/v2").unwrap()).unwrap();
        assert_eq!(
            v["path"],
            "http://127.0.0.1:8787/data/messages/p/upcoming-goals"
        );
    }

    #[test]
    fn refuses_undocumented_besitos_bodies() {
        let public = BaseUrl::parse("http://127.0.0.1:1").unwrap();
        for bad in [
            &b"{\"data\":{}}"[..],
            b"{}",
            b"not json",
            b"[]",
            b"{\"data\":[1,]}",
            b"{\"data\":[]} trailing",
            b"{\"data\":[],\"path\":\"http://x.test/p\"",
        ] {
            assert!(
                rewrite_answer(bad, &public, "").is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn members_not_rewritten_are_copied_as_the_partner_wrote_them() {
        let public = BaseUrl::parse("http://gw.test").unwrap();
        let data = r#"[ {"n": 1.50e2, "m": "caf\u00e9 \"q\""} ]"#;
        let body = format!(
            r#"{{"data": {data}, "esc\u0061ped": true, "path": "http://p.test/data/messages/p/upcoming-goals"}}"#
        );
        let out = rewrite_answer(body.as_bytes(), &public, "").unwrap();
        let out = std::str::from_utf8(&out).unwrap();
        assert!(out.contains(&format!(r#""data":{data}"#)), "{out}");
        assert!(out.contains(r#""escaped":true"#), "{out}");
        assert!(
            out.contains(r#""path":"http://gw.test/data/messages/p/upcoming-goals""#),
            "{out}"
        );
        // A page whose URLs stay is returned byte for byte.
        let relative = br#"{"data": [], "path": "/data/messages/p/upcoming-goals"}"#;
        assert_eq!(
            &rewrite_answer(relative, &public, "").unwrap()[..],
            &relative[..]
        );
    }
}
