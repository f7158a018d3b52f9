//! The WebSocket transport: the only code that knows actix-web-actors.
//!
//! A [`WsTransport`] is a pipe between one WebSocket and its [`Session`]: it
//! reads frames, reassembles continuations, and hands text to the session,
//! waiting for the session to take each before reading on; it writes what
//! the session sends it. The session lives in its own actor because this one
//! is only run while the socket can be written: a client that stops reading
//! stalls it, and the session must go on counting what piles up.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use bytes::BytesMut;
use bytestring::ByteString;

use super::outbound::{Backlog, Ending, Pipe};
use super::{reason, Attach, ClientFrame, Probe, Session, TransportClosed};
use crate::error::{Code, Failure};
use crate::protocol::engine;

/// How long an upgrading WebSocket may take from open to the upgrade packet.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// Packets wait in the backlog: write them.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

/// Closes the WebSocket, saying why in the close frame.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close(pub Ending, pub &'static str);

/// Whether the WebSocket carries the session yet.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Opened as an upgrade of a polling session: answers the probe, then
    /// waits for the upgrade packet.
    Probing,
    Attached,
}

pub struct WsTransport {
    session: Addr<Session>,
    stage: Stage,
    backlog: Arc<Mutex<Backlog>>,
    max_payload: usize,
    /// A message arriving in continuation frames, bounded by maxPayload.
    fragment: Option<Fragment>,
    /// Why the socket ended, for the session's disconnect reason.
    reason: &'static str,
}

struct Fragment {
    text: bool,
    data: BytesMut,
}

/// Opens a WebSocket for `session`: its transport from the start, or, when
/// `upgrade`, a candidate that takes over from long-polling.
pub fn start(
    session: Addr<Session>,
    upgrade: bool,
    max_payload: usize,
    req: &HttpRequest,
    stream: web::Payload,
) -> Result<HttpResponse, Failure> {
    let transport = WsTransport {
        session,
        stage: if upgrade {
            Stage::Probing
        } else {
            Stage::Attached
        },
        backlog: Arc::default(),
        max_payload,
        fragment: None,
        reason: reason::TRANSPORT_CLOSE,
    };
    ws::WsResponseBuilder::new(transport, req, stream)
        .frame_size(max_payload)
        .start()
        .map_err(|err| Failure::new(Code::BadRequest, format!("not a WebSocket upgrade: {err}")))
}

impl WsTransport {
    fn attach(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        self.stage = Stage::Attached;
        self.session.do_send(Attach(Pipe {
            transport: ctx.address(),
            backlog: self.backlog.clone(),
        }));
    }

    fn end(&mut self, ctx: &mut ws::WebsocketContext<Self>, reason: &'static str, ending: Ending) {
        self.reason = reason;
        close(ctx, ending, reason);
    }

    fn on_text(&mut self, text: ByteString, ctx: &mut ws::WebsocketContext<Self>) {
        match self.stage {
            Stage::Attached => {
                // Read on only once the session has taken this frame, so a
                // client cannot flood the session's mailbox.
                let taken = self.session.send(ClientFrame::Text(text));
                ctx.wait(taken.into_actor(self).map(|taken, _, ctx| {
                    if taken.is_err() {
                        ctx.stop();
                    }
                }));
            }
            Stage::Probing => match engine::decode(&text) {
                Ok(engine::ClientPacket::Ping("probe")) => {
                    ctx.text(engine::encode_pong("probe"));
                    self.session.do_send(Probe(ctx.address()));
                }
                Ok(engine::ClientPacket::Upgrade) => self.attach(ctx),
                _ => self.end(ctx, reason::PARSE_ERROR, Ending::Protocol),
            },
        }
    }

    fn on_binary(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        match self.stage {
            Stage::Attached => self.session.do_send(ClientFrame::Binary),
            Stage::Probing => self.end(ctx, reason::PARSE_ERROR, Ending::Protocol),
        }
    }

