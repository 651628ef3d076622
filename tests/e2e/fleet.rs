//! The real binaries as an operator runs them: `offergate simulate` and
//! `offergate run` with the shipped config, ports on 127.0.0.4, children killed
//! when the test ends.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use http::Request;
use http_body_util::Full;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_offergate");

/// A child process killed when the test ends, pass or fail.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Free ports on 127.0.0.4, where no other test listens, so none can take
/// them before the child binds.
fn free() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.4:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

pub fn signal(child: &Child, name: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{name}");
}

pub struct Fleet {
    pub sim: Killed,
    pub gw: Killed,
    pub sim_addr: SocketAddr,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub client: Client<HttpConnector, Full<Bytes>>,
    /// Where the gateway keeps its threads, unless `env` says elsewhere, and
    /// the shipped config's copy with its `secrets/`.
    pub dir: tempfile::TempDir,
}

impl Fleet {
    /// Both children; `env` is added to the gateway's environment, its
    /// stderr (the log) goes to `log` or nowhere.
    pub async fn start(env: &[(&str, &str)], log: Option<std::fs::File>) -> Fleet {
        Fleet::start_logging(env, log.map(Stdio::from)).await
    }

    /// [`Fleet::start`] with the gateway's stderr wherever `log` says.
    pub async fn start_logging(env: &[(&str, &str)], log: Option<Stdio>) -> Fleet {
        Fleet::start_stdio(&crate::support::shipped_config(), env, log).await
    }

    /// [`Fleet::start`] with the config file at `config`.
    pub async fn start_with(
        config: &str,
        env: &[(&str, &str)],
        log: Option<std::fs::File>,
    ) -> Fleet {
        Fleet::start_stdio(config, env, log.map(Stdio::from)).await
    }

    /// [`Fleet::start`] with the simulator started with `sim_args` too
    /// (`--encore-key K`: it refuses every other key).
    pub async fn start_sim(
        sim_args: &[&str],
        env: &[(&str, &str)],
        log: Option<std::fs::File>,
    ) -> Fleet {
        Fleet::start_full(
            &crate::support::shipped_config(),
            sim_args,
            env,
            log.map(Stdio::from),
        )
        .await
    }

    async fn start_stdio(config: &str, env: &[(&str, &str)], log: Option<Stdio>) -> Fleet {
        Fleet::start_full(config, &[], env, log).await
    }

    /// [`Fleet::start`] with the config file at `config` and the simulator
    /// started with `sim_args`.
    pub async fn start_full_with(config: &str, sim_args: &[&str], env: &[(&str, &str)]) -> Fleet {
        Fleet::start_full(config, sim_args, env, None).await
    }

