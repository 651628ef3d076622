//! The module layout's one rule, checked: dependencies between offergate's
//! top-level modules run one way, as `ALLOWED` (and the README's picture)
//! shows. Every file under `src/` is parsed with `syn`, test modules
//! included, and every path that names another top-level module counts: `use`
//! trees with their `{a, b}` groups, `super::` chains that climb out of a
//! module, paths in code and the tokens of macro calls. A new import that
//! points up, or sideways where the table says no, fails here with the file
//! that made it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// Each top-level module and the modules it may use. Read bottom-up: `call`
/// is the core with no dependency, `cli` the top.
const ALLOWED: &[(&str, &[&str])] = &[
    ("call", &[]),
    ("server", &[]),
    ("partners", &["call"]),
    ("config", &["call", "partners"]),
    ("metrics", &["call"]),
    ("state", &["call", "config", "metrics"]),
    ("integrator", &["call", "partners", "config"]),
    (
        "conversation",
        &[
            "call",
            "partners",
            "config",
            "metrics",
            "state",
            "integrator",
        ],
    ),
    (
        "layers",
        &[
            "call",
            "partners",
            "config",
            "metrics",
            "state",
            "conversation",
        ],
    ),
    ("upstream", &["call", "partners", "config", "metrics"]),
    (
        "edge",
        &[
            "call",
            "partners",
            "config",
            "metrics",
            "state",
            "integrator",
            "conversation",
            "layers",
        ],
    ),
    ("simulator", &["call", "server"]),
    (
        "app",
        &[
            "call",
            "partners",
            "config",
            "metrics",
            "state",
            "conversation",
            "layers",
            "upstream",
            "edge",
            "server",
        ],
    ),
    ("cli", &["call", "config", "app", "simulator"]),
    // Test-only: the property tests of every parser (`props.rs`).
    (
        "props",
        &[
            "call",
            "partners",
            "config",
            "edge",
            "upstream",
            "integrator",
        ],
    ),
];

/// One import of another top-level module: who, whom, and the first file.
type Edges = BTreeMap<(String, String), String>;

/// Every pair `pick` makes of a file's module and a path it uses (both as
/// absolute module paths, at most two deep), with the first file that makes
/// it. Files that do not parse are an error, not a silent skip.
fn paths(
    src: &Path,
    pick: impl Fn(&[String], &[String]) -> Option<(String, String)>,
) -> Result<Edges, String> {
    let reexports = root_reexports(src)?;
    let mut found = Edges::new();
    for path in rust_files(src)? {
        let rel = path.strip_prefix(src).map_err(|e| e.to_string())?;
        let module = module_path(rel);
        // The crate root and this check itself stand outside the layering.
        if matches!(module.first().map(String::as_str), None | Some("tests")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{rel:?}: {e}"))?;
        let file = syn::parse_file(&text).map_err(|e| format!("{rel:?}: {e}"))?;
        let mut scan = Scan {
            module: module.clone(),
            uses: BTreeSet::new(),
            reexports: &reexports,
        };
        scan.visit_file(&file);
        for (inside, used) in scan.uses {
            if let Some(edge) = pick(&inside, &used) {
                found
                    .entry(edge)
                    .or_insert_with(|| rel.display().to_string());
            }
        }
    }
    Ok(found)
}

/// Every top-level module's imports of another (`(from, to)`).
fn edges(src: &Path) -> Result<Edges, String> {
    paths(src, |from, used| {
        let (from, used) = (from.first()?, used.first()?);
        (from != used).then(|| (from.clone(), used.clone()))
    })
}

/// Within each top-level module, its rooms' imports of each other
/// (`layers/circuit.rs` using `layers/pause.rs`: `(layers::circuit,
/// layers::pause)`). A room's tests (`tests`) may drive it through others.
fn room_edges(src: &Path) -> Result<Edges, String> {
    paths(src, |from, used| match (from, used) {
        _ if from.iter().any(|m| m == "tests") => None,
        ([top, a, ..], [top2, b, ..]) if top == top2 && a != b => {
            Some((format!("{top}::{a}"), format!("{top}::{b}")))
        }
        _ => None,
    })
}

fn rust_files(src: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| format!("{dir:?}: {e}"))? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// `layers/idempotency/memory.rs` -> `[layers, idempotency, memory]`;
/// `mod.rs` names its folder; `lib.rs` and `main.rs` are the root (empty).
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .filter_map(|p| p.to_str())
        .map(|p| p.trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") || parts == ["lib"] || parts == ["main"] {
        parts.pop();
    }
    parts
}

