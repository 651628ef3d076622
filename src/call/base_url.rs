//! A partner's or offergate's own base URL: a value type shared by config (which
//! parses it), the upstream (which dials it) and the fallback (which writes it).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use http::uri::{Authority, Scheme};
use serde::Serialize;

/// An `http(s)://host[:port][/prefix]` URL with no query, fragment or userinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl {
    pub scheme: Scheme,
    pub authority: Authority,
    /// Empty, or starts with `/` and has no trailing `/`.
    pub path_prefix: String,
}

impl BaseUrl {
    pub fn parse(s: &str) -> Result<BaseUrl, String> {
        let uri: http::Uri = s.parse().map_err(|e| format!("`{s}` is not a URL: {e}"))?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::HTTP,
            Some("https") => Scheme::HTTPS,
            Some(other) => return Err(format!("`{s}`: scheme {other} is not http or https")),
            None => return Err(format!("`{s}` needs a scheme (https://...)")),
        };
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("`{s}` has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("`{s}`: credentials in the URL are not allowed"));
        }
        if authority.host().is_empty() {
            return Err(format!("`{s}` has no host"));
        }
        if uri.query().is_some() || s.contains('#') {
            return Err(format!("`{s}`: a base URL takes no query or fragment"));
        }
        let path_prefix = uri.path().trim_end_matches('/').to_string();
        Ok(BaseUrl {
            scheme,
            authority,
            path_prefix,
        })
    }

    /// `http://<addr>`, the default public base URL.
    pub fn for_socket(addr: SocketAddr) -> BaseUrl {
        let authority = Authority::try_from(addr.to_string().as_str())
            .expect("a socket address is a valid authority");
        BaseUrl {
            scheme: Scheme::HTTP,
            authority,
            path_prefix: String::new(),
        }
    }

    /// Whether the host is this machine, where plain HTTP leaks nothing.
    pub fn is_loopback(&self) -> bool {
        let host = self
            .authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<IpAddr>()
                .map(|ip| ip.is_loopback())
                .unwrap_or(false)
    }

    /// `scheme://authority/prefix` + `path_and_query` (which starts with `/`).
    pub fn join(&self, path_and_query: &str) -> String {
        let mut s = String::with_capacity(64 + path_and_query.len());
        s.push_str(self.scheme.as_str());
        s.push_str("://");
        s.push_str(self.authority.as_str());
        s.push_str(&self.path_prefix);
        s.push_str(path_and_query);
        s
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.join(""))
    }
}

impl Serialize for BaseUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
