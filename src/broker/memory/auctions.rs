//! Auctions' live state in memory: the Redis bid script's steps, in its
//! order, on one state per listing held under the lock for the whole step,
//! so that of concurrent bids at one amount one wins.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::{alive, lock, millis_left, Expiring, MemoryBroker, Purge};
use crate::broker::{
    Accepted, Auctions, BidRequest, CloseCheck, LiveState, Outcome, Placed, RateLimit, Remembered,
    BID_KEY_KEPT,
};
use crate::ids::{ListingId, UserId};
use crate::store::StoreError;

#[derive(Default)]
pub(super) struct State {
    auctions: HashMap<ListingId, Live>,
    /// Remembered outcomes (JSON) by listing, bidder and key.
    outcomes: HashMap<(ListingId, String, String), Expiring<String>>,
    /// Bids counted in each bidder's rate window, by listing and bidder.
    rates: HashMap<(ListingId, String), Expiring<i64>>,
    purge: Purge,
}

#[cfg(test)]
impl State {
    /// Remembered outcomes and rate windows.
    pub(super) fn held(&self) -> usize {
        self.outcomes.len() + self.rates.len()
    }
}

/// A listing's live state. `fields` is `None` when only a status is left
/// (closed while no state was kept): a bid then rebuilds it, as the Redis
/// script does with such a hash.
struct Live {
    fields: Option<Fields>,
    /// `open`, `closing` or `closed`.
    status: &'static str,
}

struct Fields {
    starts: i64,
    ends: i64,
    start_price: i64,
    min_increment: i64,
    extend_ms: i64,
    seller: String,
    /// -1: no bid yet.
    current: i64,
    /// '': no bid yet.
    leader: String,
    bid_count: i64,
    version: i64,
    private: bool,
    availability: String,
}

impl Auctions for MemoryBroker {
    async fn place_all(
        &self,
        bids: &[BidRequest<'_>],
        limit: RateLimit,
    ) -> Result<Vec<Placed>, StoreError> {
        let now = Instant::now();
        let mut guard = lock(&self.inner.auctions);
        let state = &mut *guard;
        if state.purge.due(now) {
            state.outcomes.retain(|_, outcome| outcome.alive(now));
            state.rates.retain(|_, count| count.alive(now));
        }
        let Some(listing) = bids.first().map(|bid| bid.listing) else {
            return Ok(Vec::new());
        };
        let State {
            auctions,
            outcomes,
            rates,
            ..
        } = state;
        let Some(live) = auctions.get_mut(listing) else {
            // As the script does: nothing counted, only keys looked up.
            return bids
                .iter()
                .map(|bid| {
                    prior_in(outcomes, remembered(bid).as_ref(), now)
                        .map_or(Ok(Placed::Missing), |json| {
                            Ok(Placed::Repeat(decode(&json)?))
                        })
                })
                .collect();
        };
        let Some(fields) = live.fields.as_mut() else {
            auctions.remove(listing);
            return Ok(vec![Placed::Missing; bids.len()]);
        };
        let status = live.status;
        bids.iter()
            .map(|bid| place(fields, status, outcomes, rates, bid, limit, now))
            .collect()
    }

    async fn load(
        &self,
        listing: &ListingId,
        live: &LiveState,
        remembered: &[Remembered],
    ) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut state = lock(&self.inner.auctions);
        if state.auctions.contains_key(listing) {
            return Ok(());
        }
        state.auctions.insert(
            listing.clone(),
            Live {
                fields: Some(Fields {
                    starts: live.starts_ms,
                    ends: live.ends_ms,
                    start_price: live.start_price,
                    min_increment: live.min_increment,
                    extend_ms: live.extend_ms,
                    seller: live.seller.clone(),
                    current: live.current.unwrap_or(-1),
                    leader: live.leader.clone().unwrap_or_default(),
                    bid_count: live.bid_count,
                    version: live.version,
                    private: live.private,
                    availability: live.availability.clone(),
                }),
                status: if live.closed { "closed" } else { "open" },
            },
        );
        for (bidder, key, outcome) in remembered {
            let remembered = (listing.clone(), bidder.clone(), key.clone());
            if alive(&mut state.outcomes, &remembered, now).is_none() {
                state.outcomes.insert(
                    remembered,
                    Expiring::new(outcome.clone(), BID_KEY_KEPT, now),
                );
            }
        }
        Ok(())
    }

    async fn forget(
        &self,
        listing: &ListingId,
        keys: &[(UserId, String)],
    ) -> Result<(), StoreError> {
        let mut state = lock(&self.inner.auctions);
        state.auctions.remove(listing);
        for (bidder, key) in keys {
            let remembered = (listing.clone(), bidder.to_string(), key.clone());
            state.outcomes.remove(&remembered);
        }
        Ok(())
    }

    async fn begin_close(
        &self,
        listing: &ListingId,
        now_ms: i64,
    ) -> Result<CloseCheck, StoreError> {
        let mut state = lock(&self.inner.auctions);
        let Some(live) = state.auctions.get_mut(listing) else {
            return Ok(CloseCheck::Missing);
        };
        let Some(fields) = &live.fields else {
            // Redis answers such a hash with no version either.
            live.status = "closing";
            return Err(StoreError::internal(format!(
                "the live state of {listing} has a status and nothing else"
            )));
        };
        if live.status == "open" && now_ms < fields.ends {
            return Ok(CloseCheck::NotYet);
        }
        live.status = "closing";
        Ok(CloseCheck::Closing {
            version: fields.version,
        })
    }

