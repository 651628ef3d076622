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

use crate::call::error::GatewayError;
use crate::call::fingerprint::Fingerprint;
use crate::call::request::ProxyResponse;
use crate::conversation::KeepPlan;
use crate::layers::admit::Plan;
use crate::state::AlsoSaid;

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
    /// Made while the fleet's store could not be reached (`fail_open`): once
    /// it can be again, the fleet's answer for the key wins over this one.
    pub local_only: bool,
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

pub trait IdempotencyStore: Send + Sync + 'static {
    /// Looks `key` up and, when it is new, marks it in flight for the caller.
    fn claim(&self, key: &str, fingerprint: &Fingerprint) -> impl Future<Output = Claim> + Send;
    /// [`IdempotencyStore::claim`], and on a lead what `also` asks, where the
    /// store can ask it in the same round trip (the fleet's, on Redis); what
    /// was answered comes back with the claim. Others ask nothing more.
    fn claim_also(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        also: Option<&Plan>,
    ) -> impl Future<Output = (Claim, Option<AlsoSaid>)> + Send {
        let _ = also;
        async move { (self.claim(key, fingerprint).await, None) }
    }
    /// Ends the call that led `key`: waiters get `answer`, `keep` is stored.
    fn finish(
        &self,
        key: &str,
        answer: &Answer,
        keep: Option<Stored>,
    ) -> impl Future<Output = ()> + Send;
    /// [`IdempotencyStore::finish`], and the call's thread slot kept for its
    /// offer: in the same round trip where the store can (the fleet's); else
    /// on its own, as `thread` does when dropped.
    fn finish_keeping(
        &self,
        key: &str,
        answer: &Answer,
        keep: Option<Stored>,
        thread: Option<KeepPlan>,
    ) -> impl Future<Output = ()> + Send {
        drop(thread);
        self.finish(key, answer, keep)
    }
    /// Stored answers (the entries gauge).
    fn entries(&self) -> u64;
}
