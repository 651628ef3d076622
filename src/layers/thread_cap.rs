//! The per-thread cap on the offers route, from the Encore doc: a thread (a
//! `clientId` and `chatId`) gets at most `[encore.integrator] thread_cap`
//! offers over `thread_window_ms`. Past the cap the caller gets
//! `{"success":true,"offer":null}` with `x-offergate-skipped: thread_cap`,
//! and the partner is not called.
//!
//! A slot is taken before the call and given back unless an offer was served,
//! all under one lock (or one Redis script), so 20 concurrent calls for one
//! chat never exceed the cap. The layer sits below idempotency: a replay
//! never counts twice. Counts live in memory (bounded to 100,000 threads:
//! past that, threads whose offers all left the window go first, then the
//! half least recently offered to) or, with `[state] backend = "redis"`, in
//! one sorted set per thread shared by every replica, expiring with the window.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use prometheus::IntCounterVec;
use smallvec::SmallVec;
use tower::Layer;

use super::ProxyService;
use crate::call::clock::{self, Instant};
use crate::call::error::GatewayError;
use crate::call::fingerprint::hex;
use crate::call::request::{OfferServed, Outcome, ProxyRequest, ProxyResponse, ThreadId};
use crate::call::route::Route;
use crate::config::{Config, OnStateError};
use crate::metrics::Metrics;
use crate::state::Redis;

/// Set on an answer skipped by an integrator rule.
pub static X_OFFERGATE_SKIPPED: HeaderName = HeaderName::from_static("x-offergate-skipped");

/// Threads tracked in memory before the ones with no offer left in the window
/// are dropped.
const MAX_THREADS: usize = 100_000;

/// When offers were shown in a thread, oldest first, in milliseconds after
/// the layer was made. Held inline up to the default cap of 3: no allocation
/// per thread, and 48 bytes a thread in the map (a `VecDeque<Instant>` took
/// 32 inline plus a 64-byte allocation).
type Offers = SmallVec<[u64; 3]>;

/// Offers per thread. A thread id is already a hash: foldhash is cheap on it.
type Threads = HashMap<ThreadId, Offers, foldhash::fast::RandomState>;

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
    window: Duration,
    /// What the offers' times count from.
    born: Instant,
    local: Arc<Mutex<Threads>>,
    shared: Option<Redis>,
    skipped: IntCounterVec,
}

impl ThreadCapLayer {
    pub fn new(
        config: &Config,
        metrics: &Metrics,
        shared: Option<Redis>,
    ) -> Result<ThreadCapLayer, String> {
        let rules = &config.encore.integrator;
        Ok(ThreadCapLayer(Arc::new(Shared {
            cap: rules.thread_cap,
            window: rules.thread_window,
            born: clock::now(),
            local: Arc::default(),
            shared,
            skipped: metrics.counter_vec(
                "offergate_skipped_total",
                "Calls answered without an offer by an integrator rule, by route and reason (thread_cap).",
                &["route", "reason"],
            )?,
        })))
    }
}

impl Shared {
    /// A local slot for `thread`, or `None` at the cap.
    fn reserve_local(&self, thread: ThreadId) -> Option<Held> {
        let mut threads = self.local.lock().unwrap_or_else(|p| p.into_inner());
        let now = millis_since(self.born);
        let window = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX);
        let expired = |at: &u64| now.saturating_sub(*at) >= window;
        if threads.len() >= MAX_THREADS {
            evict(&mut threads, expired);
        }
        let offers = threads.entry(thread).or_default();
        let live = offers
            .iter()
            .position(|at| !expired(at))
            .unwrap_or(offers.len());
        offers.drain(..live);
        if offers.len() >= self.cap as usize {
            return None;
        }
        offers.push(now);
        Some(Held(Some(Slot::Local {
            threads: self.local.clone(),
            thread,
            at: now,
        })))
    }

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

/// Makes room: drops the threads whose offers all left the window, and if
/// that is not enough, the half whose newest offer is oldest (their counts
/// start again). Run once per `MAX_THREADS / 2` new threads at most.
fn evict(threads: &mut Threads, expired: impl Fn(&u64) -> bool) {
    threads.retain(|_, offers| !offers.iter().all(&expired));
    if threads.len() < MAX_THREADS / 2 {
        return;
    }
    let mut newest: Vec<u64> = threads.values().filter_map(|o| o.last().copied()).collect();
    let middle = newest.len() / 2;
    let (_, cut, _) = newest.select_nth_unstable(middle);
    let cut = *cut;
    threads.retain(|_, offers| offers.last().is_some_and(|at| *at > cut));
}

/// Milliseconds from `born` to now.
fn millis_since(born: Instant) -> u64 {
    u64::try_from(clock::now().duration_since(born).as_millis()).unwrap_or(u64::MAX)
}

/// A slot taken for one call; given back when dropped unless kept (`None`).
struct Held(Option<Slot>);

enum Slot {
    Local {
        threads: Arc<Mutex<Threads>>,
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
            }) => {
                let mut threads = threads.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(offers) = threads.get_mut(&thread) {
                    if let Some(i) = offers.iter().position(|t| *t == at) {
                        offers.remove(i);
                    }
                }
            }
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
            let mut held = None;
            if let Some(redis) = &this.shared {
                let key = redis.key(Route::EncoreOffers, "thread", &hex(&thread));
                let member = uuid::Uuid::new_v4().simple().to_string();
                // Boxed: a Redis wait's state stays out of the in-memory path.
                match Box::pin(redis.thread(&key, this.window, this.cap, &member, false)).await {
                    Ok(true) => {
                        held = Some(Held(Some(Slot::Shared {
                            redis: redis.clone(),
                            key,
                            member,
                            window: this.window,
                            cap: this.cap,
                        })))
                    }
                    Ok(false) => return Ok(this.skip()),
                    Err(_) if redis.on_error() == OnStateError::FailClosed => {
                        return Err(GatewayError::StateUnavailable)
                    }
                    // fail_open: this replica's own counts decide.
                    Err(_) => {}
                }
            }
            let mut held = match held {
                Some(h) => h,
                None => match this.reserve_local(thread) {
                    Some(h) => h,
                    None => return Ok(this.skip()),
                },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_keeps_the_most_recent_half() {
        let mut threads = Threads::default();
        for n in 0..MAX_THREADS as u64 {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&n.to_le_bytes());
            threads.insert(id, Offers::from_slice(&[n]));
        }
        evict(&mut threads, |_| false);
        assert_eq!(threads.len(), MAX_THREADS / 2 - 1);
        let mut newest = [0u8; 16];
        newest[..8].copy_from_slice(&(MAX_THREADS as u64 - 1).to_le_bytes());
        assert!(threads.contains_key(&newest));
    }
}
