//! One actor per connection: reads frames, decodes them, authorizes, routes
//! events, and writes frames back. The only module that knows the WebSocket
//! library (actix-web-actors); a move to actix-ws touches this folder alone.

mod upgrade;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web_actors::ws;
use bytes::BytesMut;
use chrono::Utc;
use serde_json::{json, Value};

use crate::auth::{AuthError, Identity, Role};
use crate::cluster::recovery;
use crate::error::{ok_ack, Code, Failure};
use crate::handlers::{self, Caller};
use crate::ids::UserId;
use crate::protocol::events::{self, ClientEvent, KNOWN_EVENTS, MAX_ID_LEN};
use crate::protocol::socket::{self, Packet, PacketType};
use crate::protocol::{engine, DecodeError};
use crate::rooms::presence;
use crate::rooms::registry::{Bind, Join, Leave, Register, Unregister};
use crate::rooms::{Deliver, Flush, RoomKey, SessionId, Shutdown};
use crate::state::{random_id, AppState};

pub use upgrade::socket_io;

/// Bad frames in a row that close a connection (contract §1).
const MAX_BAD_FRAMES_IN_ROW: u32 = 10;
/// Refused CONNECTs that close a connection.
const MAX_FAILED_CONNECTS: u32 = 10;
/// The longest single timer; longer waits re-arm.
const MAX_TIMER: Duration = Duration::from_secs(24 * 3600);
/// Events one connection may have waiting; more are `rate_limited`.
const MAX_QUEUED_EVENTS: usize = 256;
/// What a refused event is told to wait.
const QUEUE_RETRY_AFTER_MS: u64 = 100;
/// How many recent emissions a connection remembers to drop repeats.
const RECENT_EMISSIONS: usize = 32;
/// Length of generated sids and pids.
const ID_LEN: usize = 20;

/// Why a connection closed, as the `souk_disconnects_total{reason}` label.
mod reason {
    pub const TRANSPORT_CLOSE: &str = "transport close";
    pub const TRANSPORT_ERROR: &str = "transport error";
    pub const PARSE_ERROR: &str = "parse error";
    pub const PING_TIMEOUT: &str = "ping timeout";
    pub const CONNECT_TIMEOUT: &str = "connect timeout";
    pub const CLIENT_DISCONNECT: &str = "client namespace disconnect";
    pub const TOKEN_EXPIRED: &str = "token expired";
    pub const UNAUTHORIZED: &str = "too many refused connects";
    pub const SHUTDOWN: &str = "server shutting down";
}

/// One WebSocket connection.
pub struct Session {
    id: SessionId,
    engine_sid: String,
    app: Arc<AppState>,
    /// The token of an `Authorization: Bearer` upgrade header, if any.
    header_token: Option<String>,
    state: State,
    ping_seq: u64,
    awaiting_pong: Option<u64>,
    bad_frames_in_row: u32,
    failed_connects: u32,
    /// A message arriving in continuation frames, bounded by maxPayload.
    fragment: Option<Fragment>,
    /// Events waiting for the one running to finish.
    queue: VecDeque<Queued>,
    /// Emission ids of the latest deliveries, to drop repeats.
    recent: VecDeque<u64>,
    /// The last offset replayed on recovery; live events up to it are repeats.
    replayed_upto: u64,
    running: bool,
    close_reason: &'static str,
}

enum State {
    /// Engine.IO is open; the client has not CONNECTed to `/` yet.
    Handshake,
    Connected(Connected),
}

struct Connected {
    identity: Identity,
    expiry_timer: Option<SpawnHandle>,
}

/// A client event waiting its turn.
struct Queued {
    ack_id: Option<u64>,
    name: EventName,
    started: Instant,
    event: ClientEvent,
}

struct Fragment {
    text: bool,
    data: BytesMut,
}

