//! The user reads of §8a: pages of bookings, listings and audit entries,
//! each ordered by a key that never repeats (a time and the row's id), so
//! that a page starts strictly after the previous page's last key and
//! paging visits every row once.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamptz};

use super::bookings::BookingRow;
use super::listings::ListingRow;
use super::schema::{audit_log, listings};
use super::StoreError;
use crate::domain::{Availability, BookingStatus};
use crate::ids::UserId;

/// A booking with its listing's summary, its last message and how many
/// messages from others the reader has not read.
#[derive(Debug, Clone, QueryableByName)]
pub struct BookingLine {
    #[diesel(embed)]
    pub booking: BookingRow,
    #[diesel(sql_type = Text)]
    pub title: String,
    #[diesel(sql_type = BigInt)]
    pub price: i64,
    #[diesel(sql_type = Text)]
    pub currency: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub last_id: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    pub last_sender_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub last_body: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub last_client_msg_id: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub last_created_at: Option<DateTime<Utc>>,
    /// The later of the booking's last change and its last message.
    #[diesel(sql_type = Timestamptz)]
    pub active_at: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    pub unread: i64,
}

/// What every booking list selects; `$1` is the reader.
const BOOKING_LINES: &str = "
  SELECT b.id, b.listing_id, b.buyer_id, b.seller_id, b.status, b.idempotency_key,
         b.created_at, b.updated_at, b.seq, l.title, l.price, l.currency,
         m.id AS last_id, m.sender_id AS last_sender_id, m.body AS last_body,
         m.client_msg_id AS last_client_msg_id, m.created_at AS last_created_at,
         GREATEST(b.updated_at, COALESCE(m.created_at, b.updated_at)) AS active_at,
         (SELECT count(*) FROM messages u
           WHERE u.booking_id = b.id AND u.sender_id <> $1
             AND u.id > COALESCE((SELECT r.last_read_message_id FROM read_receipts r
                                   WHERE r.booking_id = b.id AND r.user_id = $1), 0)) AS unread
    FROM bookings b
    JOIN listings l ON l.id = b.listing_id
    LEFT JOIN LATERAL (SELECT * FROM messages mm WHERE mm.booking_id = b.id
                        ORDER BY mm.id DESC LIMIT 1) m ON true";

/// Which of a user's bookings: as buyer, as seller, or either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sides {
    pub buyer: bool,
    pub seller: bool,
}

/// A page of `user`'s bookings, the most recently active first, after
/// `after` (the previous page's last `(active_at, id)`).
pub fn my_bookings(
    conn: &mut PgConnection,
    user: &UserId,
    sides: Sides,
    status: Option<BookingStatus>,
    after: Option<(DateTime<Utc>, String)>,
    limit: i64,
) -> Result<Vec<BookingLine>, StoreError> {
    let query = format!(
        "SELECT * FROM ({BOOKING_LINES}
           WHERE (($2 AND b.buyer_id = $1) OR ($3 AND b.seller_id = $1))
             AND ($4::text IS NULL OR b.status = $4)) t
          WHERE $5::timestamptz IS NULL OR (t.active_at, t.id) < ($5, $6)
          ORDER BY t.active_at DESC, t.id DESC
          LIMIT $7"
    );
    let (at, id) = split(after);
    Ok(diesel::sql_query(query)
        .bind::<Text, _>(user.as_str())
        .bind::<Bool, _>(sides.buyer)
        .bind::<Bool, _>(sides.seller)
        .bind::<Nullable<Text>, _>(status.map(BookingStatus::as_str))
        .bind::<Nullable<Timestamptz>, _>(at)
        .bind::<Text, _>(id)
        .bind::<BigInt, _>(limit)
        .load(conn)?)
}

/// Where a booking stands in the admins' list: disputes first, then by
/// the oldest change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminKey {
    pub disputed: bool,
    pub updated_at: DateTime<Utc>,
    pub id: String,
}

