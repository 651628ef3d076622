//! A call's admission on Redis in one round trip. Below the idempotency
//! claim, two layers ask Redis in turn before the partner is called: the
//! thread cap (a slot of the chat's offers) and the caller limit (the
//! caller's bucket, the partner's pause, the first try's quota). Each asked
//! alone is a round trip waited in turn; asked with the claim, in the one
//! script `state/admission.rs` sends, the three are one.
//!
//! The idempotency layer asks them for the layers below it ([`Admit::plan`],
//! from what each would ask), and leaves each its answer as a typed note on
//! the request ([`Admit::notes`]); each layer takes its note instead of
//! asking, and asks for itself as before when there is none (no claim made,
//! Redis away, a cluster, a later ask after a wait). A part the script did
//! not reach (the claim did not lead; the thread at its cap) spends nothing.

use std::sync::{Arc, Mutex};

use crate::call::request::{ProxyRequest, ProxyResponse};
use crate::call::route::{PerRoute, Route};
use crate::config::Config;
use crate::conversation::{AnyThreads, Held, KeepPlan, NoSlot, SlotPlan};
use crate::layers::rate_limit::{AnyPermits, Decision, LimitPlan};
use crate::state::{AlsoAsk, AlsoSaid};

/// What the layers below the claim would ask Redis first.
pub struct Admit {
    threads: Arc<AnyThreads>,
    permits: Arc<AnyPermits>,
    limits_on: PerRoute<bool>,
}

/// One call's asks, owned until the script is sent.
pub struct Plan {
    slot: Option<SlotPlan>,
    limit: Option<LimitPlan>,
}

impl Plan {
    pub fn ask(&self) -> AlsoAsk<'_> {
        AlsoAsk {
            slot: self.slot.as_ref().map(SlotPlan::ask),
            limit: self.limit.as_ref().map(LimitPlan::ask),
        }
    }
}

/// The thread cap's answer, given with the claim: the slot taken (the first
/// of the call's layers to find it takes it), or none for the thread.
#[derive(Clone)]
pub enum SlotDecided {
    Taken(Arc<Mutex<Option<Held>>>),
    Refused(NoSlot),
}

/// The caller's decision, and on a permit the first try's quota's.
pub type CallerAnswer = (Decision, Option<Decision>);

/// The caller limit's first answer, given with the claim; taken once.
#[derive(Clone)]
pub struct LimitDecided(pub Arc<Mutex<Option<CallerAnswer>>>);

impl Admit {
    /// `None` unless both live on a Redis where one script may take all
    /// their keys (one server, or Sentinel's master).
    pub fn new(
        config: &Config,
        threads: Arc<AnyThreads>,
        permits: Arc<AnyPermits>,
    ) -> Option<Admit> {
        let one_script = match (&*threads, &*permits) {
            (AnyThreads::Fleet(t), AnyPermits::Fleet(_)) => t.admits_in_one(),
            _ => false,
        };
        one_script.then(|| Admit {
            threads,
            permits,
            limits_on: PerRoute::new(|r| config.resilience(r).rate_limit.enabled),
        })
    }

    /// What the thread cap and the caller limit would ask for `req`.
    pub fn plan(&self, req: &ProxyRequest) -> Plan {
        let route = req.route();
        let slot = match (&*self.threads, route, req.call.thread) {
            (AnyThreads::Fleet(t), Route::EncoreOffers, Some(thread)) => Some(t.slot_plan(thread)),
            _ => None,
        };
        let limit = match &*self.permits {
            AnyPermits::Fleet(p) if *self.limits_on.get(route) => {
                Some(p.plan(route, req.caller().unwrap_or_default()))
            }
            _ => None,
        };
        Plan { slot, limit }
    }

    /// Leaves each layer its answer on `req`.
    pub fn notes(&self, plan: Plan, said: AlsoSaid, req: &mut ProxyRequest) {
        let route = req.route();
        let notes = req.extensions.get_or_insert_with(Box::default);
        match (plan.slot, said.slot) {
            (Some(plan), Some(Ok(()))) => {
                notes.insert(SlotDecided::Taken(Arc::new(Mutex::new(Some(plan.taken())))))
            }
            (Some(_), Some(Err(why))) => notes.insert(SlotDecided::Refused(why)),
            _ => {}
        }
        if let (AnyPermits::Fleet(p), Some(limit)) = (&*self.permits, said.limit) {
            let decided = p.decided(route, limit);
            notes.insert(LimitDecided(Arc::new(Mutex::new(Some(decided)))));
        }
    }
}

/// On an answer that showed an offer: the thread's slot to keep with the
/// call's idempotency finish (one script, `state/scripts.rs` FINISH). Put
/// there by the thread cap when the slot came with the claim; taken once.
#[derive(Clone)]
pub struct KeepWithFinish(pub Arc<Mutex<Option<KeepPlan>>>);

impl KeepWithFinish {
    pub fn take(resp: &ProxyResponse) -> Option<KeepPlan> {
        let note = resp.extensions.get::<KeepWithFinish>()?;
        note.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl SlotDecided {
    /// The thread cap's answer for this call, if the claim gave one:
    /// `Some(Ok(held))` a slot, `Some(Err(why))` none.
    pub fn take(req: &ProxyRequest) -> Option<Result<Held, NoSlot>> {
        match req.extensions.as_ref()?.get::<SlotDecided>()? {
            SlotDecided::Refused(why) => Some(Err(*why)),
            SlotDecided::Taken(held) => held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .map(Ok),
        }
    }
}

impl LimitDecided {
    /// The caller limit's first answer for this call, once.
    pub fn take(req: &ProxyRequest) -> Option<CallerAnswer> {
        let note = req.extensions.as_ref()?.get::<LimitDecided>()?;
        note.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}