impl Session {
    fn new(app: Arc<AppState>, header_token: Option<String>) -> Self {
        Session {
            id: app.next_session_id(),
            engine_sid: random_id(ID_LEN),
            app,
            header_token,
            state: State::Handshake,
            ping_seq: 0,
            awaiting_pong: None,
            bad_frames_in_row: 0,
            failed_connects: 0,
            fragment: None,
            queue: VecDeque::new(),
            recent: VecDeque::with_capacity(RECENT_EMISSIONS),
            replayed_upto: 0,
            running: false,
            close_reason: reason::TRANSPORT_CLOSE,
        }
    }

    fn close(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        reason: &'static str,
        code: ws::CloseCode,
    ) {
        self.close_reason = reason;
        ctx.close(Some(ws::CloseReason {
            code,
            description: Some(reason.to_owned()),
        }));
        ctx.stop();
    }

    fn ping(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if self.awaiting_pong.is_some() {
            return; // the previous ping's timeout is still running
        }
        self.ping_seq += 1;
        let seq = self.ping_seq;
        self.awaiting_pong = Some(seq);
        ctx.text(engine::PING);
        ctx.run_later(self.app.settings.ping_timeout, move |act, ctx| {
            if act.awaiting_pong == Some(seq) {
                act.close(ctx, reason::PING_TIMEOUT, ws::CloseCode::Away);
            }
        });
    }

