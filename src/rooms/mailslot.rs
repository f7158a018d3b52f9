//! A member's delivery handle, shared by every room it is in: a room puts
//! an event's frame straight into the connection's transport, with no
//! actor message per member: a WebSocket's queue (waking its writer), or a
//! long-polling connection's queue (its text, waking a waiting GET, which
//! takes everything queued). Only when the session has not pointed it at
//! a transport (before its CONNECT is answered, once it closes) does the
//! frame go through the session's mailbox as a [`Deliver`].
//!
//! Upgrade: until the session points it at the WebSocket, frames go to the
//! long-polling queue, which forwards them to the WebSocket once what
//! waited moved there, so nothing is lost or reordered by the switch.
//!
//! Order: a frame pushed directly must not overtake one still in the
//! session's mailbox, so while a fallback message is in flight every frame
//! falls back, until the session has handled them all.
//!
//! Repeats (an emission sent to several rooms the connection is in, or
//! replayed on recovery) are dropped here, under the same lock, on either
//! path.

use std::sync::{Mutex, MutexGuard};

use actix::prelude::*;
use actix::WeakRecipient;

use super::recent::Recent;
use super::Deliver;
use crate::engine::eio::Outlet;

/// The session's transport refused a frame pushed directly (its bound
/// tripped): a WebSocket is already closing as a slow consumer, a
/// long-polling queue takes nothing more; the session counts it and
/// closes.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Overflowed;

/// What a delivery to a member did (for the rooms' metric and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Queued on the transport (WebSocket or long-polling), no message.
    Direct,
    /// Sent to the session's mailbox.
    Mailbox,
    /// A repeat, or the connection has overflowed: dropped.
    Dropped,
}

/// One connection's delivery handle.
pub struct Mailslot {
    slot: Mutex<Slot>,
    fallback: Recipient<Deliver>,
    /// Weak: rarely used, and a strong recipient allocates its own sender
    /// state (`fallback` keeps the connection reachable).
    overflow: WeakRecipient<Overflowed>,
}

#[derive(Default)]
struct Slot {
    /// Emission ids of the latest deliveries, to drop repeats (allocated
    /// on the first).
    recent: Recent,
    /// The last offset replayed on recovery; live events up to it are repeats.
    replayed_upto: u64,
    /// The transport frames go to directly, when the session allows it.
    outlet: Option<Outlet>,
    /// Fallback messages sent and not yet handled by the session.
    in_flight: usize,
    /// The bound tripped on a direct push: nothing more is delivered.
    overflowed: bool,
}

impl Slot {
    fn repeat(&self, msg: &Deliver) -> bool {
        msg.offset <= self.replayed_upto || self.recent.contains(msg.emission)
    }
}

