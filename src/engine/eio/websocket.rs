//! The WebSocket transport as Engine.IO sees it: the connection task
//! ([`crate::engine::websocket`]) serves the socket; a [`Link`] hands its
//! messages to the connection's [`Owner`], and answers the upgrade probe of
//! a polling connection until the client completes the upgrade (or the
//! upgrade times out).

use std::cell::Cell;
use std::future::{ready, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use actix_web::rt::net::TcpStream;
use bytes::BytesMut;
use bytestring::ByteString;

use super::outbound::Ending;
use crate::engine::reason;
use crate::engine::websocket::{self, Ended, Transport, Upper};
use crate::protocol::engine;

/// How long an upgrading WebSocket may take from open to the upgrade packet.
pub const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// What owns the Engine.IO connection a WebSocket serves (the Socket.IO
/// session's actor, in souk): the link tells it what happens on the socket.
pub trait Owner: 'static {
    /// A text frame of the WebSocket that carries the connection. The
    /// socket is read on once the future resolves (so a client cannot
    /// outrun its owner); `false` ends it.
    fn text(&self, text: ByteString) -> Pin<Box<dyn Future<Output = bool>>>;
    /// A binary frame of the WebSocket that carries the connection.
    fn binary(&self);
    /// The WebSocket answered the upgrade probe: hand it to
    /// [`super::Engine::probe`].
    fn probe(&self, transport: Transport);
    /// The WebSocket carries the connection from now on: hand it to
    /// [`super::Engine::attach`].
    fn attach(&self, transport: Transport);
    /// The WebSocket has ended: hand it to [`super::Engine::transport_closed`].
    fn closed(&self, transport: Transport, reason: &'static str);
}

/// Whether the WebSocket carries the connection yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Opened as an upgrade of a polling connection: answers the probe,
    /// then waits for the upgrade packet.
    Probing,
    Attached,
}

/// Serves a WebSocket whose handshake is done for `owner`: its transport
/// from the start, or, when `upgrade`, a candidate that takes over from
/// long-polling. `read` is what the client sent past the handshake.
pub fn open<O: Owner>(
    owner: O,
    upgrade: bool,
    (stream, read): (TcpStream, BytesMut),
    max_payload: usize,
    max_outbound: usize,
) {
    let transport = Transport::new(max_outbound);
    let link = Link::new(owner, transport.clone(), upgrade);
    if upgrade {
        let (stage, transport) = (link.stage.clone(), transport.clone());
        actix_web::rt::spawn(async move {
            actix_web::rt::time::sleep(UPGRADE_TIMEOUT).await;
            if stage.get() == Stage::Probing {
                transport.close(Ending::Policy.code(), reason::TRANSPORT_CLOSE);
            }
        });
    }
    actix_web::rt::spawn(websocket::serve(stream, read, max_payload, transport, link));
}

/// Between a WebSocket connection and its owner.
pub struct Link<O: Owner> {
    owner: O,
    transport: Transport,
    stage: Rc<Cell<Stage>>,
    /// Why the link closed the connection itself, if it did.
    reason: Option<&'static str>,
}

impl<O: Owner> Link<O> {
    /// A link for `transport`; unless it is an `upgrade`, the transport
    /// carries the connection at once (the owner is told).
    fn new(owner: O, transport: Transport, upgrade: bool) -> Self {
        let stage = if upgrade {
            Stage::Probing
        } else {
            owner.attach(transport.clone());
            Stage::Attached
        };
        Link {
            owner,
            transport,
            stage: Rc::new(Cell::new(stage)),
            reason: None,
        }
    }

    fn refuse(&mut self) {
        self.reason = Some(reason::PARSE_ERROR);
        self.transport
            .close(Ending::Protocol.code(), reason::PARSE_ERROR);
    }
}

