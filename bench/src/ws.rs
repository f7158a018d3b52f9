//! The Socket.IO v5 client over a WebSocket or long-polling (Engine.IO
//! v4, namespace `/`; `polling` carries the latter): the only place that
//! knows how a connection is opened and how frames look. Each connection binds its local end to a chosen source address
//! before connecting, so connections can be spread over several loopback
//! addresses (each gives its own range of ephemeral ports).

use std::net::{IpAddr, SocketAddr};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::cli::{Target, Transport};
use crate::error::{fail, Result};
use crate::polling::Polling;

/// One packet from the server, as the scenarios see it. Engine.IO pings
/// never show: `recv` answers them.
#[derive(Debug)]
pub enum Packet {
    /// `42[...]`: the event's JSON array (name first, then arguments).
    Event(String),
    /// `43<id>[...]`: an ack id and its JSON array of arguments.
    Ack(u64, String),
    /// `40{...}`: CONNECT accepted, with its JSON payload.
    Connected(String),
    /// `44{...}`: CONNECT refused, with its JSON payload.
    ConnectError(String),
    /// `41`: the server disconnected the namespace.
    Disconnect,
    /// Anything else (the tool has no use for it).
    Other,
    /// The connection is gone, and why.
    Closed(String),
}

impl Packet {
    /// Why the connection is gone, when what was read says it is (a close,
    /// a DISCONNECT, a read error); `None` for any other packet.
    pub fn gone(read: Result<Packet>) -> Option<String> {
        match read {
            Ok(Packet::Closed(why)) => Some(why),
            Ok(Packet::Disconnect) => Some("server sent DISCONNECT".into()),
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        }
    }
}

/// One Socket.IO connection.
pub struct Socket {
    link: Link,
    /// The Engine.IO open packet's JSON.
    pub open: Value,
}

/// The Engine.IO transport under a socket.
enum Link {
    Ws(Box<WebSocketStream<TcpStream>>),
    Polling(Box<Polling>),
}

/// Opens a connection from `source` (port chosen by the kernel) with the
/// target's transport and reads the Engine.IO open packet.
pub async fn open(target: &Target, source: IpAddr) -> Result<Socket> {
    match target.transport {
        Transport::WebSocket => open_ws(target, source).await,
        Transport::Polling => {
            let (polling, open) = Polling::open(target, source).await?;
            Ok(Socket {
                open: serde_json::from_str(&open[1..])?,
                link: Link::Polling(Box::new(polling)),
            })
        }
    }
}

/// A TCP connection to the target from `source` (port chosen by the
/// kernel), without Nagle.
pub async fn connect_from(target: &Target, source: IpAddr) -> Result<TcpStream> {
    let socket = match target.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket
        .bind(SocketAddr::new(source, 0))
        .map_err(|e| format!("bind {source}: {e}"))?;
    let stream = socket
        .connect(target.addr)
        .await
        .map_err(|e| format!("connect {} from {source}: {e}", target.addr))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Opens a TCP connection from `source`, upgrades it to a WebSocket and
/// reads the Engine.IO open packet.
async fn open_ws(target: &Target, source: IpAddr) -> Result<Socket> {
    let stream = connect_from(target, source).await?;
    // Small buffers: thousands of these live at once, and frames are small.
    let config = WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024);
    let (ws, _) =
        tokio_tungstenite::client_async_with_config(target.ws_url(), stream, Some(config))
            .await
            .map_err(|e| format!("websocket upgrade: {e}"))?;
    let mut socket = Socket {
        link: Link::Ws(Box::new(ws)),
        open: Value::Null,
    };
    match socket.recv_text().await? {
        Some(text) if text.starts_with('0') => {
            socket.open = serde_json::from_str(&text[1..])?;
            Ok(socket)
        }
        Some(text) => fail(format!("expected the Engine.IO open packet, got {text:?}")),
        None => fail("closed before the Engine.IO open packet"),
    }
}

