//! One module per partner: everything offergate knows of Encore ([`encore`])
//! and of Besitos ([`besitos`]). Each says which path it is served on, what
//! a request body must hold, the header its credential travels in, what its
//! 200 must be, the soft fallback's body, and whose fair share a call
//! spends. The rest of offergate is the same for every partner and asks
//! here, by [`Target`].
//!
//! A third partner is a module like these two with an arm in each `match`
//! below (the compiler names every one), its `Route` and `Target` variants,
//! one line in `edge/router.rs`, and a config section (docs/architecture.md: "Adding a
//! partner"). The upstream, the layers and the stack ask here and need
//! nothing.

pub mod besitos;
pub mod encore;
mod fields;

pub use fields::{parse_object, required_id, MAX_ID_CHARS};

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;

use crate::call::base_url::BaseUrl;
use crate::call::error::GatewayError;
use crate::call::json::Json;
use crate::call::problem::Problem;
use crate::call::request::Compose;
use crate::call::route::{Route, Target};
use encore::compose::Composed;
use encore::links::LinkKey;
use http::HeaderName;

/// What the proxy listener serves, for a 404's message.
pub const SERVED: &str = "POST /encore/publisher/sdk/v1/offers/message, \
     POST /data/messages/{partner_id}/upcoming-goals, and offergate's own POST \
     /offergate/v1/encore/messages, /offergate/v1/encore/eligibility, \
     /offergate/v1/encore/offers/unsent, /offergate/v1/encore/opt-out and \
     /offergate/v1/encore/opt-in";

/// What a request body's check learned, handed on typed so the body is
/// never parsed again.
#[derive(Debug, Default, PartialEq)]
pub struct Checked<'a> {
    /// Encore's `clientId`: whose fair share the call spends.
    pub client_id: Option<Arc<str>>,
    /// The parsed body (`None`: no body), for the request fingerprint.
    pub json: Option<Json<'a>>,
}

impl Checked<'_> {
    /// Encore's `chatId` (with `clientId`, the thread the cap counts).
    pub fn chat_id(&self) -> Option<&str> {
        self.object()?.get("chatId").and_then(Json::as_str)
    }

    /// Where `chatId`'s string lies in `body`, quotes included, when it was
    /// read as written (borrowed from `body`: it holds no escape).
    pub fn chat_id_at(&self, body: &[u8]) -> Option<std::ops::Range<usize>> {
        let Some(Json::String(Cow::Borrowed(chat))) = self.object()?.get("chatId") else {
            return None;
        };
        let start = (chat.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
        let end = start.checked_add(chat.len())?;
        let quoted = start.checked_sub(1)?..end + 1;
        (body.get(quoted.start) == Some(&b'"') && body.get(end) == Some(&b'"')).then_some(quoted)
    }

    /// Encore's `attributes.language` (the composed message's language).
    pub fn language(&self) -> Option<&str> {
        match self.object()?.get("attributes") {
            Some(Json::Object(attributes)) => attributes.get("language").and_then(Json::as_str),
            _ => None,
        }
    }

    fn object(&self) -> Option<&crate::call::json::Object<'_>> {
        match &self.json {
            Some(Json::Object(obj)) => Some(obj),
            _ => None,
        }
    }
}

/// Checks a body for `target`'s partner; `Ok` means it may be forwarded as
/// it is.
pub fn check_body<'a>(target: &Target, body: &'a [u8]) -> Result<Checked<'a>, GatewayError> {
    match target {
        Target::Encore => encore::check_body(body),
        Target::Besitos { .. } => besitos::check_body(body),
    }
}

/// The soft fallback's body for `target`: the partner's own "nothing for
/// you", which callers already handle.
pub fn fallback_body(target: &Target, public: &BaseUrl) -> Bytes {
    match target {
        Target::Encore => Bytes::from_static(encore::NO_OFFER),
        Target::Besitos { partner_id, page } => besitos::empty_page(partner_id, *page, public),
    }
}

