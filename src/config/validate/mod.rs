//! From the raw file to a [`Config`]: one function per section, each checking
//! its keys with the parsers of `parse.rs`, applying its cross-field rules and
//! loading its secrets. Every problem is collected with its key; the config is
//! built only when there are none.

mod partners;

use super::parse::{bounded, choice, host_name, log_filter, millis, socket, Problems};
use super::raw::{RawConfig, RawLog, RawServer, RawState, RawTls, RawTracing};
use super::*;
use crate::call::problem::Problem;

pub(super) fn validate(raw: RawConfig, env: &dyn Env) -> Result<Config, ConfigError> {
    let mut p = Problems::default();
    let server = server(&raw.server, env, &mut p);
    let log = log(&raw.log, &mut p);
    let tls = tls(raw.tls, &mut p);
    let encore = partners::encore(&raw.encore, env, &mut p);
    let besitos = partners::besitos(&raw.besitos, env, &mut p);
    let state = state(&raw.state, env, &mut p);
    let tracing = tracing(&raw.tracing, env, &mut p);
    match (server, log, tls, encore, besitos, state, tracing) {
        (
            Some(server),
            Some(log),
            Some(tls),
            Some(encore),
            Some(besitos),
            Some(state),
            Some(tracing),
        ) if p.0.is_empty() => Ok(Config {
            server,
            log,
            tls,
            encore,
            besitos,
            state,
            reload: ReloadConfig {
                watch: raw.reload.watch,
            },
            tracing,
        }),
        _ => Err(ConfigError { problems: p.0 }),
    }
}

/// `[tracing]`: the collector from the file, else from
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (OpenTelemetry's own variable, a base URL).
fn tracing(t: &RawTracing, env: &dyn Env, p: &mut Problems) -> Option<TracingConfig> {
    let (key, given) = match &t.otlp_endpoint {
        Some(e) => ("tracing.otlp_endpoint", Some(e.trim().to_string())),
        None => (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            env.var("OTEL_EXPORTER_OTLP_ENDPOINT")
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty()),
        ),
    };
    let endpoint = match given {
        None => Some(None),
        Some(base) => p.check(key, otlp_traces_url(&base)).map(Some),
    };
    let ratio = if (0.0..=1.0).contains(&t.sample_ratio) {
        Some(t.sample_ratio)
    } else {
        p.push(format!(
            "tracing.sample_ratio: {} is not a share of calls; use 0.0 to 1.0 (0.01: one call in a hundred)",
            t.sample_ratio
        ));
        None
    };
    let name = t.service_name.trim();
    if name.is_empty() {
        p.push("tracing.service_name: give the name the spans carry (default offergate)".into());
    }
    Some(TracingConfig {
        otlp_endpoint: endpoint?,
        sample_ratio: ratio?,
        service_name: (!name.is_empty()).then(|| name.to_string())?,
    })
}

/// The traces URL for an OTLP/HTTP base (`http://collector:4318` →
/// `http://collector:4318/v1/traces`); one already ending in `/v1/traces`
/// is kept.
fn otlp_traces_url(base: &str) -> Result<String, Problem> {
    // Never echoed with a password in it.
    let shown = crate::call::base_url::mask_userinfo(base);
    let uri: http::Uri = base
        .parse()
        .map_err(|e| Problem(format!("`{shown}` is not a URL: {e}")))?;
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(Problem(format!(
            "`{shown}`: credentials in the URL are not allowed (they would be shown wherever the URL is: check-config, /config, the log)"
        )));
    }
    let base = shown.as_str();
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(_)) => {}
        _ => {
            return Err(Problem(format!(
                "`{base}` is not an http:// or https:// URL of an OTLP/HTTP collector (e.g. http://127.0.0.1:4318)"
            )))
        }
    }
    if uri.query().is_some() {
        return Err(Problem(format!("`{base}`: a collector URL takes no query")));
    }
    let trimmed = base.trim_end_matches('/');
    Ok(if trimmed.ends_with("/v1/traces") {
        trimmed.to_string()
    } else {
        format!("{trimmed}/v1/traces")
    })
}