impl Socket {
    /// Sends CONNECT with `auth` as its payload; answers the CONNECT
    /// payload (`{"sid",…}`) or fails with the refusal.
    pub async fn connect(&mut self, auth: &Value) -> Result<String> {
        self.connect_buffered(auth)
            .await
            .map(|(payload, _)| payload)
    }

    /// As `connect`, also answering the events that came before the
    /// CONNECT answer, in order: a Node Socket.IO server replays a
    /// recovered session's missed events first, and socket.io-client
    /// buffers them until it is connected.
    pub async fn connect_buffered(&mut self, auth: &Value) -> Result<(String, Vec<String>)> {
        self.send_text(format!("40{auth}")).await?;
        let mut early = Vec::new();
        loop {
            match self.recv().await? {
                Packet::Connected(payload) => return Ok((payload, early)),
                Packet::Event(array) => early.push(array),
                Packet::ConnectError(payload) => {
                    return fail(format!("CONNECT refused: {payload}"))
                }
                Packet::Closed(why) => {
                    return fail(format!("closed before CONNECT answered: {why}"))
                }
                Packet::Disconnect => return fail("disconnected before CONNECT answered"),
                _ => {}
            }
        }
    }

    /// Emits an event, with an ack id when given.
    pub async fn emit(&mut self, name: &str, payload: &Value, ack: Option<u64>) -> Result<()> {
        let array = Value::Array(vec![Value::String(name.to_owned()), payload.clone()]);
        let frame = match ack {
            Some(id) => format!("42{id}{array}"),
            None => format!("42{array}"),
        };
        self.send_text(frame).await
    }

    /// Sends one text frame as written.
    pub async fn send_text(&mut self, text: String) -> Result<()> {
        match &mut self.link {
            Link::Ws(ws) => ws.send(Message::text(text)).await?,
            Link::Polling(polling) => polling.send(&text).await?,
        }
        Ok(())
    }

    /// Emits an event and waits for its ack, answering the ack's first
    /// argument. Events that arrive meanwhile are dropped: use it only
    /// while setting up.
    pub async fn call(&mut self, name: &str, payload: &Value, ack: u64) -> Result<Value> {
        self.emit(name, payload, Some(ack)).await?;
        loop {
            match self.recv().await? {
                Packet::Ack(id, args) if id == ack => {
                    let mut args: Vec<Value> = serde_json::from_str(&args)?;
                    return Ok(if args.is_empty() {
                        Value::Null
                    } else {
                        args.swap_remove(0)
                    });
                }
                Packet::Closed(why) => {
                    return fail(format!("closed while waiting for {name}'s ack: {why}"))
                }
                Packet::Disconnect => {
                    return fail(format!("disconnected while waiting for {name}'s ack"))
                }
                _ => {}
            }
        }
    }

    /// `call`, failing unless the answer says `ok: true`.
    pub async fn call_ok(&mut self, name: &str, payload: &Value, ack: u64) -> Result<Value> {
        let reply = self.call(name, payload, ack).await?;
        if reply["ok"] == Value::Bool(true) {
            Ok(reply)
        } else {
            fail(format!("{name} refused: {reply}"))
        }
    }

    /// The next packet. Answers Engine.IO pings (`2` → `3`) and WebSocket
    /// pings on the way. Cancel-safe: a packet is never half read.
    pub async fn recv(&mut self) -> Result<Packet> {
        loop {
            let Some(text) = self.recv_text().await? else {
                return Ok(Packet::Closed("closed by the server".into()));
            };
            match text.as_bytes().first() {
                Some(b'2') if text.len() == 1 => self.send_text("3".into()).await?,
                Some(b'1') => return Ok(Packet::Closed("Engine.IO close".into())),
                Some(b'4') => return Ok(socket_io_packet(text)),
                _ => {}
            }
        }
    }

