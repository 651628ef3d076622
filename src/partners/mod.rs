//! One module per partner: everything offergate knows of Encore ([`encore`])
//! and of Besitos ([`besitos`]). Each says which path it is served on, what
//! a request body must hold, the header its credential travels in, what its
//! 200 must be, the soft fallback's body, and whose fair share a call
//! spends. The rest of offergate is the same for every partner and asks
//! here, by [`Target`].
//!
//! A third partner is a module like these two, an arm in each `match` below
//! and in `edge/router.rs`, its credential in `upstream/credentials.rs`, and
//! a config section (README: "Adding a partner").

pub mod besitos;
pub mod encore;
mod fields;

pub use fields::{parse_object, required_id, MAX_ID_CHARS};

use std::sync::Arc;

use bytes::Bytes;

use crate::call::base_url::BaseUrl;
use crate::call::error::GatewayError;
use crate::call::json::Json;
use crate::call::route::Target;

/// What the proxy listener serves, for a 404's message.
pub const SERVED: &str =
    "POST /encore/publisher/sdk/v1/offers/message and POST /data/messages/{partner_id}/upcoming-goals";

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
