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

use tracing_subscriber::EnvFilter;

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

/// Installs the global subscriber once; later calls (tests) are no-ops.
pub fn init(log: &LogConfig) {
    // RUST_LOG, when set, wins over log.level (a one-off debugging session).
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a person at a terminal, never into a file or journald.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .log_internal_errors(false)
        .with_writer(|| LossyStderr);
    let _ = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
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
