//! `drops`: delivery while members keep losing their connection.
//!
//! R public listings are created through the server API and M members per
//! room connect as their own users and `listing:watch` their room. Once all
//! are in, one publisher per room posts numbered events through
//! `POST /api/v1/rooms/listing:{id}/events` (`{event:"tick",
//! data:{room, n, t}}`, n counting up from 0 per room, one request at a
//! time, so the room's order is n's order) at `--rate` events a second in
//! total. Meanwhile every member drops its TCP connection without any
//! close (a reset: no WebSocket close frame, no Socket.IO DISCONNECT) after
//! a random `--drop-min`..`--drop-max` seconds connected, waits a random
//! 0.5–1.5 s (socket.io-client's first reconnection delay) and reconnects
//! as socket.io-client ≥ 4.6 does: CONNECT with `{token, pid, offset}`, pid
//! from the last CONNECT answer, offset the last string argument of the
//! last event. The answer's pid equal to the one sent means the session was
//! recovered (rooms kept, missed events replayed, before or after the
//! CONNECT answer: events that come before it are taken in once connected,
//! as socket.io-client does); otherwise the member
//! watches its room again, as an application would, and whatever was sent
//! meanwhile is lost. After the window members stop dropping, reconnect if
//! they are out, and listen for `--drain` seconds.
//!
//! Every member then counts, against the events whose POST was answered
//! 2xx in its room: delivered (once at least), missing, duplicates, and out
//! of order (an n below one already seen, the first time it comes).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};
use tokio::time::{sleep, sleep_until, timeout, Instant};

use super::{create_listings, now_micros, wait_settled, Problems};
use crate::cli::{Common, Options};
use crate::error::{fail, Result};
use crate::procs;
use crate::progress::Progress;
use crate::report::Report;
use crate::stats::{per_sec, Latency};
use crate::ws::{self, Packet, Socket};
use crate::{http, shard, token};

/// How long one (re)connection may take to open, CONNECT and watch.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
struct Settings {
    rooms: usize,
    members: usize,
    rate: f64,
    duration: Duration,
    drain: Duration,
    drop_min: f64,
    drop_max: f64,
    run: String,
}

impl Settings {
    fn connections(&self) -> usize {
        self.rooms * self.members
    }

    fn listing(&self, room: usize) -> String {
        format!("bench-drops-{}-{room}", self.run)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Connecting,
    /// Events flow and members drop.
    Running,
    /// Publishing is over: no more drops, members get back in and listen.
    Calm,
    Stop,
}

const STAGE_CONNECTING: u8 = 0;
const STAGE_RUNNING: u8 = 1;
const STAGE_DRAINING: u8 = 2;

/// Counters every thread adds to; read by the progress line and the report.
#[derive(Default)]
struct Shared {
    stage: AtomicU8,
    connected: AtomicU64,
    failed: AtomicU64,
    online: AtomicU64,
    drops: AtomicU64,
    server_closes: AtomicU64,
    recovered: AtomicU64,
    fresh: AtomicU64,
    reconnect_failed: AtomicU64,
    received: AtomicU64,
    posted: AtomicU64,
    post_failed: AtomicU64,
    skipped: AtomicU64,
    problems: Problems,
}

/// What a thread's members share.
struct Ctx {
    common: Common,
    settings: Settings,
    shared: Arc<Shared>,
    phase: watch::Receiver<Phase>,
    gate: Semaphore,
    latency: RefCell<Latency>,
}

/// What one member got: how many times each n of its room came, and how
/// many came after a higher n.
struct Tally {
    room: usize,
    counts: Vec<u32>,
    highest: Option<usize>,
    out_of_order: u64,
}

impl Tally {
    fn new(room: usize) -> Tally {
        Tally {
            room,
            counts: Vec::new(),
            highest: None,
            out_of_order: 0,
        }
    }

