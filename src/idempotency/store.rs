//! Where idempotent answers and in-flight calls live. The layer talks to a
//! [`IdempotencyStore`] only, so a shared backend (Redis, for replicas behind a
//! load balancer) can replace the in-process [`MemoryStore`] without touching it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderValue, StatusCode};
use moka::sync::Cache;
use tokio::sync::watch;

use super::fingerprint::Fingerprint;
use crate::error::GatewayError;
use crate::proxy::ProxyResponse;

/// What a call ended with, as shared with the callers that waited for it.
pub type Answer = Result<ProxyResponse, GatewayError>;

/// A partner answer kept for replay.
#[derive(Debug)]
pub struct Stored {
    pub fingerprint: Fingerprint,
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
    /// How long it is replayed.
    pub ttl: Duration,
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
}

pub trait IdempotencyStore: Send + Sync + 'static {
    /// Looks `key` up and, when it is new, marks it in flight for the caller.
    fn claim(&self, key: &str, fingerprint: &Fingerprint) -> impl Future<Output = Claim> + Send;
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

/// Bytes an entry costs beyond its key and body (the entry, the `Arc`, moka's
/// hash table, deques and timer wheel), so the byte limit bounds real memory,
/// not just payloads. Measured, not guessed: RSS under a full cache of Encore
/// answers was ~860 bytes per entry for ~270 bytes of key and body.
const ENTRY_OVERHEAD: usize = 640;

/// In-process store: answers in a moka cache bounded by entries and bytes, with
/// a TTL per entry; in-flight calls in a map beside it, which eviction never
/// touches.
pub struct MemoryStore {
    done: Cache<String, Arc<Stored>>,
    in_flight: Mutex<HashMap<Box<str>, InFlight>>,
}

struct InFlight {
    fingerprint: Fingerprint,
    answer: watch::Sender<Option<Answer>>,
}

/// Each entry expires after its own TTL (explicit keys and body keys differ).
struct PerEntryTtl;

impl moka::Expiry<String, Arc<Stored>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<Stored>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

