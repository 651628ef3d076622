//! Encore's offer links in a thread's messages. Every offer link is a short
//! link on one fixed host (`link.encorekit.com`, [`super::LINK_HOST`]), so the
//! offers a thread has shown are the distinct links to exactly that host in
//! its messages, found the way a messaging client makes text tappable: the
//! text is read left to right, every link (on any host) is taken whole, and
//! a link counts when the host a browser would open is the offer host.
//!
//! - with or without `http(s)://` or `//`, user info before the host
//!   (`https://me@link.encorekit.com/a` opens the offer host), any case, a
//!   port (empty too), a trailing dot on the host;
//! - the host as a browser reads it: percent-escapes and full-width or
//!   ideographic letters and dots are the letters and dots they stand for;
//! - glued to punctuation, brackets, quotes, emoji or zero-width characters,
//!   inside markdown (`[claim](https://...)`) or HTML (`href=...`);
//! - two links joined by a comma are two; one link written twice (or
//!   once as text and once as `href`) is one: a link is its path.
//!
//! Never a look-alike (`link.encorekit.com.evil.example`,
//! `xlink.encorekit.com`, `evil.example/link.encorekit.com`, the host inside
//! another link's path or query), never an address (`me@link.encorekit.com`)
//! and never a user-info trick (`https://link.encorekit.com@evil.example/`,
//! whose host is `evil.example`).

use smallvec::SmallVec;

use super::words::is_invisible;

/// One offer link, as the thread's records keep it: a hash of its path, the
/// part that names the offer (the host is fixed, a query or fragment is the
/// sender's decoration).
pub type LinkKey = u64;

/// The distinct offer links on `host` in `text`, in key order (sorted
/// once at the end: a message of 1 MiB may hold tens of thousands).
pub fn offer_links(text: &str, host: &str) -> SmallVec<[LinkKey; 2]> {
    let mut found = SmallVec::new();
    let bytes = text.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let starts = text
            .get(at..)
            .and_then(|rest| rest.chars().next())
            .is_some_and(|c| !is_invisible(c));
        let Some(run) = word_at(text, at).filter(|_| starts) else {
            at += 1;
            continue;
        };
        // A word glued to what comes before it (an address's host, a word
        // that goes on) starts no link; the next may.
        let glued = at > 0 && (bytes[at - 1] == b'@' || ends_in_a_word(&text[..at]));
        match (!glued).then(|| link_at(text, at)).flatten() {
            Some(link) => {
                if let Some(key) = link.key_on(host) {
                    found.push(key);
                }
                at = link.end;
            }
            None => at += run,
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// How many distinct offer links on `host` `text` holds.
pub fn count_offer_links(text: &str, host: &str) -> usize {
    offer_links(text, host).len()
}

/// The key of the `clickUrl` of an offer Encore just answered (already
/// checked to be an https link on `host`): as [`link_key`] finds it.
pub fn key_of_offer(url: &str, host: &str) -> LinkKey {
    link_key(url, host).unwrap_or_else(|| key_of_path(url.as_bytes()))
}

/// The key of an offer's `clickUrl`: exactly one link on `host`, nothing
/// else around it.
pub fn link_key(url: &str, host: &str) -> Option<LinkKey> {
    plain_link_key(url, host).or_else(|| read_link_key(url, host))
}

/// [`link_key`] by the general reader, which any link goes through.
fn read_link_key(url: &str, host: &str) -> Option<LinkKey> {
    let url = url.trim();
    let link = link_at(url, 0)?;
    (link.end == url.len()).then(|| link.key_on(host)).flatten()
}

/// The form Encore's short links take, keyed without the general reader
/// (a third of the work of reading a forwarded offer, callgrind):
/// `https://`, then `host` when it is plain (labels of letters, digits and
/// `-`), then a path of letters, digits and `-._~/` that ends in a letter
/// or digit. [`link_at`] reads such a link the same way (a test holds the
/// two together); `None` for anything else.
fn plain_link_key(url: &str, host: &str) -> Option<LinkKey> {
    let plain_host = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    let rest = url.as_bytes().strip_prefix(b"https://".as_slice())?;
    let (written, path) = rest.split_at_checked(host.len())?;
    let plain_path = path.len() > 1
        && path[0] == b'/'
        && path.last().is_some_and(u8::is_ascii_alphanumeric)
        && path
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(b));
    (plain_host && plain_path && written.eq_ignore_ascii_case(host.as_bytes()))
        .then(|| key_of_path(path))
}

/// A link found in text: where its host and path are, and where it ends.
struct Link<'t> {
    /// Whether it is an http(s) link (or has no scheme): `ftp://` links are
    /// taken whole, so nothing inside them counts, but are never offers.
    web: bool,
    host: &'t str,
    path: &'t [u8],
    end: usize,
}

