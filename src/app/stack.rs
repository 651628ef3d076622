//! The only place offergate's request path is put together. Read top to bottom
//! in the order a request meets each piece:
//!
//! ```text
//! caller ─▶ Edge                request id, shedding, panics, access log, metrics, errors
//!           └ Router            the request line: which partner route (edge/router.rs)
//!           └ Admission         Host, token, partner, content type, body, JSON rules
//!             └ Fallback        a failure after everything below → 200 "nothing for you"
//!               └ Idempotency   replay or coalesce duplicates: one partner call per request
//!                 └ ThreadCap   Encore: at most N offers per chat in the window
//!                   └ Deadline    one clock for the whole call
//!                     └ CallerLimit   a partner 429's pause; the caller's bucket (clientId / partner_id)
//!                       └ Retry       backoff + full jitter, Retry-After, budget (per try ↓)
//!                         └ Circuit   open after repeated failures or a 429 pause; one probe
//!                           └ PartnerQuota  the partner's bucket, spent by every try
//!                             └ Upstream    credential injection, one pooled try within the
//!                                           try timeout, 200-body check, Besitos URL rewrite ─▶ partner
//! ```

use crate::call::problem::Problem;
use tower::ServiceBuilder;

use std::sync::Arc;

use crate::call::error::GatewayError;
use crate::call::request::{ProxyRequest, ProxyResponse};
use crate::call::spans::Tracing;
use crate::config::{BaseUrl, Config, Live, Secrets};
use crate::conversation::{AnyThreads, FleetThreads, Journal, Keep, LocalThreads};
use crate::edge::recent::Recent;
use crate::edge::{Edge, Observed};
use crate::layers::circuit::{self, Breakers, Circuit, CircuitLayer};
use crate::layers::deadline::{Deadline, DeadlineLayer};
use crate::layers::fallback::{Fallback, FallbackLayer};
use crate::layers::idempotency::{AnyStore, AskAhead, Idempotency, IdempotencyLayer};
use crate::layers::pause;
use crate::layers::rate_limit::{
    self, CallerLimit, CallerLimitLayer, LimitedCounter, PartnerQuota, PartnerQuotaLayer,
};
use crate::layers::retry::{Retry, RetryLayer};
use crate::layers::thread_cap::{ThreadCap, ThreadCapLayer};
use crate::layers::{FromTower, ProxyService};
use crate::metrics::Metrics;
use crate::state::Redis;
use crate::upstream::Upstream;

/// The stack between admission and `U`, the partner call, outermost first:
/// one type, so a call through it is one future (boxed by the edge; the
/// idempotency leader boxes its own part: docs/architecture.md).
pub type Stack<U> = Fallback<
    Idempotency<ThreadCap<Deadline<CallerLimit<Retry<Circuit<PartnerQuota<U>>>>>>, AnyStore>,
>;

/// The gateway's proxy service: the edge in front of the stack to the partners.
pub type GatewayEdge = Edge<Stack<Upstream>>;

/// The edge and stack in front of a tower service as the partner: the
/// in-memory partners of the stack tests and the benchmarks.
pub type EdgeWith<U> = Edge<Stack<FromTower<U>>>;

/// How many of the last requests the admin console lists (at
/// `Recent::SLOT_BYTES` each, ~50 KiB in all).
pub const RECENT_REQUESTS: usize = 256;

/// What the stack shares with the running gateway: the state backend, the
/// conversations, and the secrets a reload replaces.
#[derive(Clone)]
pub struct Shared {
    pub state: Option<Redis>,
    pub threads: Arc<AnyThreads>,
    pub secrets: Arc<Live<Secrets>>,
    /// The last requests answered (the admin console's `/requests`).
    pub recent: Arc<Recent>,
    /// Spans, when `[tracing]` names a collector (set by the gateway, which
    /// runs their export).
    pub tracing: Option<Tracing>,
    /// Each partner's circuit and 429 pause, as this replica knows them.
    pub breakers: Breakers,
    pub pauses: pause::Pauses,
}

