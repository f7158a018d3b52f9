//! The broker: everything a node shares with the other nodes, behind one
//! boundary. The core (rooms, handlers, sessions, auctions, the API) knows
//! only the traits below and the [`Broker`] handle; what stands behind them
//! is either Redis ([`redis`], standalone or Cluster: several nodes) or this
//! process's memory ([`memory`], one node, no services).
//!
//! Each trait carries its contract. Both implementations must keep it, and
//! one conformance suite (`conformance`, run on both) checks that they do.
//!
//! Modelled on centrifuge's `Broker` and `PresenceManager` interfaces and
//! socketioxide's `CoreAdapter`: the rule is written on the trait, each
//! implementation lives in its own module, and key names and scripts never
//! leave the implementation that uses them.

pub mod bidding;
#[cfg(test)]
mod conformance;
pub mod fanout;
pub mod memory;
pub mod outbox;
pub mod records;
pub mod redis;

pub use fanout::Fanout;

use std::future::Future;
use std::time::Duration;

use actix::{Message, Recipient};
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::ids::{BookingId, ListingId, RoomKey, UserId};
use crate::store::StoreError;

/// One room event to publish: encoded once, all but its offset, which the
/// broker assigns.
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    pub room: RoomKey,
    /// Shared by the copies of one event sent to several rooms, so that a
    /// connection in more than one of them takes it once.
    pub emission: u64,
    /// The packet up to its offset: `42["event",payload` (the broker appends
    /// `,"<offset>-0"]`).
    pub head: String,
    /// The user whose connections do not get it (their own typing).
    pub except: Option<UserId>,
    /// The listing version it shows, on a listing event.
    pub version: Option<i64>,
}

/// One room event as the broker hands it back, live or from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomEvent {
    pub room: RoomKey,
    /// Increasing over every room of the broker: "everything after offset N
    /// in my rooms" is exact.
    pub offset: u64,
    pub emission: u64,
    /// The whole packet, offset included.
    pub frame: String,
    pub except: Option<UserId>,
    pub version: Option<i64>,
}

/// Reads an offset as packets show it, and as a recovering client sends it
/// back: `"12-0"` → 12 (and `"0-0"`, nothing before, → 0).
pub fn parse_offset(text: &str) -> Option<u64> {
    let (n, seq) = text.split_once('-')?;
    (seq == "0").then(|| n.parse().ok()).flatten()
}

/// How long a room's log keeps events, and how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    pub ttl: Duration,
    pub max_len: u64,
}

/// What a room's log still holds after an offset.
#[derive(Debug, Clone, PartialEq)]
pub enum History {
    /// Every event after the offset, oldest first (none is `Events(vec![])`).
    /// A log expires whole `ttl` after its last event, and then answers no
    /// events: none was published in the window.
    Events(Vec<RoomEvent>),
    /// The log's cap dropped some of them.
    Trimmed,
}

/// What a node's subscription hands to the node, in offset order per room.
#[derive(Message, Debug, Clone, PartialEq)]
#[rtype(result = "()")]
pub enum Arrival {
    /// An event of a followed room.
    Event(RoomEvent),
    /// The room's log no longer held everything this node missed while cut
    /// off: its members here missed some events.
    Gap { room: RoomKey, after: u64 },
}

/// Room events: publish with history and offsets, follow rooms, read back.
///
/// Rules both implementations keep:
/// - Appending an event to its room's log and sending it to the followers
///   is one atomic step: no follower sees an event the log does not hold.
/// - Offsets increase strictly over every room, in the order of `publish`
///   calls and of the publications within a call.
/// - A follower gets each event of a followed room once, in offset order,
///   from the moment `follow` resolved. When the implementation lost its
///   link and got it back, it first hands over what the log holds after the
///   last offset it passed on (or `Arrival::Gap`), then live events.
pub trait Events {
    /// Publishes `batch` in order; answers, for each publication in turn,
    /// its offset or why it was refused. A refused publication is for the
    /// caller to try again; when the link failed mid-batch, one answered
    /// refused may still have gone out, and publishing it again repeats it
    /// under a new offset with the same emission (connections drop the
    /// repeat).
    fn publish(
        &self,
        batch: &[Publication],
        limits: LogLimits,
    ) -> impl Future<Output = Vec<Result<u64, StoreError>>> + Send;

    /// The events of `room` after offset `after`, oldest first.
    fn since(
        &self,
        room: &RoomKey,
        after: u64,
    ) -> impl Future<Output = Result<History, StoreError>> + Send;

