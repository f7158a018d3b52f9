//! The node's entry in the cluster view: every heartbeat it writes its
//! connection and room counts through the broker's `Nodes` (listed for
//! three heartbeats), and removes it when the node stops;
//! `GET /api/v1/cluster` lists the live entries.

use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use serde_json::json;

use crate::broker::{Broker, Nodes};
use crate::rooms::registry::{GetStats, Registry};
use crate::time::rfc3339;

/// A node's entry lives this many heartbeats.
const TTL_BEATS: u32 = 3;

/// Writes this node's entry every heartbeat.
pub struct NodeBeacon {
    node_id: String,
    address: String,
    started_at: String,
    every: Duration,
    broker: Broker,
    registry: Addr<Registry>,
}

impl NodeBeacon {
    pub fn new(
        node_id: String,
        address: String,
        every: Duration,
        broker: Broker,
        registry: Addr<Registry>,
    ) -> Self {
        NodeBeacon {
            node_id,
            address,
            started_at: rfc3339(Utc::now()),
            every,
            broker,
            registry,
        }
    }

    fn beat(&self, ctx: &mut Context<Self>) {
        let registry = self.registry.clone();
        let broker = self.broker.clone();
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
                if let Err(err) = broker.beat(&node, &entry, ttl).await {
                    log::warn!("cluster heartbeat failed: {err}");
                }
            }
            .into_actor(self),
        );
    }
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
        let (broker, node) = (self.broker.clone(), self.node_id.clone());
        Box::pin(
            async move {
                if let Err(err) = broker.leave(&node).await {
                    log::warn!("cannot leave the cluster view: {err}");
                }
            }
            .into_actor(self)
            .map(|(), _, ctx| ctx.stop()),
        )
    }
}
