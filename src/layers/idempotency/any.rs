//! The store `[state]` chose, as one type the layer is built over.

use super::memory::MemoryStore;
use super::redis::RedisStore;
use super::store::{Answer, Claim, IdempotencyStore, Stored};
use crate::call::fingerprint::Fingerprint;
use crate::call::route::Route;
use crate::config::Config;
use crate::conversation::KeepPlan;
use crate::layers::admit::Plan;
use crate::state::{AlsoSaid, Redis};

pub enum AnyStore {
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl AnyStore {
    /// The store for `route`'s answers under `config` (its bounds): this
    /// replica's memory, or Redis (`shared`) in front of it.
    pub fn for_route(config: &Config, route: Route, shared: Option<&Redis>) -> AnyStore {
        let c = &config.resilience(route).idempotency;
        let local = MemoryStore::new(c.max_entries, c.max_bytes);
        match shared {
            None => AnyStore::Memory(local),
            Some(redis) => AnyStore::Redis(RedisStore::new(
                local,
                redis.clone(),
                route,
                config.resilience(route).deadline,
                // The memory store's bound on one answer: half a shard's share.
                (c.max_bytes / 32).max(1024) as usize,
            )),
        }
    }
}

impl IdempotencyStore for AnyStore {
    async fn claim(&self, key: &str, fingerprint: &Fingerprint) -> Claim {
        match self {
            AnyStore::Memory(s) => s.claim(key, fingerprint).await,
            // Boxed: the Redis store's state stays out of the in-memory path.
            AnyStore::Redis(s) => Box::pin(s.claim(key, fingerprint)).await,
        }
    }

    async fn claim_also(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        also: Option<&Plan>,
    ) -> (Claim, Option<AlsoSaid>) {
        match self {
            AnyStore::Memory(s) => (s.claim(key, fingerprint).await, None),
            AnyStore::Redis(s) => Box::pin(s.claim_with(key, fingerprint, also)).await,
        }
    }

    async fn finish_keeping(
        &self,
        key: &str,
        answer: &Answer,
        keep: Option<Stored>,
        thread: Option<KeepPlan>,
    ) {
        match self {
            AnyStore::Memory(s) => s.finish_keeping(key, answer, keep, thread).await,
            AnyStore::Redis(s) => Box::pin(s.finish_with(key, answer, keep, thread)).await,
        }
    }

    async fn finish(&self, key: &str, answer: &Answer, keep: Option<Stored>) {
        match self {
            AnyStore::Memory(s) => s.finish(key, answer, keep).await,
            AnyStore::Redis(s) => Box::pin(s.finish(key, answer, keep)).await,
        }
    }

    fn entries(&self) -> u64 {
        match self {
            AnyStore::Memory(s) => s.entries(),
            AnyStore::Redis(s) => s.entries(),
        }
    }
}
