//! Rooms: one actor per live room, found or started by the registry.
//!
//! Every room kind is a [`Room`] that holds its local members and hands each
//! the same pre-encoded frame; a booking room also owns its typing timers.
//! A room with no members and nothing pending retires after an idle period.

pub mod booking;
pub mod listing;
pub mod mailslot;
pub mod members;
pub mod presence;
mod recent;
pub mod registry;
pub mod room;

use actix::prelude::*;

pub use crate::ids::RoomKey;

use crate::engine::websocket::frame::SharedText;

pub use registry::Registry;
pub use room::Room;

/// A connection's id, unique within a node.
pub type SessionId = u64;

/// A frame for one connection, encoded once (its whole WebSocket frame, and
/// its text for a session's queue) and shared by every recipient.
/// `emission` is the same for every copy of an event sent to several rooms,
/// so a connection in more than one of them takes it once.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Deliver {
    pub frame: SharedText,
    pub emission: u64,
    /// The event's offset (the `n` of `n-0`), increasing across all rooms.
    pub offset: u64,
}

/// Answered by a connection once it has handled every message queued before
/// this one: frames handed to it earlier are then written.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Flush;

/// What the registry tells a connection, rarely: one message type, so the
/// registry keeps one (weak) recipient per connection rather than one per
/// notice (each is a heap block: docs/BENCHMARKS.md, issue 13).
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub enum Notice {
    /// Its node is going away.
    Shutdown,
    /// It was taken out of a room it may no longer be in.
    Left(RoomLeft),
}

/// A connection was taken out of a room it may no longer be in, and why
/// (`room:left {room, reason}`).
#[derive(Clone, Debug, PartialEq, Eq)]
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
