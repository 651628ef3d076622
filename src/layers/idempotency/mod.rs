//! Idempotency: one partner call per logical request, its answer replayed to
//! every duplicate. Encore does not de-duplicate (each call mints a new short
//! link), so a webhook delivered twice, or a platform retry after a timeout,
//! would otherwise send the end user two different offers.
//!
//! - Key: the caller's `Idempotency-Key`, scoped to the route (and Besitos
//!   partner); without one, the request's fingerprint (canonical body, route,
//!   partner, page) for a shorter window (`body_key_window_ms`).
//! - Same key, same request: the stored answer is replayed with
//!   `idempotent-replayed: true`; while the first call is in flight, later ones
//!   wait for it and share its answer (N duplicates, one partner call).
//! - Same key, different request: 422 `idempotency_key_reused`.
//! - Stored: the partner's 200s and 400s only. Failures and fallbacks are not,
//!   so a later retry with the same key reaches the partner again.
//!
//! The first call runs in its caller's task, and moves to a task of its own
//! only if that caller disconnects (`finish.rs`): it still completes and is
//! stored for the others (and for the caller's own retry), so a disconnect can
//! never cause a second partner call. A waiter gives up at its own deadline.

mod ahead;
mod any;
mod finish;
mod format;
mod memory;
mod redis;
mod store;

use crate::call::fingerprint::Fingerprint;
use crate::call::meaning::storable;
use crate::call::problem::Problem;
pub use ahead::AskAhead;
pub use any::AnyStore;
pub use finish::FinishAnyway;
pub use memory::MemoryStore;
pub use redis::RedisStore;
use std::future::Future;
pub use store::{Answer, Claim, IdempotencyStore, Stored, Waits};

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{header, HeaderName, HeaderValue};
use prometheus::IntCounter;

use crate::call::error::{CallError, GatewayError, Refusal};
use crate::call::request::Outcome;
use crate::call::request::{ProxyRequest, ProxyResponse};
use crate::call::route::{PerRoute, Route};
use crate::config::{Config, IdempotencyConfig};
use crate::layers::ProxyService;
use crate::metrics::Metrics;
use tower::Layer;

/// Set on answers replayed from the store or shared with an in-flight call.
pub static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The layer's service. Its next service is behind an `Arc`: a leader whose
/// caller went away takes it along to its own task for one reference count.
pub struct Idempotency<S, St> {
    shared: Arc<Shared<St>>,
    next: Arc<S>,
}

pub struct IdempotencyLayer<St>(Arc<Shared<St>>);

impl<S, St> Layer<S> for IdempotencyLayer<St> {
    type Service = Idempotency<S, St>;

    fn layer(&self, next: S) -> Idempotency<S, St> {
        Idempotency {
            shared: self.0.clone(),
            next: Arc::new(next),
        }
    }
}

/// What every call of the layer shares.
struct Shared<St> {
    per_route: Arc<PerRoute<RouteState<St>>>,
    deadline: PerRoute<Duration>,
    /// `offergate_idempotency_total` per route, resolved once: no label
    /// lookup (a hash and a lock) per call.
    results: [Lookups; 2],
}

/// How a lookup ended: the `result` label.
#[derive(Clone, Copy)]
pub enum Lookup {
    Miss,
    Hit,
    Coalesced,
    Conflict,
}

impl Lookup {
    const ALL: [Lookup; 4] = [
        Lookup::Miss,
        Lookup::Hit,
        Lookup::Coalesced,
        Lookup::Conflict,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Lookup::Miss => "miss",
            Lookup::Hit => "hit",
            Lookup::Coalesced => "coalesced",
            Lookup::Conflict => "conflict",
        }
    }
}

/// One route's `offergate_idempotency_total` series, one per [`Lookup`]:
/// the layer's, and the conversation endpoint's for its own answer store.
pub struct Lookups([IntCounter; 4]);

impl Lookups {
    pub fn new(family: &prometheus::IntCounterVec, route: &str) -> Lookups {
        Lookups(Lookup::ALL.map(|l| family.with_label_values(&[route, l.as_str()])))
    }

