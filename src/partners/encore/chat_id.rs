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

    /// `og_` and 32 hex digits of HMAC-SHA-256(key, `chat_id`).
    pub fn pseudonym(&self, chat_id: &str) -> String {
        let tag = hmac::sign(&self.0, chat_id.as_bytes());
        let mut out = String::with_capacity(3 + 32);
        out.push_str("og_");
        crate::call::fingerprint::push_hex(&tag.as_ref()[..16], &mut out);
        out
    }
}

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
fn with_chat_id(body: &[u8], raw: &str, chat_id: &str) -> Option<Vec<u8>> {
    // The raw value is a slice of `body`: where it lies is where it starts.
    let start = (raw.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let end = start.checked_add(raw.len()).filter(|e| *e <= body.len())?;
    if !raw.starts_with('"')
        || !chat_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() + chat_id.len());
    out.extend_from_slice(&body[..start]);
    out.push(b'"');
    out.extend_from_slice(chat_id.as_bytes());
    out.push(b'"');
    out.extend_from_slice(&body[end..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudonym(key: &[u8], chat_id: &str) -> String {
        PseudonymKey::new(key).pseudonym(chat_id)
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
                key.pseudonym("wa:11x")
            ),
            "the escaped chat id is the one the check read"
        );
        assert_eq!(key.apply(br#"{"clientId":"c"}"#, None), None);
        assert_eq!(key.apply(br#"{"chatId":7}"#, None), None);
        let body = br#"{"chatId":"x"}"#;
        let raw = std::str::from_utf8(&body[10..13]).unwrap();
        assert_eq!(with_chat_id(body, raw, "a\"b"), None);
    }
}
