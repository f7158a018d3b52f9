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
