//! Reloading the config without a restart (SIGHUP). The file and its secret
//! files are read again; a valid new config's secrets (the Encore key, the
//! Besitos partners and tokens, the inbound token) take effect from the next
//! call on, while calls in flight finish with the ones they started with. An
//! invalid one is refused with one log line naming every problem, and the old
//! one keeps serving. Other settings that changed are named as needing a
//! restart: listeners, pools and layers are built once.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use prometheus::{IntCounterVec, IntGauge};

use crate::config::{Config, Env, Live, Secrets};
use crate::metrics::Metrics;

pub struct Reloader {
    path: PathBuf,
    env: Box<dyn Env + Send + Sync>,
    /// The config last loaded successfully.
    running: Mutex<Config>,
    secrets: Arc<Live<Secrets>>,
    reloads: IntCounterVec,
    last_success: IntGauge,
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// Applied; these sections also changed and take effect after a restart.
    Applied { needs_restart: Vec<&'static str> },
    /// Refused: every problem, the old config still serving.
    Refused(Vec<String>),
}

impl Reloader {
    pub fn new(
        path: PathBuf,
        env: Box<dyn Env + Send + Sync>,
        running: Config,
        secrets: Arc<Live<Secrets>>,
        metrics: &Metrics,
    ) -> Result<Reloader, String> {
        let reloads = metrics.counter_vec(
            "offergate_config_reloads_total",
            "Config reloads (SIGHUP) by result: success or failure.",
            &["result"],
        )?;
        for result in ["success", "failure"] {
            reloads.with_label_values(&[result]);
        }
        let last_success = prometheus::IntGauge::new(
            "offergate_config_last_reload_success_timestamp_seconds",
            "When the config was last loaded successfully (the start counts), Unix seconds.",
        )
        .map_err(|e| e.to_string())?;
        metrics.register_gauge(last_success.clone())?;
        last_success.set(unix_now());
        Ok(Reloader {
            path,
            env,
            running: Mutex::new(running),
            secrets,
            reloads,
            last_success,
        })
    }

    /// Reads the config file again and applies what can change live.
    pub fn reload(&self) -> Reloaded {
        let new = match Config::load(&self.path, self.env.as_ref()) {
            Ok(new) => new,
            Err(e) => {
                self.reloads.with_label_values(&["failure"]).inc();
                tracing::error!(problems = %e.problems.join("; "), "config reload refused; the running config keeps serving");
                return Reloaded::Refused(e.problems);
            }
        };
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let needs_restart = changed_sections(&running, &new);
        self.secrets.set(Secrets::of(&new));
        *running = new;
        self.reloads.with_label_values(&["success"]).inc();
        self.last_success.set(unix_now());
        if needs_restart.is_empty() {
            tracing::info!("config reloaded: secrets and partners in effect from the next call");
        } else {
            tracing::warn!(
                needs_restart = %needs_restart.join(", "),
                "config reloaded: secrets and partners in effect from the next call; other changes need a restart"
            );
        }
        Reloaded::Applied { needs_restart }
    }
}

impl Reloader {
    /// The config file and the secret files the running config reads.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let secrets = Secrets::of(&running);
        let mut files = vec![self.path.clone()];
        let all = std::iter::once(&secrets.encore_key)
            .chain(secrets.partners.values())
            .chain(secrets.inbound_token.as_ref())
            .chain(running.state.redis_password.as_ref());
        for secret in all {
            if let crate::config::SecretSource::File(path) = secret.source() {
                files.push(path.clone());
            }
        }
        files
    }

    /// Reloads whenever a watched file changes, checking every second, for
    /// as long as the process runs (`[reload] watch = true`).
    pub async fn watch(self: Arc<Self>) {
        let stamp = |files: &[PathBuf]| -> Vec<Option<std::time::SystemTime>> {
            files
                .iter()
                .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
                .collect()
        };
        let mut files = self.watched_files();
        let mut seen = stamp(&files);
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let now = stamp(&files);
            if now != seen {
                tracing::info!("a config or secret file changed; reloading");
                self.reload();
                files = self.watched_files();
                seen = stamp(&files);
            }
        }
    }
}

/// The sections whose settings differ, apart from what a reload applies.
fn changed_sections(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    // Compare with the live parts blanked out of both.
    let strip = |c: &Config| {
        let mut c = c.clone();
        c.server.inbound_token = None;
        c.encore.api_key = crate::config::Secret::builtin("");
        c.besitos.partners.clear();
        c
    };
    let (old, new) = (strip(old), strip(new));
    let sections: [(&'static str, String, String); 7] = [
        ("server", toml(&old.server), toml(&new.server)),
        ("log", toml(&old.log), toml(&new.log)),
        ("tls", toml(&old.tls), toml(&new.tls)),
        ("encore", toml(&old.encore), toml(&new.encore)),
        ("besitos", toml(&old.besitos), toml(&new.besitos)),
        ("state", toml(&old.state), toml(&new.state)),
        ("reload", toml(&old.reload), toml(&new.reload)),
    ];
    for (name, before, after) in sections {
        if before != after {
            out.push(name);
        }
    }
    out
}

fn toml<T: serde::Serialize>(v: &T) -> String {
    toml::to_string(v).unwrap_or_default()
}

fn unix_now() -> i64 {
    crate::call::clock::wall_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapEnv;

    #[test]
    fn changes_that_need_a_restart_are_named_and_secrets_are_not() {
        let text = include_str!("../../config/offergate.toml");
        let env = MapEnv::from([("ENCORE_API_KEY", "pk_test_a"), ("BESITOS_TOKEN", "t")]);
        let old = Config::from_toml(text, &env).unwrap();
        let rotated = Config::from_toml(
            text,
            &MapEnv::from([("ENCORE_API_KEY", "pk_test_b"), ("BESITOS_TOKEN", "u")]),
        )
        .unwrap();
        assert_eq!(changed_sections(&old, &rotated), Vec::<&str>::new());
        let grace = Config::from_toml(
            &text.replace("shutdown_grace_ms = 10000", "shutdown_grace_ms = 9000"),
            &env,
        )
        .unwrap();
        assert_eq!(changed_sections(&old, &grace), ["server"]);
    }
}
