//! A `redis-server` of the test's own: a free port on 127.0.0.5, persistence
//! off, stopped when dropped. Never a shared system instance. `tests/run`
//! installs the package when it is missing.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
