//! The wire protocol: Engine.IO v4 framing, Socket.IO v5 packets and the typed
//! client events of the souk contract. Pure code: no I/O, no clock.

pub mod engine;
pub mod events;
pub mod socket;

#[cfg(test)]
mod proptests;

/// Why a frame did not decode. Every variant is answered with `bad_request`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty frame")]
    Empty,
    #[error("unknown Engine.IO packet type {0:?}")]
    UnknownEngineType(char),
    #[error("Engine.IO packet type {0:?} is sent by servers only")]
    UnexpectedEnginePacket(char),
    #[error("unknown Socket.IO packet type {0:?}")]
    UnknownSocketType(char),
    #[error("namespace too long")]
    NamespaceTooLong,
    #[error("ack id is not a small integer")]
    BadAckId,
    #[error("payload is not valid JSON")]
    BadJson,
    #[error("payload does not fit the packet type")]
    BadPayload,
}
