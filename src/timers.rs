//! One timer queue per thread. An actor arms its timers here instead of in
//! its own context (`run_later`, `run_interval`: a boxed future and a tokio
//! timer each, for as long as they run): an armed timer is a 24-byte entry
//! in a min-heap, and one task per thread sleeps until the earliest deadline,
//! then sends each due entry's owner a [`Due`] message.
//!
//! Deadlines are rounded up to [`TICK`]: a timer fires at most one tick
//! late and never early, and the thread wakes at most once a tick however
//! many timers it holds.
//!
//! An owner ([`Timers`]) holds at most one timer of each [`Kind`]: arming a
//! kind again replaces the pending one. Cancelled and replaced entries stay
//! in the heap until they reach its top or until they are half of it, when
//! the heap is rebuilt without them; so re-arming never grows the queue
//! past about twice its live timers. Entries of an owner that is dropped, or
//! whose actor has ended, are dropped unsent.
//!
//! Use it from an actix thread (inside its `LocalSet`): the sleeping task is
//! spawned there on first use, and again if that thread's runtime was
//! replaced.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use actix::{Message, Recipient, WeakRecipient};
use tokio::time::{Instant, Sleep};

/// How many kinds of timer one owner may hold at once.
pub const KINDS: usize = 8;
/// The queue's resolution: deadlines are rounded up to a multiple of it.
pub const TICK: Duration = Duration::from_millis(TICK_MS);
const TICK_MS: u64 = 10;
/// Cancelled entries tolerated before the heap is rebuilt without them
/// (once they are also half of it).
const MIN_REBUILD: usize = 64;
/// The owner of a handle made off an actix thread, or detached.
const NO_SLOT: u32 = u32::MAX;

/// Which of its timers an owner is told about: an index below [`KINDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind(u8);

impl Kind {
    /// Kind `index`; `const` so that an index out of range fails the build.
    pub const fn new(index: u8) -> Kind {
        assert!((index as usize) < KINDS, "a timer kind is below KINDS");
        Kind(index)
    }
}

/// Sent to a timer's owner when it is due: its kind, and the token it was
/// armed with (0 unless armed with [`Timers::after_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct Due {
    pub kind: Kind,
    pub token: u32,
}

/// One actor's timers in its thread's queue; dropping it cancels them all.
/// Not `Send`: a queue belongs to one thread.
pub struct Timers {
    slot: u32,
    _thread: PhantomData<*const ()>,
}

impl Timers {
    /// Timers that tell `owner`: make them on the thread the owner runs on
    /// (in its `started`).
    pub fn register(owner: WeakRecipient<Due>) -> Timers {
        Timers {
            slot: with_queue(|queue| queue.register(owner)).unwrap_or(NO_SLOT),
            _thread: PhantomData,
        }
    }

    /// A handle with no owner yet: arming it does nothing.
    pub const fn detached() -> Timers {
        Timers {
            slot: NO_SLOT,
            _thread: PhantomData,
        }
    }

    /// Arms `kind` to fire once, `delay` from now, replacing any pending one.
    pub fn after(&self, kind: Kind, delay: Duration) {
        self.arm(kind, delay, Repeat::Once(0));
    }

    /// As [`Timers::after`], with a token that [`Due`] carries back.
    pub fn after_with(&self, kind: Kind, token: u32, delay: Duration) {
        self.arm(kind, delay, Repeat::Once(token));
    }

    /// Arms `kind` to fire every `period`, first `period` from now; the
    /// next deadline follows from the last, not from when it was handled.
    pub fn every(&self, kind: Kind, period: Duration) {
        self.arm(kind, period, Repeat::Every(period));
    }

    /// Cancels `kind` if it is pending.
    pub fn cancel(&self, kind: Kind) {
        if self.slot != NO_SLOT {
            with_queue(|queue| queue.cancel(self.slot, kind));
        }
    }

