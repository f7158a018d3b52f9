//! The registry: finds or starts the actor of a room, knows which rooms each
//! connection is in, and removes a connection from all of them when it goes.

use std::collections::{HashMap, HashSet};

use actix::prelude::*;

use super::user::{self, UserRoom};
use super::{Deliver, RoomKey, SessionId, Shutdown};
use crate::metrics::Metrics;

/// The node's directory of rooms and connections.
pub struct Registry {
    /// Room actors are spread over these threads.
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    rooms: HashMap<RoomKey, RoomEntry>,
    sessions: HashMap<SessionId, SessionEntry>,
    metrics: Metrics,
}

struct RoomEntry {
    addr: Addr<UserRoom>,
    members: usize,
}

struct SessionEntry {
    deliver: Recipient<Deliver>,
    shutdown: Recipient<Shutdown>,
    rooms: HashSet<RoomKey>,
}

impl Registry {
    /// A registry whose rooms run on `arbiters` (on the caller's thread when empty).
    pub fn new(arbiters: Vec<ArbiterHandle>, metrics: Metrics) -> Self {
        Registry {
            arbiters,
            next_arbiter: 0,
            rooms: HashMap::new(),
            sessions: HashMap::new(),
            metrics,
        }
    }

    fn start_room(&mut self, key: &RoomKey) -> Addr<UserRoom> {
        let metrics = self.metrics.clone();
        self.metrics.rooms.with_label_values(&[key.kind()]).inc();
        match self
            .arbiters
            .get(self.next_arbiter % self.arbiters.len().max(1))
        {
            Some(arbiter) => {
                self.next_arbiter = self.next_arbiter.wrapping_add(1);
                UserRoom::start_in_arbiter(arbiter, move |_| UserRoom::new(metrics))
            }
            None => UserRoom::new(metrics).start(),
        }
    }

    fn leave(&mut self, session: SessionId, key: &RoomKey) {
        let Some(entry) = self.rooms.get_mut(key) else {
            return;
        };
        entry.addr.do_send(user::Leave { session });
        entry.members = entry.members.saturating_sub(1);
        if entry.members == 0 {
            self.rooms.remove(key);
            self.metrics.rooms.with_label_values(&[key.kind()]).dec();
        }
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
    pub room: RoomKey,
}

/// A connection leaves a room; leaving a room one is not in does nothing.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub session: SessionId,
    pub room: RoomKey,
}

/// Sends a frame to a room's members on this node.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Emit {
    pub room: RoomKey,
    pub frame: Deliver,
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
    fn handle(&mut self, msg: Join, _: &mut Context<Self>) {
        let Some(session) = self.sessions.get_mut(&msg.session) else {
            return; // the connection closed while its join was on the way
        };
        if !session.rooms.insert(msg.room.clone()) {
            return;
        }
        let deliver = session.deliver.clone();
        let addr = match self.rooms.get_mut(&msg.room) {
            Some(entry) => {
                entry.members += 1;
                entry.addr.clone()
            }
            None => {
                let addr = self.start_room(&msg.room);
                self.rooms.insert(
                    msg.room.clone(),
                    RoomEntry {
                        addr: addr.clone(),
                        members: 1,
                    },
                );
                addr
            }
        };
        addr.do_send(user::Join {
            session: msg.session,
            recipient: deliver,
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
            entry.addr.do_send(user::Broadcast(msg.frame));
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
