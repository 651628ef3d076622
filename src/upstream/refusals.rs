//! A partner refusing offergate's credential (401, 403) is an operator's
//! problem, not a caller's: the key is wrong, revoked or rotated on one side
//! only. Each credential's state is watched so the log says so once when it
//! starts (ERROR, naming the partner and what to check) and once when it
//! ends, never once per call.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use http::StatusCode;

use crate::call::route::{Route, Target};

/// The credentials a partner refuses now.
#[derive(Default)]
pub(super) struct Refusals {
    /// (route, Besitos partner id or "") of each refused credential.
    refused: Mutex<HashSet<(Route, String)>>,
    /// How many: a call whose credential is fine looks no further while 0.
    count: AtomicUsize,
}

impl Refusals {
    /// Notes the partner's `status` for `target`'s credential.
    pub(super) fn saw(&self, target: &Target, status: StatusCode) {
        let refused = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
        // Only a success says the credential passed (a 5xx may come first).
        if !refused && (!status.is_success() || self.count.load(Ordering::Relaxed) == 0) {
            return;
        }
        let key = (
            target.route(),
            target.partner_id().unwrap_or("").to_string(),
        );
        let mut set = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        let changed = if refused {
            set.insert(key)
        } else {
            set.remove(&key)
        };
        self.count.store(set.len(), Ordering::Relaxed);
        drop(set);
        if !changed {
            return;
        }
        let route = target.route();
        let (partner, check) = (route.partner(), crate::partners::credential_setting(route));
        let partner_id = target.partner_id().unwrap_or("-");
        if refused {
            tracing::error!(
                partner,
                partner_id,
                status = status.as_u16(),
                "the partner refuses offergate's credential: check {check}, then reload (SIGHUP); callers get the fallback meanwhile"
            );
        } else {
            tracing::info!(
                partner,
                partner_id,
                "the partner accepts offergate's credential again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_change_is_noted_once_per_credential() {
        let r = Refusals::default();
        let besitos = |id: &str| Target::Besitos {
            partner_id: id.into(),
            page: None,
        };
        r.saw(&Target::Encore, StatusCode::UNAUTHORIZED);
        r.saw(&Target::Encore, StatusCode::FORBIDDEN);
        r.saw(&besitos("a"), StatusCode::UNAUTHORIZED);
        assert_eq!(r.count.load(Ordering::Relaxed), 2);
        r.saw(&besitos("b"), StatusCode::OK);
        assert_eq!(r.count.load(Ordering::Relaxed), 2, "b was never refused");
        r.saw(&besitos("a"), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            r.count.load(Ordering::Relaxed),
            2,
            "a 503 says nothing of the key"
        );
        r.saw(&Target::Encore, StatusCode::OK);
        r.saw(&besitos("a"), StatusCode::OK);
        assert_eq!(r.count.load(Ordering::Relaxed), 0);
    }
}
