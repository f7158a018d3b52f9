//! Socket.IO: one actor per connection. It owns the connection's Engine.IO
//! layer ([`crate::engine::eio::Engine`]: sid, heartbeat, transports,
//! upgrade, the bounded outbound queue, close) as a plain struct, feeds it
//! what arrives and the timers it armed, and does what it answers. Above
//! it, the session takes the Socket.IO packets: CONNECT with its token and
//! the token's expiry, the pre-CONNECT deadline, acks, the queue of events
//! (routed to the handlers and room actors), recovery and its rooms.
//! websocket.rs and polling.rs carry the transports' messages from the
//! engine's tasks and requests to the actor; endpoint.rs reads the
//! `/socket.io/` query and picks the transport.

mod directory;
mod endpoint;
mod guard;
mod polling;
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
use crate::error::{Code, Failure};
use crate::handlers::{self, Caller};
use crate::ids::{UserId, MAX_ID_LEN};
use crate::limits;
use crate::protocol::events::{self, ClientEvent, ServerEvent, KNOWN_EVENTS};
use crate::protocol::socket::{self, Packet, PacketType};
use crate::protocol::DecodeError;
use crate::rooms::mailslot::{Mailslot, Overflowed};
use crate::rooms::presence;
use crate::rooms::registry::{Bind, JoinRoom, JoinRooms, LeaveRoom, Register, Unregister};
use crate::rooms::{Deliver, Flush, Notice, RoomKey, RoomLeft, SessionId};
use crate::state::{random_id, AppState};
use crate::timers::{Due, Kind, Timers};

pub use directory::Directory;
pub use endpoint::{socket_io, socket_io_post, SocketIo};
pub use guard::on_accept;

use crate::engine::eio::{self, Closed, Ending, Engine, PostRefused, Schedule, Step, Timer};
use crate::engine::websocket::Transport;
use crate::limits::TokenBucket;
use guard::{rate_limited, retry_after_ms, HandshakeSlot};

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
/// Length of generated sids and pids.
const ID_LEN: usize = 20;

// The session's timers, in its thread's queue (crate::timers): the
// engine's three, then the session's own.
/// Engine.IO's ping ([`Timer::Ping`]).
const PING: Kind = Kind::new(0);
/// The unanswered ping's deadline ([`Timer::PongDeadline`]).
const PONG_DEADLINE: Kind = Kind::new(1);
/// The pre-CONNECT deadline.
const CONNECT_DEADLINE: Kind = Kind::new(2);
/// The token's expiry.
const EXPIRY: Kind = Kind::new(3);
/// A closed poller's wait for its last GET ([`Timer::Linger`]).
const LINGER: Kind = Kind::new(4);

/// The engine arms its timers in the session's.
impl Schedule for Timers {
    fn every(&self, timer: Timer, period: Duration) {
        Timers::every(self, kind_of(timer), period);
    }
    fn after(&self, timer: Timer, token: u32, delay: Duration) {
        self.after_with(kind_of(timer), token, delay);
    }
    fn cancel(&self, timer: Timer) {
        Timers::cancel(self, kind_of(timer));
    }
}

/// The session's kind for one of the engine's timers.
fn kind_of(timer: Timer) -> Kind {
    match timer {
        Timer::Ping => PING,
        Timer::PongDeadline => PONG_DEADLINE,
        Timer::Linger => LINGER,
    }
}

/// The engine's timer of that kind, if it is one of the engine's.
fn engine_timer(kind: Kind) -> Option<Timer> {
    [Timer::Ping, Timer::PongDeadline, Timer::Linger]
        .into_iter()
        .find(|timer| kind_of(*timer) == kind)
}

