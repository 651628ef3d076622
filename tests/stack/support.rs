//! The stack tier's harness: the real tower stack (`app::stack::build_with`:
//! edge, admission, every layer) in front of an in-memory partner, driven on
//! tokio's paused clock. A 5 s backoff or a 1 s `Retry-After` takes no real
//! time, and every duration a test reads is exact.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use offergate::app::stack::EdgeWith;
use offergate::call::error::{CallError, GatewayError, UpstreamFailure};
use offergate::call::meaning::partner_answer;
use offergate::call::request::{Outcome, ProxyRequest, ProxyResponse};
use offergate::call::route::Route;
use offergate::config::{BaseUrl, Config, MapEnv, Rate};
use offergate::metrics::Metrics;
use tower::util::BoxCloneSyncService;

pub const ENCORE_PATH: &str = "/encore/publisher/sdk/v1/offers/message";
pub const PARTNER: &str = "eafLst9T";
pub const NO_OFFER: &str = r#"{"success":true,"offer":null}"#;

/// An Encore body for chat `chat` (one logical request per chat).
pub fn encore_body(chat: &str) -> String {
    format!(
        r#"{{"clientId":"client-42","chatId":"{chat}","attributes":{{"countryCode":"US","language":"en","platform":"ios"}}}}"#
    )
}

pub fn besitos_path() -> String {
    format!("/data/messages/{PARTNER}/upcoming-goals")
}

/// What the in-memory partner does with its next call.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    /// Its normal answer: an offer with a fresh short link, or a page.
    Answer,
    /// This status with an error body (a 400 is delivered, others are failures).
    Status(u16),
    /// 429 with `Retry-After: S`.
    TooMany(u64),
    /// Its normal answer, after this long.
    Slow(Duration),
    /// Encore's 200 with no offer for this user.
    NoOffer,
    /// Never answers (the deadline or a try timeout ends it).
    Hang,
    /// The connection could not be made: the request never left.
    Unreachable,
    /// A bug in a layer below: the partner call panics.
    Panic,
}

/// The in-memory partner: scripted steps, then its normal answer; counts calls.
#[derive(Default)]
pub struct Partner {
    script: Mutex<VecDeque<Step>>,
    calls: [AtomicU64; 2],
    links: AtomicU64,
}

impl Partner {
    pub fn plan(&self, steps: &[Step]) {
        self.script.lock().unwrap().extend(steps.iter().cloned());
    }

    pub fn calls(&self, route: Route) -> u64 {
        self.calls[route.index()].load(Ordering::SeqCst)
    }

