//! Presence in Redis: a key per online user with the presence TTL, and a
//! last-seen time kept 30 days.
//!
//! Keyspace (prefix `souk:` by default):
//! - `souk:{presence-B}:presence:<user>`: set while the user is online
//!   (`PX` the presence TTL); its value is the last refresh (RFC 3339).
//! - `souk:{presence-B}:lastseen:<user>`: the last refresh, kept 30 days.
//! - `souk:{presence-B}:expiry`: a sorted set of the bucket's users, by
//!   when their online key should expire (ms); what the sweep reads.
//!
//! `B` is the user's bucket (0 to 15, FNV-1a of the id): a user's keys and
//! the expiry set that lists them share one Redis Cluster hash tag, so each
//! script touches one slot, and the sweep takes the buckets one by one.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_redis::redis::Script;

use super::{Redis, RedisBroker};
use crate::broker::{Presence, PresenceState, LAST_SEEN_KEPT};
use crate::ids::UserId;
use crate::store::StoreError;
use crate::time::rfc3339;

/// Users a sweep handles at most, per bucket.
const SWEEP_BATCH: usize = 200;

/// Users are spread over this many buckets (see the module's doc).
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

/// Refreshes users of one bucket: KEYS[1] is the bucket's expiry set, then
/// each user's online key and last-seen key; ARGV holds the time, the TTL
/// (ms), the expiry (ms), the last-seen time kept (s), then the users. For
/// each user, sets the online key and the last-seen time and lists the
/// user in the expiry set; returns, per user, whether the online key
/// existed.
const REFRESH: &str = r"
local existed = {}
for i = 5, #ARGV do
  local online = KEYS[2 * (i - 4)]
  existed[i - 4] = redis.call('EXISTS', online)
  redis.call('SET', online, ARGV[1], 'PX', ARGV[2])
  redis.call('SET', KEYS[2 * (i - 4) + 1], ARGV[1], 'EX', ARGV[4])
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[i])
end
return existed
";

/// Users one refresh script call takes at most: a burst of connects is
/// refreshed in a few calls per bucket rather than one each (Redis spent
/// as much CPU per connect as souk did, docs/BENCHMARKS.md, issue 13), and
/// no call runs long.
const REFRESH_BATCH: usize = 100;

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

/// The scripts, hashed once (SHA-1 over the text) rather than per call.
static REFRESH_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(REFRESH));
static SWEEP_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SWEEP));