    fn on_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        let packet = match engine::decode(text) {
            Ok(packet) => packet,
            Err(err) => return self.bad_frame(err, ctx),
        };
        match packet {
            engine::ClientPacket::Close => {
                self.close(ctx, reason::TRANSPORT_CLOSE, ws::CloseCode::Normal)
            }
            engine::ClientPacket::Ping(data) => {
                self.bad_frames_in_row = 0;
                ctx.text(engine::encode_pong(data));
            }
            engine::ClientPacket::Pong(_) => {
                self.bad_frames_in_row = 0;
                self.awaiting_pong = None;
            }
            engine::ClientPacket::Upgrade | engine::ClientPacket::Noop => {
                self.bad_frames_in_row = 0;
            }
            engine::ClientPacket::Message(data) => match socket::decode(data) {
                Ok(packet) => {
                    self.bad_frames_in_row = 0;
                    self.on_packet(packet, ctx);
                }
                Err(err) => self.bad_frame(err, ctx),
            },
        }
    }

    /// Answers a frame that does not parse; too many in a row close the connection.
    fn bad_frame(&mut self, err: DecodeError, ctx: &mut ws::WebsocketContext<Self>) {
        self.bad_frames_in_row += 1;
        self.app.metrics.bad_frames.inc();
        let failure = Failure::new(Code::BadRequest, format!("malformed frame: {err}"));
        self.send_server_error(&failure, None, ctx);
        if self.bad_frames_in_row >= MAX_BAD_FRAMES_IN_ROW {
            self.close(ctx, reason::PARSE_ERROR, ws::CloseCode::Protocol);
        }
    }

    fn on_packet(&mut self, packet: Packet<'_>, ctx: &mut ws::WebsocketContext<Self>) {
        let root = packet.namespace == "/";
        match packet.kind {
            PacketType::Connect if root => self.on_connect(packet.data, ctx),
            PacketType::Connect => {
                let body = json!({ "message": "Invalid namespace" });
                ctx.text(socket::encode_connect_error(packet.namespace, &body));
            }
            PacketType::Disconnect if root => {
                self.close(ctx, reason::CLIENT_DISCONNECT, ws::CloseCode::Normal)
            }
            PacketType::Disconnect => {}
            PacketType::Event if !root => {
                let failure = Failure::new(Code::BadRequest, "unknown namespace");
                let name = EventName::of(
                    packet
                        .data
                        .as_ref()
                        .and_then(Value::as_array)
                        .map_or(&[], Vec::as_slice),
                );
                self.reply(ctx, packet.ack_id, &name, Err(failure));
            }
            PacketType::Event => {
                let args = match packet.data {
                    Some(Value::Array(args)) => args,
                    _ => Vec::new(), // the decoder only lets arrays through
                };
                self.on_event(packet.ack_id, &args, ctx);
            }
            // souk never asks a client for an ack, so there is nothing to match.
            PacketType::Ack => {}
            PacketType::ConnectError => {
                self.bad_frame(DecodeError::BadPayload, ctx);
            }
            PacketType::BinaryEvent | PacketType::BinaryAck => {
                let failure = Failure::new(Code::Unsupported, "binary packets are not supported");
                self.reply(ctx, packet.ack_id, &EventName::none(), Err(failure));
            }
        }
    }

    fn on_connect(&mut self, auth: Option<Value>, ctx: &mut ws::WebsocketContext<Self>) {
        if matches!(self.state, State::Connected(_)) {
            let failure = Failure::new(Code::BadRequest, "already connected");
            return self.send_server_error(&failure, None, ctx);
        }
        let token = match auth.as_ref().and_then(|a| a.get("token")) {
            Some(Value::String(token)) => Ok(token.as_str()),
            Some(_) => Err(AuthError::Invalid),
            None => self.header_token.as_deref().ok_or(AuthError::Missing),
        };
        let identity = token
            .and_then(|token| self.app.auth.verify(token))
            .and_then(|identity| match identity.role {
                Role::Service => Err(AuthError::Invalid),
                _ => Ok(identity),
            });
        let identity = match identity {
            Ok(identity) => identity,
            Err(err) => {
                self.failed_connects += 1;
                let body = json!({ "message": "unauthorized", "data": { "code": err.code() } });
                ctx.text(socket::encode_connect_error("/", &body));
                if self.failed_connects >= MAX_FAILED_CONNECTS {
                    self.close(ctx, reason::UNAUTHORIZED, ws::CloseCode::Policy);
                }
                return;
            }
        };
        // A reconnect within the recovery window names its last socket.
        let previous = auth.as_ref().and_then(|auth| {
            let pid = auth.get("pid")?.as_str()?;
            let offset = recovery::parse_offset(auth.get("offset")?.as_str()?)?;
            // Only the shape souk gives pids goes near a Redis key.
            let ours = pid.len() == ID_LEN && pid.bytes().all(|b| b.is_ascii_alphanumeric());
            ours.then(|| (pid.to_owned(), offset))
        });
        let restore = restore(
            self.app.clone(),
            self.id,
            identity.user_id.clone(),
            previous,
        );
        // Answer once this node follows the socket's rooms, so that nothing
        // sent to them after the answer is missed; then, as socket.io does,
        // replay what was missed.
        ctx.wait(restore.into_actor(self).map(|restored, session, ctx| {
            ctx.text(socket::encode_connect_ok(&random_id(ID_LEN), &restored.pid));
            for missed in &restored.missed {
                session.remember(missed.emission);
                ctx.text(missed.frame.clone());
            }
            session.replayed_upto = restored.missed.last().map_or(0, |m| m.offset);
        }));
        self.app
            .presence
            .do_send(presence::Connected(identity.user_id.clone()));
        log::debug!(
            "session {} connected as {}",
            self.engine_sid,
            identity.user_id
        );
        self.state = State::Connected(Connected {
            identity,
            expiry_timer: None,
        });
        self.arm_expiry(ctx);
    }

    /// Schedules the token-expiry disconnect for the current identity.
    fn arm_expiry(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let State::Connected(connected) = &mut self.state else {
            return;
        };
        if let Some(handle) = connected.expiry_timer.take() {
            ctx.cancel_future(handle);
        }
        let remaining = (connected.identity.expires_at - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        let handle = ctx.run_later(remaining.min(MAX_TIMER), |act, ctx| act.check_expiry(ctx));
        if let State::Connected(connected) = &mut self.state {
            connected.expiry_timer = Some(handle);
        }
    }

    fn check_expiry(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let State::Connected(connected) = &self.state else {
            return;
        };
        if Utc::now() < connected.identity.expires_at {
            return self.arm_expiry(ctx);
        }
        let failure = Failure::new(Code::Unauthorized, "token expired");
        let payload = json!({ "code": "token_expired", "message": failure.message, "event": null });
        ctx.text(socket::encode_event("server:error", &payload, None));
        ctx.text(socket::DISCONNECT);
        self.close(ctx, reason::TOKEN_EXPIRED, ws::CloseCode::Policy);
    }

    fn on_event(
        &mut self,
        ack_id: Option<u64>,
        args: &[Value],
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let started = Instant::now();
        let name = EventName::of(args);
        if !matches!(self.state, State::Connected(_)) {
            self.bad_frames_in_row += 1;
            let failure = Failure::new(Code::Unauthorized, "send CONNECT before events");
            return self.reply(ctx, ack_id, &name, Err(failure));
        }
        let event = match events::parse(args) {
            Ok(ClientEvent::AuthRefresh { token }) => {
                let outcome = self.refresh(&token, ctx);
                return self.finish(ctx, ack_id, &name, started, outcome);
            }
            Ok(event) => event,
            Err(err) => return self.finish(ctx, ack_id, &name, started, Err(err.into())),
        };
        if self.queue.len() >= MAX_QUEUED_EVENTS {
            let mut failure = Failure::new(Code::RateLimited, "too many events waiting");
            failure
                .extra
                .insert("retryAfterMs".into(), json!(QUEUE_RETRY_AFTER_MS));
            return self.finish(ctx, ack_id, &name, started, Err(failure));
        }
        self.queue.push_back(Queued {
            ack_id,
            name,
            started,
            event,
        });
        self.run_next(ctx);
    }

    /// Runs the oldest queued event unless one is running: one connection's
    /// events take effect in the order they were sent (a chat's messages are
    /// stored in send order), while frames to the connection keep flowing.
    fn run_next(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if self.running {
            return;
        }
        let Some(identity) = self.identity().cloned() else {
            return;
        };
        let Some(next) = self.queue.pop_front() else {
            return;
        };
        self.running = true;
        let caller = Caller {
            session: self.id,
            identity,
            mailbox: ctx.address().recipient(),
        };
        let Queued {
            ack_id,
            name,
            started,
            event,
        } = next;
        let work = handlers::handle(self.app.clone(), caller, event);
        ctx.spawn(work.into_actor(self).map(move |outcome, session, ctx| {
            session.running = false;
            session.finish(ctx, ack_id, &name, started, outcome);
            session.run_next(ctx);
        }));
    }

    /// Records how long an event took and answers it.
    fn finish(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        ack_id: Option<u64>,
        name: &EventName,
        started: Instant,
        outcome: Result<Value, Failure>,
    ) {
        self.app
            .metrics
            .event_duration
            .with_label_values(&[name.label])
            .observe(started.elapsed().as_secs_f64());
        self.reply(ctx, ack_id, name, outcome);
    }

    /// `auth:refresh`: a new token for the same user moves the expiry.
    fn refresh(
        &mut self,
        token: &str,
        ctx: &mut ws::WebsocketContext<Self>,
    ) -> Result<Value, Failure> {
        let State::Connected(connected) = &mut self.state else {
            return Err(Failure::new(Code::Unauthorized, "not connected"));
        };
        let identity = self.app.auth.verify(token).map_err(|err| {
            Failure::new(Code::Unauthorized, format!("token refused: {}", err.code()))
        })?;
        if identity.user_id != connected.identity.user_id {
            return Err(Failure::new(
                Code::Forbidden,
                "the new token names another user",
            ));
        }
        if identity.role == Role::Service {
            return Err(Failure::new(
                Code::Unauthorized,
                "token refused: invalid_token",
            ));
        }
        let expires_at = identity.expires_at;
        connected.identity = identity;
        self.arm_expiry(ctx);
        Ok(json!({ "expiresAt": crate::time::rfc3339(expires_at) }))
    }

    /// Answers an event: through its ack id, or as `server:error` when it
    /// failed without one.
    fn reply(
        &mut self,
        ctx: &mut ws::WebsocketContext<Self>,
        ack_id: Option<u64>,
        event: &EventName,
        outcome: Result<Value, Failure>,
    ) {
        let result = if outcome.is_ok() { "ok" } else { "error" };
        self.app
            .metrics
            .events
            .with_label_values(&[event.label, result])
            .inc();
        match (ack_id, outcome) {
            (Some(id), Ok(fields)) => ctx.text(socket::encode_ack(id, &ok_ack(fields))),
            (Some(id), Err(failure)) => ctx.text(socket::encode_ack(id, &failure.ack())),
            (None, Ok(_)) => {}
            (None, Err(failure)) => self.send_server_error(&failure, event.text.as_deref(), ctx),
        }
    }

    fn send_server_error(
        &self,
        failure: &Failure,
        event: Option<&str>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let payload = json!({
            "code": failure.code.as_str(),
            "message": failure.message,
            "event": event,
        });
        ctx.text(socket::encode_event("server:error", &payload, None));
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
            return self.close(ctx, reason::PARSE_ERROR, ws::CloseCode::Protocol);
        };
        if fragment.data.len() + bytes.len() > self.app.settings.max_payload {
            return self.close(ctx, reason::PARSE_ERROR, ws::CloseCode::Size);
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
        match std::str::from_utf8(&fragment.data) {
            Ok(text) => self.on_text(text, ctx),
            Err(_) => self.close(ctx, reason::PARSE_ERROR, ws::CloseCode::Invalid),
        }
    }

    fn on_binary(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let failure = Failure::new(Code::Unsupported, "binary frames are not supported");
        self.send_server_error(&failure, None, ctx);
    }

    /// Notes a delivered emission, to drop its other copies.
    fn remember(&mut self, emission: u64) {
        if self.recent.len() == RECENT_EMISSIONS {
            self.recent.pop_front();
        }
        self.recent.push_back(emission);
    }

    fn identity(&self) -> Option<&Identity> {
        match &self.state {
            State::Connected(connected) => Some(&connected.identity),
            State::Handshake => None,
        }
    }
}

