//! Connection state recovery (contract §10): what a socket was in is kept in
//! Redis under its `pid`, and every room keeps a log of its events; a client
//! that reconnects within the window with `{pid, offset}` gets its rooms back
//! and every event it missed, in order, whichever node it lands on.

use std::time::Duration;

use std::sync::LazyLock;

use deadpool_redis::redis::{Script, Value as RedisValue};

use super::room_log;
use crate::broker::redis::Redis;
use crate::ids::UserId;
use crate::rooms::RoomKey;
use crate::store::StoreError;

/// What a socket was in, as a claim finds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub user: String,
    pub rooms: Vec<String>,
}

/// Changes to one socket's record since the last save: rooms joined and
/// left, and whether it is being bound (its user and owner set). A record
/// is a Redis hash (`u` user, `o` owner, `c` a claim in progress, `r:<room>`
/// per room), so a join writes one field, not the whole record again.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// The user, when the socket is being bound.
    pub bind: Option<String>,
    pub joined: std::collections::BTreeSet<String>,
    pub left: std::collections::BTreeSet<String>,
}

impl Changes {
    /// The whole record: bound to `user`, in `rooms`.
    pub fn whole(user: String, rooms: impl Iterator<Item = String>) -> Self {
        Changes {
            bind: Some(user),
            joined: rooms.collect(),
            left: Default::default(),
        }
    }

    pub fn join(&mut self, room: String) {
        self.left.remove(&room);
        self.joined.insert(room);
    }

    pub fn leave(&mut self, room: String) {
        self.joined.remove(&room);
        self.left.insert(room);
    }
}

/// One socket's pending save: its pid, the session that owns the record
/// (`node/session`), and what changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Save {
    pub pid: String,
    pub owner: String,
    pub changes: Changes,
}

fn record_key(redis: &Redis, pid: &str) -> String {
    redis.key(&["recovery", pid])
}

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

/// How long a claim keeps other claims of the same pid out while its socket
/// restores (its rooms checked and joined, its missed events read).
const CLAIM_HOLD: Duration = Duration::from_secs(10);

/// What saving found of the records that were not simply saved.
#[derive(Debug, Default, PartialEq)]
pub struct Saved {
    /// Pids whose record another socket owns now.
    pub taken: Vec<String>,
    /// Pids whose record is gone and must be written whole.
    pub gone: Vec<String>,
}

