//! A request body parsed into a tree that borrows its strings from the body,
//! for validation and the idempotency fingerprint. A `serde_json::Value`
//! would copy every key and string and build a hash map per object; this tree
//! allocates one `Vec` per object or array and a string only when it holds an
//! escape, and keeps each number's text as written. Each container's text is
//! read once more for its own members (a body nests two deep): measured, about
//! 1.8 k instructions a call more than serde_json's private number form,
//! which offergate no longer uses.
//!
//! Objects are kept sorted by key, which is the order the canonical form
//! needs, so the fingerprint writes them as they are. A key given twice in one
//! object is an error, not "the last one wins": the raw body is what reaches the
//! partner, and a partner whose parser keeps the first value would act on a
//! value offergate never checked.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// `serde_json::from_slice`, with the body's UTF-8 checked once up front
/// (word at a time) rather than string by string as `from_slice` does: a
/// third of a request's parsing instructions. Invalid UTF-8 gets
/// `from_slice`'s own error, with its line and column.
pub fn from_bytes<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, serde_json::Error> {
    match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(body),
    }
}

/// Whether `body`'s objects and arrays nest at most `limit` deep: one pass
/// over the bytes, no parse. A string's brackets are text: it is crossed
/// by jumps to its next quote or backslash, not byte by byte (most of an
/// answer is strings; 7 x fewer instructions on Encore's 200, callgrind).
pub fn nesting_within(body: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        i += 1;
        match b {
            b'"' => loop {
                // An unterminated string nests nothing more: the parse
                // that follows refuses it.
                let Some(j) = body
                    .get(i..)
                    .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
                else {
                    return true;
                };
                let quote = body[i + j] == b'"';
                // A backslash escapes the byte after it, a quote included.
                i += j + if quote { 1 } else { 2 };
                if quote {
                    break;
                }
            },
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

#[derive(Debug, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number<'a>),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Object<'a>),
}

/// A number as the body wrote it (`1e400` and `18446744073709551617`
/// included, never rounded), read as a value where one is needed.
#[derive(Debug, PartialEq, Clone, Copy)]
pub struct Number<'a>(&'a str);

impl Number<'_> {
    /// The number as a whole number that fits in a `u64`, if it is one.
    pub fn as_u64(&self) -> Option<u64> {
        self.0.parse().ok()
    }

    /// The number as a finite `f64`, if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        self.0.parse::<f64>().ok().filter(|f| f.is_finite())
    }
}

impl fmt::Display for Number<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// An object's fields, sorted by key, each key once.
#[derive(Debug, PartialEq, Default)]
pub struct Object<'a>(Vec<(Cow<'a, str>, Json<'a>)>);

impl<'a> Json<'a> {
    /// Parses `body`; serde_json's errors (with line and column) and its
    /// nesting limit apply, and a key repeated within an object is an error.
    pub fn parse(body: &'a [u8]) -> Result<Json<'a>, serde_json::Error> {
        match std::str::from_utf8(body) {
            Ok(text) => Json::from_text(text, 0, false),
            // serde_json's own error, with its line and column.
            Err(_) => match serde_json::from_slice::<serde_json::Value>(body) {
                Err(e) => Err(e),
                Ok(_) => Err(refuse(format_args!("the body is not UTF-8"))),
            },
        }
    }

    /// "a string", "an object", ...: for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    /// Writes the canonical form: keys sorted, no whitespace, strings and
    /// numbers encoded by serde_json.
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        match self {
            Json::Null => out.extend_from_slice(b"null"),
            Json::Bool(true) => out.extend_from_slice(b"true"),
            Json::Bool(false) => out.extend_from_slice(b"false"),
            Json::Number(Number(text)) => out.extend_from_slice(text.as_bytes()),
            Json::String(s) => write_string(s, out),
            Json::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write_canonical(out);
                }
                out.push(b']');
            }
            Json::Object(object) => {
                out.push(b'{');
                for (i, (key, value)) in object.0.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_string(key, out);
                    out.push(b':');
                    value.write_canonical(out);
                }
                out.push(b'}');
            }
        }
    }
}

