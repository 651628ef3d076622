//! The message to send, composed from an Encore offer (opt-in: request header
//! `x-offergate-compose: true`, or `[encore.integrator] compose = true`). The
//! doc's recommended sentence, with the click URL verbatim and the partner
//! sign-off, in the caller's language when a template exists (by the primary
//! subtag of `attributes.language`), English otherwise. The `perk` fills the
//! sentence; when it is null, the `title` does. The answer gains
//! `"composed": {"text", "language"}`; every other field stays as the partner
//! sent it.

use bytes::Bytes;

use super::OfferText;

/// `(language, template)`: `{offer}` is the perk (or the title), `{url}` the
/// click URL.
const TEMPLATES: [(&str, &str); 5] = [
    ("en", "Get {offer} by claiming now: {url} — Unlocked by our partner EncoreKit"),
    ("es", "Consigue {offer} reclamándolo ahora: {url} — Desbloqueado por nuestro socio EncoreKit"),
    ("pt", "Ganhe {offer} resgatando agora: {url} — Desbloqueado pelo nosso parceiro EncoreKit"),
    ("fr", "Obtenez {offer} en le réclamant maintenant : {url} — Débloqué par notre partenaire EncoreKit"),
    ("de", "Hol dir {offer}, jetzt einlösen: {url} — Freigeschaltet von unserem Partner EncoreKit"),
];

/// Whether a caller asked for composition.
pub fn asked(value: Option<&http::HeaderValue>) -> bool {
    value.is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"))
}

/// A composed message, set on the partner's answer by the call that read
/// it (`upstream`), so the edge adds it without reading the answer again.
pub use crate::call::request::Composed;

/// The message for `offer`, in `language`'s template (English when there is
/// none); `None` when the offer has neither a perk nor a title to offer.
pub fn message(offer: &OfferText, language: Option<&str>) -> Option<Composed> {
    let what = offer
        .perk
        .as_deref()
        .filter(|p| !p.trim().is_empty())
        .or(offer.title.as_deref())?;
    let primary = language
        .and_then(|l| l.split(['-', '_']).next())
        .map(str::to_ascii_lowercase);
    let (lang, template) = TEMPLATES
        .iter()
        .find(|(l, _)| primary.as_deref() == Some(*l))
        .unwrap_or(&TEMPLATES[0]);
    let what = clean(what);
    if what.is_empty() {
        return None;
    }
    Some(Composed {
        text: fill(template, &what, &offer.click_url),
        language: lang,
    })
}

/// The longest offer text put in a message, in characters.
pub const MAX_OFFER_CHARS: usize = 120;

/// A partner's text as it may reach an end user: no control or
/// direction-changing characters, no `<` or `>` (so no markup can form),
/// whitespace runs as one space, at most [`MAX_OFFER_CHARS`] characters.
fn clean(text: &str) -> String {
    let invisible = |c: char| {
        c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
    };
    let mut out = String::with_capacity(text.len().min(4 * MAX_OFFER_CHARS));
    let mut chars = 0;
    for word in text
        .split(|c: char| c.is_whitespace() || invisible(c))
        .filter(|w| !w.is_empty())
    {
        let space = (!out.is_empty()).then_some(' ');
        for c in space
            .into_iter()
            .chain(word.chars().filter(|c| !matches!(c, '<' | '>')))
        {
            if chars == MAX_OFFER_CHARS {
                out.push('…');
                return out;
            }
            out.push(c);
            chars += 1;
        }
    }
    out
}