    fn record(&mut self, n: usize) {
        if self.counts.len() <= n {
            self.counts.resize(n + 1, 0);
        }
        self.counts[n] += 1;
        if self.counts[n] == 1 && self.highest.is_some_and(|h| n < h) {
            self.out_of_order += 1;
        }
        self.highest = Some(self.highest.map_or(n, |h| h.max(n)));
    }
}

/// One member's connection and what socket.io-client keeps across them.
struct Member {
    index: usize,
    user: String,
    token: String,
    socket: Option<Socket>,
    pid: Option<String>,
    offset: Option<String>,
    tally: Tally,
}

pub async fn run(common: &Common, mut options: Options) -> Result<Report> {
    let settings = Settings {
        rooms: options.take("rooms", 4usize)?,
        members: options.take("members", 50usize)?,
        rate: options.take("rate", 40.0f64)?,
        duration: Duration::from_secs_f64(options.take("duration", 60.0f64)?.max(1.0)),
        drain: Duration::from_secs_f64(options.take("drain", 5.0f64)?.max(0.0)),
        drop_min: options.take("drop-min", 2.0f64)?,
        drop_max: options.take("drop-max", 6.0f64)?,
        run: super::run_id(),
    };
    options.finish()?;
    if settings.rooms == 0 || settings.members == 0 {
        return fail("--rooms and --members must be at least 1");
    }
    if !(settings.rate > 0.0 && settings.rate.is_finite()) {
        return fail("--rate must be above 0");
    }
    if !(settings.drop_min > 0.0 && settings.drop_min <= settings.drop_max) {
        return fail("--drop-min must be above 0 and at most --drop-max");
    }
    let service = token::mint(&common.secret, "souk-bench", Some("service"), 3600 * 24)?;
    create_listings(
        common,
        &service,
        &format!("bench-seller-{}", settings.run),
        "souk-bench drops",
        (0..settings.rooms).map(|room| settings.listing(room)),
    )
    .await?;

    let shared = Arc::new(Shared::default());
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let progress = Progress::start(progress_line(shared.clone(), settings.connections()));
    let threads = common.threads.min(settings.connections());
    let shards = shard::run_each(threads, common, &settings, &shared, phase_rx, shard_main);
    let mut report = Report::new(
        "drops",
        format!(
            "souk-bench drops: {} rooms x {} members, {} events/s, each member drops every {}-{} s, {:.0} s, against {}",
            settings.rooms,
            settings.members,
            settings.rate,
            settings.drop_min,
            settings.drop_max,
            settings.duration.as_secs_f64(),
            common.url
        ),
    );
    let conductor = conduct(common, &settings, &shared, &service, phase_tx);
    let (shards, conducted) = tokio::join!(shards, conductor);
    drop(progress);
    let (connect_secs, posted, post_latency, readings) = conducted?;
    let mut latency = Latency::new()?;
    let mut tallies = Vec::new();
    for (part, members) in shards? {
        latency.merge(&part)?;
        tallies.extend(members);
    }
    let counts = count(&posted, &tallies);
    fill_report(
        &mut report,
        common,
        &settings,
        &shared,
        connect_secs,
        &counts,
        &latency,
        &post_latency,
    );
    report.append(readings);
    Ok(report)
}

/// Waits for every member, runs one publisher a room for the window, lets
/// the members settle and drain, and stops everyone. Answers, per room,
/// whether each n was posted (2xx).
async fn conduct(
    common: &Common,
    settings: &Settings,
    shared: &Shared,
    service: &str,
    phase: watch::Sender<Phase>,
) -> Result<(f64, Vec<Vec<bool>>, Latency, Report)> {
    let total = settings.connections() as u64;
    let connect_secs = wait_settled(
        total,
        CONNECT_TIMEOUT,
        "members",
        || shared.connected.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed),
        || {
            let _ = phase.send(Phase::Stop);
        },
    )
    .await?;
    if shared.connected.load(Ordering::Relaxed) == 0 {
        let _ = phase.send(Phase::Stop);
        return fail("no member connected");
    }
    let start = Instant::now() + Duration::from_millis(300);
    let end = start + settings.duration;
    let _ = phase.send(Phase::Running);
    sleep_until(start).await;
    shared.stage.store(STAGE_RUNNING, Ordering::Relaxed);
    let publishers = (0..settings.rooms)
        .map(|room| publish(common, settings, shared, service, room, start, end));
    let (parts, readings) =
        procs::measure(common, end, futures_util::future::join_all(publishers)).await;
    let _ = phase.send(Phase::Calm);
    shared.stage.store(STAGE_DRAINING, Ordering::Relaxed);
    let mut post_latency = Latency::new()?;
    let mut posted = Vec::with_capacity(settings.rooms);
    for part in parts {
        let (room_posted, part) = part?;
        post_latency.merge(&part)?;
        posted.push(room_posted);
    }
    // Members that were out when the window closed reconnect first.
    let back = Instant::now();
    while shared.online.load(Ordering::Relaxed) < shared.connected.load(Ordering::Relaxed)
        && back.elapsed() < CONNECT_TIMEOUT
    {
        sleep(Duration::from_millis(50)).await;
    }
    sleep(settings.drain).await;
    let _ = phase.send(Phase::Stop);
    Ok((connect_secs, posted, post_latency, readings))
}

