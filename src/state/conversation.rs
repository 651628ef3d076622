//! The scripts of a thread's keys: its offers (slots under way and offers
//! shown) and its conversation (times, opt-out), as `conversation/fleet.rs`
//! asks them.

use std::time::Duration;

use redis::Value;

use super::redis::Sending;
use super::{Redis, StateError};

pub use crate::call::ahead::NoSlot;

/// What the thread script is asked to do with a thread's offers.
#[derive(Clone, Copy, Debug)]
pub enum ThreadOp<'a> {
    /// Take a slot named `slot`.
    Reserve { slot: &'a str },
    /// Give the slot back.
    Release { slot: &'a str },
    /// The slot's call showed the offer `link`.
    Keep { slot: &'a str, link: &'a str },
    /// The offer `link` was never delivered.
    Unsent { link: &'a str },
}

/// A thread's conversation as the script found it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub last_inbound: Option<i64>,
    pub last_any: Option<i64>,
    pub opted_out: bool,
    /// Members of the offers set with their scores, in the window.
    pub offers: Vec<(String, i64)>,
}

/// What the conversation script is asked.
#[derive(Clone, Copy, Debug)]
pub enum ConversationOp {
    /// An inbound message at this time (Unix ms).
    Message(i64),
    /// Nothing changes.
    Known,
    /// Opted out (true) or back in.
    Opt(bool),
}

impl Redis {
    /// One change to a thread's offers (`keys`: the offers set, the
    /// conversation hash). `Ok(n)`: the script's answer (reserve: 1 taken,
    /// 0 at the cap; unsent: offers left, -1 none such).
    pub async fn thread(
        &self,
        keys: [&str; 2],
        window: Duration,
        cap: u32,
        op: ThreadOp<'_>,
    ) -> Result<i64, StateError> {
        let (w, c) = (window.as_millis().to_string(), cap.to_string());
        let (mode, slot, link): (&str, &str, &str) = match op {
            ThreadOp::Reserve { slot } => ("reserve", slot, ""),
            ThreadOp::Release { slot } => ("release", slot, ""),
            ThreadOp::Keep { slot, link } => ("keep", slot, link),
            ThreadOp::Unsent { link } => ("unsent", "", link),
        };
        let args: [&[u8]; 5] = [
            w.as_bytes(),
            c.as_bytes(),
            slot.as_bytes(),
            mode.as_bytes(),
            link.as_bytes(),
        ];
        // Giving a slot back or keeping it may run twice; taking one or
        // freeing an offer may not.
        let how = if matches!(op, ThreadOp::Release { .. } | ThreadOp::Keep { .. }) {
            Sending::Repeatable
        } else {
            Sending::Once
        };
        match self.run_once_more(4, &keys, &args, how).await? {
            Value::Int(n) => Ok(n),
            _ => Err(StateError::Unexpected),
        }
    }

    /// Reads (and with `op`, changes) a thread's conversation (`keys`: its
    /// hash, its offers set), kept `retention` after the change; once opted
    /// out, without expiry (until the opt-in).
    pub async fn conversation(
        &self,
        keys: [&str; 2],
        op: ConversationOp,
        retention: Duration,
        window: Duration,
    ) -> Result<Conversation, StateError> {
        let (mode, value) = match op {
            ConversationOp::Message(at) => ("message", at.to_string()),
            ConversationOp::Known => ("known", String::new()),
            ConversationOp::Opt(out) => ("opt", if out { "1" } else { "0" }.to_string()),
        };
        let [r, w] = [retention, window].map(|d| d.as_millis().max(1).to_string());
        let args: [&[u8]; 4] = [
            mode.as_bytes(),
            value.as_bytes(),
            r.as_bytes(),
            w.as_bytes(),
        ];
        // Times move forward only, an opt-out is set, a read reads: repeatable.
        let reply = self.run_idempotent(5, &keys, &args).await?;
        conversation_of(reply).ok_or(StateError::Unexpected)
    }
}

fn conversation_of(reply: Value) -> Option<Conversation> {
    let Value::Array(parts) = reply else {
        return None;
    };
    let [li, la, oo, offers] = <[Value; 4]>::try_from(parts).ok()?;
    let text = |v: Value| -> Option<String> {
        match v {
            Value::BulkString(b) => String::from_utf8(b).ok(),
            Value::SimpleString(s) => Some(s),
            Value::Int(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let time = |v: Value| -> Option<Option<i64>> {
        let t = text(v)?;
        if t.is_empty() {
            Some(None)
        } else {
            t.parse::<f64>().ok().map(|f| Some(f as i64))
        }
    };
    let Value::Array(members) = offers else {
        return None;
    };
    let mut list = Vec::with_capacity(members.len() / 2);
    let mut it = members.into_iter();
    while let (Some(m), Some(score)) = (it.next(), it.next()) {
        list.push((text(m)?, text(score)?.parse::<f64>().ok()? as i64));
    }
    Some(Conversation {
        last_inbound: time(li)?,
        last_any: time(la)?,
        opted_out: text(oo)? == "1",
        offers: list,
    })
}
