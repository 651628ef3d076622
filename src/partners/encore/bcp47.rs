//! Well-formedness of a BCP-47 language tag (RFC 5646 section 2.1), checked
//! by oxilangtag without a registry: `en`, `es-419`, `zh-Hant-TW`,
//! `sr-Latn-RS`, `de-CH-1996`, `en-US-u-ca-gregory`, `x-private` and the
//! grandfathered tags pass; `en_US`, `e`, `en--US` do not. (offergate had
//! its own checker; oxilangtag accepts exactly the same tags, 1.4 times
//! faster: `benches/parsers.rs`, `src/props.rs`.)

/// Whether `tag` is a well-formed BCP-47 language tag.
pub fn is_well_formed(tag: &str) -> bool {
    oxilangtag::LanguageTag::parse(tag).is_ok()
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
