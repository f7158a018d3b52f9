//! Bookings in Postgres: reservations and the §7 moves, each in one
//! transaction that locks the rows it changes.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::listings::{self, ListingRow};
use super::schema::bookings;
use super::{audit, Refusal, StoreError};
use crate::domain::booking::{check_move, MoveError};
use crate::domain::{Availability, Booking, BookingStatus, Mover, Visibility};
use crate::ids::{BookingId, ListingId, UserId};
use crate::time::rfc3339;

/// A `bookings` row.
#[derive(Debug, Clone, PartialEq, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = bookings, check_for_backend(diesel::pg::Pg))]
pub struct BookingRow {
    pub id: String,
    pub listing_id: String,
    pub buyer_id: String,
    pub seller_id: String,
    pub status: String,
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The order bookings were made in: a listing's latest booking holds it.
    pub seq: i64,
}

impl BookingRow {
    /// Whether `user` is the booking's buyer or seller.
    pub fn is_party(&self, user: &UserId) -> bool {
        self.to_booking().mover(user).is_some()
    }

    pub fn status(&self) -> BookingStatus {
        self.status.parse().unwrap_or(BookingStatus::Cancelled)
    }

    /// The contract's shape.
    pub fn to_booking(&self) -> Booking {
        Booking {
            id: BookingId::from_db(self.id.clone()),
            listing_id: ListingId::from_db(self.listing_id.clone()),
            buyer_id: UserId::from_db(self.buyer_id.clone()),
            seller_id: UserId::from_db(self.seller_id.clone()),
            status: self.status(),
            created_at: rfc3339(self.created_at),
            updated_at: rfc3339(self.updated_at),
        }
    }
}

/// A booking row, or `NotFound`.
/// What a caller who is neither the buyer, the seller nor an admin is told.
pub fn not_a_party() -> StoreError {
    Refusal::NotAParty.into()
}

pub fn get(conn: &mut PgConnection, id: &BookingId) -> Result<BookingRow, StoreError> {
    Ok(bookings::table
        .find(id.as_str())
        .select(BookingRow::as_select())
        .first(conn)?)
}

/// Whether `buyer` has any booking on `listing` (private listings admit them).
pub fn buyer_has_booking(
    conn: &mut PgConnection,
    listing: &str,
    buyer: &UserId,
) -> Result<bool, StoreError> {
    let count: i64 = bookings::table
        .filter(bookings::listing_id.eq(listing))
        .filter(bookings::buyer_id.eq(buyer.as_str()))
        .count()
        .get_result(conn)?;
    Ok(count > 0)
}

/// Whether `user` may watch a listing (§4): anyone a public one; its
/// seller, admins and buyers with a booking on it a private one. The
/// listing's availability does not matter: a withdrawn listing keeps its
/// watchers, only its visibility decides.
pub fn may_watch(
    conn: &mut PgConnection,
    id: &ListingId,
    user: &UserId,
    admin: bool,
) -> Result<bool, StoreError> {
    let row = listings::get(conn, id)?;
    Ok(row.visibility() == Visibility::Public
        || admin
        || row.seller_id == user.as_str()
        || buyer_has_booking(conn, &row.id, user)?)
}

/// Of `users` (none of them admins), those who may watch a listing (see
/// [`may_watch`]), in one query whatever their number.
pub fn watchers_among(
    conn: &mut PgConnection,
    id: &ListingId,
    users: Vec<UserId>,
) -> Result<HashSet<UserId>, StoreError> {
    let row = listings::get(conn, id)?;
    if row.visibility() == Visibility::Public {
        return Ok(users.into_iter().collect());
    }
    let names: Vec<&str> = users.iter().map(UserId::as_str).collect();
    let buyers: HashSet<String> = bookings::table
        .filter(bookings::listing_id.eq(&row.id))
        .filter(bookings::buyer_id.eq_any(&names))
        .select(bookings::buyer_id)
        .distinct()
        .load::<String>(conn)?
        .into_iter()
        .collect();
    Ok(users
        .into_iter()
        .filter(|user| row.seller_id == user.as_str() || buyers.contains(user.as_str()))
        .collect())
}

/// What a reservation found.
#[derive(Debug)]
pub enum Reservation {
    Made(Box<Reserved>),
    /// Someone else has it; the listing is at `version`.
    Taken {
        availability: String,
        version: i64,
    },
}

/// A reservation's outcome.
#[derive(Debug)]
pub struct Reserved {
    pub booking: BookingRow,
    /// The listing after it became `reserved`; none for a repeated key.
    pub listing: Option<ListingRow>,
}

