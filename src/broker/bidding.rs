//! Bids on one listing placed in batches: while a listing's batch is in the
//! broker, the bids that arrive for it wait, and go together as the next
//! batch (one bid-script call, one read and one write of the auction's
//! state, one round trip). An idle listing adds no delay: the first bid
//! goes at once, alone. Bids are decided in the order they arrived.
//!
//! A batch's accepted bids then go to the bid log together (one message to
//! the writer, one transaction) and their events to the publisher together
//! (one send), before the next batch is decided: a bid is answered only
//! once its row is committed and its events published, a bid whose row
//! fails drops the live state (so the next batch is decided on what
//! Postgres has), and a listing's events leave in the order of its bids.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use actix::Addr;
use tokio::sync::oneshot;

use super::{Accepted, Auctions, BidRequest, Broker, Fanout, Outcome, Placed, RateLimit};
use crate::ids::{ListingId, RoomKey, UserId};
use crate::protocol::events::ServerEvent;
use crate::store::bids::{Appended, Bids, NewBid, ToStore};
use crate::store::writer::{self, Writer};
use crate::store::StoreError;
use crate::time::{from_millis, rfc3339};

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

    /// The bid's row, once the broker accepted it.
    fn row(&self, accepted: &Accepted) -> ToStore {
        ToStore {
            bid: NewBid {
                listing_id: self.listing.to_string(),
                bidder_id: self.bidder.to_string(),
                amount: self.amount,
                auction_version: accepted.version,
                idempotency_key: self.key.clone(),
                ends_at: from_millis(accepted.ends),
            },
            // Made private since the script looked: checked again there.
            may_see_private: self.vouched,
        }
    }

    /// What an accepted bid announces (§5): `bid:new` to the listing,
    /// `bid:outbid` to the leader it displaced, `auction:extended` when it
    /// moved the end.
    fn events(&self, accepted: &Accepted, out: &mut Vec<(RoomKey, ServerEvent)>) {
        let ends = rfc3339(from_millis(accepted.ends));
        let room = RoomKey::Listing(self.listing.clone());
        let new = ServerEvent::BidNew {
            listing_id: self.listing.clone(),
            bid_id: accepted.version.to_string(),
            amount: accepted.amount,
            bidder_id: self.bidder.clone(),
            version: accepted.version,
            ends_at: ends.clone(),
        };
        out.push((room.clone(), new));
        if let Some(previous) = UserId::parse(&accepted.prev_leader) {
            if previous != self.bidder {
                let outbid = ServerEvent::BidOutbid {
                    listing_id: self.listing.clone(),
                    amount: accepted.amount,
                    your_amount: accepted.prev_amount,
                };
                out.push((RoomKey::User(previous), outbid));
            }
        }
        if accepted.extended {
            let extended = ServerEvent::AuctionExtended {
                listing_id: self.listing.clone(),
                ends_at: ends,
            };
            out.push((room, extended));
        }
    }
}

/// What became of a bid.
#[derive(Debug, Clone)]
pub enum Settled {
    /// Not accepted by this batch: the broker's answer (a refusal, a
    /// repeat, no live state, a private listing, the rate limit).
    Placed(Placed),
    /// Accepted, committed to the bid log, and its events published.
    Stored(Accepted),
    /// Accepted by the broker but not stored: what the bid log said. The
    /// auction's live state was dropped, so the next bid rebuilds it from
    /// Postgres and this bid never stands.
    NotStored(Result<Appended, StoreError>),
}

/// Where a batch's accepted bids are stored: the bid writer, or a stand-in
/// in tests.
pub trait BidLog: Clone + 'static {
    /// Stores `rows` in one go; one answer per row, in order, after commit.
    fn append(&self, rows: Vec<ToStore>) -> impl Future<Output = writer::Answers<Bids>>;
}

impl BidLog for Addr<Writer<Bids>> {
    fn append(&self, rows: Vec<ToStore>) -> impl Future<Output = writer::Answers<Bids>> {
        writer::write_all(self, rows)
    }
}

type Reply = oneshot::Sender<Result<Settled, StoreError>>;

/// The bids waiting, by listing.
type Queues = HashMap<ListingId, Vec<(Bid, Reply)>>;

/// The bids waiting, by listing; a listing is here while a task places its
/// batches. Cheap to clone.
#[derive(Clone)]
pub struct Bidding<L: BidLog = Addr<Writer<Bids>>> {
    waiting: Arc<Mutex<Queues>>,
    broker: Broker,
    log: L,
    fanout: Fanout,
}

