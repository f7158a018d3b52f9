//! The node's open sessions by Engine.IO sid, for the requests that name
//! one: long-polling GETs and POSTs, and WebSocket upgrades.

use std::collections::HashMap;
use std::sync::Mutex;

use actix::Addr;

use super::Session;

#[derive(Default)]
pub struct Directory {
    sessions: Mutex<HashMap<String, Addr<Session>>>,
}

impl Directory {
    pub(super) fn insert(&self, sid: &str, session: Addr<Session>) {
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
        self.sessions.lock().ok()?.get(sid).cloned()
    }
}
