//! One actor per connection: takes packets from its transport, decodes them,
//! authorizes, routes events, and writes packets back through a bounded
//! outbound queue. Transports: a WebSocket (websocket.rs links the engine's
//! connection task, [`crate::engine::websocket`], to the session) or
//! long-polling (polling.rs), which can upgrade to a WebSocket. endpoint.rs
//! reads the `/socket.io/` query and picks the transport.

mod directory;
mod endpoint;
mod guard;
mod outbound;
mod polling;
mod recent;
mod websocket;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytestring::ByteString;
use chrono::Utc;
use serde_json::{json, Value};

use crate::auth::{AuthError, Identity, Role};
use crate::broker::records::{self, Missed};
use crate::broker::{parse_offset, Claim, Records, RoomEvent};
use crate::error::{ok_ack, Code, Failure};
use crate::handlers::{self, Caller};
use crate::ids::{UserId, MAX_ID_LEN};
use crate::limits;
use crate::protocol::events::{self, ClientEvent, ServerEvent, KNOWN_EVENTS};
use crate::protocol::socket::{self, Packet, PacketType};
use crate::protocol::{engine, DecodeError};
use crate::rooms::presence;
use crate::rooms::registry::{Bind, JoinRoom, JoinRooms, LeaveRoom, Register, Unregister};
use crate::rooms::{Deliver, Flush, RoomKey, RoomLeft, SessionId, Shutdown};
use crate::state::{random_id, AppState};
use crate::timers::{Due, Kind, Timers};

pub use directory::Directory;
pub use endpoint::{socket_io, socket_io_post, upgrade};
pub use guard::on_accept;

use crate::engine::websocket::Transport;
use crate::limits::TokenBucket;
use guard::{rate_limited, retry_after_ms, HandshakeSlot};
use outbound::{Ending, Outbound, PollAnswer};
use recent::Recent;

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
/// How long a closed polling session waits for the GET that takes its
/// close packet.
const CLOSE_LINGER: Duration = Duration::from_secs(5);
/// Length of generated sids and pids.
const ID_LEN: usize = 20;

// The session's timers, in its thread's queue (crate::timers).
/// Engine.IO's ping, every `ping_interval`.
const PING: Kind = Kind::new(0);
/// The unanswered ping's deadline; its token is the ping's sequence number.
const PONG_DEADLINE: Kind = Kind::new(1);
/// The pre-CONNECT deadline.
const CONNECT_DEADLINE: Kind = Kind::new(2);
/// The token's expiry.
const EXPIRY: Kind = Kind::new(3);
/// The wait of a closed poller for its last GET.
const LINGER: Kind = Kind::new(4);

/// Why a connection closed, as the `souk_disconnects_total{reason}` label.
pub mod reason {
    pub use crate::engine::reason::{PARSE_ERROR, TRANSPORT_CLOSE, TRANSPORT_ERROR};
    pub const PING_TIMEOUT: &str = "ping timeout";
    pub const CONNECT_TIMEOUT: &str = "connect timeout";
    pub const CLIENT_DISCONNECT: &str = "client namespace disconnect";
    pub const TOKEN_EXPIRED: &str = "token expired";
    pub const UNAUTHORIZED: &str = "too many refused connects";
    pub const SHUTDOWN: &str = "server shutting down";
    pub const SLOW_CONSUMER: &str = "slow consumer";
    /// Every reason above: their series exist from the start (alerts and
    /// dashboards query some by name). Add a new reason here too.
    pub const ALL: &[&str] = &[
        TRANSPORT_CLOSE,
        TRANSPORT_ERROR,
        PARSE_ERROR,
        PING_TIMEOUT,
        CONNECT_TIMEOUT,
        CLIENT_DISCONNECT,
        TOKEN_EXPIRED,
        UNAUTHORIZED,
        SHUTDOWN,
        SLOW_CONSUMER,
    ];
}

