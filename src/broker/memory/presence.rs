//! Presence in memory, as the Redis scripts keep it: an online mark that
//! lives `ttl` on the broker's clock, a last-seen time kept 30 days, and a
//! due time per user (the caller's `now` + `ttl`) that the sweep takes. A
//! user the sweep takes is reported only if their mark has expired too, and
//! taking them removes them, so each expiry is reported once.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::{alive, lock, Expiring, MemoryBroker, Purge};
use crate::broker::{Presence, PresenceState, LAST_SEEN_KEPT};
use crate::ids::UserId;
use crate::store::StoreError;
use crate::time::rfc3339;

#[derive(Default)]
pub(super) struct State {
    /// Users online, with the time they were last refreshed.
    online: HashMap<UserId, Expiring<()>>,
    last_seen: HashMap<UserId, Expiring<String>>,
    /// When each refreshed user is due to be looked at by a sweep (ms).
    due: HashMap<UserId, i64>,
    purge: Purge,
}

#[cfg(test)]
impl State {
    /// Entries of every map.
    pub(super) fn held(&self) -> usize {
        self.online.len() + self.last_seen.len() + self.due.len()
    }
}

impl Presence for MemoryBroker {
    async fn refresh(
        &self,
        users: &[UserId],
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<UserId>, StoreError> {
        let clock = Instant::now();
        let seen = rfc3339(now);
        let due = now.timestamp_millis() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let mut state = lock(&self.inner.presence);
        if state.purge.due(clock) {
            state.online.retain(|_, mark| mark.alive(clock));
            state.last_seen.retain(|_, seen| seen.alive(clock));
        }
        let mut arrived = Vec::new();
        for user in users {
            if alive(&mut state.online, user, clock).is_none() {
                arrived.push(user.clone());
            }
            state
                .online
                .insert(user.clone(), Expiring::new((), ttl, clock));
            state.last_seen.insert(
                user.clone(),
                Expiring::new(seen.clone(), LAST_SEEN_KEPT, clock),
            );
            state.due.insert(user.clone(), due);
        }
        Ok(arrived)
    }

    async fn sweep(&self, now: DateTime<Utc>) -> Result<Vec<(UserId, Option<String>)>, StoreError> {
        let clock = Instant::now();
        let now_ms = now.timestamp_millis();
        let mut state = lock(&self.inner.presence);
        let mut taken: Vec<UserId> = state
            .due
            .iter()
            .filter(|(_, due)| **due <= now_ms)
            .map(|(user, _)| user.clone())
            .collect();
        taken.sort();
        let mut gone = Vec::new();
        for user in taken {
            state.due.remove(&user);
            if alive(&mut state.online, &user, clock).is_none() {
                let seen = alive(&mut state.last_seen, &user, clock).cloned();
                gone.push((user, seen));
            }
        }
        Ok(gone)
    }

    async fn states(&self, users: &[UserId]) -> Result<Vec<PresenceState>, StoreError> {
        let clock = Instant::now();
        let mut state = lock(&self.inner.presence);
        Ok(users
            .iter()
            .map(|user| PresenceState {
                online: alive(&mut state.online, user, clock).is_some(),
                last_seen: alive(&mut state.last_seen, user, clock).cloned(),
            })
            .collect())
    }
}
