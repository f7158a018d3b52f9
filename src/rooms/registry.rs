//! The registry: finds or starts the actor of a room, knows which rooms each
//! connection is in, removes a connection from all of them when it goes, and
//! retires rooms that stayed idle. What a room kind does with its own
//! messages (a booking's typing, a listing's versions) is the kind's: the
//! registry only routes them ([`ToRoom`]).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use actix::prelude::*;

use super::booking::BookingRoom;
use super::listing::ListingRoom;
use super::room::{AddMember, Broadcast, GetMembers, RemoveMember, Retire, Room, RoomState};
use super::{left, Deliver, RoomKey, RoomLeft, SessionId, Shutdown};
use crate::broker::redis::Redis;
use crate::cluster::recovery::{self, Changes, Save};
use crate::cluster::subscriber::Resumed;
use crate::cluster::{room_channel, Fanout, Incoming, Subscriber};
use crate::ids::{ListingId, UserId};
use crate::store::{bookings, Db};

/// How long a join waits for Redis to confirm the room's subscription.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(5);
use crate::metrics::Metrics;
use crate::protocol::events::server::LISTING_UPDATED;

/// The node's directory of rooms and connections.
pub struct Registry {
    /// Follows the shard channels of the rooms with members here.
    subscriber: Subscriber,
    /// Rooms announce (typing) through it.
    fanout: Fanout,
    prefix: String,
    /// Keeps what each socket is in, for recovery.
    redis: Redis,
    /// Checks who may still watch a listing that was made private.
    db: Db,
    recovery_window: Duration,
    /// Room actors are spread over these threads.
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: usize,
    next_generation: u64,
    idle_after: Duration,
    rooms: HashMap<RoomKey, RoomEntry>,
    sessions: HashMap<SessionId, SessionEntry>,
    metrics: Metrics,
    /// Rooms one socket may be in.
    max_rooms: usize,
    /// Sockets whose record changed since the last save.
    dirty: HashSet<SessionId>,
    /// Saves of sockets that are gone, waiting for the next save.
    unsaved: Vec<Save>,
    /// One save at a time, so a burst of joins makes one round of writes
    /// of what changed instead of one task each.
    saving: bool,
}

/// A live room: how to reach it, and how many local members it has.
struct RoomEntry {
    generation: u64,
    members: usize,
    join: Recipient<AddMember>,
    leave: Recipient<RemoveMember>,
    broadcast: Recipient<Broadcast>,
    retire: Recipient<Retire>,
    kind: KindAddr,
    /// The offset of the last event passed to the room, so that one
    /// arriving twice (live and from a catch-up) is passed once.
    delivered: u64,
    /// Set while the room is caught up from its log.
    catch_up: Option<CatchUp>,
}

/// A room being caught up after the subscriber's connection dropped.
struct CatchUp {
    /// Live events that arrived meanwhile, passed on after the log's.
    arrived: Vec<Incoming>,
    /// Another drop happened meanwhile: catch up again after this offset.
    again: Option<u64>,
}

impl RoomEntry {
    /// Passes an event to the room unless it already has it.
    fn pass(&mut self, msg: Incoming) {
        if msg.frame.offset <= self.delivered {
            return;
        }
        self.delivered = msg.frame.offset;
        self.broadcast.do_send(Broadcast {
            frame: msg.frame,
            except: msg.except,
            version: msg.version,
        });
    }
}

/// The typed address of rooms that take kind-specific messages.
pub enum KindAddr {
    Booking(Addr<BookingRoom>),
    Listing(Addr<ListingRoom>),
    Plain,
}

struct SessionEntry {
    deliver: Recipient<Deliver>,
    shutdown: Recipient<Shutdown>,
    left: Recipient<RoomLeft>,
    /// Whether the socket's token is an admin's (as of its last join or
    /// `auth:refresh`): admins may watch private listings.
    admin: bool,
    rooms: HashSet<RoomKey>,
    /// Set on CONNECT: the socket's record, while it owns it.
    bound: Option<Bound>,
}

