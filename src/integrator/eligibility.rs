//! The eligibility endpoint: the Encore doc's rule (`rules.rs`) asked of a
//! thread's history sent in one request, with what offergate itself
//! recorded of the thread counted too. No partner call is made here.

use serde::Serialize;
use smallvec::SmallVec;

use super::rules::{judge, Known, Rules, MAX_AHEAD_MS};
use super::time::parse_time;
use crate::call::error::GatewayError;
use crate::call::json::{Json, Object};
use crate::config::IdleGapBasis;
use crate::partners::encore::links::{offer_links, LinkKey};
use crate::partners::{parse_object, required_id};

/// The path on offergate's own prefix.
pub const PATH: &str = "/offergate/v1/encore/eligibility";

/// The eligibility endpoint's answer.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub eligible: bool,
    pub trigger: Option<&'static str>,
    pub reason: Option<&'static str>,
    pub offers_shown: u64,
}

impl Decision {
    /// The `result` label of `offergate_eligibility_total`.
    pub fn result(&self) -> &'static str {
        self.reason.unwrap_or("eligible")
    }
}

/// Most messages read from one request.
const MAX_MESSAGES: usize = 1_000;

/// An eligibility request, read and checked.
#[derive(Debug)]
pub struct Asked {
    pub client_id: String,
    pub chat_id: String,
    history: History,
}

#[derive(Debug)]
enum History {
    /// The thread's messages, oldest first: inbound or not, when, the
    /// offer links of outbound ones.
    Messages(Vec<(bool, i64, SmallVec<[LinkKey; 2]>)>),
    /// `previous_message_at` (null: a new thread) and `offers_shown`.
    Summary {
        previous: Option<i64>,
        offers_shown: u64,
    },
}

/// Reads an eligibility request `body`.
pub fn read(body: &[u8], rules: &Rules) -> Result<Asked, GatewayError> {
    let obj = parse_object(body)?;
    let client_id = id(&obj, "clientId")?;
    let chat_id = id(&obj, "chatId")?;
    let history = match (obj.get("messages"), obj.get("previous_message_at")) {
        (Some(_), Some(_)) => {
            return Err(GatewayError::invalid(
                "messages",
                "send messages or previous_message_at with offers_shown, not both",
            ))
        }
        (Some(messages), None) => from_messages(messages, rules)?,
        (None, Some(previous)) => from_summary(&obj, previous)?,
        (None, None) => {
            return Err(GatewayError::invalid(
                "messages",
                "is required (or previous_message_at with offers_shown)",
            ))
        }
    };
    Ok(Asked {
        client_id,
        chat_id,
        history,
    })
}

/// A required id (1 to 256 characters, no control character), as the
/// offers route takes it.
pub fn id(obj: &Object<'_>, field: &str) -> Result<String, GatewayError> {
    required_id(obj, field)?;
    Ok(obj
        .get(field)
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string())
}

/// Decides for `asked` at `now_ms`, counting what offergate `known` of the
/// thread with what the history shows: a link counts once, wherever seen.
pub fn decide(asked: &Asked, rules: &Rules, now_ms: i64, known: &Known) -> Decision {
    let latest = now_ms.saturating_add(MAX_AHEAD_MS);
    let (current, previous, from_history, shown_links) = match &asked.history {
        History::Messages(read) => {
            let at = |i: usize| read[i].1.min(latest);
            let last = read.len() - 1;
            let current = at(last);
            let previous = (0..last)
                .rev()
                .find(|&i| rules.basis == IdleGapBasis::Any || read[i].0)
                .map(at);
            let since = current.saturating_sub(rules.window_ms());
            let mut links: SmallVec<[LinkKey; 4]> = SmallVec::new();
            for (i, (inbound, _, found)) in read.iter().enumerate() {
                if !inbound && at(i) >= since {
                    links.extend_from_slice(found);
                }
            }
            (current, previous, 0, links)
        }
        History::Summary {
            previous,
            offers_shown,
        } => (
            now_ms,
            previous.map(|p| p.min(latest)),
            *offers_shown,
            SmallVec::new(),
        ),
    };
    let since = current.saturating_sub(rules.window_ms());
    let mut links = shown_links;
    links.extend(
        known
            .offers
            .iter()
            .filter(|(at, _)| *at >= since)
            .map(|(_, key)| *key),
    );
    // Sorted once, not searched per link: a history may hold tens of thousands.
    links.sort_unstable();
    links.dedup();
    let offers_shown = (links.len() as u64).max(from_history);
    let verdict = judge(rules, current, previous, offers_shown, known.opted_out);
    Decision {
        eligible: verdict.reason.is_none(),
        trigger: verdict.trigger,
        reason: verdict.reason,
        offers_shown,
    }
}

