//! The Redis handle: one connection (`connect.rs`: a single server or a
//! cluster), a timeout on every call, the scripts, the state metrics and a
//! degraded flag for `/readyz`.
//!
//! Why redis-rs and not fred: its multiplexed connection, cluster and
//! Sentinel clients and `Script`'s hash are what offergate needs, it is the
//! most used Rust client, and it shares tokio and rustls with the rest of
//! the tree (fred brings its own runtime layer and pool for features
//! offergate does not use).

use crate::call::problem::Problem;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus::{Histogram, IntCounterVec};
use redis::{Script, Value};

use super::connect::{Conn, Connector};
use super::health::{connect_until_connected, Health};
use super::scripts;
use crate::call::clock;
use crate::call::route::Route;
use crate::config::{OnStateError, StateConfig};
use crate::metrics::Metrics;

/// Why a Redis call did not give an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StateError {
    #[error("not connected to Redis yet")]
    NotConnected,
    #[error("Redis did not answer within the state timeout")]
    Timeout,
    #[error("Redis: {0}")]
    Redis(String),
    #[error("Redis answered something offergate did not expect")]
    Unexpected,
    #[error("Redis failed several calls in a row; not asked until it answers a PING")]
    Degraded,
}

impl StateError {
    /// Whether the call may have been carried out in Redis all the same: it
    /// was sent, and no answer says what became of it. Not sent: not
    /// connected, or Redis declared down.
    pub fn may_have_applied(&self) -> bool {
        !matches!(self, StateError::NotConnected | StateError::Degraded)
    }
}

/// Consecutive failures after which Redis is declared down and calls stop
/// going to it (each would cost up to the timeout) until the health PING
/// sees it answer again. A reply that is late is not one: a slow reply (a
/// busy CPU, a stalled Redis) is no evidence that Redis is gone.
const FAIL_FAST_AFTER: u32 = 3;

/// A shared handle; clones share the connection.
#[derive(Clone)]
pub struct Redis {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    /// The connection and whether Redis answers, with the health watch.
    health: Arc<Health>,
    prefix: String,
    timeout: Duration,
    /// Finished calls other replicas wait for, heard (`notices.rs`).
    notices: super::notices::Notices,
    /// Calls sent in the background (a finish, an offer's link kept) not
    /// yet answered, and a wake for [`Redis::settle`] when none is left.
    background: AtomicU32,
    settled: tokio::sync::Notify,
    errors: IntCounterVec,
    /// Per op: claim, finish, limit, pause, thread, conversation, admit.
    latency: [Histogram; 7],
    /// Repeatable calls sent once more after a dropped connection, per op.
    retried: [prometheus::IntCounter; 7],
    scripts: [Script; 7],
    /// One script may take keys of any slot: one server, or Sentinel's
    /// master (not a cluster), so a call's admission is one script.
    pub(super) one_keyspace: bool,
}

/// Each op's script, by the same index.
const CODE: [&str; 7] = [
    scripts::CLAIM,
    scripts::FINISH,
    scripts::LIMIT,
    scripts::PAUSE,
    scripts::THREAD,
    scripts::CONVERSATION,
    scripts::ADMIT,
];

const OPS: [&str; 7] = [
    "claim",
    "finish",
    "limit",
    "pause",
    "thread",
    "conversation",
    "admit",
];

/// The shared state's families: each call's latency, failures and repeats
/// by operation.
pub struct StateMetrics;

impl StateMetrics {
    /// Registers them with every operation's series at 0 for `backend`; the
    /// memory backend registers them too (nothing fails there), so the
    /// dashboard and the alerts read the same names on either backend.
    pub fn register(
        metrics: &Metrics,
        backend: &str,
    ) -> Result<(prometheus::HistogramVec, IntCounterVec, IntCounterVec), Problem> {
        let latency = metrics.histogram_vec(
            "offergate_state_latency_seconds",
            "Duration of each call to the shared state backend, by operation.",
            &["op"],
        )?;
        let errors = metrics.counter_vec(
            "offergate_state_errors_total",
            "Calls to the shared state backend that failed or timed out, by backend and operation.",
            &["backend", "op"],
        )?;
        let retried = metrics.counter_vec(
            "offergate_state_retries_total",
            "Calls to the shared state backend sent once more after a dropped connection (only those that may run twice), by operation.",
            &["op"],
        )?;
        Metrics::zeroed(&latency, &[&OPS]);
        Metrics::zeroed(&errors, &[&[backend], &OPS]);
        Metrics::zeroed(&retried, &[&OPS]);
        Ok((latency, errors, retried))
    }
}

