//! The log is never a reason to lose a call: with stderr a pipe nobody
//! reads, or a full device, every call is answered, the dropped lines are
//! counted, and SIGTERM still drains and exits cleanly.

use std::process::Stdio;
use std::time::Duration;

use crate::fleet::{signal, Fleet};
use crate::support::*;

async fn serves_with_stderr(stderr: Stdio, what: &str) {
    let mut f = Fleet::start_logging(&[], Some(stderr)).await;
    let before = f.partner_calls().await;
    assert_eq!(f.calls(5, 0).await, 5, "{what}: every call answered");
    assert_eq!(
        f.partner_calls().await,
        before + 5,
        "{what}: one partner call each"
    );
    assert_eq!(f.status(f.admin, "/healthz").await, Some(200));
    let req = http::Request::get(format!("http://{}/metrics", f.admin))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let metrics = String::from_utf8_lossy(&send_with(&f.client, req).await.body).to_string();
    assert!(
        sample(&metrics, "offergate_log_write_failures_total") >= 5.0,
        "{what}: the dropped access lines are counted"
    );
    assert_eq!(sample(&metrics, "offergate_panics_total"), 0.0, "{what}");
    signal(&f.gw.0, "TERM");
    let exit = exit_of(&mut f.gw.0, Duration::from_secs(10));
    assert!(exit.success(), "{what}: {exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_pipe_nobody_reads_costs_no_call() {
    // `offergate run 2>&1 | head -c1`: the reader is gone before the first line.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    serves_with_stderr(Stdio::from(writer), "dead pipe").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_device_costs_no_call() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    serves_with_stderr(Stdio::from(full), "/dev/full").await;
}