/// Saves each socket's changes, each record to live `window` from now.
pub async fn save(redis: &Redis, saves: &[Save], window: Duration) -> Result<Saved, StoreError> {
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

/// What a claim of a record found.
#[derive(Debug, PartialEq)]
pub enum Claim {
    /// The record, now the claimer's.
    Got(Record),
    /// Another socket is claiming it: one live socket per pid.
    Busy,
    /// No record of the user's under that pid.
    Missing,
}

/// Claims the record of `pid` for `claimer` (`node/session`), if it is
/// still kept, is `user`'s, and no other socket is claiming it. Claims are
/// timed by the nodes' clocks, which must agree within the hold (10 s).
pub async fn claim(
    redis: &Redis,
    pid: &str,
    user: &str,
    claimer: &str,
) -> Result<Claim, StoreError> {
    let mut conn = redis.connection().await?;
    let now = chrono::Utc::now().timestamp_millis();
    let reply: Vec<String> = CLAIM_SCRIPT
        .key(record_key(redis, pid))
        .arg(user)
        .arg(claimer)
        .arg(now)
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

/// Releases `claimer`'s claim in progress of the record of `pid`, if any.
pub async fn release(redis: &Redis, pid: &str, claimer: &str) -> Result<(), StoreError> {
    let mut conn = redis.connection().await?;
    let _: i64 = RELEASE_SCRIPT
        .key(record_key(redis, pid))
        .arg(claimer)
        .invoke_async(&mut *conn)
        .await?;
    Ok(())
}

/// What a recovering socket missed.
#[derive(Debug, PartialEq)]
pub enum Missed {
    /// Every event after the offset, oldest first, each once.
    Events(Vec<Logged>),
    /// A log has dropped some of them.
    Trimmed,
    /// They come to more than the replay may carry.
    TooLarge,
}

/// Every event after `after` in `rooms` (`user`'s own typing left out), as
/// long as their packets come to at most `max_bytes`: reading stops as soon
/// as they do not.
pub async fn missed(
    redis: &Redis,
    rooms: &[RoomKey],
    after: u64,
    user: &UserId,
    max_bytes: usize,
) -> Result<Missed, StoreError> {
    let mut all: Vec<Logged> = Vec::new();
    // Emission → where it is in `all`.
    let mut seen: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    let mut bytes = 0usize;
    for room in rooms {
        let Some(logged) = since(redis, room, after).await? else {
            return Ok(Missed::Trimmed);
        };
        for event in logged {
            if event.except.as_deref() == Some(user.as_str()) {
                continue;
            }
            // An event sent to several of the rooms is replayed once, at
            // its first offset, and counts once.
            if let Some(&at) = seen.get(&event.emission) {
                if let Some(kept) = all.get_mut(at) {
                    if event.offset < kept.offset {
                        *kept = event;
                    }
                }
                continue;
            }
            bytes = bytes.saturating_add(event.frame.len());
            if bytes > max_bytes {
                return Ok(Missed::TooLarge);
            }
            seen.insert(event.emission, all.len());
            all.push(event);
        }
    }
    all.sort_by_key(|m| m.offset);
    Ok(Missed::Events(all))
}

/// An event as a room's log keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    pub offset: u64,
    pub emission: u64,
    /// The whole packet, offset included.
    pub frame: String,
    /// The user whose connections do not get it.
    pub except: Option<String>,
    /// The listing version it shows.
    pub version: Option<i64>,
}

/// The events of `room` after `after`, oldest first, or `None` when the
/// log has dropped some of them.
pub async fn since(
    redis: &Redis,
    room: &RoomKey,
    after: u64,
) -> Result<Option<Vec<Logged>>, StoreError> {
    let mut conn = redis.connection().await?;
    let log = room_log(redis.prefix(), room);
    let exists: i64 = deadpool_redis::redis::cmd("EXISTS")
        .arg(&log)
        .query_async(&mut *conn)
        .await?;
    if exists == 0 {
        return Ok(Some(Vec::new())); // no event in the window
    }
    let info: RedisValue = deadpool_redis::redis::cmd("XINFO")
        .arg("STREAM")
        .arg(&log)
        .query_async(&mut *conn)
        .await?;
    // Trimming drops the oldest entries. When some were dropped and the
    // first one kept is past `after`, the dropped ones may include events
    // past `after`: the first kept entry's `p` (the room's entry before it)
    // says. Offsets are counted over all rooms, so a room's log has gaps,
    // and the first kept offset alone cannot tell.
    let added = field_text(&info, "entries-added").and_then(|n| n.parse::<u64>().ok());
    let length = field_text(&info, "length").and_then(|n| n.parse::<u64>().ok());
    let first = field_text(&info, "recorded-first-entry-id").and_then(|id| parse_offset(&id));
    let trimmed_past_after = added > length && first.is_some_and(|first| first > after);
    let entries: RedisValue = deadpool_redis::redis::cmd("XRANGE")
        .arg(&log)
        .arg(format!("({after}-0"))
        .arg("+")
        .query_async(&mut *conn)
        .await?;
    let entries = stream_entries(entries);
    if trimmed_past_after {
        // The first entry read is the first one kept.
        let before_first = entries
            .first()
            .and_then(|(_, fields)| field(fields, "p"))
            .and_then(|p| parse_offset(&p));
        match before_first {
            Some(before) if before <= after => {}
            _ => return Ok(None),
        }
    }
    let mut logged = Vec::new();
    for (id, fields) in entries {
        let (Some(head), Some(offset)) = (field(&fields, "h"), parse_offset(&id)) else {
            continue;
        };
        logged.push(Logged {
            offset,
            emission: field(&fields, "e")
                .and_then(|e| e.parse().ok())
                .unwrap_or(0),
            frame: format!("{head},\"{id}\"]"),
            except: field(&fields, "x").filter(|x| !x.is_empty()),
            version: field(&fields, "v").and_then(|v| v.parse().ok()),
        });
    }
    Ok(Some(logged))
}

/// A field of a log entry (`[name, value, …]`).
fn field(fields: &[String], name: &str) -> Option<String> {
    fields
        .chunks(2)
        .find(|pair| pair[0] == name)
        .and_then(|pair| pair.get(1).cloned())
}

/// `"12-0"` → 12 (and `"0-0"`, no entry before, → 0).
pub fn parse_offset(text: &str) -> Option<u64> {
    let (n, seq) = text.split_once('-')?;
    (seq == "0").then(|| n.parse().ok()).flatten()
}

fn text(value: &RedisValue) -> Option<String> {
    match value {
        RedisValue::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        RedisValue::SimpleString(text) => Some(text.clone()),
        _ => None,
    }
}

/// Reads one field of an XINFO reply (a flat list of names and values).
fn field_text(info: &RedisValue, name: &str) -> Option<String> {
    let items = match info {
        RedisValue::Array(items) => items.clone(),
        RedisValue::Map(pairs) => pairs
            .iter()
            .flat_map(|(k, v)| [k.clone(), v.clone()])
            .collect(),
        _ => return None,
    };
    items
        .chunks(2)
        .find(|pair| text(&pair[0]).as_deref() == Some(name))
        .and_then(|pair| match pair.get(1) {
            Some(RedisValue::Int(n)) => Some(n.to_string()),
            Some(other) => text(other),
            None => None,
        })
}

/// XRANGE's reply as (id, [field, value, …]).
fn stream_entries(reply: RedisValue) -> Vec<(String, Vec<String>)> {
    let RedisValue::Array(entries) = reply else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter_map(|entry| match entry {
            RedisValue::Array(parts) if parts.len() == 2 => {
                let id = text(&parts[0])?;
                let fields = match &parts[1] {
                    RedisValue::Array(fields) => fields.iter().filter_map(text).collect(),
                    _ => Vec::new(),
                };
                Some((id, fields))
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_counter_values() {
        assert_eq!(parse_offset("12-0"), Some(12));
        assert_eq!(parse_offset("12-1"), None);
        assert_eq!(parse_offset("x-0"), None);
        assert_eq!(parse_offset("12"), None);
    }
}
