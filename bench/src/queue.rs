//! Just enough of Redis to append to souk's queue (`XADD`, §8b): one TCP
//! connection, RESP2, one command at a time. A standalone Redis, or the
//! Redis Cluster node that serves the `{ingest}` slot (no redirects).

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::error::{fail, Result};

/// A connection that appends entries to one stream.
pub struct Queue {
    conn: BufReader<TcpStream>,
    stream: String,
}

impl Queue {
    pub async fn connect(addr: &str, stream: &str) -> Result<Queue> {
        let conn = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("redis {addr}: {e}"))?;
        conn.set_nodelay(true)
            .map_err(|e| format!("redis {addr}: {e}"))?;
        Ok(Queue {
            conn: BufReader::new(conn),
            stream: stream.to_owned(),
        })
    }

    /// `XADD <stream> * field value …`; answers the entry's id.
    pub async fn xadd(&mut self, fields: &[(&str, &str)]) -> Result<String> {
        let mut parts: Vec<&[u8]> = vec![b"XADD", self.stream.as_bytes(), b"*"];
        for (name, value) in fields {
            parts.push(name.as_bytes());
            parts.push(value.as_bytes());
        }
        self.conn
            .get_mut()
            .write_all(&encode(&parts))
            .await
            .map_err(|e| format!("redis: {e}"))?;
        let mut line = String::new();
        self.conn
            .read_line(&mut line)
            .await
            .map_err(|e| format!("redis: {e}"))?;
        let Some(len) = line.strip_prefix('$') else {
            return fail(format!("redis: XADD answered {}", line.trim_end()));
        };
        let len: usize = len
            .trim_end()
            .parse()
            .map_err(|_| format!("redis: bad reply {line:?}"))?;
        let mut id = vec![0; len + 2];
        self.conn
            .read_exact(&mut id)
            .await
            .map_err(|e| format!("redis: {e}"))?;
        id.truncate(len);
        String::from_utf8(id).or_else(|_| fail("redis: entry id not UTF-8"))
    }
}

/// A command as an array of bulk strings.
fn encode(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for part in parts {
        out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            encode(&[b"XADD", b"s", b"*"]),
            b"*3\r\n$4\r\nXADD\r\n$1\r\ns\r\n$1\r\n*\r\n".to_vec()
        );
    }
}
