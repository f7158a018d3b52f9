//! The long-polling queue of one connection, as a shared handle (what
//! [`Transport`] is for a WebSocket): the packets waiting for a GET, and
//! the GET that waits for packets. Whoever holds a clone pushes into it:
//! the connection's owner, and the rooms, which put an event's text here
//! directly with no message to the owner. A GET takes its answer here too
//! ([`LongPoll::get`]), with no message to the owner either: the rules of
//! a GET (one at a time, a noop during an upgrade probe, the close packet
//! alone and last, none once upgraded) are kept under the queue's lock, and
//! the owner is told only when a GET asks something of it.
//!
//! A waiting GET is a future ([`Answer`]) that a push wakes; when it runs
//! it takes everything waiting at once. So packets queued together (in one
//! turn of the owner, or a burst of events) travel together in one payload
//! when the GET's task runs on the pushing thread, and a burst costs one
//! wake-up; a GET on another thread may take a burst in two payloads,
//! which Engine.IO allows.
//!
//! One mutex holds the packets, the GET's waker and the connection's
//! stage, so that a push and a GET, or a push and an upgrade, never
//! interleave: what is pushed after the packets moved to a WebSocket goes
//! to that WebSocket, behind them.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytestring::ByteString;

use super::outbound::Ending;
use super::Step;
use crate::engine::reason;
use crate::engine::websocket::frame::SharedText;
use crate::engine::websocket::Transport;
use crate::engine::{Full, PACKET_OVERHEAD};
use crate::protocol::engine;

/// The answer to a long-polling GET.
#[derive(Debug, PartialEq, Eq)]
pub enum PollAnswer {
    /// Packets joined with the record separator.
    Payload(String),
    /// The GET is refused (a bad request): why.
    Refused(&'static str),
    /// The connection ended while the GET waited.
    Gone,
}

/// Packets waiting for a long-polling GET, or for a WebSocket to take over.
#[derive(Default)]
struct Backlog {
    frames: VecDeque<ByteString>,
    /// The bytes that count against the limit, with [`PACKET_OVERHEAD`] each.
    counted: usize,
}

impl Backlog {
    /// Adds a packet; refused when it would take the count over `limit`
    /// (checked before it is queued, so one packet larger than the limit
    /// is refused too).
    fn push(&mut self, frame: ByteString, limit: usize) -> Result<(), Full> {
        let cost = frame.len() + PACKET_OVERHEAD;
        if self.counted + cost > limit {
            return Err(Full);
        }
        self.frames.push_back(frame);
        self.counted += cost;
        Ok(())
    }

