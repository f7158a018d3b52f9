//! Closes auctions whose end has come. Every node scans; the result's
//! primary key in Postgres lets exactly one of them close each auction, and
//! a node that was down at the end closes it when it is back.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;

use super::place::rebuild;
use crate::broker::{outbox, Auctions, CloseCheck};
use crate::error::Failure;
use crate::ids::{BookingId, ListingId, UserId};
use crate::protocol::events::ServerEvent;
use crate::rooms::RoomKey;
use crate::state::{random_id, AppState};
use crate::store::bids::{self, Closed};
use crate::store::outbox::NewNotice;

/// Auctions one scan closes at most.
const SCAN_BATCH: i64 = 100;
/// How long closing waits for accepted bids to be committed before it
/// closes (and refuses those not stored yet).
const SETTLE_WAIT: Duration = Duration::from_secs(2);

/// The node's auction closer.
pub struct AuctionCloser {
    app: Arc<AppState>,
    scanning: bool,
}

impl AuctionCloser {
    pub fn new(app: Arc<AppState>) -> Self {
        AuctionCloser {
            app,
            scanning: false,
        }
    }
}

impl Actor for AuctionCloser {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.app.settings.auction_scan, |closer, ctx| {
            if closer.scanning {
                return;
            }
            closer.scanning = true;
            let app = closer.app.clone();
            ctx.spawn(
                async move {
                    if let Err(err) = scan(&app).await {
                        log::warn!("auction scan failed: {err}");
                    }
                }
                .into_actor(closer)
                .map(|(), closer, _| closer.scanning = false),
            );
        });
    }
}

async fn scan(app: &AppState) -> Result<(), Failure> {
    let now = Utc::now();
    let due = app
        .db
        .run(move |conn| bids::due(conn, now, SCAN_BATCH))
        .await?;
    for listing in due {
        if let Some(id) = ListingId::parse(&listing) {
            if let Err(err) = close(app, &id).await {
                log::warn!("closing auction {id} failed: {err}");
            }
        }
    }
    Ok(())
}

/// Closes one auction if its end (as extended) has come.
pub async fn close(app: &AppState, listing: &ListingId) -> Result<(), Failure> {
    let now = Utc::now().timestamp_millis();
    let mut check = app.broker.begin_close(listing, now).await?;
    if check == CloseCheck::Missing {
        rebuild(app, listing).await?;
        check = app.broker.begin_close(listing, now).await?;
    }
    let CloseCheck::Closing { version } = check else {
        return Ok(());
    };
    // Bids accepted before the close are acked only after their commit.
    // Let those already queued land first: the close's row locks (see
    // `bids::close`) make the result count every bid acked `ok` whatever
    // the timing, but a bid still queued when it runs is refused.
    let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
    loop {
        let id = listing.to_string();
        let stored = app
            .db
            .run(move |conn| bids::latest_version(conn, &id))
            .await?;
        if stored >= version || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let id = listing.to_string();
    let node = app.settings.node_id.clone();
    let booking_id = BookingId::parse(&format!("bk_{}", random_id(20)))
        .ok_or_else(|| Failure::new(crate::error::Code::Internal, "bad generated booking id"))?;
    let about = listing.clone();
    let closed = app
        .db
        .run(move |conn| {
            bids::close(conn, &id, &node, &booking_id, |closed| {
                notices(&about, closed)
            })
        })
        .await?;
    if let Some(closed) = &closed {
        log::info!(
            "auction {listing} closed: winner {:?}, amount {:?}",
            closed.winner,
            closed.amount
        );
        // Publish the notices now; what fails here the relays publish
        // later (from the outbox, on whichever node gets to them).
        let (node, lease) = (&app.settings.node_id, app.settings.outbox.lease);
        if let Err(err) = outbox::relay(&app.db, &app.fanout, node, lease).await {
            log::warn!("auction {listing}: notices left to the outbox relay: {err}");
        }
    }
    app.broker.mark_closed(listing).await?;
    Ok(())
}

/// What announces a close: `auction:closed` to the listing's watchers, its
/// seller and the winner; the winner's `booking:created`; the listing's new
/// availability.
fn notices(listing: &ListingId, closed: &Closed) -> Vec<NewNotice> {
    let seller = RoomKey::User(UserId::from_db(closed.listing.seller_id.clone())).to_string();
    let winner = closed
        .winner
        .as_ref()
        .map(|winner| RoomKey::User(UserId::from_db(winner.clone())).to_string());
    let watchers = RoomKey::Listing(listing.clone()).to_string();
    let mut rooms = vec![watchers.clone(), seller.clone()];
    rooms.extend(winner.clone());
    let auction_closed = ServerEvent::AuctionClosed {
        listing_id: listing.clone(),
        winner_id: closed.winner.clone().map(UserId::from_db),
        amount: closed.amount,
        reserve_met: closed.reserve_met,
    };
    let mut notices = vec![notice(rooms, &auction_closed)];
    if let (Some(buyer), Some(booking)) = (winner, &closed.booking) {
        let created = ServerEvent::BookingCreated {
            booking: booking.to_booking(),
        };
        notices.push(notice(vec![buyer, seller], &created));
    }
    if let Some(reserved) = &closed.reserved {
        let availability = ServerEvent::AvailabilityChanged {
            listing_id: listing.clone(),
            availability: reserved.availability(),
        };
        let mut notice = notice(vec![watchers], &availability);
        notice.listing_version = Some(reserved.version);
        notices.push(notice);
    }
    notices
}

/// A notice of `event` to `rooms`, for the outbox.
fn notice(rooms: Vec<String>, event: &ServerEvent) -> NewNotice {
    NewNotice::new(rooms, event.name(), event.payload())
}
