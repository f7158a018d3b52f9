//! Presence: a user is online while any of their connections lives on any
//! node. Each node refreshes a Redis key per connected user (TTL, default
//! 60 s); a disconnect deletes nothing, so a quick reconnect never flickers.
//! Transitions are announced to `presence:{id}`: online when a refresh finds
//! no key, offline when a node's sweep finds the key expired.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use deadpool_redis::redis::Script;
use serde_json::{json, Value};

use super::RoomKey;
use crate::broker::redis::Redis;
use crate::cluster::Fanout;
use crate::ids::UserId;
use crate::protocol::events::ServerEvent;
use crate::store::StoreError;
use crate::time::rfc3339;

/// Users a sweep handles at most, per bucket.
const SWEEP_BATCH: usize = 200;

/// Users are spread over this many buckets. A user's keys and the expiry
/// set that lists them share a bucket's Redis Cluster hash tag, so each
/// script touches one slot, and the sweep takes the buckets one by one.
const BUCKETS: u32 = 16;

/// The bucket of `user`: FNV-1a of the id, the same on every node.
fn bucket(user: &str) -> u32 {
    let hash = user.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    hash % BUCKETS
}

/// The start of every key of a bucket: `souk:{presence-3}:`.
fn bucket_prefix(redis: &Redis, bucket: u32) -> String {
    format!("{}{{presence-{bucket}}}:", redis.prefix())
}

fn expiry_set(redis: &Redis, bucket: u32) -> String {
    format!("{}expiry", bucket_prefix(redis, bucket))
}

fn online_key(redis: &Redis, user: &str) -> String {
    format!("{}presence:{user}", bucket_prefix(redis, bucket(user)))
}

fn last_seen_key(redis: &Redis, user: &str) -> String {
    format!("{}lastseen:{user}", bucket_prefix(redis, bucket(user)))
}

/// Sets the online key and the last-seen time (kept 30 days); returns
/// whether the online key existed.
const REFRESH: &str = r"
local existed = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[1], 'EX', 2592000)
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
return existed
";

/// Takes a bucket's users whose key should have expired; returns those now
/// offline, each followed by their last-seen time. ZREM makes one node the
/// announcer. ARGV[3] is the bucket's key prefix: the keys built from it
/// are in the bucket's slot.
const SWEEP: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local gone = {}
for _, user in ipairs(due) do
  if redis.call('ZREM', KEYS[1], user) == 1 and redis.call('EXISTS', ARGV[3] .. 'presence:' .. user) == 0 then
    table.insert(gone, user)
    table.insert(gone, redis.call('GET', ARGV[3] .. 'lastseen:' .. user) or '')
  end
end
return gone
";

