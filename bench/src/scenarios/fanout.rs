//! `fanout`: R listing rooms with M members each, fed by the server API.
//!
//! R public listings are created through the server API. R×M members open
//! their own connections as their own users and `listing:watch` one listing
//! each (member i watches listing i mod R). Once all are connected, P
//! publisher tasks post `POST /api/v1/rooms/listing:{id}/events`
//! `{event:"tick", data:{t, n}}` at `--rate` events a second in total,
//! round-robin over the rooms, where `t` is the send time in microseconds
//! since the epoch. Every member records receive time − `t` (same machine,
//! same clock) into a histogram and counts its deliveries; the room offset
//! (the event's last argument) is ignored.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{watch, Semaphore};
use tokio::time::{sleep_until, timeout, Instant};

use super::{create_listings, now_micros, wait_settled, Problems};
use crate::cli::{Common, Options};
use crate::error::{fail, Result};
use crate::procs;
use crate::progress::Progress;
use crate::report::Report;
use crate::stats::{per_sec, Latency};
use crate::ws::{self, Packet, Socket};
use crate::{http, shard, token};

/// How long one member may take to connect and watch.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
struct Settings {
    rooms: usize,
    members: usize,
    publishers: usize,
    duration: Duration,
    rate: f64,
    drain: Duration,
    run: String,
}

impl Settings {
    fn connections(&self) -> usize {
        self.rooms * self.members
    }

