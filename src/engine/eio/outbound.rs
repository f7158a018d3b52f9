//! What a connection writes, bounded, on whichever transport it has now.
//!
//! A connection's packets wait here until its transport takes them: a
//! long-polling GET, or a WebSocket each time it runs, takes everything
//! waiting at once. Either way the bytes waiting are counted,
//! and a connection that lets more than the limit pile up is a slow consumer:
//! it is closed instead of growing memory, and recovers what it missed when it
//! reconnects.

use bytestring::ByteString;

use super::longpoll::LongPoll;
use crate::engine::websocket::{frame::code, Transport};
pub use crate::engine::Full as SlowConsumer;

/// How a transport ends; a WebSocket says it with its close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Normal,
    Away,
    Policy,
    Protocol,
    Restart,
    /// The client did not read fast enough.
    Overloaded,
}

impl Ending {
    /// The WebSocket close code that says it.
    pub fn code(self) -> u16 {
        match self {
            Ending::Normal => code::NORMAL,
            Ending::Away => code::AWAY,
            Ending::Policy => code::POLICY,
            Ending::Protocol => code::PROTOCOL,
            Ending::Restart => code::RESTART,
            Ending::Overloaded => code::AGAIN,
        }
    }
}

/// Why a WebSocket that would take over from long-polling is closed.
const UPGRADE_REFUSED: &str = "upgrade refused";

pub struct Outbound {
    way: Way,
}

enum Way {
    /// No WebSocket (yet): packets wait for a GET, or for a WebSocket to attach.
    Held(Held),
    WebSocket(Transport),
    Closed,
}

struct Held {
    /// The packets and the waiting GET, shared with the rooms.
    queue: LongPoll,
    /// A WebSocket that answered the upgrade probe and may take over.
    probing: Option<Transport>,
}

/// The queue outlives its owner in the clones rooms and a GET hold: when
/// the owner lets it go, it is ended, so that a waiting GET is told and
/// nothing more waits there.
impl Drop for Held {
    fn drop(&mut self) {
        self.queue.end();
    }
}

impl Outbound {
    pub fn new(limit: usize) -> Self {
        Outbound {
            way: Way::Held(Held {
                queue: LongPoll::new(limit),
                probing: None,
            }),
        }
    }

    /// Queues one packet for the client.
    pub fn push(&mut self, frame: ByteString) -> Result<(), SlowConsumer> {
        match &mut self.way {
            Way::WebSocket(transport) => transport.push(frame)?,
            Way::Held(held) => held.queue.push(frame)?,
            Way::Closed => {}
        }
        Ok(())
    }

    /// How many packets wait for the WebSocket to take them.
    pub fn unwritten(&self) -> usize {
        match &self.way {
            Way::WebSocket(transport) => transport.unwritten(),
            _ => 0,
        }
    }

    /// The WebSocket that carries the packets now, if one does.
    pub fn websocket(&self) -> Option<&Transport> {
        match &self.way {
            Way::WebSocket(transport) => Some(transport),
            _ => None,
        }
    }

    /// The long-polling queue, while packets wait for a GET (or, during an
    /// upgrade, for the WebSocket).
    pub fn long_poll(&self) -> Option<&LongPoll> {
        match &self.way {
            Way::Held(held) => Some(&held.queue),
            _ => None,
        }
    }

    /// Whether a WebSocket carries the packets now.
    pub fn on_websocket(&self) -> bool {
        matches!(self.way, Way::WebSocket(_))
    }

    /// A WebSocket answered the probe: the polling loop is told to pause.
    /// Refused (the WebSocket is closed) unless this is a polling session
    /// with no other upgrade under way.
    pub fn probe(&mut self, transport: Transport) {
        match &mut self.way {
            Way::Held(held) if held.probing.is_none() => {
                held.probing = Some(transport);
                held.queue.pause(true);
            }
            _ => transport.close(Ending::Policy.code(), UPGRADE_REFUSED),
        }
    }

    /// The WebSocket is the transport from now on: what waited goes to it,
    /// counted as it was, and so does what rooms push to the long-polling
    /// queue until they are pointed at the WebSocket. Refused (the
    /// WebSocket is closed) once the connection is over, which a GET that
    /// took the close packet may have made it before its owner knows.
    pub fn attach(&mut self, transport: Transport) -> Result<(), SlowConsumer> {
        let Way::Held(held) = &mut self.way else {
            transport.close(Ending::Policy.code(), UPGRADE_REFUSED);
            return Ok(());
        };
        if !held.queue.move_to(&transport)? {
            transport.close(Ending::Policy.code(), UPGRADE_REFUSED);
            return Ok(());
        }
        self.way = Way::WebSocket(transport);
        Ok(())
    }

    /// A WebSocket ended. True when it was the connection's transport.
    pub fn transport_closed(&mut self, transport: &Transport) -> bool {
        match &mut self.way {
            Way::WebSocket(current) => current == transport,
            Way::Held(held) => {
                if held.probing.as_ref() == Some(transport) {
                    held.probing = None;
                    held.queue.pause(false);
                }
                false
            }
            Way::Closed => false,
        }
    }

    /// Ends the transport: a WebSocket is closed with `ending`; long-polling
    /// gets the close packet after what waits. True when that is done; false
    /// when the close packet waits for the client's next GET (the session
    /// lingers for it, as Engine.IO's reference server does, and queues
    /// nothing more meanwhile).
    pub fn close(&mut self, ending: Ending, reason: &'static str) -> bool {
        match &mut self.way {
            Way::WebSocket(transport) => transport.close(ending.code(), reason),
            Way::Held(held) => {
                if let Some(probing) = held.probing.take() {
                    probing.close(ending.code(), reason);
                }
                if !held.queue.close() {
                    return false;
                }
            }
            Way::Closed => {}
        }
        self.way = Way::Closed;
        true
    }
}
