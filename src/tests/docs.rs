//! The docs are checked against the code: every source path they name
//! exists, and every key the configuration reference names is one
//! `check-config` prints, and the reverse.

use std::collections::BTreeSet;
use std::path::Path;

/// Every page a reader finds: the root's (README, SECURITY), `docs/`'s and
/// the benches' README.
fn pages(root: &Path) -> Vec<(String, String)> {
    let in_dir = |dir: &str| -> Vec<String> {
        let mut found: Vec<String> = std::fs::read_dir(root.join(dir))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.ends_with(".md"))
                    .map(|n| format!("{dir}/{n}"))
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        found
    };
    let mut names: Vec<String> = in_dir(".");
    names.extend(in_dir("docs"));
    names.extend(in_dir("benches"));
    names
        .into_iter()
        .map(|n| {
            let text = std::fs::read_to_string(root.join(&n)).expect("readable");
            (n, text)
        })
        .collect()
}

/// What `text` puts in backticks.
fn quoted(text: &str) -> impl Iterator<Item = &str> {
    text.split('`').skip(1).step_by(2)
}

/// Whether `word` names a file of the repository: a path of plain
/// characters ending in a source or config extension, or a folder.
fn names_a_file(word: &str) -> bool {
    const KINDS: [&str; 9] = [
        ".rs", ".sh", ".py", ".toml", ".yml", ".yaml", ".md", ".lua", ".service",
    ];
    let plain = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c));
    plain
        && word.contains('/')
        && !word.starts_with('/')
        && !word.contains("//")
        && (KINDS.iter().any(|k| word.ends_with(k)) || word.ends_with('/'))
}

/// Every path the pages name that is found neither from the repository's
/// root, nor from `src/`, nor from one of its modules (a page about
/// `partners` names its `encore/`).
fn missing_paths(root: &Path) -> Vec<String> {
    let mut from = vec![root.to_path_buf(), root.join("src")];
    if let Ok(modules) = std::fs::read_dir(root.join("src")) {
        from.extend(
            modules
                .filter_map(|e| Some(e.ok()?.path()))
                .filter(|p| p.is_dir()),
        );
    }
    let mut missing = Vec::new();
    for (page, text) in pages(root) {
        for word in quoted(&text).filter(|w| names_a_file(w)) {
            let found = from.iter().any(|dir| dir.join(word).exists());
            if !found {
                missing.push(format!("{page}: `{word}`"));
            }
        }
    }
    missing
}

#[test]
fn every_path_the_docs_name_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let missing = missing_paths(root);
    assert!(
        missing.is_empty(),
        "named but missing:\n{}",
        missing.join("\n")
    );
}

#[test]
fn a_path_that_does_not_exist_is_found() {
    let copy = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(copy.path().join("docs")).expect("mkdir");
    std::fs::write(copy.path().join("README.md"), "see `src/nowhere.rs`").expect("write");
    std::fs::write(copy.path().join("docs/a.md"), "and `deploy/`").expect("write");
    let missing = missing_paths(copy.path());
    assert_eq!(missing.len(), 2, "{missing:?}");
}

/// The minimal config the key checks start from, and its one secret.
const MINIMAL: &str = r#"
[encore]
base_url = "http://127.0.0.1:9"
api_key_env = "KEY"
chat_id_key_env = "KEY"
[besitos]
base_url = "http://127.0.0.1:9"
[[besitos.partners]]
id = "p"
token_env = "KEY"
"#;

fn env() -> crate::config::MapEnv {
    crate::config::MapEnv::from([("KEY", "pk_test_docs_0123456789")])
}

/// Every key `check-config` prints for a config with every section: the
/// section's path and the key, as `section.key`.
fn printed_keys() -> BTreeSet<String> {
    let config =
        crate::config::Config::from_toml(MINIMAL, &env()).unwrap_or_else(|e| panic!("{e}"));
    let printed: toml::Table = toml::from_str(&config.to_redacted_toml()).expect("TOML");
    let mut keys = BTreeSet::new();
    fn walk(at: &str, table: &toml::Table, keys: &mut BTreeSet<String>) {
        for (k, v) in table {
            let path = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            match v {
                toml::Value::Table(t) => walk(&path, t, keys),
                toml::Value::Array(a) if a.iter().all(|x| x.is_table()) && !a.is_empty() => {
                    for t in a.iter().filter_map(|x| x.as_table()) {
                        walk(&path, t, keys);
                    }
                }
                _ => {
                    keys.insert(path);
                }
            }
        }
    }
    walk("", &printed, &mut keys);
    keys
}

