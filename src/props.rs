//! Property tests of every parser and transformer a caller's or a partner's
//! bytes pass through: JSON and its canonical form, the fingerprint, body
//! validation, `Retry-After`, the Besitos page-URL rewrite, and config
//! parsing. Whatever the input, no panic; and the laws each one promises.
//! (A unit test module: `cargo test --lib props`.)

use proptest::prelude::*;

use crate::call::base_url::BaseUrl;
use crate::call::fingerprint::{canonical, fingerprint};
use crate::call::json::Json;
use crate::call::meaning::retry_after;
use crate::call::route::Target;
use crate::config::{Config, MapEnv};
use crate::partners;
use crate::partners::besitos::rewrite_answer as rewrite_besitos;
use crate::partners::encore::links::count_offer_links;
use crate::partners::encore::LINK_HOST as OFFER_HOST;

/// A JSON value as text, objects with distinct keys, a few levels deep.
fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        (-1e9f64..1e9).prop_map(|f| format!("{f:?}")),
        "[a-zA-Z0-9 é\"\\\\/\n]{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..6).prop_map(|m| {
                let fields: Vec<String> = m
                    .into_iter()
                    .map(|(k, v)| format!("{}:{v}", serde_json::to_string(&k).unwrap_or_default()))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

/// The same object with its top-level fields in another order and spacing.
fn reordered(text: &str) -> Option<String> {
    let crate::call::json::Members(members) = serde_json::from_str(text).ok()?;
    let fields: Vec<String> = members
        .iter()
        .rev()
        .map(|(k, v)| {
            let key = serde_json::to_string(k).unwrap_or_default();
            format!(" {key} : {} ", v.get())
        })
        .collect();
    Some(format!("{{ {} }}", fields.join(",\n")))
}

fn encore() -> Target {
    Target::Encore
}

