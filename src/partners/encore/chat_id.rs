//! What Encore receives as `chatId`. A platform's natural chat id is often
//! an end user's phone number (WhatsApp's `wa_id`); with `[encore] chat_id
//! = "pseudonym"` (the default) Encore gets a keyed pseudonym of it instead:
//! the same chat id and key give the same pseudonym on every replica and
//! after every restart, so one conversation is still one `chatId` at Encore.

use std::borrow::Cow;
use std::ops::Range;

use ring::hmac;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The pseudonym's key, prepared once per secret (HMAC's inner and outer
/// hash states: two SHA-256 blocks a call saved, callgrind).
#[derive(Clone, Debug)]
pub struct PseudonymKey(hmac::Key);

impl PseudonymKey {
    pub fn new(key: &[u8]) -> PseudonymKey {
        PseudonymKey(hmac::Key::new(hmac::HMAC_SHA256, key))
    }

    /// `og_` and 32 hex digits of HMAC-SHA-256(key, `chat_id`), held in
    /// place: the body Encore gets is the one allocation a pseudonym costs.
    pub fn pseudonym(&self, chat_id: &str) -> Pseudonym {
        let tag = hmac::sign(&self.0, chat_id.as_bytes());
        let mut out = [0u8; PSEUDONYM_LEN];
        out[..3].copy_from_slice(b"og_");
        for (pair, b) in out[3..].chunks_exact_mut(2).zip(tag.as_ref()) {
            pair.copy_from_slice(&crate::call::fingerprint::hex_pair(*b));
        }
        out
    }
}

/// A pseudonym's length: `og_` and 32 hex digits (128 bits of the tag).
const PSEUDONYM_LEN: usize = 3 + 32;

/// A pseudonym's bytes (ASCII).
pub type Pseudonym = [u8; PSEUDONYM_LEN];

impl PseudonymKey {
    /// `body`, an offers request that passed the check (so its top-level
    /// `chatId` is a string and every key appears once), as Encore gets it:
    /// that string replaced by its pseudonym, every other byte as sent.
    /// `None` if the body has no such field. `at`: where the check found
    /// that string, quotes included, when it holds no escape (no parse then).
    pub fn apply(&self, body: &[u8], at: Option<Range<usize>>) -> Option<Vec<u8>> {
        if let Some(at) = at {
            let raw = std::str::from_utf8(body.get(at)?).ok()?;
            let chat_id = raw.strip_prefix('"')?.strip_suffix('"')?;
            return with_chat_id(body, raw, &self.pseudonym(chat_id));
        }
        #[derive(Deserialize)]
        struct At<'a> {
            #[serde(rename = "chatId", borrow)]
            chat_id: &'a RawValue,
        }
        let at: At<'_> = serde_json::from_slice(body).ok()?;
        let raw = at.chat_id.get();
        let chat_id: Cow<'_, str> = match serde_json::from_str::<&str>(raw) {
            Ok(plain) => Cow::Borrowed(plain),
            // Escapes in it: decoded, as the check read it.
            Err(_) => Cow::Owned(serde_json::from_str::<String>(raw).ok()?),
        };
        with_chat_id(body, raw, &self.pseudonym(&chat_id))
    }
}

/// `body` with `raw`, a slice of it holding a JSON string, replaced by
/// `chat_id`, an ASCII token.
fn with_chat_id(body: &[u8], raw: &str, chat_id: &[u8]) -> Option<Vec<u8>> {
    // The raw value is a slice of `body`: where it lies is where it starts.
    let start = (raw.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let end = start.checked_add(raw.len()).filter(|e| *e <= body.len())?;
    if !raw.starts_with('"')
        || !chat_id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
    {
        return None;
    }
    // Exactly as long as it will be: a full Vec becomes the request's
    // `Bytes` as it is (one with room to spare gets a second allocation).
    let mut out = Vec::with_capacity(start + 2 + chat_id.len() + (body.len() - end));
    out.extend_from_slice(&body[..start]);
    out.push(b'"');
    out.extend_from_slice(chat_id);
    out.push(b'"');
    out.extend_from_slice(&body[end..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudonym(key: &[u8], chat_id: &str) -> String {
        String::from_utf8(PseudonymKey::new(key).pseudonym(chat_id).to_vec()).unwrap()
    }

    #[test]
    fn the_pseudonym_is_keyed_and_stable() {
        let a = pseudonym(b"0123456789abcdef", "106540352242922:14155551234");
        assert_eq!(
            a,
            pseudonym(b"0123456789abcdef", "106540352242922:14155551234")
        );
        assert_ne!(
            a,
            pseudonym(b"another key 0000", "106540352242922:14155551234")
        );
        assert_ne!(
            a,
            pseudonym(b"0123456789abcdef", "106540352242922:14155551235")
        );
        assert!(a.starts_with("og_") && a.len() == 35 && !a.contains("1415555"));
    }

    #[test]
    fn the_place_the_check_found_gives_the_parsed_answer() {
        let key = PseudonymKey::new(b"0123456789abcdef");
        for body in [
            r#"{"clientId":"c","chatId":"wa:14155551234","attributes":{"countryCode":"US","language":"en","platform":"ios"}}"#,
            r#"{ "attributes" : {"chatId":"inner","countryCode":"US","language":"en","platform":"web"}, "chatId" : "café", "clientId":"c"}"#,
            r#"{"clientId":"c","chatId":"a\u0031b","attributes":{"countryCode":"US","language":"en","platform":"ios"}}"#,
        ] {
            let checked = crate::partners::encore::check_body(body.as_bytes()).unwrap();
            let at = checked.chat_id_at(body.as_bytes());
            assert_eq!(
                at.is_some(),
                !body.contains("\\u"),
                "{body}: an escaped id is parsed again"
            );
            assert_eq!(
                key.apply(body.as_bytes(), at),
                key.apply(body.as_bytes(), None),
                "{body}"
            );
        }
    }

    #[test]
    fn only_the_chat_id_changes() {
        let key = PseudonymKey::new(b"0123456789abcdef");
        let body = br#"{ "clientId":"c", "chatId" : "wa:1\u0031x", "attributes":{"chatId":"inner","countryCode":"US"}}"#;
        let out = String::from_utf8(key.apply(body, None).unwrap()).unwrap();
        assert_eq!(
            out,
            format!(
                r#"{{ "clientId":"c", "chatId" : "{}", "attributes":{{"chatId":"inner","countryCode":"US"}}}}"#,
                std::str::from_utf8(&key.pseudonym("wa:11x")).unwrap()
            ),
            "the escaped chat id is the one the check read"
        );
        assert_eq!(key.apply(br#"{"clientId":"c"}"#, None), None);
        assert_eq!(key.apply(br#"{"chatId":7}"#, None), None);
        let body = br#"{"chatId":"x"}"#;
        let raw = std::str::from_utf8(&body[10..13]).unwrap();
        assert_eq!(with_chat_id(body, raw, b"a\"b"), None);
    }

    #[test]
    fn the_body_for_encore_is_made_exactly_as_long_as_it_is() {
        let key = PseudonymKey::new(b"0123456789abcdef");
        for body in [
            r#"{"clientId":"c","chatId":"wa:14155551234"}"#,
            r#"{"clientId":"c","chatId":"a-much-longer-chat-id-than-its-pseudonym-0123456789"}"#,
            r#"{"chatId":"","clientId":"c"}"#,
        ] {
            let out = key.apply(body.as_bytes(), None).unwrap();
            assert_eq!(out.len(), out.capacity(), "{body}");
        }
    }
}
