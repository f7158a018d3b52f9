//! The event vocabulary, the one module that names events. Here: typed
//! client events, a Socket.IO EVENT's name and first argument, checked
//! against the contract (§2 ids, §5 payloads) before anything acts on them.
//! In [`server`]: what souk sends.
//!
//! Every refusal is `EventError::BadRequest` with a message that names the
//! field. Fields the contract does not name are ignored; `null` counts as a
//! missing field.

use std::collections::HashSet;

use serde_json::{Map, Value};

pub mod server;

pub use server::{CustomEvent, ServerEvent};

use crate::domain::BookingStatus;
use crate::ids::{BookingId, ListingId, MessageId, UserId, ID_RULE, MAX_ID_LEN};
/// The longest token accepted in `auth:refresh`.
const MAX_TOKEN_LEN: usize = 8192;
/// The longest `idempotencyKey` or `clientMsgId`.
const MAX_KEY_LEN: usize = 64;
/// The longest message body, in Unicode scalar values.
const MAX_BODY_LEN: usize = 4000;
/// The largest amount, in minor units (10^12).
const MAX_AMOUNT: i64 = 1_000_000_000_000;
/// `message:history`'s page size bounds and default.
const MIN_LIMIT: u32 = 1;
const MAX_LIMIT: u32 = 200;
const DEFAULT_LIMIT: u32 = 50;
/// How many users one `presence:watch` / `presence:unwatch` may name.
const MAX_USER_IDS: usize = 100;

