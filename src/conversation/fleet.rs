//! Threads on Redis, shared by every replica: per thread a hash (last
//! inbound message, last activity, opt-out) and a sorted set of its offers
//! (slots under way and offers shown, dated by Redis's clock), each change
//! one script. Both keys expire with the thread's retention. When Redis
//! cannot answer, `[state] on_error` decides (`state/fleet.rs`): this
//! replica's own threads under `fail_open`.

use std::time::Duration;

use super::local::LocalThreads;
use super::{Before, Held, Keep, MessageKey, NoSlot, Slot as AnySlot, Threads};
use crate::call::ahead::{Ahead, KeepSlot};
use crate::call::fingerprint::hex;
use crate::call::route::Route;
use crate::call::thread::ThreadId;
use crate::integrator::rules::Known;
use crate::partners::encore::links::LinkKey;
use crate::state::fleet::{fleet_first, Unavailable};
use crate::state::{Conversation, ConversationOp, Redis, ThreadOp};

pub struct FleetThreads {
    redis: Redis,
    local: LocalThreads,
    keep: Keep,
}

/// A thread's two keys: its offers, its conversation.
struct Keys {
    offers: String,
    conversation: String,
}

fn ms(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A thread's slot as Redis is asked for it (alone, or with the call's
/// idempotency claim: `state/admission.rs`).
pub struct SlotPlan {
    keys: Keys,
    member: String,
    window: Duration,
    cap: u32,
}

impl SlotPlan {
    pub fn ask(&self) -> crate::state::SlotAsk<'_> {
        crate::state::SlotAsk {
            keys: [&self.keys.offers, &self.keys.conversation],
            window: self.window,
            cap: self.cap,
            member: &self.member,
        }
    }

    /// The slot's member, once Redis took it for the claim.
    pub fn into_member(self) -> Box<str> {
        self.member.into_boxed_str()
    }
}

impl FleetThreads {
    pub fn new(redis: Redis, local: LocalThreads, keep: Keep) -> FleetThreads {
        FleetThreads { redis, local, keep }
    }

    /// Whether a call's admission can be one script on this Redis.
    pub fn admits_in_one(&self) -> bool {
        self.redis.admits_in_one()
    }

    /// What reserving a slot of `thread` asks Redis.
    pub fn slot_plan(&self, thread: ThreadId) -> SlotPlan {
        SlotPlan {
            keys: self.keys(thread),
            member: slot_member(),
            window: ms(self.keep.window_ms),
            cap: self.keep.cap,
        }
    }

    /// The slot Redis took under `member`; `with_finish`: taken with the
    /// call's claim, so kept with its finish.
    fn held(&self, thread: ThreadId, member: String, with_finish: bool) -> Held {
        Held(Some(AnySlot::Fleet(Slot {
            redis: self.redis.clone(),
            thread,
            keys: self.keys(thread),
            slot: member,
            window: ms(self.keep.window_ms),
            with_finish,
        })))
    }

    /// The finish's part for an offer's slot kept with it.
    pub fn keep_plan(&self, keep: &KeepSlot) -> KeepPlan {
        KeepPlan {
            slot: Some(Slot {
                redis: self.redis.clone(),
                thread: keep.thread,
                keys: self.keys(keep.thread),
                slot: keep.member.to_string(),
                window: ms(self.keep.window_ms),
                with_finish: false,
            }),
            link: link_member(keep.link),
            key: keep.link,
        }
    }

    fn keys(&self, thread: ThreadId) -> Keys {
        let id = hex(&thread);
        Keys {
            offers: self.redis.key(Route::EncoreOffers, "thread", &id),
            conversation: self.redis.key(Route::EncoreOffers, "conversation", &id),
        }
    }

    async fn ask(
        &self,
        thread: ThreadId,
        op: ConversationOp,
    ) -> Result<Conversation, crate::state::StateError> {
        let keys = self.keys(thread);
        self.redis
            .conversation(
                [&keys.conversation, &keys.offers],
                op,
                ms(self.keep.retention_ms()),
                ms(self.keep.window_ms),
            )
            .await
    }
}

/// The offers of a conversation the script returned: shown ones only.
fn known_of(c: &Conversation) -> Known {
    Known {
        offers: c
            .offers
            .iter()
            .filter_map(|(member, at)| {
                let link = member.strip_prefix("l:")?;
                Some((*at, u64::from_str_radix(link, 16).ok()?))
            })
            .collect(),
        opted_out: c.opted_out,
    }
}

fn link_member(link: LinkKey) -> String {
    format!("l:{link:016x}")
}

impl Threads for FleetThreads {
    fn now_ms(&self) -> i64 {
        self.local.now()
    }

    async fn message(
        &self,
        thread: ThreadId,
        message: MessageKey,
        at: i64,
    ) -> Result<Before, Unavailable> {
        let ask = async {
            let c = self.ask(thread, ConversationOp::Message(at)).await?;
            Ok::<_, crate::state::StateError>(Before {
                last_inbound: c.last_inbound,
                last_any: c.last_any,
                known: known_of(&c),
                // Redeliveries are the answer store's to catch, fleet-wide.
                repeated: false,
            })
        };
        fleet_first(&self.redis, ask, || {
            self.local.message_now(thread, message, at)
        })
        .await
    }

