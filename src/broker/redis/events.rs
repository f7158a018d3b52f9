//! Room events on Redis: every event is appended to its room's log (a
//! capped stream, whose entry id is the event's offset) and published on
//! the room's shard channel, in one script. The node's subscription follows
//! the channels of its rooms ([`super::subscriber`]) and, after a dropped
//! connection, catches rooms up from their logs ([`super::catchup`]).

use std::sync::LazyLock;

use actix::Recipient;
use deadpool_redis::redis::{ErrorKind, Script, Value as RedisValue};
use tokio::sync::mpsc;

use super::{offset_counter, room_channel, room_last_offset, room_log, RedisBroker};
use crate::broker::{
    parse_offset, Arrival, Events, History, LogLimits, Publication, RoomEvent, Subscription,
};
use crate::ids::{RoomKey, UserId};
use crate::store::StoreError;

/// Appends to the logs and publishes a whole batch of events, atomically,
/// so the offset order is the delivery order: one script call per batch,
/// sent by its SHA (`EVALSHA`; loaded on the node that answers NOSCRIPT).
/// Every key and channel it touches is in the `{events}` slot, so on a
/// Redis Cluster too the batch is one call to one node.
/// Offsets come from one counter, so they order events across rooms too:
/// "everything after offset N in my rooms" is exact. The batch takes
/// consecutive offsets with one INCRBY, and the script answers the first.
/// Each entry keeps the id of the room's entry before it (`p`), so that a
/// reader can tell whether trimming dropped events past a given offset; a
/// small key beside the log holds it (reading the log's last entry would
/// copy its frame), swapped with one `SET … GET`.
/// Entry ids are offsets as packets show them (`<offset>-0`).
/// A counter Redis lost (a restart without persistence) starts again from
/// the time in microseconds, so offsets keep increasing: nodes drop an
/// event whose offset is not past the last one they passed on.
/// A room with several events in one call (a batch of bids' `bid:new`)
/// reads and swaps its last id once, at its first event, and takes the
/// ones after from the call itself; its last id is written again, and its
/// log's expiry set, once per call, after all the batch's entries.
/// KEYS: the offset counter, then per event its room's log and last offset.
/// ARGV: log length, log TTL (ms), then per event: channel, frame head,
/// except, version, emission id.
const PUBLISH: &str = r#"
local count = (#KEYS - 1) / 2
local n = redis.call('INCRBY', KEYS[1], count)
if n == count then
  local now = redis.call('TIME')
  n = tonumber(now[1]) * 1000000 + tonumber(now[2]) + count - 1
  redis.call('SET', KEYS[1], string.format('%.0f', n))
end
local first = n - count + 1
-- per log in the call, in order of first event: its last-id key, the id
-- written there at its first event, and the id of its latest event
local logs, last_key, swapped, latest = {}, {}, {}, {}
for i = 0, count - 1 do
  local offset = string.format('%.0f', first + i)
  local id = offset .. '-0'
  local log, a = KEYS[2 + 2 * i], 3 + 5 * i
  local previous = latest[log]
  if previous == nil then
    previous = redis.call('SET', KEYS[3 + 2 * i], id, 'PX', ARGV[2], 'GET') or '0-0'
    logs[#logs + 1] = log
    last_key[log] = KEYS[3 + 2 * i]
    swapped[log] = id
  end
  latest[log] = id
  redis.call('XADD', log, 'MAXLEN', '~', ARGV[1], id, 'h', ARGV[a + 1], 'x', ARGV[a + 2],
    'v', ARGV[a + 3], 'e', ARGV[a + 4], 'p', previous)
  redis.call('SPUBLISH', ARGV[a], ARGV[a + 2] .. '|' .. ARGV[a + 3] .. '|' .. ARGV[a + 4] ..
    '|' .. offset .. '|' .. ARGV[a + 1] .. ',"' .. id .. '"]')
end
for _, log in ipairs(logs) do
  if latest[log] ~= swapped[log] then
    redis.call('SET', last_key[log], latest[log], 'PX', ARGV[2])
  end
  redis.call('PEXPIRE', log, ARGV[2])
end
return string.format('%.0f', first)
"#;

/// The publish script, hashed once.
static PUBLISH_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(PUBLISH));

impl Events for RedisBroker {
    /// One script call for the whole batch: its events take consecutive
    /// offsets, and all are refused when the call fails.
    async fn publish(
        &self,
        batch: &[Publication],
        limits: LogLimits,
    ) -> Vec<Result<u64, StoreError>> {
        if batch.is_empty() {
            return Vec::new();
        }
        let redis = &self.redis;
        let mut script = PUBLISH_SCRIPT.key(offset_counter(redis.prefix()));
        script
            .arg(limits.max_len)
            .arg(limits.ttl.as_millis() as u64);
        for event in batch {
            script
                .key(room_log(redis.prefix(), &event.room))
                .key(room_last_offset(redis.prefix(), &event.room))
                .arg(room_channel(redis.prefix(), &event.room))
                .arg(&event.head)
                .arg(event.except.as_ref().map(UserId::as_str).unwrap_or(""))
                .arg(event.version.map(|v| v.to_string()).unwrap_or_default())
                .arg(event.emission);
        }
        let first: Result<String, StoreError> = match redis.connection().await {
            Ok(mut conn) => script.invoke_async(&mut *conn).await.map_err(|err| {
                // A broken connection fails until its next check: take
                // fresh ones. Redis's own refusals say nothing of the link.
                if !matches!(err.kind(), ErrorKind::Server(_)) {
                    redis.reset_connections();
                }
                StoreError::from(err)
            }),
            Err(err) => Err(err),
        };
        let first = first.and_then(|first| {
            first
                .parse::<u64>()
                .map_err(|_| StoreError::internal(format!("redis: offset {first:?}")))
        });
        match first {
            Ok(first) => (first..).take(batch.len()).map(Ok).collect(),
            Err(err) => batch.iter().map(|_| Err(err.clone())).collect(),
        }
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
    use std::time::Duration;

    use super::*;
    use crate::broker::redis::fake::broker_without_scripts;

    fn publication(room: &str) -> Publication {
        Publication {
            room: RoomKey::parse(room).unwrap_or_else(|| panic!("a room")),
            emission: 7,
            head: r#"42["x",{}"#.to_owned(),
            except: None,
            version: None,
        }
    }

    /// A room's entries in one call each keep the id of the room's entry
    /// before them (`p`, which tells `since` whether trimming dropped
    /// events), its last id is the call's last, and both keys expire.
    #[actix_web::test]
    async fn a_room_s_entries_in_one_call_each_keep_the_one_before() {
        let crate::broker::Broker::Redis(broker) = crate::broker::conformance::redis() else {
            panic!("a Redis broker");
        };
        let limits = LogLimits {
            ttl: Duration::from_secs(60),
            max_len: 100,
        };
        let batch = ["listing:a", "listing:b", "listing:a", "listing:a"].map(publication);
        let mut offsets: Vec<u64> = broker
            .publish(&batch, limits)
            .await
            .into_iter()
            .map(|offset| offset.unwrap_or_else(|err| panic!("published: {err}")))
            .collect();
        let again = broker.publish(&[publication("listing:a")], limits).await;
        offsets.extend(
            again
                .into_iter()
                .map(|o| o.unwrap_or_else(|e| panic!("{e}"))),
        );
        let room = RoomKey::parse("listing:a").unwrap_or_else(|| panic!("a room"));
        let (log, last) = (
            room_log(broker.redis.prefix(), &room),
            room_last_offset(broker.redis.prefix(), &room),
        );
        let mut conn = broker
            .redis
            .connection()
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        let entries: RedisValue = deadpool_redis::redis::cmd("XRANGE")
            .arg(&log)
            .arg("-")
            .arg("+")
            .query_async(&mut *conn)
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        let previous: Vec<Option<String>> = stream_entries(entries)
            .iter()
            .map(|(_, fields)| field(fields, "p"))
            .collect();
        let id = |offset: u64| Some(format!("{offset}-0"));
        assert_eq!(
            previous,
            [
                Some("0-0".to_owned()),
                id(offsets[0]),
                id(offsets[2]),
                id(offsets[3])
            ]
        );
        let stored: Option<String> = deadpool_redis::redis::cmd("GET")
            .arg(&last)
            .query_async(&mut *conn)
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(stored, id(offsets[4]));
        for key in [&log, &last] {
            let ttl: i64 = deadpool_redis::redis::cmd("PTTL")
                .arg(key)
                .query_async(&mut *conn)
                .await
                .unwrap_or_else(|err| panic!("{err}"));
            assert!(ttl > 0 && ttl <= 60_000, "{key}: {ttl}");
        }
        // One call of several events on a room keeps its last id too.
        let _ = broker.publish(&batch, limits).await;
        let relast: Option<String> = deadpool_redis::redis::cmd("GET")
            .arg(&last)
            .query_async(&mut *conn)
            .await
            .unwrap_or_else(|err| panic!("{err}"));
        let latest = offsets[4] + 4;
        assert_eq!(relast, id(latest));
    }

    #[tokio::test]
    async fn a_batch_is_one_script_call_by_sha_loaded_on_noscript() {
        let (broker, seen) = broker_without_scripts(&PUBLISH_SCRIPT, "$2\r\n41\r\n").await;
        let limits = LogLimits {
            ttl: Duration::from_secs(60),
            max_len: 100,
        };
        let batch = [
            publication("booking:b1"),
            publication("user:u1"),
            publication("user:u2"),
        ];
        let offsets: Vec<_> = broker
            .publish(&batch, limits)
            .await
            .into_iter()
            .map(|offset| offset.unwrap_or_else(|err| panic!("published: {err}")))
            .collect();
        assert_eq!(offsets, vec![41, 42, 43]);
        let again = broker.publish(&batch[..1], limits).await;
        assert!(matches!(again.as_slice(), [Ok(41)]), "{again:?}");
        // The counter and each event's log and last offset: 7 keys.
        let seen = seen();
        assert_eq!(
            seen,
            ["EVALSHA 7", "SCRIPT LOAD", "EVALSHA 7", "EVALSHA 3"],
            "one call per batch, by SHA; loaded once where it was missing"
        );
    }

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