impl Shared {
    /// For `config`, with `state` when `[state] backend = "redis"`: the
    /// conversations on it, or in memory (read back from and written behind
    /// to `[state] thread_file` when one is set).
    pub fn new(config: &Config, state: Option<Redis>) -> Result<Shared, Problem> {
        let keep = Keep::from(&config.encore.integrator);
        let threads = match (&state, &config.state.thread_file) {
            (Some(redis), _) => AnyThreads::Fleet(FleetThreads::new(
                redis.clone(),
                LocalThreads::new(keep, None),
                keep,
            )),
            (None, Some(file)) => {
                if file.default {
                    if let Some(dir) = file.path.parent() {
                        std::fs::create_dir_all(dir).map_err(|e| {
                            Problem(format!(
                                "state.thread_file: cannot make the state directory {}: {e} (set [state] thread_file, or \"\" for memory only)",
                                dir.display()
                            ))
                        })?;
                    }
                }
                AnyThreads::Local(LocalThreads::new(keep, Some(Journal::open(&file.path)?)))
            }
            (None, None) => AnyThreads::Local(LocalThreads::new(keep, None)),
        };
        Ok(Shared {
            state,
            threads: Arc::new(threads),
            secrets: Arc::new(Live::new(Secrets::of(config))),
            recent: Arc::new(Recent::new(RECENT_REQUESTS)),
            tracing: None,
            breakers: circuit::breakers(config),
            pauses: pause::pauses(),
        })
    }
}

/// Builds the caller-facing service for `config`.
///
/// `public_base_url` is where callers reach this gateway (Besitos page URLs are
/// rewritten to it); each piece registers its metrics in `metrics`.
pub fn build(
    config: &Config,
    public_base_url: BaseUrl,
    metrics: &Metrics,
    shared: &Shared,
) -> Result<GatewayEdge, Problem> {
    let upstream = Upstream::new(
        config,
        public_base_url.clone(),
        metrics,
        shared.secrets.clone(),
    )?;
    assemble(config, public_base_url, metrics, shared, upstream)
}

/// [`build`] around any tower service as the partner.
pub fn build_with<U>(
    config: &Config,
    public_base_url: BaseUrl,
    metrics: &Metrics,
    shared: &Shared,
    upstream: U,
) -> Result<EdgeWith<U>, Problem>
where
    U: tower::Service<ProxyRequest, Response = ProxyResponse, Error = GatewayError, Future: Send>
        + Clone
        + Send
        + Sync
        + 'static,
{
    assemble(
        config,
        public_base_url,
        metrics,
        shared,
        FromTower(upstream),
    )
}

