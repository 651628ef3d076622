//! Environment access behind a trait, so tests feed a map instead of mutating the
//! process environment, and the `OFFERGATE_*` override rules live in one place.
//!
//! Override rule: `OFFERGATE_SECTION__KEY=value` sets `[section] key = value`
//! (`__` separates table levels, names are lower-cased). The value is read as a
//! TOML value when it parses as one (`8080`, `true`, `["a","b"]`), else as a string.
//! `OFFERGATE_CONFIG` names the file and is not an override.

use crate::call::problem::Problem;
use std::collections::BTreeMap;

/// Read access to environment variables.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
    /// All variables, for finding overrides.
    fn all(&self) -> Vec<(String, String)>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn all(&self) -> Vec<(String, String)> {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect()
    }
}

/// A fixed set of variables, for tests and the demo.
#[derive(Default, Clone)]
pub struct MapEnv(pub BTreeMap<String, String>);

impl<const N: usize> From<[(&str, &str); N]> for MapEnv {
    fn from(pairs: [(&str, &str); N]) -> Self {
        MapEnv(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }
}

impl Env for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
    fn all(&self) -> Vec<(String, String)> {
        self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

const PREFIX: &str = "OFFERGATE_";
const NOT_OVERRIDES: &[&str] = &["OFFERGATE_CONFIG"];

/// Applies `OFFERGATE_*` overrides onto a parsed TOML document; answers
/// each key it set with the variable that set it, so a problem with that key
/// names the variable rather than the file.
pub fn apply_overrides(
    doc: &mut toml::Table,
    env: &dyn Env,
) -> Result<Vec<(Vec<String>, String)>, Problem> {
    let mut set = Vec::new();
    let mut vars = env.all();
    vars.sort();
    for (name, raw) in vars {
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        if NOT_OVERRIDES.contains(&name.as_str()) || rest.is_empty() {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if path.iter().any(|p| p.is_empty()) {
            return Err(format!("{name}: empty key segment in override name").into());
        }
        let value = parse_value(&raw);
        let (leaf, tables) = path.split_last().expect("split of non-empty");
        let mut table = &mut *doc;
        for seg in tables {
            let entry = table
                .entry(seg.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(format!(
                        "{name}: `{seg}` is not a table in the config, cannot set `{leaf}` under it"
                    )
                    .into())
                }
            };
        }
        table.insert(leaf.clone(), value);
        set.push((path, name));
    }
    Ok(set)
}

fn parse_value(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_nested_keys_with_typed_values() {
        let mut doc: toml::Table = "[server]\nlisten = \"127.0.0.1:1\"\n".parse().unwrap();
        let env = MapEnv::from([
            ("OFFERGATE_SERVER__LISTEN", "127.0.0.1:2"),
            ("OFFERGATE_SERVER__BODY_LIMIT_BYTES", "1024"),
            ("OFFERGATE_ENCORE__BASE_URL", "http://127.0.0.1:9"),
            ("OFFERGATE_CONFIG", "ignored.toml"),
            ("OTHER", "x"),
        ]);
        apply_overrides(&mut doc, &env).unwrap();
        assert_eq!(doc["server"]["listen"].as_str(), Some("127.0.0.1:2"));
        assert_eq!(doc["server"]["body_limit_bytes"].as_integer(), Some(1024));
        assert_eq!(
            doc["encore"]["base_url"].as_str(),
            Some("http://127.0.0.1:9")
        );
        assert!(!doc.contains_key("config"));
    }

    #[test]
    fn refuses_override_through_a_scalar() {
        let mut doc: toml::Table = "x = 1\n".parse().unwrap();
        let env = MapEnv::from([("OFFERGATE_X__Y", "2")]);
        let e = apply_overrides(&mut doc, &env).unwrap_err();
        assert!(e.contains("OFFERGATE_X__Y"), "{e}");
    }
}
