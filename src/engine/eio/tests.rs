//! The Engine.IO layer on its own: no server, no actor, no session. Each
//! test drives an [`Engine`] by calls and reads what it answers, what it
//! queued and which timers it armed.

use std::cell::RefCell;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use super::longpoll::{NOT_POLLING, OVERLAPPING_POLL};
use super::*;
use crate::engine::PACKET_OVERHEAD;

const CONFIG: Config = Config {
    ping_interval: Duration::from_millis(25_000),
    ping_timeout: Duration::from_millis(20_000),
    max_payload: 1_000_000,
};

/// What the engine asked of its timers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Armed {
    Every(Timer, Duration),
    After(Timer, u32, Duration),
    Cancel(Timer),
}

#[derive(Default)]
struct Clock(RefCell<Vec<Armed>>);

impl Schedule for Clock {
    fn every(&self, timer: Timer, period: Duration) {
        self.0.borrow_mut().push(Armed::Every(timer, period));
    }
    fn after(&self, timer: Timer, token: u32, delay: Duration) {
        self.0.borrow_mut().push(Armed::After(timer, token, delay));
    }
    fn cancel(&self, timer: Timer) {
        self.0.borrow_mut().push(Armed::Cancel(timer));
    }
}

impl Clock {
    fn take(&self) -> Vec<Armed> {
        std::mem::take(&mut self.0.borrow_mut())
    }
}

/// A polling connection, opened, whose open packet a GET has taken.
fn polling(max_outbound: usize) -> (Engine, Clock) {
    let (mut engine, clock) = (Engine::new("sid1", true, max_outbound), Clock::default());
    assert_eq!(engine.open(&CONFIG, &clock), Step::Done);
    assert!(get(&engine).starts_with("0{"));
    clock.take();
    (engine, clock)
}

/// Counts its wake-ups: a GET's task.
#[derive(Default)]
struct Wakes(AtomicUsize);

impl Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Wakes {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Runs a GET's answer once, as its task would when woken: `None` while
/// it waits.
fn ready(answer: &mut Answer, wakes: &Arc<Wakes>) -> Option<PollAnswer> {
    let waker = Waker::from(wakes.clone());
    match Pin::new(answer).poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(answer) => Some(answer),
        Poll::Pending => None,
    }
}

/// The connection's long-polling queue, where its GETs take their answers.
fn queue(engine: &Engine) -> LongPoll {
    let Some(queue) = engine.long_poll() else {
        panic!("the connection does not poll");
    };
    queue
}

/// A GET, taken from the queue as the GET's request takes it (no call to
/// the engine), and the first run of its answer.
fn poll(engine: &Engine) -> (Answer, Step<'static>, Option<PollAnswer>) {
    poll_on(&queue(engine))
}

fn poll_on(queue: &LongPoll) -> (Answer, Step<'static>, Option<PollAnswer>) {
    let (mut answer, step) = queue.get();
    let first = ready(&mut answer, &Arc::default());
    (answer, step, first)
}

/// A GET answered at once.
fn get(engine: &Engine) -> String {
    match poll(engine) {
        (_, Step::Done, Some(PollAnswer::Payload(payload))) => payload,
        (_, step, answer) => panic!("GET not answered at once: {step:?}, {answer:?}"),
    }
}

/// A GET that waits (nothing to send yet).
fn wait(engine: &Engine) -> Answer {
    match poll(engine) {
        (answer, Step::Done, None) => answer,
        (_, step, answer) => panic!("GET answered: {step:?}, {answer:?}"),
    }
}

fn payload(text: &str) -> Option<PollAnswer> {
    Some(PollAnswer::Payload(text.to_owned()))
}

#[test]
fn open_queues_the_open_packet_and_starts_the_heartbeat() {
    let clock = Clock::default();
    let mut engine = Engine::new("abc", true, 10_000);
    assert_eq!(engine.open(&CONFIG, &clock), Step::Done);
    assert_eq!(
        clock.take(),
        vec![Armed::Every(Timer::Ping, CONFIG.ping_interval)]
    );
    let open = get(&engine);
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&open[1..]) else {
        panic!("not JSON: {open}");
    };
    assert_eq!(&open[..1], "0");
    assert_eq!(json["sid"], "abc");
    assert_eq!(json["upgrades"], serde_json::json!(["websocket"]));
    assert_eq!(json["pingInterval"], 25_000);
    assert_eq!(json["pingTimeout"], 20_000);
    assert_eq!(json["maxPayload"], 1_000_000);

    // On a WebSocket: nothing to upgrade to, nothing for a GET.
    let mut engine = Engine::new("def", false, 10_000);
    let transport = Transport::new(10_000);
    assert_eq!(engine.attach(transport.clone()), Step::Done);
    assert_eq!(engine.open(&CONFIG, &clock), Step::Done);
    assert_eq!(transport.unwritten(), 1);
}

