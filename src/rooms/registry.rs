//! The registry: finds or starts the actor of a room, knows which rooms each
//! connection is in, removes a connection from all of them when it goes, and
//! retires rooms that stayed idle. It follows the rooms with members here
//! through the broker's [`Subscription`] and hands their events to them,
//! and tells the broker's [`RecordKeeper`] what each socket is in. What a
//! room kind does with its own messages (a booking's typing, a listing's
//! versions) is the kind's: the registry only routes them ([`ToRoom`]).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix::{WeakAddr, WeakRecipient};

use super::booking::BookingRoom;
use super::listing::ListingRoom;
use super::mailslot::Mailslot;
use super::room::{AddMember, Broadcast, GetMembers, RemoveMember, Retire, Room, RoomState};
use super::{left, Deliver, Notice, RoomKey, RoomLeft, SessionId};
use crate::broker::records::RecordKeeper;
use crate::broker::{Arrival, Fanout, RoomEvent, Subscription};
use crate::ids::{ListingId, UserId};
use crate::metrics::Metrics;
use crate::store::{bookings, Db};

/// How long a join waits for the broker to confirm the room is followed.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(5);
use crate::protocol::events::server::LISTING_UPDATED;

/// The node's directory of rooms and connections.
pub struct Registry {
    /// Follows the rooms with members here.
    subscription: Subscription,
    /// Keeps what each socket is in, for recovery.
    records: RecordKeeper,
    /// Checks who may still watch a listing that was made private.
    db: Db,
    /// Starts rooms' actors.
    starter: Starter,
    rooms: HashMap<RoomKey, RoomEntry>,
    sessions: HashMap<SessionId, SessionEntry>,
    /// Shared with every room: a room holds one pointer, not the struct.
    metrics: Arc<Metrics>,
    /// Rooms one socket may be in.
    max_rooms: usize,
}

/// A live room: how to reach it, and how many local members it has. One
/// address per room (each actix address clone allocates its own sender
/// state, ~100 bytes with the allocator's overhead: docs/BENCHMARKS.md,
/// issue 13).
struct RoomEntry {
    generation: u64,
    members: usize,
    actor: RoomActor,
}

/// A room's actor, or the members of a user room that has no actor yet.
///
/// Every connected user has a user room, and most never receive anything
/// while connected: the actor of a user room (a task, its context, its
/// mailbox, its members map and the address here: ~1.2 KiB) starts with
/// the room's first event, and until then the registry keeps its members
/// in a slice sized to them (one, mostly). Once started, the actor stays
/// until the room retires, as every room's does.
enum RoomActor {
    Started(KindAddr),
    Waiting(Box<[(SessionId, Arc<Mailslot>)]>),
}

impl RoomActor {
    fn started(&self) -> Option<&KindAddr> {
        match self {
            RoomActor::Started(kind) => Some(kind),
            RoomActor::Waiting(_) => None,
        }
    }
}

/// The typed address of a room: every kind takes the messages of [`Room`],
/// and bookings and listings their own.
pub enum KindAddr {
    Booking(Addr<BookingRoom>),
    Listing(Addr<ListingRoom>),
    Plain(Addr<Room<()>>),
}

impl KindAddr {
    /// Sends a message every room kind takes.
    fn do_send<M>(&self, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        Room<()>: Handler<M>,
        BookingRoom: Handler<M>,
        ListingRoom: Handler<M>,
    {
        match self {
            KindAddr::Booking(addr) => addr.do_send(msg),
            KindAddr::Listing(addr) => addr.do_send(msg),
            KindAddr::Plain(addr) => addr.do_send(msg),
        }
    }
}

struct SessionEntry {
    /// Where rooms put the connection's frames; it keeps the connection
    /// reachable.
    mailslot: Arc<Mailslot>,
    /// Weak: rarely used, and a strong recipient allocates its own sender
    /// state (`mailslot` keeps the connection reachable).
    notices: WeakRecipient<Notice>,
    /// Whether the socket's token is an admin's (as of its last join or
    /// `auth:refresh`): admins may watch private listings.
    admin: bool,
    rooms: SocketRooms,
    /// Set on CONNECT: the socket keeps a recovery record.
    bound: bool,
}

/// The rooms one socket is in. Every connected socket has an entry, and
/// most are in their user room alone: a slice sized to them while they are
/// few (a set's table for one room takes ~150 bytes), a set when many.
enum SocketRooms {
    Few(Box<[RoomKey]>),
    /// Boxed: a set inline would make every socket's entry 32 bytes
    /// larger, and few sockets are in many rooms.
    #[allow(clippy::box_collection)]
    Many(Box<HashSet<RoomKey>>),
}

/// Past this many rooms a socket's rooms are a set.
const FEW_ROOMS: usize = 8;

impl Default for SocketRooms {
    fn default() -> Self {
        SocketRooms::Few(Box::default())
    }
}

impl SocketRooms {
    fn contains(&self, room: &RoomKey) -> bool {
        match self {
            SocketRooms::Few(rooms) => rooms.contains(room),
            SocketRooms::Many(rooms) => rooms.contains(room),
        }
    }

