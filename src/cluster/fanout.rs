//! Room events out of a node: encoded once (all but the offset, which the
//! log assigns), appended to the room's log and published, in order. One
//! task publishes for the whole node, pipelining whatever has queued up, so
//! events leave in the order they were emitted. What Redis refuses is tried
//! again a few times; what still fails is reported to the requests waiting
//! on it ([`Fanout::emit_published`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{offset_counter, room_channel, room_last_offset, room_log};
use crate::broker::redis::Redis;
use crate::ids::{ListingId, UserId};
use crate::protocol::events::ServerEvent;
use crate::rooms::RoomKey;
use crate::store::StoreError;
use deadpool_redis::redis::{RedisResult, Value as RedisValue};

/// Events one pipeline publishes at most.
const MAX_BATCH: usize = 256;

/// Appends to the log and publishes, atomically, so the offset order is the
/// delivery order. Offsets come from one counter, so they order events
/// across rooms too: "everything after offset N in my rooms" is exact.
/// Each entry keeps the id of the room's entry before it (`p`), so that a
/// reader can tell whether trimming dropped events past a given offset.
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

struct Publish {
    /// Where it stands among everything this node queued.
    seq: u64,
    room: RoomKey,
    /// Shared by the copies of one event sent to several rooms.
    emission: u64,
    head: String,
    except: Option<UserId>,
    version: Option<i64>,
}

/// What the publisher is asked to do, in order.
enum Queued {
    Publish(Publish),
    /// Answered once everything queued before it is published: true when
    /// nothing queued since `since` failed to be.
    Barrier {
        since: u64,
        reply: oneshot::Sender<bool>,
    },
}

/// How often a batch Redis refused is tried again, and the pause before
/// each try: a reconnection, a failover or a slot migration takes a moment.
const RETRY_PAUSES: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(200),
    Duration::from_millis(500),
];

/// Sends server events to rooms on every node; cheap to clone.
#[derive(Clone)]
pub struct Fanout {
    queue: mpsc::UnboundedSender<Queued>,
    /// The `seq` of the next event queued.
    next_seq: Arc<AtomicU64>,
}

/// How long a room's log keeps events, and how many.
#[derive(Debug, Clone, Copy)]
pub struct LogLimits {
    pub ttl_ms: u64,
    pub max_len: u64,
}