#[test]
fn an_unanswered_ping_closes_the_connection_at_its_deadline() {
    let (mut engine, clock) = polling(10_000);
    assert_eq!(engine.on_timer(Timer::Ping, 0, &CONFIG, &clock), Step::Done);
    assert_eq!(
        clock.take(),
        vec![Armed::After(Timer::PongDeadline, 1, CONFIG.ping_timeout)]
    );
    assert_eq!(get(&engine), "2");
    // The next tick while the ping waits sends nothing and arms nothing.
    assert_eq!(engine.on_timer(Timer::Ping, 0, &CONFIG, &clock), Step::Done);
    assert!(clock.take().is_empty());
    assert_eq!(
        engine.on_timer(Timer::PongDeadline, 1, &CONFIG, &clock),
        Step::Close(reason::PING_TIMEOUT, Ending::Away)
    );
}

#[test]
fn a_pong_cancels_the_deadline_and_the_next_ping_has_a_new_number() {
    let (mut engine, clock) = polling(10_000);
    let _ = engine.on_timer(Timer::Ping, 0, &CONFIG, &clock);
    clock.take();
    assert_eq!(engine.on_text("3", &clock), Step::Done);
    assert_eq!(clock.take(), vec![Armed::Cancel(Timer::PongDeadline)]);
    // A deadline that fires anyway (a race with the cancel) does nothing.
    assert_eq!(
        engine.on_timer(Timer::PongDeadline, 1, &CONFIG, &clock),
        Step::Done
    );
    let _ = engine.on_timer(Timer::Ping, 0, &CONFIG, &clock);
    assert_eq!(
        clock.take(),
        vec![Armed::After(Timer::PongDeadline, 2, CONFIG.ping_timeout)]
    );
    // The first ping's deadline is not the second's.
    assert_eq!(
        engine.on_timer(Timer::PongDeadline, 1, &CONFIG, &clock),
        Step::Done
    );
}

#[test]
fn client_frames_are_sorted_into_engine_io_and_socket_io() {
    let (mut engine, clock) = polling(10_000);
    assert_eq!(engine.on_text("40{}", &clock), Step::Message("0{}"));
    assert_eq!(engine.on_text("2x", &clock), Step::Done);
    assert_eq!(get(&engine), "3x", "a client's ping is answered");
    assert_eq!(engine.on_text("6", &clock), Step::Done);
    assert!(matches!(engine.on_text("", &clock), Step::Malformed(_)));
    assert!(matches!(engine.on_text("9", &clock), Step::Malformed(_)));
    assert_eq!(engine.on_text("1", &clock), Step::ClientClosed);
}

#[test]
fn a_get_takes_everything_queued_at_once_and_waits_when_nothing_is() {
    let (mut engine, _clock) = polling(10_000);
    for packet in ["42[\"a\"]", "42[\"b\"]", "3"] {
        assert_eq!(engine.send(ByteString::from(packet)), Step::Done);
    }
    assert_eq!(get(&engine), "42[\"a\"]\u{1e}42[\"b\"]\u{1e}3");
    // Nothing waits: the GET is held until a packet comes.
    let wakes = Arc::new(Wakes::default());
    let mut answer = wait(&engine);
    assert_eq!(ready(&mut answer, &wakes), None);
    // A second GET meanwhile is refused, and the connection is to close.
    let (_, step, refused) = poll(&engine);
    assert_eq!(step, Step::Close(reason::TRANSPORT_ERROR, Ending::Protocol));
    assert_eq!(refused, Some(PollAnswer::Refused(OVERLAPPING_POLL)));
    // Packets queued in one turn wake the GET once, and travel together.
    assert_eq!(engine.send(ByteString::from("40")), Step::Done);
    assert_eq!(engine.send(ByteString::from("42[\"c\"]")), Step::Done);
    assert_eq!(wakes.count(), 1);
    assert_eq!(ready(&mut answer, &wakes), payload("40\u{1e}42[\"c\"]"));
}

