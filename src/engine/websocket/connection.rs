//! One task per WebSocket connection: reads frames into its thread's
//! buffer, hands whole text messages to the layer above one at a time, and
//! writes what its [`Transport`] queue holds with one vectored write per
//! wake-up. At rest it keeps no buffer: only the bytes of an unfinished
//! frame, if any.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::rt::net::TcpStream;
use bytes::BytesMut;
use bytestring::ByteString;

use super::frame::{self, code, Decoder, Message, Violation};
use super::transport::{Outgoing, Transport};
use crate::engine::reason;

/// The buffer each worker thread reads into, shared by its connections.
const READ_BUFFER: usize = 32 * 1024;
/// Reads one wake-up may make before letting the thread's other
/// connections run.
const READS_PER_WAKE: usize = 16;
/// Frames one vectored write carries at most (two slices each, well under
/// the kernel's 1024).
const FRAMES_PER_WRITE: usize = 64;
/// Messages one wake-up may handle before letting the thread's other
/// connections run (a client sending many small frames at once).
const MESSAGES_PER_WAKE: usize = 64;
/// How long a closing connection may take to write its last frames (a
/// client that stopped reading gets this long to take its close frame).
const CLOSE_GRACE: Duration = Duration::from_secs(10);
/// How long a closed connection waits for the client to end its side.
const LINGER: Duration = Duration::from_secs(1);
/// What a closing connection reads at most while waiting for the client's end.
const LINGER_BYTES: usize = 1 << 20;

thread_local! {
    static BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_BUFFER].into_boxed_slice());
}

/// The layer above a connection: the Engine.IO session.
pub trait Upper: 'static {
    /// A whole text message. The connection reads on once the future
    /// resolves (so a client cannot outrun its session); `false` ends it.
    fn text(&mut self, text: ByteString) -> Pin<Box<dyn Future<Output = bool>>>;
    /// A whole binary message.
    fn binary(&mut self);
    /// The connection has ended (called once, however it ends).
    fn ended(&mut self, how: Ended);
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Closed by either side, or the client went away.
    Closed,
    /// The client sent a message too large or text that is not UTF-8.
    Malformed,
    /// The client broke the protocol, or the socket failed.
    Failed,
}

impl Ended {
    /// Its Engine.IO disconnect reason.
    pub fn reason(self) -> &'static str {
        match self {
            Ended::Closed => reason::TRANSPORT_CLOSE,
            Ended::Malformed => reason::PARSE_ERROR,
            Ended::Failed => reason::TRANSPORT_ERROR,
        }
    }
}

/// Serves a WebSocket whose handshake is done: `read` holds what the client
/// sent past it. Ends when either side closes; tells `upper` how.
pub async fn serve<U: Upper>(
    stream: TcpStream,
    read: BytesMut,
    max_payload: usize,
    transport: Transport,
    upper: U,
) {
    let mut decoder = Decoder::default();
    decoder.keep(&read);
    drop(read);
    let mut connection = Connection {
        stream,
        transport: transport.clone(),
        decoder,
        max_payload,
        writing: None,
    };
    // Told even when the task is dropped (its worker stopping).
    let mut end = End {
        upper,
        transport,
        how: Ended::Closed,
        unwritten: 0,
    };
    end.how = connection.run(&mut end.upper).await;
    end.unwritten = connection.writing.as_ref().map_or(0, |w| w.frames.len());
}

struct End<U: Upper> {
    upper: U,
    transport: Transport,
    how: Ended,
    unwritten: usize,
}

impl<U: Upper> Drop for End<U> {
    fn drop(&mut self) {
        self.transport.end(self.unwritten);
        self.upper.ended(self.how);
    }
}

struct Connection {
    stream: TcpStream,
    transport: Transport,
    decoder: Decoder,
    max_payload: usize,
    /// Frames taken from the queue and not all written: the socket is full.
    writing: Option<Writing>,
}

/// What a read brought.
enum Read {
    Message(Message),
    Violation(Violation),
    /// Nothing more to read now.
    Blocked,
    /// Read its share of this wake-up: the others' turn.
    Yield,
    Eof,
    Failed,
}