    /// The next text frame or polled packet (`None` once closed);
    /// answers WebSocket pings.
    async fn recv_text(&mut self) -> Result<Option<String>> {
        let ws = match &mut self.link {
            Link::Ws(ws) => ws,
            Link::Polling(polling) => return polling.recv().await,
        };
        loop {
            match ws.next().await {
                None => return Ok(None),
                Some(Err(e)) => return fail(format!("websocket: {e}")),
                Some(Ok(Message::Text(text))) => return Ok(Some(text.as_str().to_owned())),
                Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(_)) => {}
            }
        }
    }

    /// Drops the TCP connection with no close at all: no WebSocket close
    /// frame, no FIN; the kernel sends a reset (`SO_LINGER` 0), as when a
    /// phone loses its network and the connection is torn down. Polling:
    /// both HTTP connections are dropped (the server notices the missed
    /// pings).
    pub fn abort(self) {
        match self.link {
            Link::Ws(ws) => {
                let _ = ws.get_ref().set_zero_linger();
            }
            Link::Polling(polling) => polling.abort(),
        }
    }

    /// Closes the WebSocket, or the polling session (best effort).
    pub async fn close(self) {
        match self.link {
            Link::Ws(mut ws) => {
                let _ = WebSocketStream::close(&mut ws, None).await;
            }
            Link::Polling(polling) => polling.close().await,
        }
    }
}

/// Splits an Engine.IO message (`4…`) into a Socket.IO packet.
fn socket_io_packet(text: String) -> Packet {
    let body = &text[1..];
    match body.as_bytes().first() {
        Some(b'0') => Packet::Connected(body[1..].to_owned()),
        Some(b'1') => Packet::Disconnect,
        Some(b'2') => match body[1..].find('[') {
            Some(start) => Packet::Event(body[1 + start..].to_owned()),
            None => Packet::Other,
        },
        Some(b'3') => {
            let rest = &body[1..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            match rest[..digits].parse() {
                Ok(id) => Packet::Ack(id, rest[digits..].to_owned()),
                Err(_) => Packet::Other,
            }
        }
        Some(b'4') => Packet::ConnectError(body[1..].to_owned()),
        _ => Packet::Other,
    }
}

/// The name of an event array (`["name",…]`), read without parsing the
/// rest. Names in the contract carry no escapes.
pub fn event_name(array: &str) -> Option<&str> {
    let rest = array.strip_prefix("[\"")?;
    rest.find('"').map(|end| &rest[..end])
}

/// The first integer field `"key":N` in a JSON text, read without
/// parsing it whole. Meant for events whose shape is known (`bid:new`'s
/// `amount`).
pub fn int_field(json: &str, key: &str) -> Option<i64> {
    let pattern = format!("\"{key}\":");
    let start = json.find(&pattern)? + pattern.len();
    let rest = json[start..].trim_start();
    let end = rest
        .bytes()
        .position(|b| !(b.is_ascii_digit() || b == b'-'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_split() {
        assert!(
            matches!(socket_io_packet("40{\"sid\":\"a\"}".into()), Packet::Connected(p) if p == "{\"sid\":\"a\"}")
        );
        assert!(
            matches!(socket_io_packet("4312[{\"ok\":true}]".into()), Packet::Ack(12, a) if a == "[{\"ok\":true}]")
        );
        assert!(
            matches!(socket_io_packet("42[\"bid:new\",{}]".into()), Packet::Event(e) if e == "[\"bid:new\",{}]")
        );
        assert!(matches!(socket_io_packet("41".into()), Packet::Disconnect));
    }

    #[test]
    fn fields_are_found_without_parsing() {
        let event = r#"["bid:new",{"listingId":"l","bidId":"b","amount":1234,"bidderId":"u"},"7"]"#;
        assert_eq!(event_name(event), Some("bid:new"));
        assert_eq!(int_field(event, "amount"), Some(1234));
        assert_eq!(int_field(event, "missing"), None);
    }
}
