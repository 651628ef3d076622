//! The per-thread cap on the offers route, from the Encore doc: a thread (a
//! `clientId` and `chatId`) gets at most `[encore.integrator] thread_cap`
//! offers over `thread_window_ms`. Past the cap the caller gets
//! `{"success":true,"offer":null}` with `x-offergate-skipped: thread_cap`,
//! and the partner is not called.
//!
//! A slot is taken before the call and given back unless an offer was served,
//! all under one lock (or one Redis script), so 20 concurrent calls for one
//! chat never exceed the cap. The layer sits below idempotency: a replay
//! never counts twice. Where the counts live is [`ThreadOffers`]'s: this
//! replica's memory (`local.rs`), or with `[state] backend = "redis"` the
//! fleet's (`fleet.rs`); the layer does not know which.

mod fleet;
mod local;

use crate::call::problem::Problem;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use prometheus::IntCounterVec;
use tower::Layer;

use super::fleet::Unavailable;
use super::ProxyService;
use crate::call::error::{CallError, GatewayError};
use crate::call::request::{OfferServed, Outcome, ProxyRequest, ProxyResponse, ThreadId};
use crate::call::route::Route;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::state::Redis;
pub use fleet::FleetThreads;
pub use local::{LocalThreads, MAX_THREADS};

/// Set on an answer skipped by an integrator rule.
pub static X_OFFERGATE_SKIPPED: HeaderName = HeaderName::from_static("x-offergate-skipped");

/// Where a thread's offers are counted: this replica, or the fleet.
pub trait ThreadOffers: Send + Sync + 'static {
    /// One of `thread`'s offer slots, held until the [`Held`] is dropped
    /// (given back) or kept; `None` when the thread is at its cap.
    fn reserve(
        &self,
        thread: ThreadId,
    ) -> impl Future<Output = Result<Option<Held>, Unavailable>> + Send + '_;
}

/// The counts `[state]` asks for.
pub enum AnyThreads {
    Local(LocalThreads),
    Fleet(FleetThreads),
}

impl ThreadOffers for AnyThreads {
    fn reserve(
        &self,
        thread: ThreadId,
    ) -> impl Future<Output = Result<Option<Held>, Unavailable>> + Send + '_ {
        async move {
            match self {
                AnyThreads::Local(local) => Ok(local.reserve_now(thread)),
                AnyThreads::Fleet(fleet) => fleet.reserve(thread).await,
            }
        }
    }
}

pub struct ThreadCap<S> {
    shared: Arc<Shared>,
    next: S,
}

pub struct ThreadCapLayer(Arc<Shared>);

impl<S> Layer<S> for ThreadCapLayer {
    type Service = ThreadCap<S>;

    fn layer(&self, next: S) -> ThreadCap<S> {
        ThreadCap {
            shared: self.0.clone(),
            next,
        }
    }
}

/// What every call of the layer shares.
struct Shared {
    cap: u32,
    threads: AnyThreads,
    skipped: IntCounterVec,
}

impl ThreadCapLayer {
    pub fn new(
        config: &Config,
        metrics: &Metrics,
        shared: Option<Redis>,
    ) -> Result<ThreadCapLayer, Problem> {
        let rules = &config.encore.integrator;
        let (cap, window) = (rules.thread_cap, rules.thread_window);
        let local = LocalThreads::new(cap, window);
        let threads = match shared {
            None => AnyThreads::Local(local),
            Some(redis) => AnyThreads::Fleet(FleetThreads {
                redis,
                local,
                cap,
                window,
            }),
        };
        Ok(ThreadCapLayer(Arc::new(Shared {
            cap,
            threads,
            skipped: metrics.counter_vec(
                "offergate_skipped_total",
                "Calls answered without an offer by an integrator rule, by route and reason (thread_cap).",
                &["route", "reason"],
            )?,
        })))
    }
}

impl Shared {
    fn skip(&self) -> ProxyResponse {
        self.skipped
            .with_label_values(&[Route::EncoreOffers.as_str(), "thread_cap"])
            .inc();
        let mut resp = ProxyResponse::json(
            StatusCode::OK,
            Bytes::from_static(br#"{"success":true,"offer":null}"#),
        );
        resp.headers.insert(
            X_OFFERGATE_SKIPPED.clone(),
            HeaderValue::from_static("thread_cap"),
        );
        resp.outcome = Outcome::Rejected;
        resp
    }
}

/// A slot taken for one call; given back when dropped unless kept (`None`).
pub struct Held(Option<Slot>);

enum Slot {
    Local {
        threads: Arc<Mutex<local::Threads>>,
        thread: ThreadId,
        at: u64,
    },
    Shared {
        redis: Redis,
        key: String,
        member: String,
        window: Duration,
        cap: u32,
    },
}

impl Drop for Held {
    fn drop(&mut self) {
        match self.0.take() {
            None => {}
            Some(Slot::Local {
                threads,
                thread,
                at,
            }) => local::release(&threads, thread, at),
            // Dropped without an offer (a failure, or a caller gone): given
            // back in the background; a failure leaves it to expire.
            Some(Slot::Shared {
                redis,
                key,
                member,
                window,
                cap,
            }) => {
                tokio::spawn(async move {
                    let _ = redis.thread(&key, window, cap, &member, true).await;
                });
            }
        }
    }
}

impl<S: ProxyService> ProxyService for ThreadCap<S> {
    fn call(
        &self,
        req: ProxyRequest,
    ) -> impl Future<Output = Result<ProxyResponse, GatewayError>> + Send + '_ {
        async move {
            let this = &*self.shared;
            let thread = match (req.route(), req.call.thread) {
                (Route::EncoreOffers, Some(thread)) if this.cap > 0 => thread,
                _ => return self.next.call(req).await,
            };
            let mut held = match this.threads.reserve(thread).await {
                Ok(Some(held)) => held,
                Ok(None) => return Ok(this.skip()),
                Err(Unavailable) => return Err(GatewayError::Call(CallError::StateUnavailable)),
            };
            let result = self.next.call(req).await;
            if matches!(&result, Ok(r) if r.extensions.get::<OfferServed>().is_some()) {
                // An offer was shown: the slot stays taken.
                held.0 = None;
            }
            result
        }
    }
}
