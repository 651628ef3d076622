//! Counting the Encore offers already shown in a thread: every offer link is
//! a short link on the fixed host `link.encorekit.com`, so the offers shown
//! are the links to exactly that host in the thread's outbound messages.
//!
//! Exactly that host: with or without a scheme, any case, a port allowed, and
//! punctuation or markdown around it; never a look-alike
//! (`link.encorekit.com.evil.example`, `xlink.encorekit.com`) and never a
//! user-info trick (`https://link.encorekit.com@evil.example/`, whose host is
//! `evil.example`).

/// The partner's link host.
pub const OFFER_HOST: &str = "link.encorekit.com";

/// How many links to [`OFFER_HOST`] `text` holds.
pub fn count_offer_links(text: &str) -> usize {
    text.split(|c: char| c.is_whitespace() || "()[]<>\"'`{}|\\^".contains(c))
        .filter(|token| is_offer_link(token))
        .count()
}

/// Whether one whitespace- and bracket-free token is a link to the offer host.
fn is_offer_link(token: &str) -> bool {
    // Sentence and markdown punctuation around a link is not part of it.
    let token = token.trim_matches(|c: char| ".,;:!?*_~".contains(c));
    let rest = match token.find("://") {
        Some(at) => {
            let scheme = &token[..at];
            if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
                return false;
            }
            &token[at + 3..]
        }
        None => token,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return false;
    }
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        Some(_) => return false,
        None => authority,
    };
    host.eq_ignore_ascii_case(OFFER_HOST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_partners_links_however_they_are_written() {
        for (text, n) in [
            ("Get 6 months free: https://link.encorekit.com/aB3xY7q2 — Unlocked by our partner EncoreKit", 1),
            ("http://LINK.EncoreKit.com/x and link.encorekit.com/y", 2),
            ("(see https://link.encorekit.com/a).", 1),
            ("[claim](https://link.encorekit.com/a) **link.encorekit.com/b**", 2),
            ("<https://link.encorekit.com:443/a>, \"link.encorekit.com\"!", 2),
            ("link.encorekit.com?x=1#frag", 1),
        ] {
            assert_eq!(count_offer_links(text), n, "{text}");
        }
    }

    #[test]
    fn look_alikes_and_user_info_tricks_never_count() {
        for text in [
            "https://link.encorekit.com.evil.example/a",
            "xlink.encorekit.com/a",
            "https://link.encorekit.com@evil.example/a",
            "https://user@link.encorekit.com/a",
            "ftp://link.encorekit.com/a",
            "link.encorekit.co/a",
            "link-encorekit.com/a",
            "https://evil.example/link.encorekit.com",
            "link.encorekit.com:http/a",
            "mylink.encorekit.community",
        ] {
            assert_eq!(count_offer_links(text), 0, "{text}");
        }
    }
}
