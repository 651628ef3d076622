//! The simulator's scripted faults, driven through its HTTP control endpoints,
//! and what the gateway answers for each with soft fallback and retries off:
//! partner statuses pass through, offergate's own failures answer 502 / 504.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use offergate::call::route::Route;

use crate::support::*;

async fn control(h: &Harness, method: http::Method, path: &str, body: &str) -> Answer {
    let req = http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", h.sim.origin()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    h.send(req).await
}

async fn plan(h: &Harness, route: &str, items: &[&str]) {
    let body = serde_json::json!({"route": route, "plan": items}).to_string();
    let a = control(h, http::Method::POST, "/__sim/faults", &body).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_endpoints_count_plan_and_reset() {
    let h = Harness::with_config(config_bare).await;
    plan(&h, "encore_offers", &["503", "429:7", "ok"]).await;
    let a = h.post(ENCORE_PATH, &[], &encore_body()).await;
    assert_eq!(a.status, 503);
    let a = h.post(ENCORE_PATH, &[], &encore_body()).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.headers.get("retry-after").unwrap(), "7");
    assert_eq!(h.post(ENCORE_PATH, &[], &encore_body()).await.status, 200);
    assert_eq!(
        h.post(ENCORE_PATH, &[], &encore_body()).await.status,
        200,
        "back to ok after the plan"
    );
    h.post(&besitos_path(PARTNER), &[], "{}").await;
    let calls = control(&h, http::Method::GET, "/__sim/calls", "")
        .await
        .json();
    assert_eq!(
        calls,
        serde_json::json!({"encore_offers": 4, "besitos_goals": 1})
    );

    let bad = control(
        &h,
        http::Method::POST,
        "/__sim/faults",
        r#"{"route":"encore_offers","plan":["explode"]}"#,
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(String::from_utf8_lossy(&bad.body).contains("plan[0]"));
    let bad = control(
        &h,
        http::Method::POST,
        "/__sim/faults",
        r#"{"route":"nope","plan":[]}"#,
    )
    .await;
    assert_eq!(bad.status, 400);

    plan(&h, "besitos_goals", &["500"]).await;
    control(&h, http::Method::POST, "/__sim/reset", "").await;
    let calls = control(&h, http::Method::GET, "/__sim/calls", "")
        .await
        .json();
    assert_eq!(
        calls,
        serde_json::json!({"encore_offers": 0, "besitos_goals": 0})
    );
    assert_eq!(
        h.post(&besitos_path(PARTNER), &[], "{}").await.status,
        200,
        "reset cleared the plan"
    );
    let last = control(&h, http::Method::GET, "/__sim/last?route=besitos_goals", "")
        .await
        .json();
    assert_eq!(
        last["headers"]["authorization"][0],
        format!("Bearer {TOKEN}")
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_partner_answers_become_offergate_errors() {
    let h = Harness::with_config(config_bare).await;
    for (item, status, code) in [
        ("reset", 502, "upstream_unreachable"),
        ("malformed", 502, "invalid_upstream_body"),
    ] {
        plan(&h, "encore_offers", &[item]).await;
        let a = h.post(ENCORE_PATH, &[], &encore_body()).await;
        assert_eq!(
            (a.status.as_u16(), a.code().as_str()),
            (status, code),
            "{item}"
        );
    }
    assert_eq!(h.calls(Route::EncoreOffers), 2);
    let m = h.metrics().await;
    assert_sample(
        &m,
        r#"offergate_requests_total{outcome="failed",route="encore_offers"}"#,
        2.0,
    );
    assert_sample(
        &m,
        r#"offergate_upstream_requests_total{route="encore_offers",status="error"}"#,
        1.0,
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_and_slow_partners_time_out() {
    let h = Harness::with_config(config_bare).await;
    plan(&h, "encore_offers", &["hang"]).await;
    plan(&h, "besitos_goals", &["slow"]).await;
    let started = Instant::now();
    let a = h.post(ENCORE_PATH, &[], &encore_body()).await;
    assert_eq!(
        (a.status.as_u16(), a.code().as_str()),
        (504, "upstream_timeout")
    );
    let b = h.post(&besitos_path(PARTNER), &[], "{}").await;
    assert_eq!(
        (b.status.as_u16(), b.code().as_str()),
        (504, "upstream_timeout"),
        "a body trickling past the timeout"
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "two 300 ms timeouts took {took:?}"
    );
    let m = h.metrics().await;
    assert_sample(
        &m,
        r#"offergate_upstream_requests_total{route="encore_offers",status="timeout"}"#,
        1.0,
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_partner_is_a_502() {
    // A port nothing listens on: bind, note it, close.
    let closed = closed_addr();
    let h = Harness::with_config(|_| config_bare(&format!("http://{closed}"))).await;
    let a = h.post(ENCORE_PATH, &[], &encore_body()).await;
    assert_eq!(
        (a.status.as_u16(), a.code().as_str()),
        (502, "upstream_unreachable")
    );
    assert!(!a.message().contains(KEY), "no secret in the error");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_arrives_is_a_408() {
    let h = Harness::with_config(|o| config_for(o, "body_read_timeout_ms = 200", "")).await;
    let req = format!("POST {ENCORE_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{{\"clientId\":");
    let started = Instant::now();
    let (status, body) = raw(h.gw.proxy_addr, req.as_bytes()).await;
    assert_eq!(status, 408, "{body}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(h.total_calls(), 0);
    h.stop().await;
}
