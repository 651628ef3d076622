//! Encore's offer links in a thread's messages. Every offer link is a short
//! link on one fixed host (`link.encorekit.com`, [`super::LINK_HOST`]), so the
//! offers a thread has shown are the distinct links to exactly that host in
//! its messages, found the way a messaging client makes text tappable:
//!
//! - with or without `http(s)://`, any case, a port, a trailing dot on the
//!   host (`link.encorekit.com./a`);
//! - glued to punctuation, brackets, quotes, emoji or zero-width characters,
//!   inside markdown (`[claim](https://...)`) or HTML (`href="..."`);
//! - two links joined by a comma are two; one link written twice (or
//!   once as text and once as `href`) is one: a link is its path.
//!
//! Never a look-alike (`link.encorekit.com.evil.example`,
//! `xlink.encorekit.com`, `evil.example/link.encorekit.com`) and never a
//! user-info trick (`https://link.encorekit.com@evil.example/`, whose host
//! is `evil.example`).

use smallvec::SmallVec;

/// One offer link, as the thread's records keep it: a hash of its path, the
/// part that names the offer (the host is fixed, a query or fragment is the
/// sender's decoration).
pub type LinkKey = u64;

/// The distinct offer links on `host` in `text`, in the order found.
pub fn offer_links(text: &str, host: &str) -> SmallVec<[LinkKey; 2]> {
    let mut found = SmallVec::new();
    let (bytes, needle) = (text.as_bytes(), host.as_bytes());
    if needle.is_empty() || bytes.len() < needle.len() {
        return found;
    }
    let mut at = 0;
    while at + needle.len() <= bytes.len() {
        if bytes[at..at + needle.len()].eq_ignore_ascii_case(needle) {
            match link_at(bytes, at, needle.len()) {
                // Scanning goes on after the link: a host inside its path
                // is part of it, not another link.
                Some((key, end)) => {
                    if !found.contains(&key) {
                        found.push(key);
                    }
                    at = end.max(at + needle.len());
                }
                None => at += needle.len(),
            }
        } else {
            at += 1;
        }
    }
    found
}

/// How many distinct offer links on `host` `text` holds.
pub fn count_offer_links(text: &str, host: &str) -> usize {
    offer_links(text, host).len()
}

/// The key of the `clickUrl` of an offer Encore just answered (already
/// checked to be an https link on `host`): as [`link_key`] finds it.
pub fn key_of_offer(url: &str, host: &str) -> LinkKey {
    link_key(url, host).unwrap_or_else(|| xxhash_rust::xxh3::xxh3_64(url.as_bytes()).max(1))
}

/// The key of an offer's `clickUrl`: exactly one link on `host`, nothing
/// else around it.
pub fn link_key(url: &str, host: &str) -> Option<LinkKey> {
    let url = url.trim();
    let lower = url.as_bytes();
    let scheme = if lower.len() >= 8 && lower[..8].eq_ignore_ascii_case(b"https://") {
        8
    } else if lower.len() >= 7 && lower[..7].eq_ignore_ascii_case(b"http://") {
        7
    } else {
        0
    };
    let end = scheme + host.len();
    if url.len() < end || !url.as_bytes()[scheme..end].eq_ignore_ascii_case(host.as_bytes()) {
        return None;
    }
    let (key, len) = link_after_host(url.as_bytes(), end)?;
    (len == url.len()).then_some(key)
}

/// The link whose host starts at byte `at` (`len` bytes), if what comes
/// before and after makes it one, and where it ends.
fn link_at(bytes: &[u8], at: usize, len: usize) -> Option<(LinkKey, usize)> {
    if !starts_a_link(&bytes[..at]) {
        return None;
    }
    link_after_host(bytes, at + len)
}

/// Whether a host right after `before` starts a link: at the start of the
/// text, after `http://` or `https://`, or after a character that does not
/// make it part of something else (a word, another host, another URL's
/// path or query, an address).
fn starts_a_link(before: &[u8]) -> bool {
    if let Some(head) = before.strip_suffix(b"://") {
        let scheme_len = head
            .iter()
            .rev()
            .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
            .count();
        let scheme = &head[head.len() - scheme_len..];
        let http = scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https");
        return http && stands_alone(&head[..head.len() - scheme_len]);
    }
    stands_alone(before)
}

/// Whether what comes right after `before` is not glued to a word, a host,
/// another URL's path (a `/` earlier in the same run of URL characters),
/// a query or an address.
fn stands_alone(before: &[u8]) -> bool {
    if !ends_outside_a_word(before) {
        return false;
    }
    if before.last().is_some_and(|b| b".-_:@%=&#+~\\".contains(b)) {
        return false;
    }
    // Not `*`: markdown's bold (`**link**`) glues to links.
    let run = before
        .iter()
        .rev()
        .take_while(|&&b| b != b'*' && (host_byte(b) || path_byte(b) || b == b'\\'));
    !run.into_iter().any(|b| matches!(b, b'/' | b'@' | b'\\'))
}

/// Whether `before` ends where a link may start: nothing, or a character
/// that is no letter or digit of a word (ASCII or not).
fn ends_outside_a_word(before: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(before) else {
        return true;
    };
    text.chars()
        .next_back()
        .is_none_or(|c| !c.is_alphanumeric())
}

/// After the host (at byte `from`): an optional trailing dot and port, then
/// the path; `None` when the host goes on (a look-alike) or user info
/// follows. Returns the key and where the link ends.
fn link_after_host(bytes: &[u8], from: usize) -> Option<(LinkKey, usize)> {
    let mut at = from;
    let next = |i: usize| bytes.get(i).copied();
    // A trailing dot is the fully qualified host, unless a label follows.
    if next(at) == Some(b'.') && !next(at + 1).is_some_and(host_byte) {
        at += 1;
    }
    match next(at) {
        Some(b) if host_byte(b) || b == b'.' || b == b'@' => return None,
        Some(b':') => {
            let digits = bytes[at + 1..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            let after = next(at + 1 + digits);
            if digits > 0 && !after.is_some_and(|b| host_byte(b) || b == b'@' || b == b':') {
                at += 1 + digits;
            } else if digits == 0 && !after.is_some_and(|b| b.is_ascii_graphic()) {
                // "link.encorekit.com: ..." ends the link at the host.
            } else {
                return None;
            }
        }
        _ => {}
    }
    let path_start = at;
    if next(at) == Some(b'/') {
        while next(at).is_some_and(path_byte) {
            at += 1;
        }
    }
    // Sentence punctuation after a link is not part of it.
    while at > path_start
        && matches!(
            bytes[at - 1],
            b'.' | b':' | b'!' | b'?' | b'*' | b'_' | b'~'
        )
    {
        at -= 1;
    }
    let mut path = &bytes[path_start..at];
    while let [rest @ .., b'/'] = path {
        path = rest;
    }
    // The query and fragment are decoration, not a different offer.
    while next(at).is_some_and(|b| b == b'?' || b == b'#') {
        at += 1;
        while next(at).is_some_and(path_byte) {
            at += 1;
        }
    }
    // Never 0: that is a slot whose offer is not known yet.
    Some((xxhash_rust::xxh3::xxh3_64(path).max(1), at))
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
            "https://user@link.encorekit.com/a",
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
        ] {
            assert_eq!(count(text), 0, "{text}");
        }
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
