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

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{watch, Semaphore};
use tokio::time::{sleep, sleep_until, timeout, Instant};

use super::{create_listings, post_listing_event, wait_settled, Problems};
use crate::cli::{Common, Options};
use crate::error::{fail, Result};
use crate::procs;
use crate::progress::Progress;
use crate::report::Report;
use crate::stats::{per_sec, round3, Latency};
use crate::ws::{self, Packet, Socket};
use crate::{http, shard, token};

/// How long one connection may take to open, CONNECT and watch.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
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

#[derive(Clone)]
struct Settings {
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

impl Settings {
    fn listing(&self, room: usize) -> String {
        format!("bench-churn-{}-{room}", self.run)
    }
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    Connecting,
    Churning { end: Instant },
    Stop,
}

const STAGE_CONNECTING: u8 = 0;
const STAGE_CHURNING: u8 = 1;
const STAGE_CHECKING: u8 = 2;

/// Counters every thread adds to; read by the progress line and the report.
#[derive(Default)]
struct Shared {
    stage: AtomicU8,
    steady: AtomicU64,
    steady_failed: AtomicU64,
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
    problems: Problems,
}

/// What a thread's connections share.
struct Ctx {
    common: Common,
    settings: Settings,
    shared: Arc<Shared>,
    phase: watch::Receiver<Phase>,
    gate: Semaphore,
    cycle: RefCell<Latency>,
}

pub async fn run(common: &Common, mut options: Options) -> Result<Report> {
    let settings = Settings {
        listings: options.take("listings", 10usize)?,
        members: options.take("members", 1000usize)?,
        churners: options.take("churners", 50usize)?,
        duration: Duration::from_secs_f64(options.take("duration", 10.0f64)?.max(0.1)),
        rate: options.take("rate", 20.0f64)?.max(0.0),
        close: match options.take_text("close").as_deref() {
            None | Some("mixed") => Close::Mixed,
            Some("clean") => Close::Clean,
            Some("drop") => Close::Drop,
            Some(other) => return fail(format!("--close: clean, drop or mixed, not {other:?}")),
        },
        drain: Duration::from_secs_f64(options.take("drain", 2.0f64)?.max(0.0)),
        run: super::run_id(),
    };
    options.finish()?;
    if settings.listings == 0 || settings.churners == 0 {
        return fail("--listings and --churners must be at least 1");
    }
    let service = token::mint(&common.secret, "souk-bench", Some("service"), 3600 * 24)?;
    create_listings(
        common,
        &service,
        &format!("bench-seller-{}", settings.run),
        "souk-bench churn",
        (0..settings.listings).map(|room| settings.listing(room)),
    )
    .await?;
    let shared = Arc::new(Shared {
        per_room: (0..settings.listings).map(|_| AtomicU64::new(0)).collect(),
        posted_per_room: (0..settings.listings).map(|_| AtomicU64::new(0)).collect(),
        ..Shared::default()
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let progress = Progress::start(progress_line(shared.clone(), settings.members));
    let threads = common.threads.max(1);
    let shards = shard::run_each(threads, common, &settings, &shared, phase_rx, shard_main);
    let conductor = conduct(common, &settings, &shared, &service, phase_tx);
    let (shards, conducted) = tokio::join!(shards, conductor);
    drop(progress);
    let conducted = conducted?;
    let mut cycle = Latency::new()?;
    for part in shards? {
        cycle.merge(&part)?;
    }
    let mut report = Report::new(
        "churn",
        format!(
            "souk-bench churn: {} steady members on {} listings, {} churners ({} close), {} events/s, {:.0} s, against {}",
            settings.members,
            settings.listings,
            settings.churners,
            settings.close.name(),
            settings.rate,
            settings.duration.as_secs_f64(),
            common.url
        ),
    );
    fill_report(&mut report, common, &settings, &shared, &conducted, &cycle);
    report.append(conducted.readings);
    Ok(report)
}

/// What the conductor saw.
struct Conducted {
    connect_secs: f64,
    /// The server's connection count after the churn, when it answered.
    server_connections: Option<u64>,
    count_secs: f64,
    check_secs: f64,
    readings: Report,
}

/// Waits for the steady members, lets the churners loop for the window
/// while posting events, then checks the server's count and the last event.
async fn conduct(
    common: &Common,
    settings: &Settings,
    shared: &Shared,
    service: &str,
    phase: watch::Sender<Phase>,
) -> Result<Conducted> {
    let connect_secs = wait_settled(
        settings.members as u64,
        CONNECT_TIMEOUT,
        "steady members",
        || shared.steady.load(Ordering::Relaxed) + shared.steady_failed.load(Ordering::Relaxed),
        || {
            let _ = phase.send(Phase::Stop);
        },
    )
    .await?;
    let start = Instant::now() + Duration::from_millis(300);
    let end = start + settings.duration;
    sleep_until(start).await;
    let _ = phase.send(Phase::Churning { end });
    shared.stage.store(STAGE_CHURNING, Ordering::Relaxed);
    let ((), readings) = procs::measure(
        common,
        end,
        post_ticks(common, settings, shared, service, end),
    )
    .await;
    // Churners finish their cycle; late ticks arrive.
    sleep(settings.drain).await;
    shared.stage.store(STAGE_CHECKING, Ordering::Relaxed);

    let counted = Instant::now();
    let mut server_connections = None;
    let expected =
        shared.steady.load(Ordering::Relaxed) - shared.steady_dropped.load(Ordering::Relaxed);
    while counted.elapsed() < COUNT_TIMEOUT {
        server_connections = cluster_connections(common, service).await;
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
        if let Err(e) = post_listing_event(common, service, &listing, "check", data).await {
            shared.problems.note(format!("check {e}"));
        }
    }
    while shared.checked.load(Ordering::Relaxed) < expected && checked.elapsed() < CHECK_TIMEOUT {
        sleep(Duration::from_millis(20)).await;
    }
    let check_secs = checked.elapsed().as_secs_f64();
    let _ = phase.send(Phase::Stop);
    Ok(Conducted {
        connect_secs,
        server_connections,
        count_secs,
        check_secs,
        readings,
    })
}

/// The connections the server says it holds: the sum over the nodes of
/// `GET /api/v1/cluster`.
async fn cluster_connections(common: &Common, service: &str) -> Option<u64> {
    let response = http::request(
        &common.target,
        "GET",
        "/api/v1/cluster",
        Some(service),
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
async fn post_ticks(
    common: &Common,
    settings: &Settings,
    shared: &Shared,
    service: &str,
    end: Instant,
) {
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
        match post_listing_event(common, service, &listing, "tick", json!({ "n": n })).await {
            Ok(()) => {
                shared.posted_per_room[room].fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                shared.post_failed.fetch_add(1, Ordering::Relaxed);
                shared.problems.note(e.to_string());
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

async fn shard_main(
    index: usize,
    threads: usize,
    common: Common,
    settings: Settings,
    shared: Arc<Shared>,
    phase: watch::Receiver<Phase>,
) -> Result<Latency> {
    let gate = Semaphore::new((common.connect_concurrency / threads).max(1));
    let ctx = Rc::new(Ctx {
        cycle: RefCell::new(Latency::new()?),
        common,
        settings,
        shared,
        phase,
        gate,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for member in shard::items(index, threads, ctx.settings.members) {
        tasks.spawn_local(run_member(ctx.clone(), member));
    }
    for churner in shard::items(index, threads, ctx.settings.churners) {
        tasks.spawn_local(run_churner(ctx.clone(), churner));
    }
    while tasks.join_next().await.is_some() {}
    Ok(ctx.cycle.replace(Latency::new()?))
}

/// Opens a connection as `user`, CONNECTs (counted when `churn`) and
/// watches `listing`.
async fn join(
    ctx: &Ctx,
    source_index: usize,
    user: &str,
    listing: &str,
    churn: bool,
) -> Result<Socket> {
    let sources = &ctx.common.sources;
    let source = sources[source_index % sources.len()];
    let mut socket = ws::open(&ctx.common.target, source).await?;
    let token = token::mint(&ctx.common.secret, user, Some("buyer"), 24 * 3600)?;
    socket.connect(&json!({ "token": token })).await?;
    if churn {
        ctx.shared.connects.fetch_add(1, Ordering::Relaxed);
    }
    let reply = socket
        .call("listing:watch", &json!({ "listingId": listing }), 0)
        .await?;
    if reply["ok"] != json!(true) {
        return fail(format!("listing:watch refused: {reply}"));
    }
    Ok(socket)
}

async fn run_member(ctx: Rc<Ctx>, index: usize) {
    let room = index % ctx.settings.listings;
    let user = format!("bench-{}-m{index}", ctx.settings.run);
    let joined = {
        let Ok(_permit) = ctx.gate.acquire().await else {
            return;
        };
        let listing = ctx.settings.listing(room);
        timeout(CONNECT_TIMEOUT, join(&ctx, index, &user, &listing, false)).await
    };
    let shared = &ctx.shared;
    let mut socket = match joined {
        Ok(Ok(socket)) => socket,
        Ok(Err(e)) => {
            shared.problems.note(format!("steady member: {e}"));
            shared.steady_failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Err(_) => {
            shared.problems.note("steady member: timed out".into());
            shared.steady_failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    shared.per_room[room].fetch_add(1, Ordering::Relaxed);
    shared.steady.fetch_add(1, Ordering::Relaxed);
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
                            Some("server:error") => shared.problems.note(format!("server:error {array}")),
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
                shared.problems.note(format!("steady member dropped: {why}"));
                return;
            }
        }
    }
    socket.close().await;
}

async fn run_churner(ctx: Rc<Ctx>, index: usize) {
    let mut phase = ctx.phase.clone();
    let end = loop {
        match *phase.borrow_and_update() {
            Phase::Connecting => {}
            Phase::Churning { end } => break end,
            Phase::Stop => return,
        }
        if phase.changed().await.is_err() {
            return;
        }
    };
    let user = format!("bench-{}-c{index}", ctx.settings.run);
    let shared = &ctx.shared;
    let mut cycle: usize = 0;
    while Instant::now() < end {
        let room = (index + cycle) % ctx.settings.listings;
        let started = std::time::Instant::now();
        let joined = timeout(
            CONNECT_TIMEOUT,
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
                ctx.cycle.borrow_mut().record(started.elapsed());
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
                shared.problems.note(format!("churner: {e}"));
                sleep(Duration::from_millis(100)).await;
            }
            Err(_) => {
                shared.cycle_failed.fetch_add(1, Ordering::Relaxed);
                shared.problems.note("churner: timed out".into());
            }
        }
        cycle += 1;
    }
}

fn progress_line(shared: Arc<Shared>, members: usize) -> impl FnMut(f64) -> String + Send {
    let mut last = [0u64; 3];
    move |elapsed| {
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
        let steady = shared.steady.load(Ordering::Relaxed);
        let failed = shared.steady_failed.load(Ordering::Relaxed);
        let dropped = shared.steady_dropped.load(Ordering::Relaxed);
        match shared.stage.load(Ordering::Relaxed) {
            STAGE_CONNECTING => format!(
                "[{elapsed:5.1}s] steady members: {steady}/{members} joined, {failed} failed"
            ),
            STAGE_CHURNING => format!(
                "[{elapsed:5.1}s] churning: connects {}/s  disconnects {}/s  ticks delivered {}/s  steady {}/{members}",
                d[0],
                d[1],
                d[2],
                steady - dropped
            ),
            _ => format!(
                "[{elapsed:5.1}s] checking: check event reached {}/{}",
                shared.checked.load(Ordering::Relaxed),
                steady - dropped
            ),
        }
    }
}

fn fill_report(
    report: &mut Report,
    common: &Common,
    settings: &Settings,
    shared: &Shared,
    conducted: &Conducted,
    cycle: &Latency,
) {
    let secs = settings.duration.as_secs_f64();
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let (steady, steady_failed, steady_dropped) = (
        load(&shared.steady),
        load(&shared.steady_failed),
        load(&shared.steady_dropped),
    );
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
    let sources: Vec<String> = common.sources.iter().map(ToString::to_string).collect();
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
            settings.members, conducted.connect_secs, settings.listings
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
        match conducted.server_connections {
            Some(n) => format!(
                "{n} (GET /api/v1/cluster, {:.1} s after the churn; expected {holding}){}",
                conducted.count_secs,
                if n == holding { "" } else { ": MISMATCH" }
            ),
            None => "unknown (GET /api/v1/cluster failed)".into(),
        },
    );
    report.item(
        "last event reached",
        format!(
            "{checked} of {holding} steady members in {:.2} s{}",
            conducted.check_secs,
            missing(checked, holding)
        ),
    );

    let problems = shared.problems.report(report);
    report.set(
        "params",
        json!({
            "url": common.url,
            "listings": settings.listings,
            "members": settings.members,
            "churners": settings.churners,
            "close": settings.close.name(),
            "rate": settings.rate,
            "durationSecs": secs,
            "sources": sources,
            "threads": common.threads,
        }),
    );
    report.set(
        "steady",
        json!({
            "joined": steady,
            "failed": steady_failed,
            "dropped": steady_dropped,
            "joinSecs": round3(conducted.connect_secs),
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
            "serverConnections": conducted.server_connections,
            "expectedConnections": holding,
            "checkReached": checked,
            "checkSecs": round3(conducted.check_secs),
        }),
    );
    report.set("problems", json!(problems));
}
