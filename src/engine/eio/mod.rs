//! Engine.IO: one connection's sid and open packet, its heartbeat, its
//! transports (long-polling GETs and POSTs, a WebSocket, the upgrade from
//! one to the other), the bounded outbound queue, and its close.
//!
//! [`Engine`] is a plain struct, owned by the layer above (the Socket.IO
//! session's actor, in souk) and driven by method calls: what arrives from
//! the client, what the layer above sends, the timers it asked for. Each
//! call answers with a [`Step`]: what the layer above must do (hand on a
//! Socket.IO packet, close the connection, stop). It knows nothing of
//! namespaces, rooms, tokens or handlers; `tests::imports_stay_in_the_engine`
//! holds it to that.
//!
//! Long-polling GETs are not calls on it: they take their answers from the
//! connection's [`LongPoll`] ([`Engine::long_poll`]) with no call here, and
//! the [`Step`] a GET answers is handed to the layer above only when it
//! asks something (stop, close).
//!
//! It arms its timers through [`Schedule`] (the owner's per-thread timer
//! queue) and is told of them through [`Engine::on_timer`].

pub mod longpoll;
pub mod outbound;
pub mod websocket;

use std::time::Duration;

use bytestring::ByteString;

use crate::engine::reason;
use crate::engine::websocket::frame::SharedText;
use crate::engine::websocket::Transport;
use crate::protocol::{engine, DecodeError};
pub use longpoll::{Answer, LongPoll, PollAnswer};
use outbound::Outbound;
pub use outbound::{Ending, SlowConsumer};

/// How long a closed polling connection waits for the GET that takes its
/// close packet.
pub const CLOSE_LINGER: Duration = Duration::from_secs(5);

/// The Engine.IO settings of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// The largest message (and POST body) a client may send.
    pub max_payload: usize,
}

/// The timers an Engine.IO connection needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// The ping, every `ping_interval`.
    Ping,
    /// The unanswered ping's deadline; its token is the ping's number.
    PongDeadline,
    /// The wait of a closed poller for its last GET.
    Linger,
}

/// Where an [`Engine`] arms its timers. Arming a timer again replaces it;
/// when one is due, the owner calls [`Engine::on_timer`] with its token.
pub trait Schedule {
    fn every(&self, timer: Timer, period: Duration);
    fn after(&self, timer: Timer, token: u32, delay: Duration);
    fn cancel(&self, timer: Timer);
}

/// What the layer above must do after a call.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Step<'a> {
    /// Nothing.
    Done,
    /// The outbound queue's bound tripped: the client is a slow consumer;
    /// close with [`reason::SLOW_CONSUMER`] and [`Ending::Overloaded`].
    Overflow,
    /// A Socket.IO packet: an Engine.IO message's data.
    Message(&'a str),
    /// A frame that is not Engine.IO.
    Malformed(DecodeError),
    /// The client closed the transport: nothing more goes to it; stop.
    ClientClosed,
    /// Close the connection ([`Engine::close`]) for this reason, so.
    Close(&'static str, Ending),
    /// The connection is over (its close packet went out): stop.
    Stop,
}

/// How [`Engine::close`] ended the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// Done: stop.
    Now,
    /// A poller's close packet waits for its next GET: the connection
    /// lingers until then, or until [`Timer::Linger`].
    Lingering,
}

/// Why a long-polling POST is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum PostRefused {
    /// The connection is closing.
    Closed,
    /// It has upgraded, or was opened on a WebSocket.
    NotPolling,
    /// The body carries more than `max_packets` packets: the connection is
    /// to close ([`reason::PARSE_ERROR`], [`Ending::Protocol`]).
    TooManyPackets,
    /// Another POST is under way on the connection: it is to close
    /// ([`reason::TRANSPORT_ERROR`], [`Ending::Protocol`]).
    Overlapping,
}

/// One Engine.IO connection.
pub struct Engine {
    sid: Box<str>,
    out: Outbound,
    /// The last ping's number.
    ping_seq: u32,
    /// The number of the ping the client has not answered yet.
    awaiting_pong: Option<u32>,
    /// Opened by long-polling (and so may upgrade), not on a WebSocket.
    polling: bool,
    /// A long-polling POST is under way.
    posting: bool,
    /// Closed: takes nothing more in and ends soon.
    closing: bool,
}

