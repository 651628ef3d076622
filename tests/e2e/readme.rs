//! The shell examples of the README and of `docs/`, run as written, so a
//! drifted example fails
//! here and not for a user. Every ```sh block carries a marker on the line
//! before it: `<!-- example: demo -->` runs against a fresh `offergate demo`
//! (its addresses put where the README writes the defaults), `<!-- example:
//! fleet -->` runs as it is with free ports in place of the ones written and
//! the binary on PATH, and `<!-- example: not run here: why -->` names why
//! it cannot run in a test (a Docker daemon, a cluster, root). A block without
//! a marker fails the test. Where a block shows its answer (`# {...}`), the
//! answer's plain values must match. The Python webhook handler
//! (`<!-- example: python webhook -->`) runs against a demo with webhooks
//! delivered once, again, and many times at once.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_offergate");

struct Block {
    /// Where it is: the file and its first line.
    line: String,
    marker: String,
    code: String,
}

fn blocks() -> Vec<Block> {
    blocks_in("sh")
}

/// The fenced blocks of `language` in the README and `docs/*.md`, with
/// their markers.
fn blocks_in(language: &str) -> Vec<Block> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files = vec!["README.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(format!("{root}/docs"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        found.extend(blocks_of(&file, &text, language));
    }
    found
}

fn blocks_of(file: &str, text: &str, language: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == format!("```{language}") {
            let indent = lines[i].len() - lines[i].trim_start().len();
            let marker = lines[..i]
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .and_then(|l| l.trim().strip_prefix("<!-- example: "))
                .and_then(|l| l.strip_suffix(" -->"))
                .unwrap_or("")
                .to_string();
            let mut code = String::new();
            let start = i + 1;
            i += 1;
            while i < lines.len() && lines[i].trim() != "```" {
                code.push_str(lines[i].get(indent..).unwrap_or(lines[i].trim_start()));
                code.push('\n');
                i += 1;
            }
            found.push(Block {
                line: format!("{file} line {start}"),
                marker,
                code,
            });
        }
        i += 1;
    }
    found
}

