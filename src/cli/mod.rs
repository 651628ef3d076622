//! The `offergate` command line: `demo`, `run`, `simulate`, `check-config`.

/// `println!` that never panics: a reader that went away (`| head -1`) or a
/// full disk is not a reason to crash with 101.
macro_rules! out {
    ($($t:tt)*) => { $crate::app::telemetry::say(format_args!($($t)*)) };
}

/// `eprintln!` that never panics (stderr closed, full, a dead pipe).
macro_rules! err {
    ($($t:tt)*) => { $crate::app::telemetry::say_err(format_args!($($t)*)) };
}

pub mod demo;
mod healthcheck;
mod simulate;

use healthcheck::healthcheck;
use simulate::simulate;

use crate::call::problem::Problem;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::gateway::Gateway;
use std::sync::Arc;

use crate::app::reload::Reloader;
use crate::config::{self, Config, ProcessEnv};

#[derive(Parser, Debug)]
#[command(
    name = "offergate",
    version,
    about = "Sidecar gateway for the Encore offers and Besitos goals partner APIs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Simulator of both partners plus the gateway in front of it, no config needed.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8787")]
        listen: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:9787")]
        admin_listen: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:8789")]
        simulator_listen: SocketAddr,
        /// Keep shared state in a Redis you name (`--redis-url`): run two demos
        /// on one Redis to see duplicates replayed across replicas.
        #[arg(long, value_parser = ["memory", "redis"], default_value = "memory")]
        state: String,
        /// The Redis for `--state redis`.
        #[arg(long, default_value = "redis://127.0.0.1:6379/0")]
        redis_url: String,
        /// Take the settings of this config file (integrator rules, limits,
        /// state, the thread file...): the partners stay the simulator, the
        /// addresses these flags.
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
    /// Production mode: serve with a config file.
    Run {
        /// Config file (default config/offergate.toml).
        #[arg(short = 'c', long = "config", env = "OFFERGATE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// The partner simulator alone.
    Simulate {
        #[arg(long, default_value = "127.0.0.1:8789")]
        listen: SocketAddr,
        /// Accept exactly this Encore key (default: any pk_test_/pk_live_ key).
        #[arg(long)]
        encore_key: Option<String>,
        /// Accept exactly this Besitos token (default: any non-empty token).
        #[arg(long)]
        besitos_token: Option<String>,
        /// Serve https with this PEM certificate chain (needs --tls-key).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key for --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
    /// Ask a running offergate's admin listener whether it is healthy: exit 0
    /// on a 200 from `/healthz` (or `--path`). For container health checks in
    /// images without a shell or curl.
    Healthcheck {
        /// `host:port`: an address or a name (`localhost:9787`).
        #[arg(long, default_value = "127.0.0.1:9787")]
        admin: String,
        #[arg(long, default_value = "/healthz")]
        path: String,
    },
    /// Validate a config file and print it with secrets redacted.
    CheckConfig {
        #[arg(short = 'c', long = "config", env = "OFFERGATE_CONFIG")]
        config: Option<PathBuf>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => check_config(config),
        Command::Healthcheck { admin, path } => healthcheck(&admin, &path),
        command => {
            let set = std::env::var_os("TOKIO_WORKER_THREADS");
            let workers = match worker_threads(set.map(|v| v.to_string_lossy().into_owned())) {
                Ok(n) => n,
                Err(why) => {
                    err!("offergate: {why}");
                    return ExitCode::from(2);
                }
            };
            let runtime = match runtime(workers) {
                Ok(rt) => rt,
                Err(e) => {
                    err!("offergate: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let code = runtime.block_on(async_main(command));
            // Not a plain drop, which would wait for every blocking read to
            // end: one stuck on a hung mount must not keep a drained process alive.
            runtime.shutdown_timeout(std::time::Duration::from_millis(500));
            code
        }
    }
}

/// How many threads run calls: `TOKIO_WORKER_THREADS` when set (tokio's own
/// name for it), else the CPUs this process may use (a cgroup's CPU limit
/// counts: `cpu: 1` is one).
fn worker_threads(set: Option<String>) -> Result<usize, String> {
    match set {
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
        Some(text) => match text.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "TOKIO_WORKER_THREADS must be a whole number of threads, 1 or more, not {text:?}"
            )),
        },
    }
}

/// With one thread to run calls, a current-thread runtime: the multi-thread
/// scheduler with one worker cost about 14 % more CPU per forwarded call on
/// the one-core load bench (`benches/README.md`), for nothing, since one
/// worker runs one task at a time either way. With more, one worker each.
fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    builder.enable_all().build()
}

fn config_path(p: Option<PathBuf>) -> PathBuf {
    p.unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH))
}

