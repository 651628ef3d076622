//! Traces over OTLP/HTTP: a receiver on loopback decodes what offergate
//! exports with the official protobuf definitions (the `opentelemetry-proto`
//! crate), and the span tree, the ids, the attributes and the `traceparent`
//! the partner received are checked; a collector that never answers costs
//! the calls nothing but dropped spans.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, Span};
use prost::Message;

use crate::support::*;
use offergate::call::route::Route;

/// What the receiver got: each span with its resource's `service.name`.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, Span)>>>);

impl Received {
    fn spans(&self) -> Vec<(String, Span)> {
        self.0.lock().unwrap().clone()
    }
}

/// An OTLP/HTTP receiver on a free loopback port: `POST /v1/traces`,
/// protobuf, decoded as the collector would.
async fn receiver() -> (SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Received::default();
    let keep = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let keep = keep.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let keep = keep.clone();
                    async move {
                        let right = req.uri().path() == "/v1/traces"
                            && req.headers()["content-type"] == "application/x-protobuf";
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let decoded = ExportTraceServiceRequest::decode(body).unwrap();
                        for rs in decoded.resource_spans {
                            let service = rs
                                .resource
                                .iter()
                                .flat_map(|r| r.attributes.iter())
                                .find(|a| a.key == "service.name")
                                .and_then(|a| a.value.as_ref()?.value.clone());
                            let service = match service {
                                Some(Value::StringValue(s)) => s,
                                _ => String::new(),
                            };
                            for ss in rs.scope_spans {
                                for span in ss.spans {
                                    keep.0.lock().unwrap().push((service.clone(), span));
                                }
                            }
                        }
                        let status = if right { 200 } else { 400 };
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .status(status)
                                .header("content-type", "application/x-protobuf")
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, got)
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.as_ref())
}

fn text_attr(span: &Span, key: &str) -> Option<String> {
    match attr(span, key) {
        Some(Value::StringValue(s)) => Some(s.clone()),
        _ => None,
    }
}