/// How a script is sent.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Sending {
    Once,
    /// Sent once more on the new connection after a dropped one.
    Repeatable,
    /// [`Sending::Repeatable`], and sent even while Redis is declared down
    /// (a finish queued behind a late claim on the same connection).
    EvenWhileDown,
}
impl Redis {
    /// The handle for `[state]`; it connects in the background and keeps
    /// trying, so a Redis that is down at start does not stop offergate.
    pub fn connect(config: &StateConfig, metrics: &Metrics) -> Result<Redis, Problem> {
        // One connector for the connection and the pub/sub listener: the
        // certificate files are read once.
        let connector = Arc::new(Connector::new(config)?);
        let (latency, errors, retried) = StateMetrics::register(metrics, "redis")?;
        let health = Arc::new(Health {
            conn: RwLock::new(None),
            on_error: config.on_error,
            degraded: AtomicBool::new(true),
            reported_down: AtomicBool::new(false),
            at: config.describe(),
            failures: AtomicU32::new(0),
            check_now: Arc::new(tokio::sync::Notify::new()),
        });
        let watched = Arc::downgrade(&health);
        let inner = Arc::new(Inner {
            health,
            prefix: config.key_prefix.clone(),
            timeout: config.timeout,
            notices: super::notices::Notices::start(connector.clone()),
            background: AtomicU32::new(0),
            settled: tokio::sync::Notify::new(),
            errors,
            latency: OPS.map(|op| latency.with_label_values(&[op])),
            retried: OPS.map(|op| retried.with_label_values(&[op])),
            scripts: CODE.map(Script::new),
            one_keyspace: config.topology != crate::config::Topology::Cluster,
        });
        tokio::spawn(connect_until_connected(connector, watched, config.timeout));
        Ok(Redis { inner })
    }

    /// `{prefix}:{route}:{kind}:{<id>}`: the braces are a Redis Cluster hash
    /// tag, so the keys one script takes for one id (an idempotency key's
    /// answer and lock, a thread's offers and conversation) share a slot.
    pub fn key(&self, route: Route, kind: &str, id: &str) -> String {
        // Pushed, not formatted: two or more keys a call, and `format!`'s
        // machinery cost more than the pushes (callgrind).
        let parts = [
            &self.inner.prefix,
            ":",
            route.as_str(),
            ":",
            kind,
            ":{",
            id,
            "}",
        ];
        concat(&parts)
    }

    /// `{prefix}:{<route>}:{kind}:{id}`: every such key of a route in one
    /// slot, for the limits' script, which reads a caller's bucket and the
    /// partner's pause together.
    pub fn route_key(&self, route: Route, kind: &str, id: &str) -> String {
        let parts = [
            &self.inner.prefix,
            ":{",
            route.as_str(),
            "}:",
            kind,
            ":",
            id,
        ];
        concat(&parts)
    }

    pub fn on_error(&self) -> OnStateError {
        self.inner.health.on_error
    }

    /// Whether the last call failed (or none has been made since the start).
    /// Runs `call` in the background (the caller is not to wait for it),
    /// counted, so a gateway that stops can let it land first.
    pub fn in_background(&self, call: impl std::future::Future<Output = ()> + Send + 'static) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.inner.background.fetch_add(1, Ordering::AcqRel);
        let inner = self.inner.clone();
        runtime.spawn(async move {
            call.await;
            if inner.background.fetch_sub(1, Ordering::AcqRel) == 1 {
                inner.settled.notify_waiters();
            }
        });
    }

    /// Waits, at most `limit`, for the calls sent in the background to land
    /// (a stopping gateway: a finish cut off would leave its key locked).
    pub async fn settle(&self, limit: Duration) {
        let inner = &self.inner;
        let _ = tokio::time::timeout(limit, async {
            loop {
                let settled = inner.settled.notified();
                if inner.background.load(Ordering::Acquire) == 0 {
                    return;
                }
                settled.await;
            }
        })
        .await;
    }

