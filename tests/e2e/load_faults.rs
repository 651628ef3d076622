//! Faults under load: the real binary at about 200 calls a second for 8 s
//! while the partner cycles through 503 bursts, 429 with `Retry-After`,
//! hangs, resets, slow bodies and malformed answers. Every caller gets a
//! valid answer within its deadline plus a small margin; partner calls stay
//! within what the retry budget and the circuit allow; no connection leaks
//! and memory returns near its baseline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::fleet::{open_fds, rss_kib, Fleet};
use crate::support::*;

const SECS: u64 = 8;
const DEADLINE: Duration = Duration::from_millis(2_500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_caller_is_answered_in_time_while_the_partner_misbehaves() {
    let f = Arc::new(
        Fleet::start(
            &[
                ("OFFERGATE_ENCORE__RATE_LIMIT__PARTNER_PER_SECOND", "10000"),
                ("OFFERGATE_ENCORE__RATE_LIMIT__PARTNER_BURST", "10000"),
                ("OFFERGATE_ENCORE__RATE_LIMIT__CLIENT_PER_SECOND", "10000"),
                ("OFFERGATE_ENCORE__CIRCUIT__COOLDOWN_MS", "500"),
                ("OFFERGATE_LOG__LEVEL", "error"),
            ],
            None,
        )
        .await,
    );
    let pid = f.gw.0.id();
    // Warm up, then take the baseline.
    f.calls(20, 0).await;
    let (fds_before, rss_before) = (open_fds(pid), rss_kib(pid));
    // The partner's misbehaviour, cycled: enough plan for every call.
    let cycle = [
        "503",
        "503",
        "503",
        "ok",
        "429:1",
        "ok",
        "hang",
        "ok",
        "reset",
        "ok",
        "slow",
        "ok",
        "malformed",
        "ok",
        "ok",
        "500",
        "ok",
        "ok",
    ];
    let plan: Vec<&str> = cycle.iter().copied().cycle().take(4_000).collect();
    let req = Request::post(format!("http://{}/__sim/faults", f.sim_addr))
        .body(Full::new(Bytes::from(
            serde_json::json!({"route": "encore_offers", "plan": plan}).to_string(),
        )))
        .unwrap();
    assert_eq!(send_with(&f.client, req).await.status, 200);

    let started = Instant::now();
    let mut calls = Vec::new();
    while started.elapsed() < Duration::from_secs(SECS) {
        let f = f.clone();
        calls.push(tokio::spawn(async move {
            let sent = Instant::now();
            let req = Request::post(format!("http://{}{ENCORE_PATH}", f.listen))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(encore_body())))
                .unwrap();
            let a = send_with(&f.client, req).await;
            let valid = a.status == 200
                && a.json()["success"] == true
                && (a.json()["offer"].is_null() || a.json()["offer"]["clickUrl"].is_string());
            (valid, sent.elapsed(), a.fallback().map(str::to_string))
        }));
        // Pacing, not waiting: callers arrive at about 200 a second.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut slowest = Duration::ZERO;
    let (mut answered, mut invalid, mut fell_back) = (0, 0, 0);
    for c in calls {
        let (valid, took, fallback) = c.await.expect("a caller's task");
        answered += 1;
        invalid += usize::from(!valid);
        fell_back += usize::from(fallback.is_some());
        slowest = slowest.max(took);
    }
    assert!(answered >= 800, "{answered} callers in {SECS} s");
    assert_eq!(
        invalid, 0,
        "every caller got the offer or the soft fallback"
    );
    assert!(
        fell_back > 0 && fell_back < answered,
        "{fell_back} of {answered} fell back"
    );
    assert!(
        slowest <= DEADLINE + Duration::from_millis(500),
        "slowest {slowest:?}"
    );

    // Partner calls: one per caller plus what the retry budget allows
    // (20 % of calls, 3 a second) plus the circuit's probes.
    let calls = send_with(
        &f.client,
        Request::get(format!("http://{}/__sim/calls", f.sim_addr))
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
    .json()["encore_offers"]
        .as_u64()
        .unwrap_or(0) as usize;
    let bound = answered * 12 / 10 + 3 * (SECS as usize + 2) + 20 + 40;
    assert!(
        calls <= bound,
        "{calls} partner calls for {answered} callers (bound {bound})"
    );

    // Once idle again: no connection leak, memory back near its baseline.
    let fds_after = eventually(Duration::from_secs(5), "connections closed", || async {
        let fds = open_fds(pid);
        (fds <= fds_before + 70).then_some(fds)
    })
    .await;
    let rss_after = rss_kib(pid);
    assert!(
        rss_after <= rss_before + 24 * 1024,
        "RSS {rss_before} KiB -> {rss_after} KiB"
    );
    println!(
        "faults under load: {answered} callers, {fell_back} fell back, 0 invalid, slowest {slowest:?}, \
         {calls} partner calls, fds {fds_before} -> {fds_after}, RSS {rss_before} -> {rss_after} KiB"
    );
}
