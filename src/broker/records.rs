//! Session records, kept for recovery on the broker: the registry tells the
//! [`RecordKeeper`] what each socket binds, joins and leaves, and the
//! keeper saves what changed in batches, one save at a time, so a burst of
//! joins makes one round of writes instead of one each. It renews every
//! kept record a few times a window. And [`missed`]: what a recovering
//! socket missed, read from the rooms' logs.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Changes, Events, History, Records, RoomEvent, Save, Saved};
use crate::ids::{RoomKey, UserId};
use crate::store::StoreError;

/// The most records one save writes. Every kept record is renewed a few
/// times a window, all at once: in one save, 19,000 sockets' records were
/// 19,000 script calls in flight together, whose futures and buffers took
/// ~10 MiB at each renewal, kept by the allocator afterwards (half a KiB
/// per idle connection: docs/BENCHMARKS.md, issue 13).
const SAVE_BATCH: usize = 256;

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
        rooms: RoomSet,
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
        let rooms = RoomSet::of(rooms);
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

/// A record's rooms: a set in a slice sized to what it holds. Every
/// connected socket has a record, most in one room or a few, where a
/// `BTreeSet<String>`'s first node alone takes ~280 bytes (issue 13).
#[derive(Debug, Default)]
struct RoomSet(Box<[Box<str>]>);

impl RoomSet {
    fn of(rooms: impl Iterator<Item = String>) -> Self {
        let mut rooms: Vec<Box<str>> = rooms.map(String::into_boxed_str).collect();
        rooms.sort_unstable();
        rooms.dedup();
        RoomSet(rooms.into_boxed_slice())
    }

    fn insert(&mut self, room: String) {
        if !self.0.iter().any(|kept| **kept == *room) {
            let mut rooms = std::mem::take(&mut self.0).into_vec();
            rooms.push(room.into_boxed_str());
            self.0 = rooms.into_boxed_slice();
        }
    }

    fn remove(&mut self, room: &str) {
        let mut rooms = std::mem::take(&mut self.0).into_vec();
        rooms.retain(|kept| &**kept != room);
        self.0 = rooms.into_boxed_slice();
    }

    fn strings(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().map(|room| room.to_string())
    }
}

/// A bound socket's record: one per connected socket, kept in a map whose
/// table holds it inline, so it is kept small (issue 13): boxed strings,
/// and changes only while some wait for a save.
struct Kept {
    pid: Box<str>,
    owner: Box<str>,
    user: Box<str>,
    rooms: RoomSet,
    /// What changed since the last save.
    changes: Option<Box<Changes>>,
}

impl Kept {
    fn changes(&mut self) -> &mut Changes {
        self.changes.get_or_insert_with(Box::default)
    }

