//! The node's open sessions by Engine.IO sid, for the requests that name
//! one (long-polling GETs and POSTs, and WebSocket upgrades), and what the
//! node counts of clients before their sessions CONNECT: handshakes in
//! flight and opens per address.

use std::collections::HashMap;
use std::sync::Mutex;

use actix::{Addr, WeakAddr};

use super::guard::{Handshakes, OpenLimiter};
use super::Session;

#[derive(Default)]
pub struct Directory {
    /// Weak: each strong address allocates its own sender state (~80 bytes
    /// a connection), and a session does not need this one to live (it
    /// holds its own mailslot, whose recipient is strong, until it stops).
    sessions: Mutex<HashMap<String, WeakAddr<Session>>>,
    /// Sessions that have not CONNECTed yet.
    pub(super) handshakes: Handshakes,
    /// Opens per client address.
    pub(super) opens: OpenLimiter,
}

impl Directory {
    pub(super) fn insert(&self, sid: &str, session: WeakAddr<Session>) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.insert(sid.to_owned(), session);
        }
    }

    pub(super) fn remove(&self, sid: &str) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.remove(sid);
        }
    }

    pub(super) fn get(&self, sid: &str) -> Option<Addr<Session>> {
        self.sessions.lock().ok()?.get(sid)?.upgrade()
    }

    /// Sessions open that have not CONNECTed yet.
    pub fn handshakes_in_flight(&self) -> usize {
        self.handshakes.in_flight()
    }
}
