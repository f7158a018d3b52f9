//! `listing:{id}`: a listing page's watchers. The room remembers the highest
//! listing version it has delivered, so that a refusal caused by a change
//! (a lost reservation) is answered only after the watchers here were told
//! of the change.

use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::registry::{ForRoom, KindAddr};
use super::room::{Room, RoomState};
use super::RoomKey;
use crate::ids::ListingId;

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

/// Answers once this node's room of a listing has delivered `version` (or
/// after a bound; at once when the listing has no room here: no watcher to
/// be ahead of). Sent through the registry (`ToRoom`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AfterVersion {
    pub listing: ListingId,
    pub version: i64,
    pub reply: oneshot::Sender<()>,
}

impl ForRoom for AfterVersion {
    fn room(&self) -> RoomKey {
        RoomKey::Listing(self.listing.clone())
    }

    fn deliver(self, room: Option<&KindAddr>) {
        match room {
            Some(KindAddr::Listing(addr)) => addr.do_send(self),
            _ => {
                let _ = self.reply.send(());
            }
        }
    }
}

impl Handler<AfterVersion> for ListingRoom {
    type Result = ();
    fn handle(&mut self, msg: AfterVersion, ctx: &mut Context<Self>) {
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

/// A watcher was shown the listing at `version`: its room here, if any, is
/// that far. Sent through the registry (`ToRoom`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ListingSeen {
    pub listing: ListingId,
    pub version: i64,
}

impl ForRoom for ListingSeen {
    fn room(&self) -> RoomKey {
        RoomKey::Listing(self.listing.clone())
    }

    fn deliver(self, room: Option<&KindAddr>) {
        if let Some(KindAddr::Listing(addr)) = room {
            addr.do_send(self);
        }
    }
}

impl Handler<ListingSeen> for ListingRoom {
    type Result = ();
    fn handle(&mut self, msg: ListingSeen, ctx: &mut Context<Self>) {
        self.state.delivered(msg.version);
        self.check_idle(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_on_a_listing_with_no_room_here_is_answered_at_once() {
        let listing = ListingId::parse("l1").unwrap_or_else(|| panic!("test id"));
        let (reply, mut told) = oneshot::channel();
        let wait = AfterVersion {
            listing: listing.clone(),
            version: 3,
            reply,
        };
        assert_eq!(wait.room(), RoomKey::Listing(listing));
        assert!(!wait.starts_room(), "a wait must not start a room");
        wait.deliver(None);
        assert_eq!(told.try_recv(), Ok(()));
    }
}
