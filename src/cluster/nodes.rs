//! The cluster view: each node writes a key with a TTL every heartbeat,
//! holding its connection and room counts; `GET /api/v1/cluster` lists the
//! nodes whose key is alive.

use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use serde_json::{json, Value};

use crate::broker::redis::Redis;
use crate::rooms::registry::{GetStats, Registry};
use crate::store::StoreError;
use crate::time::rfc3339;

/// A node's key lives this many heartbeats.
const TTL_BEATS: u32 = 3;

/// The cluster view's keys share one Redis Cluster hash tag, so a beat's
/// pipeline stays in one slot.
fn node_key(redis: &Redis, node: &str) -> String {
    redis.key(&["{nodes}", "node", node])
}

fn nodes_set(redis: &Redis) -> String {
    redis.key(&["{nodes}", "all"])
}

/// Writes this node's entry every heartbeat.
pub struct NodeBeacon {
    node_id: String,
    address: String,
    started_at: String,
    every: Duration,
    redis: Redis,
    registry: Addr<Registry>,
}

impl NodeBeacon {
    pub fn new(
        node_id: String,
        address: String,
        every: Duration,
        redis: Redis,
        registry: Addr<Registry>,
    ) -> Self {
        NodeBeacon {
            node_id,
            address,
            started_at: rfc3339(Utc::now()),
            every,
            redis,
            registry,
        }
    }

    fn beat(&self, ctx: &mut Context<Self>) {
        let registry = self.registry.clone();
        let redis = self.redis.clone();
        let ttl = self.every * TTL_BEATS;
        let (node, address, started) = (
            self.node_id.clone(),
            self.address.clone(),
            self.started_at.clone(),
        );
        ctx.spawn(
            async move {
                let Ok(stats) = registry.send(GetStats).await else {
                    return;
                };
                let entry = json!({
                    "nodeId": node,
                    "address": address,
                    "connections": stats.sessions,
                    "rooms": stats.rooms,
                    "startedAt": started,
                    "updatedAt": rfc3339(Utc::now()),
                });
                if let Err(err) = write(&redis, &node, &entry, ttl).await {
                    log::warn!("cluster heartbeat failed: {err}");
                }
            }
            .into_actor(self),
        );
    }
}

async fn write(redis: &Redis, node: &str, entry: &Value, ttl: Duration) -> Result<(), StoreError> {
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

impl Actor for NodeBeacon {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.beat(ctx);
        ctx.run_interval(self.every, |beacon, ctx| beacon.beat(ctx));
    }
}

/// The node is stopping: remove its entry and beat no more.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave;

impl Handler<Leave> for NodeBeacon {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: Leave, _: &mut Context<Self>) -> Self::Result {
        let (redis, node) = (self.redis.clone(), self.node_id.clone());
        Box::pin(
            async move {
                if let Err(err) = leave(&redis, &node).await {
                    log::warn!("cannot leave the cluster view: {err}");
                }
            }
            .into_actor(self)
            .map(|(), _, ctx| ctx.stop()),
        )
    }
}

/// Removes a node's entry.
async fn leave(redis: &Redis, node: &str) -> Result<(), StoreError> {
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

/// Every live node's entry, by node id; forgets nodes whose key expired.
pub async fn live(redis: &Redis) -> Result<Vec<Value>, StoreError> {
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