/// Writes `s` as a JSON string: as it stood in the body when borrowed, else
/// encoded by serde_json.
// Takes the `Cow` itself: whether the string was borrowed is the point.
#[allow(clippy::ptr_arg)]
pub fn write_string(s: &Cow<'_, str>, out: &mut Vec<u8>) {
    match s {
        // Borrowed from the body: it held no escape, and valid JSON has no raw
        // quote, backslash or control character in a string, so serde_json
        // would write it back byte for byte.
        Cow::Borrowed(raw) => {
            out.push(b'"');
            out.extend_from_slice(raw.as_bytes());
            out.push(b'"');
        }
        // Writing a &str into a Vec cannot fail.
        Cow::Owned(decoded) => {
            let _ = serde_json::to_writer(&mut *out, decoded);
        }
    }
}

impl<'a> Object<'a> {
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.0
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| &self.0[i].1)
    }

    /// Sorts by key, in place (one allocation per object); `Err` names a key
    /// given more than once.
    fn from_fields(mut fields: Vec<(Cow<'a, str>, Json<'a>)>) -> Result<Object<'a>, Cow<'a, str>> {
        fields.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if let Some(pair) = fields.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(pair[0].0.clone());
        }
        Ok(Object(fields))
    }
}

/// How deep objects and arrays may nest: serde_json's own limit, which its
/// raw values do not apply.
const MAX_DEPTH: usize = 128;

/// An error of offergate's own about JSON that serde_json accepted.
fn refuse(why: fmt::Arguments<'_>) -> serde_json::Error {
    de::Error::custom(why)
}

impl<'a> Json<'a> {
    /// `text`, one JSON value, as a tree. Each value is taken from serde_json
    /// as its raw text and read by its first byte: a number keeps that text
    /// (serde_json would round it, or with its `arbitrary_precision` hand it
    /// over as a private one-member map), a string is borrowed unless it
    /// holds an escape, and a container is read member by member the same
    /// way. `exact`: `text` is one raw value as serde_json cut it, with no
    /// whitespace around it.
    fn from_text(text: &'a str, depth: usize, exact: bool) -> Result<Json<'a>, serde_json::Error> {
        let first = text
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .as_bytes()
            .first();
        if matches!(first, Some(b'{' | b'[')) && depth >= MAX_DEPTH {
            return Err(refuse(format_args!(
                "objects and arrays nest more than {MAX_DEPTH} deep"
            )));
        }
        Ok(match first {
            Some(b'{') => {
                let fields = Children::read(text, depth, true)?;
                let object = Object::from_fields(fields)
                    .map_err(|key| refuse(format_args!("duplicate key `{key}`")))?;
                Json::Object(object)
            }
            Some(b'[') => {
                let items = Children::read(text, depth, false)?;
                Json::Array(items.into_iter().map(|(_, item)| item).collect())
            }
            // A top-level scalar: checked by serde_json, then read as one.
            _ if !exact => {
                let raw: &'a RawValue = serde_json::from_str(text)?;
                Json::from_text(raw.get(), depth, true)?
            }
            Some(b'"') => match text.get(1..text.len() - 1) {
                // No escape: the text between the quotes is the string.
                Some(inner) if !inner.contains('\\') => Json::String(Cow::Borrowed(inner)),
                _ => Json::String(Cow::Owned(serde_json::from_str(text)?)),
            },
            Some(b't') => Json::Bool(true),
            Some(b'f') => Json::Bool(false),
            Some(b'n') => Json::Null,
            // What is left of valid JSON is a number.
            _ => Json::Number(Number(text)),
        })
    }
}

/// A container's members or items, each read from its raw text one level
/// deeper. An error of a member's own (a key twice, too deep) is kept aside
/// whole, so it is not reported with a position inside the member's text.
struct Children<'s> {
    depth: usize,
    failed: &'s std::cell::Cell<Option<serde_json::Error>>,
}

/// A member's key (empty for an array's items) and value.
type Child<'a> = (Cow<'a, str>, Json<'a>);

impl<'a> Children<'_> {
    /// The members of `text`, one object (`object`) or array.
    fn read(
        text: &'a str,
        depth: usize,
        object: bool,
    ) -> Result<Vec<Child<'a>>, serde_json::Error> {
        let failed = std::cell::Cell::new(None);
        let mut de = serde_json::Deserializer::from_str(text);
        let children = Children {
            depth,
            failed: &failed,
        };
        let read = match object {
            true => de.deserialize_map(children),
            false => de.deserialize_seq(children),
        };
        let children = read.map_err(|e| failed.take().unwrap_or(e))?;
        de.end()?;
        Ok(children)
    }

    fn child<E: de::Error>(&self, raw: &'a RawValue) -> Result<Json<'a>, E> {
        Json::from_text(raw.get(), self.depth + 1, true).map_err(|e| {
            self.failed.set(Some(e));
            E::custom("a member failed")
        })
    }
}

