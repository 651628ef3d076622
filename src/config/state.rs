//! `[state]`: where shared state lives, how offergate finds its Redis, and
//! what a call gets when Redis cannot answer.

use std::time::Duration;

use serde::Serialize;

use super::{as_ms, Secret};

/// Where shared state lives: idempotent answers and in-flight locks, rate
/// limit buckets, partner pauses.
#[derive(Clone, Debug, Serialize)]
pub struct StateConfig {
    pub backend: StateBackend,
    /// `redis://` or `rediss://` (TLS), without a password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_password: Option<Secret>,
    pub key_prefix: String,
    /// Every Redis call.
    #[serde(rename = "timeout_ms", serialize_with = "as_ms")]
    pub timeout: Duration,
    pub on_error: OnStateError,
    /// With `backend = "memory"`: the file this instance keeps its
    /// conversations in across restarts; `None`: memory only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_file: Option<ThreadFile>,
    /// One Redis, a Redis Cluster, or a master found through Sentinel.
    pub topology: Topology,
    /// `host:port` of the cluster's seed nodes or of the sentinels.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub redis_nodes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentinel_master_name: Option<String>,
    /// The ACL user (the password comes from `redis_password_env` / `_file`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_username: Option<String>,
    /// TLS to Redis beyond the public roots: `[state.tls]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<StateTls>,
}

impl StateConfig {
    /// Where the shared state is, for the log: the backend, and for Redis its
    /// topology and address (host and port only: never a user or password).
    pub fn describe(&self) -> String {
        match self.backend {
            StateBackend::Memory => match &self.thread_file {
                Some(file) => format!("memory (threads in {})", file.path.display()),
                None => "memory".to_string(),
            },
            StateBackend::Redis => {
                let topology = match self.topology {
                    Topology::Single => "single",
                    Topology::Cluster => "cluster",
                    Topology::Sentinel => "sentinel",
                };
                let at = match (&self.redis_url, self.topology) {
                    (Some(url), Topology::Single) => host_of(url),
                    _ => self.redis_nodes.join(","),
                };
                let tls = if self.tls.is_some()
                    || self
                        .redis_url
                        .as_deref()
                        .is_some_and(|u| u.starts_with("rediss://"))
                {
                    " over TLS"
                } else {
                    ""
                };
                format!("redis {topology} {at}{tls}")
            }
        }
    }
}

/// The thread file, and whether it is the default one (in the state
/// directory, which is made if missing; a path the config names must be in a
/// directory that exists, so a typo is not a silent new directory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadFile {
    pub path: std::path::PathBuf,
    pub default: bool,
}

impl Serialize for ThreadFile {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.path.serialize(s)
    }
}

/// `host:port` of a Redis URL, whatever else it holds.
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .rsplit('@')
        .next()
        .unwrap_or(authority)
        .to_string()
}

/// How offergate finds its Redis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Topology {
    /// One server (or a managed endpoint that hides its replicas).
    Single,
    /// Redis Cluster: keys spread over slots, each script's keys in one.
    Cluster,
    /// A master and its replicas watched by sentinels.
    Sentinel,
}

/// `[state.tls]`: the files are read when offergate connects.
#[derive(Clone, Debug, Serialize)]
pub struct StateTls {
    /// The CA that signed the server's certificate (PEM), instead of the
    /// public roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
    /// A client certificate and its key (PEM), for a server that asks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<std::path::PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<std::path::PathBuf>,
    /// The name the server's certificate is verified against, when it is
    /// not the host offergate connects to (`single` and `sentinel`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    /// In this process: nothing to run, nothing shared.
    Memory,
    /// One Redis (or Valkey) for every replica.
    Redis,
}

/// What a call gets when the shared state cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStateError {
    /// Go on without it: no cross-replica de-duplication, local limits.
    FailOpen,
    /// The soft fallback, reason `state_unavailable`.
    FailClosed,
}

#[cfg(test)]
mod describe_tests {
    use super::host_of;

    #[test]
    fn a_url_is_described_by_its_host_alone() {
        assert_eq!(host_of("redis://u:secret@10.0.0.1:6379/0"), "10.0.0.1:6379");
        assert_eq!(host_of("rediss://r.example:6380"), "r.example:6380");
        assert_eq!(host_of("redis://[::1]:6379/2"), "[::1]:6379");
    }
}
