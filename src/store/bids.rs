//! Bids and auction results in Postgres.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::json;

use super::bookings::BookingRow;
use super::listings::{self, ListingRow};
use super::outbox::{self, NewNotice};
use super::schema::{auction_results, bids, bookings, listings as listings_table};
use super::{audit, Refusal, StoreError};
use crate::domain::{Availability, BookingStatus, Visibility};
use crate::ids::{BookingId, ListingId};

/// A `bids` row.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = bids, check_for_backend(diesel::pg::Pg))]
pub struct BidRow {
    pub id: i64,
    pub listing_id: String,
    pub bidder_id: String,
    pub amount: i64,
    pub auction_version: i64,
    pub idempotency_key: Option<String>,
    pub ends_at: DateTime<Utc>,
    pub placed_at: DateTime<Utc>,
}

/// An accepted bid to append.
#[derive(Debug, Clone, PartialEq, Insertable)]
#[diesel(table_name = bids)]
pub struct NewBid {
    pub listing_id: String,
    pub bidder_id: String,
    pub amount: i64,
    pub auction_version: i64,
    pub idempotency_key: Option<String>,
    pub ends_at: DateTime<Utc>,
}

/// A bid to store, and whether its bidder may see the listing when it is
/// private (`listing:watch`'s rule, checked before the bid was decided).
#[derive(Debug, Clone, PartialEq)]
pub struct ToStore {
    pub bid: NewBid,
    pub may_see_private: bool,
}

/// What appending a bid did.
#[derive(Debug, Clone, PartialEq)]
pub enum Appended {
    Stored(BidRow),
    /// A bid with this version is already stored.
    Duplicate,
    /// The auction has a result: a bid stored now would not be in it.
    Closed,
    /// The listing is no longer an auction, or not available.
    Unavailable,
    /// The listing became private after the bid was decided, and the
    /// bidder was not vouched for.
    Private,
}

/// Bids are appended in batches. Each batch locks its listings (`FOR NO
/// KEY UPDATE`, which the closer's `FOR UPDATE` waits for) and stores no
/// bid for an auction that has a result, so a bid is either committed
/// before the result is computed, and counted, or refused.
pub struct Bids;

impl super::writer::Batch for Bids {
    type Row = ToStore;
    type Written = Appended;

