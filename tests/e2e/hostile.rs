//! Hostile input at the byte level, as an attacker or a broken client would
//! send it, not as a well-behaved HTTP client can: smuggling, framing games,
//! oversized and too many headers, Host and path games, odd HTTP versions,
//! pipelining, hostile JSON, slow and idle clients. Each gets a clear 4xx or a
//! closed connection, nothing reaches the partner, and a normal call made
//! afterwards is answered.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use offergate::call::route::Route;

use crate::fleet::{rss_kib, Fleet};
use crate::support::*;

/// A POST to the Encore route with `headers` (each ending in CRLF) and `body`,
/// with `Connection: close`.
fn post(headers: &str, body: &str) -> String {
    format!(
        "POST {ENCORE_PATH} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\r\n{body}"
    )
}

fn json_post(body: &str) -> String {
    post(
        &format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ),
        body,
    )
}

/// A closed connection without an answer.
const CLOSED: u16 = 0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_a_clear_refusal_and_reach_nothing() {
    let h = Harness::with_config(|o| {
        tuned(o, |c| {
            c.server.header_read_timeout = Duration::from_millis(300);
            c.server.body_read_timeout = Duration::from_millis(300);
        })
    })
    .await;
    let ct = "Content-Type: application/json\r\n";
    let many_headers: String = (0..70).map(|i| format!("X-H{i}: v\r\n")).collect();
    let too_many_for_hyper: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
    let huge_header = format!("X-Big: {}\r\n", "a".repeat(64 * 1024));
    let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    let cases: Vec<(&str, String, &[u16])> = vec![
        // Smuggling: both framings (hyper frames by TE alone, drops the length
        // and closes the connection after answering), conflicting lengths, TE games.
        ("CL and TE together", post(&format!("{ct}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n"), "0\r\n\r\n"), &[400]),
        ("two different Content-Lengths", post(&format!("{ct}Content-Length: 2\r\nContent-Length: 3\r\n"), "{}"), &[400, CLOSED]),
        ("a signed Content-Length", post(&format!("{ct}Content-Length: +2\r\n"), "{}"), &[400, CLOSED]),
        ("a Content-Length list", post(&format!("{ct}Content-Length: 2, 2\r\n"), "{}"), &[400, CLOSED]),
        ("TE gzip, chunked", post(&format!("{ct}Transfer-Encoding: gzip, chunked\r\n"), "2\r\n{}\r\n0\r\n\r\n"), &[400, CLOSED]),
        ("TE chunked twice", post(&format!("{ct}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), "2\r\n{}\r\n0\r\n\r\n"), &[400, CLOSED]),
        ("TE xchunked", post(&format!("{ct}Transfer-Encoding: xchunked\r\n"), "2\r\n{}\r\n0\r\n\r\n"), &[400, 501, CLOSED]),
        ("space before the colon", post(&format!("{ct}Transfer-Encoding : chunked\r\n"), "2\r\n{}\r\n0\r\n\r\n"), &[400, CLOSED]),
        ("a chunk size that overflows", post(&format!("{ct}Transfer-Encoding: chunked\r\n"), "fffffffffffffffffff\r\n{}\r\n0\r\n\r\n"), &[400, 413, CLOSED]),
        ("a negative chunk size", post(&format!("{ct}Transfer-Encoding: chunked\r\n"), "-2\r\n{}\r\n0\r\n\r\n"), &[400, CLOSED]),
        // hyper reads bare LF line ends; the request is rebuilt for the partner, so
        // nothing of its framing travels. Here it lacks a Content-Type.
        ("a bare LF line ending", format!("POST {ENCORE_PATH} HTTP/1.1\nHost: localhost\nContent-Length: 2\n\n{{}}"), &[400, 415, CLOSED]),
        // Size and count.
        ("70 headers", post(&format!("{ct}{many_headers}Content-Length: 2\r\n"), "{}"), &[431]),
        ("120 headers", post(&format!("{ct}{too_many_for_hyper}Content-Length: 2\r\n"), "{}"), &[431, CLOSED]),
        ("a 64 KiB header", post(&format!("{ct}{huge_header}Content-Length: 2\r\n"), "{}"), &[431, CLOSED]),
        ("a 10 MiB body announced", post(&format!("{ct}Content-Length: 10485760\r\n"), ""), &[413]),
        // Targets, Host, versions.
        ("absolute-form", format!("POST http://evil.example{ENCORE_PATH} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"), &[400]),
        ("CONNECT", "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nConnection: close\r\n\r\n".into(), &[405, 400]),
        ("a fragment in the target", format!("POST {ENCORE_PATH}#x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{ct}Content-Length: 2\r\n\r\n{{}}"), &[400, 404]),
        ("a port past 65535", format!("POST {ENCORE_PATH} HTTP/1.1\r\nHost: x:99999\r\nConnection: close\r\n{ct}Content-Length: 2\r\n\r\n{{}}"), &[400]),
        ("no Host", format!("POST {ENCORE_PATH} HTTP/1.1\r\nConnection: close\r\n{ct}Content-Length: 2\r\n\r\n{{}}"), &[400]),
        ("a path with ..", "POST /encore/publisher/sdk/v1/offers/../offers/message HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".into(), &[404]),
        ("HTTP/2.0 in the request line", format!("POST {ENCORE_PATH} HTTP/2.0\r\nHost: localhost\r\n\r\n"), &[400, 505, CLOSED]),
        ("HTTP/0.9", format!("GET {ENCORE_PATH}\r\n\r\n"), &[400, CLOSED]),
        ("HTTP/1.0 without Host", format!("POST {ENCORE_PATH} HTTP/1.0\r\n{ct}Content-Length: 2\r\n\r\n{{}}"), &[400]),
        ("an h2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".into(), &[400, 505, CLOSED]),
        ("binary garbage", "\u{0}\u{1}\u{2}\u{ff}garbage\r\n\r\n".into(), &[400, CLOSED]),
        // Hostile JSON.
        ("truncated JSON", json_post(r#"{"clientId":"#), &[400]),
        ("a duplicate key", json_post(&ENCORE_BODY.replace(r#""clientId":"client-42""#, r#""clientId":"","clientId":"client-42""#)), &[400]),
        ("nesting 5000 deep", json_post(&deep), &[400]),
        ("a body shorter than announced", post(&format!("{ct}Content-Length: 100\r\n"), "{}"), &[408, 400, CLOSED]),
        ("a form body", post("Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n", "a=b"), &[415]),
        // Slow client: headers never finished.
        ("headers never finished", format!("POST {ENCORE_PATH} HTTP/1.1\r\nHost: localhost\r\nX-Slow: "), &[408, CLOSED]),
    ];
    let mut tried = 0;
    for (name, request, allowed) in &cases {
        let got = raw_statuses(h.gw.proxy_addr, request.as_bytes()).await;
        let first = got.first().copied().unwrap_or(CLOSED);
        assert!(
            allowed.contains(&first),
            "{name}: answered {got:?}, expected one of {allowed:?}"
        );
        tried += 1;
    }
    // Invalid UTF-8 inside a JSON string (bytes, not a Rust string).
    let mut bad_utf8 = json_post(r#"{"clientId":"?"}"#).into_bytes();
    let at = bad_utf8.iter().rposition(|b| *b == b'?').unwrap_or(0);
    bad_utf8[at] = 0xff;
    assert_eq!(
        raw_statuses(h.gw.proxy_addr, &bad_utf8).await,
        [400],
        "invalid UTF-8"
    );
    tried += 1;
    // Pipelined: two refusals in one write, both answered, in order.
    let pipelined = format!(
        "POST /nope HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n{}",
        json_post("[]")
    );
    assert_eq!(
        raw_statuses(h.gw.proxy_addr, pipelined.as_bytes()).await,
        [404, 400]
    );
    assert_eq!(h.total_calls(), 0, "nothing reached the partner");
    // The admin listener refuses the same way.
    for request in [
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n0",
        "DELETE /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        "GET /../metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    ] {
        let got = raw_statuses(h.gw.admin_addr, request.as_bytes()).await;
        assert!(matches!(got.first(), Some(400..=499) | None), "{request}: {got:?}");
    }
    // As strict as the proxy on what a request names.
    for (request, status) in [
        ("GET http://evil.example/metrics HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n", 400),
        ("GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
        ("GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n", 400),
        ("GET /metrics HTTP/1.1\r\nHost: 10.1.2.3:9787\r\nConnection: close\r\n\r\n", 200),
    ] {
        let got = raw_statuses(h.gw.admin_addr, request.as_bytes()).await;
        assert_eq!(got.first(), Some(&status), "{request}: {got:?}");
    }
    // And a normal call is still answered.
    let ok = h.post(ENCORE_PATH, &[], &encore_body()).await;
    assert_eq!(ok.status, 200);
    assert_eq!(h.calls(Route::EncoreOffers), 1);
    assert!(tried >= 30, "{tried} hostile requests tried");
    println!("hostile requests: {tried} kinds plus a pipelined pair and 7 to the admin listener, 0 forwarded");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_flood_cannot_crowd_out_a_normal_call() {
    // The real binary, so its memory and log can be read on their own.
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("offergate.log");
    let f = Fleet::start(
        &[("OFFERGATE_SERVER__MAX_CONNECTIONS", "50")],
        Some(std::fs::File::create(&log_path).unwrap()),
    )
    .await;
    let pid = f.gw.0.id();
    assert_eq!(f.calls(5, 0).await, 5);
    let rss_before = rss_kib(pid);
    // 2000 connections that send nothing.
    let mut idle = Vec::new();
    for _ in 0..2_000 {
        if let Ok(s) = tokio::net::TcpStream::connect(f.listen).await {
            idle.push(s);
        }
    }
    let started = Instant::now();
    assert_eq!(
        f.calls(10, 0).await,
        10,
        "normal calls answered during the flood"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let rss_during = rss_kib(pid);
    // The cap held: all but about 50 of the flood were closed by offergate.
    // Each read waits for its close up to one shared deadline, so the ~50
    // connections still held cost it once, not each.
    let mut closed = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    for mut s in idle {
        use tokio::io::AsyncReadExt;
        let mut byte = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout_at(deadline, s.read(&mut byte)).await {
            closed += 1;
        }
    }
    assert!(
        closed >= 1_900,
        "only {closed} of 2000 idle connections were closed"
    );
    assert!(
        rss_during <= rss_before + 8 * 1024,
        "RSS {rss_before} KiB -> {rss_during} KiB under the flood"
    );
    // Its text log, written to a file, carries no terminal colour codes.
    crate::fleet::signal(&f.gw.0, "TERM");
    let mut f = f;
    exit_of(&mut f.gw.0, Duration::from_secs(10));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("offergate ready"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a file: {log:?}");
    println!("idle flood: 2000 connections, {closed} closed by offergate, RSS {rss_before} -> {rss_during} KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_hold_connections_never_the_slots_of_calls() {
    // max_in_flight = 200, and 350 callers that send their headers and 10
    // of 100 body bytes, then nothing: a normal caller is still answered.
    let h = Harness::with_config(|o| {
        config_for(
            o,
            "max_in_flight = 200\nmax_connections = 1024\nbody_read_timeout_ms = 5000",
            "",
        )
    })
    .await;
    let mut slow = Vec::new();
    for n in 0..350 {
        let mut s = tokio::net::TcpStream::connect(h.gw.proxy_addr)
            .await
            .unwrap();
        let head = format!(
            "POST {ENCORE_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"n\":{n:05},"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        slow.push(s);
    }
    let started = Instant::now();
    for _ in 0..5 {
        let a = h.post(ENCORE_PATH, &[], &encore_body()).await;
        assert_eq!(a.status, 200, "{:?}", a.body);
        assert!(a.json()["offer"].is_object(), "{:?}", a.body);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        h.calls(Route::EncoreOffers),
        5,
        "only the normal calls reached the partner"
    );
    drop(slow);
    h.stop().await;
}

/// At the connection cap with every connection held by a slow body, the
/// listener accepts nothing more: a normal caller waits in the listen
/// backlog and is answered once a slow body gives up its connection (here
/// at the 1 s body timeout), never accepted only to be closed with nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_a_caller_waits_and_is_answered_never_dropped() {
    let f = Fleet::start(
        &[
            ("OFFERGATE_SERVER__MAX_CONNECTIONS", "20"),
            ("OFFERGATE_SERVER__BODY_READ_TIMEOUT_MS", "1000"),
        ],
        None,
    )
    .await;
    for round in 0..3 {
        let mut slow = Vec::new();
        for _ in 0..40 {
            let mut s = tokio::net::TcpStream::connect(f.listen).await.unwrap();
            let head = format!(
                "POST {ENCORE_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{{\"clientId\":"
            );
            // Those past the cap wait in the backlog: their writes land in
            // the kernel's buffers all the same.
            let _ = s.write_all(head.as_bytes()).await;
            slow.push(s);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_secs(15),
            f.post(ENCORE_PATH, &serde_json::from_str(&encore_body()).unwrap()),
        )
        .await
        .unwrap_or_else(|_| panic!("round {round}: no answer within 15 s"));
        assert_eq!(answer.status, 200, "round {round}: {:?}", answer.body);
        println!(
            "round {round}: answered after {:?} behind 40 slow bodies at a cap of 20",
            started.elapsed()
        );
        drop(slow);
    }
}

/// Slow bodies cannot take memory past the body budget: 200 callers each
/// sending most of a 1 MiB eligibility body and stalling get 503 past the
/// budget (counted), RSS stays within the budget's reach while they hold on,
/// falls back after they leave, and a normal call is answered throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_cannot_take_memory_past_the_body_budget() {
    let f = Fleet::start(
        &[
            ("OFFERGATE_SERVER__BODY_BUDGET_BYTES", "8388608"),
            ("OFFERGATE_SERVER__BODY_READ_TIMEOUT_MS", "10000"),
        ],
        None,
    )
    .await;
    let pid = f.gw.0.id();
    assert_eq!(f.calls(5, 0).await, 5);
    let rss_before = rss_kib(pid);
    let mut slow = Vec::new();
    let part = vec![b' '; 900 * 1024];
    for _ in 0..200 {
        let mut s = tokio::net::TcpStream::connect(f.listen).await.unwrap();
        let head = "POST /offergate/v1/encore/eligibility HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{\"clientId\":\"c\",\"chatId\":\"t\",\"messages\":[";
        let _ = s.write_all(head.as_bytes()).await;
        // As much of the body as the connection takes in 50 ms.
        let _ = tokio::time::timeout(Duration::from_millis(50), s.write_all(&part)).await;
        slow.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_during = rss_kib(pid);
    assert_eq!(f.calls(5, 0).await, 5, "normal calls answered meanwhile");
    let page = {
        let req = http::Request::get(format!("http://{}/metrics", f.admin))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        String::from_utf8_lossy(&send_with(&f.client, req).await.body).to_string()
    };
    let shed = sample(&page, r#"offergate_shed_total{reason="body_budget"}"#);
    drop(slow);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rss_after = rss_kib(pid);
    println!("slow bodies: RSS {rss_before} -> {rss_during} -> {rss_after} KiB, {shed} shed");
    assert!(
        shed >= 150.0,
        "past the budget the callers are shed: {shed}"
    );
    assert!(
        rss_during <= rss_before + 24 * 1024,
        "RSS {rss_before} KiB -> {rss_during} KiB holding 200 slow bodies"
    );
    assert!(
        rss_after <= rss_before + 16 * 1024,
        "RSS {rss_before} KiB -> {rss_after} KiB after they left"
    );
}