fn check_config(path: Option<PathBuf>) -> ExitCode {
    let path = config_path(path);
    match Config::load(&path, &ProcessEnv) {
        Ok(c) => {
            // Written, not printed: a reader that stops early (`| head -1`)
            // closes the pipe, and that is not an error of ours.
            use std::io::Write;
            let text = format!(
                "# {}: valid. Effective configuration (secrets redacted):\n{}",
                path.display(),
                c.to_redacted_toml()
            );
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            for warning in c.warnings() {
                err!("offergate: warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            use std::io::Write;
            let _ = write!(std::io::stderr(), "offergate: {e}");
            ExitCode::from(2)
        }
    }
}

async fn async_main(command: Command) -> ExitCode {
    let result = match command {
        Command::Demo {
            listen,
            admin_listen,
            simulator_listen,
            state,
            redis_url,
            config,
        } => {
            let state = (state == "redis").then_some(redis_url);
            demo::run(listen, admin_listen, simulator_listen, state, config).await
        }
        Command::Run { config } => run(config_path(config)).await,
        Command::Simulate {
            listen,
            encore_key,
            besitos_token,
            tls_cert,
            tls_key,
        } => simulate(listen, encore_key, besitos_token, tls_cert.zip(tls_key)).await,
        Command::CheckConfig { .. } | Command::Healthcheck { .. } => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            err!("offergate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves when the process is asked to stop: SIGTERM (what Kubernetes and
/// systemd send), SIGINT (Ctrl-C) or SIGQUIT (nginx's graceful stop). The
/// caller then drains. Meanwhile SIGHUP runs `on_hangup` (a config reload),
/// and SIGUSR1 and SIGUSR2, whose default action would kill the process and
/// lose every call in flight, are taken and logged; SIGPIPE is ignored by the
/// Rust runtime itself.
///
/// Everything is registered when this is called (so a signal that comes
/// before the returned future is first polled is not lost); call it first.
pub(crate) fn stop_signal(
    on_hangup: impl Fn() + Send + Sync + 'static,
) -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut hup) = signal(SignalKind::hangup()) {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::info!(signal = "SIGHUP", "signal received");
                    on_hangup();
                }
            });
        }
        for (kind, name) in [
            (SignalKind::user_defined1(), "SIGUSR1"),
            (SignalKind::user_defined2(), "SIGUSR2"),
        ] {
            if let Ok(mut s) = signal(kind) {
                tokio::spawn(async move {
                    while s.recv().await.is_some() {
                        tracing::info!(signal = name, "signal received: nothing to do, serving on");
                    }
                });
            }
        }
        let stops = [
            SignalKind::terminate(),
            SignalKind::interrupt(),
            SignalKind::quit(),
        ]
        .map(signal);
        async move {
            match stops {
                [Ok(mut term), Ok(mut int), Ok(mut quit)] => {
                    let name = tokio::select! {
                        _ = term.recv() => "SIGTERM",
                        _ = int.recv() => "SIGINT",
                        _ = quit.recv() => "SIGQUIT",
                    };
                    tracing::info!(signal = name, "stop requested");
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn run(path: PathBuf) -> Result<(), Problem> {
    // Signals are taken before anything else; a SIGHUP before the gateway
    // runs finds nothing to reload yet.
    let reloader = Arc::new(std::sync::OnceLock::<Arc<Reloader>>::new());
    let on_hangup = {
        let reloader = reloader.clone();
        move || match reloader.get() {
            // On a task of its own: the files are read off the serving
            // workers, and the signal loop goes on meanwhile.
            Some(r) => {
                let r = r.clone();
                tokio::spawn(async move { r.reload().await });
            }
            None => tracing::info!("SIGHUP before start: nothing to reload yet"),
        }
    };
    let stop = stop_signal(on_hangup);
    let (config, digest) =
        Config::load_with_digest(&path, &ProcessEnv).map_err(|e| e.to_string())?;
    crate::app::telemetry::init(&config.log);
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    // With the watch on, the watched files' times as read: a change while
    // the gateway starts is then a change the watch sees.
    let read_stamps = config
        .reload
        .watch
        .then(|| crate::app::reload::stamps_now(&crate::app::reload::files_of(&path, &config)));
    let origin = crate::app::reload::Origin {
        path: path.clone(),
        sha256: digest,
    };
    let gateway = Gateway::start_from(config, Some(origin)).await?;
    let live = Arc::new(Reloader::new(
        path,
        Box::new(ProcessEnv),
        gateway.board.clone(),
        gateway.secrets.clone(),
        &gateway.metrics,
    )?);
    if let Some(read_stamps) = read_stamps {
        tokio::spawn(live.clone().watch(read_stamps));
    }
    let _ = reloader.set(live);
    stop.await;
    drain(gateway).await;
    Ok(())
}

/// Stops a gateway on a stop signal, saying so before and after: the lines
/// an operator waits for in the log, the same for `run` and the demo.
async fn drain(gateway: Gateway) {
    tracing::info!("draining: /readyz answers 503, open calls finish, then exit");
    gateway.shutdown().await;
    tracing::info!("drained; exiting");
}

#[cfg(test)]
mod tests {
    use super::worker_threads;

    #[test]
    fn the_worker_count_is_tokios_variable_when_set_and_a_bad_one_is_refused() {
        assert_eq!(worker_threads(Some("3".into())), Ok(3));
        assert_eq!(worker_threads(Some(" 1\n".into())), Ok(1));
        assert!(worker_threads(None).is_ok_and(|n| n >= 1));
        for bad in ["0", "", "two", "-1", "1.5"] {
            let why = worker_threads(Some(bad.into())).unwrap_err();
            assert!(why.contains("TOKIO_WORKER_THREADS"), "{why}");
        }
    }
}
