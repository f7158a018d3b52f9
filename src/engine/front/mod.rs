//! The front door for long-polling: a connection whose first request is a
//! long-poll ([`first_request`] peeks at it) is served here. It reads
//! HTTP/1.1 request heads itself and serves the requests of its [`Door`]:
//! long-polling GETs and POSTs. Anything else on such a connection (the
//! HTTP API, a WebSocket upgrade, a chunked or `Expect` request, HTTP/1.0,
//! what it cannot parse) goes to the HTTP server with the connection and
//! the bytes read so far, and stays there. Every other connection goes to
//! the HTTP server from the start; its upgrade hook hands upgrades to the
//! door ([`upgrade_in_http`]).
//!
//! So a long-polling connection keeps no HTTP server dispatcher, buffers
//! or request head while its GET waits: only its socket, the door and the
//! GET's answer. Between requests it keeps nothing but the socket: reads go
//! to a buffer per thread, and only the bytes of an unfinished request are
//! kept. A WebSocket leaves the HTTP server with its socket and what was
//! read past its handshake.

mod replay;
mod wire;

use std::cell::RefCell;
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::time::Duration;

use actix_codec::Framed;
use actix_http::h1::Codec;
use actix_http::header::{EXPECT, TRANSFER_ENCODING};
use actix_http::{Protocol, RequestHead, Version};
use actix_service::Service;
use actix_web::rt::net::TcpStream;
use actix_web::rt::time::timeout;
use actix_web::HttpResponse;
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

pub use replay::Replay;
use wire::Parsed;

/// Bytes a request head may take.
const MAX_HEAD: usize = 16 * 1024;
/// The buffer each worker thread reads request heads into.
const READ_BUFFER: usize = 16 * 1024;
/// How long a body may take to arrive once its head has.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection closed after an answer waits for the client's end
/// (so that the answer is not lost to a reset while the client still
/// sends), and what it reads at most meanwhile.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;

thread_local! {
    static BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_BUFFER].into_boxed_slice());
}

/// What a WebSocket's owner does with the connection once its handshake
/// is answered: the socket and what the client sent past the handshake, or
/// `None` when the answer could not be written.
pub type Serve = Box<dyn FnOnce(Option<(TcpStream, BytesMut)>)>;

/// A door's answer to an upgrade request.
pub enum Upgrade {
    /// The handshake's answer, and who serves the connection then.
    Accept(HttpResponse, Serve),
    /// Why not: the connection closes after it.
    Refuse(HttpResponse),
}

/// A future the door answers with.
pub type Answer = Pin<Box<dyn Future<Output = HttpResponse>>>;

/// The requests the front door serves, answered by the layer above.
pub trait Door: Clone + 'static {
    /// The request headers the door reads (lowercase names): the heads it
    /// is handed hold these (and those the front door reads itself), no
    /// others.
    const HEADERS: &'static [&'static str];
    /// The path whose requests are the door's.
    const PATH: &'static str;
    /// The most bytes a POST body may have here (a larger one goes to the
    /// HTTP server, which refuses it as it refuses any).
    fn max_body(&self) -> usize;
    /// A GET (not an upgrade).
    fn get(&self, head: RequestHead) -> Answer;
    /// A POST, told as soon as its head has come; its whole body follows
    /// on `body` (dropped unsent when the client goes or is too slow).
    fn post(&self, head: RequestHead, body: oneshot::Receiver<Bytes>) -> Answer;
    /// A request to upgrade to a WebSocket, on any path.
    fn upgrade(&self, head: &RequestHead) -> Upgrade;
}

/// Resolves when the server starts to shut down.
pub type Stopping = Rc<dyn Fn() -> Pin<Box<dyn Future<Output = ()>>>>;

/// The front door's timing, as the HTTP server's.
#[derive(Clone)]
pub struct Timing {
    /// How long a request head may take to arrive, counted from the
    /// connection's start or the last answer (so it is also how long a
    /// kept-alive connection may idle).
    pub head: Duration,
    /// The server's shutdown: a connection idle between requests closes.
    pub stopping: Stopping,
}

