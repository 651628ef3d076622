//! The two values that flow through offergate's tower stack.
//!
//! The edge reads and checks the caller's request once (route, host, body, JSON
//! rules) and hands the layers a [`ProxyRequest`] with the body already in memory:
//! every layer after it (idempotency fingerprints, retries that replay the body)
//! works on bytes, never on a half-read stream. Partner answers are small JSON
//! documents and come back fully buffered as a [`ProxyResponse`] for the same
//! reason (validation, Besitos URL rewriting, replay).

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};

use crate::call::ahead::{Ahead, KeepSlot};
use crate::call::route::{Route, Target};
use crate::call::thread::ThreadId;

/// A caller's request that passed admission. Small on purpose (every layer
/// holds it while the call is under way): what stays the same for the whole
/// call is shared behind one `Arc` ([`CallInfo`]); each try gets its own
/// ([`ProxyRequest::next_try`]).
#[derive(Debug)]
pub struct ProxyRequest {
    pub target: Target,
    pub body: Bytes,
    /// When the whole call must be over; set by the deadline layer.
    pub deadline: Option<super::clock::Instant>,
    /// What admission learned, shared by every try and by the edge.
    pub call: Arc<CallInfo>,
    /// What the shared state answered ahead for this call (`ahead.rs`).
    pub ahead: Ahead,
}

/// The parts of a request that never change during its call.
#[derive(Debug)]
pub struct CallInfo {
    /// The caller's `x-request-id`, or one offergate made; sent to the partner.
    pub request_id: HeaderValue,
    /// The caller's headers as received; the upstream picks what may travel
    /// (`headers::to_partner`) when it builds the partner request.
    pub headers: HeaderMap,
    /// The caller's `Idempotency-Key`, already checked (1 to 255 visible ASCII).
    pub idempotency_key: Option<Arc<str>>,
    /// Route, partner, page and canonical body, hashed once at admission: what
    /// makes two requests the same one. `None` where idempotency is off.
    pub fingerprint: Option<crate::call::fingerprint::Fingerprint>,
    /// Encore's `clientId`, read during validation (per-caller rate limit).
    pub client_id: Option<Arc<str>>,
    /// Encore's conversation (`clientId`, `chatId`), hashed: the thread cap's
    /// key. `None` where the cap is off.
    pub thread: Option<ThreadId>,
    /// Where the body's `chatId` string lies (its quotes included) when the
    /// check read it as written, with no escapes: its pseudonym is put there
    /// without parsing the body again.
    pub chat_id_at: Option<std::ops::Range<usize>>,
    /// The composed message this call's offer answer is to carry, if any.
    pub compose: Option<Compose>,
    /// What happened at the partner, for the access log.
    pub trace: CallTrace,
    /// The call's span, when it is traced: each try's hangs under it.
    pub span: Option<crate::call::spans::SpanParent>,
    /// The caller's route when it is not the partner route itself (the
    /// conversation endpoint's Encore calls): what the layers count under.
    pub via: Option<crate::call::route::OwnRoute>,
}

/// A composed message asked for an offer (`x-offergate-compose: true`, or
/// `[encore.integrator] compose`), in the caller's `attributes.language`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compose {
    pub language: Option<Arc<str>>,
}

impl CallInfo {
    /// A call with `request_id` and `headers` and nothing else learned yet
    /// (tests and benchmarks fill in what they need).
    pub fn new(request_id: HeaderValue, headers: HeaderMap) -> CallInfo {
        CallInfo {
            request_id,
            headers,
            idempotency_key: None,
            fingerprint: None,
            client_id: None,
            thread: None,
            chat_id_at: None,
            compose: None,
            trace: CallTrace::default(),
            span: None,
            via: None,
        }
    }
}

/// Tries made and the partner's last status, written by the upstream, read
/// by the edge when it logs the call.
#[derive(Debug, Default)]
pub struct CallTrace {
    tries: std::sync::atomic::AtomicU32,
    last_status: std::sync::atomic::AtomicU32,
}

impl CallTrace {
    /// One try sent; `status` is the partner's answer, 0 for none.
    pub fn tried(&self, status: u16) {
        use std::sync::atomic::Ordering::Relaxed;
        self.tries.fetch_add(1, Relaxed);
        self.last_status.store(u32::from(status), Relaxed);
    }