    pub fn count(&self, result: Lookup) {
        self.0[result as usize].inc();
    }
}

struct RouteState<St> {
    config: IdempotencyConfig,
    store: St,
}

impl IdempotencyLayer<AnyStore> {
    /// The layer with the stores `[state]` asks for: in-process, or Redis
    /// (`shared`) in front of in-process ones; its metrics registered in `metrics`.
    /// `ahead`: on Redis, the questions after a claim to ask with it.
    pub fn new(
        config: &Config,
        lookups: &prometheus::IntCounterVec,
        metrics: &Metrics,
        shared: Option<&crate::state::Redis>,
        ahead: Option<AskAhead>,
    ) -> Result<Self, Problem> {
        let ahead = ahead.map(Arc::new);
        Self::with_stores(config, lookups, metrics, |route, _| {
            AnyStore::for_route(config, route, shared, ahead.as_ref())
        })
    }
}

/// `offergate_idempotency_total`, registered once: the layer counts its
/// lookups there, and so does a route that keeps answers of its own (the
/// conversation endpoint).
pub fn lookups(metrics: &Metrics) -> Result<prometheus::IntCounterVec, Problem> {
    metrics.counter_vec(
        "offergate_idempotency_total",
        "Idempotency lookups by route and result (miss, hit, coalesced, conflict).",
        &["route", "result"],
    )
}

impl<St: IdempotencyStore> IdempotencyLayer<St> {
    pub fn with_stores(
        config: &Config,
        results: &prometheus::IntCounterVec,
        metrics: &Metrics,
        mut make_store: impl FnMut(Route, &IdempotencyConfig) -> St,
    ) -> Result<Self, Problem> {
        let per_route = Arc::new(PerRoute::new(|r| {
            let config = config.resilience(r).idempotency.clone();
            RouteState {
                store: make_store(r, &config),
                config,
            }
        }));
        let stores = per_route.clone();
        metrics.route_gauge(
            "offergate_idempotency_entries",
            "Answers stored for replay, per route.",
            move |r| i64::try_from(stores.get(r).store.entries()).unwrap_or(i64::MAX),
        )?;
        Ok(IdempotencyLayer(Arc::new(Shared {
            per_route,
            deadline: PerRoute::new(|r| config.resilience(r).deadline),
            results: Route::ALL.map(|r| Lookups::new(results, r.as_str())),
        })))
    }
}

impl<St> Shared<St> {
    fn count(&self, route: Route, result: Lookup) {
        self.results[route.index()].count(result);
    }
}

impl<St> RouteState<St> {
    /// The store key and how long an answer under it is kept, or `None` when
    /// this request is not de-duplicated.
    fn key(&self, req: &ProxyRequest, fp: &Fingerprint) -> Option<(String, Duration)> {
        if !self.config.enabled {
            return None;
        }
        match &req.call.idempotency_key {
            Some(k) => {
                let partner = req.target.partner_id().unwrap_or_default();
                let mut key = String::with_capacity(5 + partner.len() + k.len());
                for part in ["key/", partner, "/", k] {
                    key.push_str(part);
                }
                Some((key, self.config.ttl))
            }
            None => {
                let window = self.config.body_key_window?;
                let mut key = String::with_capacity(5 + 2 * fp.len());
                key.push_str("body/");
                crate::call::fingerprint::push_hex(fp, &mut key);
                Some((key, window))
            }
        }
    }
}

/// What to store of `answer`, if it is storable.
fn keep(answer: &Answer, fingerprint: Fingerprint, ttl: Duration) -> Option<Stored> {
    match answer {
        Ok(r) if storable(answer) => {
            Some(Stored {
                fingerprint,
                status: r.status,
                // Copies, not clones: hyper parses the partner's body and header
                // values as slices of its connection buffer (8 KiB+), which a
                // clone would pin for the whole TTL. Measured: ~8.7 KiB of RSS
                // per stored answer with clones, while the byte bound counted
                // only the body.
                content_type: r.headers.get(header::CONTENT_TYPE).and_then(|v| {
                    // The usual value needs no copy at all.
                    const JSON: HeaderValue = HeaderValue::from_static("application/json");
                    if v == JSON {
                        Some(JSON)
                    } else {
                        HeaderValue::from_bytes(v.as_bytes()).ok()
                    }
                }),
                body: Bytes::copy_from_slice(&r.body),
                ttl,
                ask_fleet_after: None,
            })
        }
        _ => None,
    }
}

