//! `user:{id}`: every tab and device of one user, and their notifications.

use actix::prelude::*;

use super::members::Members;
use super::{Deliver, SessionId};
use crate::metrics::Metrics;

/// The actor that owns one user's room.
pub struct UserRoom {
    members: Members,
    metrics: Metrics,
}

impl UserRoom {
    pub fn new(metrics: Metrics) -> Self {
        UserRoom {
            members: Members::default(),
            metrics,
        }
    }
}

impl Actor for UserRoom {
    type Context = Context<Self>;
}

/// Adds a connection to the room.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Join {
    pub session: SessionId,
    pub recipient: Recipient<Deliver>,
}

/// Removes a connection from the room.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub session: SessionId,
}

/// Sends a frame to every member.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Broadcast(pub Deliver);

impl Handler<Join> for UserRoom {
    type Result = ();
    fn handle(&mut self, msg: Join, _: &mut Context<Self>) {
        self.members.insert(msg.session, msg.recipient);
    }
}

impl Handler<Leave> for UserRoom {
    type Result = ();
    fn handle(&mut self, msg: Leave, ctx: &mut Context<Self>) {
        self.members.remove(msg.session);
        if self.members.is_empty() {
            ctx.stop();
        }
    }
}

impl Handler<Broadcast> for UserRoom {
    type Result = ();
    fn handle(&mut self, msg: Broadcast, _: &mut Context<Self>) {
        self.members.deliver(&msg.0, &self.metrics);
    }
}
