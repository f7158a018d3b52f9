//! How room events travel between nodes. Every room event is appended to the
//! room's log in Redis (a capped stream, whose entry id is the event's
//! offset) and published on the room's shard channel, in one script. Each
//! node follows the channels of the rooms it has members in and delivers
//! what arrives, so every member on every node sees one order per room.
//!
//! On a Redis Cluster, the logs, the offset counter and the room channels
//! share one hash slot (the `{events}` tag): Socket.IO's recovery sends one
//! offset for all of a socket's rooms, so offsets are one order over every
//! room, and that order is kept in one place. Everything else (presence,
//! typing, auctions, session records) spreads over the cluster's slots.
//! docs/DECISIONS.md says why and what it costs.

pub mod fanout;
pub mod outbox;
pub mod recovery;
pub mod resp;
pub mod subscriber;

use actix::Message;
use bytestring::ByteString;

use crate::ids::UserId;
use crate::rooms::{Deliver, RoomKey};

pub use fanout::Fanout;
pub use subscriber::Subscriber;

/// The Redis Cluster hash tag of everything that orders room events.
const EVENTS_TAG: &str = "{events}";

/// A room's shard channel.
pub fn room_channel(prefix: &str, room: &RoomKey) -> String {
    format!("{prefix}{EVENTS_TAG}:room:{room}")
}

/// A room's log of events (a capped stream).
pub fn room_log(prefix: &str, room: &RoomKey) -> String {
    format!("{prefix}{EVENTS_TAG}:log:{room}")
}

/// The offset of a room's last event, which its next log entry keeps.
pub fn room_last_offset(prefix: &str, room: &RoomKey) -> String {
    format!("{prefix}{EVENTS_TAG}:last:{room}")
}

/// The counter every room event's offset comes from.
pub fn offset_counter(prefix: &str) -> String {
    format!("{prefix}{EVENTS_TAG}:offset")
}

/// The room a channel belongs to.
pub fn room_from_channel(prefix: &str, channel: &str) -> Option<RoomKey> {
    let name = channel
        .strip_prefix(prefix)?
        .strip_prefix(EVENTS_TAG)?
        .strip_prefix(":room:")?;
    RoomKey::parse(name)
}

/// A room event that arrived from Redis, for this node's members.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Incoming {
    pub room: RoomKey,
    pub frame: Deliver,
    pub except: Option<UserId>,
    pub version: Option<i64>,
}

impl Incoming {
    /// An event read back from the room's log.
    pub fn from_log(room: RoomKey, event: recovery::Logged) -> Incoming {
        Incoming {
            room,
            frame: Deliver {
                frame: ByteString::from(event.frame),
                emission: event.emission,
                offset: event.offset,
            },
            except: event.except.as_deref().and_then(UserId::parse),
            version: event.version,
        }
    }

    /// Parses a channel message: `except|version|emission|offset|frame`.
    pub fn parse(room: RoomKey, message: &str) -> Option<Incoming> {
        let (except, rest) = message.split_once('|')?;
        let (version, rest) = rest.split_once('|')?;
        let (emission, rest) = rest.split_once('|')?;
        let (offset, frame) = rest.split_once('|')?;
        Some(Incoming {
            room,
            frame: Deliver {
                frame: ByteString::from(frame.to_owned()),
                emission: emission.parse().ok()?,
                offset: offset.parse().ok()?,
            },
            except: UserId::parse(except),
            version: version.parse().ok(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_name_their_room_and_back() {
        let room = RoomKey::parse("listing:l1");
        let channel = room.as_ref().map(|r| room_channel("souk:", r));
        assert_eq!(channel.as_deref(), Some("souk:{events}:room:listing:l1"));
        assert_eq!(
            room_from_channel("souk:", "souk:{events}:room:listing:l1"),
            RoomKey::parse("listing:l1")
        );
        assert_eq!(
            room_from_channel("souk:", "other:{events}:room:listing:l1"),
            None
        );
        assert_eq!(room_from_channel("souk:", "souk:{events}:room:nope"), None);
    }

    #[test]
    fn what_orders_events_shares_one_cluster_slot() {
        let room = RoomKey::parse("booking:b7").unwrap_or_else(|| panic!("a room"));
        for key in [
            room_channel("souk:", &room),
            room_log("souk:", &room),
            room_last_offset("souk:", &room),
            offset_counter("souk:"),
        ] {
            assert!(key.starts_with("souk:{events}:"), "{key}");
        }
    }

    #[test]
    fn messages_carry_except_version_emission_and_frame() {
        let room =
            RoomKey::Booking(crate::ids::BookingId::parse("b1").unwrap_or_else(|| unreachable!()));
        let incoming = Incoming::parse(room.clone(), r#"bob|7|99|1|42["typing",{"a":"|"},"1-0"]"#);
        let incoming = incoming.unwrap_or_else(|| panic!("parses"));
        assert_eq!(
            incoming.except.map(|u| u.to_string()).as_deref(),
            Some("bob")
        );
        assert_eq!(incoming.version, Some(7));
        assert_eq!(incoming.frame.emission, 99);
        assert_eq!(incoming.frame.offset, 1);
        assert_eq!(&*incoming.frame.frame, r#"42["typing",{"a":"|"},"1-0"]"#);
        let plain = Incoming::parse(room.clone(), r#"||1|1|42["x",1,"1-0"]"#)
            .unwrap_or_else(|| panic!("parses"));
        assert_eq!((plain.except, plain.version), (None, None));
        assert!(Incoming::parse(room.clone(), "no separators").is_none());
        assert!(Incoming::parse(room, "||notanumber|1|42[]").is_none());
    }
}
