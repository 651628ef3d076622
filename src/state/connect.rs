//! How offergate reaches its Redis, per `[state] topology`: one server
//! through one multiplexed connection made again when it breaks
//! (`reconnecting.rs`); a Redis Cluster through redis-rs's cluster client
//! (it learns the slots, follows `MOVED` and `ASK`, and reconnects to the
//! new master after a failover); or the master that redis-rs's Sentinel
//! client names, asked again every second, so a failover is followed within
//! a second of the sentinels' promotion. All are one [`Conn`], so every
//! script runs the same way on each. TLS (`rediss://`, `[state.tls]`) and
//! the ACL user apply to all; `[state.tls] server_name` to one server and
//! the Sentinel master.

use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline,
    RedisFuture, TlsCertificates, Value,
};

use super::reconnecting::Reconnecting;
use super::tls::{as_tls, certificates, named, server_name, ServerName};
use crate::call::problem::Problem;
use crate::config::{StateConfig, Topology};

/// A connection to the state backend, of either kind.
#[derive(Clone)]
pub(super) enum Conn {
    Single(Reconnecting),
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
    /// The server, and with `[state.tls] server_name` where that name is.
    Single(redis::Client, Option<ServerName>),
    /// The cluster, and one of its seed nodes alone (pub/sub: a message
    /// published on any node reaches every node's subscribers).
    Cluster(redis::cluster::ClusterClient, Box<redis::Client>),
    /// The sentinels, asked for the master on every (re)connect, and with
    /// `[state.tls] server_name` how that master is reached.
    Sentinel(
        tokio::sync::Mutex<redis::sentinel::SentinelClient>,
        Option<Box<NamedMaster>>,
    ),
}

/// The master the sentinels name, now.
pub(super) struct Master {
    pub client: redis::Client,
    /// With `server_name`: where that name is.
    resolver: Option<ServerName>,
    /// Its address, as the sentinels give it.
    pub at: String,
}

/// A Sentinel master whose certificate holds `[state.tls] server_name`:
/// found here rather than by redis-rs's Sentinel client, which checks the
/// master's role over a connection verified against its address.
pub(super) struct NamedMaster {
    server_name: String,
    /// `sentinel_master_name`.
    service: String,
    /// The user, password and socket settings; the address is set per master.
    info: ConnectionInfo,
    certificates: Option<TlsCertificates>,
}

impl NamedMaster {
    async fn find(
        &self,
        sentinels: &tokio::sync::Mutex<redis::sentinel::SentinelClient>,
    ) -> redis::RedisResult<Master> {
        let sentinel = sentinels.lock().await.async_get_sentinel_client().await?;
        let (ip, port): (String, u16) = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&self.service)
            .query_async(&mut sentinel.get_multiplexed_async_connection().await?)
            .await?;
        let addr = ConnectionAddr::TcpTls {
            host: ip.clone(),
            port,
            insecure: false,
            tls_params: None,
        };
        let (info, resolver) = named(self.info.clone().set_addr(addr), &self.server_name);
        let client = match &self.certificates {
            Some(certs) => redis::Client::build_with_tls(info, certs.clone())?,
            None => redis::Client::open(info)?,
        };
        // A sentinel may not know of a failover yet: the master says so.
        let mut master = client
            .get_multiplexed_async_connection_with_config(&config(
                Duration::from_millis(500),
                resolver.clone(),
            ))
            .await?;
        let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut master).await?;
        if !matches!(role.first(), Some(Value::BulkString(r)) if r == b"master") {
            return Err((
                redis::ErrorKind::Client,
                "the server the sentinels name is not a master (yet)",
            )
                .into());
        }
        Ok(Master {
            client,
            resolver,
            at: format!("{ip}:{port}"),
        })
    }
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
                let (info, server_name) = match server_name(config) {
                    Some(name) => named(info, name),
                    None => (info, None),
                };
                let client = match certificates {
                    Some(certs) => redis::Client::build_with_tls(info, certs),
                    None => redis::Client::open(info),
                }
                .map_err(|e| Problem(format!("state.redis_url: {e}")))?;
                Ok(Connector::Single(client, server_name))
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
                let named = match server_name(config) {
                    Some(name) => Some(Box::new(NamedMaster {
                        server_name: name.to_string(),
                        service: master.clone(),
                        info: node(&format!("rediss://{name}"), config)
                            .map_err(|e| Problem(format!("state.tls.server_name: {e}")))?,
                        certificates: certificates.clone(),
                    })),
                    None => None,
                };
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
                Ok(Connector::Sentinel(tokio::sync::Mutex::new(client), named))
            }
        }
    }

    /// The master the sentinels name now (Sentinel only).
    pub(super) async fn master(&self) -> Option<redis::RedisResult<Master>> {
        let Connector::Sentinel(sentinels, named) = self else {
            return None;
        };
        Some(match named {
            Some(named) => named.find(sentinels).await,
            None => sentinels
                .lock()
                .await
                .async_get_client()
                .await
                .map(|client| Master {
                    at: client.get_connection_info().addr().to_string(),
                    client,
                    resolver: None,
                }),
        })
    }

    /// The one server a connection goes to now (a cluster's: its first
    /// seed), with `server_name` the resolver that takes the name to the
    /// server's address, and (Sentinel) the master's address.
    async fn server(
        &self,
    ) -> redis::RedisResult<(redis::Client, Option<ServerName>, Option<String>)> {
        match self {
            Connector::Single(client, at) => Ok((client.clone(), at.clone(), None)),
            Connector::Cluster(_, seed) => Ok(((**seed).clone(), None, None)),
            Connector::Sentinel(..) => {
                let master = self.master().await.unwrap_or_else(|| {
                    Err((redis::ErrorKind::Client, "not a sentinel connector").into())
                })?;
                Ok((master.client, master.resolver, Some(master.at)))
            }
        }
    }

    /// A connection, and (Sentinel) the master's address it goes to.
    pub(super) async fn connect(
        &self,
        timeout: Duration,
    ) -> redis::RedisResult<(Conn, Option<String>)> {
        if let Connector::Cluster(client, _) = self {
            return Ok((
                client.get_async_connection().await.map(Conn::Cluster)?,
                None,
            ));
        }
        let (client, resolver, at) = self.server().await?;
        let conn = Reconnecting::connect(client, config(timeout, resolver)).await?;
        Ok((Conn::Single(conn), at))
    }

    /// A connection of its own for notices (pub/sub: a message published
    /// on any node of a cluster reaches every node's subscribers), whose
    /// messages go to `pushed` (RESP3 pushes).
    pub(super) async fn notices(
        &self,
        timeout: Duration,
        pushed: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
    ) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        let (client, resolver, _) = self.server().await?;
        let info = client.get_connection_info().clone();
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        redis::Client::open(info.set_redis_settings(resp3))?
            .get_multiplexed_async_connection_with_config(
                &config(timeout, resolver).set_push_sender(pushed),
            )
            .await
    }
}

/// A connection's settings: the reply's own limit is each call's
/// (`Redis::run`), whose late reply is told apart from a failure, so the
/// connection's is only a backstop that never turns a late reply into an
/// error; with `server_name`, its resolver.
fn config(timeout: Duration, resolver: Option<ServerName>) -> AsyncConnectionConfig {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout.max(Duration::from_millis(250))))
        .set_response_timeout(Some(timeout.max(Duration::from_secs(2))));
    match resolver {
        Some(resolver) => config.set_dns_resolver(resolver),
        None => config,
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