impl Connection {
    async fn run<U: Upper>(&mut self, upper: &mut U) -> Ended {
        let mut taking: Option<Pin<Box<dyn Future<Output = bool>>>> = None;
        let mut handled = 0;
        loop {
            // One look at the queue: what waits, and whether to close.
            let blocked = self.writing.is_some();
            let closing = if blocked {
                self.transport.closing()
            } else {
                let taken = self.transport.take();
                if !taken.frames.is_empty() {
                    self.writing = Some(Writing {
                        frames: taken.frames,
                        done: 0,
                    });
                }
                taken.closing
            };
            if closing {
                // Boxed, as every closing path: its state would otherwise
                // be part of every connection's task, idle or not.
                return Box::pin(self.close_requested(blocked)).await;
            }
            if handled >= MESSAGES_PER_WAKE {
                handled = 0;
                tokio::task::yield_now().await;
            }
            if let Some(writing) = &mut self.writing {
                match writing.write(&self.stream) {
                    Ok(true) => self.writing = None,
                    Ok(false) => {}
                    Err(_) => return Ended::Failed,
                }
            }
            if taking.is_none() {
                handled += 1;
                match self.read() {
                    Read::Message(Message::Text(text)) => {
                        taking = Some(upper.text(text));
                        continue;
                    }
                    Read::Message(Message::Binary) => {
                        upper.binary();
                        continue;
                    }
                    Read::Message(Message::Ping(data)) => {
                        let pong = frame::control(frame::OP_PONG, &data);
                        if self.transport.push_control(pong).is_err() {
                            return Ended::Failed; // pings from a client that does not read
                        }
                        continue;
                    }
                    Read::Message(Message::Pong) => continue,
                    Read::Message(Message::Close(_)) => {
                        Box::pin(self.finish(code::NORMAL, reason::TRANSPORT_CLOSE)).await;
                        return Ended::Closed;
                    }
                    Read::Violation(violation) => {
                        let how = match violation {
                            Violation::Protocol => Ended::Failed,
                            Violation::TooLarge | Violation::NotUtf8 => Ended::Malformed,
                        };
                        Box::pin(self.finish(violation.code(), how.reason())).await;
                        return how;
                    }
                    Read::Yield => {
                        handled = MESSAGES_PER_WAKE;
                        continue;
                    }
                    Read::Eof => return Ended::Closed,
                    Read::Failed => return Ended::Failed,
                    Read::Blocked => {}
                }
            }
            handled = 0;
            let taken = poll_fn(|cx| self.poll_wake(cx, &mut taking)).await;
            if taken == Some(false) {
                return Ended::Closed; // the session is gone
            }
        }
    }

