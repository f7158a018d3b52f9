//! The front door against a door that echoes and an HTTP server that
//! replies with what it was handed, over real sockets.

use std::cell::RefCell;

use actix_service::fn_service;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// A door for `/door`: GETs answer `got <query>`, POSTs `posted <body>`;
/// upgrades on `/door` are served by handing the socket to a task that
/// writes what was read past the handshake back; elsewhere refused.
#[derive(Clone, Default)]
struct Echo {
    /// What the door saw, in order.
    seen: Rc<RefCell<Vec<String>>>,
}

impl Door for Echo {
    const HEADERS: &'static [&'static str] = &[];

    const PATH: &'static str = "/door";

    fn max_body(&self) -> usize {
        64
    }

    fn get(&self, head: RequestHead) -> Answer {
        let query = head.uri.query().unwrap_or_default().to_owned();
        self.seen.borrow_mut().push(format!("GET {query}"));
        Box::pin(async move { HttpResponse::Ok().body(format!("got {query}")) })
    }

    fn post(&self, head: RequestHead, body: oneshot::Receiver<Bytes>) -> Answer {
        let seen = self.seen.clone();
        let mut unanswered = Unanswered(Some(seen.clone()));
        Box::pin(async move {
            if head.uri.query() == Some("refuse") {
                unanswered.answered();
                return HttpResponse::BadRequest().body("refused");
            }
            let Ok(body) = body.await else {
                unanswered.answered();
                seen.borrow_mut().push("POST without its body".into());
                return HttpResponse::BadRequest().finish();
            };
            unanswered.answered();
            let body = String::from_utf8_lossy(&body).into_owned();
            seen.borrow_mut().push(format!("POST {body}"));
            HttpResponse::Ok().body(format!("posted {body}"))
        })
    }

    fn upgrade(&self, head: &RequestHead) -> Upgrade {
        if head.uri.path() != "/door" {
            return Upgrade::Refuse(HttpResponse::NotFound().body("no"));
        }
        let seen = self.seen.clone();
        let serve: Serve = Box::new(move |connection| {
            let Some((mut stream, read)) = connection else {
                seen.borrow_mut().push("upgrade failed".into());
                return;
            };
            seen.borrow_mut().push("upgraded".into());
            actix_web::rt::spawn(async move {
                let _ = stream.write_all(&read).await;
            });
        });
        Upgrade::Accept(HttpResponse::SwitchingProtocols().finish(), serve)
    }
}

/// Notes a POST whose answer was dropped before it was made.
struct Unanswered(Option<Rc<RefCell<Vec<String>>>>);

impl Unanswered {
    fn answered(&mut self) {
        self.0 = None;
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(seen) = self.0.take() {
            seen.borrow_mut().push("POST dropped".into());
        }
    }
}

/// A node: the front door with `Echo`, and an "HTTP server" that answers
/// `http saw <everything it read until the head's end>` and closes.
async fn node(timing: Duration) -> (SocketAddr, Echo) {
    let (listener, address) = listen().await;
    let echo = Echo::default();
    let door = echo.clone();
    let http = Rc::new(fn_service(
        |(mut replay, _, _): (Replay, Protocol, Option<SocketAddr>)| async move {
            let mut seen = Vec::new();
            let mut byte = [0u8; 1];
            while !seen.ends_with(b"\r\n\r\n") && replay.read(&mut byte).await? == 1 {
                seen.push(byte[0]);
            }
            let text = format!("http saw {}", String::from_utf8_lossy(&seen));
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{text}",
                text.len()
            );
            replay.write_all(response.as_bytes()).await?;
            Ok::<_, io::Error>(())
        },
    ));
    actix_web::rt::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let timing = Timing {
                head: timing,
                stopping: Rc::new(|| Box::pin(std::future::pending())),
            };
            actix_web::rt::spawn(serve(stream, door.clone(), http.clone(), timing));
        }
    });
    (address, echo)
}

/// A listener on a free port of 127.0.0.1, and its address.
async fn listen() -> (tokio::net::TcpListener, SocketAddr) {
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(listener) => listener,
        Err(err) => panic!("bind: {err}"),
    };
    let Ok(address) = listener.local_addr() else {
        panic!("no address");
    };
    (listener, address)
}