proptest! {
    #[test]
    fn canonical_form_and_fingerprint_ignore_key_order(text in json_text()) {
        if let Some(other) = reordered(&text) {
            prop_assert_eq!(canonical(text.as_bytes()), canonical(other.as_bytes()));
            prop_assert_eq!(fingerprint(&encore(), text.as_bytes()), fingerprint(&encore(), other.as_bytes()));
        }
        // Canonical output is itself JSON, and canonical again unchanged.
        let once = canonical(text.as_bytes());
        prop_assert!(Json::parse(&once).is_ok());
        prop_assert_eq!(canonical(&once), once);
    }

    #[test]
    fn a_key_given_twice_is_always_refused(
        text in json_text(), key in "[a-z]{1,6}", first in json_text(),
    ) {
        // Splice a repeated key into any object, at the top level.
        let doc = format!("{{\"{key}\":{first},\"wrap\":{text},\"{key}\":{first}}}");
        let e = Json::parse(doc.as_bytes()).expect_err("a duplicate key");
        prop_assert!(e.to_string().contains("duplicate key"), "{}", e);
        prop_assert!(partners::check_body(&Target::Encore, doc.as_bytes()).is_err());
    }

    #[test]
    fn no_body_makes_validation_or_fingerprinting_panic(body in prop::collection::vec(any::<u8>(), 0..300)) {
        let besitos = Target::Besitos { partner_id: "p".into(), page: None };
        for target in [Target::Encore, besitos] {
            let _ = partners::check_body(&target, &body);
        }
        let _ = fingerprint(&encore(), &body);
        let _ = Json::parse(&body);
    }

    #[test]
    fn retry_after_reads_seconds_and_never_panics(v in ".{0,40}", secs in 0u64..1_000_000) {
        let mut h = http::HeaderMap::new();
        if let Ok(value) = http::HeaderValue::from_str(&v) {
            h.insert(http::header::RETRY_AFTER, value);
            let _ = retry_after(&h, crate::call::clock::wall());
        }
        h.insert(http::header::RETRY_AFTER, secs.into());
        prop_assert_eq!(retry_after(&h, crate::call::clock::wall()), Some(std::time::Duration::from_secs(secs)));
    }

    #[test]
    fn the_besitos_rewrite_changes_only_the_origin_of_page_urls(
        host in "[a-z]{1,10}\\.(test|example)", page in 1u32..1000, path in "(/[a-z0-9]{1,8}){1,3}",
        message in ".{0,30}",
    ) {
        let public = BaseUrl::parse("https://gw.internal:8443").unwrap_or_else(|e| panic!("{e}"));
        let url = format!("https://{host}{path}?page={page}");
        let body = serde_json::json!({
            "data": [{"message": message, "link": url}],
            "next_page_url": url,
            "path": format!("https://{host}{path}"),
            "links": [{"url": url}],
        });
        let out = rewrite_besitos(body.to_string().as_bytes(), &public, "").expect("a page");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        prop_assert_eq!(&v["next_page_url"], &serde_json::json!(format!("https://gw.internal:8443{path}?page={page}")));
        prop_assert_eq!(&v["path"], &serde_json::json!(format!("https://gw.internal:8443{path}")));
        prop_assert_eq!(&v["links"][0]["url"], &v["next_page_url"]);
        // Data is the partner's and is left alone.
        prop_assert_eq!(&v["data"], &body["data"]);
    }

    #[test]
    fn the_link_counter_counts_exactly_the_partners_host(
        host in prop_oneof![
            Just(OFFER_HOST.to_string()),
            Just(OFFER_HOST.to_uppercase()),
            "[a-z]{0,3}link\\.encorekit\\.com(\\.[a-z]{1,6})?",
            "link\\.encorekit\\.[a-z]{2,4}",
            "[a-z0-9.-]{1,20}",
        ],
        scheme in prop_oneof![Just(""), Just("http://"), Just("HTTPS://"), Just("ftp://")],
        userinfo in prop_oneof![Just(""), Just("user@"), Just("link.encorekit.com@")],
        path in "(/[A-Za-z0-9]{0,8})?",
        around in prop_oneof![Just(("", "")), Just(("(", ")")), Just(("[x](", ")")), Just(("**", "**.")), Just(("<", ">,"))],
    ) {
        let text = format!("see {}{scheme}{userinfo}{host}{path}{} now", around.0, around.1);
        // User info after a scheme opens the host after it; without one,
        // `user@host` is an address.
        let exact = host.eq_ignore_ascii_case(OFFER_HOST)
            && scheme != "ftp://"
            && (userinfo.is_empty() || !scheme.is_empty());
        prop_assert_eq!(count_offer_links(&text, OFFER_HOST), usize::from(exact), "{}", text);
    }

    /// Offer links on generated messages, against linkify (no scheme
    /// needed, ASCII URLs). Where the two may part, the glue is written
    /// with a space beside it: linkify keeps brackets in a path, reads
    /// `a,b` as one host and links nothing glued to a non-ASCII character,
    /// while a messaging client (and the counter, unit-tested on each) ends
    /// the link there.
    #[test]
    fn the_link_counter_finds_what_linkify_finds(
        pieces in prop::collection::vec(
            (
                prop_oneof![
                    Just(""), Just(" "), Just(", "), Just("; "), Just(" ("), Just(") "),
                    Just("! "), Just(". "), Just(" 🎉"), Just(" \u{200b}"), Just("\n"), Just("<"),
                    Just(">"), Just("\""), Just(" **"), Just(" [claim]("), Just(" ¡"),
                    Just(" —"), Just("hola "), Just("x"),
                ],
                prop_oneof![Just(""), Just("http://"), Just("https://"), Just("HTTPS://")],
                prop_oneof![
                    Just(OFFER_HOST.to_string()),
                    Just("LINK.EncoreKit.com".to_string()),
                    Just("link.encorekit.com.evil.example".to_string()),
                    Just("xlink.encorekit.com".to_string()),
                    Just("evil.example".to_string()),
                ],
                // Encore's links have a path; a bare host is unit-tested.
                "/[A-Za-z0-9]{1,8}",
            ),
            1..6,
        ),
        tail in prop_oneof![Just(""), Just("."), Just("!"), Just(")"), Just(" ok")],
    ) {
        let mut text = String::new();
        for (glue, scheme, host, path) in &pieces {
            text.push_str(glue);
            text.push_str(scheme);
            text.push_str(host);
            text.push_str(path);
        }
        text.push_str(tail);
        let ours: std::collections::BTreeSet<u64> = crate::partners::encore::links::offer_links(&text, OFFER_HOST).into_iter().collect();
        let mut finder = linkify::LinkFinder::new();
        finder.url_must_have_scheme(false).url_can_be_iri(false).kinds(&[linkify::LinkKind::Url]);
        let theirs: std::collections::BTreeSet<u64> = finder
            .links(&text)
            .filter_map(|link| crate::partners::encore::links::link_key(link.as_str(), OFFER_HOST))
            .collect();
        prop_assert_eq!(ours, theirs, "{:?}", text);
    }

    /// Offer links written as a browser still reads them (percent-escaped,
    /// full-width or ideographic letters and dots, invisible characters in
    /// a label, any case, user info, an empty or out-of-range port, no scheme or `//`), on the offer host or a look-alike of
    /// it, glued to punctuation or attributes: the counter agrees with the
    /// WHATWG URL parser on which host the link opens.
    #[test]
    fn the_link_counter_reads_a_host_as_a_browser_does(
        labels in prop_oneof![
            3 => Just(vec!["link", "encorekit", "com"]),
            1 => Just(vec!["link", "encorekit", "com", "evil", "example"]),
            1 => Just(vec!["evil", "link", "encorekit", "com"]),
            1 => Just(vec!["link", "encorekit"]),
            1 => Just(vec!["xlink", "encorekit", "com"]),
        ],
        letters in prop::collection::vec(0u8..6, 40),
        dots in prop::collection::vec(
            prop_oneof![Just("."), Just("%2E"), Just("%2e"), Just("\u{3002}"), Just("\u{ff0e}")],
            4,
        ),
        scheme in prop_oneof![Just(""), Just("https://"), Just("HTTP://"), Just("//")],
        userinfo in prop_oneof![Just(""), Just("me@"), Just("me:pw@"), Just("link.encorekit.com@")],
        port in prop_oneof![Just(""), Just(":"), Just(":443"), Just(":0443"), Just(":65536")],
        path in "/[A-Za-z0-9]{1,8}",
        around in prop_oneof![
            Just(("", "")), Just(("see ", ".")), Just(("(", ")")), Just(("href=", ">")),
            Just(("\"", "\"")), Just(("\u{200b}", "!")), Just(("Wait...", "?x=1")),
        ],
    ) {
        let mut host = String::new();
        let mut letter = letters.iter().cycle();
        for (i, label) in labels.iter().enumerate() {
            if i > 0 {
                host.push_str(dots[i - 1]);
            }
            for c in label.chars() {
                match letter.next() {
                    Some(1) => host.push(c.to_ascii_uppercase()),
                    Some(2) => host.push(char::from_u32(c as u32 - 'a' as u32 + 0xff41).unwrap_or(c)),
                    Some(3) => host.push_str(&format!("%{:02X}", c as u32)),
                    // Invisible characters inside a label: a host parser drops them.
                    Some(4) => host.extend([c, '\u{ad}']),
                    Some(5) if i > 0 => host.extend(['\u{200b}', c]),
                    _ => host.push(c),
                }
            }
        }
        // Without a scheme, user info is an address and escapes are not
        // linked by messaging clients: those are the scheme's cases.
        let (userinfo, host) = if scheme.starts_with('h') || scheme.starts_with('H') {
            (userinfo, host)
        } else {
            ("", host.replace("%2E", ".").replace("%2e", "."))
        };
        let host = if scheme.is_empty() && host.contains('%') {
            labels.join(".")
        } else {
            host
        };
        let link = format!("{scheme}{userinfo}{host}{port}{path}");
        let text = format!("{}{link}{}", around.0, around.1);
        let opened = url::Url::parse(&format!("https://{}", link.trim_start_matches(scheme)))
            .map(|u| (u.host_str().map(str::to_owned), u.path().to_owned()));
        let expect = match opened {
            Ok((Some(h), p)) if h == OFFER_HOST => {
                vec![crate::partners::encore::links::link_key(&format!("https://{OFFER_HOST}{p}"), OFFER_HOST)
                    .expect("a plain offer link")]
            }
            _ => vec![],
        };
        let ours = crate::partners::encore::links::offer_links(&text, OFFER_HOST).into_vec();
        prop_assert_eq!(ours, expect, "{:?}", text);
    }

    #[test]
    fn no_config_text_makes_the_loader_panic(text in ".{0,200}", toml_ish in "(\\[[a-z.]{1,12}\\]\n)?([a-z_]{1,16} = (\"[^\"\n]{0,10}\"|[0-9]{1,6}|true|\\[\\])\n){0,6}") {
        let env = MapEnv::from([("ENCORE_API_KEY", "pk_test_x"), ("BESITOS_TOKEN", "t")]);
        let _ = Config::from_toml(&text, &env);
        let _ = Config::from_toml(&toml_ish, &env);
    }
}

