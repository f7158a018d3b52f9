//! What a connection writes, bounded, on whichever transport it has now.
//!
//! A connection's packets wait here until its transport takes them: a
//! long-polling GET, or a WebSocket each time it runs, takes everything
//! waiting at once. Either way the bytes waiting are counted,
//! and a connection that lets more than the limit pile up is a slow consumer:
//! it is closed instead of growing memory, and recovers what it missed when it
//! reconnects.

use std::collections::VecDeque;

use bytestring::ByteString;
use tokio::sync::oneshot;

use crate::engine::websocket::{frame::code, Transport};
pub use crate::engine::Full as SlowConsumer;
use crate::engine::PACKET_OVERHEAD;
use crate::protocol::engine;

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

/// The answer to a long-polling GET.
pub enum PollAnswer {
    /// Packets joined with the record separator.
    Payload(String),
    /// The GET is refused (a bad request): why.
    Refused(&'static str),
}

/// Why a GET is refused on a connection that does not poll.
pub const NOT_POLLING: &str =
    "this session does not poll: it has upgraded or was opened on a WebSocket";
/// Why a second GET is refused while one waits.
pub const OVERLAPPING_POLL: &str = "overlapping polling requests";

/// Packets waiting for a long-polling GET, or for a WebSocket to take over
/// (a WebSocket has its own queue, in its [`Transport`]).
#[derive(Default)]
struct Backlog {
    frames: VecDeque<ByteString>,
    /// The bytes that count against the limit (replays do not).
    counted: usize,
}

impl Backlog {
    /// Adds a packet of which `counted` bytes count; refused when that
    /// would take the count over `limit`.
    fn push(
        &mut self,
        frame: ByteString,
        counted: usize,
        limit: usize,
    ) -> Result<(), SlowConsumer> {
        if self.counted + counted > limit {
            return Err(SlowConsumer);
        }
        self.frames.push_back(frame);
        self.counted += counted;
        Ok(())
    }

    /// Everything waiting, oldest first.
    fn take(&mut self) -> VecDeque<ByteString> {
        self.counted = 0;
        std::mem::take(&mut self.frames)
    }
}

/// Why a WebSocket that would take over from long-polling is closed.
const UPGRADE_REFUSED: &str = "upgrade refused";

pub struct Outbound {
    limit: usize,
    way: Way,
}

enum Way {
    /// No WebSocket (yet): packets wait for a GET, or for a WebSocket to attach.
    Held(Held),
    WebSocket(Transport),
    Closed,
}

#[derive(Default)]
struct Held {
    waiting: Backlog,
    poll: Option<oneshot::Sender<PollAnswer>>,
    /// A WebSocket that answered the upgrade probe and may take over.
    probing: Option<Transport>,
    /// The close packet is queued: nothing more is.
    closing: bool,
}

impl Outbound {
    pub fn new(limit: usize) -> Self {
        Outbound {
            limit,
            way: Way::Held(Held::default()),
        }
    }

    /// Queues one packet for the client.
    pub fn push(&mut self, frame: ByteString) -> Result<(), SlowConsumer> {
        // Checked before the packet is queued, so one packet larger than the
        // limit is a slow consumer too.
        let len = frame.len() + PACKET_OVERHEAD;
        match &mut self.way {
            Way::WebSocket(transport) => transport.push(frame)?,
            // Once closing, the close packet is the last one.
            Way::Held(held) if held.closing => {}
            Way::Held(held) => held.waiting.push(frame, len, self.limit)?,
            Way::Closed => {}
        }
        Ok(())
    }

