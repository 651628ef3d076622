//! The partners' own behaviour: which endpoint a request is for (matched
//! here, not with the gateway's router, so a routing bug in offergate cannot
//! be mirrored by its stand-in), the credential check, and the answer.

use bytes::Bytes;
use http::{header, HeaderMap, Method, StatusCode};
use serde_json::json;

use super::{besitos, encore, SimState};
use crate::call::route::Route;

fn answer(status: StatusCode, body: impl Into<Bytes>) -> (StatusCode, Bytes) {
    (status, body.into())
}

/// A partner endpoint, as the partner itself would route it. The simulator
/// matches paths on its own, not with the gateway's router, so a routing bug in
/// offergate cannot be mirrored here and hidden from the tests.
pub(super) struct PartnerTarget {
    pub(super) route: Route,
    partner_id: Option<String>,
    page: Option<u32>,
}

impl PartnerTarget {
    pub(super) fn parse(
        method: &Method,
        uri: &http::Uri,
    ) -> Result<PartnerTarget, (StatusCode, String)> {
        let not_found = || {
            (
                StatusCode::NOT_FOUND,
                format!("no endpoint at {}", uri.path()),
            )
        };
        let segments: Vec<&str> = uri.path().split('/').collect();
        let (route, partner_id) = match segments.as_slice() {
            ["", "encore", "publisher", "sdk", "v1", "offers", "message"] => {
                (Route::EncoreOffers, None)
            }
            ["", "data", "messages", id, "upcoming-goals"]
                if !id.is_empty()
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
            {
                (Route::BesitosGoals, Some(id.to_string()))
            }
            _ => return Err(not_found()),
        };
        if method != Method::POST {
            return Err((StatusCode::METHOD_NOT_ALLOWED, "POST only".into()));
        }
        let page = uri
            .query()
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|pair| pair.strip_prefix("page="))
            .map(|p| p.parse::<u32>())
            .transpose()
            .map_err(|_| (StatusCode::BAD_REQUEST, "page must be a number".to_string()))?;
        Ok(PartnerTarget {
            route,
            partner_id,
            page,
        })
    }
}

/// The partner's normal behaviour for a request.
pub(super) fn partner_answer(
    state: &SimState,
    headers: &HeaderMap,
    target: &PartnerTarget,
    body: &[u8],
) -> (StatusCode, Bytes) {
    match target.route {
        Route::EncoreOffers => {
            let key = headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let key_ok = match &state.config.encore_key {
                Some(expected) => key == expected,
                None => {
                    (key.starts_with("pk_test_") || key.starts_with("pk_live_")) && key.len() > 8
                }
            };
            if !key_ok || headers.get_all("x-api-key").iter().count() != 1 {
                return answer(
                    StatusCode::UNAUTHORIZED,
                    r#"{"success":false,"error":{"code":"unauthorized","message":"Missing or invalid X-API-Key."}}"#,
                );
            }
            match encore::check_request(body) {
                Ok((chat, country, platform)) => {
                    answer(StatusCode::OK, encore::answer(&chat, &country, &platform))
                }
                Err(msg) => answer(
                    StatusCode::BAD_REQUEST,
                    json!({"success": false, "error": {"code": "bad_request", "message": msg}})
                        .to_string(),
                ),
            }
        }
        Route::BesitosGoals => {
            let token = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            let token_ok = match &state.config.besitos_token {
                Some(expected) => token == expected,
                None => !token.trim().is_empty(),
            };
            if !token_ok || headers.get_all(header::AUTHORIZATION).iter().count() != 1 {
                return answer(
                    StatusCode::UNAUTHORIZED,
                    r#"{"message":"Unauthenticated."}"#,
                );
            }
            match besitos::parse_filters(body) {
                Ok(f) => {
                    let page = target.page.unwrap_or(1) as usize;
                    let partner = target.partner_id.as_deref().unwrap_or_default();
                    answer(
                        StatusCode::OK,
                        besitos::answer(&state.goals, &f, page, &state.origin, partner),
                    )
                }
                Err(msg) => answer(StatusCode::BAD_REQUEST, json!({"message": msg}).to_string()),
            }
        }
    }
}