    fn len(&self) -> usize {
        match self {
            SocketRooms::Few(rooms) => rooms.len(),
            SocketRooms::Many(rooms) => rooms.len(),
        }
    }

    /// Adds a room; says whether it was not there.
    fn insert(&mut self, room: RoomKey) -> bool {
        if self.contains(&room) {
            return false;
        }
        match self {
            SocketRooms::Few(rooms) if rooms.len() < FEW_ROOMS => {
                resize(rooms, |rooms| rooms.push(room));
            }
            SocketRooms::Few(rooms) => {
                let mut set: HashSet<RoomKey> =
                    std::mem::take(rooms).into_vec().into_iter().collect();
                set.insert(room);
                *self = SocketRooms::Many(Box::new(set));
            }
            SocketRooms::Many(rooms) => {
                rooms.insert(room);
            }
        }
        true
    }

    /// Takes a room out; says whether it was there.
    fn remove(&mut self, room: &RoomKey) -> bool {
        match self {
            SocketRooms::Few(rooms) => {
                let Some(at) = rooms.iter().position(|kept| kept == room) else {
                    return false;
                };
                resize(rooms, |rooms| {
                    rooms.swap_remove(at);
                });
                true
            }
            SocketRooms::Many(rooms) => rooms.remove(room),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &RoomKey> {
        let (few, many) = match self {
            SocketRooms::Few(rooms) => (rooms.iter(), None),
            SocketRooms::Many(rooms) => ([].iter(), Some(rooms.iter())),
        };
        few.chain(many.into_iter().flatten())
    }
}

/// Changes the length of a slice kept sized to its items (a `Vec` keeps
/// room to grow, and there are as many of these as connections).
fn resize<T>(slice: &mut Box<[T]>, change: impl FnOnce(&mut Vec<T>)) {
    let mut items = std::mem::take(slice).into_vec();
    change(&mut items);
    *slice = items.into_boxed_slice();
}

/// What the registry needs of the broker.
pub struct BrokerParts {
    /// The node's subscription, whose arrivals go to the registry.
    pub subscription: Subscription,
    pub fanout: Fanout,
    pub records: RecordKeeper,
    /// To check a listing's watchers when it is made private.
    pub db: Db,
}

impl Registry {
    /// A registry whose rooms run on `arbiters` (on the caller's thread when
    /// empty) and retire after `idle_after` without members.
    pub fn new(
        arbiters: Vec<ArbiterHandle>,
        idle_after: Duration,
        metrics: Metrics,
        broker: BrokerParts,
    ) -> Self {
        let metrics = Arc::new(metrics);
        Registry {
            subscription: broker.subscription,
            records: broker.records,
            db: broker.db,
            starter: Starter {
                fanout: broker.fanout,
                arbiters,
                next_arbiter: 0,
                next_generation: 0,
                idle_after,
                metrics: metrics.clone(),
            },
            rooms: HashMap::new(),
            sessions: HashMap::new(),
            metrics,
            max_rooms: usize::MAX,
        }
    }

    /// Bounds the rooms one socket may be in.
    pub fn with_max_rooms(mut self, max_rooms: usize) -> Self {
        self.max_rooms = max_rooms;
        self
    }

    /// The entry of a room, made when there is none: with its actor
    /// started, but for a user room (whose actor waits for its first event).
    fn room(&mut self, key: &RoomKey, ctx: &Context<Self>) -> &mut RoomEntry {
        let Registry { rooms, starter, .. } = self;
        match rooms.entry(key.clone()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(vacant) => {
                starter.metrics.rooms.with_label_values(&[key.kind()]).inc();
                let generation = starter.generation();
                let actor = match key {
                    RoomKey::User(_) => RoomActor::Waiting(Box::default()),
                    _ => RoomActor::Started(starter.start(key, generation, ctx)),
                };
                vacant.insert(RoomEntry {
                    generation,
                    members: 0,
                    actor,
                })
            }
        }
    }

    /// The actor of a room, started when the room was waiting for it (its
    /// members handed over first); `None` when the room is not live here,
    /// or waits with no member to hand anything to.
    fn actor(&mut self, key: &RoomKey, ctx: &Context<Self>) -> Option<&KindAddr> {
        let entry = self.rooms.get_mut(key)?;
        if let RoomActor::Waiting(waiting) = &mut entry.actor {
            if waiting.is_empty() {
                return None;
            }
            let waiting = std::mem::take(waiting);
            let kind = self.starter.start(key, entry.generation, ctx);
            if let RoomKey::User(user) = key {
                for (session, mailslot) in waiting.into_vec() {
                    kind.do_send(AddMember {
                        session,
                        user: user.clone(),
                        mailslot,
                    });
                }
            }
            entry.actor = RoomActor::Started(kind);
        }
        entry.actor.started()
    }

    /// Adds a connection to a room's members.
    fn join_room(&mut self, key: &RoomKey, member: AddMember, ctx: &Context<Self>) {
        let entry = self.room(key, ctx);
        entry.members += 1;
        match &mut entry.actor {
            RoomActor::Started(kind) => kind.do_send(member),
            RoomActor::Waiting(waiting) => {
                resize(waiting, |members| {
                    members.push((member.session, member.mailslot))
                });
            }
        }
    }

    fn leave_room(&mut self, session: SessionId, key: &RoomKey, ctx: &mut Context<Self>) {
        let Some(entry) = self.rooms.get_mut(key) else {
            return;
        };
        entry.members = entry.members.saturating_sub(1);
        match &mut entry.actor {
            RoomActor::Started(kind) => kind.do_send(RemoveMember { session }),
            RoomActor::Waiting(waiting) => {
                resize(waiting, |members| {
                    members.retain(|(member, _)| *member != session)
                });
                if entry.members == 0 {
                    // As a room's actor does: retire after the idle period
                    // unless someone joins meanwhile (a join or another
                    // emptying makes this generation stale).
                    entry.generation = self.starter.generation();
                    let idle = RoomIdle {
                        room: key.clone(),
                        generation: entry.generation,
                    };
                    ctx.notify_later(idle, self.starter.idle_after);
                }
            }
        }
    }
}

/// What starting a room's actor takes.
struct Starter {
    /// Rooms announce (typing) through it.
    fanout: Fanout,
    /// Room actors are spread over these threads.
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    next_generation: u64,
    idle_after: Duration,
    metrics: Arc<Metrics>,
}

impl Starter {
    /// A number no room's entry has had yet.
    fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    /// Starts the actor of a room on the next arbiter.
    fn start(&mut self, key: &RoomKey, generation: u64, ctx: &Context<Registry>) -> KindAddr {
        let arbiter = self
            .arbiters
            .get(self.next_arbiter % self.arbiters.len().max(1))
            .cloned();
        self.next_arbiter = self.next_arbiter.wrapping_add(1);
        let room = RoomParts {
            key: key.clone(),
            registry: ctx.address().downgrade(),
            generation,
            idle: self.idle_after,
            metrics: self.metrics.clone(),
            fanout: self.fanout.clone(),
        };
        start_room(room, arbiter)
    }
}

/// What a new room actor is made of.
struct RoomParts {
    key: RoomKey,
    registry: WeakAddr<Registry>,
    generation: u64,
    idle: Duration,
    metrics: Arc<Metrics>,
    fanout: Fanout,
}

impl RoomParts {
    fn build<S: RoomState>(self) -> Room<S> {
        Room::new(
            self.key,
            self.registry,
            self.generation,
            self.idle,
            self.metrics,
            self.fanout,
        )
    }
}

/// Starts the actor of a room on `arbiter` (or the current thread).
fn start_room(parts: RoomParts, arbiter: Option<ArbiterHandle>) -> KindAddr {
    match parts.key {
        RoomKey::Booking(_) => {
            let make = move |_: &mut Context<BookingRoom>| parts.build();
            let addr = match arbiter {
                Some(arbiter) => BookingRoom::start_in_arbiter(&arbiter, make),
                None => BookingRoom::create(make),
            };
            KindAddr::Booking(addr)
        }
        RoomKey::Listing(_) => {
            let make = move |_: &mut Context<ListingRoom>| parts.build();
            let addr = match arbiter {
                Some(arbiter) => ListingRoom::start_in_arbiter(&arbiter, make),
                None => ListingRoom::create(make),
            };
            KindAddr::Listing(addr)
        }
        _ => {
            let make = move |_: &mut Context<Room<()>>| parts.build();
            let addr = match arbiter {
                Some(arbiter) => Room::<()>::start_in_arbiter(&arbiter, make),
                None => Room::<()>::create(make),
            };
            KindAddr::Plain(addr)
        }
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
}

/// A socket CONNECTed: its pid and user, so its record can be kept.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Bind {
    pub session: SessionId,
    pub pid: String,
    pub user: UserId,
    /// `node/session`: who owns the record (a recovering socket claimed it
    /// under this name).
    pub owner: String,
}

impl Handler<Bind> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Bind, _: &mut Context<Self>) {
        if let Some(entry) = self.sessions.get_mut(&msg.session) {
            entry.bound = true;
            let rooms = entry.rooms.iter().map(ToString::to_string);
            let user = msg.user.to_string();
            self.records
                .bind(msg.session, msg.pid, msg.owner, user, rooms);
        }
    }
}

/// A new connection; it must be registered before it joins rooms.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Register {
    pub session: SessionId,
    /// Where rooms put the connection's frames.
    pub mailslot: Arc<Mailslot>,
    /// Where the registry's notices go (kept weak).
    pub notices: Recipient<Notice>,
}