/// Serves one accepted connection: the door's requests here, the rest by
/// `http` (the HTTP server), which then keeps the connection.
pub async fn serve<D, H>(stream: TcpStream, door: D, http: Rc<H>, timing: Timing)
where
    D: Door,
    H: Service<(Replay, Protocol, Option<SocketAddr>), Response = ()>,
    H::Error: std::fmt::Debug,
{
    let peer = stream.peer_addr().ok();
    let keep: Vec<&str> = ROUTING.iter().chain(D::HEADERS).copied().collect();
    let mut connection = Connection {
        stream,
        read: BytesMut::new(),
    };
    loop {
        let idle = connection.read.is_empty();
        let read = timeout(timing.head, connection.read_head(&keep));
        let read = tokio::select! {
            read = read => read,
            () = (timing.stopping)(), if idle => return,
        };
        let (mut head, len) = match read {
            Ok(Ok(Some(found))) => found,
            // Not a head for the front door: the HTTP server answers it.
            Ok(Ok(None)) => return connection.hand_over(&*http, peer).await,
            // Gone, failed, too large, or too slow: nothing to answer.
            Ok(Err(_)) | Err(_) => return,
        };
        head.peer_addr = peer;
        let close = wire::wants_close(&head);
        let answer = match route(&door, &head) {
            Route::Http => return connection.hand_over(&*http, peer).await,
            Route::Get => {
                connection.take_head(len);
                door.get(head)
            }
            Route::Post(length) => {
                connection.take_head(len);
                // The door hears of the POST at once and gets its body
                // when it has come: it may refuse the POST before (an
                // overlapping one, say), and then what is left unread
                // ends the connection.
                let (sender, body) = oneshot::channel();
                let mut answer = door.post(head, body);
                let read_all = {
                    let mut sender = Some(sender);
                    let read = timeout(BODY_TIMEOUT, connection.read_body(length));
                    let mut read = pin!(read);
                    loop {
                        tokio::select! {
                            response = &mut answer => break Some((response, sender.is_none())),
                            read = &mut read, if sender.is_some() => match (read, sender.take()) {
                                (Ok(Ok(body)), Some(sender)) => {
                                    let _ = sender.send(body);
                                }
                                // Gone, failed or too slow: nobody to answer.
                                _ => break None,
                            },
                        }
                    }
                };
                let Some((response, read_all)) = read_all else {
                    return;
                };
                if !read_all {
                    let _ = connection.answer(response, true).await;
                    connection.linger().await;
                    return;
                }
                Box::pin(std::future::ready(response))
            }
        };
        let response = answer.await;
        if connection.answer(response, close).await.is_err() {
            return;
        }
        if close {
            connection.linger().await;
            return;
        }
    }
}

/// What a new connection's first bytes say.
#[derive(Debug, PartialEq, Eq)]
pub enum First {
    /// A long-poll on the door's path: the front door's.
    LongPoll,
    /// Anything else (or a first line that has not all come): the HTTP
    /// server's, which serves polling too.
    Other,
    /// Nothing within the request timeout, or the client went: close it,
    /// as the HTTP server would have (passing it on would give it a second
    /// request timeout).
    Nothing,
}

/// Tells from a new connection's first bytes (peeked, left for whoever
/// reads them) whether its first request is a long-poll on the door's path.
pub async fn first_request<D: Door>(stream: &TcpStream, wait: Duration) -> First {
    let mut first = [0u8; 256];
    let n = match timeout(wait, stream.peek(&mut first)).await {
        Ok(Ok(n)) if n > 0 => n,
        _ => return First::Nothing,
    };
    let first = &first[..n];
    let line = first
        .windows(2)
        .position(|pair| pair == b"\r\n")
        .map_or(first, |end| &first[..end]);
    let query = ["GET ", "POST "]
        .iter()
        .find_map(|method| line.strip_prefix(method.as_bytes()))
        .and_then(|target| target.strip_prefix(D::PATH.as_bytes()))
        .and_then(|rest| rest.strip_prefix(b"?"));
    let polling = b"transport=polling";
    match query {
        Some(query) if query.windows(polling.len()).any(|w| w == polling) => First::LongPoll,
        _ => First::Other,
    }
}

/// A connection the HTTP server hands over with an upgrade request.
pub trait Handed {
    /// What was read and not yet taken, and the socket.
    fn into_socket(self) -> (BytesMut, TcpStream);
}

impl Handed for TcpStream {
    fn into_socket(self) -> (BytesMut, TcpStream) {
        (BytesMut::new(), self)
    }
}

impl Handed for Replay {
    fn into_socket(self) -> (BytesMut, TcpStream) {
        self.into_parts()
    }
}

/// Serves an upgrade request, which the HTTP server hands over through its
/// upgrade hook with the connection and what it read past the request.
pub async fn upgrade_in_http<D: Door, T: Handed>(
    door: D,
    head: &RequestHead,
    framed: Framed<T, Codec>,
) {
    let parts = framed.into_parts();
    let (read, stream) = parts.io.into_socket();
    let mut taken = parts.read_buf;
    // What the HTTP server read comes before what it had not replayed yet.
    taken.extend_from_slice(&read);
    let mut connection = Connection {
        stream,
        read: taken,
    };
    connection.forget_if_empty();
    connection.upgrade(&door, head).await;
}

/// The headers the front door reads to route a request (an upgrade is
/// told apart before any header is copied: `wire::parse`).
const ROUTING: &[&str] = &[
    "connection",
    "content-length",
    "expect",
    "transfer-encoding",
];

/// Who serves a request.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Get,
    /// A POST with a body of this length.
    Post(usize),
    Http,
}