impl Engine {
    /// A connection named `sid`, opened by long-polling (`polling`) or on a
    /// WebSocket, whose outbound queue holds at most `max_outbound`
    /// counted bytes.
    pub fn new(sid: &str, polling: bool, max_outbound: usize) -> Self {
        Engine {
            sid: sid.into(),
            out: Outbound::new(max_outbound),
            ping_seq: 0,
            awaiting_pong: None,
            polling,
            posting: false,
            closing: false,
        }
    }

    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// Closed or closing: nothing more is taken in.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Queues the open packet and starts the heartbeat.
    pub fn open(&mut self, config: &Config, schedule: &impl Schedule) -> Step<'static> {
        let upgrades: &[&str] = if self.polling { &["websocket"] } else { &[] };
        let open = engine::encode_open(&engine::Open {
            sid: &self.sid,
            upgrades,
            ping_interval: config.ping_interval.as_millis() as u64,
            ping_timeout: config.ping_timeout.as_millis() as u64,
            max_payload: config.max_payload,
        });
        let step = self.send(open.into());
        schedule.every(Timer::Ping, config.ping_interval);
        step
    }

    /// Queues a packet for the client. Its transport is woken by the
    /// packet (a waiting GET takes everything queued by the time it runs).
    pub fn send(&mut self, frame: ByteString) -> Step<'static> {
        if self.out.push(frame).is_err() {
            Step::Overflow
        } else {
            Step::Done
        }
    }

    /// A frame from the client, on whichever transport.
    pub fn on_text<'a>(&mut self, text: &'a str, schedule: &impl Schedule) -> Step<'a> {
        let packet = match engine::decode(text) {
            Ok(packet) => packet,
            Err(err) => return Step::Malformed(err),
        };
        match packet {
            engine::ClientPacket::Close => Step::ClientClosed,
            engine::ClientPacket::Ping(data) => self.send(engine::encode_pong(data).into()),
            engine::ClientPacket::Pong(_) => {
                self.awaiting_pong = None;
                schedule.cancel(Timer::PongDeadline);
                Step::Done
            }
            engine::ClientPacket::Upgrade | engine::ClientPacket::Noop => Step::Done,
            engine::ClientPacket::Message(data) => Step::Message(data),
        }
    }

    /// One of the timers this connection armed is due.
    pub fn on_timer(
        &mut self,
        timer: Timer,
        token: u32,
        config: &Config,
        schedule: &impl Schedule,
    ) -> Step<'static> {
        match timer {
            Timer::Ping => {
                if self.awaiting_pong.is_some() {
                    return Step::Done; // the previous ping's deadline still runs
                }
                self.ping_seq = self.ping_seq.wrapping_add(1);
                self.awaiting_pong = Some(self.ping_seq);
                let step = self.send(ByteString::from_static(engine::PING));
                schedule.after(Timer::PongDeadline, self.ping_seq, config.ping_timeout);
                step
            }
            Timer::PongDeadline if self.awaiting_pong == Some(token) => {
                Step::Close(reason::PING_TIMEOUT, Ending::Away)
            }
            Timer::PongDeadline => Step::Done,
            Timer::Linger => Step::Stop,
        }
    }

    /// Ends the transport, unless it is closing already (`None`): a
    /// WebSocket is closed with `ending`; long-polling gets the close
    /// packet after what waits, and lingers for the GET that takes it.
    pub fn close(
        &mut self,
        ending: Ending,
        reason: &'static str,
        schedule: &impl Schedule,
    ) -> Option<Closed> {
        if self.closing {
            return None;
        }
        self.closing = true;
        if self.out.close(ending, reason) {
            Some(Closed::Now)
        } else {
            schedule.after(Timer::Linger, 0, CLOSE_LINGER);
            Some(Closed::Lingering)
        }
    }

    /// The client closed (or its owner stops): nothing more goes to it,
    /// not even a close packet that would wait for a GET.
    pub fn end(&mut self, reason: &'static str) {
        self.closing = true;
        self.out.close(Ending::Normal, reason);
    }

    /// The long-polling queue of a connection opened by long-polling,
    /// while it polls: its GETs take their answers from it themselves
    /// ([`LongPoll::get`]), with no call here. None on a WebSocket.
    pub fn long_poll(&self) -> Option<LongPoll> {
        match self.polling {
            true => self.out.long_poll().cloned(),
            false => None,
        }
    }

    /// A long-polling POST begins. Refused ([`PostRefused::Overlapping`])
    /// when another is under way on the same sid, as Engine.IO's reference
    /// server does ("data request overlap from client").
    pub fn post_started(&mut self) -> Result<(), PostRefused> {
        if self.posting && !self.closing {
            return Err(PostRefused::Overlapping);
        }
        self.posting = true;
        Ok(())
    }

    /// A long-polling POST has ended, however it ended.
    pub fn post_ended(&mut self) {
        self.posting = false;
    }

    /// A long-polling POST's body: its packets, each for [`Engine::on_text`]
    /// (stop when the connection closes meanwhile). At most `max_packets`.
    pub fn posted<'a>(
        &self,
        body: &'a str,
        max_packets: usize,
    ) -> Result<impl Iterator<Item = &'a str> + use<'a>, PostRefused> {
        if self.closing {
            return Err(PostRefused::Closed);
        }
        if !self.polling || self.out.on_websocket() {
            return Err(PostRefused::NotPolling);
        }
        if engine::split_payload(body).nth(max_packets).is_some() {
            return Err(PostRefused::TooManyPackets);
        }
        Ok(engine::split_payload(body))
    }

    /// A WebSocket answered the upgrade probe: the polling loop is told to
    /// pause. Refused (the WebSocket is closed) unless this connection
    /// polls with no other upgrade under way.
    pub fn probe(&mut self, transport: Transport) {
        self.out.probe(transport);
    }

    /// A WebSocket carries the connection from now on: at the start, or
    /// when the client completes an upgrade. What waited goes to it.
    pub fn attach(&mut self, transport: Transport) -> Step<'static> {
        if self.out.attach(transport).is_err() {
            return Step::Close(reason::SLOW_CONSUMER, Ending::Overloaded);
        }
        Step::Done
    }

    /// A WebSocket has ended. When it carried the connection, the
    /// connection is over: how many packets it left unwritten.
    pub fn transport_closed(&mut self, transport: &Transport) -> Option<usize> {
        let unwritten = self.out.unwritten();
        self.out.transport_closed(transport).then_some(unwritten)
    }

    /// The WebSocket that carries the connection now, if one does.
    pub fn websocket(&self) -> Option<&Transport> {
        self.out.websocket()
    }

    /// Where others (a room) may put the connection's packets directly:
    /// its WebSocket, or its long-polling queue until a WebSocket attaches
    /// (what is pushed there meanwhile follows what waits to it).
    pub fn outlet(&self) -> Option<Outlet> {
        match (self.out.websocket(), self.out.long_poll()) {
            (Some(transport), _) => Some(Outlet::WebSocket(transport.clone())),
            (None, Some(queue)) => Some(Outlet::Polling(queue.clone())),
            (None, None) => None,
        }
    }
}