/// An event's name as the client sent it (bounded, for `server:error`) and
/// as a metric label (only the contract's names, so labels stay few).
struct EventName {
    text: Option<String>,
    label: &'static str,
}

impl EventName {
    fn of(args: &[Value]) -> Self {
        match args.first() {
            Some(Value::String(name)) => EventName {
                text: Some(name.chars().take(MAX_ID_LEN).collect()),
                label: KNOWN_EVENTS
                    .iter()
                    .find(|known| **known == name)
                    .copied()
                    .unwrap_or("unknown"),
            },
            _ => EventName::none(),
        }
    }

    fn none() -> Self {
        EventName {
            text: None,
            label: "unknown",
        }
    }
}

/// What a CONNECT found of the socket's past.
struct Restored {
    pid: String,
    missed: Vec<recovery::Missed>,
}

/// Joins the user's room and, when `previous` is a socket of the same user
/// whose record and logs are still whole, its rooms; answers the events it
/// missed. Otherwise the socket starts afresh under a new pid.
async fn restore(
    app: Arc<AppState>,
    session: SessionId,
    user: UserId,
    previous: Option<(String, u64)>,
) -> Restored {
    let join = |room: RoomKey| Join {
        session,
        user: user.clone(),
        room,
    };
    // Best effort: a socket is accepted even when Redis is slow to confirm.
    let _ = app.registry.send(join(RoomKey::User(user.clone()))).await;
    let fresh = |app: &AppState| {
        let pid = random_id(ID_LEN);
        app.registry.do_send(Bind {
            session,
            pid: pid.clone(),
            user: user.clone(),
        });
        Restored {
            pid,
            missed: Vec::new(),
        }
    };
    let Some((pid, offset)) = previous else {
        return fresh(&app);
    };
    let record = match recovery::load(&app.redis, &pid).await {
        Ok(Some(record)) if record.user == user.as_str() => record,
        _ => return fresh(&app),
    };
    let rooms: Vec<RoomKey> = record
        .rooms
        .iter()
        .filter_map(|r| RoomKey::parse(r))
        .collect();
    let mut followed = true;
    for room in &rooms {
        followed &= matches!(app.registry.send(join(room.clone())).await, Ok(Ok(())));
    }
    match recovery::missed(&app.redis, &rooms, offset, &user).await {
        Ok(Some(missed)) if followed => {
            app.registry.do_send(Bind {
                session,
                pid: pid.clone(),
                user: user.clone(),
            });
            Restored { pid, missed }
        }
        _ => {
            // Not recoverable: a fresh socket is in its user room only.
            for room in rooms.into_iter().filter(|r| !matches!(r, RoomKey::User(_))) {
                app.registry.do_send(Leave { session, room });
            }
            fresh(&app)
        }
    }
}

