//! The memory broker: everything the traits promise, kept in this process.
//! It gives the answers Redis gives on one node (the conformance suite runs
//! both), for `SOUK_REDIS_URL=memory`: trying souk, a small marketplace on
//! one machine, and tests of rooms and handlers without services.
//!
//! Each concern keeps its own state behind its own mutex, locked for one
//! step and never across an await: that step is what a Redis script is on
//! the other side, so every answer sees one consistent state.
//!
//! Time is tokio's clock ([`Instant`]), so tests can pause and advance it.
//! Whatever expires is dropped when it is next looked at, and everything
//! else at most once a second by a sweep over the concern's maps
//! ([`Purge`]): memory stays bounded by what is alive.

mod auctions;
mod events;
mod nodes;
mod only_node;
mod presence;
mod records;
mod throttles;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::store::StoreError;

pub use only_node::{OnlyNode, OnlyNodeError};

/// The memory broker; cheap to clone (clones share one state).
#[derive(Clone, Default)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    events: Mutex<events::State>,
    presence: Mutex<presence::State>,
    throttles: Mutex<throttles::State>,
    records: Mutex<records::State>,
    auctions: Mutex<auctions::State>,
    nodes: Mutex<nodes::State>,
}

impl MemoryBroker {
    pub fn new() -> Self {
        MemoryBroker::default()
    }

    /// Always answers: there is nothing to reach.
    pub async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Locks `state`. A panic while it was held left it as that step left it;
/// every step writes whole values, so carrying on is sound.
fn lock<T>(state: &Mutex<T>) -> MutexGuard<'_, T> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// When a concern's maps were last swept of what expired.
#[derive(Debug)]
struct Purge {
    next: Instant,
}

/// How often a concern sweeps its maps.
const PURGE_EVERY: Duration = Duration::from_secs(1);

impl Default for Purge {
    fn default() -> Self {
        Purge {
            next: Instant::now(),
        }
    }
}

impl Purge {
    /// True at most once per [`PURGE_EVERY`]: time to sweep.
    fn due(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.next = now + PURGE_EVERY;
        true
    }
}

/// A value that lives until `until` (a Redis key with a TTL).
#[derive(Debug, Clone)]
struct Expiring<T> {
    value: T,
    until: Instant,
}

impl<T> Expiring<T> {
    fn new(value: T, ttl: Duration, now: Instant) -> Self {
        Expiring {
            value,
            until: now + ttl,
        }
    }

    fn alive(&self, now: Instant) -> bool {
        now < self.until
    }
}

/// The live value under `key` of `map`, dropping it if it expired.
fn alive<'a, K, T>(
    map: &'a mut std::collections::HashMap<K, Expiring<T>>,
    key: &K,
    now: Instant,
) -> Option<&'a mut T>
where
    K: std::hash::Hash + Eq,
{
    if map.get(key).is_some_and(|entry| !entry.alive(now)) {
        map.remove(key);
    }
    map.get_mut(key).map(|entry| &mut entry.value)
}

