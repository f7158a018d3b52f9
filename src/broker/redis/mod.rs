//! The Redis broker: standalone Redis or Redis Cluster, for any number of
//! nodes. Every key name and every script of souk's lives under this module.
//!
//! # Keyspace
//!
//! Every key starts with the node's prefix (`souk:` by default).
//!
//! Room events ([`events`]): on a Redis Cluster the logs, the offset
//! counter and the room channels share one hash slot (the `{events}` tag):
//! Socket.IO's recovery sends one offset for all of a socket's rooms, so
//! offsets are one order over every room, and that order is kept in one
//! place. docs/DECISIONS.md says why and what it costs.
//! - `{events}:offset`: the counter every event's offset comes from.
//! - `{events}:log:<room>`: a room's log, a capped stream whose entry ids
//!   are the offsets (`<offset>-0`); fields `h` (the packet up to its
//!   offset), `x` (the user left out), `v` (listing version), `e`
//!   (emission), `p` (the room's entry before it, to detect trimming).
//! - `{events}:last:<room>`: the offset of the room's last event.
//! - `{events}:room:<room>`: the room's shard channel (SPUBLISH), whose
//!   messages are `except|version|emission|offset|packet`.
//!
//! Session records ([`records`]), spread over the slots:
//! - `recovery:<pid>`: a hash: `u` user, `o` owner (`node/session`), `c` a
//!   claim in progress (until, ms), `r:<room>` per room.
//!
//! Presence, throttles, auctions and the node list: in their own files.

mod auctions;
mod catchup;
pub mod conn;
mod events;
#[cfg(test)]
mod fake;
mod ingest;
mod nodes;
mod presence;
mod records;
mod resp;
mod subscriber;
mod throttles;

pub use conn::Redis;

use crate::ids::RoomKey;
use crate::store::StoreError;

/// The Redis broker; cheap to clone.
#[derive(Clone)]
pub struct RedisBroker {
    redis: Redis,
    /// Where the node's subscription connects.
    target: subscriber::Target,
}

impl RedisBroker {
    /// A broker over `redis` (reached at `url`); `node` names this node's
    /// subscription connection in CLIENT LIST.
    pub fn new(redis: Redis, url: &str, node: &str) -> Result<Self, StoreError> {
        // CLIENT SETNAME takes no spaces.
        let name = format!("{}subscriber:{node}", redis.prefix()).replace(char::is_whitespace, "_");
        let target = subscriber::Target::from_url(url, name)?;
        Ok(RedisBroker { redis, target })
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.redis.ping().await
    }

    /// The connection pool, for tests that break the broker's link on
    /// purpose (the conformance suite).
    #[cfg(test)]
    pub(crate) fn redis(&self) -> &Redis {
        &self.redis
    }
}

/// A handle on a Redis that is never reached, for tests of key names.
#[cfg(test)]
fn unreached() -> Redis {
    let metrics = crate::metrics::Metrics::new().unwrap_or_else(|_| panic!("metrics"));
    Redis::new("redis://127.0.0.1:1", "souk:", 1, metrics).unwrap_or_else(|_| panic!("a handle"))
}

/// The Redis Cluster hash tag of everything that orders room events.
const EVENTS_TAG: &str = "{events}";

/// A room's shard channel.
fn room_channel(prefix: &str, room: &RoomKey) -> String {
    format!("{prefix}{EVENTS_TAG}:room:{room}")
}

/// A room's log of events (a capped stream).
fn room_log(prefix: &str, room: &RoomKey) -> String {
    format!("{prefix}{EVENTS_TAG}:log:{room}")
}

/// The offset of a room's last event, which its next log entry keeps.
fn room_last_offset(prefix: &str, room: &RoomKey) -> String {
    format!("{prefix}{EVENTS_TAG}:last:{room}")
}

/// The counter every room event's offset comes from.
fn offset_counter(prefix: &str) -> String {
    format!("{prefix}{EVENTS_TAG}:offset")
}

/// The room a channel belongs to.
fn room_from_channel(prefix: &str, channel: &str) -> Option<RoomKey> {
    let name = channel
        .strip_prefix(prefix)?
        .strip_prefix(EVENTS_TAG)?
        .strip_prefix(":room:")?;
    RoomKey::parse(name)
}

/// A socket's session record.
fn record_key(redis: &Redis, pid: &str) -> String {
    redis.key(&["recovery", pid])
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
}
