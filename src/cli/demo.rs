//! `offergate demo`: the place where the gateway's config meets the simulator.
//! Both partners point at the built-in simulator, which checks exactly the demo
//! credentials below, so the demo needs no config file and no secrets.

use crate::call::problem::Problem;
use std::net::SocketAddr;

use crate::app::gateway::Gateway;
use crate::config::{Config, ConfigError, Env, MapEnv, Secret};
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

/// The demo's key for the pseudonym Encore gets as `chatId` (built in: the
/// demo is not for real end users' ids).
const CHAT_ID_KEY: &str = "offergate-demo-chat-id-key";

/// [`config`], with shared state on the Redis at `redis_url` when given.
pub fn config_on(
    listen: SocketAddr,
    admin_listen: SocketAddr,
    simulator: SocketAddr,
    redis_url: Option<&str>,
) -> Result<Config, ConfigError> {
    let mut config = demo_of(
        toml::Table::new(),
        listen,
        admin_listen,
        simulator,
        redis_url,
    )?;
    // Without a file, the demo keeps its conversations in memory: it
    // leaves no file behind (its banner says what that forgets).
    config.state.thread_file = None;
    Ok(config)
}

/// The demo with the settings of the config file `text` (`demo -c`): the
/// integrator rules, limits, resilience, idempotency, state and thread file
/// as the file says, but the partners are the simulator with the demo
/// credentials, the addresses are the command line's, and no inbound or
/// admin token is asked for (it listens where the flags say, loopback by
/// default). `OFFERGATE_*` overrides apply as for `run`.
pub fn config_from_file(
    text: &str,
    listen: SocketAddr,
    admin_listen: SocketAddr,
    simulator: SocketAddr,
    redis_url: Option<&str>,
) -> Result<Config, ConfigError> {
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::one(format!("not TOML: {e}")))?;
    demo_of(doc, listen, admin_listen, simulator, redis_url)
}

/// `doc`'s table `name`, made (or made a table) if it is not one.
fn section<'a>(doc: &'a mut toml::Table, name: &str) -> &'a mut toml::Table {
    let entry = doc
        .entry(name.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if !entry.is_table() {
        *entry = toml::Value::Table(toml::Table::new());
    }
    match entry {
        toml::Value::Table(t) => t,
        _ => unreachable!("made a table above"),
    }
}