impl<O: Owner> Upper for Link<O> {
    fn text(&mut self, text: ByteString) -> Pin<Box<dyn Future<Output = bool>>> {
        if self.stage.get() == Stage::Attached {
            return self.owner.text(text);
        }
        match engine::decode(&text) {
            Ok(engine::ClientPacket::Ping("probe")) => {
                self.transport
                    .push_uncounted(ByteString::from(engine::encode_pong("probe")));
                self.owner.probe(self.transport.clone());
            }
            Ok(engine::ClientPacket::Upgrade) => {
                self.stage.set(Stage::Attached);
                self.owner.attach(self.transport.clone());
            }
            _ => self.refuse(),
        }
        Box::pin(ready(true))
    }

    fn binary(&mut self) {
        match self.stage.get() {
            Stage::Attached => self.owner.binary(),
            Stage::Probing => self.refuse(),
        }
    }

    fn ended(&mut self, how: Ended) {
        self.owner
            .closed(self.transport.clone(), self.reason.unwrap_or(how.reason()));
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// What the owner was told, in order.
    #[derive(Debug, PartialEq, Eq)]
    enum Told {
        Text(String),
        Binary,
        Probe,
        Attach,
        Closed(&'static str),
    }

    #[derive(Clone, Default)]
    struct Notes(Rc<RefCell<Vec<Told>>>);

    impl Owner for Notes {
        fn text(&self, text: ByteString) -> Pin<Box<dyn Future<Output = bool>>> {
            self.0.borrow_mut().push(Told::Text(text.to_string()));
            Box::pin(ready(true))
        }
        fn binary(&self) {
            self.0.borrow_mut().push(Told::Binary);
        }
        fn probe(&self, _: Transport) {
            self.0.borrow_mut().push(Told::Probe);
        }
        fn attach(&self, _: Transport) {
            self.0.borrow_mut().push(Told::Attach);
        }
        fn closed(&self, _: Transport, reason: &'static str) {
            self.0.borrow_mut().push(Told::Closed(reason));
        }
    }

    fn text(link: &mut Link<Notes>, frame: &str) {
        // The futures of these links resolve at once.
        drop(link.text(ByteString::from(frame.to_owned())));
    }

    #[test]
    fn a_websocket_opened_as_such_carries_the_connection_at_once() {
        let notes = Notes::default();
        let mut link = Link::new(notes.clone(), Transport::new(1000), false);
        text(&mut link, "40");
        link.binary();
        link.ended(Ended::Closed);
        assert_eq!(
            *notes.0.borrow(),
            vec![
                Told::Attach,
                Told::Text("40".into()),
                Told::Binary,
                Told::Closed(reason::TRANSPORT_CLOSE)
            ]
        );
    }

    #[test]
    fn the_upgrade_probe_is_answered_then_the_upgrade_attaches() {
        let notes = Notes::default();
        let transport = Transport::new(1000);
        let mut link = Link::new(notes.clone(), transport.clone(), true);
        assert!(
            notes.0.borrow().is_empty(),
            "not attached before the upgrade"
        );
        text(&mut link, "2probe");
        assert_eq!(transport.unwritten(), 1, "the probe's pong waits");
        assert_eq!(*notes.0.borrow(), vec![Told::Probe]);
        text(&mut link, "5");
        // From now on frames are the connection's.
        text(&mut link, "40");
        assert_eq!(
            *notes.0.borrow(),
            vec![Told::Probe, Told::Attach, Told::Text("40".into())]
        );
    }

    #[test]
    fn anything_else_during_the_probe_closes_the_websocket_as_a_parse_error() {
        for frame in ["40", "2ping", "garbage"] {
            let notes = Notes::default();
            let transport = Transport::new(1000);
            let mut link = Link::new(notes.clone(), transport.clone(), true);
            text(&mut link, frame);
            link.ended(Ended::Closed);
            assert_eq!(*notes.0.borrow(), vec![Told::Closed(reason::PARSE_ERROR)]);
        }
        let notes = Notes::default();
        let mut link = Link::new(notes.clone(), Transport::new(1000), true);
        link.binary();
        link.ended(Ended::Closed);
        assert_eq!(*notes.0.borrow(), vec![Told::Closed(reason::PARSE_ERROR)]);
    }
}
