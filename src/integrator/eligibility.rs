//! "When to call us", from the Encore doc, as one decision: call on the first
//! message of a thread, or on the first after a long idle gap (a
//! re-engagement), never mid-thread, and not once the thread has shown the
//! per-thread cap of offers (counted as links on `link.encorekit.com` in the
//! thread's outbound messages). No partner call is made.

use std::time::Duration;

use serde::Serialize;

use super::links::count_offer_links;
use super::time::parse_rfc3339;
use crate::call::error::GatewayError;
use crate::call::json::{Json, Object};
use crate::config::IntegratorConfig;

/// The path on offergate's own prefix.
pub const PATH: &str = "/offergate/v1/encore/eligibility";

/// `[encore.integrator]`.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// A gap this long since the previous message makes a re-engagement.
    pub idle_gap: Duration,
    /// Offers a thread may show; 0: no cap.
    pub thread_cap: u32,
    /// How far back offers count toward the cap.
    pub thread_window: Duration,
}

impl From<&IntegratorConfig> for Rules {
    fn from(c: &IntegratorConfig) -> Rules {
        Rules {
            idle_gap: c.idle_gap,
            thread_cap: c.thread_cap,
            thread_window: c.thread_window,
        }
    }
}

/// The answer.
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

/// Longest id accepted, in characters (as on the offers route).
const MAX_ID_CHARS: usize = 256;
/// Most messages read from one request.
const MAX_MESSAGES: usize = 1_000;

/// Decides for the request `body`; `now_ms` stands for the current message's
/// time when the caller sends `previous_message_at` instead of messages.
pub fn decide(body: &[u8], rules: &Rules, now_ms: i64) -> Result<Decision, GatewayError> {
    let obj = match Json::parse(body) {
        Ok(Json::Object(obj)) => obj,
        Ok(other) => {
            return Err(GatewayError::invalid(
                "body",
                format!("must be a JSON object, not {}", other.kind()),
            ))
        }
        Err(e) => {
            return Err(GatewayError::invalid(
                "body",
                format!("is not valid JSON: {e}"),
            ))
        }
    };
    for field in ["clientId", "chatId"] {
        match obj.get(field) {
            Some(Json::String(s)) if !s.is_empty() && s.chars().count() <= MAX_ID_CHARS => {}
            Some(Json::String(_)) => {
                return Err(GatewayError::invalid(field, "must be 1 to 256 characters"))
            }
            Some(other) => {
                return Err(GatewayError::invalid(
                    field,
                    format!("must be a string, not {}", other.kind()),
                ))
            }
            None => return Err(GatewayError::invalid(field, "is required")),
        }
    }
    let (current, previous, offers_shown) =
        match (obj.get("messages"), obj.get("previous_message_at")) {
            (Some(_), Some(_)) => {
                return Err(GatewayError::invalid(
                    "messages",
                    "send messages or previous_message_at with offers_shown, not both",
                ))
            }
            (Some(messages), None) => from_messages(messages, rules)?,
            (None, Some(previous)) => from_summary(&obj, previous, now_ms)?,
            (None, None) => {
                return Err(GatewayError::invalid(
                    "messages",
                    "is required (or previous_message_at with offers_shown)",
                ))
            }
        };
    let trigger = match previous {
        None => Some("first_message"),
        Some(prev) if current - prev >= rules.idle_gap.as_millis() as i64 => Some("re_engagement"),
        Some(_) => None,
    };
    let capped = rules.thread_cap > 0 && offers_shown >= u64::from(rules.thread_cap);
    let reason = match (trigger, capped) {
        (None, _) => Some("mid_thread"),
        (Some(_), true) => Some("thread_cap"),
        (Some(_), false) => None,
    };
    Ok(Decision {
        eligible: reason.is_none(),
        trigger,
        reason,
        offers_shown,
    })
}

/// `(current message time, previous message time, offers shown)` from the
/// thread's messages, oldest first, the last the inbound one just received.
fn from_messages(
    messages: &Json<'_>,
    rules: &Rules,
) -> Result<(i64, Option<i64>, u64), GatewayError> {
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
    let mut read = Vec::with_capacity(items.len());
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
        let at = m
            .get("timestamp")
            .and_then(Json::as_str)
            .ok_or_else(|| GatewayError::invalid(field("timestamp"), "is required (RFC 3339)"))
            .and_then(|t| {
                parse_rfc3339(t)
                    .map_err(|e| GatewayError::invalid(field("timestamp"), e.to_string()))
            })?;
        if read.last().is_some_and(|(_, before, _)| at < *before) {
            return Err(GatewayError::invalid(
                field("timestamp"),
                "is earlier than the message before it; send the thread oldest first",
            ));
        }
        read.push((inbound, at, text));
    }
    let (inbound, current, _) = read[read.len() - 1];
    if !inbound {
        return Err(GatewayError::invalid(
            format!("messages[{}].direction", read.len() - 1),
            "the last message must be the inbound one just received",
        ));
    }
    let since = current - rules.thread_window.as_millis() as i64;
    let offers_shown = read
        .iter()
        .filter(|(inbound, at, _)| !inbound && *at >= since)
        .map(|(_, _, text)| count_offer_links(text) as u64)
        .sum();
    let previous = read.len().checked_sub(2).map(|i| read[i].1);
    Ok((current, previous, offers_shown))
}

/// The same from `previous_message_at` (null: a new thread) and `offers_shown`.
fn from_summary(
    obj: &Object<'_>,
    previous: &Json<'_>,
    now_ms: i64,
) -> Result<(i64, Option<i64>, u64), GatewayError> {
    let previous = match previous {
        Json::Null => None,
        Json::String(t) => Some(
            parse_rfc3339(t)
                .map_err(|e| GatewayError::invalid("previous_message_at", e.to_string()))?,
        ),
        other => {
            return Err(GatewayError::invalid(
                "previous_message_at",
                format!(
                    "must be an RFC 3339 timestamp or null, not {}",
                    other.kind()
                ),
            ))
        }
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
    Ok((now_ms, previous, offers_shown))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::error::Refusal;

    const HOUR: i64 = 3_600_000;

    fn rules() -> Rules {
        Rules {
            idle_gap: Duration::from_millis(12 * HOUR as u64),
            thread_cap: 3,
            thread_window: Duration::from_secs(30 * 24 * 3600),
        }
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
        decide(&thread(msgs), &rules(), 0).unwrap()
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
            ("outbound", &format!("{OFFER} and link.encorekit.com/x"), 20),
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
    fn the_summary_form() {
        let body = |prev: &str, shown: u64| {
            format!(r#"{{"clientId":"c","chatId":"t","previous_message_at":{prev},"offers_shown":{shown}}}"#).into_bytes()
        };
        let now = parse_rfc3339(&at(100)).unwrap();
        let d = decide(&body("null", 0), &rules(), now).unwrap();
        assert_eq!(d.trigger, Some("first_message"));
        let d = decide(&body(&format!("\"{}\"", at(99)), 0), &rules(), now).unwrap();
        assert_eq!(d.reason, Some("mid_thread"));
        let d = decide(&body(&format!("\"{}\"", at(80)), 3), &rules(), now).unwrap();
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
            match decide(body.as_bytes(), &rules(), 0) {
                Err(GatewayError::Refused(Refusal::InvalidRequest { field: f, .. })) => assert_eq!(f, field, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }
}