impl Link<'_> {
    /// The link's key when it opens `host`.
    fn key_on(&self, host: &str) -> Option<LinkKey> {
        (self.web && same_host(self.host, host)).then(|| key_of_path(self.path))
    }
}

/// Never 0: that is a slot whose offer is not known yet.
fn key_of_path(path: &[u8]) -> LinkKey {
    xxhash_rust::xxh3::xxh3_64(path).max(1)
}

/// Whether `written` (as found in text) is the host `want` once read as a
/// browser reads it: a trailing dot, case, percent-escapes, full-width
/// letters and other dots (IDNA's mapping) do not make another host.
fn same_host(written: &str, want: &str) -> bool {
    let bare = |h: &str| h.strip_suffix('.').unwrap_or(h).to_owned();
    if written.is_ascii() && !written.contains('%') {
        return bare(written).eq_ignore_ascii_case(want);
    }
    match url::Host::parse(written) {
        Ok(url::Host::Domain(read)) => bare(&read).eq_ignore_ascii_case(want),
        _ => false,
    }
}

/// The link whose first word starts at byte `at`, if one does: an optional
/// scheme (`http://`, `https://` or another, taken whole), user info (only
/// after a scheme: without one, `me@host` is an address), the host (two
/// labels at least without a scheme), a port, the path, then a query or
/// fragment. `None` when what is there is no link, such as a port that is
/// not one (`link.encorekit.com:http/a`).
fn link_at(text: &str, at: usize) -> Option<Link<'_>> {
    let bytes = text.as_bytes();
    let next = |i: usize| bytes.get(i).copied();
    let mut i = at;
    let scheme = bytes[i..]
        .iter()
        // Not `.`: "Wait...https://" is a sentence, then a link.
        .take_while(|b| b.is_ascii_alphanumeric() || b"+-".contains(b))
        .count();
    let schemed = bytes[i + scheme..].starts_with(b"://");
    let web = !schemed || {
        let name = &text[i..i + scheme];
        name.eq_ignore_ascii_case("https") || name.eq_ignore_ascii_case("http")
    };
    if schemed {
        i += scheme + 3;
        // A browser takes the host after the authority's last `@`.
        let authority = bytes[i..]
            .iter()
            .take_while(|&&b| !ends_authority(b))
            .count();
        if let Some(at_sign) = bytes[i..i + authority].iter().rposition(|&b| b == b'@') {
            i += at_sign + 1;
        }
    }
    let host_len = word_at(text, i)?;
    let host = &text[i..i + host_len];
    if !schemed && !host.trim_end_matches(is_dot).contains(is_dot) {
        return None;
    }
    i += host_len;
    match next(i) {
        Some(b'@') => return None,
        Some(b':') => {
            let digits = bytes[i + 1..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            // A browser opens no port above 65535 (leading zeros are fine).
            bytes[i + 1..i + 1 + digits].iter().try_fold(0u32, |n, d| {
                Some(n * 10 + u32::from(d - b'0')).filter(|&n| n <= 65535)
            })?;
            match next(i + 1 + digits) {
                // An empty port is no port: `host:/a` is `host/a`.
                Some(b'/' | b'?' | b'#') => i += 1 + digits,
                Some(b) if host_byte(b) || b == b'@' || b == b':' => return None,
                _ if digits > 0 => i += 1 + digits,
                // "link.encorekit.com: tap it" ends the link at the host.
                Some(b) if !b.is_ascii_graphic() => {}
                None => {}
                Some(_) => return None,
            }
        }
        _ => {}
    }
    let path_start = i;
    if next(i) == Some(b'/') {
        while next(i).is_some_and(path_byte) {
            i += 1;
        }
    }
    // Sentence punctuation after a link is not part of it.
    while i > path_start && b".:!?*_~".contains(&bytes[i - 1]) {
        i -= 1;
    }
    let mut path = &bytes[path_start..i];
    while let [rest @ .., b'/'] = path {
        path = rest;
    }
    // The query and fragment are decoration, not a different offer.
    while next(i).is_some_and(|b| b == b'?' || b == b'#') {
        i += 1;
        while next(i).is_some_and(path_byte) {
            i += 1;
        }
    }
    Some(Link {
        web,
        host,
        path,
        end: i,
    })
}