    /// Waits for something to do: the message handed up taken, frames or a
    /// close request queued, the socket writable (when a write waits) or
    /// readable (when no message waits to be taken). Answers whether a
    /// message was taken.
    fn poll_wake(
        &mut self,
        cx: &mut Context<'_>,
        taking: &mut Option<Pin<Box<dyn Future<Output = bool>>>>,
    ) -> Poll<Option<bool>> {
        if let Some(future) = taking {
            if let Poll::Ready(taken) = future.as_mut().poll(cx) {
                *taking = None;
                return Poll::Ready(Some(taken));
            }
        }
        let blocked = self.writing.is_some();
        // Frames matter only when none are being written; a close request
        // always does. One lock, which also leaves the waker for a push.
        if self.transport.poll_work(!blocked, cx.waker()) {
            return Poll::Ready(None);
        }
        if blocked && self.stream.poll_write_ready(cx).is_ready() {
            return Poll::Ready(None);
        }
        if taking.is_none() && self.stream.poll_read_ready(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    }

    /// Decodes what was kept, then reads into the thread's buffer until a
    /// message is whole; the rest of the read is kept.
    fn read(&mut self) -> Read {
        let max_payload = self.max_payload;
        if self.decoder.holds_bytes() {
            match self.decoder.next(&mut &[][..], max_payload) {
                Ok(Some(message)) => return Read::Message(message),
                Ok(None) => {}
                Err(violation) => return Read::Violation(violation),
            }
        }
        BUFFER.with(|buffer| {
            let Ok(mut buffer) = buffer.try_borrow_mut() else {
                return Read::Failed;
            };
            for _ in 0..READS_PER_WAKE {
                let read = match self.stream.try_read(&mut buffer[..]) {
                    Ok(0) => return Read::Eof,
                    Ok(read) => read,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Read::Blocked,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return Read::Failed,
                };
                let mut fresh = &buffer[..read];
                match self.decoder.next(&mut fresh, max_payload) {
                    Ok(Some(message)) => {
                        self.decoder.keep(fresh);
                        return Read::Message(message);
                    }
                    Ok(None) => {}
                    Err(violation) => return Read::Violation(violation),
                }
            }
            Read::Yield
        })
    }

    /// The session asked to close: what waits is written, then the close
    /// frame. A connection whose writes were `blocked` (a slow consumer, a
    /// client gone) drops at once everything not yet begun: it keeps only
    /// the frame it is halfway through, then the close frame, for as long
    /// as [`CLOSE_GRACE`].
    async fn close_requested(&mut self, blocked: bool) -> Ended {
        if let (true, Some(writing)) = (blocked, &mut self.writing) {
            writing.frames.truncate(usize::from(writing.done > 0));
            drop(self.transport.take());
        }
        let (code, reason) = self
            .transport
            .close_request()
            .unwrap_or((code::AWAY, reason::TRANSPORT_CLOSE));
        self.finish(code, reason).await;
        Ended::Closed
    }

    /// Writes what waits and a close frame, briefly, then waits briefly for
    /// the client to end its side (closing on unread bytes would reset the
    /// connection, and the client could lose the close frame).
    async fn finish(&mut self, code: u16, reason: &str) {
        let mut writing = self.writing.take().unwrap_or_default();
        writing.frames.extend(self.transport.take().frames);
        writing
            .frames
            .push_back(Outgoing::Whole(frame::close(code, reason)));
        let flushed = async {
            loop {
                match writing.write(&self.stream) {
                    Ok(false) => {}
                    Ok(true) | Err(_) => return,
                }
                if self.stream.writable().await.is_err() {
                    return;
                }
            }
        };
        if tokio::time::timeout(CLOSE_GRACE, flushed).await.is_err() {
            return;
        }
        let _ = socket2::SockRef::from(&self.stream).shutdown(std::net::Shutdown::Write);
        let drained = async {
            let mut seen = 0;
            let mut sink = [0u8; 4096];
            while seen < LINGER_BYTES {
                if self.stream.readable().await.is_err() {
                    return;
                }
                match self.stream.try_read(&mut sink) {
                    Ok(0) => return,
                    Ok(read) => seen += read,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drained).await;
    }
}

/// Frames being written, and how many bytes of the first are.
#[derive(Default)]
struct Writing {
    frames: VecDeque<Outgoing>,
    done: usize,
}

impl Writing {
    /// Writes as much as the socket takes, one vectored write at a time:
    /// true once everything is written, false when the socket is full.
    fn write(&mut self, stream: &TcpStream) -> io::Result<bool> {
        while !self.frames.is_empty() {
            let count = self.frames.len().min(FRAMES_PER_WRITE);
            let mut heads = [([0u8; 10], 0usize); FRAMES_PER_WRITE];
            for (head, frame) in heads.iter_mut().zip(self.frames.iter()) {
                if let Outgoing::Text(text) = frame {
                    *head = frame::header(frame::OP_TEXT, text.len());
                }
            }
            let mut slices = [IoSlice::new(&[]); 2 * FRAMES_PER_WRITE];
            let mut used = 0;
            let mut skip = self.done;
            for (frame, (head, head_len)) in self.frames.iter().take(count).zip(heads.iter()) {
                let parts: [&[u8]; 2] = match frame {
                    Outgoing::Text(text) => [&head[..*head_len], text.as_bytes()],
                    Outgoing::Whole(bytes) => [bytes, &[]],
                };
                for part in parts {
                    if skip >= part.len() {
                        skip -= part.len();
                        continue;
                    }
                    slices[used] = IoSlice::new(&part[skip..]);
                    skip = 0;
                    used += 1;
                }
            }
            let written = match stream.try_write_vectored(&slices[..used]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => written,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            let mut left = self.done + written;
            while let Some(front) = self.frames.front() {
                let size = wire_len(front);
                if left < size {
                    break;
                }
                left -= size;
                self.frames.pop_front();
            }
            self.done = left;
        }
        Ok(true)
    }
}

fn wire_len(frame: &Outgoing) -> usize {
    match frame {
        Outgoing::Text(text) => frame::header(frame::OP_TEXT, text.len()).1 + text.len(),
        Outgoing::Whole(bytes) => bytes.len(),
    }
}