/// One Engine.IO connection, on whichever transport.
pub struct Session {
    id: SessionId,
    engine_sid: String,
    app: Arc<AppState>,
    /// The node's open sessions, where this one is found by its sid.
    directory: Arc<Directory>,
    /// The token of an `Authorization: Bearer` upgrade header, if any.
    header_token: Option<String>,
    state: State,
    ping_seq: u64,
    awaiting_pong: Option<u64>,
    bad_frames_in_row: u32,
    failed_connects: u32,
    /// Opened by long-polling (and so may upgrade), not on a WebSocket.
    polling: bool,
    /// A long-polling POST is under way.
    posting: bool,
    /// CONNECT attempts and `auth:refresh` calls left (each checks a token).
    token_checks: TokenBucket,
    /// Its place among the sessions that have not CONNECTed, until it does.
    handshake: Option<HandshakeSlot>,
    out: Outbound,
    /// Events waiting for the one running to finish.
    queue: VecDeque<WaitingEvent>,
    /// Emission ids of the latest deliveries, to drop repeats.
    recent: Recent,
    /// The last offset replayed on recovery; live events up to it are repeats.
    replayed_upto: u64,
    /// The pid this socket is recovering, until its restore ends: a socket
    /// that goes meanwhile releases its claim on the pid's record.
    recovering: Option<String>,
    running: bool,
    /// Closed: the session takes nothing more in and ends soon.
    closing: bool,
    close_reason: &'static str,
    disconnect_counted: bool,
    timers: Timers,
}

enum State {
    /// Engine.IO is open; the client has not CONNECTed to `/` yet.
    Handshake,
    Connected(Connected),
}

struct Connected {
    identity: Identity,
}

/// A client event waiting its turn.
struct WaitingEvent {
    ack_id: Option<u64>,
    name: EventName,
    started: Instant,
    event: ClientEvent,
}

impl Session {
    fn new(
        app: Arc<AppState>,
        directory: Arc<Directory>,
        header_token: Option<String>,
        polling: bool,
        handshake: HandshakeSlot,
    ) -> Self {
        let max_outbound = app.settings.max_outbound;
        let token_checks = TokenBucket::full(app.settings.guard.token_checks, Instant::now());
        Session {
            id: app.next_session_id(),
            engine_sid: random_id(ID_LEN),
            app,
            directory,
            header_token,
            state: State::Handshake,
            ping_seq: 0,
            awaiting_pong: None,
            bad_frames_in_row: 0,
            failed_connects: 0,
            polling,
            posting: false,
            token_checks,
            handshake: Some(handshake),
            out: Outbound::new(max_outbound),
            queue: VecDeque::new(),
            recent: Recent::default(),
            replayed_upto: 0,
            recovering: None,
            running: false,
            closing: false,
            disconnect_counted: false,
            close_reason: reason::TRANSPORT_CLOSE,
            timers: Timers::detached(), // registered once started
        }
    }

    fn close(&mut self, ctx: &mut Context<Self>, reason: &'static str, ending: Ending) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.close_reason = reason;
        // A closing session may linger for its last GET; it no longer
        // holds a handshake place meanwhile.
        self.handshake = None;
        self.count_disconnect();
        if self.out.close(ending, reason) {
            ctx.stop();
        } else {
            // A poller's close packet waits for its next GET, briefly.
            self.timers.after(LINGER, CLOSE_LINGER);
        }
    }

    /// The client closed: nothing more goes to it, not even a close packet.
    fn closed_by_client(&mut self, ctx: &mut Context<Self>, reason: &'static str) {
        self.closing = true;
        self.close_reason = reason;
        self.count_disconnect();
        self.out.close(Ending::Normal, reason);
        ctx.stop();
    }

    /// Counts a tripped bound (`souk_limits_tripped_total{limit}`).
    fn trip(&self, limit: &str) {
        self.app
            .metrics
            .limits_tripped
            .with_label_values(&[limit])
            .inc();
    }

