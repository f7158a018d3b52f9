//! `bid:place`: rate limit, the broker's decision, the Postgres append, the
//! announcements, then the ack.

use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use serde_json::json;

use diesel::PgConnection;

use crate::broker::bidding::{Bid, Settled};
use crate::broker::{Accepted, Auctions, LiveState, Outcome, Placed, RateLimit};
use crate::domain::Visibility;
use crate::error::{Code, Failure};
use crate::ids::{ListingId, UserId};
use crate::state::AppState;
use crate::store::bids::{self, Appended};
use crate::store::StoreError;
use crate::time::{from_millis, rfc3339};

/// Bids one bidder may place per second (§5).
pub const BIDS_PER_SECOND: i64 = 5;
/// The same, as the bid script counts it.
const RATE_LIMIT: RateLimit = RateLimit {
    per_window: BIDS_PER_SECOND,
    window_ms: 1000,
};
/// How long a repeated bid waits for its first try's append to commit.
const REPEAT_WAIT: Duration = Duration::from_secs(2);

/// Places a bid; answers `{bid, auction}`. `may_see` is `listing:watch`'s
/// rule for this bidder and listing; it is asked (once) only when the
/// listing is private, so bids on public auctions cost no Postgres read.
pub async fn place_bid<F>(
    app: &AppState,
    bidder: &UserId,
    listing: ListingId,
    amount: i64,
    key: Option<String>,
    may_see: F,
) -> Result<BidAnswer, Failure>
where
    F: FnOnce(&mut PgConnection) -> Result<bool, StoreError> + Send + 'static,
{
    let now = Utc::now().timestamp_millis();
    let place = |vouched| {
        let bid = Bid {
            listing: listing.clone(),
            bidder: bidder.clone(),
            amount,
            key: key.clone(),
            now_ms: now,
            vouched,
        };
        app.bidding.place(bid, RATE_LIMIT)
    };
    let mut vouched = false;
    let mut may_see = Some(may_see);
    let mut rebuilt = false;
    let settled = loop {
        match place(vouched).await? {
            Settled::Placed(Placed::Missing) if !rebuilt => {
                rebuild(app, &listing).await?;
                rebuilt = true;
            }
            Settled::Placed(Placed::Private) => {
                let allowed = match may_see.take() {
                    Some(rule) => app.db.run(rule).await?,
                    None => false,
                };
                if !allowed {
                    // The same answer as for any private listing one may
                    // not see: nothing about the auction.
                    return Err(Failure::new(Code::Forbidden, "this listing is private"));
                }
                vouched = true;
            }
            settled => break settled,
        }
    };
    let placed = match settled {
        // Stored and announced with its batch (broker::bidding).
        Settled::Stored(accepted) => return Ok(answer(&listing, bidder, &accepted)),
        Settled::NotStored(outcome) => return Err(not_stored(outcome)),
        Settled::Placed(placed) => placed,
    };
    match placed {
        Placed::Missing | Placed::Private => {
            Err(Failure::new(Code::Internal, "auction state vanished"))
        }
        Placed::RateLimited { retry_after_ms } => {
            let mut failure = Failure::new(Code::RateLimited, "at most 5 bids a second");
            failure
                .extra
                .insert("retryAfterMs".into(), json!(retry_after_ms));
            Err(failure)
        }
        Placed::Repeat(Outcome::Accepted(accepted)) => {
            wait_stored(app, &listing, accepted.version).await?;
            Ok(answer(&listing, bidder, &accepted))
        }
        Placed::Decided(refused) | Placed::Repeat(refused) => Err(refusal(refused)),
    }
}

/// An accepted bid whose row was not stored: not accepted after all.
fn not_stored(outcome: Result<Appended, StoreError>) -> Failure {
    match outcome {
        Err(err) => err.into(),
        Ok(Appended::Closed) => Failure::new(
            Code::AuctionClosed,
            "the auction closed before this bid was stored",
        ),
        Ok(Appended::Private) => Failure::new(Code::Forbidden, "this listing is private"),
        Ok(Appended::Unavailable) => Failure::new(
            Code::Unavailable,
            "this listing is no longer an auction open to bids",
        ),
        Ok(_) => Failure::new(Code::Conflict, "bid version already stored"),
    }
}

fn refusal(outcome: Outcome) -> Failure {
    match outcome {
        Outcome::Closed { .. } => Failure::new(Code::AuctionClosed, "the auction has ended"),
        Outcome::NotOpen { starts } => Failure::new(
            Code::AuctionClosed,
            format!("the auction opens at {}", rfc3339(from_millis(starts))),
        ),
        Outcome::Unavailable => Failure::new(
            Code::Unavailable,
            "this listing is withdrawn, sold or reserved",
        ),
        Outcome::Seller => Failure::new(Code::Forbidden, "sellers cannot bid on their own listing"),
        Outcome::TooLow { min } => {
            let mut failure = Failure::new(
                Code::BidTooLow,
                format!("the lowest acceptable bid is {min}"),
            );
            failure.extra.insert("minAmount".into(), json!(min));
            failure
        }
        Outcome::Accepted(_) => Failure::new(Code::Internal, "accepted is not a refusal"),
    }
}