#[test]
fn a_get_that_goes_away_leaves_the_packets_for_the_next() {
    let (mut engine, _clock) = polling(10_000);
    let answer = wait(&engine);
    drop(answer); // the client went away
    assert_eq!(engine.send(ByteString::from("40")), Step::Done);
    // Not an overlapping GET: the first one is gone.
    assert_eq!(get(&engine), "40");
}

#[test]
fn a_push_by_another_holder_of_the_queue_answers_the_waiting_get() {
    let (engine, _clock) = polling(10_000);
    let Some(Outlet::Polling(queue)) = engine.outlet() else {
        panic!("a polling connection's outlet is its long-polling queue");
    };
    let wakes = Arc::new(Wakes::default());
    let mut answer = wait(&engine);
    assert_eq!(ready(&mut answer, &wakes), None);
    // A room's event: its text goes into the queue, the GET is woken,
    // with no call to the engine.
    let frame = SharedText::new("42[\"tick\",1]");
    assert!(queue.push_shared(&frame).is_ok());
    assert_eq!(wakes.count(), 1);
    assert_eq!(ready(&mut answer, &wakes), payload("42[\"tick\",1]"));
    // Past the bound, it is refused; then nothing more is queued, and the
    // engine's close sends the close packet after what waits.
    let (mut engine, clock) = polling(2 * (frame.text_len() + PACKET_OVERHEAD));
    let Some(outlet) = engine.outlet() else {
        panic!("no outlet");
    };
    assert!(outlet.push_shared(&frame).is_ok());
    assert!(outlet.push_shared(&frame).is_ok());
    assert!(outlet.push_shared(&frame).is_err());
    outlet.overloaded();
    assert!(
        outlet.push_shared(&SharedText::new("42[]")).is_ok(),
        "dropped"
    );
    assert_eq!(
        engine.close(Ending::Overloaded, reason::SLOW_CONSUMER, &clock),
        Some(Closed::Lingering)
    );
    assert_eq!(get(&engine), "42[\"tick\",1]\u{1e}42[\"tick\",1]");
    let (_, step, answer) = poll(&engine);
    assert_eq!((step, answer), (Step::Stop, payload("1")));
}

#[test]
fn the_outbound_bound_counts_each_packet_with_its_overhead() {
    // Room for two 10-byte packets, not three.
    let limit = 2 * (10 + PACKET_OVERHEAD);
    let (mut engine, _clock) = polling(limit);
    let packet = ByteString::from("4".repeat(10));
    assert_eq!(engine.send(packet.clone()), Step::Done);
    assert_eq!(engine.send(packet.clone()), Step::Done);
    assert_eq!(engine.send(packet.clone()), Step::Overflow);
    // What a GET took no longer counts.
    let _ = get(&engine);
    assert_eq!(engine.send(packet), Step::Done);
    // One packet larger than the bound trips it by itself.
    let (mut engine, _clock) = polling(limit);
    assert_eq!(
        engine.send(ByteString::from("4".repeat(limit))),
        Step::Overflow
    );
    // A client's pings are bounded too: answering too many is an overflow.
    let (mut engine, clock) = polling(limit);
    let _ = engine.on_text("2", &clock);
    let _ = engine.on_text("2", &clock);
    assert_eq!(engine.on_text("2", &clock), Step::Overflow);
}

