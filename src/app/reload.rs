//! Reloading the config without a restart (SIGHUP). The file and its secret
//! files are read again; a valid new config's secrets (the Encore key, the
//! Besitos partners and tokens, the inbound token) take effect from the next
//! call on, while calls in flight finish with the ones they started with. An
//! invalid one is refused with one log line naming every problem, and the old
//! one keeps serving. Other settings that changed are named as needing a
//! restart: listeners, pools and layers are built once.
//!
//! The files are read on tokio's blocking pool, never on a serving worker,
//! and under [`READ_TIMEOUT`]: a file on a stuck mount refuses the reload
//! after the timeout while calls, health checks and the drain go on. While
//! such a read is still stuck, later reloads are refused at once rather than
//! pile up threads behind it. A reload asked for while a read is under way
//! (a SIGHUP right after an edit the watch has seen too) joins it: the files
//! are read once more when that read ends, so the newest files are applied,
//! and nothing is refused.

use crate::call::problem::Problem;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge};

use crate::config::{Config, ConfigError, Env, Live, Secrets};
use crate::metrics::Metrics;

/// The file a config was read from, and its SHA-256 (hex).
#[derive(Clone, Debug)]
pub struct Origin {
    pub path: std::path::PathBuf,
    pub sha256: String,
}

/// The config last loaded successfully, where it came from, and how the
/// last reload went: what the admin console shows.
pub struct ConfigBoard {
    loaded: Mutex<Loaded>,
}

pub struct Loaded {
    pub config: Config,
    /// The file, and its SHA-256; `None` for a config built in (the demo's).
    pub origin: Option<Origin>,
    /// Unix ms.
    pub loaded_at_ms: i64,
    pub last_reload: Option<ReloadReport>,
}

/// How a reload went.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReloadReport {
    pub at_ms: i64,
    /// `success` or `failure`.
    pub result: &'static str,
    /// Why it was refused.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// Sections that changed and take effect after a restart.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub needs_restart: Vec<&'static str>,
}