    async fn answer(&self, req: ProxyRequest) -> Result<ProxyResponse, GatewayError> {
        let route = req.route();
        self.calls[route.index()].fetch_add(1, Ordering::SeqCst);
        let step = self.script.lock().unwrap().pop_front();
        let json = |status: u16, body: String| {
            ProxyResponse::json(StatusCode::from_u16(status).unwrap(), Bytes::from(body))
        };
        let failure =
            |resp: ProxyResponse| Err(GatewayError::Call(CallError::PartnerStatus(Box::new(resp))));
        let mut step = step.unwrap_or(Step::Answer);
        if let Step::Slow(d) = step {
            tokio::time::sleep(d).await;
            step = Step::Answer;
        }
        match step {
            Step::Answer | Step::Slow(_) => {
                let n = self.links.fetch_add(1, Ordering::SeqCst);
                Ok(match route {
                    Route::EncoreOffers => {
                        let mut offer = json(
                            200,
                            format!(
                                r#"{{"success":true,"offer":{{"clickUrl":"https://link.encorekit.com/{n}","title":"t"}}}}"#
                            ),
                        );
                        // As the upstream marks a served offer (the thread cap counts it).
                        let link = offergate::partners::encore::links::key_of_offer(
                            &format!("https://link.encorekit.com/{n}"),
                            "link.encorekit.com",
                        );
                        offer.offer = Some(offergate::call::request::OfferServed { link });
                        offer
                    }
                    Route::BesitosGoals => json(200, format!(r#"{{"data":[{{"n":{n}}}]}}"#)),
                })
            }
            Step::NoOffer => Ok(json(200, r#"{"success":true,"offer":null}"#.into())),
            Step::Status(code) => partner_answer(json(code, r#"{"success":false}"#.into())),
            Step::TooMany(secs) => {
                let mut r = json(429, r#"{"success":false}"#.into());
                r.headers
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                failure(r)
            }
            Step::Hang => std::future::pending().await,
            Step::Unreachable => Err(GatewayError::Call(CallError::Upstream(
                UpstreamFailure::Connect("connection refused".into()),
            ))),
            Step::Panic => panic!("scripted panic in the partner call"),
        }
    }
}

/// The whole stack in front of a [`Partner`], with its metrics.
pub struct Stack {
    edge: EdgeWith<BoxCloneSyncService<ProxyRequest, ProxyResponse, GatewayError>>,
    pub partner: Arc<Partner>,
    pub metrics: Metrics,
}

#[path = "../common/answer.rs"]
mod answer;
pub use answer::Answer;
#[path = "../common/eventually.rs"]
mod waiting;
pub use waiting::eventually;

/// The shipped defaults, with rate limits out of the way unless a test is about them.
pub fn config() -> Config {
    let toml = r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[log]
access_log = false
[encore]
base_url = "http://127.0.0.1:9"
api_key_env = "KEY"
chat_id_key_env = "CHAT_ID_KEY"
[besitos]
base_url = "http://127.0.0.1:9"
[[besitos.partners]]
id = "eafLst9T"
token_env = "TOKEN"
"#;
    let env = MapEnv::from([
        ("KEY", "pk_test_stack"),
        ("TOKEN", "stack-token"),
        ("CHAT_ID_KEY", "stack-chat-id-key-0123"),
    ]);
    let mut c = Config::from_toml(toml, &env).unwrap_or_else(|e| panic!("{e}"));
    // In memory: the tests run side by side.
    c.state.thread_file = None;
    let plenty = Rate {
        per_second: 100_000.0,
        burst: 100_000,
    };
    for r in [&mut c.encore.resilience, &mut c.besitos.resilience] {
        r.rate_limit.partner = plenty;
        r.rate_limit.client = plenty;
    }
    c
}

impl Stack {
    pub fn new() -> Stack {
        Stack::with(|_| {})
    }

    pub fn with(tune: impl FnOnce(&mut Config)) -> Stack {
        let mut c = config();
        tune(&mut c);
        Stack::over(&c, None, Metrics::new())
    }

    /// The stack with its shared state on the Redis at `url` (real time:
    /// Redis keeps its own clock), once it is connected.
    pub async fn on_redis(url: &str, tune: impl FnOnce(&mut Config)) -> Stack {
        let mut c = config();
        c.state.backend = offergate::config::StateBackend::Redis;
        c.state.redis_url = Some(url.to_string());
        tune(&mut c);
        let metrics = Metrics::new();
        let redis =
            offergate::state::Redis::connect(&c.state, &metrics).unwrap_or_else(|e| panic!("{e}"));
        eventually(Duration::from_secs(10), "connected to Redis", || {
            std::future::ready((!redis.degraded()).then_some(()))
        })
        .await;
        Stack::over(&c, Some(redis), metrics)
    }

    fn over(c: &Config, state: Option<offergate::state::Redis>, metrics: Metrics) -> Stack {
        let partner = Arc::new(Partner::default());
        let p = partner.clone();
        let service = BoxCloneSyncService::new(tower::service_fn(move |req: ProxyRequest| {
            let p = p.clone();
            async move { p.answer(req).await }
        }));
        let public = BaseUrl::parse("http://127.0.0.1:8787").unwrap();
        let edge = offergate::app::stack::build_with(
            c,
            public,
            &metrics,
            &offergate::app::stack::Shared::new(c, state).unwrap_or_else(|e| panic!("{e}")),
            service,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        Stack {
            edge,
            partner,
            metrics,
        }
    }

    pub fn plan(&self, steps: &[Step]) {
        self.partner.plan(steps);
    }

    pub fn calls(&self, route: Route) -> u64 {
        self.partner.calls(route)
    }

    /// POSTs `body` as JSON; the request is built at once, so the answer's
    /// future borrows nothing but the stack.
    pub fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl ToString,
    ) -> impl std::future::Future<Output = Answer> + '_ {
        let mut req = Request::post(path)
            .header("host", "127.0.0.1:8787")
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(Full::new(Bytes::from(body.to_string()))).unwrap())
    }

    pub async fn send(&self, req: Request<Full<Bytes>>) -> Answer {
        let resp = self.edge.clone().handle(req).await;
        let (parts, body) = resp.into_parts();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.expect("a full body").to_bytes(),
        }
    }

    /// The value of one exposed series, 0 when absent.
    pub fn sample(&self, series: &str) -> f64 {
        let text = String::from_utf8(self.metrics.render()).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }
}

/// Asserts an Encore soft fallback for `reason`.
#[track_caller]
pub fn assert_no_offer(a: &Answer, reason: &str) {
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body, NO_OFFER.as_bytes());
    assert_eq!(a.fallback(), Some(reason));
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Lets spawned calls run up to their next wait.
pub async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

pub const FORWARDED: Outcome = Outcome::Forwarded;