/// Keeps this node's users' presence keys fresh and announces transitions.
pub struct PresenceTracker {
    redis: Redis,
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
    pub fn new(redis: Redis, fanout: Fanout, ttl: Duration) -> Self {
        PresenceTracker {
            redis,
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
        let (redis, fanout, ttl) = (self.redis.clone(), self.fanout.clone(), self.ttl);
        let done = async move {
            if let Err(err) = refresh(&redis, &fanout, ttl, &users).await {
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
        let (redis, fanout, ttl) = (self.redis.clone(), self.fanout.clone(), self.ttl);
        actix_web::rt::spawn(async move {
            if let Err(err) = refresh(&redis, &fanout, ttl, &users).await {
                log::warn!("presence refresh failed: {err}");
            }
        });
    }

    fn sweep(&self) {
        let (redis, fanout) = (self.redis.clone(), self.fanout.clone());
        actix_web::rt::spawn(async move {
            if let Err(err) = sweep(&redis, &fanout).await {
                log::warn!("presence sweep failed: {err}");
            }
        });
    }
}

async fn refresh(
    redis: &Redis,
    fanout: &Fanout,
    ttl: Duration,
    users: &[UserId],
) -> Result<(), StoreError> {
    let mut conn = redis.connection().await?;
    let now = Utc::now();
    let seen = rfc3339(now);
    let expires_ms = now.timestamp_millis() + ttl.as_millis() as i64;
    let script = Script::new(REFRESH);
    for user in users {
        let existed: i64 = script
            .key(online_key(redis, user.as_str()))
            .key(last_seen_key(redis, user.as_str()))
            .key(expiry_set(redis, bucket(user.as_str())))
            .arg(&seen)
            .arg(ttl.as_millis() as u64)
            .arg(expires_ms)
            .arg(user.as_str())
            .invoke_async(&mut *conn)
            .await?;
        if existed == 0 {
            announce(fanout, user, true, Value::String(seen.clone()));
        }
    }
    Ok(())
}

async fn sweep(redis: &Redis, fanout: &Fanout) -> Result<(), StoreError> {
    let mut conn = redis.connection().await?;
    let script = Script::new(SWEEP);
    for bucket in 0..BUCKETS {
        let gone: Vec<String> = script
            .key(expiry_set(redis, bucket))
            .arg(Utc::now().timestamp_millis())
            .arg(SWEEP_BATCH)
            .arg(bucket_prefix(redis, bucket))
            .invoke_async(&mut *conn)
            .await?;
        for pair in gone.chunks(2) {
            if let [user, last_seen] = pair {
                if let Some(user) = UserId::parse(user) {
                    let last_seen = if last_seen.is_empty() {
                        Value::Null
                    } else {
                        Value::String(last_seen.clone())
                    };
                    announce(fanout, &user, false, last_seen);
                }
            }
        }
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
pub async fn states(redis: &Redis, users: &[UserId]) -> Result<Value, StoreError> {
    let mut conn = redis.connection().await?;
    let online_keys: Vec<String> = users
        .iter()
        .map(|u| online_key(redis, u.as_str()))
        .collect();
    let seen_keys: Vec<String> = users
        .iter()
        .map(|u| last_seen_key(redis, u.as_str()))
        .collect();
    // One MGET: a cluster connection splits it by slot and puts the
    // replies back in order.
    let mut replies: Vec<Option<String>> = deadpool_redis::redis::cmd("MGET")
        .arg(&online_keys)
        .arg(&seen_keys)
        .query_async(&mut *conn)
        .await?;
    let seen = replies.split_off(online_keys.len());
    let online = replies;
    let mut out = serde_json::Map::new();
    for ((user, online), seen) in users.iter().zip(online).zip(seen) {
        out.insert(
            user.to_string(),
            json!({ "online": online.is_some(), "lastSeen": seen }),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The text between the first `{` and the next `}`: what Redis Cluster
    /// hashes to pick a key's slot.
    fn hash_tag(key: &str) -> &str {
        let open = key.find('{').unwrap_or_else(|| panic!("no tag in {key}"));
        let close = key[open..]
            .find('}')
            .unwrap_or_else(|| panic!("no tag in {key}"));
        &key[open + 1..open + close]
    }

    #[test]
    fn a_users_keys_share_the_slot_of_their_bucket() {
        let redis = Redis::new(
            "redis://127.0.0.1:1",
            "souk:",
            1,
            crate::metrics::Metrics::new().unwrap_or_else(|_| panic!("metrics")),
        )
        .unwrap_or_else(|_| panic!("a handle"));
        for user in ["u1", "ana", "seller-42", "ü"] {
            let tag = hash_tag(&online_key(&redis, user)).to_owned();
            assert_eq!(hash_tag(&last_seen_key(&redis, user)), tag);
            assert_eq!(hash_tag(&expiry_set(&redis, bucket(user))), tag);
        }
    }

    #[test]
    fn buckets_are_the_same_on_every_node() {
        // FNV-1a, not a per-process seeded hash: fixed values.
        assert_eq!(bucket(""), 0x811c_9dc5 % BUCKETS);
        assert_eq!(bucket("a"), 0xe40c_292c % BUCKETS);
        let spread: std::collections::HashSet<u32> =
            (0..200).map(|n| bucket(&format!("user{n}"))).collect();
        assert_eq!(spread.len(), BUCKETS as usize);
    }
}