impl ConfigBoard {
    pub fn new(config: Config, origin: Option<Origin>) -> ConfigBoard {
        ConfigBoard {
            loaded: Mutex::new(Loaded {
                config,
                origin,
                loaded_at_ms: crate::call::clock::wall_ms(),
                last_reload: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads what is loaded now, under its lock (nothing is copied).
    pub fn read<R>(&self, f: impl FnOnce(&Loaded) -> R) -> R {
        f(&self.lock())
    }
}

pub struct Reloader {
    path: PathBuf,
    env: Box<dyn Env + Send + Sync>,
    /// The config last loaded successfully, which the console shows.
    board: Arc<ConfigBoard>,
    secrets: Arc<Live<Secrets>>,
    reloads: IntCounterVec,
    last_success: IntGauge,
    /// A read of the files is under way (or stuck).
    reading: AtomicBool,
    /// The read under way has outlived [`READ_TIMEOUT`].
    stuck: AtomicBool,
    /// Asked for during the read under way: read once more after it.
    again: AtomicBool,
}

/// How long the config and its secret files may take to read.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// Applied; these sections also changed and take effect after a restart.
    Applied { needs_restart: Vec<&'static str> },
    /// Refused: every problem, the old config still serving.
    Refused(Vec<String>),
    /// Joined the reload under way, which reads the files once more.
    Joined,
}

impl Reloader {
    pub fn new(
        path: PathBuf,
        env: Box<dyn Env + Send + Sync>,
        board: Arc<ConfigBoard>,
        secrets: Arc<Live<Secrets>>,
        metrics: &Metrics,
    ) -> Result<Reloader, Problem> {
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
            board,
            secrets,
            reloads,
            last_success,
            reading: AtomicBool::new(false),
            stuck: AtomicBool::new(false),
            again: AtomicBool::new(false),
        })
    }

    /// Reads the config file again, off the serving workers and within
    /// [`READ_TIMEOUT`], and applies what can change live.
    pub async fn reload(self: &Arc<Self>) -> Reloaded {
        if self.reading.swap(true, Ordering::AcqRel) {
            if self.stuck.load(Ordering::Acquire) {
                return self.refuse(vec![
                    "an earlier reload is still reading its files (a stuck mount?); try again later"
                        .into(),
                ]);
            }
            self.again.store(true, Ordering::Release);
            tracing::info!("a reload is under way; it reads the files once more when it ends");
            return Reloaded::Joined;
        }
        loop {
            let done = self.read_and_apply().await;
            // Asked for again meanwhile: once more, unless another reload
            // has started since (it reads the newest files) or this read
            // is stuck.
            if !self.again.swap(false, Ordering::AcqRel)
                || self.reading.swap(true, Ordering::AcqRel)
            {
                return done;
            }
        }
    }

    /// One read of the files, `reading` taken; the read frees it when it
    /// ends, however late.
    async fn read_and_apply(self: &Arc<Self>) -> Reloaded {
        self.stuck.store(false, Ordering::Release);
        let me = self.clone();
        let read = tokio::task::spawn_blocking(move || {
            let loaded = Config::load_with_digest(&me.path, me.env.as_ref());
            if let Ok((config, _)) = &loaded {
                for warning in config.warnings() {
                    tracing::warn!("{warning}");
                }
            }
            me.reading.store(false, Ordering::Release);
            loaded
        });
        match tokio::time::timeout(READ_TIMEOUT, read).await {
            Ok(Ok(loaded)) => self.apply(loaded),
            Ok(Err(_)) => {
                // The read panicked: it is over, so the next may start.
                self.reading.store(false, Ordering::Release);
                self.refuse(vec!["reading the config failed unexpectedly".into()])
            }
            Err(_) => {
                self.stuck.store(true, Ordering::Release);
                self.refuse(vec![format!(
                    "reading {} and its secret files took longer than {} s",
                    self.path.display(),
                    READ_TIMEOUT.as_secs()
                )])
            }
        }
    }

    fn refuse(&self, problems: Vec<String>) -> Reloaded {
        self.reloads.with_label_values(&["failure"]).inc();
        self.board.lock().last_reload = Some(ReloadReport {
            at_ms: crate::call::clock::wall_ms(),
            result: "failure",
            problems: problems.clone(),
            needs_restart: Vec::new(),
        });
        tracing::error!(problems = %problems.join("; "), "config reload refused; the running config keeps serving");
        Reloaded::Refused(problems)
    }

    /// Applies a config read from the files, or refuses it.
    fn apply(&self, loaded: Result<(Config, String), ConfigError>) -> Reloaded {
        let (new, sha256) = match loaded {
            Ok(new) => new,
            Err(e) => return self.refuse(e.problems),
        };
        let mut running = self.board.lock();
        let needs_restart = changed_sections(&running.config, &new);
        self.secrets.set(Secrets::of(&new));
        let now = crate::call::clock::wall_ms();
        *running = Loaded {
            config: new,
            origin: Some(Origin {
                path: self.path.clone(),
                sha256,
            }),
            loaded_at_ms: now,
            last_reload: Some(ReloadReport {
                at_ms: now,
                result: "success",
                problems: Vec::new(),
                needs_restart: needs_restart.clone(),
            }),
        };
        drop(running);
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
        self.board.read(|l| files_of(&self.path, &l.config))
    }

    /// Reloads whenever a watched file changes, checking every second, for
    /// as long as the process runs (`[reload] watch = true`).
    /// `read_at_start`: the files' times taken as the running config was
    /// read ([`stamps_now`]),
    /// so a change made while the gateway was starting is seen too. The
    /// files' times are read off the serving workers; a round that cannot
    /// read them within [`READ_TIMEOUT`] is skipped.
    pub async fn watch(self: Arc<Self>, read_at_start: Stamps) {
        let mut files = self.watched_files();
        let mut seen = Some(read_at_start);
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let Some(now) = stamps(files.clone()).await else {
                continue;
            };
            if Some(&now) != seen.as_ref() {
                tracing::info!("a config or secret file changed; reloading");
                self.reload().await;
                files = self.watched_files();
                seen = stamps(files.clone()).await;
            }
        }
    }
}

/// The config file at `path` and the secret files `config` reads.
pub fn files_of(path: &Path, config: &Config) -> Vec<PathBuf> {
    let secrets = Secrets::of(config);
    let mut files = vec![path.to_path_buf()];
    let all = std::iter::once(&secrets.encore_key)
        .chain(secrets.partners.values())
        .chain(secrets.inbound_token.as_ref())
        .chain(secrets.admin_token.as_ref())
        .chain(config.state.redis_password.as_ref());
    for secret in all {
        if let crate::config::SecretSource::File(path) = secret.source() {
            files.push(path.clone());
        }
    }
    files
}

/// Each watched file's modification time, `None` where it cannot be read.
pub type Stamps = Vec<Option<std::time::SystemTime>>;

/// The stamps of `files` now, read here (a blocking read).
pub fn stamps_now(files: &[PathBuf]) -> Stamps {
    files
        .iter()
        .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .collect()
}

/// [`stamps_now`] off the serving workers, or `None` when reading them took
/// longer than [`READ_TIMEOUT`].
async fn stamps(files: Vec<PathBuf>) -> Option<Stamps> {
    let read = tokio::task::spawn_blocking(move || stamps_now(&files));
    match tokio::time::timeout(READ_TIMEOUT, read).await {
        Ok(Ok(stamps)) => Some(stamps),
        _ => {
            tracing::warn!("the watched files could not be read in time; checking again shortly");
            None
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
        c.server.admin_token = None;
        c.encore.api_key = crate::config::Secret::builtin("");
        c.besitos.partners.clear();
        c
    };
    let (old, new) = (strip(old), strip(new));
    let sections: [(&'static str, String, String); 8] = [
        ("server", toml(&old.server), toml(&new.server)),
        ("log", toml(&old.log), toml(&new.log)),
        ("tls", toml(&old.tls), toml(&new.tls)),
        ("encore", toml(&old.encore), toml(&new.encore)),
        ("besitos", toml(&old.besitos), toml(&new.besitos)),
        ("state", toml(&old.state), toml(&new.state)),
        ("reload", toml(&old.reload), toml(&new.reload)),
        ("tracing", toml(&old.tracing), toml(&new.tracing)),
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
        let text = &crate::config::shipped_reading_env();
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