impl Fanout {
    /// Starts the node's publisher on the current runtime.
    pub fn start(redis: Redis, limits: LogLimits) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        actix_web::rt::spawn(publish(redis, limits, rx));
        Fanout {
            queue,
            next_seq: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Emits `event` to every member of `room`.
    pub fn emit(&self, room: RoomKey, event: ServerEvent) {
        self.send(room, event, None, None);
    }

    /// Emits one event to several rooms: a connection in more than one of
    /// them gets it once, as Socket.IO's `to(a).to(b).emit()` does.
    pub fn emit_to(&self, rooms: &[RoomKey], event: ServerEvent) {
        self.emit_as(rand::random(), rooms, event, None);
    }

    /// [`Fanout::emit_to`] with a given emission id, and the listing
    /// version a listing event shows: a notice published again under the
    /// same id is dropped by the connections that had it.
    pub fn emit_as(
        &self,
        emission: u64,
        rooms: &[RoomKey],
        event: ServerEvent,
        version: Option<i64>,
    ) {
        let head = event.head();
        for room in rooms {
            let _ = self.queue.send(Queued::Publish(Publish {
                seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
                room: room.clone(),
                emission,
                head: head.clone(),
                except: None,
                version,
            }));
        }
    }

    /// Emits to every member of `room` but the connections of `except`.
    pub fn emit_except(&self, room: RoomKey, event: ServerEvent, except: Option<UserId>) {
        self.send(room, event, except, None);
    }

    /// Emits a listing event that shows the listing at `version`.
    pub fn emit_listing(&self, listing: ListingId, event: ServerEvent, version: i64) {
        self.send(RoomKey::Listing(listing), event, None, Some(version));
    }

    /// Resolves once every event emitted before the call is published, so
    /// that a request is answered only after the events it caused left.
    /// Those that could not be are logged; see [`Fanout::emit_published`].
    pub async fn published(&self) {
        let _ = self.barrier(u64::MAX).await;
    }

    /// Emits `event` to every member of `room` and resolves once it is
    /// published; fails when it could not be, for a request that only
    /// emits and must not be acknowledged then. It may also fail for
    /// another request's event emitted meanwhile; a retry then repeats the
    /// event.
    pub async fn emit_published(
        &self,
        room: RoomKey,
        event: ServerEvent,
    ) -> Result<(), StoreError> {
        self.all_published(|fanout| fanout.emit(room, event)).await
    }

    /// Runs `emit` and resolves once what it emitted is published; fails
    /// as [`Fanout::emit_published`] does.
    pub async fn all_published(&self, emit: impl FnOnce(&Self)) -> Result<(), StoreError> {
        let since = self.next_seq.load(Ordering::Relaxed);
        emit(self);
        match self.barrier(since).await {
            true => Ok(()),
            false => Err(StoreError::unavailable(
                "redis: the event could not be published",
            )),
        }
    }

    async fn barrier(&self, since: u64) -> bool {
        let (reply, done) = oneshot::channel();
        if self.queue.send(Queued::Barrier { since, reply }).is_err() {
            return false;
        }
        done.await.unwrap_or(false)
    }

    fn send(
        &self,
        room: RoomKey,
        event: ServerEvent,
        except: Option<UserId>,
        version: Option<i64>,
    ) {
        let head = event.head();
        let _ = self.queue.send(Queued::Publish(Publish {
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
            room,
            emission: rand::random(),
            head,
            except,
            version,
        }));
    }
}

async fn publish(redis: Redis, limits: LogLimits, mut rx: mpsc::UnboundedReceiver<Queued>) {
    // The highest `seq` of an event that could not be published.
    let mut failed_upto: Option<u64> = None;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut pending = Vec::new();
        let mut barriers = Vec::new();
        for queued in batch {
            match queued {
                Queued::Publish(event) => pending.push(event),
                Queued::Barrier { since, reply } => barriers.push((since, reply)),
            }
        }
        let mut error = String::new();
        for pause in std::iter::once(Duration::ZERO).chain(RETRY_PAUSES) {
            if pending.is_empty() {
                break;
            }
            tokio::time::sleep(pause).await;
            (pending, error) = send(&redis, limits, pending).await;
        }
        if !pending.is_empty() {
            log::warn!("{} room events not published: {error}", pending.len());
            let worst = pending.iter().map(|event| event.seq).max();
            failed_upto = failed_upto.max(worst);
        }
        for (since, reply) in barriers {
            let _ = reply.send(failed_upto.is_none_or(|failed| failed < since));
        }
    }
}

/// Publishes events in one pipeline; gives back those Redis refused (each
/// on its own, or all when the pipeline failed), and why.
async fn send(redis: &Redis, limits: LogLimits, events: Vec<Publish>) -> (Vec<Publish>, String) {
    let mut pipe = deadpool_redis::redis::pipe();
    pipe.ignore_errors();
    for event in &events {
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
            .arg(limits.ttl_ms)
            .arg(event.emission);
    }
    let replies: Vec<RedisResult<RedisValue>> = match redis.connection().await {
        Ok(mut conn) => match pipe.query_async(&mut *conn).await {
            Ok(replies) => replies,
            Err(err) => {
                redis.reset_connections();
                return (events, err.to_string());
            }
        },
        Err(err) => return (events, err.to_string()),
    };
    let mut refused = Vec::new();
    let mut error = String::new();
    for (event, reply) in events.into_iter().zip(replies) {
        if let Err(err) = reply {
            error = err.to_string();
            refused.push(event);
        }
    }
    (refused, error)
}
