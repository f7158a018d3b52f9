//! Room events out of a node: encoded once (all but the offset, which the
//! log assigns), appended to the room's log and published, in order. One
//! task publishes for the whole node, pipelining whatever has queued up, so
//! events leave in the order they were emitted.

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{offset_counter, room_channel, room_log};
use crate::ids::{ListingId, UserId};
use crate::protocol::socket::encode_event_head;
use crate::rooms::RoomKey;
use crate::store::Redis;

/// Events one pipeline publishes at most.
const MAX_BATCH: usize = 256;

/// Appends to the log and publishes, atomically, so the offset order is the
/// delivery order. Offsets come from one counter, so they order events
/// across rooms too: "everything after offset N in my rooms" is exact.
/// KEYS: the log, the offset counter. ARGV: channel, frame head, except,
/// version, log length, log TTL (ms), emission id.
const PUBLISH: &str = r#"
local n = redis.call('INCR', KEYS[2])
local id = n .. '-0'
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], id, 'h', ARGV[2], 'x', ARGV[3], 'e', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('SPUBLISH', ARGV[1], ARGV[3] .. '|' .. ARGV[4] .. '|' .. ARGV[7] .. '|' .. n .. '|' .. ARGV[2] .. ',"' .. id .. '"]')
return id
"#;

struct Publish {
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
    /// Answered once everything queued before it is published.
    Barrier(oneshot::Sender<()>),
}

/// Sends server events to rooms on every node; cheap to clone.
#[derive(Clone)]
pub struct Fanout {
    queue: mpsc::UnboundedSender<Queued>,
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
        Fanout { queue }
    }

    /// Emits `event` with `payload` to every member of `room`.
    pub fn emit(&self, room: RoomKey, event: &str, payload: &Value) {
        self.send(room, event, payload, None, None);
    }

    /// Emits one event to several rooms: a connection in more than one of
    /// them gets it once, as Socket.IO's `to(a).to(b).emit()` does.
    pub fn emit_to(&self, rooms: &[RoomKey], event: &str, payload: &Value) {
        let head = encode_event_head(event, payload);
        let emission = rand::random();
        for room in rooms {
            let _ = self.queue.send(Queued::Publish(Publish {
                room: room.clone(),
                emission,
                head: head.clone(),
                except: None,
                version: None,
            }));
        }
    }

    /// Emits to every member of `room` but the connections of `except`.
    pub fn emit_except(&self, room: RoomKey, event: &str, payload: &Value, except: Option<UserId>) {
        self.send(room, event, payload, except, None);
    }

    /// Emits a listing event that shows the listing at `version`.
    pub fn emit_listing(&self, listing: ListingId, event: &str, payload: &Value, version: i64) {
        self.send(
            RoomKey::Listing(listing),
            event,
            payload,
            None,
            Some(version),
        );
    }

    /// Resolves once every event emitted before the call is published, so
    /// that a request is answered only after the events it caused left.
    pub async fn published(&self) {
        let (reply, done) = oneshot::channel();
        if self.queue.send(Queued::Barrier(reply)).is_ok() {
            let _ = done.await;
        }
    }

    fn send(
        &self,
        room: RoomKey,
        event: &str,
        payload: &Value,
        except: Option<UserId>,
        version: Option<i64>,
    ) {
        let head = encode_event_head(event, payload);
        let _ = self.queue.send(Queued::Publish(Publish {
            room,
            emission: rand::random(),
            head,
            except,
            version,
        }));
    }
}

async fn publish(redis: Redis, limits: LogLimits, mut rx: mpsc::UnboundedReceiver<Queued>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut pipe = deadpool_redis::redis::pipe();
        let mut barriers = Vec::new();
        let mut events = 0;
        for queued in batch {
            let event = match queued {
                Queued::Publish(event) => event,
                Queued::Barrier(reply) => {
                    barriers.push(reply);
                    continue;
                }
            };
            events += 1;
            pipe.cmd("EVAL")
                .arg(PUBLISH)
                .arg(2)
                .arg(room_log(redis.prefix(), &event.room))
                .arg(offset_counter(redis.prefix()))
                .arg(room_channel(redis.prefix(), &event.room))
                .arg(&event.head)
                .arg(event.except.as_ref().map(UserId::as_str).unwrap_or(""))
                .arg(event.version.map(|v| v.to_string()).unwrap_or_default())
                .arg(limits.max_len)
                .arg(limits.ttl_ms)
                .arg(event.emission)
                .ignore();
        }
        if events > 0 {
            let sent = match redis.connection().await {
                Ok(mut conn) => pipe
                    .query_async::<()>(&mut *conn)
                    .await
                    .map_err(|err| err.to_string()),
                Err(err) => Err(err.to_string()),
            };
            if let Err(err) = sent {
                log::warn!("{events} room events not published: {err}");
            }
        }
        for reply in barriers {
            let _ = reply.send(());
        }
    }
}
