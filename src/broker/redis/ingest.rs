//! The backend's queue (§8b) on Redis: the stream `<prefix>{ingest}`, read
//! by the consumer group `souk`, with its dead letters, the reader's lease
//! and the idempotency keys beside it.
//!
//! Every key carries the `{ingest}` hash tag: on a Redis Cluster they share
//! one slot, so moving an entry to the dead letters and acknowledging it is
//! one script, and a batch's idempotency keys are one pipeline.
//!
//! Nothing here blocks (no `XREADGROUP BLOCK`): commands share a few
//! multiplexed connections (`conn.rs`), and a blocked command would hold
//! one of them for every other command of the node. The reader polls.

use std::sync::LazyLock;
use std::time::Duration;

use deadpool_redis::redis::{cmd, pipe, RedisError, Script, Value};

use super::RedisBroker;
use crate::broker::{Ingest, Mark, Next, QueueEntry};
use crate::store::StoreError;

/// The consumer group every node reads the queue as (§8b).
pub const GROUP: &str = "souk";
/// The hash tag of every key of the queue.
const TAG: &str = "{ingest}";
/// How many dead letters are kept, about (the oldest go first).
const DEAD_LEN: u64 = 10_000;

/// What a key of the queue is for.
enum Key<'a> {
    Stream,
    Dead,
    Lease,
    Seen(&'a str),
}

impl RedisBroker {
    fn ingest_key(&self, key: Key<'_>) -> String {
        match key {
            Key::Stream => self.redis.key(&[TAG]),
            Key::Dead => self.redis.key(&[TAG, "dead"]),
            Key::Lease => self.redis.key(&[TAG, "lease"]),
            Key::Seen(id) => self.redis.key(&[TAG, "seen", id]),
        }
    }

    /// Runs `command`; when the group is missing, creates it (with the
    /// stream, reading from the start: entries appended before any node
    /// ran are delivered too) and runs it again.
    async fn with_group(&self, command: &deadpool_redis::redis::Cmd) -> Result<Value, StoreError> {
        let mut conn = self.redis.connection().await?;
        match command.query_async::<Value>(&mut *conn).await {
            Err(err) if err.code() == Some("NOGROUP") => {
                let created: Result<Value, RedisError> = cmd("XGROUP")
                    .arg("CREATE")
                    .arg(self.ingest_key(Key::Stream))
                    .arg(GROUP)
                    .arg("0")
                    .arg("MKSTREAM")
                    .query_async(&mut *conn)
                    .await;
                match created {
                    Err(err) if err.code() != Some("BUSYGROUP") => return Err(err.into()),
                    _ => log::info!("ingest: consumer group {GROUP} created"),
                }
                Ok(command.query_async(&mut *conn).await?)
            }
            Err(err) => {
                self.redis.reset_connections();
                Err(err.into())
            }
            Ok(value) => Ok(value),
        }
    }

    /// Acknowledges entries that were deleted from the stream (trimmed by
    /// the backend) while pending: there is nothing left to deliver.
    async fn ack_deleted(&self, deleted: Vec<String>) -> Result<(), StoreError> {
        if deleted.is_empty() {
            return Ok(());
        }
        log::warn!(
            "ingest: {} pending entries were deleted from the stream before delivery",
            deleted.len()
        );
        self.ack(&deleted).await
    }
}

/// Takes the lease if free, or renews it for its holder. KEYS: the lease.
/// ARGV: holder, ttl (ms).
const LEAD: &str = r#"
local holder = redis.call('GET', KEYS[1])
if holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// Drops the lease if `holder` has it. KEYS: the lease. ARGV: holder.
const RESIGN: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 0
"#;

/// Copies an entry to the dead letters and acknowledges it, in one step.
/// KEYS: the stream, the dead letters. ARGV: entry id, max length of the
/// dead letters, then field, value pairs.
const DEAD: &str = r#"
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
redis.call('XACK', KEYS[1], 'souk', ARGV[1])
return 0
"#;

/// The scripts, hashed once and sent by their SHA.
static LEAD_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LEAD));
static RESIGN_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RESIGN));
static DEAD_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(DEAD));

