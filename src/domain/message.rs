//! Chat messages as the contract shows them (§6).

use serde::Serialize;

use crate::ids::{BookingId, MessageId, UserId};

/// A message in a booking's thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: MessageId,
    pub booking_id: BookingId,
    pub sender_id: UserId,
    pub body: String,
    pub client_msg_id: String,
    pub created_at: String,
}
