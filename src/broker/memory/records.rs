//! Session records in memory, with the rules of the Redis scripts: a
//! record lives `window` after its last save, only its owner saves it, a
//! claim needs the record's user and no other claim in progress, and makes
//! the claimer the owner for 10 s or until it binds or releases.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::{alive, lock, Expiring, MemoryBroker, Purge};
use crate::broker::{Claim, Record, Records, Save, Saved, CLAIM_HOLD};
use crate::store::StoreError;

#[derive(Default)]
pub(super) struct State {
    records: HashMap<String, Expiring<Kept>>,
    purge: Purge,
}

#[cfg(test)]
impl State {
    pub(super) fn held(&self) -> usize {
        self.records.len()
    }
}

/// One record. A record is only ever written with its user and owner.
struct Kept {
    user: String,
    owner: String,
    /// Until when (ms, the claimer's clock) a claim in progress holds it.
    claimed_until: Option<i64>,
    rooms: BTreeSet<String>,
}

impl Records for MemoryBroker {
    async fn save(&self, saves: &[Save], window: Duration) -> Result<Saved, StoreError> {
        let now = Instant::now();
        let mut state = lock(&self.inner.records);
        if state.purge.due(now) {
            state.records.retain(|_, record| record.alive(now));
        }
        let mut saved = Saved::default();
        for save in saves {
            let changes = &save.changes;
            let ours =
                alive(&mut state.records, &save.pid, now).map(|kept| kept.owner == save.owner);
            match (ours, &changes.bind) {
                // Another socket claimed it: its owner writes it now.
                (Some(false), _) => {
                    saved.taken.push(save.pid.clone());
                    continue;
                }
                (None, None) => {
                    saved.gone.push(save.pid.clone());
                    continue;
                }
                (None, Some(user)) => {
                    let kept = Kept {
                        user: user.clone(),
                        owner: save.owner.clone(),
                        claimed_until: None,
                        rooms: BTreeSet::new(),
                    };
                    state
                        .records
                        .insert(save.pid.clone(), Expiring::new(kept, window, now));
                }
                (Some(true), _) => {}
            }
            let Some(entry) = state.records.get_mut(&save.pid) else {
                continue;
            };
            let kept = &mut entry.value;
            if let Some(user) = &changes.bind {
                // Binding ends the claim that led to it.
                kept.user = user.clone();
                kept.claimed_until = None;
            }
            kept.rooms.extend(changes.joined.iter().cloned());
            for room in &changes.left {
                kept.rooms.remove(room);
            }
            entry.until = now + window;
        }
        Ok(saved)
    }

    async fn claim(
        &self,
        pid: &str,
        user: &str,
        claimer: &str,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let now_ms = now.timestamp_millis();
        let mut state = lock(&self.inner.records);
        let Some(kept) = alive(&mut state.records, &pid.to_owned(), Instant::now()) else {
            return Ok(Claim::Missing);
        };
        if kept.user != user {
            return Ok(Claim::Missing);
        }
        if kept.claimed_until.is_some_and(|until| until > now_ms) {
            return Ok(Claim::Busy);
        }
        kept.owner = claimer.to_owned();
        kept.claimed_until = Some(now_ms + CLAIM_HOLD.as_millis() as i64);
        Ok(Claim::Got(Record {
            user: user.to_owned(),
            rooms: kept.rooms.iter().cloned().collect(),
        }))
    }

    async fn release(&self, pid: &str, claimer: &str) -> Result<(), StoreError> {
        let mut state = lock(&self.inner.records);
        if let Some(kept) = alive(&mut state.records, &pid.to_owned(), Instant::now()) {
            if kept.owner == claimer {
                kept.claimed_until = None;
            }
        }
        Ok(())
    }
}
