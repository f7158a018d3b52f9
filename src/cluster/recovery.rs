//! Connection state recovery (contract §10): what a socket was in is kept in
//! Redis under its `pid`, and every room keeps a log of its events; a client
//! that reconnects within the window with `{pid, offset}` gets its rooms back
//! and every event it missed, in order, whichever node it lands on.

use std::time::Duration;

use deadpool_redis::redis::Value as RedisValue;
use serde::{Deserialize, Serialize};

use super::room_log;
use crate::ids::UserId;
use crate::rooms::RoomKey;
use crate::store::{Redis, StoreError};

/// What a socket was in, kept for the recovery window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub user: String,
    pub rooms: Vec<String>,
}

fn record_key(redis: &Redis, pid: &str) -> String {
    redis.key(&["session", pid])
}

/// Writes records, each to live `window` from now.
pub async fn save(
    redis: &Redis,
    records: &[(String, Record)],
    window: Duration,
) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let mut commands = Vec::with_capacity(records.len());
    for (pid, record) in records {
        let text =
            serde_json::to_string(record).map_err(|err| StoreError::Internal(err.to_string()))?;
        let mut set = deadpool_redis::redis::cmd("SET");
        set.arg(record_key(redis, pid))
            .arg(text)
            .arg("PX")
            .arg(window.as_millis() as u64);
        commands.push(set);
    }
    redis.run_all(commands).await
}

/// The record of a `pid`, if it is still kept.
pub async fn load(redis: &Redis, pid: &str) -> Result<Option<Record>, StoreError> {
    let mut conn = redis.connection().await?;
    let text: Option<String> = deadpool_redis::redis::cmd("GET")
        .arg(record_key(redis, pid))
        .query_async(&mut *conn)
        .await?;
    Ok(text.and_then(|text| serde_json::from_str(&text).ok()))
}

/// Every event after `after` in `rooms`, oldest first (`user`'s own typing
/// left out), or `None` when a log has dropped some of them.
pub async fn missed(
    redis: &Redis,
    rooms: &[RoomKey],
    after: u64,
    user: &UserId,
) -> Result<Option<Vec<Logged>>, StoreError> {
    let mut all = Vec::new();
    for room in rooms {
        let Some(logged) = since(redis, room, after).await? else {
            return Ok(None);
        };
        all.extend(
            logged
                .into_iter()
                .filter(|event| event.except.as_deref() != Some(user.as_str())),
        );
    }
    all.sort_by_key(|m| m.offset);
    all.dedup_by_key(|m| m.emission);
    Ok(Some(all))
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
