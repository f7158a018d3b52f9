//! The local members of one room.

use std::collections::HashMap;
use std::sync::Arc;

use super::mailslot::{Delivered, Mailslot};
use super::{Deliver, SessionId};
use crate::ids::UserId;
use crate::metrics::Metrics;

/// The connections on this node that are in a room, and whose they are.
#[derive(Default)]
pub struct Members {
    members: HashMap<SessionId, (UserId, Arc<Mailslot>)>,
}

impl Members {
    pub fn insert(&mut self, session: SessionId, user: UserId, mailslot: Arc<Mailslot>) {
        self.members.insert(session, (user, mailslot));
    }

    pub fn remove(&mut self, session: SessionId) {
        self.members.remove(&session);
    }

    /// Each member's connection and user.
    pub fn list(&self) -> Vec<(SessionId, UserId)> {
        self.members
            .iter()
            .map(|(session, (user, _))| (*session, user.clone()))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Hands every member (but `except`'s connections) the same frame:
    /// into its WebSocket's queue directly when it can (see [`Mailslot`]).
    /// Counts them, and apart those that went through a mailbox.
    pub fn deliver(&self, frame: &Deliver, except: Option<&UserId>, metrics: &Metrics) {
        let (mut direct, mut mailbox) = (0, 0);
        for (user, mailslot) in self.members.values() {
            if except == Some(user) {
                continue;
            }
            match mailslot.deliver(frame) {
                Delivered::Direct => direct += 1,
                Delivered::Mailbox => mailbox += 1,
                Delivered::Dropped => {}
            }
        }
        metrics.deliveries.inc_by(direct + mailbox);
        if mailbox > 0 {
            metrics.mailbox_deliveries.inc_by(mailbox);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use actix::prelude::*;

    use super::Members;
    use crate::engine::eio::Outlet;
    use crate::engine::websocket::Transport;
    use crate::ids::UserId;
    use crate::metrics::Metrics;
    use crate::rooms::mailslot::{Mailslot, Overflowed};
    use crate::rooms::Deliver;

    /// Stands for a session that takes nothing.
    struct Sink;

    impl Actor for Sink {
        type Context = Context<Self>;
    }

    impl Handler<Deliver> for Sink {
        type Result = ();
        fn handle(&mut self, _: Deliver, _: &mut Context<Self>) {}
    }

    impl Handler<Overflowed> for Sink {
        type Result = ();
        fn handle(&mut self, _: Overflowed, _: &mut Context<Self>) {}
    }

    #[actix_web::test]
    async fn deliveries_through_a_mailbox_are_counted_apart() {
        let metrics = Metrics::new().unwrap_or_else(|err| panic!("metrics: {err}"));
        let mut members = Members::default();
        for session in 0..3 {
            let sink = Sink.start();
            let mailslot = Arc::new(Mailslot::new(sink.clone().recipient(), sink.recipient()));
            if session > 0 {
                mailslot.direct_to(Some(Outlet::WebSocket(Transport::new(1 << 20))));
            }
            members.insert(session, UserId::from_db(format!("u{session}")), mailslot);
        }
        let frame = Deliver {
            frame: "42[\"tick\",1]".into(),
            emission: 1,
            offset: 1,
        };
        members.deliver(&frame, None, &metrics);
        assert_eq!(metrics.deliveries.get(), 3);
        assert_eq!(metrics.mailbox_deliveries.get(), 1);
    }
}
