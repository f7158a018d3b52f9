//! The demo marketplace `souk seed-demo` writes for `scripts/dev`: a few
//! listings of seller `sam`, one auction ending minutes from now, bookings of
//! buyers `ana` and `ben` (one awaiting the seller, one with a chat, one in
//! dispute for admin `ada`). Seeding again puts every demo row back as it
//! was and moves the auction's end, so each `scripts/dev` starts alive.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;

use super::listings::{self, AuctionSettings, ListingInput};
use super::messages::{self, NewMessage};
use super::schema::{auction_results, bids, bookings, messages as messages_table, read_receipts};
use super::StoreError;
use crate::domain::{Availability, BookingStatus, Visibility};
use crate::ids::{ListingId, UserId};

/// The demo users, as `(id, role)`: the web front's user switcher offers these.
pub const USERS: [(&str, &str); 4] = [
    ("ana", "buyer"),
    ("ben", "buyer"),
    ("sam", "seller"),
    ("ada", "admin"),
];

/// The demo auction, whose live state in Redis must be dropped after seeding.
pub const AUCTION: &str = "demo-camera";

/// How long after seeding the demo auction ends.
pub const AUCTION_RUNS_FOR: Duration = Duration::minutes(5);

const SELLER: &str = "sam";

struct DemoListing {
    id: &'static str,
    title: &'static str,
    price: i64,
    availability: Availability,
}

const LISTINGS: [DemoListing; 5] = [
    DemoListing {
        id: "demo-bike",
        title: "Road bike, 56 cm, Shimano 105",
        price: 45_000,
        availability: Availability::Available,
    },
    DemoListing {
        id: "demo-lamp",
        title: "Brass desk lamp",
        price: 3_500,
        availability: Availability::Available,
    },
    DemoListing {
        id: "demo-sofa",
        title: "Velvet sofa, three seats",
        price: 62_000,
        availability: Availability::Reserved,
    },
    DemoListing {
        id: "demo-tent",
        title: "Two-person tent",
        price: 12_000,
        availability: Availability::Reserved,
    },
    DemoListing {
        id: "demo-guitar",
        title: "Acoustic guitar with case",
        price: 30_000,
        availability: Availability::Reserved,
    },
];

struct DemoBooking {
    id: &'static str,
    listing: &'static str,
    buyer: &'static str,
    status: BookingStatus,
    /// `(sender, body)`, oldest first.
    thread: &'static [(&'static str, &'static str)],
}

const BOOKINGS: [DemoBooking; 3] = [
    DemoBooking {
        id: "demo-bk-sofa",
        listing: "demo-sofa",
        buyer: "ana",
        status: BookingStatus::Requested,
        thread: &[("ana", "Hi! Could I pick the sofa up on Saturday morning?")],
    },
    DemoBooking {
        id: "demo-bk-tent",
        listing: "demo-tent",
        buyer: "ben",
        status: BookingStatus::Confirmed,
        thread: &[
            ("ben", "Hello, is the tent still waterproof?"),
            (
                "sam",
                "Yes, re-proofed last spring. Pegs and footprint included.",
            ),
            ("ben", "Great, I'll take it."),
            ("sam", "Confirmed. I'm home after 6 pm on weekdays."),
        ],
    },
    DemoBooking {
        id: "demo-bk-guitar",
        listing: "demo-guitar",
        buyer: "ana",
        status: BookingStatus::Disputed,
        thread: &[
            ("ana", "The guitar arrived with a crack in the top."),
            (
                "sam",
                "It was fine when I packed it; the carrier must have dropped it.",
            ),
            (
                "ana",
                "I've opened a dispute so support can look at the photos.",
            ),
        ],
    },
];

/// Connects to `url` and seeds it as of now.
pub fn seed_url(url: &str) -> Result<(), StoreError> {
    let mut conn =
        PgConnection::establish(url).map_err(|err| StoreError::unavailable_by("postgres", err))?;
    seed(&mut conn, Utc::now())
}

