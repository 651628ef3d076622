//! The state backend's health, watched from the first connection on:
//! connecting until it works, a PING a second (and at once after a late
//! reply), following a new Sentinel master, the eviction policy read once,
//! and a log line when Redis stops or starts answering.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use super::connect::{Conn, Connector};
use crate::config::OnStateError;

/// What the calls and the health watch share: the connection, and whether
/// Redis answers. The watch holds it weakly: it ends with the handle.
pub(super) struct Health {
    pub(super) conn: RwLock<Option<Conn>>,
    pub(super) on_error: OnStateError,
    /// Declared down: on evidence (failures in a row, or a PING unanswered).
    pub(super) degraded: AtomicBool,
    /// What the log last said of its health: down or not.
    pub(super) reported_down: AtomicBool,
    /// Where it is, for the log: the topology and its nodes, no secret.
    pub(super) at: String,
    /// Calls failed in a row.
    pub(super) failures: AtomicU32,
    /// Wakes the health check at once: a reply was late, and whether Redis
    /// is down is asked now (a PING), not guessed from the late reply.
    pub(super) check_now: Arc<tokio::sync::Notify>,
}

/// Connects, retrying with backoff (100 ms doubling to 5 s) until it works or
/// the handle is gone; from then on the connection reconnects itself, and a
/// PING a second keeps the degraded flag (`/readyz`) true to Redis even when
/// no call comes.
pub(super) async fn connect_until_connected(
    connector: Arc<Connector>,
    inner: Weak<Health>,
    timeout: Duration,
) {
    let mut wait = Duration::from_millis(100);
    let mut first = true;
    let mut told = false;
    loop {
        if inner.strong_count() == 0 {
            return;
        }
        let attempt = connector.connect(timeout);
        tokio::pin!(attempt);
        // The first attempt may take seconds (the client's own retries): an
        // operator hears within one that Redis is not there.
        let result = if first {
            first = false;
            tokio::select! {
                r = &mut attempt => r,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    if let Some(inner) = inner.upgrade() {
                        report_health(&inner, false, "not connected after 1 s");
                    }
                    attempt.await
                }
            }
        } else {
            attempt.await
        };
        match result {
            Ok((conn, master)) => {
                if let Some(inner) = inner.upgrade() {
                    *inner.conn.write().unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
                    inner.degraded.store(false, Ordering::Relaxed);
                    // The calls that failed while not connected do not keep
                    // the new connection unused until the next PING.
                    inner.failures.store(0, Ordering::Relaxed);
                    tracing::info!(
                        at = %inner.at,
                        master = master.as_deref().unwrap_or("-"),
                        "connected to the state backend (redis)"
                    );
                    report_health(&inner, true, "connected");
                }
                // Asked beside the health watch, not before it: a Redis slow
                // to answer it must not hold the first PING back.
                tokio::spawn(check_eviction_policy(conn.clone()));
                return watch_health(&connector, conn, master, inner, timeout).await;
            }
            Err(e) => {
                let why = e.to_string();
                if let Some(inner) = inner.upgrade() {
                    report_health(&inner, false, &why);
                }
                // A certificate refused is no outage: it will not pass by
                // itself, so the operator is told what to set, once.
                if let (Some(fix), false) = (certificate_fix(&why), told) {
                    told = true;
                    tracing::error!(error = %why, "{fix}");
                }
                tracing::debug!(error = %e, retry_in_ms = wait.as_millis() as u64, "cannot reach the state backend (redis)");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Reads Redis's `maxmemory-policy` (`CONFIG GET`, else `INFO memory`;
/// an ACL may refuse both) and warns when Redis may evict what offergate
/// keeps: under `allkeys-*` anything, opt-outs included; under `volatile-*`
/// the answers and locks idempotency keeps (opt-outs have no expiry, so
/// it cannot take them). `noeviction` is what offergate needs.
async fn check_eviction_policy(mut conn: Conn) {
    let conn = &mut conn;
    let policy = match redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async::<Vec<String>>(conn)
        .await
    {
        Ok(pair) => pair.get(1).cloned(),
        Err(_) => redis::cmd("INFO")
            .arg("memory")
            .query_async::<String>(conn)
            .await
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("maxmemory_policy:"))
                    .map(|p| p.trim().to_string())
            }),
    };
    match policy.as_deref() {
        Some("noeviction") => {}
        Some(p) if p.starts_with("allkeys-") => tracing::warn!(
            maxmemory_policy = p,
            "Redis may evict any key when it is full, opt-outs included: set maxmemory-policy noeviction"
        ),
        Some(p) => tracing::warn!(
            maxmemory_policy = p,
            "Redis may evict stored answers and in-flight locks when it is full (a duplicate could reach the partner; opt-outs are safe): set maxmemory-policy noeviction"
        ),
        None => tracing::info!(
            "could not read Redis's maxmemory-policy (CONFIG and INFO refused): offergate needs noeviction"
        ),
    }
}

