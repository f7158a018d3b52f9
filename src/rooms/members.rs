//! The local members of one room, shared by every room kind.

use std::collections::HashMap;

use actix::Recipient;

use super::{Deliver, SessionId};
use crate::metrics::Metrics;

/// The connections on this node that are in a room.
#[derive(Default)]
pub struct Members {
    members: HashMap<SessionId, Recipient<Deliver>>,
}

impl Members {
    pub fn insert(&mut self, session: SessionId, recipient: Recipient<Deliver>) {
        self.members.insert(session, recipient);
    }

    pub fn remove(&mut self, session: SessionId) {
        self.members.remove(&session);
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Hands every member the same frame.
    pub fn deliver(&self, frame: &Deliver, metrics: &Metrics) {
        for recipient in self.members.values() {
            recipient.do_send(frame.clone());
        }
        metrics.deliveries.inc_by(self.members.len() as u64);
    }
}