    /// Counts the connection's end once, by reason, when it is known.
    fn count_disconnect(&mut self) {
        if !self.disconnect_counted {
            self.disconnect_counted = true;
            self.app
                .metrics
                .disconnects
                .with_label_values(&[self.close_reason])
                .inc();
        }
    }

    /// Queues a packet for the client; one that lets too much pile up is closed.
    fn send(&mut self, ctx: &mut Context<Self>, frame: impl Into<ByteString>) {
        if self.out.push(frame.into()).is_err() {
            if !self.closing {
                self.trip("outbound_bytes");
            }
            self.close(ctx, reason::SLOW_CONSUMER, Ending::Overloaded);
        } else if self.polling && !self.out.on_websocket() {
            // Answer a waiting GET once this turn has queued all it will
            // (not after an upgrade: the WebSocket is woken by its backlog).
            ctx.notify(FlushPoll);
        }
    }

    fn ping(&mut self, ctx: &mut Context<Self>) {
        if self.awaiting_pong.is_some() {
            return; // the previous ping's timeout is still running
        }
        self.ping_seq += 1;
        let seq = self.ping_seq;
        self.awaiting_pong = Some(seq);
        self.send(ctx, engine::PING);
        let timeout = self.app.settings.ping_timeout;
        self.timers.after_with(PONG_DEADLINE, seq as u32, timeout);
    }

    /// An unanswered ping's deadline has passed.
    fn pong_overdue(&mut self, seq: u32, ctx: &mut Context<Self>) {
        if self.awaiting_pong.map(|awaited| awaited as u32) == Some(seq) {
            self.close(ctx, reason::PING_TIMEOUT, Ending::Away);
        }
    }

    fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        let packet = match engine::decode(text) {
            Ok(packet) => packet,
            Err(err) => return self.bad_frame(err, ctx),
        };
        match packet {
            engine::ClientPacket::Close => self.closed_by_client(ctx, reason::TRANSPORT_CLOSE),
            engine::ClientPacket::Ping(data) => {
                self.bad_frames_in_row = 0;
                self.send(ctx, engine::encode_pong(data));
            }
            engine::ClientPacket::Pong(_) => {
                self.bad_frames_in_row = 0;
                self.awaiting_pong = None;
                self.timers.cancel(PONG_DEADLINE);
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
    fn bad_frame(&mut self, err: DecodeError, ctx: &mut Context<Self>) {
        self.bad_frames_in_row += 1;
        self.app.metrics.bad_frames.inc();
        let failure = Failure::new(Code::BadRequest, format!("malformed frame: {err}"));
        self.send_server_error(&failure, None, ctx);
        if self.bad_frames_in_row >= MAX_BAD_FRAMES_IN_ROW {
            self.close(ctx, reason::PARSE_ERROR, Ending::Protocol);
        }
    }

    fn on_packet(&mut self, packet: Packet<'_>, ctx: &mut Context<Self>) {
        let root = packet.namespace == "/";
        match packet.kind {
            PacketType::Connect if root => self.on_connect(packet.data, ctx),
            PacketType::Connect => {
                let body = json!({ "message": "Invalid namespace" });
                self.send(ctx, socket::encode_connect_error(packet.namespace, &body));
            }
            PacketType::Disconnect if root => self.closed_by_client(ctx, reason::CLIENT_DISCONNECT),
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

    fn on_connect(&mut self, auth: Option<Value>, ctx: &mut Context<Self>) {
        if matches!(self.state, State::Connected(_)) {
            let failure = Failure::new(Code::BadRequest, "already connected");
            return self.send_server_error(&failure, None, ctx);
        }
        if let Err(wait) = self.take_token_check() {
            let data = json!({ "code": "rate_limited", "retryAfterMs": retry_after_ms(wait) });
            return self.refuse_connect(json!({ "message": "rate_limited", "data": data }), ctx);
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
                let body = json!({ "message": "unauthorized", "data": { "code": err.code() } });
                return self.refuse_connect(body, ctx);
            }
        };
        // A reconnect within the recovery window names its last socket.
        let previous = auth.as_ref().and_then(|auth| {
            let pid = auth.get("pid")?.as_str()?;
            let offset = parse_offset(auth.get("offset")?.as_str()?)?;
            // Only the shape souk gives pids goes near the broker.
            let ours = pid.len() == ID_LEN && pid.bytes().all(|b| b.is_ascii_alphanumeric());
            ours.then(|| (pid.to_owned(), offset))
        });
        self.recovering = previous.as_ref().map(|(pid, _)| pid.clone());
        let restore = restore(
            self.app.clone(),
            self.id,
            (identity.user_id.clone(), identity.role == Role::Admin),
            previous,
        );
        // Answer once this node follows the socket's rooms, so that nothing
        // sent to them after the answer is missed; then, as socket.io does,
        // replay what was missed.
        ctx.wait(restore.into_actor(self).map(|restored, session, ctx| {
            session.send(
                ctx,
                socket::encode_connect_ok(&random_id(ID_LEN), &restored.pid),
            );
            // Replayed packets count against the outbound bound like any
            // other: a client that does not read them is a slow consumer.
            for missed in &restored.missed {
                session.remember(missed.emission);
                session.send(ctx, missed.frame.clone());
            }
            session.replayed_upto = restored.missed.last().map_or(0, |m| m.offset);
            session.recovering = None;
        }));
        self.app
            .presence
            .do_send(presence::Connected(identity.user_id.clone()));
        log::debug!(
            "session {} connected as {}",
            self.engine_sid,
            identity.user_id
        );
        self.state = State::Connected(Connected { identity });
        self.handshake = None;
        self.timers.cancel(CONNECT_DEADLINE);
        self.arm_expiry();
    }

    /// Answers a refused CONNECT; too many close the connection.
    fn refuse_connect(&mut self, body: Value, ctx: &mut Context<Self>) {
        self.failed_connects += 1;
        self.send(ctx, socket::encode_connect_error("/", &body));
        if self.failed_connects >= MAX_FAILED_CONNECTS {
            self.close(ctx, reason::UNAUTHORIZED, Ending::Policy);
        }
    }

    /// Takes one of the socket's token checks (CONNECT attempts and
    /// `auth:refresh`), or says how long until one is there.
    fn take_token_check(&mut self) -> Result<(), Duration> {
        let rate = self.app.settings.guard.token_checks;
        let taken = self.token_checks.take(rate, 1.0, Instant::now());
        if taken.is_err() {
            self.trip("token_checks");
        }
        taken
    }

    /// Schedules the token-expiry disconnect for the current identity,
    /// replacing any earlier one.
    fn arm_expiry(&mut self) {
        let State::Connected(connected) = &self.state else {
            return;
        };
        let remaining = (connected.identity.expires_at - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        self.timers.after(EXPIRY, remaining.min(MAX_TIMER));
    }

    fn check_expiry(&mut self, ctx: &mut Context<Self>) {
        let State::Connected(connected) = &self.state else {
            return;
        };
        if Utc::now() < connected.identity.expires_at {
            return self.arm_expiry();
        }
        let failure = Failure::new(Code::Unauthorized, "token expired");
        let expired = ServerEvent::ServerError {
            code: "token_expired",
            message: failure.message,
            event: None,
        };
        self.send(ctx, expired.frame());
        self.send(ctx, socket::DISCONNECT);
        self.close(ctx, reason::TOKEN_EXPIRED, Ending::Policy);
    }

    fn on_event(&mut self, ack_id: Option<u64>, args: &[Value], ctx: &mut Context<Self>) {
        let started = Instant::now();
        let name = EventName::of(args);
        if !matches!(self.state, State::Connected(_)) {
            self.bad_frames_in_row += 1;
            let failure = Failure::new(Code::Unauthorized, "send CONNECT before events");
            return self.reply(ctx, ack_id, &name, Err(failure));
        }
        let event = match events::parse(args) {
            Ok(event) => event,
            Err(err) => return self.finish(ctx, ack_id, &name, started, Err(err.into())),
        };
        if let Some(identity) = self.identity() {
            let app = &self.app;
            let user = identity.user_id.as_str();
            if let Err(failure) = app.limiter.check(user, &event, &app.metrics) {
                return self.finish(ctx, ack_id, &name, started, Err(failure));
            }
        }
        if self.queue.len() >= MAX_QUEUED_EVENTS {
            let failure = limits::rate_limited("too many events waiting", QUEUE_RETRY_AFTER_MS);
            return self.finish(ctx, ack_id, &name, started, Err(failure));
        }
        if let ClientEvent::AuthRefresh { token } = &event {
            // The new identity holds at once, for the expiry and every
            // event sent after; the rooms are checked against it in turn,
            // after the events sent before (a join among them included),
            // and the answer waits for that check.
            if let Err(failure) = self.refresh(token) {
                return self.finish(ctx, ack_id, &name, started, Err(failure));
            }
        }
        self.queue.push_back(WaitingEvent {
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
    fn run_next(&mut self, ctx: &mut Context<Self>) {
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
        let WaitingEvent {
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
        ctx: &mut Context<Self>,
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

    /// `auth:refresh`: a new token for the same user moves the expiry and
    /// may change the role (its rooms are then checked again, see
    /// `handlers::reauthorize`). Token checks are rate limited per socket.
    fn refresh(&mut self, token: &str) -> Result<(), Failure> {
        self.take_token_check()
            .map_err(|wait| rate_limited("too many token checks on this socket", wait))?;
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
        connected.identity = identity;
        self.arm_expiry();
        Ok(())
    }

    /// Answers an event: through its ack id, or as `server:error` when it
    /// failed without one.
    fn reply(
        &mut self,
        ctx: &mut Context<Self>,
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
            (Some(id), Ok(fields)) => self.send(ctx, socket::encode_ack(id, &ok_ack(fields))),
            (Some(id), Err(failure)) => self.send(ctx, socket::encode_ack(id, &failure.ack())),
            (None, Ok(_)) => {}
            (None, Err(failure)) => self.send_server_error(&failure, event.text.as_deref(), ctx),
        }
    }

    fn send_server_error(
        &mut self,
        failure: &Failure,
        event: Option<&str>,
        ctx: &mut Context<Self>,
    ) {
        let error = ServerEvent::ServerError {
            code: failure.code.as_str(),
            message: failure.message.clone(),
            event: event.map(str::to_owned),
        };
        self.send(ctx, error.frame());
    }

    fn on_binary(&mut self, ctx: &mut Context<Self>) {
        let failure = Failure::new(Code::Unsupported, "binary frames are not supported");
        self.send_server_error(&failure, None, ctx);
    }

    /// Notes a delivered emission, to drop its other copies.
    fn remember(&mut self, emission: u64) {
        self.recent.remember(emission);
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

/// How a socket names itself as the owner of its recovery record.
fn owner_name(app: &AppState, session: SessionId) -> String {
    format!("{}/{session}", app.settings.node_id)
}

/// What a CONNECT found of the socket's past.
struct Restored {
    pid: String,
    missed: Vec<RoomEvent>,
}

/// Joins the user's room and, when `previous` is a socket of the same user
/// whose record and logs are still whole, the rooms of it the user may
/// still be in (checked again: a booking may have been taken from them, a
/// listing made private); answers the events it missed there. Otherwise the
/// socket starts afresh under a new pid.
async fn restore(
    app: Arc<AppState>,
    session: SessionId,
    (user, admin): (UserId, bool),
    previous: Option<(String, u64)>,
) -> Restored {
    let join = |room: RoomKey| JoinRoom {
        session,
        user: user.clone(),
        admin,
        room,
    };
    // Best effort: a socket is accepted even when the broker is slow to confirm.
    let _ = app.registry.send(join(RoomKey::User(user.clone()))).await;
    let owner = owner_name(&app, session);
    let fresh = |app: &AppState| {
        let pid = random_id(ID_LEN);
        app.registry.do_send(Bind {
            session,
            pid: pid.clone(),
            user: user.clone(),
            owner: owner.clone(),
        });
        Restored {
            pid,
            missed: Vec::new(),
        }
    };
    let Some((pid, offset)) = previous else {
        return fresh(&app);
    };
    // One live socket per pid: the claim takes the record from the socket
    // that held it, and a second socket recovering it meanwhile is refused.
    let claimed = app
        .broker
        .claim(&pid, user.as_str(), &owner, Utc::now())
        .await;
    let record = match claimed {
        Ok(Claim::Got(record)) => record,
        Ok(Claim::Busy) => {
            app.metrics
                .limits_tripped
                .with_label_values(&["session_per_pid"])
                .inc();
            return fresh(&app);
        }
        _ => return fresh(&app),
    };
    let rooms: Vec<RoomKey> = record
        .rooms
        .iter()
        .filter_map(|r| RoomKey::parse(r))
        .collect();
    let who = user.clone();
    let rooms = match app
        .db
        .run(move |conn| handlers::rejoinable(conn, &who, admin, rooms))
        .await
    {
        Ok(rooms) => rooms,
        // Unchecked rooms are not rejoined.
        Err(_) => {
            let _ = app.broker.release(&pid, &owner).await;
            return fresh(&app);
        }
    };
    let all = JoinRooms {
        session,
        user: user.clone(),
        admin,
        rooms: rooms.clone(),
    };
    let followed = matches!(app.registry.send(all).await, Ok(Ok(())));
    let max_replay = app
        .settings
        .quotas
        .max_replay_bytes(app.settings.max_outbound);
    let missed = if followed {
        records::missed(&app.broker, &rooms, offset, &user, max_replay).await
    } else {
        // Events of rooms not followed may be missed: as good as trimmed.
        Ok(Missed::Trimmed)
    };
    if matches!(missed, Ok(Missed::TooLarge)) {
        // Past the bound the socket starts fresh (`recovered` false).
        app.metrics
            .limits_tripped
            .with_label_values(&["replay_bytes"])
            .inc();
    }
    match missed {
        Ok(Missed::Events(missed)) => {
            app.registry.do_send(Bind {
                session,
                pid: pid.clone(),
                user: user.clone(),
                owner: owner.clone(),
            });
            Restored { pid, missed }
        }
        _ => {
            // Not recoverable: a fresh socket is in its user room only, and
            // the pid's next recovery need not wait for this claim's hold.
            for room in rooms.into_iter().filter(|r| !matches!(r, RoomKey::User(_))) {
                app.registry.do_send(LeaveRoom { session, room });
            }
            let _ = app.broker.release(&pid, &owner).await;
            fresh(&app)
        }
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.app.metrics.connections.inc();
        self.directory.insert(&self.engine_sid, ctx.address());
        self.app.registry.do_send(Register {
            session: self.id,
            deliver: ctx.address().recipient(),
            shutdown: ctx.address().recipient(),
            left: ctx.address().recipient(),
        });
        let settings = &self.app.settings;
        let upgrades: &[&str] = if self.polling { &["websocket"] } else { &[] };
        let open = engine::encode_open(&engine::Open {
            sid: &self.engine_sid,
            upgrades,
            ping_interval: settings.ping_interval.as_millis() as u64,
            ping_timeout: settings.ping_timeout.as_millis() as u64,
            max_payload: settings.max_payload,
        });
        let (ping_interval, connect_timeout) = (settings.ping_interval, settings.connect_timeout);
        self.send(ctx, open);
        self.timers = Timers::register(ctx.address().downgrade().recipient());
        self.timers.every(PING, ping_interval);
        self.timers.after(CONNECT_DEADLINE, connect_timeout);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(pid) = self.recovering.take() {
            let (app, owner) = (self.app.clone(), owner_name(&self.app, self.id));
            actix::spawn(async move {
                let _ = app.broker.release(&pid, &owner).await;
            });
        }
        self.out.close(Ending::Normal, self.close_reason);
        self.directory.remove(&self.engine_sid);
        self.app.registry.do_send(Unregister { session: self.id });
        if let Some(identity) = self.identity() {
            self.app
                .presence
                .do_send(presence::Disconnected(identity.user_id.clone()));
        }
        self.app.metrics.connections.dec();
        self.count_disconnect();
        log::debug!(
            "session {} ({:?}) closed: {}",
            self.engine_sid,
            self.identity().map(|i| i.user_id.to_string()),
            self.close_reason
        );
    }
}

/// A packet from the client's WebSocket.
#[derive(Message)]
#[rtype(result = "()")]
enum ClientFrame {
    Text(ByteString),
    Binary,
}

impl Handler<ClientFrame> for Session {
    type Result = ();
    fn handle(&mut self, msg: ClientFrame, ctx: &mut Self::Context) {
        match msg {
            ClientFrame::Text(text) => self.on_text(&text, ctx),
            ClientFrame::Binary => self.on_binary(ctx),
        }
    }
}

/// A long-polling POST body: packets separated by the record separator.
#[derive(Message)]
#[rtype(result = "Result<(), Failure>")]
struct Posted(String);

impl Handler<Posted> for Session {
    type Result = Result<(), Failure>;
    fn handle(&mut self, Posted(body): Posted, ctx: &mut Self::Context) -> Self::Result {
        if self.closing {
            return Err(Failure::new(Code::BadRequest, "the session is closed"));
        }
        if !self.polling || self.out.on_websocket() {
            return Err(Failure::new(
                Code::BadRequest,
                "this session does not poll: it has upgraded or was opened on a WebSocket",
            ));
        }
        let max = self.app.settings.guard.max_post_packets;
        if engine::split_payload(&body).nth(max).is_some() {
            self.trip("post_packets");
            self.close(ctx, reason::PARSE_ERROR, Ending::Protocol);
            return Err(Failure::new(
                Code::PayloadTooLarge,
                format!("a POST may carry at most {max} packets"),
            ));
        }
        for packet in engine::split_payload(&body) {
            // Nothing more is read once the session closes (a lingering
            // poller's session still runs, waiting for its last GET).
            if self.closing || ctx.state() != ActorState::Running {
                break;
            }
            self.on_text(packet, ctx);
        }
        Ok(())
    }
}

/// A long-polling POST begins: refused, and the session ended, when
/// another is under way on the same sid (as Engine.IO's reference server
/// does: "data request overlap from client").
#[derive(Message)]
#[rtype(result = "Result<(), Failure>")]
struct PostStarted;

impl Handler<PostStarted> for Session {
    type Result = Result<(), Failure>;
    fn handle(&mut self, _: PostStarted, ctx: &mut Self::Context) -> Self::Result {
        if self.posting && !self.closing {
            self.trip("overlapping_post");
            self.close(ctx, reason::TRANSPORT_ERROR, Ending::Protocol);
            return Err(Failure::new(
                Code::BadRequest,
                "overlapping POSTs on one sid: the session is closed",
            ));
        }
        self.posting = true;
        Ok(())
    }
}

/// A long-polling POST has ended, however it ended.
#[derive(Message)]
#[rtype(result = "()")]
struct PostEnded;

impl Handler<PostEnded> for Session {
    type Result = ();
    fn handle(&mut self, _: PostEnded, _: &mut Self::Context) {
        self.posting = false;
    }
}

/// A long-polling GET, answered when there is something to send.
#[derive(Message)]
#[rtype(result = "()")]
struct Poll(tokio::sync::oneshot::Sender<PollAnswer>);

impl Handler<Poll> for Session {
    type Result = ();
    fn handle(&mut self, Poll(answer): Poll, ctx: &mut Self::Context) {
        match self.out.poll(answer) {
            Ok(true) => ctx.stop(), // the close packet went out
            Ok(false) => {}
            Err(failure) => {
                log::debug!("session {}: {}", self.engine_sid, failure.message);
                self.close(ctx, reason::TRANSPORT_ERROR, Ending::Protocol);
            }
        }
    }
}

/// Answers a waiting long-polling GET with what this turn queued.
#[derive(Message)]
#[rtype(result = "()")]
struct FlushPoll;

impl Handler<FlushPoll> for Session {
    type Result = ();
    fn handle(&mut self, _: FlushPoll, ctx: &mut Self::Context) {
        if self.out.flush_poll() {
            ctx.stop(); // the close packet went out
        }
    }
}

/// A WebSocket answered the upgrade probe of a polling session.
#[derive(Message)]
#[rtype(result = "()")]
struct Probe(Transport);

impl Handler<Probe> for Session {
    type Result = ();
    fn handle(&mut self, Probe(transport): Probe, _: &mut Self::Context) {
        self.out.probe(transport);
    }
}

/// A WebSocket becomes the session's transport: at the start, or when the
/// client completes an upgrade from polling.
#[derive(Message)]
#[rtype(result = "()")]
struct Attach(Transport);

impl Handler<Attach> for Session {
    type Result = ();
    fn handle(&mut self, Attach(transport): Attach, ctx: &mut Self::Context) {
        if self.out.attach(transport).is_err() {
            self.close(ctx, reason::SLOW_CONSUMER, Ending::Overloaded);
        }
    }
}

/// Ends the session because its transport failed.
#[derive(Message)]
#[rtype(result = "()")]
struct End(&'static str);

impl Handler<End> for Session {
    type Result = ();
    fn handle(&mut self, End(reason): End, ctx: &mut Self::Context) {
        self.close(ctx, reason, Ending::Protocol);
    }
}

/// A WebSocket has ended.
#[derive(Message)]
#[rtype(result = "()")]
struct TransportClosed {
    transport: Transport,
    reason: &'static str,
}

impl Handler<TransportClosed> for Session {
    type Result = ();
    fn handle(&mut self, msg: TransportClosed, ctx: &mut Self::Context) {
        let unwritten = self.out.unwritten();
        if self.out.transport_closed(&msg.transport) {
            if unwritten > 0 {
                // The client stopped reading until the kernel gave up on
                // the connection (TCP_USER_TIMEOUT), or vanished meanwhile.
                self.trip("stalled_write");
                log::info!(
                    "session {}: its WebSocket ended with {unwritten} packets unwritten",
                    self.engine_sid
                );
            }
            self.close_reason = msg.reason;
            ctx.stop();
        }
    }
}

impl Handler<Due> for Session {
    type Result = ();
    fn handle(&mut self, Due { kind, token }: Due, ctx: &mut Self::Context) {
        match kind {
            PING => self.ping(ctx),
            PONG_DEADLINE => self.pong_overdue(token, ctx),
            CONNECT_DEADLINE if matches!(self.state, State::Handshake) => {
                self.trip("connect_timeout");
                self.close(ctx, reason::CONNECT_TIMEOUT, Ending::Policy);
            }
            EXPIRY => self.check_expiry(ctx),
            LINGER => ctx.stop(),
            _ => {}
        }
    }
}

impl Handler<Deliver> for Session {
    type Result = ();
    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        // Already replayed on recovery, or sent to several rooms this
        // connection is in: delivered once.
        if msg.offset <= self.replayed_upto || self.recent.contains(msg.emission) {
            return;
        }
        self.remember(msg.emission);
        self.send(ctx, msg.frame);
    }
}

impl Handler<RoomLeft> for Session {
    type Result = ();
    fn handle(&mut self, msg: RoomLeft, ctx: &mut Self::Context) {
        let left = ServerEvent::RoomLeft {
            room: msg.room.to_string(),
            reason: msg.reason,
        };
        self.send(ctx, left.frame());
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
        self.close(ctx, reason::SHUTDOWN, Ending::Restart);
    }
}
