//! `booking:{id}`: a booking's thread. Besides its members the room owns the
//! typing timers: 5 s after a participant's last `typing:start` it says
//! `typing: false` for them by itself.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;

use super::registry::{ForRoom, KindAddr};
use super::room::{Room, RoomState};
use super::RoomKey;
use crate::broker::Fanout;
use crate::ids::{BookingId, UserId};
use crate::protocol::events::ServerEvent;

/// How long after the last `typing:start` a typist counts as stopped (§5).
pub const TYPING_TIMEOUT: Duration = Duration::from_secs(5);

/// A booking room's typists and their timers.
#[derive(Default)]
pub struct Typists {
    timers: HashMap<UserId, SpawnHandle>,
}

impl RoomState for Typists {
    fn busy(&self) -> bool {
        !self.timers.is_empty()
    }

    fn settle(&mut self, room: &RoomKey, fanout: &Fanout) {
        for (user, _) in self.timers.drain() {
            say_typing(fanout, room, &user, false);
        }
    }
}

/// The room actor of one booking.
pub type BookingRoom = Room<Typists>;

/// A participant started typing; `broadcast` is false when throttled.
/// Sent through the registry (`ToRoom`), which starts the room if needed:
/// the room owns the timer that says `typing: false` later.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TypingStart {
    pub booking: BookingId,
    pub user: UserId,
    pub broadcast: bool,
}

/// A participant stopped typing. A booking with no room here has no timer
/// to stop, so none is started for it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TypingStop {
    pub booking: BookingId,
    pub user: UserId,
}

impl ForRoom for TypingStart {
    fn room(&self) -> RoomKey {
        RoomKey::Booking(self.booking.clone())
    }

    fn starts_room(&self) -> bool {
        true
    }

    fn deliver(self, room: Option<&KindAddr>) {
        if let Some(KindAddr::Booking(addr)) = room {
            addr.do_send(self);
        }
    }
}

impl ForRoom for TypingStop {
    fn room(&self) -> RoomKey {
        RoomKey::Booking(self.booking.clone())
    }

    fn deliver(self, room: Option<&KindAddr>) {
        if let Some(KindAddr::Booking(addr)) = room {
            addr.do_send(self);
        }
    }
}

/// Tells the room (on every node), but the typist, whether they type.
fn say_typing(fanout: &Fanout, room: &RoomKey, user: &UserId, typing: bool) {
    let RoomKey::Booking(booking_id) = room else {
        return; // only booking rooms have typists
    };
    let event = ServerEvent::Typing {
        booking_id: booking_id.clone(),
        user_id: user.clone(),
        typing,
    };
    fanout.emit_except(room.clone(), event, Some(user.clone()));
}

impl BookingRoom {
    fn say_typing(&self, user: &UserId, typing: bool) {
        say_typing(&self.fanout, &self.key, user, typing);
    }
}

impl Handler<TypingStart> for BookingRoom {
    type Result = ();
    fn handle(&mut self, msg: TypingStart, ctx: &mut Context<Self>) {
        if msg.broadcast {
            self.say_typing(&msg.user, true);
        }
        if let Some(handle) = self.state.timers.remove(&msg.user) {
            ctx.cancel_future(handle);
        }
        let user = msg.user.clone();
        let handle = ctx.run_later(TYPING_TIMEOUT, move |room, ctx| {
            room.state.timers.remove(&user);
            room.say_typing(&user, false);
            room.check_idle(ctx);
        });
        self.state.timers.insert(msg.user, handle);
        self.check_idle(ctx);
    }
}

impl Handler<TypingStop> for BookingRoom {
    type Result = ();
    fn handle(&mut self, msg: TypingStop, ctx: &mut Context<Self>) {
        if let Some(handle) = self.state.timers.remove(&msg.user) {
            ctx.cancel_future(handle);
            self.say_typing(&msg.user, false);
        }
        self.check_idle(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_starts_the_booking_room_and_a_stop_does_not() {
        let booking = BookingId::parse("b1").unwrap_or_else(|| panic!("test id"));
        let user = UserId::parse("u1").unwrap_or_else(|| panic!("test id"));
        let start = TypingStart {
            booking: booking.clone(),
            user: user.clone(),
            broadcast: true,
        };
        let stop = TypingStop {
            booking: booking.clone(),
            user,
        };
        assert_eq!(start.room(), RoomKey::Booking(booking.clone()));
        assert_eq!(stop.room(), RoomKey::Booking(booking));
        // The room owns the timer that ends a start; a stop with no room
        // here has no timer to stop.
        assert!(start.starts_room());
        assert!(!stop.starts_room());
    }
}