    fn arm(&self, kind: Kind, delay: Duration, repeat: Repeat) {
        if self.slot == NO_SLOT {
            return;
        }
        let at = Instant::now() + delay.min(MAX_DELAY);
        match with_queue(|queue| queue.arm(self.slot, kind, at, repeat)) {
            Some(Wake::Spawn) => {
                tokio::task::spawn_local(Driver::new());
            }
            Some(Wake::Driver(waker)) => waker.wake(),
            Some(Wake::Nothing) | None => {}
        }
    }
}

impl Drop for Timers {
    fn drop(&mut self) {
        if self.slot != NO_SLOT {
            with_queue(|queue| queue.unregister(self.slot));
        }
    }
}

/// What this thread's queue holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Entries in the heap, pending or cancelled.
    pub entries: usize,
    /// Of those, cancelled or replaced ones not yet removed.
    pub cancelled: usize,
    /// Registered owners.
    pub owners: usize,
}

/// This thread's queue, as it is now.
pub fn stats() -> Stats {
    with_queue(|queue| Stats {
        entries: queue.heap.len(),
        cancelled: queue.cancelled,
        owners: queue.slots.len() - queue.free.len(),
    })
    .unwrap_or_default()
}

/// Longer delays are cut to this (the tick count must fit).
const MAX_DELAY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

thread_local! {
    static QUEUE: RefCell<Queue> = RefCell::new(Queue::new());
}

/// Runs `f` on this thread's queue; `None` while the thread ends.
fn with_queue<R>(f: impl FnOnce(&mut Queue) -> R) -> Option<R> {
    QUEUE
        .try_with(|queue| queue.try_borrow_mut().ok().map(|mut queue| f(&mut queue)))
        .ok()
        .flatten()
}

#[derive(Debug, Clone, Copy)]
enum Repeat {
    /// Fires once, with this token.
    Once(u32),
    Every(Duration),
}

/// An armed timer. Live while its slot's `armed[kind]` still holds `gen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    /// Deadline, in ticks since the queue's epoch (rounded up).
    at: u64,
    slot: u32,
    gen: u32,
    /// The token of a one-shot, the period in ticks of a periodic one.
    arg: u32,
    kind: u8,
    periodic: bool,
}

/// An owner's place in the queue.
struct Slot {
    owner: Option<WeakRecipient<Due>>,
    /// Per kind, the generation of its pending entry; 0 when none.
    armed: [u32; KINDS],
    /// The last generation given out; it keeps counting when the slot is
    /// reused, so an earlier owner's entries never match a later one's.
    last: u32,
}

impl Slot {
    /// Disarms every kind; says how many entries that left cancelled.
    fn disarm_all(&mut self) -> usize {
        let pending = self.armed.iter().filter(|gen| **gen != 0).count();
        self.armed = [0; KINDS];
        pending
    }
}

enum Wake {
    Nothing,
    /// No task drives the queue yet on this thread.
    Spawn,
    /// The task sleeps past the new deadline.
    Driver(Waker),
}

struct Queue {
    epoch: Instant,
    heap: BinaryHeap<Reverse<Entry>>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Entries in the heap that are no longer live.
    cancelled: usize,
    /// A driver task exists on this thread.
    driven: bool,
    /// The driver's waker while it sleeps.
    waker: Option<Waker>,
    /// The deadline the driver sleeps until, if any.
    scheduled: Option<u64>,
}

impl Queue {
    fn new() -> Queue {
        Queue {
            epoch: Instant::now(),
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            cancelled: 0,
            driven: false,
            waker: None,
            scheduled: None,
        }
    }

