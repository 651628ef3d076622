use super::*;

fn env() -> MapEnv {
    MapEnv::from([
        ("ENCORE_API_KEY", "pk_test_abc123"),
        ("BESITOS_TOKEN", "tok-xyz-secret"),
        ("CHAT_ID_KEY", "chat-id-key-0123456789"),
    ])
}

const SHIPPED: &str = include_str!("../../config/offergate.toml");

#[test]
fn the_shipped_file_is_valid_and_matches_the_defaults() {
    // Its secrets where its header says to put them (a temporary directory
    // standing in for /run/secrets/offergate), its partner id replaced.
    let dir = tempfile::tempdir().unwrap();
    for (name, value) in [
        ("encore_api_key", "pk_test_abc123"),
        ("besitos_token", "tok-xyz-secret"),
        ("chat_id_key", "chat-id-key-0123456789"),
    ] {
        std::fs::write(dir.path().join(name), format!("{value}\n")).unwrap();
    }
    let at = format!("{}/", dir.path().display());
    let shipped = SHIPPED
        .replace("/run/secrets/offergate/", &at)
        .replace("REPLACE-WITH-YOUR-PARTNER-ID", "eafLst9T");
    let c = Config::from_toml(&shipped, &env()).expect("shipped config loads");
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8787");
    assert_eq!(c.server.admin_listen.to_string(), "127.0.0.1:9787");
    assert_eq!(
        c.encore.upstream.base_url.to_string(),
        "https://api.encorekit.com"
    );
    assert_eq!(c.encore.api_key.expose(), "pk_test_abc123");
    assert_eq!(c.besitos.partners["eafLst9T"].expose(), "tok-xyz-secret");
    // A file with only the required keys (and the one the shipped file turns
    // on, the watch) gets the same values.
    let minimal = format!("[encore]\napi_key_file = \"{at}encore_api_key\"\nchat_id_key_file = \"{at}chat_id_key\"\n[[besitos.partners]]\nid = \"eafLst9T\"\ntoken_file = \"{at}besitos_token\"\n[reload]\nwatch = true\n");
    let m = Config::from_toml(&minimal, &env()).unwrap();
    assert_eq!(m.to_redacted_toml(), c.to_redacted_toml());
    // As shipped, before a user has put anything in place, it says what is missing.
    let e = Config::from_toml(SHIPPED, &MapEnv::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("/run/secrets/offergate/encore_api_key"), "{e}");
    // With its secrets in place but the placeholder partner id left, it
    // names the line to change.
    let placeholder = SHIPPED.replace("/run/secrets/offergate/", &at);
    let e = Config::from_toml(&placeholder, &env())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("besitos.partners[0].id") && e.contains("placeholder"),
        "{e}"
    );
}

#[test]
fn redacted_output_never_shows_a_secret() {
    let c = Config::from_toml(&shipped_reading_env(), &env()).unwrap();
    let out = c.to_redacted_toml();
    assert!(
        !out.contains("pk_test_abc123") && !out.contains("tok-xyz-secret"),
        "{out}"
    );
    assert!(out.contains("from env ENCORE_API_KEY"), "{out}");
    assert!(!format!("{c:?}").contains("tok-xyz-secret"));
}

#[test]
fn env_overrides_apply_and_are_validated() {
    let mut e = env();
    e.0.insert("OFFERGATE_SERVER__LISTEN".into(), "127.0.0.1:9999".into());
    e.0.insert("OFFERGATE_ENCORE__TRY_TIMEOUT_MS".into(), "1500".into());
    let c = Config::from_toml(&shipped_reading_env(), &e).unwrap();
    assert_eq!(c.server.listen.port(), 9999);
    assert_eq!(c.encore.upstream.try_timeout, Duration::from_millis(1500));
    e.0.insert("OFFERGATE_ENCORE__TRY_TIMEOUT_MS".into(), "soon".into());
    let err = Config::from_toml(&shipped_reading_env(), &e)
        .unwrap_err()
        .to_string();
    assert!(err.contains("encore.try_timeout_ms"), "{err}");
    assert!(
        err.contains("set by the environment variable OFFERGATE_ENCORE__TRY_TIMEOUT_MS"),
        "{err}"
    );
    // A mistyped name is the variable's mistake, not the file's.
    let mut e = env();
    e.0.insert("OFFERGATE_SERVER__LISTN".into(), "127.0.0.1:9999".into());
    let err = problems(&shipped_reading_env(), &e);
    assert!(
        err.contains("server.listn") && err.contains("OFFERGATE_SERVER__LISTN"),
        "{err}"
    );
}