/// Writes (or puts back) the demo marketplace; `now` sets the auction's times.
pub fn seed(conn: &mut PgConnection, now: DateTime<Utc>) -> Result<(), StoreError> {
    conn.transaction(|conn| {
        let demo_listings: Vec<&str> = LISTINGS
            .iter()
            .map(|l| l.id)
            .chain(std::iter::once(AUCTION))
            .collect();
        let demo_bookings: Vec<&str> = BOOKINGS.iter().map(|b| b.id).collect();
        forget_activity(conn, &demo_listings, &demo_bookings)?;
        for listing in &LISTINGS {
            upsert_listing(
                conn,
                listing.id,
                listing.title,
                listing.price,
                listing.availability,
                None,
            )?;
        }
        upsert_listing(
            conn,
            AUCTION,
            "Leica M6 film camera, 1986",
            80_000,
            Availability::Available,
            Some(AuctionSettings {
                starts_at: now - Duration::minutes(1),
                ends_at: now + AUCTION_RUNS_FOR,
                start_price: 80_000,
                min_increment: 2_500,
                reserve_price: Some(95_000),
                extend_window_secs: 30,
            }),
        )?;
        for booking in &BOOKINGS {
            upsert_booking(conn, booking)?;
        }
        Ok(())
    })
}

/// Drops what demo users did since the last seeding: bids on the demo
/// listings, the auction's result, and bookings other than the seeded ones.
fn forget_activity(
    conn: &mut PgConnection,
    demo_listings: &[&str],
    demo_bookings: &[&str],
) -> Result<(), StoreError> {
    diesel::delete(
        auction_results::table.filter(auction_results::listing_id.eq_any(demo_listings)),
    )
    .execute(conn)?;
    diesel::delete(bids::table.filter(bids::listing_id.eq_any(demo_listings))).execute(conn)?;
    let stale: Vec<String> = bookings::table
        .filter(bookings::listing_id.eq_any(demo_listings))
        .filter(bookings::id.ne_all(demo_bookings))
        .select(bookings::id)
        .load(conn)?;
    diesel::delete(read_receipts::table.filter(read_receipts::booking_id.eq_any(&stale)))
        .execute(conn)?;
    diesel::delete(messages_table::table.filter(messages_table::booking_id.eq_any(&stale)))
        .execute(conn)?;
    diesel::delete(bookings::table.filter(bookings::id.eq_any(&stale))).execute(conn)?;
    Ok(())
}

fn upsert_listing(
    conn: &mut PgConnection,
    id: &str,
    title: &str,
    price: i64,
    availability: Availability,
    auction: Option<AuctionSettings>,
) -> Result<(), StoreError> {
    let id = ListingId::from_db(id.to_owned());
    let input = ListingInput {
        seller_id: UserId::from_db(SELLER.to_owned()),
        title: title.to_owned(),
        price,
        currency: "EUR".to_owned(),
        visibility: Visibility::Public,
        availability,
        auction,
    };
    listings::upsert(conn, &id, &input)?;
    Ok(())
}

fn upsert_booking(conn: &mut PgConnection, booking: &DemoBooking) -> Result<(), StoreError> {
    diesel::insert_into(bookings::table)
        .values((
            bookings::id.eq(booking.id),
            bookings::listing_id.eq(booking.listing),
            bookings::buyer_id.eq(booking.buyer),
            bookings::seller_id.eq(SELLER),
            bookings::status.eq(booking.status.as_str()),
        ))
        .on_conflict(bookings::id)
        .do_update()
        .set((
            bookings::status.eq(booking.status.as_str()),
            bookings::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)?;
    let thread: Vec<NewMessage> = booking
        .thread
        .iter()
        .enumerate()
        .map(|(index, (sender, body))| NewMessage {
            booking_id: booking.id.to_owned(),
            sender_id: (*sender).to_owned(),
            body: (*body).to_owned(),
            // Fixed per booking and line, so seeding again writes nothing new.
            client_msg_id: format!("{}-{index}", booking.id),
        })
        .collect();
    messages::insert_batch(conn, &thread)?;
    Ok(())
}
