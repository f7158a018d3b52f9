//! Chat messages in Postgres, written in batches.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use std::collections::HashMap;

use super::bookings::{self, BookingRow};
use super::schema::{bookings as booking_rows, messages};
use super::{audit, StoreError};
use crate::domain::Message;
use crate::ids::{BookingId, MessageId, UserId};
use crate::time::rfc3339;
use serde_json::json;

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

/// A message to send. Its sender must be the booking's buyer or seller,
/// or an admin (`admin`); the writer checks that in the transaction that
/// writes it, so sending reads nothing from Postgres before.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub message: NewMessage,
    pub admin: bool,
}

/// A message sent: the stored row, whether this send created it (false for
/// a repeated `clientMsgId`), and the booking's parties, to notify.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub row: MessageRow,
    pub created: bool,
    pub buyer_id: String,
    pub seller_id: String,
}

/// Chat messages are written in batches.
pub struct Messages;

impl super::writer::Batch for Messages {
    type Row = Outgoing;
    /// A message may be refused on its own (no such booking, not a party)
    /// without failing the rest of its batch.
    type Written = Result<Sent, StoreError>;
    fn write(
        conn: &mut PgConnection,
        rows: &[Outgoing],
    ) -> Result<Vec<Result<Sent, StoreError>>, StoreError> {
        conn.transaction(|conn| send_batch(conn, rows))
    }
}

/// Checks each message's sender against its booking (one query for the
/// batch) and writes those that may be sent.
fn send_batch(
    conn: &mut PgConnection,
    rows: &[Outgoing],
) -> Result<Vec<Result<Sent, StoreError>>, StoreError> {
    let ids: Vec<&str> = rows
        .iter()
        .map(|row| row.message.booking_id.as_str())
        .collect();
    let found: HashMap<String, BookingRow> = booking_rows::table
        .filter(booking_rows::id.eq_any(&ids))
        .select(BookingRow::as_select())
        .load::<BookingRow>(conn)?
        .into_iter()
        .map(|booking| (booking.id.clone(), booking))
        .collect();
    // Each message's buyer and seller and whether an admin who is not a
    // party sends it, or why it may not be sent.
    let checked: Vec<Result<(String, String, bool), StoreError>> = rows
        .iter()
        .map(|row| {
            let booking = found
                .get(&row.message.booking_id)
                .ok_or(StoreError::NotFound)?;
            let sender = UserId::from_db(row.message.sender_id.clone());
            let party = booking.is_party(&sender);
            if party || row.admin {
                Ok((booking.buyer_id.clone(), booking.seller_id.clone(), !party))
            } else {
                Err(bookings::not_a_party())
            }
        })
        .collect();
    let allowed: Vec<NewMessage> = rows
        .iter()
        .zip(&checked)
        .filter(|(_, check)| check.is_ok())
        .map(|(row, _)| row.message.clone())
        .collect();
    // Already in the batch's transaction: no savepoint (two round trips).
    let mut stored = if allowed.is_empty() {
        Vec::new()
    } else {
        insert_rows(conn, &allowed)?
    }
    .into_iter();
    let mut sent = Vec::with_capacity(checked.len());
    for check in checked {
        let (buyer_id, seller_id, audited) = match check {
            Ok(parties) => parties,
            Err(refused) => {
                sent.push(Err(refused));
                continue;
            }
        };
        let (row, created) = stored
            .next()
            .ok_or_else(|| StoreError::internal("a message was not written"))?;
        if audited {
            // In the batch's transaction: no admin's message without its entry.
            audit::admin_access(
                conn,
                &row.sender_id,
                "message:send",
                &row.booking_id,
                json!({ "messageId": row.id.to_string(), "created": created }),
            )?;
        }
        sent.push(Ok(Sent {
            row,
            created,
            buyer_id,
            seller_id,
        }));
    }
    Ok(sent)
}

/// Writes a batch in one transaction. For each input, in order: the stored
/// message and whether this input created it (false when the same sender
/// already sent that `clientMsgId` in the same booking, in this batch or
/// before).
pub fn insert_batch(
    conn: &mut PgConnection,
    batch: &[NewMessage],
) -> Result<Vec<(MessageRow, bool)>, StoreError> {
    conn.transaction(|conn| insert_rows(conn, batch))
}

/// [`insert_batch`] in the caller's transaction.
fn insert_rows(
    conn: &mut PgConnection,
    batch: &[NewMessage],
) -> Result<Vec<(MessageRow, bool)>, StoreError> {
    let created: Vec<MessageRow> = diesel::insert_into(messages::table)
        .values(batch)
        .on_conflict((
            messages::booking_id,
            messages::sender_id,
            messages::client_msg_id,
        ))
        .do_nothing()
        .returning(MessageRow::as_returning())
        .get_results(conn)?;
    let mut fresh: HashMap<IdempotencyKey, MessageRow> = created
        .into_iter()
        .map(|row| (IdempotencyKey::of_row(&row), row))
        .collect();
    let mut out = Vec::with_capacity(batch.len());
    let mut seen = HashMap::new();
    for message in batch {
        let key = IdempotencyKey::of(message);
        if let Some(row) = fresh.remove(&key) {
            seen.insert(key, row.clone());
            out.push((row, true));
        } else if let Some(row) = seen.get(&key) {
            out.push((row.clone(), false));
        } else {
            let row = messages::table
                .filter(messages::booking_id.eq(&message.booking_id))
                .filter(messages::sender_id.eq(&message.sender_id))
                .filter(messages::client_msg_id.eq(&message.client_msg_id))
                .select(MessageRow::as_select())
                .first(conn)?;
            seen.insert(key, row.clone());
            out.push((row, false));
        }
    }
    Ok(out)
}

/// What makes a send a repeat (§5): its booking, sender and `clientMsgId`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct IdempotencyKey(String, String, String);

impl IdempotencyKey {
    fn of(message: &NewMessage) -> Self {
        IdempotencyKey(
            message.booking_id.clone(),
            message.sender_id.clone(),
            message.client_msg_id.clone(),
        )
    }

    fn of_row(row: &MessageRow) -> Self {
        IdempotencyKey(
            row.booking_id.clone(),
            row.sender_id.clone(),
            row.client_msg_id.clone(),
        )
    }
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
