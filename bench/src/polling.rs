//! The Engine.IO v4 long-polling transport, for `--transport polling`.
//!
//! A client is two keep-alive HTTP/1.1 connections: one carries the GETs
//! (`/socket.io/?EIO=4&transport=polling&sid=…`), one outstanding at a
//! time, each answered with the packets the server had, joined by the
//! record separator `\x1e`; the other carries the POSTs with the client's
//! packets (its CONNECT, events, answers to pings). The GETs run in a task
//! of their own that hands packets over a bounded channel, so `recv`
//! stays cancel-safe (a scenario `select!`s on it) and a GET is never
//! dropped halfway. The server closes a keep-alive connection that stayed
//! unused for a while (actix: 5 s); a POST that finds its connection gone
//! before any byte of the answer came opens a new one and sends again.

use std::net::IpAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::cli::Target;
use crate::error::{fail, Result};

/// Largest HTTP response head read.
const MAX_HEAD: usize = 16 * 1024;
/// Largest response body read (the server's maxPayload is 1 MB by default).
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Packets read by the GET task and not yet taken by `recv`: when full,
/// the task stops polling until `recv` catches up (as a WebSocket reader
/// that is not read stops reading the socket).
const QUEUE: usize = 1024;
/// Engine.IO's packet separator in a polling payload.
const SEPARATOR: char = '\x1e';

/// One polling Engine.IO connection.
pub struct Polling {
    target: Target,
    source: IpAddr,
    sid: String,
    /// The POST connection (opened on first use, again after the server
    /// closed it).
    post: Option<HttpConn>,
    /// Packets from the GET task; an `Err` is why it stopped.
    packets: mpsc::Receiver<std::result::Result<String, String>>,
    poller: JoinHandle<()>,
}

impl Drop for Polling {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

impl Polling {
    /// Opens a session with a first GET (no sid) and starts polling;
    /// answers the connection and the Engine.IO open packet's text.
    pub async fn open(target: &Target, source: IpAddr) -> Result<(Polling, String)> {
        let mut get = HttpConn::connect(target, source).await?;
        let body = get.get(&polling_path(None)).await?;
        let open = split_payload(&body)
            .next()
            .map(str::to_owned)
            .ok_or("empty handshake payload")?;
        let Some(json) = open.strip_prefix('0') else {
            return fail(format!("expected the Engine.IO open packet, got {open:?}"));
        };
        let sid = serde_json::from_str::<serde_json::Value>(json)?["sid"]
            .as_str()
            .ok_or("open packet without a sid")?
            .to_owned();
        // The packets after the open packet in the first payload, if any.
        let early: Vec<String> = split_payload(&body).skip(1).map(str::to_owned).collect();
        let (tx, packets) = mpsc::channel(QUEUE);
        let poller = tokio::spawn(poll(get, polling_path(Some(&sid)), early, tx));
        Ok((
            Polling {
                target: target.clone(),
                source,
                sid,
                post: None,
                packets,
                poller,
            },
            open,
        ))
    }

    /// Sends one packet in a POST and waits for the server's `ok`.
    pub async fn send(&mut self, packet: &str) -> Result<()> {
        let path = polling_path(Some(&self.sid));
        // A kept-alive connection may have been closed by the server
        // since its last use: then one more try on a new connection.
        for attempt in 0..2 {
            let mut conn = match self.post.take() {
                Some(conn) => conn,
                None => HttpConn::connect(&self.target, self.source).await?,
            };
            match conn.post(&path, packet).await {
                Ok(_) => {
                    self.post = Some(conn);
                    return Ok(());
                }
                Err(Sent::Stale) if attempt == 0 => continue,
                Err(Sent::Stale) => return fail("POST: connection closed before the answer"),
                Err(Sent::Failed(why)) => return fail(format!("POST: {why}")),
            }
        }
        fail("POST: connection closed before the answer")
    }

    /// The next packet's text, `None` once the session is gone.
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Result<Option<String>> {
        match self.packets.recv().await {
            None => Ok(None),
            Some(Ok(packet)) => Ok(Some(packet)),
            Some(Err(why)) => fail(format!("polling: {why}")),
        }
    }

    /// Closes the session (Engine.IO close packet, best effort).
    pub async fn close(mut self) {
        let _ = self.send("1").await;
    }

