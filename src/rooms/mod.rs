//! Rooms: one actor per live room, found or started by the registry.
//!
//! A room holds its local members and hands each the same pre-encoded frame.

pub mod members;
pub mod registry;
pub mod user;

use std::fmt;

use actix::prelude::*;
use bytestring::ByteString;

use crate::ids::UserId;

pub use registry::Registry;

/// A connection's id, unique within a node.
pub type SessionId = u64;

/// A room name; built from typed ids on the server, never taken from a client.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RoomKey {
    /// `user:{id}`: every connection of one user.
    User(UserId),
}

impl RoomKey {
    /// The room kind, as the `souk_rooms{kind}` label.
    pub fn kind(&self) -> &'static str {
        match self {
            RoomKey::User(_) => "user",
        }
    }
}

impl fmt::Display for RoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoomKey::User(id) => write!(f, "user:{id}"),
        }
    }
}

/// A frame for one connection, encoded once and shared by every recipient.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Deliver(pub ByteString);

/// Tells a connection that its node is going away.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Shutdown;
