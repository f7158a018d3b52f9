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
    pub fn deliver(&self, frame: &Deliver, except: Option<&UserId>, metrics: &Metrics) {
        let mut delivered = 0;
        for (user, mailslot) in self.members.values() {
            if except == Some(user) {
                continue;
            }
            if mailslot.deliver(frame) != Delivered::Dropped {
                delivered += 1;
            }
        }
        metrics.deliveries.inc_by(delivered);
    }
}
