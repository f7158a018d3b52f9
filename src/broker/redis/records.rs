//! Session records on Redis (Socket.IO's connection state recovery,
//! contract §10): what a socket was in is kept under its `pid` as a hash
//! (`u` user, `o` owner, `c` a claim in progress, `r:<room>` per room), so
//! a join writes one field, not the whole record again.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_redis::redis::Script;

use super::{record_key, RedisBroker};
use crate::broker::{Claim, Record, Records, Save, Saved, CLAIM_HOLD};
use crate::store::StoreError;

/// Applies one socket's changes and renews its record for the window, if
/// the record is its own: a record another socket has claimed since is left
/// alone (its owner writes it now). KEYS: the record. ARGV: window (ms),
/// owner, user to bind ('' none), number of rooms joined, the rooms joined,
/// the rooms left. Returns 1; 0 when the record is another owner's; -1
/// when it is gone (Redis lost it): the caller writes it whole again.
const SAVE: &str = r#"
local owner = redis.call('HGET', KEYS[1], 'o')
if ARGV[3] ~= '' then
  if owner and owner ~= ARGV[2] then return 0 end
  redis.call('HSET', KEYS[1], 'u', ARGV[3], 'o', ARGV[2])
  redis.call('HDEL', KEYS[1], 'c')
elseif not owner then
  return -1
elseif owner ~= ARGV[2] then
  return 0
end
local joined = tonumber(ARGV[4])
for i = 5, 4 + joined do redis.call('HSET', KEYS[1], 'r:' .. ARGV[i], '1') end
for i = 5 + joined, #ARGV do redis.call('HDEL', KEYS[1], 'r:' .. ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"#;

/// Claims a record for a recovering socket: the record must be `user`'s and
/// no other claim of it may be in progress (two sockets recovering one pid
/// do not both get it). The claimer becomes the owner, so the socket that
/// held the record is unbound: its saves no longer touch it. The claim is
/// in progress until the claimer binds, or for `hold` ms at most. KEYS: the
/// record. ARGV: user, claimer, now (ms), hold (ms). Returns {'ok', rooms…},
/// {'claimed'} when another claim is in progress, or {} when there is no
/// record of the user's.
const CLAIM: &str = r#"
if redis.call('HGET', KEYS[1], 'u') ~= ARGV[1] then return {} end
local claim = redis.call('HGET', KEYS[1], 'c')
if claim and tonumber(claim) > tonumber(ARGV[3]) then return {'claimed'} end
redis.call('HSET', KEYS[1], 'o', ARGV[2], 'c', tostring(tonumber(ARGV[3]) + tonumber(ARGV[4])))
local rooms = {'ok'}
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, 2) == 'r:' then rooms[#rooms + 1] = string.sub(field, 3) end
end
return rooms
"#;

/// Ends a claim in progress of the claimer's (its socket went before it was
/// bound), so that the next recovery of the pid need not wait for the hold.
/// KEYS: the record. ARGV: the claimer.
const RELEASE: &str = r#"
if redis.call('HGET', KEYS[1], 'o') == ARGV[1] then redis.call('HDEL', KEYS[1], 'c') end
return 1
"#;

static RELEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE));
static SAVE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SAVE));
static CLAIM_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(CLAIM));

impl Records for RedisBroker {
    /// One script call per record, all at once on a shared connection.
    async fn save(&self, saves: &[Save], window: Duration) -> Result<Saved, StoreError> {
        let redis = &self.redis;
        let mut saved = Saved::default();
        if saves.is_empty() {
            return Ok(saved);
        }
        let conn = redis.connection().await?;
        let runs = saves.iter().map(|save| {
            let mut conn = (*conn).clone();
            let mut invocation = SAVE_SCRIPT.key(record_key(redis, &save.pid));
            invocation
                .arg(window.as_millis() as u64)
                .arg(&save.owner)
                .arg(save.changes.bind.as_deref().unwrap_or(""))
                .arg(save.changes.joined.len());
            for room in save.changes.joined.iter().chain(&save.changes.left) {
                invocation.arg(room);
            }
            async move {
                let answer: i64 = invocation.invoke_async(&mut conn).await?;
                Ok::<_, StoreError>((answer, &save.pid))
            }
        });
        for (answer, pid) in futures_util::future::try_join_all(runs).await? {
            match answer {
                0 => saved.taken.push(pid.clone()),
                -1 => saved.gone.push(pid.clone()),
                _ => {}
            }
        }
        Ok(saved)
    }

    /// Claims are timed by the nodes' clocks, which must agree within the
    /// hold (10 s).
    async fn claim(
        &self,
        pid: &str,
        user: &str,
        claimer: &str,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let mut conn = self.redis.connection().await?;
        let reply: Vec<String> = CLAIM_SCRIPT
            .key(record_key(&self.redis, pid))
            .arg(user)
            .arg(claimer)
            .arg(now.timestamp_millis())
            .arg(CLAIM_HOLD.as_millis() as u64)
            .invoke_async(&mut *conn)
            .await?;
        Ok(match reply.split_first() {
            Some((status, rooms)) if status == "ok" => {
                let mut rooms = rooms.to_vec();
                rooms.sort();
                Claim::Got(Record {
                    user: user.to_owned(),
                    rooms,
                })
            }
            Some((status, _)) if status == "claimed" => Claim::Busy,
            _ => Claim::Missing,
        })
    }

    async fn release(&self, pid: &str, claimer: &str) -> Result<(), StoreError> {
        let mut conn = self.redis.connection().await?;
        let _: i64 = RELEASE_SCRIPT
            .key(record_key(&self.redis, pid))
            .arg(claimer)
            .invoke_async(&mut *conn)
            .await?;
        Ok(())
    }
}