impl Actor for Session {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let settings = &self.app.settings;
        self.app.metrics.connections.inc();
        self.app.registry.do_send(Register {
            session: self.id,
            deliver: ctx.address().recipient(),
            shutdown: ctx.address().recipient(),
        });
        ctx.text(engine::encode_open(&engine::Open {
            sid: &self.engine_sid,
            upgrades: &[],
            ping_interval: settings.ping_interval.as_millis() as u64,
            ping_timeout: settings.ping_timeout.as_millis() as u64,
            max_payload: settings.max_payload,
        }));
        ctx.run_interval(settings.ping_interval, |act, ctx| act.ping(ctx));
        ctx.run_later(settings.connect_timeout, |act, ctx| {
            if matches!(act.state, State::Handshake) {
                act.close(ctx, reason::CONNECT_TIMEOUT, ws::CloseCode::Policy);
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.app.registry.do_send(Unregister { session: self.id });
        if let Some(identity) = self.identity() {
            self.app
                .presence
                .do_send(presence::Disconnected(identity.user_id.clone()));
        }
        self.app.metrics.connections.dec();
        self.app
            .metrics
            .disconnects
            .with_label_values(&[self.close_reason])
            .inc();
        log::debug!(
            "session {} ({:?}) closed: {}",
            self.engine_sid,
            self.identity().map(|i| i.user_id.to_string()),
            self.close_reason
        );
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Session {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        match item {
            Ok(ws::Message::Text(text)) => self.on_text(&text, ctx),
            Ok(ws::Message::Binary(_)) => self.on_binary(ctx),
            Ok(ws::Message::Continuation(item)) => self.on_fragment(item, ctx),
            Ok(ws::Message::Ping(bytes)) => ctx.pong(&bytes),
            Ok(ws::Message::Pong(_) | ws::Message::Nop) => {}
            Ok(ws::Message::Close(_)) => {
                self.close(ctx, reason::TRANSPORT_CLOSE, ws::CloseCode::Normal)
            }
            Err(ws::ProtocolError::Overflow) => {
                self.close(ctx, reason::PARSE_ERROR, ws::CloseCode::Size)
            }
            Err(err) => {
                log::debug!("session {}: websocket error: {err}", self.engine_sid);
                self.close(ctx, reason::TRANSPORT_ERROR, ws::CloseCode::Protocol);
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<Deliver> for Session {
    type Result = ();
    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        // Already replayed on recovery, or sent to several rooms this
        // connection is in: delivered once.
        if msg.offset <= self.replayed_upto || self.recent.contains(&msg.emission) {
            return;
        }
        self.remember(msg.emission);
        ctx.text(msg.frame);
    }
}

impl Handler<Flush> for Session {
    type Result = ();
    fn handle(&mut self, _: Flush, _: &mut Self::Context) {}
}

impl Handler<Shutdown> for Session {
    type Result = ();
    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        // A transport close (not a Socket.IO DISCONNECT) makes clients reconnect.
        self.close(ctx, reason::SHUTDOWN, ws::CloseCode::Restart);
    }
}
