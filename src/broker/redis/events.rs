//! Room events on Redis: every event is appended to its room's log (a
//! capped stream, whose entry id is the event's offset) and published on
//! the room's shard channel, in one script. The node's subscription follows
//! the channels of its rooms ([`super::subscriber`]) and, after a dropped
//! connection, catches rooms up from their logs ([`super::catchup`]).

use actix::Recipient;
use deadpool_redis::redis::{RedisResult, Value as RedisValue};
use tokio::sync::mpsc;

use super::{offset_counter, room_channel, room_last_offset, room_log, RedisBroker};
use crate::broker::{
    parse_offset, Arrival, Events, History, LogLimits, Publication, RoomEvent, Subscription,
};
use crate::ids::{RoomKey, UserId};
use crate::store::StoreError;

/// Appends to the log and publishes, atomically, so the offset order is the
/// delivery order. Offsets come from one counter, so they order events
/// across rooms too: "everything after offset N in my rooms" is exact.
/// Each entry keeps the id of the room's entry before it (`p`), so that a
/// reader can tell whether trimming dropped events past a given offset.
/// Entry ids are offsets as packets show them (`<offset>-0`).
/// A counter Redis lost (a restart without persistence) starts again from
/// the time in microseconds, so offsets keep increasing: nodes drop an
/// event whose offset is not past the last one they passed on.
/// KEYS: the log, the offset counter, the room's last offset (a small key
/// beside the log: reading the log's last entry would copy its frame).
/// ARGV: channel, frame head, except,
/// version, log length, log TTL (ms), emission id.
const PUBLISH: &str = r#"
local n = redis.call('INCR', KEYS[2])
if n == 1 then
  local now = redis.call('TIME')
  n = tonumber(now[1]) * 1000000 + tonumber(now[2])
  redis.call('SET', KEYS[2], string.format('%.0f', n))
end
n = string.format('%.0f', n)
local id = n .. '-0'
local previous = redis.call('GET', KEYS[3]) or '0-0'
redis.call('SET', KEYS[3], id, 'PX', ARGV[6])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], id, 'h', ARGV[2], 'x', ARGV[3], 'v', ARGV[4], 'e', ARGV[7], 'p', previous)
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('SPUBLISH', ARGV[1], ARGV[3] .. '|' .. ARGV[4] .. '|' .. ARGV[7] .. '|' .. n .. '|' .. ARGV[2] .. ',"' .. id .. '"]')
return id
"#;

impl Events for RedisBroker {
    /// One pipeline of one script call per publication.
    async fn publish(
        &self,
        batch: &[Publication],
        limits: LogLimits,
    ) -> Vec<Result<u64, StoreError>> {
        let redis = &self.redis;
        let mut pipe = deadpool_redis::redis::pipe();
        pipe.ignore_errors();
        for event in batch {
            pipe.cmd("EVAL")
                .arg(PUBLISH)
                .arg(3)
                .arg(room_log(redis.prefix(), &event.room))
                .arg(offset_counter(redis.prefix()))
                .arg(room_last_offset(redis.prefix(), &event.room))
                .arg(room_channel(redis.prefix(), &event.room))
                .arg(&event.head)
                .arg(event.except.as_ref().map(UserId::as_str).unwrap_or(""))
                .arg(event.version.map(|v| v.to_string()).unwrap_or_default())
                .arg(limits.max_len)
                .arg(limits.ttl.as_millis() as u64)
                .arg(event.emission);
        }
        let all_refused = |err: StoreError| batch.iter().map(|_| Err(err.clone())).collect();
        let replies: Vec<RedisResult<RedisValue>> = match redis.connection().await {
            Ok(mut conn) => match pipe.query_async(&mut *conn).await {
                Ok(replies) => replies,
                Err(err) => {
                    redis.reset_connections();
                    return all_refused(err.into());
                }
            },
            Err(err) => return all_refused(err),
        };
        let mut answers: Vec<Result<u64, StoreError>> = replies
            .into_iter()
            .map(|reply| match reply {
                Ok(id) => text(&id)
                    .and_then(|id| parse_offset(&id))
                    .ok_or_else(|| StoreError::internal(format!("redis: offset {id:?}"))),
                Err(err) => Err(err.into()),
            })
            .collect();
        // A short reply (never seen) refuses the rest.
        answers.resize_with(batch.len(), || {
            Err(StoreError::unavailable("redis: no reply for the event"))
        });
        answers
    }