    async fn mark_closed(&self, listing: &ListingId) -> Result<(), StoreError> {
        let mut state = lock(&self.inner.auctions);
        state
            .auctions
            .entry(listing.clone())
            .or_insert(Live {
                fields: None,
                status: "closed",
            })
            .status = "closed";
        Ok(())
    }
}

/// One bid of a batch, on a listing with a live state: the Redis bid
/// script's steps for one bid, in its order.
fn place(
    fields: &mut Fields,
    status: &str,
    outcomes: &mut HashMap<(ListingId, String, String), Expiring<String>>,
    rates: &mut HashMap<(ListingId, String), Expiring<i64>>,
    bid: &BidRequest<'_>,
    limit: RateLimit,
    now: Instant,
) -> Result<Placed, StoreError> {
    let bidder = bid.bidder.as_str();
    if !bid.vouched {
        let window = (bid.listing.clone(), bidder.to_owned());
        let counted = match alive(rates, &window, now) {
            Some(count) => {
                *count += 1;
                *count
            }
            None => {
                let ttl = Duration::from_millis(u64::try_from(limit.window_ms).unwrap_or(0));
                rates.insert(window.clone(), Expiring::new(1, ttl, now));
                1
            }
        };
        if counted > limit.per_window {
            let until = rates.get(&window).map_or(now, |count| count.until);
            return Ok(Placed::RateLimited {
                retry_after_ms: millis_left(until, now),
            });
        }
        if fields.private && bidder != fields.seller {
            return Ok(Placed::Private);
        }
    }
    let remembered = remembered(bid);
    if let Some(json) = prior_in(outcomes, remembered.as_ref(), now) {
        return Ok(Placed::Repeat(decode(&json)?));
    }
    let outcome = decide(fields, status, bidder, bid.amount, bid.now_ms);
    if let Some(remembered) = remembered {
        outcomes.insert(
            remembered,
            Expiring::new(encode(&outcome), BID_KEY_KEPT, now),
        );
    }
    Ok(Placed::Decided(outcome))
}

/// Where the outcome of a bid with a key is remembered.
fn remembered(bid: &BidRequest<'_>) -> Option<(ListingId, String, String)> {
    bid.key
        .map(|key| (bid.listing.clone(), bid.bidder.to_string(), key.to_owned()))
}

fn prior_in(
    outcomes: &mut HashMap<(ListingId, String, String), Expiring<String>>,
    remembered: Option<&(ListingId, String, String)>,
    now: Instant,
) -> Option<String> {
    alive(outcomes, remembered?, now).cloned()
}

/// The bid script's decision, on a state it moves when the bid wins.
fn decide(fields: &mut Fields, status: &str, bidder: &str, amount: i64, now: i64) -> Outcome {
    if status != "open" || now >= fields.ends {
        return Outcome::Closed { ends: fields.ends };
    }
    if fields.availability != "available" {
        return Outcome::Unavailable;
    }
    if now < fields.starts {
        return Outcome::NotOpen {
            starts: fields.starts,
        };
    }
    if bidder == fields.seller {
        return Outcome::Seller;
    }
    let min = if fields.current < 0 {
        fields.start_price
    } else {
        fields.current + fields.min_increment
    };
    if amount < min {
        return Outcome::TooLow { min };
    }
    let ends = if fields.extend_ms > 0 && fields.ends - now <= fields.extend_ms {
        now + fields.extend_ms
    } else {
        fields.ends
    };
    let accepted = Accepted {
        version: fields.version + 1,
        amount,
        ends,
        extended: ends != fields.ends,
        prev_leader: std::mem::replace(&mut fields.leader, bidder.to_owned()),
        prev_amount: std::mem::replace(&mut fields.current, amount),
        bid_count: fields.bid_count + 1,
    };
    fields.version = accepted.version;
    fields.bid_count = accepted.bid_count;
    fields.ends = ends;
    Outcome::Accepted(accepted)
}

/// An outcome as the Redis script remembers it (cjson's field names).
fn encode(outcome: &Outcome) -> String {
    let value = match outcome {
        Outcome::Accepted(a) => json!({
            "outcome": "accepted", "version": a.version, "amount": a.amount, "ends": a.ends,
            "extended": a.extended, "prevLeader": a.prev_leader, "prevAmount": a.prev_amount,
            "bidCount": a.bid_count,
        }),
        Outcome::Closed { ends } => json!({ "outcome": "closed", "ends": ends }),
        Outcome::NotOpen { starts } => json!({ "outcome": "not_open", "starts": starts }),
        Outcome::Unavailable => json!({ "outcome": "unavailable" }),
        Outcome::Seller => json!({ "outcome": "seller" }),
        Outcome::TooLow { min } => json!({ "outcome": "too_low", "min": min }),
    };
    value.to_string()
}

fn decode(json: &str) -> Result<Outcome, StoreError> {
    serde_json::from_str(json)
        .map_err(|err| StoreError::internal_by(format!("bid outcome {json}"), err))
}