#[test]
fn the_upgrade_pauses_polling_and_hands_what_waits_to_the_websocket() {
    let (mut engine, clock) = polling(10_000);
    let Some(outlet) = engine.outlet() else {
        panic!("no outlet");
    };
    let queue = queue(&engine);
    let wakes = Arc::new(Wakes::default());
    let mut answer = wait(&engine);
    assert_eq!(ready(&mut answer, &wakes), None);
    let websocket = Transport::new(10_000);
    engine.probe(websocket.clone());
    // The waiting GET is let go with a noop, so the client can upgrade.
    assert_eq!(wakes.count(), 1);
    assert_eq!(ready(&mut answer, &wakes), payload("6"));
    // Packets queued during the probe wait for the WebSocket.
    assert_eq!(engine.send(ByteString::from("42[\"a\"]")), Step::Done);
    assert_eq!(get(&engine), "6");
    // A second probe is refused.
    let other = Transport::new(10_000);
    engine.probe(other.clone());
    assert_eq!(
        engine.transport_closed(&other),
        None,
        "not the connection's"
    );
    // A room's event pushed to the long-polling queue meanwhile waits too.
    assert!(outlet.push_shared(&SharedText::new("42[\"r\"]")).is_ok());
    assert_eq!(engine.attach(websocket.clone()), Step::Done);
    assert_eq!(
        websocket.unwritten(),
        2,
        "what waited went to the WebSocket"
    );
    assert!(engine.websocket() == Some(&websocket));
    assert!(matches!(engine.outlet(), Some(Outlet::WebSocket(t)) if t == websocket));
    // A room still pointed at the long-polling queue: its event follows
    // what waited to the WebSocket.
    assert!(outlet.push_shared(&SharedText::new("42[\"s\"]")).is_ok());
    assert_eq!(websocket.unwritten(), 3);
    // From now on packets go to the WebSocket, and polling is refused by
    // the queue a GET still finds (with nothing asked of the engine).
    assert_eq!(engine.send(ByteString::from("42[\"b\"]")), Step::Done);
    assert_eq!(websocket.unwritten(), 4);
    assert!(engine.long_poll().is_none());
    let (_, step, answer) = poll_on(&queue);
    assert_eq!(step, Step::Done);
    assert_eq!(answer, Some(PollAnswer::Refused(NOT_POLLING)));
    assert_eq!(engine.posted("40", 16).err(), Some(PostRefused::NotPolling));
    let _ = clock;
    // Its end is the connection's end, with what it left unwritten.
    assert_eq!(engine.transport_closed(&websocket), Some(4));
}

#[test]
fn a_probe_that_fails_lets_polling_go_on() {
    let (mut engine, _clock) = polling(10_000);
    let websocket = Transport::new(10_000);
    engine.probe(websocket.clone());
    assert_eq!(engine.send(ByteString::from("40")), Step::Done);
    // Every GET during the probe is let go with a noop.
    for _ in 0..2 {
        assert_eq!(get(&engine), "6");
    }
    // The probing WebSocket goes: the next GET takes what waited.
    assert_eq!(engine.transport_closed(&websocket), None);
    assert_eq!(get(&engine), "40");
    // And polling goes on as before.
    let wakes = Arc::new(Wakes::default());
    let mut answer = wait(&engine);
    assert_eq!(ready(&mut answer, &wakes), None);
    assert_eq!(engine.send(ByteString::from("41")), Step::Done);
    assert_eq!(ready(&mut answer, &wakes), payload("41"));
}

#[test]
fn a_closed_poller_lingers_for_the_get_that_takes_its_close_packet() {
    let (mut engine, clock) = polling(10_000);
    assert_eq!(engine.send(ByteString::from("41")), Step::Done);
    assert_eq!(
        engine.close(Ending::Policy, reason::TRANSPORT_CLOSE, &clock),
        Some(Closed::Lingering)
    );
    assert_eq!(
        clock.take(),
        vec![Armed::After(Timer::Linger, 0, CLOSE_LINGER)]
    );
    assert!(engine.is_closing());
    assert_eq!(
        engine.close(Ending::Policy, reason::TRANSPORT_CLOSE, &clock),
        None,
        "once"
    );
    // Nothing more is queued, or taken in.
    assert_eq!(engine.send(ByteString::from("42")), Step::Done);
    assert_eq!(engine.posted("40", 16).err(), Some(PostRefused::Closed));
    // The last packets go alone, then the close packet, to a GET that
    // asks the owner to stop.
    assert_eq!(get(&engine), "41");
    let (mut answer, step) = queue(&engine).get();
    assert_eq!(step, Step::Stop);
    // A GET after it is told the connection is over, asking nothing.
    let (_, step, late) = poll(&engine);
    assert_eq!((step, late), (Step::Done, Some(PollAnswer::Gone)));
    assert_eq!(
        engine.on_timer(Timer::Linger, 0, &CONFIG, &clock),
        Step::Stop
    );
    // It answers the close packet even once the engine has gone.
    engine.end(reason::TRANSPORT_CLOSE);
    drop(engine);
    assert_eq!(ready(&mut answer, &Arc::default()), payload("1"));
}