    fn on_fragment(&mut self, item: actix_http::ws::Item, ctx: &mut ws::WebsocketContext<Self>) {
        let (start, text, bytes, last) = match item {
            actix_http::ws::Item::FirstText(bytes) => (true, true, bytes, false),
            actix_http::ws::Item::FirstBinary(bytes) => (true, false, bytes, false),
            actix_http::ws::Item::Continue(bytes) => (false, false, bytes, false),
            actix_http::ws::Item::Last(bytes) => (false, false, bytes, true),
        };
        if start {
            self.fragment = Some(Fragment {
                text,
                data: BytesMut::new(),
            });
        }
        let Some(fragment) = self.fragment.as_mut() else {
            return self.end(ctx, reason::PARSE_ERROR, Ending::Protocol);
        };
        if fragment.data.len() + bytes.len() > self.max_payload {
            self.reason = reason::PARSE_ERROR;
            return close_with(ctx, ws::CloseCode::Size, reason::PARSE_ERROR);
        }
        fragment.data.extend_from_slice(&bytes);
        if !last {
            return;
        }
        let Some(fragment) = self.fragment.take() else {
            return;
        };
        if !fragment.text {
            return self.on_binary(ctx);
        }
        match ByteString::try_from(fragment.data.freeze()) {
            Ok(text) => self.on_text(text, ctx),
            Err(_) => {
                self.reason = reason::PARSE_ERROR;
                close_with(ctx, ws::CloseCode::Invalid, reason::PARSE_ERROR);
            }
        }
    }
}

fn close(ctx: &mut ws::WebsocketContext<WsTransport>, ending: Ending, reason: &'static str) {
    let code = match ending {
        Ending::Normal => ws::CloseCode::Normal,
        Ending::Away => ws::CloseCode::Away,
        Ending::Policy => ws::CloseCode::Policy,
        Ending::Protocol => ws::CloseCode::Protocol,
        Ending::Restart => ws::CloseCode::Restart,
        Ending::Overloaded => ws::CloseCode::Again,
    };
    close_with(ctx, code, reason);
}

fn close_with(
    ctx: &mut ws::WebsocketContext<WsTransport>,
    code: ws::CloseCode,
    reason: &'static str,
) {
    ctx.close(Some(ws::CloseReason {
        code,
        description: Some(reason.to_owned()),
    }));
    ctx.stop();
}

impl Actor for WsTransport {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        match self.stage {
            Stage::Attached => self.attach(ctx),
            Stage::Probing => {
                ctx.run_later(UPGRADE_TIMEOUT, |act, ctx| {
                    if act.stage == Stage::Probing {
                        act.end(ctx, reason::TRANSPORT_CLOSE, Ending::Policy);
                    }
                });
            }
        }
    }

    fn stopped(&mut self, ctx: &mut Self::Context) {
        self.session.do_send(TransportClosed {
            transport: ctx.address(),
            reason: self.reason,
        });
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for WsTransport {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        match item {
            Ok(ws::Message::Text(text)) => self.on_text(text, ctx),
            Ok(ws::Message::Binary(_)) => self.on_binary(ctx),
            Ok(ws::Message::Continuation(item)) => self.on_fragment(item, ctx),
            Ok(ws::Message::Ping(bytes)) => ctx.pong(&bytes),
            Ok(ws::Message::Pong(_) | ws::Message::Nop) => {}
            Ok(ws::Message::Close(_)) => self.end(ctx, reason::TRANSPORT_CLOSE, Ending::Normal),
            Err(ws::ProtocolError::Overflow) => {
                self.reason = reason::PARSE_ERROR;
                close_with(ctx, ws::CloseCode::Size, reason::PARSE_ERROR);
            }
            Err(err) => {
                log::debug!("websocket error: {err}");
                self.end(ctx, reason::TRANSPORT_ERROR, Ending::Protocol);
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<Drain> for WsTransport {
    type Result = ();
    fn handle(&mut self, _: Drain, ctx: &mut Self::Context) {
        let frames = match self.backlog.lock() {
            Ok(mut backlog) => backlog.take(),
            Err(_) => return ctx.stop(),
        };
        for frame in frames {
            ctx.text(frame);
        }
    }
}

impl Handler<Close> for WsTransport {
    type Result = ();
    fn handle(&mut self, Close(ending, reason): Close, ctx: &mut Self::Context) {
        close(ctx, ending, reason);
    }
}