/// Names `lib.rs` re-exports at the root (`crate::Gateway`), with the module
/// each comes from, so that a path through them is seen for what it is.
fn root_reexports(src: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(src.join("lib.rs")).map_err(|e| e.to_string())?;
    let file = syn::parse_file(&text).map_err(|e| e.to_string())?;
    let mut names = BTreeMap::new();
    for item in file.items {
        if let syn::Item::Use(u) = item {
            if let syn::UseTree::Path(p) = &u.tree {
                let mut leaves = Vec::new();
                leaf_names(&p.tree, &mut leaves);
                for leaf in leaves {
                    names.insert(leaf, p.ident.to_string());
                }
            }
        }
    }
    Ok(names)
}

fn leaf_names(tree: &syn::UseTree, out: &mut Vec<String>) {
    match tree {
        syn::UseTree::Path(p) => leaf_names(&p.tree, out),
        syn::UseTree::Name(n) => out.push(n.ident.to_string()),
        syn::UseTree::Rename(r) => out.push(r.rename.to_string()),
        syn::UseTree::Glob(_) => {}
        syn::UseTree::Group(g) => g.items.iter().for_each(|t| leaf_names(t, out)),
    }
}

/// Walks one file, keeping the module it is in (inline `mod`s included).
struct Scan<'a> {
    module: Vec<String>,
    /// The modules used (as absolute paths two deep at most), each with the
    /// module that uses it (an inline `mod tests` included).
    uses: BTreeSet<(Vec<String>, Vec<String>)>,
    reexports: &'a BTreeMap<String, String>,
}

impl Scan<'_> {
    /// Records the module a path starting with `segments` lands in (two
    /// deep at most), when it starts at `crate`, `super` or `self`.
    fn resolve(&mut self, segments: &[String]) {
        let mut at = self.module.clone();
        let mut rest = segments;
        match rest.first().map(String::as_str) {
            Some("crate") => {
                at.clear();
                rest = &rest[1..];
            }
            Some("super" | "self") => {
                while let Some(first) = rest.first() {
                    match first.as_str() {
                        "super" => {
                            at.pop();
                        }
                        "self" => {}
                        _ => break,
                    }
                    rest = &rest[1..];
                }
            }
            _ => return,
        }
        if at.is_empty() {
            // From the root: a re-export there stands for its module.
            match rest.first() {
                Some(next) if self.reexports.contains_key(next) => {
                    let used = vec![self.reexports[next].clone()];
                    self.uses.insert((self.module.clone(), used));
                    return;
                }
                Some(_) => {}
                None => return,
            }
        }
        let mut used: Vec<String> = at.into_iter().chain(rest.iter().cloned()).collect();
        used.truncate(2);
        self.uses.insert((self.module.clone(), used));
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => self.leaf(prefix, &n.ident),
            syn::UseTree::Rename(r) => self.leaf(prefix, &r.ident),
            syn::UseTree::Glob(_) => self.resolve(prefix),
            syn::UseTree::Group(g) => {
                for item in &g.items {
                    self.use_tree(prefix, item);
                }
            }
        }
    }

    fn leaf(&mut self, prefix: &mut Vec<String>, ident: &syn::Ident) {
        prefix.push(ident.to_string());
        self.resolve(prefix);
        prefix.pop();
    }

    /// `crate::x` inside a macro's tokens (`tracing::info!`, `assert!`, ...).
    fn tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        for (i, tree) in trees.iter().enumerate() {
            match tree {
                TokenTree::Group(g) => self.tokens(g.stream()),
                TokenTree::Ident(id) if id == "crate" || id == "super" => {
                    let mut path = vec![id.to_string()];
                    let mut j = i + 1;
                    while let (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b))) =
                        (trees.get(j), trees.get(j + 1))
                    {
                        if a.as_char() != ':' || b.as_char() != ':' {
                            break;
                        }
                        match trees.get(j + 2) {
                            Some(TokenTree::Ident(next)) => path.push(next.to_string()),
                            _ => break,
                        }
                        j += 3;
                    }
                    if path.len() > 1 {
                        self.resolve(&path);
                    }
                }
                _ => {}
            }
        }
    }
}

impl<'ast> Visit<'ast> for Scan<'_> {
    fn visit_item_mod(&mut self, i: &'ast syn::ItemMod) {
        self.module.push(i.ident.to_string());
        syn::visit::visit_item_mod(self, i);
        self.module.pop();
    }

    fn visit_item_use(&mut self, i: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &i.tree);
    }

    fn visit_path(&mut self, i: &'ast syn::Path) {
        let segments: Vec<String> = i.segments.iter().map(|s| s.ident.to_string()).collect();
        self.resolve(&segments);
        syn::visit::visit_path(self, i);
    }

    fn visit_macro(&mut self, i: &'ast syn::Macro) {
        self.tokens(i.tokens.clone());
        syn::visit::visit_macro(self, i);
    }
}

