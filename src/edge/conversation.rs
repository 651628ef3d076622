//! The conversation endpoint: one call per inbound message, and offergate
//! keeps the thread, decides, calls Encore and writes the message.
//!
//! `POST /offergate/v1/encore/messages`, top to bottom:
//!
//! 1. admission (as for offergate's own routes), the message read and
//!    checked, `attributes` by Encore's own rules;
//! 2. de-duplication by (`clientId`, `chatId`, `messageId`) in the answer
//!    store the offers route uses (memory, or Redis across replicas): a
//!    redelivered webhook gets the first answer with `idempotent-replayed`,
//!    a concurrent one waits for it, and changes nothing;
//! 3. the message recorded in its thread (`conversation/`); an opt-out
//!    keyword opts the thread out;
//! 4. the Encore doc's rule (`integrator::rules::judge`) on the
//!    thread's silence, its offers and its opt-out;
//! 5. when eligible: Encore through the same stack as the offers route
//!    (quota, retries, circuit, fallback, the thread cap that counts the
//!    offer), the message composed;
//! 6. always 200 for a valid message: `decision`, `trigger`, `reason`,
//!    `offers_shown`, `offer`, `composed`.
//!
//! And the thread's other three routes: `/offers/unsent` frees an offer's
//! slot, `/opt-out` and `/opt-in`.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode};
use hyper::body::Body;
use serde_json::{json, Value};

use super::{respond, Edge};
use crate::call::error::{CallError, GatewayError, Refusal};
use crate::call::fingerprint::{hex, Fingerprint};
use crate::call::headers::X_OFFERGATE_FALLBACK;
use crate::call::request::{CallInfo, Compose, Outcome, ProxyRequest, ProxyResponse};
use crate::call::route::{OwnRoute, Target};
use crate::call::service::ProxyService;
use crate::call::thread::thread_id;
use crate::config::IdleGapBasis;
use crate::conversation::{MessageKey, Threads};
use crate::integrator::messages::{read_message, read_thread, read_unsent, Message};
use crate::integrator::rules::{self, judge, MAX_AHEAD_MS};
use crate::layers::idempotency::{
    mark_replayed, replay, Claim, FinishAnyway, IdempotencyStore, Lookup, Stored, Waits,
};
use crate::layers::thread_cap::X_OFFERGATE_SKIPPED;
use crate::partners::encore::compose::{self, Composed};
use crate::partners::encore::links::link_key;
use crate::partners::encore::read_offer;

/// A decision, before it is written out.
struct Answer {
    offer: Option<(Value, Option<Composed>)>,
    trigger: Option<&'static str>,
    reason: Option<String>,
    offers_shown: u64,
    /// The skip is the soft fallback's: Encore failed.
    fallback: bool,
}

impl Answer {
    fn skip(trigger: Option<&'static str>, reason: impl Into<String>, offers_shown: u64) -> Answer {
        Answer {
            offer: None,
            trigger,
            reason: Some(reason.into()),
            offers_shown,
            fallback: false,
        }
    }

    fn body(&self) -> Bytes {
        let (offer, composed) = match &self.offer {
            Some((offer, composed)) => (
                offer.clone(),
                composed.as_ref().map_or(
                    Value::Null,
                    |c| json!({"text": c.text, "language": c.language}),
                ),
            ),
            None => (Value::Null, Value::Null),
        };
        let body = json!({
            "decision": if self.offer.is_some() { "offer" } else { "skip" },
            "trigger": self.trigger,
            "reason": self.reason,
            "offers_shown": self.offers_shown,
            "offer": offer,
            "composed": composed,
        });
        Bytes::from(body.to_string())
    }
}

/// A message's key in the answer store, and the fingerprint every delivery
/// of it shares: the same `messageId` is the same message, whatever else a
/// redelivery carries.
fn answer_key(thread: &[u8; 16], message_id: &str) -> (String, Fingerprint) {
    let key = format!("msg/{}/{message_id}", hex(thread));
    let fp = xxhash_rust::xxh3::xxh3_128(key.as_bytes()).to_be_bytes();
    (key, fp)
}