/// One room's publisher: event n, then n+1 once n is answered, paced at
/// the room's share of the rate; a slot that went by while a request was
/// out is skipped and counted. Answers whether each n was posted.
async fn publish(
    common: &Common,
    settings: &Settings,
    shared: &Shared,
    service: &str,
    room: usize,
    start: Instant,
    end: Instant,
) -> Result<(Vec<bool>, Latency)> {
    let mut latency = Latency::new()?;
    let mut posted = Vec::new();
    let interval = Duration::from_secs_f64(settings.rooms as f64 / settings.rate);
    let mut next = start + interval.mul_f64(room as f64 / settings.rooms as f64);
    let path = format!("/api/v1/rooms/listing:{}/events", settings.listing(room));
    while next < end {
        sleep_until(next).await;
        let n = posted.len();
        let body = json!({ "event": "tick", "data": { "room": room, "n": n, "t": now_micros() } });
        let sent = std::time::Instant::now();
        let outcome =
            http::request(&common.target, "POST", &path, Some(service), Some(&body)).await;
        let ok = match outcome {
            Ok(r) if (200..300).contains(&r.status) => true,
            Ok(r) => {
                shared
                    .problems
                    .note(format!("post: HTTP {} {}", r.status, r.body));
                false
            }
            Err(e) => {
                shared.problems.note(format!("post: {e}"));
                false
            }
        };
        if ok {
            latency.record(sent.elapsed());
            shared.posted.fetch_add(1, Ordering::Relaxed);
        } else {
            shared.post_failed.fetch_add(1, Ordering::Relaxed);
        }
        posted.push(ok);
        next += interval;
        let now = Instant::now();
        while next <= now && next < end {
            next += interval;
            shared.skipped.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok((posted, latency))
}

async fn shard_main(
    index: usize,
    threads: usize,
    common: Common,
    settings: Settings,
    shared: Arc<Shared>,
    phase: watch::Receiver<Phase>,
) -> Result<(Latency, Vec<Tally>)> {
    let gate = Semaphore::new((common.connect_concurrency / threads).max(1));
    let ctx = Rc::new(Ctx {
        latency: RefCell::new(Latency::new()?),
        common,
        settings,
        shared,
        phase,
        gate,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for member in shard::items(index, threads, ctx.settings.connections()) {
        tasks.spawn_local(run_member(ctx.clone(), member));
    }
    let mut tallies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(Some(tally)) = done {
            tallies.push(tally);
        }
    }
    Ok((ctx.latency.replace(Latency::new()?), tallies))
}

/// A member's life: join, then drop and reconnect until the window is
/// over, counting every tick. Answers its tally (none if it never joined).
async fn run_member(ctx: Rc<Ctx>, index: usize) -> Option<Tally> {
    let shared = &ctx.shared;
    let mut member = match Member::new(&ctx, index) {
        Ok(member) => member,
        Err(e) => {
            shared.problems.note(format!("token: {e}"));
            shared.failed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
    };
    let joined = {
        let Ok(_permit) = ctx.gate.acquire().await else {
            return None;
        };
        timeout(CONNECT_TIMEOUT, member.join(&ctx)).await
    };
    match joined {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            shared.problems.note(format!("connect: {e}"));
            shared.failed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Err(_) => {
            shared.problems.note("connect: timed out".into());
            shared.failed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
    }
    shared.connected.fetch_add(1, Ordering::Relaxed);
    shared.online.fetch_add(1, Ordering::Relaxed);
    let mut phase = ctx.phase.clone();
    let mut drop_at: Option<Instant> = None;
    loop {
        let now_phase = *phase.borrow_and_update();
        match now_phase {
            Phase::Stop => break,
            Phase::Running if drop_at.is_none() => drop_at = Some(next_drop(&ctx.settings)),
            Phase::Calm => drop_at = None,
            _ => {}
        }
        if member.socket.is_none() {
            member.reconnect(&ctx, now_phase).await;
            continue;
        }
        let due = drop_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let Some(socket) = member.socket.as_mut() else {
            continue;
        };
        tokio::select! {
            changed = phase.changed() => if changed.is_err() { break },
            packet = socket.recv() => {
                if let Some(why) = member.take(&ctx, packet) {
                    shared.server_closes.fetch_add(1, Ordering::Relaxed);
                    shared.problems.note(format!("closed by the server: {why}"));
                    member.lose();
                    shared.online.fetch_sub(1, Ordering::Relaxed);
                }
            }
            () = sleep_until(due), if drop_at.is_some() => {
                if let Some(socket) = member.socket.take() {
                    socket.abort();
                }
                shared.drops.fetch_add(1, Ordering::Relaxed);
                shared.online.fetch_sub(1, Ordering::Relaxed);
                drop_at = None;
                // socket.io-client's first reconnection delay: 1 s ± 50%.
                let delay = rand::rng().random_range(0.5..1.5);
                sleep(Duration::from_secs_f64(delay)).await;
            }
        }
    }
    if let Some(socket) = member.socket.take() {
        socket.close().await;
    }
    Some(member.tally)
}

/// When a member that just connected drops next.
fn next_drop(settings: &Settings) -> Instant {
    let secs = rand::rng().random_range(settings.drop_min..=settings.drop_max);
    Instant::now() + Duration::from_secs_f64(secs)
}

impl Member {
    fn new(ctx: &Ctx, index: usize) -> Result<Member> {
        let user = format!("bench-{}-m{index}", ctx.settings.run);
        let ttl = 3600 + ctx.settings.duration.as_secs() * 2;
        let token = token::mint(&ctx.common.secret, &user, Some("buyer"), ttl)?;
        Ok(Member {
            index,
            user,
            token,
            socket: None,
            pid: None,
            offset: None,
            tally: Tally::new(index % ctx.settings.rooms),
        })
    }

    /// Opens, CONNECTs (with pid and offset when it has them) and answers
    /// whether the server recovered the session.
    async fn open(&mut self, ctx: &Ctx) -> Result<bool> {
        let sources = &ctx.common.sources;
        let mut socket = ws::open(&ctx.common.target, sources[self.index % sources.len()]).await?;
        let mut auth = json!({ "token": self.token });
        // As socket.io-client: the pid once it has one, the offset once
        // an event carried one.
        if let Some(pid) = &self.pid {
            auth["pid"] = json!(pid);
            if let Some(offset) = &self.offset {
                auth["offset"] = json!(offset);
            }
        }
        let (answer, early) = socket.connect_buffered(&auth).await?;
        let answer: Value = serde_json::from_str(&answer)?;
        let pid = answer["pid"].as_str().map(str::to_owned);
        let recovered = pid.is_some() && pid == self.pid;
        self.pid = pid;
        self.socket = Some(socket);
        for array in early {
            self.event(ctx, &array);
        }
        Ok(recovered)
    }

    /// The first connection: open and watch the room.
    async fn join(&mut self, ctx: &Ctx) -> Result<()> {
        self.open(ctx).await?;
        self.watch(ctx).await
    }

    /// `listing:watch` the member's room, taking in the events that come
    /// before the ack.
    async fn watch(&mut self, ctx: &Ctx) -> Result<()> {
        let listing = ctx.settings.listing(self.tally.room);
        const ACK: u64 = 1;
        let socket = self.socket.as_mut().ok_or("not connected")?;
        socket
            .emit("listing:watch", &json!({ "listingId": listing }), Some(ACK))
            .await?;
        loop {
            let socket = self.socket.as_mut().ok_or("not connected")?;
            match socket.recv().await {
                Ok(Packet::Ack(id, args)) if id == ACK => {
                    let args: Value = serde_json::from_str(&args)?;
                    if args[0]["ok"] != json!(true) {
                        return fail(format!("listing:watch refused: {args}"));
                    }
                    return Ok(());
                }
                packet => {
                    if let Some(why) = self.take(ctx, packet) {
                        return fail(format!("closed while watching: {why}"));
                    }
                }
            }
        }
    }

    /// Gets back in after a drop, trying again every second until it
    /// works or the run stops.
    async fn reconnect(&mut self, ctx: &Ctx, phase: Phase) {
        let shared = &ctx.shared;
        loop {
            if matches!(*ctx.phase.borrow(), Phase::Stop) || phase == Phase::Stop {
                return;
            }
            let attempt = timeout(CONNECT_TIMEOUT, async {
                let recovered = self.open(ctx).await?;
                if !recovered {
                    self.watch(ctx).await?;
                }
                Ok::<bool, crate::error::Error>(recovered)
            })
            .await;
            match attempt {
                Ok(Ok(true)) => {
                    shared.recovered.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(Ok(false)) => {
                    shared.fresh.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(Err(e)) => shared.problems.note(format!("reconnect: {e}")),
                Err(_) => shared.problems.note("reconnect: timed out".into()),
            }
            shared.reconnect_failed.fetch_add(1, Ordering::Relaxed);
            self.lose();
            sleep(Duration::from_secs(1)).await;
        }
        shared.online.fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets the connection (dropped without a close).
    fn lose(&mut self) {
        if let Some(socket) = self.socket.take() {
            socket.abort();
        }
    }

    /// Takes in one packet: counts ticks and keeps the last offset, as
    /// socket.io-client does. Answers why the connection is gone, if it is.
    fn take(&mut self, ctx: &Ctx, packet: Result<Packet>) -> Option<String> {
        match packet {
            Ok(Packet::Event(array)) => {
                self.event(ctx, &array);
                None
            }
            Ok(Packet::Closed(why)) => Some(why),
            Ok(Packet::Disconnect) => Some("server sent DISCONNECT".into()),
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    fn event(&mut self, ctx: &Ctx, array: &str) {
        let Ok(Value::Array(args)) = serde_json::from_str::<Value>(array) else {
            ctx.shared
                .problems
                .note("an event that is not a JSON array".into());
            return;
        };
        if let Some(Value::String(offset)) = args.last().filter(|_| args.len() > 1) {
            self.offset = Some(offset.clone());
        }
        if args.first().and_then(Value::as_str) != Some("tick") {
            return;
        }
        let data = args.get(1).unwrap_or(&Value::Null);
        let (Some(room), Some(n), Some(t)) = (
            data["room"].as_u64(),
            data["n"].as_u64(),
            data["t"].as_i64(),
        ) else {
            ctx.shared
                .problems
                .note(format!("a tick without room, n or t: {array}"));
            return;
        };
        if usize::try_from(room).ok() != Some(self.tally.room) {
            ctx.shared
                .problems
                .note(format!("{} got a tick of room {room}", self.user));
            return;
        }
        let Ok(n) = usize::try_from(n) else {
            return;
        };
        self.tally.record(n);
        ctx.shared.received.fetch_add(1, Ordering::Relaxed);
        let took = u64::try_from(now_micros().saturating_sub(t).max(0)).unwrap_or(0);
        ctx.latency.borrow_mut().record(Duration::from_micros(took));
    }
}

/// The run's delivery figures, over every member.
#[derive(Default)]
struct Counts {
    expected: u64,
    delivered: u64,
    missing: u64,
    duplicates: u64,
    out_of_order: u64,
    /// Ticks whose POST failed or that no publisher sent, yet came.
    unexpected: u64,
    /// Members that got every event of their room exactly once, in order.
    perfect: u64,
    members: u64,
}

fn count(posted: &[Vec<bool>], tallies: &[Tally]) -> Counts {
    let mut counts = Counts::default();
    for tally in tallies {
        let room = posted.get(tally.room).map_or(&[][..], Vec::as_slice);
        let mut missing = 0;
        let mut duplicates = 0;
        for (n, &times) in tally.counts.iter().enumerate() {
            let expected = room.get(n).copied().unwrap_or(false);
            duplicates += u64::from(times.saturating_sub(1));
            if times > 0 && !expected {
                counts.unexpected += 1;
            }
        }
        for (n, &ok) in room.iter().enumerate() {
            if ok {
                counts.expected += 1;
                if tally.counts.get(n).copied().unwrap_or(0) > 0 {
                    counts.delivered += 1;
                } else {
                    missing += 1;
                }
            }
        }
        counts.missing += missing;
        counts.duplicates += duplicates;
        counts.out_of_order += tally.out_of_order;
        counts.members += 1;
        if missing == 0 && duplicates == 0 && tally.out_of_order == 0 {
            counts.perfect += 1;
        }
    }
    counts
}

fn progress_line(shared: Arc<Shared>, total: usize) -> impl FnMut(f64) -> String + Send {
    let mut last = [0u64; 2];
    move |elapsed| {
        let now = [
            shared.posted.load(Ordering::Relaxed),
            shared.received.load(Ordering::Relaxed),
        ];
        let d: Vec<u64> = now.iter().zip(last).map(|(n, l)| n - l).collect();
        last = now;
        let connected = shared.connected.load(Ordering::Relaxed);
        let failed = shared.failed.load(Ordering::Relaxed);
        match shared.stage.load(Ordering::Relaxed) {
            STAGE_CONNECTING => format!(
                "[{elapsed:5.1}s] connecting: {connected}/{total} connected, {failed} failed"
            ),
            stage => format!(
                "[{elapsed:5.1}s] {}: posted {}/s  received {}/s  online {}/{total}  drops {}  recovered {}  fresh {}",
                if stage == STAGE_RUNNING { "dropping" } else { "draining" },
                d[0],
                d[1],
                shared.online.load(Ordering::Relaxed),
                shared.drops.load(Ordering::Relaxed),
                shared.recovered.load(Ordering::Relaxed),
                shared.fresh.load(Ordering::Relaxed),
            ),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn fill_report(
    report: &mut Report,
    common: &Common,
    settings: &Settings,
    shared: &Shared,
    connect_secs: f64,
    counts: &Counts,
    latency: &Latency,
    post_latency: &Latency,
) {
    let secs = settings.duration.as_secs_f64();
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let (connected, failed) = (load(&shared.connected), load(&shared.failed));
    let (drops, server_closes) = (load(&shared.drops), load(&shared.server_closes));
    let (recovered, fresh, reconnect_failed) = (
        load(&shared.recovered),
        load(&shared.fresh),
        load(&shared.reconnect_failed),
    );
    let (posted, post_failed, skipped) = (
        load(&shared.posted),
        load(&shared.post_failed),
        load(&shared.skipped),
    );
    let percent = if counts.expected == 0 {
        0.0
    } else {
        (counts.delivered as f64) * 100.0 / (counts.expected as f64)
    };

    report.section("connections");
    report.item(
        "members connected",
        format!(
            "{connected} of {} ({failed} failed) in {connect_secs:.1} s",
            settings.connections()
        ),
    );
    report.item(
        "drops (TCP reset)",
        format!("{drops} ({} a second)", per_sec(drops, secs)),
    );
    report.item("closed by the server", server_closes.to_string());
    report.item(
        "reconnects",
        format!(
            "{} recovered, {fresh} not recovered (watched again), {reconnect_failed} attempts failed",
            recovered
        ),
    );

    report.section(&format!("events (posted during the {secs:.0} s window)"));
    report.item(
        "events posted/s",
        format!("{} (asked {})", per_sec(posted, secs), settings.rate),
    );
    report.item(
        "posted",
        format!("{posted} (failed {post_failed}; slots skipped {skipped})"),
    );
    let post = post_latency.summary();
    report.item("POST latency", post.line());

    report.section("delivery (every member, every event posted to its room)");
    report.item(
        "delivered",
        format!(
            "{percent:.2}% ({} of {})",
            counts.delivered, counts.expected
        ),
    );
    report.item("missing", counts.missing.to_string());
    report.item("duplicates", counts.duplicates.to_string());
    report.item("out of order", counts.out_of_order.to_string());
    report.item(
        "members with every event once, in order",
        format!("{} of {}", counts.perfect, counts.members),
    );
    if counts.unexpected > 0 {
        report.item(
            "ticks not posted (2xx) yet received",
            counts.unexpected.to_string(),
        );
    }
    let lat = latency.summary();
    report.item("send-to-receive latency (replays included)", lat.line());

    let problems = shared.problems.report(report);
    let sources: Vec<String> = common.sources.iter().map(ToString::to_string).collect();
    report.set(
        "params",
        json!({
            "url": common.url,
            "rooms": settings.rooms,
            "members": settings.members,
            "rate": settings.rate,
            "durationSecs": secs,
            "drainSecs": settings.drain.as_secs_f64(),
            "dropMinSecs": settings.drop_min,
            "dropMaxSecs": settings.drop_max,
            "sources": sources,
            "threads": common.threads,
        }),
    );
    report.set(
        "connections",
        json!({
            "connected": connected,
            "failed": failed,
            "connectSecs": connect_secs,
            "drops": drops,
            "serverCloses": server_closes,
            "recovered": recovered,
            "notRecovered": fresh,
            "reconnectFailed": reconnect_failed,
        }),
    );
    report.set(
        "events",
        json!({
            "postedPerSec": per_sec(posted, secs),
            "posted": posted,
            "failed": post_failed,
            "skippedSlots": skipped,
            "postLatencyMs": post.json(),
        }),
    );
    report.set(
        "delivery",
        json!({
            "percent": (percent * 100.0).round() / 100.0,
            "expected": counts.expected,
            "delivered": counts.delivered,
            "missing": counts.missing,
            "duplicates": counts.duplicates,
            "outOfOrder": counts.out_of_order,
            "unexpected": counts.unexpected,
            "perfectMembers": counts.perfect,
            "members": counts.members,
            "latencyMs": lat.json(),
        }),
    );
    report.set("problems", json!(problems));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_counts_duplicates_and_late_events() {
        let mut tally = Tally::new(0);
        for n in [0, 1, 3, 2, 3, 4] {
            tally.record(n);
        }
        assert_eq!(tally.counts, [1, 1, 1, 2, 1]);
        assert_eq!(tally.out_of_order, 1);
        // Room 0 posted 0..=5, but 5 failed; 6 was posted and never came.
        let posted = vec![vec![true, true, true, true, true, false, true]];
        let counts = count(&posted, &[tally]);
        assert_eq!(counts.expected, 6);
        assert_eq!(counts.delivered, 5);
        assert_eq!(counts.missing, 1);
        assert_eq!(counts.duplicates, 1);
        assert_eq!(counts.out_of_order, 1);
        assert_eq!(counts.perfect, 0);
    }
}