fn problems(toml: &str, env: &MapEnv) -> String {
    Config::from_toml(toml, env).unwrap_err().to_string()
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let bad = r#"
[server]
listen = "localhost:8787"
body_limit_bytes = 1
[encore]
base_url = "ftp://x"
api_key_env = "MISSING_KEY"
connect_timeout_ms = 0
[besitos]
base_url = "http://wall.besitos.ai"
[[besitos.partners]]
id = "../evil"
token_env = "BESITOS_TOKEN"
"#;
    let err = problems(bad, &env());
    for expect in [
        "server.listen",
        "server.body_limit_bytes",
        "encore.base_url",
        "encore.api_key_env: environment variable MISSING_KEY is not set",
        "encore.connect_timeout_ms",
        "besitos.base_url: plain http",
        "besitos.partners[0].id",
    ] {
        assert!(err.contains(expect), "missing `{expect}` in:\n{err}");
    }
    // A secret's problem names its key once, first (not `encore: encore.…`).
    assert!(
        err.lines()
            .any(|l| l.starts_with("  - encore.api_key_env: environment variable")),
        "{err}"
    );
}

#[test]
fn unknown_and_misplaced_keys_are_refused() {
    let err = problems("[server]\nlisten_addr = \"127.0.0.1:1\"\n", &env());
    assert!(
        err.contains("server") && err.contains("listen_addr"),
        "{err}"
    );
    let err = problems(
        &format!("{}\n[encore.extra]\nx = 1\n", shipped_reading_env()),
        &env(),
    );
    assert!(err.contains("encore") && err.contains("extra"), "{err}");
    let err = problems("[encore]\napi_key_env = \"ENCORE_API_KEY\"\nchat_id_key_env = \"CHAT_ID_KEY\"\n[[besitos.partners]]\nid = \"a\"\ntoken_env = \"BESITOS_TOKEN\"\n[[encore.partners]]\nid = \"b\"\ntoken_env = \"X\"\n", &env());
    assert!(err.contains("encore.partners"), "{err}");
    let err = problems("not = [toml", &env());
    assert!(err.contains("not valid TOML"), "{err}");
}

#[test]
fn public_listener_needs_an_inbound_token() {
    let open =
        shipped_reading_env().replace("listen = \"127.0.0.1:8787\"", "listen = \"0.0.0.0:8787\"");
    let err = problems(&open, &env());
    assert!(
        err.contains("server.listen") && err.contains("inbound_token"),
        "{err}"
    );
    let mut e = env();
    e.0.insert(
        "OFFERGATE_SERVER__INBOUND_TOKEN_ENV".into(),
        "IN_TOK".into(),
    );
    e.0.insert("IN_TOK".into(), "caller-secret".into());
    let c = Config::from_toml(&open, &e).unwrap();
    assert!(c.server.inbound_token.is_some());
}

#[test]
fn secrets_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "pk_live_fromfile\n").unwrap();
    let toml = format!(
        "[encore]\napi_key_file = {:?}\nchat_id = \"as_sent\"\n[[besitos.partners]]\nid = \"p1\"\ntoken_file = {:?}\n",
        key,
        dir.path().join("absent")
    );
    let err = problems(&toml, &MapEnv::default());
    assert!(
        err.lines()
            .any(|l| l.starts_with("  - besitos.partners[0].token_file: cannot read")),
        "{err}"
    );
    std::fs::write(dir.path().join("absent"), "t").unwrap();
    let c = Config::from_toml(&toml, &MapEnv::default()).unwrap();
    assert_eq!(c.encore.api_key.expose(), "pk_live_fromfile");
}

