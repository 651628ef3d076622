//! Both routes forward, answer byte for byte, and carry the configured
//! credential, never the caller's.

use offergate::call::route::Route;
use serde_json::Value;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encore_answer_is_the_partners_byte_for_byte_with_our_key() {
    let h = Harness::start().await;
    let a = h
        .post(
            ENCORE_PATH,
            &[
                ("x-api-key", "pk_live_callers_own_key"),
                ("authorization", "Bearer callers"),
                ("x-request-id", "req-abc-1"),
            ],
            ENCORE_BODY,
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(h.calls(Route::EncoreOffers), 1);
    let seen = h
        .sim
        .state
        .last(Route::EncoreOffers)
        .expect("the simulator got the call");
    assert_eq!(
        a.body, seen.answered,
        "the caller gets exactly what the partner sent"
    );
    assert!(a.json()["offer"]["clickUrl"]
        .as_str()
        .unwrap()
        .starts_with("https://link.encorekit.com/"));
    // Untouched but for chatId, which Encore gets as its keyed pseudonym.
    let chat = "8b3f7c10-9d4e-4d2a-91a1-3f0e8a1c0b5d";
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, CHAT_ID_KEY.as_bytes()),
        chat.as_bytes(),
    );
    let hex: String = tag.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        String::from_utf8_lossy(&seen.body),
        ENCORE_BODY.replace(chat, &format!("og_{hex}")),
        "the body is forwarded untouched but for its chatId"
    );
    let keys: Vec<_> = seen.headers.get_all("x-api-key").iter().collect();
    assert_eq!(keys, [KEY], "exactly the configured key");
    assert!(
        seen.headers.get("authorization").is_none(),
        "the caller's Authorization is removed"
    );
    assert_eq!(seen.headers.get("x-request-id").unwrap(), "req-abc-1");
    assert_eq!(a.headers.get("x-request-id").unwrap(), "req-abc-1");
    assert_eq!(seen.path_and_query, ENCORE_PATH);

    // Another conversation mints a new short link.
    let b = h.post(ENCORE_PATH, &[], &encore_body()).await;
    assert_ne!(a.json()["offer"]["clickUrl"], b.json()["offer"]["clickUrl"]);
    assert_eq!(h.calls(Route::EncoreOffers), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encore_no_offer_countries_pass_through() {
    let h = Harness::start().await;
    let body = ENCORE_BODY.replace("\"US\"", "\"AQ\"");
    let a = h.post(ENCORE_PATH, &[], &body).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.json(),
        serde_json::json!({"success": true, "offer": null})
    );
    let m = h.metrics().await;
    assert_sample(
        &m,
        r#"offergate_requests_total{outcome="forwarded",route="encore_offers"}"#,
        1.0,
    );
    assert_sample(
        &m,
        r#"offergate_upstream_requests_total{route="encore_offers",status="200"}"#,
        1.0,
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn besitos_is_forwarded_with_the_partners_token_and_page_urls_rewritten() {
    let h = Harness::start().await;
    let filters = r#"{"subscribers":["LaQ1VYb5ANTAny25Ig","21sdf1sef54wef64"],"hours_from":0,"hours_to":500,"message_template":"{hours}h for {level} of {game}: {reward}"}"#;
    let path = format!("{}?page=2", besitos_path(PARTNER));
    let a = h
        .post(
            &path,
            &[
                ("authorization", "Bearer callers-own"),
                ("x-api-key", "pk_live_x"),
            ],
            filters,
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let seen = h.sim.state.last(Route::BesitosGoals).unwrap();
    let auths: Vec<_> = seen.headers.get_all("authorization").iter().collect();
    assert_eq!(auths, [format!("Bearer {TOKEN}").as_str()]);
    assert!(seen.headers.get("x-api-key").is_none());
    assert_eq!(seen.path_and_query, path, "page is kept");
    assert_eq!(seen.body, filters.as_bytes());

    // Same document as the partner's, with its origin swapped for ours.
    let partner: Value = serde_json::from_slice(&seen.answered).unwrap();
    let ours = a.json();
    let gw_origin = format!("http://{}", h.gw.proxy_addr);
    let expected: Value = serde_json::from_str(
        &String::from_utf8_lossy(&seen.answered).replace(h.sim.origin(), &gw_origin),
    )
    .unwrap();
    assert_eq!(ours, expected);
    assert_eq!(ours["current_page"], 2);
    assert_eq!(ours["data"], partner["data"]);
    assert_eq!(
        ours["next_page_url"],
        format!("{gw_origin}{}?page=3", besitos_path(PARTNER))
    );
    assert_eq!(
        ours["prev_page_url"],
        format!("{gw_origin}{}?page=1", besitos_path(PARTNER))
    );
    let first = &ours["data"][0];
    assert_eq!(
        first["message"],
        format!(
            "{}h for {} of {}: {}",
            first["hours"],
            first["level"].as_str().unwrap(),
            first["game"].as_str().unwrap(),
            first["reward"].as_str().unwrap()
        )
    );

    // Following next_page_url goes through the gateway again.
    let next = ours["next_page_url"]
        .as_str()
        .unwrap()
        .strip_prefix(&gw_origin)
        .unwrap()
        .to_string();
    let b = h.post(&next, &[], filters).await;
    assert_eq!(b.status, 200);
    assert_eq!(b.json()["current_page"], 3);
    assert_eq!(h.calls(Route::BesitosGoals), 2);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn besitos_without_a_body_asks_for_everything() {
    let h = Harness::start().await;
    let req = http::Request::post(h.proxy_url(&besitos_path(PARTNER)))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let a = h.send(req).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.json()["data"].as_array().unwrap().len(), 5);
    assert_eq!(h.calls(Route::BesitosGoals), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_4xx_passes_through_and_only_allowlisted_headers_travel() {
    let h = Harness::start().await;
    h.sim.state.set_plan(
        Route::EncoreOffers,
        vec![offergate::simulator::faults::Fault::Status(400)],
    );
    let a = h
        .post(
            ENCORE_PATH,
            &[
                ("connection", "x-hop-secret"),
                ("x-hop-secret", "1"),
                ("x-tenant", "acme"),
                ("x-http-method-override", "DELETE"),
                ("forwarded", "for=203.0.113.9;host=evil.example"),
                (
                    "traceparent",
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                ),
            ],
            ENCORE_BODY,
        )
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(
        a.json()["error"]["code"],
        "simulated",
        "the partner's own 400 body"
    );
    let seen = h.sim.state.last(Route::EncoreOffers).unwrap();
    for name in [
        "x-hop-secret",
        "x-tenant",
        "x-http-method-override",
        "forwarded",
    ] {
        assert!(
            seen.headers.get(name).is_none(),
            "{name} is not on the allowlist"
        );
    }
    assert_eq!(
        seen.headers.get("traceparent").unwrap(),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "trace context travels"
    );
    let generated = a.headers.get("x-request-id").unwrap();
    assert_eq!(
        seen.headers.get("x-request-id").unwrap(),
        generated,
        "a generated id is sent upstream too"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_keep_alive_connection_serves_many_calls() {
    let h = Harness::start().await;
    let mut s = tokio::net::TcpStream::connect(h.gw.proxy_addr)
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for i in 0..5 {
        let body = encore_body();
        let req = format!(
            "POST {ENCORE_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 200"), "call {i}: {text}");
    }
    assert_eq!(h.calls(Route::EncoreOffers), 5);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_composed_message_is_the_partners_answer_with_one_member_added() {
    let h = Harness::start().await;
    let body = ENCORE_BODY.replace("\"en\"", "\"pt-BR\"");
    let compose = [("x-offergate-compose", "true"), ("idempotency-key", "c-1")];
    // The partner call reads the answer once and composes as it does.
    let a = h.post(ENCORE_PATH, &compose, &body).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let seen = h
        .sim
        .state
        .last(Route::EncoreOffers)
        .expect("the partner got it");
    let v = a.json();
    let url = v["offer"]["clickUrl"].as_str().unwrap().to_string();
    let text = v["composed"]["text"].as_str().unwrap().to_string();
    assert!(text.starts_with("Ganhe ") && text.contains(&url), "{text}");
    assert_eq!(v["composed"]["language"], "pt");
    // Every byte the partner sent is there, in order, before the new member.
    let partner = &seen.answered[..seen.answered.len() - 1];
    assert!(a.body.starts_with(partner), "{:?}", a.body);
    // A replay (from the store, read here once) composes the same text.
    let again = h.post(ENCORE_PATH, &compose, &body).await;
    assert!(again.replayed());
    assert_eq!(again.json()["composed"]["text"], text);
    assert_eq!(again.body, a.body);
    assert_eq!(h.calls(Route::EncoreOffers), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_valid_trace_context_reaches_the_partner_and_the_body_is_sent_as_utf8_json() {
    let h = Harness::start().await;
    let good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let big_state = "k=".to_string() + &"v".repeat(15_000);
    let a = h
        .post(
            ENCORE_PATH,
            &[
                ("traceparent", good),
                ("tracestate", &big_state),
                ("content-type", "application/json; charset=UTF-8"),
            ],
            ENCORE_BODY,
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let seen = h.sim.state.last(Route::EncoreOffers).unwrap();
    assert_eq!(seen.headers.get("traceparent").unwrap(), good);
    assert!(
        seen.headers.get("tracestate").is_none(),
        "an oversized tracestate is dropped"
    );
    assert_eq!(
        seen.headers.get("content-type").unwrap(),
        "application/json"
    );
    // Two oversized, invalid parents: neither travels.
    let huge = "0".repeat(8_000);
    let req = http::Request::post(h.proxy_url(ENCORE_PATH))
        .header("content-type", "application/json")
        .header("traceparent", huge.as_str())
        .header("traceparent", huge.as_str())
        .body(http_body_util::Full::new(bytes::Bytes::from(encore_body())))
        .unwrap();
    assert_eq!(h.send(req).await.status, 200);
    let seen = h.sim.state.last(Route::EncoreOffers).unwrap();
    assert!(seen.headers.get("traceparent").is_none());
    // A charset other than UTF-8 is refused: the body was read as UTF-8.
    let latin = h
        .post(
            ENCORE_PATH,
            &[("content-type", "application/json; charset=latin1")],
            &encore_body(),
        )
        .await;
    assert_eq!(latin.status, 415, "{:?}", latin.body);
    assert_eq!(h.calls(Route::EncoreOffers), 2);
}
