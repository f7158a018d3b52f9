//! Chat messages in Postgres, written in batches.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::messages;
use super::StoreError;
use crate::domain::Message;
use crate::ids::{BookingId, MessageId, UserId};
use crate::time::rfc3339;

/// A `messages` row.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = messages, check_for_backend(diesel::pg::Pg))]
pub struct MessageRow {
    pub id: i64,
    pub booking_id: String,
    pub sender_id: String,
    pub body: String,
    pub client_msg_id: String,
    pub created_at: DateTime<Utc>,
}

impl MessageRow {
    /// The contract's shape.
    pub fn to_message(&self) -> Message {
        Message {
            id: MessageId(self.id),
            booking_id: BookingId::from_db(self.booking_id.clone()),
            sender_id: UserId::from_db(self.sender_id.clone()),
            body: self.body.clone(),
            client_msg_id: self.client_msg_id.clone(),
            created_at: rfc3339(self.created_at),
        }
    }
}

/// A message to write.
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = messages)]
pub struct NewMessage {
    pub booking_id: String,
    pub sender_id: String,
    pub body: String,
    pub client_msg_id: String,
}

/// Chat messages are written in batches.
pub struct Messages;

impl super::writer::Batch for Messages {
    type Row = NewMessage;
    type Written = (MessageRow, bool);
    fn write(
        conn: &mut PgConnection,
        rows: &[NewMessage],
    ) -> Result<Vec<(MessageRow, bool)>, StoreError> {
        insert_batch(conn, rows)
    }
}

/// Writes a batch in one transaction. For each input, in order: the stored
/// message and whether this input created it (false when the same sender
/// already sent that `clientMsgId`, in this batch or before).
pub fn insert_batch(
    conn: &mut PgConnection,
    batch: &[NewMessage],
) -> Result<Vec<(MessageRow, bool)>, StoreError> {
    conn.transaction(|conn| {
        let created: Vec<MessageRow> = diesel::insert_into(messages::table)
            .values(batch)
            .on_conflict((messages::sender_id, messages::client_msg_id))
            .do_nothing()
            .returning(MessageRow::as_returning())
            .get_results(conn)?;
        let mut fresh: std::collections::HashMap<(String, String), MessageRow> = created
            .into_iter()
            .map(|row| ((row.sender_id.clone(), row.client_msg_id.clone()), row))
            .collect();
        let mut out = Vec::with_capacity(batch.len());
        let mut seen = std::collections::HashMap::new();
        for message in batch {
            let key = (message.sender_id.clone(), message.client_msg_id.clone());
            if let Some(row) = fresh.remove(&key) {
                seen.insert(key, row.clone());
                out.push((row, true));
            } else if let Some(row) = seen.get(&key) {
                out.push((row.clone(), false));
            } else {
                let row = messages::table
                    .filter(messages::sender_id.eq(&message.sender_id))
                    .filter(messages::client_msg_id.eq(&message.client_msg_id))
                    .select(MessageRow::as_select())
                    .first(conn)?;
                seen.insert(key, row.clone());
                out.push((row, false));
            }
        }
        Ok(out)
    })
}

/// A page of a booking's thread, oldest first, and whether older ones exist.
pub fn history(
    conn: &mut PgConnection,
    booking: &BookingId,
    before: Option<MessageId>,
    limit: u32,
) -> Result<(Vec<MessageRow>, bool), StoreError> {
    let mut query = messages::table
        .filter(messages::booking_id.eq(booking.as_str()))
        .select(MessageRow::as_select())
        .order(messages::id.desc())
        .limit(i64::from(limit) + 1)
        .into_boxed();
    if let Some(before) = before {
        query = query.filter(messages::id.lt(before.0));
    }
    let mut rows: Vec<MessageRow> = query.load(conn)?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    rows.reverse();
    Ok((rows, has_more))
}

/// Whether a message belongs to a booking.
pub fn in_booking(
    conn: &mut PgConnection,
    booking: &BookingId,
    message: MessageId,
) -> Result<bool, StoreError> {
    let count: i64 = messages::table
        .filter(messages::id.eq(message.0))
        .filter(messages::booking_id.eq(booking.as_str()))
        .count()
        .get_result(conn)?;
    Ok(count > 0)
}