/// Every printed key's name is in the configuration reference, in
/// backticks.
#[test]
fn the_configuration_reference_names_every_key() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let reference = std::fs::read_to_string(root.join("docs/configuration.md")).expect("readable");
    let named: BTreeSet<&str> = quoted(&reference).collect();
    let keys = printed_keys();
    assert!(keys.len() > 50, "{keys:?}");
    let unnamed: Vec<&String> = keys
        .iter()
        // Partners print by their ids: the user's, not keys.
        .filter(|k| !k.starts_with("besitos.partners."))
        .filter(|k| {
            let last = k.rsplit('.').next().unwrap_or(k);
            // A secret prints under its name (`api_key`) and is set by
            // `api_key_env` or `api_key_file`; a rate's parts are written
            // `partner_per_second` and `partner_burst`.
            let forms = [
                last.to_string(),
                format!("{last}_env"),
                format!("{last}_file"),
            ];
            !forms.iter().any(|f| named.contains(f.as_str()))
                && !named.iter().any(|n| n.ends_with(&format!("_{last}")))
        })
        .collect();
    assert!(
        unnamed.is_empty(),
        "keys the reference does not name: {unnamed:?}"
    );
}

/// Whether `key` under `section` (`server`, `encore.retry`,
/// `besitos.partners`) is one the config takes: set alone on top of
/// [`MINIMAL`], it is not refused as unknown.
fn takes(section: &str, key: &str) -> bool {
    let mut doc: toml::Table = toml::from_str(MINIMAL).expect("TOML");
    let value = match key {
        k if k.ends_with("_ms") || k.ends_with("_bytes") || k.ends_with("_burst") => {
            toml::Value::Integer(1000)
        }
        k if k.ends_with("_per_second") => toml::Value::Float(1.0),
        _ => toml::Value::String("KEY".into()),
    };
    let mut at = &mut doc;
    for part in section.split('.') {
        let next = at
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        at = match next {
            toml::Value::Table(t) => t,
            toml::Value::Array(a) => match a.first_mut() {
                Some(toml::Value::Table(t)) => t,
                _ => return false,
            },
            _ => return false,
        };
    }
    at.insert(key.to_string(), value);
    let text = toml::to_string(&doc).expect("TOML");
    match crate::config::Config::from_toml(&text, &env()) {
        Ok(_) => true,
        Err(e) => !e.to_string().contains("unknown"),
    }
}

/// The reverse, for every word of the reference shaped like a key (a
/// duration, a size, a secret's source, a rate's part): the config takes it
/// in the section its line is about.
#[test]
fn every_key_shaped_word_of_the_reference_is_a_key() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let reference = std::fs::read_to_string(root.join("docs/configuration.md")).expect("readable");
    let shaped = ["_ms", "_bytes", "_env", "_file", "_per_second", "_burst"];
    let mut unknown = Vec::new();
    let mut checked = 0;
    // One bullet per section or pair of sections: `[encore]` and `[besitos]`.
    for bullet in reference.split("\n- ").skip(1) {
        let bullet = bullet.split("\n\n").next().unwrap_or(bullet);
        let sections: Vec<&str> = quoted(bullet)
            .filter_map(|w| w.strip_prefix('[')?.strip_suffix(']'))
            .map(|w| w.trim_matches(|c| c == '[' || c == ']'))
            .filter(|w| !w.contains('<'))
            .collect();
        if sections.is_empty() {
            continue;
        }
        for word in quoted(bullet)
            .filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .filter(|w| shaped.iter().any(|s| w.ends_with(s)))
        {
            // A rate is written `partner_per_second`: the key `per_second`
            // under `partner`, in the config as written.
            checked += 1;
            if !sections.iter().any(|s| takes(s, word)) {
                unknown.push(format!("{sections:?} {word}"));
            }
        }
    }
    assert!(checked > 30, "{checked} words checked");
    assert!(
        unknown.is_empty(),
        "named in the reference, not taken by the config: {unknown:?}"
    );
}
