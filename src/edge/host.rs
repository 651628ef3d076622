//! The `Host` header's grammar, checked in one pass over its bytes.
//!
//! Callers send a name, an IPv4 address or a bracketed IPv6 address, with an
//! optional port. http's `Authority` parser accepts more (user info, any URI
//! character) and cost 1.5k instructions a request (callgrind) with the checks
//! it then needed; this accepts only what a Host can be.

/// `Some(host)` when `value` is `host[:port]`: a name or IPv4 address
/// (letters, digits, `-._~`) or an IPv6 literal in brackets, and a port of 1
/// to 5 digits up to 65535. No user info, no empty host. The host is returned
/// as sent (brackets included), for the `server.allowed_hosts` check.
pub fn host_of(value: &[u8]) -> Option<&str> {
    let host_end = if value.first() == Some(&b'[') {
        let close = value.iter().position(|&c| c == b']')?;
        let inner = &value[1..close];
        let ipv6 = |c: &u8| c.is_ascii_hexdigit() || matches!(c, b':' | b'.');
        if inner.is_empty() || !inner.iter().all(ipv6) {
            return None;
        }
        close + 1
    } else {
        let end = value.iter().position(|&c| c == b':').unwrap_or(value.len());
        let name = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~');
        if end == 0 || !value[..end].iter().all(name) {
            return None;
        }
        end
    };
    let (host, rest) = value.split_at(host_end);
    let port_ok = match rest {
        [] => true,
        [b':', port @ ..] => {
            (1..=5).contains(&port.len())
                && port.iter().all(u8::is_ascii_digit)
                && std::str::from_utf8(port).is_ok_and(|p| p.parse::<u16>().is_ok())
        }
        _ => false,
    };
    // Every byte accepted above is ASCII.
    port_ok.then(|| std::str::from_utf8(host).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn names_addresses_and_ports_are_hosts() {
        for (value, host) in [
            ("localhost", "localhost"),
            ("offergate.local:8080", "offergate.local"),
            ("127.0.0.1", "127.0.0.1"),
            ("127.0.0.1:0", "127.0.0.1"),
            ("x:65535", "x"),
            ("[::1]", "[::1]"),
            ("[::1]:8080", "[::1]"),
            ("[2001:db8::7]:443", "[2001:db8::7]"),
            ("[::ffff:192.0.2.1]", "[::ffff:192.0.2.1]"),
            ("My-Host_1.example~", "My-Host_1.example~"),
        ] {
            assert_eq!(host_of(value.as_bytes()), Some(host), "{value}");
        }
    }

    #[test]
    fn anything_else_is_not() {
        for value in [
            "",
            ":80",
            "x:",
            "x:99999",
            "x:123456",
            "x:+80",
            "x:8a",
            "x:80:81",
            "user@evil.example",
            "user:pw@evil.example",
            "evil.example/path",
            "evil.example?q",
            "a b",
            "[]",
            "[::1",
            "[::1]x",
            "[::1]:",
            "[fe80::1%eth0]",
            "[v1.x]",
            "host\u{e9}",
        ] {
            assert_eq!(host_of(value.as_bytes()), None, "{value:?}");
        }
    }

    /// What is accepted here, http's own parser accepts too, with the same host.
    #[test]
    fn agrees_with_http_where_it_accepts() {
        for value in [
            "localhost:1",
            "a.b.c",
            "[::1]:9",
            "x-y_z~:65535",
            "10.0.0.1:80",
        ] {
            let authority = http::uri::Authority::try_from(value).expect(value);
            assert_eq!(host_of(value.as_bytes()), Some(authority.host()), "{value}");
        }
    }
}