    /// The whole record, to write again.
    fn whole(&self) -> Changes {
        Changes::whole(self.user.to_string(), self.rooms.strings())
    }
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
        // Records live one window; connected sockets renew theirs. (A tokio
        // interval may not be zero, whatever the settings say.)
        let every = (self.window / 3).max(Duration::from_millis(1));
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
                let mut kept = Kept {
                    pid: pid.into_boxed_str(),
                    owner: owner.into_boxed_str(),
                    user: user.into_boxed_str(),
                    rooms,
                    changes: None,
                };
                kept.changes = Some(Box::new(kept.whole()));
                self.kept.insert(socket, kept);
                self.dirty.insert(socket);
            }
            Change::Join(socket, room) => {
                if let Some(kept) = self.kept.get_mut(&socket) {
                    kept.rooms.insert(room.clone());
                    kept.changes().join(room);
                    self.dirty.insert(socket);
                }
            }
            Change::Leave(socket, room) => {
                if let Some(kept) = self.kept.get_mut(&socket) {
                    kept.rooms.remove(&room);
                    kept.changes().leave(room);
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

    /// Saves what changed (a record with no change is renewed), at most
    /// [`SAVE_BATCH`] records at a time: the caller saves again while some
    /// wait.
    async fn save(&mut self) {
        let gone = self.unsaved.len().min(SAVE_BATCH);
        let mut saves: Vec<Save> = self.unsaved.drain(..gone).collect();
        let mut sockets = Vec::new();
        let room = SAVE_BATCH - saves.len();
        let batch: Vec<u64> = self.dirty.iter().take(room).copied().collect();
        for socket in batch {
            self.dirty.remove(&socket);
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
            if saved.taken.iter().any(|pid| **pid == *kept.pid) {
                self.kept.remove(socket);
            } else if saved.gone.iter().any(|pid| **pid == *kept.pid) {
                kept.changes = Some(Box::new(kept.whole()));
                self.dirty.insert(*socket);
            }
        }
    }
}

/// What to save of a record now.
fn take_save(kept: &mut Kept) -> Save {
    Save {
        pid: kept.pid.to_string(),
        owner: kept.owner.to_string(),
        changes: kept
            .changes
            .take()
            .map(|changes| *changes)
            .unwrap_or_default(),
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use chrono::{DateTime, Utc};

    use std::collections::BTreeSet;

    use super::*;
    use crate::broker::{Arrival, Claim, LogLimits, Publication, Subscription};

    /// Records that keep every batch saved and answer the queued answers.
    #[derive(Clone, Default)]
    struct Kept {
        batches: Arc<Mutex<Vec<Vec<Save>>>>,
        answers: Arc<Mutex<VecDeque<Saved>>>,
    }

    impl Records for Kept {
        async fn save(&self, saves: &[Save], _: Duration) -> Result<Saved, StoreError> {
            if let Ok(mut batches) = self.batches.lock() {
                batches.push(saves.to_vec());
            }
            let answer = self.answers.lock().ok().and_then(|mut a| a.pop_front());
            Ok(answer.unwrap_or_default())
        }
        async fn claim(
            &self,
            _: &str,
            _: &str,
            _: &str,
            _: DateTime<Utc>,
        ) -> Result<Claim, StoreError> {
            Ok(Claim::Missing)
        }
        async fn release(&self, _: &str, _: &str) -> Result<(), StoreError> {
            Ok(())
        }
    }

    impl Kept {
        fn answering(answers: Vec<Saved>) -> Self {
            let kept = Kept::default();
            if let Ok(mut queued) = kept.answers.lock() {
                queued.extend(answers);
            }
            kept
        }

        fn batches(&self) -> Vec<Vec<Save>> {
            self.batches.lock().map(|b| b.clone()).unwrap_or_default()
        }
    }

    fn rooms(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn bind(keeper: &RecordKeeper, socket: u64, in_rooms: &[&str]) {
        let rooms = in_rooms.iter().map(|r| r.to_string());
        keeper.bind(
            socket,
            format!("p{socket}"),
            format!("n/{socket}"),
            "u".into(),
            rooms,
        );
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(30)).await;
    }

    const WINDOW: Duration = Duration::from_secs(60);

    #[actix_web::test]
    async fn changes_queued_together_make_one_save_of_what_changed() {
        let records = Kept::default();
        let keeper = RecordKeeper::start(records.clone(), WINDOW);
        bind(&keeper, 1, &["user:u", "listing:a"]);
        keeper.joined(1, "listing:b".into());
        keeper.left(1, "listing:a".into());
        settle().await;
        let batches = records.batches();
        assert_eq!(batches.len(), 1, "{batches:?}");
        let save = &batches[0][0];
        assert_eq!((save.pid.as_str(), save.owner.as_str()), ("p1", "n/1"));
        assert_eq!(save.changes.bind.as_deref(), Some("u"));
        assert_eq!(save.changes.joined, rooms(&["listing:b", "user:u"]));
        assert_eq!(save.changes.left, rooms(&["listing:a"]));
    }

    #[actix_web::test]
    async fn a_record_the_broker_lost_is_written_whole_again() {
        let lost = Saved {
            taken: Vec::new(),
            gone: vec!["p1".into()],
        };
        let records = Kept::answering(vec![Saved::default(), lost]);
        let keeper = RecordKeeper::start(records.clone(), WINDOW);
        bind(&keeper, 1, &["user:u"]);
        settle().await;
        keeper.joined(1, "listing:b".into());
        settle().await;
        let batches = records.batches();
        assert_eq!(batches.len(), 3, "{batches:?}");
        let whole = &batches[2][0].changes;
        assert_eq!(whole.bind.as_deref(), Some("u"));
        assert_eq!(whole.joined, rooms(&["listing:b", "user:u"]));
    }

    #[actix_web::test]
    async fn a_record_another_socket_took_is_no_longer_saved() {
        let taken = Saved {
            taken: vec!["p1".into()],
            gone: Vec::new(),
        };
        let records = Kept::answering(vec![taken]);
        let keeper = RecordKeeper::start(records.clone(), WINDOW);
        bind(&keeper, 1, &["user:u"]);
        settle().await;
        keeper.joined(1, "listing:b".into());
        keeper.closed(1);
        settle().await;
        assert_eq!(records.batches().len(), 1);
    }

    #[actix_web::test]
    async fn a_zero_window_does_not_stop_the_keeper() {
        let records = Kept::default();
        let keeper = RecordKeeper::start(records.clone(), Duration::ZERO);
        bind(&keeper, 1, &["user:u"]);
        settle().await;
        assert!(!records.batches().is_empty());
    }

    #[actix_web::test]
    async fn bound_sockets_are_renewed_and_a_closed_one_is_saved_once_more() {
        let records = Kept::default();
        let keeper = RecordKeeper::start(records.clone(), Duration::from_millis(90));
        bind(&keeper, 1, &["user:u"]);
        bind(&keeper, 2, &["user:v"]);
        settle().await;
        keeper.closed(2);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let batches = records.batches();
        let saved = |pid: &str| {
            batches
                .iter()
                .flatten()
                .filter(|save| save.pid == pid)
                .count()
        };
        assert!(
            saved("p1") >= 3,
            "renewed every third of a window: {batches:?}"
        );
        assert_eq!(saved("p2"), 2, "bound, then closed: {batches:?}");
    }

    #[actix_web::test]
    async fn many_records_are_renewed_in_batches_of_a_bounded_size() {
        let records = Kept::default();
        let keeper = RecordKeeper::start(records.clone(), Duration::from_millis(300));
        let sockets = 3 * SAVE_BATCH as u64 + 7;
        for socket in 0..sockets {
            bind(&keeper, socket, &["user:u"]);
        }
        // The binds, then one renewal (a third of the window).
        tokio::time::sleep(Duration::from_millis(150)).await;
        let batches = records.batches();
        let largest = batches.iter().map(Vec::len).max().unwrap_or(0);
        assert!(largest <= SAVE_BATCH, "a save of {largest} records");
        let saves: usize = batches.iter().map(Vec::len).sum();
        assert!(
            saves >= 2 * sockets as usize,
            "every record bound and renewed: {saves} saves"
        );
        // They all close at once: their last saves are batched too.
        let before = records.batches().len();
        for socket in 0..sockets {
            keeper.closed(socket);
        }
        settle().await;
        let batches = records.batches();
        let closing = &batches[before..];
        let largest = closing.iter().map(Vec::len).max().unwrap_or(0);
        assert!(
            largest <= SAVE_BATCH,
            "a save of {largest} records on close"
        );
    }

    /// Room logs: `listing:a` and `listing:b` hold their events; any other
    /// room's log was trimmed.
    struct Logs;

    fn logged(room: &str, offset: u64, emission: u64, except: Option<&str>) -> RoomEvent {
        RoomEvent {
            room: RoomKey::parse(room).unwrap_or_else(|| unreachable!()),
            offset,
            emission,
            frame: format!("42[\"e\",\"{offset}-0\"]"),
            except: except.and_then(UserId::parse),
            version: None,
        }
    }

    impl Events for Logs {
        async fn publish(&self, _: &[Publication], _: LogLimits) -> Vec<Result<u64, StoreError>> {
            Vec::new()
        }
        async fn since(&self, room: &RoomKey, after: u64) -> Result<History, StoreError> {
            let all = match room.to_string().as_str() {
                "listing:a" => vec![
                    logged("listing:a", 2, 20, None),
                    logged("listing:a", 5, 50, Some("u")),
                    logged("listing:a", 6, 60, None),
                ],
                "listing:b" => vec![
                    logged("listing:b", 3, 30, None),
                    logged("listing:b", 4, 60, None),
                ],
                _ => return Ok(History::Trimmed),
            };
            Ok(History::Events(
                all.into_iter().filter(|e| e.offset > after).collect(),
            ))
        }
        fn subscribe(&self, _: actix::Recipient<Arrival>) -> Subscription {
            Subscription::new(mpsc::unbounded_channel().0)
        }
    }

    #[actix_web::test]
    async fn missed_events_come_once_in_offset_order_without_the_users_own() {
        let rooms: Vec<RoomKey> = ["listing:a", "listing:b"]
            .iter()
            .filter_map(|r| RoomKey::parse(r))
            .collect();
        let user = UserId::parse("u").unwrap_or_else(|| unreachable!());
        let missed = missed(&Logs, &rooms, 2, &user, 1 << 20).await;
        let Ok(Missed::Events(events)) = missed else {
            panic!("{missed:?}");
        };
        // Emission 60 went to both rooms: replayed once, at its first offset.
        let offsets: Vec<u64> = events.iter().map(|e| e.offset).collect();
        assert_eq!(offsets, vec![3, 4]);
        let small = missed_in(&Logs, &rooms, &user, 10).await;
        assert!(matches!(small, Ok(Missed::TooLarge)), "{small:?}");
        let trimmed = rooms.iter().cloned().chain(RoomKey::parse("listing:c"));
        let trimmed: Vec<RoomKey> = trimmed.collect();
        let gone = missed_in(&Logs, &trimmed, &user, 1 << 20).await;
        assert!(matches!(gone, Ok(Missed::Trimmed)), "{gone:?}");
    }

    async fn missed_in(
        logs: &Logs,
        rooms: &[RoomKey],
        user: &UserId,
        max_bytes: usize,
    ) -> Result<Missed, StoreError> {
        missed(logs, rooms, 0, user, max_bytes).await
    }

    #[test]
    fn a_records_rooms_take_what_they_hold() {
        let names = ["user:u1", "listing:a", "user:u1"];
        // An iterator of unknown length, as the registry's set gives.
        let given = names.iter().map(|name| name.to_string()).filter(|_| true);
        let mut rooms = RoomSet::of(given);
        assert_eq!(
            rooms.strings().collect::<Vec<_>>(),
            ["listing:a", "user:u1"]
        );
        rooms.insert("listing:a".to_owned());
        rooms.insert("booking:b".to_owned());
        rooms.remove("user:u1");
        let kept: BTreeSet<String> = rooms.strings().collect();
        assert_eq!(kept.len(), 2);
        assert!(kept.contains("booking:b") && kept.contains("listing:a"));
    }

    /// One record per connected socket, held inline in the keeper's map:
    /// boxed strings and changes only while some wait (issue 13).
    #[test]
    fn a_kept_record_is_small() {
        let size = std::mem::size_of::<Kept>();
        // 168 bytes with three `String`s, a `Vec` and `Changes` inline.
        assert!(size <= 72, "Kept is {size} bytes");
    }
}
