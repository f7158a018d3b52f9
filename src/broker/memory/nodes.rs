//! The cluster view in memory: each node's entry lives `ttl` after its last
//! beat. On the memory broker that is this node alone, but the rule is the
//! one Redis keeps.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::{lock, Expiring, MemoryBroker};
use crate::broker::Nodes;
use crate::store::StoreError;

#[derive(Default)]
pub(super) struct State {
    /// By node id, so that `live` lists them in that order.
    entries: BTreeMap<String, Expiring<Value>>,
}

impl Nodes for MemoryBroker {
    async fn beat(&self, node: &str, entry: &Value, ttl: Duration) -> Result<(), StoreError> {
        let now = Instant::now();
        lock(&self.inner.nodes)
            .entries
            .insert(node.to_owned(), Expiring::new(entry.clone(), ttl, now));
        Ok(())
    }

    async fn leave(&self, node: &str) -> Result<(), StoreError> {
        lock(&self.inner.nodes).entries.remove(node);
        Ok(())
    }

    async fn live(&self) -> Result<Vec<Value>, StoreError> {
        let now = Instant::now();
        let mut state = lock(&self.inner.nodes);
        state.entries.retain(|_, entry| entry.alive(now));
        Ok(state
            .entries
            .values()
            .map(|entry| entry.value.clone())
            .collect())
    }
}
