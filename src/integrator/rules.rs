//! "When to call us", from the Encore doc, as one rule: call on the first
//! message of a thread, or on the first after a long idle gap (a
//! re-engagement), never mid-thread, never once the thread has shown the
//! per-thread cap of offers, never once it opted out. [`judge`] is the rule;
//! the eligibility endpoint (the thread's history in one request) and the
//! conversation endpoint (the thread offergate keeps, `conversation/`) both
//! decide by it, so they cannot disagree.

use std::time::Duration;

use smallvec::SmallVec;

use crate::config::{IdleGapBasis, IntegratorConfig};
use crate::partners::encore::links::LinkKey;

/// How far past offergate's clock a message time is believed; later is
/// taken as now, so a clock that runs ahead (or a forged date) cannot push
/// a thread's offers out of the window.
pub const MAX_AHEAD_MS: i64 = 5 * 60_000;

/// `[encore.integrator]`, and the host offers link to.
#[derive(Clone, Debug)]
pub struct Rules {
    /// A gap this long since the previous message makes a re-engagement.
    pub idle_gap: Duration,
    /// Offers a thread may show; 0: no cap.
    pub thread_cap: u32,
    /// How far back offers count toward the cap.
    pub thread_window: Duration,
    /// Which messages the gap is measured from.
    pub basis: IdleGapBasis,
    /// Whole-message texts, lowercased, that opt a thread out.
    pub opt_out_keywords: Vec<String>,
    /// Where offer links point (`[encore] offer_link_host`).
    pub link_host: String,
}

impl Rules {
    pub fn new(c: &IntegratorConfig, link_host: &str) -> Rules {
        Rules {
            idle_gap: c.idle_gap,
            thread_cap: c.thread_cap,
            thread_window: c.thread_window,
            basis: c.idle_gap_basis,
            opt_out_keywords: c.opt_out_keywords.clone(),
            link_host: link_host.to_string(),
        }
    }

    fn idle_gap_ms(&self) -> i64 {
        i64::try_from(self.idle_gap.as_millis()).unwrap_or(i64::MAX)
    }

    pub fn window_ms(&self) -> i64 {
        i64::try_from(self.thread_window.as_millis()).unwrap_or(i64::MAX)
    }

    /// Whether `text` is one of the opt-out keywords (the whole message,
    /// any case, as `partners::encore::words::opt_out_word` reads it).
    pub fn is_opt_out(&self, text: &str) -> bool {
        let word = crate::partners::encore::words::opt_out_word(text);
        !word.is_empty() && self.opt_out_keywords.contains(&word)
    }
}

/// Why a message may get an offer.
pub const FIRST_MESSAGE: &str = "first_message";
pub const RE_ENGAGEMENT: &str = "re_engagement";
/// Why it may not.
pub const MID_THREAD: &str = "mid_thread";
pub const THREAD_CAP: &str = "thread_cap";
pub const OPTED_OUT: &str = "opted_out";

/// The rule's answer for one inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub trigger: Option<&'static str>,
    /// `None`: eligible.
    pub reason: Option<&'static str>,
}

/// The Encore doc's rule for a message at `current`, the previous message
/// (on the configured basis) at `previous`, with `offers_shown` in the
/// window. An opt-out wins over everything, then silence, then the cap.
pub fn judge(
    rules: &Rules,
    current: i64,
    previous: Option<i64>,
    offers_shown: u64,
    opted_out: bool,
) -> Verdict {
    let trigger = match previous {
        None => Some(FIRST_MESSAGE),
        Some(prev) if current.saturating_sub(prev) >= rules.idle_gap_ms() => Some(RE_ENGAGEMENT),
        Some(_) => None,
    };
    let capped = rules.thread_cap > 0 && offers_shown >= u64::from(rules.thread_cap);
    let reason = if opted_out {
        Some(OPTED_OUT)
    } else if trigger.is_none() {
        Some(MID_THREAD)
    } else if capped {
        Some(THREAD_CAP)
    } else {
        None
    };
    Verdict { trigger, reason }
}

/// What offergate itself knows of a thread: the offers it recorded (when,
/// which link) and whether the thread opted out.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Known {
    pub offers: SmallVec<[(i64, LinkKey); 3]>,
    pub opted_out: bool,
}
