//! offergate's own parsers against the well-kept crates, in the same run:
//! BCP-47 well-formedness (oxilangtag, which offergate now uses, and
//! language-tags), RFC 3339 timestamps (jiff), and the live-config swap
//! (arc-swap). Ratios, not absolutes. What each accepts is compared in
//! `src/props.rs` (`ours_against_the_crates`).
//!
//! `cargo bench --bench parsers`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use offergate::config::Live;
use offergate::integrator::time::parse_rfc3339;
use offergate::partners::encore::is_bcp47;

/// What callers send: mostly two letters, some regions and scripts.
const TAGS: [&str; 6] = ["en", "es-419", "pt-BR", "zh-Hant-TW", "en-US", "de"];
const TIMES: [&str; 3] = [
    "2026-11-23T10:15:00Z",
    "2026-11-23T11:15:00.250+01:00",
    "2026-11-23T10:15:00.123456Z",
];

fn bcp47(c: &mut Criterion) {
    // offergate's own checker measured 295 ns here (2026-12-01, 2-core
    // machine) against oxilangtag's 212 ns, which accepted the same tags:
    // offergate now uses oxilangtag (`is_bcp47`).
    let mut g = c.benchmark_group("bcp47_6_tags");
    g.bench_function("offergate_is_bcp47", |b| {
        b.iter(|| TAGS.iter().filter(|t| is_bcp47(black_box(t))).count())
    });
    g.bench_function("oxilangtag", |b| {
        b.iter(|| {
            TAGS.iter()
                .filter(|t| oxilangtag::LanguageTag::parse(black_box(**t)).is_ok())
                .count()
        })
    });
    g.bench_function("language_tags", |b| {
        b.iter(|| {
            TAGS.iter()
                .filter(|t| language_tags::LanguageTag::parse(black_box(t)).is_ok())
                .count()
        })
    });
    g.finish();
}

fn rfc3339(c: &mut Criterion) {
    let mut g = c.benchmark_group("rfc3339_3_times");
    g.bench_function("offergate", |b| {
        b.iter(|| {
            TIMES
                .iter()
                .filter_map(|t| parse_rfc3339(black_box(t)).ok())
                .sum::<i64>()
        })
    });
    g.bench_function("jiff", |b| {
        b.iter(|| {
            TIMES
                .iter()
                .filter_map(|t| black_box(t).parse::<jiff::Timestamp>().ok())
                .map(|t| t.as_millisecond())
                .sum::<i64>()
        })
    });
    g.finish();
}

fn live(c: &mut Criterion) {
    let mut g = c.benchmark_group("live_config_read");
    let ours = Live::new(42u64);
    g.bench_function("offergate_rwlock", |b| b.iter(|| *black_box(&ours).get()));
    let swap = arc_swap::ArcSwap::new(Arc::new(42u64));
    g.bench_function("arc_swap_load_full", |b| {
        b.iter(|| *black_box(&swap).load_full())
    });
    g.bench_function("arc_swap_load", |b| b.iter(|| **black_box(&swap).load()));
    g.finish();
}

criterion_group!(benches, bcp47, rfc3339, live);
criterion_main!(benches);
