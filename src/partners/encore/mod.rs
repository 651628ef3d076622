//! Encore, the offers partner: its one endpoint (`POST` [`PATH`], served by
//! offergate on the same path), the body it takes (`clientId`, `chatId`,
//! `attributes.{countryCode,language,platform}`), its credential
//! (`X-API-Key`), what its 200 must be, and the "nothing for you" answer
//! offergate gives in its name. A call spends the fair share of its
//! `clientId`.

mod bcp47;
pub mod chat_id;
pub mod compose;
mod country;
pub mod links;
pub mod words;

pub use bcp47::is_well_formed as is_bcp47;
pub use country::is_iso3166_alpha2;

use crate::call::problem::Problem;
use std::borrow::Cow;
use std::sync::Arc;

use http::HeaderName;
use serde::Deserialize;

use super::fields::{clip, parse_object, required_id, required_str};
use super::Checked;
use crate::call::error::GatewayError;
use crate::call::json::Json;
use links::LinkKey;

/// The path Encore serves its one endpoint on; offergate serves the same.
pub const PATH: &str = "/encore/publisher/sdk/v1/offers/message";

/// Where Encore's short links live: an offer's `clickUrl` must be an https
/// URL on this host (`[encore] offer_link_host` for a sandbox's).
pub const LINK_HOST: &str = "link.encorekit.com";

/// The header Encore's publishable key travels in.
pub static API_KEY_HEADER: HeaderName = HeaderName::from_static("x-api-key");

/// The partner's own "nothing for you", which callers already handle: the
/// soft fallback's body.
pub const NO_OFFER: &[u8] = br#"{"success":true,"offer":null}"#;

/// Checks an offers request body: `clientId`, `chatId`,
/// `attributes.{countryCode,language,platform}`.
pub fn check_body(body: &[u8]) -> Result<Checked<'_>, GatewayError> {
    let obj = parse_object(body)?;
    required_id(&obj, "clientId")?;
    let client_id = obj.get("clientId").and_then(Json::as_str).map(Arc::from);
    required_id(&obj, "chatId")?;
    let attrs = match obj.get("attributes") {
        None | Some(Json::Null) => return Err(GatewayError::invalid("attributes", "is required")),
        Some(Json::Object(a)) => a,
        Some(other) => {
            return Err(GatewayError::invalid(
                "attributes",
                format!("must be an object, not {}", other.kind()),
            ))
        }
    };
    let country = required_str(attrs, "countryCode", "attributes.countryCode")?;
    if !is_iso3166_alpha2(country) {
        return Err(GatewayError::invalid(
            "attributes.countryCode",
            format!(
                "`{}` is not an ISO 3166-1 alpha-2 code (two uppercase letters, e.g. US)",
                clip(country)
            ),
        ));
    }
    let language = required_str(attrs, "language", "attributes.language")?;
    if !is_bcp47(language) {
        return Err(GatewayError::invalid(
            "attributes.language",
            format!(
                "`{}` is not a well-formed BCP-47 tag (e.g. en, es-419, zh-Hant-TW)",
                clip(language)
            ),
        ));
    }
    let platform = required_str(attrs, "platform", "attributes.platform")?;
    if !matches!(platform, "android" | "ios" | "web") {
        return Err(GatewayError::invalid(
            "attributes.platform",
            format!("`{}` is not one of android, ios, web", clip(platform)),
        ));
    }
    Ok(Checked {
        client_id,
        json: Some(Json::Object(obj)),
    })
}

/// The parts of an Encore 200 that are checked. Borrowed and typed, not a
/// `Value`: every forwarded answer passes here, and fields not named are
/// skipped without allocating. `O` is what is read of the offer.
#[derive(Deserialize)]
#[serde(bound(deserialize = "O: Deserialize<'de>"))]
struct EncoreAnswer<O> {
    success: bool,
    /// Required, may be null: `deserialize_with` turns off serde's "a missing
    /// `Option` is `None`".
    #[serde(deserialize_with = "present")]
    offer: Option<O>,
}

