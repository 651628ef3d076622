//! What TLS to Redis needs beyond the URL: `[state.tls]`'s certificates,
//! and `server_name` (the name a server's certificate holds when it is not
//! the address offergate is given): the resolver that takes the name to
//! that address, and the address renamed.

use std::net::SocketAddr;

use redis::io::AsyncDNSResolver;
use redis::{ConnectionAddr, ConnectionInfo, RedisFuture, TlsCertificates};

use crate::call::problem::Problem;
use crate::config::{files, StateConfig, StateTls};

/// `[state.tls] server_name`, when set.
pub(super) fn server_name(config: &StateConfig) -> Option<&str> {
    config.tls.as_ref().and_then(|t| t.server_name.as_deref())
}

/// `info` aimed at `name` (the name its certificate is verified against),
/// and the resolver that takes `name` to the address `info` had. Only a
/// TLS address is renamed: without TLS there is no certificate.
pub(super) fn named(info: ConnectionInfo, name: &str) -> (ConnectionInfo, Option<ServerName>) {
    match info.addr().clone() {
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure,
            tls_params,
        } => {
            let resolver = ServerName {
                name: name.to_string(),
                host,
                port,
            };
            let addr = ConnectionAddr::TcpTls {
                host: name.to_string(),
                port,
                insecure,
                tls_params,
            };
            (info.set_addr(addr), Some(resolver))
        }
        _ => (info, None),
    }
}

/// `url` with the `rediss` scheme when TLS is asked for by `[state.tls]`.
pub(super) fn as_tls(url: &str, tls: bool) -> String {
    match url.strip_prefix("redis://") {
        Some(rest) if tls => format!("rediss://{rest}"),
        _ => url.to_string(),
    }
}

/// The CA and client certificate of `[state.tls]`, read now.
pub(super) fn certificates(tls: &StateTls) -> Result<TlsCertificates, Problem> {
    let read = |key: &str, path: &std::path::Path| {
        files::read_text(path, files::MAX_CONFIG_BYTES)
            .map(String::into_bytes)
            .map_err(|e| Problem(format!("state.tls.{key}: {e}")))
    };
    let root_cert = tls
        .ca_file
        .as_deref()
        .map(|p| read("ca_file", p))
        .transpose()?;
    let client_tls = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read("cert_file", cert)?,
            client_key: read("key_file", key)?,
        }),
        _ => None,
    };
    Ok(TlsCertificates {
        client_tls,
        root_cert,
    })
}

/// Resolves `[state.tls] server_name` to the address offergate was given
/// (the name is what the certificate is verified against); any other name
/// as the system does.
#[derive(Clone)]
pub(super) struct ServerName {
    pub name: String,
    /// The configured host (a name or an address) and port.
    pub host: String,
    pub port: u16,
}

impl AsyncDNSResolver for ServerName {
    fn resolve<'a, 'b: 'a>(
        &'a self,
        host: &'b str,
        port: u16,
    ) -> RedisFuture<'a, Box<dyn Iterator<Item = SocketAddr> + Send + 'a>> {
        Box::pin(async move {
            let found: Vec<SocketAddr> = if host.eq_ignore_ascii_case(&self.name) {
                tokio::net::lookup_host((self.host.as_str(), self.port))
                    .await?
                    .collect()
            } else {
                tokio::net::lookup_host((host, port)).await?.collect()
            };
            Ok(Box::new(found.into_iter()) as Box<dyn Iterator<Item = SocketAddr> + Send>)
        })
    }
}
