//! `churn`: connections coming and going while room membership stays put.
//!
//! L public listings are created through the server API. S steady members
//! connect and `listing:watch` one listing each (member i watches listing
//! i mod L) and stay. Once they are all in, C churners loop for
//! `--duration` seconds: open a WebSocket, CONNECT, `listing:watch` a
//! listing, and close, either with a WebSocket close frame (`clean`) or by
//! dropping the TCP connection (`drop`); `mixed`, the default, alternates.
//! Meanwhile `--rate` events a second are posted to the rooms through
//! `POST /api/v1/rooms/listing:{id}/events`, and every steady member
//! counts the ones it gets.
//!
//! Afterwards membership must be intact: the server's connection count
//! (`GET /api/v1/cluster`) must come back to S, and one more event posted
//! to every room must reach every steady member.

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::time::{sleep, sleep_until, timeout, Instant};

use super::post_listing_event;
use crate::cli::{Common, Options};
use crate::error::{fail, Result};
use crate::http;
use crate::report::Report;
use crate::runner::{Ctx, Found, Phase, Run, Scenario, Stage, JOIN_TIMEOUT};
use crate::stats::{per_sec, round3, Latency};
use crate::ws::{self, Packet, Socket};

/// How long the server's connection count may take to come back to the
/// steady members (the cluster view is refreshed every heartbeat, 5 s by
/// default).
const COUNT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the last event may take to reach every steady member.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// How a churner leaves.
#[derive(Clone, Copy, PartialEq)]
enum Close {
    /// A WebSocket close frame, then the TCP close.
    Clean,
    /// The TCP connection dropped, no close frame.
    Drop,
    /// Clean and dropped in turn.
    Mixed,
}

pub struct Churn {
    listings: usize,
    members: usize,
    churners: usize,
    duration: Duration,
    rate: f64,
    close: Close,
    drain: Duration,
    run: String,
}

impl Close {
    fn name(self) -> &'static str {
        match self {
            Close::Clean => "clean",
            Close::Drop => "drop",
            Close::Mixed => "mixed",
        }
    }
}

impl Churn {
    fn listing(&self, room: usize) -> String {
        super::room_listing(Self::NAME, &self.run, room)
    }
}

/// Counters every thread adds to; read by the progress line and the report.
/// (The runner counts the steady members joined and failed.)
#[derive(Default)]
pub struct Shared {
    steady_dropped: AtomicU64,
    /// Steady members per room, once connected.
    per_room: Vec<AtomicU64>,
    /// Events posted per room.
    posted_per_room: Vec<AtomicU64>,
    post_failed: AtomicU64,
    delivered: AtomicU64,
    checked: AtomicU64,
    connects: AtomicU64,
    joins: AtomicU64,
    disconnects: AtomicU64,
    cycle_failed: AtomicU64,
}

/// What the checks after the churn saw.
pub struct Checked {
    /// The server's connection count after the churn, when it answered.
    server_connections: Option<u64>,
    count_secs: f64,
    check_secs: f64,
}

/// `unit`'s kinds.
const MEMBER: usize = 0;

impl Scenario for Churn {
    const NAME: &'static str = "churn";
    const UNITS: &'static str = "steady members";
    const NEEDS_ONE: bool = false;
    type Shared = Shared;
    /// Churn cycles' latencies.
    type Out = Latency;
    type Window = ();
    type After = Checked;

    fn parse(options: &mut Options) -> Result<Churn> {
        Ok(Churn {
            listings: options.take("listings", 10usize)?,
            members: options.take("members", 1000usize)?,
            churners: options.take("churners", 50usize)?,
            duration: Duration::from_secs_f64(options.take("duration", 10.0f64)?.max(0.1)),
            rate: options.take("rate", 20.0f64)?.max(0.0),
            close: match options.take_text("close").as_deref() {
                None | Some("mixed") => Close::Mixed,
                Some("clean") => Close::Clean,
                Some("drop") => Close::Drop,
                Some(other) => {
                    return fail(format!("--close: clean, drop or mixed, not {other:?}"))
                }
            },
            drain: Duration::from_secs_f64(options.take("drain", 2.0f64)?.max(0.0)),
            run: super::run_id(),
        })
    }

    fn check(&self) -> Result<()> {
        if self.listings == 0 || self.churners == 0 {
            return fail("--listings and --churners must be at least 1");
        }
        Ok(())
    }

    async fn prepare(&self, common: &Common, service: &str) -> Result<()> {
        super::create_rooms(common, service, Self::NAME, &self.run, self.listings).await
    }