impl<S: ProxyService> Edge<S> {
    /// `POST /offergate/v1/encore/messages`.
    pub(super) async fn message<B>(
        &self,
        req: Request<B>,
        request_id: HeaderValue,
        span: Option<crate::call::spans::SpanParent>,
        trace: &mut Option<Arc<CallInfo>>,
    ) -> ProxyResponse
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let headers = req.headers().clone();
        let body = match self.shared.admission.admit_own(req, None).await {
            Ok(body) => body,
            Err(e) => return respond::answer(e),
        };
        let message = match read_message(&body) {
            Ok(m) => m,
            Err(e) => return respond::answer(e),
        };
        let thread = thread_id(&message.client_id, &message.chat_id);
        // The Encore call this message may make, counted under this route;
        // the access line reads its tries and the partner's status.
        let mut call = CallInfo::new(request_id, headers);
        call.span = span;
        call.client_id = Some(Arc::from(message.client_id.as_str()));
        call.thread = Some(thread);
        call.compose = Some(Compose {
            language: Some(Arc::from(message.language.as_str())),
        });
        call.via = Some(OwnRoute::EncoreMessages);
        let call = Arc::new(call);
        *trace = Some(call.clone());
        let (key, fp) = answer_key(&thread, &message.message_id);
        let store = &self.shared.answers;
        let mut waits = Waits::default();
        loop {
            let claim = store.claim(&key, &fp).await;
            self.shared.metrics.answer_lookup(match &claim {
                Claim::Stored(_) => Lookup::Hit,
                Claim::Wait(_) => Lookup::Coalesced,
                _ => Lookup::Miss,
            });
            break match claim {
                Claim::Stored(stored) => replay(&stored),
                Claim::Wait(first) => {
                    let deadline = waits.deadline(self.shared.message_deadline);
                    match tokio::time::timeout_at(deadline, first).await {
                        Ok(Some(Ok(answer))) => mark_replayed(answer),
                        Ok(Some(Err(e))) => respond::answer(e),
                        Ok(None) if waits.claim_again() => continue,
                        Ok(None) => respond::answer(GatewayError::Call(CallError::Internal(
                            "the first delivery of this message was lost".into(),
                        ))),
                        Err(_) => respond::answer(GatewayError::Call(CallError::DeadlineExceeded)),
                    }
                }
                // One fingerprint per key: cannot conflict.
                Claim::Conflict => {
                    respond::answer(GatewayError::Refused(Refusal::IdempotencyKeyReused))
                }
                // An opt-out must be kept before it is answered: the platform
                // retries a 503.
                Claim::Unavailable if self.says_stop(&message) => {
                    respond::answer(GatewayError::Call(CallError::StateUnavailable))
                }
                Claim::Unavailable => self.decided(Answer::skip(None, "state_unavailable", 0)),
                Claim::Lead => {
                    let this = self.clone();
                    let ttl = self.shared.message_ttl;
                    FinishAnyway::new(async move {
                        let decided = this.decide(message, thread, call).await;
                        let (resp, keep) = match decided {
                            Ok(answer) => {
                                let resp = this.decided(answer);
                                let keep = Stored {
                                    fingerprint: fp,
                                    status: StatusCode::OK,
                                    content_type: Some(HeaderValue::from_static(
                                        "application/json",
                                    )),
                                    body: resp.body.clone(),
                                    ttl,
                                    ask_fleet_after: None,
                                };
                                (resp, Some(keep))
                            }
                            // Not stored: the redelivery is decided again.
                            Err(e) => (respond::answer(e), None),
                        };
                        let stored = Ok(resp.clone());
                        this.shared.answers.finish(&key, &stored, keep).await;
                        resp
                    })
                    .await
                }
            };
        }
    }

    /// Whether the message is an opt-out keyword.
    fn says_stop(&self, message: &Message) -> bool {
        message
            .text
            .as_deref()
            .is_some_and(|t| self.shared.rules.is_opt_out(t))
    }

    /// Steps 3 to 5 for a message seen for the first time; an error (an
    /// opt-out that could not be kept) is answered and not stored.
    async fn decide(
        &self,
        message: Message,
        thread: [u8; 16],
        call: Arc<CallInfo>,
    ) -> Result<Answer, GatewayError> {
        let threads = &*self.shared.threads;
        let rules = &self.shared.rules;
        let now = threads.now_ms();
        let at = message.sent_at.min(now.saturating_add(MAX_AHEAD_MS));
        let message_key = xxhash_rust::xxh3::xxh3_64(message.message_id.as_bytes()) as MessageKey;
        let says_stop = self.says_stop(&message);
        if says_stop && threads.opt(thread, true).await.is_err() {
            return Err(GatewayError::Call(CallError::StateUnavailable));
        }
        let Ok(before) = threads.message(thread, message_key, at).await else {
            return Ok(Answer::skip(None, "state_unavailable", 0));
        };
        let shown = before.known.offers.len() as u64;
        if before.repeated {
            // Handled before the answer store's memory (a restart): it
            // changes nothing, and gets no second offer.
            return Ok(Answer::skip(None, "already_handled", shown));
        }
        let recorded = match rules.basis {
            IdleGapBasis::Inbound => before.last_inbound,
            IdleGapBasis::Any => before.last_any,
        };
        let previous = message.previous_at.unwrap_or(recorded);
        let opted_out = before.known.opted_out || says_stop;
        let verdict = judge(rules, at, previous, shown, opted_out);
        if let Some(reason) = verdict.reason {
            return Ok(Answer::skip(verdict.trigger, reason, shown));
        }
        let Ok(_slot) = self.shared.in_flight.try_acquire() else {
            self.shared.metrics.shed("max_in_flight");
            return Ok(Answer::skip(verdict.trigger, "overloaded", shown));
        };
        let body = Bytes::from(message.encore_body);
        let req = ProxyRequest {
            ahead: Default::default(),
            target: Target::Encore,
            body,
            deadline: None,
            call,
        };
        let resp = match self.shared.stack.call(req).await {
            Ok(resp) => resp,
            Err(e) => return Ok(Answer::skip(verdict.trigger, e.meaning().code, shown)),
        };
        if let Some(why) = resp.headers.get(&X_OFFERGATE_SKIPPED) {
            let reason = match why.as_bytes() {
                b"opted_out" => rules::OPTED_OUT,
                _ => rules::THREAD_CAP,
            };
            return Ok(Answer::skip(verdict.trigger, reason, shown));
        }
        if let Some(reason) = resp.headers.get(&X_OFFERGATE_FALLBACK) {
            let reason = reason.to_str().unwrap_or("fallback").to_string();
            return Ok(Answer {
                fallback: true,
                ..Answer::skip(verdict.trigger, reason, shown)
            });
        }
        let offer = (resp.status == StatusCode::OK)
            .then(|| serde_json::from_slice::<Value>(&resp.body).ok())
            .flatten()
            .and_then(|mut v| v.get_mut("offer").map(Value::take));
        Ok(match offer {
            Some(offer) if offer.is_object() => Answer {
                offer: Some((offer, self.composed(&resp, &message.language))),
                trigger: verdict.trigger,
                reason: None,
                offers_shown: shown + 1,
                fallback: false,
            },
            Some(_) => Answer::skip(verdict.trigger, "no_offer", shown),
            None => Answer::skip(verdict.trigger, "partner_refused", shown),
        })
    }

    /// The message the partner call composed as it read the answer, or
    /// (an answer from elsewhere) composed here.
    fn composed(&self, resp: &ProxyResponse, language: &str) -> Option<Composed> {
        if let Some(composed) = &resp.composed {
            return Some((**composed).clone());
        }
        let offer = read_offer(&resp.body, &self.shared.rules.link_host).ok()??;
        compose::message(&offer, Some(language))
    }

    /// The answer written out, and counted.
    fn decided(&self, answer: Answer) -> ProxyResponse {
        let decision = if answer.offer.is_some() {
            "offer"
        } else {
            "skip"
        };
        self.shared
            .metrics
            .decided(decision, answer.reason.as_deref());
        let mut resp = ProxyResponse::json(StatusCode::OK, answer.body());
        // Encore answered, with no offer (or one refused): forwarded all the same.
        let partner_answered = matches!(
            answer.reason.as_deref(),
            Some("no_offer" | "partner_refused")
        );
        resp.outcome = match (&answer.offer, answer.fallback) {
            (Some(_), _) => Outcome::Forwarded,
            (None, true) => Outcome::Fallback,
            (None, false) if partner_answered => Outcome::Forwarded,
            (None, false) => Outcome::Answered,
        };
        resp
    }

    /// `POST /offergate/v1/encore/offers/unsent`, `/opt-out`, `/opt-in`.
    pub(super) async fn thread_change<B>(&self, req: Request<B>, route: OwnRoute) -> ProxyResponse
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let body = match self.shared.admission.admit_own(req, None).await {
            Ok(body) => body,
            Err(e) => return respond::answer(e),
        };
        let threads = &*self.shared.threads;
        let unavailable = || respond::answer(GatewayError::Call(CallError::StateUnavailable));
        let answer = |v: Value| {
            let mut resp = ProxyResponse::json(StatusCode::OK, Bytes::from(v.to_string()));
            resp.outcome = Outcome::Answered;
            resp
        };
        if route == OwnRoute::EncoreUnsent {
            let (client, chat, url) = match read_unsent(&body) {
                Ok(read) => read,
                Err(e) => return respond::answer(e),
            };
            let Some(link) = link_key(&url, &self.shared.rules.link_host) else {
                return respond::answer(GatewayError::invalid(
                    "clickUrl",
                    format!("is not an offer link on {}", self.shared.rules.link_host),
                ));
            };
            return match threads.unsent(thread_id(&client, &chat), link).await {
                Ok(Some(left)) => answer(json!({"freed": true, "offers_shown": left})),
                Ok(None) => respond::answer(GatewayError::Refused(Refusal::UnknownOffer)),
                Err(_) => unavailable(),
            };
        }
        let (client, chat) = match read_thread(&body) {
            Ok(read) => read,
            Err(e) => return respond::answer(e),
        };
        let out = route == OwnRoute::EncoreOptOut;
        match threads.opt(thread_id(&client, &chat), out).await {
            Ok(()) => answer(json!({"opted_out": out})),
            Err(_) => unavailable(),
        }
    }
}
