//! A config's problems, reported together.

use std::fmt;
use std::path::Path;

/// Every problem in a config, each with the key it concerns.
#[derive(Debug)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub(crate) fn one(msg: impl fmt::Display) -> Self {
        ConfigError {
            problems: vec![msg.to_string()],
        }
    }

    /// Each problem named by the file it was found in.
    pub(crate) fn in_file(mut self, path: &Path) -> Self {
        for p in &mut self.problems {
            *p = format!("{}: {p}", path.display());
        }
        self
    }
}

/// A TOML syntax error as its line, column and message, never the line's
/// text: an unterminated `redis_url = "redis://:password@...` must not be
/// printed back (toml's own message quotes the line).
pub(super) fn syntax_error(text: &str, e: &toml::de::Error) -> String {
    let at = e.span().map_or(0, |span| span.start).min(text.len());
    let before = &text.as_bytes()[..at];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let column = at
        - before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |nl| nl + 1)
        + 1;
    let message = e
        .message()
        .lines()
        .next()
        .unwrap_or("")
        .trim_end_matches('.');
    format!("not valid TOML at line {line}, column {column}: {message}")
}