/// `answer` (a checked Encore 200, a JSON object) with `composed` added as
/// its last member; every other byte as the partner sent it.
pub fn add(answer: &[u8], composed: &Composed) -> Option<Bytes> {
    let end = answer.iter().rposition(|b| !b.is_ascii_whitespace())?;
    if answer[end] != b'}' {
        return None;
    }
    let empty = answer[..end]
        .iter()
        .rev()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    let member = serde_json::json!({ "text": composed.text, "language": composed.language });
    let mut out = Vec::with_capacity(answer.len() + composed.text.len() + 48);
    out.extend_from_slice(&answer[..end]);
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(br#""composed":"#);
    out.extend_from_slice(member.to_string().as_bytes());
    out.push(b'}');
    Some(Bytes::from(out))
}

/// `answer` with `composed` added, or `None` when it holds no offer to
/// compose (then it is sent as it is): for an answer no call of this
/// request read (a replay from the store).
pub fn compose(answer: &[u8], language: Option<&str>, link_host: &str) -> Option<Bytes> {
    let offer = super::read_offer(answer, link_host).ok()??;
    let composed = message(&offer, language)?;
    add(answer, &composed)
}

/// The template with its placeholders filled. Only the template is scanned
/// for placeholders, never what goes into them: an offer field that reads
/// `{url}` stays as it is.
fn fill(template: &str, offer: &str, url: &str) -> String {
    let mut out = String::with_capacity(template.len() + offer.len() + url.len());
    let mut rest = template;
    while let Some(at) = rest.find('{') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("{offer}") {
            out.push_str(offer);
            rest = after;
        } else if let Some(after) = rest.strip_prefix("{url}") {
            out.push_str(url);
            rest = after;
        } else {
            out.push('{');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const OFFER: &str = r#"{"success":true,"offer":{"clickUrl":"https://link.encorekit.com/aB3xY7q2","title":"Free Apple Music for 6 months","description":"Songs & Podcasts","imageUrl":"https://x/y.png","advertiserName":"Apple Music","perk":"6 months free"}}"#;

    fn composed(answer: &str, lang: Option<&str>) -> Value {
        serde_json::from_slice(&compose(answer.as_bytes(), lang, super::super::LINK_HOST).unwrap())
            .unwrap()
    }

    #[test]
    fn the_docs_sentence_with_the_perk_or_the_title() {
        let v = composed(OFFER, Some("en-US"));
        assert_eq!(
            v["composed"]["text"],
            "Get 6 months free by claiming now: https://link.encorekit.com/aB3xY7q2 — Unlocked by our partner EncoreKit"
        );
        assert_eq!(v["composed"]["language"], "en");
        let no_perk = OFFER.replace(r#""6 months free""#, "null");
        let v = composed(&no_perk, None);
        assert!(v["composed"]["text"]
            .as_str()
            .unwrap()
            .starts_with("Get Free Apple Music for 6 months by claiming now"));
        // Every other field exactly as the partner sent it.
        let before: Value = serde_json::from_str(OFFER).unwrap();
        let mut after = composed(OFFER, None);
        after.as_object_mut().unwrap().remove("composed");
        assert_eq!(after, before);
    }

    #[test]
    fn languages_and_their_fallback() {
        assert_eq!(
            composed(OFFER, Some("es-419"))["composed"]["language"],
            "es"
        );
        assert!(composed(OFFER, Some("pt-BR"))["composed"]["text"]
            .as_str()
            .unwrap()
            .starts_with("Ganhe 6 months free"));
        assert_eq!(
            composed(OFFER, Some("zh-Hant-TW"))["composed"]["language"],
            "en",
            "no template: English"
        );
    }

    #[test]
    fn partner_text_reaches_the_user_without_markup_or_control_characters() {
        let hostile = OFFER.replace(
            "6 months free",
            "<script>alert(1)</script> free\\u0000\\u202Etxt.exe\\n\\tnow",
        );
        let text = composed(&hostile, None)["composed"]["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
        assert!(
            !text.chars().any(|c| c.is_control() || c == '\u{202E}'),
            "{text:?}"
        );
        assert!(
            text.starts_with("Get scriptalert(1)/script free txt.exe now by claiming"),
            "{text}"
        );
        let long = OFFER.replace("6 months free", &"x".repeat(500));
        let text = composed(&long, None)["composed"]["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            text.contains(&format!("{}…", "x".repeat(MAX_OFFER_CHARS))),
            "{text}"
        );
        assert!(!text.contains(&"x".repeat(MAX_OFFER_CHARS + 1)));
    }

    #[test]
    fn the_click_url_is_never_altered_and_no_offer_is_left_alone() {
        let tricky = OFFER.replace("6 months free", "{url} and {offer}");
        let text = composed(&tricky, None)["composed"]["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            text.matches("https://link.encorekit.com/aB3xY7q2").count(),
            1
        );
        assert!(
            text.contains("{url} and {offer}"),
            "offer text is not a template: {text}"
        );
        assert!(compose(
            br#"{"success":true,"offer":null}"#,
            None,
            super::super::LINK_HOST
        )
        .is_none());
    }
}