    /// The first tick at or after `at`.
    fn tick_after(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos.div_ceil(TICK.as_nanos())).unwrap_or(u64::MAX)
    }

    /// The last tick at or before `at`.
    fn tick_before(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos / TICK.as_nanos()).unwrap_or(u64::MAX)
    }

    fn instant(&self, tick: u64) -> Instant {
        let since = Duration::from_millis(tick.saturating_mul(TICK_MS));
        self.epoch
            .checked_add(since)
            .unwrap_or(self.epoch + MAX_DELAY)
    }

    fn register(&mut self, owner: WeakRecipient<Due>) -> u32 {
        if let Some(slot) = self.free.pop() {
            if let Some(place) = self.slots.get_mut(slot as usize) {
                place.owner = Some(owner);
                return slot;
            }
        }
        self.slots.push(Slot {
            owner: Some(owner),
            armed: [0; KINDS],
            last: 0,
        });
        u32::try_from(self.slots.len() - 1).unwrap_or(NO_SLOT)
    }

    fn unregister(&mut self, slot: u32) {
        let Some(place) = self.slots.get_mut(slot as usize) else {
            return;
        };
        place.owner = None;
        self.cancelled += place.disarm_all();
        self.free.push(slot);
        self.rebuild_if_worth_it();
    }

    fn arm(&mut self, slot: u32, kind: Kind, at: Instant, repeat: Repeat) -> Wake {
        let at = self.tick_after(at);
        let Some(place) = self.slots.get_mut(slot as usize) else {
            return Wake::Nothing;
        };
        let armed = &mut place.armed[usize::from(kind.0)];
        if *armed != 0 {
            self.cancelled += 1;
        }
        place.last = match place.last.wrapping_add(1) {
            0 => 1,
            gen => gen,
        };
        *armed = place.last;
        let (arg, periodic) = match repeat {
            Repeat::Once(token) => (token, false),
            Repeat::Every(period) => (ticks_in(period), true),
        };
        self.heap.push(Reverse(Entry {
            at,
            slot,
            gen: place.last,
            arg,
            kind: kind.0,
            periodic,
        }));
        self.rebuild_if_worth_it();
        if !self.driven {
            self.driven = true;
            return Wake::Spawn;
        }
        match (self.scheduled, self.waker.take()) {
            (Some(scheduled), waker) if scheduled <= at => {
                self.waker = waker;
                Wake::Nothing
            }
            (_, Some(waker)) => Wake::Driver(waker),
            (_, None) => Wake::Nothing, // the driver is about to run
        }
    }

    fn cancel(&mut self, slot: u32, kind: Kind) {
        let Some(place) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let armed = &mut place.armed[usize::from(kind.0)];
        if *armed != 0 {
            *armed = 0;
            self.cancelled += 1;
            self.rebuild_if_worth_it();
        }
    }

    /// Drops the cancelled entries once they are many and half the heap.
    fn rebuild_if_worth_it(&mut self) {
        if self.cancelled < MIN_REBUILD || self.cancelled * 2 < self.heap.len() {
            return;
        }
        let slots = &self.slots;
        self.heap.retain(|Reverse(entry)| is_live(slots, entry));
        self.cancelled = 0;
        if self.heap.capacity() > 4 * self.heap.len() + MIN_REBUILD {
            self.heap.shrink_to(2 * self.heap.len() + MIN_REBUILD);
        }
    }

    /// Pops what is due at `now` into `due` (re-arming periodic entries)
    /// and says when the next entry is due; the driver's waker is kept.
    fn take_due(
        &mut self,
        now: Instant,
        due: &mut Vec<(Recipient<Due>, Due)>,
        waker: &Waker,
    ) -> Option<u64> {
        let now = self.tick_before(now);
        let next = loop {
            let Some(Reverse(top)) = self.heap.peek().copied() else {
                break None;
            };
            if !is_live(&self.slots, &top) {
                self.heap.pop();
                self.cancelled = self.cancelled.saturating_sub(1);
                continue;
            }
            if top.at > now {
                break Some(top.at);
            }
            self.heap.pop();
            let Some(place) = self.slots.get_mut(top.slot as usize) else {
                continue;
            };
            let kind = Kind(top.kind);
            let Some(owner) = place.owner.as_ref().and_then(WeakRecipient::upgrade) else {
                // The actor has ended: none of its timers will be wanted.
                place.owner = None;
                place.armed[usize::from(top.kind)] = 0;
                self.cancelled += place.disarm_all();
                continue;
            };
            if top.periodic {
                let period = u64::from(top.arg);
                let at = match top.at.saturating_add(period) {
                    at if at > now => at,
                    _ => now.saturating_add(period), // late: skip missed ticks
                };
                self.heap.push(Reverse(Entry { at, ..top }));
                due.push((owner, Due { kind, token: 0 }));
            } else {
                place.armed[usize::from(top.kind)] = 0;
                due.push((
                    owner,
                    Due {
                        kind,
                        token: top.arg,
                    },
                ));
            }
        };
        self.scheduled = next;
        if !self
            .waker
            .as_ref()
            .is_some_and(|kept| kept.will_wake(waker))
        {
            self.waker = Some(waker.clone());
        }
        next
    }
}