/// The length of the host-like word at byte `at` (labels, dots and
/// percent-escapes, letters of any script), if one starts there. Invisible
/// characters go on a word (a host parser removes them, so a browser opens
/// `link.encore\u{AD}kit.com` as the offer host) but make none alone.
fn word_at(text: &str, at: usize) -> Option<usize> {
    let rest = text.get(at..)?;
    let (mut len, mut after_dot, mut visible) = (0, true, false);
    let mut chars = rest.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let escape = c == '%'
            && rest
                .as_bytes()
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
        if escape {
            chars.next();
            chars.next();
        } else if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            // The common case first: a host's ASCII letters.
        } else if is_dot(c) && !after_dot {
            // A label ends; two dots in a row end the word.
        } else if is_invisible(c) {
            len = chars.peek().map_or(rest.len(), |&(j, _)| j);
            continue;
        } else if !(c.is_alphanumeric() || c == '-' || c == '_') {
            break;
        }
        after_dot = is_dot(c);
        visible = true;
        len = chars.peek().map_or(rest.len(), |&(j, _)| j);
    }
    (visible && len > 0).then_some(len)
}

/// A dot between labels as IDNA reads them: the full stop, and the
/// ideographic and full-width ones.
fn is_dot(c: char) -> bool {
    matches!(c, '.' | '\u{3002}' | '\u{ff0e}' | '\u{ff61}')
}

/// Whether `before` ends in a letter or digit (of any script) or a byte
/// that goes on a host: what follows is glued to it.
fn ends_in_a_word(before: &str) -> bool {
    before
        .chars()
        .next_back()
        .is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_')
}

/// A byte that ends a link's authority (scheme to path): user info never
/// goes past it.
fn ends_authority(b: u8) -> bool {
    !b.is_ascii_graphic() || b"/?#\\<>\"'`()[]{},;".contains(&b)
}

