//! One entry of the backend's queue, checked (§8b): what the server API
//! would accept, and no client event name. Pure: no I/O.

use serde_json::Value;

use crate::ids::UserId;
use crate::ids::{is_valid_id, ID_RULE};
use crate::protocol::events::server::{BadNotificationKind, SERVER_ERROR};
use crate::protocol::events::{CustomEvent, ServerEvent, KNOWN_EVENTS};
use crate::rooms::RoomKey;

/// The largest `data` accepted, in bytes: the server API's body limit.
pub const MAX_DATA: usize = 256 * 1024;

/// A well-formed entry: the event to emit to one room.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The backend's idempotency key.
    pub key: String,
    pub room: RoomKey,
    pub event: ServerEvent,
}

/// Checks an entry's fields; a malformed entry answers why, which becomes
/// its `reason` among the dead letters.
pub fn decode(fields: &[(String, Option<String>)]) -> Result<Entry, String> {
    let mut kind = None;
    let mut target = None;
    let mut event = None;
    let mut data = None;
    let mut key = None;
    for (name, value) in fields {
        let slot = match name.as_str() {
            "kind" => &mut kind,
            "target" => &mut target,
            "event" => &mut event,
            "data" => &mut data,
            "id" => &mut key,
            other => return Err(format!("unknown field {:?}", truncate(other))),
        };
        if slot.is_some() {
            return Err(format!("field {name} given twice"));
        }
        let value = value
            .as_deref()
            .ok_or_else(|| format!("field {name} is not UTF-8 text"))?;
        *slot = Some(value);
    }
    let key = key.ok_or("field id is missing")?;
    if !is_valid_id(key) {
        return Err(format!("id must be {ID_RULE}"));
    }
    let target = target.ok_or("field target is missing")?;
    let data = match data {
        Some(text) if text.len() > MAX_DATA => {
            return Err(format!("data is over {MAX_DATA} bytes"));
        }
        Some(text) => {
            serde_json::from_str(text).map_err(|err| format!("data is not JSON: {err}"))?
        }
        None => Value::Null,
    };
    match kind.ok_or("field kind is missing")? {
        "room_event" => {
            let room = RoomKey::parse(target)
                .filter(|room| {
                    matches!(
                        room,
                        RoomKey::Listing(_) | RoomKey::Booking(_) | RoomKey::User(_)
                    )
                })
                .ok_or("target must be listing:{id}, booking:{id} or user:{id}")?;
            let event = event.ok_or("field event is missing")?;
            Ok(Entry {
                key: key.to_owned(),
                room,
                event: ServerEvent::Custom(custom_event(event, data)?),
            })
        }
        "notification" => {
            if event.is_some() {
                return Err("field event is for room_event only".into());
            }
            let user = UserId::parse(target)
                .ok_or_else(|| format!("target must be a user id: {ID_RULE}"))?;
            Ok(Entry {
                key: key.to_owned(),
                room: RoomKey::User(user),
                event: notification(data)?,
            })
        }
        other => Err(format!(
            "kind must be room_event or notification, not {:?}",
            truncate(other)
        )),
    }
}

/// A room event as the server API takes it ([`CustomEvent`]), and neither a
/// client event of §5 (a client must never see one coming from the server)
/// nor `server:error` (§8b).
fn custom_event(event: &str, data: Value) -> Result<CustomEvent, String> {
    if event == SERVER_ERROR || KNOWN_EVENTS.contains(&event) {
        return Err(format!("event {event} is reserved"));
    }
    CustomEvent::new(event.to_owned(), data).map_err(|err| err.to_string())
}

/// A notification's payload: `{kind, data}` as
/// `POST /api/v1/users/{id}/notifications` takes it.
fn notification(data: Value) -> Result<ServerEvent, String> {
    let Value::Object(mut fields) = data else {
        return Err("data of a notification must be an object {kind, data}".into());
    };
    let kind = match fields.remove("kind") {
        Some(Value::String(kind)) => kind,
        _ => return Err(format!("data.{BadNotificationKind}")),
    };
    let data = fields.remove("data").unwrap_or(Value::Null);
    let event = ServerEvent::notification(kind, data).map_err(|err| format!("data.{err}"))?;
    if let Some(other) = fields.keys().next() {
        return Err(format!("data has an unknown field {:?}", truncate(other)));
    }
    Ok(event)
}

fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}