/// Closes a WebSocket at once as a slow consumer: a packet pushed by
/// others than its owner went past its bound (directly, or through the
/// long-polling queue it took over from).
fn close_overloaded(transport: &Transport) {
    transport.close(Ending::Overloaded.code(), reason::SLOW_CONSUMER);
}

/// A connection's transport as a shared handle, for packets put there by
/// others than its owner with no message to it (a room's events).
#[derive(Clone)]
pub enum Outlet {
    WebSocket(Transport),
    Polling(LongPoll),
}

impl Outlet {
    /// Queues an event encoded once for many connections. Refused past the
    /// outbound bound: call [`Outlet::overloaded`] and tell the owner.
    pub fn push_shared(&self, frame: &SharedText) -> Result<(), SlowConsumer> {
        match self {
            Outlet::WebSocket(transport) => transport.push_shared(frame),
            Outlet::Polling(queue) => queue.push_shared(frame),
        }
    }

    /// A push was refused: nothing more goes out after what waits. A
    /// WebSocket closes at once as a slow consumer; long-polling queues
    /// nothing more, and its owner, told, sends the close packet.
    pub fn overloaded(&self) {
        match self {
            Outlet::WebSocket(transport) => close_overloaded(transport),
            Outlet::Polling(queue) => queue.overloaded(),
        }
    }
}

#[cfg(test)]
mod tests;