#[test]
fn resilience_rules_are_checked_with_their_keys() {
    let base = "[encore]\napi_key_env = \"ENCORE_API_KEY\"\nchat_id_key_env = \"CHAT_ID_KEY\"\n[[besitos.partners]]\nid = \"p\"\ntoken_env = \"BESITOS_TOKEN\"\n";
    let c = Config::from_toml(base, &env()).unwrap();
    assert_eq!(c.encore.resilience.deadline, Duration::from_millis(2_500));
    assert!(
        !c.encore.resilience.retry.retry_ambiguous,
        "Encore mints a link per call"
    );
    assert!(
        c.besitos.resilience.retry.retry_ambiguous,
        "Besitos is a read"
    );
    assert!(c.encore.resilience.soft_fallback);

    let mut e = env();
    for (k, v) in [
        ("OFFERGATE_ENCORE__TRY_TIMEOUT_MS", "3000"),
        ("OFFERGATE_ENCORE__RETRY__BACKOFF_MS", "[]"),
        ("OFFERGATE_ENCORE__RETRY__BUDGET_PERCENT", "-5"),
        ("OFFERGATE_ENCORE__RETRY__BUDGET_WINDOW_MS", "100"),
        ("OFFERGATE_ENCORE__RETRY__MAX_RETRIES", "50"),
        ("OFFERGATE_BESITOS__CIRCUIT__FAILURE_THRESHOLD", "0"),
        ("OFFERGATE_BESITOS__RETRY__MIN_TRY_MS", "9000"),
    ] {
        e.0.insert(k.into(), v.into());
    }
    let err = problems(base, &e);
    for expect in [
        "encore.try_timeout_ms: 3000 ms is longer than encore.deadline_ms",
        "encore.retry.backoff_ms: empty",
        "encore.retry.budget_percent",
        "encore.retry.budget_window_ms",
        "encore.retry.max_retries",
        "besitos.circuit.failure_threshold",
        "besitos.retry.min_try_ms",
    ] {
        assert!(err.contains(expect), "missing `{expect}` in:\n{err}");
    }
    let err = problems(
        &format!("{base}[encore.retry]\nbackoff_ms = [100, 0]\n"),
        &env(),
    );
    assert!(err.contains("encore.retry.backoff_ms[1]"), "{err}");
}

#[test]
fn the_documented_sample_config_loads() {
    let sample = r#"
[server]
listen = "127.0.0.1:8787"
admin_listen = "127.0.0.1:9787"

[encore]                       # route encore_offers
base_url = "https://api.encorekit.com"
api_key_env = "ENCORE_API_KEY" # or api_key_file = "/run/secrets/encore_api_key"
chat_id_key_env = "CHAT_ID_KEY"
[encore.rate_limit]
partner_per_second = 50        # quota offergate spends on the partner
partner_burst = 50
client_per_second = 5          # per clientId
client_burst = 10

[besitos]                      # route besitos_goals
base_url = "https://wall.besitos.ai"
[[besitos.partners]]
id = "eafLst9T"
token_env = "BESITOS_TOKEN"    # or token_file
"#;
    let c = Config::from_toml(sample, &env()).unwrap();
    let r = &c.encore.resilience.rate_limit;
    assert_eq!((r.partner.per_second, r.partner.burst), (50.0, 50));
    assert_eq!((r.client.per_second, r.client.burst), (5.0, 10));
    assert_eq!(r.on_limit, OnLimit::Fallback);
    assert_eq!(c.besitos.resilience.rate_limit.on_limit, OnLimit::Reject);
}

#[test]
fn zero_or_negative_rates_are_refused_clearly() {
    let base = "[encore]\napi_key_env = \"ENCORE_API_KEY\"\nchat_id_key_env = \"CHAT_ID_KEY\"\n[[besitos.partners]]\nid = \"p\"\ntoken_env = \"BESITOS_TOKEN\"\n";
    let bad = format!(
        "{base}[encore.rate_limit]\npartner_per_second = 0\nclient_per_second = -2\nclient_burst = 0\non_limit = \"drop\"\n[encore.rate_limit.client_overrides]\nbig = {{ per_second = 0.0, burst = 5 }}\n"
    );
    let err = problems(&bad, &env());
    for expect in [
        "encore.rate_limit.partner_per_second: 0 must be a rate above 0",
        "encore.rate_limit.client_per_second: -2 must be a rate above 0",
        "encore.rate_limit.client_burst",
        "encore.rate_limit.on_limit: `drop`",
        "encore.rate_limit.client_overrides.\"big\".per_second",
    ] {
        assert!(err.contains(expect), "missing `{expect}` in:\n{err}");
    }
    let ok = format!("{base}[encore.rate_limit]\nclient_per_second = 0.5\n");
    assert_eq!(
        Config::from_toml(&ok, &env())
            .unwrap()
            .encore
            .resilience
            .rate_limit
            .client
            .per_second,
        0.5
    );
}

