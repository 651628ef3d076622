//! Signals sent to the real binary while calls are in flight: SIGHUP, SIGUSR1,
//! SIGUSR2 and SIGPIPE never stop it; SIGTERM drains (`/readyz` 503 while
//! `/healthz` and `/metrics` answer, in-flight and coalesced calls finish,
//! exit 0). Every caller is counted: none may go unanswered.

use std::time::Duration;

use crate::fleet::{signal, Fleet};
use crate::support::{eventually, exit_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_signal_but_sigkill_loses_a_call_in_flight() {
    every_caller_answered_through_signals(Fleet::start(&[], None).await).await;
}

/// With one CPU to use (here told by tokio's variable; a cgroup's `cpu: 1`
/// or a pinned process is the same), the gateway runs on a current-thread
/// runtime, and the same signals lose no caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_one_thread_no_signal_but_sigkill_loses_a_call_in_flight() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let f = Fleet::start(
        &[
            ("TOKIO_WORKER_THREADS", "1"),
            ("OFFERGATE_LOG__FORMAT", "json"),
        ],
        Some(log.reopen().unwrap()),
    )
    .await;
    let ready = eventually(Duration::from_secs(5), "the ready line", || async {
        crate::support::ready_line(log.path())
    })
    .await;
    assert_eq!(ready["runtime"], "current_thread", "{ready}");
    every_caller_answered_through_signals(f).await;
}

async fn every_caller_answered_through_signals(mut f: Fleet) {
    let mut sent = 0;
    for name in ["HUP", "USR1", "USR2", "PIPE"] {
        let before = f.partner_calls().await;
        f.slow_partner(20, 400).await;
        let in_flight = f.calls(20, 0);
        let signal_mid_flight = async {
            f.partner_reached(before + 20).await;
            signal(&f.gw.0, name);
        };
        let (answered, ()) = tokio::join!(in_flight, signal_mid_flight);
        sent += 1;
        assert_eq!(answered, 20, "SIGHUP and friends lose no call ({name})");
        assert!(
            f.gw.0.try_wait().unwrap().is_none(),
            "still running after SIG{name}"
        );
    }

    // SIGTERM: drain. In flight: 20 calls and 5 coalesced duplicates.
    let before = f.partner_calls().await;
    f.slow_partner(21, 800).await;
    let in_flight = f.calls(20, 5);
    let probes = async {
        f.partner_reached(before + 21).await;
        signal(&f.gw.0, "TERM");
        let draining = eventually(Duration::from_secs(2), "readyz turns 503", || async {
            let s = f.status(f.admin, "/readyz").await;
            (s == Some(503)).then_some(s)
        });
        (
            draining.await,
            f.status(f.admin, "/healthz").await,
            f.status(f.admin, "/metrics").await,
        )
    };
    let (answered, during) = tokio::join!(in_flight, probes);
    sent += 1;
    assert_eq!(answered, 25, "every call in flight finished");
    assert_eq!(
        during,
        (Some(503), Some(200), Some(200)),
        "readyz, healthz, metrics while draining"
    );
    let exit = exit_of(&mut f.gw.0, Duration::from_secs(10));
    assert!(exit.success(), "{exit:?}");
    assert_eq!(
        f.status(f.listen, "/").await,
        None,
        "the proxy listener is closed"
    );
    assert_eq!(sent, 5);
    println!("signals: {sent} sent mid-flight, 105 callers answered, 0 lost");
    let _ = &mut f.sim;
}

/// With `drain_delay_ms`, a stopped gateway says it is not ready at once
/// but still answers new calls (from new connections too) for the delay, as
/// a sidecar stopped together with its app must; then it drains and exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_drain_delay_new_calls_are_still_answered_after_sigterm() {
    let mut f = Fleet::start(&[("OFFERGATE_SERVER__DRAIN_DELAY_MS", "1500")], None).await;
    assert_eq!(f.calls(1, 0).await, 1);
    let started = std::time::Instant::now();
    signal(&f.gw.0, "TERM");
    eventually(Duration::from_secs(2), "/readyz turns 503", || async {
        (f.status(f.admin, "/readyz").await == Some(503)).then_some(())
    })
    .await;
    // A new client: its own connections, opened after the signal.
    let fresh = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    for n in 0..3 {
        let req = http::Request::post(format!(
            "http://{}/encore/publisher/sdk/v1/offers/message",
            f.listen
        ))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            crate::support::encore_body(),
        )))
        .unwrap();
        let answer = crate::support::send_with(&fresh, req).await;
        assert_eq!(answer.status, 200, "call {n} during the delay");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert!(exit_of(&mut f.gw.0, Duration::from_secs(10)).success());
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "exited before the delay: {:?}",
        started.elapsed()
    );
}

/// Callers already connected but still waiting in the listen backlog when
/// SIGTERM comes (here: at the connection cap, every connection busy) are
/// taken up and answered, not reset when the listener closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_waiting_in_the_backlog_at_sigterm_are_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut f = Fleet::start(&[("OFFERGATE_SERVER__MAX_CONNECTIONS", "4")], None).await;
    let send = |listen: std::net::SocketAddr| async move {
        let body = crate::support::encore_body();
        let mut stream = tokio::net::TcpStream::connect(listen).await.unwrap();
        let head = format!(
            "POST /encore/publisher/sdk/v1/offers/message HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body.as_bytes()).await.unwrap();
        stream
    };
    let answer = |mut stream: tokio::net::TcpStream| async move {
        let mut got = Vec::new();
        match stream.read_to_end(&mut got).await {
            Ok(_) => String::from_utf8_lossy(&got)
                .lines()
                .next()
                .unwrap_or("(nothing)")
                .to_string(),
            Err(e) => format!("{:?}", e.kind()),
        }
    };
    let before = f.partner_calls().await;
    f.slow_partner(4, 1500).await;
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(send(f.listen).await);
    }
    f.partner_reached(before + 4).await;
    // At the cap, all four busy: these wait in the backlog.
    for _ in 0..12 {
        open.push(send(f.listen).await);
    }
    signal(&f.gw.0, "TERM");
    let answers = futures_util::future::join_all(open.into_iter().map(answer)).await;
    let ok = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 200"))
        .count();
    assert_eq!(ok, 16, "every caller answered: {answers:?}");
    assert!(exit_of(&mut f.gw.0, Duration::from_secs(10)).success());
}
