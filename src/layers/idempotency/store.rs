//! Where idempotent answers and in-flight calls live. The layer talks to a
//! [`IdempotencyStore`] only, so a shared backend (Redis, for replicas behind a
//! load balancer) can replace the in-process `MemoryStore` (`memory.rs`)
//! without touching it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderValue, StatusCode};

use crate::call::clock::Instant;
use crate::call::error::GatewayError;
use crate::call::fingerprint::Fingerprint;
use crate::call::request::{ProxyRequest, ProxyResponse};

/// What a call ended with, as shared with the callers that waited for it.
pub type Answer = Result<ProxyResponse, GatewayError>;

/// A partner answer kept for replay.
#[derive(Debug, Clone)]
pub struct Stored {
    pub fingerprint: Fingerprint,
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
    /// How long it is replayed.
    pub ttl: Duration,
    /// From when on the fleet's store is asked before this copy answers
    /// (`None`: never). At once for an answer made while the fleet's store
    /// could not be reached (`fail_open`); after a short window for a lead's
    /// own copy, which the fleet may lose meanwhile (a failover to a replica
    /// the answer had not reached yet, a restart). The fleet's answer wins;
    /// with none, this one is shared again.
    pub ask_fleet_after: Option<Instant>,
}

/// What a key is, when a call with it arrives.
pub enum Claim {
    /// Answered before with the same request: replay this.
    Stored(Arc<Stored>),
    /// Used before (or in flight) with a different request.
    Conflict,
    /// The same request is in flight: this resolves with its answer (`None` if
    /// it was lost).
    Wait(BoxFuture<'static, Option<Answer>>),
    /// New: the caller makes the call and must [`IdempotencyStore::finish`] it.
    Lead,
    /// The shared store cannot be reached and must be (`fail_closed`).
    Unavailable,
}

/// A call's waits on the first call with its key ([`Claim::Wait`]). A first
/// call lost on the way (its caller hung up while its claim went on in the
/// fleet) leaves the key free, or another replica's answer on its way: the
/// waiting call claims again rather than fail, a few times at most, all
/// within the deadline of its first wait.
pub struct Waits {
    deadline: Option<Instant>,
    claims_left: u8,
}

impl Default for Waits {
    fn default() -> Waits {
        Waits {
            deadline: None,
            claims_left: 3,
        }
    }
}

impl Waits {
    /// When the call stops waiting: `within` from its first wait.
    pub fn deadline(&mut self, within: Duration) -> Instant {
        *self
            .deadline
            .get_or_insert_with(|| crate::call::clock::now() + within)
    }

    /// Whether the call may claim the key again, its first call lost.
    pub fn claim_again(&mut self) -> bool {
        let left = self.claims_left > 0;
        self.claims_left = self.claims_left.saturating_sub(1);
        left
    }
}

pub trait IdempotencyStore: Send + Sync + 'static {
    /// Looks `key` up and, when it is new, marks it in flight for the caller.
    fn claim(&self, key: &str, fingerprint: &Fingerprint) -> impl Future<Output = Claim> + Send;
    /// [`IdempotencyStore::claim`] for `req`, and on a lead the questions
    /// `req` asks next, where the store can ask them in the same round trip
    /// (on Redis: `ahead.rs`); their answers go to `req.ahead`.
    fn claim_then(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        req: &mut ProxyRequest,
    ) -> impl Future<Output = Claim> + Send {
        let _ = req;
        self.claim(key, fingerprint)
    }
    /// Ends the call that led `key`: waiters get `answer`, `keep` is stored.
    fn finish(
        &self,
        key: &str,
        answer: &Answer,
        keep: Option<Stored>,
    ) -> impl Future<Output = ()> + Send;
    /// Stored answers (the entries gauge).
    fn entries(&self) -> u64;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_call_waits_within_its_first_waits_deadline_and_claims_again_three_times() {
        let mut waits = Waits::default();
        let first = waits.deadline(Duration::from_secs(2));
        tokio::time::advance(Duration::from_millis(700)).await;
        assert_eq!(waits.deadline(Duration::from_secs(2)), first);
        let again: Vec<bool> = (0..5).map(|_| waits.claim_again()).collect();
        assert_eq!(again, [true, true, true, false, false]);
    }
}