    fn shared(&self) -> Shared {
        Shared {
            per_room: (0..self.listings).map(|_| AtomicU64::new(0)).collect(),
            posted_per_room: (0..self.listings).map(|_| AtomicU64::new(0)).collect(),
            ..Shared::default()
        }
    }

    fn out(&self) -> Result<Latency> {
        Latency::new()
    }

    fn title(&self, common: &Common) -> String {
        format!(
            "souk-bench churn: {} steady members on {} listings, {} churners ({} close), {} events/s, {:.0} s, against {}",
            self.members,
            self.listings,
            self.churners,
            self.close.name(),
            self.rate,
            self.duration.as_secs_f64(),
            common.url
        )
    }

    /// Steady members, then churners.
    fn units(&self) -> Vec<usize> {
        vec![self.members, self.churners]
    }

    fn threads(&self, common: &Common) -> usize {
        common.threads.max(1)
    }

    fn duration(&self) -> Duration {
        self.duration
    }

    async fn unit(ctx: Rc<Ctx<Churn>>, kind: usize, index: usize) {
        if kind == MEMBER {
            run_member(ctx, index).await;
        } else {
            run_churner(ctx, index).await;
        }
    }

    async fn window(run: &Run<Churn>, _start: Instant, end: Instant) -> Result<()> {
        post_ticks(run, end).await;
        Ok(())
    }

    /// Lets the churners finish their cycle and late ticks arrive, then
    /// checks the server's count and the last event.
    async fn after(run: &Run<Churn>, _end: Instant) -> Result<Checked> {
        let (settings, shared) = (&run.settings, &run.shared);
        sleep(settings.drain).await;
        run.set_stage(Stage::After);

        let counted = Instant::now();
        let mut server_connections = None;
        let expected = run.joined() - shared.steady_dropped.load(Ordering::Relaxed);
        while counted.elapsed() < COUNT_TIMEOUT {
            server_connections = cluster_connections(run).await;
            if server_connections == Some(expected) {
                break;
            }
            sleep(Duration::from_millis(500)).await;
        }
        let count_secs = counted.elapsed().as_secs_f64();

        let checked = Instant::now();
        for room in 0..settings.listings {
            let data = json!({ "run": settings.run });
            let listing = settings.listing(room);
            let posted = post_listing_event(&run.common, &run.service, &listing, "check", data);
            if let Err(e) = posted.await {
                run.problems.note(format!("check {e}"));
            }
        }
        while shared.checked.load(Ordering::Relaxed) < expected && checked.elapsed() < CHECK_TIMEOUT
        {
            sleep(Duration::from_millis(20)).await;
        }
        Ok(Checked {
            server_connections,
            count_secs,
            check_secs: checked.elapsed().as_secs_f64(),
        })
    }

    fn progress(run: Arc<Run<Churn>>) -> impl FnMut(f64) -> String + Send + 'static {
        progress_line(run)
    }

    async fn report(
        run: &Run<Churn>,
        report: &mut Report,
        cycle: Latency,
        found: Found<Churn>,
    ) -> Result<()> {
        fill_report(report, run, &found, &cycle);
        Ok(())
    }
}

/// The connections the server says it holds: the sum over the nodes of
/// `GET /api/v1/cluster`.
async fn cluster_connections(run: &Run<Churn>) -> Option<u64> {
    let response = http::request(
        &run.common.target,
        "GET",
        "/api/v1/cluster",
        Some(&run.service),
        None,
    )
    .await
    .ok()?
    .ok("cluster")
    .ok()?;
    let body = response.json();
    let nodes = body["nodes"].as_array()?;
    Some(nodes.iter().filter_map(|n| n["connections"].as_u64()).sum())
}

/// Posts `--rate` events a second, round-robin over the rooms, one request
/// at a time, until `end`.
async fn post_ticks(run: &Run<Churn>, end: Instant) {
    let (common, settings, shared) = (&run.common, &run.settings, &run.shared);
    if settings.rate <= 0.0 {
        return;
    }
    let interval = Duration::from_secs_f64(1.0 / settings.rate);
    let mut next = Instant::now();
    let mut n: u64 = 0;
    while next < end {
        sleep_until(next).await;
        let room = n as usize % settings.listings;
        let listing = settings.listing(room);
        let tick = json!({ "n": n });
        match post_listing_event(common, &run.service, &listing, "tick", tick).await {
            Ok(()) => {
                shared.posted_per_room[room].fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                shared.post_failed.fetch_add(1, Ordering::Relaxed);
                run.problems.note(e.to_string());
            }
        }
        n += 1;
        next += interval;
        let now = Instant::now();
        if next < now {
            next = now;
        }
    }
}

