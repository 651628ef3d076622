//! A Sentinel setup of the test's own: one master, one replica and three
//! sentinels (quorum 2, a master is down after 1 s of silence), on free ports
//! of 127.0.0.8, persistence off, every process stopped when dropped.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct RedisSentinel {
    pub master: SocketAddr,
    pub replica: SocketAddr,
    pub sentinels: Vec<SocketAddr>,
    master_child: Option<Child>,
    children: Vec<Child>,
    /// Master and replica over TLS only: their CA and the one name their
    /// certificate holds (never their address).
    tls: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

fn free() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.8:0")
        .expect("a free port")
        .local_addr()
        .expect("its address")
}

/// A master or replica, its files (a replica's copy of the master) in `dir`.
fn server(addr: SocketAddr, dir: &std::path::Path, tls: &[String], extra: &[&str]) -> Child {
    let ip = addr.ip().to_string();
    let port = addr.port().to_string();
    let ports = if tls.is_empty() {
        ["--port", &port, "--tls-port", "0"]
    } else {
        ["--port", "0", "--tls-port", &port]
    };
    Command::new("redis-server")
        .args(ports)
        .args(tls)
        .args(["--bind", &ip, "--replica-announce-port", &port])
        // Peers reach it here, not at its connections' source (127.0.0.1).
        .args(["--replica-announce-ip", &ip])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .args(extra)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server runs (tests/run installs it)")
}

/// Its output; nothing while the node does not answer yet.
fn cli(addr: SocketAddr, args: &[&str]) -> String {
    crate::redis_server::redis_cli(addr, args).unwrap_or_default()
}

impl RedisSentinel {
    pub async fn start() -> RedisSentinel {
        RedisSentinel::start_as(None).await
    }

    /// Master and replica speak TLS only, with a certificate that names
    /// only `name`; the sentinels reach them over TLS too.
    pub async fn start_tls(name: &str) -> RedisSentinel {
        RedisSentinel::start_as(Some(name)).await
    }

    async fn start_as(name: Option<&str>) -> RedisSentinel {
        let dir = tempfile::tempdir().expect("a directory for the sentinels' files");
        let (master, replica) = (free(), free());
        let files = name.map(|n| crate::redis_server::tls_files(dir.path(), n));
        // A server's and a sentinel's TLS lines: its certificate (also the
        // client one towards its peers), the CA, TLS to its peers.
        let tls: Vec<String> = files
            .iter()
            .flat_map(|f| {
                [
                    "--tls-cert-file",
                    &f.cert,
                    "--tls-key-file",
                    &f.key,
                    "--tls-ca-cert-file",
                    &f.ca,
                    "--tls-auth-clients",
                    "no",
                    "--tls-replication",
                    "yes",
                ]
                .map(str::to_string)
            })
            .collect();
        let conf_tls: String = tls
            .chunks(2)
            .map(|kv| format!("{} {}\n", kv[0].trim_start_matches("--"), kv[1]))
            .collect();
        let master_child = server(master, dir.path(), &tls, &[]);
        let replica_of = [master.ip().to_string(), master.port().to_string()];
        let mut children = vec![server(
            replica,
            dir.path(),
            &tls,
            &["--replicaof", &replica_of[0], &replica_of[1]],
        )];
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let addr = free();
            let conf = dir.path().join(format!("sentinel-{}.conf", addr.port()));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind {ip}\nprotected-mode no\nsentinel announce-ip {ip}\n\
                     sentinel monitor mymaster {ip} {mport} 2\n\
                     sentinel down-after-milliseconds mymaster 1000\n\
                     sentinel failover-timeout mymaster 5000\n\
                     sentinel parallel-syncs mymaster 1\n{conf_tls}",
                    port = addr.port(),
                    ip = addr.ip(),
                    mport = master.port(),
                ),
            )
            .expect("the sentinel's config");
            children.push(
                Command::new("redis-server")
                    .arg(&conf)
                    .arg("--sentinel")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("redis-server --sentinel runs"),
            );
            sentinels.push(addr);
        }
        let setup = RedisSentinel {
            master,
            replica,
            sentinels,
            master_child: Some(master_child),
            children,
            tls: files.zip(name).map(|(f, n)| (f.ca, n.to_string())),
            _dir: dir,
        };
        // Every sentinel knows the replica and the two other sentinels.
        for s in setup.sentinels.clone() {
            crate::support::eventually(
                Duration::from_secs(20),
                "the sentinels agree",
                || async move {
                    let replicas = cli(s, &["sentinel", "replicas", "mymaster"]);
                    let others = cli(s, &["sentinel", "sentinels", "mymaster"]);
                    (replicas.contains(&setup_port(replica))
                        && others.matches("127.0.0.8").count() >= 2)
                        .then_some(())
                },
            )
            .await;
        }
        setup
    }

    /// The `[state]` lines for a replica on it.
    pub fn state(&self) -> String {
        let nodes: Vec<String> = self.sentinels.iter().map(|a| format!("\"{a}\"")).collect();
        let tls = match &self.tls {
            Some((ca, name)) => {
                format!("tls = {{ ca_file = \"{ca}\", server_name = \"{name}\" }}\n")
            }
            None => String::new(),
        };
        format!(
            "[state]\nbackend = \"redis\"\ntopology = \"sentinel\"\nsentinel_master_name = \"mymaster\"\nredis_nodes = [{}]\ntimeout_ms = 250\n{tls}",
            nodes.join(", ")
        )
    }

    /// Empties the master (the replica follows).
    pub fn flush(&self) {
        cli(self.current_master(), &["flushall"]);
    }

    /// The master the sentinels name now.
    pub fn current_master(&self) -> SocketAddr {
        let out = cli(
            self.sentinels[0],
            &["sentinel", "get-master-addr-by-name", "mymaster"],
        );
        let mut lines = out.lines();
        match (lines.next(), lines.next()) {
            (Some(ip), Some(port)) => format!("{ip}:{port}").parse().unwrap_or(self.master),
            _ => self.master,
        }
    }

    /// Kills the first master, as a crash would.
    pub fn kill_master(&mut self) {
        if let Some(mut child) = self.master_child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How `SENTINEL REPLICAS` shows a port.
fn setup_port(addr: SocketAddr) -> String {
    addr.port().to_string()
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        self.kill_master();
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
