//! Typed client events: a Socket.IO EVENT's name and first argument, checked
//! against the contract (§2 ids, §5 payloads) before anything acts on them.

use serde_json::{Map, Value};

/// The longest id the contract allows.
pub const MAX_ID_LEN: usize = 64;
/// The longest token accepted in `auth:refresh`.
const MAX_TOKEN_LEN: usize = 8192;

/// An event a client may send, with its payload checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// `auth:refresh {token}`: replaces the connection's token (same `sub`).
    AuthRefresh { token: String },
}

impl ClientEvent {
    /// The contract's name of this event.
    pub fn name(&self) -> &'static str {
        match self {
            ClientEvent::AuthRefresh { .. } => "auth:refresh",
        }
    }
}

/// Why an event was refused before any handler ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The event name is not in the contract.
    #[error("unknown event {0:?}")]
    Unsupported(String),
    /// The payload breaks the contract; the message names the field.
    #[error("{0}")]
    BadRequest(String),
}

/// Names of events the contract knows, for bounded metric labels.
pub const KNOWN_EVENTS: &[&str] = &["auth:refresh"];

/// Parses an EVENT packet's argument array (`["name", payload, …]`).
pub fn parse(args: &[Value]) -> Result<ClientEvent, EventError> {
    let name = match args.first() {
        Some(Value::String(name)) => name.as_str(),
        _ => return Err(EventError::BadRequest("event name must be a string".into())),
    };
    let payload = args.get(1);
    match name {
        "auth:refresh" => {
            let fields = object(payload)?;
            Ok(ClientEvent::AuthRefresh {
                token: string(fields, "token", 1, MAX_TOKEN_LEN)?,
            })
        }
        other => Err(EventError::Unsupported(truncate(other, MAX_ID_LEN))),
    }
}

fn object(payload: Option<&Value>) -> Result<&Map<String, Value>, EventError> {
    match payload {
        Some(Value::Object(fields)) => Ok(fields),
        _ => Err(EventError::BadRequest("payload must be an object".into())),
    }
}

/// A required string field of `min..=max` characters.
fn string(
    fields: &Map<String, Value>,
    field: &str,
    min: usize,
    max: usize,
) -> Result<String, EventError> {
    match fields.get(field) {
        Some(Value::String(text)) => {
            let len = text.chars().count();
            if len < min || len > max {
                Err(EventError::BadRequest(format!(
                    "{field} must be {min} to {max} characters"
                )))
            } else {
                Ok(text.clone())
            }
        }
        Some(_) => Err(EventError::BadRequest(format!("{field} must be a string"))),
        None => Err(EventError::BadRequest(format!("{field} is required"))),
    }
}

/// Whether `text` is a contract id: 1–64 characters of `[A-Za-z0-9_-]`.
pub fn is_valid_id(text: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Shortens client-chosen text before it is echoed back or logged.
fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(value: Value) -> Vec<Value> {
        match value {
            Value::Array(items) => items,
            other => vec![other],
        }
    }

    #[test]
    fn parses_auth_refresh() {
        assert_eq!(
            parse(&args(json!(["auth:refresh", {"token": "abc"}]))),
            Ok(ClientEvent::AuthRefresh {
                token: "abc".into()
            })
        );
    }

    #[test]
    fn refuses_bad_payloads_naming_the_field() {
        let cases = [
            (json!(["auth:refresh"]), "payload must be an object"),
            (json!(["auth:refresh", "abc"]), "payload must be an object"),
            (json!(["auth:refresh", {}]), "token is required"),
            (
                json!(["auth:refresh", {"token": 5}]),
                "token must be a string",
            ),
            (
                json!(["auth:refresh", {"token": ""}]),
                "token must be 1 to 8192 characters",
            ),
        ];
        for (input, message) in cases {
            assert_eq!(
                parse(&args(input.clone())),
                Err(EventError::BadRequest(message.into())),
                "{input}"
            );
        }
        let huge = "t".repeat(MAX_TOKEN_LEN + 1);
        assert!(matches!(
            parse(&args(json!(["auth:refresh", {"token": huge}]))),
            Err(EventError::BadRequest(_))
        ));
    }

    #[test]
    fn unknown_events_are_unsupported_with_a_bounded_name() {
        assert_eq!(
            parse(&args(json!(["nope", {}]))),
            Err(EventError::Unsupported("nope".into()))
        );
        let long = "n".repeat(1000);
        match parse(&args(json!([long]))) {
            Err(EventError::Unsupported(name)) => assert_eq!(name.len(), MAX_ID_LEN),
            other => panic!("expected unsupported, got {other:?}"),
        }
    }

    #[test]
    fn ids_follow_the_contract() {
        assert!(is_valid_id("a"));
        assert!(is_valid_id("user_1-B"));
        assert!(is_valid_id(&"x".repeat(64)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id(&"x".repeat(65)));
        assert!(!is_valid_id("a b"));
        assert!(!is_valid_id("a:b"));
        assert!(!is_valid_id("é"));
        assert!(!is_valid_id("../x"));
    }
}