impl Presence for RedisBroker {
    async fn refresh(
        &self,
        users: &[UserId],
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<UserId>, StoreError> {
        let redis = &self.redis;
        let mut conn = redis.connection().await?;
        let seen = rfc3339(now);
        let expires_ms = now.timestamp_millis() + ttl.as_millis() as i64;
        let script = &*REFRESH_SCRIPT;
        // Users by bucket (their place in `users`), so each call touches one
        // slot; answered in the order given.
        let mut by_bucket: Vec<Vec<usize>> = vec![Vec::new(); BUCKETS as usize];
        for (at, user) in users.iter().enumerate() {
            if let Some(bucket) = by_bucket.get_mut(bucket(user.as_str()) as usize) {
                bucket.push(at);
            }
        }
        let mut came_online = vec![false; users.len()];
        let arrived = |came_online: &[bool]| -> Vec<UserId> {
            users
                .iter()
                .zip(came_online)
                .filter(|(_, came)| **came)
                .map(|(user, _)| user.clone())
                .collect()
        };
        let mut done = 0;
        for (bucket, in_bucket) in by_bucket.iter().enumerate() {
            for batch in in_bucket.chunks(REFRESH_BATCH) {
                let mut invocation = script.key(expiry_set(redis, bucket as u32));
                for &at in batch {
                    let user = users[at].as_str();
                    invocation
                        .key(online_key(redis, user))
                        .key(last_seen_key(redis, user));
                }
                invocation
                    .arg(&seen)
                    .arg(ttl.as_millis() as u64)
                    .arg(expires_ms)
                    .arg(LAST_SEEN_KEPT.as_secs());
                for &at in batch {
                    invocation.arg(users[at].as_str());
                }
                let existed: Result<Vec<i64>, _> = invocation.invoke_async(&mut *conn).await;
                match existed {
                    Ok(existed) => {
                        for (&at, existed) in batch.iter().zip(existed) {
                            came_online[at] = existed == 0;
                        }
                        done += batch.len();
                    }
                    // Those already marked online must still be announced:
                    // the next refresh finds them online and would not
                    // report them. The users left are refreshed (and
                    // reported) next time.
                    Err(err) if came_online.contains(&true) => {
                        log::warn!(
                            "presence refresh stopped after {done} of {} users: {err}",
                            users.len()
                        );
                        return Ok(arrived(&came_online));
                    }
                    Err(err) => return Err(err.into()),
                }
            }
        }
        Ok(arrived(&came_online))
    }

    async fn sweep(&self, now: DateTime<Utc>) -> Result<Vec<(UserId, Option<String>)>, StoreError> {
        let redis = &self.redis;
        let mut conn = redis.connection().await?;
        let script = &*SWEEP_SCRIPT;
        let mut left = Vec::new();
        for bucket in 0..BUCKETS {
            let gone: Result<Vec<String>, _> = script
                .key(expiry_set(redis, bucket))
                .arg(now.timestamp_millis())
                .arg(SWEEP_BATCH)
                .arg(bucket_prefix(redis, bucket))
                .invoke_async(&mut *conn)
                .await;
            let gone: Vec<String> = match gone {
                Ok(gone) => gone,
                // Those the buckets before were taken from are no longer in
                // an expiry set: no later sweep would report them.
                Err(err) if !left.is_empty() => {
                    log::warn!("presence sweep stopped at bucket {bucket}: {err}");
                    return Ok(left);
                }
                Err(err) => return Err(err.into()),
            };
            for pair in gone.chunks(2) {
                if let [user, last_seen] = pair {
                    if let Some(user) = UserId::parse(user) {
                        let last_seen = Some(last_seen.clone()).filter(|seen| !seen.is_empty());
                        left.push((user, last_seen));
                    }
                }
            }
        }
        Ok(left)
    }

    async fn states(&self, users: &[UserId]) -> Result<Vec<PresenceState>, StoreError> {
        // MGET takes at least one key.
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let redis = &self.redis;
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
        Ok(replies
            .into_iter()
            .zip(seen)
            .map(|(online, last_seen)| PresenceState {
                online: online.is_some(),
                last_seen,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::redis::fake::broker_at;

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
        let redis = crate::broker::redis::unreached();
        for user in ["u1", "ana", "seller-42", "ü"] {
            let tag = hash_tag(&online_key(&redis, user)).to_owned();
            assert_eq!(hash_tag(&last_seen_key(&redis, user)), tag);
            assert_eq!(hash_tag(&expiry_set(&redis, bucket(user))), tag);
        }
    }

    /// A Redis that answers its scripts with `replies` (RESP), in order,
    /// then drops the connection; anything else is `+OK` (or the
    /// standalone `INFO`, or `+PONG`).
    async fn redis_answering(replies: &'static [&'static str]) -> String {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let (listener, url) = crate::broker::redis::fake::fake_redis_listener().await;
        let scripts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let scripts = scripts.clone();
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut lines = BufReader::new(read).lines();
                    // A command is `*N` then N pairs of `$len` and the word.
                    while let Ok(Some(head)) = lines.next_line().await {
                        let count: usize = head.trim_start_matches('*').parse().unwrap_or(0);
                        let mut words = Vec::new();
                        for _ in 0..count {
                            let _ = lines.next_line().await;
                            if let Ok(Some(word)) = lines.next_line().await {
                                words.push(word.to_uppercase());
                            }
                        }
                        let reply = match words.first().map(String::as_str) {
                            Some("INFO") => "$17\r\ncluster_enabled:0\r\n".to_owned(),
                            Some("PING") => "+PONG\r\n".to_owned(),
                            Some("EVALSHA") | Some("EVAL") => {
                                let seen =
                                    scripts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                match replies.get(seen) {
                                    Some(reply) => (*reply).to_owned(),
                                    None => return,
                                }
                            }
                            _ => "+OK\r\n".to_owned(),
                        };
                        if write.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        url
    }

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap_or_else(|| panic!("a user id"))
    }

    #[tokio::test]
    async fn a_refresh_cut_short_still_reports_who_came_online() {
        // ana's bucket is refreshed before bo's: one call each.
        assert!(bucket("ana") < bucket("bo"));
        let users = [user("ana"), user("bo")];
        let ttl = Duration::from_secs(60);
        let broker = broker_at(&redis_answering(&["*1\r\n:0\r\n"]).await);
        let arrived = broker
            .refresh(&users, ttl, Utc::now())
            .await
            .unwrap_or_else(|err| panic!("ana was marked online: {err}"));
        assert_eq!(arrived, vec![user("ana")]);
        // Nothing refreshed: the failure is the caller's to log.
        let broker = broker_at(&redis_answering(&[]).await);
        assert!(broker.refresh(&users, ttl, Utc::now()).await.is_err());
    }

    #[tokio::test]
    async fn a_sweep_cut_short_still_reports_who_it_took() {
        // The first bucket's script took ana (no last-seen time) and bo.
        const FIRST: &str = "*4\r\n$3\r\nana\r\n$0\r\n\r\n$2\r\nbo\r\n$4\r\n2026\r\n";
        let broker = broker_at(&redis_answering(&[FIRST]).await);
        let gone = broker
            .sweep(Utc::now())
            .await
            .unwrap_or_else(|err| panic!("ana and bo were taken: {err}"));
        assert_eq!(
            gone,
            vec![(user("ana"), None), (user("bo"), Some("2026".to_owned()))]
        );
        let broker = broker_at(&redis_answering(&[]).await);
        assert!(broker.sweep(Utc::now()).await.is_err());
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
