//! The admin listener: probes and the Prometheus exposition.

use http_body_util::Full;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_metrics() {
    let h = Harness::start().await;
    let get = |path: &str| {
        http::Request::get(format!("http://{}{path}", h.gw.admin_addr))
            .body(Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    assert_eq!(h.send(get("/healthz")).await.status, 200);
    assert_eq!(h.send(get("/readyz")).await.status, 200);
    let nope = h.send(get("/debug")).await;
    assert_eq!(
        (nope.status.as_u16(), nope.code().as_str()),
        (404, "not_found")
    );
    let post = http::Request::post(format!("http://{}/metrics", h.gw.admin_addr))
        .body(Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(h.send(post).await.status, 405);

    h.post(ENCORE_PATH, &[], ENCORE_BODY).await;
    let m = h.metrics().await;
    for name in [
        "offergate_requests_total",
        "offergate_request_duration_seconds_bucket",
        "offergate_upstream_requests_total",
        "offergate_upstream_duration_seconds_bucket",
        "offergate_build_info{version=\"",
    ] {
        assert!(m.contains(name), "{name} missing from\n{m}");
    }
    assert_sample(
        &m,
        r#"offergate_request_duration_seconds_count{route="encore_offers"}"#,
        1.0,
    );
    assert!(
        !m.contains(KEY) && !m.contains("client-42"),
        "no secret or caller id in metrics"
    );
    h.stop().await;
}
