//! The room actor every kind shares: members, broadcasts, and retiring when
//! idle. Kind-specific state (a booking's typing timers) rides in `S`.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix::WeakAddr;

use super::mailslot::Mailslot;
use super::members::Members;
use super::registry::{Registry, RoomIdle};
use super::{Deliver, RoomKey, SessionId};
use crate::broker::Fanout;
use crate::ids::UserId;
use crate::metrics::Metrics;

/// State a room kind keeps besides its members.
pub trait RoomState: Default + Unpin + 'static {
    /// Whether something is still pending (a timer), so the room must stay.
    fn busy(&self) -> bool {
        false
    }
    /// Called when the room stops: settle anything pending.
    fn settle(&mut self, _room: &RoomKey, _fanout: &Fanout) {}
    /// Called after a broadcast that carried the listing version it shows.
    fn delivered(&mut self, _version: i64) {}
}

impl RoomState for () {}

/// One live room on this node.
pub struct Room<S: RoomState> {
    pub(super) key: RoomKey,
    pub(super) members: Members,
    /// Shared (the registry's): every connected user has a room.
    pub(super) metrics: Arc<Metrics>,
    pub(super) state: S,
    pub(super) fanout: Fanout,
    registry: WeakAddr<Registry>,
    generation: u64,
    idle_after: Duration,
    idle_timer: Option<SpawnHandle>,
}

impl<S: RoomState> Room<S> {
    pub fn new(
        key: RoomKey,
        registry: WeakAddr<Registry>,
        generation: u64,
        idle_after: Duration,
        metrics: Arc<Metrics>,
        fanout: Fanout,
    ) -> Self {
        Room {
            key,
            members: Members::default(),
            metrics,
            state: S::default(),
            fanout,
            registry,
            generation,
            idle_after,
            idle_timer: None,
        }
    }

    /// Arms the idle timer when nothing keeps the room alive, disarms it otherwise.
    pub(super) fn check_idle(&mut self, ctx: &mut Context<Self>) {
        let idle = self.members.is_empty() && !self.state.busy();
        match (idle, self.idle_timer.is_some()) {
            (true, false) => {
                let handle = ctx.run_later(self.idle_after, |room, _| {
                    room.idle_timer = None;
                    if room.members.is_empty() && !room.state.busy() {
                        if let Some(registry) = room.registry.upgrade() {
                            registry.do_send(RoomIdle {
                                room: room.key.clone(),
                                generation: room.generation,
                            });
                        }
                    }
                });
                self.idle_timer = Some(handle);
            }
            (false, true) => {
                if let Some(handle) = self.idle_timer.take() {
                    ctx.cancel_future(handle);
                }
            }
            _ => {}
        }
    }
}

impl<S: RoomState> Actor for Room<S> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.check_idle(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.state.settle(&self.key, &self.fanout);
    }
}

/// Adds a connection to the room.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddMember {
    pub session: SessionId,
    pub user: UserId,
    pub mailslot: Arc<Mailslot>,
}

/// Removes a connection from the room.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoveMember {
    pub session: SessionId,
}

/// Sends a frame to every member, but the connections of `except`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Broadcast {
    pub frame: Deliver,
    pub except: Option<UserId>,
    /// The listing version the event shows, for listing rooms.
    pub version: Option<i64>,
}

/// The registry retired this room: stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

impl<S: RoomState> Handler<AddMember> for Room<S> {
    type Result = ();
    fn handle(&mut self, msg: AddMember, ctx: &mut Context<Self>) {
        self.members.insert(msg.session, msg.user, msg.mailslot);
        self.check_idle(ctx);
    }
}

impl<S: RoomState> Handler<RemoveMember> for Room<S> {
    type Result = ();
    fn handle(&mut self, msg: RemoveMember, ctx: &mut Context<Self>) {
        self.members.remove(msg.session);
        self.check_idle(ctx);
    }
}

impl<S: RoomState> Handler<Broadcast> for Room<S> {
    type Result = ();
    fn handle(&mut self, msg: Broadcast, _: &mut Context<Self>) {
        self.members
            .deliver(&msg.frame, msg.except.as_ref(), &self.metrics);
        if let Some(version) = msg.version {
            self.state.delivered(version);
        }
    }
}

impl<S: RoomState> Handler<Retire> for Room<S> {
    type Result = ();
    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// The room's local members and their users.
#[derive(Message)]
#[rtype(result = "Vec<(SessionId, UserId)>")]
pub struct GetMembers;

impl<S: RoomState> Handler<GetMembers> for Room<S> {
    type Result = MessageResult<GetMembers>;
    fn handle(&mut self, _: GetMembers, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.members.list())
    }
}

#[cfg(test)]
mod tests {
    use super::Room;

    /// Every connected user has a room, whose actor's task holds the `Room`
    /// inline: it points to the node's metrics rather than holding a copy.
    #[test]
    fn a_room_holds_a_pointer_to_the_metrics() {
        let pointer = std::mem::size_of::<std::sync::Arc<crate::metrics::Metrics>>();
        assert!(std::mem::size_of::<crate::metrics::Metrics>() > pointer);
        let room = std::mem::size_of::<Room<()>>();
        // 152 bytes with the pointer, 272 with the struct inline.
        assert!(room <= 160, "Room<()> is {room} bytes");
    }
}
