//! Throttles in memory: a mark per key that lives `ttl` (Redis's
//! `SET … NX PX`).

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::{alive, lock, Expiring, MemoryBroker, Purge};
use crate::broker::{Throttle, Throttles};
use crate::store::StoreError;

#[derive(Default)]
pub(super) struct State {
    marks: HashMap<Throttle, Expiring<()>>,
    purge: Purge,
}

#[cfg(test)]
impl State {
    pub(super) fn held(&self) -> usize {
        self.marks.len()
    }
}

impl Throttles for MemoryBroker {
    async fn once(&self, key: &Throttle, ttl: Duration) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut state = lock(&self.inner.throttles);
        if state.purge.due(now) {
            state.marks.retain(|_, mark| mark.alive(now));
        }
        if alive(&mut state.marks, key, now).is_some() {
            return Ok(false);
        }
        state.marks.insert(key.clone(), Expiring::new((), ttl, now));
        Ok(true)
    }

    async fn reset(&self, key: &Throttle) -> Result<(), StoreError> {
        lock(&self.inner.throttles).marks.remove(key);
        Ok(())
    }
}