impl<L: BidLog> Bidding<L> {
    pub fn new(broker: Broker, log: L, fanout: Fanout) -> Self {
        Bidding {
            waiting: Arc::default(),
            broker,
            log,
            fanout,
        }
    }

    /// Places `bid` with the next batch of its listing, stores it if it is
    /// accepted and announces it. Every bid is counted against `limit` (one
    /// limit for all bids).
    pub async fn place(&self, bid: Bid, limit: RateLimit) -> Result<Settled, StoreError> {
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
            actix_web::rt::spawn(placing.run(limit));
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
struct Placing<L: BidLog> {
    bidding: Bidding<L>,
    listing: ListingId,
    /// The listing was taken out of the map when its queue was empty.
    done: bool,
}

impl<L: BidLog> Placing<L> {
    async fn run(mut self, limit: RateLimit) {
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
            let placed = self.bidding.broker.place_all(&requests, limit).await;
            match placed {
                Ok(placed) => self.settle(batch, placed).await,
                Err(err) => {
                    for (_, reply) in batch {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
        }
    }

    /// Answers a decided batch: the bids not accepted at once; the accepted
    /// ones stored together, then announced together, then answered.
    async fn settle(&self, batch: Vec<(Bid, Reply)>, placed: Vec<Placed>) {
        let mut accepted = Vec::new();
        for ((bid, reply), placed) in batch.into_iter().zip(placed) {
            match placed {
                Placed::Decided(Outcome::Accepted(outcome)) => accepted.push((bid, outcome, reply)),
                placed => {
                    let _ = reply.send(Ok(Settled::Placed(placed)));
                }
            }
        }
        if accepted.is_empty() {
            return;
        }
        let rows = accepted
            .iter()
            .map(|(bid, outcome, _)| bid.row(outcome))
            .collect();
        let written = self.bidding.log.append(rows).await;
        let mut stored = Vec::with_capacity(accepted.len());
        let mut unstored = Vec::new();
        match written {
            Ok(answers) => {
                for ((bid, outcome, reply), answer) in accepted.into_iter().zip(answers) {
                    match answer {
                        Appended::Stored(_) => stored.push((bid, outcome, reply)),
                        answer => unstored.push((bid, reply, Ok(answer))),
                    }
                }
            }
            Err(err) => {
                for (bid, _, reply) in accepted {
                    unstored.push((bid, reply, Err(err.clone())));
                }
            }
        }
        if !unstored.is_empty() {
            // Not in Postgres, so not accepted: drop the live state so that
            // the next batch is decided on what Postgres has.
            let keys: Vec<(UserId, String)> = unstored
                .iter()
                .filter_map(|(bid, _, _)| Some((bid.bidder.clone(), bid.key.clone()?)))
                .collect();
            let _ = self.bidding.broker.forget(&self.listing, &keys).await;
            for (_, reply, answer) in unstored {
                let _ = reply.send(Ok(Settled::NotStored(answer)));
            }
        }
        if stored.is_empty() {
            return;
        }
        let mut events = Vec::with_capacity(2 * stored.len());
        for (bid, outcome, _) in &stored {
            bid.events(outcome, &mut events);
        }
        // Queued now, in the order of the bids; the answers wait for the
        // publication in a task of their own, so the next batch need not.
        let published = self.bidding.fanout.emit_several(events);
        actix_web::rt::spawn(async move {
            published.await;
            for (_, outcome, reply) in stored {
                let _ = reply.send(Ok(Settled::Stored(outcome)));
            }
        });
    }
}

impl<L: BidLog> Drop for Placing<L> {
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
    use crate::broker::{Events, History, LogLimits, Placed};
    use crate::store::bids::BidRow;
    use std::time::Duration;

    const GENEROUS: RateLimit = RateLimit {
        per_window: 1000,
        window_ms: 60_000,
    };

    /// A bid log in memory: every append's versions, in order; it stores
    /// every row, or (`failing`) fails every append.
    #[derive(Clone, Default)]
    struct Log {
        appends: Arc<Mutex<Vec<Vec<i64>>>>,
        failing: bool,
    }

    impl BidLog for Log {
        fn append(&self, rows: Vec<ToStore>) -> impl Future<Output = writer::Answers<Bids>> {
            let versions = rows.iter().map(|row| row.bid.auction_version).collect();
            self.appends
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(versions);
            let answers = if self.failing {
                Err(StoreError::unavailable("the bid log is down"))
            } else {
                Ok(rows
                    .into_iter()
                    .map(|row| {
                        Appended::Stored(BidRow {
                            id: row.bid.auction_version,
                            listing_id: row.bid.listing_id,
                            bidder_id: row.bid.bidder_id,
                            amount: row.bid.amount,
                            auction_version: row.bid.auction_version,
                            idempotency_key: row.bid.idempotency_key,
                            ends_at: row.bid.ends_at,
                            placed_at: row.bid.ends_at,
                        })
                    })
                    .collect())
            };
            std::future::ready(answers)
        }
    }

    fn listing() -> ListingId {
        ListingId::parse("l1").unwrap_or_else(|| panic!("a listing id"))
    }

    fn bid(bidder: &str, amount: i64, now_ms: i64) -> Bid {
        Bid {
            listing: listing(),
            bidder: UserId::parse(bidder).unwrap_or_else(|| panic!("a user id")),
            amount,
            key: None,
            now_ms,
            vouched: false,
        }
    }

    /// A memory broker with an open auction on `l1`, and bidding on it
    /// through `log`.
    async fn open(log: Log) -> (Broker, Bidding<Log>, i64) {
        let broker = Broker::Memory(MemoryBroker::new());
        let now = chrono::Utc::now().timestamp_millis();
        let loaded = broker.load(&listing(), &open_auction(now), &[]).await;
        assert!(loaded.is_ok(), "{loaded:?}");
        let limits = LogLimits {
            ttl: Duration::from_secs(60),
            max_len: 1000,
        };
        let fanout = Fanout::start(broker.clone(), limits);
        (broker.clone(), Bidding::new(broker, log, fanout), now)
    }

    /// The versions of the `bid:new` events in the listing's room log.
    async fn announced(broker: &Broker) -> Vec<i64> {
        let events = match broker.since(&RoomKey::Listing(listing()), 0).await {
            Ok(History::Events(events)) => events,
            other => panic!("{other:?}"),
        };
        events
            .iter()
            .filter(|event| event.frame.starts_with("42[\"bid:new\""))
            .map(|event| {
                let packet: serde_json::Value = serde_json::from_str(&event.frame[2..])
                    .unwrap_or_else(|err| panic!("{err}: {}", event.frame));
                packet[1]["version"].as_i64().unwrap_or(-1)
            })
            .collect()
    }

    #[actix_web::test]
    async fn concurrent_bids_are_decided_stored_and_announced_in_the_order_they_came() {
        let log = Log::default();
        let (broker, bidding, now) = open(log.clone()).await;
        let bids = (0..50).map(|n| {
            let bidding = bidding.clone();
            let broker = broker.clone();
            async move {
                let bid = bid(&format!("bidder{n}"), 100 + 10 * n, now);
                let settled = bidding.place(bid, GENEROUS).await;
                // Answered only once its bid:new is in the room's log.
                if let Ok(Settled::Stored(accepted)) = &settled {
                    assert!(announced(&broker).await.contains(&accepted.version));
                }
                settled
            }
        });
        let settled = futures_util::future::join_all(bids).await;
        // Each bid is the minimum after the one before it: all accepted,
        // in order, whatever batches they went in.
        let versions: Vec<Option<i64>> = settled
            .iter()
            .map(|settled| match settled {
                Ok(Settled::Stored(accepted)) => Some(accepted.version),
                _ => None,
            })
            .collect();
        let expected: Vec<Option<i64>> = (4..54).map(Some).collect();
        assert_eq!(versions, expected, "{settled:?}");
        // One append per batch, not per bid, in the order of the bids.
        let appends = log
            .appends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        assert!(appends.len() < 50, "{appends:?}");
        let appended: Vec<i64> = appends.concat();
        assert_eq!(appended, (4..54).collect::<Vec<i64>>());
        assert_eq!(announced(&broker).await, (4..54).collect::<Vec<i64>>());
        // Nothing is left waiting.
        assert!(bidding.lock().is_empty());
    }

    #[actix_web::test]
    async fn a_bid_not_stored_is_not_announced_and_drops_the_live_state() {
        let log = Log {
            failing: true,
            ..Log::default()
        };
        let (broker, bidding, now) = open(log).await;
        let settled = bidding.place(bid("bidder1", 100, now), GENEROUS).await;
        assert!(
            matches!(settled, Ok(Settled::NotStored(Err(_)))),
            "{settled:?}"
        );
        assert_eq!(announced(&broker).await, Vec::<i64>::new());
        // The next bid finds no live state: it is rebuilt from Postgres,
        // where the first one is not.
        let next = bidding.place(bid("bidder2", 200, now), GENEROUS).await;
        assert!(
            matches!(next, Ok(Settled::Placed(Placed::Missing))),
            "{next:?}"
        );
    }
}
