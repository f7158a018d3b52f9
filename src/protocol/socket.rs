//! Socket.IO v5 packets, carried inside Engine.IO message packets.
//!
//! Wire form: `<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]`.

use std::io::Write as _;

use serde_json::Value;

use super::DecodeError;

/// Socket.IO packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    Connect,
    Disconnect,
    Event,
    Ack,
    ConnectError,
    BinaryEvent,
    BinaryAck,
}

impl PacketType {
    fn from_char(c: char) -> Option<Self> {
        Some(match c {
            '0' => Self::Connect,
            '1' => Self::Disconnect,
            '2' => Self::Event,
            '3' => Self::Ack,
            '4' => Self::ConnectError,
            '5' => Self::BinaryEvent,
            '6' => Self::BinaryAck,
            _ => return None,
        })
    }
}

/// The longest ack id accepted: JavaScript clients count up from 0 and never
/// come near 2^53, so anything longer is hostile.
const MAX_ACK_ID_DIGITS: usize = 15;
/// The longest namespace accepted.
const MAX_NAMESPACE_LEN: usize = 256;

/// A decoded Socket.IO packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet<'a> {
    pub kind: PacketType,
    pub namespace: &'a str,
    pub ack_id: Option<u64>,
    pub data: Option<Value>,
}

/// Decodes a Socket.IO packet from the data of an Engine.IO message packet.
pub fn decode(text: &str) -> Result<Packet<'_>, DecodeError> {
    let mut rest = text;
    let kind_char = rest.chars().next().ok_or(DecodeError::Empty)?;
    let kind = PacketType::from_char(kind_char).ok_or(DecodeError::UnknownSocketType(kind_char))?;
    rest = &rest[kind_char.len_utf8()..];

    if matches!(kind, PacketType::BinaryEvent | PacketType::BinaryAck) {
        // Binary packets are refused whole; their attachments are never read.
        return Ok(Packet {
            kind,
            namespace: "/",
            ack_id: binary_ack_id(rest),
            data: None,
        });
    }

    let namespace = if rest.starts_with('/') {
        let end = rest.find(',').unwrap_or(rest.len());
        let namespace = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or("");
        namespace
    } else {
        "/"
    };
    if namespace.len() > MAX_NAMESPACE_LEN {
        return Err(DecodeError::NamespaceTooLong);
    }

    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let ack_id = if digits == 0 {
        None
    } else if digits > MAX_ACK_ID_DIGITS {
        return Err(DecodeError::BadAckId);
    } else {
        let id = rest[..digits]
            .parse::<u64>()
            .map_err(|_| DecodeError::BadAckId)?;
        rest = &rest[digits..];
        Some(id)
    };

    let data = if rest.is_empty() {
        None
    } else {
        Some(serde_json::from_str::<Value>(rest).map_err(|_| DecodeError::BadJson)?)
    };

    check_payload(kind, ack_id, data.as_ref())?;
    Ok(Packet {
        kind,
        namespace,
        ack_id,
        data,
    })
}

/// Reads the ack id of a binary packet (`51-/ns,12[...]`), so the refusal can
/// answer it; anything odd yields none.
fn binary_ack_id(rest: &str) -> Option<u64> {
    let after_count = rest.split_once('-').map(|(_, r)| r)?;
    let after_nsp = if after_count.starts_with('/') {
        after_count.split_once(',').map(|(_, r)| r)?
    } else {
        after_count
    };
    let digits = after_nsp.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > MAX_ACK_ID_DIGITS {
        return None;
    }
    after_nsp[..digits].parse().ok()
}

/// The payload rules of the reference socket.io-parser.
fn check_payload(
    kind: PacketType,
    ack_id: Option<u64>,
    data: Option<&Value>,
) -> Result<(), DecodeError> {
    let valid = match kind {
        PacketType::Connect => ack_id.is_none() && data.is_none_or(Value::is_object),
        PacketType::Disconnect => ack_id.is_none() && data.is_none(),
        PacketType::Event => matches!(
            data,
            Some(Value::Array(items)) if matches!(items.first(), Some(Value::String(_)))
        ),
        PacketType::Ack => ack_id.is_some() && matches!(data, Some(Value::Array(_))),
        PacketType::ConnectError => matches!(data, Some(Value::Object(_) | Value::String(_))),
        PacketType::BinaryEvent | PacketType::BinaryAck => true,
    };
    if valid {
        Ok(())
    } else {
        Err(DecodeError::BadPayload)
    }
}

/// `40{"sid":…,"pid":…}`: the namespace accepted the connection.
pub fn encode_connect_ok(sid: &str, pid: &str) -> String {
    #[derive(serde::Serialize)]
    struct Accepted<'a> {
        sid: &'a str,
        pid: &'a str,
    }
    // Serializing two strings cannot fail.
    format!(
        "40{}",
        serde_json::to_string(&Accepted { sid, pid }).unwrap_or_default()
    )
}