/// `[server]`.
fn server(s: &RawServer, env: &dyn Env, p: &mut Problems) -> Option<ServerConfig> {
    let listen = p.check("server.listen", socket(&s.listen));
    let admin_listen = p.check("server.admin_listen", socket(&s.admin_listen));
    if let (Some(a), Some(b)) = (listen, admin_listen) {
        if a == b && a.port() != 0 {
            p.push("server.admin_listen: must differ from server.listen".into());
        }
    }
    let public_base_url = match &s.public_base_url {
        Some(u) => p
            .check("server.public_base_url", BaseUrl::parse(u))
            .map(Some),
        None => Some(None),
    };
    let mut allowed_hosts = Vec::new();
    for (i, h) in s.allowed_hosts.iter().enumerate() {
        if let Some(h) = p.check(&format!("server.allowed_hosts[{i}]"), host_name(h)) {
            allowed_hosts.push(h);
        }
    }
    let token =
        |key, e: &Option<String>, f: &Option<std::path::PathBuf>, p: &mut Problems| match (e, f) {
            (None, None) => Some(None),
            (e, f) => p
                .keep(Secret::load(key, e.as_deref(), f.as_deref(), env))
                .map(Some),
        };
    let inbound_token = token(
        "server.inbound_token",
        &s.inbound_token_env,
        &s.inbound_token_file,
        p,
    );
    let admin_token = token(
        "server.admin_token",
        &s.admin_token_env,
        &s.admin_token_file,
        p,
    );
    if let (Some(addr), Some(None)) = (listen, &inbound_token) {
        if !addr.ip().is_loopback() {
            p.push(format!(
                "server.listen: {addr} is reachable from other hosts, so callers must authenticate: \
                 set server.inbound_token_env or server.inbound_token_file"
            ));
        }
    }
    // Every key is checked before any is required, so all problems are reported.
    let body_limit_bytes = p.check(
        "server.body_limit_bytes",
        bounded(s.body_limit_bytes, 256, 16 * 1024 * 1024),
    );
    let header_read_timeout = p.check(
        "server.header_read_timeout_ms",
        millis(s.header_read_timeout_ms, 10, 600_000),
    );
    let body_read_timeout = p.check(
        "server.body_read_timeout_ms",
        millis(s.body_read_timeout_ms, 10, 600_000),
    );
    let shutdown_grace = p.check(
        "server.shutdown_grace_ms",
        millis(s.shutdown_grace_ms, 0, 600_000),
    );
    let drain_delay = p.check(
        "server.drain_delay_ms",
        millis(s.drain_delay_ms, 0, 600_000),
    );
    let body_budget = p.check(
        "server.body_budget_bytes",
        bounded(s.body_budget_bytes, 1024 * 1024, 4 * 1024 * 1024 * 1024),
    );
    let max_in_flight = p.check(
        "server.max_in_flight",
        bounded(s.max_in_flight, 1, 1_000_000),
    );
    let max_connections = p.check(
        "server.max_connections",
        bounded(s.max_connections, 1, 1_000_000),
    );
    let max_headers = p.check("server.max_headers", bounded(s.max_headers, 1, 100));
    let max_header_bytes = p.check(
        "server.max_header_bytes",
        bounded(s.max_header_bytes, 1024, 1024 * 1024),
    );
    Some(ServerConfig {
        listen: listen?,
        admin_listen: admin_listen?,
        public_base_url: public_base_url?,
        body_limit_bytes: body_limit_bytes?,
        header_read_timeout: header_read_timeout?,
        body_read_timeout: body_read_timeout?,
        shutdown_grace: shutdown_grace?,
        drain_delay: drain_delay?,
        body_budget_bytes: body_budget?,
        max_in_flight: max_in_flight?,
        max_headers: max_headers?,
        max_connections: max_connections?,
        max_header_bytes: max_header_bytes?,
        allowed_hosts: (allowed_hosts.len() == s.allowed_hosts.len()).then_some(allowed_hosts)?,
        inbound_token: inbound_token?,
        admin_token: admin_token?,
    })
}

/// `[log]`.
fn log(l: &RawLog, p: &mut Problems) -> Option<LogConfig> {
    let level = p.check("log.level", log_filter(&l.level));
    let formats = [("text", LogFormat::Text), ("json", LogFormat::Json)];
    let format = p.check("log.format", choice(&l.format, &formats));
    Some(LogConfig {
        level: level?,
        format: format?,
        access_log: l.access_log,
    })
}

