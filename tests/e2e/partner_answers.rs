//! What a partner sends back is checked before it reaches the caller: only
//! the headers a caller needs travel, offergate's own headers are only ever
//! offergate's, and an answer with oversized or encoded headers is not an
//! answer (soft fallback, with its reason, counted).

use crate::rogue::{answer_200, Rogue};
use crate::support::*;
use offergate::Gateway;

const OFFER: &str = r#"{"success":true,"offer":{"clickUrl":"https://link.encorekit.com/abc","title":"t","description":"d","imageUrl":"https://storage.googleapis.com/x.png","advertiserName":"a","perk":"p"}}"#;

/// A gateway in front of `rogue`, one call on `path` with `headers`, and the
/// gateway's metrics after it.
async fn call_through(
    rogue: &Rogue,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (Answer, String) {
    let gw = Gateway::start(config_for(&rogue.origin(), "", ""))
        .await
        .expect("gateway starts");
    let answer = post_to_gateway(&gw, path, headers, body).await;
    let metrics = metrics_of(&gw).await;
    gw.shutdown().await;
    (answer, metrics)
}

/// One Encore offer call through a gateway in front of `rogue`.
async fn through(rogue: &Rogue) -> (Answer, String) {
    call_through(rogue, ENCORE_PATH, &[], &encore_body()).await
}

/// [`call_through`], the answer alone.
async fn one_call(rogue: &Rogue, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    call_through(rogue, path, headers, body).await.0
}

/// A partner that answers every call with a JSON 200 of `body`.
async fn json_partner(body: &str) -> Rogue {
    Rogue::start(answer_200(&["Content-Type: application/json".into()], body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_headers_a_caller_needs_come_back_and_ours_cannot_be_forged() {
    let headers: Vec<String> = [
        "Content-Type: application/json",
        "x-offergate-fallback: forged",
        "idempotent-replayed: true",
        "x-offergate-skipped: thread_cap",
        "Location: https://evil.example/",
        "Refresh: 0; url=https://evil.example/",
        "Access-Control-Allow-Origin: *",
        "Strict-Transport-Security: max-age=63072000",
        "WWW-Authenticate: Basic",
        "Retry-After: 30",
        "Set-Cookie: a=1",
        "Set-Cookie2: b=2",
        "X-Partner-Debug: internal",
    ]
    .map(String::from)
    .to_vec();
    let rogue = Rogue::start(answer_200(&headers, OFFER)).await;
    let (answer, _) = through(&rogue).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json()["offer"]["clickUrl"],
        "https://link.encorekit.com/abc"
    );
    let mut names: Vec<&str> = answer.headers.keys().map(|k| k.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["content-length", "content-type", "date", "x-request-id"],
        "{:?}",
        answer.headers
    );
    assert_eq!(rogue.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_or_encoded_partner_headers_make_the_answer_invalid() {
    let cases: [(&str, Vec<String>); 3] = [
        (
            "one 300 KB header",
            vec![format!("X-Big: {}", "a".repeat(300 * 1024))],
        ),
        (
            "50 headers of 4 KB",
            (0..50)
                .map(|i| format!("X-Pad-{i}: {}", "a".repeat(4096)))
                .collect(),
        ),
        (
            "gzip on plain JSON",
            vec!["Content-Encoding: gzip".to_string()],
        ),
    ];
    for (what, headers) in cases {
        let mut headers = headers;
        headers.push("Content-Type: application/json".into());
        let rogue = Rogue::start(answer_200(&headers, OFFER)).await;
        let (answer, metrics) = through(&rogue).await;
        assert_eq!(answer.status, 200, "{what}");
        assert!(
            answer.json()["offer"].is_null(),
            "{what}: {:?}",
            answer.body
        );
        let reason = answer.fallback().unwrap_or_default().to_string();
        assert!(
            reason == "invalid_upstream_body" || reason == "upstream_unreachable",
            "{what}: {reason}"
        );
        assert!(answer.headers.get("content-encoding").is_none(), "{what}");
        assert!(answer.headers.get("x-big").is_none(), "{what}");
        let counted =
            format!(r#"offergate_fallbacks_total{{reason="{reason}",route="encore_offers"}}"#);
        assert!(sample(&metrics, &counted) >= 1.0, "{what}: {counted}");
        assert!(rogue.calls() >= 1, "{what}: the partner was asked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_link_an_end_user_would_tap_must_be_the_partners() {
    for link in [
        "javascript:alert(document.cookie)",
        "https://evil.example/phish",
        "https://link.encorekit.com@evil.example/x",
        "http://link.encorekit.com/plain",
        // Markup, a query, an attribute break, a long tail: the link goes
        // into the text an end user is sent.
        "https://link.encorekit.com/<script>alert(1)</script>",
        "https://link.encorekit.com/x\"onmouseover=\"evil()",
        "https://link.encorekit.com/x?<b>=1&evil",
        "https://link.encorekit.com/x#evil",
    ] {
        let offer = OFFER.replace("https://link.encorekit.com/abc", link);
        let rogue = json_partner(&offer).await;
        let a = one_call(
            &rogue,
            ENCORE_PATH,
            &[("x-offergate-compose", "true")],
            &encore_body(),
        )
        .await;
        assert_eq!(a.status, 200, "{link}");
        assert_eq!(a.fallback(), Some("invalid_upstream_body"), "{link}");
        assert!(a.json()["offer"].is_null(), "{link}: {:?}", a.body);
        assert!(a.json().get("composed").is_none(), "{link}");
        assert!(!String::from_utf8_lossy(&a.body).contains("evil"), "{link}");
    }
    let long = OFFER.replace(
        "https://link.encorekit.com/abc",
        &format!("https://link.encorekit.com/{}", "a".repeat(5_000)),
    );
    let a = one_call(&json_partner(&long).await, ENCORE_PATH, &[], &encore_body()).await;
    assert_eq!(
        a.fallback(),
        Some("invalid_upstream_body"),
        "a 5,000-character link"
    );
}

/// An answer nested 200,000 levels deep, or framed both by Content-Length
/// and Transfer-Encoding, is no answer: the soft fallback, on the offers
/// route and the conversation endpoint alike, where it is never counted as
/// an offer shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_or_doubly_framed_answer_is_refused_and_never_counts_as_shown() {
    let deep = format!(
        r#"{{"success":true,"offer":{{"clickUrl":"https://link.encorekit.com/abc","x":{}{}}}}}"#,
        "[".repeat(200_000),
        "]".repeat(200_000)
    );
    let rogue = json_partner(&deep).await;
    let a = one_call(&rogue, ENCORE_PATH, &[], &encore_body()).await;
    assert_eq!(a.fallback(), Some("invalid_upstream_body"), "deep");
    let besitos = format!(r#"{{"data":{}{}}}"#, "[".repeat(100), "]".repeat(100));
    let a = one_call(
        &json_partner(&besitos).await,
        &besitos_path(PARTNER),
        &[],
        "{}",
    )
    .await;
    assert_eq!(
        a.fallback(),
        Some("invalid_upstream_body"),
        "deep Besitos page"
    );

    // Both framings (a chunked body that also claims a length).
    let body = OFFER;
    let raw = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len(),
        body.len()
    );
    let rogue = Rogue::start(raw.into_bytes()).await;
    let a = one_call(&rogue, ENCORE_PATH, &[], &encore_body()).await;
    assert!(
        matches!(
            a.fallback(),
            Some("invalid_upstream_body" | "upstream_unreachable")
        ),
        "framed both ways: {:?} {:?}",
        a.fallback(),
        a.body
    );
    assert!(a.json()["offer"].is_null());

    // On the conversation endpoint: skipped, and offers_shown stays 0.
    let rogue = json_partner(&deep).await;
    let gw = Gateway::start(config_for(&rogue.origin(), "", ""))
        .await
        .unwrap();
    let message = |id: &str| {
        serde_json::json!({"clientId": "c", "chatId": "deep", "messageId": id,
            "sentAt": offergate::call::clock::wall_ms(), "text": "hi",
            "attributes": {"countryCode": "US", "language": "en", "platform": "ios"}})
        .to_string()
    };
    let messages = "/offergate/v1/encore/messages";
    let v = post_to_gateway(&gw, messages, &[], &message("m1"))
        .await
        .json();
    assert_eq!(
        (v["decision"].as_str(), v["offers_shown"].as_u64()),
        (Some("skip"), Some(0)),
        "{v}"
    );
    let v = post_to_gateway(&gw, messages, &[], &message("m2"))
        .await
        .json();
    assert_eq!(v["offers_shown"], 0, "the refused link never counted: {v}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_markup_never_reaches_a_composed_message_and_odd_page_urls_are_no_links() {
    let offer = OFFER.replace(r#""perk":"p""#, r#""perk":"<script>x</script>\u0000 free""#);
    let rogue = json_partner(&offer).await;
    let a = one_call(
        &rogue,
        ENCORE_PATH,
        &[("x-offergate-compose", "true")],
        &encore_body(),
    )
    .await;
    let text = a.json()["composed"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        text.starts_with("Get scriptx/script free by claiming now: https://link.encorekit.com/abc"),
        "{text:?}"
    );
    let page = r#"{"current_page":1,"data":[],"next_page_url":"javascript:alert(1)","prev_page_url":"//evil.example/x","path":"/data/messages/p/upcoming-goals"}"#;
    let rogue = json_partner(page).await;
    let a = one_call(&rogue, &besitos_path(PARTNER), &[], "{}").await;
    assert_eq!(a.status, 200);
    assert!(a.fallback().is_none(), "{:?}", a.body);
    assert_eq!(a.json()["next_page_url"], serde_json::Value::Null);
    assert_eq!(a.json()["prev_page_url"], serde_json::Value::Null);
    let twice = r#"{"data":[],"data":[{"message":"m"}]}"#;
    let rogue = json_partner(twice).await;
    let a = one_call(&rogue, &besitos_path(PARTNER), &[], "{}").await;
    assert_eq!(a.fallback(), Some("invalid_upstream_body"), "{:?}", a.body);
}
