//! How offergate reaches its Redis, per `[state] topology`: one server
//! through redis-rs's `ConnectionManager` (one multiplexed connection that
//! reconnects itself); a Redis Cluster through redis-rs's cluster client
//! (it learns the slots, follows `MOVED` and `ASK`, and reconnects to the
//! new master after a failover); or the master that redis-rs's Sentinel
//! client names, asked again every second, so a failover is followed within
//! a second of the sentinels' promotion. All are one [`Conn`], so every
//! script runs the same way on each. TLS (`rediss://`, `[state.tls]`) and
//! the ACL user apply to all.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::{
    Cmd, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisFuture, TlsCertificates, Value,
};

use super::redis::Inner;
use crate::call::problem::Problem;
use crate::config::{files, OnStateError, StateConfig, StateTls, Topology};

/// A connection to the state backend, of either kind.
#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// What makes a [`Conn`], built from `[state]` once (files read, URLs
/// checked), used again on every reconnect.
pub(super) enum Connector {
    Single(redis::Client),
    /// The cluster, and one of its seed nodes alone (pub/sub: a message
    /// published on any node reaches every node's subscribers).
    Cluster(redis::cluster::ClusterClient, Box<redis::Client>),
    /// The sentinels, asked for the master on every (re)connect.
    Sentinel(tokio::sync::Mutex<redis::sentinel::SentinelClient>),
}

impl Connector {
    pub(super) fn new(config: &StateConfig) -> Result<Connector, Problem> {
        let certificates = config.tls.as_ref().map(certificates).transpose()?;
        let tls = config.tls.is_some()
            || config
                .redis_url
                .as_deref()
                .is_some_and(|u| u.starts_with("rediss://"));
        if tls {
            // rustls needs a process-wide provider; offergate's is ring.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let password = config
            .redis_password
            .as_ref()
            .map(|p| p.expose().to_string());
        match config.topology {
            Topology::Single => {
                let url = config
                    .redis_url
                    .as_deref()
                    .ok_or("state.redis_url is required with backend = \"redis\"")?;
                let info = node(&as_tls(url, tls), config)
                    .map_err(|e| Problem(format!("state.redis_url: {e}")))?;
                let client = match certificates {
                    Some(certs) => redis::Client::build_with_tls(info, certs),
                    None => redis::Client::open(info),
                }
                .map_err(|e| Problem(format!("state.redis_url: {e}")))?;
                Ok(Connector::Single(client))
            }
            Topology::Cluster => {
                let scheme = if tls { "rediss" } else { "redis" };
                let mut seeds: Vec<String> = config
                    .redis_nodes
                    .iter()
                    .map(|n| format!("{scheme}://{n}"))
                    .collect();
                if let Some(url) = &config.redis_url {
                    seeds.push(as_tls(url, tls));
                }
                let mut builder = ClusterClientBuilder::new(seeds.clone())
                    .connection_timeout(config.timeout.max(Duration::from_millis(250)))
                    .response_timeout(config.timeout)
                    .retries(2)
                    .tcp_settings(tcp());
                // The seed for pub/sub, with the same user and certificates.
                let first = seeds
                    .first()
                    .ok_or("state.redis_nodes: at least one seed node is required")?;
                let info =
                    node(first, config).map_err(|e| Problem(format!("state.redis_nodes: {e}")))?;
                let seed = match certificates.clone() {
                    Some(certs) => redis::Client::build_with_tls(info, certs),
                    None => redis::Client::open(info),
                }
                .map_err(|e| Problem(format!("state.redis_nodes: {e}")))?;
                if let Some(p) = password {
                    builder = builder.password(p);
                }
                if let Some(u) = &config.redis_username {
                    builder = builder.username(u.clone());
                }
                if let Some(certs) = certificates {
                    builder = builder.certs(certs);
                }
                let client = builder
                    .build()
                    .map_err(|e| Problem(format!("state.redis_nodes: {e}")))?;
                Ok(Connector::Cluster(client, Box::new(seed)))
            }
            Topology::Sentinel => {
                let master = config
                    .sentinel_master_name
                    .clone()
                    .ok_or("state.sentinel_master_name is required with topology = \"sentinel\"")?;
                let mut sentinels = Vec::new();
                for node in &config.redis_nodes {
                    let (host, port) = node
                        .rsplit_once(':')
                        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
                        .ok_or_else(|| {
                            Problem(format!("state.redis_nodes: `{node}` is not host:port"))
                        })?;
                    sentinels.push(redis::ConnectionAddr::Tcp(host, port));
                }
                let mut builder = redis::sentinel::SentinelClientBuilder::new(
                    sentinels,
                    master,
                    redis::sentinel::SentinelServerType::Master,
                )
                .map_err(|e| Problem(format!("state.redis_nodes: {e}")))?
                .set_client_to_redis_tcp_settings(tcp())
                .set_client_to_sentinel_tcp_settings(tcp());
                if tls {
                    builder = builder.set_client_to_redis_tls_mode(redis::TlsMode::Secure);
                }
                if let Some(certs) = certificates {
                    builder = builder.set_client_to_redis_certificates(certs);
                }
                if let Some(p) = password {
                    builder = builder.set_client_to_redis_password(p);
                }
                if let Some(u) = &config.redis_username {
                    builder = builder.set_client_to_redis_username(u);
                }
                let client = builder
                    .build()
                    .map_err(|e| Problem(format!("state.redis_nodes: {e}")))?;
                Ok(Connector::Sentinel(tokio::sync::Mutex::new(client)))
            }
        }
    }

    /// A client for pub/sub: the server, one seed of a cluster, or the
    /// master the sentinels name now.
    pub(super) async fn pubsub_client(&self) -> Option<redis::RedisResult<redis::Client>> {
        match self {
            Connector::Single(client) => Some(Ok(client.clone())),
            Connector::Cluster(_, seed) => Some(Ok((**seed).clone())),
            Connector::Sentinel(_) => self.master().await,
        }
    }

    /// The master the sentinels name now, as a client (Sentinel only).
    async fn master(&self) -> Option<redis::RedisResult<redis::Client>> {
        match self {
            Connector::Sentinel(sentinels) => Some(sentinels.lock().await.async_get_client().await),
            _ => None,
        }
    }

    /// A connection, and (Sentinel) the master's address it goes to.
    async fn connect(&self, timeout: Duration) -> redis::RedisResult<(Conn, Option<String>)> {
        let managed = |client: redis::Client| async move {
            // The reply's own limit is each call's (`Redis::run`), whose
            // late reply is told apart from a failure; the connection's is
            // only a backstop, so it never turns a late reply into an error.
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout.max(Duration::from_millis(250))))
                .set_response_timeout(Some(timeout.max(Duration::from_secs(2))))
                .set_number_of_retries(6)
                .set_max_delay(Duration::from_secs(2));
            ConnectionManager::new_with_config(client, config)
                .await
                .map(Conn::Single)
        };
        match self {
            Connector::Single(client) => Ok((managed(client.clone()).await?, None)),
            Connector::Cluster(client, _) => Ok((
                client.get_async_connection().await.map(Conn::Cluster)?,
                None,
            )),
            Connector::Sentinel(_) => {
                let client = self.master().await.unwrap_or_else(|| {
                    Err((redis::ErrorKind::Client, "not a sentinel connector").into())
                })?;
                let at = client.get_connection_info().addr().to_string();
                Ok((managed(client).await?, Some(at)))
            }
        }
    }
}