fn assemble<U: ProxyService>(
    config: &Config,
    public_base_url: BaseUrl,
    metrics: &Metrics,
    shared: &Shared,
    upstream: U,
) -> Result<Edge<Stack<U>>, Problem> {
    let state = shared.state.as_ref();
    // The shared state, each behind its own trait: this replica's, or the
    // fleet's on Redis with this replica's behind it (`state/fleet.rs`).
    let pauses = shared.pauses.clone();
    let breakers = shared.breakers.clone();
    let permits = rate_limit::permits(config, pauses.clone(), breakers, state.cloned());
    let pause_board = pause::board(pauses, state.cloned());
    let limited = LimitedCounter::register(metrics)?;
    // Counted by the idempotency layer and by the conversation endpoint's
    // own answer store alike.
    let lookups = crate::layers::idempotency::lookups(metrics)?;
    let stack = ServiceBuilder::new()
        // Outermost of the resilience layers: it sees the final result, after
        // every retry, and turns a failure into the partner's "nothing for you".
        .layer(FallbackLayer::new(config, public_base_url, metrics)?)
        // Duplicates are answered here, before anything spends partner quota or
        // retries; it sees raw results, so it stores partner answers, never fallbacks.
        .layer(IdempotencyLayer::new(
            config,
            &lookups,
            metrics,
            state,
            AskAhead::new(config, shared.threads.clone(), permits.clone()),
        )?)
        // The Encore doc's per-thread cap: below idempotency, so a replay
        // never counts twice; before anything spends quota or retries.
        .layer(ThreadCapLayer::new(metrics, shared.threads.clone())?)
        // The call's deadline: set before anything waits or plans against it.
        .layer(DeadlineLayer::new(config))
        // Once per call: a partner 429's pause, then the caller's fair share.
        .layer(CallerLimitLayer::new(
            config,
            permits.clone(),
            limited.clone(),
        ))
        // Retries repeat whole tries below; each try passes the circuit again.
        .layer(RetryLayer::new(config, metrics)?)
        // Per try: refuse at once while the partner is failing or paused.
        .layer(CircuitLayer::new(
            config,
            shared.breakers.clone(),
            pause_board,
            metrics,
        )?)
        // Per try, retries included: the quota offergate may spend on the partner.
        .layer(PartnerQuotaLayer::new(config, permits, limited))
        .service(upstream);
    // In front of it all, the edge: load shedding, admission, panics and
    // errors turned into answers (edge/mod.rs).
    Edge::new(
        config,
        stack,
        metrics,
        shared.secrets.clone(),
        shared.threads.clone(),
        state,
        Observed {
            recent: shared.recent.clone(),
            tracing: shared.tracing.clone(),
            lookups,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapEnv;
    use crate::edge::PANIC_AT;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    /// A panic in each of the edge's own steps (before the call, the span's
    /// end, the console's record) answers 500 in the error shape, with the
    /// caller's request id, and is counted; one in the access line is
    /// counted and the answer goes out as it was.
    #[tokio::test]
    async fn a_panic_in_the_edges_own_steps_answers_500_and_is_counted() {
        let toml = r#"
[encore]
base_url = "http://127.0.0.1:9"
api_key_env = "KEY"
chat_id_key_env = "CHAT_ID_KEY"
[besitos]
base_url = "http://127.0.0.1:9"
[[besitos.partners]]
id = "p"
token_env = "KEY"
[state]
thread_file = ""
"#;
        let env = MapEnv::from([
            ("KEY", "pk_test_edge"),
            ("CHAT_ID_KEY", "edge-chat-id-key-0123"),
        ]);
        let config = Config::from_toml(toml, &env).unwrap_or_else(|e| panic!("{e}"));
        let metrics = Metrics::new();
        let partner = tower::service_fn(|_: ProxyRequest| async {
            Ok::<_, GatewayError>(ProxyResponse::json(
                http::StatusCode::OK,
                Bytes::from_static(br#"{"success":true,"offer":null}"#),
            ))
        });
        let public = BaseUrl::parse("http://127.0.0.1:8787").unwrap_or_else(|e| panic!("{e}"));
        let shared = Shared::new(&config, None).unwrap_or_else(|e| panic!("{e}"));
        let edge = build_with(&config, public, &metrics, &shared, partner)
            .unwrap_or_else(|e| panic!("{e}"));
        let call = |chat: &str| {
            let body = format!(
                r#"{{"clientId":"c","chatId":"{chat}","attributes":{{"countryCode":"US","language":"en","platform":"ios"}}}}"#
            );
            http::Request::post("/encore/publisher/sdk/v1/offers/message")
                .header("host", "127.0.0.1:8787")
                .header("content-type", "application/json")
                .header("x-request-id", "edge-panic-test")
                .body(Full::new(Bytes::from(body)))
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let panics = || {
            let text = String::from_utf8(metrics.render()).unwrap_or_default();
            text.lines()
                .find_map(|l| l.strip_prefix("offergate_panics_total "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let fine = edge.clone().handle(call("before")).await;
        assert_eq!(fine.status(), 200);
        // The access line's own panic costs the line, not the answer.
        PANIC_AT.set(Some("log"));
        let logged = edge.clone().handle(call("log")).await;
        PANIC_AT.set(None);
        assert_eq!(logged.status(), 200);
        assert_eq!(panics(), 1, "the log's panic counted");
        for (n, place) in ["prelude", "span", "record"].into_iter().enumerate() {
            PANIC_AT.set(Some(place));
            let resp = edge.clone().handle(call(place)).await;
            PANIC_AT.set(None);
            assert_eq!(resp.status(), 500, "{place}");
            assert_eq!(
                resp.headers().get("x-request-id").map(|v| v.as_bytes()),
                Some(b"edge-panic-test".as_slice()),
                "{place}"
            );
            let body = resp.into_body().collect().await.map(|b| b.to_bytes());
            let body: serde_json::Value =
                serde_json::from_slice(&body.unwrap_or_default()).unwrap_or_default();
            assert_eq!(body["error"]["code"], "internal_error", "{place}: {body}");
            assert_eq!(panics(), n as u64 + 2, "{place}: counted once");
        }
        let fine = edge.clone().handle(call("after")).await;
        assert_eq!(fine.status(), 200, "the edge serves on");
    }
}