/// A demo on free ports: (proxy, admin, simulator) as `host:port`.
struct Demo(Child, [String; 3]);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn demo() -> Demo {
    let mut child = Command::new(BIN)
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--simulator-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut addrs = [String::new(), String::new(), String::new()];
    let out = BufReader::new(child.stdout.take().unwrap());
    for line in out.lines().map_while(Result::ok) {
        let t = line.trim();
        for (i, label) in ["proxy", "admin", "simulator"].iter().enumerate() {
            if let Some(rest) = t.strip_prefix(label) {
                let url = rest.split_whitespace().next().unwrap_or("");
                addrs[i] = url
                    .trim_start_matches("http://")
                    .split('/')
                    .next()
                    .unwrap()
                    .to_string();
            }
        }
        if t.starts_with("Ctrl-C") {
            break;
        }
    }
    assert!(addrs.iter().all(|a| !a.is_empty()), "{addrs:?}");
    Demo(child, addrs)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `code` with bash (`set -e`, background jobs ended on exit).
fn run(code: &str, path_with_bin: bool) -> std::process::Output {
    let script =
        format!("set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{code}");
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &script]);
    if path_with_bin {
        let dir = std::path::Path::new(BIN).parent().unwrap();
        cmd.env(
            "PATH",
            format!(
                "{}:{}",
                dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "an example ran past a minute:\n{code}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// The plain `"key":value` pairs of the answer a block shows in `# {...}`
/// comments (values with a placeholder left out).
fn shown_answer(code: &str) -> Vec<(String, serde_json::Value)> {
    let shown: String = code
        .lines()
        .filter_map(|l| l.trim().strip_prefix("# ").map(str::trim))
        .filter(|l| l.starts_with('{') || l.starts_with('"'))
        .collect();
    let mut pairs = Vec::new();
    let mut rest = shown.as_str();
    while let Some(at) = rest.find('"') {
        rest = &rest[at + 1..];
        let Some(end) = rest.find('"') else { break };
        let key = &rest[..end];
        let after = &rest[end + 1..];
        if let Some(value) = after.strip_prefix(':') {
            let value = value.trim_start();
            let literal = if let Some(s) = value.strip_prefix('"') {
                s.find('"').map(|e| format!("\"{}\"", &s[..e]))
            } else {
                let e = value.find([',', '}']).unwrap_or(value.len());
                Some(value[..e].trim().to_string())
            };
            if let Some(v) = literal.filter(|v| !v.contains('…')) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&v) {
                    if !v.is_object() && !v.is_array() {
                        pairs.push((key.to_string(), v));
                    }
                }
            }
        }
        rest = after;
    }
    pairs
}

#[test]
fn every_shell_example_in_the_readme_runs_as_written() {
    let blocks = blocks();
    assert!(blocks.len() >= 6, "found {} blocks", blocks.len());
    let mut ran = 0;
    for b in &blocks {
        let where_ = b.line.clone();
        match b.marker.as_str() {
            "demo" => {
                let d = demo();
                let code = b
                    .code
                    .replace("127.0.0.1:8787", &d.1[0])
                    .replace("127.0.0.1:9787", &d.1[1])
                    .replace("127.0.0.1:8789", &d.1[2]);
                let out = run(&code, true);
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(out.status.success(), "{where_}: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
                let answer: serde_json::Value = serde_json::from_str(stdout.trim())
                    .unwrap_or_else(|e| panic!("{where_}: not one JSON answer ({e}): {stdout}"));
                let shown = shown_answer(&b.code);
                assert!(!shown.is_empty(), "{where_}: the block shows no answer to compare");
                for (key, value) in shown {
                    let got = find(&answer, &key);
                    assert_eq!(got.as_ref(), Some(&value), "{where_}: `{key}` in {answer}");
                }
            }
            "fleet" => {
                let mut code = b.code.clone();
                for port in ["6379", "8781", "8782", "9781", "9782", "8791", "8792"] {
                    code = code.replace(port, &free_port().to_string());
                }
                let out = run(&code, true);
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(out.status.success(), "{where_}: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
                assert_eq!(stdout.matches("clickUrl").count(), 2, "{where_}: {stdout}");
                assert_eq!(stdout.matches("idempotent-replayed: true").count(), 1, "{where_}: {stdout}");
                assert!(stdout.contains(r#""encore_offers":1"#) && stdout.contains(r#""encore_offers":0"#), "{where_}: one partner call in all: {stdout}");
            }
            m if m.starts_with("not run here: ") && m.len() > "not run here: ".len() + 10 => continue,
            m => panic!("{where_}: a shell example needs a marker (demo, fleet, or not run here: why), found {m:?}"),
        }
        ran += 1;
    }
    assert!(ran >= 3, "ran {ran}");
}

/// `key`'s value anywhere in `v` (the first found, depth first).
fn find(v: &serde_json::Value, key: &str) -> Option<serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => m
            .get(key)
            .cloned()
            .or_else(|| m.values().find_map(|x| find(x, key))),
        serde_json::Value::Array(a) => a.iter().find_map(|x| find(x, key)),
        _ => None,
    }
}

/// What the Python handler's caller provides, around it; then webhooks as
/// Meta delivers them: once, again, twice and ten times at once, a STOP.
const PYTHON_HARNESS: &str = r#"
import sys, threading, time, requests
sent, lock = [], threading.Lock()
def send_text(to, text):
    with lock:
        sent.append((to, text))
CLIENT_ID = "client-42"
def user_country(wa_id): return "US"
REPLY = "Thanks! We will get back to you."
def client_auto_reply(): return REPLY
HANDLER
def deliver(msg_id, user, text="hi", times=1):
    value = {"metadata": {"phone_number_id": "106540352242922"}}
    msg = {"from": user, "id": msg_id, "timestamp": str(int(time.time())), "type": "text", "text": {"body": text}}
    ts = [threading.Thread(target=on_whatsapp_message, args=(value, msg)) for _ in range(times)]
    for t in ts: t.start()
    for t in ts: t.join()
def sends(user):
    return [text for to, text in sent if to == user]
deliver("wamid.A1", "14155550001")
assert len(sends("14155550001")) == 2 and "https://link.encorekit.com/" in sends("14155550001")[0] and sends("14155550001")[1] == REPLY, sent
deliver("wamid.A1", "14155550001")
assert len(sends("14155550001")) == 2, "a redelivery sends nothing"
deliver("wamid.A2", "14155550001")
assert sends("14155550001")[2:] == [REPLY], "mid-thread: the reply only"
deliver("wamid.B1", "14155550002", times=2)
assert len(sends("14155550002")) == 2 and sends("14155550002")[1] == REPLY, sends("14155550002")
deliver("wamid.C1", "14155550003", times=10)
assert len(sends("14155550003")) == 2, sends("14155550003")
deliver("wamid.D1", "14155550004", text="STOP")
assert sends("14155550004") == [REPLY], sends("14155550004")
print("ok", len(sent))
"#;

#[test]
fn the_python_webhook_handler_sends_one_offer_and_one_reply_per_message() {
    let handlers = blocks_in("python");
    let handler = handlers
        .iter()
        .find(|b| b.marker == "python webhook")
        .expect("the docs have the Python webhook handler");
    let d = demo();
    let code = PYTHON_HARNESS.replace("HANDLER", &handler.code.replace("127.0.0.1:8787", &d.1[0]));
    let out = Command::new("python3")
        .args(["-c", &code])
        .output()
        .expect("python3 runs (tests/run installs requests)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim() == "ok 8",
        "{}: {}\n{stdout}",
        handler.line,
        String::from_utf8_lossy(&out.stderr)
    );
    for b in &handlers {
        assert!(
            b.marker == "python webhook",
            "{}: a Python example needs a marker",
            b.line
        );
    }
}

/// Every TOML example in the README is a config fragment offergate takes:
/// on a minimal config of its own, it loads (no key unknown, no value
/// refused).
#[test]
fn every_toml_example_in_the_readme_loads() {
    let blocks = blocks_in("toml");
    assert!(!blocks.is_empty());
    for b in &blocks {
        let base = "[encore]\napi_key_env = \"K\"\nchat_id_key_env = \"C\"\n[[besitos.partners]]\nid = \"p\"\ntoken_env = \"K\"\n";
        let mut doc: toml::Table = base.parse().unwrap();
        let fragment: toml::Table = b
            .code
            .parse()
            .unwrap_or_else(|e| panic!("{}: not TOML: {e}", b.line));
        for (k, v) in fragment {
            doc.insert(k, v);
        }
        let env = offergate::config::MapEnv::from([
            ("K", "pk_test_readme"),
            ("C", "readme-chat-id-key-0123"),
        ]);
        if let Err(e) = offergate::Config::from_toml(&toml::to_string(&doc).unwrap(), &env) {
            panic!("{}: {e}", b.line);
        }
    }
}
