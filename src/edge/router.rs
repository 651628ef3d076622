//! Which handler a request on the proxy listener goes to, decided from the
//! request line alone, strictly: offergate is not an open proxy.
//!
//! Paths are compared byte for byte and never decoded, so `%2e%2e`, `//`, `..`,
//! a trailing `/` or any other spelling simply does not match and answers 404.
//! Absolute-form targets (`POST http://evil/...`) and `CONNECT` are refused
//! before any path is looked at.

use http::{Method, Uri};

use crate::call::error::{GatewayError, Refusal};
use crate::call::route::{OwnRoute, Target};
use crate::partners::{self, besitos, encore};

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Handler {
    /// A partner route: admission, the stack, the partner.
    Partner(Target),
    /// One of offergate's own routes (`/offergate/v1/...`), answered by
    /// its handler in `own_routes.rs` or `conversation.rs`.
    Own(OwnRoute),
}

/// The handler for a request line, or the refusal (404, 405, 400).
pub fn route(method: &Method, uri: &Uri) -> Result<Handler, GatewayError> {
    if uri.authority().is_none() {
        if let Some(own) = OwnRoute::ALL.into_iter().find(|r| r.path() == uri.path()) {
            return Ok(Handler::Own(own));
        }
    }
    match_target(method, uri).map(Handler::Partner)
}

/// Matches a request line against the partner routes.
pub fn match_target(method: &Method, uri: &Uri) -> Result<Target, GatewayError> {
    let not_allowed = GatewayError::Refused(Refusal::MethodNotAllowed { allow: "POST" });
    let not_found = || {
        GatewayError::Refused(Refusal::NotFound {
            serves: partners::SERVED,
        })
    };
    if method == Method::CONNECT {
        return Err(not_allowed);
    }
    if uri.scheme().is_some() || uri.authority().is_some() {
        return Err(GatewayError::Refused(Refusal::InvalidTarget));
    }
    let path = uri.path();
    let besitos = besitos::partner_in(path);
    if path != encore::PATH && besitos.is_none() {
        return Err(not_found());
    }
    if let Some(None) = besitos {
        return Err(not_found());
    }
    if method != Method::POST {
        return Err(not_allowed);
    }
    let query = uri.query().filter(|q| !q.is_empty());
    match besitos {
        Some(Some(id)) => Ok(Target::Besitos {
            partner_id: id.to_string(),
            page: besitos::page_of(query)?,
        }),
        _ => match query.and_then(|q| q.split('&').find(|p| !p.is_empty())) {
            Some(pair) => Err(GatewayError::invalid(
                "query",
                format!(
                    "unknown query parameter `{}`; this route takes no query parameters",
                    pair.split_once('=').map_or(pair, |(name, _)| name)
                ),
            )),
            None => Ok(Target::Encore),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENCORE_PATH: &str = encore::PATH;

    fn m(method: Method, target: &str) -> Result<Target, GatewayError> {
        match_target(&method, &target.parse::<Uri>().unwrap())
    }

    /// A 404 names every route the listener serves.
    #[test]
    fn the_not_found_message_names_every_route() {
        for own in OwnRoute::ALL {
            assert!(partners::SERVED.contains(own.path()), "{}", own.path());
        }
        assert!(partners::SERVED.contains("/encore/publisher/sdk/v1/offers/message"));
        assert!(partners::SERVED.contains("/data/messages/{partner_id}/upcoming-goals"));
    }

    #[test]
    fn matches_the_two_routes() {
        let t = m(Method::POST, ENCORE_PATH).unwrap();
        assert_eq!(t, Target::Encore);
        let t = m(
            Method::POST,
            "/data/messages/eafLst9T/upcoming-goals?page=3",
        )
        .unwrap();
        assert_eq!(t.partner_id(), Some("eafLst9T"));
        assert_eq!(t.page(), Some(3));
        assert_eq!(
            partners::path_and_query(&t),
            "/data/messages/eafLst9T/upcoming-goals?page=3"
        );
    }

    #[test]
    fn refuses_everything_else() {
        for target in [
            "/",
            "/encore/publisher/sdk/v1/offers/message/",
            "/encore/publisher/sdk/v1/offers/%6dessage",
            "//encore/publisher/sdk/v1/offers/message",
            "/encore/publisher/sdk/v1/offers/../offers/message",
            "/data/messages/../upcoming-goals",
            "/data/messages/a%2Fb/upcoming-goals",
            "/data/messages//upcoming-goals",
            "/data/messages/a/b/upcoming-goals",
            "/data/messages/../../admin/upcoming-goals",
        ] {
            assert!(
                matches!(
                    m(Method::POST, target),
                    Err(GatewayError::Refused(Refusal::NotFound { .. }))
                ),
                "{target}"
            );
        }
        assert!(matches!(
            m(Method::GET, ENCORE_PATH),
            Err(GatewayError::Refused(Refusal::MethodNotAllowed { .. }))
        ));
        assert!(matches!(
            m(Method::GET, "/nope"),
            Err(GatewayError::Refused(Refusal::NotFound { .. }))
        ));
        assert!(matches!(
            m(
                Method::POST,
                "http://evil.example/encore/publisher/sdk/v1/offers/message"
            ),
            Err(GatewayError::Refused(Refusal::InvalidTarget))
        ));
        assert!(matches!(
            m(Method::CONNECT, "evil.example:443"),
            Err(GatewayError::Refused(Refusal::MethodNotAllowed { .. }))
        ));
    }

    #[test]
    fn query_rules() {
        assert!(m(Method::POST, &format!("{ENCORE_PATH}?x=1")).is_err());
        assert!(m(Method::POST, &format!("{ENCORE_PATH}?")).is_ok());
        for bad in [
            "page=0",
            "page=-1",
            "page=abc",
            "page=1&page=2",
            "page=+1",
            "per_page=5",
            "page=99999999999",
        ] {
            let r = m(
                Method::POST,
                &format!("/data/messages/p/upcoming-goals?{bad}"),
            );
            assert!(
                matches!(
                    r,
                    Err(GatewayError::Refused(Refusal::InvalidRequest { .. }))
                ),
                "{bad}"
            );
        }
    }
}