    /// Starts this node's subscription: every followed room's events go to
    /// `sink`. Called once per node.
    fn subscribe(&self, sink: Recipient<Arrival>) -> Subscription;
}

/// A node's subscription; cheap to clone.
#[derive(Clone)]
pub struct Subscription {
    commands: mpsc::UnboundedSender<Follow>,
}

/// What a subscription is asked to do.
#[derive(Debug)]
pub enum Follow {
    /// Follow a room; answer once its events are on their way.
    Room(RoomKey, oneshot::Sender<()>),
    /// Stop following a room.
    Drop(RoomKey),
}

impl Subscription {
    /// A handle on a task that reads `Follow` commands from the other end.
    pub fn new(commands: mpsc::UnboundedSender<Follow>) -> Self {
        Subscription { commands }
    }

    /// Follows `room`; the answer comes once its events are on their way.
    pub fn follow(&self, room: RoomKey) -> oneshot::Receiver<()> {
        let (reply, followed) = oneshot::channel();
        let _ = self.commands.send(Follow::Room(room, reply));
        followed
    }

    /// Stops following `room`.
    pub fn unfollow(&self, room: RoomKey) {
        let _ = self.commands.send(Follow::Drop(room));
    }
}

/// How long a user's last-seen time is kept after their last refresh.
pub const LAST_SEEN_KEPT: Duration = Duration::from_secs(30 * 24 * 3600);

/// A user's presence as read.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceState {
    pub online: bool,
    /// RFC 3339; kept 30 days.
    pub last_seen: Option<String>,
}

/// Presence: a user is online while some node refreshes them.
///
/// Rules: a user refreshed within `ttl` is online, on every node; a refresh
/// that finds the user offline reports them as newly online (to exactly one
/// caller); once `ttl` has passed without a refresh, exactly one `sweep`
/// (over all nodes) reports them as gone, with their last-seen time. A
/// `refresh` or `sweep` that fails part way answers what it reported so
/// far rather than the error: no later call would report those users.
pub trait Presence {
    /// Marks `users` online until `now + ttl`; answers those who were not.
    fn refresh(
        &self,
        users: &[UserId],
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<UserId>, StoreError>> + Send;

    /// Takes users whose presence expired by `now`: each with their last
    /// seen time.
    fn sweep(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<(UserId, Option<String>)>, StoreError>> + Send;

    /// The presence of each of `users`, in their order.
    fn states(
        &self,
        users: &[UserId],
    ) -> impl Future<Output = Result<Vec<PresenceState>, StoreError>> + Send;
}

/// What a throttle is kept for; the implementation names the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Throttle {
    /// One typing broadcast per user and booking per window.
    Typing { booking: BookingId, user: UserId },
}

/// Throttles: "at most once per window", shared by every node.
///
/// Rule: of any number of `once` calls for one key within `ttl` of the
/// first that answered true, on any nodes, only that first answers true;
/// `reset` ends the window early.
pub trait Throttles {
    fn once(
        &self,
        key: &Throttle,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    fn reset(&self, key: &Throttle) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The rooms a socket was in, kept for its recovery (Socket.IO's
/// connection state recovery), as of the last save.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub user: String,
    pub rooms: Vec<String>,
}

/// What changed in a record since it was last saved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// Set when the record is written whole, for this user.
    pub bind: Option<String>,
    pub joined: std::collections::BTreeSet<String>,
    pub left: std::collections::BTreeSet<String>,
}

impl Changes {
    /// The whole record of `user` in `rooms`.
    pub fn whole(user: String, rooms: impl Iterator<Item = String>) -> Self {
        Changes {
            bind: Some(user),
            joined: rooms.collect(),
            left: Default::default(),
        }
    }

    pub fn join(&mut self, room: String) {
        self.left.remove(&room);
        self.joined.insert(room);
    }