/// A connection has gone: it leaves every room.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unregister {
    pub session: SessionId,
}

/// A connection joins a room (already authorized by the caller). Answers
/// once this node follows the room's channel, so no event published after
/// the answer is missed.
#[derive(Message)]
#[rtype(result = "Result<(), JoinRefused>")]
pub struct JoinRoom {
    pub session: SessionId,
    pub user: UserId,
    /// Whether the joining token is an admin's.
    pub admin: bool,
    pub room: RoomKey,
}

/// A connection joins several rooms at once (`presence:watch`): all of
/// them, or none when that would take it past its rooms.
#[derive(Message)]
#[rtype(result = "Result<(), JoinRefused>")]
pub struct JoinRooms {
    pub session: SessionId,
    pub user: UserId,
    /// Whether the joining token is an admin's.
    pub admin: bool,
    pub rooms: Vec<RoomKey>,
}

/// A connection leaves a room; leaving a room one is not in does nothing.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeaveRoom {
    pub session: SessionId,
    pub room: RoomKey,
}

/// A message for one room kind's actor. The kind's module says which room
/// it is for, whether to start that room when it is not live here, and how
/// to hand it over; the registry only finds the room ([`ToRoom`]).
pub trait ForRoom: Send + 'static {
    /// The room the message is for.
    fn room(&self) -> RoomKey;
    /// Whether to start the room when it is not live on this node.
    fn starts_room(&self) -> bool {
        false
    }
    /// Hands the message to the room's actor (`None`: not live here).
    fn deliver(self, room: Option<&KindAddr>);
}