/// The thread's messages, oldest first, the last the inbound one just received.
fn from_messages(messages: &Json<'_>, rules: &Rules) -> Result<History, GatewayError> {
    let Json::Array(items) = messages else {
        return Err(GatewayError::invalid(
            "messages",
            format!("must be an array, not {}", messages.kind()),
        ));
    };
    if items.is_empty() || items.len() > MAX_MESSAGES {
        return Err(GatewayError::invalid(
            "messages",
            "must hold 1 to 1000 messages, oldest first",
        ));
    }
    let mut read: Vec<(bool, i64, SmallVec<[LinkKey; 2]>)> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = |name: &str| format!("messages[{i}].{name}");
        let Json::Object(m) = item else {
            return Err(GatewayError::invalid(
                format!("messages[{i}]"),
                "must be an object",
            ));
        };
        let inbound = match m.get("direction").and_then(Json::as_str) {
            Some("inbound") => true,
            Some("outbound") => false,
            _ => {
                return Err(GatewayError::invalid(
                    field("direction"),
                    "must be inbound or outbound",
                ))
            }
        };
        let text = match m.get("text") {
            Some(Json::String(s)) => s.as_ref(),
            None | Some(Json::Null) => "",
            Some(other) => {
                return Err(GatewayError::invalid(
                    field("text"),
                    format!("must be a string, not {}", other.kind()),
                ))
            }
        };
        let at = match m.get("timestamp") {
            None | Some(Json::Null) => {
                return Err(GatewayError::invalid(
                    field("timestamp"),
                    "is required (RFC 3339, or Unix seconds or milliseconds)",
                ))
            }
            Some(t) => parse_time(t)
                .map_err(|e| GatewayError::invalid(field("timestamp"), e.to_string()))?,
        };
        if read.last().is_some_and(|(_, before, _)| at < *before) {
            return Err(GatewayError::invalid(
                field("timestamp"),
                "is earlier than the message before it; send the thread oldest first",
            ));
        }
        let links = if inbound {
            SmallVec::new()
        } else {
            offer_links(text, &rules.link_host)
        };
        read.push((inbound, at, links));
    }
    if !read[read.len() - 1].0 {
        return Err(GatewayError::invalid(
            format!("messages[{}].direction", read.len() - 1),
            "the last message must be the inbound one just received",
        ));
    }
    Ok(History::Messages(read))
}