    pub fn tries(&self) -> u32 {
        self.tries.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The partner's last status, if it answered one.
    pub fn last_status(&self) -> Option<u16> {
        let s = self.last_status.load(std::sync::atomic::Ordering::Relaxed);
        (s != 0).then_some(s as u16)
    }
}

impl ProxyRequest {
    /// A request with nothing learned below the edge yet.
    pub fn new(target: Target, body: Bytes, call: Arc<CallInfo>) -> ProxyRequest {
        ProxyRequest {
            target,
            body,
            deadline: None,
            call,
            ahead: Ahead::default(),
        }
    }

    /// The request for the next try of this call: the same call, and what
    /// was answered ahead for its first try (the partner's quota) to the
    /// first only.
    pub fn next_try(&mut self) -> ProxyRequest {
        ProxyRequest {
            target: self.target.clone(),
            body: self.body.clone(),
            deadline: self.deadline,
            call: self.call.clone(),
            ahead: std::mem::take(&mut self.ahead),
        }
    }

    pub fn route(&self) -> Route {
        self.target.route()
    }

    /// The route label this call is counted under: the caller's route
    /// (`encore_messages` for the conversation endpoint's calls), else the
    /// partner route's.
    pub fn counted_as(&self) -> &'static str {
        self.call
            .via
            .map_or_else(|| self.route().as_str(), |own| own.as_str())
    }

    /// Who the call is made for: `clientId` (Encore) or `partner_id` (Besitos).
    pub fn caller(&self) -> Option<&str> {
        caller_of(&self.target, &self.call)
    }

    /// [`ProxyRequest::caller`], beside what was answered ahead (a limit
    /// asks for the caller's permit with both).
    pub fn caller_and_ahead(&mut self) -> (Option<&str>, &mut Ahead) {
        (caller_of(&self.target, &self.call), &mut self.ahead)
    }
}

fn caller_of<'a>(target: &'a Target, call: &'a CallInfo) -> Option<&'a str> {
    match target {
        Target::Encore => call.client_id.as_deref(),
        Target::Besitos { partner_id, .. } => Some(partner_id),
    }
}

/// An answer for the caller: the partner's, or one offergate made.
#[derive(Clone, Debug)]
pub struct ProxyResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// How this answer counts in `offergate_requests_total`.
    pub outcome: Outcome,
    /// Set by the partner call on an Encore answer that shows an offer; read
    /// by the thread cap.
    pub offer: Option<OfferServed>,
    /// Set by the partner call when the caller asked for a composed
    /// message; read by the edge, which adds it to the answer.
    pub composed: Option<Box<Composed>>,
    /// Set by a thread slot taken with the idempotency claim when its offer
    /// was shown; read by the Redis store, which keeps the slot with its
    /// finish.
    pub keep_slot: Option<Box<KeepSlot>>,
}

/// A composed message for the offer on an answer (`partners/encore/compose.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composed {
    pub text: String,
    pub language: &'static str,
}

/// On an answer: an Encore 200 carrying an offer, straight from the partner
/// (the thread cap counts these), with its link's key (a hash of the
/// `clickUrl`'s path, `partners/encore/links.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OfferServed {
    pub link: u64,
}

impl ProxyResponse {
    /// A JSON answer with no other headers.
    pub fn json(status: StatusCode, body: Bytes) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        ProxyResponse {
            status,
            headers,
            body,
            outcome: Outcome::Forwarded,
            offer: None,
            composed: None,
            keep_slot: None,
        }
    }
}

/// How a request ended, the `outcome` label of `offergate_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The partner's answer was relayed.
    Forwarded,
    /// A stored answer was replayed (idempotency).
    Replayed,
    /// offergate answered the soft fallback.
    Fallback,
    /// Refused locally before anything was forwarded (4xx of offergate's own).
    Rejected,
    /// The partner call failed and no fallback applied (502 / 504).
    Failed,
    /// Answered by offergate itself, as the route is meant to (eligibility,
    /// a conversation skip, an opt-out): no partner call was needed.
    Answered,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Forwarded,
        Outcome::Replayed,
        Outcome::Fallback,
        Outcome::Rejected,
        Outcome::Failed,
        Outcome::Answered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::Replayed => "replayed",
            Outcome::Fallback => "fallback",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
            Outcome::Answered => "answered",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every layer moves the request and its answer: they stay small (the
    /// answer carries 32 bytes of what one step leaves another; bigger
    /// showed in callgrind as memcpy).
    #[test]
    fn what_every_layer_moves_stays_small() {
        assert!(std::mem::size_of::<ProxyRequest>() <= 96);
        assert!(
            std::mem::size_of::<Result<ProxyResponse, crate::call::error::GatewayError>>() <= 168
        );
    }
}