/// `[state]`.
fn state(s: &RawState, env: &dyn Env, p: &mut Problems) -> Option<StateConfig> {
    let backends = [
        ("memory", StateBackend::Memory),
        ("redis", StateBackend::Redis),
    ];
    let backend = p.check("state.backend", choice(&s.backend, &backends));
    let on_errors = [
        ("fail_open", OnStateError::FailOpen),
        ("fail_closed", OnStateError::FailClosed),
    ];
    let on_error = p.check("state.on_error", choice(&s.on_error, &on_errors));
    let redis_url = match (&s.redis_url, backend) {
        (Some(url), _) => p.check("state.redis_url", redis_url(url)).map(Some),
        // A cluster is found from its seed nodes, a master by the sentinels.
        (None, Some(StateBackend::Redis))
            if s.topology == "cluster" || s.topology == "sentinel" =>
        {
            Some(None)
        }
        (None, Some(StateBackend::Redis)) => {
            p.push("state.redis_url: required with backend = \"redis\" (e.g. redis://127.0.0.1:6379/0)".into());
            None
        }
        (None, _) => Some(None),
    };
    let redis_password = match (&s.redis_password_env, &s.redis_password_file) {
        (None, None) => Some(None),
        (e, f) => p
            .keep(Secret::load(
                "state.redis_password",
                e.as_deref(),
                f.as_deref(),
                env,
            ))
            .map(Some),
    };
    let prefix_ok = !s.key_prefix.is_empty()
        && s.key_prefix.len() <= 64
        && s.key_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !prefix_ok {
        p.push(format!(
            "state.key_prefix: `{}` must be 1 to 64 letters, digits, `-`, `_` or `.`",
            s.key_prefix
        ));
    }
    let timeout = p.check("state.timeout_ms", millis(s.timeout_ms, 1, 10_000));
    let topologies = [
        ("single", Topology::Single),
        ("cluster", Topology::Cluster),
        ("sentinel", Topology::Sentinel),
    ];
    let topology = p.check("state.topology", choice(&s.topology, &topologies));
    let mut nodes = Some(Vec::new());
    for (i, node) in s.redis_nodes.iter().enumerate() {
        match node.rsplit_once(':') {
            Some((host, port))
                if !host.is_empty()
                    && host.len() <= 253
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b))
                    && port.parse::<u16>().is_ok_and(|p| p > 0) =>
            {
                if let Some(nodes) = nodes.as_mut() {
                    nodes.push(node.clone());
                }
            }
            _ if node.contains('@') => {
                p.push(format!(
                    "state.redis_nodes[{i}]: credentials in a node are not allowed; use state.redis_username and state.redis_password_env or _file"
                ));
                nodes = None;
            }
            _ => {
                p.push(format!(
                    "state.redis_nodes[{i}]: `{node}` is not host:port (e.g. redis-1.internal:6379)"
                ));
                nodes = None;
            }
        }
    }
    let seeds = s.redis_nodes.len() + usize::from(s.redis_url.is_some());
    match (topology, backend) {
        (Some(Topology::Cluster), Some(StateBackend::Redis)) if seeds == 0 => p.push(
            "state.redis_nodes: a cluster needs its seed nodes (or redis_url for one)".into(),
        ),
        (Some(Topology::Sentinel), Some(StateBackend::Redis)) => {
            if s.redis_nodes.is_empty() {
                p.push("state.redis_nodes: Sentinel needs the sentinels' host:port".into());
            }
            if s.sentinel_master_name.as_deref().is_none_or(str::is_empty) {
                p.push("state.sentinel_master_name: Sentinel needs the master's name (e.g. mymaster)".into());
            }
        }
        (Some(Topology::Single), _) if !s.redis_nodes.is_empty() => p.push(
            "state.redis_nodes: only for topology = \"cluster\" or \"sentinel\"; a single Redis is redis_url".into(),
        ),
        _ => {}
    }
    let username = match &s.redis_username {
        Some(u) if u.is_empty() || u.len() > 128 || !u.bytes().all(|b| b.is_ascii_graphic()) => {
            p.push("state.redis_username: must be 1 to 128 visible ASCII characters".into());
            None
        }
        other => Some(other.clone()),
    };
    let state_tls = match &s.tls {
        None => Some(None),
        Some(t) => {
            let mut ok = true;
            if t.cert_file.is_some() != t.key_file.is_some() {
                p.push("state.tls: cert_file and key_file go together (a client certificate and its key)".into());
                ok = false;
            }
            if let Some(name) = &t.server_name {
                if topology == Some(Topology::Cluster) {
                    p.push("state.tls.server_name: not supported with topology = \"cluster\" (the cluster's nodes are reached at the addresses the cluster announces, each verified as announced); have the nodes announce the certificate's names (cluster-announce-hostname)".into());
                    ok = false;
                } else if name.is_empty() {
                    p.push("state.tls.server_name: empty; remove the key to verify the certificate against the host in the URL".into());
                    ok = false;
                } else if name.parse::<std::net::IpAddr>().is_ok() {
                    p.push(format!("state.tls.server_name: `{name}` is an address, not a name; for a certificate that names an address, put that address in redis_url"));
                    ok = false;
                } else if rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
                    p.push(format!("state.tls.server_name: `{name}` is not a host name (the DNS name the server's certificate holds)"));
                    ok = false;
                }
            }
            ok.then(|| {
                Some(StateTls {
                    ca_file: t.ca_file.clone(),
                    cert_file: t.cert_file.clone(),
                    key_file: t.key_file.clone(),
                    server_name: t.server_name.clone(),
                })
            })
        }
    };
    Some(StateConfig {
        backend: backend?,
        redis_url: redis_url?,
        redis_password: redis_password?,
        key_prefix: prefix_ok.then(|| s.key_prefix.clone())?,
        timeout: timeout?,
        on_error: on_error?,
        // An empty name: memory only. Opened (and its directory checked,
        // or made when it is the default) when the gateway starts.
        thread_file: match s.thread_file.as_deref().map(str::trim) {
            Some("") => None,
            Some(path) => Some(ThreadFile {
                path: std::path::PathBuf::from(path),
                default: false,
            }),
            None => state_directory(env).map(|dir| ThreadFile {
                path: dir.join(super::raw::DEFAULT_THREAD_FILE),
                default: true,
            }),
        },
        topology: topology?,
        redis_nodes: nodes?,
        sentinel_master_name: s.sentinel_master_name.clone(),
        redis_username: username?,
        tls: state_tls?,
    })
}