    async fn since(&self, room: &RoomKey, after: u64) -> Result<History, StoreError> {
        since(&self.redis, room, after).await
    }

    fn subscribe(&self, sink: Recipient<Arrival>) -> Subscription {
        let (commands, rx) = mpsc::unbounded_channel();
        let arrivals = super::catchup::start(self.clone(), sink);
        super::subscriber::start(
            self.target.clone(),
            self.redis.prefix().to_owned(),
            rx,
            arrivals,
        );
        Subscription::new(commands)
    }
}

/// Parses a channel message: `except|version|emission|offset|frame`.
pub(super) fn parse_message(room: RoomKey, message: &str) -> Option<RoomEvent> {
    let (except, rest) = message.split_once('|')?;
    let (version, rest) = rest.split_once('|')?;
    let (emission, rest) = rest.split_once('|')?;
    let (offset, frame) = rest.split_once('|')?;
    Some(RoomEvent {
        room,
        offset: offset.parse().ok()?,
        emission: emission.parse().ok()?,
        frame: frame.to_owned(),
        except: UserId::parse(except),
        version: version.parse().ok(),
    })
}

/// The events of `room` after `after`, oldest first, or `Trimmed` when the
/// log has dropped some of them.
async fn since(redis: &super::Redis, room: &RoomKey, after: u64) -> Result<History, StoreError> {
    let mut conn = redis.connection().await?;
    let log = room_log(redis.prefix(), room);
    let exists: i64 = deadpool_redis::redis::cmd("EXISTS")
        .arg(&log)
        .query_async(&mut *conn)
        .await?;
    if exists == 0 {
        return Ok(History::Events(Vec::new())); // no event in the window
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
            _ => return Ok(History::Trimmed),
        }
    }
    let mut logged = Vec::new();
    for (id, fields) in entries {
        let (Some(head), Some(offset)) = (field(&fields, "h"), parse_offset(&id)) else {
            continue;
        };
        logged.push(RoomEvent {
            room: room.clone(),
            offset,
            emission: field(&fields, "e")
                .and_then(|e| e.parse().ok())
                .unwrap_or(0),
            frame: format!("{head},\"{id}\"]"),
            except: field(&fields, "x").and_then(|x| UserId::parse(&x)),
            version: field(&fields, "v").and_then(|v| v.parse().ok()),
        });
    }
    Ok(History::Events(logged))
}

/// A field of a log entry (`[name, value, …]`).
fn field(fields: &[String], name: &str) -> Option<String> {
    fields
        .chunks(2)
        .find(|pair| pair[0] == name)
        .and_then(|pair| pair.get(1).cloned())
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
    fn messages_carry_except_version_emission_and_frame() {
        let room = RoomKey::parse("booking:b1").unwrap_or_else(|| unreachable!());
        let event = parse_message(room.clone(), r#"bob|7|99|1|42["typing",{"a":"|"},"1-0"]"#);
        let event = event.unwrap_or_else(|| panic!("parses"));
        assert_eq!(event.except.map(|u| u.to_string()).as_deref(), Some("bob"));
        assert_eq!(event.version, Some(7));
        assert_eq!(event.emission, 99);
        assert_eq!(event.offset, 1);
        assert_eq!(event.frame, r#"42["typing",{"a":"|"},"1-0"]"#);
        let plain = parse_message(room.clone(), r#"||1|1|42["x",1,"1-0"]"#)
            .unwrap_or_else(|| panic!("parses"));
        assert_eq!((plain.except, plain.version), (None, None));
        assert!(parse_message(room.clone(), "no separators").is_none());
        assert!(parse_message(room, "||notanumber|1|42[]").is_none());
    }
}