/// Declares the client events once. Each row gives the constant that names
/// the event, the contract's name, the variant and its fields (the typed
/// payload), and how each field is read from the payload object (bound to
/// the identifier after `payload =`). The name constants, [`ClientEvent`],
/// [`ClientEvent::name`], [`KNOWN_EVENTS`] and [`parse`] all come from this
/// table, so a new event is one new row. Fields are read
/// in the order written, so the first bad field is the one reported.
macro_rules! client_events {
    (
        payload = $f:ident;
        $(
            $(#[$doc:meta])*
            $konst:ident = $name:literal => $variant:ident $({
                $($field:ident : $ty:ty = $read:expr),* $(,)?
            })?
        ),* $(,)?
    ) => {
        $(
            #[doc = concat!("`", $name, "`")]
            pub const $konst: &str = $name;
        )*

        /// An event a client may send, with its payload checked.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum ClientEvent {
            $( $(#[$doc])* $variant $({ $($field: $ty),* })?, )*
        }

        impl ClientEvent {
            /// The contract's name of this event.
            pub fn name(&self) -> &'static str {
                match self {
                    $( ClientEvent::$variant { .. } => $konst, )*
                }
            }
        }

        /// Names of events the contract knows, for bounded metric labels.
        pub const KNOWN_EVENTS: &[&str] = &[$($konst),*];

        /// Reads the payload of the event called `name`.
        fn read(name: &str, $f: &Map<String, Value>) -> Result<ClientEvent, EventError> {
            Ok(match name {
                $( $name => ClientEvent::$variant $({ $($field: $read),* })?, )*
                other => return Err(EventError::Unsupported(truncate(other, MAX_ID_LEN))),
            })
        }
    };
}

client_events! {
    payload = f;
    /// `listing:watch {listingId}`: joins `listing:{id}`.
    LISTING_WATCH = "listing:watch" => ListingWatch {
        listing_id: ListingId = id(f, "listingId", ListingId::parse)?,
    },
    /// `listing:unwatch {listingId}`: leaves `listing:{id}` (idempotent).
    LISTING_UNWATCH = "listing:unwatch" => ListingUnwatch {
        listing_id: ListingId = id(f, "listingId", ListingId::parse)?,
    },
    /// `listing:reserve {listingId, idempotencyKey}`.
    LISTING_RESERVE = "listing:reserve" => ListingReserve {
        listing_id: ListingId = id(f, "listingId", ListingId::parse)?,
        idempotency_key: String = required(f, "idempotencyKey", key)?,
    },
    /// `bid:place {listingId, amount, idempotencyKey?}`.
    BID_PLACE = "bid:place" => BidPlace {
        listing_id: ListingId = id(f, "listingId", ListingId::parse)?,
        amount: i64 = required(f, "amount", amount)?,
        idempotency_key: Option<String> = optional(f, "idempotencyKey", key)?,
    },
    /// `booking:join {bookingId}`: joins `booking:{id}`.
    BOOKING_JOIN = "booking:join" => BookingJoin {
        booking_id: BookingId = id(f, "bookingId", BookingId::parse)?,
    },
    /// `booking:leave {bookingId}`.
    BOOKING_LEAVE = "booking:leave" => BookingLeave {
        booking_id: BookingId = id(f, "bookingId", BookingId::parse)?,
    },
    /// `booking:transition {bookingId, to}`.
    BOOKING_TRANSITION = "booking:transition" => BookingTransition {
        booking_id: BookingId = id(f, "bookingId", BookingId::parse)?,
        to: BookingStatus = required(f, "to", status)?,
    },
    /// `message:send {bookingId, body, clientMsgId}`; the body is kept as sent.
    MESSAGE_SEND = "message:send" => MessageSend {
        booking_id: BookingId = id(f, "bookingId", BookingId::parse)?,
        body: String = required(f, "body", body)?,
        client_msg_id: String = required(f, "clientMsgId", key)?,
    },
    /// `message:history {bookingId, beforeId?, limit?}`; limit defaults to 50.
    MESSAGE_HISTORY = "message:history" => MessageHistory {
        booking_id: BookingId = id(f, "bookingId", BookingId::parse)?,
        before_id: Option<MessageId> = optional(f, "beforeId", message_id)?,
        limit: u32 = optional(f, "limit", limit)?.unwrap_or(DEFAULT_LIMIT),
    },
    /// `typing:start {bookingId}`.
    TYPING_START = "typing:start" => TypingStart {
        booking_id: BookingId = id(f, "bookingId", BookingId::parse)?,
    },
    /// `typing:stop {bookingId}`.
    TYPING_STOP = "typing:stop" => TypingStop {
        booking_id: BookingId = id(f, "bookingId", BookingId::parse)?,
    },
    /// `read:mark {bookingId, messageId}`.
    READ_MARK = "read:mark" => ReadMark {
        booking_id: BookingId = id(f, "bookingId", BookingId::parse)?,
        message_id: MessageId = required(f, "messageId", message_id)?,
    },
    /// `presence:watch {userIds}`: 1–100 ids, duplicates removed in order.
    PRESENCE_WATCH = "presence:watch" => PresenceWatch {
        user_ids: Vec<UserId> = required(f, "userIds", user_ids)?,
    },
    /// `presence:unwatch {userIds}`: same rules as `presence:watch`.
    PRESENCE_UNWATCH = "presence:unwatch" => PresenceUnwatch {
        user_ids: Vec<UserId> = required(f, "userIds", user_ids)?,
    },
    /// `auth:refresh {token}`: replaces the connection's token (same `sub`).
    AUTH_REFRESH = "auth:refresh" => AuthRefresh {
        token: String = string(f, "token", 1, MAX_TOKEN_LEN)?,
    },
    /// `admin:watch {}`: joins `admin:disputes` (admins only).
    ADMIN_WATCH = "admin:watch" => AdminWatch,
    /// `admin:unwatch {}`: leaves `admin:disputes`.
    ADMIN_UNWATCH = "admin:unwatch" => AdminUnwatch,
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

/// Parses an EVENT packet's argument array (`["name", payload, …]`). The
/// name is judged before the payload.
pub fn parse(args: &[Value]) -> Result<ClientEvent, EventError> {
    let name = match args.first() {
        Some(Value::String(name)) => name.as_str(),
        _ => return Err(EventError::BadRequest("event name must be a string".into())),
    };
    if !KNOWN_EVENTS.contains(&name) {
        return Err(EventError::Unsupported(truncate(name, MAX_ID_LEN)));
    }
    read(name, object(args.get(1))?)
}

fn object(payload: Option<&Value>) -> Result<&Map<String, Value>, EventError> {
    match payload {
        Some(Value::Object(fields)) => Ok(fields),
        _ => Err(EventError::BadRequest("payload must be an object".into())),
    }
}

fn bad(message: String) -> EventError {
    EventError::BadRequest(message)
}

/// A field's value; `null` counts as missing.
fn present<'a>(fields: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    fields.get(field).filter(|value| !value.is_null())
}

/// A required field, checked by `check` (which gets the field's name).
fn required<T>(
    fields: &Map<String, Value>,
    field: &str,
    check: fn(&str, &Value) -> Result<T, EventError>,
) -> Result<T, EventError> {
    match present(fields, field) {
        Some(value) => check(field, value),
        None => Err(bad(format!("{field} is required"))),
    }
}

/// An optional field (missing or `null` is `None`), checked by `check`.
fn optional<T>(
    fields: &Map<String, Value>,
    field: &str,
    check: fn(&str, &Value) -> Result<T, EventError>,
) -> Result<Option<T>, EventError> {
    present(fields, field)
        .map(|value| check(field, value))
        .transpose()
}

/// A required string field of `min..=max` characters.
fn string(
    fields: &Map<String, Value>,
    field: &str,
    min: usize,
    max: usize,
) -> Result<String, EventError> {
    match present(fields, field) {
        Some(Value::String(text)) => {
            let len = text.chars().count();
            if len < min || len > max {
                Err(bad(format!("{field} must be {min} to {max} characters")))
            } else {
                Ok(text.clone())
            }
        }
        Some(_) => Err(bad(format!("{field} must be a string"))),
        None => Err(bad(format!("{field} is required"))),
    }
}

/// The message for an id that breaks the contract's format.
fn bad_id(field: &str) -> EventError {
    bad(format!("{field} must be {ID_RULE}"))
}

/// A required contract id (`listingId`, `bookingId`), typed by `parse`.
fn id<T>(
    fields: &Map<String, Value>,
    field: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, EventError> {
    match present(fields, field) {
        Some(Value::String(text)) => parse(text).ok_or_else(|| bad_id(field)),
        Some(_) => Err(bad(format!("{field} must be a string"))),
        None => Err(bad(format!("{field} is required"))),
    }
}

/// `idempotencyKey` / `clientMsgId`: 1–64 characters, no control characters.
fn key(field: &str, value: &Value) -> Result<String, EventError> {
    let Value::String(text) = value else {
        return Err(bad(format!("{field} must be a string")));
    };
    let len = text.chars().count();
    if len == 0 || len > MAX_KEY_LEN || text.chars().any(char::is_control) {
        return Err(bad(format!(
            "{field} must be 1 to {MAX_KEY_LEN} characters, none of them control characters"
        )));
    }
    Ok(text.clone())
}

/// `amount`: a JSON integer from 0 to 10^12 (no floats, no strings).
fn amount(field: &str, value: &Value) -> Result<i64, EventError> {
    value
        .as_i64()
        .filter(|n| (0..=MAX_AMOUNT).contains(n))
        .ok_or_else(|| bad(format!("{field} must be an integer from 0 to {MAX_AMOUNT}")))
}

/// `body`: 1–4000 Unicode scalar values, not only white space, kept as sent.
fn body(field: &str, value: &Value) -> Result<String, EventError> {
    let Value::String(text) = value else {
        return Err(bad(format!("{field} must be a string")));
    };
    let len = text.chars().count();
    if len == 0 || len > MAX_BODY_LEN {
        return Err(bad(format!(
            "{field} must be 1 to {MAX_BODY_LEN} characters"
        )));
    }
    if text.chars().all(char::is_whitespace) {
        return Err(bad(format!("{field} must not be blank")));
    }
    Ok(text.clone())
}

/// `to`: one of the booking statuses, by its lowercase name.
fn status(field: &str, value: &Value) -> Result<BookingStatus, EventError> {
    value
        .as_str()
        .and_then(|text| text.parse::<BookingStatus>().ok())
        .ok_or_else(|| {
            let names: Vec<&str> = BookingStatus::ALL.iter().map(|s| s.as_str()).collect();
            bad(format!("{field} must be one of {}", names.join(", ")))
        })
}

/// `messageId` / `beforeId`: a string holding a positive decimal number.
fn message_id(field: &str, value: &Value) -> Result<MessageId, EventError> {
    let Value::String(text) = value else {
        return Err(bad(format!(
            "{field} must be a string holding a positive decimal number"
        )));
    };
    MessageId::parse(text).ok_or_else(|| {
        bad(format!(
            "{field} must be a string holding a positive decimal number"
        ))
    })
}

/// `limit`: an integer from 1 to 200.
fn limit(field: &str, value: &Value) -> Result<u32, EventError> {
    value
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| (MIN_LIMIT..=MAX_LIMIT).contains(n))
        .ok_or_else(|| {
            bad(format!(
                "{field} must be an integer from {MIN_LIMIT} to {MAX_LIMIT}"
            ))
        })
}

/// `userIds`: an array of 1–100 user ids (counted as sent); duplicates are
/// dropped, keeping the first-seen order.
fn user_ids(field: &str, value: &Value) -> Result<Vec<UserId>, EventError> {
    let items = match value {
        Value::Array(items) if (1..=MAX_USER_IDS).contains(&items.len()) => items,
        _ => {
            return Err(bad(format!(
                "{field} must be an array of 1 to {MAX_USER_IDS} user ids"
            )))
        }
    };
    let mut seen = HashSet::with_capacity(items.len());
    let mut ids = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let user = item
            .as_str()
            .and_then(UserId::parse)
            .ok_or_else(|| bad_id(&format!("{field}[{index}]")))?;
        if seen.insert(user.clone()) {
            ids.push(user);
        }
    }
    Ok(ids)
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

    fn ev(name: &str, payload: Value) -> Result<ClientEvent, EventError> {
        parse(&[json!(name), payload])
    }

    fn lid(text: &str) -> ListingId {
        ListingId::parse(text).unwrap_or_else(|| panic!("test id {text:?} is invalid"))
    }

    fn bid(text: &str) -> BookingId {
        BookingId::parse(text).unwrap_or_else(|| panic!("test id {text:?} is invalid"))
    }

    fn uid(text: &str) -> UserId {
        UserId::parse(text).unwrap_or_else(|| panic!("test id {text:?} is invalid"))
    }

    /// Asserts a `BadRequest` whose message names `field`; returns the message.
    fn refused(result: Result<ClientEvent, EventError>, field: &str) -> String {
        match result {
            Err(EventError::BadRequest(message)) => {
                assert!(
                    message.contains(field),
                    "message {message:?} does not name {field:?}"
                );
                message
            }
            other => panic!("expected bad_request naming {field}, got {other:?}"),
        }
    }

    const ID_MESSAGE: &str = "must be 1-64 characters of [A-Za-z0-9_-]";

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
        // The name is judged before the payload.
        assert_eq!(
            parse(&args(json!(["nope", 5]))),
            Err(EventError::Unsupported("nope".into()))
        );
        let long = "n".repeat(1000);
        match parse(&args(json!([long]))) {
            Err(EventError::Unsupported(name)) => assert_eq!(name.len(), MAX_ID_LEN),
            other => panic!("expected unsupported, got {other:?}"),
        }
    }

    #[test]
    fn event_name_must_be_a_string() {
        assert_eq!(
            parse(&[]),
            Err(EventError::BadRequest("event name must be a string".into()))
        );
        assert_eq!(
            parse(&args(json!([5, {}]))),
            Err(EventError::BadRequest("event name must be a string".into()))
        );
    }

    #[test]
    fn known_events_lists_every_event_once_and_matches_name() {
        assert_eq!(KNOWN_EVENTS.len(), 17);
        let unique: HashSet<&str> = KNOWN_EVENTS.iter().copied().collect();
        assert_eq!(unique.len(), 17);
        let samples = [
            ClientEvent::ListingWatch {
                listing_id: lid("l"),
            },
            ClientEvent::ListingUnwatch {
                listing_id: lid("l"),
            },
            ClientEvent::ListingReserve {
                listing_id: lid("l"),
                idempotency_key: "k".into(),
            },
            ClientEvent::BidPlace {
                listing_id: lid("l"),
                amount: 1,
                idempotency_key: None,
            },
            ClientEvent::BookingJoin {
                booking_id: bid("b"),
            },
            ClientEvent::BookingLeave {
                booking_id: bid("b"),
            },
            ClientEvent::BookingTransition {
                booking_id: bid("b"),
                to: BookingStatus::Confirmed,
            },
            ClientEvent::MessageSend {
                booking_id: bid("b"),
                body: "x".into(),
                client_msg_id: "c".into(),
            },
            ClientEvent::MessageHistory {
                booking_id: bid("b"),
                before_id: None,
                limit: 50,
            },
            ClientEvent::TypingStart {
                booking_id: bid("b"),
            },
            ClientEvent::TypingStop {
                booking_id: bid("b"),
            },
            ClientEvent::ReadMark {
                booking_id: bid("b"),
                message_id: MessageId(1),
            },
            ClientEvent::PresenceWatch {
                user_ids: vec![uid("u")],
            },
            ClientEvent::PresenceUnwatch {
                user_ids: vec![uid("u")],
            },
            ClientEvent::AuthRefresh { token: "t".into() },
            ClientEvent::AdminWatch,
            ClientEvent::AdminUnwatch,
        ];
        let names: Vec<&str> = samples.iter().map(ClientEvent::name).collect();
        assert_eq!(names, KNOWN_EVENTS);
        // Every event of the table reads back from its own wire form.
        for event in samples {
            let wire = [json!(event.name()), wire_payload(&event)];
            assert_eq!(parse(&wire), Ok(event.clone()), "{}", wire[1]);
        }
    }

    /// An event's payload as a client writes it (exhaustive, so a new row
    /// in the table is not round-tripped by accident).
    fn wire_payload(event: &ClientEvent) -> Value {
        use ClientEvent::*;
        match event {
            ListingWatch { listing_id } | ListingUnwatch { listing_id } => {
                json!({ "listingId": listing_id })
            }
            ListingReserve {
                listing_id,
                idempotency_key,
            } => json!({ "listingId": listing_id, "idempotencyKey": idempotency_key }),
            BidPlace {
                listing_id,
                amount,
                idempotency_key,
            } => json!({
                "listingId": listing_id,
                "amount": amount,
                "idempotencyKey": idempotency_key,
            }),
            BookingJoin { booking_id }
            | BookingLeave { booking_id }
            | TypingStart { booking_id }
            | TypingStop { booking_id } => json!({ "bookingId": booking_id }),
            BookingTransition { booking_id, to } => {
                json!({ "bookingId": booking_id, "to": to.as_str() })
            }
            MessageSend {
                booking_id,
                body,
                client_msg_id,
            } => json!({ "bookingId": booking_id, "body": body, "clientMsgId": client_msg_id }),
            MessageHistory {
                booking_id,
                before_id,
                limit,
            } => json!({ "bookingId": booking_id, "beforeId": before_id, "limit": limit }),
            ReadMark {
                booking_id,
                message_id,
            } => json!({ "bookingId": booking_id, "messageId": message_id }),
            PresenceWatch { user_ids } | PresenceUnwatch { user_ids } => {
                json!({ "userIds": user_ids })
            }
            AuthRefresh { token } => json!({ "token": token }),
            AdminWatch | AdminUnwatch => json!({}),
        }
    }

    #[test]
    fn every_known_event_refuses_a_payload_that_is_not_an_object() {
        for name in KNOWN_EVENTS {
            for payload in [json!(null), json!("x"), json!(5), json!([1]), json!(true)] {
                assert_eq!(
                    ev(name, payload.clone()),
                    Err(EventError::BadRequest("payload must be an object".into())),
                    "{name} {payload}"
                );
            }
            assert_eq!(
                parse(&[json!(name)]),
                Err(EventError::BadRequest("payload must be an object".into())),
                "{name} without payload"
            );
        }
    }

    // ---- happy paths ----

    #[test]
    fn parses_listing_watch_and_unwatch_ignoring_extra_fields() {
        assert_eq!(
            ev(
                "listing:watch",
                json!({"listingId": "L-1_a", "extra": [1, 2]})
            ),
            Ok(ClientEvent::ListingWatch {
                listing_id: lid("L-1_a")
            })
        );
        assert_eq!(
            ev("listing:unwatch", json!({"listingId": "L-1"})),
            Ok(ClientEvent::ListingUnwatch {
                listing_id: lid("L-1")
            })
        );
    }

    #[test]
    fn parses_listing_reserve() {
        assert_eq!(
            ev(
                "listing:reserve",
                json!({"listingId": "l1", "idempotencyKey": "key 1/é"})
            ),
            Ok(ClientEvent::ListingReserve {
                listing_id: lid("l1"),
                idempotency_key: "key 1/é".into()
            })
        );
    }

    #[test]
    fn parses_bid_place_with_and_without_key() {
        assert_eq!(
            ev("bid:place", json!({"listingId": "l1", "amount": 1500})),
            Ok(ClientEvent::BidPlace {
                listing_id: lid("l1"),
                amount: 1500,
                idempotency_key: None
            })
        );
        assert_eq!(
            ev(
                "bid:place",
                json!({"listingId": "l1", "amount": 0, "idempotencyKey": null})
            ),
            Ok(ClientEvent::BidPlace {
                listing_id: lid("l1"),
                amount: 0,
                idempotency_key: None
            })
        );
        assert_eq!(
            ev(
                "bid:place",
                json!({"listingId": "l1", "amount": 1_000_000_000_000_i64, "idempotencyKey": "k"})
            ),
            Ok(ClientEvent::BidPlace {
                listing_id: lid("l1"),
                amount: MAX_AMOUNT,
                idempotency_key: Some("k".into())
            })
        );
    }

    #[test]
    fn parses_booking_join_leave_typing() {
        let p = || json!({"bookingId": "b-9"});
        assert_eq!(
            ev("booking:join", p()),
            Ok(ClientEvent::BookingJoin {
                booking_id: bid("b-9")
            })
        );
        assert_eq!(
            ev("booking:leave", p()),
            Ok(ClientEvent::BookingLeave {
                booking_id: bid("b-9")
            })
        );
        assert_eq!(
            ev("typing:start", p()),
            Ok(ClientEvent::TypingStart {
                booking_id: bid("b-9")
            })
        );
        assert_eq!(
            ev("typing:stop", p()),
            Ok(ClientEvent::TypingStop {
                booking_id: bid("b-9")
            })
        );
    }

    #[test]
    fn parses_booking_transition_to_every_status() {
        for status in BookingStatus::ALL {
            assert_eq!(
                ev(
                    "booking:transition",
                    json!({"bookingId": "b1", "to": status.as_str()})
                ),
                Ok(ClientEvent::BookingTransition {
                    booking_id: bid("b1"),
                    to: status
                })
            );
        }
    }

    #[test]
    fn parses_message_send_keeping_the_body_as_sent() {
        assert_eq!(
            ev(
                "message:send",
                json!({"bookingId": "b1", "body": "  hello\nthere  ", "clientMsgId": "c-1"})
            ),
            Ok(ClientEvent::MessageSend {
                booking_id: bid("b1"),
                body: "  hello\nthere  ".into(),
                client_msg_id: "c-1".into()
            })
        );
    }

    #[test]
    fn message_body_counts_unicode_scalar_values() {
        let body = "é".repeat(4000); // 8000 bytes, 4000 characters
        assert_eq!(
            ev(
                "message:send",
                json!({"bookingId": "b1", "body": body.clone(), "clientMsgId": "c"})
            ),
            Ok(ClientEvent::MessageSend {
                booking_id: bid("b1"),
                body,
                client_msg_id: "c".into()
            })
        );
        let emoji = "😀".repeat(4000);
        assert!(ev(
            "message:send",
            json!({"bookingId": "b1", "body": emoji, "clientMsgId": "c"})
        )
        .is_ok());
    }

    #[test]
    fn parses_message_history_with_defaults_and_values() {
        assert_eq!(
            ev("message:history", json!({"bookingId": "b1"})),
            Ok(ClientEvent::MessageHistory {
                booking_id: bid("b1"),
                before_id: None,
                limit: 50
            })
        );
        assert_eq!(
            ev(
                "message:history",
                json!({"bookingId": "b1", "beforeId": null, "limit": null})
            ),
            Ok(ClientEvent::MessageHistory {
                booking_id: bid("b1"),
                before_id: None,
                limit: 50
            })
        );
        assert_eq!(
            ev(
                "message:history",
                json!({"bookingId": "b1", "beforeId": "120", "limit": 1})
            ),
            Ok(ClientEvent::MessageHistory {
                booking_id: bid("b1"),
                before_id: Some(MessageId(120)),
                limit: 1
            })
        );
        assert_eq!(
            ev("message:history", json!({"bookingId": "b1", "limit": 200})),
            Ok(ClientEvent::MessageHistory {
                booking_id: bid("b1"),
                before_id: None,
                limit: 200
            })
        );
    }

    #[test]
    fn parses_read_mark() {
        assert_eq!(
            ev("read:mark", json!({"bookingId": "b1", "messageId": "7"})),
            Ok(ClientEvent::ReadMark {
                booking_id: bid("b1"),
                message_id: MessageId(7)
            })
        );
    }

    #[test]
    fn parses_presence_watch_and_unwatch_dropping_duplicates_in_order() {
        assert_eq!(
            ev(
                "presence:watch",
                json!({"userIds": ["b", "a", "b", "c", "a"]})
            ),
            Ok(ClientEvent::PresenceWatch {
                user_ids: vec![uid("b"), uid("a"), uid("c")]
            })
        );
        assert_eq!(
            ev("presence:unwatch", json!({"userIds": ["u1"]})),
            Ok(ClientEvent::PresenceUnwatch {
                user_ids: vec![uid("u1")]
            })
        );
        let hundred: Vec<String> = (0..100).map(|i| format!("u{i}")).collect();
        match ev("presence:watch", json!({ "userIds": hundred })) {
            Ok(ClientEvent::PresenceWatch { user_ids }) => assert_eq!(user_ids.len(), 100),
            other => panic!("expected 100 ids, got {other:?}"),
        }
    }

    // ---- rejections ----

    #[test]
    fn id_fields_are_required_strings_of_contract_characters() {
        let long = "x".repeat(65);
        let id_events = [
            ("listing:watch", "listingId"),
            ("listing:unwatch", "listingId"),
            ("booking:join", "bookingId"),
            ("booking:leave", "bookingId"),
            ("typing:start", "bookingId"),
            ("typing:stop", "bookingId"),
        ];
        for (name, field) in id_events {
            assert_eq!(
                refused(ev(name, json!({})), field),
                format!("{field} is required")
            );
            assert_eq!(
                refused(ev(name, json!({ field: null })), field),
                format!("{field} is required")
            );
            assert_eq!(
                refused(ev(name, json!({ field: 5 })), field),
                format!("{field} must be a string")
            );
            for bad in ["", "a b", "a:b", "é", "../x", long.as_str()] {
                assert_eq!(
                    refused(ev(name, json!({ field: bad })), field),
                    format!("{field} {ID_MESSAGE}"),
                    "{name} {bad:?}"
                );
            }
        }
        assert_eq!(
            ev("listing:watch", json!({"listingId": "a/b"})),
            Err(EventError::BadRequest(
                "listingId must be 1-64 characters of [A-Za-z0-9_-]".into()
            ))
        );
        // The other events check their ids the same way.
        refused(
            ev(
                "listing:reserve",
                json!({"listingId": "a b", "idempotencyKey": "k"}),
            ),
            "listingId",
        );
        refused(
            ev("bid:place", json!({"listingId": 1, "amount": 1})),
            "listingId",
        );
        refused(
            ev("booking:transition", json!({"to": "confirmed"})),
            "bookingId",
        );
        refused(
            ev(
                "message:send",
                json!({"bookingId": "#", "body": "x", "clientMsgId": "c"}),
            ),
            "bookingId",
        );
        refused(ev("message:history", json!({"bookingId": ""})), "bookingId");
        refused(ev("read:mark", json!({"messageId": "1"})), "bookingId");
    }

    #[test]
    fn idempotency_key_is_required_for_reserve() {
        let reserve = |key: Value| {
            ev(
                "listing:reserve",
                json!({"listingId": "l1", "idempotencyKey": key}),
            )
        };
        assert_eq!(
            refused(
                ev("listing:reserve", json!({"listingId": "l1"})),
                "idempotencyKey"
            ),
            "idempotencyKey is required"
        );
        assert_eq!(
            refused(reserve(json!(null)), "idempotencyKey"),
            "idempotencyKey is required"
        );
        assert_eq!(
            refused(reserve(json!(42)), "idempotencyKey"),
            "idempotencyKey must be a string"
        );
        assert_eq!(
            refused(reserve(json!("")), "idempotencyKey"),
            "idempotencyKey must be 1 to 64 characters, none of them control characters"
        );
        refused(reserve(json!("k".repeat(65))), "idempotencyKey");
        refused(reserve(json!("a\nb")), "idempotencyKey");
        refused(reserve(json!("a\u{0}b")), "idempotencyKey");
        refused(reserve(json!("a\u{7f}")), "idempotencyKey");
        assert!(reserve(json!("k".repeat(64))).is_ok());
        assert!(reserve(json!("é".repeat(64))).is_ok());
    }

    #[test]
    fn idempotency_key_is_checked_when_given_to_bid_place() {
        let bid_with = |key: Value| {
            ev(
                "bid:place",
                json!({"listingId": "l1", "amount": 10, "idempotencyKey": key}),
            )
        };
        refused(bid_with(json!("")), "idempotencyKey");
        refused(bid_with(json!("k".repeat(65))), "idempotencyKey");
        refused(bid_with(json!(7)), "idempotencyKey");
        refused(bid_with(json!("\t")), "idempotencyKey");
    }

    #[test]
    fn amount_is_an_integer_from_zero_to_a_trillion() {
        let bid_of = |amount: Value| ev("bid:place", json!({"listingId": "l1", "amount": amount}));
        let range = "amount must be an integer from 0 to 1000000000000";
        assert_eq!(
            refused(ev("bid:place", json!({"listingId": "l1"})), "amount"),
            "amount is required"
        );
        assert_eq!(refused(bid_of(json!(null)), "amount"), "amount is required");
        assert_eq!(refused(bid_of(json!(10.5)), "amount"), range);
        assert_eq!(refused(bid_of(json!(10.0)), "amount"), range);
        assert_eq!(refused(bid_of(json!(-1)), "amount"), range);
        assert_eq!(
            refused(bid_of(json!(1_000_000_000_001_i64)), "amount"),
            range
        );
        assert_eq!(refused(bid_of(json!(u64::MAX)), "amount"), range);
        assert_eq!(refused(bid_of(json!("100")), "amount"), range);
        assert_eq!(refused(bid_of(json!(true)), "amount"), range);
        // A float written in JSON text is a float even when whole.
        match serde_json::from_str::<Value>("1e3") {
            Ok(parsed) => assert_eq!(refused(bid_of(parsed), "amount"), range),
            Err(err) => panic!("1e3 did not parse: {err}"),
        }
    }

    #[test]
    fn transition_target_must_be_a_status() {
        let to = |value: Value| {
            ev(
                "booking:transition",
                json!({"bookingId": "b1", "to": value}),
            )
        };
        let one_of =
            "to must be one of requested, confirmed, declined, cancelled, completed, disputed, resolved";
        assert_eq!(refused(to(json!("shipped")), "to"), one_of);
        assert_eq!(refused(to(json!("Confirmed")), "to"), one_of);
        assert_eq!(refused(to(json!(1)), "to"), one_of);
        assert_eq!(
            refused(ev("booking:transition", json!({"bookingId": "b1"})), "to"),
            "to is required"
        );
        assert_eq!(refused(to(json!(null)), "to"), "to is required");
    }

    #[test]
    fn message_send_checks_body_and_client_msg_id() {
        let send = |body: Value, client: Value| {
            ev(
                "message:send",
                json!({"bookingId": "b1", "body": body, "clientMsgId": client}),
            )
        };
        assert_eq!(
            refused(send(json!("  \n\t\u{3000} "), json!("c")), "body"),
            "body must not be blank"
        );
        assert_eq!(
            refused(send(json!(""), json!("c")), "body"),
            "body must be 1 to 4000 characters"
        );
        assert_eq!(
            refused(send(json!("x".repeat(4001)), json!("c")), "body"),
            "body must be 1 to 4000 characters"
        );
        refused(send(json!("é".repeat(4001)), json!("c")), "body");
        assert_eq!(
            refused(send(json!(12), json!("c")), "body"),
            "body must be a string"
        );
        assert_eq!(
            refused(send(json!(null), json!("c")), "body"),
            "body is required"
        );
        assert!(send(json!("x".repeat(4000)), json!("c")).is_ok());

        assert_eq!(
            refused(
                ev("message:send", json!({"bookingId": "b1", "body": "hi"})),
                "clientMsgId"
            ),
            "clientMsgId is required"
        );
        refused(send(json!("hi"), json!("")), "clientMsgId");
        refused(send(json!("hi"), json!("c".repeat(65))), "clientMsgId");
        refused(send(json!("hi"), json!(5)), "clientMsgId");
        refused(send(json!("hi"), json!("a\u{1b}b")), "clientMsgId");
    }

    #[test]
    fn message_history_checks_before_id_and_limit() {
        let history = |extra: Value| {
            let mut payload = json!({"bookingId": "b1"});
            if let (Value::Object(target), Value::Object(source)) = (&mut payload, extra) {
                target.extend(source);
            }
            ev("message:history", payload)
        };
        let limit_message = "limit must be an integer from 1 to 200";
        assert_eq!(
            refused(history(json!({"limit": 0})), "limit"),
            limit_message
        );
        assert_eq!(
            refused(history(json!({"limit": 201})), "limit"),
            limit_message
        );
        assert_eq!(
            refused(history(json!({"limit": -5})), "limit"),
            limit_message
        );
        assert_eq!(
            refused(history(json!({"limit": 10.5})), "limit"),
            limit_message
        );
        assert_eq!(
            refused(history(json!({"limit": "10"})), "limit"),
            limit_message
        );
        assert_eq!(
            refused(history(json!({"limit": u64::MAX})), "limit"),
            limit_message
        );

        let before = "beforeId must be a string holding a positive decimal number";
        assert_eq!(
            refused(history(json!({"beforeId": 12})), "beforeId"),
            before
        );
        assert_eq!(
            refused(history(json!({"beforeId": "0"})), "beforeId"),
            before
        );
        assert_eq!(
            refused(history(json!({"beforeId": "-3"})), "beforeId"),
            before
        );
        assert_eq!(
            refused(history(json!({"beforeId": "abc"})), "beforeId"),
            before
        );
        assert_eq!(
            refused(history(json!({"beforeId": ""})), "beforeId"),
            before
        );
        assert_eq!(
            refused(
                history(json!({"beforeId": "99999999999999999999"})),
                "beforeId"
            ),
            before
        );
    }

    #[test]
    fn read_mark_requires_a_message_id_string() {
        let mark = |id: Value| ev("read:mark", json!({"bookingId": "b1", "messageId": id}));
        assert_eq!(
            refused(ev("read:mark", json!({"bookingId": "b1"})), "messageId"),
            "messageId is required"
        );
        assert_eq!(
            refused(mark(json!(null)), "messageId"),
            "messageId is required"
        );
        assert_eq!(
            refused(mark(json!(7)), "messageId"),
            "messageId must be a string holding a positive decimal number"
        );
        refused(mark(json!("0")), "messageId");
        refused(mark(json!("1.5")), "messageId");
        refused(mark(json!("x7")), "messageId");
    }

    #[test]
    fn presence_user_ids_are_bounded_and_checked() {
        for name in ["presence:watch", "presence:unwatch"] {
            let watch = |ids: Value| ev(name, json!({ "userIds": ids }));
            let count = "userIds must be an array of 1 to 100 user ids";
            assert_eq!(
                refused(ev(name, json!({})), "userIds"),
                "userIds is required"
            );
            assert_eq!(refused(watch(json!([])), "userIds"), count);
            let too_many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
            assert_eq!(refused(watch(json!(too_many)), "userIds"), count);
            assert_eq!(refused(watch(json!("u1")), "userIds"), count);
            assert_eq!(refused(watch(json!({"u1": true})), "userIds"), count);
            assert_eq!(
                refused(watch(json!(["u1", "bad id"])), "userIds"),
                "userIds[1] must be 1-64 characters of [A-Za-z0-9_-]"
            );
            refused(watch(json!(["u1", 5])), "userIds");
            refused(watch(json!([null])), "userIds");
            refused(watch(json!([""])), "userIds");
            refused(watch(json!(["x".repeat(65)])), "userIds");
        }
    }
}
