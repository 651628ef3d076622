//! What the shared state answered for a call before the layer that needs the
//! answer asks for it. A call asks its questions in one order on either
//! backend: its idempotency claim, its thread's slot, the partner's pause and
//! its caller's bucket, the circuit, the partner's quota. In memory each is
//! asked when its layer comes to it. On Redis one script answers the claim
//! and the questions after it (`state/admission.rs`), and the answers wait
//! here, on the call, until each layer asks the same interface as ever, which
//! takes its answer instead of asking Redis again. Layers never read these
//! fields; the shared state's implementations do.

use super::thread::ThreadId;
use std::time::Duration;

/// Answers given ahead, each taken once by the interface that gave it.
/// Boxed: 8 bytes in the request every layer moves, and nothing in memory.
#[derive(Debug, Default)]
pub struct Ahead(Option<Box<Given>>);

#[derive(Debug, Default)]
pub struct Given {
    /// The thread's slot: taken under this member of the thread's offers, or
    /// none for the thread.
    pub slot: Option<Result<Box<str>, NoSlot>>,
    /// The partner's pause and the caller's bucket.
    pub caller: Option<Decision>,
    /// The first try's partner quota, asked after the caller's bucket while
    /// the circuit was closed.
    pub quota: Option<Decision>,
}

impl Ahead {
    pub fn given(given: Given) -> Ahead {
        Ahead(Some(Box::new(given)))
    }

    fn part<T>(&mut self, pick: impl FnOnce(&mut Given) -> &mut Option<T>) -> Option<T> {
        self.0.as_deref_mut().and_then(|g| pick(g).take())
    }

    pub fn take_slot(&mut self) -> Option<Result<Box<str>, NoSlot>> {
        self.part(|g| &mut g.slot)
    }

    pub fn take_caller(&mut self) -> Option<Decision> {
        self.part(|g| &mut g.caller)
    }

    pub fn take_quota(&mut self) -> Option<Decision> {
        self.part(|g| &mut g.quota)
    }

    /// The first try's quota, answered with a later ask of the caller's bucket.
    pub fn give_quota(&mut self, quota: Decision) {
        self.0.get_or_insert_with(Box::default).quota = Some(quota);
    }
}

/// Why a thread gets no offer slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoSlot {
    /// `thread_cap` offers shown in the window already.
    Cap,
    /// The thread opted out.
    OptedOut,
}

/// One bucket's answer, now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A permit, taken.
    Permit,
    /// No permit until this much later.
    Wait(Duration),
    /// The partner asked for a pause; this much of it is left.
    Paused(Duration),
    /// The shared state could not decide (`fail_closed`).
    Unavailable,
}

/// An offer's slot on Redis that the call's idempotency finish keeps, in the
/// same round trip: left on the answer by the slot itself when it was taken
/// with the claim, read by the Redis store when it finishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepSlot {
    pub thread: ThreadId,
    pub member: Box<str>,
    pub link: u64,
}
