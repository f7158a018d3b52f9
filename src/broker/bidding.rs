//! Bids on one listing placed in batches: while a listing's batch is in the
//! broker, the bids that arrive for it wait, and go together as the next
//! batch (one bid-script call, one read and one write of the auction's
//! state, one round trip). An idle listing adds no delay: the first bid
//! goes at once, alone. Bids are decided in the order they arrived.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

use super::{Auctions, BidRequest, Broker, Placed, RateLimit};
use crate::ids::{ListingId, UserId};
use crate::store::StoreError;

/// The most bids one script call decides (Redis runs nothing else
/// meanwhile).
const MAX_BATCH: usize = 256;

/// A bid waiting for its batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Bid {
    pub listing: ListingId,
    pub bidder: UserId,
    pub amount: i64,
    /// The client's idempotency key.
    pub key: Option<String>,
    pub now_ms: i64,
    /// The bidder may see the listing, and this try was counted already.
    pub vouched: bool,
}

impl Bid {
    fn request(&self) -> BidRequest<'_> {
        BidRequest {
            listing: &self.listing,
            bidder: &self.bidder,
            amount: self.amount,
            key: self.key.as_deref(),
            now_ms: self.now_ms,
            vouched: self.vouched,
        }
    }
}

type Reply = oneshot::Sender<Result<Placed, StoreError>>;

/// The bids waiting, by listing.
type Queues = HashMap<ListingId, Vec<(Bid, Reply)>>;

/// The bids waiting, by listing; a listing is here while a task places its
/// batches. Cheap to clone.
#[derive(Clone, Default)]
pub struct Bidding {
    waiting: Arc<Mutex<Queues>>,
}

impl Bidding {
    pub fn new() -> Self {
        Bidding::default()
    }

    /// Places `bid` with the next batch of its listing. Every bid is
    /// counted against `limit` (one limit for all bids).
    pub async fn place(
        &self,
        broker: &Broker,
        bid: Bid,
        limit: RateLimit,
    ) -> Result<Placed, StoreError> {
        let (reply, answer) = oneshot::channel();
        let listing = bid.listing.clone();
        let start = {
            let mut waiting = self.lock();
            match waiting.get_mut(&listing) {
                Some(queue) => {
                    queue.push((bid, reply));
                    false
                }
                None => {
                    waiting.insert(listing.clone(), vec![(bid, reply)]);
                    true
                }
            }
        };
        if start {
            let placing = Placing {
                bidding: self.clone(),
                listing,
                done: false,
            };
            actix_web::rt::spawn(placing.run(broker.clone(), limit));
        }
        answer
            .await
            .map_err(|err| StoreError::internal_by("the bid's batch was dropped", err))?
    }

    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The task placing one listing's batches until none is waiting.
struct Placing {
    bidding: Bidding,
    listing: ListingId,
    /// The listing was taken out of the map when its queue was empty.
    done: bool,
}

impl Placing {
    async fn run(mut self, broker: Broker, limit: RateLimit) {
        loop {
            let batch: Vec<(Bid, Reply)> = {
                let mut waiting = self.bidding.lock();
                let Some(queue) = waiting.get_mut(&self.listing) else {
                    self.done = true;
                    return;
                };
                if queue.is_empty() {
                    waiting.remove(&self.listing);
                    self.done = true;
                    return;
                }
                let take = queue.len().min(MAX_BATCH);
                queue.drain(..take).collect()
            };
            let requests: Vec<BidRequest<'_>> =
                batch.iter().map(|(bid, _)| bid.request()).collect();
            let placed = broker.place_all(&requests, limit).await;
            match placed {
                Ok(placed) => {
                    for ((_, reply), placed) in batch.into_iter().zip(placed) {
                        let _ = reply.send(Ok(placed));
                    }
                }
                Err(err) => {
                    for (_, reply) in batch {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
        }
    }
}

impl Drop for Placing {
    /// A task that stopped half-way (a panic) takes its listing's queue with
    /// it: the bids waiting there are answered with an error rather than
    /// never, and the next bid starts a new task.
    fn drop(&mut self) {
        if !self.done {
            self.bidding.lock().remove(&self.listing);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::conformance::open_auction;
    use crate::broker::memory::MemoryBroker;
    use crate::broker::{Outcome, Placed};

    const GENEROUS: RateLimit = RateLimit {
        per_window: 1000,
        window_ms: 60_000,
    };

    fn bid(bidder: &str, amount: i64, now_ms: i64) -> Bid {
        Bid {
            listing: ListingId::parse("l1").unwrap_or_else(|| panic!("a listing id")),
            bidder: UserId::parse(bidder).unwrap_or_else(|| panic!("a user id")),
            amount,
            key: None,
            now_ms,
            vouched: false,
        }
    }

    #[actix_web::test]
    async fn concurrent_bids_are_decided_in_the_order_they_came() {
        let broker = Broker::Memory(MemoryBroker::new());
        let now = chrono::Utc::now().timestamp_millis();
        let listing = ListingId::parse("l1").unwrap_or_else(|| panic!("a listing id"));
        let loaded = broker.load(&listing, &open_auction(now), &[]).await;
        assert!(loaded.is_ok(), "{loaded:?}");
        let bidding = Bidding::new();
        let bids = (0..50).map(|n| {
            let bidding = bidding.clone();
            let broker = broker.clone();
            async move {
                let bid = bid(&format!("bidder{n}"), 100 + 10 * n, now);
                bidding.place(&broker, bid, GENEROUS).await
            }
        });
        let placed = futures_util::future::join_all(bids).await;
        // Each bid is the minimum after the one before it: all accepted,
        // in order, whatever batches they went in.
        let versions: Vec<Option<i64>> = placed
            .iter()
            .map(|placed| match placed {
                Ok(Placed::Decided(Outcome::Accepted(accepted))) => Some(accepted.version),
                _ => None,
            })
            .collect();
        let expected: Vec<Option<i64>> = (4..54).map(Some).collect();
        assert_eq!(versions, expected, "{placed:?}");
        // Nothing is left waiting.
        assert!(bidding.lock().is_empty());
    }
}
