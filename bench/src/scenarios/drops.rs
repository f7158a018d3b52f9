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

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::{json, Value};
use tokio::time::{sleep, sleep_until, timeout, Instant};

use super::now_micros;
use crate::cli::{Common, Options};
use crate::error::{fail, Result};
use crate::report::Report;
use crate::runner::{self, Ctx, Found, Merge, Pacer, Phase, Run, Scenario, Stage, JOIN_TIMEOUT};
use crate::stats::{per_sec, Latency};
use crate::token;
use crate::ws::{self, Packet, Socket};

pub struct Drops {
    rooms: usize,
    members: usize,
    rate: f64,
    duration: Duration,
    drain: Duration,
    drop_min: f64,
    drop_max: f64,
    run: String,
}

impl Drops {
    fn connections(&self) -> usize {
        self.rooms * self.members
    }

    fn listing(&self, room: usize) -> String {
        super::room_listing(Self::NAME, &self.run, room)
    }
}

/// Counters every thread adds to; read by the progress line and the report.
#[derive(Default)]
pub struct Shared {
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
}

/// One thread's findings: latencies and every member's tally.
pub struct ShardOut {
    latency: Latency,
    tallies: Vec<Tally>,
}

impl Merge for ShardOut {
    fn merge(&mut self, other: ShardOut) -> Result<()> {
        self.latency.merge(&other.latency)?;
        self.tallies.extend(other.tallies);
        Ok(())
    }
}

/// What the publishers found: per room, whether each n was posted (2xx),
/// and the requests' latencies.
pub struct Posted {
    rooms: Vec<Vec<bool>>,
    latency: Latency,
}

impl Scenario for Drops {
    const NAME: &'static str = "drops";
    const UNITS: &'static str = "members";
    type Shared = Shared;
    type Out = ShardOut;
    type Window = Posted;
    type After = ();

    fn parse(options: &mut Options) -> Result<Drops> {
        Ok(Drops {
            rooms: options.take("rooms", 4usize)?,
            members: options.take("members", 50usize)?,
            rate: options.take("rate", 40.0f64)?,
            duration: Duration::from_secs_f64(options.take("duration", 60.0f64)?.max(1.0)),
            drain: Duration::from_secs_f64(options.take("drain", 5.0f64)?.max(0.0)),
            drop_min: options.take("drop-min", 2.0f64)?,
            drop_max: options.take("drop-max", 6.0f64)?,
            run: super::run_id(),
        })
    }

    fn check(&self) -> Result<()> {
        if self.rooms == 0 || self.members == 0 {
            return fail("--rooms and --members must be at least 1");
        }
        super::positive_rate(self.rate)?;
        if !(self.drop_min > 0.0 && self.drop_min <= self.drop_max) {
            return fail("--drop-min must be above 0 and at most --drop-max");
        }
        Ok(())
    }

    async fn prepare(&self, common: &Common, service: &str) -> Result<()> {
        super::create_rooms(common, service, Self::NAME, &self.run, self.rooms).await
    }

    fn out(&self) -> Result<ShardOut> {
        Ok(ShardOut {
            latency: Latency::new()?,
            tallies: Vec::new(),
        })
    }

    fn title(&self, common: &Common) -> String {
        format!(
            "souk-bench drops: {} rooms x {} members, {} events/s, each member drops every {}-{} s, {:.0} s, against {}",
            self.rooms,
            self.members,
            self.rate,
            self.drop_min,
            self.drop_max,
            self.duration.as_secs_f64(),
            common.url
        )
    }

    fn units(&self) -> Vec<usize> {
        vec![self.connections()]
    }

    fn duration(&self) -> Duration {
        self.duration
    }

    async fn unit(ctx: Rc<Ctx<Drops>>, _kind: usize, index: usize) {
        if let Some(tally) = run_member(ctx.clone(), index).await {
            ctx.out.borrow_mut().tallies.push(tally);
        }
    }

