//! A small HTTP/1.1 client for the server API: one request a connection,
//! JSON in and out. Enough for a handful of set-up calls and for paced
//! event posts; not a general client.

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cli::Target;
use crate::error::{fail, Result};

pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// Fails unless the status is 2xx.
    pub fn ok(self, what: &str) -> Result<Response> {
        if (200..300).contains(&self.status) {
            Ok(self)
        } else {
            fail(format!("{what}: HTTP {} {}", self.status, self.body))
        }
    }
}

/// Sends one request with an optional bearer token and JSON body.
pub async fn request(
    target: &Target,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> Result<Response> {
    let mut stream = TcpStream::connect(target.addr).await?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\n",
        target.authority
    );
    if let Some(token) = bearer {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if !body.is_empty() || method != "GET" {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    head.push_str(&body);
    stream.write_all(head.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Result<Response> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("HTTP response without a header end")?;
    let head = std::str::from_utf8(&raw[..split])?;
    let mut lines = head.split("\r\n");
    let status =
        status_code(lines.next().unwrap_or_default()).ok_or("HTTP response without a status")?;
    let chunked = lines.any(|line| {
        line.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let rest = &raw[split + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        body: String::from_utf8(body)?,
    })
}

/// The status code of an HTTP/1.1 status line (`HTTP/1.1 200 OK`).
pub fn status_code(line: &str) -> Option<u16> {
    line.split(' ').nth(1).and_then(|code| code.parse().ok())
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunked body")?;
        let size_text = std::str::from_utf8(&rest[..end])?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)?;
        rest = &rest[end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size + 2 {
            return fail("truncated chunked body");
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}
