//! A Redis Cluster of the test's own: 3 masters and 3 replicas
//! (`redis-server --cluster-enabled yes`, joined by `redis-cli --cluster
//! create`), on free ports of 127.0.0.7, persistence off, every process
//! stopped when dropped. Never a shared system instance.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct RedisCluster {
    pub nodes: Vec<SocketAddr>,
    children: Vec<Child>,
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
                    let out = Command::new("redis-cli")
                        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
                        .args(["cluster", "info"])
                        .output()
                        .ok()?;
                    String::from_utf8_lossy(&out.stdout)
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
            let _ = Command::new("redis-cli")
                .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
                .arg("flushall")
                .output();
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
