//! The in-process [`IdempotencyStore`]: sharded, two generations per shard.

use crate::call::clock::{self, Instant};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};

use foldhash::fast::RandomState;
use tokio::sync::watch;

use super::store::{Answer, Claim, IdempotencyStore, Stored};
use crate::call::fingerprint::Fingerprint;

/// Bytes an entry costs beyond its key and body (its hash-table slot, the
/// `Arc<Stored>` allocation, the copied content type, allocator rounding), so
/// the byte limit bounds real memory, not just payloads. Calibrated from RSS
/// under a full store of Encore answers (benches/README.md, soak): about 730
/// bytes of RSS per entry for about 370 bytes of key and body.
const ENTRY_OVERHEAD: usize = 320;

/// Most shards a store is split into: enough that two cores rarely meet on one
/// lock, few enough that each shard's half-budget stays large.
const MAX_SHARDS: u64 = 16;

/// In-process store. Answers live in shards, each a pair of generations: new
/// answers go into the current one; when it holds half the shard's share of
/// the byte or entry limit, the previous generation is dropped whole and the
/// current one takes its place. So memory stays within the limits, the newest
/// answers are always kept (every answer survives at least half a shard's
/// budget of newer ones, or its TTL), and an insert costs one hash-map insert.
///
/// Why not moka: idempotency is insert-once, read-rarely, evict-oldest. moka's
/// TinyLFU admission refuses new one-hit keys once the cache is full (measured:
/// 86 % of fresh answers were not kept, so a platform's retry reached the
/// partner again), and its concurrent table rehashed on almost every insert
/// under that churn (the top cost of a forwarded call; benches/README.md).
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    /// Per shard and generation.
    generation_bytes: usize,
    generation_entries: usize,
    /// Every entry weighs at least this, so the byte bound also bounds entries.
    floor: usize,
}

struct Shard {
    current: Generation,
    previous: Generation,
    /// Calls in flight, beside the answers: rotation never touches them.
    in_flight: HashMap<Box<str>, InFlight, RandomState>,
}

struct Generation {
    answers: HashMap<Box<str>, Kept, RandomState>,
    bytes: usize,
}

struct Kept {
    stored: Arc<Stored>,
    expires: Instant,
    weight: usize,
}

struct InFlight {
    fingerprint: Fingerprint,
    /// Made when the first duplicate arrives: most calls have none.
    answer: Option<watch::Sender<Option<Answer>>>,
}

impl Generation {
    fn new(hasher: &RandomState) -> Generation {
        Generation {
            answers: HashMap::with_hasher(hasher.clone()),
            bytes: 0,
        }
    }

    fn remove(&mut self, key: &str) -> Option<Kept> {
        let kept = self.answers.remove(key)?;
        self.bytes -= kept.weight;
        Some(kept)
    }
}

impl Shard {
    /// The live answer under `key`; an expired one is dropped on the way.
    /// Reads the clock only for a key it holds.
    fn get(&mut self, key: &str) -> Option<Arc<Stored>> {
        for generation in [&mut self.current, &mut self.previous] {
            if let Some(kept) = generation.answers.get(key) {
                if kept.expires > clock::now() {
                    return Some(kept.stored.clone());
                }
                generation.remove(key);
            }
        }
        None
    }
}

