//! Listings in Postgres.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::{auction_results, bids, listings};
use super::{Refusal, StoreError};
use crate::domain::{Auction, AuctionStatus, Availability, Listing, Visibility};
use crate::ids::{ListingId, UserId};
use crate::time::rfc3339;

/// A `listings` row.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = listings, check_for_backend(diesel::pg::Pg))]
pub struct ListingRow {
    pub id: String,
    pub seller_id: String,
    pub title: String,
    pub price: i64,
    pub currency: String,
    pub visibility: String,
    pub availability: String,
    pub version: i64,
    pub auction_starts_at: Option<DateTime<Utc>>,
    pub auction_ends_at: Option<DateTime<Utc>>,
    pub auction_start_price: Option<i64>,
    pub auction_min_increment: Option<i64>,
    pub auction_reserve_price: Option<i64>,
    pub auction_extend_window_secs: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What the marketplace backend says a listing is.
#[derive(Debug, Clone, PartialEq)]
pub struct ListingInput {
    pub seller_id: UserId,
    pub title: String,
    pub price: i64,
    pub currency: String,
    pub visibility: Visibility,
    pub availability: Availability,
    pub auction: Option<AuctionSettings>,
}

/// An auction's fixed settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AuctionSettings {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub start_price: i64,
    pub min_increment: i64,
    pub reserve_price: Option<i64>,
    pub extend_window_secs: i32,
}

/// The live part of an auction, from its bids.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuctionProgress {
    pub current_amount: Option<i64>,
    pub leader_id: Option<String>,
    pub bid_count: i64,
    pub version: i64,
    pub closed: bool,
}

impl ListingRow {
    pub fn listing_id(&self) -> ListingId {
        ListingId::from_db(self.id.clone())
    }

    pub fn seller(&self) -> UserId {
        UserId::from_db(self.seller_id.clone())
    }

    pub fn visibility(&self) -> Visibility {
        self.visibility.parse().unwrap_or(Visibility::Private)
    }

    pub fn availability(&self) -> Availability {
        self.availability.parse().unwrap_or(Availability::Withdrawn)
    }

    pub fn is_auction(&self) -> bool {
        self.auction_ends_at.is_some()
    }

    /// The contract's shape, with every field (the reserve price too).
    pub fn to_listing(&self, progress: &AuctionProgress, now: DateTime<Utc>) -> Listing {
        let auction = match (self.auction_starts_at, self.auction_ends_at) {
            (Some(starts_at), Some(ends_at)) => Some(Auction {
                starts_at: rfc3339(starts_at),
                ends_at: rfc3339(ends_at),
                start_price: self.auction_start_price.unwrap_or(0),
                min_increment: self.auction_min_increment.unwrap_or(1),
                reserve_price: self.auction_reserve_price,
                extend_window_secs: self.auction_extend_window_secs.unwrap_or(0),
                status: if progress.closed || now >= ends_at {
                    AuctionStatus::Closed
                } else if now < starts_at {
                    AuctionStatus::Scheduled
                } else {
                    AuctionStatus::Open
                },
                current_amount: progress.current_amount,
                leader_id: progress.leader_id.clone().map(UserId::from_db),
                bid_count: progress.bid_count,
                version: progress.version,
            }),
            _ => None,
        };
        Listing {
            id: self.listing_id(),
            seller_id: self.seller(),
            title: self.title.clone(),
            price: self.price,
            currency: self.currency.clone(),
            visibility: self.visibility(),
            availability: self.availability(),
            auction,
            version: self.version,
            updated_at: rfc3339(self.updated_at),
        }
    }
}

/// A listing row, or `NotFound`.
pub fn get(conn: &mut PgConnection, id: &ListingId) -> Result<ListingRow, StoreError> {
    Ok(listings::table
        .find(id.as_str())
        .select(ListingRow::as_select())
        .first(conn)?)
}

/// A listing with its auction progress read from the bid log.
pub fn get_with_progress(
    conn: &mut PgConnection,
    id: &ListingId,
) -> Result<(ListingRow, AuctionProgress), StoreError> {
    let row = get(conn, id)?;
    let progress = if row.is_auction() {
        progress(conn, id)?
    } else {
        AuctionProgress::default()
    };
    Ok((row, progress))
}

/// Rows with each auction's progress from the bid log.
pub fn with_progress(
    conn: &mut PgConnection,
    rows: Vec<ListingRow>,
) -> Result<Vec<(ListingRow, AuctionProgress)>, StoreError> {
    rows.into_iter()
        .map(|row| {
            if row.is_auction() {
                get_with_progress(conn, &row.listing_id())
            } else {
                Ok((row, AuctionProgress::default()))
            }
        })
        .collect()
}