/// Routes a room kind's message to its room on this node.
pub struct ToRoom<M>(pub M);

impl<M: ForRoom> Message for ToRoom<M> {
    type Result = ();
}

impl<M: ForRoom> Handler<ToRoom<M>> for Registry {
    type Result = ();
    fn handle(&mut self, ToRoom(msg): ToRoom<M>, ctx: &mut Context<Self>) {
        let key = msg.room();
        if msg.starts_room() {
            self.room(&key, ctx);
        }
        msg.deliver(self.actor(&key, ctx));
    }
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
    /// Rooms whose actor runs (a user room's starts with its first event).
    pub actors: usize,
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
                mailslot: msg.mailslot,
                notices: msg.notices.downgrade(),
                admin: false,
                rooms: SocketRooms::default(),
                bound: false,
            },
        );
    }
}

impl Handler<Unregister> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Unregister, ctx: &mut Context<Self>) {
        if let Some(entry) = self.sessions.remove(&msg.session) {
            // The record lives one window from now, for a reconnect.
            if entry.bound {
                self.records.closed(msg.session);
            }
            for room in entry.rooms.iter() {
                self.leave_room(msg.session, room, ctx);
            }
        }
    }
}

/// Why a join was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinRefused {
    /// The broker did not confirm following the room in time: the join is
    /// undone, since events could be missed.
    NotFollowed,
    /// The socket is in as many rooms as it may be.
    TooManyRooms { max: usize },
}

