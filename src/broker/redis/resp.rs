//! The little of RESP2 a pub/sub subscriber needs: encoding commands, and
//! decoding replies and pushed messages from a byte buffer.

/// A decoded RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Value>>),
}

/// Encodes a command as an array of bulk strings.
pub fn encode(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for part in parts {
        out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A malformed reply: the connection must be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed;

/// Decodes one value from the start of `buf`: `Ok(None)` when more bytes are
/// needed, else the value and how many bytes it took.
pub fn decode(buf: &[u8]) -> Result<Option<(Value, usize)>, Malformed> {
    let Some(line_end) = find_crlf(buf) else {
        return Ok(None);
    };
    let (kind, line) = match buf.split_first() {
        Some((kind, rest)) => (*kind, &rest[..line_end - 1]),
        None => return Ok(None),
    };
    let text = std::str::from_utf8(line).map_err(|_| Malformed)?;
    let after = line_end + 2;
    match kind {
        b'+' => Ok(Some((Value::Simple(text.to_owned()), after))),
        b'-' => Ok(Some((Value::Error(text.to_owned()), after))),
        b':' => Ok(Some((
            Value::Integer(text.parse().map_err(|_| Malformed)?),
            after,
        ))),
        b'$' => {
            let len: i64 = text.parse().map_err(|_| Malformed)?;
            if len < 0 {
                return Ok(Some((Value::Bulk(None), after)));
            }
            let len = usize::try_from(len).map_err(|_| Malformed)?;
            if buf.len() < after + len + 2 {
                return Ok(None);
            }
            if &buf[after + len..after + len + 2] != b"\r\n" {
                return Err(Malformed);
            }
            Ok(Some((
                Value::Bulk(Some(buf[after..after + len].to_vec())),
                after + len + 2,
            )))
        }
        b'*' => {
            let count: i64 = text.parse().map_err(|_| Malformed)?;
            if count < 0 {
                return Ok(Some((Value::Array(None), after)));
            }
            let mut items = Vec::new();
            let mut used = after;
            for _ in 0..count {
                match decode(&buf[used..])? {
                    Some((item, took)) => {
                        items.push(item);
                        used += took;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Value::Array(Some(items)), used)))
        }
        _ => Err(Malformed),
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

impl Value {
    /// The value as text, for bulk and simple strings.
    pub fn text(&self) -> Option<&str> {
        match self {
            Value::Bulk(Some(bytes)) => std::str::from_utf8(bytes).ok(),
            Value::Simple(text) => Some(text),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_commands_as_bulk_arrays() {
        assert_eq!(
            encode(&[b"SSUBSCRIBE", b"ch"]),
            b"*2\r\n$10\r\nSSUBSCRIBE\r\n$2\r\nch\r\n".to_vec()
        );
    }

    #[test]
    fn decodes_pushed_messages_and_confirmations() {
        let msg = b"*3\r\n$8\r\nsmessage\r\n$2\r\nch\r\n$5\r\nhe\r\no\r\n";
        let (value, used) = decode(msg).ok().flatten().unwrap_or((Value::Integer(0), 0));
        assert_eq!(used, msg.len());
        assert_eq!(
            value,
            Value::Array(Some(vec![
                Value::Bulk(Some(b"smessage".to_vec())),
                Value::Bulk(Some(b"ch".to_vec())),
                Value::Bulk(Some(b"he\r\no".to_vec())),
            ]))
        );
        let confirm = b"*3\r\n$10\r\nssubscribe\r\n$2\r\nch\r\n:1\r\n";
        assert!(
            matches!(decode(confirm), Ok(Some((Value::Array(Some(v)), 33))) if v[2] == Value::Integer(1))
        );
        assert_eq!(
            decode(b"+OK\r\n"),
            Ok(Some((Value::Simple("OK".into()), 5)))
        );
        assert_eq!(
            decode(b"-ERR no\r\n"),
            Ok(Some((Value::Error("ERR no".into()), 9)))
        );
        assert_eq!(decode(b"$-1\r\n"), Ok(Some((Value::Bulk(None), 5))));
    }

    #[test]
    fn waits_for_more_bytes_at_every_cut() {
        let msg = b"*3\r\n$8\r\nsmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n";
        for cut in 0..msg.len() {
            assert_eq!(decode(&msg[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(matches!(decode(msg), Ok(Some(_))));
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(decode(b"?what\r\n"), Err(Malformed));
        assert_eq!(decode(b":12x\r\n"), Err(Malformed));
        assert_eq!(decode(b"$3\r\nabcd\r\n"), Err(Malformed));
    }
}