#[test]
fn every_key_that_does_not_fit_is_reported_not_only_the_first() {
    let bad = "[server]\nlisten = 8787\nmax_in_flight = \"many\"\n[encore.retry]\nmax_retries = -1\n[log]\nlevel = \"warning\"\n";
    let err = problems(bad, &env());
    for expect in [
        "server.listen",
        "server.max_in_flight",
        "encore.retry.max_retries",
    ] {
        assert!(err.contains(expect), "missing `{expect}` in:\n{err}");
    }
}

#[test]
fn a_secret_run_would_refuse_is_refused_by_check_config_too() {
    let env = MapEnv::from([
        ("ENCORE_API_KEY", "pk_test_ok\u{7}bell"),
        ("BESITOS_TOKEN", "token"),
    ]);
    let err = problems(&shipped_reading_env(), &env);
    assert!(
        err.contains("ENCORE_API_KEY holds a character not allowed"),
        "{err}"
    );
    assert!(
        !err.contains("bell"),
        "the secret itself is never shown: {err}"
    );
}

#[test]
fn a_syntax_error_names_its_place_and_never_echoes_the_line() {
    let env = MapEnv::from([("ENCORE_API_KEY", "pk_test_x"), ("BESITOS_TOKEN", "t")]);
    let text =
        "[server]\nlisten = \"127.0.0.1:8787\"\n[state]\nredis_url = \"redis://:hunter2@db:6379\n";
    let e = Config::from_toml(text, &env).unwrap_err();
    let shown = e.to_string();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("line 4"), "{shown}");
    assert_eq!(e.problems.len(), 1, "{shown}");
    assert!(!e.problems[0].contains('\n'), "one line: {shown}");
}

#[test]
fn one_pass_names_type_range_and_cross_field_problems_together() {
    let env = MapEnv::from([("ENCORE_API_KEY", "pk_test_x"), ("BESITOS_TOKEN", "t")]);
    let text = r#"
[server]
listen = "nope"
body_limit_bytes = -5
[encore]
base_url = "ftp://x"
api_key_env = "ENCORE_API_KEY"
chat_id_key_env = "CHAT_ID_KEY"
[besitos]
[[besitos.partners]]
id = "eafLst9T"
token_env = "BESITOS_TOKEN"
"#;
    let e = Config::from_toml(text, &env).unwrap_err();
    let all = e.problems.join("\n");
    assert!(all.contains("body_limit_bytes"), "{all}");
    assert!(all.contains("server.listen"), "{all}");
    assert!(all.contains("encore.base_url"), "{all}");
    for p in &e.problems {
        assert!(!p.contains('\n'), "one line each: {p:?}");
    }
}

