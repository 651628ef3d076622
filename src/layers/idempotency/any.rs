//! The store `[state]` chose, as one type the layer is built over.

use super::memory::MemoryStore;
use super::redis::RedisStore;
use super::store::{Answer, Claim, IdempotencyStore, Stored};
use crate::call::fingerprint::Fingerprint;

pub enum AnyStore {
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl IdempotencyStore for AnyStore {
    async fn claim(&self, key: &str, fingerprint: &Fingerprint) -> Claim {
        match self {
            AnyStore::Memory(s) => s.claim(key, fingerprint).await,
            // Boxed: the Redis store's state stays out of the in-memory path.
            AnyStore::Redis(s) => Box::pin(s.claim(key, fingerprint)).await,
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
