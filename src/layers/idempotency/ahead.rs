//! On Redis, the questions a call asks after its idempotency claim, asked
//! with it. The thread cap (a slot of the chat's offers), the caller limit
//! (the partner's pause, the caller's bucket) and the first try's quota
//! each ask Redis in turn; asked with the claim, in the one script
//! `state/admission.rs` sends, the four are one round trip. The answers
//! wait on the call (`call/ahead.rs`) until each layer asks its interface,
//! which takes its answer there. This is the Redis store's business alone:
//! a layer asks the same way on either backend, in the same order.
//!
//! Only where one script may take all the keys (one server, or Sentinel's
//! master); on a cluster each question stays its own round trip.

use std::sync::Arc;

use crate::call::ahead::{Ahead, Given, KeepSlot};
use crate::call::request::ProxyRequest;
use crate::call::route::{PerRoute, Route};
use crate::config::Config;
use crate::conversation::{AnyThreads, KeepPlan, SlotPlan};
use crate::layers::rate_limit::{AnyPermits, LimitPlan};
use crate::state::{AlsoAsk, AlsoSaid};

/// What the layers below the claim would ask Redis first.
pub struct AskAhead {
    threads: Arc<AnyThreads>,
    permits: Arc<AnyPermits>,
    limits_on: PerRoute<bool>,
}

/// One call's questions, owned until the script is sent.
pub struct Plan {
    route: Route,
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

impl AskAhead {
    /// `None` unless the threads and the permits both live on a Redis where
    /// one script may take all their keys.
    pub fn new(
        config: &Config,
        threads: Arc<AnyThreads>,
        permits: Arc<AnyPermits>,
    ) -> Option<AskAhead> {
        let one_script = match (&*threads, &*permits) {
            (AnyThreads::Fleet(t), AnyPermits::Fleet(_)) => t.admits_in_one(),
            _ => false,
        };
        one_script.then(|| AskAhead {
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
        Plan { route, slot, limit }
    }

    /// What Redis said, as the call carries it to the layers that ask.
    pub fn given(&self, plan: Plan, said: AlsoSaid) -> Ahead {
        let slot = match (plan.slot, said.slot) {
            (Some(plan), Some(Ok(()))) => Some(Ok(plan.into_member())),
            (Some(_), Some(Err(why))) => Some(Err(why)),
            _ => None,
        };
        let (caller, quota) = match (&*self.permits, said.limit) {
            (AnyPermits::Fleet(p), Some(limit)) => {
                let (caller, quota) = p.decided(plan.route, limit);
                (Some(caller), quota)
            }
            _ => (None, None),
        };
        Ahead::given(Given {
            slot,
            caller,
            quota,
        })
    }

    /// The finish's part for an offer's slot taken with the claim.
    pub fn keep_plan(&self, keep: &KeepSlot) -> Option<KeepPlan> {
        match &*self.threads {
            AnyThreads::Fleet(t) => Some(t.keep_plan(keep)),
            AnyThreads::Local(_) => None,
        }
    }
}
