//! offergate's own cost per call, without sockets: the whole tower stack
//! in-process (edge, admission, every layer) in front of an in-memory partner,
//! and the pieces it spends time in (idempotency store, metrics).
//!
//! `cargo bench --bench stack`

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::StatusCode;
use http_body_util::Full;
use offergate::call::error::{CallError, GatewayError};
use offergate::call::request::Outcome;
use offergate::call::request::{ProxyRequest, ProxyResponse};
use offergate::call::route::Route;
use offergate::config::{BaseUrl, Config, Rate};
use offergate::layers::idempotency::{Claim, IdempotencyStore, MemoryStore, Stored};
use offergate::metrics::Metrics;

const OFFER: &str = r#"{"success":true,"offer":{"clickUrl":"https://link.encorekit.com/aB3xY7q2","title":"Free Apple Music for 6 months","description":"Songs & Podcasts","imageUrl":"https://x/y.png","advertiserName":"Apple Music","perk":"6 months free"}}"#;
const BODY: &str = r#"{"clientId":"client-42","chatId":"CHAT","attributes":{"countryCode":"US","language":"en","platform":"ios"}}"#;

fn config() -> Config {
    let any = "127.0.0.1:0".parse().unwrap();
    let mut c = offergate::cli::demo::config(any, any, any).unwrap();
    c.log.access_log = false;
    let plenty = Rate {
        per_second: 1e7,
        burst: 10_000_000,
    };
    for r in [&mut c.encore.resilience, &mut c.besitos.resilience] {
        r.rate_limit.partner = plenty;
        r.rate_limit.client = plenty;
    }
    c
}

fn request(body: String, key: Option<&str>) -> http::Request<Full<Bytes>> {
    let mut r = http::Request::post("/encore/publisher/sdk/v1/offers/message")
        .header("host", "127.0.0.1:8787")
        .header("content-type", "application/json");
    if let Some(k) = key {
        r = r.header("idempotency-key", k);
    }
    r.body(Full::new(Bytes::from(body))).unwrap()
}

/// A current-thread runtime: the stack's cost without scheduler hops.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The whole stack in front of an in-memory partner answering `status` with
/// the Encore offer.
fn stack(
    rt: &tokio::runtime::Runtime,
    status: StatusCode,
) -> offergate::app::stack::EdgeWith<
    impl tower::Service<ProxyRequest, Response = ProxyResponse, Error = GatewayError, Future: Send>
        + Clone
        + Send
        + Sync
        + 'static,
> {
    let offer = Bytes::from_static(OFFER.as_bytes());
    rt.block_on(async {
        let config = config();
        offergate::app::stack::build_with(
            &config,
            BaseUrl::parse("http://127.0.0.1:8787").unwrap(),
            &Metrics::new(),
            &offergate::app::stack::Shared::new(&config, None).expect("the stack's state"),
            tower::service_fn(move |_req: ProxyRequest| {
                let mut resp = ProxyResponse::json(status, offer.clone());
                resp.outcome = Outcome::Forwarded;
                // As the upstream does: only the partner's 200 and 400 are answers.
                let answer = offergate::call::meaning::partner_answer(resp);
                async move { answer }
            }),
        )
        .unwrap()
    })
}

fn whole_stack(c: &mut Criterion) {
    let rt = runtime();
    let next = AtomicU64::new(0);
    let fresh = || {
        BODY.replace(
            "CHAT",
            &format!("chat-{}", next.fetch_add(1, Ordering::Relaxed)),
        )
    };
    let ok = stack(&rt, StatusCode::OK);
    let mut group = c.benchmark_group("stack_in_process");
    group.bench_function("forward", |b| {
        b.to_async(&rt)
            .iter(|| ok.clone().handle(request(fresh(), None)))
    });
    // The edge as a tower service inside tower-http's CatchPanicLayer, the
    // alternative to its own catch (README: tower-http): the same call.
    let caught = tower_http::catch_panic::CatchPanicLayer::new();
    group.bench_function("forward_in_tower_http_catch_panic", |b| {
        b.to_async(&rt).iter(|| {
            let service = tower::Layer::layer(&caught, ok.clone());
            tower::ServiceExt::oneshot(service, request(fresh(), None))
        })
    });
    group.bench_function("replay", |b| {
        let body = fresh();
        b.to_async(&rt)
            .iter(|| ok.clone().handle(request(body.clone(), Some("bench-key"))))
    });
    let down = stack(&rt, StatusCode::INTERNAL_SERVER_ERROR);
    // Open the circuit first, then measure the fallback it answers.
    rt.block_on(async {
        for _ in 0..10 {
            down.clone().handle(request(fresh(), None)).await;
        }
    });
    group.bench_function("circuit_open_fallback", |b| {
        b.to_async(&rt)
            .iter(|| down.clone().handle(request(fresh(), None)))
    });
    group.finish();
}