/// A period in whole ticks, at least one.
fn ticks_in(period: Duration) -> u32 {
    let ticks = period.as_nanos().div_ceil(TICK.as_nanos()).max(1);
    u32::try_from(ticks).unwrap_or(u32::MAX)
}

fn is_live(slots: &[Slot], entry: &Entry) -> bool {
    slots
        .get(entry.slot as usize)
        .is_some_and(|slot| slot.armed[usize::from(entry.kind)] == entry.gen)
}

/// The one task per thread that sleeps until the earliest deadline.
struct Driver {
    sleep: Pin<Box<Sleep>>,
    /// Due messages of one wake-up, sent once the queue is released.
    due: Vec<(Recipient<Due>, Due)>,
}

impl Driver {
    fn new() -> Driver {
        Driver {
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            due: Vec::new(),
        }
    }
}

impl Future for Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            let now = Instant::now();
            let Some(next) = with_queue(|queue| {
                let next = queue.take_due(now, &mut this.due, cx.waker());
                next.map(|tick| queue.instant(tick))
            }) else {
                return Poll::Ready(()); // the thread is ending
            };
            for (owner, due) in this.due.drain(..) {
                owner.do_send(due);
            }
            let Some(next) = next else {
                return Poll::Pending; // woken by the next `arm`
            };
            this.sleep.as_mut().reset(next);
            if this.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl Drop for Driver {
    /// The runtime is going: a later one on this thread starts a new driver.
    fn drop(&mut self) {
        with_queue(|queue| {
            queue.driven = false;
            queue.waker = None;
            queue.scheduled = None;
        });
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use actix::prelude::*;

    use super::*;

    const A: Kind = Kind::new(0);
    const B: Kind = Kind::new(1);
    const C: Kind = Kind::new(2);

    type Seen = Rc<RefCell<Vec<(Due, Instant)>>>;

    /// Notes every `Due` it gets, and when.
    struct Probe {
        seen: Seen,
    }

    impl Actor for Probe {
        type Context = actix::Context<Self>;
    }

    impl Handler<Due> for Probe {
        type Result = ();
        fn handle(&mut self, due: Due, _: &mut Self::Context) {
            self.seen.borrow_mut().push((due, Instant::now()));
        }
    }

    /// Pauses tokio's clock (it then jumps to the next deadline whenever
    /// nothing else runs) and starts a probe; says when.
    fn probe() -> (Addr<Probe>, Timers, Seen, Instant) {
        tokio::time::pause();
        let seen = Seen::default();
        let addr = Probe { seen: seen.clone() }.start();
        let timers = Timers::register(addr.downgrade().recipient());
        (addr, timers, seen, Instant::now())
    }

    fn kinds(seen: &Seen) -> Vec<Kind> {
        seen.borrow().iter().map(|(due, _)| due.kind).collect()
    }

    async fn wait(ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// A timer armed at `armed` for `delay` fired at `fired`: not early,
    /// at most a tick (and tokio's millisecond) late.
    fn on_time(armed: Instant, delay: Duration, fired: Instant) {
        assert!(fired >= armed + delay, "fired early");
        let late = fired.duration_since(armed + delay);
        assert!(late <= TICK + Duration::from_millis(1), "{late:?} late");
    }

    #[actix_web::test]
    async fn timers_fire_in_deadline_order_within_a_tick() {
        let (_addr, timers, seen, armed) = probe();
        timers.after(A, Duration::from_millis(300));
        timers.after(B, Duration::from_millis(100));
        timers.after_with(C, 7, Duration::from_millis(205));
        wait(1000).await;
        assert_eq!(kinds(&seen), vec![B, C, A]);
        let seen = seen.borrow();
        on_time(armed, Duration::from_millis(100), seen[0].1);
        on_time(armed, Duration::from_millis(205), seen[1].1);
        on_time(armed, Duration::from_millis(300), seen[2].1);
        assert_eq!(seen[1].0.token, 7);
        assert_eq!(seen[0].0.token, 0);
        assert_eq!(stats().entries, 0);
    }

    #[actix_web::test]
    async fn an_earlier_deadline_wakes_a_sleeping_queue() {
        let (_addr, timers, seen, _) = probe();
        timers.after(A, Duration::from_secs(60));
        wait(50).await; // the driver now sleeps until 60 s
        let armed = Instant::now();
        timers.after(B, Duration::from_millis(100));
        wait(200).await;
        assert_eq!(kinds(&seen), vec![B]);
        on_time(armed, Duration::from_millis(100), seen.borrow()[0].1);
    }

    #[actix_web::test]
    async fn a_cancelled_timer_does_not_fire() {
        let (_addr, timers, seen, _) = probe();
        timers.after(A, Duration::from_millis(100));
        timers.after(B, Duration::from_millis(150));
        timers.cancel(A);
        timers.cancel(C); // never armed: nothing happens
        wait(500).await;
        assert_eq!(kinds(&seen), vec![B]);
        assert_eq!(
            stats(),
            Stats {
                entries: 0,
                cancelled: 0,
                owners: 1
            }
        );
    }

    #[actix_web::test]
    async fn arming_a_kind_again_replaces_it() {
        let (_addr, timers, seen, _) = probe();
        timers.after_with(A, 1, Duration::from_millis(100));
        let armed = Instant::now();
        timers.after_with(A, 2, Duration::from_millis(300));
        wait(200).await;
        assert!(seen.borrow().is_empty(), "the first deadline was replaced");
        wait(300).await;
        let seen = seen.borrow();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, Due { kind: A, token: 2 });
        on_time(armed, Duration::from_millis(300), seen[0].1);
    }

    #[actix_web::test]
    async fn a_periodic_timer_keeps_its_pace_until_cancelled() {
        let (_addr, timers, seen, armed) = probe();
        timers.every(A, Duration::from_millis(100));
        wait(550).await;
        timers.cancel(A);
        wait(500).await;
        let seen = seen.borrow();
        assert_eq!(seen.len(), 5, "at 100, 200, 300, 400, 500 ms");
        for (n, (due, at)) in seen.iter().enumerate() {
            assert_eq!(due.kind, A);
            // From the first deadline on, not from when each was handled.
            on_time(armed, Duration::from_millis(100 * (n as u64 + 1)), *at);
        }
    }

    #[actix_web::test]
    async fn a_late_tick_does_not_move_the_next_ones() {
        let (_addr, timers, seen, armed) = probe();
        timers.every(A, Duration::from_millis(100));
        // The thread is busy past the first deadline.
        tokio::time::advance(Duration::from_millis(155)).await;
        wait(200).await;
        let seen = seen.borrow();
        assert_eq!(seen.len(), 3, "at 155 (late), 200, 300 ms");
        on_time(armed, Duration::from_millis(200), seen[1].1);
        on_time(armed, Duration::from_millis(300), seen[2].1);
    }

    #[actix_web::test]
    async fn the_timers_of_an_ended_actor_are_dropped() {
        let (addr, timers, seen, _) = probe();
        timers.every(A, Duration::from_millis(100));
        timers.after(B, Duration::from_millis(150));
        timers.after(C, Duration::from_secs(3600));
        wait(120).await;
        assert_eq!(kinds(&seen), vec![A]);
        // The actor ends (its last address goes) while its handle stays.
        drop(addr);
        wait(200).await;
        assert_eq!(kinds(&seen), vec![A], "nothing after the actor ended");
        // Its periodic timer is gone, and the hour-long one no longer counts.
        let stats = stats();
        assert_eq!(stats.entries - stats.cancelled, 0, "{stats:?}");
        drop(timers);
        assert_eq!(super::stats().owners, 0);
    }

    #[actix_web::test]
    async fn dropping_the_handle_cancels_its_timers_and_frees_the_heap() {
        let (addr, keep, seen, _) = probe();
        keep.after(A, Duration::from_millis(100));
        let handles: Vec<Timers> = (0..1000)
            .map(|_| {
                let timers = Timers::register(addr.downgrade().recipient());
                timers.after(A, Duration::from_secs(3600));
                timers.every(B, Duration::from_secs(25));
                timers
            })
            .collect();
        assert_eq!(stats().entries, 2001);
        assert_eq!(stats().owners, 1001);
        drop(handles);
        // Rebuilt without them, long before an hour has passed (fewer
        // than MIN_REBUILD may wait for the next rebuild).
        let stats = stats();
        assert_eq!(stats.owners, 1);
        assert_eq!(stats.entries - stats.cancelled, 1, "{stats:?}");
        assert!(stats.entries < 1 + MIN_REBUILD, "{stats:?}");
        wait(200).await;
        assert_eq!(kinds(&seen), vec![A]);
    }

    #[actix_web::test]
    async fn re_arming_without_end_does_not_grow_the_queue() {
        let (_addr, timers, seen, _) = probe();
        for n in 0..10_000u32 {
            // As a token expiry moved by each refresh: never reached.
            timers.after_with(A, n, Duration::from_secs(3600));
            assert!(stats().entries <= 2 * MIN_REBUILD, "{:?}", stats());
        }
        timers.after_with(A, 10_000, Duration::from_millis(10));
        wait(100).await;
        assert_eq!(seen.borrow().len(), 1);
        assert_eq!(seen.borrow()[0].0.token, 10_000);
    }

    #[actix_web::test]
    async fn many_owners_are_told_in_deadline_order() {
        tokio::time::pause();
        let seen = Seen::default();
        let mut owners = Vec::new();
        for n in 0..5000u32 {
            let addr = Probe { seen: seen.clone() }.start();
            let timers = Timers::register(addr.downgrade().recipient());
            // Deadlines spread over 0.5–10.5 s, out of order.
            let ms = 500 + u64::from((n * 7919) % 10_000);
            timers.after_with(A, n, Duration::from_millis(ms));
            owners.push((addr, timers, ms));
        }
        let armed = Instant::now();
        wait(11_000).await;
        let seen = seen.borrow();
        assert_eq!(seen.len(), 5000);
        for pair in seen.windows(2) {
            assert!(pair[0].1 <= pair[1].1, "out of order");
        }
        for (due, at) in seen.iter() {
            let ms = owners[due.token as usize].2;
            on_time(armed, Duration::from_millis(ms), *at);
        }
        assert_eq!(stats().entries, 0);
    }

    #[test]
    fn a_new_runtime_on_the_thread_drives_the_queue_again() {
        for _ in 0..2 {
            let seen = Seen::default();
            let fired = seen.clone();
            let timers = System::new().block_on(async move {
                let addr = Probe { seen: fired }.start();
                let timers = Timers::register(addr.downgrade().recipient());
                timers.after(A, Duration::from_millis(20));
                // Still pending when this runtime, and its driver, go.
                timers.after(B, Duration::from_secs(3600));
                wait(100).await;
                timers
            });
            assert_eq!(kinds(&seen), vec![A]);
            drop(timers);
        }
    }
}
