//! The registry: finds or starts the actor of a room, knows which rooms each
//! connection is in, removes a connection from all of them when it goes, and
//! retires rooms that stayed idle.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use actix::prelude::*;

use super::booking::{BookingRoom, TypingStart, TypingStop};
use super::room::{Broadcast, Join as RoomJoin, Leave as RoomLeave, Retire, Room, RoomState};
use super::{Deliver, RoomKey, SessionId, Shutdown};
use crate::ids::{BookingId, UserId};
use crate::metrics::Metrics;

/// The node's directory of rooms and connections.
pub struct Registry {
    /// Room actors are spread over these threads.
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    next_generation: u64,
    idle_after: Duration,
    rooms: HashMap<RoomKey, RoomEntry>,
    sessions: HashMap<SessionId, SessionEntry>,
    metrics: Metrics,
}

/// A live room: how to reach it, and how many local members it has.
struct RoomEntry {
    generation: u64,
    members: usize,
    join: Recipient<RoomJoin>,
    leave: Recipient<RoomLeave>,
    broadcast: Recipient<Broadcast>,
    retire: Recipient<Retire>,
    booking: Option<Addr<BookingRoom>>,
}

struct SessionEntry {
    deliver: Recipient<Deliver>,
    shutdown: Recipient<Shutdown>,
    rooms: HashSet<RoomKey>,
}

impl Registry {
    /// A registry whose rooms run on `arbiters` (on the caller's thread when
    /// empty) and retire after `idle_after` without members.
    pub fn new(arbiters: Vec<ArbiterHandle>, idle_after: Duration, metrics: Metrics) -> Self {
        Registry {
            arbiters,
            next_arbiter: 0,
            next_generation: 0,
            idle_after,
            rooms: HashMap::new(),
            sessions: HashMap::new(),
            metrics,
        }
    }

    /// The entry of a room, starting its actor when there is none.
    fn room(&mut self, key: &RoomKey, registry: Addr<Registry>) -> &mut RoomEntry {
        let Registry {
            arbiters,
            next_arbiter,
            next_generation,
            idle_after,
            rooms,
            metrics,
            ..
        } = self;
        rooms.entry(key.clone()).or_insert_with(|| {
            metrics.rooms.with_label_values(&[key.kind()]).inc();
            *next_generation += 1;
            let arbiter = arbiters.get(*next_arbiter % arbiters.len().max(1)).cloned();
            *next_arbiter = next_arbiter.wrapping_add(1);
            start_room(
                key,
                arbiter,
                registry,
                *next_generation,
                *idle_after,
                metrics.clone(),
            )
        })
    }

    fn leave(&mut self, session: SessionId, key: &RoomKey) {
        if let Some(entry) = self.rooms.get_mut(key) {
            entry.leave.do_send(RoomLeave { session });
            entry.members = entry.members.saturating_sub(1);
        }
    }
}

/// Starts the actor of a room on `arbiter` (or the current thread).
fn start_room(
    key: &RoomKey,
    arbiter: Option<ArbiterHandle>,
    registry: Addr<Registry>,
    generation: u64,
    idle: Duration,
    metrics: Metrics,
) -> RoomEntry {
    let key = key.clone();
    match key {
        RoomKey::Booking(_) => {
            let make = move |_: &mut Context<BookingRoom>| {
                Room::new(key, registry, generation, idle, metrics)
            };
            let addr = match arbiter {
                Some(arbiter) => BookingRoom::start_in_arbiter(&arbiter, make),
                None => BookingRoom::create(make),
            };
            entry(generation, &addr, Some(addr.clone()))
        }
        _ => {
            let make = move |_: &mut Context<Room<()>>| {
                Room::new(key, registry, generation, idle, metrics)
            };
            let addr = match arbiter {
                Some(arbiter) => Room::<()>::start_in_arbiter(&arbiter, make),
                None => Room::<()>::create(make),
            };
            entry(generation, &addr, None)
        }
    }
}

fn entry<S: RoomState>(
    generation: u64,
    addr: &Addr<Room<S>>,
    booking: Option<Addr<BookingRoom>>,
) -> RoomEntry {
    RoomEntry {
        generation,
        members: 0,
        join: addr.clone().recipient(),
        leave: addr.clone().recipient(),
        broadcast: addr.clone().recipient(),
        retire: addr.clone().recipient(),
        booking,
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
}

/// A new connection; it must be registered before it joins rooms.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Register {
    pub session: SessionId,
    pub deliver: Recipient<Deliver>,
    pub shutdown: Recipient<Shutdown>,
}

/// A connection has gone: it leaves every room.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unregister {
    pub session: SessionId,
}

