//! Everything offergate refuses is answered with the right status and error
//! code, and nothing of it reaches the partner.

use offergate::call::route::Route;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_bodies_are_rejected_locally_naming_the_field() {
    let h = Harness::start().await;
    let encore = |from: &str, to: &str| ENCORE_BODY.replace(from, to);
    let cases: Vec<(String, String, u16, &str, &str)> = vec![
        (
            ENCORE_PATH.into(),
            encore("\"US\"", "\"usa\""),
            400,
            "invalid_request",
            "attributes.countryCode",
        ),
        (
            ENCORE_PATH.into(),
            encore("\"US\"", "\"ZZ\""),
            400,
            "invalid_request",
            "attributes.countryCode",
        ),
        (
            ENCORE_PATH.into(),
            encore("\"en\"", "\"en_US\""),
            400,
            "invalid_request",
            "attributes.language",
        ),
        (
            ENCORE_PATH.into(),
            encore("\"ios\"", "\"blackberry\""),
            400,
            "invalid_request",
            "attributes.platform",
        ),
        // Ids are keys: one with a NUL could pass for another client's thread.
        (
            ENCORE_PATH.into(),
            encore("\"client-42\"", r#""X\u0000x""#),
            400,
            "invalid_request",
            "clientId",
        ),
        (
            ENCORE_PATH.into(),
            encore(
                "\"8b3f7c10-9d4e-4d2a-91a1-3f0e8a1c0b5d\"",
                r#""x\u0000chat""#,
            ),
            400,
            "invalid_request",
            "chatId",
        ),
        (
            ENCORE_PATH.into(),
            encore("\"client-42\"", "\"\""),
            400,
            "invalid_request",
            "clientId",
        ),
        (
            ENCORE_PATH.into(),
            encore("\"clientId\":\"client-42\",", ""),
            400,
            "invalid_request",
            "clientId",
        ),
        (
            ENCORE_PATH.into(),
            encore("8b3f7c10-9d4e-4d2a-91a1-3f0e8a1c0b5d", &"x".repeat(300)),
            400,
            "invalid_request",
            "chatId",
        ),
        (
            ENCORE_PATH.into(),
            "{\"clientId\":".into(),
            400,
            "invalid_request",
            "body",
        ),
        (
            ENCORE_PATH.into(),
            "[]".into(),
            400,
            "invalid_request",
            "body",
        ),
        (
            besitos_path(PARTNER),
            r#"{"hours_from":10,"hours_to":2}"#.into(),
            400,
            "invalid_request",
            "hours_from",
        ),
        (
            besitos_path(PARTNER),
            r#"{"hours_to":-3}"#.into(),
            400,
            "invalid_request",
            "hours_to",
        ),
        (
            besitos_path(PARTNER),
            r#"{"subscribers":"one"}"#.into(),
            400,
            "invalid_request",
            "subscribers",
        ),
        (
            besitos_path(PARTNER),
            r#"{"offers":[true]}"#.into(),
            400,
            "invalid_request",
            "offers[0]",
        ),
        (
            besitos_path(PARTNER),
            r#"{"message_template":{}}"#.into(),
            400,
            "invalid_request",
            "message_template",
        ),
        (
            format!("{}?page=0", besitos_path(PARTNER)),
            "{}".into(),
            400,
            "invalid_request",
            "query.page",
        ),
        (
            format!("{}?debug=1", besitos_path(PARTNER)),
            "{}".into(),
            400,
            "invalid_request",
            "query",
        ),
        (
            format!("{ENCORE_PATH}?x=1"),
            ENCORE_BODY.into(),
            400,
            "invalid_request",
            "query",
        ),
        (
            besitos_path("unknownPartner"),
            "{}".into(),
            404,
            "unknown_partner",
            "unknownPartner",
        ),
    ];
    for (path, body, status, code, mention) in cases {
        let a = h.post(&path, &[], &body).await;
        assert_eq!(a.status, status, "{path} {body}: {:?}", a.body);
        assert_eq!(a.code(), code, "{path} {body}");
        assert!(
            a.message().contains(mention),
            "{path} {body}: message {:?} should name {mention}",
            a.message()
        );
        assert!(a.headers.get("x-request-id").is_some());
    }
    assert_eq!(h.total_calls(), 0, "nothing invalid reaches the partner");
    let m = h.metrics().await;
    assert_sample(
        &m,
        r#"offergate_requests_total{outcome="rejected",route="encore_offers"}"#,
        11.0,
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_type_and_size_limits() {
    let h = Harness::with_config(|o| config_for(o, "body_limit_bytes = 1024", "")).await;
    let a = h
        .post(ENCORE_PATH, &[("content-type", "text/plain")], ENCORE_BODY)
        .await;
    assert_eq!(
        (a.status.as_u16(), a.code().as_str()),
        (415, "unsupported_media_type")
    );
    let a = h
        .post(
            ENCORE_PATH,
            &[("content-type", "application/x-www-form-urlencoded")],
            "a=b",
        )
        .await;
    assert_eq!(a.status, 415);
    // No content type at all on a route whose body is required.
    let req = http::Request::post(h.proxy_url(ENCORE_PATH))
        .body(http_body_util::Full::new(bytes::Bytes::from(ENCORE_BODY)))
        .unwrap();
    assert_eq!(h.send(req).await.status, 415);
    // Besitos with a body but no content type.
    let req = http::Request::post(h.proxy_url(&besitos_path(PARTNER)))
        .body(http_body_util::Full::new(bytes::Bytes::from("{}")))
        .unwrap();
    assert_eq!(h.send(req).await.status, 415);
    // Over the limit, announced by Content-Length...
    let big = ENCORE_BODY.replace("\"extra\"", "").replacen(
        '{',
        &format!("{{\"pad\":\"{}\",", "p".repeat(2000)),
        1,
    );
    let a = h.post(ENCORE_PATH, &[], &big).await;
    assert_eq!(
        (a.status.as_u16(), a.code().as_str()),
        (413, "payload_too_large")
    );
    // ...and sent chunked, without one.
    let chunked = format!(
        "POST {ENCORE_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        big.len()
    );
    let (status, body) = raw(h.gw.proxy_addr, chunked.as_bytes()).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(h.total_calls(), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_an_open_proxy() {
    let h = Harness::start().await;
    let addr = h.gw.proxy_addr;
    let post = |target: &str, host: &str| {
        format!(
            "POST {target} HTTP/1.1\r\n{host}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{ENCORE_BODY}",
            ENCORE_BODY.len()
        )
    };
    let std_host = "Host: 127.0.0.1\r\n";
    let cases: Vec<(String, u16, &str)> = vec![
        (post("/", std_host), 404, "not_found"),
        (post("/admin", std_host), 404, "not_found"),
        (post("/encore/publisher/sdk/v1/offers/message/", std_host), 404, "not_found"),
        (post("/encore/publisher/sdk/v1/offers/%6Dessage", std_host), 404, "not_found"),
        (post("/encore/publisher/sdk/v1/../v1/offers/message", std_host), 404, "not_found"),
        (post("/data/messages/%2e%2e/upcoming-goals", std_host), 404, "not_found"),
        (post("/data/messages/../../encore/upcoming-goals", std_host), 404, "not_found"),
        (post("//encore/publisher/sdk/v1/offers/message", std_host), 404, "not_found"),
        (post("http://api.encorekit.com/encore/publisher/sdk/v1/offers/message", std_host), 400, "invalid_request_target"),
        (post("http://169.254.169.254/latest/meta-data", std_host), 400, "invalid_request_target"),
        (post(ENCORE_PATH, ""), 400, "invalid_host"),
        (post(ENCORE_PATH, "Host: a\r\nHost: b\r\n"), 400, "invalid_host"),
        (post(ENCORE_PATH, "Host: user@evil.example\r\n"), 400, "invalid_host"),
        (format!("GET {ENCORE_PATH} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"), 405, "method_not_allowed"),
        (format!("PUT {} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", besitos_path(PARTNER)), 405, "method_not_allowed"),
        ("CONNECT api.encorekit.com:443 HTTP/1.1\r\nHost: api.encorekit.com:443\r\nConnection: close\r\n\r\n".into(), 405, "method_not_allowed"),
        ("GET /nothing HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".into(), 404, "not_found"),
    ];
    for (request, status, code) in cases {
        let (got, body) = raw(addr, request.as_bytes()).await;
        assert_eq!(got, status, "{request}\n{body}");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(v["error"]["code"], code, "{request}");
    }
    assert_eq!(h.total_calls(), 0, "nothing was forwarded");
    let m = h.metrics().await;
    assert_sample(
        &m,
        r#"offergate_unrouted_requests_total{code="not_found"}"#,
        9.0,
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_hosts_and_inbound_token() {
    let h = Harness::with_config(|o| {
        config_for(
            o,
            "allowed_hosts = [\"offergate.local\"]\ninbound_token_env = \"TEST_INBOUND_TOKEN\"",
            "",
        )
    })
    .await;
    let send = |host: &str, token: Option<&str>| {
        let token = token
            .map(|t| format!("x-offergate-token: {t}\r\n"))
            .unwrap_or_default();
        format!(
            "POST {ENCORE_PATH} HTTP/1.1\r\nHost: {host}\r\n{token}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{ENCORE_BODY}",
            ENCORE_BODY.len()
        )
    };
    let (s, body) = raw(
        h.gw.proxy_addr,
        send("evil.example", Some("caller-token-123")).as_bytes(),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("invalid_host"));
    let (s, _) = raw(
        h.gw.proxy_addr,
        send("offergate.local:8787", None).as_bytes(),
    )
    .await;
    assert_eq!(s, 401);
    let (s, _) = raw(
        h.gw.proxy_addr,
        send("offergate.local:8787", Some("caller-token-12")).as_bytes(),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(h.total_calls(), 0);
    let (s, body) = raw(
        h.gw.proxy_addr,
        send("OFFERGATE.local", Some("caller-token-123")).as_bytes(),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let seen = h.sim.state.last(Route::EncoreOffers).unwrap();
    assert!(
        seen.headers.get("x-offergate-token").is_none(),
        "the inbound token stays with offergate"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_loopback_listener_answers_loopback_names_only() {
    // A web page on the same machine that points a name of its own at
    // 127.0.0.1 (DNS rebinding) sends that name as Host: refused.
    let h = Harness::start().await;
    let port = h.gw.proxy_addr.port();
    let send = |host: String| {
        format!(
            "POST {ENCORE_PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{ENCORE_BODY}",
            ENCORE_BODY.len()
        )
    };
    for host in [
        "evil.example".to_string(),
        format!("rebind.attacker.test:{port}"),
        "10.0.0.7".into(),
    ] {
        let (status, body) = raw(h.gw.proxy_addr, send(host.clone()).as_bytes()).await;
        assert_eq!(status, 400, "{host}: {body}");
        assert!(
            body.contains("invalid_host") && body.contains("loopback"),
            "{host}: {body}"
        );
    }
    assert_eq!(h.total_calls(), 0, "nothing was forwarded");
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "127.0.0.9".into(),
        format!("[::1]:{port}"),
    ] {
        let (status, body) = raw(h.gw.proxy_addr, send(host.clone()).as_bytes()).await;
        assert_eq!(status, 200, "{host}: {body}");
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_takes_one_content_type() {
    let h = Harness::start().await;
    let body = r#"{"clientId":"c","chatId":"x","messages":[]}"#;
    let request = format!(
        "POST /offergate/v1/encore/eligibility HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, answer) = raw(h.gw.proxy_addr, request.as_bytes()).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("Content-Type"), "{answer}");
    h.stop().await;
}
