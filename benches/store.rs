//! The idempotency store against moka 0.12 set up for the same job: LRU
//! eviction (which admits every new key, unlike its default TinyLFU), a
//! weigher counting key, body and the same per-entry overhead, and each
//! answer's own TTL (`Expiry`). The brief names moka; this is the measurement
//! behind keeping our own store (README, "Dependencies and why").
//!
//! `cargo bench --bench store`
//!
//! First, outside criterion: live heap bytes after 1.5 M distinct Encore
//! answers into a 32 MiB store, and how many of the 10,000 newest are still
//! there (a platform's retry of a call it just made must replay). Then the
//! per-operation timings: a hit, and a miss followed by a store.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::StatusCode;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use offergate::call::error::{CallError, GatewayError};
use offergate::layers::idempotency::{Claim, IdempotencyStore, MemoryStore, Stored};

/// Live heap bytes, over the same allocator offergate uses.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        mimalloc::MiMalloc.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        mimalloc::MiMalloc.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - layout.size() as isize, Ordering::Relaxed);
        mimalloc::MiMalloc.realloc(ptr, layout, new)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const OFFER: &str = r#"{"success":true,"offer":{"clickUrl":"https://link.encorekit.com/aB3xY7q2","title":"Free Apple Music for 6 months","description":"Songs & Podcasts","imageUrl":"https://storage.googleapis.com/encore-assets-prod/creatives/primary.png","advertiserName":"Apple Music","perk":"6 months free"}}"#;
const MAX_BYTES: u64 = 32 * 1024 * 1024;
/// The store's own per-entry overhead (memory.rs), given to moka's weigher too.
const ENTRY_OVERHEAD: u32 = 320;
const KEYS: u64 = 1_500_000;

fn stored() -> Stored {
    Stored {
        fingerprint: [7; 16],
        status: StatusCode::OK,
        content_type: None,
        // A copy per answer, as the idempotency layer keeps one.
        body: Bytes::copy_from_slice(OFFER.as_bytes()),
        ttl: Duration::from_secs(3600),
        ask_fleet_after: None,
    }
}

struct ByTtl;

impl moka::Expiry<String, Arc<Stored>> for ByTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<Stored>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

fn moka_store() -> Cache<String, Arc<Stored>> {
    Cache::builder()
        .max_capacity(MAX_BYTES)
        .weigher(|k: &String, v: &Arc<Stored>| {
            k.len() as u32 + v.body.len() as u32 + ENTRY_OVERHEAD
        })
        .eviction_policy(EvictionPolicy::lru())
        .expire_after(ByTtl)
        .build()
}

fn key(n: u64) -> String {
    format!("body/{n:032x}")
}

async fn ours_store(store: &MemoryStore, key: &str) {
    store.claim(key, &[7; 16]).await;
    store
        .finish(
            key,
            &Err(GatewayError::Call(CallError::DeadlineExceeded)),
            Some(stored()),
        )
        .await;
}

async fn ours_hit(store: &MemoryStore, key: &str) -> bool {
    matches!(store.claim(key, &[7; 16]).await, Claim::Stored(_))
}

/// Live bytes and newest keys kept after `KEYS` distinct answers.
fn fill_report(rt: &tokio::runtime::Runtime) {
    let before = LIVE.load(Ordering::Relaxed);
    let ours = MemoryStore::new(u64::MAX / 2, MAX_BYTES);
    rt.block_on(async {
        for n in 0..KEYS {
            ours_store(&ours, &key(n)).await;
        }
    });
    let ours_bytes = LIVE.load(Ordering::Relaxed) - before;
    let ours_kept = rt.block_on(async {
        let mut kept = 0;
        for n in KEYS - 10_000..KEYS {
            kept += u32::from(ours_hit(&ours, &key(n)).await);
        }
        kept
    });
    drop(ours);

    let before = LIVE.load(Ordering::Relaxed);
    let cache = moka_store();
    for n in 0..KEYS {
        cache.insert(key(n), Arc::new(stored()));
    }
    cache.run_pending_tasks();
    let moka_bytes = LIVE.load(Ordering::Relaxed) - before;
    let moka_kept = (KEYS - 10_000..KEYS)
        .filter(|n| cache.get(&key(*n)).is_some())
        .count();
    let mib = |b: isize| b as f64 / 1024.0 / 1024.0;
    println!(
        "after {KEYS} answers into a {} MiB store: ours {:.1} MiB live heap, {ours_kept} of the 10000 newest kept; \
         moka (lru, weigher, expiry) {:.1} MiB, {moka_kept} kept, {} entries",
        MAX_BYTES / 1024 / 1024,
        mib(ours_bytes),
        mib(moka_bytes),
        cache.entry_count()
    );
}

fn stores(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    fill_report(&rt);

    let ours = MemoryStore::new(100_000, 64 * 1024 * 1024);
    let cache = moka_store();
    rt.block_on(ours_store(&ours, "hit"));
    cache.insert("hit".to_string(), Arc::new(stored()));

    let mut group = c.benchmark_group("store_hit");
    group.bench_function("ours", |b| {
        b.iter(|| rt.block_on(ours_hit(&ours, black_box("hit"))))
    });
    group.bench_function("moka", |b| {
        b.iter(|| rt.block_on(async { cache.get(black_box("hit")).is_some() }))
    });
    group.finish();

    let mut group = c.benchmark_group("store_miss_and_store");
    let mut n = 0u64;
    group.bench_function("ours", |b| {
        b.iter(|| {
            n += 1;
            rt.block_on(ours_store(&ours, &key(n)))
        })
    });
    let mut n = 0u64;
    group.bench_function("moka", |b| {
        b.iter(|| {
            n += 1;
            let k = key(n);
            rt.block_on(async {
                if cache.get(&k).is_none() {
                    cache.insert(k, Arc::new(stored()));
                }
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3));
    targets = stores
}
criterion_main!(benches);