/// The same from `previous_message_at` (null: a new thread) and `offers_shown`.
fn from_summary(obj: &Object<'_>, previous: &Json<'_>) -> Result<History, GatewayError> {
    let previous = match previous {
        Json::Null => None,
        other => Some(
            parse_time(other)
                .map_err(|e| GatewayError::invalid("previous_message_at", e.to_string()))?,
        ),
    };
    let offers_shown = match obj.get("offers_shown") {
        Some(Json::Number(n)) => n.as_u64().ok_or_else(|| {
            GatewayError::invalid("offers_shown", "must be a whole number from 0")
        })?,
        None => {
            return Err(GatewayError::invalid(
                "offers_shown",
                "is required with previous_message_at",
            ))
        }
        Some(other) => {
            return Err(GatewayError::invalid(
                "offers_shown",
                format!("must be a number, not {}", other.kind()),
            ))
        }
    };
    Ok(History::Summary {
        previous,
        offers_shown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::error::Refusal;
    use std::time::Duration;

    const HOUR: i64 = 3_600_000;

    fn rules() -> Rules {
        Rules {
            idle_gap: Duration::from_millis(12 * HOUR as u64),
            thread_cap: 3,
            thread_window: Duration::from_secs(30 * 24 * 3600),
            basis: IdleGapBasis::Inbound,
            opt_out_keywords: vec!["stop".into()],
            link_host: "link.encorekit.com".into(),
        }
    }

    /// Far after every test date: no message is in the future.
    const LATER: i64 = 4_000_000_000_000;

    fn decide_body(body: &[u8], rules: &Rules, now: i64) -> Result<Decision, GatewayError> {
        Ok(decide(&read(body, rules)?, rules, now, &Known::default()))
    }

    fn at(hours: i64) -> String {
        // 2026-11-01T00:00:00Z plus `hours`.
        let base = 1_793_491_200_000_i64 + hours * HOUR;
        let secs = base / 1000;
        let (d, s) = (secs / 86_400, secs % 86_400);
        let (y, m, day) = civil(d);
        format!(
            "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}Z",
            s / 3600,
            s % 3600 / 60,
            s % 60
        )
    }

    fn civil(z: i64) -> (i64, i64, i64) {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        (yoe + era * 400 + i64::from(m <= 2), m, d)
    }

    fn thread(msgs: &[(&str, &str, i64)]) -> Vec<u8> {
        let messages: Vec<serde_json::Value> = msgs
            .iter()
            .map(|(dir, text, h)| serde_json::json!({"direction": dir, "text": text, "timestamp": at(*h)}))
            .collect();
        serde_json::json!({"clientId": "c", "chatId": "t", "messages": messages})
            .to_string()
            .into_bytes()
    }

    fn decide_thread(msgs: &[(&str, &str, i64)]) -> Decision {
        decide_body(&thread(msgs), &rules(), LATER).unwrap()
    }

    const OFFER: &str =
        "Get 6 months free: https://link.encorekit.com/aB3 — Unlocked by our partner EncoreKit";

    #[test]
    fn every_rule_of_when_to_call_us() {
        let first = decide_thread(&[("inbound", "hi", 0)]);
        assert_eq!(
            (first.eligible, first.trigger, first.reason),
            (true, Some("first_message"), None)
        );
        // Just under the idle gap: mid-thread; at it and over: a re-engagement.
        let under = decide_thread(&[
            ("inbound", "hi", 0),
            ("outbound", "hello", 0),
            ("inbound", "back", 11),
        ]);
        assert_eq!(
            (under.eligible, under.trigger, under.reason),
            (false, None, Some("mid_thread"))
        );
        let over = decide_thread(&[
            ("inbound", "hi", 0),
            ("outbound", OFFER, 0),
            ("inbound", "back", 12),
        ]);
        assert_eq!(
            (over.eligible, over.trigger, over.offers_shown),
            (true, Some("re_engagement"), 1)
        );
        // The cap, counted from the history's links, blocks even a re-engagement.
        let capped = decide_thread(&[
            ("inbound", "a", 0),
            ("outbound", OFFER, 0),
            ("inbound", "b", 20),
            (
                "outbound",
                "link.encorekit.com/x and link.encorekit.com/y",
                20,
            ),
            ("inbound", "c", 40),
        ]);
        assert_eq!(
            (capped.eligible, capped.reason, capped.offers_shown),
            (false, Some("thread_cap"), 3)
        );
        // Look-alikes are not offers.
        let fake = decide_thread(&[
            ("inbound", "a", 0), ("outbound", "https://link.encorekit.com.evil.example/a xlink.encorekit.com/b https://link.encorekit.com@evil.example/", 0),
            ("inbound", "b", 20),
        ]);
        assert_eq!((fake.eligible, fake.offers_shown), (true, 0));
        // Offers older than the window do not count.
        let old = decide_thread(&[
            ("inbound", "a", 0),
            ("outbound", &[OFFER; 3].join(" "), 0),
            ("inbound", "b", 31 * 24),
        ]);
        assert_eq!((old.eligible, old.offers_shown), (true, 0));
    }

    #[test]
    fn the_basis_the_clock_and_what_offergate_knows() {
        // An outbound reminder an hour ago does not cancel a re-engagement
        // on the inbound basis; on `any` it does.
        let msgs = [
            ("inbound", "a", 0),
            ("outbound", "reminder", 20),
            ("inbound", "b", 21),
        ];
        assert_eq!(decide_thread(&msgs).trigger, Some("re_engagement"));
        let any = Rules {
            basis: IdleGapBasis::Any,
            ..rules()
        };
        assert_eq!(
            decide_body(&thread(&msgs), &any, LATER).unwrap().reason,
            Some("mid_thread")
        );
        // A last message dated years ahead is taken as now: the offers
        // before it still count.
        let now = parse_time(&Json::String(at(40).into())).unwrap();
        let ahead = decide_body(
            &thread(&[
                ("inbound", "a", 0),
                ("outbound", OFFER, 1),
                ("inbound", "b", 24 * 365 * 5),
            ]),
            &rules(),
            now,
        )
        .unwrap();
        assert_eq!(ahead.offers_shown, 1);
        // The offers offergate recorded count with the history's, a link once.
        let key = crate::partners::encore::links::link_key(
            "https://link.encorekit.com/aB3",
            "link.encorekit.com",
        )
        .unwrap();
        let known = Known {
            offers: [(now, key), (now, 7)].into_iter().collect(),
            opted_out: false,
        };
        let asked = read(
            &thread(&[
                ("inbound", "a", 0),
                ("outbound", OFFER, 1),
                ("inbound", "b", 40),
            ]),
            &rules(),
        )
        .unwrap();
        assert_eq!(decide(&asked, &rules(), now, &known).offers_shown, 2);
        let out = Known {
            opted_out: true,
            ..Known::default()
        };
        assert_eq!(
            decide(&asked, &rules(), now, &out).reason,
            Some("opted_out")
        );
        assert!(rules().is_opt_out(" Stop! "));
        assert!(!rules().is_opt_out("stop it"));
        // Written so that it only looks like the word: full-width letters,
        // zero-width characters inside or after it, a soft hyphen.
        for text in [
            "ＳＴＯＰ",
            "S\u{200B}TOP",
            "STOP\u{200B}",
            "\u{FEFF}stop",
            "st\u{00AD}op",
            "Ｓtop\u{2060}!",
        ] {
            assert!(rules().is_opt_out(text), "{text:?}");
        }
        assert!(!rules().is_opt_out("\u{200B}"));
    }

    #[test]
    fn the_summary_form() {
        let body = |prev: &str, shown: u64| {
            format!(r#"{{"clientId":"c","chatId":"t","previous_message_at":{prev},"offers_shown":{shown}}}"#).into_bytes()
        };
        let now = crate::integrator::time::parse_rfc3339(&at(100)).unwrap();
        let d = decide_body(&body("null", 0), &rules(), now).unwrap();
        assert_eq!(d.trigger, Some("first_message"));
        let d = decide_body(&body(&format!("\"{}\"", at(99)), 0), &rules(), now).unwrap();
        assert_eq!(d.reason, Some("mid_thread"));
        let d = decide_body(&body(&format!("\"{}\"", at(80)), 3), &rules(), now).unwrap();
        assert_eq!(
            (d.trigger, d.reason),
            (Some("re_engagement"), Some("thread_cap"))
        );
    }

    #[test]
    fn bad_input_names_the_field() {
        for (body, field) in [
            (r#"[]"#.to_string(), "body"),
            (r#"{"chatId":"t","messages":[]}"#.into(), "clientId"),
            (r#"{"clientId":"c","chatId":"t"}"#.into(), "messages"),
            (r#"{"clientId":"c","chatId":"t","messages":[]}"#.into(), "messages"),
            (r#"{"clientId":"c","chatId":"t","messages":[{"direction":"sideways","timestamp":"2026-11-01T00:00:00Z"}]}"#.into(), "messages[0].direction"),
            (r#"{"clientId":"c","chatId":"t","messages":[{"direction":"inbound","timestamp":"yesterday"}]}"#.into(), "messages[0].timestamp"),
            (r#"{"clientId":"c","chatId":"t","messages":[{"direction":"outbound","timestamp":"2026-11-01T00:00:00Z"}]}"#.into(), "messages[0].direction"),
            (r#"{"clientId":"c","chatId":"t","previous_message_at":null}"#.into(), "offers_shown"),
            (r#"{"clientId":"c","clientId":"d","chatId":"t","messages":[]}"#.into(), "body"),
        ] {
            match read(body.as_bytes(), &rules()) {
                Err(GatewayError::Refused(Refusal::InvalidRequest { field: f, .. })) => assert_eq!(f, field, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }
}
