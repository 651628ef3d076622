//! Local validation of both request bodies, so a malformed call is answered 400
//! at once, names the field to fix, and never spends partner quota.
//!
//! Only the fields the partner docs name are checked; unknown extra fields are left
//! alone and forwarded untouched (the body bytes are never re-encoded).

mod bcp47;
mod country;
mod host;

pub use bcp47::is_well_formed as is_bcp47;
pub use country::is_iso3166_alpha2;
pub use host::host_of;

use std::sync::Arc;

use crate::call::json::{Json, Object};

use crate::call::error::GatewayError;
use crate::call::route::Route;

/// Longest `clientId` / `chatId` accepted, in characters.
pub const MAX_ID_CHARS: usize = 256;

/// What validation learned that later layers need, so the body is parsed once.
#[derive(Debug, Default, PartialEq)]
pub struct Checked<'a> {
    /// Encore's `clientId`: the operator the per-caller rate limit is keyed by.
    pub client_id: Option<Arc<str>>,
    /// The parsed body (`None`: no body), for the request fingerprint.
    pub json: Option<Json<'a>>,
}

impl Checked<'_> {
    /// Encore's `chatId` (with `clientId`, the thread the cap counts).
    pub fn chat_id(&self) -> Option<&str> {
        match &self.json {
            Some(Json::Object(obj)) => obj.get("chatId").and_then(Json::as_str),
            _ => None,
        }
    }
}

/// Checks a body for `route`; `Ok` means it may be forwarded as it is.
pub fn check_body(route: Route, body: &[u8]) -> Result<Checked<'_>, GatewayError> {
    match route {
        Route::EncoreOffers => encore(body),
        Route::BesitosGoals => besitos(body),
    }
}

fn parse_object(body: &[u8]) -> Result<Object<'_>, GatewayError> {
    match Json::parse(body) {
        Ok(Json::Object(map)) => Ok(map),
        Ok(other) => Err(GatewayError::invalid(
            "body",
            format!("must be a JSON object, not {}", other.kind()),
        )),
        Err(e) => Err(GatewayError::invalid(
            "body",
            format!("is not valid JSON: {e}"),
        )),
    }
}

fn required_id(obj: &Object<'_>, field: &str) -> Result<(), GatewayError> {
    match obj.get(field) {
        None | Some(Json::Null) => Err(GatewayError::invalid(field, "is required")),
        Some(Json::String(s)) if s.is_empty() => {
            Err(GatewayError::invalid(field, "must not be empty"))
        }
        // Characters are never more than bytes: most ids are counted by length alone.
        Some(Json::String(s)) if s.len() > MAX_ID_CHARS && s.chars().count() > MAX_ID_CHARS => Err(
            GatewayError::invalid(field, format!("is longer than {MAX_ID_CHARS} characters")),
        ),
        Some(Json::String(_)) => Ok(()),
        Some(other) => Err(GatewayError::invalid(
            field,
            format!("must be a string, not {}", other.kind()),
        )),
    }
}

/// `obj[key]` as a string; `field` is its full name, for the error.
fn required_str<'a>(obj: &'a Object<'_>, key: &str, field: &str) -> Result<&'a str, GatewayError> {
    match obj.get(key) {
        None | Some(Json::Null) => Err(GatewayError::invalid(field, "is required")),
        Some(Json::String(s)) => Ok(s),
        Some(other) => Err(GatewayError::invalid(
            field,
            format!("must be a string, not {}", other.kind()),
        )),
    }
}

/// Encore: `clientId`, `chatId`, `attributes.{countryCode,language,platform}`.
fn encore(body: &[u8]) -> Result<Checked<'_>, GatewayError> {
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