    /// Everything waiting, oldest first, joined into one payload.
    fn take_payload(&mut self) -> String {
        let bytes = self.frames.iter().map(|p| p.len() + 1).sum();
        let mut payload = String::with_capacity(bytes);
        for (index, packet) in self.frames.iter().enumerate() {
            if index > 0 {
                payload.push(engine::SEPARATOR);
            }
            payload.push_str(packet);
        }
        self.frames.clear();
        self.counted = 0;
        payload
    }
}

/// Where the connection is in its life, as the queue sees it.
#[derive(Default)]
enum Stage {
    /// Packets wait here for a GET.
    #[default]
    Polling,
    /// A WebSocket took over: what is pushed goes to it.
    Moved(Transport),
    /// The close packet is handed to the GET that waited: the connection
    /// is over, and that GET answers it even after the owner has gone.
    CloseSent,
    /// The owner has gone: packets are dropped, a waiting GET is told.
    Gone,
}

#[derive(Default)]
struct State {
    waiting: Backlog,
    /// A GET is registered and not answered yet; its waker once it has
    /// waited.
    get: Option<Option<Waker>>,
    /// An upgrade probe is under way: GETs are let go with a noop, and
    /// packets wait for the WebSocket.
    paused: bool,
    /// The close packet is to be the last one: nothing more is queued.
    closing: bool,
    stage: Stage,
}

impl State {
    /// The waiting GET's waker, taken, when it may answer now.
    fn take_get_waker(&mut self) -> Option<Waker> {
        self.get.as_mut().and_then(Option::take)
    }
}

struct Shared {
    state: Mutex<State>,
    /// The bytes that may wait, counted with [`PACKET_OVERHEAD`] each.
    limit: usize,
}

/// One connection's long-polling queue. Clones are the same queue.
#[derive(Clone)]
pub struct LongPoll(Arc<Shared>);

/// Why a GET is refused while another waits.
pub const OVERLAPPING_POLL: &str = "overlapping polling requests";

/// Why a GET is refused on a connection that does not poll.
pub const NOT_POLLING: &str =
    "this session does not poll: it has upgraded or was opened on a WebSocket";

impl LongPoll {
    /// A queue holding at most `limit` counted bytes.
    pub fn new(limit: usize) -> Self {
        LongPoll(Arc::new(Shared {
            state: Mutex::default(),
            limit,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding it leaves plain data behind: keep going.
        self.0
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a packet for the client and wakes a waiting GET. Refused
    /// past the bound: the client is a slow consumer. Dropped once the
    /// close packet is queued or the connection is over; sent to the
    /// WebSocket once one took over.
    pub fn push(&self, frame: ByteString) -> Result<(), Full> {
        self.queue(frame, Transport::push)
    }

    /// Queues a room's event, encoded once for all its members: here its
    /// text (a reference count, no copy), or on a WebSocket that took over,
    /// its whole frame. Bounded as [`LongPoll::push`].
    pub fn push_shared(&self, frame: &SharedText) -> Result<(), Full> {
        self.queue(frame.text().clone(), |transport, _| {
            transport.push_shared(frame)
        })
    }

    fn queue(
        &self,
        frame: ByteString,
        forward: impl FnOnce(&Transport, ByteString) -> Result<(), Full>,
    ) -> Result<(), Full> {
        let mut state = self.lock();
        match &state.stage {
            // Under the lock, so nothing overtakes what moved to it.
            Stage::Moved(transport) => return forward(transport, frame),
            Stage::CloseSent | Stage::Gone => return Ok(()),
            Stage::Polling if state.closing => return Ok(()),
            Stage::Polling => {}
        }
        state.waiting.push(frame, self.0.limit)?;
        let waker = match state.paused {
            true => None,
            false => state.take_get_waker(),
        };
        drop(state);
        wake(waker);
        Ok(())
    }

    /// A GET arrives, taken straight from the queue by the GET's request
    /// (no call to the connection's owner, so no message to it): its
    /// answer, a future that resolves once there is something to send,
    /// and what the owner must do, to be handed on to it in the two rare
    /// cases that ask something of it:
    /// - [`Step::Stop`]: this GET takes the close packet, the last one
    ///   (the connection closed and the packets before it went out): the
    ///   connection is over;
    /// - [`Step::Close`]: another GET waits; this one is refused, and the
    ///   connection is to close, as Engine.IO's reference server does.
    ///
    /// Otherwise [`Step::Done`]. Refused ([`NOT_POLLING`]) once a WebSocket
    /// took over; answered [`PollAnswer::Gone`] once the close packet went
    /// to another GET or the owner has gone.
    pub fn get(&self) -> (Answer, Step<'static>) {
        let mut state = self.lock();
        match state.stage {
            Stage::Polling => {}
            Stage::Moved(_) => {
                return (Answer::ready(PollAnswer::Refused(NOT_POLLING)), Step::Done)
            }
            Stage::CloseSent | Stage::Gone => return (Answer::ready(PollAnswer::Gone), Step::Done),
        }
        if state.get.is_some() {
            return (
                Answer::ready(PollAnswer::Refused(OVERLAPPING_POLL)),
                Step::Close(reason::TRANSPORT_ERROR, Ending::Protocol),
            );
        }
        state.get = Some(None);
        let answer = Answer {
            queue: Some(self.clone()),
            ready: None,
        };
        if state.closing && state.waiting.frames.is_empty() && !state.paused {
            state.stage = Stage::CloseSent;
            return (answer, Step::Stop);
        }
        (answer, Step::Done)
    }

    /// An upgrade probe begins (`true`: a waiting GET is let go with a
    /// noop, so the client's polling loop can pause) or has failed
    /// (`false`: a waiting GET takes what waits).
    pub(super) fn pause(&self, paused: bool) {
        let waker = {
            let mut state = self.lock();
            state.paused = paused;
            state.take_get_waker()
        };
        wake(waker);
    }

    /// The WebSocket takes over: what waits goes to it, counted as it was,
    /// and so does whatever is pushed from now on. A waiting GET is let go
    /// with a noop. False, and nothing moves, when the connection is over:
    /// a GET took the close packet (on its own, so the owner may learn it
    /// only after this).
    pub(super) fn move_to(&self, transport: &Transport) -> Result<bool, Full> {
        let mut state = self.lock();
        if !matches!(state.stage, Stage::Polling) {
            return Ok(false);
        }
        let counted = std::mem::take(&mut state.waiting.counted);
        let frames = std::mem::take(&mut state.waiting.frames);
        transport.append(frames, counted)?;
        state.stage = Stage::Moved(transport.clone());
        let waker = state.take_get_waker();
        drop(state);
        wake(waker);
        Ok(true)
    }

    /// The close packet is the last one: it goes alone, in the GET after
    /// the packets that wait (socket.io-client handles a payload's packets
    /// on the next tick but its close at once, so packets sharing a payload
    /// with the close would be dropped). True when a waiting GET took it
    /// now: the connection is over.
    pub(super) fn close(&self) -> bool {
        let mut state = self.lock();
        state.closing = true;
        state.paused = false;
        let now = state.get.is_some() && state.waiting.frames.is_empty();
        if !now || !matches!(state.stage, Stage::Polling) {
            return false;
        }
        state.stage = Stage::CloseSent;
        let waker = state.take_get_waker();
        drop(state);
        wake(waker);
        true
    }

    /// A room's push was refused by the bound: nothing more is queued (the
    /// owner, told, closes the connection as a slow consumer); a WebSocket
    /// that took over is closed as one at once.
    pub fn overloaded(&self) {
        let mut state = self.lock();
        if let Stage::Moved(transport) = &state.stage {
            super::close_overloaded(transport);
        }
        state.closing = true;
    }

    /// The owner has gone: what waits is dropped and a waiting GET is told
    /// (unless it took the close packet).
    pub(super) fn end(&self) {
        let mut state = self.lock();
        if matches!(state.stage, Stage::Polling) {
            state.stage = Stage::Gone;
        }
        state.waiting = Backlog::default();
        let waker = state.take_get_waker();
        drop(state);
        wake(waker);
    }
}

/// Wakes a GET's task, out of the lock (its task may run on this thread at
/// once, or on another that then takes the lock).
fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// The answer to one GET: resolves once there is something to send (every
/// packet waiting, joined), a noop during an upgrade, the close packet, or
/// [`PollAnswer::Gone`]. Dropped before that (the client went away), it
/// leaves the packets waiting for the next GET.
pub struct Answer {
    /// The queue this GET waits on, until it is answered.
    queue: Option<LongPoll>,
    /// An answer known at once (a refusal).
    ready: Option<PollAnswer>,
}

impl Answer {
    /// A GET answered at once, with no wait on the queue.
    fn ready(answer: PollAnswer) -> Self {
        Answer {
            queue: None,
            ready: Some(answer),
        }
    }
}

impl Future for Answer {
    type Output = PollAnswer;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<PollAnswer> {
        if let Some(ready) = self.ready.take() {
            return Poll::Ready(ready);
        }
        let Some(queue) = &self.queue else {
            return Poll::Ready(PollAnswer::Gone);
        };
        let mut state = queue.lock();
        let answer = match &state.stage {
            Stage::CloseSent => PollAnswer::Payload(engine::CLOSE.to_owned()),
            Stage::Gone => PollAnswer::Gone,
            Stage::Moved(_) => PollAnswer::Payload(engine::NOOP.to_owned()),
            Stage::Polling if state.paused => PollAnswer::Payload(engine::NOOP.to_owned()),
            Stage::Polling if !state.waiting.frames.is_empty() => {
                PollAnswer::Payload(state.waiting.take_payload())
            }
            Stage::Polling => {
                match &mut state.get {
                    Some(Some(waker)) if waker.will_wake(cx.waker()) => {}
                    slot => *slot = Some(Some(cx.waker().clone())),
                }
                return Poll::Pending;
            }
        };
        state.get = None;
        drop(state);
        self.queue = None;
        Poll::Ready(answer)
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if let Some(queue) = self.queue.take() {
            queue.lock().get = None;
        }
    }
}