/// A page of every booking (or those in `status`): disputes first, each
/// group by the oldest change first, after `after`.
pub fn all_bookings(
    conn: &mut PgConnection,
    status: Option<BookingStatus>,
    after: Option<AdminKey>,
    limit: i64,
) -> Result<Vec<BookingRow>, StoreError> {
    // `false` sorts first: the disputed ones.
    let query = "SELECT id, listing_id, buyer_id, seller_id, status, idempotency_key,
                        created_at, updated_at, seq
                   FROM bookings
                  WHERE ($1::text IS NULL OR status = $1)
                    AND ($3::timestamptz IS NULL
                         OR (status <> 'disputed', updated_at, id) > (NOT $2, $3, $4))
                  ORDER BY status <> 'disputed', updated_at, id
                  LIMIT $5";
    let (disputed, at, id) = match after {
        Some(key) => (key.disputed, Some(key.updated_at), key.id),
        None => (false, None, String::new()),
    };
    Ok(diesel::sql_query(query)
        .bind::<Nullable<Text>, _>(status.map(BookingStatus::as_str))
        .bind::<Bool, _>(disputed)
        .bind::<Nullable<Timestamptz>, _>(at)
        .bind::<Text, _>(id)
        .bind::<BigInt, _>(limit)
        .load(conn)?)
}

/// Which listings a page holds.
#[derive(Debug, Clone)]
pub enum ListingsOf {
    /// Every listing of one seller, private ones too.
    Seller(UserId),
    /// Public listings only.
    Public,
}

/// A page of listings, newest first, after `after` (`(created_at, id)`).
pub fn listings_page(
    conn: &mut PgConnection,
    of: &ListingsOf,
    availability: Option<Availability>,
    after: Option<(DateTime<Utc>, String)>,
    limit: i64,
) -> Result<Vec<ListingRow>, StoreError> {
    let mut query = listings::table
        .select(ListingRow::as_select())
        .order((listings::created_at.desc(), listings::id.desc()))
        .limit(limit)
        .into_boxed();
    query = match of {
        ListingsOf::Seller(seller) => {
            query.filter(listings::seller_id.eq(seller.as_str().to_owned()))
        }
        ListingsOf::Public => query.filter(listings::visibility.eq("public")),
    };
    if let Some(availability) = availability {
        query = query.filter(listings::availability.eq(availability.as_str()));
    }
    if let Some((at, id)) = after {
        query = query.filter(
            listings::created_at
                .lt(at)
                .or(listings::created_at.eq(at).and(listings::id.lt(id))),
        );
    }
    Ok(query.load(conn)?)
}

/// One audit entry.
#[derive(Debug, Clone, Queryable)]
pub struct AuditLine {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor_id: String,
    pub action: String,
    pub details: serde_json::Value,
}

/// A page of the audit entries about `subject`, oldest first, after the
/// entry `after`.
pub fn audit_page(
    conn: &mut PgConnection,
    subject: &str,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<AuditLine>, StoreError> {
    Ok(audit_log::table
        .filter(audit_log::subject.eq(subject))
        .filter(audit_log::id.gt(after.unwrap_or(0)))
        .order(audit_log::id)
        .limit(limit)
        .select((
            audit_log::id,
            audit_log::at,
            audit_log::actor_id,
            audit_log::action,
            audit_log::details,
        ))
        .load(conn)?)
}

fn split(after: Option<(DateTime<Utc>, String)>) -> (Option<DateTime<Utc>>, String) {
    match after {
        Some((at, id)) => (Some(at), id),
        None => (None, String::new()),
    }
}

/// The most open disputes `admin:watch` answers (§5).
pub const OPEN_DISPUTES: i64 = 200;

/// The open disputes, oldest first (by when they were opened: a disputed
/// booking changes no more until it is resolved).
pub fn open_disputes(conn: &mut PgConnection) -> Result<Vec<BookingRow>, StoreError> {
    use super::schema::bookings;
    Ok(bookings::table
        .filter(bookings::status.eq(BookingStatus::Disputed.as_str()))
        .order((bookings::updated_at, bookings::id))
        .limit(OPEN_DISPUTES)
        .select(BookingRow::as_select())
        .load(conn)?)
}