/// Besitos: every filter optional; an empty body asks for everything.
fn besitos(body: &[u8]) -> Result<Checked<'_>, GatewayError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Checked::default());
    }
    let obj = parse_object(body)?;
    for field in ["subscribers", "offers"] {
        match obj.get(field) {
            None | Some(Json::Null) => {}
            Some(Json::Array(items)) => {
                if let Some((i, bad)) = items
                    .iter()
                    .enumerate()
                    .find(|(_, v)| !matches!(v, Json::String(_)))
                {
                    return Err(GatewayError::invalid(
                        format!("{field}[{i}]"),
                        format!("must be a string, not {}", bad.kind()),
                    ));
                }
            }
            Some(other) => {
                return Err(GatewayError::invalid(
                    field,
                    format!("must be an array of strings, not {}", other.kind()),
                ))
            }
        }
    }
    let hours = |field: &str| -> Result<Option<u64>, GatewayError> {
        match obj.get(field) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
                GatewayError::invalid(field, format!("must be a non-negative integer, not {n}"))
            }),
            Some(other) => Err(GatewayError::invalid(
                field,
                format!("must be a non-negative integer, not {}", other.kind()),
            )),
        }
    };
    let from = hours("hours_from")?;
    let to = hours("hours_to")?;
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return Err(GatewayError::invalid(
                "hours_from",
                format!("({f}) must not be greater than hours_to ({t})"),
            ));
        }
    }
    match obj.get("message_template") {
        None | Some(Json::Null) | Some(Json::String(_)) => Ok(Checked {
            client_id: None,
            json: Some(Json::Object(obj)),
        }),
        Some(other) => Err(GatewayError::invalid(
            "message_template",
            format!("must be a string, not {}", other.kind()),
        )),
    }
}

/// Echoing caller input into an error is useful; echoing 60 KiB of it is not.
fn clip(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(MAX).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(r: Result<Checked<'_>, GatewayError>) -> String {
        match r {
            Err(GatewayError::InvalidRequest { field, .. }) => field,
            other => panic!("expected invalid_request, got {other:?}"),
        }
    }

    const GOOD: &str = r#"{"clientId":"client-42","chatId":"8b3f","attributes":{"countryCode":"US","language":"en","platform":"ios"},"extra":{"kept":true}}"#;

    #[test]
    fn encore_accepts_the_documented_body() {
        let checked = check_body(Route::EncoreOffers, GOOD.as_bytes()).unwrap();
        assert_eq!(checked.client_id.as_deref(), Some("client-42"));
    }

    #[test]
    fn encore_names_the_bad_field() {
        let cases = [
            (GOOD.replace(r#""clientId":"client-42","#, ""), "clientId"),
            (GOOD.replace(r#""client-42""#, r#""""#), "clientId"),
            (GOOD.replace(r#""client-42""#, "42"), "clientId"),
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
            assert_eq!(
                field_of(check_body(Route::EncoreOffers, body.as_bytes())),
                field,
                "{body}"
            );
        }
        // 256 characters (not bytes) is the limit.
        let ok = GOOD.replace(r#""8b3f""#, &format!("\"{}\"", "é".repeat(256)));
        assert!(check_body(Route::EncoreOffers, ok.as_bytes()).is_ok());
    }

    #[test]
    fn besitos_filters() {
        for ok in [
            "",
            "  ",
            "{}",
            r#"{"subscribers":["a"],"offers":[],"hours_from":0,"hours_to":48,"message_template":"{hours}"}"#,
        ] {
            assert!(
                check_body(Route::BesitosGoals, ok.as_bytes()).is_ok(),
                "{ok}"
            );
        }
        for (body, field) in [
            (r#"{"subscribers":"a"}"#, "subscribers"),
            (r#"{"offers":[1]}"#, "offers[0]"),
            (r#"{"hours_from":-1}"#, "hours_from"),
            (r#"{"hours_to":1.5}"#, "hours_to"),
            (r#"{"hours_to":"3"}"#, "hours_to"),
            (r#"{"hours_from":50,"hours_to":10}"#, "hours_from"),
            (r#"{"message_template":5}"#, "message_template"),
            ("null", "body"),
        ] {
            assert_eq!(
                field_of(check_body(Route::BesitosGoals, body.as_bytes())),
                field,
                "{body}"
            );
        }
    }
}