/// `doc` with the demo's partners, addresses and credentials put in.
fn demo_of(
    mut doc: toml::Table,
    listen: SocketAddr,
    admin_listen: SocketAddr,
    simulator: SocketAddr,
    redis_url: Option<&str>,
) -> Result<Config, ConfigError> {
    use toml::Value;
    let server = section(&mut doc, "server");
    server.insert("listen".into(), Value::String(listen.to_string()));
    server.insert(
        "admin_listen".into(),
        Value::String(admin_listen.to_string()),
    );
    server
        .entry("shutdown_grace_ms")
        .or_insert(Value::Integer(2000));
    for key in [
        "inbound_token_env",
        "inbound_token_file",
        "admin_token_env",
        "admin_token_file",
    ] {
        server.remove(key);
    }
    let simulator = Value::String(format!("http://{simulator}"));
    let encore = section(&mut doc, "encore");
    encore.insert("base_url".into(), simulator.clone());
    for key in ["api_key_file", "chat_id_key_file"] {
        encore.remove(key);
    }
    encore.insert(
        "api_key_env".into(),
        Value::String("DEMO_ENCORE_KEY".into()),
    );
    encore.insert(
        "chat_id_key_env".into(),
        Value::String("DEMO_CHAT_ID_KEY".into()),
    );
    let besitos = section(&mut doc, "besitos");
    besitos.insert("base_url".into(), simulator);
    let mut partner = toml::Table::new();
    partner.insert("id".into(), Value::String(BESITOS_PARTNER.into()));
    partner.insert(
        "token_env".into(),
        Value::String("DEMO_BESITOS_TOKEN".into()),
    );
    besitos.insert("partners".into(), Value::Array(vec![Value::Table(partner)]));
    if let Some(url) = redis_url {
        let state = section(&mut doc, "state");
        state.insert("backend".into(), Value::String("redis".into()));
        state.insert("redis_url".into(), Value::String(url.into()));
    }
    let mut env = MapEnv::from([
        ("DEMO_ENCORE_KEY", ENCORE_KEY),
        ("DEMO_CHAT_ID_KEY", CHAT_ID_KEY),
        ("DEMO_BESITOS_TOKEN", BESITOS_TOKEN),
    ]);
    // The process's own overrides and the variables the state directory
    // is found by, as `run` reads them.
    for (k, v) in crate::config::ProcessEnv.all() {
        env.0.entry(k).or_insert(v);
    }
    let text = toml::to_string(&doc).map_err(|e| ConfigError::one(e.to_string()))?;
    let mut config = Config::from_toml(&text, &env)?;
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
    file: Option<std::path::PathBuf>,
) -> Result<(), Problem> {
    // The demo does not reload: a file it was given is read once, under the
    // demo's own keys and simulator, which a reload would not keep.
    let shown = file.as_ref().map(|f| f.display().to_string());
    let stop = super::stop_signal(move || match &shown {
        Some(file) => tracing::info!(
            "the demo does not reload {file}: stop and start it again to apply a change"
        ),
        None => tracing::info!("the demo runs on its embedded config: nothing to reload"),
    });
    let sim = Simulator::start(sim_addr, simulator_config()).await?;
    let mut origin = None;
    let config = match &file {
        None => config_on(listen, admin, sim.addr, redis_url.as_deref()),
        Some(path) => {
            let (text, sha256) = Config::read_file(path).map_err(|e| e.to_string())?;
            // The file the console and the ready line name, with its digest.
            origin = Some(crate::app::reload::Origin {
                path: path.clone(),
                sha256,
            });
            config_from_file(&text, listen, admin, sim.addr, redis_url.as_deref())
                .map_err(|e| e.in_file(path))
        }
    }
    .map_err(|e| e.to_string())?;
    let keeps = match (&config.state.backend, &config.state.thread_file) {
        (crate::config::StateBackend::Redis, _) => None,
        (_, Some(file)) => Some(format!(
            "threads and opt-outs in {} (kept across restarts); answers to messages in memory",
            file.path.display()
        )),
        (_, None) => Some("threads, opt-outs and answers in memory only: a restart forgets them (a mid-thread message then looks like a first one, a redelivery is decided again); `offergate demo -c config/offergate.toml` keeps them in a file as `run` does".to_string()),
    };
    let state_line = config.state.describe();
    crate::app::telemetry::init(&config.log);
    let gateway = Gateway::start_from(config, origin).await?;
    let proxy = gateway.proxy_addr;
    out!("offergate demo: the gateway in front of a built-in simulator of both partners");
    if let Some(path) = &file {
        out!(
            "  config     {} (its settings; partners: the simulator)",
            path.display()
        );
    }
    match &keeps {
        None => out!("  state      {state_line} (shared with every replica on it)"),
        Some(keeps) => out!("  keeps      {keeps}"),
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
    // A message id of this start's own: after a restart on a thread file the
    // printed message is a new one in a kept thread, not one already handled.
    let now_ms = crate::call::clock::wall_ms();
    out!(
        "curl -s -X POST http://{proxy}/offergate/v1/encore/messages -H 'Content-Type: application/json' -d '{{\"clientId\":\"client-42\",\"chatId\":\"15550001111:15551234567\",\"messageId\":\"wamid.demo-{now_ms}\",\"sentAt\":{},\"text\":\"hi\",\"attributes\":{{\"countryCode\":\"US\",\"language\":\"en\",\"platform\":\"ios\"}}}}'",
        now_ms / 1000
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
    super::drain(gateway).await;
    sim.shutdown().await;
    Ok(())
}
