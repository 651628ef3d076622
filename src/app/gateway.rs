//! A running gateway: both listeners bound, the stack built, tasks spawned.
//! `run`, `demo`, the tests and the load benchmarks all start it the same way.

use crate::call::problem::Problem;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::admin::Admin;
use crate::app::console::{Console, Sources};
use crate::app::reload::{ConfigBoard, Origin};
use crate::app::stack::Shared;
use crate::config::{BaseUrl, Config};
use crate::config::{Live, Secrets, StateBackend};
use crate::conversation::AnyThreads;
use crate::metrics::Metrics;
use crate::server::{serve, Conns, ServeOptions};
use crate::state::Redis;
use std::time::Duration;

pub struct Gateway {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    /// The config loaded, which reloads replace and the console shows.
    pub board: Arc<ConfigBoard>,
    /// What the admin console reads.
    pub console: Arc<Console>,
    /// The secrets a reload replaces.
    pub secrets: Arc<Live<Secrets>>,
    /// The conversations, written to the thread file before the gateway stops.
    threads: Arc<AnyThreads>,
    /// The shared state, whose background calls land before it stops.
    state: Option<Redis>,
    ready: Arc<AtomicBool>,
    /// How long new calls are still taken after a stop signal.
    drain_delay: Duration,
    stop_proxy: watch::Sender<bool>,
    stop_admin: watch::Sender<bool>,
    proxy_task: JoinHandle<()>,
    admin_task: JoinHandle<()>,
    /// The console's once-a-second read of the metrics.
    sampler: JoinHandle<()>,
    /// The spans' export, when traces are on.
    traces: Option<crate::app::traces::Traces>,
}

async fn bind(key: &str, addr: SocketAddr) -> Result<TcpListener, Problem> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Problem(format!("cannot listen on {key} {addr}: {e}")))
}

impl Gateway {
    /// Binds both listeners and starts serving. Port 0 picks a free port; the
    /// bound addresses are in `proxy_addr` / `admin_addr`.
    pub async fn start(config: Config) -> Result<Gateway, Problem> {
        Gateway::start_from(config, None).await
    }

