//! Clients: [`Client`], a raw Socket.IO v5 client over a real WebSocket;
//! tokens; and helpers that read frames ([`split_offset`],
//! [`server_error`]) or wait ([`eventually`]).

use std::collections::HashMap;
use std::time::Duration;

use actix_http::ws;
use awc::BoxedSocket;
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::servers::{TestApp, SECRET};

/// How long a test waits for any one frame.
pub const WAIT: Duration = Duration::from_secs(5);

/// Signs claims with the test secret.
pub fn hs256(claims: Value) -> String {
    sign(SECRET, claims)
}

/// Signs claims with an HS256 secret.
pub fn sign(secret: &str, claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A raw Socket.IO client: sends and reads frames exactly as written.
pub struct Client {
    framed: actix_codec::Framed<BoxedSocket, ws::Codec>,
    /// Events read while waiting for something else.
    pub events: Vec<Value>,
    /// Acks read while waiting for another one.
    acks: HashMap<u64, Value>,
    pub open: Value,
    /// Answer the server's pings automatically.
    pub auto_pong: bool,
    /// How long a read waits for a frame.
    pub wait: Duration,
    next_ack: u64,
}

/// What a read found.
#[derive(Debug)]
pub enum Frame {
    Text(String),
    Closed(Option<ws::CloseReason>),
}

impl Client {
    /// Opens a WebSocket and reads the Engine.IO open packet.
    pub async fn open(app: &TestApp) -> Client {
        Self::open_url(&app.ws_url(), None).await
    }

    pub async fn open_url(url: &str, bearer: Option<&str>) -> Client {
        let mut request = awc::Client::new().ws(url).max_frame_size(16 * 1024 * 1024);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let (_, framed) = request.connect().await.expect("websocket upgrade");
        let mut client = Client::from_framed(framed);
        let open = client.recv_text().await;
        let body = open.strip_prefix('0').expect("open packet first");
        client.open = serde_json::from_str(body).expect("open packet JSON");
        client
    }

    /// A client on an open WebSocket whose open packet is not to be read
    /// (an upgrade from polling).
    pub fn from_framed(framed: actix_codec::Framed<BoxedSocket, ws::Codec>) -> Client {
        Client {
            framed,
            events: Vec::new(),
            acks: HashMap::new(),
            open: Value::Null,
            auto_pong: true,
            wait: WAIT,
            next_ack: 0,
        }
    }

    pub async fn send(&mut self, text: &str) {
        self.framed
            .send(ws::Message::Text(text.to_owned().into()))
            .await
            .expect("send frame");
    }

    pub async fn send_message(&mut self, message: ws::Message) {
        self.framed.send(message).await.expect("send frame");
    }

    /// Sends CONNECT (with `{"token"}` when given) and returns the reply frame.
    pub async fn connect(&mut self, token: Option<&str>) -> String {
        match token {
            Some(token) => self.send(&format!("40{}", json!({ "token": token }))).await,
            None => self.send("40").await,
        }
        self.recv_text().await
    }

    /// The next frame, or the close.
    pub async fn recv(&mut self) -> Frame {
        loop {
            let frame = tokio::time::timeout(self.wait, self.framed.next())
                .await
                .expect("a frame within the wait");
            match frame {
                Some(Ok(ws::Frame::Text(bytes))) => {
                    let text = String::from_utf8(bytes.to_vec()).expect("utf-8 frame");
                    if text == "2" && self.auto_pong {
                        self.send("3").await;
                        continue;
                    }
                    return Frame::Text(text);
                }
                Some(Ok(ws::Frame::Close(reason))) => return Frame::Closed(reason),
                Some(Ok(ws::Frame::Ping(bytes))) => {
                    let _ = self.framed.send(ws::Message::Pong(bytes)).await;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Frame::Closed(None),
            }
        }
    }

    /// The next text frame; panics on a close.
    pub async fn recv_text(&mut self) -> String {
        match self.recv().await {
            Frame::Text(text) => text,
            Frame::Closed(reason) => panic!("closed while waiting for a frame: {reason:?}"),
        }
    }

    /// Reads until the server closes; returns the close reason.
    pub async fn expect_close(&mut self) -> Option<ws::CloseReason> {
        loop {
            match self.recv().await {
                Frame::Closed(reason) => return reason,
                Frame::Text(_) => {}
            }
        }
    }

    /// Emits an event with an ack id and returns the ack's reply object.
    pub async fn emit_ack(&mut self, name: &str, payload: Value) -> Value {
        let id = self.next_ack;
        self.next_ack += 1;
        self.send(&format!("42{id}{}", json!([name, payload])))
            .await;
        self.wait_ack(id).await
    }

    /// Waits for `43<id>[reply]`, keeping events that arrive meanwhile.
    pub async fn wait_ack(&mut self, id: u64) -> Value {
        loop {
            if let Some(reply) = self.acks.remove(&id) {
                return reply;
            }
            let text = self.recv_text().await;
            if let Some(rest) = text.strip_prefix("43") {
                let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                let ack_id: u64 = rest[..digits].parse().expect("ack id");
                let args: Value = serde_json::from_str(&rest[digits..]).expect("ack JSON");
                self.acks.insert(ack_id, args[0].clone());
                continue;
            }
            self.keep_event(&text);
        }
    }

    /// Waits for an event by name and returns its arguments after the name,
    /// without the room offset a room event carries last.
    pub async fn wait_event(&mut self, name: &str) -> Vec<Value> {
        self.wait_event_with_offset(name).await.0
    }

    /// Waits for an event by name: its arguments and its room offset.
    pub async fn wait_event_with_offset(&mut self, name: &str) -> (Vec<Value>, Option<String>) {
        if let Some(index) = self.events.iter().position(|e| e[0] == name) {
            let event = self.events.remove(index);
            return split_offset(&event);
        }
        loop {
            let text = self.recv_text().await;
            if let Some(body) = text.strip_prefix("42") {
                let event: Value = serde_json::from_str(body).expect("event JSON");
                if event[0] == name {
                    return split_offset(&event);
                }
                self.events.push(event);
            }
        }
    }

    /// Asserts that no event named `name` arrives within `within`.
    pub async fn assert_no_event(&mut self, name: &str, within: Duration) {
        assert!(
            !self.events.iter().any(|e| e[0] == name),
            "unexpected {name} already received"
        );
        let deadline = tokio::time::Instant::now() + within;
        while let Ok(frame) = tokio::time::timeout_at(deadline, self.framed.next()).await {
            match frame {
                Some(Ok(ws::Frame::Text(bytes))) => {
                    let text = String::from_utf8(bytes.to_vec()).unwrap();
                    if text == "2" {
                        self.send("3").await;
                        continue;
                    }
                    assert!(
                        !text.starts_with(&format!("42[\"{name}\"")),
                        "unexpected {name}: {text}"
                    );
                }
                Some(Ok(_)) => {}
                _ => break,
            }
        }
    }

    fn keep_event(&mut self, text: &str) {
        if let Some(body) = text.strip_prefix("42") {
            if let Ok(event) = serde_json::from_str::<Value>(body) {
                self.events.push(event);
            }
        }
    }
}

/// The `server:error` payload of a frame, if it is one.
pub fn server_error(text: &str) -> Option<Value> {
    let event: Value = serde_json::from_str(text.strip_prefix("42")?).ok()?;
    (event[0] == "server:error").then(|| event[1].clone())
}

/// Polls `check` until it is true or the wait runs out.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// An event's arguments after its name, and the offset when the last one is
/// a room offset (`<ms>-<seq>`).
pub fn split_offset(event: &Value) -> (Vec<Value>, Option<String>) {
    let mut args = event
        .as_array()
        .map(|a| a[1..].to_vec())
        .unwrap_or_default();
    let is_offset = |v: &Value| {
        v.as_str().is_some_and(|s| {
            s.split_once('-').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
            })
        })
    };
    if args.len() >= 2 && args.last().is_some_and(is_offset) {
        let offset = args.pop().and_then(|v| v.as_str().map(str::to_owned));
        return (args, offset);
    }
    (args, None)
}
