//! Besitos, the goals partner: `POST /data/messages/{partner_id}/upcoming-goals`
//! with an optional `page` (offergate serves the same path), a body of
//! optional filters, a Bearer token per partner id, a 200 that is a Laravel
//! paginator whose page URLs are rewritten onto offergate's public base URL,
//! and an empty page as the soft fallback. A call spends the fair share of
//! its `partner_id`.

use crate::call::problem::Problem;
use bytes::Bytes;

mod pages;

pub use pages::rewrite_answer;

use super::fields::parse_object;
use super::Checked;
use crate::call::base_url::BaseUrl;
use crate::call::error::GatewayError;
use crate::call::json::Json;

/// Laravel's default page size; the partner's own is not known to a fallback.
const FALLBACK_PER_PAGE: &str = "15";

/// The route's path is `PREFIX` + partner id + `SUFFIX`.
pub const PREFIX: &str = "/data/messages/";
pub const SUFFIX: &str = "/upcoming-goals";

/// `/data/messages/{id}/upcoming-goals`.
pub fn path(partner_id: &str) -> String {
    let mut s = String::with_capacity(PREFIX.len() + partner_id.len() + SUFFIX.len() + 12);
    s.push_str(PREFIX);
    s.push_str(partner_id);
    s.push_str(SUFFIX);
    s
}

/// Partner ids are short opaque tokens (`eafLst9T`); anything else is refused so a
/// path segment can never smuggle `..`, `/` or encoded bytes.
pub fn check_partner_id(id: &str) -> Result<(), Problem> {
    if id.is_empty() || id.len() > 64 {
        return Err(format!("`{id}` must be 1 to 64 characters").into());
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!("`{id}` may only hold letters, digits, `_` and `-`").into());
    }
    Ok(())
}

/// The partner id a path names, if it is this partner's route: `Some(Err)`
/// for an id that cannot be one (it answers 404 like any unknown path).
pub fn partner_in(path: &str) -> Option<Option<&str>> {
    let id = path.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    Some(check_partner_id(id).is_ok().then_some(id))
}

/// The path and query to send to the partner (the same as ours, by design).
pub fn path_and_query(partner_id: &str, page: Option<u32>) -> String {
    let mut s = path(partner_id);
    if let Some(page) = page {
        s.push_str("?page=");
        s.push_str(&page.to_string());
    }
    s
}

/// The `page` of a query, the only parameter this route accepts.
pub fn page_of(query: Option<&str>) -> Result<Option<u32>, GatewayError> {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Ok(None);
    };
    let mut page = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != "page" {
            return Err(GatewayError::invalid(
                "query",
                format!(
                    "unknown query parameter `{name}`; the only query parameter accepted is `page`"
                ),
            ));
        }
        if page.is_some() {
            return Err(GatewayError::invalid("query.page", "given more than once"));
        }
        let n = value
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=1_000_000).contains(n) && value.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                GatewayError::invalid(
                    "query.page",
                    format!("`{value}` is not a page number from 1 to 1000000"),
                )
            })?;
        page = Some(n);
    }
    Ok(page)
}

/// Checks a goals request body: every filter optional; an empty body asks
/// for everything.
pub fn check_body(body: &[u8]) -> Result<Checked<'_>, GatewayError> {
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
            json: Some(Json::Object(obj)),
            ..Checked::default()
        }),
        Some(other) => Err(GatewayError::invalid(
            "message_template",
            format!("must be a string, not {}", other.kind()),
        )),
    }
}

/// The soft fallback: an empty page of `partner_id` at `page`, every
/// paginator field present, its URLs on `public`.
pub fn empty_page(partner_id: &str, page: Option<u32>, public: &BaseUrl) -> Bytes {
    let path = public.join(&path(partner_id));
    let page = serde_json::json!({
        "current_page": page.unwrap_or(1),
        "data": [],
        "first_page_url": format!("{path}?page=1"),
        "from": null,
        "next_page_url": null,
        "path": path,
        "per_page": FALLBACK_PER_PAGE,
        "prev_page_url": null,
        "to": null,
    });
    Bytes::from(page.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partners::fields::refused_field as field_of;

    #[test]
    fn besitos_filters() {
        for ok in [
            "",
            "  ",
            "{}",
            r#"{"subscribers":["a"],"offers":[],"hours_from":0,"hours_to":48,"message_template":"{hours}"}"#,
        ] {
            assert!(check_body(ok.as_bytes()).is_ok(), "{ok}");
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
            assert_eq!(field_of(check_body(body.as_bytes())), field, "{body}");
        }
    }
}