impl Handler<JoinRoom> for Registry {
    type Result = ResponseFuture<Result<(), JoinRefused>>;
    fn handle(&mut self, msg: JoinRoom, ctx: &mut Context<Self>) -> Self::Result {
        let all = JoinRooms {
            session: msg.session,
            user: msg.user,
            admin: msg.admin,
            rooms: vec![msg.room],
        };
        <Self as Handler<JoinRooms>>::handle(self, all, ctx)
    }
}

impl Handler<JoinRooms> for Registry {
    type Result = ResponseFuture<Result<(), JoinRefused>>;
    fn handle(&mut self, msg: JoinRooms, ctx: &mut Context<Self>) -> Self::Result {
        let Some(session) = self.sessions.get_mut(&msg.session) else {
            // The connection closed while its join was on the way.
            return Box::pin(async { Ok(()) });
        };
        let fresh: HashSet<&RoomKey> = msg
            .rooms
            .iter()
            .filter(|room| !session.rooms.contains(room))
            .collect();
        if session.rooms.len() + fresh.len() > self.max_rooms {
            self.metrics
                .limits_tripped
                .with_label_values(&["rooms_per_socket"])
                .inc();
            let max = self.max_rooms;
            return Box::pin(async move { Err(JoinRefused::TooManyRooms { max }) });
        }
        let mailslot = session.mailslot.clone();
        session.admin = msg.admin;
        for room in &msg.rooms {
            let Some(session) = self.sessions.get_mut(&msg.session) else {
                break;
            };
            if !session.rooms.insert(room.clone()) {
                continue;
            }
            if session.bound {
                self.records.joined(msg.session, room.to_string());
            }
            let member = AddMember {
                session: msg.session,
                user: msg.user.clone(),
                mailslot: mailslot.clone(),
            };
            self.join_room(room, member, ctx);
        }
        let followed: Vec<_> = msg
            .rooms
            .iter()
            .map(|room| self.subscription.follow(room.clone()))
            .collect();
        let (registry, session, rooms) = (ctx.address(), msg.session, msg.rooms);
        Box::pin(async move {
            let all = futures_util::future::try_join_all(followed);
            match tokio::time::timeout(SUBSCRIBE_WAIT, all).await {
                Ok(Ok(_)) => Ok(()),
                _ => {
                    for room in rooms {
                        log::warn!("the broker did not confirm following {room}: join undone");
                        registry.do_send(LeaveRoom { session, room });
                    }
                    Err(JoinRefused::NotFollowed)
                }
            }
        })
    }
}

impl Handler<LeaveRoom> for Registry {
    type Result = ();
    fn handle(&mut self, msg: LeaveRoom, ctx: &mut Context<Self>) {
        self.remove_member(msg.session, &msg.room, ctx);
    }
}

/// After `auth:refresh`: records whether the socket's new token is an
/// admin's and answers the rooms it is in, to be authorized again.
#[derive(Message)]
#[rtype(result = "Vec<RoomKey>")]
pub struct Reidentify {
    pub session: SessionId,
    pub admin: bool,
}

impl Handler<Reidentify> for Registry {
    type Result = MessageResult<Reidentify>;
    fn handle(&mut self, msg: Reidentify, _: &mut Context<Self>) -> Self::Result {
        let Some(session) = self.sessions.get_mut(&msg.session) else {
            return MessageResult(Vec::new());
        };
        session.admin = msg.admin;
        MessageResult(session.rooms.iter().cloned().collect())
    }
}

/// Takes a socket out of rooms it may no longer be in and tells it why.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Evict {
    pub session: SessionId,
    pub rooms: Vec<RoomKey>,
    pub reason: &'static str,
}

