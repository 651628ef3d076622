//! Per-call cost of offergate's own work, and a forwarded call against the same
//! call made directly to the simulator, in the same run (ratios, not absolutes:
//! these machines are noisy).
//!
//! `cargo bench --bench hot_path`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use offergate::call::fingerprint;
use offergate::call::route::Target;
use offergate::config::BaseUrl;
use offergate::partners::{besitos, encore};
use offergate::{Gateway, Simulator};

const ENCORE_BODY: &str = r#"{"clientId":"client-42","chatId":"8b3f7c10-9d4e-4d2a-91a1-3f0e8a1c0b5d","attributes":{"countryCode":"US","language":"en","platform":"ios"}}"#;

fn local_work(c: &mut Criterion) {
    c.bench_function("validate_encore_body", |b| {
        b.iter(|| encore::check_body(black_box(ENCORE_BODY.as_bytes())))
    });
    let page = br#"{"current_page":1,"data":[{"subscriber_id":"a","game":"g","level":"level 1","level_description":"d","hours":3,"currency":"coins","reward":"40 coins","message":"m"}],"first_page_url":"http://sim/data/messages/p/upcoming-goals?page=1","from":1,"next_page_url":"http://sim/data/messages/p/upcoming-goals?page=2","path":"http://sim/data/messages/p/upcoming-goals","per_page":"5","prev_page_url":null,"to":1}"#;
    let public = BaseUrl::parse("http://127.0.0.1:8787").unwrap();
    c.bench_function("rewrite_besitos_page", |b| {
        b.iter(|| besitos::rewrite_answer(black_box(page), &public, ""))
    });
    let offer = br#"{"success":true,"offer":{"clickUrl":"https://link.encorekit.com/aB3xY7q2","title":"Free Apple Music for 6 months","description":"Songs & Podcasts","imageUrl":"https://x/y.png","advertiserName":"Apple Music","perk":"6 months free"}}"#;
    c.bench_function("check_encore_answer", |b| {
        b.iter(|| encore::check_answer(black_box(offer), encore::LINK_HOST))
    });
    let target = Target::Encore;
    let rl = offergate::config::RateLimitConfig {
        enabled: true,
        partner: offergate::config::Rate {
            per_second: 1e6,
            burst: 1_000_000,
        },
        client: offergate::config::Rate {
            per_second: 1e6,
            burst: 1_000_000,
        },
        client_overrides: Default::default(),
        max_wait: std::time::Duration::ZERO,
        on_limit: offergate::config::OnLimit::Fallback,
        max_tracked_clients: 100_000,
        enforce: true,
    };
    let buckets = offergate::layers::rate_limit::CallerBuckets::new(&rl);
    let clients: Vec<String> = (0..1_000).map(|i| format!("client-{i}")).collect();
    let mut i = 0;
    c.bench_function("rate_limit_caller_check", |b| {
        b.iter(|| {
            i = (i + 1) % clients.len();
            buckets.check(black_box(&clients[i]))
        })
    });
    c.bench_function("fingerprint_encore_body", |b| {
        b.iter(|| fingerprint::fingerprint(&target, black_box(ENCORE_BODY.as_bytes())))
    });
    // A message's offer links, 1,000 then 30,000 distinct ones (about 1 MiB,
    // the body limit): the second should cost about 30 times the first.
    for n in [1_000, 30_000] {
        let text: String = (0..n)
            .map(|i| format!("link.encorekit.com/o{i} "))
            .collect();
        c.bench_function(&format!("offer_links_{n}"), |b| {
            b.iter(|| encore::links::count_offer_links(black_box(&text), encore::LINK_HOST))
        });
    }
}

/// A distinct conversation per call, so nothing is de-duplicated.
fn fresh_body() -> Bytes {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Bytes::from(ENCORE_BODY.replace(
        "8b3f7c10-9d4e-4d2a-91a1-3f0e8a1c0b5d",
        &format!("bench-{n}"),
    ))
}

fn one_call(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (sim, gw) = rt.block_on(async {
        let any = "127.0.0.1:0".parse().unwrap();
        let sim = Simulator::start(any, offergate::cli::demo::simulator_config())
            .await
            .unwrap();
        let mut config = offergate::cli::demo::config(any, any, sim.addr).unwrap();
        config.log.access_log = false;
        // Limits on (their cost is measured) but high enough never to throttle.
        let plenty = offergate::config::Rate {
            per_second: 1e6,
            burst: 1_000_000,
        };
        for r in [
            &mut config.encore.resilience,
            &mut config.besitos.resilience,
        ] {
            r.rate_limit.partner = plenty;
            r.rate_limit.client = plenty;
        }
        let gw = Gateway::start(config).await.unwrap();
        (sim, gw)
    });
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let call = |url: String, headers: &'static [(&'static str, &'static str)], body: Bytes| {
        let client = client.clone();
        async move {
            let mut req = http::Request::post(url).header("content-type", "application/json");
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let resp = client
                .request(req.body(Full::new(body)).unwrap())
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.into_body().collect().await.unwrap().to_bytes()
        }
    };
    let path = "/encore/publisher/sdk/v1/offers/message";
    let direct = format!("http://{}{path}", sim.addr);
    let via = format!("http://{}{path}", gw.proxy_addr);
    const KEY: &[(&str, &str)] = &[("x-api-key", offergate::cli::demo::ENCORE_KEY)];
    const REPLAY: &[(&str, &str)] = &[("idempotency-key", "bench-replay")];
    let fixed = Bytes::from_static(ENCORE_BODY.as_bytes());
    let mut group = c.benchmark_group("encore_call_loopback");
    group.bench_function("direct_to_simulator", |b| {
        b.to_async(&rt)
            .iter(|| call(direct.clone(), KEY, fresh_body()))
    });
    group.bench_function("through_offergate_forwarded", |b| {
        b.to_async(&rt)
            .iter(|| call(via.clone(), &[], fresh_body()))
    });
    group.bench_function("through_offergate_replayed", |b| {
        b.to_async(&rt)
            .iter(|| call(via.clone(), REPLAY, fixed.clone()))
    });
    group.finish();
    rt.block_on(async {
        gw.shutdown().await;
        sim.shutdown().await;
    });
}

/// The binary's allocator, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

criterion_group!(benches, local_work, one_call);
criterion_main!(benches);