/// `resp`, marked as an answer given before (`idempotent-replayed: true`).
pub fn mark_replayed(mut resp: ProxyResponse) -> ProxyResponse {
    resp.headers.insert(
        IDEMPOTENT_REPLAYED.clone(),
        HeaderValue::from_static("true"),
    );
    resp.outcome = Outcome::Replayed;
    resp
}

/// A stored answer, replayed.
pub fn replay(stored: &Stored) -> ProxyResponse {
    let mut resp = ProxyResponse::json(stored.status, stored.body.clone());
    match &stored.content_type {
        Some(ct) => resp.headers.insert(header::CONTENT_TYPE, ct.clone()),
        None => resp.headers.remove(header::CONTENT_TYPE),
    };
    mark_replayed(resp)
}

impl<S: ProxyService, St: IdempotencyStore> ProxyService for Idempotency<S, St> {
    fn call(
        &self,
        mut req: ProxyRequest,
    ) -> impl Future<Output = Result<ProxyResponse, GatewayError>> + Send + '_ {
        async move {
            let route = req.route();
            let this = &*self.shared;
            let state = this.per_route.get(route);
            // Boxed, as the leader's call is (`FinishAnyway`): held in place,
            // the call below would size this layer's state and every one
            // above it, copied whole as each is made.
            let Some(fp) = req.call.fingerprint else {
                return Box::pin(self.next.call(req)).await;
            };
            let Some((key, ttl)) = state.key(&req, &fp) else {
                return Box::pin(self.next.call(req)).await;
            };
            let mut waits = Waits::default();
            loop {
                let claim = state.store.claim_then(&key, &fp, &mut req).await;
                break match claim {
                    Claim::Stored(stored) => {
                        this.count(route, Lookup::Hit);
                        Ok(replay(&stored))
                    }
                    Claim::Conflict => {
                        this.count(route, Lookup::Conflict);
                        Err(GatewayError::Refused(Refusal::IdempotencyKeyReused))
                    }
                    Claim::Wait(first) => {
                        this.count(route, Lookup::Coalesced);
                        let own_deadline = waits.deadline(*this.deadline.get(route));
                        match tokio::time::timeout_at(own_deadline, first).await {
                            Ok(Some(answer)) if storable(&answer) => answer.map(mark_replayed),
                            // The first call's panic is counted once, on its own answer.
                            Ok(Some(Err(GatewayError::Call(CallError::Panic)))) => {
                                Err(GatewayError::Call(CallError::Internal(
                                    "the first call with this key failed unexpectedly".into(),
                                )))
                            }
                            Ok(Some(answer)) => answer,
                            Ok(None) if waits.claim_again() => continue,
                            Ok(None) => Err(GatewayError::Call(CallError::Internal(
                                "the first call with this key was lost".into(),
                            ))),
                            Err(_) => Err(GatewayError::Call(CallError::DeadlineExceeded)),
                        }
                    }
                    Claim::Unavailable => Err(GatewayError::Call(CallError::StateUnavailable)),
                    Claim::Lead => {
                        this.count(route, Lookup::Miss);
                        let (per_route, next) = (this.per_route.clone(), self.next.clone());
                        finish::FinishAnyway::new(async move {
                            let answer = AssertUnwindSafe(next.call(req))
                                .catch_unwind()
                                .await
                                .unwrap_or(Err(GatewayError::Call(CallError::Panic)));
                            let state = per_route.get(route);
                            state
                                .store
                                .finish(&key, &answer, keep(&answer, fp, ttl))
                                .await;
                            answer
                        })
                        .await
                    }
                };
            }
        }
    }
}
