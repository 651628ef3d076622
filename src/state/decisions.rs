//! The decisions offergate asks Redis for, one script each: an idempotency
//! claim and its finish, a rate limit, a partner's pause. (A thread's and
//! a conversation's are `conversation.rs`'s; a call's whole admission in one
//! script `admission.rs`'s.)

use std::time::Duration;

use redis::Value;

use super::redis::Sending;
use super::{Redis, StateError};
use crate::config::Rate;

/// What an idempotency claim found.
pub enum ClaimReply {
    /// An answer is stored (its encoded bytes).
    Stored(Vec<u8>),
    /// The key was free: the lock is now this replica's.
    Lead,
    /// The same request is in flight on a replica.
    InFlight,
    /// Another request holds the key.
    Conflict,
}

/// A rate-limit decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The partner asked for a pause; this much of it is left.
    pub paused: Option<Duration>,
    /// No permit until this much later.
    pub wait: Option<Duration>,
    /// The second bucket's answer, when one was asked and the first gave a
    /// permit: `Some(None)` its permit, taken; `Some(Some(wait))` none yet.
    pub then: Option<Option<Duration>>,
}

impl Redis {
    /// Claims an idempotency key for the request with fingerprint `fp_hex`.
    pub async fn claim(
        &self,
        answer_key: &str,
        lock_key: &str,
        fp_hex: &str,
        lock_value: &str,
        lock_ttl: Duration,
    ) -> Result<ClaimReply, StateError> {
        let ttl = lock_ttl.as_millis().max(1).to_string();
        let reply = self
            .run_idempotent(
                0,
                &[answer_key, lock_key],
                &[fp_hex.as_bytes(), lock_value.as_bytes(), ttl.as_bytes()],
            )
            .await?;
        claim_of(&reply)
    }

    /// [`Redis::finish`] for a call that led alone after its claim's reply
    /// was late and Redis was declared down: sent even so, on the
    /// connection that claim went out on, so Redis runs it after the claim
    /// (a connection's commands run in order) and frees the lock the claim
    /// may have taken.
    pub async fn finish_behind_late_claim(
        &self,
        answer_key: &str,
        lock_key: &str,
        lock_value: &str,
        answer: &[u8],
        ttl: Duration,
    ) -> Result<Option<Vec<u8>>, StateError> {
        let lock = (answer_key, lock_key, lock_value);
        self.send_finish(lock, answer, ttl, None, Sending::EvenWhileDown)
            .await
    }

    /// Ends this replica's lead: keeps `answer` (if any) for `ttl`, frees the lock.
    /// With `thread`, the call's thread slot is kept for its offer in the
    /// same script.
    pub async fn finish(
        &self,
        answer_key: &str,
        lock_key: &str,
        lock_value: &str,
        answer: &[u8],
        ttl: Duration,
        thread: Option<super::KeepAsk<'_>>,
    ) -> Result<Option<Vec<u8>>, StateError> {
        let lock = (answer_key, lock_key, lock_value);
        self.send_finish(lock, answer, ttl, thread, Sending::Repeatable)
            .await
    }

    /// The FINISH script for the lead on `(answer_key, lock_key,
    /// lock_value)`, sent as `how` says.
    async fn send_finish(
        &self,
        (answer_key, lock_key, lock_value): (&str, &str, &str),
        answer: &[u8],
        ttl: Duration,
        thread: Option<super::KeepAsk<'_>>,
        how: Sending,
    ) -> Result<Option<Vec<u8>>, StateError> {
        let ttl = ttl.as_millis().max(1).to_string();
        // The answer's key is its channel too (waiters: `listen`).
        let mut keys = vec![answer_key, lock_key];
        let mut args: Vec<&[u8]> = vec![
            lock_value.as_bytes(),
            answer,
            ttl.as_bytes(),
            answer_key.as_bytes(),
        ];
        if let Some(t) = &thread {
            keys.extend(t.keys);
            args.extend([t.slot.as_bytes(), t.link.as_bytes()]);
        }
        let stored = self.run_once_more(1, &keys, &args, how).await?;
        Ok(match stored {
            Value::BulkString(bytes) => Some(bytes),
            _ => None,
        })
    }

    /// One permit from the fleet-wide bucket `bucket_key` at `rate`, unless
    /// the partner's pause at `pause_key` runs; with `then`, on a permit, one
    /// more from that bucket (the partner's quota for the first try) in the
    /// same round trip.
    pub async fn limit(
        &self,
        bucket_key: &str,
        pause_key: &str,
        rate: Rate,
        then: Option<(&str, Rate)>,
    ) -> Result<Limit, StateError> {
        let (e, t) = gcra(rate);
        let second = then.map(|(key, rate)| (key, gcra(rate)));
        let mut keys = vec![bucket_key, pause_key];
        let mut args = vec![e.as_bytes(), t.as_bytes()];
        if let Some((key, (qe, qt))) = &second {
            keys.push(key);
            args.extend([qe.as_bytes(), qt.as_bytes()]);
        }
        match self.run(2, &keys, &args).await? {
            Value::Array(items) => match items.as_slice() {
                [pause, wait, then] => limit_of(pause, wait, then),
                _ => Err(StateError::Unexpected),
            },
            _ => Err(StateError::Unexpected),
        }
    }

    /// Pauses the partner fleet-wide for `pause` (a longer pause stands).
    pub async fn pause(&self, pause_key: &str, pause: Duration) -> Result<(), StateError> {
        let ms = pause.as_millis().max(1).to_string();
        self.run_idempotent(3, &[pause_key], &[ms.as_bytes()])
            .await
            .map(drop)
    }
}

/// A rate's GCRA arguments: emission interval and burst tolerance in µs.
pub(super) fn gcra(rate: Rate) -> (String, String) {
    let emission_us = (1_000_000.0 / rate.per_second).max(1.0) as u64;
    let tolerance_us = emission_us * u64::from(rate.burst.saturating_sub(1));
    (emission_us.to_string(), tolerance_us.to_string())
}

/// The limit script's `{pause_ms, wait_us, quota_wait_us}`.
pub(super) fn limit_of(pause: &Value, wait: &Value, then: &Value) -> Result<Limit, StateError> {
    let (Value::Int(pause_ms), Value::Int(wait_us), Value::Int(then_us)) = (pause, wait, then)
    else {
        return Err(StateError::Unexpected);
    };
    Ok(Limit {
        paused: (*pause_ms > 0).then(|| Duration::from_millis(*pause_ms as u64)),
        wait: (*wait_us > 0).then(|| Duration::from_micros(*wait_us as u64)),
        then: match *then_us {
            -1 => None,
            0 => Some(None),
            us => Some(Some(Duration::from_micros(us as u64))),
        },
    })
}

/// The claim's reply (its first element or two, when more follow).
pub(super) fn claim_of(reply: &Value) -> Result<ClaimReply, StateError> {
    let Value::Array(items) = reply else {
        return Err(StateError::Unexpected);
    };
    match items.as_slice() {
        [Value::Int(1), Value::BulkString(stored)] => Ok(ClaimReply::Stored(stored.clone())),
        [Value::Int(0), ..] => Ok(ClaimReply::Lead),
        [Value::Int(2)] => Ok(ClaimReply::InFlight),
        [Value::Int(3)] => Ok(ClaimReply::Conflict),
        _ => Err(StateError::Unexpected),
    }
}