/// Both ends of a connection over 127.0.0.1: the client's, the server's.
pub(super) async fn socket_pair() -> (tokio::net::TcpStream, TcpStream) {
    let (listener, address) = listen().await;
    let client = connect(address).await;
    let Ok((server, _)) = listener.accept().await else {
        panic!("accept");
    };
    (client, server)
}

async fn connect(address: SocketAddr) -> tokio::net::TcpStream {
    match tokio::net::TcpStream::connect(address).await {
        Ok(stream) => stream,
        Err(err) => panic!("connect: {err}"),
    }
}

/// Reads one response (head and a `content-length` body): its status and body.
async fn response(stream: &mut tokio::net::TcpStream) -> (u16, String) {
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => seen.push(byte[0]),
            other => panic!(
                "response ended early ({other:?}): {:?}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    let head = String::from_utf8_lossy(&seen).into_owned();
    let status = head
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if let Err(err) = stream.read_exact(&mut body).await {
        panic!("body: {err}");
    }
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn send(stream: &mut tokio::net::TcpStream, bytes: &[u8]) {
    if let Err(err) = stream.write_all(bytes).await {
        panic!("write: {err}");
    }
}

/// Whether the server closed the connection (reads end, or fail with a
/// reset) within a while.
async fn closed(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut rest = Vec::new();
    timeout(within, stream.read_to_end(&mut rest)).await.is_ok()
}

#[actix_web::test]
async fn the_door_s_requests_are_served_one_after_another_on_a_kept_alive_connection() {
    let (address, echo) = node(Duration::from_secs(5)).await;
    let mut client = connect(address).await;
    send(&mut client, b"GET /door?a=1 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(response(&mut client).await, (200, "got a=1".into()));
    // A POST whose head and body come in pieces.
    send(
        &mut client,
        b"POST /door?b=2 HTTP/1.1\r\nHost: x\r\nContent-",
    )
    .await;
    actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    send(&mut client, b"Length: 5\r\n\r\nhel").await;
    actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    send(&mut client, b"lo").await;
    assert_eq!(response(&mut client).await, (200, "posted hello".into()));
    // Two requests in one write: both answered, in order.
    send(
        &mut client,
        b"GET /door?c=3 HTTP/1.1\r\n\r\nGET /door?d=4 HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(response(&mut client).await, (200, "got c=3".into()));
    assert_eq!(response(&mut client).await, (200, "got d=4".into()));
    assert!(
        closed(&mut client, Duration::from_secs(2)).await,
        "closed as asked"
    );
    assert_eq!(
        *echo.seen.borrow(),
        vec!["GET a=1", "POST hello", "GET c=3", "GET d=4"]
    );
}

#[actix_web::test]
async fn other_requests_go_to_the_http_server_with_what_was_read() {
    let (address, echo) = node(Duration::from_secs(5)).await;
    for request in [
        &b"GET /api/v1/x HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"POST /door HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /door HTTP/1.1\r\nContent-Length: 65\r\n\r\n",
        b"GET /door HTTP/1.0\r\n\r\n",
        b"PUT /door HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        b"GET /door HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
    ] {
        let mut client = connect(address).await;
        send(&mut client, request).await;
        let seen = String::from_utf8_lossy(request);
        assert_eq!(
            response(&mut client).await,
            (200, format!("http saw {seen}"))
        );
    }
    // After a request of the door's, the connection can still move on.
    let mut client = connect(address).await;
    send(
        &mut client,
        b"GET /door?a=1 HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n",
    )
    .await;
    assert_eq!(response(&mut client).await, (200, "got a=1".into()));
    let http = "http saw GET /healthz HTTP/1.1\r\n\r\n".to_owned();
    assert_eq!(response(&mut client).await, (200, http));
    assert_eq!(*echo.seen.borrow(), vec!["GET a=1"]);
}

#[actix_web::test]
async fn a_slow_or_oversized_head_is_cut_off_while_others_are_served() {
    let (address, _) = node(Duration::from_millis(300)).await;
    // Slow: half a head, then nothing.
    let mut slow = connect(address).await;
    send(&mut slow, b"GET /door HTTP/1.1\r\nHo").await;
    // Too large: a head past MAX_HEAD.
    let mut large = connect(address).await;
    let mut head = b"GET /door HTTP/1.1\r\n".to_vec();
    head.extend(std::iter::repeat_n(b'a', MAX_HEAD + 10));
    let _ = large.write_all(&head).await;
    // Someone else is served meanwhile.
    let mut other = connect(address).await;
    send(&mut other, b"GET /door?ok HTTP/1.1\r\n\r\n").await;
    assert_eq!(response(&mut other).await, (200, "got ok".into()));
    assert!(
        closed(&mut large, Duration::from_secs(2)).await,
        "too large"
    );
    assert!(closed(&mut slow, Duration::from_secs(2)).await, "too slow");
    // An idle kept-alive connection closes after the same time.
    let mut idle = connect(address).await;
    send(&mut idle, b"GET /door HTTP/1.1\r\n\r\n").await;
    assert_eq!(response(&mut idle).await.0, 200);
    assert!(closed(&mut idle, Duration::from_secs(2)).await, "idle");
}

#[actix_web::test]
async fn a_post_refused_before_its_body_came_is_answered_and_closed() {
    let (address, echo) = node(Duration::from_secs(5)).await;
    let mut client = connect(address).await;
    send(
        &mut client,
        b"POST /door?refuse HTTP/1.1\r\nContent-Length: 50\r\n\r\nsome",
    )
    .await;
    assert_eq!(response(&mut client).await, (400, "refused".into()));
    assert!(
        closed(&mut client, Duration::from_secs(3)).await,
        "the rest is not read"
    );
    // A POST whose client goes before its body has come is dropped (the
    // door's answer with it).
    let mut gone = connect(address).await;
    send(
        &mut gone,
        b"POST /door HTTP/1.1\r\nContent-Length: 50\r\n\r\nsome",
    )
    .await;
    drop(gone);
    actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(*echo.seen.borrow(), vec!["POST dropped"]);
}

#[actix_web::test]
async fn a_connection_s_future_stays_small_whatever_the_http_server_s_is() {
    let (_client, stream) = socket_pair().await;
    // An HTTP server whose future is large, as actix-http's dispatcher is.
    let http = Rc::new(fn_service(
        |_: (Replay, Protocol, Option<SocketAddr>)| async move {
            let large = [0u8; 8192];
            actix_web::rt::task::yield_now().await;
            std::hint::black_box(&large);
            Ok::<_, io::Error>(())
        },
    ));
    let timing = Timing {
        head: Duration::from_secs(1),
        stopping: Rc::new(|| Box::pin(std::future::pending())),
    };
    let future = serve(stream, Echo::default(), http, timing);
    // Every poller's waiting GET holds this future (1.5 KiB in a debug
    // build; with the HTTP server's inline, over 8).
    let size = std::mem::size_of_val(&future);
    assert!(size < 2048, "{size} bytes");
}

/// What `first_request` says of a connection whose client sent `bytes`
/// (and then nothing, or closed when `close`).
async fn first_of(bytes: &[u8], close: bool) -> First {
    let (mut client, stream) = socket_pair().await;
    send(&mut client, bytes).await;
    if close {
        drop(client);
    }
    let first = first_request::<Echo>(&stream, Duration::from_millis(300)).await;
    // Peeked, not read: the bytes are still there for whoever serves it.
    if !bytes.is_empty() && !close {
        let mut again = vec![0; bytes.len()];
        let peeked = stream.peek(&mut again).await;
        assert!(matches!(peeked, Ok(n) if n == bytes.len()), "{peeked:?}");
    }
    first
}

#[actix_web::test]
async fn a_connection_is_the_front_door_s_when_its_first_request_is_a_long_poll() {
    for (bytes, wanted) in [
        (
            &b"GET /door?EIO=4&transport=polling HTTP/1.1\r\n\r\n"[..],
            First::LongPoll,
        ),
        (
            b"POST /door?EIO=4&transport=polling&sid=x HTTP/1.1\r\n",
            First::LongPoll,
        ),
        (
            b"GET /door?EIO=4&transport=websocket HTTP/1.1\r\n",
            First::Other,
        ),
        (b"GET /doorway?transport=polling HTTP/1.1\r\n", First::Other),
        (
            b"GET /api?x=1 HTTP/1.1\r\nX: transport=polling\r\n",
            First::Other,
        ),
        (b"GET /door?EIO=4", First::Other),
        (b"", First::Nothing),
    ] {
        let seen = String::from_utf8_lossy(bytes).into_owned();
        assert_eq!(first_of(bytes, false).await, wanted, "{seen}");
    }
    assert_eq!(first_of(b"", true).await, First::Nothing, "closed");
}
