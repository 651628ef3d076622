//! The real `offergate` binary: check-config, demo, and run beside simulate.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_offergate");

use crate::support::shipped_config_in;

#[test]
fn check_config_prints_the_effective_config_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = shipped_config_in(
        dir.path(),
        "pk_live_SUPERSECRET_key",
        "besitos-SUPERSECRET-token",
    );
    let out = Command::new(BIN)
        .args(["check-config", "-c", &config])
        .env("OFFERGATE_ENCORE__TRY_TIMEOUT_MS", "1234")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("SUPERSECRET"), "{stdout}");
    assert!(
        stdout.contains("<redacted, from file ") && stdout.contains("secrets/encore_api_key>"),
        "{stdout}"
    );
    assert!(
        stdout.contains("try_timeout_ms = 1234"),
        "env override shown: {stdout}"
    );
}

#[test]
fn check_config_rejects_a_bad_file_naming_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"0.0.0.0:8787\"\n[encore]\napi_key_env = \"ENCORE_API_KEY\"\nbase_url = \"http://api.encorekit.com\"\n[[besitos.partners]]\nid = \"p\"\ntoken_env = \"UNSET_TOKEN_VAR\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "-c"])
        .arg(&path)
        .env("ENCORE_API_KEY", "pk_live_SUPERSECRET_key")
        .env_remove("UNSET_TOKEN_VAR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [
        "server.listen",
        "encore.base_url",
        "besitos.partners[0].token_env",
        "UNSET_TOKEN_VAR",
    ] {
        assert!(stderr.contains(key), "{key} not named in:\n{stderr}");
    }
    assert!(!stderr.contains("SUPERSECRET") && out.stdout.is_empty());

    let out = Command::new(BIN)
        .args(["check-config", "-c", "/nonexistent/offergate.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/offergate.toml")
    );
}

/// A free port on 127.0.0.3, where no other test listens, so none can take
/// it before the child binds.
fn free() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.3:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A child process that is killed when the test ends, pass or fail.
struct Running(Child, mpsc::Receiver<String>);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    fn spawn(cmd: &mut Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn offergate");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running(child, rx)
    }

    /// Stdout lines up to and including the first one containing `until`.
    fn lines_until(&self, until: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self
                .1
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no `{until}` line; got {lines:#?}"));
            let done = line.contains(until);
            lines.push(line);
            if done {
                return lines;
            }
        }
    }
}

fn curl_available() {
    let ok = Command::new("curl")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "curl is required for this test; tests/run installs it");
}

/// `offergate demo` with every listener on a free port.
const DEMO_ON_FREE_PORTS: [&str; 7] = [
    "demo",
    "--listen",
    "127.0.0.1:0",
    "--admin-listen",
    "127.0.0.1:0",
    "--simulator-listen",
    "127.0.0.1:0",
];

#[test]
fn demo_answers_the_curl_it_prints() {
    curl_available();
    let demo = Running::spawn(Command::new(BIN).args(DEMO_ON_FREE_PORTS));
    let lines = demo.lines_until("Ctrl-C");
    let curls: Vec<&String> = lines.iter().filter(|l| l.starts_with("curl ")).collect();
    assert_eq!(curls.len(), 3, "{lines:#?}");
    let run = |cmd: &str| {
        let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
        assert!(out.status.success(), "{cmd}");
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    };
    let offer = run(curls[0]);
    assert_eq!(offer["success"], true);
    assert!(
        offer["offer"]["clickUrl"]
            .as_str()
            .unwrap()
            .starts_with("https://link.encorekit.com/"),
        "{offer}"
    );
    let message = run(curls[1]);
    assert_eq!(
        (message["decision"].as_str(), message["trigger"].as_str()),
        (Some("offer"), Some("first_message")),
        "{message}"
    );
    assert!(message["composed"]["text"]
        .as_str()
        .unwrap()
        .contains("https://link.encorekit.com/"));
    let again = run(curls[1]);
    assert_eq!(again, message, "a redelivery gets the same answer");
    // The container's health check, by the name a user writes.
    let admin = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("admin"))
        .unwrap()
        .trim()
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let port = admin.rsplit(':').next().unwrap();
    let health = Command::new(BIN)
        .args(["healthcheck", "--admin", &format!("localhost:{port}")])
        .output()
        .unwrap();
    assert!(health.status.success(), "{admin}: {health:?}");
    let goals = run(curls[2]);
    assert!(!goals["data"].as_array().unwrap().is_empty(), "{goals}");
    let proxy = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("proxy"))
        .unwrap()
        .trim()
        .to_string();
    assert!(
        goals["next_page_url"].as_str().unwrap().starts_with(&proxy),
        "{goals}"
    );
}