/// The recovery record a socket keeps, and what changed in it since it was
/// last saved.
struct Bound {
    pid: String,
    owner: String,
    user: UserId,
    changes: Changes,
}

impl SessionEntry {
    /// What to save of the record now (nothing changed: it is renewed).
    fn take_save(&mut self) -> Option<Save> {
        let bound = self.bound.as_mut()?;
        Some(Save {
            pid: bound.pid.clone(),
            owner: bound.owner.clone(),
            changes: std::mem::take(&mut bound.changes),
        })
    }

    fn joined(&mut self, room: &RoomKey) {
        if let Some(bound) = &mut self.bound {
            bound.changes.join(room.to_string());
        }
    }

    fn left(&mut self, room: &RoomKey) {
        if let Some(bound) = &mut self.bound {
            bound.changes.leave(room.to_string());
        }
    }
}

/// What the registry needs of the cluster.
pub struct ClusterParts {
    pub subscriber: Subscriber,
    pub fanout: Fanout,
    pub redis: Redis,
    pub recovery_window: Duration,
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
        cluster: ClusterParts,
    ) -> Self {
        Registry {
            subscriber: cluster.subscriber,
            fanout: cluster.fanout,
            prefix: cluster.redis.prefix().to_owned(),
            redis: cluster.redis,
            db: cluster.db,
            recovery_window: cluster.recovery_window,
            arbiters,
            next_arbiter: 0,
            next_generation: 0,
            idle_after,
            rooms: HashMap::new(),
            sessions: HashMap::new(),
            metrics,
            max_rooms: usize::MAX,
            dirty: HashSet::new(),
            unsaved: Vec::new(),
            saving: false,
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
                registry,
                generation: *next_generation,
                idle: *idle_after,
                metrics: metrics.clone(),
                fanout: fanout.clone(),
            };
            start_room(room, arbiter)
        })
    }

    /// Keeps sockets' records in Redis (their rooms changed, or they
    /// closed): at once when no save is in flight, else with the next one.
    /// Only what changed is written.
    fn save(&mut self, ctx: &mut Context<Self>) {
        if self.saving {
            return;
        }
        let mut saves = std::mem::take(&mut self.unsaved);
        for session in std::mem::take(&mut self.dirty) {
            if let Some(save) = self
                .sessions
                .get_mut(&session)
                .and_then(SessionEntry::take_save)
            {
                saves.push(save);
            }
        }
        if saves.is_empty() {
            return;
        }
        self.saving = true;
        let (redis, window) = (self.redis.clone(), self.recovery_window);
        let saved = async move {
            match recovery::save(&redis, &saves, window).await {
                Ok(saved) => saved,
                Err(err) => {
                    log::warn!("recovery records not saved: {err}");
                    recovery::Saved::default()
                }
            }
        };
        ctx.spawn(saved.into_actor(self).map(|saved, registry, ctx| {
            registry.saving = false;
            registry.after_save(&saved);
            registry.save(ctx);
        }));
    }

    /// Sockets whose record another socket claimed no longer keep it; those
    /// whose record Redis lost write it whole again.
    fn after_save(&mut self, saved: &recovery::Saved) {
        if saved.taken.is_empty() && saved.gone.is_empty() {
            return;
        }
        for (id, entry) in &mut self.sessions {
            let Some(bound) = &mut entry.bound else {
                continue;
            };
            if saved.taken.contains(&bound.pid) {
                entry.bound = None;
            } else if saved.gone.contains(&bound.pid) {
                let rooms = entry.rooms.iter().map(ToString::to_string);
                bound.changes = Changes::whole(bound.user.to_string(), rooms);
                self.dirty.insert(*id);
            }
        }
    }

    fn save_session(&mut self, session: SessionId, ctx: &mut Context<Self>) {
        if self
            .sessions
            .get(&session)
            .is_some_and(|s| s.bound.is_some())
        {
            self.dirty.insert(session);
            self.save(ctx);
        }
    }

    fn leave_room(&mut self, session: SessionId, key: &RoomKey) {
        if let Some(entry) = self.rooms.get_mut(key) {
            entry.leave.do_send(RemoveMember { session });
            entry.members = entry.members.saturating_sub(1);
        }
    }
}