/// Milliseconds from `now` to `until`, at least 1 (Redis's PTTL of a live
/// key).
fn millis_left(until: Instant, now: Instant) -> i64 {
    i64::try_from(until.saturating_duration_since(now).as_millis())
        .unwrap_or(i64::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    //! What the conformance suite cannot see: memory stays bounded, and
    //! long expiries (a day) expire, on tokio's paused clock.

    use std::time::Duration;

    use chrono::Utc;

    use super::*;
    use crate::broker::*;
    use crate::ids::RoomKey;
    use crate::ids::{BookingId, ListingId, UserId};

    fn user(n: usize) -> UserId {
        UserId::parse(&format!("u{n}")).unwrap_or_else(|| panic!("a user id"))
    }

    fn typing(n: usize) -> Throttle {
        Throttle::Typing {
            booking: BookingId::parse("b1").unwrap_or_else(|| panic!("a booking id")),
            user: user(n),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn what_expired_is_purged_so_memory_is_bounded_by_what_is_alive() {
        let broker = MemoryBroker::new();
        let ttl = Duration::from_secs(5);
        let users: Vec<UserId> = (0..100).map(user).collect();
        let saves: Vec<Save> = (0..100)
            .map(|n| Save {
                pid: format!("p{n}"),
                owner: "n/s".to_owned(),
                changes: Changes::whole(format!("u{n}"), std::iter::empty()),
            })
            .collect();
        let rooms: Vec<Publication> = (0..100)
            .map(|n| Publication {
                room: RoomKey::parse(&format!("listing:l{n}")).unwrap_or_else(|| panic!("a room")),
                emission: 0,
                head: "42[\"x\"".to_owned(),
                except: None,
                version: None,
            })
            .collect();
        let limits = LogLimits { ttl, max_len: 10 };
        for n in 0..100 {
            assert!(broker.once(&typing(n), ttl).await.unwrap_or(false));
        }
        let refreshed = broker.refresh(&users, ttl, Utc::now()).await;
        assert_eq!(refreshed.map(|r| r.len()).ok(), Some(100));
        assert_eq!(broker.save(&saves, ttl).await.ok(), Some(Saved::default()));
        assert!(broker
            .publish(&rooms, limits)
            .await
            .iter()
            .all(Result::is_ok));
        assert_eq!(lock(&broker.inner.throttles).held(), 100);
        assert_eq!(lock(&broker.inner.presence).held(), 300);
        assert_eq!(lock(&broker.inner.records).held(), 100);
        assert_eq!(lock(&broker.inner.events).held().0, 100);

        tokio::time::advance(ttl + PURGE_EVERY).await;
        // The next call of each concern sweeps it.
        assert!(broker.once(&typing(0), ttl).await.unwrap_or(false));
        assert_eq!(lock(&broker.inner.throttles).held(), 1);
        let gone = broker
            .sweep(Utc::now() + chrono::Duration::seconds(6))
            .await;
        assert_eq!(gone.map(|g| g.len()).ok(), Some(100));
        assert!(broker.refresh(&users[..1], ttl, Utc::now()).await.is_ok());
        // The last-seen times stay (30 days); the rest went.
        assert_eq!(lock(&broker.inner.presence).held(), 100 + 2);
        assert!(broker.save(&saves[..1], ttl).await.is_ok());
        assert_eq!(lock(&broker.inner.records).held(), 1);
        assert!(broker
            .publish(&rooms[..1], limits)
            .await
            .iter()
            .all(Result::is_ok));
        assert_eq!(lock(&broker.inner.events).held().0, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_log_holds_max_len_events() {
        let broker = MemoryBroker::new();
        let room = RoomKey::parse("listing:l1").unwrap_or_else(|| panic!("a room"));
        let publication = Publication {
            room: room.clone(),
            emission: 0,
            head: "42[\"x\"".to_owned(),
            except: None,
            version: None,
        };
        let limits = LogLimits {
            ttl: Duration::from_secs(60),
            max_len: 3,
        };
        for _ in 0..50 {
            let published = broker
                .publish(std::slice::from_ref(&publication), limits)
                .await;
            assert!(published.iter().all(Result::is_ok));
        }
        assert_eq!(lock(&broker.inner.events).held().0, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_bid_key_is_remembered_for_a_day_and_a_rate_window_for_its_length() {
        let broker = MemoryBroker::new();
        let listing = ListingId::parse("l1").unwrap_or_else(|| panic!("a listing id"));
        let now = Utc::now().timestamp_millis();
        let day = 24 * 3600 * 1000;
        let mut state = crate::broker::conformance::open_auction(now);
        state.ends_ms = now + 10 * day;
        assert!(broker.load(&listing, &state, &[]).await.is_ok());
        let bidder = user(1);
        let bid = |amount| BidRequest {
            listing: &listing,
            bidder: &bidder,
            amount,
            key: Some("k"),
            now_ms: now,
            vouched: false,
        };
        let limit = RateLimit {
            per_window: 100,
            window_ms: 1000,
        };
        let one = |placed: Result<Vec<Placed>, StoreError>| placed.ok()?.into_iter().next();
        let first = one(broker.place_all(&[bid(100)], limit).await);
        assert!(matches!(first, Some(Placed::Decided(Outcome::Accepted(_)))));
        tokio::time::advance(Duration::from_secs(23 * 3600)).await;
        let again = one(broker.place_all(&[bid(500)], limit).await);
        assert!(matches!(again, Some(Placed::Repeat(Outcome::Accepted(_)))));
        tokio::time::advance(Duration::from_secs(3600)).await;
        let after_a_day = one(broker.place_all(&[bid(105)], limit).await);
        assert_eq!(
            after_a_day,
            Some(Placed::Decided(Outcome::TooLow { min: 110 }))
        );
        // One key and one rate window are left.
        assert_eq!(lock(&broker.inner.auctions).held(), 2);
    }

    #[actix_web::test]
    async fn a_subscription_whose_handles_are_gone_is_forgotten() {
        use actix::Actor;

        struct Sink;
        impl actix::Actor for Sink {
            type Context = actix::Context<Self>;
        }
        impl actix::Handler<Arrival> for Sink {
            type Result = ();
            fn handle(&mut self, _: Arrival, _: &mut actix::Context<Self>) {}
        }

        let broker = MemoryBroker::new();
        let subscription = broker.subscribe(Sink.start().recipient());
        assert_eq!(lock(&broker.inner.events).held().1, 1);
        drop(subscription);
        for _ in 0..100 {
            if lock(&broker.inner.events).held().1 == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the follower is still kept");
    }
}
