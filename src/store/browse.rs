//! Read-only lists for the dev-mode demo backend (`/dev/listings`,
//! `/dev/bookings`): what a marketplace's own backend would answer its web
//! front from its own database.

use std::collections::BTreeMap;

use diesel::prelude::*;

use super::bookings::BookingRow;
use super::listings::{self, AuctionProgress, ListingRow};
use super::schema::{bookings, listings as listings_table, read_receipts};
use super::StoreError;
use crate::domain::BookingStatus;
use crate::ids::{BookingId, UserId};

/// The most rows one list answers.
pub const PAGE: i64 = 100;

/// Public listings and `viewer`'s own, newest first, each auction with its
/// progress from the bid log.
pub fn listings_for(
    conn: &mut PgConnection,
    viewer: &UserId,
) -> Result<Vec<(ListingRow, AuctionProgress)>, StoreError> {
    let rows: Vec<ListingRow> = listings_table::table
        .filter(
            listings_table::visibility
                .eq("public")
                .or(listings_table::seller_id.eq(viewer.as_str())),
        )
        .order((listings_table::created_at.desc(), listings_table::id))
        .limit(PAGE)
        .select(ListingRow::as_select())
        .load(conn)?;
    listings::with_progress(conn, rows)
}

/// Which bookings a list shows.
pub enum BookingFilter<'a> {
    /// Those where the user is the buyer or the seller.
    Party(&'a UserId),
    /// Every booking (admins).
    All,
}

/// Bookings with their listing's title, most recently changed first.
pub fn bookings_for(
    conn: &mut PgConnection,
    filter: BookingFilter<'_>,
    status: Option<BookingStatus>,
) -> Result<Vec<(BookingRow, String)>, StoreError> {
    let mut query = bookings::table
        .inner_join(listings_table::table)
        .select((BookingRow::as_select(), listings_table::title))
        .order((bookings::updated_at.desc(), bookings::id))
        .limit(PAGE)
        .into_boxed();
    if let BookingFilter::Party(user) = filter {
        query = query.filter(
            bookings::buyer_id
                .eq(user.as_str().to_owned())
                .or(bookings::seller_id.eq(user.as_str().to_owned())),
        );
    }
    if let Some(status) = status {
        query = query.filter(bookings::status.eq(status.as_str()));
    }
    Ok(query.load(conn)?)
}

/// One booking with its listing's title.
pub fn booking(
    conn: &mut PgConnection,
    id: &BookingId,
) -> Result<(BookingRow, String), StoreError> {
    Ok(bookings::table
        .inner_join(listings_table::table)
        .filter(bookings::id.eq(id.as_str()))
        .select((BookingRow::as_select(), listings_table::title))
        .first(conn)?)
}

/// Each participant's last read message in a booking, by user id.
pub fn read_positions(
    conn: &mut PgConnection,
    id: &BookingId,
) -> Result<BTreeMap<String, i64>, StoreError> {
    let rows: Vec<(String, i64)> = read_receipts::table
        .filter(read_receipts::booking_id.eq(id.as_str()))
        .select((read_receipts::user_id, read_receipts::last_read_message_id))
        .load(conn)?;
    Ok(rows.into_iter().collect())
}