/// A byte that continues a host name.
fn host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// A byte a link's path is made of. Not `,` or `;` (two links joined by one
/// are two), not brackets or quotes (markdown and HTML around a link).
fn path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~/%=&+:@$!*".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "link.encorekit.com";

    fn count(text: &str) -> usize {
        count_offer_links(text, HOST)
    }

    #[test]
    fn an_encore_short_link_is_read_plainly() {
        let url = "https://link.encorekit.com/aB3xY7q2";
        assert!(plain_link_key(url, HOST).is_some());
        assert_eq!(plain_link_key(url, HOST), read_link_key(url, HOST));
        for not_plain in [
            "https://link.encorekit.com/aB3xY7q2/",
            "https://link.encorekit.com/aB3xY7q2.",
            "https://link.encorekit.com/a?b=1",
            "https://link.encorekit.com.evil.com/a",
            "https://link.encorekit.com/",
        ] {
            assert_eq!(plain_link_key(not_plain, HOST), None, "{not_plain}");
        }
    }

    proptest::proptest! {
        /// Whatever the plain reading keys, the general reader keys the same.
        #[test]
        fn the_plain_reading_agrees_with_the_reader(
            scheme in proptest::sample::select(vec!["https://", "HTTPS://", "http://", ""]),
            host in proptest::sample::select(vec![HOST, "LINK.encorekit.com", "link.encorekit.com.", "link..com", "a_b.com", "x.y"]),
            lead in proptest::sample::select(vec!["/", ""]),
            path in "[a-zA-Z0-9./_~:?#@%-]{0,12}",
            want in proptest::sample::select(vec![HOST, "link.encorekit.com.", "a_b.com", "x.y", "LINK.EncoreKit.com"]),
        ) {
            let url = format!("{scheme}{host}{lead}{path}");
            if let Some(key) = plain_link_key(&url, want) {
                proptest::prop_assert_eq!(Some(key), read_link_key(&url, want), "{}", url);
            }
        }
    }

    #[test]
    fn counts_the_partners_links_however_they_are_written() {
        for (text, n) in [
            ("Get 6 months free: https://link.encorekit.com/aB3xY7q2 — Unlocked by our partner EncoreKit", 1),
            ("http://LINK.EncoreKit.com/x and link.encorekit.com/y", 2),
            ("(see https://link.encorekit.com/a).", 1),
            ("[claim](https://link.encorekit.com/a) **link.encorekit.com/b**", 2),
            ("<https://link.encorekit.com:443/a>, \"link.encorekit.com\"!", 2),
            ("link.encorekit.com?x=1#frag", 1),
            ("🎉https://link.encorekit.com/a🎉", 1),
            ("\u{200b}https://link.encorekit.com/a\u{200b}", 1),
            ("\u{feff}link.encorekit.com/a", 1),
            ("https://link.encorekit.com./a", 1),
            ("go to link.encorekit.com. now", 1),
            ("link.encorekit.com/a,link.encorekit.com/b", 2),
            ("link.encorekit.com/a;https://link.encorekit.com/b", 2),
            ("https://link.encorekit.com/a and again https://link.encorekit.com/a", 1),
            ("https://link.encorekit.com/a/ https://link.encorekit.com/a?utm=x", 1),
            (r#"<a href="https://link.encorekit.com/a">link.encorekit.com/a</a>"#, 1),
            ("¡link.encorekit.com/a!", 1),
            ("link.encorekit.com: tap it", 1),
            ("Wow!link.encorekit.com/a", 1),
            ("link.encorekit.com/a!link.encorekit.com", 1),
            // User info opens the host after it: the offer host.
            ("https://me@link.encorekit.com/a https://me:pw@link.encorekit.com/a", 1),
            ("//link.encorekit.com/a", 1),
            ("https://link%2Eencorekit%2ecom/a https://%6Cink.encorekit.com/b", 2),
            ("link\u{3002}encorekit\u{ff0e}com/a", 1),
            ("ｌｉｎｋ．ｅｎｃｏｒｅｋｉｔ．ｃｏｍ/a", 1),
            ("https://link.encorekit.com:/a https://link.encorekit.com/a", 1),
            ("<a href=https://link.encorekit.com/a>tap</a>", 1),
            ("Wait...link.encorekit.com/a", 1),
            ("'link.encorekit.com/a' \"link.encorekit.com/b\"", 2),
            ("ver:link.encorekit.com/a; x=link.encorekit.com/b", 2),
            // Invisible characters inside a host are removed by a browser.
            ("https://link.encore\u{ad}kit.com/a link.encore\u{200b}kit.com/b", 2),
            ("link\u{2060}.encorekit.com\u{feff}/a https://\u{200b}link.encorekit.com/b", 2),
            ("https://link.encorekit.com:0000443/a https://link.encorekit.com:65535/b", 2),
        ] {
            assert_eq!(count(text), n, "{text}");
        }
    }

    #[test]
    fn look_alikes_and_user_info_tricks_never_count() {
        for text in [
            "https://link.encorekit.com.evil.example/a",
            "xlink.encorekit.com/a",
            "élink.encorekit.com/a",
            "https://link.encorekit.com@evil.example/a",
            "https://link.encorekit.com:443@evil.example/a",
            "https://link.encorekit.com%40evil.example/a",
            "link%2Eencorekit%2Ecom%2Eevil.example/a",
            "link\u{3002}encorekit\u{3002}com\u{3002}evil.example/a",
            "me@link.encorekit.com/a",
            "hola.link.encorekit.com/a",
            "ftp://link.encorekit.com/a",
            "xhttps://link.encorekit.com/a",
            "link.encorekit.co/a",
            "link-encorekit.com/a",
            "https://evil.example/link.encorekit.com",
            "link.encorekit.com:http/a",
            "mylink.encorekit.community",
            "link.encorekit.com-evil.example",
            "link.encorekit.com.:443x",
            "https://evil.example/a!link.encorekit.com/b",
            "https://evil.example/?u=link.encorekit.com/b",
            "mail@link.encorekit.com",
            "x\u{200b}link.encorekit.com/a",
            "https://link.encorekit.com:65536/a",
            "link.encorekit.com:99999999999999999999/a",
        ] {
            assert_eq!(count(text), 0, "{text}");
        }
    }

    #[test]
    fn many_links_in_one_message_are_each_counted_once() {
        let text: String = (0..30_000)
            .map(|i| format!("link.encorekit.com/o{} ", i % 20_000))
            .collect();
        assert_eq!(count(&text), 20_000);
    }

    #[test]
    fn a_click_url_and_the_same_link_in_a_message_are_one() {
        let key = link_key("https://link.encorekit.com/aB3xY7q2", HOST).unwrap();
        assert_eq!(
            offer_links(
                "Get it: https://link.encorekit.com/aB3xY7q2 — EncoreKit",
                HOST
            )
            .as_slice(),
            &[key]
        );
        assert_ne!(
            link_key("https://link.encorekit.com/aB3xY7q3", HOST),
            Some(key)
        );
        for bad in [
            "https://evil.example/aB3",
            "https://link.encorekit.com/a b",
            "see https://link.encorekit.com/a",
            "",
        ] {
            assert_eq!(link_key(bad, HOST), None, "{bad}");
        }
    }
}