/// `44[/ns,]{…}`: the namespace refused the connection.
pub fn encode_connect_error(namespace: &str, body: &Value) -> String {
    if namespace == "/" {
        format!("44{body}")
    } else {
        format!("44{namespace},{body}")
    }
}

/// `41`: the server ends the socket; socket.io-client does not reconnect.
pub const DISCONNECT: &str = "41";

/// `42["name",payload(,offset)]`: an event, with the room offset as last
/// argument when the event belongs to a room log.
pub fn encode_event(name: &str, payload: &Value, offset: Option<&str>) -> String {
    let name = Value::String(name.to_owned());
    match offset {
        Some(offset) => format!("42[{name},{payload},{}]", Value::String(offset.to_owned())),
        None => format!("42[{name},{payload}]"),
    }
}

/// `42["name",payload`: an event without its closing bracket, so that the
/// room log can append the offset it assigns (`,"offset"]`).
pub fn encode_event_head(name: &str, payload: &Value) -> String {
    let name = Value::String(name.to_owned());
    format!("42[{name},{payload}")
}

/// [`encode_event_head`] of a payload serialized straight into the frame,
/// without building a [`Value`] first; `close` appends `]` for an event
/// outside any room log. A payload whose serialization fails (none of
/// souk's: every map key is a string) is sent as `null`.
pub fn encode_serialized<T: serde::Serialize + ?Sized>(
    name: &str,
    payload: &T,
    close: bool,
) -> String {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"42[");
    // A `&str` always serializes.
    let _ = serde_json::to_writer(&mut out, name);
    out.push(b',');
    let start = out.len();
    if serde_json::to_writer(&mut out, payload).is_err() {
        out.truncate(start);
        out.extend_from_slice(b"null");
    }
    if close {
        out.push(b']');
    }
    // serde_json writes UTF-8 only.
    String::from_utf8(out).unwrap_or_default()
}