    /// One publisher a room for the window.
    async fn window(run: &Run<Drops>, start: Instant, end: Instant) -> Result<Posted> {
        let publishers = (0..run.settings.rooms).map(|room| publish(run, room, start, end));
        let parts = futures_util::future::join_all(publishers).await;
        let mut posted = Posted {
            rooms: Vec::with_capacity(run.settings.rooms),
            latency: Latency::new()?,
        };
        for part in parts {
            let (room_posted, part) = part?;
            posted.latency.merge(&part)?;
            posted.rooms.push(room_posted);
        }
        Ok(posted)
    }

    /// Members that were out when the window closed reconnect first; then
    /// the drain.
    async fn after(run: &Run<Drops>, _end: Instant) -> Result<()> {
        let back = Instant::now();
        while run.shared.online.load(Ordering::Relaxed) < run.joined()
            && back.elapsed() < JOIN_TIMEOUT
        {
            sleep(Duration::from_millis(50)).await;
        }
        sleep(run.settings.drain).await;
        Ok(())
    }

    fn progress(run: Arc<Run<Drops>>) -> impl FnMut(f64) -> String + Send + 'static {
        progress_line(run)
    }

    async fn report(
        run: &Run<Drops>,
        report: &mut Report,
        out: ShardOut,
        found: Found<Drops>,
    ) -> Result<()> {
        let counts = count(&found.window.rooms, &out.tallies);
        let latencies = (&out.latency, &found.window.latency);
        fill_report(report, run, found.settle_secs, &counts, latencies);
        Ok(())
    }
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