/// What a new room actor is made of.
struct RoomParts {
    key: RoomKey,
    registry: Addr<Registry>,
    generation: u64,
    idle: Duration,
    metrics: Metrics,
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
            entry(generation, &addr, KindAddr::Booking(addr.clone()))
        }
        RoomKey::Listing(_) => {
            let make = move |_: &mut Context<ListingRoom>| parts.build();
            let addr = match arbiter {
                Some(arbiter) => ListingRoom::start_in_arbiter(&arbiter, make),
                None => ListingRoom::create(make),
            };
            entry(generation, &addr, KindAddr::Listing(addr.clone()))
        }
        _ => {
            let make = move |_: &mut Context<Room<()>>| parts.build();
            let addr = match arbiter {
                Some(arbiter) => Room::<()>::start_in_arbiter(&arbiter, make),
                None => Room::<()>::create(make),
            };
            entry(generation, &addr, KindAddr::Plain)
        }
    }
}

fn entry<S: RoomState>(generation: u64, addr: &Addr<Room<S>>, kind: KindAddr) -> RoomEntry {
    RoomEntry {
        generation,
        members: 0,
        join: addr.clone().recipient(),
        leave: addr.clone().recipient(),
        broadcast: addr.clone().recipient(),
        retire: addr.clone().recipient(),
        kind,
        delivered: 0,
        catch_up: None,
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Records live one window; connected sockets renew theirs.
        ctx.run_interval(self.recovery_window / 3, |registry, ctx| {
            let bound = registry
                .sessions
                .iter()
                .filter(|(_, s)| s.bound.is_some())
                .map(|(id, _)| *id);
            registry.dirty.extend(bound);
            registry.save(ctx);
        });
    }
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
    fn handle(&mut self, msg: Bind, ctx: &mut Context<Self>) {
        if let Some(entry) = self.sessions.get_mut(&msg.session) {
            let rooms = entry.rooms.iter().map(ToString::to_string);
            let changes = Changes::whole(msg.user.to_string(), rooms);
            entry.bound = Some(Bound {
                pid: msg.pid,
                owner: msg.owner,
                user: msg.user,
                changes,
            });
        }
        self.save_session(msg.session, ctx);
    }
}

/// A new connection; it must be registered before it joins rooms.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Register {
    pub session: SessionId,
    pub deliver: Recipient<Deliver>,
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
                deliver: msg.deliver,
                shutdown: msg.shutdown,
                left: msg.left,
                admin: false,
                rooms: HashSet::new(),
                bound: None,
            },
        );
    }
}

