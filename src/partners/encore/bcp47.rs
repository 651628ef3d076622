//! Well-formedness of a BCP-47 language tag (RFC 5646 section 2.1 ABNF), checked
//! without a registry: `en`, `es-419`, `zh-Hant-TW`, `sr-Latn-RS`, `de-CH-1996`,
//! `en-US-u-ca-gregory`, `x-private` and the grandfathered tags pass; `en_US`,
//! `english`, `e`, `en--US` do not. Subtags are case-insensitive.

const GRANDFATHERED: &[&str] = &[
    "en-GB-oed",
    "i-ami",
    "i-bnn",
    "i-default",
    "i-enochian",
    "i-hak",
    "i-klingon",
    "i-lux",
    "i-mingo",
    "i-navajo",
    "i-pwn",
    "i-tao",
    "i-tay",
    "i-tsu",
    "sgn-BE-FR",
    "sgn-BE-NL",
    "sgn-CH-DE",
    "art-lojban",
    "cel-gaulish",
    "no-bok",
    "no-nyn",
    "zh-guoyu",
    "zh-hakka",
    "zh-min",
    "zh-min-nan",
    "zh-xiang",
];

fn alpha(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphabetic())
}
fn digit(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}
fn alnum(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The parts of a langtag, in the order the grammar allows them.
#[derive(PartialEq, PartialOrd, Clone, Copy)]
enum Part {
    Language,
    Extlang(u8),
    Script,
    Region,
    Variant,
    Extension,
}

pub fn is_well_formed(tag: &str) -> bool {
    if tag.is_empty() || tag.len() > 128 {
        return false;
    }
    if GRANDFATHERED.iter().any(|g| g.eq_ignore_ascii_case(tag)) {
        return true;
    }
    let mut subtags = tag.split('-');
    let Some(first) = subtags.next() else {
        return false;
    };
    if first.eq_ignore_ascii_case("x") {
        return private_use(subtags);
    }
    // language = 2*3ALPHA ["-" extlang] / 4ALPHA / 5*8ALPHA
    if !(alpha(first) && (2..=8).contains(&first.len())) {
        return false;
    }
    let mut last = Part::Language;
    let extlang_allowed = first.len() <= 3;
    // An extension singleton needs at least one subtag after it.
    let mut open_extension = false;
    while let Some(s) = subtags.next() {
        if s.is_empty() || !alnum(s) {
            return false;
        }
        if open_extension {
            if (2..=8).contains(&s.len()) {
                open_extension = false;
                continue;
            }
            return false;
        }
        if s.len() == 1 {
            if s.eq_ignore_ascii_case("x") {
                return private_use(subtags);
            }
            last = Part::Extension;
            open_extension = true;
            continue;
        }
        if last == Part::Extension {
            // Further subtags of the current extension.
            if (2..=8).contains(&s.len()) {
                continue;
            }
            return false;
        }
        let next = if s.len() == 3 && alpha(s) && extlang_allowed && last <= Part::Extlang(2) {
            match last {
                Part::Language => Part::Extlang(1),
                Part::Extlang(n) => Part::Extlang(n + 1),
                _ => return false,
            }
        } else if s.len() == 4 && alpha(s) && last < Part::Script {
            Part::Script
        } else if ((s.len() == 2 && alpha(s)) || (s.len() == 3 && digit(s))) && last < Part::Region
        {
            Part::Region
        } else if (5..=8).contains(&s.len()) || (s.len() == 4 && s.as_bytes()[0].is_ascii_digit()) {
            Part::Variant
        } else {
            return false;
        };
        last = next;
    }
    !open_extension
}

/// `x-` followed by one or more 1-8 character alphanumeric subtags.
fn private_use<'a>(rest: impl Iterator<Item = &'a str>) -> bool {
    let mut any = false;
    for s in rest {
        if s.is_empty() || s.len() > 8 || !alnum(s) {
            return false;
        }
        any = true;
    }
    any
}

#[cfg(test)]
mod tests {
    use super::is_well_formed;

    #[test]
    fn accepts_well_formed_tags() {
        for ok in [
            "en",
            "EN",
            "es",
            "es-419",
            "en-US",
            "en-us",
            "zh-Hant-TW",
            "sr-Latn-RS",
            "de-CH-1996",
            "sl-rozaj-biske",
            "en-US-u-ca-gregory",
            "x-whatever",
            "en-x-private",
            "zh-yue-HK",
            "i-klingon",
            "art-lojban",
            "en-GB-oed",
            "fil",
            "haw-US",
            "und",
            "en-a-bbb-x-a-ccc",
        ] {
            assert!(is_well_formed(ok), "{ok}");
        }
    }

    #[test]
    fn refuses_malformed_tags() {
        for bad in [
            "",
            "e",
            "en_US",
            "en-",
            "-en",
            "en--US",
            "english123",
            "en-US-",
            "toolonglanguage",
            "en-a",
            "en-x",
            "x",
            "en-US-a-",
            "12",
            "en-ABCDE-US!",
            "de-419-DE",
            "en US",
            "en-Latn-Latn",
        ] {
            assert!(!is_well_formed(bad), "{bad}");
        }
    }
}