/// Why a connection closed, as the `souk_disconnects_total{reason}` label.
pub mod reason {
    pub use crate::engine::reason::{
        PARSE_ERROR, PING_TIMEOUT, SLOW_CONSUMER, TRANSPORT_CLOSE, TRANSPORT_ERROR,
    };
    pub const CONNECT_TIMEOUT: &str = "connect timeout";
    pub const CLIENT_DISCONNECT: &str = "client namespace disconnect";
    pub const TOKEN_EXPIRED: &str = "token expired";
    pub const UNAUTHORIZED: &str = "too many refused connects";
    pub const SHUTDOWN: &str = "server shutting down";
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

/// One Socket.IO connection, over its Engine.IO layer.
pub struct Session {
    id: SessionId,
    /// Engine.IO: sid, heartbeat, transports, the outbound queue.
    engine: Engine,
    app: Arc<AppState>,
    /// The node's open sessions, where this one is found by its sid.
    directory: Arc<Directory>,
    /// The token of an `Authorization: Bearer` upgrade header, if any.
    header_token: Option<String>,
    state: State,
    /// Frames that did not decode, as Engine.IO or as Socket.IO, in a row.
    bad_frames_in_row: u32,
    failed_connects: u32,
    /// CONNECT attempts and `auth:refresh` calls left (each checks a token).
    token_checks: TokenBucket,
    /// Its place among the sessions that have not CONNECTed, until it does.
    handshake: Option<HandshakeSlot>,
    /// Events waiting for the one running to finish.
    queue: VecDeque<WaitingEvent>,
    /// Where rooms put this connection's frames: straight into its
    /// transport (WebSocket or long-polling queue) once it may, through the
    /// mailbox otherwise. It holds the window of recent emissions that
    /// drops repeats.
    mailslot: Arc<Mailslot>,
    /// The CONNECT is answered (and what was missed replayed): room frames
    /// may go to the transport directly.
    answered: bool,
    /// The pid this socket is recovering, until its restore ends: a socket
    /// that goes meanwhile releases its claim on the pid's record.
    recovering: Option<String>,
    running: bool,
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
        ctx: &mut Context<Self>,
    ) -> Self {
        let engine = Engine::new(&random_id(ID_LEN), polling, app.settings.max_outbound);
        let token_checks = TokenBucket::full(app.settings.guard.token_checks, Instant::now());
        Session {
            id: app.next_session_id(),
            engine,
            app,
            directory,
            header_token,
            state: State::Handshake,
            bad_frames_in_row: 0,
            failed_connects: 0,
            token_checks,
            handshake: Some(handshake),
            queue: VecDeque::new(),
            mailslot: Arc::new(Mailslot::new(
                ctx.address().recipient(),
                ctx.address().recipient(),
            )),
            answered: false,
            recovering: None,
            running: false,
            disconnect_counted: false,
            close_reason: reason::TRANSPORT_CLOSE,
            timers: Timers::detached(), // registered once started
        }
    }

    fn close(&mut self, ctx: &mut Context<Self>, reason: &'static str, ending: Ending) {
        if self.engine.is_closing() {
            return;
        }
        self.mailslot.direct_to(None);
        self.close_reason = reason;
        // A closing session may linger for its last GET; it no longer
        // holds a handshake place meanwhile.
        self.handshake = None;
        self.count_disconnect();
        if self.engine.close(ending, reason, &self.timers) == Some(Closed::Now) {
            ctx.stop();
        }
    }

    /// The client closed: nothing more goes to it, not even a close packet.
    fn closed_by_client(&mut self, ctx: &mut Context<Self>, reason: &'static str) {
        self.mailslot.direct_to(None);
        self.close_reason = reason;
        self.count_disconnect();
        self.engine.end(reason);
        ctx.stop();
    }

    /// Does what the engine asked for. A Socket.IO packet is handled by
    /// the caller ([`Session::on_text`]); here it is ignored.
    fn apply(&mut self, step: Step<'_>, ctx: &mut Context<Self>) {
        match step {
            Step::Done | Step::Message(_) => {}
            Step::Overflow => {
                if !self.engine.is_closing() {
                    self.trip("outbound_bytes");
                }
                self.close(ctx, reason::SLOW_CONSUMER, Ending::Overloaded);
            }
            Step::Malformed(err) => self.bad_frame(err, ctx),
            Step::ClientClosed => self.closed_by_client(ctx, reason::TRANSPORT_CLOSE),
            Step::Close(reason, ending) => self.close(ctx, reason, ending),
            Step::Stop => ctx.stop(),
        }
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
        let step = self.engine.send(frame.into());
        self.apply(step, ctx);
    }