/// A connection joins a room (already authorized by the caller).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Join {
    pub session: SessionId,
    pub user: UserId,
    pub room: RoomKey,
}

/// A connection leaves a room; leaving a room one is not in does nothing.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub session: SessionId,
    pub room: RoomKey,
}

/// Sends a frame to a room's members on this node, but `except`'s.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Emit {
    pub room: RoomKey,
    pub frame: Deliver,
    pub except: Option<UserId>,
}

/// Typing news for a booking's room, started if it is not live.
#[derive(Message)]
#[rtype(result = "()")]
pub enum Typing {
    Start {
        booking: BookingId,
        user: UserId,
        broadcast: bool,
    },
    Stop {
        booking: BookingId,
        user: UserId,
    },
}

/// A room found itself idle; retired if nothing joined meanwhile.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RoomIdle {
    pub room: RoomKey,
    pub generation: u64,
}

/// How many connections and rooms the node holds.
#[derive(Message)]
#[rtype(result = "Stats")]
pub struct GetStats;

/// Counts of the registry's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, MessageResponse)]
pub struct Stats {
    pub sessions: usize,
    pub rooms: usize,
}

/// Tells every connection that the node is shutting down; returns how many.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct ShutdownAll;

impl Handler<Register> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Register, _: &mut Context<Self>) {
        self.sessions.insert(
            msg.session,
            SessionEntry {
                deliver: msg.deliver,
                shutdown: msg.shutdown,
                rooms: HashSet::new(),
            },
        );
    }
}

impl Handler<Unregister> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Unregister, _: &mut Context<Self>) {
        if let Some(entry) = self.sessions.remove(&msg.session) {
            for room in &entry.rooms {
                self.leave(msg.session, room);
            }
        }
    }
}

impl Handler<Join> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Join, ctx: &mut Context<Self>) {
        let Some(session) = self.sessions.get_mut(&msg.session) else {
            return; // the connection closed while its join was on the way
        };
        if !session.rooms.insert(msg.room.clone()) {
            return;
        }
        let recipient = session.deliver.clone();
        let entry = self.room(&msg.room, ctx.address());
        entry.members += 1;
        entry.join.do_send(RoomJoin {
            session: msg.session,
            user: msg.user,
            recipient,
        });
    }
}

impl Handler<Leave> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Leave, _: &mut Context<Self>) {
        let was_member = self
            .sessions
            .get_mut(&msg.session)
            .is_some_and(|s| s.rooms.remove(&msg.room));
        if was_member {
            self.leave(msg.session, &msg.room);
        }
    }
}

impl Handler<Emit> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Emit, _: &mut Context<Self>) {
        if let Some(entry) = self.rooms.get(&msg.room) {
            entry.broadcast.do_send(Broadcast {
                frame: msg.frame,
                except: msg.except,
            });
        }
    }
}

impl Handler<Typing> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Typing, ctx: &mut Context<Self>) {
        let booking = match &msg {
            Typing::Start { booking, .. } | Typing::Stop { booking, .. } => booking.clone(),
        };
        let key = RoomKey::Booking(booking);
        if matches!(msg, Typing::Stop { .. }) && !self.rooms.contains_key(&key) {
            return; // no room, so no timer to stop
        }
        let Some(addr) = self.room(&key, ctx.address()).booking.clone() else {
            return;
        };
        match msg {
            Typing::Start {
                user, broadcast, ..
            } => addr.do_send(TypingStart { user, broadcast }),
            Typing::Stop { user, .. } => addr.do_send(TypingStop { user }),
        }
    }
}

impl Handler<RoomIdle> for Registry {
    type Result = ();
    fn handle(&mut self, msg: RoomIdle, _: &mut Context<Self>) {
        let idle = self
            .rooms
            .get(&msg.room)
            .is_some_and(|e| e.generation == msg.generation && e.members == 0);
        if idle {
            if let Some(entry) = self.rooms.remove(&msg.room) {
                entry.retire.do_send(Retire);
                self.metrics
                    .rooms
                    .with_label_values(&[msg.room.kind()])
                    .dec();
            }
        }
    }
}

impl Handler<GetStats> for Registry {
    type Result = Stats;
    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Stats {
        Stats {
            sessions: self.sessions.len(),
            rooms: self.rooms.len(),
        }
    }
}

impl Handler<ShutdownAll> for Registry {
    type Result = usize;
    fn handle(&mut self, _: ShutdownAll, _: &mut Context<Self>) -> usize {
        for session in self.sessions.values() {
            session.shutdown.do_send(Shutdown);
        }
        self.sessions.len()
    }
}
