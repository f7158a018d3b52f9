//! The node's open sessions by Engine.IO sid, for the requests that name
//! one (long-polling GETs and POSTs, and WebSocket upgrades), and what the
//! node counts of clients before their sessions CONNECT: handshakes in
//! flight and opens per address.

use std::collections::HashMap;
use std::sync::Mutex;

use actix::{Addr, WeakAddr};

use super::guard::{Handshakes, OpenLimiter};
use super::Session;
use crate::engine::eio::LongPoll;

#[derive(Default)]
pub struct Directory {
    sessions: Mutex<HashMap<String, Entry>>,
    /// Sessions that have not CONNECTed yet.
    pub(super) handshakes: Handshakes,
    /// Opens per client address.
    pub(super) opens: OpenLimiter,
}

/// One open session.
struct Entry {
    /// Weak: each strong address allocates its own sender state (~80 bytes
    /// a connection), and a session does not need this one to live (it
    /// holds its own mailslot, whose recipient is strong, until it stops).
    session: WeakAddr<Session>,
    /// Its long-polling queue while it polls (opened by long-polling, not
    /// upgraded yet): a GET takes its answer there, with no message to the
    /// session. Let go on upgrade, so that an upgraded session's queue
    /// (and the WebSocket handle it forwards to) is not kept for its life.
    polling: Option<LongPoll>,
}

impl Directory {
    pub(super) fn insert(&self, sid: &str, session: WeakAddr<Session>, polling: Option<LongPoll>) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.insert(sid.to_owned(), Entry { session, polling });
        }
    }

    pub(super) fn remove(&self, sid: &str) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.remove(sid);
        }
    }

    /// The session no longer polls: it has upgraded to a WebSocket.
    pub(super) fn stop_polling(&self, sid: &str) {
        if let Ok(mut sessions) = self.sessions.lock() {
            if let Some(entry) = sessions.get_mut(sid) {
                entry.polling = None;
            }
        }
    }

    pub(super) fn get(&self, sid: &str) -> Option<Addr<Session>> {
        self.sessions.lock().ok()?.get(sid)?.session.upgrade()
    }

    /// What a long-polling GET on `sid` needs: the session's queue, if it
    /// polls, and its address, weak (it is told something only in rare
    /// cases, see `polling::get`). None when there is no such session.
    pub(super) fn poller(&self, sid: &str) -> Option<(Option<LongPoll>, WeakAddr<Session>)> {
        let sessions = self.sessions.lock().ok()?;
        let entry = sessions.get(sid)?;
        Some((entry.polling.clone(), entry.session.clone()))
    }

    /// Sessions open that have not CONNECTed yet.
    pub fn handshakes_in_flight(&self) -> usize {
        self.handshakes.in_flight()
    }
}
