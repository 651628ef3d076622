//! `offergate simulate`: the partner simulator alone.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::stop_signal;
use crate::call::problem::Problem;
use crate::config;
use crate::simulator::{self, SimConfig, Simulator};

pub(super) async fn simulate(
    listen: SocketAddr,
    encore_key: Option<String>,
    besitos_token: Option<String>,
    tls: Option<(PathBuf, PathBuf)>,
) -> Result<(), Problem> {
    let stop = stop_signal(|| tracing::info!("the simulator has no config to reload"));
    crate::app::telemetry::init(&config::LogConfig {
        level: "warn".into(),
        format: config::LogFormat::Text,
        access_log: false,
    });
    let tls = match tls {
        Some((cert, key)) => {
            let read = |p: &PathBuf| {
                std::fs::read(p).map_err(|e| Problem(format!("cannot read {}: {e}", p.display())))
            };
            Some(simulator::tls_acceptor(&read(&cert)?, &read(&key)?)?)
        }
        None => None,
    };
    let sim = Simulator::start(
        listen,
        SimConfig {
            encore_key,
            besitos_token,
            tls,
        },
    )
    .await?;
    out!("offergate simulator on {}", sim.origin());
    out!(
        "  GET {0}/__sim/calls   POST {0}/__sim/faults   POST {0}/__sim/reset",
        sim.origin()
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    stop.await;
    sim.shutdown().await;
    Ok(())
}
