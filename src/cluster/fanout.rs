//! Room events: encoded once, then handed to the room's actor, which gives
//! every member the same bytes.

use actix::Addr;
use serde_json::Value;

use crate::ids::UserId;
use crate::protocol::socket::encode_event;
use crate::rooms::registry::{Emit, Registry};
use crate::rooms::{Deliver, RoomKey};

/// Sends server events to rooms; cheap to clone.
#[derive(Clone)]
pub struct Fanout {
    registry: Addr<Registry>,
}

impl Fanout {
    pub fn new(registry: Addr<Registry>) -> Self {
        Fanout { registry }
    }

    /// Emits `event` with `payload` to every member of `room`.
    pub fn emit(&self, room: RoomKey, event: &str, payload: &Value) {
        self.emit_except(room, event, payload, None);
    }

    /// Emits to every member of `room` but the connections of `except`.
    pub fn emit_except(&self, room: RoomKey, event: &str, payload: &Value, except: Option<UserId>) {
        let frame = Deliver(encode_event(event, payload, None).into());
        self.registry.do_send(Emit {
            room,
            frame,
            except,
        });
    }
}
