//! A Redis Cluster of the test's own: 3 masters and 3 replicas
//! (`redis-server --cluster-enabled yes`, joined by `redis-cli --cluster
//! create`), on free ports of 127.0.0.7, persistence off, every process
//! stopped when dropped. Never a shared system instance.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::redis_server::redis_cli;

pub struct RedisCluster {
    pub nodes: Vec<SocketAddr>,
    children: Vec<Child>,
    alive: Vec<bool>,
    _dir: tempfile::TempDir,
}

/// A free port whose cluster bus port (+10000) is free too.
fn free_pair() -> SocketAddr {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.7:0").expect("a free port");
        let addr = l.local_addr().expect("its address");
        if addr.port() > 55_000 {
            continue;
        }
        let bus = SocketAddr::new(addr.ip(), addr.port() + 10_000);
        if std::net::TcpListener::bind(bus).is_ok() {
            return addr;
        }
    }
}

impl RedisCluster {
    pub async fn start() -> RedisCluster {
        let dir = tempfile::tempdir().expect("a directory for the nodes' files");
        let mut nodes: Vec<SocketAddr> = Vec::new();
        while nodes.len() < 6 {
            let addr = free_pair();
            if !nodes.contains(&addr) {
                nodes.push(addr);
            }
        }
        let mut children = Vec::new();
        for addr in &nodes {
            let conf = dir.path().join(format!("nodes-{}.conf", addr.port()));
            let child = Command::new("redis-server")
                .args(["--port", &addr.port().to_string()])
                .args(["--bind", &addr.ip().to_string()])
                // Its peers reach it here, not at the source address of its
                // own connections (127.0.0.1, where it does not listen).
                .args(["--cluster-announce-ip", &addr.ip().to_string()])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", conf.to_str().unwrap()])
                .args(["--cluster-node-timeout", "2000"])
                .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server runs (tests/run installs it)");
            children.push(child);
        }
        let cluster = RedisCluster {
            alive: vec![true; nodes.len()],
            nodes,
            children,
            _dir: dir,
        };
        for addr in &cluster.nodes {
            let addr = *addr;
            crate::support::eventually(Duration::from_secs(10), "a node listens", || async move {
                tokio::net::TcpStream::connect(addr).await.ok().map(drop)
            })
            .await;
        }
        // Bounded: a cluster that cannot join fails the test, never hangs it.
        let mut create = Command::new("timeout");
        create.args(["30", "redis-cli", "--cluster", "create"]);
        for addr in &cluster.nodes {
            create.arg(addr.to_string());
        }
        let out = create
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli runs (tests/run installs redis-tools)");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        for addr in &cluster.nodes {
            let addr = *addr;
            crate::support::eventually(
                Duration::from_secs(20),
                "the cluster is ok",
                || async move {
                    redis_cli(addr, &["cluster", "info"])?
                        .contains("cluster_state:ok")
                        .then_some(())
                },
            )
            .await;
        }
        cluster
    }

    /// Empties every master: the next test starts on a clean cluster.
    pub fn flush(&self) {
        for addr in &self.nodes {
            let _ = redis_cli(*addr, &["flushall"]);
        }
    }

    /// Waits until every replica has its master's data (a replica that
    /// never synced cannot be promoted).
    pub async fn replicas_in_sync(&self) {
        for addr in self.nodes.clone() {
            crate::support::eventually(
                Duration::from_secs(30),
                "the replicas are in sync",
                || async move {
                    let info = redis_cli(addr, &["info", "replication"])?;
                    (info.contains("role:master") || info.contains("master_link_status:up"))
                        .then_some(())
                },
            )
            .await;
        }
    }

    /// The slot ranges `master` serves now.
    pub fn slots_of(&self, master: SocketAddr) -> Vec<(u16, u16)> {
        let text = redis_cli(master, &["cluster", "nodes"]).expect("redis-cli runs");
        let mine = text
            .lines()
            .find(|l| l.contains("myself"))
            .unwrap_or_default();
        mine.split_whitespace()
            .skip(8)
            .filter_map(|r| match r.split_once('-') {
                Some((lo, hi)) => Some((lo.parse().ok()?, hi.parse().ok()?)),
                None => r.parse().ok().map(|s| (s, s)),
            })
            .collect()
    }

    /// The master that serves `tag`'s slot now.
    pub fn master_of(&self, tag: &str) -> SocketAddr {
        let cli =
            |addr: &SocketAddr, args: &[&str]| redis_cli(*addr, args).expect("redis-cli runs");
        let alive = self
            .nodes
            .iter()
            .zip(&self.alive)
            .find(|(_, up)| **up)
            .map(|(a, _)| *a)
            .expect("a live node");
        let slot: u16 = cli(&alive, &["cluster", "keyslot", tag])
            .trim()
            .parse()
            .expect("a slot");
        for line in cli(&alive, &["cluster", "nodes"]).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(addr), Some(flags)) = (fields.get(1), fields.get(2)) else {
                continue;
            };
            if !flags.contains("master") || flags.contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| match range.split_once('-') {
                Some((lo, hi)) => {
                    lo.parse::<u16>().is_ok_and(|lo| lo <= slot)
                        && hi.parse::<u16>().is_ok_and(|hi| slot <= hi)
                }
                None => range.parse::<u16>() == Ok(slot),
            });
            if serves {
                let host_port = addr.split('@').next().unwrap_or_default();
                return host_port.parse().expect("host:port");
            }
        }
        panic!("no master serves slot {slot}");
    }

    /// Kills the node at `addr`, as a crash would.
    pub fn kill(&mut self, addr: SocketAddr) {
        if let Some(i) = self.nodes.iter().position(|a| *a == addr) {
            let _ = self.children[i].kill();
            let _ = self.children[i].wait();
            self.alive[i] = false;
        }
    }

    /// The `[state]` lines for a replica on this cluster.
    pub fn state(&self) -> String {
        let nodes: Vec<String> = self.nodes[..3].iter().map(|a| format!("\"{a}\"")).collect();
        format!(
            "[state]\nbackend = \"redis\"\ntopology = \"cluster\"\nredis_nodes = [{}]\ntimeout_ms = 250\n",
            nodes.join(", ")
        )
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Redis Cluster's slot of a hash tag: CRC16 (XMODEM) modulo 16384.
pub fn slot(tag: &str) -> u16 {
    let mut crc: u16 = 0;
    for &b in tag.as_bytes() {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16_384
}
