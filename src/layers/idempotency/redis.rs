//! The fleet-wide [`IdempotencyStore`]: answers and in-flight locks in Redis,
//! in front of the in-process store, which still coalesces this replica's own
//! duplicates (one Redis wait per replica, not one per caller) and caches
//! answers it has seen.
//!
//! - The first replica takes the key's lock (`SET NX PX`, the value naming the
//!   request's fingerprint and this process) and calls the partner; it stores
//!   the answer (`SET PX NX`, the route's TTL) and frees the lock only if it
//!   is still its own (compare-and-delete, one script).
//! - A replica that finds the same request in flight elsewhere subscribes to
//!   the key's channel (`state/notices.rs`), asks once more, and then asks
//!   again when the leader's finish publishes there (or after 250 ms, should
//!   a notice be lost), until the answer is there, the key is free again (the
//!   holder died: its lock expires after the call's deadline plus a second,
//!   and the waiter leads), or its own deadline passes. Without a pub/sub
//!   connection it polls every 25 ms.
//! - A different request under the key: 422, from any replica.
//! - After an outage, a replica's own copy of an answer is set against the
//!   fleet's (`redis/reconcile.rs`).
//! - Stored: fingerprint, status, content type, body. Never a secret or a
//!   caller's raw body; keys hold the route, the caller's key or the body's
//!   fingerprint.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::ahead::{AskAhead, Plan};
use super::format::{answer_of, decode, encode};
use super::memory::MemoryStore;
use super::store::{Answer, Claim, IdempotencyStore, Stored};
use crate::call::clock;
use crate::call::error::{CallError, GatewayError, Refusal};
use crate::call::fingerprint::{hex, Fingerprint};
use crate::call::request::ProxyRequest;
use crate::call::route::Route;
use crate::config::OnStateError;
use crate::conversation::KeepPlan;
use crate::state::{AlsoSaid, ClaimReply, Redis};

mod reconcile;

/// How often a replica looks for an answer another replica is fetching
/// when it cannot hear the finish (no pub/sub connection now).
const POLL: Duration = Duration::from_millis(25);

/// How long a replica that hears finishes waits before asking anyway (a
/// notice lost to a reconnect).
const LISTEN_POLL: Duration = Duration::from_millis(250);

pub struct RedisStore {
    local: MemoryStore,
    redis: Redis,
    route: Route,
    /// This process, in lock values.
    owner: String,
    /// A lock outlives the call that took it by this much at most.
    lock_ttl: Duration,
    /// The longest a replica waits for another's answer (the call's deadline).
    wait_for: Duration,
    /// Answers larger than this are not shared (the memory store's bound).
    max_answer_bytes: usize,
    /// The fleet's locks of the keys this replica leads.
    leading: Mutex<HashMap<Box<str>, Lock>>,
    /// What a claim asks besides, where one script can (`ahead.rs`).
    ahead: Option<Arc<AskAhead>>,
}

/// What this replica knows of the fleet's lock on a key it leads.
enum Lock {
    /// Taken: its value.
    Held(String),
    /// Asked for with no reply in time, then Redis was declared down and
    /// the call led alone (`fail_open`): Redis may still run the claim
    /// once it answers, leaving a lock nobody would free.
    MaybeTaken(String),
}

impl RedisStore {
    pub fn new(
        local: MemoryStore,
        redis: Redis,
        route: Route,
        deadline: Duration,
        max_answer_bytes: usize,
        ahead: Option<Arc<AskAhead>>,
    ) -> RedisStore {
        RedisStore {
            ahead,
            local,
            redis,
            route,
            owner: uuid::Uuid::new_v4().simple().to_string(),
            lock_ttl: deadline + Duration::from_secs(1),
            wait_for: deadline,
            max_answer_bytes,
            leading: Mutex::new(HashMap::new()),
        }
    }

    fn keys(&self, key: &str) -> (String, String) {
        (
            self.redis.key(self.route, "answer", key),
            self.redis.key(self.route, "lock", key),
        )
    }