    pub fn degraded(&self) -> bool {
        self.inner.health.degraded.load(Ordering::Relaxed)
    }

    /// Runs script `op` with `keys` and `args`, within the timeout, counted.
    pub(super) async fn run(
        &self,
        op: usize,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<Value, StateError> {
        self.run_once_more(op, keys, args, Sending::Once).await
    }

    /// [`Redis::run`] for a script that may run twice with the effect of
    /// once (a claim by the same owner, a finish, a read, a pause): after a
    /// dropped connection (the manager reconnects), it is sent once more.
    pub(super) async fn run_idempotent(
        &self,
        op: usize,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<Value, StateError> {
        self.run_once_more(op, keys, args, Sending::Repeatable)
            .await
    }

    /// [`Redis::run`], sent as `how` says.
    pub(super) async fn run_once_more(
        &self,
        op: usize,
        keys: &[&str],
        args: &[&[u8]],
        how: Sending,
    ) -> Result<Value, StateError> {
        let inner = &self.inner;
        let conn = inner
            .health
            .conn
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let failing =
            inner.health.degraded.load(Ordering::Relaxed) && how != Sending::EvenWhileDown;
        let result = match conn {
            None => Err(StateError::NotConnected),
            Some(_) if failing => Err(StateError::Degraded),
            Some(mut conn) => {
                // EVALSHA as one command, its arguments packed in one buffer
                // (redis-rs's `ScriptInvocation` keeps a vector per key and
                // argument, then copies them into one: a dozen allocations
                // a call more, callgrind); NOSCRIPT loads it, as `Script` does.
                let mut call = redis::cmd("EVALSHA");
                call.arg(inner.scripts[op].get_hash()).arg(keys.len());
                for k in keys {
                    call.arg(*k);
                }
                for a in args {
                    call.arg(*a);
                }
                let started = clock::now();
                let deadline = started + inner.timeout;
                let mut answer =
                    tokio::time::timeout_at(deadline, evalsha(&call, CODE[op], &mut conn)).await;
                if how != Sending::Once
                    && matches!(&answer, Ok(Err(e)) if e.is_connection_dropped() || e.is_io_error())
                {
                    inner.retried[op].inc();
                    answer = tokio::time::timeout_at(deadline, evalsha(&call, CODE[op], &mut conn))
                        .await;
                }
                inner.latency[op].observe(started.elapsed().as_secs_f64());
                match answer {
                    Err(_) => Err(StateError::Timeout),
                    Ok(Err(e)) if e.is_timeout() => Err(StateError::Timeout),
                    Ok(Err(e)) => Err(StateError::Redis(e.to_string())),
                    Ok(Ok(v)) => Ok(v),
                }
            }
        };
        match &result {
            Ok(_) => {
                inner.health.failures.store(0, Ordering::Relaxed);
                inner.health.degraded.store(false, Ordering::Relaxed);
            }
            // Late: no evidence either way, so the health check asks now.
            Err(StateError::Timeout) => inner.health.check_now.notify_one(),
            Err(StateError::Degraded) => {}
            Err(_) => {
                let failed = inner.health.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if failed >= FAIL_FAST_AFTER {
                    inner.health.degraded.store(true, Ordering::Relaxed);
                }
            }
        }
        if let Err(e) = &result {
            inner.errors.with_label_values(&["redis", OPS[op]]).inc();
            tracing::debug!(op = OPS[op], error = %e, "state backend call failed");
        }
        result
    }

    /// A notice when the call that holds `answer_key`'s lock on another
    /// replica finishes (`None`: none can be had now; poll).
    pub async fn listen(&self, answer_key: &str) -> Option<super::notices::Notice> {
        self.inner
            .notices
            .listen(answer_key, self.inner.timeout)
            .await
    }
}

/// `parts` in one string, allocated once.
fn concat(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        out.push_str(p);
    }
    out
}

/// `call` (an EVALSHA), and when Redis does not know the script yet (a
/// restart, a new node), its `code` loaded and the call sent again.
async fn evalsha(call: &redis::Cmd, code: &str, conn: &mut Conn) -> redis::RedisResult<Value> {
    match call.query_async::<Value>(conn).await {
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
            redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(code)
                .query_async::<Value>(conn)
                .await?;
            call.query_async(conn).await
        }
        answer => answer,
    }
}