fn pieces(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store = MemoryStore::new(100_000, 64 * 1024 * 1024);
    let stored = || Stored {
        fingerprint: [7; 16],
        status: StatusCode::OK,
        content_type: None,
        body: Bytes::from_static(OFFER.as_bytes()),
        ttl: Duration::from_secs(3600),
        ask_fleet_after: None,
    };
    rt.block_on(async {
        store.claim("hit", &[7; 16]).await;
        store
            .finish(
                "hit",
                &Err(GatewayError::Call(CallError::DeadlineExceeded)),
                Some(stored()),
            )
            .await;
    });
    c.bench_function("idempotency_lookup_hit", |b| {
        b.iter(|| {
            rt.block_on(async {
                matches!(
                    store.claim(black_box("hit"), &[7; 16]).await,
                    Claim::Stored(_)
                )
            })
        })
    });
    let mut n = 0u64;
    c.bench_function("idempotency_lookup_miss_and_store", |b| {
        b.iter(|| {
            n += 1;
            let key = format!("miss-{n}");
            rt.block_on(async {
                store.claim(&key, &[7; 16]).await;
                store
                    .finish(
                        &key,
                        &Err(GatewayError::Call(CallError::DeadlineExceeded)),
                        Some(stored()),
                    )
                    .await;
            })
        })
    });
    // What a forwarded call records: a labelled counter looked up per call
    // (upstream status) and a histogram resolved once (request duration).
    let metrics = Metrics::new();
    let calls = metrics
        .counter_vec("bench_calls_total", "calls", &["route", "status"])
        .unwrap();
    let duration = metrics
        .histogram_vec("bench_duration_seconds", "duration", &["route"])
        .unwrap()
        .with_label_values(&[Route::EncoreOffers.as_str()]);
    c.bench_function("metrics_record_call", |b| {
        b.iter(|| {
            calls
                .with_label_values(&[Route::EncoreOffers.as_str(), "200"])
                .inc();
            duration.observe(black_box(0.002));
        })
    });
}

/// The binary's allocator, so the figures are the binary's, with a count of
/// allocations for [`allocations_per_call`] (one relaxed add each).
#[global_allocator]
static GLOBAL: Counting = Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

struct Counting;

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
}

/// Heap allocations (and reallocations) per call through the whole stack,
/// printed beside the timings: deterministic, so a change shows up even when
/// the machine is too noisy for timings to.
fn allocations_per_call(_c: &mut Criterion) {
    let rt = runtime();
    let stack = stack(&rt, StatusCode::OK);
    let calls = 10_000u64;
    let count = |key: Option<&str>, fresh: bool| {
        let bodies: Vec<String> = (0..calls)
            .map(|i| {
                BODY.replace(
                    "CHAT",
                    &if fresh {
                        format!("a-{i}")
                    } else {
                        "same".into()
                    },
                )
            })
            .collect();
        rt.block_on(async {
            // Warm: first-call allocations (pools, maps) are not per call.
            stack.clone().handle(request(bodies[0].clone(), key)).await;
            let mut requests: Vec<_> = bodies.into_iter().map(|b| request(b, key)).collect();
            requests.remove(0);
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            let n = requests.len() as u64;
            for r in requests {
                black_box(stack.clone().handle(r).await);
            }
            (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / n as f64
        })
    };
    println!(
        "allocations per call (in-process stack, in-memory partner): forward {:.1}, replay {:.1}",
        count(None, true),
        count(Some("alloc-key"), false)
    );
}

criterion_group!(benches, allocations_per_call, whole_stack, pieces);
criterion_main!(benches);