/// offergate's own RFC 3339 parser against jiff (`benches/parsers.rs`
/// measures both), on generated times: what each accepts, and the instant
/// each reads. (Its BCP-47 checker was compared the same way with
/// oxilangtag, which accepted exactly the same tags and now does the job.)
mod ours_against_the_crates {
    use super::*;
    use crate::integrator::time::parse_rfc3339;

    proptest! {
        #[test]
        fn ours_and_jiff_read_the_same_times_and_ours_is_stricter(
            y in 1970u32..2100, mo in 0u32..14, d in 0u32..33,
            h in 0u32..25, mi in 0u32..61, s in 0u32..61,
            frac in prop_oneof![Just(String::new()), "\\.[0-9]{1,9}"],
            zone in prop_oneof![Just("Z".to_string()), Just("z".to_string()), "[+-](0[0-9]|1[0-4]):[0-5][0-9]", Just("+24:00".to_string())],
            sep in prop_oneof![Just('T'), Just('t'), Just(' ')],
        ) {
            let text = format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{frac}{zone}");
            let theirs = text.parse::<jiff::Timestamp>();
            // jiff also takes offsets of +24:00 and more, which RFC 3339's
            // grammar does not (time-hour is 00-23): ours is the stricter.
            let offset_hours: u32 = zone.get(1..3).and_then(|h| h.parse().ok()).unwrap_or(0);
            if offset_hours < 24 {
                prop_assert_eq!(parse_rfc3339(&text).is_ok(), theirs.is_ok(), "{} {:?}", text, theirs);
            } else {
                prop_assert!(parse_rfc3339(&text).is_err(), "{}", text);
            }
            if let Ok(ms) = parse_rfc3339(&text) {
                prop_assert!(theirs.is_ok(), "{} -> {:?}", text, theirs);
                // A leap second (:60): jiff reads it as :59, offergate as the
                // next minute's :00; both are one second from the truth.
                if s != 60 {
                    prop_assert_eq!(theirs.map(|t| t.as_millisecond()).ok(), Some(ms), "{}", text);
                }
            }
        }
    }