/// Reserves an available listing for `buyer`: exactly one of any number of
/// concurrent reservers wins, because the listing row is updated only while
/// it is `available`. The same key from the same buyer returns the same booking.
pub fn reserve(
    conn: &mut PgConnection,
    listing_id: &ListingId,
    buyer: &UserId,
    key: &str,
    new_id: &BookingId,
) -> Result<Reservation, StoreError> {
    let attempt = conn.transaction(|conn| {
        if let Some(existing) = by_key(conn, buyer, key)? {
            return repeat(existing, listing_id);
        }
        let listing = listings::get(conn, listing_id)?;
        if listing.seller_id == buyer.as_str() {
            return Err(Refusal::SellerOwnListing.into());
        }
        if listing.visibility() == Visibility::Private
            && !buyer_has_booking(conn, &listing.id, buyer)?
        {
            return Err(Refusal::ListingPrivate.into());
        }
        if listing.is_auction() {
            return Err(Refusal::AuctionNotReservable.into());
        }
        let Some(reserved) = listings::set_availability(
            conn,
            &listing.id,
            &[Availability::Available],
            Availability::Reserved,
        )?
        else {
            // Read again: a reservation that raced this one has committed.
            let now = listings::get(conn, listing_id)?;
            return Ok(Reservation::Taken {
                availability: now.availability,
                version: now.version,
            });
        };
        let booking = diesel::insert_into(bookings::table)
            .values((
                bookings::id.eq(new_id.as_str()),
                bookings::listing_id.eq(&listing.id),
                bookings::buyer_id.eq(buyer.as_str()),
                bookings::seller_id.eq(&listing.seller_id),
                bookings::status.eq(BookingStatus::Requested.as_str()),
                bookings::idempotency_key.eq(key),
            ))
            .returning(BookingRow::as_returning())
            .get_result(conn)?;
        Ok(Reservation::Made(Box::new(Reserved {
            booking,
            listing: Some(reserved),
        })))
    });
    match attempt {
        Ok(Reservation::Made(reserved)) => Ok(Reservation::Made(reserved)),
        // A request with the same key may have raced this one and won: its
        // booking stands.
        other => match by_key(conn, buyer, key)? {
            Some(existing) => repeat(existing, listing_id),
            None => other,
        },
    }
}

fn by_key(
    conn: &mut PgConnection,
    buyer: &UserId,
    key: &str,
) -> Result<Option<BookingRow>, StoreError> {
    Ok(bookings::table
        .filter(bookings::buyer_id.eq(buyer.as_str()))
        .filter(bookings::idempotency_key.eq(key))
        .select(BookingRow::as_select())
        .first(conn)
        .optional()?)
}

fn repeat(existing: BookingRow, listing_id: &ListingId) -> Result<Reservation, StoreError> {
    if existing.listing_id != listing_id.as_str() {
        return Err(Refusal::KeyReused.into());
    }
    Ok(Reservation::Made(Box::new(Reserved {
        booking: existing,
        listing: None,
    })))
}

/// A move's outcome.
#[derive(Debug)]
pub struct Moved {
    pub previous: BookingStatus,
    pub booking: BookingRow,
    /// The listing, when its availability followed the move.
    pub listing: Option<ListingRow>,
}

/// Moves a booking to `to` if §7 lets `mover` (decided from the locked row,
/// in the move's transaction, so an audit entry it writes stands or falls
/// with the move) do it; the listing's availability follows, and an audit
/// entry naming `by` is written, in the same transaction.
pub fn transition<F>(
    conn: &mut PgConnection,
    id: &BookingId,
    to: BookingStatus,
    by: &str,
    mover: F,
) -> Result<Moved, StoreError>
where
    F: FnOnce(&mut PgConnection, &BookingRow) -> Result<Option<Mover>, StoreError>,
{
    conn.transaction(|conn| {
        let row: BookingRow = bookings::table
            .find(id.as_str())
            .select(BookingRow::as_select())
            .for_update()
            .first(conn)?;
        let who = mover(conn, &row)?.ok_or(Refusal::NotAParticipant)?;
        let previous = row.status();
        check_move(previous, to, who).map_err(|err| match err {
            MoveError::NotAMove => Refusal::InvalidTransition { from: previous, to },
            MoveError::NotYours => Refusal::NotYourMove { from: previous, to },
        })?;
        let booking = diesel::update(bookings::table.find(id.as_str()))
            .set((
                bookings::status.eq(to.as_str()),
                bookings::updated_at.eq(diesel::dsl::now),
            ))
            .returning(BookingRow::as_returning())
            .get_result(conn)?;
        // Declined and cancelled free a reserved listing, if this booking
        // holds it; completed sells it.
        let listing = match to.listing_availability() {
            Some(Availability::Available) if holds_listing(conn, &row)? => {
                listings::set_availability(
                    conn,
                    &row.listing_id,
                    &[Availability::Reserved],
                    Availability::Available,
                )?
            }
            Some(Availability::Available) => None,
            Some(Availability::Sold) => listings::set_availability(
                conn,
                &row.listing_id,
                &[Availability::Available, Availability::Reserved],
                Availability::Sold,
            )?,
            _ => None,
        };
        audit::record(
            conn,
            &audit::Entry {
                actor_id: by,
                actor_role: who.as_str(),
                action: "booking:transition",
                subject: &format!("booking:{id}"),
                details: serde_json::json!({ "from": previous, "to": to }),
            },
        )?;
        Ok(Moved {
            previous,
            booking,
            listing,
        })
    })
}

/// Whether a booking holds its listing: no booking on the listing was made
/// after it. The listing row is locked first, so a reservation committing
/// meanwhile is either seen here or waits for this transaction.
fn holds_listing(conn: &mut PgConnection, row: &BookingRow) -> Result<bool, StoreError> {
    listings::lock(conn, &row.listing_id)?;
    let later: i64 = bookings::table
        .filter(bookings::listing_id.eq(&row.listing_id))
        .filter(bookings::seq.gt(row.seq))
        .count()
        .get_result(conn)?;
    Ok(later == 0)
}