/// Opens a connection as `user`, CONNECTs (counted when `churn`) and
/// watches `listing`.
async fn join(
    ctx: &Ctx<Churn>,
    source_index: usize,
    user: &str,
    listing: &str,
    churn: bool,
) -> Result<Socket> {
    let mut socket = ctx.open_as(source_index, user, "buyer", 24 * 3600).await?;
    if churn {
        ctx.shared.connects.fetch_add(1, Ordering::Relaxed);
    }
    socket
        .call_ok("listing:watch", &json!({ "listingId": listing }), 0)
        .await?;
    Ok(socket)
}

async fn run_member(ctx: Rc<Ctx<Churn>>, index: usize) {
    let room = index % ctx.settings.listings;
    let user = format!("bench-{}-m{index}", ctx.settings.run);
    let listing = ctx.settings.listing(room);
    let joined = ctx.enter("steady member", join(&ctx, index, &user, &listing, false));
    let Some(mut socket) = joined.await else {
        return;
    };
    let (shared, problems) = (&ctx.shared, &ctx.problems);
    shared.per_room[room].fetch_add(1, Ordering::Relaxed);
    let mut phase = ctx.phase.clone();
    loop {
        if matches!(*phase.borrow_and_update(), Phase::Stop) {
            break;
        }
        tokio::select! {
            changed = phase.changed() => if changed.is_err() { break },
            packet = socket.recv() => {
                let why = match packet {
                    Ok(Packet::Event(array)) => {
                        match ws::event_name(&array) {
                            Some("tick") => { shared.delivered.fetch_add(1, Ordering::Relaxed); }
                            Some("check") => { shared.checked.fetch_add(1, Ordering::Relaxed); }
                            Some("server:error") => problems.note(format!("server:error {array}")),
                            _ => {}
                        }
                        continue;
                    }
                    Ok(Packet::Closed(why)) => why,
                    Ok(Packet::Disconnect) => "server sent DISCONNECT".into(),
                    Ok(_) => continue,
                    Err(e) => e.to_string(),
                };
                shared.steady_dropped.fetch_add(1, Ordering::Relaxed);
                problems.note(format!("steady member dropped: {why}"));
                return;
            }
        }
    }
    socket.close().await;
}

async fn run_churner(ctx: Rc<Ctx<Churn>>, index: usize) {
    let mut phase = ctx.phase.clone();
    let (start, end) = loop {
        match *phase.borrow_and_update() {
            Phase::Joining | Phase::Drain => {}
            Phase::Window { start, end } => break (start, end),
            Phase::Stop => return,
        }
        if phase.changed().await.is_err() {
            return;
        }
    };
    sleep_until(start).await;
    let user = format!("bench-{}-c{index}", ctx.settings.run);
    let shared = &ctx.shared;
    let mut cycle: usize = 0;
    while Instant::now() < end {
        let room = (index + cycle) % ctx.settings.listings;
        let started = std::time::Instant::now();
        let joined = timeout(
            JOIN_TIMEOUT,
            join(
                &ctx,
                index + cycle,
                &user,
                &ctx.settings.listing(room),
                true,
            ),
        )
        .await;
        match joined {
            Ok(Ok(socket)) => {
                ctx.out.borrow_mut().record(started.elapsed());
                shared.joins.fetch_add(1, Ordering::Relaxed);
                let clean = match ctx.settings.close {
                    Close::Clean => true,
                    Close::Drop => false,
                    Close::Mixed => cycle.is_multiple_of(2),
                };
                if clean {
                    socket.close().await;
                } else {
                    drop(socket);
                }
                shared.disconnects.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                shared.cycle_failed.fetch_add(1, Ordering::Relaxed);
                ctx.problems.note(format!("churner: {e}"));
                sleep(Duration::from_millis(100)).await;
            }
            Err(_) => {
                shared.cycle_failed.fetch_add(1, Ordering::Relaxed);
                ctx.problems.note("churner: timed out".into());
            }
        }
        cycle += 1;
    }
}

fn progress_line(run: Arc<Run<Churn>>) -> impl FnMut(f64) -> String + Send {
    let members = run.settings.members;
    let mut last = [0u64; 3];
    move |elapsed| {
        let shared = &run.shared;
        let now = [
            shared.connects.load(Ordering::Relaxed),
            shared.disconnects.load(Ordering::Relaxed),
            shared.delivered.load(Ordering::Relaxed),
        ];
        let d: Vec<u64> = now
            .iter()
            .zip(last)
            .map(|(n, l)| n.saturating_sub(l))
            .collect();
        last = now;
        let steady = run.joined();
        let failed = run.failed();
        let dropped = shared.steady_dropped.load(Ordering::Relaxed);
        match run.stage() {
            Stage::Joining => format!(
                "[{elapsed:5.1}s] steady members: {steady}/{members} joined, {failed} failed"
            ),
            Stage::Window | Stage::Drain => format!(
                "[{elapsed:5.1}s] churning: connects {}/s  disconnects {}/s  ticks delivered {}/s  steady {}/{members}",
                d[0],
                d[1],
                d[2],
                steady - dropped
            ),
            Stage::After => format!(
                "[{elapsed:5.1}s] checking: check event reached {}/{}",
                shared.checked.load(Ordering::Relaxed),
                steady - dropped
            ),
        }
    }
}

