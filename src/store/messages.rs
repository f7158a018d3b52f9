//! Chat messages in Postgres, written in batches.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, Bool, Text, Untyped};

use std::collections::HashMap;

use super::bookings::{self, BookingRow};
use super::schema::{bookings as booking_rows, messages};
use super::{audit, StoreError};
use crate::domain::Message;
use crate::ids::{BookingId, MessageId, UserId};
use crate::time::rfc3339;
use serde_json::json;

/// A `messages` row.
#[derive(Debug, Clone, PartialEq, Queryable, QueryableByName, Selectable)]
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
        send_batch(conn, rows)
    }
}

/// Writes a batch with one statement, the parties' check folded into the
/// insert, which returns each message it wrote with its booking's parties.
/// What it did not write (refused, or a repeated `clientMsgId`) is sorted
/// out afterwards: the bookings are read once and each repeat's stored row
/// looked up, which the usual batch, new messages from parties, never needs.
/// In the caller's transaction: no admin's message without its audit entry.
fn send_batch(
    conn: &mut PgConnection,
    rows: &[Outgoing],
) -> Result<Vec<Result<Sent, StoreError>>, StoreError> {
    let column = |field: fn(&NewMessage) -> &str| -> Vec<&str> {
        rows.iter().map(|row| field(&row.message)).collect()
    };
    let written: Vec<Written> = SendBatch {
        booking_ids: column(|m| &m.booking_id),
        sender_ids: column(|m| &m.sender_id),
        bodies: column(|m| &m.body),
        client_msg_ids: column(|m| &m.client_msg_id),
        admins: rows.iter().map(|row| row.admin).collect(),
    }
    .load(conn)?;
    let mut fresh: HashMap<IdempotencyKey, Written> = written
        .into_iter()
        .map(|written| (IdempotencyKey::of_row(&written.message), written))
        .collect();
    // Read only once something was not written.
    let mut bookings: Option<HashMap<String, BookingRow>> = None;
    let mut seen: HashMap<IdempotencyKey, Sent> = HashMap::new();
    let mut sent = Vec::with_capacity(rows.len());
    for outgoing in rows {
        let key = IdempotencyKey::of(&outgoing.message);
        let answer = if let Some(written) = fresh.remove(&key) {
            Sent {
                row: written.message,
                created: true,
                buyer_id: written.buyer_id,
                seller_id: written.seller_id,
            }
        } else if let Some(earlier) = seen.get(&key) {
            Sent {
                created: false,
                ..earlier.clone()
            }
        } else {
            let found = match &mut bookings {
                Some(found) => found,
                None => bookings.insert(parties_of(conn, rows)?),
            };
            match check(found, outgoing) {
                Ok((buyer_id, seller_id)) => Sent {
                    row: stored(conn, &outgoing.message)?,
                    created: false,
                    buyer_id,
                    seller_id,
                },
                Err(refused) => {
                    sent.push(Err(refused));
                    continue;
                }
            }
        };
        let party = [&answer.buyer_id, &answer.seller_id].contains(&&answer.row.sender_id);
        if outgoing.admin && !party {
            audit::admin_access(
                conn,
                &answer.row.sender_id,
                "message:send",
                &answer.row.booking_id,
                json!({ "messageId": answer.row.id.to_string(), "created": answer.created }),
            )?;
        }
        seen.entry(key).or_insert_with(|| answer.clone());
        sent.push(Ok(answer));
    }
    Ok(sent)
}

/// Inserts, in order, each message whose sender is its booking's buyer or
/// seller, or an admin; a repeated `(booking, sender, clientMsgId)` is not
/// inserted. Returns the rows inserted, each with its booking's parties.
/// The batch comes as five arrays, so the statement's text is the same for
/// every batch: diesel prepares it once per connection (`sql_query` would
/// have Postgres parse and plan it for each batch).
struct SendBatch<'a> {
    booking_ids: Vec<&'a str>,
    sender_ids: Vec<&'a str>,
    bodies: Vec<&'a str>,
    client_msg_ids: Vec<&'a str>,
    admins: Vec<bool>,
}

impl QueryFragment<Pg> for SendBatch<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("WITH input AS (SELECT * FROM unnest(");
        for column in [
            &self.booking_ids,
            &self.sender_ids,
            &self.bodies,
            &self.client_msg_ids,
        ] {
            out.push_bind_param::<Array<Text>, _>(column)?;
            out.push_sql(", ");
        }
        out.push_bind_param::<Array<Bool>, _>(&self.admins)?;
        out.push_sql(
            ") WITH ORDINALITY AS input(booking_id, sender_id, body, client_msg_id, admin, n)
), written AS (
    INSERT INTO messages (booking_id, sender_id, body, client_msg_id)
    SELECT input.booking_id, input.sender_id, input.body, input.client_msg_id
    FROM input JOIN bookings ON bookings.id = input.booking_id
    WHERE input.admin OR input.sender_id IN (bookings.buyer_id, bookings.seller_id)
    ORDER BY input.n
    ON CONFLICT (booking_id, sender_id, client_msg_id) DO NOTHING
    RETURNING id, booking_id, sender_id, body, client_msg_id, created_at
)
SELECT written.*, bookings.buyer_id, bookings.seller_id
FROM written JOIN bookings ON bookings.id = written.booking_id",
        );
        Ok(())
    }
}

impl QueryId for SendBatch<'_> {
    type QueryId = ();
    // Cached by its text.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for SendBatch<'_> {
    type SqlType = Untyped;
}

impl RunQueryDsl<PgConnection> for SendBatch<'_> {}

/// A message [`SendBatch`] wrote, and its booking's parties.
#[derive(QueryableByName)]
struct Written {
    #[diesel(embed)]
    message: MessageRow,
    #[diesel(sql_type = Text)]
    buyer_id: String,
    #[diesel(sql_type = Text)]
    seller_id: String,
}

/// The bookings of a batch's messages, by id.
fn parties_of(
    conn: &mut PgConnection,
    rows: &[Outgoing],
) -> Result<HashMap<String, BookingRow>, StoreError> {
    let ids: Vec<&str> = rows
        .iter()
        .map(|row| row.message.booking_id.as_str())
        .collect();
    Ok(booking_rows::table
        .filter(booking_rows::id.eq_any(&ids))
        .select(BookingRow::as_select())
        .load::<BookingRow>(conn)?
        .into_iter()
        .map(|booking| (booking.id.clone(), booking))
        .collect())
}

/// A message's booking's buyer and seller, if its sender may send it.
fn check(
    bookings: &HashMap<String, BookingRow>,
    outgoing: &Outgoing,
) -> Result<(String, String), StoreError> {
    let booking = bookings
        .get(&outgoing.message.booking_id)
        .ok_or(StoreError::NotFound)?;
    let sender = UserId::from_db(outgoing.message.sender_id.clone());
    if booking.is_party(&sender) || outgoing.admin {
        Ok((booking.buyer_id.clone(), booking.seller_id.clone()))
    } else {
        Err(bookings::not_a_party())
    }
}

/// The stored message that `message` repeats.
fn stored(conn: &mut PgConnection, message: &NewMessage) -> Result<MessageRow, StoreError> {
    Ok(messages::table
        .filter(messages::booking_id.eq(&message.booking_id))
        .filter(messages::sender_id.eq(&message.sender_id))
        .filter(messages::client_msg_id.eq(&message.client_msg_id))
        .select(MessageRow::as_select())
        .first(conn)?)
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

/// [`insert_batch`] in its transaction.
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
            let row = stored(conn, message)?;
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