fn progress(conn: &mut PgConnection, id: &ListingId) -> Result<AuctionProgress, StoreError> {
    let top: Option<(i64, String, i64)> = bids::table
        .filter(bids::listing_id.eq(id.as_str()))
        .order(bids::auction_version.desc())
        .select((bids::amount, bids::bidder_id, bids::auction_version))
        .first(conn)
        .optional()?;
    let bid_count: i64 = bids::table
        .filter(bids::listing_id.eq(id.as_str()))
        .count()
        .get_result(conn)?;
    let closed = auction_results::table
        .find(id.as_str())
        .count()
        .get_result::<i64>(conn)?
        > 0;
    Ok(AuctionProgress {
        current_amount: top.as_ref().map(|t| t.0),
        leader_id: top.as_ref().map(|t| t.1.clone()),
        bid_count,
        version: top.map_or(0, |t| t.2),
        closed,
    })
}

/// The outcome of an upsert: the row before (none when created) and after.
#[derive(Debug)]
pub struct Upserted {
    pub before: Option<ListingRow>,
    pub after: ListingRow,
}

impl Upserted {
    /// Whether anything changed (a create counts).
    pub fn changed(&self) -> bool {
        self.before.as_ref() != Some(&self.after)
    }
}

/// Creates or updates a listing; the version moves on every change.
pub fn upsert(
    conn: &mut PgConnection,
    id: &ListingId,
    input: &ListingInput,
) -> Result<Upserted, StoreError> {
    conn.transaction(|conn| {
        let auction = input.auction.as_ref();
        let values = (
            listings::seller_id.eq(input.seller_id.as_str()),
            listings::title.eq(&input.title),
            listings::price.eq(input.price),
            listings::currency.eq(&input.currency),
            listings::visibility.eq(input.visibility.as_str()),
            listings::availability.eq(input.availability.as_str()),
            listings::auction_starts_at.eq(auction.map(|a| a.starts_at)),
            listings::auction_ends_at.eq(auction.map(|a| a.ends_at)),
            listings::auction_start_price.eq(auction.map(|a| a.start_price)),
            listings::auction_min_increment.eq(auction.map(|a| a.min_increment)),
            listings::auction_reserve_price.eq(auction.and_then(|a| a.reserve_price)),
            listings::auction_extend_window_secs.eq(auction.map(|a| a.extend_window_secs)),
        );
        let created = diesel::insert_into(listings::table)
            .values((listings::id.eq(id.as_str()), values))
            .on_conflict_do_nothing()
            .returning(ListingRow::as_returning())
            .get_result(conn)
            .optional()?;
        if let Some(after) = created {
            return Ok(Upserted {
                before: None,
                after,
            });
        }
        let before: ListingRow = listings::table
            .find(id.as_str())
            .select(ListingRow::as_select())
            .for_update()
            .first(conn)?;
        if before.seller_id != input.seller_id.as_str() {
            return Err(Refusal::SellerChanged.into());
        }
        let same = before.title == input.title
            && before.price == input.price
            && before.currency == input.currency
            && before.visibility == input.visibility.as_str()
            && before.availability == input.availability.as_str()
            && before.auction_starts_at == auction.map(|a| a.starts_at)
            && before.auction_ends_at == auction.map(|a| a.ends_at)
            && before.auction_start_price == auction.map(|a| a.start_price)
            && before.auction_min_increment == auction.map(|a| a.min_increment)
            && before.auction_reserve_price == auction.and_then(|a| a.reserve_price)
            && before.auction_extend_window_secs == auction.map(|a| a.extend_window_secs);
        if same {
            return Ok(Upserted {
                after: before.clone(),
                before: Some(before),
            });
        }
        let after = diesel::update(listings::table.find(id.as_str()))
            .set((
                values,
                listings::version.eq(listings::version + 1),
                listings::updated_at.eq(diesel::dsl::now),
            ))
            .returning(ListingRow::as_returning())
            .get_result(conn)?;
        Ok(Upserted {
            before: Some(before),
            after,
        })
    })
}

/// Sets a listing's availability (moving its version) when it is one of
/// `from`; returns the new row when it changed.
pub fn set_availability(
    conn: &mut PgConnection,
    id: &str,
    from: &[Availability],
    to: Availability,
) -> Result<Option<ListingRow>, StoreError> {
    let from: Vec<&str> = from.iter().map(|a| a.as_str()).collect();
    Ok(diesel::update(
        listings::table
            .filter(listings::id.eq(id))
            .filter(listings::availability.eq_any(from)),
    )
    .set((
        listings::availability.eq(to.as_str()),
        listings::version.eq(listings::version + 1),
        listings::updated_at.eq(diesel::dsl::now),
    ))
    .returning(ListingRow::as_returning())
    .get_result(conn)
    .optional()?)
}

/// Locks a listing's row until the transaction ends.
pub fn lock(conn: &mut PgConnection, id: &str) -> Result<(), StoreError> {
    listings::table
        .find(id)
        .select(listings::id)
        .for_update()
        .first::<String>(conn)?;
    Ok(())
}