/// One room's publisher: event n, then n+1 once n is answered, paced at
/// the room's share of the rate; a slot that went by while a request was
/// out is skipped and counted. Answers whether each n was posted.
async fn publish(
    run: &Run<Drops>,
    room: usize,
    start: Instant,
    end: Instant,
) -> Result<(Vec<bool>, Latency)> {
    let (settings, shared) = (&run.settings, &run.shared);
    let mut latency = Latency::new()?;
    let mut posted = Vec::new();
    let interval = Duration::from_secs_f64(settings.rooms as f64 / settings.rate);
    let share = room as f64 / settings.rooms as f64;
    let mut pacer = Pacer::new(start, end, interval, share);
    let listing = settings.listing(room);
    while pacer.wait().await {
        let n = posted.len();
        let body = json!({ "event": "tick", "data": { "room": room, "n": n, "t": now_micros() } });
        let ok = runner::post_event(run, &listing, &body, &mut latency).await;
        let counter = if ok {
            &shared.posted
        } else {
            &shared.post_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        posted.push(ok);
        shared.skipped.fetch_add(pacer.advance(), Ordering::Relaxed);
    }
    Ok((posted, latency))
}

/// A member's life: join, then drop and reconnect until the window is
/// over, counting every tick. Answers its tally (none if it never joined).
async fn run_member(ctx: Rc<Ctx<Drops>>, index: usize) -> Option<Tally> {
    let shared = &ctx.shared;
    let mut member = match Member::new(&ctx, index) {
        Ok(member) => member,
        Err(e) => {
            ctx.problems.note(format!("token: {e}"));
            ctx.failed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
    };
    ctx.enter("connect", member.join(&ctx)).await?;
    shared.online.fetch_add(1, Ordering::Relaxed);
    let mut phase = ctx.phase.clone();
    let mut drop_at: Option<Instant> = None;
    loop {
        let now_phase = *phase.borrow_and_update();
        match now_phase {
            Phase::Stop => break,
            Phase::Window { .. } if drop_at.is_none() => {
                drop_at = Some(next_drop(&ctx.settings));
            }
            Phase::Drain => drop_at = None,
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
                    ctx.problems.note(format!("closed by the server: {why}"));
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
fn next_drop(settings: &Drops) -> Instant {
    let secs = rand::rng().random_range(settings.drop_min..=settings.drop_max);
    Instant::now() + Duration::from_secs_f64(secs)
}

impl Member {
    fn new(ctx: &Ctx<Drops>, index: usize) -> Result<Member> {
        let user = format!("bench-{}-m{index}", ctx.settings.run);
        let token = token::mint(&ctx.common.secret, &user, Some("buyer"), ctx.token_ttl())?;
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
    async fn open(&mut self, ctx: &Ctx<Drops>) -> Result<bool> {
        let sources = &ctx.common.sources;
        let source = sources[self.index % sources.len()];
        let mut socket = ws::open(&ctx.common.target, source).await?;
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
    async fn join(&mut self, ctx: &Ctx<Drops>) -> Result<()> {
        self.open(ctx).await?;
        self.watch(ctx).await
    }

    /// `listing:watch` the member's room, taking in the events that come
    /// before the ack.
    async fn watch(&mut self, ctx: &Ctx<Drops>) -> Result<()> {
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
    async fn reconnect(&mut self, ctx: &Ctx<Drops>, phase: Phase) {
        let shared = &ctx.shared;
        loop {
            if matches!(*ctx.phase.borrow(), Phase::Stop) || phase == Phase::Stop {
                return;
            }
            let attempt = timeout(JOIN_TIMEOUT, async {
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
                Ok(Err(e)) => ctx.problems.note(format!("reconnect: {e}")),
                Err(_) => ctx.problems.note("reconnect: timed out".into()),
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
    fn take(&mut self, ctx: &Ctx<Drops>, packet: Result<Packet>) -> Option<String> {
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

    fn event(&mut self, ctx: &Ctx<Drops>, array: &str) {
        let Ok(Value::Array(args)) = serde_json::from_str::<Value>(array) else {
            ctx.problems
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
            ctx.problems
                .note(format!("a tick without room, n or t: {array}"));
            return;
        };
        if usize::try_from(room).ok() != Some(self.tally.room) {
            ctx.problems
                .note(format!("{} got a tick of room {room}", self.user));
            return;
        }
        let Ok(n) = usize::try_from(n) else {
            return;
        };
        self.tally.record(n);
        ctx.shared.received.fetch_add(1, Ordering::Relaxed);
        let took = u64::try_from(now_micros().saturating_sub(t).max(0)).unwrap_or(0);
        ctx.out
            .borrow_mut()
            .latency
            .record(Duration::from_micros(took));
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

fn progress_line(run: Arc<Run<Drops>>) -> impl FnMut(f64) -> String + Send {
    let total = run.settings.connections();
    let mut last = [0u64; 2];
    move |elapsed| {
        let shared = &run.shared;
        let now = [
            shared.posted.load(Ordering::Relaxed),
            shared.received.load(Ordering::Relaxed),
        ];
        let d: Vec<u64> = now.iter().zip(last).map(|(n, l)| n - l).collect();
        last = now;
        let connected = run.joined();
        let failed = run.failed();
        match run.stage() {
            Stage::Joining => format!(
                "[{elapsed:5.1}s] connecting: {connected}/{total} connected, {failed} failed"
            ),
            stage => format!(
                "[{elapsed:5.1}s] {}: posted {}/s  received {}/s  online {}/{total}  drops {}  recovered {}  fresh {}",
                if stage == Stage::Window { "dropping" } else { "draining" },
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

fn fill_report(
    report: &mut Report,
    run: &Run<Drops>,
    connect_secs: f64,
    counts: &Counts,
    (latency, post_latency): (&Latency, &Latency),
) {
    let (common, settings, shared) = (&run.common, &run.settings, &run.shared);
    let secs = settings.duration.as_secs_f64();
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let (connected, failed) = (run.joined(), run.failed());
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

    let problems = run.problems.report(report);
    report.set(
        "params",
        run.params(json!({
            "url": common.url,
            "rooms": settings.rooms,
            "members": settings.members,
            "rate": settings.rate,
            "durationSecs": secs,
            "drainSecs": settings.drain.as_secs_f64(),
            "dropMinSecs": settings.drop_min,
            "dropMaxSecs": settings.drop_max,
        })),
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
