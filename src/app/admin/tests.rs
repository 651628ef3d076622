//! The admin listener on a gateway of its own: who may change what, and
//! what reading shows.

use super::*;
use crate::app::gateway::Gateway;
use crate::config::{Config, MapEnv};
use http_body_util::BodyExt;

async fn gateway(admin_token: Option<&str>) -> Gateway {
    let mut text = crate::config::shipped_reading_env()
        .replace("listen = \"127.0.0.1:8787\"", "listen = \"127.0.0.1:0\"")
        .replace(
            "admin_listen = \"127.0.0.1:9787\"",
            "admin_listen = \"127.0.0.1:0\"",
        );
    if admin_token.is_some() {
        text = text.replace("[server]", "[server]\nadmin_token_env = \"ADMIN_TOKEN\"");
    }
    let env = MapEnv::from([
        ("ENCORE_API_KEY", "pk_test_a"),
        ("BESITOS_TOKEN", "t"),
        ("ADMIN_TOKEN", admin_token.unwrap_or("")),
    ]);
    let mut config = Config::from_toml(&text, &env).unwrap();
    config.state.thread_file = None;
    Gateway::start(config).await.unwrap()
}

fn admin(gw: &Gateway, peer: &str) -> Admin {
    Admin {
        metrics: gw.metrics.clone(),
        ready: Arc::new(AtomicBool::new(true)),
        state: None,
        console: gw.console.clone(),
        secrets: gw.secrets.clone(),
        peer: Some(peer.parse().unwrap()),
    }
}

async fn put_level(admin: &Admin, auth: Option<&str>) -> (u16, String) {
    put_level_to(admin, "localhost:9787", auth).await
}

async fn put_level_to(admin: &Admin, host: &str, auth: Option<&str>) -> (u16, String) {
    let mut req = Request::put("/log-level").header(header::HOST, host);
    if let Some(auth) = auth {
        req = req.header(header::AUTHORIZATION, auth);
    }
    let answer = admin
        .clone()
        .handle(req.body(Full::new(Bytes::from_static(b"info"))).unwrap())
        .await;
    let status = answer.status().as_u16();
    let body = answer.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn the_console_from_another_host_needs_the_admin_token_and_probes_never_do() {
    let gw = gateway(Some("s3cret-admin")).await;
    let remote = admin(&gw, "192.0.2.7:40000");
    let (status, body) = put_level(&remote, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("admin_token"), "{body}");
    assert_eq!(put_level(&remote, Some("Bearer wrong")).await.0, 401);
    assert_eq!(put_level(&remote, Some("s3cret-admin")).await.0, 401);
    // With the token, the change is taken (or, in a test process that
    // installed no subscriber, refused as such: never as unauthorized).
    let (status, body) = put_level(&remote, Some("Bearer s3cret-admin")).await;
    assert!(
        status == 200 || body.contains("no log subscriber"),
        "{body}"
    );
    // Loopback needs no token.
    let local = admin(&gw, "127.0.0.1:40000");
    let (status, body) = put_level(&local, None).await;
    assert!(
        status == 200 || body.contains("no log subscriber"),
        "{body}"
    );
    // The console's reads from another host need the token too; with it
    // they answer, and the token never shows. Probes and scrapes are open.
    let get = |who: &Admin, path: &str, host: &str, auth: Option<&str>| {
        let mut req = Request::get(path).header(header::HOST, host);
        if let Some(auth) = auth {
            req = req.header(header::AUTHORIZATION, auth);
        }
        who.clone()
            .handle(req.body(Full::new(Bytes::new())).unwrap())
    };
    for path in ["/status", "/config", "/requests", "/", "/log-level"] {
        assert_eq!(
            get(&remote, path, "offergate", None).await.status(),
            401,
            "{path}"
        );
        let answer = get(&remote, path, "offergate", Some("Bearer s3cret-admin")).await;
        assert_eq!(answer.status(), 200, "{path}");
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(
            !body.contains("s3cret-admin") && !body.contains("pk_test_a"),
            "{path}"
        );
        // From loopback, named as loopback: open; under a rebound name: not.
        assert_eq!(
            get(&local, path, "127.0.0.1:9787", None).await.status(),
            200,
            "{path}"
        );
        assert_eq!(
            get(&local, path, "rebind.evil.example", None)
                .await
                .status(),
            401,
            "{path}"
        );
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            get(&remote, path, "offergate", None).await.status(),
            200,
            "{path}"
        );
        assert_eq!(
            get(&local, path, "rebind.evil.example", None)
                .await
                .status(),
            200,
            "{path}"
        );
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn without_a_token_changes_come_from_loopback_only() {
    let gw = gateway(None).await;
    let (status, body) = put_level(&admin(&gw, "[2001:db8::1]:40000"), Some("Bearer x")).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("loopback"), "{body}");
    let (status, body) = put_level(&admin(&gw, "[::1]:40000"), None).await;
    assert!(
        status == 200 || body.contains("no log subscriber"),
        "{body}"
    );
    let local = admin(&gw, "127.0.0.1:40000");
    for host in ["127.0.0.1:9787", "[::1]:9787", "LOCALHOST"] {
        let (status, body) = put_level_to(&local, host, None).await;
        assert!(
            status == 200 || body.contains("no log subscriber"),
            "{host}: {body}"
        );
    }
    // A page of another site whose name was rebound to 127.0.0.1.
    let (status, body) = put_level_to(&local, "evil.example:9787", None).await;
    assert_eq!(status, 403, "{body}");
    gw.shutdown().await;
}

#[test]
fn the_requests_limit_is_a_positive_number() {
    assert_eq!(requests_limit(None).unwrap(), usize::MAX);
    assert_eq!(requests_limit(Some("limit=5")).unwrap(), 5);
    for bad in ["limit=0", "limit=-1", "limit=x", "other=1", "limit"] {
        assert!(requests_limit(Some(bad)).is_err(), "{bad}");
    }
}
