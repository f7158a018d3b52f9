//! Room events in memory: one counter gives every event its offset, each
//! room keeps a capped log that lives `ttl` after its last event (as the
//! Redis stream does), and publishing hands each event to the followers of
//! its room while the state is locked, so they get one order per room.
//! Nothing is ever cut off here, so a follower never sees `Arrival::Gap`.

use std::collections::{HashMap, HashSet, VecDeque};

use actix::Recipient;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{lock, MemoryBroker, Purge};
use crate::broker::{
    Arrival, Events, Follow, History, LogLimits, Publication, RoomEvent, Subscription,
};
use crate::ids::RoomKey;
use crate::store::StoreError;

pub(super) struct State {
    /// The offset of the last event published.
    offset: u64,
    logs: HashMap<RoomKey, Log>,
    followers: HashMap<u64, Follower>,
    next_follower: u64,
    purge: Purge,
}

impl Default for State {
    /// Offsets start from the time in microseconds, as Redis's counter
    /// does when it was lost: a node started again hands out offsets past
    /// those its clients kept from before.
    fn default() -> Self {
        State {
            offset: u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(0),
            logs: HashMap::new(),
            followers: HashMap::new(),
            next_follower: 0,
            purge: Purge::default(),
        }
    }
}

/// A room's log.
struct Log {
    /// Oldest first; at most `max_len`.
    events: VecDeque<RoomEvent>,
    /// The offset of the newest event trimmed away (0: none): a reader
    /// after an older offset missed it.
    dropped_upto: u64,
    /// The log is dropped whole `ttl` after its last event.
    until: Instant,
}

/// A node's subscription: the rooms it follows and where their events go.
struct Follower {
    rooms: HashSet<RoomKey>,
    sink: Recipient<Arrival>,
}

#[cfg(test)]
impl State {
    /// Events held in every log, and followers.
    pub(super) fn held(&self) -> (usize, usize) {
        let events = self.logs.values().map(|log| log.events.len()).sum();
        (events, self.followers.len())
    }
}

impl Events for MemoryBroker {
    async fn publish(
        &self,
        batch: &[Publication],
        limits: LogLimits,
    ) -> Vec<Result<u64, StoreError>> {
        let now = Instant::now();
        let mut state = lock(&self.inner.events);
        if state.purge.due(now) {
            state.logs.retain(|_, log| now < log.until);
        }
        let mut offsets = Vec::with_capacity(batch.len());
        for publication in batch {
            state.offset += 1;
            let offset = state.offset;
            let event = RoomEvent {
                room: publication.room.clone(),
                offset,
                emission: publication.emission,
                frame: format!("{},\"{offset}-0\"]", publication.head),
                except: publication.except.clone(),
                version: publication.version,
            };
            let log = state
                .logs
                .entry(publication.room.clone())
                .or_insert_with(|| Log {
                    events: VecDeque::new(),
                    dropped_upto: 0,
                    until: now,
                });
            if now >= log.until {
                // Expired: a new log, as Redis starts a new stream.
                log.events.clear();
                log.dropped_upto = 0;
            }
            log.until = now + limits.ttl;
            log.events.push_back(event.clone());
            while log.events.len() as u64 > limits.max_len {
                if let Some(dropped) = log.events.pop_front() {
                    log.dropped_upto = dropped.offset;
                }
            }
            for follower in state.followers.values() {
                if follower.rooms.contains(&event.room) {
                    follower.sink.do_send(Arrival::Event(event.clone()));
                }
            }
            offsets.push(Ok(offset));
        }
        offsets
    }

    async fn since(&self, room: &RoomKey, after: u64) -> Result<History, StoreError> {
        let now = Instant::now();
        let mut state = lock(&self.inner.events);
        let Some(log) = state.logs.get(room) else {
            return Ok(History::Events(Vec::new()));
        };
        if now >= log.until {
            state.logs.remove(room);
            return Ok(History::Events(Vec::new()));
        }
        if log.dropped_upto > after {
            return Ok(History::Trimmed);
        }
        let events = log
            .events
            .iter()
            .filter(|event| event.offset > after)
            .cloned()
            .collect();
        Ok(History::Events(events))
    }

    /// The subscription's task applies `Follow` commands to the state, and
    /// forgets the follower once every handle on it is dropped.
    fn subscribe(&self, sink: Recipient<Arrival>) -> Subscription {
        let (commands, mut rx) = mpsc::unbounded_channel();
        let id = {
            let mut state = lock(&self.inner.events);
            let id = state.next_follower;
            state.next_follower += 1;
            state.followers.insert(
                id,
                Follower {
                    rooms: HashSet::new(),
                    sink,
                },
            );
            id
        };
        let broker = self.clone();
        tokio::spawn(async move {
            while let Some(command) = rx.recv().await {
                let mut state = lock(&broker.inner.events);
                let Some(follower) = state.followers.get_mut(&id) else {
                    break;
                };
                match command {
                    Follow::Room(room, followed) => {
                        follower.rooms.insert(room);
                        let _ = followed.send(());
                    }
                    Follow::Drop(room) => {
                        follower.rooms.remove(&room);
                    }
                }
            }
            lock(&broker.inner.events).followers.remove(&id);
        });
        Subscription::new(commands)
    }
}
