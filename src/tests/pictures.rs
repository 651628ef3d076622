//! The pictures of a request's path (the README's and `app/stack.rs`'s)
//! checked against what `app/stack.rs` really composes, so they cannot drift.

use std::path::Path;

/// The names in a life-of-a-request picture (`└ Name` and `─▶ Name`), in order.
fn pictured(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in text.lines() {
        for marker in ["└ ", "─▶ ", "──▶ "] {
            if let Some(at) = line.find(marker) {
                let rest = &line[at + marker.len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .collect();
                if name.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
                    names.push(name);
                }
                break;
            }
        }
    }
    names
}

/// The first ```text block after `heading` in `text`.
fn picture_after<'a>(text: &'a str, heading: &str) -> &'a str {
    let at = text.find(heading).expect("the heading is there");
    let start = at + text[at..].find("```text").expect("a picture") + 7;
    let end = start + text[start..].find("```").expect("the picture ends");
    &text[start..end]
}

#[test]
fn the_pictures_of_a_request_name_what_the_stack_composes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let stack = std::fs::read_to_string(root.join("src/app/stack.rs")).expect("stack.rs");
    // What `assemble` really composes, outermost first, then the partner call.
    let mut composed: Vec<String> = stack
        .match_indices(".layer(")
        .map(|(i, _)| {
            let name: String = stack[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            name.trim_end_matches("Layer").to_string()
        })
        .collect();
    composed.push("Upstream".to_string());
    assert!(
        composed.len() >= 8,
        "found the stack's layers: {composed:?}"
    );
    let edge_pieces = ["Edge", "Shed", "Router", "Admission"];
    let below_edge = |names: Vec<String>| -> Vec<String> {
        names
            .into_iter()
            .filter(|n| !edge_pieces.contains(&n.as_str()))
            .collect()
    };
    let header = pictured(picture_after(&stack, "//! The only place"));
    assert_eq!(below_edge(header), composed, "app/stack.rs's own picture");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let life = pictured(picture_after(&readme, "## The life of a request"));
    assert_eq!(
        life[..4],
        ["Edge", "Router", "Admission", "Shed"],
        "the README's picture starts at the edge"
    );
    assert_eq!(below_edge(life), composed, "the README's life of a request");
}
