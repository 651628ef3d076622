//! Secrets (partner keys, tokens) that cannot leak by accident.
//!
//! A [`Secret`] prints as `<redacted>` in `Debug`, `Display` and `Serialize`, so a
//! log line, an error message or `check-config` cannot show it even by mistake. The
//! value is only reachable through [`Secret::expose`], which is called in exactly the
//! places that put it on the wire.

use crate::call::problem::Problem;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::env::Env;

/// Where a secret was read from; shown instead of the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
    /// Built into the binary (only the demo's test credentials).
    Builtin,
}

/// A credential whose value never appears in output.
#[derive(Clone)]
pub struct Secret {
    value: Arc<str>,
    source: SecretSource,
}

impl Secret {
    /// The demo's credentials are public test values; everything else comes from
    /// the environment or a file.
    pub fn builtin(value: &str) -> Self {
        Secret {
            value: Arc::from(value),
            source: SecretSource::Builtin,
        }
    }

    /// Reads a secret from exactly one of an env variable or a file.
    ///
    /// `key` is the config key stem (`encore.api_key`) used in error messages.
    pub fn load(
        key: &str,
        env_name: Option<&str>,
        file: Option<&Path>,
        env: &dyn Env,
    ) -> Result<Secret, Problem> {
        let secret = Self::read(key, env_name, file, env)?;
        // What `run` would refuse when it puts the secret in a header is
        // refused here, so `check-config` and `run` agree.
        if let Some(c) = secret.value.chars().find(|c| !(' '..='~').contains(c)) {
            let what = match &secret.source {
                SecretSource::Env(name) => format!("{key}_env: environment variable {name}"),
                SecretSource::File(path) => format!("{key}_file: {}", path.display()),
                SecretSource::Builtin => key.to_string(),
            };
            return Err(format!(
                "{what} holds a character not allowed in a header (U+{:04X}); a secret is printable ASCII",
                u32::from(c)
            ).into());
        }
        Ok(secret)
    }

    fn read(
        key: &str,
        env_name: Option<&str>,
        file: Option<&Path>,
        env: &dyn Env,
    ) -> Result<Secret, Problem> {
        match (env_name, file) {
            (Some(_), Some(_)) => {
                Err(format!("{key}_env and {key}_file are both set; choose one").into())
            }
            (None, None) => Err(format!(
                "{key}_env or {key}_file is required (secrets are never written inline)"
            )
            .into()),
            (Some(name), None) => match env.var(name) {
                Some(v) if !v.trim().is_empty() => Ok(Secret {
                    value: Arc::from(v.trim()),
                    source: SecretSource::Env(name.to_string()),
                }),
                Some(_) => Err(format!("{key}_env: environment variable {name} is empty").into()),
                None => Err(format!("{key}_env: environment variable {name} is not set").into()),
            },
            (None, Some(path)) => {
                match super::files::read_text(path, super::files::MAX_SECRET_BYTES) {
                    Ok(v) if !v.trim().is_empty() => Ok(Secret {
                        value: Arc::from(v.trim()),
                        source: SecretSource::File(path.to_path_buf()),
                    }),
                    Ok(_) => Err(format!("{key}_file: {} is empty", path.display()).into()),
                    Err(e) => Err(format!("{key}_file: {e}").into()),
                }
            }
        }
    }

    /// The raw value, for putting on the wire. Call sites are few and deliberate.
    pub fn expose(&self) -> &str {
        &self.value
    }

    pub fn source(&self) -> &SecretSource {
        &self.source
    }

    /// Compares in time independent of where the first difference is, so an
    /// inbound token cannot be guessed byte by byte from response timing.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let ours = self.value.as_bytes();
        if ours.len() != candidate.len() {
            return false;
        }
        ours.iter()
            .zip(candidate)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    fn describe(&self) -> String {
        match &self.source {
            SecretSource::Env(name) => format!("<redacted, from env {name}>"),
            SecretSource::File(path) => format!("<redacted, from file {}>", path.display()),
            SecretSource::Builtin => "<redacted, built-in demo credential>".to_string(),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::env::MapEnv;

    #[test]
    fn never_prints_the_value() {
        let env = MapEnv::from([("K", "pk_live_supersecret")]);
        let s = Secret::load("encore.api_key", Some("K"), None, &env).expect("loads");
        assert_eq!(s.expose(), "pk_live_supersecret");
        for shown in [
            format!("{s}"),
            format!("{s:?}"),
            serde_json::to_string(&s).unwrap(),
        ] {
            assert!(!shown.contains("supersecret"), "{shown}");
            assert!(shown.contains("env K"), "{shown}");
        }
    }

    #[test]
    fn missing_or_ambiguous_sources_name_the_key() {
        let env = MapEnv::default();
        let e = Secret::load("encore.api_key", Some("NOPE"), None, &env).unwrap_err();
        assert!(
            e.contains("encore.api_key_env") && e.contains("NOPE"),
            "{e}"
        );
        let e = Secret::load("encore.api_key", None, None, &env).unwrap_err();
        assert!(
            e.contains("encore.api_key_env or encore.api_key_file"),
            "{e}"
        );
        let e = Secret::load("x", Some("A"), Some(Path::new("/f")), &env).unwrap_err();
        assert!(e.contains("both"), "{e}");
    }

    #[test]
    fn reads_files_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tok");
        std::fs::write(&p, "abc123\n").unwrap();
        let s = Secret::load("t", None, Some(&p), &MapEnv::default()).unwrap();
        assert_eq!(s.expose(), "abc123");
        assert!(s.matches(b"abc123"));
        assert!(!s.matches(b"abc124"));
        assert!(!s.matches(b"abc12"));
    }
}
