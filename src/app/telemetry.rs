//! Log setup: `tracing` to stderr, text or JSON, level from config (or
//! `RUST_LOG`). Stdout is left to the commands' own output (`check-config`,
//! the demo's banner).
//!
//! A log line that cannot be written (the reader of a pipe went away, a full
//! disk, a journald restart) is dropped and counted
//! (`offergate_log_write_failures_total`), as nginx and Envoy drop theirs:
//! the log is never a reason to lose a call. tracing-subscriber's own report
//! of a failed write (an `eprintln!`, which panics when stderr itself is the
//! problem) is turned off.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use std::sync::{Mutex, OnceLock};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::{LogConfig, LogFormat};

/// Log lines dropped because stderr refused them, since the process started.
static WRITE_FAILURES: AtomicU64 = AtomicU64::new(0);

/// How many log lines were dropped so far.
pub fn write_failures() -> u64 {
    WRITE_FAILURES.load(Ordering::Relaxed)
}

/// Stderr that never fails its writer: a refused write is counted and the
/// line dropped.
struct LossyStderr;

impl Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if std::io::stderr().write_all(buf).is_err() {
            WRITE_FAILURES.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// The running log filter, which the admin listener's `PUT /log-level`
/// replaces. One per process, as the subscriber it belongs to.
static FILTER: OnceLock<Filter> = OnceLock::new();

struct Filter {
    handle: reload::Handle<EnvFilter, Registry>,
    /// The directives in effect, as they were given.
    text: Mutex<String>,
}

/// Installs the global subscriber once; later calls (tests) are no-ops.
pub fn init(log: &LogConfig) {
    // RUST_LOG, when set, wins over log.level (a one-off debugging session).
    let (filter, text) = match std::env::var("RUST_LOG").ok().and_then(|t| {
        let f = EnvFilter::try_new(&t).ok()?;
        Some((f, t))
    }) {
        Some(given) => given,
        None => match EnvFilter::try_new(&log.level) {
            Ok(f) => (f, log.level.clone()),
            Err(_) => (EnvFilter::new("info"), "info".into()),
        },
    };
    let (filter, handle) = reload::Layer::new(filter);
    // Colour codes only for a person at a terminal, never into a file or journald.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .log_internal_errors(false)
        .with_writer(|| LossyStderr);
    let lines = match log.format {
        LogFormat::Json => lines.json().flatten_event(true).boxed(),
        LogFormat::Text => lines.boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .try_init();
    if installed.is_ok() {
        let _ = FILTER.set(Filter {
            handle,
            text: Mutex::new(text),
        });
    }
}

/// The log filter in effect (`None` before [`init`], as in tests that
/// install no subscriber).
pub fn log_level() -> Option<String> {
    let f = FILTER.get()?;
    let text = f.text.lock().unwrap_or_else(|p| p.into_inner());
    Some(text.clone())
}

/// Replaces the log filter with `directives` (`debug`, or
/// `info,offergate::access=off`), checked as `[log] level` is.
pub fn set_log_level(directives: &str) -> Result<String, SetLevel> {
    let text = crate::config::check_log_filter(directives).map_err(|p| SetLevel::Invalid(p.0))?;
    let f = FILTER.get().ok_or(SetLevel::NoSubscriber)?;
    let filter = EnvFilter::try_new(&text).map_err(|e| SetLevel::Invalid(e.to_string()))?;
    f.handle
        .reload(filter)
        .map_err(|_| SetLevel::NoSubscriber)?;
    let mut held = f.text.lock().unwrap_or_else(|p| p.into_inner());
    *held = text.clone();
    tracing::info!(level = %text, "log level changed");
    Ok(text)
}

/// Why a new log level was not taken.
#[derive(Debug)]
pub enum SetLevel {
    /// Not a filter; the message says what is wrong.
    Invalid(String),
    /// This process logs through no subscriber of offergate's.
    NoSubscriber,
}

/// Writes `text` and a newline to stderr (a command's own message, a
/// start-up error), never panicking when stderr is closed or full.
pub fn say_err(text: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// Writes `text` and a newline to stdout (a banner, a command's output),
/// never panicking when the reader went away.
pub fn say(text: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stdout(), "{text}");
}