impl Handler<Evict> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Evict, ctx: &mut Context<Self>) {
        for room in msg.rooms {
            self.evict(msg.session, room, msg.reason, ctx);
        }
    }
}

impl Registry {
    /// Takes a socket out of a room; says whether it was in it.
    fn remove_member(
        &mut self,
        session: SessionId,
        room: &RoomKey,
        ctx: &mut Context<Self>,
    ) -> bool {
        let Some(entry) = self.sessions.get_mut(&session) else {
            return false;
        };
        if !entry.rooms.remove(room) {
            return false;
        }
        if entry.bound {
            self.records.left(session, room.to_string());
        }
        self.leave_room(session, room, ctx);
        true
    }

    /// Takes a socket out of a room and sends it `room:left`.
    fn evict(
        &mut self,
        session: SessionId,
        room: RoomKey,
        reason: &'static str,
        ctx: &mut Context<Self>,
    ) {
        if self.remove_member(session, &room, ctx) {
            if let Some(notices) = self
                .sessions
                .get(&session)
                .and_then(|e| e.notices.upgrade())
            {
                notices.do_send(Notice::Left(RoomLeft { room, reason }));
            }
        }
    }

    /// A listing was made private: its watchers here who may no longer
    /// watch it (§4: not its seller, an admin or a buyer with a booking on
    /// it) are evicted, as a recovery would refuse them. Checked off the
    /// registry's thread; when the check fails every watcher but admins is
    /// evicted. A watcher who joins meanwhile is checked by its join.
    fn check_watchers(&mut self, listing: ListingId, ctx: &mut Context<Self>) {
        let key = RoomKey::Listing(listing.clone());
        let Some(KindAddr::Listing(addr)) = self.rooms.get(&key).and_then(|e| e.actor.started())
        else {
            return;
        };
        let (addr, db) = (addr.clone(), self.db.clone());
        let members = async move { addr.send(GetMembers).await.unwrap_or_default() };
        ctx.spawn(members.into_actor(self).then(move |members, registry, _| {
            // Admins may watch any listing: only the others are asked about.
            let others: Vec<(SessionId, UserId)> = members
                .into_iter()
                .filter(|(session, _)| {
                    registry
                        .sessions
                        .get(session)
                        .is_some_and(|entry| !entry.admin)
                })
                .collect();
            let users: Vec<UserId> = others.iter().map(|(_, user)| user.clone()).collect();
            let allowed = async move {
                if users.is_empty() {
                    return Ok(HashSet::new());
                }
                db.run(move |conn| bookings::watchers_among(conn, &listing, users))
                    .await
            };
            allowed
                .into_actor(registry)
                .map(move |allowed, registry, ctx| {
                    // Unchecked watchers go (fail closed); those who may
                    // watch it get back in with their next `listing:watch`.
                    let allowed = allowed.unwrap_or_else(|err| {
                        log::warn!(
                            "cannot check the watchers of {key}; all but admins left: {err}"
                        );
                        HashSet::new()
                    });
                    for (session, user) in others {
                        if !allowed.contains(&user) {
                            registry.evict(session, key.clone(), left::LISTING_PRIVATE, ctx);
                        }
                    }
                })
        }));
    }
}

/// Whether a room event is a listing update that shows the listing private.
/// A match on the frame's text only triggers a check against Postgres,
/// which decides; a title that happens to hold the words costs one query.
fn made_private(frame: &str) -> bool {
    let listing_update = frame
        .strip_prefix("42[\"")
        .and_then(|rest| rest.strip_prefix(LISTING_UPDATED))
        .is_some_and(|rest| rest.starts_with("\","));
    listing_update && frame.contains(PRIVATE)
}

const PRIVATE: &str = "\"visibility\":\"private\"";

impl Handler<Arrival> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Arrival, ctx: &mut Context<Self>) {
        match msg {
            Arrival::Event(event) => self.arrived(event, ctx),
            // Logged by the broker; the members learn of it only when they
            // reconnect (Socket.IO has no notice of missed events).
            Arrival::Gap { .. } => {}
        }
    }
}

