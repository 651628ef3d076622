//! The store `[state]` chose, as one type the layer is built over.

use super::ahead::AskAhead;
use super::memory::MemoryStore;
use super::redis::RedisStore;
use super::store::{Answer, Claim, IdempotencyStore, Stored};
use crate::call::fingerprint::Fingerprint;
use crate::call::request::ProxyRequest;
use crate::call::route::Route;
use crate::config::Config;
use crate::state::Redis;
use std::sync::Arc;

pub enum AnyStore {
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl AnyStore {
    /// The store for `route`'s answers under `config` (its bounds): this
    /// replica's memory, or Redis (`shared`) in front of it, asking the
    /// questions after a claim with it where `ahead` is given.
    pub fn for_route(
        config: &Config,
        route: Route,
        shared: Option<&Redis>,
        ahead: Option<&Arc<AskAhead>>,
    ) -> AnyStore {
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
                ahead.cloned(),
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

    async fn claim_then(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        req: &mut ProxyRequest,
    ) -> Claim {
        match self {
            AnyStore::Memory(s) => s.claim_then(key, fingerprint, req).await,
            AnyStore::Redis(s) => Box::pin(s.claim_then(key, fingerprint, req)).await,
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