    /// Waits for the leader's finish of a key found in flight: until it is
    /// heard, or the fallback poll, whichever comes first. Unsubscribed, it
    /// subscribes and returns at once: the finish may have come before the
    /// subscription did, so the caller asks again.
    async fn until_finish_heard(
        &self,
        notice: &mut Option<crate::state::Notice>,
        answer_key: &str,
        give_up: clock::Instant,
    ) {
        match notice.take() {
            Some(heard) => {
                let left = give_up.saturating_duration_since(clock::now());
                let _ = tokio::time::timeout(LISTEN_POLL.min(left), heard).await;
            }
            None => {
                *notice = self.redis.listen(answer_key).await;
                if notice.is_none() {
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    }

    /// Ends this replica's local lead with `answer` for its local waiters.
    async fn settle_locally(&self, key: &str, answer: Answer, keep: Option<Stored>) {
        self.local.finish(key, &answer, keep).await;
    }

    /// The call's time ran out with the key in flight elsewhere: this call
    /// and its own duplicates get `deadline_exceeded`.
    async fn gave_up_waiting(&self, key: &str) -> (Claim, Option<AlsoSaid>) {
        let late = || Err(GatewayError::Call(CallError::DeadlineExceeded));
        self.settle_locally(key, late(), None).await;
        (
            Claim::Wait(Box::pin(std::future::ready(Some(late())))),
            None,
        )
    }

    /// The key holds another request's claim or answer: this call and its
    /// own duplicates get `idempotency_key_reused`.
    async fn conflicted(&self, key: &str) -> (Claim, Option<AlsoSaid>) {
        let answer = Err(GatewayError::Refused(Refusal::IdempotencyKeyReused));
        self.settle_locally(key, answer, None).await;
        (Claim::Conflict, None)
    }

    /// No claim could be had from Redis: this call and its own duplicates
    /// get `state_unavailable`.
    async fn unavailable(&self, key: &str) -> (Claim, Option<AlsoSaid>) {
        let answer = Err(GatewayError::Call(CallError::StateUnavailable));
        self.settle_locally(key, answer, None).await;
        (Claim::Unavailable, None)
    }
}

/// How long a claim whose reply was late waits before it is asked again.
const CLAIM_AGAIN_AFTER: Duration = Duration::from_millis(20);

impl RedisStore {
    /// The claim, and when `also` is given and the claim leads, what it
    /// asks, in the same script (`ahead.rs`).
    async fn claim_with(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        plan: Option<&Plan>,
    ) -> (Claim, Option<AlsoSaid>) {
        let mut also = plan.map(Plan::ask);
        // This replica's own duplicates wait on its own leader.
        let ours = match self.local.claim(key, fingerprint).await {
            Claim::Lead => None,
            // Past its time alone (made while Redis was away, or this
            // replica's lead a window ago): while Redis answers, the fleet's
            // wins, and with none, ours is shared again.
            Claim::Stored(stored)
                if stored.ask_fleet_after.is_some_and(|at| clock::now() >= at)
                    && !self.redis.degraded() =>
            {
                Some(stored)
            }
            other => return (other, None),
        };
        let (answer_key, lock_key) = self.keys(key);
        let fp = hex(fingerprint);
        let mut lock_value = String::with_capacity(fp.len() + self.owner.len());
        lock_value.push_str(&fp);
        lock_value.push_str(&self.owner);
        if let Some(ours) = ours {
            let reconciled = self
                .reconcile(key, ours, (&answer_key, &lock_key), &fp, &lock_value)
                .await;
            return (reconciled, None);
        }
        // This replica's lead on the key, given up if the call is dropped
        // before the claim below settles it or hands it to the caller.
        let lead = LocalLead {
            local: &self.local,
            key,
        };
        let claimed = async {
            let give_up = clock::now() + self.wait_for;
            // Subscribed to the key's finish once it is found in flight.
            let mut notice: Option<crate::state::Notice> = None;
            let mut in_flight_seen = false;
            // A claim was sent and its reply was late: it may run in Redis.
            let mut sent_late = false;
            loop {
                let ask = async {
                    match &also {
                        Some(also) => match self
                            .redis
                            .admit(
                                &answer_key,
                                &lock_key,
                                &fp,
                                &lock_value,
                                self.lock_ttl,
                                also,
                            )
                            .await
                        {
                            Ok((reply, said)) => (Ok(reply), Some(said)),
                            Err(e) => (Err(e), None),
                        },
                        None => (
                            self.redis
                                .claim(&answer_key, &lock_key, &fp, &lock_value, self.lock_ttl)
                                .await,
                            None,
                        ),
                    }
                };
                // Never past the call's own time, however late the reply.
                let (reply, said) = tokio::time::timeout_at(give_up, ask)
                    .await
                    .unwrap_or((Err(crate::state::StateError::Timeout), None));
                match reply {
                    Ok(ClaimReply::Lead) => {
                        self.leading
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(key.into(), Lock::Held(lock_value));
                        return (Claim::Lead, said);
                    }
                    Ok(ClaimReply::Stored(bytes)) => match decode(&bytes, Duration::ZERO) {
                        Some(stored) if stored.fingerprint == *fingerprint => {
                            // Kept here too, for the rest of a short window.
                            let keep = Stored {
                                ttl: self.wait_for,
                                ..stored.clone()
                            };
                            self.settle_locally(key, answer_of(&stored), Some(keep))
                                .await;
                            return (Claim::Stored(Arc::new(stored)), None);
                        }
                        Some(_) => {
                            return self.conflicted(key).await;
                        }
                        None => {
                            tracing::warn!(
                                key = %answer_key,
                                "a stored answer could not be read; calling the partner"
                            );
                            return (Claim::Lead, None);
                        }
                    },
                    Ok(ClaimReply::Conflict) => {
                        return self.conflicted(key).await;
                    }
                    Ok(ClaimReply::InFlight) if clock::now() + POLL < give_up => {
                        in_flight_seen = true;
                        self.until_finish_heard(&mut notice, &answer_key, give_up)
                            .await;
                    }
                    Ok(ClaimReply::InFlight) => return self.gave_up_waiting(key).await,
                    // Sent, and no answer in time: the claim may be taken in
                    // Redis, so the partner is not called on the guess that it
                    // was not. The claim is repeatable for this owner: it is
                    // asked again (alone: the admission's limits may be spent)
                    // until Redis answers, is declared down, or the call's time
                    // is up, and then the call gets the fallback.
                    Err(e) if e.may_have_applied() && !self.redis.degraded() => {
                        also = None;
                        sent_late = true;
                        if clock::now() + CLAIM_AGAIN_AFTER >= give_up {
                            // Found in flight elsewhere before: it still is, as
                            // far as this call can tell.
                            return if in_flight_seen {
                                self.gave_up_waiting(key).await
                            } else {
                                self.unavailable(key).await
                            };
                        }
                        tokio::time::sleep(CLAIM_AGAIN_AFTER).await;
                    }
                    Err(_) => match self.redis.on_error() {
                        // Redis declared down (or not connected), so the claim
                        // was not sent: counted by the state metrics, this
                        // replica de-duplicates alone. A claim sent before
                        // may still take the lock: the finish frees it.
                        OnStateError::FailOpen => {
                            if sent_late {
                                self.leading
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .insert(key.into(), Lock::MaybeTaken(lock_value));
                            }
                            return (Claim::Lead, None);
                        }
                        OnStateError::FailClosed => return self.unavailable(key).await,
                    },
                }
            }
        }
        .await;
        // Settled or handed to the caller: nothing to give up.
        std::mem::forget(lead);
        claimed
    }
}

/// A lead in the replica's own store while its claim goes on in Redis:
/// dropped with the call (its caller hung up), it is given up, so the
/// key's later calls here do not wait on a call that is gone.
struct LocalLead<'a> {
    local: &'a MemoryStore,
    key: &'a str,
}

impl Drop for LocalLead<'_> {
    fn drop(&mut self) {
        self.local.abandon(self.key);
    }
}

impl IdempotencyStore for RedisStore {
    async fn claim(&self, key: &str, fingerprint: &Fingerprint) -> Claim {
        self.claim_with(key, fingerprint, None).await.0
    }