    /// Drops both connections without a word (the server finds out when
    /// the client misses its pings).
    pub fn abort(self) {
        if let Some(conn) = &self.post {
            let _ = conn.stream.set_zero_linger();
        }
    }
}

/// The GET loop: one GET outstanding, its packets into `tx` in order.
async fn poll(
    mut conn: HttpConn,
    path: String,
    early: Vec<String>,
    tx: mpsc::Sender<std::result::Result<String, String>>,
) {
    for packet in early {
        if tx.send(Ok(packet)).await.is_err() {
            return;
        }
    }
    loop {
        let body = match conn.get(&path).await {
            Ok(body) => body,
            Err(e) => {
                let _ = tx.send(Err(format!("GET: {e}"))).await;
                return;
            }
        };
        for packet in split_payload(&body) {
            let closing = packet == "1";
            if tx.send(Ok(packet.to_owned())).await.is_err() || closing {
                return;
            }
        }
    }
}

/// `/socket.io/?EIO=4&transport=polling`, with the session's sid when
/// there is one.
fn polling_path(sid: Option<&str>) -> String {
    match sid {
        Some(sid) => format!("/socket.io/?EIO=4&transport=polling&sid={sid}"),
        None => "/socket.io/?EIO=4&transport=polling".to_owned(),
    }
}

/// The packets of a polling payload (`\x1e` between them); empty pieces
/// are skipped.
pub fn split_payload(body: &str) -> impl Iterator<Item = &str> {
    body.split(SEPARATOR).filter(|p| !p.is_empty())
}

/// Why a request got no answer.
enum Sent {
    /// The connection was closed before any byte of the answer: the
    /// server may not have seen the request, so it may be sent again.
    Stale,
    Failed(String),
}

impl From<crate::error::Error> for Sent {
    fn from(e: crate::error::Error) -> Sent {
        Sent::Failed(e.to_string())
    }
}

impl From<std::io::Error> for Sent {
    fn from(e: std::io::Error) -> Sent {
        Sent::Failed(e.to_string())
    }
}

/// One keep-alive HTTP/1.1 connection and its unread bytes.
struct HttpConn {
    stream: TcpStream,
    authority: String,
    buf: Vec<u8>,
}

impl HttpConn {
    async fn connect(target: &Target, source: IpAddr) -> Result<HttpConn> {
        let stream = crate::ws::connect_from(target, source).await?;
        Ok(HttpConn {
            stream,
            authority: target.authority.clone(),
            buf: Vec::new(),
        })
    }

