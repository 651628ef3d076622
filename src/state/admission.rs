//! A forwarded call's first round trip on Redis: the idempotency claim and,
//! once it leads, what the layers below would ask next in turn (the
//! thread's slot, the caller's bucket with the partner's pause and the
//! first try's quota), in one script ([`scripts::ADMIT`]). Where one script
//! may not take keys of several slots (a cluster) each stays its own call.

use std::time::Duration;

use redis::Value;

use super::decisions::{claim_of, gcra, limit_of};
use super::{ClaimReply, Limit, Redis, StateError};
use crate::config::Rate;

/// What a claim asks besides, for when it leads.
#[derive(Default)]
pub struct AlsoAsk<'a> {
    pub slot: Option<SlotAsk<'a>>,
    pub limit: Option<LimitAsk<'a>>,
}

/// The thread's slot: its offers and conversation keys, the window, the
/// cap, the slot's member.
pub struct SlotAsk<'a> {
    pub keys: [&'a str; 2],
    pub window: Duration,
    pub cap: u32,
    pub member: &'a str,
}

/// The partner's pause, the caller's bucket, then the quota (where the
/// circuit would let a try go now).
pub struct LimitAsk<'a> {
    pub bucket: &'a str,
    pub pause: &'a str,
    pub quota: Option<&'a str>,
    pub rate: Rate,
    pub quota_rate: Rate,
}

/// A thread's slot to keep with a finish: its offers and conversation
/// keys, the slot's member, the offer's link member.
pub struct KeepAsk<'a> {
    pub keys: [&'a str; 2],
    pub slot: &'a str,
    pub link: &'a str,
}

/// What the rest said, when the claim led.
#[derive(Debug, Default, Clone, Copy)]
pub struct AlsoSaid {
    /// `Some(Ok(()))`: the slot is taken; `Some(Err(why))`: none for the
    /// thread (the limits were not asked); `None`: not asked.
    pub slot: Option<Result<(), super::NoSlot>>,
    /// `None`: not asked (or not reached).
    pub limit: Option<Limit>,
}

impl Redis {
    /// Whether a call's admission can be one script here.
    pub fn admits_in_one(&self) -> bool {
        self.inner.one_keyspace
    }

    /// [`Redis::claim`], and on a lead what `also` asks, in one script.
    /// Not sent again after a dropped connection: the limits may have
    /// spent their permits.
    pub async fn admit(
        &self,
        answer_key: &str,
        lock_key: &str,
        fp_hex: &str,
        lock_value: &str,
        lock_ttl: Duration,
        also: &AlsoAsk<'_>,
    ) -> Result<(ClaimReply, AlsoSaid), StateError> {
        let ttl = lock_ttl.as_millis().max(1).to_string();
        let mut keys = vec![answer_key, lock_key];
        let (window, cap) = match &also.slot {
            Some(s) => (s.window.as_millis().to_string(), s.cap.to_string()),
            None => (String::new(), String::new()),
        };
        let (caller, quota) = match &also.limit {
            Some(l) => (gcra(l.rate), gcra(l.quota_rate)),
            None => Default::default(),
        };
        let mut args: Vec<&[u8]> = vec![fp_hex.as_bytes(), lock_value.as_bytes(), ttl.as_bytes()];
        match &also.slot {
            Some(s) => {
                keys.extend(s.keys);
                args.extend([
                    b"1".as_slice(),
                    window.as_bytes(),
                    cap.as_bytes(),
                    s.member.as_bytes(),
                ]);
            }
            None => args.extend([b"".as_slice(), b"", b"", b""]),
        }
        match &also.limit {
            Some(l) => {
                keys.extend([l.bucket, l.pause]);
                keys.extend(l.quota);
                args.extend([
                    b"1".as_slice(),
                    caller.0.as_bytes(),
                    caller.1.as_bytes(),
                    quota.0.as_bytes(),
                    quota.1.as_bytes(),
                ]);
            }
            None => args.push(b""),
        }
        let reply = self.run(6, &keys, &args).await?;
        let claim = claim_of(&reply)?;
        let Value::Array(items) = &reply else {
            return Err(StateError::Unexpected);
        };
        let (slot, limit) = match items.as_slice() {
            [Value::Int(0), Value::Int(slot), pause, wait, then] => (
                match slot {
                    1 => Some(Ok(())),
                    0 => Some(Err(super::NoSlot::Cap)),
                    2 => Some(Err(super::NoSlot::OptedOut)),
                    _ => None,
                },
                match pause {
                    Value::Int(-2) => None,
                    _ => Some(limit_of(pause, wait, then)?),
                },
            ),
            _ => (None, None),
        };
        Ok((claim, AlsoSaid { slot, limit }))
    }
}
