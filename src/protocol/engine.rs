//! Engine.IO v4 packets as they travel in WebSocket text frames.
//!
//! One WebSocket text frame carries exactly one packet: a type digit followed
//! by its data. A long-polling body carries several, separated by
//! [`SEPARATOR`].

use super::DecodeError;

/// A packet a client may send to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientPacket<'a> {
    /// `1`: the client closes the transport.
    Close,
    /// `2<data>`: a ping; clients only send `2probe` while upgrading.
    Ping(&'a str),
    /// `3<data>`: the answer to the server's ping.
    Pong(&'a str),
    /// `4<data>`: a Socket.IO packet.
    Message(&'a str),
    /// `5`: the client completes an upgrade.
    Upgrade,
    /// `6`: no operation.
    Noop,
}

/// Decodes one Engine.IO packet from a WebSocket text frame.
pub fn decode(frame: &str) -> Result<ClientPacket<'_>, DecodeError> {
    let mut chars = frame.chars();
    let kind = chars.next().ok_or(DecodeError::Empty)?;
    let data = chars.as_str();
    match kind {
        '0' => Err(DecodeError::UnexpectedEnginePacket('0')),
        '1' => Ok(ClientPacket::Close),
        '2' => Ok(ClientPacket::Ping(data)),
        '3' => Ok(ClientPacket::Pong(data)),
        '4' => Ok(ClientPacket::Message(data)),
        '5' => Ok(ClientPacket::Upgrade),
        '6' => Ok(ClientPacket::Noop),
        other => Err(DecodeError::UnknownEngineType(other)),
    }
}

/// The handshake packet the server sends first on a new connection.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Open<'a> {
    pub sid: &'a str,
    pub upgrades: &'a [&'a str],
    pub ping_interval: u64,
    pub ping_timeout: u64,
    pub max_payload: usize,
}

/// Encodes the open packet: `0{"sid":…}`.
pub fn encode_open(open: &Open<'_>) -> String {
    // Serializing a struct of strings and integers cannot fail.
    format!("0{}", serde_json::to_string(open).unwrap_or_default())
}

/// The server's ping.
pub const PING: &str = "2";
/// Closes the transport (sent to a long-polling client).
pub const CLOSE: &str = "1";
/// No operation: ends a pending long-polling GET during an upgrade.
pub const NOOP: &str = "6";
/// Separates packets in a long-polling body.
pub const SEPARATOR: char = '\x1e';

/// The packets of a long-polling POST body, in order.
pub fn split_payload(body: &str) -> impl Iterator<Item = &str> {
    body.split(SEPARATOR)
}
/// The server's pong, answering a client ping with the same data (`3probe`).
pub fn encode_pong(data: &str) -> String {
    format!("3{data}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_client_packet_type() {
        assert_eq!(decode("1"), Ok(ClientPacket::Close));
        assert_eq!(decode("2"), Ok(ClientPacket::Ping("")));
        assert_eq!(decode("2probe"), Ok(ClientPacket::Ping("probe")));
        assert_eq!(decode("3"), Ok(ClientPacket::Pong("")));
        assert_eq!(decode("40"), Ok(ClientPacket::Message("0")));
        assert_eq!(decode("4"), Ok(ClientPacket::Message("")));
        assert_eq!(decode("5"), Ok(ClientPacket::Upgrade));
        assert_eq!(decode("6"), Ok(ClientPacket::Noop));
    }

    #[test]
    fn refuses_empty_unknown_and_server_only_packets() {
        assert_eq!(decode(""), Err(DecodeError::Empty));
        assert_eq!(decode("7"), Err(DecodeError::UnknownEngineType('7')));
        assert_eq!(decode("x42"), Err(DecodeError::UnknownEngineType('x')));
        assert_eq!(decode("é"), Err(DecodeError::UnknownEngineType('é')));
        assert_eq!(decode(" 2"), Err(DecodeError::UnknownEngineType(' ')));
        assert_eq!(decode("0{}"), Err(DecodeError::UnexpectedEnginePacket('0')));
    }

    #[test]
    fn splits_a_polling_body_on_the_record_separator() {
        let packets: Vec<&str> = split_payload("3\x1e42[\"a\"]\x1e6").collect();
        assert_eq!(packets, ["3", "42[\"a\"]", "6"]);
        assert_eq!(split_payload("40").collect::<Vec<_>>(), ["40"]);
        // An empty body is one empty packet, which decode refuses.
        assert_eq!(split_payload("").collect::<Vec<_>>(), [""]);
    }

    #[test]
    fn encodes_open_packet_as_the_contract_shows() {
        let open = Open {
            sid: "abc",
            upgrades: &[],
            ping_interval: 25000,
            ping_timeout: 20000,
            max_payload: 1_000_000,
        };
        assert_eq!(
            encode_open(&open),
            r#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        );
        assert_eq!(encode_pong("probe"), "3probe");
    }
}