/// What the check reads of an offer: its link, borrowed.
#[derive(Deserialize)]
struct OfferHead<'a> {
    #[serde(rename = "clickUrl", borrow)]
    click_url: Cow<'a, str>,
}

/// What a composed message reads of an offer (read only when one is asked:
/// serde copies an optional string).
#[derive(Deserialize, Debug)]
pub struct OfferText {
    #[serde(rename = "clickUrl")]
    pub click_url: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub perk: Option<String>,
}

fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

/// Checks an Encore 200: `{"success":true,"offer":null|{"clickUrl":"...",...}}`,
/// its `clickUrl` an https URL on `link_host`. The offer's link, if any.
pub fn check_answer(body: &[u8], link_host: &str) -> Result<Option<LinkKey>, Problem> {
    let offer: Option<OfferHead> = read(body, |o: &OfferHead| check_link(&o.click_url, link_host))?;
    Ok(offer.map(|o| links::key_of_offer(&o.click_url, link_host)))
}

/// [`check_answer`], keeping what a composed message needs of the offer:
/// one read for both.
pub fn read_offer(body: &[u8], link_host: &str) -> Result<Option<OfferText>, Problem> {
    read(body, |o: &OfferText| check_link(&o.click_url, link_host))
}

fn read<'a, O: Deserialize<'a>>(
    body: &'a [u8],
    link_of: impl Fn(&O) -> Result<(), Problem>,
) -> Result<Option<O>, Problem> {
    let answer: EncoreAnswer<O> = crate::call::json::from_bytes(body)
        .map_err(|e| Problem(format!("not the documented JSON: {e}")))?;
    if !answer.success {
        return Err("`success` is not true".into());
    }
    if let Some(offer) = &answer.offer {
        link_of(offer)?;
    }
    Ok(answer.offer)
}

/// The longest offer link taken (Encore's short links are a few dozen).
pub const MAX_LINK_CHARS: usize = 200;

