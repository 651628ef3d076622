//! Signals sent to the real binary while calls are in flight: SIGHUP, SIGUSR1,
//! SIGUSR2 and SIGPIPE never stop it; SIGTERM drains (`/readyz` 503 while
//! `/healthz` and `/metrics` answer, in-flight and coalesced calls finish,
//! exit 0). Every caller is counted: none may go unanswered.

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
struct Killed(Child);

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

fn signal(child: &Child, name: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{name}");
}

struct Fleet {
    sim: Killed,
    gw: Killed,
    sim_addr: SocketAddr,
    listen: SocketAddr,
    admin: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Fleet {
    async fn start() -> Fleet {
        let (sim_addr, listen, admin) = (free(), free(), free());
        let quiet = |c: &mut Command| {
            c.stdout(Stdio::null()).stderr(Stdio::null());
        };
        let mut sim = Command::new(BIN);
        sim.args(["simulate", "--listen", &sim_addr.to_string()]);
        quiet(&mut sim);
        let sim = Killed(sim.spawn().unwrap());
        let mut gw = Command::new(BIN);
        gw.args([
            "run",
            "-c",
            &format!("{}/config/offergate.toml", env!("CARGO_MANIFEST_DIR")),
        ])
        .env("ENCORE_API_KEY", "pk_live_signals")
        .env("BESITOS_TOKEN", "t")
        .env("OFFERGATE_SERVER__LISTEN", listen.to_string())
        .env("OFFERGATE_SERVER__ADMIN_LISTEN", admin.to_string())
        .env("OFFERGATE_SERVER__SHUTDOWN_GRACE_MS", "5000")
        .env("OFFERGATE_ENCORE__BASE_URL", format!("http://{sim_addr}"))
        .env("OFFERGATE_BESITOS__BASE_URL", format!("http://{sim_addr}"))
        .env("OFFERGATE_ENCORE__RATE_LIMIT__CLIENT_BURST", "1000");
        quiet(&mut gw);
        let fleet = Fleet {
            sim,
            gw: Killed(gw.spawn().unwrap()),
            sim_addr,
            listen,
            admin,
            client: Client::builder(TokioExecutor::new()).build_http(),
        };
        for _ in 0..200 {
            if fleet.status(fleet.admin, "/readyz").await == Some(200) {
                return fleet;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the gateway did not become ready");
    }

    /// A GET's status, or `None` when nothing answered.
    async fn status(&self, addr: SocketAddr, path: &str) -> Option<u16> {
        let req = Request::get(format!("http://{addr}{path}"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(2), self.client.request(req)).await;
        Some(answer.ok()?.ok()?.status().as_u16())
    }

    /// The simulator's next `n` Encore calls answer after `ms`.
    async fn slow_partner(&self, n: usize, ms: u64) {
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
    async fn calls(&self, n: usize, dups: usize) -> usize {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_signal_but_sigkill_loses_a_call_in_flight() {
    let mut f = Fleet::start().await;
    let mut sent = 0;
    for name in ["HUP", "USR1", "USR2", "PIPE"] {
        f.slow_partner(20, 400).await;
        let in_flight = f.calls(20, 0);
        let signal_mid_flight = async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            signal(&f.gw.0, name);
        };
        let (answered, ()) = tokio::join!(in_flight, signal_mid_flight);
        sent += 1;
        assert_eq!(answered, 20, "SIGHUP and friends lose no call ({name})");
        assert!(
            f.gw.0.try_wait().unwrap().is_none(),
            "still running after SIG{name}"
        );
    }

    // SIGTERM: drain. In flight: 20 calls and 5 coalesced duplicates.
    f.slow_partner(21, 800).await;
    let in_flight = f.calls(20, 5);
    let probes = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        signal(&f.gw.0, "TERM");
        tokio::time::sleep(Duration::from_millis(200)).await;
        (
            f.status(f.admin, "/readyz").await,
            f.status(f.admin, "/healthz").await,
            f.status(f.admin, "/metrics").await,
        )
    };
    let (answered, during) = tokio::join!(in_flight, probes);
    sent += 1;
    assert_eq!(answered, 25, "every call in flight finished");
    assert_eq!(
        during,
        (Some(503), Some(200), Some(200)),
        "readyz, healthz, metrics while draining"
    );
    let exit = (0..200)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(25));
            f.gw.0.try_wait().unwrap()
        })
        .expect("exits once drained");
    assert!(exit.success(), "{exit:?}");
    assert_eq!(
        f.status(f.listen, "/").await,
        None,
        "the proxy listener is closed"
    );
    assert_eq!(sent, 5);
    let _ = &mut f.sim;
}
