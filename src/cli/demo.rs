//! `offergate demo`: the place where the gateway's config meets the simulator.
//! Both partners point at the built-in simulator, which checks exactly the demo
//! credentials below, so the demo needs no config file and no secrets.

use crate::call::problem::Problem;
use std::net::SocketAddr;

use crate::app::gateway::Gateway;
use crate::config::{Config, ConfigError, MapEnv, Secret};
use crate::simulator::{SimConfig, Simulator};

/// The demo's Encore key; the simulator in the demo accepts exactly this.
pub const ENCORE_KEY: &str = "pk_test_demo";
/// The demo's Besitos partner id.
pub const BESITOS_PARTNER: &str = "demo";
/// The demo's Besitos token.
pub const BESITOS_TOKEN: &str = "demo-token";

/// The simulator as the demo runs it: the demo credentials only.
pub fn simulator_config() -> SimConfig {
    SimConfig {
        encore_key: Some(ENCORE_KEY.into()),
        besitos_token: Some(BESITOS_TOKEN.into()),
        tls: None,
    }
}

/// The embedded configuration of `offergate demo`: both partners point at the
/// simulator at `simulator`, with the demo credentials. Built through the same
/// loader as a file, so it has every default a file would have.
pub fn config(
    listen: SocketAddr,
    admin_listen: SocketAddr,
    simulator: SocketAddr,
) -> Result<Config, ConfigError> {
    config_on(listen, admin_listen, simulator, None)
}

/// [`config`], with shared state on the Redis at `redis_url` when given.
/// The demo's key for the pseudonym Encore gets as `chatId` (built in: the
/// demo is not for real end users' ids).
const CHAT_ID_KEY: &str = "offergate-demo-chat-id-key";

pub fn config_on(
    listen: SocketAddr,
    admin_listen: SocketAddr,
    simulator: SocketAddr,
    redis_url: Option<&str>,
) -> Result<Config, ConfigError> {
    let state = redis_url.map_or(String::new(), |url| {
        format!("[state]\nbackend = \"redis\"\nredis_url = \"{url}\"\n")
    });
    let toml = format!(
        "[server]\nlisten = \"{listen}\"\nadmin_listen = \"{admin_listen}\"\nshutdown_grace_ms = 2000\n\
         [encore]\nbase_url = \"http://{simulator}\"\napi_key_env = \"DEMO_ENCORE_KEY\"\nchat_id_key_env = \"DEMO_CHAT_ID_KEY\"\n\
         [besitos]\nbase_url = \"http://{simulator}\"\n\
         [[besitos.partners]]\nid = \"{BESITOS_PARTNER}\"\ntoken_env = \"DEMO_BESITOS_TOKEN\"\n{state}"
    );
    let env = MapEnv::from([
        ("DEMO_ENCORE_KEY", ENCORE_KEY),
        ("DEMO_CHAT_ID_KEY", CHAT_ID_KEY),
        ("DEMO_BESITOS_TOKEN", BESITOS_TOKEN),
    ]);
    let mut config = Config::from_toml(&toml, &env)?;
    // A demo keeps its conversations in memory: it leaves no file behind.
    config.state.thread_file = None;
    config.encore.api_key = Secret::builtin(ENCORE_KEY);
    config.encore.chat_id_key = Some(Secret::builtin(CHAT_ID_KEY));
    for token in config.besitos.partners.values_mut() {
        *token = Secret::builtin(BESITOS_TOKEN);
    }
    Ok(config)
}

pub async fn run(
    listen: SocketAddr,
    admin: SocketAddr,
    sim_addr: SocketAddr,
    redis_url: Option<String>,
) -> Result<(), Problem> {
    let stop = super::stop_signal(|| {
        tracing::info!("the demo runs on its embedded config: nothing to reload")
    });
    let sim = Simulator::start(sim_addr, simulator_config()).await?;
    let config =
        config_on(listen, admin, sim.addr, redis_url.as_deref()).map_err(|e| e.to_string())?;
    crate::app::telemetry::init(&config.log);
    let gateway = Gateway::start(config).await?;
    let proxy = gateway.proxy_addr;
    out!("offergate demo: the gateway in front of a built-in simulator of both partners");
    if let Some(url) = &redis_url {
        out!("  state      redis at {url} (shared with every replica on it)");
    }
    out!("  proxy      http://{proxy}");
    out!(
        "  admin      http://{}/  (the console; /status /metrics /healthz /readyz)",
        gateway.admin_addr
    );
    out!(
        "  simulator  {}  (Encore key {}, Besitos partner {} with token {})",
        sim.origin(),
        ENCORE_KEY,
        BESITOS_PARTNER,
        BESITOS_TOKEN
    );
    out!("");
    out!("Ask for an offer (no key needed: offergate injects it):");
    out!(
        "curl -s -X POST http://{proxy}/encore/publisher/sdk/v1/offers/message -H 'Content-Type: application/json' -d '{{\"clientId\":\"client-42\",\"chatId\":\"8b3f7c10-9d4e-4d2a-91a1-3f0e8a1c0b5d\",\"attributes\":{{\"countryCode\":\"US\",\"language\":\"en\",\"platform\":\"ios\"}}}}'"
    );
    out!("Hand over an inbound message: offergate keeps the thread, decides, calls Encore and writes the text:");
    out!(
        "curl -s -X POST http://{proxy}/offergate/v1/encore/messages -H 'Content-Type: application/json' -d '{{\"clientId\":\"client-42\",\"chatId\":\"15550001111:15551234567\",\"messageId\":\"wamid.demo1\",\"sentAt\":{},\"text\":\"hi\",\"attributes\":{{\"countryCode\":\"US\",\"language\":\"en\",\"platform\":\"ios\"}}}}'",
        crate::call::clock::wall_ms() / 1000
    );
    out!("Ask for upcoming-goal reminders:");
    out!(
        "curl -s -X POST 'http://{proxy}/data/messages/{}/upcoming-goals?page=1' -H 'Content-Type: application/json' -d '{{\"hours_to\":48}}'",
        BESITOS_PARTNER
    );
    out!("");
    out!("Ctrl-C to stop.");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    stop.await;
    gateway.shutdown().await;
    sim.shutdown().await;
    Ok(())
}