    async fn start_full(
        config: &str,
        sim_args: &[&str],
        env: &[(&str, &str)],
        log: Option<Stdio>,
    ) -> Fleet {
        let (sim_addr, listen, admin) = (free(), free(), free());
        let quiet = |c: &mut Command| {
            c.stdout(Stdio::null()).stderr(Stdio::null());
        };
        let mut sim = Command::new(BIN);
        sim.args(["simulate", "--listen", &sim_addr.to_string()])
            .args(sim_args);
        quiet(&mut sim);
        let sim = Killed(sim.spawn().unwrap());
        let dir = tempfile::tempdir().unwrap();
        // The shipped file, with its secret files and partner id in place.
        let given = |name: &str, or: &'static str| {
            env.iter().find(|(k, _)| *k == name).map_or(or, |(_, v)| *v)
        };
        let config = if config == crate::support::shipped_config() {
            crate::support::shipped_config_in(
                dir.path(),
                given("ENCORE_API_KEY", "pk_live_signals"),
                given("BESITOS_TOKEN", "t"),
            )
        } else {
            config.to_string()
        };
        let mut gw = Command::new(BIN);
        gw.args(["run", "-c", &config])
            .env(
                "OFFERGATE_STATE__THREAD_FILE",
                dir.path().join("threads.redb"),
            )
            .env("ENCORE_API_KEY", "pk_live_signals")
            .env("BESITOS_TOKEN", "t")
            .env("OFFERGATE_SERVER__LISTEN", listen.to_string())
            .env("OFFERGATE_SERVER__ADMIN_LISTEN", admin.to_string())
            .env("OFFERGATE_SERVER__SHUTDOWN_GRACE_MS", "5000")
            .env("OFFERGATE_ENCORE__BASE_URL", format!("http://{sim_addr}"))
            .env("OFFERGATE_BESITOS__BASE_URL", format!("http://{sim_addr}"))
            .env("OFFERGATE_ENCORE__RATE_LIMIT__CLIENT_BURST", "1000")
            .envs(env.iter().copied());
        quiet(&mut gw);
        if let Some(file) = log {
            gw.stderr(file);
        }
        let fleet = Fleet {
            sim,
            gw: Killed(gw.spawn().unwrap()),
            sim_addr,
            listen,
            admin,
            client: Client::builder(TokioExecutor::new()).build_http(),
            dir,
        };
        eventually(Duration::from_secs(20), "the gateway is ready", || async {
            (fleet.status(fleet.admin, "/readyz").await == Some(200)).then_some(())
        })
        .await;
        fleet
    }

    /// How many Encore calls the simulator has received.
    pub async fn partner_calls(&self) -> u64 {
        let req = Request::get(format!("http://{}/__sim/calls", self.sim_addr))
            .body(Full::new(Bytes::new()))
            .unwrap();
        send_with(&self.client, req).await.json()["encore_offers"]
            .as_u64()
            .unwrap_or(0)
    }

    /// Waits until the simulator has received at least `n` Encore calls.
    pub async fn partner_reached(&self, n: u64) {
        eventually(
            Duration::from_secs(10),
            "the partner is reached",
            || async { (self.partner_calls().await >= n).then_some(()) },
        )
        .await;
    }

    /// POSTs `body` as JSON to the gateway's `path`.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> Answer {
        let req = Request::post(format!("http://{}{path}", self.listen))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        send_with(&self.client, req).await
    }

    /// A GET's status, or `None` when nothing answered.
    pub async fn status(&self, addr: SocketAddr, path: &str) -> Option<u16> {
        let req = Request::get(format!("http://{addr}{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(2), self.client.request(req)).await;
        Some(answer.ok()?.ok()?.status().as_u16())
    }

    /// The simulator's next `n` Encore calls answer after `ms`.
    pub async fn slow_partner(&self, n: usize, ms: u64) {
        let plan =
            serde_json::json!({"route": "encore_offers", "plan": vec![format!("delay:{ms}"); n]});
        let req = Request::post(format!("http://{}/__sim/faults", self.sim_addr))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(plan.to_string())))
            .unwrap();
        assert_eq!(send_with(&self.client, req).await.status, 200);
    }

    /// `n` distinct offer calls (and `dups` duplicates of one more, by key),
    /// all at once; the number answered with an offer.
    pub async fn calls(&self, n: usize, dups: usize) -> usize {
        let shared = encore_body();
        let reqs = (0..n)
            .map(|_| (None, encore_body()))
            .chain((0..dups).map(|_| (Some("dup-key"), shared.clone())));
        let answers = join_all(reqs.map(|(key, body)| {
            let mut req = Request::post(format!("http://{}{ENCORE_PATH}", self.listen))
                .header("content-type", "application/json");
            if let Some(k) = key {
                req = req.header("idempotency-key", k);
            }
            send_with(
                &self.client,
                req.body(Full::new(Bytes::from(body))).unwrap(),
            )
        }))
        .await;
        answers
            .iter()
            .filter(|a| a.status == 200 && a.json()["offer"]["clickUrl"].is_string())
            .count()
    }
}

/// A process's resident memory, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// A process's open file descriptors (its sockets among them).
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}
