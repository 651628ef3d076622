//! One answer for a key fleet-wide after Redis was away or lost it: a
//! replica's own copy set against the fleet's.
//!
//! - An answer a replica made alone while Redis was away (`fail_open`) is
//!   marked so: once Redis answers again, the next call for its key asks
//!   the fleet first. The fleet's answer wins and replaces it; with none,
//!   this one is shared (`SET NX`, and whatever Redis then holds is what
//!   every replica answers). So an outage's split ends with the outage.
//! - A replica's copy of an answer answers alone for a short window (the
//!   call's deadline); after it, the fleet's copy is asked first. Redis
//!   may lose an answer (a failover to a replica it had not reached, a
//!   restart, an eviction): the replica that led then shares its copy
//!   again, rather than the next replica asked calling the partner for a
//!   second, different answer.

use std::sync::Arc;

use super::{RedisStore, POLL};
use crate::call::clock;
use crate::layers::idempotency::format::{answer_of, decode, encode};
use crate::layers::idempotency::store::{Claim, IdempotencyStore, Stored};
use crate::state::ClaimReply;

impl RedisStore {
    /// One answer for the key fleet-wide after an outage: the fleet's, if
    /// it has one (ours is replaced by it), else ours, now shared. Another
    /// replica calling for it now (its finish lands after its caller has the
    /// answer) is waited for, as a duplicate waits, within the call's time.
    pub(super) async fn reconcile(
        &self,
        key: &str,
        ours: Arc<Stored>,
        (answer_key, lock_key): (&str, &str),
        fp: &str,
        lock_value: &str,
    ) -> Claim {
        let give_up = clock::now() + self.wait_for;
        let mut notice = None;
        loop {
            let claim = self
                .redis
                .claim(answer_key, lock_key, fp, lock_value, self.lock_ttl);
            match tokio::time::timeout_at(give_up, claim).await {
                Ok(Ok(ClaimReply::Stored(bytes))) => {
                    let fleet = decode(&bytes, ours.ttl);
                    return self.adopt(key, ours, fleet).await;
                }
                Ok(Ok(ClaimReply::Lead)) => {
                    let shared = encode(&ours);
                    let published = self
                        .redis
                        .finish(answer_key, lock_key, lock_value, &shared, ours.ttl, None)
                        .await;
                    // What Redis holds now: ours, or another replica's that
                    // got there between the claim and the finish.
                    let fleet = match published {
                        Ok(Some(bytes)) => decode(&bytes, ours.ttl),
                        _ => None,
                    };
                    return self.adopt(key, ours, fleet).await;
                }
                Ok(Ok(ClaimReply::InFlight)) if clock::now() + POLL < give_up => {
                    self.until_finish_heard(&mut notice, answer_key, give_up)
                        .await;
                }
                // Still in flight at the call's end, or Redis is away again:
                // ours, for now.
                _ => return Claim::Stored(ours),
            }
        }
    }

    /// The fleet's answer for the key when it is this request's and not
    /// ours: answered, and kept here as any copy of the fleet's answer is,
    /// for a short window. Else ours, kept as it was: the fleet is asked
    /// again next time, so a copy it loses later is shared again.
    async fn adopt(&self, key: &str, ours: Arc<Stored>, fleet: Option<Stored>) -> Claim {
        match fleet {
            Some(fleet)
                if fleet.fingerprint == ours.fingerprint
                    && (fleet.status, &fleet.body) != (ours.status, &ours.body) =>
            {
                let kept = Stored {
                    ttl: self.wait_for,
                    ask_fleet_after: None,
                    ..fleet.clone()
                };
                self.local.finish(key, &answer_of(&fleet), Some(kept)).await;
                Claim::Stored(Arc::new(fleet))
            }
            _ => Claim::Stored(ours),
        }
    }
}