impl Registry {
    /// Hands an event to its room here; a listing made private has its
    /// watchers checked.
    fn arrived(&mut self, event: RoomEvent, ctx: &mut Context<Self>) {
        let private = match &event.room {
            RoomKey::Listing(id) if made_private(&event.frame) => Some(id.clone()),
            _ => None,
        };
        if let Some(room) = self.actor(&event.room, ctx) {
            room.do_send(Broadcast {
                frame: Deliver {
                    frame: event.frame.into(),
                    emission: event.emission,
                    offset: event.offset,
                },
                except: event.except,
                version: event.version,
            });
        }
        if let Some(listing) = private {
            self.check_watchers(listing, ctx);
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
                if let Some(room) = entry.actor.started() {
                    room.do_send(Retire);
                }
                self.subscription.unfollow(msg.room.clone());
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
            actors: self
                .rooms
                .values()
                .filter(|e| e.actor.started().is_some())
                .count(),
        }
    }
}

impl Handler<ShutdownAll> for Registry {
    type Result = usize;
    fn handle(&mut self, _: ShutdownAll, _: &mut Context<Self>) -> usize {
        for session in self.sessions.values() {
            if let Some(notices) = session.notices.upgrade() {
                notices.do_send(Notice::Shutdown);
            }
        }
        self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::{made_private, RoomEntry, SessionEntry, SocketRooms, FEW_ROOMS};
    use crate::ids::{ListingId, RoomKey, UserId};
    use crate::protocol::socket::encode_event_head;
    use serde_json::json;

    #[test]
    fn a_listing_update_that_shows_it_private_triggers_the_check() {
        let listing =
            |visibility: &str| json!({ "listing": { "id": "l1", "visibility": visibility } });
        assert!(made_private(&encode_event_head(
            "listing:updated",
            &listing("private")
        )));
        assert!(!made_private(&encode_event_head(
            "listing:updated",
            &listing("public")
        )));
        // Only listing updates: another event that says "private" is not one.
        assert!(!made_private(&encode_event_head(
            "tick",
            &listing("private")
        )));
    }

    /// A socket's rooms stay a slice while few, become a set past
    /// `FEW_ROOMS`, and answer alike either way.
    #[test]
    fn a_sockets_rooms_are_a_set_in_either_form() {
        let listing = |n: usize| RoomKey::Listing(ListingId::from_db(format!("l{n}")));
        let user = RoomKey::User(UserId::from_db("u1".to_owned()));
        let mut rooms = SocketRooms::default();
        assert!(rooms.insert(user.clone()));
        assert!(!rooms.insert(user.clone()), "already in");
        assert!(matches!(&rooms, SocketRooms::Few(few) if few.len() == 1));
        for n in 0..FEW_ROOMS {
            assert!(rooms.insert(listing(n)));
        }
        assert!(matches!(rooms, SocketRooms::Many(_)));
        assert_eq!(rooms.len(), FEW_ROOMS + 1);
        assert!(rooms.contains(&user) && rooms.contains(&listing(0)));
        assert!(rooms.remove(&listing(0)));
        assert!(!rooms.remove(&listing(0)), "already out");
        assert_eq!(rooms.iter().count(), FEW_ROOMS);

        let mut few = SocketRooms::default();
        few.insert(user.clone());
        few.insert(listing(1));
        assert!(few.remove(&user) && !few.contains(&user));
        assert_eq!(few.iter().collect::<Vec<_>>(), vec![&listing(1)]);
    }

    /// Every connected user has a room, so its entry is kept lean: one
    /// address (an actix address or recipient clone allocates its own
    /// sender state), not one recipient per message kind, or the members
    /// of a user room that waits for its first event.
    #[test]
    fn a_room_entry_holds_one_address() {
        let one_address = std::mem::size_of::<actix::Addr<super::Room<()>>>();
        assert!(
            std::mem::size_of::<RoomEntry>() <= 2 * std::mem::size_of::<u64>() + one_address + 8,
            "RoomEntry is {} bytes",
            std::mem::size_of::<RoomEntry>()
        );
    }

    /// Every connection has an entry: its mailslot, one weak recipient for
    /// every notice, its rooms (a set boxed, for the few in many rooms) and
    /// two flags; 104 bytes with a recipient per notice and a set inline.
    #[test]
    fn a_socket_entry_stays_small() {
        let size = std::mem::size_of::<SessionEntry>();
        assert!(size <= 56, "SessionEntry is {size} bytes");
        assert!(
            std::mem::size_of::<RoomKey>() <= 24,
            "a room key holds one id"
        );
    }
}
