//! `listing:{id}`: a listing page's watchers. The room remembers the highest
//! listing version it has delivered, so that a refusal caused by a change
//! (a lost reservation) is answered only after the watchers here were told
//! of the change.

use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::room::{Room, RoomState};

/// The longest a refusal waits for the change that caused it to arrive.
const MAX_WAIT: Duration = Duration::from_secs(5);

/// A listing room's delivered version and who waits for a later one.
#[derive(Default)]
pub struct Versions {
    delivered: i64,
    waiting: Vec<(i64, oneshot::Sender<()>)>,
}

impl RoomState for Versions {
    fn busy(&self) -> bool {
        !self.waiting.is_empty()
    }

    fn delivered(&mut self, version: i64) {
        self.delivered = self.delivered.max(version);
        let delivered = self.delivered;
        let (ready, still): (Vec<_>, Vec<_>) =
            self.waiting.drain(..).partition(|(v, _)| *v <= delivered);
        self.waiting = still;
        for (_, reply) in ready {
            let _ = reply.send(());
        }
    }
}

/// The room actor of one listing.
pub type ListingRoom = Room<Versions>;

/// Answers once `version` has been delivered here (or after a bound).
#[derive(Message)]
#[rtype(result = "()")]
pub struct WaitFor {
    pub version: i64,
    pub reply: oneshot::Sender<()>,
}

impl Handler<WaitFor> for ListingRoom {
    type Result = ();
    fn handle(&mut self, msg: WaitFor, ctx: &mut Context<Self>) {
        if msg.version <= self.state.delivered {
            let _ = msg.reply.send(());
            return;
        }
        self.state.waiting.push((msg.version, msg.reply));
        ctx.run_later(MAX_WAIT, move |room, ctx| {
            // Whatever still waits for this version goes now.
            let (late, still): (Vec<_>, Vec<_>) = room
                .state
                .waiting
                .drain(..)
                .partition(|(v, _)| *v <= msg.version);
            room.state.waiting = still;
            for (_, reply) in late {
                let _ = reply.send(());
            }
            room.check_idle(ctx);
        });
        self.check_idle(ctx);
    }
}

/// A watcher was shown the listing at this version.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Seen(pub i64);

impl Handler<Seen> for ListingRoom {
    type Result = ();
    fn handle(&mut self, msg: Seen, ctx: &mut Context<Self>) {
        self.state.delivered(msg.0);
        self.check_idle(ctx);
    }
}