/// The path and query of `target` at its partner (the same as ours).
pub fn path_and_query(target: &Target) -> String {
    match target {
        Target::Encore => encore::PATH.to_string(),
        Target::Besitos { partner_id, page } => besitos::path_and_query(partner_id, *page),
    }
}

/// The path of `route` at its partner when it never changes (the request
/// URI is built once); `None` where the target names more (a Besitos
/// partner id and page).
pub fn fixed_path(route: Route) -> Option<&'static str> {
    match route {
        Route::EncoreOffers => Some(encore::PATH),
        Route::BesitosGoals => None,
    }
}

/// The header `route`'s credential travels in.
pub fn credential_header(route: Route) -> &'static HeaderName {
    match route {
        Route::EncoreOffers => &encore::API_KEY_HEADER,
        Route::BesitosGoals => &http::header::AUTHORIZATION,
    }
}

/// Where an operator sets `route`'s credential (for the log line that says
/// a partner refuses it).
pub fn credential_setting(route: Route) -> &'static str {
    match route {
        Route::EncoreOffers => "[encore] api_key_env / api_key_file",
        Route::BesitosGoals => "the partner's token_env / token_file in [[besitos.partners]]",
    }
}

/// The header value of `route`'s credential, from its secret.
pub fn credential_value(route: Route, secret: &str) -> String {
    match route {
        Route::EncoreOffers => secret.to_string(),
        Route::BesitosGoals => format!("Bearer {secret}"),
    }
}

/// What reading a partner's 200 needs besides the body.
pub struct Reading<'a> {
    /// Where an offer's link must point (`[encore] offer_link_host`).
    pub link_host: &'a str,
    /// The composed message the caller asked for, if any.
    pub compose: Option<&'a Compose>,
    /// Where callers reach offergate (page URLs are moved onto it).
    pub public: &'a BaseUrl,
    /// The partner base URL's path prefix (what page URLs lose).
    pub partner_prefix: &'a str,
}

/// A partner's 200, read once: the body to answer, and on an offers route
/// what it offered.
pub struct Read {
    pub body: Bytes,
    /// `None`: the route has no offers; `Some(None)`: no offer this time;
    /// `Some(Some(link))`: an offer, by its link.
    pub offer: Option<Option<LinkKey>>,
    pub composed: Option<Composed>,
}

/// The deepest a partner's 200 may nest objects and arrays (the documented
/// answers nest 3 or 4 levels).
pub const MAX_ANSWER_DEPTH: usize = 32;

/// Checks a 200 from `route`'s partner against its documented JSON (and
/// what offergate lets reach an end user), and reads what the layers above
/// need of it; `Err` says why it is not one.
pub fn read_ok(route: Route, body: Bytes, reading: &Reading<'_>) -> Result<Read, Problem> {
    // Nested deeper than any documented answer: refused before anything
    // reads it (a caller's parser may not survive 200,000 levels).
    if !crate::call::json::nesting_within(&body, MAX_ANSWER_DEPTH) {
        return Err(format!("the answer nests deeper than {MAX_ANSWER_DEPTH} levels").into());
    }
    match route {
        Route::EncoreOffers => {
            let (link, composed) = match reading.compose {
                None => (encore::check_answer(&body, reading.link_host)?, None),
                Some(asked) => {
                    let offer = encore::read_offer(&body, reading.link_host)?;
                    let language = asked.language.as_deref();
                    let composed = offer
                        .as_ref()
                        .and_then(|o| encore::compose::message(o, language));
                    let link =
                        offer.map(|o| encore::links::key_of_offer(&o.click_url, reading.link_host));
                    (link, composed)
                }
            };
            Ok(Read {
                body,
                offer: Some(link),
                composed,
            })
        }
        Route::BesitosGoals => Ok(Read {
            body: besitos::rewrite_answer(&body, reading.public, reading.partner_prefix)?,
            offer: None,
            composed: None,
        }),
    }
}