impl<'de> Visitor<'de> for Children<'_> {
    type Value = Vec<Child<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object or an array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(0).clamp(4, 64));
        while let Some(Key(key)) = map.next_key()? {
            let value = self.child(map.next_value()?)?;
            fields.push((key, value));
        }
        Ok(fields)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(raw) = seq.next_element()? {
            items.push((Cow::Borrowed(""), self.child(raw)?));
        }
        Ok(items)
    }
}

/// A JSON object's members in the order given, each value left as its raw
/// text: enough to check a few fields and rewrite some without building (and
/// re-encoding) the whole tree. A key given twice is kept twice.
pub struct Members<'a>(pub Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::with_capacity(16);
                while let Some(Key(key)) = map.next_key()? {
                    members.push((key, map.next_value()?));
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(MembersVisitor)
    }
}

/// An object key, borrowed from the body unless it holds an escape.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_kept_as_written() {
        let c = |body: &str| canonical(body);
        assert_ne!(
            c(r#"{"n":18446744073709551616}"#),
            c(r#"{"n":18446744073709551617}"#)
        );
        assert_ne!(
            c(r#"{"n":0.1}"#),
            c(r#"{"n":0.1000000000000000055511151231257827}"#)
        );
        assert_eq!(
            c(r#"{"n":18446744073709551617}"#),
            r#"{"n":18446744073709551617}"#
        );
        assert_eq!(c(r#"{ "b" : 1.50, "a": -0 }"#), r#"{"a":-0,"b":1.50}"#);
        assert_eq!(c(r#"{"n":1e400}"#), r#"{"n":1e400}"#);
        // serde_json's own name for a number is an ordinary key here.
        assert_eq!(
            c(r#"{"$serde_json::private::Number":"1"}"#),
            r#"{"$serde_json::private::Number":"1"}"#
        );
    }

    fn canonical(body: &str) -> String {
        let mut out = Vec::new();
        Json::parse(body.as_bytes())
            .unwrap()
            .write_canonical(&mut out);
        String::from_utf8(out).unwrap()
    }

    /// The canonical form serde_json's `Value` gives: keys sorted (its map is
    /// sorted without `preserve_order`; with it, sort here), compact output.
    fn via_value(body: &str) -> String {
        fn sorted(v: serde_json::Value) -> serde_json::Value {
            match v {
                serde_json::Value::Object(m) => {
                    let mut fields: Vec<_> = m.into_iter().collect();
                    fields.sort_by(|a, b| a.0.cmp(&b.0));
                    serde_json::Value::Object(
                        fields.into_iter().map(|(k, v)| (k, sorted(v))).collect(),
                    )
                }
                serde_json::Value::Array(a) => {
                    serde_json::Value::Array(a.into_iter().map(sorted).collect())
                }
                other => other,
            }
        }
        sorted(serde_json::from_str(body).unwrap()).to_string()
    }

    #[test]
    fn canonical_form_matches_serde_json() {
        for body in [
            r#"{"b":1,"a":"x","c":{"z":[1,2.5,-3,1000.5,{"y":null,"x":true}],"a":false}}"#,
            r#"{"k":"quote \" backslash \\ slash \/ tab \t unicode \u00e9 \ud83d\ude00"}"#,
            r#"{"\u0062":1,"a":2}"#,
            r#"[1,"two",null,[],{}]"#,
            r#"12345678901234567890"#,
            r#"-0.0"#,
            r#""just a string""#,
        ] {
            assert_eq!(canonical(body), via_value(body), "{body}");
        }
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let Json::Object(o) = Json::parse(br#"{"plain":"abc","esc\n":"a\"b"}"#).unwrap() else {
            panic!("object")
        };
        assert!(matches!(
            o.get("plain"),
            Some(Json::String(Cow::Borrowed("abc")))
        ));
        assert!(matches!(o.0[0].0, Cow::Owned(_)), "escaped key");
        assert!(matches!(o.get("esc\n"), Some(Json::String(Cow::Owned(s))) if s == "a\"b"));
    }

    #[test]
    fn lookups_find_every_key() {
        let Json::Object(o) = Json::parse(br#"{"d":7,"a":1,"c":4,"b":2}"#).unwrap() else {
            panic!("object")
        };
        assert_eq!(o.get("a"), Some(&Json::Number(Number("1"))));
        assert_eq!(o.get("b"), Some(&Json::Number(Number("2"))));
        assert_eq!(o.get("c"), Some(&Json::Number(Number("4"))));
        assert_eq!(o.get("d"), Some(&Json::Number(Number("7"))));
        assert_eq!(o.get("e"), None);
    }

    #[test]
    fn a_key_given_twice_is_refused_naming_it_at_any_depth() {
        for (body, key) in [
            (r#"{"clientId":"","clientId":"ok"}"#, "clientId"),
            (
                r#"{"a":{"countryCode":"xx","b":1,"countryCode":"US"}}"#,
                "countryCode",
            ),
            (r#"[{"k":1},{"k":1,"k":2}]"#, "k"),
            (r#"{"\u0061":1,"a":2}"#, "a"),
        ] {
            let e = Json::parse(body.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(&format!("duplicate key `{key}`")), "{body}: {e}");
        }
        assert!(
            Json::parse(br#"{"a":{"k":1},"b":{"k":1}}"#).is_ok(),
            "same key, other objects"
        );
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let deep = "[".repeat(10_000);
        let closed = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let keyed = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
        for bad in [
            "", "{", "{\"a\":}", "[1,]", "nul", "\"\\x\"", &deep, &closed, &keyed,
        ] {
            assert!(Json::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        let at_the_limit = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(Json::parse(at_the_limit.as_bytes()).is_ok());
        let past = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let e = Json::parse(past.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("nest more than 128 deep"), "{e}");
    }

    /// The byte-at-a-time reading `nesting_within` must agree with.
    fn nesting_within_bytewise(body: &[u8], limit: usize) -> bool {
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        for &b in body {
            if in_string {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    depth += 1;
                    if depth > limit {
                        return false;
                    }
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        true
    }

    #[test]
    fn nesting_counts_brackets_outside_strings() {
        let within = |body: &str, limit| {
            let fast = nesting_within(body.as_bytes(), limit);
            assert_eq!(
                fast,
                nesting_within_bytewise(body.as_bytes(), limit),
                "{body}"
            );
            fast
        };
        assert!(within(r#"{"a":[{"b":1}]}"#, 3));
        assert!(!within(r#"{"a":[{"b":1}]}"#, 2));
        assert!(within(r#"{"a":"[[[[{{{{"}"#, 1), "brackets in a string");
        assert!(within(r#"{"a":"\"[[[[","b":"\\"}"#, 1), "escaped quotes");
        assert!(
            !within(r#"{"a":"\\",[[["#, 3),
            "an escaped backslash escapes no quote"
        );
        assert!(within(r#"{"a":"[[[[\"#, 1), "cut short in an escape");
        assert!(within(r#"{"a":"[[[["#, 1), "cut short in a string");
        assert!(within("", 0));
    }

    proptest::proptest! {
        #[test]
        fn nesting_agrees_with_a_bytewise_reading(
            body in proptest::collection::vec(proptest::sample::select(b"{}[]\"\\ax".to_vec()), 0..64),
            limit in 0usize..6,
        ) {
            proptest::prop_assert_eq!(nesting_within(&body, limit), nesting_within_bytewise(&body, limit));
        }
    }

    #[test]
    fn invalid_utf8_is_refused_with_its_position() {
        let body = b"{\"a\":\"ok\",\"b\":\"\xff\"}";
        let e = Json::parse(body).unwrap_err().to_string();
        assert!(e.contains("line 1 column"), "{e}");
        let valid = "{\"a\":\"caf\u{e9} \u{1f600}\"}";
        let Json::Object(o) = Json::parse(valid.as_bytes()).unwrap() else {
            panic!("object")
        };
        assert_eq!(
            o.get("a").and_then(Json::as_str),
            Some("caf\u{e9} \u{1f600}")
        );
    }
}
