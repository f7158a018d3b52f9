//! The registry: finds or starts the actor of a room, knows which rooms each
//! connection is in, removes a connection from all of them when it goes, and
//! retires rooms that stayed idle. It follows the rooms with members here
//! through the broker's [`Subscription`] and hands their events to them,
//! and tells the broker's [`RecordKeeper`] what each socket is in. What a
//! room kind does with its own messages (a booking's typing, a listing's
//! versions) is the kind's: the registry only routes them ([`ToRoom`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix::{WeakAddr, WeakRecipient};

use super::booking::BookingRoom;
use super::listing::ListingRoom;
use super::mailslot::Mailslot;
use super::room::{AddMember, Broadcast, GetMembers, RemoveMember, Retire, Room, RoomState};
use super::{left, Deliver, RoomKey, RoomLeft, SessionId, Shutdown};
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
    /// Rooms announce (typing) through it.
    fanout: Fanout,
    /// Keeps what each socket is in, for recovery.
    records: RecordKeeper,
    /// Checks who may still watch a listing that was made private.
    db: Db,
    /// Room actors are spread over these threads.
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    next_generation: u64,
    idle_after: Duration,
    rooms: HashMap<RoomKey, RoomEntry>,
    sessions: HashMap<SessionId, SessionEntry>,
    /// Shared with every room: a room holds one pointer, not the struct.
    metrics: Arc<Metrics>,
    /// Rooms one socket may be in.
    max_rooms: usize,
}

/// A live room: how to reach it, and how many local members it has. One
/// address per room (each actix address clone allocates its own sender
/// state, ~100 bytes with the allocator's overhead, and every connected
/// user has a room: docs/BENCHMARKS.md, issue 13).
struct RoomEntry {
    generation: u64,
    members: usize,
    kind: KindAddr,
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
    /// Weak, as `left`: rarely used, and a strong recipient allocates its
    /// own sender state (`mailslot` keeps the connection reachable).
    shutdown: WeakRecipient<Shutdown>,
    left: WeakRecipient<RoomLeft>,
    /// Whether the socket's token is an admin's (as of its last join or
    /// `auth:refresh`): admins may watch private listings.
    admin: bool,
    rooms: HashSet<RoomKey>,
    /// Set on CONNECT: the socket keeps a recovery record.
    bound: bool,
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
        Registry {
            subscription: broker.subscription,
            fanout: broker.fanout,
            records: broker.records,
            db: broker.db,
            arbiters,
            next_arbiter: 0,
            next_generation: 0,
            idle_after,
            rooms: HashMap::new(),
            sessions: HashMap::new(),
            metrics: Arc::new(metrics),
            max_rooms: usize::MAX,
        }
    }

    /// Bounds the rooms one socket may be in.
    pub fn with_max_rooms(mut self, max_rooms: usize) -> Self {
        self.max_rooms = max_rooms;
        self
    }

    /// The entry of a room, starting its actor when there is none.
    fn room(&mut self, key: &RoomKey, registry: Addr<Registry>) -> &mut RoomEntry {
        let Registry {
            fanout,
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
            let room = RoomParts {
                key: key.clone(),
                registry: registry.downgrade(),
                generation: *next_generation,
                idle: *idle_after,
                metrics: metrics.clone(),
                fanout: fanout.clone(),
            };
            start_room(room, arbiter)
        })
    }

    fn leave_room(&mut self, session: SessionId, key: &RoomKey) {
        if let Some(entry) = self.rooms.get_mut(key) {
            entry.kind.do_send(RemoveMember { session });
            entry.members = entry.members.saturating_sub(1);
        }
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
fn start_room(parts: RoomParts, arbiter: Option<ArbiterHandle>) -> RoomEntry {
    let generation = parts.generation;
    match parts.key {
        RoomKey::Booking(_) => {
            let make = move |_: &mut Context<BookingRoom>| parts.build();
            let addr = match arbiter {
                Some(arbiter) => BookingRoom::start_in_arbiter(&arbiter, make),
                None => BookingRoom::create(make),
            };
            entry(generation, KindAddr::Booking(addr))
        }
        RoomKey::Listing(_) => {
            let make = move |_: &mut Context<ListingRoom>| parts.build();
            let addr = match arbiter {
                Some(arbiter) => ListingRoom::start_in_arbiter(&arbiter, make),
                None => ListingRoom::create(make),
            };
            entry(generation, KindAddr::Listing(addr))
        }
        _ => {
            let make = move |_: &mut Context<Room<()>>| parts.build();
            let addr = match arbiter {
                Some(arbiter) => Room::<()>::start_in_arbiter(&arbiter, make),
                None => Room::<()>::create(make),
            };
            entry(generation, KindAddr::Plain(addr))
        }
    }
}

fn entry(generation: u64, kind: KindAddr) -> RoomEntry {
    RoomEntry {
        generation,
        members: 0,
        kind,
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
    pub shutdown: Recipient<Shutdown>,
    pub left: Recipient<RoomLeft>,
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
        let room = if msg.starts_room() {
            Some(&self.room(&key, ctx.address()).kind)
        } else {
            self.rooms.get(&key).map(|entry| &entry.kind)
        };
        msg.deliver(room);
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
                shutdown: msg.shutdown.downgrade(),
                left: msg.left.downgrade(),
                admin: false,
                rooms: HashSet::new(),
                bound: false,
            },
        );
    }
}