#[test]
fn the_state_topologies_and_their_keys() {
    let base = "[encore]\napi_key_env = \"ENCORE_API_KEY\"\nchat_id_key_env = \"CHAT_ID_KEY\"\n[[besitos.partners]]\nid = \"a\"\ntoken_env = \"BESITOS_TOKEN\"\n";
    let with = |state: &str| format!("{base}[state]\nbackend = \"redis\"\n{state}");
    let c = Config::from_toml(
        &with("topology = \"cluster\"\nredis_nodes = [\"10.0.0.1:6379\", \"redis-2.internal:7000\"]\nredis_username = \"offergate\"\n[state.tls]\nca_file = \"/etc/ca.pem\"\n"),
        &env(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.state.topology, Topology::Cluster);
    assert_eq!(c.state.redis_nodes.len(), 2);
    assert_eq!(c.state.redis_username.as_deref(), Some("offergate"));
    assert!(c.state.tls.as_ref().is_some_and(|t| t.ca_file.is_some()));
    for (state, expect) in [
        (
            "topology = \"cluster\"\n",
            "state.redis_nodes: a cluster needs its seed nodes",
        ),
        ("topology = \"ring\"\n", "state.topology"),
        (
            "topology = \"cluster\"\nredis_nodes = [\"nope\"]\n",
            "state.redis_nodes[0]",
        ),
        (
            "redis_url = \"redis://r:6379\"\nredis_nodes = [\"r:6379\"]\n",
            "only for topology",
        ),
        (
            "topology = \"sentinel\"\nredis_nodes = [\"s:26379\"]\n",
            "state.sentinel_master_name",
        ),
        (
            "topology = \"sentinel\"\nsentinel_master_name = \"m\"\n",
            "Sentinel needs the sentinels",
        ),
        (
            "redis_url = \"redis://r:6379\"\nredis_username = \"\"\n",
            "state.redis_username",
        ),
        (
            "redis_url = \"redis://r:6379\"\n[state.tls]\ncert_file = \"/c.pem\"\n",
            "cert_file and key_file go together",
        ),
        (
            "topology = \"cluster\"\nredis_nodes = [\"r:6379\"]\n[state.tls]\nserver_name = \"r\"\n",
            "state.tls.server_name: not supported with topology = \"cluster\"",
        ),
        (
            "redis_url = \"redis://r:6379\"\n[state.tls]\nserver_name = \"10.0.0.1\"\n",
            "state.tls.server_name: `10.0.0.1` is an address, not a name",
        ),
    ] {
        let err = problems(&with(state), &env());
        assert!(err.contains(expect), "missing `{expect}` in:\n{err}");
    }
}

#[test]
fn tracing_is_off_by_default_and_its_collector_is_a_traces_url() {
    let text = shipped_reading_env();
    let off = Config::from_toml(&text, &env()).unwrap();
    assert_eq!(off.tracing.otlp_endpoint, None);
    assert_eq!(off.tracing.sample_ratio, 1.0);
    assert_eq!(off.tracing.service_name, "offergate");
    // The shipped [tracing] with its two settings taken out, `section` in.
    let bare = text
        .replace("sample_ratio = 1.0\n", "")
        .replace("service_name = \"offergate\"\n", "");
    let with = |section: &str| bare.replace("[tracing]\n", &format!("[tracing]\n{section}\n"));
    for (given, url) in [
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("https://c.example/otlp", "https://c.example/otlp/v1/traces"),
        ("http://c:4318/v1/traces", "http://c:4318/v1/traces"),
    ] {
        let c = Config::from_toml(&with(&format!("otlp_endpoint = \"{given}\"")), &env()).unwrap();
        assert_eq!(c.tracing.otlp_endpoint.as_deref(), Some(url), "{given}");
    }
    // OpenTelemetry's own variable, when the file names none.
    let mut vars = env();
    vars.0.insert(
        "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
        "http://otel:4318".into(),
    );
    let c = Config::from_toml(&text, &vars).unwrap();
    assert_eq!(
        c.tracing.otlp_endpoint.as_deref(),
        Some("http://otel:4318/v1/traces")
    );
    for (section, expect) in [
        (
            "otlp_endpoint = \"collector:4318\"",
            "tracing.otlp_endpoint",
        ),
        ("otlp_endpoint = \"grpc://c:4317\"", "http:// or https://"),
        ("otlp_endpoint = \"http://c:4318?x=1\"", "takes no query"),
        ("sample_ratio = 1.5", "tracing.sample_ratio"),
        ("sample_ratio = -0.1", "tracing.sample_ratio"),
        ("service_name = \" \"", "tracing.service_name"),
    ] {
        let err = problems(&with(section), &env());
        assert!(err.contains(expect), "missing `{expect}` in:\n{err}");
    }
    let mut vars = env();
    vars.0
        .insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), "nope".into());
    assert!(problems(&text, &vars).contains("OTEL_EXPORTER_OTLP_ENDPOINT"));
}

#[test]
fn the_thread_file_defaults_to_a_state_directory_never_the_working_directory() {
    let base = "[encore]\napi_key_env = \"ENCORE_API_KEY\"\nchat_id_key_env = \"CHAT_ID_KEY\"\n[[besitos.partners]]\nid = \"eafLst9T\"\ntoken_env = \"BESITOS_TOKEN\"\n";
    let file = |extra: &str, vars: &[(&str, &str)]| {
        let mut env = env();
        for (k, v) in vars {
            env.0.insert(k.to_string(), v.to_string());
        }
        Config::from_toml(&format!("{base}{extra}"), &env)
            .unwrap()
            .state
            .thread_file
    };
    let default = |path: &str| {
        Some(ThreadFile {
            path: path.into(),
            default: true,
        })
    };
    assert_eq!(
        file(
            "",
            &[
                ("STATE_DIRECTORY", "/var/lib/offergate:/var/lib/other"),
                ("HOME", "/home/u")
            ]
        ),
        default("/var/lib/offergate/threads.redb")
    );
    assert_eq!(
        file("", &[("XDG_STATE_HOME", "/x/state"), ("HOME", "/home/u")]),
        default("/x/state/offergate/threads.redb")
    );
    assert_eq!(
        file("", &[("HOME", "/home/u")]),
        default("/home/u/.local/state/offergate/threads.redb")
    );
    assert_eq!(file("", &[]), None, "no home: memory only");
    assert_eq!(
        file("", &[("XDG_STATE_HOME", "relative"), ("HOME", "relative")]),
        None,
        "a relative directory is not taken"
    );
    assert_eq!(
        file("[state]\nthread_file = \"\"\n", &[("HOME", "/home/u")]),
        None
    );
    assert_eq!(
        file(
            "[state]\nthread_file = \"/t/x.redb\"\n",
            &[("HOME", "/home/u")]
        ),
        Some(ThreadFile {
            path: "/t/x.redb".into(),
            default: false
        })
    );
}

