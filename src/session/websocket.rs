//! The WebSocket transport as a session sees it: the engine's connection
//! task ([`crate::engine::websocket`]) serves the socket; a [`Link`] hands
//! its messages to the session, and answers the upgrade probe of a polling
//! session until the client completes the upgrade.

use std::cell::Cell;
use std::future::{ready, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use actix::Addr;
use actix_web::rt::net::TcpStream;
use bytes::BytesMut;
use bytestring::ByteString;

use super::outbound::Ending;
use super::{reason, Attach, ClientFrame, Probe, Session, TransportClosed};
use crate::engine::websocket::{self, Ended, Transport, Upper};
use crate::protocol::engine;

/// How long an upgrading WebSocket may take from open to the upgrade packet.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the WebSocket carries the session yet.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Opened as an upgrade of a polling session: answers the probe, then
    /// waits for the upgrade packet.
    Probing,
    Attached,
}

/// Serves a WebSocket whose handshake is done for `session`: its transport
/// from the start, or, when `upgrade`, a candidate that takes over from
/// long-polling. `read` is what the client sent past the handshake.
pub fn open(
    session: Addr<Session>,
    upgrade: bool,
    (stream, read): (TcpStream, BytesMut),
    max_payload: usize,
    max_outbound: usize,
) {
    let transport = Transport::new(max_outbound);
    let stage = Rc::new(Cell::new(if upgrade {
        Stage::Probing
    } else {
        Stage::Attached
    }));
    if upgrade {
        let (stage, transport) = (stage.clone(), transport.clone());
        actix_web::rt::spawn(async move {
            actix_web::rt::time::sleep(UPGRADE_TIMEOUT).await;
            if stage.get() == Stage::Probing {
                transport.close(Ending::Policy.code(), reason::TRANSPORT_CLOSE);
            }
        });
    } else {
        session.do_send(Attach(transport.clone()));
    }
    let link = Link {
        session,
        transport: transport.clone(),
        stage,
        reason: None,
    };
    actix_web::rt::spawn(websocket::serve(stream, read, max_payload, transport, link));
}

/// Between a WebSocket connection and its session.
struct Link {
    session: Addr<Session>,
    transport: Transport,
    stage: Rc<Cell<Stage>>,
    /// Why the link closed the connection itself, if it did.
    reason: Option<&'static str>,
}

impl Link {
    fn refuse(&mut self) {
        self.reason = Some(reason::PARSE_ERROR);
        self.transport
            .close(Ending::Protocol.code(), reason::PARSE_ERROR);
    }
}

impl Upper for Link {
    fn text(&mut self, text: ByteString) -> Pin<Box<dyn Future<Output = bool>>> {
        if self.stage.get() == Stage::Attached {
            // Read on only once the session has taken this frame, so a
            // client cannot flood the session's mailbox.
            let taken = self.session.send(ClientFrame::Text(text));
            return Box::pin(async move { taken.await.is_ok() });
        }
        match engine::decode(&text) {
            Ok(engine::ClientPacket::Ping("probe")) => {
                self.transport
                    .push_uncounted(ByteString::from(engine::encode_pong("probe")));
                self.session.do_send(Probe(self.transport.clone()));
            }
            Ok(engine::ClientPacket::Upgrade) => {
                self.stage.set(Stage::Attached);
                self.session.do_send(Attach(self.transport.clone()));
            }
            _ => self.refuse(),
        }
        Box::pin(ready(true))
    }

    fn binary(&mut self) {
        match self.stage.get() {
            Stage::Attached => self.session.do_send(ClientFrame::Binary),
            Stage::Probing => self.refuse(),
        }
    }

    fn ended(&mut self, how: Ended) {
        self.session.do_send(TransportClosed {
            transport: self.transport.clone(),
            reason: self.reason.unwrap_or(how.reason()),
        });
    }
}