#[test]
fn run_mode_in_front_of_the_standalone_simulator() {
    curl_available();
    let sim = Running::spawn(Command::new(BIN).args([
        "simulate",
        "--listen",
        "127.0.0.1:0",
        "--encore-key",
        "pk_live_runmode",
    ]));
    let banner = sim.lines_until("offergate simulator on");
    let origin = banner
        .last()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    assert!(origin.starts_with("http://127.0.0.1:"), "{origin}");

    // Free ports for the gateway, then the shipped file.
    let (listen, admin) = (free(), free());
    let threads = tempfile::tempdir().unwrap();
    let config = shipped_config_in(threads.path(), "pk_live_runmode", "t");
    let mut gw = Running::spawn(
        Command::new(BIN)
            .args(["run", "-c", &config])
            .env(
                "OFFERGATE_STATE__THREAD_FILE",
                threads.path().join("threads.redb"),
            )
            .env("OFFERGATE_SERVER__LISTEN", listen.to_string())
            .env("OFFERGATE_SERVER__ADMIN_LISTEN", admin.to_string())
            .env("OFFERGATE_ENCORE__BASE_URL", &origin)
            .env("OFFERGATE_BESITOS__BASE_URL", &origin),
    );
    crate::support::eventually_blocking(Duration::from_secs(20), "run mode is ready", || {
        Command::new("curl")
            .args(["-sf", &format!("http://{admin}/readyz")])
            .output()
            .is_ok_and(|o| o.status.success())
            .then_some(())
    });
    let out = Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            &format!("http://{listen}/encore/publisher/sdk/v1/offers/message"),
        ])
        .args([
            "-H",
            "Content-Type: application/json",
            "-d",
            crate::support::ENCORE_BODY,
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["offer"]["clickUrl"].is_string(), "{v}");
    let calls = Command::new("curl")
        .args(["-s", &format!("{origin}/__sim/calls")])
        .output()
        .unwrap();
    let calls: serde_json::Value = serde_json::from_slice(&calls.stdout).unwrap();
    assert_eq!(calls["encore_offers"], 1);

    // SIGTERM: drains and exits cleanly.
    let pid = gw.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = crate::support::exit_of(&mut gw.0, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    let _ = &mut gw;
}

#[test]
fn check_config_into_a_closed_pipe_is_not_a_crash() {
    // `offergate check-config | head -1`: the reader leaves after one line.
    let dir = tempfile::tempdir().unwrap();
    let config = shipped_config_in(dir.path(), "pk_live_pipe", "t");
    let mut child = Command::new(BIN)
        .args(["check-config", "-c", &config])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_log_level_that_is_not_a_level_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = shipped_config_in(dir.path(), "pk_live_x", "t");
    let out = Command::new(BIN)
        .args(["check-config", "-c", &config])
        .env("OFFERGATE_LOG__LEVEL", "warning")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("log.level: `warning` is not a level"),
        "{stderr}"
    );
}

