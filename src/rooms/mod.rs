//! Rooms: one actor per live room, found or started by the registry.
//!
//! Every room kind is a [`Room`] that holds its local members and hands each
//! the same pre-encoded frame; a booking room also owns its typing timers.
//! A room with no members and nothing pending retires after an idle period.

pub mod booking;
pub mod listing;
pub mod members;
pub mod presence;
pub mod registry;
pub mod room;

use std::fmt;

use actix::prelude::*;
use bytestring::ByteString;

use crate::ids::{BookingId, ListingId, UserId};

pub use registry::Registry;
pub use room::Room;

/// A connection's id, unique within a node.
pub type SessionId = u64;

/// A room name; built from typed ids on the server, never taken from a client.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RoomKey {
    /// `listing:{id}`: a listing page's watchers.
    Listing(ListingId),
    /// `booking:{id}`: a booking's thread.
    Booking(BookingId),
    /// `user:{id}`: every connection of one user.
    User(UserId),
    /// `presence:{id}`: those who watch one user's online state.
    Presence(UserId),
    /// `admin:disputes`: admins who watch bookings move into and out of
    /// `disputed`.
    AdminDisputes,
}

/// The name of the admins' dispute room.
const ADMIN_DISPUTES: &str = "admin:disputes";

impl RoomKey {
    /// The room kind, as the `souk_rooms{kind}` label.
    pub fn kind(&self) -> &'static str {
        match self {
            RoomKey::Listing(_) => "listing",
            RoomKey::Booking(_) => "booking",
            RoomKey::User(_) => "user",
            RoomKey::Presence(_) => "presence",
            RoomKey::AdminDisputes => "admin",
        }
    }

    /// Parses `kind:id` (the server API names rooms this way).
    pub fn parse(text: &str) -> Option<RoomKey> {
        if text == ADMIN_DISPUTES {
            return Some(RoomKey::AdminDisputes);
        }
        let (kind, id) = text.split_once(':')?;
        match kind {
            "listing" => ListingId::parse(id).map(RoomKey::Listing),
            "booking" => BookingId::parse(id).map(RoomKey::Booking),
            "user" => UserId::parse(id).map(RoomKey::User),
            "presence" => UserId::parse(id).map(RoomKey::Presence),
            _ => None,
        }
    }
}

impl fmt::Display for RoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoomKey::Listing(id) => write!(f, "listing:{id}"),
            RoomKey::Booking(id) => write!(f, "booking:{id}"),
            RoomKey::User(id) => write!(f, "user:{id}"),
            RoomKey::Presence(id) => write!(f, "presence:{id}"),
            RoomKey::AdminDisputes => f.write_str(ADMIN_DISPUTES),
        }
    }
}

/// A frame for one connection, encoded once and shared by every recipient.
/// `emission` is the same for every copy of an event sent to several rooms,
/// so a connection in more than one of them takes it once.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Deliver {
    pub frame: ByteString,
    pub emission: u64,
    /// The event's offset (the `n` of `n-0`), increasing across all rooms.
    pub offset: u64,
}

/// Answered by a connection once it has handled every message queued before
/// this one: frames handed to it earlier are then written.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Flush;

/// Tells a connection it was taken out of a room it may no longer be in,
/// and why (`room:left {room, reason}`).
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct RoomLeft {
    pub room: RoomKey,
    pub reason: &'static str,
}

/// Why a connection was taken out of a room, as `room:left`'s `reason`.
pub mod left {
    /// `auth:refresh` brought a token whose user or role may not be there.
    pub const REAUTHORIZED: &str = "reauthorized";
    /// The listing was made private and the user may not watch it.
    pub const LISTING_PRIVATE: &str = "listing_private";
}

/// Tells a connection that its node is going away.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Shutdown;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_round_trip_and_refuse_junk() {
        for name in [
            "listing:l1",
            "booking:b-2",
            "user:u_3",
            "presence:u4",
            "admin:disputes",
        ] {
            assert_eq!(
                RoomKey::parse(name).map(|k| k.to_string()).as_deref(),
                Some(name)
            );
        }
        for bad in [
            "",
            "listing",
            "listing:",
            "auction:x",
            "user:a b",
            "user:a:b",
            "admin:other",
            "admin:",
        ] {
            assert_eq!(RoomKey::parse(bad), None, "{bad}");
        }
    }
}
