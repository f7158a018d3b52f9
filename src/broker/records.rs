//! Session records, kept for recovery on the broker: the registry tells the
//! [`RecordKeeper`] what each socket binds, joins and leaves, and the
//! keeper saves what changed in batches, one save at a time, so a burst of
//! joins makes one round of writes instead of one each. It renews every
//! kept record a few times a window. And [`missed`]: what a recovering
//! socket missed, read from the rooms' logs.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Changes, Events, History, Records, RoomEvent, Save, Saved};
use crate::ids::{RoomKey, UserId};
use crate::store::StoreError;

/// Keeps sockets' records; cheap to clone. A socket is named by a number
/// unique among the keeper's callers (the registry's session id).
#[derive(Clone)]
pub struct RecordKeeper {
    changes: mpsc::UnboundedSender<Change>,
}

/// What a socket's record goes through, in order.
#[derive(Debug)]
enum Change {
    Bind {
        socket: u64,
        pid: String,
        owner: String,
        user: String,
        rooms: BTreeSet<String>,
    },
    Join(u64, String),
    Leave(u64, String),
    Close(u64),
}

impl RecordKeeper {
    /// Starts the keeper on the current runtime: records live `window`
    /// after their last save.
    pub fn start<R>(records: R, window: Duration) -> Self
    where
        R: Records + Send + Sync + 'static,
    {
        let (changes, rx) = mpsc::unbounded_channel();
        let keeper = Keeper {
            records,
            window,
            kept: HashMap::new(),
            dirty: HashSet::new(),
            unsaved: Vec::new(),
        };
        actix_web::rt::spawn(keeper.run(rx));
        RecordKeeper { changes }
    }

    /// `socket` CONNECTed as `user` under `pid`, owned by `owner`
    /// (`node/session`), in `rooms`: its record is written whole.
    pub fn bind(
        &self,
        socket: u64,
        pid: String,
        owner: String,
        user: String,
        rooms: impl Iterator<Item = String>,
    ) {
        let rooms = rooms.collect();
        let _ = self.changes.send(Change::Bind {
            socket,
            pid,
            owner,
            user,
            rooms,
        });
    }

    /// A bound socket joined `room` (nothing for an unbound one).
    pub fn joined(&self, socket: u64, room: String) {
        let _ = self.changes.send(Change::Join(socket, room));
    }

    /// A bound socket left `room`.
    pub fn left(&self, socket: u64, room: String) {
        let _ = self.changes.send(Change::Leave(socket, room));
    }

    /// The socket is gone: its record is saved once more, to live one
    /// window from now for a reconnect, and then left alone.
    pub fn closed(&self, socket: u64) {
        let _ = self.changes.send(Change::Close(socket));
    }
}

/// A bound socket's record.
struct Kept {
    pid: String,
    owner: String,
    user: String,
    rooms: BTreeSet<String>,
    /// What changed since the last save.
    changes: Changes,
}

struct Keeper<R> {
    records: R,
    window: Duration,
    kept: HashMap<u64, Kept>,
    /// Sockets whose record changed since the last save, or is due renewal.
    dirty: HashSet<u64>,
    /// Saves of sockets that are gone, waiting for the next save.
    unsaved: Vec<Save>,
}

impl<R: Records> Keeper<R> {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Change>) {
        // Records live one window; connected sockets renew theirs.
        let every = self.window / 3;
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            if self.dirty.is_empty() && self.unsaved.is_empty() {
                tokio::select! {
                    change = rx.recv() => match change {
                        Some(change) => self.apply(change),
                        None => return,
                    },
                    _ = renew.tick() => self.dirty.extend(self.kept.keys().copied()),
                }
            }
            // What queued up while the last save was in flight joins this one.
            while let Ok(change) = rx.try_recv() {
                self.apply(change);
            }
            self.save().await;
        }
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::Bind {
                socket,
                pid,
                owner,
                user,
                rooms,
            } => {
                let changes = Changes::whole(user.clone(), rooms.iter().cloned());
                let kept = Kept {
                    pid,
                    owner,
                    user,
                    rooms,
                    changes,
                };
                self.kept.insert(socket, kept);
                self.dirty.insert(socket);
            }
            Change::Join(socket, room) => {
                if let Some(kept) = self.kept.get_mut(&socket) {
                    kept.rooms.insert(room.clone());
                    kept.changes.join(room);
                    self.dirty.insert(socket);
                }
            }
            Change::Leave(socket, room) => {
                if let Some(kept) = self.kept.get_mut(&socket) {
                    kept.rooms.remove(&room);
                    kept.changes.leave(room);
                    self.dirty.insert(socket);
                }
            }
            Change::Close(socket) => {
                self.dirty.remove(&socket);
                if let Some(mut kept) = self.kept.remove(&socket) {
                    self.unsaved.push(take_save(&mut kept));
                }
            }
        }
    }

    /// Saves what changed (a record with no change is renewed).
    async fn save(&mut self) {
        let mut saves = std::mem::take(&mut self.unsaved);
        let mut sockets = Vec::new();
        for socket in std::mem::take(&mut self.dirty) {
            if let Some(kept) = self.kept.get_mut(&socket) {
                saves.push(take_save(kept));
                sockets.push(socket);
            }
        }
        if saves.is_empty() {
            return;
        }
        let saved = match self.records.save(&saves, self.window).await {
            Ok(saved) => saved,
            Err(err) => {
                log::warn!("recovery records not saved: {err}");
                Saved::default()
            }
        };
        self.after_save(&sockets, &saved);
    }

    /// Sockets whose record another socket claimed no longer keep it; those
    /// whose record the broker lost write it whole again.
    fn after_save(&mut self, sockets: &[u64], saved: &Saved) {
        for socket in sockets {
            let Some(kept) = self.kept.get_mut(socket) else {
                continue;
            };
            if saved.taken.contains(&kept.pid) {
                self.kept.remove(socket);
            } else if saved.gone.contains(&kept.pid) {
                kept.changes = Changes::whole(kept.user.clone(), kept.rooms.iter().cloned());
                self.dirty.insert(*socket);
            }
        }
    }
}

/// What to save of a record now.
fn take_save(kept: &mut Kept) -> Save {
    Save {
        pid: kept.pid.clone(),
        owner: kept.owner.clone(),
        changes: std::mem::take(&mut kept.changes),
    }
}

/// What a recovering socket missed.
#[derive(Debug, PartialEq)]
pub enum Missed {
    /// Every event after the offset, oldest first, each once.
    Events(Vec<RoomEvent>),
    /// A log has dropped some of them.
    Trimmed,
    /// They come to more than the replay may carry.
    TooLarge,
}

/// Every event after `after` in `rooms` (`user`'s own typing left out), as
/// long as their packets come to at most `max_bytes`: reading stops as soon
/// as they do not.
pub async fn missed(
    events: &impl Events,
    rooms: &[RoomKey],
    after: u64,
    user: &UserId,
    max_bytes: usize,
) -> Result<Missed, StoreError> {
    let mut all: Vec<RoomEvent> = Vec::new();
    // Emission → where it is in `all`.
    let mut seen: HashMap<u64, usize> = HashMap::new();
    let mut bytes = 0usize;
    for room in rooms {
        let History::Events(logged) = events.since(room, after).await? else {
            return Ok(Missed::Trimmed);
        };
        for event in logged {
            if event.except.as_ref() == Some(user) {
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
