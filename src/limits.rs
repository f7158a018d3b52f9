//! Token buckets, and per-user rates of client events: one bucket per user
//! and kind of event, in memory on each node (a user's connections on one node share
//! them). An event past its bucket is answered `rate_limited` with
//! `retryAfterMs`, before it is queued, so a flood costs the node no more
//! than its parsing.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::error::{Code, Failure};
use crate::metrics::Metrics;
use crate::protocol::events::ClientEvent;
use crate::settings::{Rate, Rates};

/// Kinds of client events, each with its own bucket per user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Messages,
    Typing,
    Rooms,
    Reservations,
    Transitions,
    Reads,
    History,
    Bids,
    /// User reads over HTTP (§8a).
    Pages,
}

impl Kind {
    /// The `souk_limits_tripped_total` label of the kind's bound.
    fn label(self) -> &'static str {
        match self {
            Kind::Messages => "rate_messages",
            Kind::Typing => "rate_typing",
            Kind::Rooms => "rate_rooms",
            Kind::Reservations => "rate_reservations",
            Kind::Transitions => "rate_transitions",
            Kind::Reads => "rate_reads",
            Kind::History => "rate_history",
            Kind::Bids => "rate_bids",
            Kind::Pages => "rate_pages",
        }
    }

    fn rate(self, rates: &Rates) -> Rate {
        match self {
            Kind::Messages => rates.messages,
            Kind::Typing => rates.typing,
            Kind::Rooms => rates.rooms,
            Kind::Reservations => rates.reservations,
            Kind::Transitions => rates.transitions,
            Kind::Reads => rates.reads,
            Kind::History => rates.history,
            Kind::Bids => rates.bids,
            Kind::Pages => rates.pages,
        }
    }
}

/// What an event costs: its kind and how many tokens (a `presence:watch`
/// costs one per id, as each is a room joined). Leaves cost nothing: a
/// socket cannot leave more than it joined.
pub fn cost(event: &ClientEvent) -> Option<(Kind, u32)> {
    use ClientEvent::*;
    let one = |kind| Some((kind, 1));
    match event {
        MessageSend { .. } => one(Kind::Messages),
        TypingStart { .. } | TypingStop { .. } => one(Kind::Typing),
        ListingWatch { .. } | BookingJoin { .. } | AdminWatch => one(Kind::Rooms),
        PresenceWatch { user_ids } => Some((
            Kind::Rooms,
            u32::try_from(user_ids.len()).unwrap_or(u32::MAX),
        )),
        ListingReserve { .. } => one(Kind::Reservations),
        BookingTransition { .. } => one(Kind::Transitions),
        ReadMark { .. } => one(Kind::Reads),
        MessageHistory { .. } => one(Kind::History),
        // On an auction or not: a bid on a listing that is not an auction
        // still costs a lookup.
        BidPlace { .. } => one(Kind::Bids),
        ListingUnwatch { .. }
        | BookingLeave { .. }
        | PresenceUnwatch { .. }
        | AdminUnwatch
        | AuthRefresh { .. } => None,
    }
}

/// A `rate_limited` refusal telling the client how long to wait.
pub fn rate_limited(message: impl Into<String>, retry_after_ms: u64) -> Failure {
    let mut failure = Failure::new(Code::RateLimited, message);
    failure
        .extra
        .insert("retryAfterMs".into(), json!(retry_after_ms.max(1)));
    failure
}

/// Locks the buckets are spread over, so that workers rarely wait.
const SHARDS: usize = 16;
/// Takes between sweeps of a shard's full buckets (which cost nothing to
/// forget: a new bucket starts full).
const SWEEP_EVERY: u32 = 4096;

/// A token bucket: `rate.burst` tokens at most, `rate.per_second` coming
/// back each second. Every bound on a rate in souk is one of these: per
/// user and kind of event here, per socket for token checks and per client
/// address for opens (`session::guard`).
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn full(rate: Rate, now: Instant) -> Self {
        TokenBucket {
            tokens: rate.burst,
            at: now,
        }
    }

    /// The tokens the bucket holds at `now`.
    fn tokens_at(&self, rate: Rate, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + elapsed * rate.per_second).min(rate.burst)
    }

    /// Takes `cost` tokens, or says how long until the bucket holds them.
    /// A cost above the burst is taken as the burst, so that it can pass
    /// once the bucket is full; a rate that is off never refuses.
    pub fn take(&mut self, rate: Rate, cost: f64, now: Instant) -> Result<(), Duration> {
        if !rate.is_on() {
            return Ok(());
        }
        let cost = cost.min(rate.burst);
        self.tokens = self.tokens_at(rate, now);
        self.at = now;
        if self.tokens >= cost {
            self.tokens -= cost;
            return Ok(());
        }
        if rate.per_second <= 0.0 {
            return Err(Duration::MAX);
        }
        Err(Duration::from_secs_f64(
            (cost - self.tokens) / rate.per_second,
        ))
    }

    /// Whether the bucket is full at `now` (then it is the same as a new
    /// one, and can be forgotten).
    pub fn is_full(&self, rate: Rate, now: Instant) -> bool {
        self.tokens_at(rate, now) >= rate.burst
    }
}