impl Handler<Unregister> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Unregister, ctx: &mut Context<Self>) {
        if let Some(mut entry) = self.sessions.remove(&msg.session) {
            // The record lives one window from now, for a reconnect.
            self.dirty.remove(&msg.session);
            if let Some(save) = entry.take_save() {
                self.unsaved.push(save);
                self.save(ctx);
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
    /// Redis did not confirm the room's subscription in time: the join is
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
        let recipient = session.deliver.clone();
        session.admin = msg.admin;
        let mut joined = false;
        for room in &msg.rooms {
            let Some(session) = self.sessions.get_mut(&msg.session) else {
                break;
            };
            if !session.rooms.insert(room.clone()) {
                continue;
            }
            session.joined(room);
            joined = true;
            let entry = self.room(room, ctx.address());
            entry.members += 1;
            entry.join.do_send(AddMember {
                session: msg.session,
                user: msg.user.clone(),
                recipient: recipient.clone(),
            });
        }
        if joined {
            self.save_session(msg.session, ctx);
        }
        let followed: Vec<_> = msg
            .rooms
            .iter()
            .map(|room| self.subscriber.subscribe(room_channel(&self.prefix, room)))
            .collect();
        let (registry, session, rooms) = (ctx.address(), msg.session, msg.rooms);
        Box::pin(async move {
            let all = futures_util::future::try_join_all(followed);
            match tokio::time::timeout(SUBSCRIBE_WAIT, all).await {
                Ok(Ok(_)) => Ok(()),
                _ => {
                    for room in rooms {
                        log::warn!("redis did not confirm following {room}: join undone");
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
        let was_member = self.sessions.get_mut(&session).is_some_and(|s| {
            let was = s.rooms.remove(room);
            if was {
                s.left(room);
            }
            was
        });
        if was_member {
            self.leave_room(session, room);
            self.save_session(session, ctx);
        }
        was_member
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
            if let Some(entry) = self.sessions.get(&session) {
                entry.left.do_send(RoomLeft { room, reason });
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

impl Handler<Incoming> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Incoming, ctx: &mut Context<Self>) {
        let private = match &msg.room {
            RoomKey::Listing(id) if made_private(&msg.frame.frame) => Some(id.clone()),
            _ => None,
        };
        if let Some(entry) = self.rooms.get_mut(&msg.room) {
            match &mut entry.catch_up {
                Some(catch_up) => catch_up.arrived.push(msg),
                None => entry.pass(msg),
            }
        }
        if let Some(listing) = private {
            self.check_watchers(listing, ctx);
        }
    }
}

impl Handler<Resumed> for Registry {
    type Result = ();
    fn handle(&mut self, msg: Resumed, ctx: &mut Context<Self>) {
        let Some(entry) = self.rooms.get_mut(&msg.room) else {
            return;
        };
        match &mut entry.catch_up {
            Some(catch_up) => {
                catch_up.again = Some(catch_up.again.map_or(msg.after, |a| a.min(msg.after)));
            }
            None => {
                entry.catch_up = Some(CatchUp {
                    arrived: Vec::new(),
                    again: None,
                });
                self.catch_up(msg.room, msg.after, ctx);
            }
        }
    }
}

impl Registry {
    /// Reads what `room` missed after `after` from its log and passes it
    /// on, then what arrived live meanwhile.
    fn catch_up(&mut self, room: RoomKey, after: u64, ctx: &mut Context<Self>) {
        let generation = self.rooms.get(&room).map(|e| e.generation);
        let redis = self.redis.clone();
        let key = room.clone();
        let read = async move { recovery::since(&redis, &key, after).await };
        ctx.spawn(read.into_actor(self).map(move |read, registry, ctx| {
            let Some(entry) = registry.rooms.get_mut(&room) else {
                return;
            };
            if Some(entry.generation) != generation {
                return;
            }
            let mut private = None;
            match read {
                Ok(Some(logged)) => {
                    log::info!(
                        "room {room}: caught up {} events after {after}",
                        logged.len()
                    );
                    if logged.iter().any(|event| made_private(&event.frame)) {
                        // Made private while this node was cut off.
                        if let RoomKey::Listing(listing) = &room {
                            private = Some(listing.clone());
                        }
                    }
                    for event in logged {
                        entry.pass(Incoming::from_log(room.clone(), event));
                    }
                }
                Ok(None) => log::warn!(
                    "room {room}: its log no longer holds every event after {after}; \
                     members here missed some"
                ),
                Err(err) => log::warn!("room {room}: cannot catch up after {after}: {err}"),
            }
            if let Some(listing) = private {
                registry.check_watchers(listing, ctx);
            }
            registry.caught_up(room, ctx);
        }));
    }

    /// Passes on what arrived live while a room was caught up, and catches
    /// it up again if its connection dropped meanwhile.
    fn caught_up(&mut self, room: RoomKey, ctx: &mut Context<Self>) {
        let Some(entry) = self.rooms.get_mut(&room) else {
            return;
        };
        let Some(catch_up) = entry.catch_up.take() else {
            return;
        };
        for event in catch_up.arrived {
            entry.pass(event);
        }
        if let Some(again) = catch_up.again {
            entry.catch_up = Some(CatchUp {
                arrived: Vec::new(),
                again: None,
            });
            self.catch_up(room, again, ctx);
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
                self.subscriber
                    .unsubscribe(room_channel(&self.prefix, &msg.room));
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

#[cfg(test)]
mod tests {
    use super::made_private;
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
}