impl Mailslot {
    pub fn new(fallback: Recipient<Deliver>, overflow: Recipient<Overflowed>) -> Self {
        Mailslot {
            slot: Mutex::default(),
            fallback,
            overflow: overflow.downgrade(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        // A panic while holding it leaves plain data behind: keep going.
        self.slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands a room's frame to the connection: straight into its
    /// transport's queue when it may, otherwise through the session's
    /// mailbox.
    pub fn deliver(&self, msg: &Deliver) -> Delivered {
        let mut slot = self.lock();
        if slot.overflowed {
            return Delivered::Dropped;
        }
        if slot.outlet.is_none() || slot.in_flight > 0 {
            slot.in_flight += 1;
            drop(slot);
            self.fallback.do_send(msg.clone());
            return Delivered::Mailbox;
        }
        if slot.repeat(msg) {
            return Delivered::Dropped;
        }
        slot.recent.remember(msg.emission);
        let refused = match &slot.outlet {
            Some(outlet) => outlet.push_shared(&msg.frame).is_err(),
            None => false,
        };
        if refused {
            // As the session would: the connection closes as a slow
            // consumer, so nothing queued after the refused frame goes out.
            slot.overflowed = true;
            let outlet = slot.outlet.take();
            drop(slot);
            if let Some(outlet) = outlet {
                outlet.overloaded();
            }
            if let Some(session) = self.overflow.upgrade() {
                session.do_send(Overflowed);
            }
        }
        Delivered::Direct
    }

    /// The session takes a fallback message out of its mailbox: whether to
    /// send it (false for a repeat). Once none is left in flight, frames go
    /// directly again.
    pub fn take(&self, msg: &Deliver) -> bool {
        let mut slot = self.lock();
        slot.in_flight = slot.in_flight.saturating_sub(1);
        if slot.repeat(msg) {
            return false;
        }
        slot.recent.remember(msg.emission);
        true
    }

    /// Frames replayed on recovery: their emissions are remembered, and
    /// live events up to `upto` are repeats.
    pub fn replayed(&self, emissions: impl IntoIterator<Item = u64>, upto: u64) {
        let mut slot = self.lock();
        for emission in emissions {
            slot.recent.remember(emission);
        }
        slot.replayed_upto = upto;
    }

    /// Sets (or clears) the transport frames may go to directly. The
    /// session sets it once its CONNECT is answered (the long-polling
    /// queue, or the WebSocket) and again when a WebSocket takes over from
    /// long-polling, and clears it when it closes.
    pub fn direct_to(&self, outlet: Option<Outlet>) {
        self.lock().outlet = outlet;
    }

    /// Whether frames go to the transport directly now (for tests).
    pub fn is_direct(&self) -> bool {
        let slot = self.lock();
        slot.outlet.is_some() && slot.in_flight == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use actix::prelude::*;

    use futures_util::FutureExt;

    use super::{Delivered, Mailslot, Overflowed};
    use crate::engine::eio::{Answer, Engine, Outlet, PollAnswer};
    use crate::engine::websocket::Transport;
    use crate::rooms::Deliver;

    /// Stands for a session: records what reaches its mailbox.
    #[derive(Default, Clone)]
    struct Seen(Arc<Mutex<(Vec<u64>, usize)>>);

    impl Seen {
        fn get(&self) -> std::sync::MutexGuard<'_, (Vec<u64>, usize)> {
            self.0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        }
    }

    struct Sink(Seen);

    impl Actor for Sink {
        type Context = Context<Self>;
    }

    impl Handler<Deliver> for Sink {
        type Result = ();
        fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) {
            self.0.get().0.push(msg.emission);
        }
    }

    impl Handler<Overflowed> for Sink {
        type Result = ();
        fn handle(&mut self, _: Overflowed, _: &mut Context<Self>) {
            self.0.get().1 += 1;
        }
    }

    fn slot() -> (Mailslot, Seen) {
        let seen = Seen::default();
        let sink = Sink(seen.clone()).start();
        (
            Mailslot::new(sink.clone().recipient(), sink.recipient()),
            seen,
        )
    }

    fn event(emission: u64, offset: u64) -> Deliver {
        Deliver {
            frame: format!("42[\"tick\",{emission}]").into(),
            emission,
            offset,
        }
    }

    async fn settle() {
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }

    #[actix_web::test]
    async fn without_a_websocket_frames_go_through_the_mailbox() {
        let (slot, seen) = slot();
        assert_eq!(slot.deliver(&event(1, 1)), Delivered::Mailbox);
        settle().await;
        assert_eq!(seen.get().0, vec![1]);
    }

    #[actix_web::test]
    async fn with_a_websocket_frames_are_queued_with_no_message_and_once() {
        let (slot, seen) = slot();
        let transport = Transport::new(1 << 20);
        slot.direct_to(Some(Outlet::WebSocket(transport.clone())));
        assert_eq!(slot.deliver(&event(1, 1)), Delivered::Direct);
        // The same emission from another room the connection is in.
        assert_eq!(slot.deliver(&event(1, 1)), Delivered::Dropped);
        assert_eq!(slot.deliver(&event(2, 2)), Delivered::Direct);
        settle().await;
        assert!(seen.get().0.is_empty(), "no actor message");
        assert_eq!(transport.unwritten(), 2);
    }

    #[actix_web::test]
    async fn no_frame_overtakes_one_still_in_the_mailbox() {
        let (slot, seen) = slot();
        // Sent before the WebSocket was attached: still in the mailbox.
        assert_eq!(slot.deliver(&event(1, 1)), Delivered::Mailbox);
        let transport = Transport::new(1 << 20);
        slot.direct_to(Some(Outlet::WebSocket(transport.clone())));
        assert!(!slot.is_direct());
        assert_eq!(slot.deliver(&event(2, 2)), Delivered::Mailbox);
        // Its repeat falls back too, and is dropped when the session takes it.
        assert_eq!(slot.deliver(&event(2, 2)), Delivered::Mailbox);
        assert!(slot.take(&event(1, 1)));
        assert!(slot.take(&event(2, 2)));
        assert!(!slot.take(&event(2, 2)));
        // All handled: direct again, repeats still dropped.
        assert!(slot.is_direct());
        assert_eq!(slot.deliver(&event(2, 2)), Delivered::Dropped);
        assert_eq!(slot.deliver(&event(3, 3)), Delivered::Direct);
        settle().await;
        assert_eq!(seen.get().0, vec![1, 2, 2]);
        assert_eq!(transport.unwritten(), 1);
    }

    #[actix_web::test]
    async fn replayed_events_are_repeats() {
        let (slot, _) = slot();
        slot.direct_to(Some(Outlet::WebSocket(Transport::new(1 << 20))));
        slot.replayed([7], 10);
        assert_eq!(slot.deliver(&event(8, 9)), Delivered::Dropped);
        assert_eq!(slot.deliver(&event(7, 11)), Delivered::Dropped);
        assert_eq!(slot.deliver(&event(12, 12)), Delivered::Direct);
    }

    #[actix_web::test]
    async fn a_frame_past_the_bound_closes_the_connection_and_tells_the_session() {
        let (slot, seen) = slot();
        let transport = Transport::new(200);
        slot.direct_to(Some(Outlet::WebSocket(transport.clone())));
        assert_eq!(slot.deliver(&event(1, 1)), Delivered::Direct);
        // Refused by the bound: the connection is closing, told once.
        assert_eq!(slot.deliver(&event(2, 2)), Delivered::Direct);
        assert_eq!(slot.deliver(&event(3, 3)), Delivered::Dropped);
        settle().await;
        assert_eq!(seen.get().1, 1);
        assert!(seen.get().0.is_empty());
        assert_eq!(
            transport.unwritten(),
            1,
            "nothing queued past the refused frame"
        );
    }

    /// A GET, taken from the connection's long-polling queue.
    fn get(engine: &Engine) -> Answer {
        let Some(queue) = engine.long_poll() else {
            panic!("a polling connection has a long-polling queue");
        };
        queue.get().0
    }

    /// A polling connection whose open packet a GET has taken, and the
    /// outlet rooms push to.
    fn poller(limit: usize) -> (Engine, Outlet) {
        let mut engine = Engine::new("sid", true, limit);
        let _ = engine.send("0{}".into());
        let _ = get(&engine).now_or_never();
        let Some(outlet) = engine.outlet() else {
            panic!("a polling connection has an outlet");
        };
        (engine, outlet)
    }

    #[actix_web::test]
    async fn a_polling_member_s_waiting_get_is_answered_with_no_message() {
        let (slot, seen) = slot();
        let (engine, outlet) = poller(1 << 20);
        slot.direct_to(Some(outlet));
        let get = actix_web::rt::spawn(get(&engine));
        settle().await; // the GET waits
        assert_eq!(slot.deliver(&event(1, 1)), Delivered::Direct);
        assert_eq!(slot.deliver(&event(1, 1)), Delivered::Dropped);
        assert_eq!(slot.deliver(&event(2, 2)), Delivered::Direct);
        let answer = get.await.unwrap_or_else(|err| panic!("GET: {err}"));
        // Both events, in one payload: the GET ran after the burst.
        assert_eq!(
            answer,
            PollAnswer::Payload("42[\"tick\",1]\u{1e}42[\"tick\",2]".into())
        );
        settle().await;
        assert!(seen.get().0.is_empty(), "no actor message");
    }

    #[actix_web::test]
    async fn a_polling_member_gets_no_frame_before_one_still_in_the_mailbox() {
        let (slot, _) = slot();
        let (mut engine, outlet) = poller(1 << 20);
        assert_eq!(slot.deliver(&event(1, 1)), Delivered::Mailbox);
        slot.direct_to(Some(outlet));
        assert_eq!(slot.deliver(&event(2, 2)), Delivered::Mailbox);
        // The session takes them in order and queues them.
        for msg in [event(1, 1), event(2, 2)] {
            assert!(slot.take(&msg));
            let _ = engine.send(msg.frame.into());
        }
        assert_eq!(slot.deliver(&event(3, 3)), Delivered::Direct);
        let answer = get(&engine).now_or_never();
        let expected = "42[\"tick\",1]\u{1e}42[\"tick\",2]\u{1e}42[\"tick\",3]";
        assert_eq!(answer, Some(PollAnswer::Payload(expected.into())));
    }

    #[actix_web::test]
    async fn a_polling_member_past_the_bound_takes_nothing_more() {
        let (slot, seen) = slot();
        let (mut engine, outlet) = poller(200);
        slot.direct_to(Some(outlet));
        assert_eq!(slot.deliver(&event(1, 1)), Delivered::Direct);
        assert_eq!(slot.deliver(&event(2, 2)), Delivered::Direct); // refused
        assert_eq!(slot.deliver(&event(3, 3)), Delivered::Dropped);
        settle().await;
        assert_eq!(seen.get().1, 1, "the session is told once");
        // Even the session's own packets wait behind nothing more.
        let _ = engine.send("42[\"late\"]".into());
        let answer = get(&engine).now_or_never();
        assert_eq!(answer, Some(PollAnswer::Payload("42[\"tick\",1]".into())));
    }

    #[actix_web::test]
    async fn an_upgrade_switches_the_member_with_nothing_lost_or_reordered() {
        let (slot, seen) = slot();
        let (mut engine, outlet) = poller(1 << 20);
        slot.direct_to(Some(outlet));
        let websocket = Transport::new(1 << 20);
        engine.probe(websocket.clone());
        assert_eq!(slot.deliver(&event(1, 1)), Delivered::Direct);
        assert_eq!(websocket.unwritten(), 0, "it waits for the upgrade");
        let _ = engine.attach(websocket.clone());
        assert_eq!(websocket.unwritten(), 1, "what waited moved");
        // Before the session points the mailslot at the WebSocket.
        assert_eq!(slot.deliver(&event(2, 2)), Delivered::Direct);
        assert_eq!(websocket.unwritten(), 2);
        slot.direct_to(engine.outlet());
        assert_eq!(slot.deliver(&event(2, 2)), Delivered::Dropped);
        assert_eq!(slot.deliver(&event(3, 3)), Delivered::Direct);
        assert_eq!(websocket.unwritten(), 3);
        settle().await;
        assert!(seen.get().0.is_empty(), "no actor message");
    }
}
