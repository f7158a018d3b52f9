//! The WebSocket transport as the session's actor sees it: the engine
//! serves the socket and answers an upgrade probe
//! ([`crate::engine::eio::websocket`]); the session's address is the
//! [`Owner`] it tells what happens there, as actor messages.

use std::future::Future;
use std::pin::Pin;

use actix::Addr;
use actix_web::rt::net::TcpStream;
use bytes::BytesMut;
use bytestring::ByteString;

use super::{Attach, ClientFrame, Probe, Session, TransportClosed};
use crate::engine::eio::websocket::{self, Owner};
use crate::engine::websocket::Transport;

/// Serves a WebSocket whose handshake is done for `session`: its transport
/// from the start, or, when `upgrade`, a candidate that takes over from
/// long-polling. `read` is what the client sent past the handshake.
pub fn open(
    session: Addr<Session>,
    upgrade: bool,
    connection: (TcpStream, BytesMut),
    max_payload: usize,
    max_outbound: usize,
) {
    websocket::open(session, upgrade, connection, max_payload, max_outbound);
}

impl Owner for Addr<Session> {
    fn text(&self, text: ByteString) -> Pin<Box<dyn Future<Output = bool>>> {
        // Read on only once the session has taken this frame, so a client
        // cannot flood the session's mailbox.
        let taken = self.send(ClientFrame::Text(text));
        Box::pin(async move { taken.await.is_ok() })
    }

    fn binary(&self) {
        self.do_send(ClientFrame::Binary);
    }

    fn probe(&self, transport: Transport) {
        self.do_send(Probe(transport));
    }

    fn attach(&self, transport: Transport) {
        self.do_send(Attach(transport));
    }

    fn closed(&self, transport: Transport, reason: &'static str) {
        self.do_send(TransportClosed { transport, reason });
    }
}