fn int_attr(span: &Span, key: &str) -> Option<i64> {
    match attr(span, key) {
        Some(Value::IntValue(i)) => Some(*i),
        _ => None,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn traced(collector: SocketAddr, ratio: f64) -> impl FnOnce(&str) -> offergate::config::Config {
    move |origin| {
        tuned(origin, |c| {
            c.tracing.otlp_endpoint = Some(format!("http://{collector}/v1/traces"));
            c.tracing.sample_ratio = ratio;
            c.tracing.service_name = "offergate-test".into();
        })
    }
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_a_span_with_a_child_per_try_under_the_callers_trace() {
    let (collector, got) = receiver().await;
    let h = Harness::with_config(traced(collector, 0.0)).await;
    // One 503, then the answer: two tries.
    plan(&h, Route::EncoreOffers, &["503", "ok"]);
    let parent = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let a = h
        .post(
            ENCORE_PATH,
            &[("traceparent", &parent), ("tracestate", "vendor=kept")],
            &encore_body(),
        )
        .await;
    assert_eq!(a.status, 200);
    let last: serde_json::Value = serde_json::from_slice(
        &h.send(
            http::Request::get(format!("{}/__sim/last?route=encore_offers", h.sim.origin()))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .body,
    )
    .unwrap();
    let spans = eventually(Duration::from_secs(5), "three spans arrive", || async {
        let s = got.spans();
        (s.len() >= 3).then_some(s)
    })
    .await;
    assert_eq!(spans.len(), 3, "one call, two tries");
    assert!(spans.iter().all(|(service, _)| service == "offergate-test"));
    let server: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    assert_eq!(server.len(), 1);
    let call = server[0];
    // Under the caller's trace, sampled because the caller's was (the
    // ratio, 0, decides only for calls without a sampled parent).
    assert_eq!(hex(&call.trace_id), TRACE);
    assert_eq!(hex(&call.parent_span_id), CALLER_SPAN);
    assert_eq!(call.name, "POST encore_offers");
    assert_eq!(
        text_attr(call, "http.request.method").as_deref(),
        Some("POST")
    );
    assert_eq!(text_attr(call, "url.path").as_deref(), Some(ENCORE_PATH));
    assert_eq!(int_attr(call, "http.response.status_code"), Some(200));
    assert_eq!(
        text_attr(call, "server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        text_attr(call, "offergate.route").as_deref(),
        Some("encore_offers")
    );
    assert_eq!(
        text_attr(call, "offergate.outcome").as_deref(),
        Some("forwarded")
    );
    assert_eq!(int_attr(call, "offergate.tries"), Some(2));
    assert_eq!(text_attr(call, "offergate.fallback_reason"), None);
    let mut tries: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.kind == SpanKind::Client as i32)
        .collect();
    tries.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(tries.len(), 2);
    for t in &tries {
        assert_eq!(hex(&t.trace_id), TRACE);
        assert_eq!(
            t.parent_span_id, call.span_id,
            "each try is the call's child"
        );
        assert_eq!(text_attr(t, "server.address").as_deref(), Some("127.0.0.1"));
        assert!(text_attr(t, "url.full").unwrap().ends_with(ENCORE_PATH));
        assert!(t.start_time_unix_nano >= call.start_time_unix_nano);
        assert!(t.end_time_unix_nano <= call.end_time_unix_nano);
    }
    assert_eq!(int_attr(tries[0], "http.response.status_code"), Some(503));
    assert_eq!(text_attr(tries[0], "error.type").as_deref(), Some("503"));
    assert_eq!(int_attr(tries[1], "http.response.status_code"), Some(200));
    assert_eq!(int_attr(tries[1], "http.request.resend_count"), Some(1));
    // The partner saw the last try's own span as its parent, and the
    // caller's tracestate.
    let sent = last["headers"]["traceparent"][0].as_str().unwrap();
    assert_eq!(sent, format!("00-{TRACE}-{}-01", hex(&tries[1].span_id)));
    assert_eq!(last["headers"]["tracestate"][0], "vendor=kept");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ratio_decides_without_a_parent_and_an_unsampled_caller_is_followed() {
    let (collector, got) = receiver().await;
    let h = Harness::with_config(traced(collector, 1.0)).await;
    // No parent: a new trace, sampled at ratio 1, with the fallback's reason.
    plan(&h, Route::EncoreOffers, &["503", "503", "503", "503"]);
    let a = h.post(ENCORE_PATH, &[], &encore_body()).await;
    assert!(a.fallback().is_some());
    let spans = eventually(Duration::from_secs(5), "the call's spans", || async {
        let s = got.spans();
        s.iter()
            .any(|(_, s)| s.kind == SpanKind::Server as i32)
            .then_some(s)
    })
    .await;
    let call = &spans
        .iter()
        .find(|(_, s)| s.kind == SpanKind::Server as i32)
        .unwrap()
        .1;
    assert!(call.parent_span_id.is_empty(), "a root span");
    assert_eq!(
        text_attr(call, "offergate.fallback_reason"),
        a.fallback().map(str::to_string)
    );
    assert_eq!(
        text_attr(call, "offergate.outcome").as_deref(),
        Some("fallback")
    );
    let before = got.spans().len();
    // A caller that does not sample: nothing recorded, its context passed on as sent.
    let parent = format!("00-{TRACE}-{CALLER_SPAN}-00");
    plan(&h, Route::EncoreOffers, &["ok"]);
    let a = h
        .post(ENCORE_PATH, &[("traceparent", &parent)], &encore_body())
        .await;
    assert_eq!(a.status, 200);
    let last = h
        .send(
            http::Request::get(format!("{}/__sim/last?route=encore_offers", h.sim.origin()))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .json();
    assert_eq!(last["headers"]["traceparent"][0], parent.as_str());
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        got.spans().len(),
        before,
        "an unsampled call exports nothing"
    );
    h.stop().await;
}

/// A collector that accepts connections and never answers: calls are
/// answered as fast as without tracing (each well under the export
/// timeout), and the spans it did not take are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_costs_the_calls_nothing() {
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_addr = hung.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = hung.accept().await {
            keep.lock().unwrap().push(s);
        }
    });
    let h = Harness::with_config(traced(hung_addr, 1.0)).await;
    let started = std::time::Instant::now();
    for _ in 0..40 {
        let one = std::time::Instant::now();
        let a = h.post(ENCORE_PATH, &[], &encore_body()).await;
        assert_eq!(a.status, 200);
        assert!(
            one.elapsed() < Duration::from_secs(1),
            "a call waited on the collector: {:?}",
            one.elapsed()
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The first batch's send times out after 5 s: its spans are counted.
    let dropped = eventually(
        Duration::from_secs(10),
        "the failed export is counted",
        || async {
            let m = h.metrics().await;
            let n = sample(
                &m,
                r#"offergate_trace_spans_dropped_total{reason="export_failed"}"#,
            );
            (n > 0.0).then_some(n)
        },
    )
    .await;
    assert!(dropped >= 1.0);
    h.stop().await;
}

/// A collector at fault, as a raw TCP peer: what it does with each
/// connection. Returns the endpoint to give offergate.
async fn faulty_collector(fault: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if fault == "refused" {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        return format!("http://127.0.0.1:{port}");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                if fault != "reset" {
                    let _ = s.read(&mut buf).await;
                }
                match fault {
                    "reset" => {
                        // A zero linger closes with a reset, at once.
                        #[allow(deprecated)]
                        let _ = s.set_linger(Some(Duration::ZERO));
                    }
                    "hang" => tokio::time::sleep(Duration::from_secs(60)).await,
                    "slow" => {
                        for b in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" {
                            if s.write_all(&[*b]).await.is_err() {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                    "status_500" => {
                        let _ = s
                            .write_all(
                                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
                            )
                            .await;
                    }
                    "giant_headers" => {
                        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
                        for i in 0..1_000 {
                            head.extend_from_slice(
                                format!("X-Pad-{i}: {}\r\n", "a".repeat(1_000)).as_bytes(),
                            );
                        }
                        head.extend_from_slice(b"Content-Length: 0\r\n\r\n");
                        let _ = s.write_all(&head).await;
                    }
                    "endless_body" => {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                            .await;
                        let chunk = format!("4000\r\n{}\r\n", "x".repeat(0x4000));
                        while s.write_all(chunk.as_bytes()).await.is_ok() {}
                    }
                    // A TLS client meets a peer that speaks no TLS.
                    _ => {
                        let _ = s.write_all(b"this is not TLS\r\n\r\n").await;
                    }
                }
            });
        }
    });
    let scheme = if fault == "tls_failure" {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{addr}")
}

/// The p99 and the slowest of `n` offer calls sent at `per_second`, through a
/// gateway (the binary) exporting every call's spans to `endpoint`.
async fn latency_with(endpoint: Option<&str>, n: usize, per_second: f64) -> (Duration, Duration) {
    // The partner quota out of the way: the calls' own time is measured.
    let mut env = vec![
        ("OFFERGATE_TRACING__SAMPLE_RATIO", "1.0"),
        ("OFFERGATE_ENCORE__RATE_LIMIT__PARTNER_PER_SECOND", "100000"),
        ("OFFERGATE_ENCORE__RATE_LIMIT__PARTNER_BURST", "100000"),
        ("OFFERGATE_ENCORE__RATE_LIMIT__CLIENT_PER_SECOND", "100000"),
    ];
    if let Some(e) = endpoint {
        env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", e));
    }
    let f = crate::fleet::Fleet::start(&env, None).await;
    let started = tokio::time::Instant::now();
    let mut calls = Vec::with_capacity(n);
    for i in 0..n {
        tokio::time::sleep_until(started + Duration::from_secs_f64(i as f64 / per_second)).await;
        let body: serde_json::Value = serde_json::from_str(&encore_body()).unwrap();
        let client = f.client.clone();
        let listen = f.listen;
        calls.push(tokio::spawn(async move {
            // A connection per call, as many platforms' webhook workers make.
            let req = http::Request::post(format!("http://{listen}{ENCORE_PATH}"))
                .header("content-type", "application/json")
                .header("connection", "close")
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap();
            let t = std::time::Instant::now();
            let answer = send_with(&client, req).await;
            assert_eq!(answer.status, 200);
            t.elapsed()
        }));
    }
    let mut took = Vec::with_capacity(n);
    for c in calls {
        took.push(c.await.unwrap());
    }
    took.sort();
    (took[n * 99 / 100], took[n - 1])
}

/// A trace collector in any state costs the calls nothing: refused, reset,
/// hanging, slow, answering 500, with 1 MB of headers, with an endless body,
/// failing TLS. At a steady 200 calls a second, each call's span exported,
/// the p99 stays within a few milliseconds of the same gateway with traces
/// off (the export runs on a thread and runtime of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_collector_in_any_state_costs_no_call_time() {
    let (off, off_max) = latency_with(None, 400, 200.0).await;
    println!("traces off: p99 {off:?}, slowest {off_max:?}");
    // Alone on this 2-core machine the two are within 1-2 ms; beside the
    // rest of the suite, the machine's own noise is allowed for, and a run
    // over the bound is measured again, paired with a fresh run with traces
    // off: it fails only if over both times. A collector on the calls'
    // runtime cost 300 ms, every time.
    let allowed = |off: Duration| (off * 3).max(off + Duration::from_millis(50));
    for fault in [
        "refused",
        "reset",
        "hang",
        "slow",
        "status_500",
        "giant_headers",
        "endless_body",
        "tls_failure",
    ] {
        let endpoint = faulty_collector(fault).await;
        let (p99, max) = latency_with(Some(&endpoint), 400, 200.0).await;
        println!("collector {fault}: p99 {p99:?}, slowest {max:?}");
        if p99 > allowed(off) {
            let (again_off, _) = latency_with(None, 400, 200.0).await;
            let (again, _) = latency_with(Some(&endpoint), 400, 200.0).await;
            println!("collector {fault} again: p99 {again:?} against {again_off:?}");
            assert!(
                again <= allowed(again_off),
                "collector {fault}: p99 {p99:?} against {off:?} with traces off, then {again:?} against {again_off:?}"
            );
        }
    }
}
