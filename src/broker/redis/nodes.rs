//! The cluster view in Redis: each node's entry under a key with a TTL,
//! and a set of the node ids that have written one.
//!
//! Keyspace (prefix `souk:` by default); the `{nodes}` hash tag keeps them
//! in one Redis Cluster slot, so a beat's pipeline stays in one slot:
//! - `souk:{nodes}:node:<node>`: the node's entry, JSON (`PX` the TTL).
//! - `souk:{nodes}:all`: a set of node ids; `live` drops those whose entry
//!   expired.

use std::time::Duration;

use serde_json::Value;

use super::{Redis, RedisBroker};
use crate::broker::Nodes;
use crate::store::StoreError;

fn node_key(redis: &Redis, node: &str) -> String {
    redis.key(&["{nodes}", "node", node])
}

fn nodes_set(redis: &Redis) -> String {
    redis.key(&["{nodes}", "all"])
}

impl Nodes for RedisBroker {
    async fn beat(&self, node: &str, entry: &Value, ttl: Duration) -> Result<(), StoreError> {
        let redis = &self.redis;
        let mut conn = redis.connection().await?;
        let () = deadpool_redis::redis::pipe()
            .cmd("SET")
            .arg(node_key(redis, node))
            .arg(entry.to_string())
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .ignore()
            .cmd("SADD")
            .arg(nodes_set(redis))
            .arg(node)
            .ignore()
            .query_async(&mut *conn)
            .await?;
        Ok(())
    }

    async fn leave(&self, node: &str) -> Result<(), StoreError> {
        let redis = &self.redis;
        let mut conn = redis.connection().await?;
        let () = deadpool_redis::redis::pipe()
            .cmd("DEL")
            .arg(node_key(redis, node))
            .ignore()
            .cmd("SREM")
            .arg(nodes_set(redis))
            .arg(node)
            .ignore()
            .query_async(&mut *conn)
            .await?;
        Ok(())
    }

    /// Also forgets the nodes whose entry expired.
    async fn live(&self) -> Result<Vec<Value>, StoreError> {
        let redis = &self.redis;
        let mut conn = redis.connection().await?;
        let mut ids: Vec<String> = deadpool_redis::redis::cmd("SMEMBERS")
            .arg(nodes_set(redis))
            .query_async(&mut *conn)
            .await?;
        ids.sort();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| node_key(redis, id)).collect();
        let entries: Vec<Option<String>> = deadpool_redis::redis::cmd("MGET")
            .arg(keys)
            .query_async(&mut *conn)
            .await?;
        let mut live = Vec::new();
        let mut gone = Vec::new();
        for (id, entry) in ids.into_iter().zip(entries) {
            match entry.and_then(|text| serde_json::from_str::<Value>(&text).ok()) {
                Some(entry) => live.push(entry),
                None => gone.push(id),
            }
        }
        if !gone.is_empty() {
            let _: i64 = deadpool_redis::redis::cmd("SREM")
                .arg(nodes_set(redis))
                .arg(gone)
                .query_async(&mut *conn)
                .await?;
        }
        Ok(live)
    }
}
