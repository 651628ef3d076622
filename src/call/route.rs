//! Which of the two partner routes a request is for, decided from the request
//! target alone, strictly: offergate is not an open proxy.
//!
//! Paths are compared byte for byte and never decoded, so `%2e%2e`, `//`, `..`,
//! a trailing `/` or any other spelling simply does not match and answers 404.
//! Absolute-form targets (`POST http://evil/...`) and `CONNECT` are refused before
//! any path is looked at.

use http::{Method, Uri};

use crate::call::error::GatewayError;

/// The partner routes offergate forwards. Also the bounded `route` metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    EncoreOffers,
    BesitosGoals,
}

impl Route {
    pub const ALL: [Route; 2] = [Route::EncoreOffers, Route::BesitosGoals];

    pub fn as_str(self) -> &'static str {
        match self {
            Route::EncoreOffers => "encore_offers",
            Route::BesitosGoals => "besitos_goals",
        }
    }

    /// Position in per-route arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn parse(s: &str) -> Option<Route> {
        Route::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// One value per route, indexed by [`Route`]: per-route config and state
/// without a map lookup on the hot path.
#[derive(Clone, Debug, Default)]
pub struct PerRoute<T>(pub [T; 2]);

impl<T> PerRoute<T> {
    pub fn new(mut make: impl FnMut(Route) -> T) -> PerRoute<T> {
        PerRoute(Route::ALL.map(&mut make))
    }

    pub fn get(&self, route: Route) -> &T {
        &self.0[route.index()]
    }
}

/// The path Encore serves its one endpoint on; offergate serves the same.
pub const ENCORE_PATH: &str = "/encore/publisher/sdk/v1/offers/message";
const BESITOS_PREFIX: &str = "/data/messages/";
const BESITOS_SUFFIX: &str = "/upcoming-goals";

/// A request target that passed the checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub route: Route,
    /// Besitos only.
    pub partner_id: Option<String>,
    /// Besitos `page` query parameter, the only query parameter accepted.
    pub page: Option<u32>,
}

impl Target {
    /// Path and query to send to the partner (same path as ours, by design).
    pub fn upstream_path_and_query(&self) -> String {
        match (self.route, &self.partner_id) {
            (Route::BesitosGoals, Some(id)) => {
                let mut s = besitos_path(id);
                if let Some(page) = self.page {
                    s.push_str("?page=");
                    s.push_str(&page.to_string());
                }
                s
            }
            _ => ENCORE_PATH.to_string(),
        }
    }
}

/// `/data/messages/{id}/upcoming-goals`.
pub fn besitos_path(partner_id: &str) -> String {
    let mut s =
        String::with_capacity(BESITOS_PREFIX.len() + partner_id.len() + BESITOS_SUFFIX.len() + 12);
    s.push_str(BESITOS_PREFIX);
    s.push_str(partner_id);
    s.push_str(BESITOS_SUFFIX);
    s
}

/// Partner ids are short opaque tokens (`eafLst9T`); anything else is refused so a
/// path segment can never smuggle `..`, `/` or encoded bytes.
pub fn check_partner_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 64 {
        return Err(format!("`{id}` must be 1 to 64 characters"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!("`{id}` may only hold letters, digits, `_` and `-`"));
    }
    Ok(())
}

/// What the proxy listener serves, for a 404's message.
pub const SERVED: &str =
    "POST /encore/publisher/sdk/v1/offers/message and POST /data/messages/{partner_id}/upcoming-goals";

/// Matches a request line against the two routes.
pub fn match_target(method: &Method, uri: &Uri) -> Result<Target, GatewayError> {
    let not_allowed = GatewayError::MethodNotAllowed { allow: "POST" };
    let not_found = || GatewayError::NotFound { serves: SERVED };
    if method == Method::CONNECT {
        return Err(not_allowed);
    }
    if uri.scheme().is_some() || uri.authority().is_some() {
        return Err(GatewayError::InvalidTarget);
    }
    let path = uri.path();
    let (route, partner_id) = if path == ENCORE_PATH {
        (Route::EncoreOffers, None)
    } else if let Some(id) = path
        .strip_prefix(BESITOS_PREFIX)
        .and_then(|rest| rest.strip_suffix(BESITOS_SUFFIX))
    {
        if check_partner_id(id).is_err() {
            return Err(not_found());
        }
        (Route::BesitosGoals, Some(id.to_string()))
    } else {
        return Err(not_found());
    };
    if method != Method::POST {
        return Err(not_allowed);
    }
    let page = parse_query(route, uri.query())?;
    Ok(Target {
        route,
        partner_id,
        page,
    })
}

fn parse_query(route: Route, query: Option<&str>) -> Result<Option<u32>, GatewayError> {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Ok(None);
    };
    let mut page = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if route != Route::BesitosGoals || name != "page" {
            let accepted = match route {
                Route::BesitosGoals => "the only query parameter accepted is `page`",
                Route::EncoreOffers => "this route takes no query parameters",
            };
            return Err(GatewayError::invalid(
                "query",
                format!("unknown query parameter `{name}`; {accepted}"),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn m(method: Method, target: &str) -> Result<Target, GatewayError> {
        match_target(&method, &target.parse::<Uri>().unwrap())
    }

    #[test]
    fn matches_the_two_routes() {
        let t = m(Method::POST, ENCORE_PATH).unwrap();
        assert_eq!(t.route, Route::EncoreOffers);
        let t = m(
            Method::POST,
            "/data/messages/eafLst9T/upcoming-goals?page=3",
        )
        .unwrap();
        assert_eq!(t.route, Route::BesitosGoals);
        assert_eq!(t.partner_id.as_deref(), Some("eafLst9T"));
        assert_eq!(t.page, Some(3));
        assert_eq!(
            t.upstream_path_and_query(),
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
                matches!(m(Method::POST, target), Err(GatewayError::NotFound { .. })),
                "{target}"
            );
        }
        assert!(matches!(
            m(Method::GET, ENCORE_PATH),
            Err(GatewayError::MethodNotAllowed { .. })
        ));
        assert!(matches!(
            m(Method::GET, "/nope"),
            Err(GatewayError::NotFound { .. })
        ));
        assert!(matches!(
            m(
                Method::POST,
                "http://evil.example/encore/publisher/sdk/v1/offers/message"
            ),
            Err(GatewayError::InvalidTarget)
        ));
        assert!(matches!(
            m(Method::CONNECT, "evil.example:443"),
            Err(GatewayError::MethodNotAllowed { .. })
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
                matches!(r, Err(GatewayError::InvalidRequest { .. })),
                "{bad}"
            );
        }
    }
}
