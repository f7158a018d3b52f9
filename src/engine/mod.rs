//! The engine under the Socket.IO session: Engine.IO ([`eio`]: the sid,
//! heartbeat, transports, upgrade and the bounded outbound queue) over the
//! byte engine ([`websocket`]: it owns each WebSocket after its handshake,
//! reads and writes frames, and bounds what waits to be written). It knows
//! nothing of sessions, rooms, tokens or handlers (the session layer uses
//! it, never the other way); it imports only itself and the Engine.IO codec
//! (`crate::protocol`), which `eio::tests::imports_stay_in_the_engine` checks.

pub mod eio;
pub mod front;
pub mod websocket;

/// What each queued packet costs beyond its bytes, counted against the
/// outbound bound: its place in the queue, its allocation, its frame
/// header. Without it a client could queue half a million 1-byte pongs
/// within a 1 MB bound.
pub const PACKET_OVERHEAD: usize = 128;

/// More bytes waiting for a client than it may have: it does not read fast
/// enough (a slow consumer).
#[derive(Debug)]
pub struct Full;

/// Engine.IO's reasons for a transport's end.
pub mod reason {
    pub const TRANSPORT_CLOSE: &str = "transport close";
    pub const TRANSPORT_ERROR: &str = "transport error";
    pub const PARSE_ERROR: &str = "parse error";
    /// The client did not answer a ping in time.
    pub const PING_TIMEOUT: &str = "ping timeout";
    /// The outbound bound tripped: the client does not read fast enough.
    pub const SLOW_CONSUMER: &str = "slow consumer";
}