    /// A GET; answers the 200 answer's body.
    async fn get(&mut self, path: &str) -> Result<String> {
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: */*\r\n\r\n",
            self.authority
        );
        match self.exchange(head.as_bytes()).await {
            Ok(body) => Ok(body),
            Err(Sent::Stale) => fail("connection closed before the answer"),
            Err(Sent::Failed(why)) => fail(why),
        }
    }

    /// A POST of `text/plain` `body`.
    async fn post(&mut self, path: &str, body: &str) -> std::result::Result<String, Sent> {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
            self.authority,
            body.len()
        );
        self.exchange(request.as_bytes()).await
    }

    /// Writes a request, reads its answer; fails unless it is a 200.
    async fn exchange(&mut self, request: &[u8]) -> std::result::Result<String, Sent> {
        self.buf.clear();
        if self.stream.write_all(request).await.is_err() {
            return Err(Sent::Stale);
        }
        let head_end = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                break end;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(Sent::Failed("response head too long".into()));
            }
            if self.fill().await? == 0 {
                return Err(if self.buf.is_empty() {
                    Sent::Stale
                } else {
                    Sent::Failed("closed in the response head".into())
                });
            }
        };
        let head = parse_head(&self.buf[..head_end]).map_err(Sent::Failed)?;
        let mut rest = self.buf.split_off(head_end + 4);
        let body = match head.length {
            Some(length) => {
                if length > MAX_BODY {
                    return Err(Sent::Failed(format!("body of {length} bytes")));
                }
                while rest.len() < length {
                    self.buf.clear();
                    if self.fill().await? == 0 {
                        return Err(Sent::Failed("closed in the response body".into()));
                    }
                    rest.extend_from_slice(&self.buf);
                }
                rest.truncate(length);
                rest
            }
            None if head.chunked => loop {
                match dechunk(&rest) {
                    Ok(Some(body)) => break body,
                    Ok(None) if rest.len() <= MAX_BODY => {
                        self.buf.clear();
                        if self.fill().await? == 0 {
                            return Err(Sent::Failed("closed in a chunked body".into()));
                        }
                        rest.extend_from_slice(&self.buf);
                    }
                    Ok(None) => return Err(Sent::Failed("chunked body too long".into())),
                    Err(why) => return Err(Sent::Failed(why)),
                }
            },
            None => Vec::new(),
        };
        self.buf.clear();
        let body = String::from_utf8(body).map_err(|_| Sent::Failed("body not UTF-8".into()))?;
        if head.status != 200 {
            return Err(Sent::Failed(format!("HTTP {} {body}", head.status)));
        }
        Ok(body)
    }

    /// Reads what is there onto `buf`; answers how much (0: closed).
    async fn fill(&mut self) -> std::result::Result<usize, Sent> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }
}

/// What the tool needs of a response head.
#[derive(Debug, PartialEq)]
struct Head {
    status: u16,
    length: Option<usize>,
    chunked: bool,
}

fn parse_head(raw: &[u8]) -> std::result::Result<Head, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "response head not UTF-8".to_owned())?;
    let mut lines = text.split("\r\n");
    let status = crate::http::status_code(lines.next().unwrap_or_default())
        .ok_or("response without a status")?;
    let (mut length, mut chunked) = (None, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse()
                    .map_err(|_| format!("bad content-length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    Ok(Head {
        status,
        length,
        chunked,
    })
}

/// A whole chunked body, `None` while more is to come.
fn dechunk(mut rest: &[u8]) -> std::result::Result<Option<Vec<u8>>, String> {
    let mut body = Vec::new();
    loop {
        let Some(end) = find(rest, b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&rest[..end]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        rest = &rest[end + 2..];
        if size == 0 {
            return Ok(find(rest, b"\r\n").map(|_| body));
        }
        if rest.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Reads one request with its body (Content-Length) from `stream`.
    async fn read_request(stream: &mut TcpStream) -> Result<String> {
        let mut raw = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(end) = find(&raw, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_string();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .map_or(Ok(0), |n| n.trim().parse::<usize>())?;
                if raw.len() >= end + 4 + length {
                    return Ok(String::from_utf8_lossy(&raw).to_string());
                }
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return fail("client closed mid-request");
            }
            raw.extend_from_slice(&chunk[..n]);
        }
    }

    #[tokio::test]
    async fn a_post_on_a_connection_the_server_closed_is_sent_again() -> Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let server = tokio::spawn(async move {
            let mut bodies = Vec::new();
            // The first connection answers one POST, then the server
            // closes it (as actix does after its keep-alive).
            for _ in 0..2 {
                let (mut conn, _) = listener.accept().await?;
                bodies.push(read_request(&mut conn).await?);
                let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                conn.write_all(ok).await?;
            }
            Ok::<_, crate::error::Error>(bodies)
        });
        let target = Target::parse(&format!("http://127.0.0.1:{port}"))?;
        let (_tx, packets) = mpsc::channel(1);
        let mut polling = Polling {
            target,
            source: IpAddr::from([127, 0, 0, 1]),
            sid: "s1".into(),
            post: None,
            packets,
            poller: tokio::spawn(async {}),
        };
        polling.send("40").await?;
        // Let the close arrive before the connection is used again.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        polling.send("3").await?;
        let bodies = server.await??;
        assert!(bodies[0].starts_with("POST /socket.io/?EIO=4&transport=polling&sid=s1 HTTP/1.1"));
        assert!(bodies[0].ends_with("\r\n\r\n40"), "{}", bodies[0]);
        assert!(bodies[1].ends_with("\r\n\r\n3"), "{}", bodies[1]);
        Ok(())
    }

    #[test]
    fn payloads_split_on_the_record_separator() {
        let body = "42[\"tick\",{\"t\":1}]\x1e2\x1e42[\"tick\",{\"t\":2}]";
        let packets: Vec<&str> = split_payload(body).collect();
        assert_eq!(
            packets,
            ["42[\"tick\",{\"t\":1}]", "2", "42[\"tick\",{\"t\":2}]"]
        );
        assert_eq!(split_payload("6").collect::<Vec<_>>(), ["6"]);
        assert_eq!(split_payload("").count(), 0);
        assert_eq!(split_payload("\x1e3\x1e").collect::<Vec<_>>(), ["3"]);
        // A separator inside a JSON string is escaped by the server, never raw.
        let open = r#"0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000}"#;
        assert_eq!(split_payload(open).collect::<Vec<_>>(), [open]);
    }

    #[test]
    fn heads_give_status_and_length() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\ncontent-type: text/plain";
        assert_eq!(
            parse_head(head),
            Ok(Head {
                status: 200,
                length: Some(12),
                chunked: false
            })
        );
        let head = b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked";
        assert_eq!(
            parse_head(head),
            Ok(Head {
                status: 400,
                length: None,
                chunked: true
            })
        );
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x").is_err());
        assert!(parse_head(b"garbage").is_err());
    }

    #[test]
    fn chunked_bodies_wait_for_their_end() {
        assert_eq!(
            dechunk(b"5\r\nhello\r\n0\r\n\r\n"),
            Ok(Some(b"hello".to_vec()))
        );
        assert_eq!(dechunk(b"5\r\nhel"), Ok(None));
        assert_eq!(dechunk(b"5\r\nhello\r\n0\r\n"), Ok(None));
        assert!(dechunk(b"zz\r\n").is_err());
    }
}
