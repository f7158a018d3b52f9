//! The handle a session holds on its WebSocket: it queues frames (bounded),
//! wakes the connection's task when the queue was empty, and asks it to
//! close. The task takes everything waiting at once, so a burst costs one
//! wake-up and one write.
//!
//! One mutex holds the queue and the task's waker: a push is one lock, and
//! a wake-up of the task costs it one lock to take what waits and one to
//! go back to sleep (no atomic waker beside the lock).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use bytes::Bytes;
use bytestring::ByteString;

use super::frame::SharedText;
use crate::engine::{Full, PACKET_OVERHEAD};

/// A frame waiting to be written.
pub(super) enum Outgoing {
    /// A text frame: its header is made when it is written.
    Text(ByteString),
    /// A whole frame, header included: a room's event encoded once for all
    /// its members, a pong, a close.
    Whole(Bytes),
}

/// What waits for the connection's task.
#[derive(Default)]
struct Queue {
    frames: VecDeque<Outgoing>,
    /// The bytes that count against the bound.
    counted: usize,
    /// The session asked to close, with this code and reason.
    close: Option<(u16, &'static str)>,
    /// The connection is gone: frames are dropped.
    ended: bool,
    /// How many frames it left unwritten when it went.
    left: usize,
    /// The task, waiting for frames or a close request.
    waker: Option<Waker>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// The bytes that may wait, counted with [`PACKET_OVERHEAD`] each.
    limit: usize,
}

/// What the connection's task found when it looked at its queue.
pub(super) struct Taken {
    /// Everything that waited, oldest first.
    pub frames: VecDeque<Outgoing>,
    /// Whether the session asked to close.
    pub closing: bool,
}

/// One WebSocket connection, as its session sees it. Clones are the same
/// connection (`==` says whether two handles are).
#[derive(Clone)]
pub struct Transport(Arc<Shared>);

impl PartialEq for Transport {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Transport {}

impl Transport {
    /// A connection whose queue holds at most `limit` counted bytes.
    pub fn new(limit: usize) -> Self {
        Transport(Arc::new(Shared {
            queue: Mutex::default(),
            limit,
        }))
    }

    fn lock(&self) -> Option<MutexGuard<'_, Queue>> {
        self.0.queue.lock().ok()
    }

    /// Queues a text frame, counted against the bound (its bytes and
    /// [`PACKET_OVERHEAD`]). Refused when that would pass the bound: the
    /// client does not read fast enough.
    pub fn push(&self, text: ByteString) -> Result<(), Full> {
        let cost = text.len() + PACKET_OVERHEAD;
        self.queue(std::iter::once(Outgoing::Text(text)), cost)
    }

    /// Queues a text frame encoded once for many connections: this one
    /// writes its bytes as they are (a reference count, no copy, no header
    /// to make). Counted and bounded as [`Transport::push`].
    pub fn push_shared(&self, frame: &SharedText) -> Result<(), Full> {
        let cost = frame.text_len() + PACKET_OVERHEAD;
        self.queue(std::iter::once(Outgoing::Whole(frame.wire().clone())), cost)
    }

    /// Queues a text frame that does not count (the upgrade probe's answer).
    pub fn push_uncounted(&self, text: ByteString) {
        let _ = self.queue(std::iter::once(Outgoing::Text(text)), 0);
    }

    /// Queues frames that waited elsewhere, `counted` bytes of them
    /// counting, behind what waits here. Refused past the bound.
    pub fn append(&self, frames: VecDeque<ByteString>, counted: usize) -> Result<(), Full> {
        self.queue(frames.into_iter().map(Outgoing::Text), counted)
    }

    pub(super) fn push_control(&self, frame: Bytes) -> Result<(), Full> {
        let cost = frame.len() + PACKET_OVERHEAD;
        self.queue(std::iter::once(Outgoing::Whole(frame)), cost)
    }

    /// Queues `frames` behind what waits, `cost` counted bytes in all, and
    /// wakes the writer when the queue was empty.
    fn queue(
        &self,
        frames: impl ExactSizeIterator<Item = Outgoing>,
        cost: usize,
    ) -> Result<(), Full> {
        let Some(mut queue) = self.lock() else {
            return Err(Full); // the task panicked holding it
        };
        // Once closing, the close frame is the last one.
        if queue.ended || queue.close.is_some() || frames.len() == 0 {
            return Ok(());
        }
        // Checked before the frames are queued, so one frame larger than the
        // bound is refused too.
        if queue.counted + cost > self.0.limit {
            return Err(Full);
        }
        let waker = match queue.frames.is_empty() {
            true => queue.waker.take(),
            false => None,
        };
        queue.frames.extend(frames);
        queue.counted += cost;
        drop(queue);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Asks the connection to write what waits, then a close frame with
    /// `code` and `reason`, and end. A connection whose writes are blocked
    /// ends at once.
    pub fn close(&self, code: u16, reason: &'static str) {
        let waker = self.lock().and_then(|mut queue| {
            if queue.close.is_none() && !queue.ended {
                queue.close = Some((code, reason));
            }
            queue.waker.take()
        });
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// How many frames wait to be written; once the connection is gone,
    /// how many it left unwritten.
    pub fn unwritten(&self) -> usize {
        self.lock()
            .map_or(0, |queue| queue.frames.len().max(queue.left))
    }

    /// Everything waiting, oldest first (its bytes no longer count: as
    /// they leave the queue they are the connection's to write), and
    /// whether the session asked to close.
    pub(super) fn take(&self) -> Taken {
        match self.lock() {
            Some(mut queue) => {
                queue.counted = 0;
                Taken {
                    frames: std::mem::take(&mut queue.frames),
                    closing: queue.close.is_some(),
                }
            }
            None => Taken {
                frames: VecDeque::new(),
                closing: true,
            },
        }
    }

    /// Whether frames (`frames`) or a close request wait; when neither
    /// does, `waker` is woken once one does.
    pub(super) fn poll_work(&self, frames: bool, waker: &Waker) -> bool {
        let Some(mut queue) = self.lock() else {
            return true;
        };
        if queue.close.is_some() || (frames && !queue.frames.is_empty()) {
            return true;
        }
        if !queue.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            queue.waker = Some(waker.clone());
        }
        false
    }

    /// The close the session asked for, if it did.
    pub(super) fn close_request(&self) -> Option<(u16, &'static str)> {
        self.lock().and_then(|queue| queue.close)
    }

    /// Whether the session asked to close.
    pub(super) fn closing(&self) -> bool {
        self.lock().is_none_or(|queue| queue.close.is_some())
    }

    /// The connection is gone, `unwritten` frames of its own unwritten:
    /// what waits is dropped, nothing more is kept.
    pub(super) fn end(&self, unwritten: usize) {
        if let Some(mut queue) = self.lock() {
            queue.left = unwritten + queue.frames.len();
            queue.ended = true;
            queue.counted = 0;
            queue.frames = VecDeque::new();
            queue.waker = None;
        }
    }
}