    /// [`Gateway::start`] for a config read from `origin`, which the ready
    /// line names.
    pub async fn start_from(config: Config, origin: Option<Origin>) -> Result<Gateway, Problem> {
        let proxy = bind("server.listen", config.server.listen).await?;
        let admin = bind("server.admin_listen", config.server.admin_listen).await?;
        let proxy_addr = proxy.local_addr().map_err(|e| e.to_string())?;
        let admin_addr = admin.local_addr().map_err(|e| e.to_string())?;
        let public = config
            .server
            .public_base_url
            .clone()
            .unwrap_or_else(|| BaseUrl::for_socket(proxy_addr));
        let metrics = Arc::new(Metrics::new());
        metrics.counter_fn(
            "offergate_log_write_failures_total",
            "Log lines dropped because stderr refused them (a closed pipe, a full disk).",
            crate::app::telemetry::write_failures,
        )?;
        let shared = match config.state.backend {
            StateBackend::Memory => {
                crate::state::StateMetrics::register(&metrics, "memory")?;
                None
            }
            StateBackend::Redis => Some(Redis::connect(&config.state, &metrics)?),
        };
        let degraded: crate::metrics::ReadGauge = match &shared {
            Some(redis) => {
                let redis = redis.clone();
                Box::new(move || i64::from(redis.degraded()))
            }
            None => Box::new(|| 0),
        };
        metrics.gauge_fns(
            "offergate_state_degraded",
            "1 while the shared state backend does not answer (fail_open: serving without it; fail_closed: /readyz 503), else 0.",
            "backend",
            vec![(if shared.is_some() { "redis" } else { "memory" }, degraded)],
        )?;
        let mut shared = Shared::new(&config, shared)?;
        let traces = crate::app::traces::start(&config, &metrics)?;
        shared.tracing = traces.as_ref().map(|t| t.tracing.clone());
        let edge = crate::app::stack::build(&config, public, &metrics, &shared)?;
        let ready = Arc::new(AtomicBool::new(false));
        let (stop_proxy, proxy_rx) = watch::channel(false);
        let (stop_admin, admin_rx) = watch::channel(false);
        let opts = ServeOptions {
            header_read_timeout: config.server.header_read_timeout,
            max_header_bytes: config.server.max_header_bytes,
            grace: config.server.shutdown_grace,
            max_connections: config.server.max_connections,
        };
        // The admin listener has its own, small cap: a flood there cannot
        // take connections from callers, nor callers from the probes.
        let admin_opts = ServeOptions {
            max_connections: 64,
            ..opts
        };
        let board = Arc::new(ConfigBoard::new(config.clone(), origin.clone()));
        let console = Arc::new(Console::new(
            &config,
            Sources {
                metrics: metrics.clone(),
                recent: shared.recent.clone(),
                breakers: shared.breakers.clone(),
                pauses: shared.pauses.clone(),
                state: shared.state.clone(),
                board: board.clone(),
                ready: ready.clone(),
            },
        ));
        let sampler = tokio::spawn(console.clone().sample_every_second());
        let admin_svc = Admin {
            metrics: metrics.clone(),
            ready: ready.clone(),
            state: shared.state.clone(),
            console: console.clone(),
            secrets: shared.secrets.clone(),
            peer: None,
        };
        let edge = hyper_util::service::TowerToHyperService::new(edge);
        let (proxy_conns, admin_conns) = (Arc::new(Conns::new()), Arc::new(Conns::new()));
        let open = |c: &Arc<Conns>| {
            let c = c.clone();
            Box::new(move || i64::try_from(c.len()).unwrap_or(i64::MAX))
                as crate::metrics::ReadGauge
        };
        metrics.gauge_fns(
            "offergate_connections_open",
            "Connections open now, per listener (proxy: callers; admin: probes and scrapes).",
            "listener",
            vec![("proxy", open(&proxy_conns)), ("admin", open(&admin_conns))],
        )?;
        let proxy_task = tokio::spawn(serve(
            proxy,
            None,
            move |_| edge.clone(),
            opts,
            proxy_conns,
            proxy_rx,
        ));
        let admin_task = tokio::spawn(serve(
            admin,
            None,
            move |peer| admin_svc.for_peer(peer),
            admin_opts,
            admin_conns,
            admin_rx,
        ));
        ready.store(true, Ordering::Release);
        // What is running, where, against what: the line an operator reads
        // first (never a secret: base URLs carry none, Redis only its host).
        let runtime = tokio::runtime::Handle::current();
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            proxy = %proxy_addr,
            admin = %admin_addr,
            config = origin.as_ref().map_or("-".into(), |o| o.path.display().to_string()),
            config_sha256 = origin.as_ref().map_or("-", |o| o.sha256.as_str()),
            state = config.state.describe(),
            encore = %config.encore.upstream.base_url,
            besitos = %config.besitos.upstream.base_url,
            traces = config.tracing.otlp_endpoint.as_deref().unwrap_or("off"),
            runtime = flavor_name(&runtime),
            worker_threads = runtime.metrics().num_workers(),
            "offergate ready"
        );
        Ok(Gateway {
            proxy_addr,
            admin_addr,
            metrics,
            board,
            console,
            sampler,
            traces,
            secrets: shared.secrets.clone(),
            threads: shared.threads.clone(),
            state: shared.state.clone(),
            ready,
            drain_delay: config.server.drain_delay,
            stop_proxy,
            stop_admin,
            proxy_task,
            admin_task,
        })
    }

    /// Drains: `/readyz` answers 503 at once, the proxy listener goes on
    /// taking calls for `[server] drain_delay_ms`, then stops accepting,
    /// open calls (coalesced ones too) finish within the grace;
    /// the admin listener keeps answering `/healthz`, `/readyz` and `/metrics`
    /// all along and closes last.
    pub async fn shutdown(self) {
        self.ready.store(false, Ordering::Release);
        if !self.drain_delay.is_zero() {
            tracing::info!(
                drain_delay_ms = self.drain_delay.as_millis() as u64,
                "still taking calls before the drain"
            );
            tokio::time::sleep(self.drain_delay).await;
        }
        let _ = self.stop_proxy.send(true);
        let _ = self.proxy_task.await;
        // What the last calls sent to Redis in the background lands first
        // (a finish cut off would leave its key locked for the fleet).
        if let Some(redis) = &self.state {
            redis.settle(Duration::from_secs(2)).await;
        }
        let _ = self.stop_admin.send(true);
        let _ = self.admin_task.await;
        self.sampler.abort();
        // The last calls' spans leave before the process does.
        if let Some(traces) = self.traces {
            traces.shutdown(Duration::from_secs(2)).await;
        }
        // What the calls changed, on disk before the process ends.
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || threads.flush(Duration::from_secs(5))).await;
    }
}

/// The runtime's kind, for the ready line (`cli::runtime` picks it).
fn flavor_name(runtime: &tokio::runtime::Handle) -> &'static str {
    match runtime.runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => "current_thread",
        _ => "multi_thread",
    }
}