impl MemoryStore {
    /// At most `max_entries` answers and about `max_bytes` of memory.
    pub fn new(max_entries: u64, max_bytes: u64) -> MemoryStore {
        let max_entries = max_entries.max(1);
        // A shard per 1,024 entries, at most MAX_SHARDS: small stores stay one
        // shard, so their limits are not split into slivers.
        let shards = (max_entries / 1024).clamp(1, MAX_SHARDS);
        let hasher = RandomState::default();
        let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        MemoryStore {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        current: Generation::new(&hasher),
                        previous: Generation::new(&hasher),
                        in_flight: HashMap::with_hasher(hasher.clone()),
                    })
                })
                .collect(),
            generation_bytes: to_usize(max_bytes / shards / 2),
            generation_entries: to_usize((max_entries / shards / 2).max(1)),
            floor: to_usize(max_bytes.div_ceil(max_entries)),
            hasher,
        }
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        let index = self.hasher.hash_one(key) % self.shards.len() as u64;
        // `index < len`, which is a usize.
        let shard = &self.shards[index as usize];
        shard.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `stored` under `key` in the current generation of its shard,
    /// rotating first when it is full. An answer weighing more than a whole
    /// generation is not kept.
    fn keep(&self, shard: &mut Shard, key: Box<str>, stored: Stored) {
        let weight = (key.len() + stored.body.len() + ENTRY_OVERHEAD).max(self.floor);
        if weight > self.generation_bytes {
            return;
        }
        // No earlier answer is looked for: the leader's claim found none live
        // (and dropped an expired one), and no other call can store under the
        // key while it is in flight. Should one be in the current generation
        // anyway, `insert` hands it back below; one in the previous generation
        // is shadowed by this one and goes with it. Two fewer probes into
        // tables too large for the cache.
        if shard.current.bytes + weight > self.generation_bytes
            || shard.current.answers.len() >= self.generation_entries
        {
            // Reuse the dropped generation's table: its capacity is what a
            // generation needs, so the new one does not grow from empty.
            shard.previous.answers.clear();
            shard.previous.bytes = 0;
            std::mem::swap(&mut shard.current, &mut shard.previous);
        }
        let expires = clock::now() + stored.ttl;
        shard.current.bytes += weight;
        let kept = Kept {
            stored: Arc::new(stored),
            expires,
            weight,
        };
        if let Some(replaced) = shard.current.answers.insert(key, kept) {
            shard.current.bytes -= replaced.weight;
        }
    }

    fn each_shard(&self) -> impl Iterator<Item = MutexGuard<'_, Shard>> {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// What the stored answers weigh, in bytes (expired ones not yet dropped
    /// included: they still hold memory).
    pub fn weighted_size(&self) -> u64 {
        self.each_shard()
            .map(|s| (s.current.bytes + s.previous.bytes) as u64)
            .sum()
    }

    #[cfg(test)]
    fn nothing_in_flight(&self) -> bool {
        self.each_shard().all(|s| s.in_flight.is_empty())
    }

    /// Gives up a lead on `key` whose call was dropped before it could be
    /// settled (its caller hung up while the claim went on elsewhere): the
    /// calls waiting on it get `None` now, and the next one claims the key
    /// again rather than wait out its deadline on a call that is gone.
    pub(super) fn abandon(&self, key: &str) {
        self.shard(key).in_flight.remove(key);
    }
}

impl IdempotencyStore for MemoryStore {
    async fn claim(&self, key: &str, fingerprint: &Fingerprint) -> Claim {
        // One lock over both lookups: a call that finishes stores its answer
        // before leaving the in-flight map, so a key is always found in one.
        let mut shard = self.shard(key);
        if let Some(stored) = shard.get(key) {
            return if stored.fingerprint == *fingerprint {
                Claim::Stored(stored)
            } else {
                Claim::Conflict
            };
        }
        if let Some(call) = shard.in_flight.get_mut(key) {
            if call.fingerprint != *fingerprint {
                return Claim::Conflict;
            }
            let sender = call.answer.get_or_insert_with(|| watch::channel(None).0);
            let mut answer = sender.subscribe();
            return Claim::Wait(Box::pin(async move {
                answer
                    .wait_for(Option::is_some)
                    .await
                    .ok()
                    .and_then(|a| a.clone())
            }));
        }
        shard.in_flight.insert(
            key.into(),
            InFlight {
                fingerprint: *fingerprint,
                answer: None,
            },
        );
        Claim::Lead
    }

    async fn finish(&self, key: &str, answer: &Answer, keep: Option<Stored>) {
        let call = {
            let mut shard = self.shard(key);
            // The in-flight entry's key is the stored answer's key: no new one.
            let (key, call) = match shard.in_flight.remove_entry(key) {
                Some((key, call)) => (key, Some(call)),
                None => (key.into(), None),
            };
            if let Some(stored) = keep {
                self.keep(&mut shard, key, stored);
            }
            call
        };
        // Nobody can subscribe once the call has left the map, so with no
        // receiver now the answer has no one to go to: skip copying it.
        if let Some(sender) = call.and_then(|c| c.answer) {
            if sender.receiver_count() > 0 {
                sender.send_replace(Some(answer.clone()));
            }
        }
    }