/// Every import the table does not allow, one line each.
fn violations(src: &Path) -> Result<Vec<String>, String> {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(m, deps)| (*m, deps.iter().copied().collect()))
        .collect();
    let found = edges(src)?;
    if found.len() <= 10 {
        return Err(format!("the scan found only {} imports", found.len()));
    }
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
    Ok(wrong)
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn modules_depend_one_way_only() {
    let wrong = violations(&src_dir()).expect("src parses");
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

/// A circle among the rooms of one top-level module, if there is one, as
/// `a -> b -> a` with the file of each step.
fn room_circle(src: &Path) -> Result<Option<String>, String> {
    let found = room_edges(src)?;
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in found.keys() {
        next.entry(from).or_default().push(to);
    }
    // Depth-first, colouring rooms: on the path now (grey) or done (black).
    fn visit<'a>(
        room: &'a str,
        next: &BTreeMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(at) = path.iter().position(|r| *r == room) {
            let mut circle = path[at..].to_vec();
            circle.push(room);
            return Some(circle);
        }
        if !done.insert(room) {
            return None;
        }
        path.push(room);
        for to in next.get(room).into_iter().flatten() {
            if let Some(circle) = visit(to, next, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for room in next.keys() {
        if let Some(circle) = visit(room, &next, &mut Vec::new(), &mut done) {
            let steps: Vec<String> = circle
                .windows(2)
                .map(|w| {
                    let file = &found[&(w[0].to_string(), w[1].to_string())];
                    format!("{} -> {} ({file})", w[0], w[1])
                })
                .collect();
            return Ok(Some(steps.join(", ")));
        }
    }
    Ok(None)
}

#[test]
fn no_circle_among_the_rooms_of_a_module() {
    let circle = room_circle(&src_dir()).expect("src parses");
    assert!(circle.is_none(), "a circle: {}", circle.unwrap_or_default());
}

#[test]
fn a_planted_circle_fails_the_room_check() {
    // `pause` is used by the rate limits; it using them back is a circle.
    let copy = planted(
        "layers/pause.rs",
        "\nfn planted() -> Option<super::rate_limit::Decision> { None }\n",
    );
    let circle = room_circle(copy.path()).expect("the copy parses");
    assert!(
        circle
            .as_deref()
            .is_some_and(|c| c.contains("layers::pause -> layers::rate_limit")),
        "{circle:?}"
    );
}

/// A copy of `src/` with `planted` appended to the file `file`.
fn planted(file: &str, planted: &str) -> tempfile::TempDir {
    let copy = tempfile::tempdir().expect("temp dir");
    let src = src_dir();
    for path in rust_files(&src).expect("src readable") {
        let rel = path.strip_prefix(&src).expect("under src");
        let to = copy.path().join(rel);
        std::fs::create_dir_all(to.parent().expect("a parent")).expect("mkdir");
        let mut text = std::fs::read_to_string(&path).expect("readable");
        if rel == Path::new(file) {
            text.push_str(planted);
        }
        std::fs::write(&to, text).expect("write");
    }
    copy
}

#[test]
fn a_planted_upward_import_fails_the_check() {
    let cases = [
        // Inside a test module, after the file's first #[cfg(test)].
        (
            "layers/idempotency/memory.rs",
            "\n#[cfg(test)]\nmod planted {\n    use crate::app::stack;\n}\n",
            "`layers` uses `crate::app`",
        ),
        // A braced group.
        (
            "layers/deadline.rs",
            "\nuse crate::{cli};\n",
            "`layers` uses `crate::cli`",
        ),
        // A path in code, no `use`, through a root re-export.
        (
            "call/clock.rs",
            "\nfn planted() -> Option<crate::Gateway> { None }\n",
            "`call` uses `crate::app`",
        ),
        // Inside a macro's tokens.
        (
            "metrics.rs",
            "\nfn planted() { let _ = format!(\"{:?}\", crate::edge::respond::answer); }\n",
            "`metrics` uses `crate::edge`",
        ),
        // A `super` chain that climbs out of its module.
        (
            "layers/idempotency/store.rs",
            "\nuse super::super::super::cli;\n",
            "`layers` uses `crate::cli`",
        ),
        // A module the table does not know.
        (
            "newroom.rs",
            "\nuse crate::call::clock;\n",
            "`newroom` is not in ALLOWED",
        ),
    ];
    for (file, code, expected) in cases {
        let copy = planted(file, code);
        if !copy.path().join(file).exists() {
            std::fs::write(copy.path().join(file), code).expect("write");
        }
        let wrong = violations(copy.path()).expect("the copy parses");
        assert!(
            wrong.iter().any(|w| w.contains(expected)),
            "{file}: expected {expected:?}, got {wrong:?}"
        );
    }
}

#[test]
fn a_file_that_does_not_parse_is_an_error() {
    let copy = planted("call/clock.rs", "\nfn broken( {\n");
    assert!(violations(copy.path()).is_err());
}

mod docs;
mod pictures;
