//! offergate's own cost per call, without sockets: the whole tower stack
//! in-process (edge, admission, every layer) in front of an in-memory partner,
//! and the pieces it spends time in (idempotency store, metrics).
//!
//! `cargo bench --bench stack`

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::StatusCode;
use http_body_util::Full;
use offergate::config::{BaseUrl, Config, Rate};
use offergate::error::GatewayError;
use offergate::idempotency::{Claim, IdempotencyStore, MemoryStore, Stored};
use offergate::metrics::{Metrics, Outcome};
use offergate::proxy::{ProxyRequest, ProxyResponse};
use offergate::route::Route;

const OFFER: &str = r#"{"success":true,"offer":{"clickUrl":"https://link.encorekit.com/aB3xY7q2","title":"Free Apple Music for 6 months","description":"Songs & Podcasts","imageUrl":"https://x/y.png","advertiserName":"Apple Music","perk":"6 months free"}}"#;
const BODY: &str = r#"{"clientId":"client-42","chatId":"CHAT","attributes":{"countryCode":"US","language":"en","platform":"ios"}}"#;

fn config() -> Config {
    let any = "127.0.0.1:0".parse().unwrap();
    let mut c = Config::demo(any, any, any).unwrap();
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

fn whole_stack(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let offer = Bytes::from_static(OFFER.as_bytes());
    let partner = move |status: StatusCode| {
        let offer = offer.clone();
        tower::service_fn(move |_req: ProxyRequest| {
            let mut resp = ProxyResponse::json(status, offer.clone());
            resp.outcome = Outcome::Forwarded;
            async move { Ok::<_, GatewayError>(resp) }
        })
    };
    let public = BaseUrl::parse("http://127.0.0.1:8787").unwrap();
    let next = AtomicU64::new(0);
    let fresh = || {
        BODY.replace(
            "CHAT",
            &format!("chat-{}", next.fetch_add(1, Ordering::Relaxed)),
        )
    };

    let ok = rt.block_on(async {
        offergate::stack::build_with(
            &config(),
            public.clone(),
            Arc::new(Metrics::new()),
            partner(StatusCode::OK),
        )
        .unwrap()
    });
    let mut group = c.benchmark_group("stack_in_process");
    group.bench_function("forward", |b| {
        b.to_async(&rt)
            .iter(|| ok.clone().handle(request(fresh(), None)))
    });
    group.bench_function("replay", |b| {
        let body = fresh();
        b.to_async(&rt)
            .iter(|| ok.clone().handle(request(body.clone(), Some("bench-key"))))
    });
    let down = rt.block_on(async {
        offergate::stack::build_with(
            &config(),
            public,
            Arc::new(Metrics::new()),
            partner(StatusCode::INTERNAL_SERVER_ERROR),
        )
        .unwrap()
    });
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
        fingerprint: [7; 32],
        status: StatusCode::OK,
        content_type: None,
        body: Bytes::from_static(OFFER.as_bytes()),
        ttl: Duration::from_secs(3600),
    };
    rt.block_on(async {
        store.claim("hit", &[7; 32]).await;
        store
            .finish("hit", &Err(GatewayError::DeadlineExceeded), Some(stored()))
            .await;
    });
    c.bench_function("idempotency_lookup_hit", |b| {
        b.iter(|| {
            rt.block_on(async {
                matches!(
                    store.claim(black_box("hit"), &[7; 32]).await,
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
                store.claim(&key, &[7; 32]).await;
                store
                    .finish(&key, &Err(GatewayError::DeadlineExceeded), Some(stored()))
                    .await;
            })
        })
    });
    let metrics = Metrics::new();
    c.bench_function("metrics_record_call", |b| {
        b.iter(|| {
            metrics.upstream_call(Route::EncoreOffers, "200", black_box(0.001));
            metrics.request_done(Route::EncoreOffers, Outcome::Forwarded, black_box(0.002));
        })
    });
}

/// The binary's allocator, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

criterion_group!(benches, whole_stack, pieces);
criterion_main!(benches);