    /// Live answers: expired ones still held are not counted.
    fn entries(&self) -> u64 {
        let now = clock::now();
        self.each_shard()
            .map(|s| {
                [&s.current, &s.previous]
                    .iter()
                    .map(|g| g.answers.values().filter(|k| k.expires > now).count() as u64)
                    .sum::<u64>()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use http::StatusCode;

    use super::*;
    use crate::call::error::{CallError, GatewayError};

    fn stored(fp: u8, body_len: usize, ttl: Duration) -> Stored {
        Stored {
            fingerprint: [fp; 16],
            status: StatusCode::OK,
            content_type: None,
            body: Bytes::from(vec![b'x'; body_len]),
            ttl,
            ask_fleet_after: None,
        }
    }

    /// A new call under `key` (it must lead) whose answer is kept: a body of
    /// `body_len` bytes for `ttl`.
    async fn answer(s: &MemoryStore, key: &str, body_len: usize, ttl: Duration) {
        assert!(matches!(s.claim(key, &[1; 16]).await, Claim::Lead), "{key}");
        s.finish(
            key,
            &Err(GatewayError::Call(CallError::DeadlineExceeded)),
            Some(stored(1, body_len, ttl)),
        )
        .await;
    }

    #[tokio::test]
    async fn lead_wait_store_replay_conflict() {
        let s = MemoryStore::new(100, 1 << 20);
        assert!(matches!(s.claim("k", &[1; 16]).await, Claim::Lead));
        assert!(
            matches!(s.claim("k", &[2; 16]).await, Claim::Conflict),
            "in flight, other request"
        );
        let Claim::Wait(waiter) = s.claim("k", &[1; 16]).await else {
            panic!("should wait")
        };
        let answer: Answer = Err(GatewayError::Call(CallError::DeadlineExceeded));
        s.finish("k", &answer, Some(stored(1, 10, Duration::from_secs(60))))
            .await;
        assert!(matches!(
            waiter.await,
            Some(Err(GatewayError::Call(CallError::DeadlineExceeded)))
        ));
        assert!(matches!(s.claim("k", &[1; 16]).await, Claim::Stored(_)));
        assert!(matches!(s.claim("k", &[2; 16]).await, Claim::Conflict));
        assert_eq!(s.entries(), 1);
    }

    #[tokio::test]
    async fn a_call_not_kept_leaves_the_key_free() {
        let s = MemoryStore::new(100, 1 << 20);
        assert!(matches!(s.claim("k", &[1; 16]).await, Claim::Lead));
        s.finish(
            "k",
            &Err(GatewayError::Call(CallError::DeadlineExceeded)),
            None,
        )
        .await;
        assert!(matches!(s.claim("k", &[1; 16]).await, Claim::Lead));
    }

    #[tokio::test]
    async fn memory_stays_bounded_under_100k_distinct_keys() {
        let max_bytes = 4 * 1024 * 1024;
        let max_entries = 5_000;
        let s = MemoryStore::new(max_entries, max_bytes);
        for i in 0..100_000u32 {
            let key = format!("encore_offers/x/{i:08}-some-caller-key");
            // An Encore offer answer is about 300 bytes.
            answer(&s, &key, 300, Duration::from_secs(3600)).await;
        }
        assert!(
            s.weighted_size() <= max_bytes,
            "{} > {max_bytes}",
            s.weighted_size()
        );
        assert!(s.entries() <= max_entries, "{} entries", s.entries());
        // Every shard holds at least one full generation: half its share.
        assert!(
            s.entries() >= max_entries * 2 / 5,
            "the store is used, not emptied: {}",
            s.entries()
        );
        assert!(s.nothing_in_flight(), "nothing left in flight");
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_their_ttl() {
        let s = MemoryStore::new(100, 1 << 20);
        answer(&s, "short", 1, Duration::from_millis(50)).await;
        answer(&s, "long", 1, Duration::from_secs(60)).await;
        tokio::time::advance(Duration::from_millis(80)).await;
        assert!(matches!(s.claim("short", &[1; 16]).await, Claim::Lead));
        assert!(matches!(s.claim("long", &[1; 16]).await, Claim::Stored(_)));
    }

    #[tokio::test]
    async fn the_newest_answers_are_kept_when_full() {
        let s = MemoryStore::new(5_000, 4 * 1024 * 1024);
        for i in 0..50_000u32 {
            let key = format!("key/{i:08}");
            answer(&s, &key, 300, Duration::from_secs(3600)).await;
            // A platform's retry of the call just made must be replayed.
            assert!(
                matches!(s.claim(&key, &[1; 16]).await, Claim::Stored(_)),
                "answer {i} was not kept"
            );
        }
        for i in (50_000 - 1_000)..50_000u32 {
            let key = format!("key/{i:08}");
            assert!(
                matches!(s.claim(&key, &[1; 16]).await, Claim::Stored(_)),
                "recent answer {i} was evicted"
            );
        }
    }

    #[tokio::test]
    async fn an_answer_larger_than_a_generation_is_not_kept() {
        let s = MemoryStore::new(100, 64 * 1024);
        answer(&s, "big", 40 * 1024, Duration::from_secs(60)).await;
        assert!(matches!(s.claim("big", &[1; 16]).await, Claim::Lead));
        assert_eq!(s.weighted_size(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_replaced_answer_is_counted_once() {
        let s = MemoryStore::new(100, 1 << 20);
        for _ in 0..3 {
            // Each expired before the next: the key leads again.
            answer(&s, "k", 10, Duration::from_millis(1)).await;
            tokio::time::advance(Duration::from_millis(2)).await;
        }
        assert_eq!(s.entries(), 0, "expired");
        assert_eq!(
            s.weighted_size(),
            (1 + 10 + ENTRY_OVERHEAD).max(s.floor) as u64
        );
    }
}
