//! A `redis-server` of the test's own: a free port on 127.0.0.5, persistence
//! off, stopped when dropped. Never a shared system instance. `tests/run`
//! installs the package when it is missing.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `redis-cli -h <addr> -p <port> <args>`: its output, or `None` when it
/// could not run or did not succeed.
pub fn redis_cli(addr: SocketAddr, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub struct RedisServer {
    pub addr: SocketAddr,
    child: Option<Child>,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        let addr = std::net::TcpListener::bind("127.0.0.5:0")
            .expect("a free port")
            .local_addr()
            .expect("its address");
        let mut server = RedisServer { addr, child: None };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// Starts it (again, on the same port) and waits until it accepts.
    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.addr.port().to_string()])
            .args(["--bind", &self.addr.ip().to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            // DEBUG SLEEP stalls it, as a busy machine or a managed Redis can.
            .args(["--enable-debug-command", "yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (tests/run installs it)");
        self.child = Some(child);
        let addr = self.addr;
        crate::support::eventually(Duration::from_secs(10), "redis-server listens", || async {
            tokio::net::TcpStream::connect(addr).await.ok().map(drop)
        })
        .await;
    }

    /// Freezes it (SIGSTOP): connections stay open, nothing answers, as a
    /// stalled or partitioned Redis would.
    pub fn freeze(&self, frozen: bool) {
        if let Some(child) = &self.child {
            let signal = if frozen { "-STOP" } else { "-CONT" };
            let sent = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .expect("kill runs");
            assert!(sent.success(), "kill {signal}");
        }
    }

    /// Stalls it for `seconds` (`DEBUG SLEEP`): it answers nothing
    /// meanwhile, as a busy machine or a managed Redis can; returns when
    /// it answers again.
    pub async fn stall(&self, seconds: &str) {
        let (addr, seconds) = (self.addr, seconds.to_string());
        tokio::task::spawn_blocking(move || redis_cli(addr, &["DEBUG", "SLEEP", &seconds]))
            .await
            .expect("redis-cli runs")
            .expect("DEBUG SLEEP runs");
    }

    /// Kills it, as a crash or an outage would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis as managed services give it: TLS only, with certificates from a
/// private CA (made for the test), client certificates required, and an ACL
/// user allowed only the commands offergate needs (the README's minimal
/// ACL); the default user is off.
pub struct SecureRedis {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    /// The one name its certificate holds, when not its address
    /// (`[state.tls] server_name` in [`SecureRedis::state`]).
    pub name: Option<String>,
    child: Child,
}

/// The README's minimal ACL for offergate's user, its key prefix, every
/// command its scripts run, and the connection's own.
pub const MINIMAL_ACL: &str = "on >s3cret-pw ~offergate:* &offergate:* -@all +ping +hello +auth +evalsha +eval +script|load +get +set +del +pttl +time +zadd +zrem +zscore +zcard +zrange +zremrangebyscore +pexpire +persist +hget +hset +publish +subscribe +unsubscribe";

/// The files of a TLS test server, in a directory of its own.
pub struct TlsFiles {
    pub ca: String,
    pub cert: String,
    pub key: String,
}

/// A CA made for the test, a server certificate it signed for `server_name`
/// only (`server.pem`, `server.key`), and a client certificate
/// (`client.pem`, `client.key`), written in `dir`.
pub fn tls_files(dir: &std::path::Path, server_name: &str) -> TlsFiles {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "offergate test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let signed = |names: Vec<String>| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = signed(vec![server_name.to_string()]);
    let (client_cert, client_key) = signed(vec!["offergate".to_string()]);
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    write("client.pem", &client_cert);
    write("client.key", &client_key);
    TlsFiles {
        ca: write("ca.pem", &ca.pem()),
        cert: write("server.pem", &server_cert),
        key: write("server.key", &server_key),
    }
}

impl SecureRedis {
    pub async fn start() -> SecureRedis {
        SecureRedis::start_as(None).await
    }

    /// Its certificate names only `name`, never the address it listens on.
    pub async fn start_named(name: &str) -> SecureRedis {
        SecureRedis::start_as(Some(name.to_string())).await
    }

    async fn start_as(name: Option<String>) -> SecureRedis {
        let dir = tempfile::tempdir().expect("a directory for the certificates");
        let addr = std::net::TcpListener::bind("127.0.0.5:0")
            .expect("a free port")
            .local_addr()
            .expect("its address");
        let server_name = name.clone().unwrap_or_else(|| addr.ip().to_string());
        let files = tls_files(dir.path(), &server_name);
        let (ca_file, cert, key) = (files.ca, files.cert, files.key);
        let pw = dir.path().join("redis_password");
        std::fs::write(&pw, "s3cret-pw").unwrap();
        use std::os::unix::fs::PermissionsExt;
        for f in ["redis_password", "client.key"] {
            std::fs::set_permissions(dir.path().join(f), std::fs::Permissions::from_mode(0o600))
                .unwrap();
        }
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &addr.port().to_string()])
            .args(["--bind", &addr.ip().to_string()])
            .args(["--tls-cert-file", &cert, "--tls-key-file", &key])
            .args(["--tls-ca-cert-file", &ca_file, "--tls-auth-clients", "yes"])
            // One token per argument: redis joins them into the line.
            .args(["--user", "offergate"])
            .args(MINIMAL_ACL.split_whitespace())
            // The keys of the second prefix one fleet test uses.
            .arg("~pause:*")
            .args(["--user", "default", "off"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (tests/run installs it)");
        crate::support::eventually(Duration::from_secs(10), "redis-server listens", || async {
            tokio::net::TcpStream::connect(addr).await.ok().map(drop)
        })
        .await;
        SecureRedis {
            addr,
            dir,
            name,
            child,
        }
    }

    /// The `[state]` lines for a replica on it.
    pub fn state(&self) -> String {
        let f = |name: &str| self.dir.path().join(name).display().to_string();
        let server_name = self
            .name
            .as_ref()
            .map(|n| format!(", server_name = \"{n}\""))
            .unwrap_or_default();
        format!(
            "[state]\nbackend = \"redis\"\nredis_url = \"rediss://{}/0\"\nredis_username = \"offergate\"\nredis_password_file = \"{}\"\ntimeout_ms = 250\ntls = {{ ca_file = \"{}\", cert_file = \"{}\", key_file = \"{}\"{server_name} }}\n",
            self.addr,
            f("redis_password"),
            f("ca.pem"),
            f("client.pem"),
            f("client.key"),
        )
    }
}

impl Drop for SecureRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