    async fn known(&self, thread: ThreadId) -> Result<Known, Unavailable> {
        let ask = async {
            Ok::<_, crate::state::StateError>(known_of(
                &self.ask(thread, ConversationOp::Known).await?,
            ))
        };
        fleet_first(&self.redis, ask, || self.local.known_now(thread)).await
    }

    async fn reserve(
        &self,
        thread: ThreadId,
        ahead: &mut Ahead,
    ) -> Result<Result<Held, NoSlot>, Unavailable> {
        if let Some(given) = ahead.take_slot() {
            return Ok(given.map(|member| self.held(thread, member.into(), true)));
        }
        // The same slot the claim's script asks for, asked alone.
        let plan = self.slot_plan(thread);
        let ask = async move {
            let taken = {
                let a = plan.ask();
                let op = ThreadOp::Reserve { slot: a.member };
                self.redis.thread(a.keys, a.window, a.cap, op).await?
            };
            Ok::<_, crate::state::StateError>(match taken {
                1 => Ok(self.held(thread, plan.member, false)),
                2 => Err(NoSlot::OptedOut),
                _ => Err(NoSlot::Cap),
            })
        };
        fleet_first(&self.redis, ask, || self.local.reserve_now(thread)).await
    }

    async fn unsent(&self, thread: ThreadId, link: LinkKey) -> Result<Option<u64>, Unavailable> {
        let keys = self.keys(thread);
        let member = link_member(link);
        let ask = async {
            let left = self
                .redis
                .thread(
                    [&keys.offers, &keys.conversation],
                    ms(self.keep.window_ms),
                    self.keep.cap,
                    ThreadOp::Unsent { link: &member },
                )
                .await?;
            Ok::<_, crate::state::StateError>(u64::try_from(left).ok())
        };
        fleet_first(&self.redis, ask, || self.local.unsent_now(thread, link)).await
    }

    async fn opt(&self, thread: ThreadId, out: bool) -> Result<(), Unavailable> {
        // Only Redis keeps it for the fleet: taken in this replica's memory
        // alone it would be lost when Redis answers again.
        Box::pin(self.ask(thread, ConversationOp::Opt(out)))
            .await
            .map_err(|_| Unavailable)?;
        // Also here, so decisions made without Redis later still see it.
        let _ = self.local.opt_now(thread, out);
        Ok(())
    }
}

/// An offer's slot on Redis, to keep with the call's idempotency finish
/// (`state/scripts.rs`, FINISH). Dropped unsent (the finish went without
/// Redis), it is kept on its own, in the background.
pub struct KeepPlan {
    slot: Option<Slot>,
    link: String,
    key: LinkKey,
}

impl KeepPlan {
    /// Its part of the finish script.
    pub fn ask(&self) -> Option<crate::state::KeepAsk<'_>> {
        let slot = self.slot.as_ref()?;
        Some(crate::state::KeepAsk {
            keys: [&slot.keys.offers, &slot.keys.conversation],
            slot: &slot.slot,
            link: &self.link,
        })
    }

    /// Sent with the finish: nothing left to do.
    pub fn sent(mut self) {
        self.slot = None;
    }
}

impl Drop for KeepPlan {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.keep_now(self.key);
        }
    }
}

/// A new slot's member in a thread's offers.
fn slot_member() -> String {
    let mut buf = [0u8; uuid::fmt::Simple::LENGTH];
    let id = uuid::Uuid::new_v4();
    let mut out = String::with_capacity(2 + buf.len());
    out.push_str("r:");
    out.push_str(id.simple().encode_lower(&mut buf));
    out
}

/// A slot taken on Redis.
pub(super) struct Slot {
    redis: Redis,
    thread: ThreadId,
    keys: Keys,
    slot: String,
    window: Duration,
    /// Taken with the call's idempotency claim: kept with its finish.
    with_finish: bool,
}

impl Slot {
    /// Kept: by the call's finish when the slot came with its claim (what
    /// to keep is returned for the answer to carry there), else now.
    pub(super) fn keep(self, link: LinkKey) -> Option<Box<KeepSlot>> {
        if self.with_finish {
            return Some(Box::new(KeepSlot {
                thread: self.thread,
                member: self.slot.into_boxed_str(),
                link,
            }));
        }
        self.keep_now(link);
        None
    }

    /// Kept in the background, before any later command of this replica,
    /// so the call's answer does not wait a round trip for it. The slot was
    /// taken before the partner was called, so the thread's count is right
    /// either way; until the keep lands (microseconds) only `unsent` could
    /// miss the link.
    fn keep_now(self, link: LinkKey) {
        let redis = self.redis.clone();
        redis.in_background(async move {
            let member = link_member(link);
            let op = ThreadOp::Keep {
                slot: &self.slot,
                link: &member,
            };
            let keys = [self.keys.offers.as_str(), self.keys.conversation.as_str()];
            // A keep Redis missed leaves the slot taken until it expires: the
            // offer still counts, only `unsent` cannot find it.
            let _ = self.redis.thread(keys, self.window, 0, op).await;
        });
    }

    /// Given back in the background (a drop cannot wait); a failure leaves
    /// the slot to expire with the window.
    pub(super) fn release(self) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let keys = [self.keys.offers.as_str(), self.keys.conversation.as_str()];
                let op = ThreadOp::Release { slot: &self.slot };
                let _ = self.redis.thread(keys, self.window, 0, op).await;
            });
        }
    }
}