impl Ingest for RedisBroker {
    async fn lead(&self, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut conn = self.redis.connection().await?;
        let held: i64 = LEAD_SCRIPT
            .key(self.ingest_key(Key::Lease))
            .arg(holder)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut *conn)
            .await
            .inspect_err(|_| self.redis.reset_connections())?;
        Ok(held == 1)
    }

    async fn resign(&self, holder: &str) -> Result<(), StoreError> {
        let mut conn = self.redis.connection().await?;
        let _: Value = RESIGN_SCRIPT
            .key(self.ingest_key(Key::Lease))
            .arg(holder)
            .invoke_async(&mut *conn)
            .await?;
        Ok(())
    }

    async fn next(&self, consumer: &str, count: usize, idle: Duration) -> Result<Next, StoreError> {
        let stream = self.ingest_key(Key::Stream);
        let read = |from: &str| {
            let mut read = cmd("XREADGROUP");
            read.arg("GROUP")
                .arg(GROUP)
                .arg(consumer)
                .arg("COUNT")
                .arg(count)
                .arg("STREAMS")
                .arg(&stream)
                .arg(from);
            read
        };
        // Nothing pending in the group (the usual case): new entries.
        let summary = self
            .with_group(cmd("XPENDING").arg(&stream).arg(GROUP))
            .await?;
        if pending_count(&summary) > 0 {
            // This consumer's own pending entries: a batch it could not
            // finish.
            let (own, deleted) = read_reply(&self.with_group(&read("0")).await?);
            self.ack_deleted(deleted).await?;
            if !own.is_empty() {
                return Ok(Next::Entries(own));
            }
            // Entries a consumer that died (or lost the lease) left pending.
            let claimed = self
                .with_group(
                    cmd("XAUTOCLAIM")
                        .arg(&stream)
                        .arg(GROUP)
                        .arg(consumer)
                        .arg(idle.as_millis() as u64)
                        .arg("0-0")
                        .arg("COUNT")
                        .arg(count),
                )
                .await?;
            let (entries, deleted) = autoclaim_reply(&claimed);
            self.ack_deleted(deleted).await?;
            if entries.is_empty() {
                return Ok(Next::Wait);
            }
            log::info!(
                "ingest: {consumer} took over {} entries left pending",
                entries.len()
            );
            return Ok(Next::Entries(entries));
        }
        let (new, _) = read_reply(&self.with_group(&read(">")).await?);
        Ok(Next::Entries(new))
    }

    async fn mark(
        &self,
        keys: &[(String, String)],
        ttl: Duration,
    ) -> Result<Vec<Mark>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut marks = pipe();
        for (key, entry) in keys {
            marks
                .cmd("SET")
                .arg(self.ingest_key(Key::Seen(key)))
                .arg(entry)
                .arg("NX")
                .arg("GET")
                .arg("PX")
                .arg(ttl.as_millis() as u64);
        }
        let mut conn = self.redis.connection().await?;
        let found: Vec<Option<String>> = marks.query_async(&mut *conn).await?;
        Ok(keys
            .iter()
            .zip(found)
            .map(|((_, entry), found)| match found {
                None => Mark::Fresh,
                Some(holder) if holder == *entry => Mark::Retry,
                Some(holder) if holder == delivered_by(entry) => Mark::Delivered,
                Some(_) => Mark::Duplicate,
            })
            .collect())
    }

    async fn delivered(&self, keys: &[(String, String)], ttl: Duration) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut marks = pipe();
        for (key, entry) in keys {
            marks
                .cmd("SET")
                .arg(self.ingest_key(Key::Seen(key)))
                .arg(delivered_by(entry))
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .ignore();
        }
        let mut conn = self.redis.connection().await?;
        marks.query_async::<()>(&mut *conn).await?;
        Ok(())
    }

    async fn ack(&self, entries: &[String]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut conn = self.redis.connection().await?;
        let _: Value = cmd("XACK")
            .arg(self.ingest_key(Key::Stream))
            .arg(GROUP)
            .arg(entries)
            .query_async(&mut *conn)
            .await?;
        Ok(())
    }

    async fn dead(&self, entry: &QueueEntry, reason: &str) -> Result<(), StoreError> {
        let mut script = DEAD_SCRIPT.key(self.ingest_key(Key::Stream));
        script
            .key(self.ingest_key(Key::Dead))
            .arg(&entry.entry)
            .arg(DEAD_LEN);
        for (name, value) in &entry.fields {
            script.arg(name).arg(value.as_deref().unwrap_or(""));
        }
        script
            .arg("reason")
            .arg(reason)
            .arg("entry")
            .arg(&entry.entry);
        let mut conn = self.redis.connection().await?;
        let _: Value = script.invoke_async(&mut *conn).await?;
        Ok(())
    }

    async fn lag(&self) -> Result<u64, StoreError> {
        let groups = self
            .with_group(cmd("XINFO").arg("GROUPS").arg(self.ingest_key(Key::Stream)))
            .await?;
        let Value::Array(groups) = groups else {
            return Ok(0);
        };
        for group in groups {
            let fields = pairs(&group);
            let field = |name: &str| {
                fields
                    .iter()
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| *value)
            };
            if field("name").and_then(text).as_deref() != Some(GROUP) {
                continue;
            }
            let pending = field("pending").and_then(number).unwrap_or(0);
            // `lag` is nil when entries were deleted from the middle of the
            // stream: then only the pending ones are counted.
            let unread = field("lag").and_then(number).unwrap_or(0);
            return Ok(pending + unread);
        }
        Ok(0)
    }
}

/// What an idempotency key holds once its entry was delivered.
fn delivered_by(entry: &str) -> String {
    format!("{entry}:done")
}

