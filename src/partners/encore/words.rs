//! How an end user's message is read for an opt-out word.

/// A message as opt-out keywords are compared: compatibility-normalised
/// (NFKC: `ＳＴＯＰ` is `STOP`), invisible characters (zero-width spaces and
/// joiners, soft hyphens, direction marks, a byte-order mark) removed,
/// spaces and punctuation around it trimmed, lowercased. Config keywords
/// are read the same way.
pub fn opt_out_word(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    let visible: String = text
        .nfkc()
        .filter(|c| !is_invisible(*c))
        .collect::<String>();
    visible
        .trim_matches(|c: char| c.is_whitespace() || c.is_ascii_punctuation())
        .to_lowercase()
}

/// Characters that draw nothing: Unicode's format characters a keyboard or
/// a copy-paste may slip into a word.
pub(crate) fn is_invisible(c: char) -> bool {
    // Every one is outside ASCII: the common case is one comparison.
    !c.is_ascii()
        && matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}'
        | '\u{17B5}' | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{3164}'
        | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}'
        | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}