impl Handler<Unregister> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Unregister, _: &mut Context<Self>) {
        if let Some(entry) = self.sessions.remove(&msg.session) {
            // The record lives one window from now, for a reconnect.
            if entry.bound {
                self.records.closed(msg.session);
            }
            for room in &entry.rooms {
                self.leave_room(msg.session, room);
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
            let entry = self.room(room, ctx.address());
            entry.members += 1;
            entry.kind.do_send(AddMember {
                session: msg.session,
                user: msg.user.clone(),
                mailslot: mailslot.clone(),
            });
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
    fn handle(&mut self, msg: LeaveRoom, _: &mut Context<Self>) {
        self.remove_member(msg.session, &msg.room);
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
    fn handle(&mut self, msg: Evict, _: &mut Context<Self>) {
        for room in msg.rooms {
            self.evict(msg.session, room, msg.reason);
        }
    }
}

impl Registry {
    /// Takes a socket out of a room; says whether it was in it.
    fn remove_member(&mut self, session: SessionId, room: &RoomKey) -> bool {
        let Some(entry) = self.sessions.get_mut(&session) else {
            return false;
        };
        if !entry.rooms.remove(room) {
            return false;
        }
        if entry.bound {
            self.records.left(session, room.to_string());
        }
        self.leave_room(session, room);
        true
    }

    /// Takes a socket out of a room and sends it `room:left`.
    fn evict(&mut self, session: SessionId, room: RoomKey, reason: &'static str) {
        if self.remove_member(session, &room) {
            if let Some(left) = self.sessions.get(&session).and_then(|e| e.left.upgrade()) {
                left.do_send(RoomLeft { room, reason });
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
        let Some(KindAddr::Listing(addr)) = self.rooms.get(&key).map(|e| &e.kind) else {
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
                .map(move |allowed, registry, _| {
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
                            registry.evict(session, key.clone(), left::LISTING_PRIVATE);
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
        if let Some(entry) = self.rooms.get(&event.room) {
            entry.kind.do_send(Broadcast {
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
                entry.kind.do_send(Retire);
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
        }
    }
}

impl Handler<ShutdownAll> for Registry {
    type Result = usize;
    fn handle(&mut self, _: ShutdownAll, _: &mut Context<Self>) -> usize {
        for session in self.sessions.values() {
            if let Some(shutdown) = session.shutdown.upgrade() {
                shutdown.do_send(Shutdown);
            }
        }
        self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::{made_private, RoomEntry};
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

    /// Every connected user has a room, so its entry is kept lean: one
    /// address (an actix address or recipient clone allocates its own
    /// sender state), not one recipient per message kind.
    #[test]
    fn a_room_entry_holds_one_address() {
        let one_address = std::mem::size_of::<actix::Addr<super::Room<()>>>();
        assert!(
            std::mem::size_of::<RoomEntry>() <= 2 * std::mem::size_of::<u64>() + one_address + 8,
            "RoomEntry is {} bytes",
            std::mem::size_of::<RoomEntry>()
        );
    }
}