/// How every socket to Redis is set: `TCP_NODELAY`, so a script's request
/// is sent at once rather than held for the previous one's ACK (Nagle).
fn tcp() -> TcpSettings {
    TcpSettings::default().set_nodelay(true)
}

/// One server's address from `url`, with `[state]`'s user and socket
/// settings.
fn node(url: &str, config: &StateConfig) -> redis::RedisResult<ConnectionInfo> {
    let info = url.into_connection_info()?;
    let mut redis = info.redis_settings().clone();
    if let Some(password) = &config.redis_password {
        redis = redis.set_password(password.expose());
    }
    if let Some(user) = &config.redis_username {
        redis = redis.set_username(user);
    }
    Ok(info.set_redis_settings(redis).set_tcp_settings(tcp()))
}

/// `url` with the `rediss` scheme when TLS is asked for by `[state.tls]`.
fn as_tls(url: &str, tls: bool) -> String {
    match url.strip_prefix("redis://") {
        Some(rest) if tls => format!("rediss://{rest}"),
        _ => url.to_string(),
    }
}

/// The CA and client certificate of `[state.tls]`, read now.
fn certificates(tls: &StateTls) -> Result<TlsCertificates, Problem> {
    let read = |key: &str, path: &std::path::Path| {
        files::read_text(path, files::MAX_CONFIG_BYTES)
            .map(String::into_bytes)
            .map_err(|e| Problem(format!("state.tls.{key}: {e}")))
    };
    let root_cert = tls
        .ca_file
        .as_deref()
        .map(|p| read("ca_file", p))
        .transpose()?;
    let client_tls = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read("cert_file", cert)?,
            client_key: read("key_file", key)?,
        }),
        _ => None,
    };
    Ok(TlsCertificates {
        client_tls,
        root_cert,
    })
}

/// Connects, retrying with backoff (100 ms doubling to 5 s) until it works or
/// the handle is gone; from then on the connection reconnects itself, and a
/// PING a second keeps the degraded flag (`/readyz`) true to Redis even when
/// no call comes.
pub(super) async fn connect_until_connected(
    connector: Arc<Connector>,
    inner: Weak<Inner>,
    timeout: Duration,
) {
    let mut wait = Duration::from_millis(100);
    let mut first = true;
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
                if let Some(inner) = inner.upgrade() {
                    report_health(&inner, false, &e.to_string());
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

/// Logs the state backend's health when it changes, and only then: a
/// warning when it stops answering (at start too), a line when it is back.
fn report_health(inner: &Inner, healthy: bool, why: &str) {
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
    inner: Weak<Inner>,
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
            let at = now.get_connection_info().addr().to_string();
            if master.as_deref() != Some(at.as_str()) {
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
