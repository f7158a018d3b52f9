//! The engine under the session: WebSockets served through the HTTP
//! server's upgrade hook, framed by souk's own code (issue 13). Raw TCP
//! clients, so that the tests can send what no WebSocket library would.

use std::time::Duration;

use serde_json::{json, Value};
use souk::engine::websocket::frame::{self, client_frame, OP_CONTINUATION, OP_TEXT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WAIT: Duration = Duration::from_secs(10);

/// A raw WebSocket client: a TCP stream and what it read past the last frame.
struct Raw {
    stream: TcpStream,
    read: Vec<u8>,
}

/// Sends an HTTP/1.1 upgrade request for `path` with `headers`.
async fn request(app: &TestApp, path: &str, headers: &str) -> TcpStream {
    let mut stream = TcpStream::connect(&app.address).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{headers}\r\n",
        app.address
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Everything the server sends until it closes the connection.
async fn read_to_end(mut stream: TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .unwrap();
    String::from_utf8(answer).unwrap()
}

impl Raw {
    /// Opens a WebSocket session and reads its open packet.
    async fn open(app: &TestApp) -> Raw {
        let headers = format!("Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n");
        let stream = request(app, "/socket.io/?EIO=4&transport=websocket", &headers).await;
        let mut raw = Raw {
            stream,
            read: Vec::new(),
        };
        let head = raw.until(b"\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let (_, open) = raw.frame().await;
        assert!(open.starts_with("0{"), "{open}");
        raw
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
            .await
            .expect("the server answers")
            .unwrap();
        self.read.extend_from_slice(&chunk[..read]);
        read
    }

    /// Reads up to and including `end`.
    async fn until(&mut self, end: &[u8]) -> String {
        loop {
            if let Some(at) = self.read.windows(end.len()).position(|w| w == end) {
                let head: Vec<u8> = self.read.drain(..at + end.len()).collect();
                return String::from_utf8(head).unwrap();
            }
            assert!(self.fill().await > 0, "closed before {end:?}");
        }
    }

    /// The next server frame: its opcode and payload.
    async fn frame(&mut self) -> (u8, String) {
        let (opcode, payload) = self.frame_bytes().await;
        (opcode, String::from_utf8_lossy(&payload).into_owned())
    }

    async fn frame_bytes(&mut self) -> (u8, Vec<u8>) {
        loop {
            if self.read.len() >= 2 {
                let (len, at) = match self.read[1] & 0x7F {
                    126 if self.read.len() >= 4 => {
                        (u16::from_be_bytes([self.read[2], self.read[3]]) as usize, 4)
                    }
                    126 | 127 => (usize::MAX, 0),
                    len => (len as usize, 2),
                };
                if at > 0 && self.read.len() >= at + len {
                    let opcode = self.read[0] & 0x0F;
                    let frame: Vec<u8> = self.read.drain(..at + len).collect();
                    return (opcode, frame[at..].to_vec());
                }
            }
            assert!(self.fill().await > 0, "closed before a whole frame");
        }
    }

    /// The next text frame (skipping pings).
    async fn text(&mut self) -> String {
        loop {
            match self.frame().await {
                (frame::OP_TEXT, text) if text == "2" => {}
                (frame::OP_TEXT, text) => return text,
                (opcode, payload) => panic!("not text: {opcode} {payload:?}"),
            }
        }
    }

    /// The close frame's code.
    async fn close_code(&mut self) -> u16 {
        loop {
            let (opcode, payload) = self.frame_bytes().await;
            if opcode == frame::OP_CLOSE {
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn send_text(&mut self, text: &str) {
        self.send(&client_frame(true, OP_TEXT, text.as_bytes(), [1, 2, 3, 4]))
            .await;
    }

    /// CONNECTs as `user` and answers the CONNECT packet.
    async fn connect(&mut self, app: &TestApp, user: &str) -> String {
        let token = app.token(user);
        self.send_text(&format!("40{{\"token\":\"{token}\"}}"))
            .await;
        self.text().await
    }

    /// An Engine.IO ping from the client, answered with a pong.
    async fn ping_pong(&mut self) {
        self.send_text("2").await;
        assert_eq!(self.text().await, "3");
    }
}

#[actix_web::test]
async fn an_upgrade_on_another_path_is_answered_404_and_closed() {
    let app = TestApp::spawn().await;
    let headers = format!("Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n");
    let answer = read_to_end(request(&app, "/elsewhere", &headers).await).await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "not_found", "{body}");
}

#[actix_web::test]
async fn an_upgrade_without_a_key_is_answered_400_and_closed() {
    let app = TestApp::spawn().await;
    let path = "/socket.io/?EIO=4&transport=websocket";
    let answer = read_to_end(request(&app, path, "Sec-WebSocket-Version: 13\r\n").await).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("not a WebSocket upgrade"), "{answer}");
    // A bad query is answered as the App answers it.
    let headers = format!("Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n");
    let answer =
        read_to_end(request(&app, "/socket.io/?EIO=3&transport=websocket", &headers).await).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("EIO=4"), "{answer}");
}

#[actix_web::test]
async fn an_unmasked_client_frame_is_closed_with_1002() {
    let app = TestApp::spawn().await;
    let mut raw = Raw::open(&app).await;
    raw.send(&[0x81, 0x02, b'4', b'0']).await;
    assert_eq!(raw.close_code().await, frame::code::PROTOCOL);
}

#[actix_web::test]
async fn a_fragmented_message_is_reassembled() {
    let app = TestApp::spawn().await;
    let mut raw = Raw::open(&app).await;
    let token = app.token("ann");
    let connect = format!("40{{\"token\":\"{token}\"}}");
    let (first, rest) = connect.as_bytes().split_at(3);
    let (middle, last) = rest.split_at(rest.len() / 2);
    let mut bytes = client_frame(false, OP_TEXT, first, [5; 4]);
    bytes.extend(client_frame(false, OP_CONTINUATION, middle, [6; 4]));
    bytes.extend(client_frame(true, frame::OP_PING, b"hi", [7; 4]));
    bytes.extend(client_frame(true, OP_CONTINUATION, last, [8; 4]));
    // Byte by byte: every frame arrives in pieces.
    for byte in bytes {
        raw.send(&[byte]).await;
    }
    assert_eq!(raw.frame().await, (frame::OP_PONG, "hi".to_owned()));
    let answer = raw.text().await;
    assert!(answer.starts_with("40{\"sid\""), "{answer}");
}

#[actix_web::test]
async fn a_frame_over_max_payload_is_closed_with_1009_while_others_are_served() {
    let app = TestApp::spawn_with(|s| s.max_payload = 1000).await;
    let mut other = Raw::open(&app).await;
    let mut raw = Raw::open(&app).await;
    // The header alone says it is too large.
    let frame = client_frame(true, OP_TEXT, &[b'4'; 1001], [0; 4]);
    raw.send(&frame[..8]).await;
    assert_eq!(raw.close_code().await, frame::code::SIZE);
    other.ping_pong().await;
    let answer = other.connect(&app, "ben").await;
    assert!(answer.starts_with("40{\"sid\""), "{answer}");
}

#[actix_web::test]
async fn a_client_that_stalls_inside_a_frame_does_not_block_others() {
    let app = TestApp::spawn().await;
    let mut stalled = Raw::open(&app).await;
    let token = app.token("ann");
    let connect = client_frame(
        true,
        OP_TEXT,
        format!("40{{\"token\":\"{token}\"}}").as_bytes(),
        [9; 4],
    );
    stalled.send(&connect[..connect.len() / 2]).await;
    let mut other = Raw::open(&app).await;
    let answer = other.connect(&app, "ben").await;
    assert!(answer.starts_with("40{\"sid\""), "{answer}");
    other.ping_pong().await;
    // The stalled one finishes its frame later and is served.
    stalled.send(&connect[connect.len() / 2..]).await;
    let answer = stalled.text().await;
    assert!(answer.starts_with("40{\"sid\""), "{answer}");
}

#[actix_web::test]
async fn a_refused_websocket_gets_the_status_awc_reads() {
    let app = TestApp::spawn_with(|s| s.max_connections = 1).await;
    let _held = Raw::open(&app).await;
    let headers = format!("Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n");
    let answer =
        read_to_end(request(&app, "/socket.io/?EIO=4&transport=websocket", &headers).await).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
}

/// The value of a counter line of the node's metrics (0 when absent).
async fn counter(app: &TestApp, name: &str) -> u64 {
    app.metrics()
        .await
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

/// Room events reach a WebSocket member through its queue directly, with
/// no message to its session per event (issue 13): every delivery counts,
/// none goes through a mailbox. (A long-polling member's do: see
/// transports.rs.)
#[actix_web::test]
async fn room_events_go_into_a_websocket_member_s_queue_with_no_message() {
    let app = TestApp::spawn().await;
    app.listing("l1", "sam").await;
    let mut ann = app.watching("ann", "l1").await;
    let mut bob = app.watching("bob", "l1").await;
    let before = counter(&app, "souk_deliveries_total").await;
    for n in 0..5 {
        let (status, body) = app.room_event("listing:l1", "tick", json!(n)).await;
        assert_eq!(status, 202, "{body}");
    }
    for n in 0..5 {
        assert_eq!(ann.wait_event("tick").await, vec![json!(n)]);
        assert_eq!(bob.wait_event("tick").await, vec![json!(n)]);
    }
    assert_eq!(counter(&app, "souk_deliveries_total").await - before, 10);
    assert_eq!(counter(&app, "souk_deliveries_mailbox_total").await, 0);
}