impl MemoryStore {
    /// At most `max_entries` answers and about `max_bytes` of memory: every
    /// entry weighs at least `max_bytes / max_entries`, so the byte bound also
    /// enforces the entry bound.
    pub fn new(max_entries: u64, max_bytes: u64) -> MemoryStore {
        let floor = max_bytes.div_ceil(max_entries.max(1)).max(1) as usize;
        let done = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(move |key: &String, value: &Arc<Stored>| {
                let size = key.len() + value.body.len() + ENTRY_OVERHEAD;
                u32::try_from(size.max(floor)).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .build();
        MemoryStore {
            done,
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Box<str>, InFlight>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The weight of what is stored now, in bytes (after pending evictions).
    pub fn weighted_size(&self) -> u64 {
        self.done.run_pending_tasks();
        self.done.weighted_size()
    }
}

impl IdempotencyStore for MemoryStore {
    async fn claim(&self, key: &str, fingerprint: &Fingerprint) -> Claim {
        // One lock over both lookups: a call that finishes stores its answer
        // before leaving the in-flight map, so a key is always found in one.
        let mut in_flight = self.lock();
        if let Some(stored) = self.done.get(key) {
            return if stored.fingerprint == *fingerprint {
                Claim::Stored(stored)
            } else {
                Claim::Conflict
            };
        }
        if let Some(call) = in_flight.get(key) {
            if call.fingerprint != *fingerprint {
                return Claim::Conflict;
            }
            let mut answer = call.answer.subscribe();
            return Claim::Wait(Box::pin(async move {
                answer
                    .wait_for(Option::is_some)
                    .await
                    .ok()
                    .and_then(|a| a.clone())
            }));
        }
        in_flight.insert(
            key.into(),
            InFlight {
                fingerprint: *fingerprint,
                answer: watch::channel(None).0,
            },
        );
        Claim::Lead
    }

    async fn finish(&self, key: &str, answer: &Answer, keep: Option<Stored>) {
        if let Some(stored) = keep {
            self.done.insert(key.to_string(), Arc::new(stored));
        }
        let call = self.lock().remove(key);
        if let Some(call) = call {
            call.answer.send_replace(Some(answer.clone()));
        }
    }

    fn entries(&self) -> u64 {
        self.done.run_pending_tasks();
        self.done.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(fp: u8, body_len: usize, ttl: Duration) -> Stored {
        Stored {
            fingerprint: [fp; 32],
            status: StatusCode::OK,
            content_type: None,
            body: Bytes::from(vec![b'x'; body_len]),
            ttl,
        }
    }

    #[tokio::test]
    async fn lead_wait_store_replay_conflict() {
        let s = MemoryStore::new(100, 1 << 20);
        assert!(matches!(s.claim("k", &[1; 32]).await, Claim::Lead));
        assert!(
            matches!(s.claim("k", &[2; 32]).await, Claim::Conflict),
            "in flight, other request"
        );
        let Claim::Wait(waiter) = s.claim("k", &[1; 32]).await else {
            panic!("should wait")
        };
        let answer: Answer = Err(GatewayError::DeadlineExceeded);
        s.finish("k", &answer, Some(stored(1, 10, Duration::from_secs(60))))
            .await;
        assert!(matches!(
            waiter.await,
            Some(Err(GatewayError::DeadlineExceeded))
        ));
        assert!(matches!(s.claim("k", &[1; 32]).await, Claim::Stored(_)));
        assert!(matches!(s.claim("k", &[2; 32]).await, Claim::Conflict));
        assert_eq!(s.entries(), 1);
    }

    #[tokio::test]
    async fn a_call_not_kept_leaves_the_key_free() {
        let s = MemoryStore::new(100, 1 << 20);
        assert!(matches!(s.claim("k", &[1; 32]).await, Claim::Lead));
        s.finish("k", &Err(GatewayError::DeadlineExceeded), None)
            .await;
        assert!(matches!(s.claim("k", &[1; 32]).await, Claim::Lead));
    }

    #[tokio::test]
    async fn memory_stays_bounded_under_100k_distinct_keys() {
        let max_bytes = 4 * 1024 * 1024;
        let max_entries = 5_000;
        let s = MemoryStore::new(max_entries, max_bytes);
        for i in 0..100_000u32 {
            let key = format!("encore_offers/x/{i:08}-some-caller-key");
            assert!(matches!(s.claim(&key, &[1; 32]).await, Claim::Lead));
            // An Encore offer answer is about 300 bytes.
            s.finish(
                &key,
                &Err(GatewayError::DeadlineExceeded),
                Some(stored(1, 300, Duration::from_secs(3600))),
            )
            .await;
        }
        assert!(
            s.weighted_size() <= max_bytes,
            "{} > {max_bytes}",
            s.weighted_size()
        );
        assert!(s.entries() <= max_entries, "{} entries", s.entries());
        assert!(
            s.entries() > max_entries / 2,
            "the cache is used, not emptied: {}",
            s.entries()
        );
        assert!(s.lock().is_empty(), "nothing left in flight");
    }

    #[tokio::test]
    async fn entries_expire_after_their_ttl() {
        let s = MemoryStore::new(100, 1 << 20);
        s.claim("short", &[1; 32]).await;
        s.finish(
            "short",
            &Err(GatewayError::DeadlineExceeded),
            Some(stored(1, 1, Duration::from_millis(50))),
        )
        .await;
        s.claim("long", &[1; 32]).await;
        s.finish(
            "long",
            &Err(GatewayError::DeadlineExceeded),
            Some(stored(1, 1, Duration::from_secs(60))),
        )
        .await;
        std::thread::sleep(Duration::from_millis(80));
        assert!(matches!(s.claim("short", &[1; 32]).await, Claim::Lead));
        assert!(matches!(s.claim("long", &[1; 32]).await, Claim::Stored(_)));
    }
}