/// What to set when Redis's certificate is refused, from the TLS error.
fn certificate_fix(why: &str) -> Option<&'static str> {
    if why.contains("not valid for name") || why.contains("NotValidForName") {
        Some("the Redis server's certificate does not name the host offergate connects to: set [state.tls] server_name to a name it holds (single, sentinel), or connect by that name")
    } else if why.contains("UnknownIssuer") {
        Some("the Redis server's certificate is signed by a CA offergate does not trust: set [state.tls] ca_file to that CA")
    } else {
        None
    }
}

/// Logs the state backend's health when it changes, and only then: a
/// warning when it stops answering (at start too), a line when it is back.
fn report_health(inner: &Health, healthy: bool, why: &str) {
    let was_down = inner.reported_down.swap(!healthy, Ordering::Relaxed);
    if !was_down && !healthy {
        let meanwhile = match inner.on_error {
            OnStateError::FailOpen => "serving without it (fail_open): no cross-replica de-duplication or fleet-wide limits",
            OnStateError::FailClosed => "calls get the fallback and /readyz answers 503 (fail_closed)",
        };
        tracing::warn!(
            at = %inner.at,
            why,
            "the state backend (redis) does not answer; {meanwhile}"
        );
    } else if was_down && healthy {
        tracing::info!(at = %inner.at, "the state backend (redis) answers again");
    }
}

/// PINGs once a second for as long as the handle lives; with Sentinel,
/// also asks who the master is, and moves to a new one.
async fn watch_health(
    connector: &Connector,
    mut conn: Conn,
    mut master: Option<String>,
    inner: Weak<Health>,
    timeout: Duration,
) {
    let Some(check_now) = inner.upgrade().map(|i| i.check_now.clone()) else {
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = check_now.notified() => {}
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if let Some(Ok(now)) = connector.master().await {
            if master.as_deref() != Some(now.at.as_str()) {
                match connector.connect(timeout).await {
                    Ok((new, moved_to)) => {
                        tracing::warn!(
                            from = master.as_deref().unwrap_or("-"),
                            to = moved_to.as_deref().unwrap_or("-"),
                            "the sentinels name a new master; following it"
                        );
                        *inner.conn.write().unwrap_or_else(|p| p.into_inner()) = Some(new.clone());
                        inner.failures.store(0, Ordering::Relaxed);
                        conn = new;
                        master = moved_to;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot reach the new master yet"),
                }
            }
        }
        // Given longer than a call's reply (at least 500 ms): a PING that
        // fails is the evidence that Redis is down, not one slow reply.
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        let patience = timeout.max(Duration::from_millis(500));
        let healthy = matches!(tokio::time::timeout(patience, ping).await, Ok(Ok(_)));
        inner.degraded.store(!healthy, Ordering::Relaxed);
        if healthy {
            inner.failures.store(0, Ordering::Relaxed);
        }
        report_health(&inner, healthy, "no answer to PING");
    }
}

#[cfg(test)]
mod tests {
    use super::certificate_fix;

    #[test]
    fn a_refused_certificate_says_what_to_set() {
        // As rustls words them, through redis-rs.
        let named = "invalid peer certificate: certificate not valid for name \"127.0.0.1\"; certificate is only valid for DnsName(\"redis.internal\")";
        assert!(certificate_fix(named).is_some_and(|f| f.contains("server_name")));
        let issuer = "invalid peer certificate: UnknownIssuer";
        assert!(certificate_fix(issuer).is_some_and(|f| f.contains("ca_file")));
        assert_eq!(certificate_fix("Connection refused (os error 111)"), None);
    }
}