    /// Answers a waiting GET with everything queued, unless an upgrade is
    /// under way. The session calls it once it has queued what one turn
    /// produced, so packets queued together travel together. A closing
    /// session's close packet goes alone, in the GET after its last packets:
    /// socket.io-client handles a payload's packets on the next tick but
    /// its close at once, so packets sharing a payload with the close would
    /// be dropped. True when the close packet went out: the session is over.
    pub fn flush_poll(&mut self) -> bool {
        let Way::Held(held) = &mut self.way else {
            return false;
        };
        if held.probing.is_some() {
            return false;
        }
        if !held.waiting.frames.is_empty() {
            held.answer_poll();
            return false;
        }
        if !held.closing {
            return false;
        }
        let Some(poll) = held.poll.take() else {
            return false;
        };
        if poll
            .send(PollAnswer::Payload(engine::CLOSE.to_owned()))
            .is_err()
        {
            return false;
        }
        self.way = Way::Closed;
        true
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

    /// Whether a WebSocket carries the packets now.
    pub fn on_websocket(&self) -> bool {
        matches!(self.way, Way::WebSocket(_))
    }

    /// A long-polling GET: answered at once when packets wait, otherwise
    /// when the next one comes. During an upgrade it gets a noop, so that
    /// the client's polling loop can pause.
    /// True when this GET took the close packet: the session is over.
    /// Refused, and the connection is to close, when another GET waits.
    pub fn poll(&mut self, answer: oneshot::Sender<PollAnswer>) -> Result<bool, &'static str> {
        let Way::Held(held) = &mut self.way else {
            let _ = answer.send(PollAnswer::Refused(NOT_POLLING));
            return Ok(false);
        };
        if held
            .poll
            .as_ref()
            .is_some_and(|waiting| !waiting.is_closed())
        {
            let _ = answer.send(PollAnswer::Refused(OVERLAPPING_POLL));
            return Err(OVERLAPPING_POLL);
        }
        held.poll = Some(answer);
        if held.probing.is_some() {
            held.release_poll();
            return Ok(false);
        }
        Ok(self.flush_poll())
    }

    /// A WebSocket answered the probe: the polling loop is told to pause.
    /// Refused (the WebSocket is closed) unless this is a polling session
    /// with no other upgrade under way.
    pub fn probe(&mut self, transport: Transport) {
        match &mut self.way {
            Way::Held(held) if held.probing.is_none() => {
                held.probing = Some(transport);
                held.release_poll();
            }
            _ => transport.close(Ending::Policy.code(), UPGRADE_REFUSED),
        }
    }

    /// The WebSocket is the transport from now on: what waited goes to it,
    /// counted as it was.
    pub fn attach(&mut self, transport: Transport) -> Result<(), SlowConsumer> {
        let Way::Held(held) = &mut self.way else {
            transport.close(Ending::Policy.code(), UPGRADE_REFUSED);
            return Ok(());
        };
        held.release_poll();
        let counted = held.waiting.counted;
        transport.append(held.waiting.take(), counted)?;
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
                    held.answer_poll();
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
                held.closing = true;
                return self.flush_poll();
            }
            Way::Closed => {}
        }
        self.way = Way::Closed;
        true
    }
}

impl Held {
    /// Lets a waiting GET go with a noop, keeping the packets for the
    /// WebSocket that is taking over.
    fn release_poll(&mut self) {
        if let Some(poll) = self.poll.take() {
            let _ = poll.send(PollAnswer::Payload(engine::NOOP.to_owned()));
        }
    }

    /// Answers a waiting GET with every packet waiting, if any. Packets
    /// stay queued when the GET has gone away meanwhile.
    fn answer_poll(&mut self) {
        let packets = &self.waiting.frames;
        if packets.is_empty() {
            return;
        }
        let Some(poll) = self.poll.take() else {
            return;
        };
        let bytes = packets.iter().map(|p| p.len() + 1).sum();
        let mut payload = String::with_capacity(bytes);
        for (index, packet) in packets.iter().enumerate() {
            if index > 0 {
                payload.push(engine::SEPARATOR);
            }
            payload.push_str(packet);
        }
        if poll.send(PollAnswer::Payload(payload)).is_ok() {
            self.waiting.take();
        }
    }
}