/// `43<id>[reply]`: the answer to a client event's ack id. Written
/// straight into the frame (no `format!` through `Display`): every answered
/// event pays for it.
pub fn encode_ack<T: serde::Serialize + ?Sized>(ack_id: u64, reply: &T) -> String {
    let mut out = Vec::with_capacity(160);
    // Writing to a Vec cannot fail.
    let _ = write!(out, "43{ack_id}[");
    let start = out.len();
    if serde_json::to_writer(&mut out, reply).is_err() {
        out.truncate(start);
        out.extend_from_slice(b"null");
    }
    out.push(b']');
    // serde_json writes UTF-8 only.
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(text: &str) -> Packet<'_> {
        match decode(text) {
            Ok(packet) => packet,
            Err(err) => panic!("{text:?} should decode, got {err:?}"),
        }
    }

    #[test]
    fn connect_without_and_with_auth() {
        let p = ok("0");
        assert_eq!(p.kind, PacketType::Connect);
        assert_eq!(p.namespace, "/");
        assert_eq!(p.data, None);
        let p = ok(r#"0{"token":"t"}"#);
        assert_eq!(p.data, Some(json!({"token":"t"})));
        let p = ok(r#"0/admin,{"token":"t"}"#);
        assert_eq!(p.namespace, "/admin");
        let p = ok("0/admin,");
        assert_eq!(p.namespace, "/admin");
        assert_eq!(p.data, None);
        let p = ok("0/admin");
        assert_eq!(p.namespace, "/admin");
    }

    #[test]
    fn connect_payload_must_be_an_object() {
        assert_eq!(decode(r#"0"token""#), Err(DecodeError::BadPayload));
        assert_eq!(decode("0[1]"), Err(DecodeError::BadPayload));
        assert_eq!(decode("01{}"), Err(DecodeError::BadPayload));
    }

    #[test]
    fn disconnect() {
        let p = ok("1");
        assert_eq!(p.kind, PacketType::Disconnect);
        assert_eq!(decode("1{}"), Err(DecodeError::BadPayload));
        assert_eq!(ok("1/x,").namespace, "/x");
    }

    #[test]
    fn event_with_and_without_ack_id() {
        let p = ok(r#"2["hello",{"a":1}]"#);
        assert_eq!(p.kind, PacketType::Event);
        assert_eq!(p.ack_id, None);
        assert_eq!(p.data, Some(json!(["hello", {"a":1}])));
        let p = ok(r#"212["hello"]"#);
        assert_eq!(p.ack_id, Some(12));
        let p = ok(r#"2/,0["x"]"#);
        assert_eq!(p.ack_id, Some(0));
        assert_eq!(p.namespace, "/");
    }

    #[test]
    fn event_needs_a_name_first() {
        assert_eq!(decode("2"), Err(DecodeError::BadPayload));
        assert_eq!(decode("2[]"), Err(DecodeError::BadPayload));
        assert_eq!(decode("2[1,2]"), Err(DecodeError::BadPayload));
        assert_eq!(decode(r#"2{"a":1}"#), Err(DecodeError::BadPayload));
        assert_eq!(decode(r#"2"hello""#), Err(DecodeError::BadPayload));
        assert_eq!(decode("2[null]"), Err(DecodeError::BadPayload));
    }

    #[test]
    fn ack_needs_an_id_and_an_array() {
        let p = ok("37[1]");
        assert_eq!(p.kind, PacketType::Ack);
        assert_eq!(p.ack_id, Some(7));
        assert_eq!(decode("3[1]"), Err(DecodeError::BadPayload));
        assert_eq!(decode("37"), Err(DecodeError::BadPayload));
        assert_eq!(decode("37{}"), Err(DecodeError::BadPayload));
    }

    #[test]
    fn connect_error_from_a_client_decodes_but_is_odd() {
        assert_eq!(ok(r#"4{"message":"x"}"#).kind, PacketType::ConnectError);
        assert_eq!(decode("4"), Err(DecodeError::BadPayload));
    }

    #[test]
    fn binary_packets_decode_as_binary_with_their_ack_id() {
        let p = ok(r#"51-["up",{"_placeholder":true,"num":0}]"#);
        assert_eq!(p.kind, PacketType::BinaryEvent);
        assert_eq!(p.ack_id, None);
        let p = ok(r#"51-/ns,9["up",{"_placeholder":true,"num":0}]"#);
        assert_eq!(p.ack_id, Some(9));
        let p = ok(r#"51-4["up"]"#);
        assert_eq!(p.ack_id, Some(4));
        assert_eq!(ok("61-3[]").kind, PacketType::BinaryAck);
        assert_eq!(ok("5garbage").ack_id, None);
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert_eq!(decode(""), Err(DecodeError::Empty));
        assert_eq!(decode("7"), Err(DecodeError::UnknownSocketType('7')));
        assert_eq!(decode("a"), Err(DecodeError::UnknownSocketType('a')));
        assert_eq!(decode("2[\"x\""), Err(DecodeError::BadJson));
        assert_eq!(decode("2[\"x\"]]"), Err(DecodeError::BadJson));
        assert_eq!(decode("2[\"x\"]garbage"), Err(DecodeError::BadJson));
        // Leading white space is valid JSON, as for JSON.parse in the reference parser.
        assert_eq!(ok("2 [\"x\"]").kind, PacketType::Event);
        assert_eq!(decode("2abc"), Err(DecodeError::BadJson));
        assert_eq!(
            decode("21234567890123456[\"x\"]"),
            Err(DecodeError::BadAckId)
        );
        let long = format!("0/{},{{}}", "n".repeat(300));
        assert_eq!(decode(&long), Err(DecodeError::NamespaceTooLong));
    }

    #[test]
    fn encodes_server_packets() {
        assert_eq!(encode_connect_ok("s", "p"), r#"40{"sid":"s","pid":"p"}"#);
        let body = json!({"message":"Invalid namespace"});
        assert_eq!(
            encode_connect_error("/admin", &body),
            r#"44/admin,{"message":"Invalid namespace"}"#
        );
        assert_eq!(
            encode_connect_error("/", &body),
            r#"44{"message":"Invalid namespace"}"#
        );
        assert_eq!(
            encode_event("a\"b", &json!({"x":1}), None),
            r#"42["a\"b",{"x":1}]"#
        );
        assert_eq!(
            encode_event("e", &json!(1), Some("17-0")),
            r#"42["e",1,"17-0"]"#
        );
        assert_eq!(encode_ack(3, &json!({"ok":true})), r#"433[{"ok":true}]"#);
    }

    #[test]
    fn an_event_head_plus_an_offset_is_an_event() {
        let head = encode_event_head("e", &json!({"k": 1}));
        assert_eq!(
            format!("{head},\"3-0\"]"),
            encode_event("e", &json!({"k": 1}), Some("3-0"))
        );
    }

    #[test]
    fn floats_decode_to_the_number_that_was_sent() {
        // Found by protocol::proptests: without serde_json's
        // `float_roundtrip`, a float can come back one unit off in its last
        // place, so a payload relayed or stored is not the one sent.
        for sent in [
            -1.4919949899817722e234_f64,
            1.42412717758666e-309,
            0.1 + 0.2,
        ] {
            let frame = format!("2[\"e\",{sent:e}]");
            let p = ok(&frame);
            assert_eq!(p.data.as_ref().and_then(|d| d[1].as_f64()), Some(sent));
        }
    }

    #[test]
    fn encoded_packets_decode_again() {
        let text = encode_event("e", &json!({"k":[1,2]}), Some("5"));
        let engine_data = text.strip_prefix('4').unwrap_or_default();
        let p = ok(engine_data);
        assert_eq!(p.data, Some(json!(["e", {"k":[1,2]}, "5"])));
    }
}