    #[test]
    fn known_cases_agree() {
        for (text, ms) in [
            ("2026-11-23T10:15:00Z", 1_795_428_900_000),
            ("2026-11-23T11:15:00.25+01:00", 1_795_428_900_250),
        ] {
            assert_eq!(parse_rfc3339(text).ok(), Some(ms), "{text}");
            assert_eq!(
                text.parse::<jiff::Timestamp>()
                    .map(|t| t.as_millisecond())
                    .ok(),
                Some(ms),
                "{text}"
            );
        }
    }
}

/// The parsers the hardening round added, on generated input.
mod hardening {
    use super::*;
    use crate::call::headers::valid_traceparent;
    use crate::partners::encore::compose::{message, MAX_OFFER_CHARS};
    use crate::partners::encore::{check_link, OfferText, LINK_HOST};

    proptest! {
        #[test]
        fn traceparents_valid_by_the_w3c_grammar_only(
            bytes in prop::collection::vec(any::<u8>(), 0..80),
            trace in "[0-9a-f]{32}", parent in "[0-9a-f]{16}", flags in "[0-9a-f]{2}",
        ) {
            let _ = valid_traceparent(&bytes);
            let good = format!("00-{trace}-{parent}-{flags}");
            let zero = trace.bytes().all(|b| b == b'0') || parent.bytes().all(|b| b == b'0');
            prop_assert_eq!(valid_traceparent(good.as_bytes()), !zero, "{}", good);
            prop_assert!(!valid_traceparent(good.to_uppercase().as_bytes()) || !good.bytes().any(|b| b.is_ascii_lowercase()));
            let longer = format!("{}x", good);
            prop_assert!(!valid_traceparent(longer.as_bytes()));
        }

        #[test]
        fn an_offer_link_passes_only_as_https_on_exactly_the_host(
            scheme in prop_oneof![Just("https://"), Just("HTTPS://"), Just("http://"), Just("javascript:"), Just("//"), Just("")],
            userinfo in prop_oneof![Just(""), Just("u@"), Just("link.encorekit.com@")],
            host in prop_oneof![Just("link.encorekit.com"), Just("LINK.encorekit.com"), Just("link.encorekit.com.evil.test"), Just("evil.test"), Just("link.encorekit.com:443")],
            path in "(/[A-Za-z0-9]{1,8})?",
            junk in prop_oneof![Just(""), Just(" "), Just("\u{0}"), Just("\t"), Just("?a=1"), Just("#x"), Just("<b>"), Just("\"onmouseover=\""), Just("/%3Cscript%3E")],
        ) {
            let url = format!("{scheme}{userinfo}{host}{path}{junk}");
            // A plain short link: a path, nothing after it.
            let expected = scheme.eq_ignore_ascii_case("https://")
                && userinfo.is_empty()
                && host.eq_ignore_ascii_case(LINK_HOST)
                && !path.is_empty()
                && junk.is_empty();
            prop_assert_eq!(check_link(&url, LINK_HOST).is_ok(), expected, "{:?}", url);
        }

        #[test]
        fn a_composed_message_never_carries_markup_or_control_characters(perk in "\\PC{0,300}|[<>\u{0}-\u{1f}\u{202e} a-z]{0,300}") {
            let offer = OfferText {
                click_url: "https://link.encorekit.com/a".into(),
                title: Some("t".into()),
                perk: Some(perk.clone()),
            };
            if let Some(m) = message(&offer, None) {
                prop_assert!(!m.text.contains('<') && !m.text.contains('>'), "{:?}", m.text);
                prop_assert!(!m.text.chars().any(|c| c.is_control() || c == '\u{202e}'), "{:?}", m.text);
                let filled = m.text.chars().count();
                let template = "Get  by claiming now: https://link.encorekit.com/a — Unlocked by our partner EncoreKit".chars().count();
                prop_assert!(filled <= template + MAX_OFFER_CHARS + 1, "{}", filled);
            }
        }

        #[test]
        fn ids_with_control_characters_are_refused_and_others_are_not(chat in "\\PC{1,40}|[a-z\u{0}-\u{1f}\u{7f}-\u{9f}]{1,40}") {
            let body = serde_json::json!({
                "clientId": "c", "chatId": chat,
                "attributes": {"countryCode": "US", "language": "en", "platform": "ios"}
            }).to_string();
            let refused = partners::check_body(&Target::Encore, body.as_bytes()).is_err();
            prop_assert_eq!(refused, chat.chars().any(char::is_control) || chat.chars().count() > 256, "{:?}", chat);
        }
    }
}