    fn listing(&self, room: usize) -> String {
        format!("bench-fanout-{}-{room}", self.run)
    }
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    Connecting,
    Running,
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
    dropped: AtomicU64,
    posted: AtomicU64,
    post_failed: AtomicU64,
    skipped: AtomicU64,
    delivered: AtomicU64,
    unreadable: AtomicU64,
    server_errors: AtomicU64,
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

pub async fn run(common: &Common, mut options: Options) -> Result<Report> {
    let settings = Settings {
        rooms: options.take("rooms", 10usize)?,
        members: options.take("members", 100usize)?,
        publishers: options.take("publishers", 4usize)?.max(1),
        duration: Duration::from_secs_f64(options.take("duration", 10.0f64)?.max(0.1)),
        rate: options.take("rate", 100.0f64)?,
        drain: Duration::from_secs_f64(options.take("drain", 5.0f64)?.max(0.0)),
        run: super::run_id(),
    };
    options.finish()?;
    if settings.rooms == 0 || settings.members == 0 {
        return fail("--rooms and --members must be at least 1");
    }
    if !(settings.rate > 0.0 && settings.rate.is_finite()) {
        return fail("--rate must be above 0");
    }
    let service = token::mint(&common.secret, "souk-bench", Some("service"), 3600 * 24)?;
    create_listings(
        common,
        &service,
        &format!("bench-seller-{}", settings.run),
        "souk-bench fanout",
        (0..settings.rooms).map(|room| settings.listing(room)),
    )
    .await?;

    let shared = Arc::new(Shared::default());
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let progress = Progress::start(progress_line(shared.clone(), settings.connections()));
    let threads = common.threads.min(settings.connections());
    let shards = shard::run_each(threads, common, &settings, &shared, phase_rx, shard_main);
    let mut report = Report::new(
        "fanout",
        format!(
            "souk-bench fanout: {} rooms x {} members, {} publishers, {} events/s, {:.0} s, against {}",
            settings.rooms,
            settings.members,
            settings.publishers,
            settings.rate,
            settings.duration.as_secs_f64(),
            common.url
        ),
    );
    let conductor = conduct(common, &settings, &shared, &service, phase_tx);
    let (shards, conducted) = tokio::join!(shards, conductor);
    drop(progress);
    let (connect_secs, post_latency, readings) = conducted?;
    let mut latency = Latency::new()?;
    for part in shards? {
        latency.merge(&part)?;
    }
    fill_report(
        &mut report,
        common,
        &settings,
        &shared,
        connect_secs,
        &latency,
        &post_latency,
    );
    report.append(readings);
    Ok(report)
}

/// Waits for every member, runs the publishers for the window, takes the
/// CPU readings around it, and stops everyone after the drain.
async fn conduct(
    common: &Common,
    settings: &Settings,
    shared: &Shared,
    service: &str,
    phase: watch::Sender<Phase>,
) -> Result<(f64, Latency, Report)> {
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
    let _ = phase.send(Phase::Running);
    let start = Instant::now() + Duration::from_millis(300);
    let end = start + settings.duration;
    sleep_until(start).await;
    shared.stage.store(STAGE_RUNNING, Ordering::Relaxed);
    let publishers =
        (0..settings.publishers).map(|p| publish(common, settings, shared, service, p, start, end));
    let (parts, readings) =
        procs::measure(common, end, futures_util::future::join_all(publishers)).await;
    shared.stage.store(STAGE_DRAINING, Ordering::Relaxed);
    let mut post_latency = Latency::new()?;
    for part in parts {
        post_latency.merge(&part?)?;
    }
    sleep_until(end + settings.drain).await;
    let _ = phase.send(Phase::Stop);
    Ok((connect_secs, post_latency, readings))
}

/// One publisher: its share of the rate, round-robin over the rooms, one
/// request at a time. A slot that went by while a request was out is
/// skipped and counted. Answers the requests' latencies.
async fn publish(
    common: &Common,
    settings: &Settings,
    shared: &Shared,
    service: &str,
    index: usize,
    start: Instant,
    end: Instant,
) -> Result<Latency> {
    let mut latency = Latency::new()?;
    let per = settings.rate / settings.publishers as f64;
    let interval = Duration::from_secs_f64(1.0 / per);
    let mut next = start + interval.mul_f64(index as f64 / settings.publishers as f64);
    let mut n: u64 = 0;
    while next < end {
        sleep_until(next).await;
        let room = (n as usize * settings.publishers + index) % settings.rooms;
        let body = json!({ "event": "tick", "data": { "t": now_micros(), "n": n } });
        let sent = std::time::Instant::now();
        let outcome = http::request(
            &common.target,
            "POST",
            &format!("/api/v1/rooms/listing:{}/events", settings.listing(room)),
            Some(service),
            Some(&body),
        )
        .await;
        match outcome {
            Ok(r) if (200..300).contains(&r.status) => {
                latency.record(sent.elapsed());
                shared.posted.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => {
                shared.post_failed.fetch_add(1, Ordering::Relaxed);
                shared
                    .problems
                    .note(format!("post: HTTP {} {}", r.status, r.body));
            }
            Err(e) => {
                shared.post_failed.fetch_add(1, Ordering::Relaxed);
                shared.problems.note(format!("post: {e}"));
            }
        }
        n += 1;
        next += interval;
        let now = Instant::now();
        while next <= now && next < end {
            next += interval;
            shared.skipped.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(latency)
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
    while tasks.join_next().await.is_some() {}
    Ok(ctx.latency.replace(Latency::new()?))
}

async fn run_member(ctx: Rc<Ctx>, index: usize) {
    let joined = {
        let Ok(_permit) = ctx.gate.acquire().await else {
            return;
        };
        timeout(CONNECT_TIMEOUT, join(&ctx, index)).await
    };
    let mut socket = match joined {
        Ok(Ok(socket)) => socket,
        Ok(Err(e)) => {
            ctx.shared.problems.note(format!("connect: {e}"));
            ctx.shared.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Err(_) => {
            ctx.shared.problems.note("connect: timed out".into());
            ctx.shared.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    ctx.shared.connected.fetch_add(1, Ordering::Relaxed);
    let mut phase = ctx.phase.clone();
    loop {
        if matches!(*phase.borrow_and_update(), Phase::Stop) {
            break;
        }
        tokio::select! {
            changed = phase.changed() => if changed.is_err() { break },
            packet = socket.recv() => if !handle(&ctx, packet) { return },
        }
    }
    socket.close().await;
}

/// Opens, CONNECTs and watches the member's listing.
async fn join(ctx: &Ctx, index: usize) -> Result<Socket> {
    let sources = &ctx.common.sources;
    let source = sources[index % sources.len()];
    let mut socket = ws::open(&ctx.common.target, source).await?;
    let user = format!("bench-{}-m{index}", ctx.settings.run);
    let ttl = 3600 + ctx.settings.duration.as_secs() * 2;
    let token = token::mint(&ctx.common.secret, &user, Some("buyer"), ttl)?;
    socket.connect(&json!({ "token": token })).await?;
    let listing = ctx.settings.listing(index % ctx.settings.rooms);
    let reply = socket
        .call("listing:watch", &json!({ "listingId": listing }), 0)
        .await?;
    if reply["ok"] != json!(true) {
        return fail(format!("listing:watch refused: {reply}"));
    }
    Ok(socket)
}

/// Takes in one packet; false when the connection is gone.
fn handle(ctx: &Ctx, packet: Result<Packet>) -> bool {
    let shared = &ctx.shared;
    let why = match packet {
        Ok(Packet::Event(array)) => {
            match ws::event_name(&array) {
                Some("tick") => match ws::int_field(&array, "t") {
                    Some(t) => {
                        let took = now_micros().saturating_sub(t).max(0);
                        let took = Duration::from_micros(u64::try_from(took).unwrap_or(0));
                        ctx.latency.borrow_mut().record(took);
                        shared.delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    None => {
                        shared.unreadable.fetch_add(1, Ordering::Relaxed);
                    }
                },
                Some("server:error") => {
                    shared.server_errors.fetch_add(1, Ordering::Relaxed);
                    shared.problems.note(format!("server:error {array}"));
                }
                _ => {}
            }
            return true;
        }
        Ok(Packet::Closed(why)) => why,
        Ok(Packet::Disconnect) => "server sent DISCONNECT".into(),
        Ok(_) => return true,
        Err(e) => e.to_string(),
    };
    shared.dropped.fetch_add(1, Ordering::Relaxed);
    shared.problems.note(format!("dropped: {why}"));
    false
}

fn progress_line(shared: Arc<Shared>, total: usize) -> impl FnMut(f64) -> String + Send {
    let mut last = [0u64; 2];
    move |elapsed| {
        let now = [
            shared.posted.load(Ordering::Relaxed),
            shared.delivered.load(Ordering::Relaxed),
        ];
        let d: Vec<u64> = now.iter().zip(last).map(|(n, l)| n - l).collect();
        last = now;
        let connected = shared.connected.load(Ordering::Relaxed);
        let failed = shared.failed.load(Ordering::Relaxed);
        let dropped = shared.dropped.load(Ordering::Relaxed);
        match shared.stage.load(Ordering::Relaxed) {
            STAGE_CONNECTING => format!(
                "[{elapsed:5.1}s] connecting: {connected}/{total} connected, {failed} failed"
            ),
            stage => format!(
                "[{elapsed:5.1}s] {}: posted {}/s  delivered {}/s  conns {}/{total}",
                if stage == STAGE_RUNNING {
                    "publishing"
                } else {
                    "draining"
                },
                d[0],
                d[1],
                connected - dropped,
            ),
        }
    }
}

fn fill_report(
    report: &mut Report,
    common: &Common,
    settings: &Settings,
    shared: &Shared,
    connect_secs: f64,
    latency: &Latency,
    post_latency: &Latency,
) {
    let secs = settings.duration.as_secs_f64();
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let (connected, failed, dropped) = (
        load(&shared.connected),
        load(&shared.failed),
        load(&shared.dropped),
    );
    let (posted, post_failed, skipped) = (
        load(&shared.posted),
        load(&shared.post_failed),
        load(&shared.skipped),
    );
    let delivered = load(&shared.delivered);
    // Every room has `members` watchers when all connected.
    let expected = posted * settings.members as u64;
    let sources: Vec<String> = common.sources.iter().map(ToString::to_string).collect();

    report.section("connections");
    report.item(
        "members connected",
        format!(
            "{connected} of {} ({failed} failed) in {connect_secs:.1} s",
            settings.connections()
        ),
    );
    report.item("dropped during the run", dropped.to_string());
    report.item("generator threads", common.threads.to_string());

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

    let lat = latency.summary();
    report.section("deliveries");
    report.item("deliveries/s", format!("{}", per_sec(delivered, secs)));
    report.item(
        "delivered",
        format!(
            "{delivered} of {expected} expected (posted x members){}",
            if delivered == expected {
                String::new()
            } else {
                format!(": {} MISSING", expected.abs_diff(delivered))
            }
        ),
    );
    report.item("delivery latency", lat.line());
    let (unreadable, server_errors) = (load(&shared.unreadable), load(&shared.server_errors));
    if unreadable + server_errors > 0 {
        report.item(
            "odd events",
            format!("tick without t {unreadable}, server:error {server_errors}"),
        );
    }

    let problems = shared.problems.report(report);

    report.set(
        "params",
        json!({
            "url": common.url,
            "rooms": settings.rooms,
            "members": settings.members,
            "publishers": settings.publishers,
            "rate": settings.rate,
            "durationSecs": secs,
            "drainSecs": settings.drain.as_secs_f64(),
            "sources": sources,
            "threads": common.threads,
        }),
    );
    report.set(
        "connections",
        json!({ "connected": connected, "failed": failed, "dropped": dropped, "connectSecs": connect_secs }),
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
        "deliveries",
        json!({
            "perSec": per_sec(delivered, secs),
            "delivered": delivered,
            "expected": expected,
            "latencyMs": lat.json(),
            "unreadable": unreadable,
            "serverErrors": server_errors,
        }),
    );
    report.set("problems", json!(problems));
}