/// A link an end user will tap, and a plain short link: `https://` +
/// exactly `host` (no user info, no port) + a path of URL-safe characters
/// (letters, digits, `-._~/`), no query, no fragment, at most
/// [`MAX_LINK_CHARS`]. Anything else (`javascript:`, another host, a
/// look-alike, markup or a long tail in the path) makes the answer invalid:
/// the link goes into the text an end user is sent.
pub fn check_link(url: &str, host: &str) -> Result<(), Problem> {
    if url.is_empty() {
        return Err("`offer.clickUrl` is empty".into());
    }
    let bytes = url.as_bytes();
    let scheme_ok = bytes.len() > 8 && bytes[..8].eq_ignore_ascii_case(b"https://");
    // Every byte visible ASCII (a space or a control byte could hide the
    // real target), in one pass with no early exit; the authority runs to
    // the first `/`, `?` or `#`.
    let clean = bytes
        .iter()
        .fold(true, |ok, &b| ok & (b > 0x20) & (b < 0x7f));
    let rest = bytes.get(8..).unwrap_or_default();
    let authority_end = rest
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let path = &rest[authority_end..];
    let plain_path = path.len() > 1
        && path[0] == b'/'
        && path
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(b));
    if url.len() > MAX_LINK_CHARS {
        return Err(Problem(format!(
            "`offer.clickUrl` is longer than {MAX_LINK_CHARS} characters"
        )));
    }
    if scheme_ok && clean && plain_path && authority.eq_ignore_ascii_case(host.as_bytes()) {
        Ok(())
    } else {
        Err(Problem(format!(
            "`offer.clickUrl` is not a plain https link on {host} (a path of letters, digits and -._~/, no query)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partners::fields::refused_field as field_of;

    const GOOD: &str = r#"{"clientId":"client-42","chatId":"8b3f","attributes":{"countryCode":"US","language":"en","platform":"ios"},"extra":{"kept":true}}"#;

    #[test]
    fn encore_accepts_the_documented_body() {
        let checked = check_body(GOOD.as_bytes()).unwrap();
        assert_eq!(checked.client_id.as_deref(), Some("client-42"));
    }

    #[test]
    fn encore_names_the_bad_field() {
        let cases = [
            (GOOD.replace(r#""clientId":"client-42","#, ""), "clientId"),
            (GOOD.replace(r#""client-42""#, r#""""#), "clientId"),
            (GOOD.replace(r#""client-42""#, "42"), "clientId"),
            (GOOD.replace(r#""client-42""#, r#""X\u0000x""#), "clientId"),
            (GOOD.replace(r#""8b3f""#, r#""x\u0000chat""#), "chatId"),
            (GOOD.replace(r#""8b3f""#, r#""a\nb""#), "chatId"),
            (GOOD.replace(r#""8b3f""#, r#""a\u0085b""#), "chatId"),
            (
                GOOD.replace(r#""8b3f""#, &format!("\"{}\"", "c".repeat(257))),
                "chatId",
            ),
            (GOOD.replace(r#""US""#, r#""us""#), "attributes.countryCode"),
            (GOOD.replace(r#""US""#, r#""UK""#), "attributes.countryCode"),
            (GOOD.replace(r#""en""#, r#""en_US""#), "attributes.language"),
            (
                GOOD.replace(r#""ios""#, r#""windows""#),
                "attributes.platform",
            ),
            (
                GOOD.replace(r#","platform":"ios""#, ""),
                "attributes.platform",
            ),
            (r#"{"clientId":"a","chatId":"b"}"#.to_string(), "attributes"),
            (
                r#"{"clientId":"a","chatId":"b","attributes":[]}"#.to_string(),
                "attributes",
            ),
            ("[1,2]".to_string(), "body"),
            ("{not json".to_string(), "body"),
            ("".to_string(), "body"),
        ];
        for (body, field) in cases {
            assert_eq!(field_of(check_body(body.as_bytes())), field, "{body}");
        }
        // 256 characters (not bytes) is the limit.
        let ok = GOOD.replace(r#""8b3f""#, &format!("\"{}\"", "é".repeat(256)));
        assert!(check_body(ok.as_bytes()).is_ok());
    }

    #[test]
    fn encore_documented_shapes() {
        assert_eq!(
            check_answer(br#"{"success":true,"offer":null}"#, LINK_HOST),
            Ok(None)
        );
        assert_eq!(
            check_answer(br#"{"success":true,"offer":{"clickUrl":"https://link.encorekit.com/a","title":"t"}}"#, LINK_HOST),
            Ok(Some(links::key_of_offer("https://link.encorekit.com/a", LINK_HOST)))
        );
        assert_eq!(
            check_answer(br#"{"offer":{"title":"\u00e9","clickUrl":"https:\/\/link.encorekit.com\/a"},"success":true,"extra":[1,{}]}"#, LINK_HOST),
            Ok(Some(links::key_of_offer("https://link.encorekit.com/a", LINK_HOST))),
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
            br#"{"success":true,"offer":{"clickUrl":"javascript:alert(document.cookie)"}}"#,
            br#"{"success":true,"offer":{"clickUrl":"https://evil.example/phish"}}"#,
            br#"{"success":true,"offer":{"clickUrl":"http://link.encorekit.com/a"}}"#,
            br#"{"success":true,"offer":{"clickUrl":"https://link.encorekit.com@evil.example/a"}}"#,
            br#"{"success":true,"offer":{"clickUrl":"https://link.encorekit.com.evil.example/a"}}"#,
            br#"{"success":true,"offer":{"clickUrl":"https://link.encorekit.com:8443/a"}}"#,
            br#"{"success":true,"offer":{"clickUrl":"https://link.encorekit.com/a b"}}"#,
            br#"{"success":true,"offer":{"clickUrl":"//link.encorekit.com/a"}}"#,
        ] {
            assert!(
                check_answer(bad, LINK_HOST).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
