//! The module layout's one rule, checked: dependencies between offergate's
//! top-level modules run one way, as `ALLOWED` (and README's picture) shows.
//! A new `use crate::x` that points up, or sideways where the table says no,
//! fails here with the file that made it. (A unit test of the crate, in a
//! file named `tests.rs` so that the scan, like `module-circles`, skips it.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module and the modules it may use. Read bottom-up: `call`
/// is the core with no dependency, `cli` the top.
const ALLOWED: &[(&str, &[&str])] = &[
    ("call", &[]),
    ("server", &[]),
    ("config", &["call"]),
    ("metrics", &["call"]),
    ("state", &["call", "config", "metrics"]),
    ("layers", &["call", "config", "metrics", "state"]),
    ("upstream", &["call", "config", "metrics"]),
    ("integrator", &["call", "config"]),
    ("edge", &["call", "config", "metrics", "integrator"]),
    ("simulator", &["call", "server"]),
    (
        "app",
        &[
            "call", "config", "metrics", "state", "layers", "upstream", "edge", "server",
        ],
    ),
    ("cli", &["call", "config", "app", "simulator"]),
    // Test-only: the property tests of every parser (`props.rs`).
    (
        "props",
        &["call", "config", "edge", "upstream", "integrator"],
    ),
];

/// `(module, used module) -> first file that uses it`, test code left out.
fn edges(src: &Path) -> BTreeMap<(String, String), String> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src is readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let top = rel
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .unwrap_or_default()
                .trim_end_matches(".rs")
                .to_string();
            if path.extension().map_or(true, |e| e != "rs")
                || path.file_name().is_some_and(|f| f == "tests.rs")
                || top == "lib"
                || top == "main"
            {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("readable source");
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (i, _) in code.match_indices("crate::") {
                let used: String = code[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !used.is_empty() && used != top {
                    found
                        .entry((top.clone(), used))
                        .or_insert_with(|| rel.display().to_string());
                }
            }
        }
    }
    found
}

#[test]
fn modules_depend_one_way_only() {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(m, deps)| (*m, deps.iter().copied().collect()))
        .collect();
    let found = edges(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(found.len() > 10, "the scan found the crate's imports");
    let mut wrong = Vec::new();
    for ((from, to), file) in &found {
        match allowed.get(from.as_str()) {
            None => wrong.push(format!(
                "{file}: module `{from}` is not in ALLOWED; place it in the layering"
            )),
            Some(deps) if !deps.contains(to.as_str()) => wrong.push(format!(
                "{file}: `{from}` uses `crate::{to}`, which the layering does not allow"
            )),
            Some(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_layering_itself_has_no_circle() {
    // Each module may only use modules listed before it: a topological order.
    let mut seen = BTreeSet::new();
    for (module, deps) in ALLOWED {
        for d in *deps {
            assert!(seen.contains(d), "`{module}` uses `{d}`, listed after it");
        }
        seen.insert(*module);
    }
}