/// A GET takes the close packet on its own, so its owner learns it only
/// later: an upgrade completing meanwhile must not take the connection
/// over (nor turn the close packet into a noop).
#[test]
fn an_upgrade_after_a_get_took_the_close_packet_is_refused() {
    let (mut engine, clock) = polling(10_000);
    let websocket = Transport::new(10_000);
    assert_eq!(
        engine.close(Ending::Policy, reason::TRANSPORT_CLOSE, &clock),
        Some(Closed::Lingering)
    );
    let (mut answer, step) = queue(&engine).get();
    assert_eq!(step, Step::Stop);
    assert_eq!(engine.attach(websocket.clone()), Step::Done);
    assert!(engine.websocket().is_none(), "refused");
    assert!(websocket.push(ByteString::from("42")).is_ok());
    assert_eq!(websocket.unwritten(), 0, "the WebSocket is closing");
    assert_eq!(ready(&mut answer, &Arc::default()), payload("1"));
}

#[test]
fn a_websocket_connection_has_no_queue_for_gets() {
    let mut engine = Engine::new("ws", false, 10_000);
    assert!(
        engine.long_poll().is_none(),
        "before its WebSocket attaches"
    );
    assert_eq!(engine.attach(Transport::new(10_000)), Step::Done);
    assert!(engine.long_poll().is_none());
}

#[test]
fn a_get_waiting_when_the_connection_ends_is_told() {
    let (engine, _clock) = polling(10_000);
    let wakes = Arc::new(Wakes::default());
    let mut answer = wait(&engine);
    assert_eq!(ready(&mut answer, &wakes), None);
    drop(engine);
    assert_eq!(wakes.count(), 1);
    assert_eq!(ready(&mut answer, &wakes), Some(PollAnswer::Gone));
}

#[test]
fn a_closed_websocket_connection_ends_at_once() {
    let clock = Clock::default();
    let mut engine = Engine::new("ws", false, 10_000);
    let websocket = Transport::new(10_000);
    assert_eq!(engine.attach(websocket.clone()), Step::Done);
    assert_eq!(
        engine.close(Ending::Overloaded, reason::SLOW_CONSUMER, &clock),
        Some(Closed::Now)
    );
    assert!(clock.take().is_empty(), "no linger");
    assert!(engine.websocket().is_none());
}

#[test]
fn posts_are_one_at_a_time_and_bounded_in_packets() {
    let (mut engine, _clock) = polling(10_000);
    assert_eq!(engine.post_started(), Ok(()));
    assert_eq!(engine.post_started(), Err(PostRefused::Overlapping));
    engine.post_ended();
    assert_eq!(engine.post_started(), Ok(()));
    let packets: Option<Vec<&str>> = engine
        .posted("40\u{1e}3\u{1e}6", 3)
        .ok()
        .map(Iterator::collect);
    assert_eq!(packets, Some(vec!["40", "3", "6"]));
    assert_eq!(
        engine.posted("40\u{1e}3\u{1e}6", 2).err(),
        Some(PostRefused::TooManyPackets)
    );
}

/// The Engine.IO layer, and the byte engine under it, import nothing of
/// the layers above: only themselves and the codec (the crate's `protocol`).
/// A path into the session (or rooms, auth, broker, handlers, store, error,
/// timers…) in the code of any file under src/engine/ fails here; comments
/// are not read.
#[test]
fn imports_stay_in_the_engine() {
    const ALLOWED: &[&str] = &["engine", "protocol"];
    // Spelled in pieces so that this file does not match itself.
    const CRATE: &str = concat!("crate", "::");
    const UPWARD: &[&str] = &[concat!("super::super", "::super"), concat!("souk", "::")];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/engine");
    let mut files = vec![root.join("mod.rs")];
    let mut dirs = vec![root];
    let mut seen = 0;
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            panic!("cannot read {}", dir.display());
        };
        for path in entries.flatten().map(|entry| entry.path()) {
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && !files.contains(&path) {
                files.push(path);
            }
        }
    }
    for file in &files {
        let Ok(source) = std::fs::read_to_string(file) else {
            panic!("cannot read {}", file.display());
        };
        let code: String = source
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        seen += 1;
        for (at, _) in code.match_indices(CRATE) {
            let module: String = code[at + CRATE.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            assert!(
                ALLOWED.contains(&module.as_str()),
                "{} reaches the crate's `{module}`: the engine may use only {ALLOWED:?}",
                file.display()
            );
        }
        for upward in UPWARD {
            assert!(
                !code.contains(upward),
                "{} reaches outside the engine through `{upward}`",
                file.display()
            );
        }
    }
    assert!(seen >= 8, "read only {seen} files under src/engine");
}