    fn write(conn: &mut PgConnection, rows: &[ToStore]) -> Result<Vec<Appended>, StoreError> {
        // Runs inside the writer's transaction (`Writer` begins and commits it).
        let mut ids: Vec<&str> = rows.iter().map(|row| row.bid.listing_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        // In id order, so two batches never wait on each other in turn.
        let locked: Vec<ListingRow> = listings_table::table
            .filter(listings_table::id.eq_any(&ids))
            .order(listings_table::id)
            .select(ListingRow::as_select())
            .for_no_key_update()
            .load(conn)?;
        // A statement of its own, after the locks: it sees a result the
        // closer committed while this batch waited.
        let closed: HashSet<String> = auction_results::table
            .filter(auction_results::listing_id.eq_any(&ids))
            .select(auction_results::listing_id)
            .load::<String>(conn)?
            .into_iter()
            .collect();
        // Open auctions, and whether each is private now.
        let open: HashMap<&str, bool> = locked
            .iter()
            .filter(|row| row.is_auction() && row.availability() == Availability::Available)
            .map(|row| (row.id.as_str(), row.visibility() == Visibility::Private))
            .collect();
        let verdict = |row: &ToStore| match open.get(row.bid.listing_id.as_str()) {
            _ if closed.contains(&row.bid.listing_id) => Some(Appended::Closed),
            None => Some(Appended::Unavailable),
            Some(true) if !row.may_see_private => Some(Appended::Private),
            Some(_) => None,
        };
        let storable: Vec<&NewBid> = rows
            .iter()
            .filter(|row| verdict(row).is_none())
            .map(|row| &row.bid)
            .collect();
        let stored: Vec<BidRow> = if storable.is_empty() {
            Vec::new()
        } else {
            diesel::insert_into(bids::table)
                .values(storable)
                .on_conflict_do_nothing()
                .returning(BidRow::as_returning())
                .get_results(conn)?
        };
        // Anti-sniping moves the end: Postgres keeps the latest.
        let mut ends: HashMap<&str, DateTime<Utc>> = HashMap::new();
        for bid in &stored {
            let end = ends.entry(bid.listing_id.as_str()).or_insert(bid.ends_at);
            *end = (*end).max(bid.ends_at);
        }
        for (listing, end) in ends {
            diesel::update(
                listings_table::table
                    .filter(listings_table::id.eq(listing))
                    .filter(listings_table::auction_ends_at.lt(end)),
            )
            .set(listings_table::auction_ends_at.eq(end))
            .execute(conn)?;
        }
        let mut by_version: HashMap<(String, i64), BidRow> = stored
            .into_iter()
            .map(|bid| ((bid.listing_id.clone(), bid.auction_version), bid))
            .collect();
        Ok(rows
            .iter()
            .map(|row| {
                verdict(row).unwrap_or_else(|| {
                    by_version
                        .remove(&(row.bid.listing_id.clone(), row.bid.auction_version))
                        .map_or(Appended::Duplicate, Appended::Stored)
                })
            })
            .collect())
    }
}

/// Whether the bid with `version` is stored.
pub fn stored(conn: &mut PgConnection, listing: &str, version: i64) -> Result<bool, StoreError> {
    let count: i64 = bids::table
        .filter(bids::listing_id.eq(listing))
        .filter(bids::auction_version.eq(version))
        .count()
        .get_result(conn)?;
    Ok(count > 0)
}

/// The highest stored version of a listing's auction (0 without bids).
pub fn latest_version(conn: &mut PgConnection, listing: &str) -> Result<i64, StoreError> {
    let version: Option<i64> = bids::table
        .filter(bids::listing_id.eq(listing))
        .select(diesel::dsl::max(bids::auction_version))
        .first(conn)?;
    Ok(version.unwrap_or(0))
}

/// What a rebuild of the live state reads: the listing, its bids in version
/// order, and whether it has closed.
pub fn for_rebuild(
    conn: &mut PgConnection,
    listing: &ListingId,
) -> Result<(ListingRow, Vec<BidRow>, bool), StoreError> {
    let row = listings::get(conn, listing)?;
    let all = bids::table
        .filter(bids::listing_id.eq(listing.as_str()))
        .order(bids::auction_version.asc())
        .select(BidRow::as_select())
        .load(conn)?;
    let closed = auction_results::table
        .find(listing.as_str())
        .count()
        .get_result::<i64>(conn)?
        > 0;
    Ok((row, all, closed))
}

/// Auctions past their end (as extended) that have no result yet.
pub fn due(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<String>, StoreError> {
    Ok(listings_table::table
        .filter(listings_table::auction_ends_at.le(now))
        .filter(diesel::dsl::not(diesel::dsl::exists(
            auction_results::table.filter(auction_results::listing_id.eq(listings_table::id)),
        )))
        .select(listings_table::id)
        .limit(limit)
        .load(conn)?)
}

/// A closed auction.
#[derive(Debug)]
pub struct Closed {
    pub listing: ListingRow,
    pub winner: Option<String>,
    pub amount: Option<i64>,
    pub reserve_met: bool,
    pub booking: Option<BookingRow>,
    /// The listing after it became reserved for the winner.
    pub reserved: Option<ListingRow>,
}

/// Closes an auction: the result, the winner's confirmed booking, an audit
/// entry and the notices that announce them (`notices` makes them, into the
/// outbox) in one transaction. The result's primary key makes it happen
/// once: a node that loses the race gets `None`.
pub fn close(
    conn: &mut PgConnection,
    listing_id: &str,
    node: &str,
    new_booking: &BookingId,
    notices: impl FnOnce(&Closed) -> Vec<NewNotice>,
) -> Result<Option<Closed>, StoreError> {
    conn.transaction(|conn| {
        // First the listing, `FOR UPDATE`: this waits for every bid batch
        // writing to it (`FOR NO KEY UPDATE`), and batches after this one
        // see the result and store nothing. So the bids read below are
        // every bid that will ever be stored, and every one acked `ok`.
        let listing: ListingRow = listings_table::table
            .find(listing_id)
            .select(ListingRow::as_select())
            .for_update()
            .first(conn)?;
        let inserted = diesel::insert_into(auction_results::table)
            .values((
                auction_results::listing_id.eq(listing_id),
                auction_results::reserve_met.eq(false),
                auction_results::bid_count.eq(0),
                auction_results::closed_by.eq(node),
            ))
            .on_conflict_do_nothing()
            .execute(conn)?;
        if inserted == 0 {
            return Ok(None);
        }
        if !listing.is_auction() {
            return Err(Refusal::NotAnAuction.into());
        }
        let top: Option<BidRow> = bids::table
            .filter(bids::listing_id.eq(listing_id))
            .order(bids::auction_version.desc())
            .select(BidRow::as_select())
            .first(conn)
            .optional()?;
        let bid_count: i64 = bids::table
            .filter(bids::listing_id.eq(listing_id))
            .count()
            .get_result(conn)?;
        let reserve_met = top.as_ref().is_some_and(|bid| {
            listing
                .auction_reserve_price
                .is_none_or(|reserve| bid.amount >= reserve)
        });
        // A listing withdrawn (or sold or reserved otherwise) before its
        // end closes without a winner: there is nothing left to award.
        let awardable = listing.availability() == Availability::Available;
        let winner = top
            .as_ref()
            .filter(|_| reserve_met && awardable)
            .map(|b| b.bidder_id.clone());
        let (booking, reserved) = match &winner {
            Some(buyer) => {
                let booking = diesel::insert_into(bookings::table)
                    .values((
                        bookings::id.eq(new_booking.as_str()),
                        bookings::listing_id.eq(listing_id),
                        bookings::buyer_id.eq(buyer),
                        bookings::seller_id.eq(&listing.seller_id),
                        bookings::status.eq(BookingStatus::Confirmed.as_str()),
                    ))
                    .returning(BookingRow::as_returning())
                    .get_result(conn)?;
                let reserved = listings::set_availability(
                    conn,
                    listing_id,
                    &[Availability::Available],
                    Availability::Reserved,
                )?;
                (Some(booking), reserved)
            }
            None => (None, None),
        };
        let amount = top.as_ref().map(|b| b.amount);
        diesel::update(auction_results::table.find(listing_id))
            .set((
                auction_results::winner_id.eq(&winner),
                auction_results::amount.eq(amount),
                auction_results::reserve_met.eq(reserve_met),
                auction_results::booking_id.eq(booking.as_ref().map(|b| b.id.clone())),
                auction_results::bid_count.eq(bid_count),
            ))
            .execute(conn)?;
        audit::record(
            conn,
            &audit::Entry {
                actor_id: node,
                actor_role: "system",
                action: "auction:closed",
                subject: &format!("listing:{listing_id}"),
                details: json!({
                    "winnerId": winner,
                    "amount": amount,
                    "reserveMet": reserve_met,
                    "bidCount": bid_count,
                    "version": top.as_ref().map(|b| b.auction_version),
                    "bookingId": booking.as_ref().map(|b| b.id.clone()),
                }),
            },
        )?;
        let closed = Closed {
            listing,
            winner,
            amount,
            reserve_met,
            booking,
            reserved,
        };
        outbox::add(conn, &notices(&closed))?;
        Ok(Some(closed))
    })
}
