//! The outbox: notices a commit promised, written in that transaction and
//! deleted once published. A relay takes rows for a lease (`FOR UPDATE SKIP
//! LOCKED`, so relays on several nodes never take the same ones); rows
//! whose lease ran out (their relay died) are free to take again.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use serde_json::Value;

use super::schema::outbox;
use super::StoreError;

/// A notice to publish: one event to several rooms (`listing:{id}`,
/// `user:{id}`), and the listing version it shows for a listing event.
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = outbox)]
pub struct NewNotice {
    /// Never `None` (SQL arrays may hold NULLs, so diesel says `Option`).
    pub rooms: Vec<Option<String>>,
    pub event: String,
    pub payload: Value,
    pub listing_version: Option<i64>,
    /// The same on every try of this notice, so that its repeats are
    /// dropped by the connections that had it.
    pub emission: i64,
}

impl NewNotice {
    pub fn new(rooms: Vec<String>, event: &str, payload: Value) -> Self {
        NewNotice {
            rooms: rooms.into_iter().map(Some).collect(),
            event: event.to_owned(),
            payload,
            listing_version: None,
            emission: rand::random(),
        }
    }
}

/// A notice a relay took.
#[derive(Debug, Clone, PartialEq, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = outbox, check_for_backend(diesel::pg::Pg))]
pub struct Notice {
    pub id: i64,
    pub rooms: Vec<Option<String>>,
    pub event: String,
    pub payload: Value,
    pub listing_version: Option<i64>,
    pub emission: i64,
    pub created_at: DateTime<Utc>,
}

/// Writes notices (inside the caller's transaction).
pub fn add(conn: &mut PgConnection, notices: &[NewNotice]) -> Result<(), StoreError> {
    if !notices.is_empty() {
        diesel::insert_into(outbox::table)
            .values(notices)
            .execute(conn)?;
    }
    Ok(())
}

/// Takes up to `limit` free notices for `node` until `lease` from now, the
/// oldest first.
pub fn take(
    conn: &mut PgConnection,
    node: &str,
    lease: Duration,
    limit: i64,
) -> Result<Vec<Notice>, StoreError> {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let mut taken: Vec<Notice> = diesel::sql_query(
        "UPDATE outbox SET leased_by = $1, \
             leased_until = now() + make_interval(secs => $2::double precision / 1000) \
         WHERE id IN (SELECT id FROM outbox \
             WHERE leased_until IS NULL OR leased_until < now() \
             ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) \
         RETURNING id, rooms, event, payload, listing_version, emission, created_at",
    )
    .bind::<Text, _>(node)
    .bind::<BigInt, _>(lease_ms)
    .bind::<BigInt, _>(limit)
    .load(conn)?;
    taken.sort_by_key(|notice| notice.id);
    Ok(taken)
}

/// Deletes published notices.
pub fn done(conn: &mut PgConnection, ids: &[i64]) -> Result<(), StoreError> {
    diesel::delete(outbox::table.filter(outbox::id.eq_any(ids))).execute(conn)?;
    Ok(())
}

/// Frees notices `node` took but could not publish, for the next try.
pub fn release(conn: &mut PgConnection, node: &str, ids: &[i64]) -> Result<(), StoreError> {
    diesel::update(
        outbox::table
            .filter(outbox::id.eq_any(ids))
            .filter(outbox::leased_by.eq(node)),
    )
    .set(outbox::leased_until.eq(None::<DateTime<Utc>>))
    .execute(conn)?;
    Ok(())
}
