//! Reading a request body's fields, for both partners' rules: each helper
//! names the field it refuses, so a caller fixes it in one go.

use crate::call::error::GatewayError;
use crate::call::json::{Json, Object};

/// Longest `clientId` / `chatId` accepted, in characters.
pub const MAX_ID_CHARS: usize = 256;

pub fn parse_object(body: &[u8]) -> Result<Object<'_>, GatewayError> {
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

pub fn required_id(obj: &Object<'_>, field: &str) -> Result<(), GatewayError> {
    match obj.get(field) {
        None | Some(Json::Null) => Err(GatewayError::invalid(field, "is required")),
        Some(Json::String(s)) if s.is_empty() => {
            Err(GatewayError::invalid(field, "must not be empty"))
        }
        // Characters are never more than bytes: most ids are counted by length alone.
        Some(Json::String(s)) if s.len() > MAX_ID_CHARS && s.chars().count() > MAX_ID_CHARS => Err(
            GatewayError::invalid(field, format!("is longer than {MAX_ID_CHARS} characters")),
        ),
        // An id is a key (the thread cap's, the caller's bucket): a control
        // character (NUL among them) could make two ids read as one.
        Some(Json::String(s)) if has_control(s) => Err(GatewayError::invalid(
            field,
            "must not hold control characters (U+0000 to U+001F, U+007F to U+009F)",
        )),
        Some(Json::String(_)) => Ok(()),
        Some(other) => Err(GatewayError::invalid(
            field,
            format!("must be a string, not {}", other.kind()),
        )),
    }
}

/// Whether `s` holds a control character (C0, DEL or C1). By bytes: C0 and
/// DEL are single bytes, and C1 (U+0080 to U+009F) always starts with 0xC2.
fn has_control(s: &str) -> bool {
    // One pass with no early exit, which the compiler can vectorise: ids
    // are short, and nearly all are clean.
    let (c0, c1_lead) = s.as_bytes().iter().fold((false, false), |(c0, c1), &b| {
        (c0 | (b < 0x20) | (b == 0x7f), c1 | (b == 0xC2))
    });
    c0 || (c1_lead && s.chars().any(char::is_control))
}

/// `obj[key]` as a string; `field` is its full name, for the error.
pub fn required_str<'a>(
    obj: &'a Object<'_>,
    key: &str,
    field: &str,
) -> Result<&'a str, GatewayError> {
    match obj.get(key) {
        None | Some(Json::Null) => Err(GatewayError::invalid(field, "is required")),
        Some(Json::String(s)) => Ok(s),
        Some(other) => Err(GatewayError::invalid(
            field,
            format!("must be a string, not {}", other.kind()),
        )),
    }
}

/// Echoing caller input into an error is useful; echoing 60 KiB of it is not.
pub fn clip(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(MAX).collect::<String>())
    }
}

/// The field a refusal names: what the partners' tests compare.
#[cfg(test)]
pub fn refused_field(r: Result<super::Checked<'_>, GatewayError>) -> String {
    match r {
        Err(GatewayError::Refused(crate::call::error::Refusal::InvalidRequest {
            field, ..
        })) => field,
        other => panic!("expected invalid_request, got {other:?}"),
    }
}