    async fn claim_then(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        req: &mut ProxyRequest,
    ) -> Claim {
        let Some(ahead) = &self.ahead else {
            return self.claim(key, fingerprint).await;
        };
        let plan = ahead.plan(req);
        match self.claim_with(key, fingerprint, Some(&plan)).await {
            (Claim::Lead, Some(said)) => {
                req.ahead = ahead.given(plan, said);
                Claim::Lead
            }
            (claim, _) => claim,
        }
    }

    /// The finish, and an offer's slot taken with the claim kept in the
    /// same script.
    async fn finish(&self, key: &str, answer: &Answer, keep: Option<Stored>) {
        let thread = match (&self.ahead, answer) {
            (Some(ahead), Ok(resp)) => resp.keep_slot.as_deref().and_then(|k| ahead.keep_plan(k)),
            _ => None,
        };
        let (lock_value, maybe_taken) = match self
            .leading
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key)
        {
            Some(Lock::Held(value)) => (Some(value), None),
            Some(Lock::MaybeTaken(value)) => (None, Some(value)),
            None => (None, None),
        };
        let shared = keep
            .as_ref()
            .map(encode)
            .filter(|bytes| bytes.len() <= self.max_answer_bytes);
        let ttl = keep.as_ref().map_or(Duration::ZERO, |k| k.ttl);
        // A lead's own copy answers alone for as long as another replica
        // keeps the fleet's (the call's deadline), then asks the fleet first:
        // Redis may have lost it since. One made without the fleet's lock
        // (Redis away) asks as soon as Redis answers again.
        let alone_for = if lock_value.is_some() {
            self.wait_for
        } else {
            Duration::ZERO
        };
        let keep = keep.map(|k| Stored {
            ask_fleet_after: Some(clock::now() + alone_for),
            ..k
        });
        self.local.finish(key, answer, keep).await;
        if let Some(lock_value) = lock_value {
            let (answer_key, lock_key) = self.keys(key);
            let shared = shared.unwrap_or_default();
            let redis = self.redis.clone();
            // In the background: the caller does not wait a round trip for
            // the fleet's copy. This replica's duplicates have the answer
            // already (above); another replica's find the lock until the
            // finish lands and hear it land (`listen`). A failure is
            // counted; the lock then expires on its own.
            self.redis.in_background(async move {
                let sent = redis
                    .finish(
                        &answer_key,
                        &lock_key,
                        &lock_value,
                        &shared,
                        ttl,
                        thread.as_ref().and_then(KeepPlan::ask),
                    )
                    .await;
                // Kept with it; else (Redis did not take it) on its own.
                if let (Ok(_), Some(thread)) = (sent, thread) {
                    thread.sent();
                }
            });
        } else if let Some(lock_value) = maybe_taken {
            // Sent now, though Redis is declared down, on the connection the
            // late claim went out on: Redis runs it right after that claim,
            // so the lock is freed and this answer offered to the fleet as
            // soon as Redis answers again. This copy stays this replica's
            // alone until its key is asked again (the fleet's then wins).
            let (answer_key, lock_key) = self.keys(key);
            let shared = shared.unwrap_or_default();
            let redis = self.redis.clone();
            self.redis.in_background(async move {
                let _ = redis
                    .finish_behind_late_claim(&answer_key, &lock_key, &lock_value, &shared, ttl)
                    .await;
            });
        }
    }

    fn entries(&self) -> u64 {
        self.local.entries()
    }
}