    /// A frame from the client: Engine.IO's, handled by the engine, or a
    /// Socket.IO packet.
    fn on_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        match self.engine.on_text(text, &self.timers) {
            Step::Message(data) => match socket::decode(data) {
                Ok(packet) => {
                    self.bad_frames_in_row = 0;
                    self.on_packet(packet, ctx);
                }
                Err(err) => self.bad_frame(err, ctx),
            },
            step @ (Step::Malformed(_) | Step::ClientClosed) => self.apply(step, ctx),
            step => {
                self.bad_frames_in_row = 0;
                self.apply(step, ctx);
            }
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
                session.send(ctx, missed.frame.clone());
            }
            session.mailslot.replayed(
                restored.missed.iter().map(|m| m.emission),
                restored.missed.last().map_or(0, |m| m.offset),
            );
            session.recovering = None;
            session.answered = true;
            session.direct_delivery();
        }));
        self.app
            .presence
            .do_send(presence::Connected(identity.user_id.clone()));
        log::debug!(
            "session {} connected as {}",
            self.engine.sid(),
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
        outcome: Result<handlers::Answer, Failure>,
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
        outcome: Result<handlers::Answer, Failure>,
    ) {
        let result = if outcome.is_ok() { "ok" } else { "error" };
        self.app
            .metrics
            .events
            .with_label_values(&[event.label, result])
            .inc();
        match (ack_id, outcome) {
            (Some(id), Ok(answer)) => self.send(ctx, socket::encode_ack(id, &answer.ack())),
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

    /// Lets rooms put frames straight into the transport (long-polling's
    /// queue, or the WebSocket once one carries the session) once its
    /// CONNECT is answered; stops them when it closes.
    fn direct_delivery(&self) {
        let direct = self.answered && !self.engine.is_closing();
        self.mailslot
            .direct_to(self.engine.outlet().filter(|_| direct));
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

/// The node's Engine.IO settings.
fn engine_config(app: &AppState) -> eio::Config {
    let settings = &app.settings;
    eio::Config {
        ping_interval: settings.ping_interval,
        ping_timeout: settings.ping_timeout,
        max_payload: settings.max_payload,
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
        self.directory.insert(
            self.engine.sid(),
            ctx.address().downgrade(),
            self.engine.long_poll(),
        );
        self.app.registry.do_send(Register {
            session: self.id,
            mailslot: self.mailslot.clone(),
            notices: ctx.address().recipient(),
        });
        self.timers = Timers::register(ctx.address().downgrade().recipient());
        let step = self.engine.open(&engine_config(&self.app), &self.timers);
        self.apply(step, ctx);
        self.timers
            .after(CONNECT_DEADLINE, self.app.settings.connect_timeout);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(pid) = self.recovering.take() {
            let (app, owner) = (self.app.clone(), owner_name(&self.app, self.id));
            actix::spawn(async move {
                let _ = app.broker.release(&pid, &owner).await;
            });
        }
        self.mailslot.direct_to(None);
        self.engine.end(self.close_reason);
        self.directory.remove(self.engine.sid());
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
            self.engine.sid(),
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
        let max = self.app.settings.guard.max_post_packets;
        let packets = match self.engine.posted(&body, max) {
            Ok(packets) => packets,
            Err(PostRefused::TooManyPackets) => {
                self.trip("post_packets");
                self.close(ctx, reason::PARSE_ERROR, Ending::Protocol);
                return Err(Failure::new(
                    Code::PayloadTooLarge,
                    format!("a POST may carry at most {max} packets"),
                ));
            }
            Err(PostRefused::Closed) => {
                return Err(Failure::new(Code::BadRequest, "the session is closed"))
            }
            Err(PostRefused::NotPolling | PostRefused::Overlapping) => {
                return Err(Failure::new(Code::BadRequest, eio::longpoll::NOT_POLLING))
            }
        };
        for packet in packets {
            // Nothing more is read once the session closes (a lingering
            // poller's session still runs, waiting for its last GET).
            if self.engine.is_closing() || ctx.state() != ActorState::Running {
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
        if self.engine.post_started().is_err() {
            self.trip("overlapping_post");
            self.close(ctx, reason::TRANSPORT_ERROR, Ending::Protocol);
            return Err(Failure::new(
                Code::BadRequest,
                "overlapping POSTs on one sid: the session is closed",
            ));
        }
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
        self.engine.post_ended();
    }
}

/// What a long-polling GET asks of the session, in the rare cases that ask
/// anything: it takes its answer straight from the session's queue
/// ([`eio::LongPoll::get`], in polling.rs), and only when that answers
/// another step than [`Step::Done`] is the session told, by this message:
/// [`Step::Stop`] when the GET took the close packet (a closed poller's
/// last GET: the session stops now rather than at the end of its linger),
/// [`Step::Close`] when it overlapped another GET.
#[derive(Message)]
#[rtype(result = "()")]
struct Stepped(Step<'static>);

impl Handler<Stepped> for Session {
    type Result = ();
    fn handle(&mut self, Stepped(step): Stepped, ctx: &mut Self::Context) {
        if let Step::Close(..) = step {
            log::debug!(
                "session {}: {}",
                self.engine.sid(),
                eio::longpoll::OVERLAPPING_POLL
            );
        }
        self.apply(step, ctx);
    }
}

/// A WebSocket answered the upgrade probe of a polling session.
#[derive(Message)]
#[rtype(result = "()")]
struct Probe(Transport);

impl Handler<Probe> for Session {
    type Result = ();
    fn handle(&mut self, Probe(transport): Probe, _: &mut Self::Context) {
        self.engine.probe(transport);
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
        let polled = self.engine.long_poll().is_some();
        let step = self.engine.attach(transport);
        self.apply(step, ctx);
        self.direct_delivery();
        if polled && self.engine.long_poll().is_none() {
            // Upgraded: GETs are refused from now on, and the directory
            // lets the queue go (it holds the WebSocket's handle).
            self.directory.stop_polling(self.engine.sid());
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
        if let Some(unwritten) = self.engine.transport_closed(&msg.transport) {
            if unwritten > 0 {
                // The client stopped reading until the kernel gave up on
                // the connection (TCP_USER_TIMEOUT), or vanished meanwhile.
                self.trip("stalled_write");
                log::info!(
                    "session {}: its WebSocket ended with {unwritten} packets unwritten",
                    self.engine.sid()
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
        if let Some(timer) = engine_timer(kind) {
            let config = engine_config(&self.app);
            let step = self.engine.on_timer(timer, token, &config, &self.timers);
            return self.apply(step, ctx);
        }
        match kind {
            CONNECT_DEADLINE if matches!(self.state, State::Handshake) => {
                self.trip("connect_timeout");
                self.close(ctx, reason::CONNECT_TIMEOUT, Ending::Policy);
            }
            EXPIRY => self.check_expiry(ctx),
            _ => {}
        }
    }
}

impl Handler<Deliver> for Session {
    type Result = ();
    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        // Already replayed on recovery, or sent to several rooms this
        // connection is in: delivered once (the mailslot keeps the window).
        if self.mailslot.take(&msg) {
            self.send(ctx, msg.frame);
        }
    }
}

impl Handler<Overflowed> for Session {
    type Result = ();
    fn handle(&mut self, _: Overflowed, ctx: &mut Self::Context) {
        // A room's frame tripped the bound: a WebSocket is closing (1013),
        // a long-polling queue takes nothing more but the close packet.
        if !self.engine.is_closing() {
            self.trip("outbound_bytes");
        }
        self.close(ctx, reason::SLOW_CONSUMER, Ending::Overloaded);
    }
}

impl Handler<Notice> for Session {
    type Result = ();
    fn handle(&mut self, notice: Notice, ctx: &mut Self::Context) {
        match notice {
            Notice::Left(RoomLeft { room, reason }) => {
                let left = ServerEvent::RoomLeft {
                    room: room.to_string(),
                    reason,
                };
                self.send(ctx, left.frame());
            }
            // A transport close (not a Socket.IO DISCONNECT) makes clients
            // reconnect.
            Notice::Shutdown => self.close(ctx, reason::SHUTDOWN, Ending::Restart),
        }
    }
}

impl Handler<Flush> for Session {
    type Result = ();
    fn handle(&mut self, _: Flush, _: &mut Self::Context) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every connection holds one: a field added here costs memory at
    /// every connection (issue 13's idle target).
    #[test]
    fn a_session_and_its_engine_stay_small() {
        let (session, engine) = (size_of::<Session>(), size_of::<Engine>());
        println!("size_of::<Session>() = {session}, of its Engine = {engine}");
        // 352 on main before the split (2026-12-04), 328 after, 272 once
        // the long-polling queue moved behind a shared handle (`LongPoll`,
        // allocated apart).
        assert!(session <= 272, "Session is {session} bytes");
    }

    /// The engine's timers and the session's own share one kind space:
    /// each of the engine's maps to a kind of its own and back.
    #[test]
    fn the_engine_timers_have_kinds_of_their_own() {
        for timer in [Timer::Ping, Timer::PongDeadline, Timer::Linger] {
            assert_eq!(engine_timer(kind_of(timer)), Some(timer));
        }
        assert_eq!(engine_timer(CONNECT_DEADLINE), None);
        assert_eq!(engine_timer(EXPIRY), None);
    }
}