fn route<D: Door>(door: &D, head: &RequestHead) -> Route {
    use actix_http::Method;
    let headers = &head.headers;
    if head.version != Version::HTTP_11
        || headers.contains_key(TRANSFER_ENCODING)
        || headers.contains_key(EXPECT)
        || head.uri.path() != D::PATH
    {
        return Route::Http;
    }
    match (&head.method, wire::content_length(head)) {
        (&Method::GET, Ok(None | Some(0))) => Route::Get,
        (&Method::POST, Ok(Some(length))) if length <= door.max_body() => Route::Post(length),
        _ => Route::Http,
    }
}

struct Connection {
    stream: TcpStream,
    /// What was read and not yet taken: empty (no allocation) between
    /// requests, unless the client sent its next request early.
    read: BytesMut,
}

impl Connection {
    /// Hands the connection, with what was read and not taken, to the HTTP
    /// server, which keeps it.
    async fn hand_over<H>(self, http: &H, peer: Option<SocketAddr>)
    where
        H: Service<(Replay, Protocol, Option<SocketAddr>), Response = ()>,
        H::Error: std::fmt::Debug,
    {
        let replay = Replay::new(self.read, self.stream);
        // Boxed: actix-http's dispatcher is several KiB, and held inline it
        // would make every connection's future that large, pollers' too.
        if let Err(err) = Box::pin(http.call((replay, Protocol::Http1, peer))).await {
            log::debug!("http: {err:?}");
        }
    }

    /// Reads until a whole request head is here: the head and its length
    /// (its bytes still in `read`); `None` when what came cannot be read
    /// as one (the HTTP server judges it); an error when the client went
    /// away or sent a head larger than [`MAX_HEAD`].
    async fn read_head(&mut self, keep: &[&str]) -> io::Result<Option<(RequestHead, usize)>> {
        loop {
            if !self.read.is_empty() {
                match wire::parse(&self.read, keep) {
                    Parsed::Head(head, len) => return Ok(Some((head, len))),
                    Parsed::Elsewhere => return Ok(None),
                    Parsed::Partial if self.read.len() >= MAX_HEAD => {
                        return Err(io::ErrorKind::InvalidData.into())
                    }
                    Parsed::Partial => {}
                }
            }
            self.read_some().await?;
        }
    }

    /// Reads a body of `length` bytes.
    async fn read_body(&mut self, length: usize) -> io::Result<Bytes> {
        while self.read.len() < length {
            self.read_some().await?;
        }
        let body = self.read.split_to(length).freeze();
        self.forget_if_empty();
        Ok(body)
    }

    /// Reads what the socket has into the thread's buffer and keeps it.
    async fn read_some(&mut self) -> io::Result<()> {
        loop {
            self.stream.readable().await?;
            let read = BUFFER.with(|buffer| {
                let mut buffer = buffer.borrow_mut();
                let n = self.stream.try_read(&mut buffer)?;
                self.read.extend_from_slice(&buffer[..n]);
                Ok::<_, io::Error>(n)
            });
            match read {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => return Ok(()),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Err(err),
            }
        }
    }

    /// Answers a request to upgrade to a WebSocket and hands the connection
    /// over, or refuses it and closes.
    async fn upgrade<D: Door>(mut self, door: &D, head: &RequestHead) {
        match door.upgrade(head) {
            Upgrade::Accept(response, serve) => {
                if self.answer(response, false).await.is_ok() {
                    serve(Some((self.stream, self.read)));
                } else {
                    serve(None);
                }
            }
            Upgrade::Refuse(refusal) => {
                let _ = self.answer(refusal, true).await;
                self.linger().await;
            }
        }
    }

    /// Takes a request head of `len` bytes off what was read.
    fn take_head(&mut self, len: usize) {
        let _ = self.read.split_to(len);
        self.forget_if_empty();
    }

    /// Drops the read buffer's allocation when nothing waits in it.
    fn forget_if_empty(&mut self) {
        if self.read.is_empty() {
            self.read = BytesMut::new();
        }
    }

    /// Writes `response`, head and body in one write where the socket
    /// takes it.
    async fn answer(&mut self, response: HttpResponse, close: bool) -> io::Result<()> {
        let (head, body) = wire::encode(response, close);
        let (mut head, mut body) = (&head[..], &body[..]);
        while !head.is_empty() || !body.is_empty() {
            let slices = [IoSlice::new(head), IoSlice::new(body)];
            let mut written = self.stream.write_vectored(&slices).await?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            let from_head = written.min(head.len());
            head = &head[from_head..];
            written -= from_head;
            body = &body[written..];
        }
        Ok(())
    }

    /// Ends the writing side and waits a moment for the client to end its
    /// own, reading (and dropping) what it still sends.
    async fn linger(mut self) {
        let _ = self.stream.shutdown().await;
        self.read = BytesMut::new();
        let drained = async {
            let mut total = 0;
            while total < LINGER_BYTES {
                match self.read_some().await {
                    Ok(()) => {
                        total += self.read.len();
                        self.read.clear();
                    }
                    Err(_) => return,
                }
            }
        };
        let _ = timeout(LINGER, drained).await;
    }
}

#[cfg(test)]
mod tests;
