//! What offergate keeps of each conversation (a thread: one `clientId` and
//! `chatId`), so a platform does not have to: when its last messages came,
//! the offers it was shown (when, which link), whether it opted out, and
//! the last message ids seen. The conversation endpoint records and decides
//! by it, the offers route's cap counts by it, the eligibility endpoint adds
//! what it knows: one count per thread.
//!
//! Where it lives is [`Threads`]'s: this replica's memory, bounded
//! (`local.rs`), written behind to an embedded file so a restart keeps it
//! (`journal/`); or with `[state] backend = "redis"` the fleet's
//! (`fleet.rs`), this replica's behind it when Redis cannot answer.

mod fleet;
mod journal;
mod local;

use std::future::Future;

use smallvec::SmallVec;

use crate::call::ahead::{Ahead, KeepSlot};
use crate::call::thread::ThreadId;
use crate::integrator::rules::Known;
use crate::partners::encore::links::LinkKey;
use crate::state::fleet::Unavailable;
pub use fleet::{FleetThreads, KeepPlan, SlotPlan};
pub use journal::Journal;
pub use local::{LocalThreads, MAX_THREADS};

/// A message id, hashed: enough to know a redelivery, nothing in the clear.
pub type MessageKey = u32;

/// Message ids a thread remembers, newest last: a redelivery after the
/// answer store forgot it (a restart) still changes nothing.
const SEEN: usize = 6;

/// An offer as a thread keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offer {
    /// When it was minted, Unix milliseconds.
    pub at: i64,
    /// Its link; [`RESERVED`] while the call that will show it is under way.
    pub link: LinkKey,
}

/// The link of a slot taken for a call still under way.
pub const RESERVED: LinkKey = 0;

/// One thread as kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Thread {
    /// The end user's last message, Unix milliseconds (the platform's time).
    pub last_inbound: Option<i64>,
    /// The last message either way offergate knows of (inbound, or an offer).
    pub last_any: Option<i64>,
    /// Offers in the window, oldest first.
    pub offers: SmallVec<[Offer; 3]>,
    pub seen: SmallVec<[MessageKey; SEEN]>,
}

impl Thread {
    /// What the eligibility rules need: the offers shown (not the slots
    /// still under way) and the opt-out, which is kept apart from threads.
    pub fn known(&self, opted_out: bool) -> Known {
        Known {
            offers: self
                .offers
                .iter()
                .filter(|o| o.link != RESERVED)
                .map(|o| (o.at, o.link))
                .collect(),
            opted_out,
        }
    }

    /// When it was last active: a message, or an offer.
    fn last_active(&self) -> i64 {
        let offer = self.offers.last().map_or(i64::MIN, |o| o.at);
        self.last_any.unwrap_or(i64::MIN).max(offer)
    }
}

/// A thread as a new message found it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Before {
    pub last_inbound: Option<i64>,
    pub last_any: Option<i64>,
    pub known: Known,
    /// This message id was seen before: a redelivery.
    pub repeated: bool,
}

/// How long a thread is kept after it was last active: long enough that
/// its offers still count and its silence is still measured. An opt-out is
/// not part of a thread: it is kept until an opt-in.
#[derive(Clone, Copy, Debug)]
pub struct Keep {
    pub window_ms: i64,
    pub idle_gap_ms: i64,
    pub cap: u32,
}

impl From<&crate::config::IntegratorConfig> for Keep {
    fn from(c: &crate::config::IntegratorConfig) -> Keep {
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Keep {
            window_ms: ms(c.thread_window),
            idle_gap_ms: ms(c.idle_gap),
            cap: c.thread_cap,
        }
    }
}

impl Keep {
    /// Milliseconds a thread is kept after its last activity.
    pub fn retention_ms(&self) -> i64 {
        self.window_ms.max(self.idle_gap_ms)
    }
}