#[derive(Default)]
struct Shard {
    buckets: HashMap<(String, Kind), TokenBucket>,
    takes: u32,
}

/// Every user's buckets on this node.
pub struct Limiter {
    rates: Rates,
    shards: Vec<Mutex<Shard>>,
}

impl Limiter {
    pub fn new(rates: Rates) -> Self {
        Limiter {
            rates,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// Takes `cost` tokens of `user`'s `kind` bucket, or answers how many
    /// milliseconds until it holds them. A cost above the burst is taken
    /// as the burst, so that it can pass once the bucket is full.
    pub fn take(&self, user: &str, kind: Kind, cost: u32, now: Instant) -> Result<(), u64> {
        let rate = kind.rate(&self.rates);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        user.hash(&mut hasher);
        let index = (hasher.finish() % SHARDS as u64) as usize;
        let Some(shard) = self.shards.get(index) else {
            return Ok(());
        };
        // A poisoned lock only means a panic elsewhere mid-update; the
        // buckets are still numbers.
        let mut shard = shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        shard.takes = shard.takes.wrapping_add(1);
        if shard.takes % SWEEP_EVERY == 0 {
            let rates = self.rates;
            shard
                .buckets
                .retain(|(_, kind), bucket| !bucket.is_full(kind.rate(&rates), now));
        }
        shard
            .buckets
            .entry((user.to_owned(), kind))
            .or_insert_with(|| TokenBucket::full(rate, now))
            .take(rate, f64::from(cost), now)
            .map_err(|wait| u64::try_from(wait.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX))
    }

    /// Checks `event` against `user`'s bucket; a refusal is counted under
    /// the kind's label and answered `rate_limited`.
    pub fn check(&self, user: &str, event: &ClientEvent, metrics: &Metrics) -> Result<(), Failure> {
        match cost(event) {
            Some((kind, cost)) => self.charge(user, kind, cost, metrics),
            None => Ok(()),
        }
    }

    /// Takes `cost` of `user`'s `kind` bucket; a refusal is counted under
    /// the kind's label and answered `rate_limited`.
    pub fn charge(
        &self,
        user: &str,
        kind: Kind,
        cost: u32,
        metrics: &Metrics,
    ) -> Result<(), Failure> {
        self.take(user, kind, cost, Instant::now()).map_err(|wait| {
            metrics
                .limits_tripped
                .with_label_values(&[kind.label()])
                .inc();
            let rate = kind.rate(&self.rates);
            rate_limited(
                format!(
                    "at most {} of these a second (bursts of {})",
                    rate.per_second, rate.burst
                ),
                wait,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn rates(per_second: f64, burst: f64) -> Rates {
        let r = Rate { per_second, burst };
        Rates {
            messages: r,
            typing: r,
            rooms: r,
            reservations: r,
            transitions: r,
            reads: r,
            history: r,
            bids: r,
            pages: r,
        }
    }

    #[test]
    fn a_bucket_gives_its_burst_then_refills_at_its_rate() {
        const RATE: Rate = Rate {
            per_second: 2.0,
            burst: 3.0,
        };
        let start = Instant::now();
        let mut bucket = TokenBucket::full(RATE, start);
        for _ in 0..3 {
            assert_eq!(bucket.take(RATE, 1.0, start), Ok(()));
        }
        let wait = bucket.take(RATE, 1.0, start).err();
        assert_eq!(wait, Some(Duration::from_millis(500)));
        assert_eq!(
            bucket.take(RATE, 1.0, start + Duration::from_millis(500)),
            Ok(())
        );
        assert!(bucket
            .take(RATE, 1.0, start + Duration::from_millis(500))
            .is_err());
        // Never more than the burst, however long it waits.
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(bucket.take(RATE, 1.0, later), Ok(()));
        }
        assert!(bucket.take(RATE, 1.0, later).is_err());
        let off = Rate {
            per_second: 0.0,
            burst: 0.0,
        };
        assert_eq!(bucket.take(off, 1.0, later), Ok(()));
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let limiter = Limiter::new(rates(10.0, 3.0));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take("ann", Kind::Messages, 1, t0), Ok(()));
        }
        assert_eq!(limiter.take("ann", Kind::Messages, 1, t0), Err(100));
        // Other users and other kinds have their own buckets.
        assert_eq!(limiter.take("bob", Kind::Messages, 1, t0), Ok(()));
        assert_eq!(limiter.take("ann", Kind::Typing, 1, t0), Ok(()));
        // 100 ms brings one token back.
        let later = t0 + Duration::from_millis(100);
        assert_eq!(limiter.take("ann", Kind::Messages, 1, later), Ok(()));
        assert!(limiter.take("ann", Kind::Messages, 1, later).is_err());
    }

    #[test]
    fn a_cost_above_the_burst_waits_for_a_full_bucket() {
        let limiter = Limiter::new(rates(10.0, 5.0));
        let t0 = Instant::now();
        assert_eq!(limiter.take("ann", Kind::Rooms, 100, t0), Ok(()));
        assert_eq!(limiter.take("ann", Kind::Rooms, 100, t0), Err(500));
    }
}
