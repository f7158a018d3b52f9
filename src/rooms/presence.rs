//! Presence: a user is online while any of their connections lives on any
//! node. Each node refreshes its connected users through the broker's
//! `Presence` (TTL, default 60 s); a disconnect removes nothing, so a quick
//! reconnect never flickers. Transitions are announced to `presence:{id}`:
//! online when a refresh finds the user offline, offline when a node's
//! sweep finds their presence expired.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use serde_json::{json, Value};

use super::RoomKey;
use crate::broker::{Broker, Fanout, Presence};
use crate::ids::UserId;
use crate::protocol::events::ServerEvent;
use crate::store::StoreError;
use crate::time::rfc3339;

/// Keeps this node's users' presence fresh and announces transitions.
pub struct PresenceTracker {
    broker: Broker,
    fanout: Fanout,
    ttl: Duration,
    /// Live connections per user on this node.
    local: HashMap<UserId, usize>,
    /// Users who just connected, waiting for the refresh in flight to
    /// finish; one such refresh at a time, so a burst of connections makes
    /// one task instead of one each.
    arrived: Vec<UserId>,
    refreshing: bool,
}

impl PresenceTracker {
    pub fn new(broker: Broker, fanout: Fanout, ttl: Duration) -> Self {
        PresenceTracker {
            broker,
            fanout,
            ttl,
            local: HashMap::new(),
            arrived: Vec::new(),
            refreshing: false,
        }
    }

    /// Refreshes the users who connected: at once when no such refresh is
    /// in flight, else with the next one.
    fn refresh_arrived(&mut self, ctx: &mut Context<Self>) {
        if self.refreshing || self.arrived.is_empty() {
            return;
        }
        self.refreshing = true;
        let users = std::mem::take(&mut self.arrived);
        let (broker, fanout, ttl) = (self.broker.clone(), self.fanout.clone(), self.ttl);
        let done = async move {
            if let Err(err) = refresh(&broker, &fanout, ttl, &users).await {
                log::warn!("presence refresh failed: {err}");
            }
        };
        ctx.spawn(done.into_actor(self).map(|(), tracker, ctx| {
            tracker.refreshing = false;
            tracker.refresh_arrived(ctx);
        }));
    }

    fn refresh(&self, users: Vec<UserId>) {
        if users.is_empty() {
            return;
        }
        let (broker, fanout, ttl) = (self.broker.clone(), self.fanout.clone(), self.ttl);
        actix_web::rt::spawn(async move {
            if let Err(err) = refresh(&broker, &fanout, ttl, &users).await {
                log::warn!("presence refresh failed: {err}");
            }
        });
    }

    fn sweep(&self) {
        let (broker, fanout) = (self.broker.clone(), self.fanout.clone());
        actix_web::rt::spawn(async move {
            if let Err(err) = sweep(&broker, &fanout).await {
                log::warn!("presence sweep failed: {err}");
            }
        });
    }
}

async fn refresh(
    broker: &Broker,
    fanout: &Fanout,
    ttl: Duration,
    users: &[UserId],
) -> Result<(), StoreError> {
    let now = Utc::now();
    let arrived = broker.refresh(users, ttl, now).await?;
    let seen = Value::String(rfc3339(now));
    for user in &arrived {
        announce(fanout, user, true, seen.clone());
    }
    Ok(())
}

async fn sweep(broker: &Broker, fanout: &Fanout) -> Result<(), StoreError> {
    for (user, last_seen) in broker.sweep(Utc::now()).await? {
        announce(
            fanout,
            &user,
            false,
            last_seen.map_or(Value::Null, Value::String),
        );
    }
    Ok(())
}

fn announce(fanout: &Fanout, user: &UserId, online: bool, last_seen: Value) {
    let changed = ServerEvent::PresenceChanged {
        user_id: user.clone(),
        online,
        last_seen: last_seen.as_str().map(str::to_owned),
    };
    fanout.emit(RoomKey::Presence(user.clone()), changed);
}

/// Reads users' presence: `{userId: {online, lastSeen}}`.
pub async fn states(broker: &Broker, users: &[UserId]) -> Result<Value, StoreError> {
    let states = broker.states(users).await?;
    let mut out = serde_json::Map::new();
    for (user, state) in users.iter().zip(states) {
        out.insert(
            user.to_string(),
            json!({ "online": state.online, "lastSeen": state.last_seen }),
        );
    }
    Ok(Value::Object(out))
}

impl Actor for PresenceTracker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.ttl / 3, |tracker, _| {
            tracker.refresh(tracker.local.keys().cloned().collect());
        });
        let sweep_every = (self.ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        ctx.run_interval(sweep_every, |tracker, _| tracker.sweep());
    }
}

/// A connection of `user` CONNECTed on this node.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connected(pub UserId);

/// A connection of `user` on this node closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnected(pub UserId);

impl Handler<Connected> for PresenceTracker {
    type Result = ();
    fn handle(&mut self, msg: Connected, ctx: &mut Context<Self>) {
        let count = self.local.entry(msg.0.clone()).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.arrived.push(msg.0);
            self.refresh_arrived(ctx);
        }
    }
}

impl Handler<Disconnected> for PresenceTracker {
    type Result = ();
    fn handle(&mut self, msg: Disconnected, _: &mut Context<Self>) {
        if let Some(count) = self.local.get_mut(&msg.0) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.local.remove(&msg.0);
            }
        }
    }
}