#[test]
fn a_secret_file_others_may_read_is_a_warning_not_a_refusal() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = shipped_config_in(dir.path(), "pk_live_shared", "t");
    let key = dir.path().join("secrets/encore_api_key");
    let check = |mode| {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = Command::new(BIN)
            .args(["check-config", "-c", &config])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let stderr = check(0o644);
    assert!(
        stderr.contains("warning: encore.api_key_file") && stderr.contains("mode 644"),
        "{stderr}"
    );
    assert!(!stderr.contains("pk_live_shared"), "{stderr}");
    assert!(!check(0o600).contains("warning"));
}

#[test]
fn check_config_names_every_problem_in_one_pass_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broken.toml");
    let shipped = std::fs::read_to_string(shipped_config_in(dir.path(), "pk_live_x", "t")).unwrap();
    let broken = shipped
        .replace("listen = \"127.0.0.1:8787\"", "listen = \"nope\"")
        .replace("body_limit_bytes = 65536", "body_limit_bytes = -5")
        .replace(
            "base_url = \"https://api.encorekit.com\"",
            "base_url = \"ftp://x\"",
        )
        .replace("[log]", "[log]\nno_such_key = 1");
    assert_ne!(broken, shipped);
    std::fs::write(&config, broken).unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "-c", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for key in [
        "server.body_limit_bytes",
        "server.listen",
        "encore.base_url",
        "no_such_key",
    ] {
        assert_eq!(
            stderr.lines().filter(|l| l.contains(key)).count(),
            1,
            "{key} named once, on one line: {stderr}"
        );
    }
}

/// The proxy address a demo's banner prints.
fn banner_proxy(lines: &[String]) -> String {
    lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("proxy"))
        .unwrap()
        .trim()
        .trim_start_matches("http://")
        .to_string()
}

/// A message posted with curl to the demo at `proxy`.
fn demo_message(proxy: &str, chat: &str, id: &str, text: &str) -> serde_json::Value {
    let body = serde_json::json!({"clientId": "c", "chatId": chat, "messageId": id,
        "sentAt": offergate::call::clock::wall_ms() / 1000, "text": text,
        "attributes": {"countryCode": "US", "language": "en", "platform": "ios"}});
    let out = Command::new("curl")
        .args(["-s", "-X", "POST", "-H", "Content-Type: application/json"])
        .arg(format!("http://{proxy}/offergate/v1/encore/messages"))
        .args(["-d", &body.to_string()])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// `offergate demo` says what it keeps and forgets; with `-c` it takes a
/// config file's settings (here its own opt-out word and a thread file),
/// keeps its partners the simulator, and a restart keeps the thread.
#[test]
fn the_demo_says_what_it_keeps_and_takes_a_config_file() {
    curl_available();
    let args = DEMO_ON_FREE_PORTS;
    let plain = Running::spawn(Command::new(BIN).args(args));
    let lines = plain.lines_until("Ctrl-C");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("in memory only: a restart forgets them")),
        "{lines:#?}"
    );
    drop(plain);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("demo-threads.redb");
    let config = dir.path().join("demo.toml");
    // A file written for production: its secrets are not here, its listener
    // asks for a token; the demo needs neither.
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"0.0.0.0:8787\"\ninbound_token_file = \"/nonexistent/token\"\n\
             [encore]\napi_key_file = \"/nonexistent/key\"\nbase_url = \"https://api.encorekit.com\"\n\
             [encore.integrator]\nopt_out_keywords = [\"ALTO\"]\n\
             [[besitos.partners]]\nid = \"mine\"\ntoken_file = \"/nonexistent/t\"\n\
             [state]\nthread_file = \"{}\"\n",
            file.display()
        ),
    )
    .unwrap();
    let start = || {
        Running::spawn(
            Command::new(BIN)
                .args(args)
                .args(["-c", config.to_str().unwrap()]),
        )
    };
    let demo = start();
    let lines = demo.lines_until("Ctrl-C");
    assert!(
        lines.iter().any(|l| l.contains(&format!(
            "threads and opt-outs in {} (kept across restarts)",
            file.display()
        ))),
        "{lines:#?}"
    );
    let proxy = banner_proxy(&lines);
    let printed = printed_message(&lines);
    assert_eq!(
        printed["decision"], "offer",
        "the banner's message: {printed}"
    );
    let first = demo_message(&proxy, "t1", "m1", "hi");
    assert_eq!(first["decision"], "offer", "the simulator answers: {first}");
    let stop = demo_message(&proxy, "t2", "m2", "Alto");
    assert_eq!(stop["reason"], "opted_out", "the file's keyword: {stop}");
    signal_term(&demo.0);
    std::thread::sleep(Duration::from_millis(500));
    drop(demo);

    let demo = start();
    let lines = demo.lines_until("Ctrl-C");
    let proxy = banner_proxy(&lines);
    // The banner's message after the restart is a new message in the kept
    // thread (it was once the same message, already handled).
    let printed = printed_message(&lines);
    assert_eq!(printed["reason"], "mid_thread", "{printed}");
    let next = demo_message(&proxy, "t1", "m3", "hi again");
    assert_eq!(
        next["reason"], "mid_thread",
        "kept across the restart: {next}"
    );
    let later = demo_message(&proxy, "t2", "m4", "hi");
    assert_eq!(later["reason"], "opted_out", "{later}");
}