fn fill_report(report: &mut Report, run: &Run<Churn>, found: &Found<Churn>, cycle: &Latency) {
    let (common, settings, shared) = (&run.common, &run.settings, &run.shared);
    let checked_after = &found.after;
    let secs = settings.duration.as_secs_f64();
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let (steady, steady_failed) = (run.joined(), run.failed());
    let steady_dropped = load(&shared.steady_dropped);
    let (connects, joins, disconnects, cycle_failed) = (
        load(&shared.connects),
        load(&shared.joins),
        load(&shared.disconnects),
        load(&shared.cycle_failed),
    );
    let posted: u64 = shared.posted_per_room.iter().map(load).sum();
    let expected: u64 = shared
        .posted_per_room
        .iter()
        .zip(&shared.per_room)
        .map(|(p, m)| load(p) * load(m))
        .sum();
    let delivered = load(&shared.delivered);
    let checked = load(&shared.checked);
    let holding = steady - steady_dropped;
    let cycle_summary = cycle.summary();
    let missing = |got: u64, want: u64| {
        if got == want {
            String::new()
        } else {
            format!(": {} MISSING", want.abs_diff(got))
        }
    };

    report.section("steady members");
    report.item(
        "joined",
        format!(
            "{steady} of {} ({steady_failed} failed) in {:.1} s, on {} listings",
            settings.members, found.settle_secs, settings.listings
        ),
    );
    report.item("dropped during the run", steady_dropped.to_string());
    report.item("generator threads", common.threads.to_string());

    report.section(&format!("churn (during the {secs:.0} s window)"));
    report.item(
        "connects/s",
        format!(
            "{} (CONNECT answered; {connects} in all)",
            per_sec(connects, secs)
        ),
    );
    report.item(
        "disconnects/s",
        format!(
            "{} ({disconnects} in all, {} close)",
            per_sec(disconnects, secs),
            settings.close.name()
        ),
    );
    report.item(
        "cycles",
        format!("{joins} open+CONNECT+watch done, {cycle_failed} failed"),
    );
    report.item("open → watch answered", cycle_summary.line());

    report.section("membership afterwards");
    report.item(
        "ticks delivered",
        format!(
            "{delivered} of {expected} expected ({posted} posted x the room's members){}",
            missing(delivered, expected)
        ),
    );
    report.item(
        "server's connections",
        match checked_after.server_connections {
            Some(n) => format!(
                "{n} (GET /api/v1/cluster, {:.1} s after the churn; expected {holding}){}",
                checked_after.count_secs,
                if n == holding { "" } else { ": MISMATCH" }
            ),
            None => "unknown (GET /api/v1/cluster failed)".into(),
        },
    );
    report.item(
        "last event reached",
        format!(
            "{checked} of {holding} steady members in {:.2} s{}",
            checked_after.check_secs,
            missing(checked, holding)
        ),
    );

    let problems = run.problems.report(report);
    report.set(
        "params",
        run.params(json!({
            "url": common.url,
            "listings": settings.listings,
            "members": settings.members,
            "churners": settings.churners,
            "close": settings.close.name(),
            "rate": settings.rate,
            "durationSecs": secs,
        })),
    );
    report.set(
        "steady",
        json!({
            "joined": steady,
            "failed": steady_failed,
            "dropped": steady_dropped,
            "joinSecs": round3(found.settle_secs),
        }),
    );
    report.set(
        "churn",
        json!({
            "connectsPerSec": per_sec(connects, secs),
            "disconnectsPerSec": per_sec(disconnects, secs),
            "connects": connects,
            "disconnects": disconnects,
            "cycles": joins,
            "failed": cycle_failed,
            "cycleLatencyMs": cycle_summary.json(),
        }),
    );
    report.set(
        "membership",
        json!({
            "posted": posted,
            "delivered": delivered,
            "expected": expected,
            "serverConnections": checked_after.server_connections,
            "expectedConnections": holding,
            "checkReached": checked,
            "checkSecs": round3(checked_after.check_secs),
        }),
    );
    report.set("problems", json!(problems));
}