    pub fn leave(&mut self, room: String) {
        self.joined.remove(&room);
        self.left.insert(room);
    }
}

/// How long a claim keeps other claims of the same pid out while its socket
/// restores (its rooms checked and joined, its missed events read).
pub const CLAIM_HOLD: Duration = Duration::from_secs(10);

/// One record to save: `owner` (`node/session`) writes `changes` to `pid`.
#[derive(Debug, Clone, PartialEq)]
pub struct Save {
    pub pid: String,
    pub owner: String,
    pub changes: Changes,
}

/// Records a save did not write.
#[derive(Debug, Default, PartialEq)]
pub struct Saved {
    /// Another socket claimed them: their old owner no longer keeps them.
    pub taken: Vec<String>,
    /// Gone (expired or lost): write them whole again.
    pub gone: Vec<String>,
}

/// What a claim of a record found.
#[derive(Debug, PartialEq)]
pub enum Claim {
    /// The record, now the claimer's.
    Got(Record),
    /// Another socket is claiming it: one live socket per pid.
    Busy,
    /// No record of the user's under that pid.
    Missing,
}

/// Session records, for recovery on any node.
///
/// Rules: a record lives `window` after its last save; only its owner
/// saves it (another owner's save answers `taken`); a claim succeeds only
/// for the record's user, and only one claim at a time holds it (for 10 s,
/// or until released); a successful claim makes the claimer the owner.
pub trait Records {
    fn save(
        &self,
        saves: &[Save],
        window: Duration,
    ) -> impl Future<Output = Result<Saved, StoreError>> + Send;

    fn claim(
        &self,
        pid: &str,
        user: &str,
        claimer: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;

    fn release(
        &self,
        pid: &str,
        claimer: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// How long a bidder's idempotency key answers its first outcome again.
pub const BID_KEY_KEPT: Duration = Duration::from_secs(24 * 3600);

/// One bid to decide.
#[derive(Debug, Clone, Copy)]
pub struct BidRequest<'a> {
    pub listing: &'a ListingId,
    pub bidder: &'a UserId,
    pub amount: i64,
    /// The client's idempotency key.
    pub key: Option<&'a str>,
    pub now_ms: i64,
    /// The bidder may see the listing, and this try was counted already.
    pub vouched: bool,
}

/// Bids a bidder may place per window, per auction.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub per_window: i64,
    pub window_ms: i64,
}

/// What the bid step decided.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Accepted(Accepted),
    Closed {
        ends: i64,
    },
    NotOpen {
        starts: i64,
    },
    /// The listing is withdrawn, sold or reserved.
    Unavailable,
    Seller,
    TooLow {
        min: i64,
    },
}

/// An accepted bid, and the state it left.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    pub version: i64,
    pub amount: i64,
    pub ends: i64,
    pub extended: bool,
    /// '' when there was none.
    pub prev_leader: String,
    /// -1 when there was none.
    pub prev_amount: i64,
    pub bid_count: i64,
}

/// What placing a bid came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Placed {
    Decided(Outcome),
    /// The same bidder and key were decided before: that outcome.
    Repeat(Outcome),
    /// No live state: rebuild it from Postgres and try again.
    Missing,
    RateLimited {
        retry_after_ms: i64,
    },
    /// A private listing and a bidder not vouched for.
    Private,
}

/// An auction's live state, as rebuilt from Postgres.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveState {
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub start_price: i64,
    pub min_increment: i64,
    pub extend_ms: i64,
    pub seller: String,
    pub current: Option<i64>,
    pub leader: Option<String>,
    pub bid_count: i64,
    pub version: i64,
    pub closed: bool,
    pub private: bool,
    /// `available`, `reserved`, `sold` or `withdrawn`.
    pub availability: String,
}

/// Where closing an auction stands.
#[derive(Debug, Clone, PartialEq)]
pub enum CloseCheck {
    Missing,
    NotYet,
    /// No bid is taken from now on; the final version.
    Closing {
        version: i64,
    },
}

/// A remembered bid outcome: bidder, idempotency key, outcome (JSON).
pub type Remembered = (String, String, String);