/// Where offergate keeps its own files when the config does not say:
/// `$STATE_DIRECTORY` (systemd's `StateDirectory=`, which the image sets
/// too), else the XDG state directory (`$XDG_STATE_HOME/offergate`, or
/// `~/.local/state/offergate`); never the working directory. `None` with
/// neither (no home): memory only.
fn state_directory(env: &dyn Env) -> Option<std::path::PathBuf> {
    let set = |name: &str| env.var(name).filter(|v| !v.trim().is_empty());
    if let Some(dirs) = set("STATE_DIRECTORY") {
        // systemd lists one directory per StateDirectory=, colon-separated.
        let first = dirs.split(':').next().unwrap_or(&dirs);
        return Some(std::path::PathBuf::from(first));
    }
    if let Some(xdg) = set("XDG_STATE_HOME").filter(|p| p.starts_with('/')) {
        return Some(std::path::Path::new(&xdg).join("offergate"));
    }
    let home = set("HOME").filter(|p| p.starts_with('/'))?;
    Some(std::path::Path::new(&home).join(".local/state/offergate"))
}

/// A Redis URL: `redis://` or `rediss://`, a host, no password in it (a
/// password comes from `redis_password_env` / `_file`, never the file).
fn redis_url(url: &str) -> Result<String, Problem> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("needs a scheme: redis://host:port/db or rediss:// for TLS".into());
    };
    if scheme != "redis" && scheme != "rediss" {
        return Err(format!("scheme {scheme} is not redis or rediss").into());
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("a password in the URL is not allowed; use state.redis_password_env or state.redis_password_file".into());
    }
    if authority.is_empty() {
        return Err("has no host".into());
    }
    Ok(url.to_string())
}

/// `[tls]`.
fn tls(t: RawTls, p: &mut Problems) -> Option<TlsConfig> {
    for (i, f) in t.extra_ca_files.iter().enumerate() {
        if !f.is_file() {
            p.push(format!(
                "tls.extra_ca_files[{i}]: {} is not a readable file",
                f.display()
            ));
        }
    }
    Some(TlsConfig {
        extra_ca_files: t.extra_ca_files,
    })
}