/// Entries of an `XREADGROUP` reply on one stream, and the ids of pending
/// entries that were deleted (read back with no fields).
fn read_reply(reply: &Value) -> (Vec<QueueEntry>, Vec<String>) {
    let streams = match reply {
        Value::Array(streams) => streams.iter().filter_map(|s| match s {
            Value::Array(pair) if pair.len() == 2 => Some(&pair[1]),
            _ => None,
        }),
        _ => return (Vec::new(), Vec::new()),
    };
    let mut entries = Vec::new();
    let mut deleted = Vec::new();
    for list in streams {
        let (found, gone) = entry_list(list);
        entries.extend(found);
        deleted.extend(gone);
    }
    (entries, deleted)
}

/// Entries of an `XAUTOCLAIM` reply (`[next, entries, deleted]`) and the
/// ids of deleted ones.
fn autoclaim_reply(reply: &Value) -> (Vec<QueueEntry>, Vec<String>) {
    let Value::Array(parts) = reply else {
        return (Vec::new(), Vec::new());
    };
    let (mut entries, mut deleted) = parts.get(1).map(entry_list).unwrap_or_default();
    if let Some(Value::Array(ids)) = parts.get(2) {
        deleted.extend(ids.iter().filter_map(text));
    }
    entries.retain(|entry| !entry.fields.is_empty());
    (entries, deleted)
}

/// `[[id, [field, value, …]], …]`; an entry with nil fields was deleted.
fn entry_list(list: &Value) -> (Vec<QueueEntry>, Vec<String>) {
    let Value::Array(items) = list else {
        return (Vec::new(), Vec::new());
    };
    let mut entries = Vec::new();
    let mut deleted = Vec::new();
    for item in items {
        let Value::Array(pair) = item else { continue };
        let Some(id) = pair.first().and_then(text) else {
            continue;
        };
        match pair.get(1) {
            Some(Value::Array(flat)) => entries.push(QueueEntry {
                entry: id,
                fields: flat
                    .chunks(2)
                    .filter_map(|kv| Some((text(kv.first()?)?, kv.get(1).and_then(text))))
                    .collect(),
            }),
            Some(Value::Map(map)) => entries.push(QueueEntry {
                entry: id,
                fields: map
                    .iter()
                    .filter_map(|(k, v)| Some((text(k)?, text(v))))
                    .collect(),
            }),
            _ => deleted.push(id),
        }
    }
    (entries, deleted)
}

/// The count in an `XPENDING` summary (`[count, first, last, consumers]`).
fn pending_count(summary: &Value) -> u64 {
    match summary {
        Value::Array(parts) => parts.first().and_then(number).unwrap_or(0),
        _ => 0,
    }
}

/// A flat `[name, value, …]` array or a map, as pairs.
fn pairs(value: &Value) -> Vec<(String, &Value)> {
    match value {
        Value::Array(flat) => flat
            .chunks(2)
            .filter_map(|kv| Some((text(kv.first()?)?, kv.get(1)?)))
            .collect(),
        Value::Map(map) => map
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, v)))
            .collect(),
        _ => Vec::new(),
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn number(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => text(other)?.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::redis::fake::broker_without_scripts;

    #[tokio::test]
    async fn the_lease_goes_by_its_scripts_sha() {
        let (broker, seen) = broker_without_scripts(&LEAD_SCRIPT, ":1\r\n").await;
        for _ in 0..2 {
            let held = broker.lead("n1", Duration::from_secs(5)).await;
            assert!(matches!(held, Ok(true)), "{held:?}");
        }
        let seen = seen();
        assert_eq!(seen, ["EVALSHA 1", "SCRIPT LOAD", "EVALSHA 1", "EVALSHA 1"]);
    }

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn read_replies_give_entries_in_order_and_deleted_ids() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("souk:{ingest}"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("kind"), bulk("notification")]),
                ]),
                Value::Array(vec![bulk("2-0"), Value::Nil]),
                Value::Array(vec![
                    bulk("3-0"),
                    Value::Array(vec![bulk("data"), Value::BulkString(vec![0xff])]),
                ]),
            ]),
        ])]);
        let (entries, deleted) = read_reply(&reply);
        assert_eq!(deleted, vec!["2-0".to_owned()]);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].entry, "1-0");
        assert_eq!(
            entries[0].fields,
            vec![("kind".to_owned(), Some("notification".to_owned()))]
        );
        assert_eq!(entries[1].fields, vec![("data".to_owned(), None)]);
        assert_eq!(read_reply(&Value::Nil), (Vec::new(), Vec::new()));
    }

    #[test]
    fn autoclaim_replies_give_claimed_entries_and_deleted_ids() {
        let reply = Value::Array(vec![
            bulk("0-0"),
            Value::Array(vec![Value::Array(vec![
                bulk("5-0"),
                Value::Array(vec![bulk("id"), bulk("a")]),
            ])]),
            Value::Array(vec![bulk("4-0")]),
        ]);
        let (entries, deleted) = autoclaim_reply(&reply);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].entry, "5-0");
        assert_eq!(deleted, vec!["4-0".to_owned()]);
    }

    #[test]
    fn pending_summaries_count() {
        let summary = Value::Array(vec![Value::Int(3), bulk("1-0"), bulk("3-0"), Value::Nil]);
        assert_eq!(pending_count(&summary), 3);
        assert_eq!(pending_count(&Value::Nil), 0);
    }
}