/// Where threads are kept.
pub trait Threads: Send + Sync + 'static {
    /// Calendar now, as the threads' offers are dated.
    fn now_ms(&self) -> i64;

    /// Records inbound message `message` at `at` and answers what the thread
    /// was before it.
    fn message(
        &self,
        thread: ThreadId,
        message: MessageKey,
        at: i64,
    ) -> impl Future<Output = Result<Before, Unavailable>> + Send + '_;

    /// What is known of `thread` (nothing recorded: the default).
    fn known(
        &self,
        thread: ThreadId,
    ) -> impl Future<Output = Result<Known, Unavailable>> + Send + '_;

    /// One of `thread`'s offer slots, given back when the [`Held`] is dropped
    /// unless kept; none at the cap or once the thread opted out. Taken from
    /// `ahead` when the call's claim answered it (`call/ahead.rs`).
    fn reserve<'a>(
        &'a self,
        thread: ThreadId,
        ahead: &'a mut Ahead,
    ) -> impl Future<Output = Result<Result<Held, NoSlot>, Unavailable>> + Send + 'a;

    /// Frees the slot of the offer with `link`, which was never delivered:
    /// the offers still shown, or `None` when the thread has no such offer.
    fn unsent(
        &self,
        thread: ThreadId,
        link: LinkKey,
    ) -> impl Future<Output = Result<Option<u64>, Unavailable>> + Send + '_;

    /// Opts `thread` out of offers (`out`), or back in: kept until the
    /// other, and only where it lasts (never in one replica's memory alone
    /// when the fleet's Redis does not answer: [`Unavailable`], whatever
    /// `on_error` says, so the platform retries).
    fn opt(
        &self,
        thread: ThreadId,
        out: bool,
    ) -> impl Future<Output = Result<(), Unavailable>> + Send + '_;
}

pub use crate::state::NoSlot;

/// The skip reason a caller is given for `why`.
pub fn skip_reason(why: NoSlot) -> &'static str {
    match why {
        NoSlot::Cap => crate::integrator::rules::THREAD_CAP,
        NoSlot::OptedOut => crate::integrator::rules::OPTED_OUT,
    }
}

/// A slot taken for one call: given back when dropped, unless kept.
pub struct Held(Option<Slot>);

enum Slot {
    Local(local::Slot),
    Fleet(fleet::Slot),
}

impl Held {
    /// The call showed the offer with `link`: the slot stays taken, for it.
    /// A slot that came with the call's idempotency claim on Redis is kept
    /// by its finish, in the same round trip: what to keep is returned, for
    /// the answer to carry there (`ProxyResponse::keep_slot`).
    pub fn keep(mut self, link: LinkKey) -> Option<Box<KeepSlot>> {
        match self.0.take() {
            None => None,
            Some(Slot::Local(slot)) => {
                slot.keep(link);
                None
            }
            Some(Slot::Fleet(slot)) => slot.keep(link),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        match self.0.take() {
            None => {}
            Some(Slot::Local(slot)) => slot.release(),
            Some(Slot::Fleet(slot)) => slot.release(),
        }
    }
}

/// The threads `[state]` asks for.
pub enum AnyThreads {
    Local(LocalThreads),
    Fleet(FleetThreads),
}

impl AnyThreads {
    /// Waits (up to `within`) until what this replica changed is on disk.
    pub fn flush(&self, within: std::time::Duration) {
        if let AnyThreads::Local(local) = self {
            local.flush(within);
        }
    }
}

impl Threads for AnyThreads {
    fn now_ms(&self) -> i64 {
        match self {
            AnyThreads::Local(l) => l.now_ms(),
            AnyThreads::Fleet(f) => f.now_ms(),
        }
    }

    async fn message(
        &self,
        thread: ThreadId,
        message: MessageKey,
        at: i64,
    ) -> Result<Before, Unavailable> {
        match self {
            AnyThreads::Local(l) => l.message(thread, message, at).await,
            AnyThreads::Fleet(f) => Box::pin(f.message(thread, message, at)).await,
        }
    }

    async fn known(&self, thread: ThreadId) -> Result<Known, Unavailable> {
        match self {
            AnyThreads::Local(l) => l.known(thread).await,
            AnyThreads::Fleet(f) => Box::pin(f.known(thread)).await,
        }
    }

    async fn reserve(
        &self,
        thread: ThreadId,
        ahead: &mut Ahead,
    ) -> Result<Result<Held, NoSlot>, Unavailable> {
        match self {
            AnyThreads::Local(l) => l.reserve(thread, ahead).await,
            AnyThreads::Fleet(f) => Box::pin(f.reserve(thread, ahead)).await,
        }
    }

    async fn unsent(&self, thread: ThreadId, link: LinkKey) -> Result<Option<u64>, Unavailable> {
        match self {
            AnyThreads::Local(l) => l.unsent(thread, link).await,
            AnyThreads::Fleet(f) => Box::pin(f.unsent(thread, link)).await,
        }
    }

    async fn opt(&self, thread: ThreadId, out: bool) -> Result<(), Unavailable> {
        match self {
            AnyThreads::Local(l) => l.opt(thread, out).await,
            AnyThreads::Fleet(f) => Box::pin(f.opt(thread, out)).await,
        }
    }
}