/// Auctions' live state, decided on in one step per batch of bids.
///
/// Rules: each `place_all` sees and moves one consistent state (of any
/// number of concurrent bids at one amount, one wins), and decides its
/// bids in order, each against the state the one before it left; a bid is
/// counted against the bidder's rate window before anything else, except
/// when `vouched`; a private auction tells a bidder not vouched for nothing
/// but `Private`; a bidder's key answers the first outcome again for 24 h
/// (a later bid of the same batch included); after `begin_close`, every
/// bid is `Closed`.
pub trait Auctions {
    /// Decides `bids`, all on one listing, in order: one answer per bid.
    fn place_all(
        &self,
        bids: &[BidRequest<'_>],
        limit: RateLimit,
    ) -> impl Future<Output = Result<Vec<Placed>, StoreError>> + Send;

    /// Writes a rebuilt state unless one is there, with the outcomes
    /// remembered under bidders' keys.
    fn load(
        &self,
        listing: &ListingId,
        state: &LiveState,
        remembered: &[Remembered],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets a listing's live state, and the given bidders' keys.
    fn forget(
        &self,
        listing: &ListingId,
        keys: &[(UserId, String)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn begin_close(
        &self,
        listing: &ListingId,
        now_ms: i64,
    ) -> impl Future<Output = Result<CloseCheck, StoreError>> + Send;

    fn mark_closed(
        &self,
        listing: &ListingId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The cluster view: which nodes are alive.
///
/// Rule: a node's entry is listed until `ttl` after its last beat, or
/// until it leaves.
pub trait Nodes {
    fn beat(
        &self,
        node: &str,
        entry: &Value,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn leave(&self, node: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every live node's entry, by node id.
    fn live(&self) -> impl Future<Output = Result<Vec<Value>, StoreError>> + Send;
}

/// The node's broker; cheap to clone. An enum rather than a trait object:
/// the traits' methods return futures, and the two kinds are all there is.
#[derive(Clone)]
pub enum Broker {
    Redis(std::sync::Arc<redis::RedisBroker>),
    Memory(memory::MemoryBroker),
}

/// Runs `$call` on whichever broker `$self` is.
macro_rules! dispatch {
    ($self:ident, $b:ident => $call:expr) => {
        match $self {
            Broker::Redis($b) => $call,
            Broker::Memory($b) => $call,
        }
    };
}

impl Broker {
    /// Whether the broker answers (the health check).
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, b => b.ping().await)
    }
}

impl Events for Broker {
    async fn publish(
        &self,
        batch: &[Publication],
        limits: LogLimits,
    ) -> Vec<Result<u64, StoreError>> {
        dispatch!(self, b => b.publish(batch, limits).await)
    }

    async fn since(&self, room: &RoomKey, after: u64) -> Result<History, StoreError> {
        dispatch!(self, b => b.since(room, after).await)
    }

    fn subscribe(&self, sink: Recipient<Arrival>) -> Subscription {
        dispatch!(self, b => b.subscribe(sink))
    }
}

impl Presence for Broker {
    async fn refresh(
        &self,
        users: &[UserId],
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<UserId>, StoreError> {
        dispatch!(self, b => b.refresh(users, ttl, now).await)
    }

    async fn sweep(&self, now: DateTime<Utc>) -> Result<Vec<(UserId, Option<String>)>, StoreError> {
        dispatch!(self, b => b.sweep(now).await)
    }

    async fn states(&self, users: &[UserId]) -> Result<Vec<PresenceState>, StoreError> {
        dispatch!(self, b => b.states(users).await)
    }
}

impl Throttles for Broker {
    async fn once(&self, key: &Throttle, ttl: Duration) -> Result<bool, StoreError> {
        dispatch!(self, b => b.once(key, ttl).await)
    }

    async fn reset(&self, key: &Throttle) -> Result<(), StoreError> {
        dispatch!(self, b => b.reset(key).await)
    }
}

impl Records for Broker {
    async fn save(&self, saves: &[Save], window: Duration) -> Result<Saved, StoreError> {
        dispatch!(self, b => b.save(saves, window).await)
    }

    async fn claim(
        &self,
        pid: &str,
        user: &str,
        claimer: &str,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        dispatch!(self, b => b.claim(pid, user, claimer, now).await)
    }

    async fn release(&self, pid: &str, claimer: &str) -> Result<(), StoreError> {
        dispatch!(self, b => b.release(pid, claimer).await)
    }
}

impl Auctions for Broker {
    async fn place_all(
        &self,
        bids: &[BidRequest<'_>],
        limit: RateLimit,
    ) -> Result<Vec<Placed>, StoreError> {
        dispatch!(self, b => b.place_all(bids, limit).await)
    }

    async fn load(
        &self,
        listing: &ListingId,
        state: &LiveState,
        remembered: &[Remembered],
    ) -> Result<(), StoreError> {
        dispatch!(self, b => b.load(listing, state, remembered).await)
    }

    async fn forget(
        &self,
        listing: &ListingId,
        keys: &[(UserId, String)],
    ) -> Result<(), StoreError> {
        dispatch!(self, b => b.forget(listing, keys).await)
    }

    async fn begin_close(
        &self,
        listing: &ListingId,
        now_ms: i64,
    ) -> Result<CloseCheck, StoreError> {
        dispatch!(self, b => b.begin_close(listing, now_ms).await)
    }

    async fn mark_closed(&self, listing: &ListingId) -> Result<(), StoreError> {
        dispatch!(self, b => b.mark_closed(listing).await)
    }
}

impl Nodes for Broker {
    async fn beat(&self, node: &str, entry: &Value, ttl: Duration) -> Result<(), StoreError> {
        dispatch!(self, b => b.beat(node, entry, ttl).await)
    }

    async fn leave(&self, node: &str) -> Result<(), StoreError> {
        dispatch!(self, b => b.leave(node).await)
    }

    async fn live(&self) -> Result<Vec<Value>, StoreError> {
        dispatch!(self, b => b.live().await)
    }
}

/// One entry of the backend's queue (§8b), as read from it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueEntry {
    /// The queue's own id of the entry (a stream id, `1700000000000-0`):
    /// what acknowledging names, not the backend's idempotency key.
    pub entry: String,
    /// The fields in the order the backend wrote them; `None` for a value
    /// that is not UTF-8 text.
    pub fields: Vec<(String, Option<String>)>,
}

/// What reading the queue found.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Entries to deliver, oldest first (none: the queue is empty for now).
    Entries(Vec<QueueEntry>),
    /// Entries another consumer read and did not acknowledge are not idle
    /// long enough to be taken over: newer ones must wait behind them.
    Wait,
}

/// Where an idempotency key stands, as [`Ingest::mark`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// The key was free: it is now this entry's, not delivered yet.
    Fresh,
    /// This entry took the key on an earlier try that may or may not have
    /// published it: publish again (under the same emission, which
    /// connections that had it drop).
    Retry,
    /// This entry was delivered and marked so, but not acknowledged.
    Delivered,
    /// Another entry holds the key: this one is a duplicate.
    Duplicate,
}

/// The backend's queue (§8b): entries the backend appended, read by the
/// nodes as one consumer group, at least once.
///
/// Rules both a queue and its users keep:
/// - An entry stays pending, to be read again, until it is acknowledged
///   (`ack`, or `dead`, which moves it to the dead letters and acknowledges
///   it in one step); acknowledge only what was published.
/// - `next` answers a consumer its own pending entries first, then the
///   entries others left pending for `idle` or more (taking them over),
///   and new entries only when nothing is pending: stream order holds as
///   long as one consumer reads at a time, which `lead` arranges.
/// - Of the callers of `lead` with distinct `holder`s, at most one at a
///   time holds the lease, until `ttl` after its last successful call or
///   until it resigns.
/// - `mark` answers, per idempotency key, whether the key is free (and
///   takes it for the entry), already this entry's, delivered by this
///   entry, or another entry's; a key is kept `ttl` after its last mark.
pub trait Ingest {
    /// Takes the lease for `holder`, or renews it if `holder` has it;
    /// true while `holder` holds it.
    fn lead(
        &self,
        holder: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives the lease up, if `holder` holds it.
    fn resign(&self, holder: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Up to `count` entries for `consumer` (see the rules above).
    fn next(
        &self,
        consumer: &str,
        count: usize,
        idle: Duration,
    ) -> impl Future<Output = Result<Next, StoreError>> + Send;

    /// Takes each `(key, entry)`'s idempotency key for its entry, in order;
    /// answers where each stood.
    fn mark(
        &self,
        keys: &[(String, String)],
        ttl: Duration,
    ) -> impl Future<Output = Result<Vec<Mark>, StoreError>> + Send;

    /// Records each `(key, entry)` as delivered by its entry.
    fn delivered(
        &self,
        keys: &[(String, String)],
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Acknowledges entries: they are never read again.
    fn ack(&self, entries: &[String]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Moves an entry to the dead letters with `reason`, acknowledged.
    fn dead(
        &self,
        entry: &QueueEntry,
        reason: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Entries not delivered yet: never read, or read and not acknowledged.
    fn lag(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

impl Broker {
    /// The backend's queue, on a broker that has one: the memory broker
    /// has none (no backend reaches this process's memory), so ingestion
    /// is off on it.
    pub fn queue(&self) -> Option<impl Ingest + Clone + Send + Sync + 'static> {
        match self {
            Broker::Redis(b) => Some(redis::RedisBroker::clone(b)),
            Broker::Memory(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_counter_values() {
        assert_eq!(parse_offset("12-0"), Some(12));
        assert_eq!(parse_offset("12-1"), None);
        assert_eq!(parse_offset("x-0"), None);
        assert_eq!(parse_offset("12"), None);
    }
}