fn answer(listing: &ListingId, bidder: &UserId, accepted: &Accepted) -> BidAnswer {
    let ends = rfc3339(from_millis(accepted.ends));
    BidAnswer {
        bid: BidView {
            id: accepted.version.to_string(),
            listing_id: listing.clone(),
            bidder_id: bidder.clone(),
            amount: accepted.amount,
            version: accepted.version,
            ends_at: ends.clone(),
        },
        auction: AuctionView {
            status: "open",
            ends_at: ends,
            current_amount: accepted.amount,
            leader_id: bidder.clone(),
            bid_count: accepted.bid_count,
            version: accepted.version,
        },
    }
}

/// `bid:place`'s answer `{bid, auction}` (§5). Typed rather than a JSON
/// `Value`: it is written straight into the ack, and bids are the busiest
/// event there is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BidAnswer {
    pub bid: BidView,
    pub auction: AuctionView,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BidView {
    pub id: String,
    pub listing_id: ListingId,
    pub bidder_id: UserId,
    pub amount: i64,
    pub version: i64,
    pub ends_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuctionView {
    pub status: &'static str,
    pub ends_at: String,
    pub current_amount: i64,
    pub leader_id: UserId,
    pub bid_count: i64,
    pub version: i64,
}

/// A repeated bid is acked only once its first try is in Postgres.
async fn wait_stored(app: &AppState, listing: &ListingId, version: i64) -> Result<(), Failure> {
    let deadline = tokio::time::Instant::now() + REPEAT_WAIT;
    loop {
        let id = listing.to_string();
        if app
            .db
            .run(move |conn| bids::stored(conn, &id, version))
            .await?
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Failure::new(
                Code::ServiceUnavailable,
                "the first try of this bid is not stored yet",
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Rebuilds an auction's live state from Postgres (after Redis lost it).
pub async fn rebuild(app: &AppState, listing: &ListingId) -> Result<(), Failure> {
    let id = listing.clone();
    let (row, all, closed) = app.db.run(move |conn| bids::for_rebuild(conn, &id)).await?;
    let (Some(starts), Some(ends)) = (row.auction_starts_at, row.auction_ends_at) else {
        return Err(Failure::new(
            Code::Unavailable,
            "this listing is not an auction",
        ));
    };
    let mut state = LiveState {
        starts_ms: starts.timestamp_millis(),
        ends_ms: ends.timestamp_millis(),
        start_price: row.auction_start_price.unwrap_or(0),
        min_increment: row.auction_min_increment.unwrap_or(1),
        extend_ms: i64::from(row.auction_extend_window_secs.unwrap_or(0)) * 1000,
        seller: row.seller_id.clone(),
        current: None,
        leader: None,
        bid_count: 0,
        version: 0,
        closed,
        private: row.visibility() == Visibility::Private,
        availability: row.availability.clone(),
    };
    let mut remembered = Vec::new();
    for bid in &all {
        let outcome = json!({
            "outcome": "accepted",
            "version": bid.auction_version,
            "amount": bid.amount,
            "ends": bid.ends_at.timestamp_millis(),
            "extended": bid.ends_at.timestamp_millis() > state.ends_ms,
            "prevLeader": state.leader.clone().unwrap_or_default(),
            "prevAmount": state.current.unwrap_or(-1),
            "bidCount": state.bid_count + 1,
        });
        state.ends_ms = state.ends_ms.max(bid.ends_at.timestamp_millis());
        state.current = Some(bid.amount);
        state.leader = Some(bid.bidder_id.clone());
        state.bid_count += 1;
        state.version = bid.auction_version;
        if let Some(key) = &bid.idempotency_key {
            remembered.push((bid.bidder_id.clone(), key.clone(), outcome.to_string()));
        }
    }
    log::info!(
        "auction {listing}: live state rebuilt from Postgres at version {}",
        state.version
    );
    app.broker.load(listing, &state, &remembered).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::Answer;
    use crate::protocol::socket::encode_ack;

    #[test]
    fn a_bid_s_ack_is_the_contract_s_bid_and_auction() {
        let listing = ListingId::parse("l1").unwrap_or_else(|| panic!("a listing id"));
        let bidder = UserId::parse("u7").unwrap_or_else(|| panic!("a user id"));
        let accepted = Accepted {
            version: 12,
            amount: 1500,
            ends: 1_795_000_000_123,
            extended: false,
            prev_leader: String::new(),
            prev_amount: -1,
            bid_count: 9,
        };
        let answer = Answer::Bid(answer(&listing, &bidder, &accepted));
        assert_eq!(
            encode_ack(4, &answer.ack()),
            concat!(
                r#"434[{"ok":true,"#,
                r#""bid":{"id":"12","listingId":"l1","bidderId":"u7","amount":1500,"version":12,"endsAt":"2026-11-18T11:06:40.123Z"},"#,
                r#""auction":{"status":"open","endsAt":"2026-11-18T11:06:40.123Z","currentAmount":1500,"leaderId":"u7","bidCount":9,"version":12}}]"#
            )
        );
        let fields = Answer::Fields(json!({"expiresAt": "2026-11-18T11:06:40.123Z"}));
        assert_eq!(
            encode_ack(5, &fields.ack()),
            r#"435[{"ok":true,"expiresAt":"2026-11-18T11:06:40.123Z"}]"#
        );
        assert_eq!(
            encode_ack(6, &Answer::Fields(json!({})).ack()),
            r#"436[{"ok":true}]"#
        );
    }
}
