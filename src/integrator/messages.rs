//! The conversation endpoint's requests, read and checked: one inbound
//! message (`POST /offergate/v1/encore/messages`), an offer that was not
//! delivered (`/offers/unsent`), an opt-out or opt-in. Each bad field is
//! named; nothing here keeps state or calls a partner.

use serde_json::json;

use super::eligibility::id;
use super::time::parse_time;
use crate::call::error::GatewayError;
use crate::call::json::Json;
use crate::partners::{encore, parse_object};

/// One inbound message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub client_id: String,
    pub chat_id: String,
    pub message_id: String,
    /// When the end user sent it, Unix milliseconds.
    pub sent_at: i64,
    /// The platform's own record of the message before it, which wins over
    /// offergate's; `Some(None)`: the platform says there was none.
    pub previous_at: Option<Option<i64>>,
    pub text: Option<String>,
    /// `attributes.language`, for the composed message.
    pub language: String,
    /// The Encore request for this thread, checked by Encore's own rules.
    pub encore_body: Vec<u8>,
}

/// Reads a message request.
pub fn read_message(body: &[u8]) -> Result<Message, GatewayError> {
    let obj = parse_object(body)?;
    let client_id = id(&obj, "clientId")?;
    let chat_id = id(&obj, "chatId")?;
    let message_id = id(&obj, "messageId")?;
    let sent_at = match obj.get("sentAt") {
        None | Some(Json::Null) => {
            return Err(GatewayError::invalid(
                "sentAt",
                "is required (RFC 3339, or Unix seconds or milliseconds)",
            ))
        }
        Some(t) => parse_time(t).map_err(|e| GatewayError::invalid("sentAt", e.to_string()))?,
    };
    let previous_at = match obj.get("previousMessageAt") {
        None => None,
        Some(Json::Null) => Some(None),
        Some(t) => Some(Some(parse_time(t).map_err(|e| {
            GatewayError::invalid("previousMessageAt", e.to_string())
        })?)),
    };
    if let Some(Some(previous)) = previous_at {
        if previous > sent_at {
            return Err(GatewayError::invalid(
                "previousMessageAt",
                "is after sentAt; it is the message before this one",
            ));
        }
    }
    let text = match obj.get("text") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s.to_string()),
        Some(other) => {
            return Err(GatewayError::invalid(
                "text",
                format!("must be a string, not {}", other.kind()),
            ))
        }
    };
    let attribute = |name: &str| match obj.get("attributes") {
        Some(Json::Object(a)) => a.get(name).and_then(Json::as_str).map(str::to_string),
        _ => None,
    };
    let attributes = match obj.get("attributes") {
        None | Some(Json::Null) => return Err(GatewayError::invalid("attributes", "is required")),
        Some(Json::Object(_)) => json!({
            "countryCode": attribute("countryCode"),
            "language": attribute("language"),
            "platform": attribute("platform"),
        }),
        Some(other) => {
            return Err(GatewayError::invalid(
                "attributes",
                format!("must be an object, not {}", other.kind()),
            ))
        }
    };
    let encore_body = json!({
        "clientId": client_id,
        "chatId": chat_id,
        "attributes": attributes,
    })
    .to_string()
    .into_bytes();
    // Encore's rules, as the offers route applies them: the same fields
    // named the same way.
    encore::check_body(&encore_body)?;
    Ok(Message {
        client_id,
        chat_id,
        message_id,
        sent_at,
        previous_at,
        text,
        language: attribute("language").unwrap_or_default(),
        encore_body,
    })
}

/// `{"clientId", "chatId"}` (an opt-out, an opt-in).
pub fn read_thread(body: &[u8]) -> Result<(String, String), GatewayError> {
    let obj = parse_object(body)?;
    Ok((id(&obj, "clientId")?, id(&obj, "chatId")?))
}

/// `{"clientId", "chatId", "clickUrl"}`: an offer that was not delivered.
pub fn read_unsent(body: &[u8]) -> Result<(String, String, String), GatewayError> {
    let obj = parse_object(body)?;
    let (client, chat) = (id(&obj, "clientId")?, id(&obj, "chatId")?);
    match obj.get("clickUrl") {
        Some(Json::String(s)) if !s.is_empty() && s.len() <= 2048 => {
            Ok((client, chat, s.to_string()))
        }
        Some(Json::String(_)) => Err(GatewayError::invalid("clickUrl", "must be 1 to 2048 bytes")),
        Some(other) => Err(GatewayError::invalid(
            "clickUrl",
            format!("must be a string, not {}", other.kind()),
        )),
        None => Err(GatewayError::invalid("clickUrl", "is required")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::error::Refusal;

    fn field_of(r: Result<(), GatewayError>) -> String {
        match r {
            Err(GatewayError::Refused(Refusal::InvalidRequest { field, .. })) => field,
            other => panic!("expected invalid_request, got {other:?}"),
        }
    }

    const GOOD: &str = r#"{"clientId":"c","chatId":"t","messageId":"wamid.1","sentAt":1795428900,"attributes":{"countryCode":"US","language":"en","platform":"ios"},"text":"hi"}"#;

    #[test]
    fn a_message_reads_with_encores_rules() {
        let m = read_message(GOOD.as_bytes()).unwrap();
        assert_eq!(
            (m.sent_at, m.previous_at, m.text.as_deref()),
            (1_795_428_900_000, None, Some("hi"))
        );
        assert!(encore::check_body(&m.encore_body).is_ok());
        let with_previous = GOOD.replace(
            r#""text":"hi""#,
            r#""previousMessageAt":"2026-11-23T10:00:00Z""#,
        );
        assert_eq!(
            read_message(with_previous.as_bytes()).unwrap().previous_at,
            Some(Some(1_795_428_000_000))
        );
        for (body, field) in [
            (GOOD.replace(r#""messageId":"wamid.1","#, ""), "messageId"),
            (GOOD.replace("1795428900", "\"soon\""), "sentAt"),
            (
                GOOD.replace(r#""US""#, r#""USA""#),
                "attributes.countryCode",
            ),
            (GOOD.replace(r#""ios""#, r#""tv""#), "attributes.platform"),
            (GOOD.replace(r#""hi""#, "3"), "text"),
            (
                GOOD.replace(r#""text":"hi""#, r#""previousMessageAt":1895428900"#),
                "previousMessageAt",
            ),
            (GOOD.replace(r#""c""#, "\"c\\u0000\""), "clientId"),
            ("[]".into(), "body"),
        ] {
            assert_eq!(
                field_of(read_message(body.as_bytes()).map(|_| ())),
                field,
                "{body}"
            );
        }
    }
}
