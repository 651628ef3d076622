//! The rate limits fleet-wide, on Redis: one GCRA script per decision, on
//! Redis's own clock, that also reads the partner's pause (one round trip for
//! both). So N replicas together spend at most the configured quota, and a
//! 429 seen by one pauses them all. A decision Redis cannot give falls back to
//! this replica's own buckets (`fail_open`) or refuses (`fail_closed`).

use std::time::Duration;

use ring::digest::{digest, SHA256};

use crate::call::clock::{self, Instant};
use crate::call::fingerprint::hex;
use crate::call::route::Route;
use crate::config::Rate;
use crate::layers::pause::PartnerPause;
use crate::state::{Limit, Redis};

/// Why a fleet-wide permit was not given.
pub(super) enum Refusal {
    /// The partner's pause runs this much longer.
    Paused(Duration),
    /// The bucket frees a permit only this much later.
    Limited(Duration),
    /// Redis gave no decision.
    Unavailable,
}

/// A fleet-wide permit from `bucket`, waiting up to `max_wait` and never past
/// `deadline`, as the in-process `acquire` does. A pause found is mirrored
/// into this replica's `local` pause, so its circuit sees it too.
pub(super) async fn acquire(
    redis: &Redis,
    bucket: &str,
    route: Route,
    rate: Rate,
    max_wait: Duration,
    deadline: Option<Instant>,
    local: &PartnerPause,
) -> Result<(), Refusal> {
    let started = clock::now();
    let give_up = deadline.map_or(started + max_wait, |d| d.min(started + max_wait));
    let pause_key = pause_key(redis, route);
    loop {
        let limit = redis
            .limit(bucket, &pause_key, rate)
            .await
            .map_err(|_| Refusal::Unavailable)?;
        let (wait, refusal) = match limit {
            Limit {
                paused: Some(left), ..
            } => {
                local.pause_until(clock::now() + left);
                (left, Refusal::Paused(left))
            }
            Limit {
                wait: Some(wait), ..
            } => (wait, Refusal::Limited(wait)),
            _ => return Ok(()),
        };
        if clock::now() + wait > give_up {
            return Err(refusal);
        }
        tokio::time::sleep(wait).await;
    }
}

/// The key of the partner's fleet-wide pause.
pub fn pause_key(redis: &Redis, route: Route) -> String {
    redis.key(route, "pause", "partner")
}

/// The route's partner quota.
pub(super) fn quota_key(redis: &Redis, route: Route) -> String {
    redis.key(route, "quota", "partner")
}

/// One caller's bucket. The caller's id is hashed: a clientId is part of a
/// request body, and no body content is stored in Redis.
pub(super) fn caller_key(redis: &Redis, route: Route, caller: &str) -> String {
    let hash = digest(&SHA256, caller.as_bytes());
    redis.key(route, "caller", &hex(&hash.as_ref()[..12]))
}