#[test]
fn opt_out_keywords_are_the_carriers_words_by_default_and_read_as_messages_are() {
    let base = "[encore]\napi_key_env = \"ENCORE_API_KEY\"\nchat_id_key_env = \"CHAT_ID_KEY\"\n[[besitos.partners]]\nid = \"eafLst9T\"\ntoken_env = \"BESITOS_TOKEN\"\n";
    let words = |extra: &str| {
        Config::from_toml(&format!("{base}{extra}"), &env())
            .unwrap()
            .encore
            .integrator
            .opt_out_keywords
    };
    assert_eq!(
        words(""),
        ["stop", "stopall", "unsubscribe", "cancel", "end", "quit"]
    );
    assert!(words("[encore.integrator]\nopt_out_keywords = []\n").is_empty());
    assert_eq!(
        words("[encore.integrator]\nopt_out_keywords = [\"ＡＲＲÊT\"]\n"),
        ["arrêt"]
    );
}

#[test]
fn a_password_in_any_url_is_refused_and_never_echoed() {
    let base = "[encore]\napi_key_env = \"ENCORE_API_KEY\"\nchat_id_key_env = \"CHAT_ID_KEY\"\n[[besitos.partners]]\nid = \"p\"\ntoken_env = \"BESITOS_TOKEN\"\n";
    let planted = "hunter2pw";
    let cases = [
        "[server]\npublic_base_url = \"https://u:hunter2pw@og.example\"\n",
        "[encore]\nbase_url = \"https://u:hunter2pw@api.example\"\n",
        "[besitos]\nbase_url = \"https://u:hunter2pw@wall.example\"\n",
        "[state]\nbackend = \"redis\"\nredis_url = \"redis://u:hunter2pw@r.example:6379/0\"\n",
        "[state]\nbackend = \"redis\"\ntopology = \"cluster\"\nredis_nodes = [\"u:hunter2pw@r1.example:6379\"]\n",
        "[tracing]\notlp_endpoint = \"https://u:hunter2pw@otel.example:4318\"\n",
    ];
    // Not even a URL: refused, still not echoed.
    let e = Config::from_toml(
        &merge_toml(
            base,
            "[tracing]\notlp_endpoint = \"https://u:hunter2pw@\"\n",
        ),
        &env(),
    )
    .unwrap_err()
    .to_string();
    assert!(!e.contains(planted), "echoed: {e}");
    for extra in cases {
        // Sections given twice are merged by appending the keys to base's.
        let text = merge_toml(base, extra);
        let e = Config::from_toml(&text, &env()).unwrap_err().to_string();
        assert!(!e.contains(planted), "echoed: {e}");
        assert!(
            e.contains("credentials") || e.contains("password"),
            "{extra}: {e}"
        );
    }
    let mut env = env();
    env.0.insert(
        "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
        "http://u:hunter2pw@otel.example:4318".into(),
    );
    let e = Config::from_toml(base, &env).unwrap_err().to_string();
    assert!(
        !e.contains(planted) && e.contains("OTEL_EXPORTER_OTLP_ENDPOINT"),
        "{e}"
    );
}

/// `extra`'s tables merged into `base`'s (TOML refuses a table given twice).
fn merge_toml(base: &str, extra: &str) -> String {
    let mut doc: toml::Table = base.parse().unwrap();
    let more: toml::Table = extra.parse().unwrap();
    for (k, v) in more {
        match (doc.get_mut(&k), v) {
            (Some(toml::Value::Table(t)), toml::Value::Table(m)) => t.extend(m),
            (_, v) => {
                doc.insert(k, v);
            }
        }
    }
    toml::to_string(&doc).unwrap()
}