/// The emission id of the entry with idempotency key `key`: the same on
/// every node and every try (FNV-1a), so that connections drop a second
/// publication of one entry as they drop a second copy of any event.
pub fn emission(key: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in b"ingest:".iter().chain(key.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    type Fields = Vec<(String, Option<String>)>;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
            .collect()
    }

    fn room_event(event: &str, target: &str) -> Fields {
        fields(&[
            ("kind", "room_event"),
            ("target", target),
            ("event", event),
            ("data", r#"{"n":1}"#),
            ("id", "e-1"),
        ])
    }

    #[test]
    fn a_room_event_becomes_the_event_for_its_room() {
        let entry = decode(&room_event("price:dropped", "listing:l1"));
        assert_eq!(
            entry,
            Ok(Entry {
                key: "e-1".into(),
                room: RoomKey::parse("listing:l1").unwrap_or_else(|| unreachable!()),
                event: ServerEvent::Custom(
                    CustomEvent::new("price:dropped".into(), json!({"n": 1}))
                        .unwrap_or_else(|_| unreachable!())
                ),
            })
        );
        assert!(decode(&room_event("x", "booking:b1")).is_ok());
        assert!(decode(&room_event("x", "user:u1")).is_ok());
    }

    #[test]
    fn a_notification_becomes_notification_to_the_users_room() {
        let entry = decode(&fields(&[
            ("kind", "notification"),
            ("target", "u7"),
            ("data", r#"{"kind":"payout","data":{"amount":5}}"#),
            ("id", "n-1"),
        ]));
        assert_eq!(
            entry,
            Ok(Entry {
                key: "n-1".into(),
                room: RoomKey::parse("user:u7").unwrap_or_else(|| unreachable!()),
                event: ServerEvent::Notification {
                    kind: "payout".into(),
                    data: json!({"amount": 5}),
                },
            })
        );
    }

    #[test]
    fn malformed_entries_say_why() {
        let cases: Vec<(Fields, &str)> = vec![
            (room_event("listing:watch", "listing:l1"), "reserved"),
            (room_event("server:error", "listing:l1"), "reserved"),
            (room_event("", "listing:l1"), "1 to 64"),
            (room_event("a\nb", "listing:l1"), "control"),
            (room_event("x", "admin:disputes"), "target"),
            (room_event("x", "presence:u1"), "target"),
            (room_event("x", "listing:bad id"), "target"),
            (
                fields(&[
                    ("kind", "room_event"),
                    ("target", "listing:l1"),
                    ("id", "a"),
                ]),
                "event is missing",
            ),
            (
                fields(&[("kind", "other"), ("target", "u1"), ("id", "a")]),
                "kind must be",
            ),
            (
                fields(&[("kind", "notification"), ("target", "u1")]),
                "id is missing",
            ),
            (
                fields(&[("kind", "notification"), ("target", "u1"), ("id", "a b")]),
                "id must be",
            ),
            (
                fields(&[
                    ("kind", "notification"),
                    ("target", "u1"),
                    ("id", "a"),
                    ("data", "{nope"),
                ]),
                "not JSON",
            ),
            (
                fields(&[
                    ("kind", "notification"),
                    ("target", "u1"),
                    ("id", "a"),
                    ("data", "[1]"),
                ]),
                "object",
            ),
            (
                fields(&[
                    ("kind", "notification"),
                    ("target", "user:u1"),
                    ("id", "a"),
                    ("data", r#"{"kind":"k"}"#),
                ]),
                "user id",
            ),
            (
                fields(&[
                    ("kind", "notification"),
                    ("target", "u1"),
                    ("id", "a"),
                    ("id", "b"),
                ]),
                "twice",
            ),
            (
                fields(&[("kind", "notification"), ("extra", "1")]),
                "unknown field",
            ),
            (
                vec![
                    ("kind".into(), Some("notification".into())),
                    ("data".into(), None),
                ],
                "UTF-8",
            ),
        ];
        for (entry, why) in cases {
            match decode(&entry) {
                Err(reason) => assert!(reason.contains(why), "{reason} for {entry:?}"),
                Ok(ok) => panic!("{ok:?} accepted"),
            }
        }
        let huge = format!("\"{}\"", "x".repeat(MAX_DATA));
        let mut entry = room_event("x", "listing:l1");
        entry[3].1 = Some(huge);
        assert!(decode(&entry).is_err_and(|reason| reason.contains("over")));
    }

    #[test]
    fn emissions_depend_on_the_key_only() {
        assert_eq!(emission("a"), emission("a"));
        assert_ne!(emission("a"), emission("b"));
        // FNV-1a of "ingest:a": fixed across builds and nodes.
        assert_eq!(emission("a"), 0xf80a_ecc8_791a_303c);
    }
}
