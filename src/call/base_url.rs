//! A partner's or offergate's own base URL: a value type shared by config (which
//! parses it), the upstream (which dials it) and the fallback (which writes it).

use crate::call::problem::Problem;
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
    /// Parses `url`. Errors quote it with any user info masked: a password
    /// written into a URL must not reach a log or a terminal.
    pub fn parse(url: &str) -> Result<BaseUrl, Problem> {
        let shown = mask_userinfo(url);
        let s = shown.as_str();
        let uri: http::Uri = url
            .parse()
            .map_err(|e| Problem(format!("`{s}` is not a URL: {e}")))?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::HTTP,
            Some("https") => Scheme::HTTPS,
            Some(other) => return Err(format!("`{s}`: scheme {other} is not http or https").into()),
            None => return Err(format!("`{s}` needs a scheme (https://...)").into()),
        };
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("`{s}` has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("`{s}`: credentials in the URL are not allowed").into());
        }
        if authority.host().is_empty() {
            return Err(format!("`{s}` has no host").into());
        }
        if uri.query().is_some() || url.contains('#') {
            return Err(format!("`{s}`: a base URL takes no query or fragment").into());
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

/// `url` with whatever stands between `://` and the authority's last `@`
/// replaced by `***`.
pub(crate) fn mask_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_a_url_is_refused_without_being_echoed() {
        for url in [
            "https://user:hunter2@api.example",
            "https://hunter2@api.example/x",
            "ftp://u:hunter2@x",
            "https://u:hunter2@exa mple",
        ] {
            let e = BaseUrl::parse(url).unwrap_err();
            assert!(!e.contains("hunter2"), "{e}");
        }
        assert_eq!(mask_userinfo("https://a:b@h/p@q"), "https://***@h/p@q");
        assert_eq!(mask_userinfo("https://h/p@q"), "https://h/p@q");
    }
}