/// The answer to the inbound-message curl a demo's banner printed, run as
/// printed.
fn printed_message(banner: &[String]) -> serde_json::Value {
    let curl = banner
        .iter()
        .find(|l| l.starts_with("curl ") && l.contains("/offergate/v1/encore/messages"))
        .expect("the banner prints an inbound-message curl");
    let out = Command::new("sh").args(["-c", curl]).output().unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn signal_term(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

/// With the shipped config and no `thread_file`, `run` writes its threads
/// in the state directory, never where it was started: two gateways started
/// in one directory (each with its own state directory) both run, and the
/// directory is left as it was.
#[test]
fn the_thread_file_goes_to_the_state_directory_not_the_working_directory() {
    let cwd = tempfile::tempdir().unwrap();
    let mut gateways = Vec::new();
    let mut states = Vec::new();
    for n in 0..2 {
        let home = tempfile::tempdir().unwrap();
        let config = shipped_config_in(home.path(), "pk_test_state_dir", "t");
        let admin = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let gw = Running::spawn(
            Command::new(BIN)
                .args(["run", "-c", &config])
                .current_dir(cwd.path())
                .env_remove("STATE_DIRECTORY")
                .env_remove("XDG_STATE_HOME")
                .env("HOME", home.path())
                .env("OFFERGATE_SERVER__LISTEN", "127.0.0.1:0")
                .env(
                    "OFFERGATE_SERVER__ADMIN_LISTEN",
                    format!("127.0.0.1:{}", admin.port()),
                ),
        );
        gateways.push(gw);
        states.push((n, home));
    }
    for (n, home) in &states {
        let file = home.path().join(".local/state/offergate/threads.redb");
        let mut waited = 0;
        while !file.exists() && waited < 100 {
            std::thread::sleep(Duration::from_millis(100));
            waited += 1;
        }
        assert!(
            file.exists(),
            "gateway {n}: no thread file at {}",
            file.display()
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the thread file is its user's alone");
    }
    for gw in &mut gateways {
        assert!(gw.0.try_wait().unwrap().is_none(), "both gateways run");
    }
    let left: Vec<_> = std::fs::read_dir(cwd.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "the working directory was written: {left:?}"
    );
}

/// The runtime follows the CPUs the process may use: pinned to one, it runs
/// on a current-thread runtime; `TOKIO_WORKER_THREADS` overrides either way,
/// and a value that is not a count is refused by name, not a panic.
#[test]
fn the_runtime_follows_the_cpus_the_process_may_use() {
    let dir = tempfile::tempdir().unwrap();
    let config = shipped_config_in(dir.path(), "pk_live_cpus", "t");
    let started = |pin: bool, workers: Option<&str>| {
        let mut cmd = if pin {
            let mut c = Command::new("taskset");
            c.args(["-c", "0", BIN]);
            c
        } else {
            Command::new(BIN)
        };
        let log = dir.path().join("log");
        cmd.args(["run", "-c", &config])
            .env(
                "OFFERGATE_STATE__THREAD_FILE",
                dir.path().join("threads.redb"),
            )
            .env("OFFERGATE_SERVER__LISTEN", free().to_string())
            .env("OFFERGATE_SERVER__ADMIN_LISTEN", free().to_string())
            .env("OFFERGATE_LOG__FORMAT", "json")
            .env_remove("TOKIO_WORKER_THREADS")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(n) = workers {
            cmd.env("TOKIO_WORKER_THREADS", n);
        }
        // Killed when dropped: a failed assertion leaves no gateway running.
        (
            crate::fleet::Killed(cmd.spawn().expect("spawn offergate")),
            log,
        )
    };
    for (pin, workers, runtime, threads) in [
        (true, None, "current_thread", 1),
        (false, Some("2"), "multi_thread", 2),
        (true, Some("3"), "multi_thread", 3),
    ] {
        let (child, log) = started(pin, workers);
        let ready =
            crate::support::eventually_blocking(Duration::from_secs(20), "the ready line", || {
                crate::support::ready_line(&log)
            });
        drop(child);
        assert_eq!(
            ready["runtime"], runtime,
            "pinned {pin}, {workers:?}: {ready}"
        );
        assert_eq!(
            ready["worker_threads"], threads,
            "pinned {pin}, {workers:?}"
        );
    }
    for bad in ["0", "two", ""] {
        let (mut child, log) = started(false, Some(bad));
        let status = crate::support::exit_of(&mut child.0, Duration::from_secs(10));
        let said = std::fs::read_to_string(&log).unwrap();
        assert_eq!(status.code(), Some(2), "{bad:?}: {said}");
        assert!(
            said.contains("TOKIO_WORKER_THREADS") && !said.contains("panicked"),
            "{bad:?}: {said}"
        );
    }
}

/// A SIGHUP to a demo started with `-c FILE` says the demo does not reload
/// that file (it used to say it ran on its embedded config), and it goes on
/// serving; a SIGTERM then drains it with the lines `run` logs.
#[test]
fn a_sighup_to_the_demo_on_a_config_file_says_it_is_not_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("demo.toml");
    let threads = dir.path().join("demo-threads.redb");
    std::fs::write(
        &config,
        format!("[state]\nthread_file = \"{}\"\n", threads.display()),
    )
    .unwrap();
    let log = dir.path().join("log");
    let demo = crate::fleet::Killed(
        Command::new(BIN)
            .args(DEMO_ON_FREE_PORTS)
            .args(["-c", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn the demo"),
    );
    let said = |what: &str| {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|text| text.contains(what))
    };
    crate::support::eventually_blocking(Duration::from_secs(20), "the demo is ready", || {
        said("offergate ready")
    });
    crate::fleet::signal(&demo.0, "HUP");
    let text =
        crate::support::eventually_blocking(Duration::from_secs(10), "the SIGHUP's line", || {
            said("does not reload")
        });
    assert!(
        text.contains(&format!("the demo does not reload {}", config.display()))
            && !text.contains("embedded config"),
        "{text}"
    );
    std::thread::sleep(Duration::from_millis(200));
    let mut demo = demo;
    assert!(demo.0.try_wait().unwrap().is_none(), "still running");
    crate::fleet::signal(&demo.0, "TERM");
    let status =
        crate::support::eventually_blocking(Duration::from_secs(20), "the demo exits", || {
            demo.0.try_wait().unwrap()
        });
    assert!(status.success(), "{status}");
    let text = std::fs::read_to_string(&log).unwrap();
    let draining = text.find("draining:").expect("a draining line");
    let drained = text.find("drained; exiting").expect("a drained line");
    assert!(draining < drained, "{text}");
}
