//! Read receipts: how far each participant has read a thread; forward only.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::{messages, read_receipts};
use super::StoreError;
use crate::ids::{BookingId, MessageId, UserId};

/// A `read_receipts` row.
#[derive(Debug, Clone, PartialEq, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = read_receipts, check_for_backend(diesel::pg::Pg))]
pub struct ReceiptRow {
    pub booking_id: String,
    pub user_id: String,
    pub last_read_message_id: i64,
    pub read_at: DateTime<Utc>,
}

/// Moves `user`'s receipt to `message` unless it is already there or past
/// it. Returns the receipt as it stands and whether it moved.
pub fn mark(
    conn: &mut PgConnection,
    booking: &BookingId,
    user: &UserId,
    message: MessageId,
) -> Result<(ReceiptRow, bool), StoreError> {
    conn.transaction(|conn| {
        // diesel has no WHERE for ON CONFLICT DO UPDATE, so this one is SQL.
        let moved: Option<ReceiptRow> = diesel::sql_query(
            "INSERT INTO read_receipts (booking_id, user_id, last_read_message_id) \
             VALUES ($1, $2, $3) \
             ON CONFLICT (booking_id, user_id) DO UPDATE \
             SET last_read_message_id = EXCLUDED.last_read_message_id, read_at = now() \
             WHERE read_receipts.last_read_message_id < EXCLUDED.last_read_message_id \
             RETURNING booking_id, user_id, last_read_message_id, read_at",
        )
        .bind::<diesel::sql_types::Text, _>(booking.as_str())
        .bind::<diesel::sql_types::Text, _>(user.as_str())
        .bind::<diesel::sql_types::BigInt, _>(message.0)
        .get_result(conn)
        .optional()?;
        match moved {
            Some(row) => Ok((row, true)),
            None => {
                let row = read_receipts::table
                    .find((booking.as_str(), user.as_str()))
                    .select(ReceiptRow::as_select())
                    .first(conn)?;
                Ok((row, false))
            }
        }
    })
}

/// How many messages from others `user` has not read, and their last read one.
pub fn unread(
    conn: &mut PgConnection,
    booking: &BookingId,
    user: &UserId,
) -> Result<(i64, Option<MessageId>), StoreError> {
    let last: Option<i64> = read_receipts::table
        .find((booking.as_str(), user.as_str()))
        .select(read_receipts::last_read_message_id)
        .first(conn)
        .optional()?;
    let unread: i64 = messages::table
        .filter(messages::booking_id.eq(booking.as_str()))
        .filter(messages::sender_id.ne(user.as_str()))
        .filter(messages::id.gt(last.unwrap_or(0)))
        .count()
        .get_result(conn)?;
    Ok((unread, last.map(MessageId)))
}
