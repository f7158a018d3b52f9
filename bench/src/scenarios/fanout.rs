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
//! (the event's last argument) is ignored. Each thread also keeps, per
//! event (`t`, `n`), how many members got it and the latest of their
//! latencies, so the report gives the time an event takes to reach all
//! of its room's members (one histogram entry per event that did), what
//! "one event reaches a 10,000-member room" asks (`--rooms 1 --members
//! 10000`).
//!
//! With `--via stream`, publishers `XADD` the same events to souk's queue
//! (`<prefix>{ingest}`, §8b) instead of posting them, each over its own
//! Redis connection, and the POST latency becomes the XADD latency: the
//! same delivery report for both ways in.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::now_micros;
use crate::cli::{Common, Options};
use crate::error::{fail, Result};
use crate::queue::Queue;
use crate::report::Report;
use crate::runner::{self, Ctx, Found, Merge, Pacer, Phase, Run, Scenario, Stage};
use crate::stats::{per_sec, Latency};
use crate::ws::{self, Packet, Socket};

pub struct Fanout {
    rooms: usize,
    members: usize,
    publishers: usize,
    duration: Duration,
    rate: f64,
    drain: Duration,
    run: String,
    via: Via,
}

/// How events get into souk.
enum Via {
    /// `POST /api/v1/rooms/listing:{id}/events`.
    Api,
    /// `XADD` to the queue `stream` on the Redis at `redis`.
    Stream { redis: String, stream: String },
}

impl Fanout {
    fn connections(&self) -> usize {
        self.rooms * self.members
    }

    fn listing(&self, room: usize) -> String {
        super::room_listing(Self::NAME, &self.run, room)
    }
}

impl Via {
    fn name(&self) -> &'static str {
        match self {
            Via::Api => "api",
            Via::Stream { .. } => "stream",
        }
    }
}

/// What a thread's members found: every delivery's latency, and per event
/// (its `t` and `n`) how many members got it and the latest latency.
pub struct Deliveries {
    latency: Latency,
    events: HashMap<(i64, i64), (u64, Duration)>,
}

impl Deliveries {
    fn new() -> Result<Deliveries> {
        Ok(Deliveries {
            latency: Latency::new()?,
            events: HashMap::new(),
        })
    }

    fn record(&mut self, event: (i64, i64), took: Duration) {
        self.latency.record(took);
        let (count, last) = self.events.entry(event).or_insert((0, Duration::ZERO));
        *count += 1;
        *last = (*last).max(took);
    }

    /// The time to the last member of each event that reached `members`
    /// members, and how many did.
    fn to_all(&self, members: u64) -> Result<(Latency, u64)> {
        let mut to_all = Latency::new()?;
        let mut complete = 0;
        for (count, last) in self.events.values() {
            if *count >= members {
                to_all.record(*last);
                complete += 1;
            }
        }
        Ok((to_all, complete))
    }
}

impl Merge for Deliveries {
    fn merge(&mut self, other: Deliveries) -> Result<()> {
        self.latency.merge(&other.latency)?;
        for (event, (count, last)) in other.events {
            let (all, latest) = self.events.entry(event).or_insert((0, Duration::ZERO));
            *all += count;
            *latest = (*latest).max(last);
        }
        Ok(())
    }
}

/// Counters every thread adds to; read by the progress line and the report.
#[derive(Default)]
pub struct Shared {
    dropped: AtomicU64,
    posted: AtomicU64,
    post_failed: AtomicU64,
    skipped: AtomicU64,
    delivered: AtomicU64,
    unreadable: AtomicU64,
    server_errors: AtomicU64,
}

impl Scenario for Fanout {
    const NAME: &'static str = "fanout";
    const UNITS: &'static str = "members";
    type Shared = Shared;
    /// Delivery latencies, per member and per event.
    type Out = Deliveries;
    /// POST latencies.
    type Window = Latency;
    type After = ();

    fn parse(options: &mut Options) -> Result<Fanout> {
        Ok(Fanout {
            rooms: options.take("rooms", 10usize)?,
            members: options.take("members", 100usize)?,
            publishers: options.take("publishers", 4usize)?.max(1),
            duration: Duration::from_secs_f64(options.take("duration", 10.0f64)?.max(0.1)),
            rate: options.take("rate", 100.0f64)?,
            drain: Duration::from_secs_f64(options.take("drain", 5.0f64)?.max(0.0)),
            run: super::run_id(),
            via: match options.take_text("via").as_deref() {
                None | Some("api") => {
                    for unused in ["redis", "prefix"] {
                        if options.take_text(unused).is_some() {
                            return fail(format!("--{unused} goes with --via stream"));
                        }
                    }
                    Via::Api
                }
                Some("stream") => Via::Stream {
                    redis: options
                        .take_text("redis")
                        .unwrap_or_else(|| "127.0.0.1:6379".into()),
                    stream: format!(
                        "{}{{ingest}}",
                        options
                            .take_text("prefix")
                            .unwrap_or_else(|| "souk:".into())
                    ),
                },
                Some(other) => return fail(format!("--via: api or stream, not {other:?}")),
            },
        })
    }

    fn check(&self) -> Result<()> {
        if self.rooms == 0 || self.members == 0 {
            return fail("--rooms and --members must be at least 1");
        }
        super::positive_rate(self.rate)?;
        Ok(())
    }

    async fn prepare(&self, common: &Common, service: &str) -> Result<()> {
        super::create_rooms(common, service, Self::NAME, &self.run, self.rooms).await
    }

    fn out(&self) -> Result<Deliveries> {
        Deliveries::new()
    }

    fn title(&self, common: &Common) -> String {
        format!(
            "souk-bench fanout: {} rooms x {} members ({}), {} publishers, {} events/s, {:.0} s, via {}, against {}",
            self.rooms,
            self.members,
            common.target.transport.name(),
            self.publishers,
            self.rate,
            self.duration.as_secs_f64(),
            self.via.name(),
            common.url
        )
    }

    fn units(&self) -> Vec<usize> {
        vec![self.connections()]
    }

    fn duration(&self) -> Duration {
        self.duration
    }

    async fn unit(ctx: Rc<Ctx<Fanout>>, _kind: usize, index: usize) {
        run_member(ctx, index).await;
    }

    /// The publishers, for the window; answers their requests' latencies.
    async fn window(run: &Run<Fanout>, start: Instant, end: Instant) -> Result<Latency> {
        let publishers = (0..run.settings.publishers).map(|p| publish(run, p, start, end));
        let mut post_latency = Latency::new()?;
        for part in futures_util::future::join_all(publishers).await {
            post_latency.merge(&part?)?;
        }
        Ok(post_latency)
    }

    async fn after(run: &Run<Fanout>, end: Instant) -> Result<()> {
        tokio::time::sleep_until(end + run.settings.drain).await;
        Ok(())
    }

    fn progress(run: Arc<Run<Fanout>>) -> impl FnMut(f64) -> String + Send + 'static {
        progress_line(run)
    }

    async fn report(
        run: &Run<Fanout>,
        report: &mut Report,
        deliveries: Deliveries,
        found: Found<Fanout>,
    ) -> Result<()> {
        fill_report(report, run, found.settle_secs, &deliveries, &found.window)
    }
}

/// One publisher: its share of the rate, round-robin over the rooms, one
/// request at a time. A slot that went by while a request was out is
/// skipped and counted. Answers the requests' latencies.
async fn publish(run: &Run<Fanout>, index: usize, start: Instant, end: Instant) -> Result<Latency> {
    let (settings, shared) = (&run.settings, &run.shared);
    let mut latency = Latency::new()?;
    let per = settings.rate / settings.publishers as f64;
    let interval = Duration::from_secs_f64(1.0 / per);
    let share = index as f64 / settings.publishers as f64;
    let mut pacer = Pacer::new(start, end, interval, share);
    let mut queue = match &settings.via {
        Via::Api => None,
        Via::Stream { redis, stream } => Some(Queue::connect(redis, stream).await?),
    };
    let mut n: u64 = 0;
    while pacer.wait().await {
        let room = (n as usize * settings.publishers + index) % settings.rooms;
        let data = json!({ "t": now_micros(), "n": n });
        let listing = settings.listing(room);
        let sent = match &mut queue {
            None => {
                let body = json!({ "event": "tick", "data": data });
                runner::post_event(run, &listing, &body, &mut latency).await
            }
            Some(queue) => {
                let at = std::time::Instant::now();
                let (target, data) = (format!("listing:{listing}"), data.to_string());
                let id = format!("{}-{index}-{n}", settings.run);
                let fields = [
                    ("kind", "room_event"),
                    ("target", target.as_str()),
                    ("event", "tick"),
                    ("data", data.as_str()),
                    ("id", id.as_str()),
                ];
                match queue.xadd(&fields).await {
                    Ok(_) => {
                        latency.record(at.elapsed());
                        true
                    }
                    Err(err) => {
                        run.problems.note(format!("xadd: {err}"));
                        false
                    }
                }
            }
        };
        let counter = if sent {
            &shared.posted
        } else {
            &shared.post_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        n += 1;
        shared.skipped.fetch_add(pacer.advance(), Ordering::Relaxed);
    }
    Ok(latency)
}

async fn run_member(ctx: Rc<Ctx<Fanout>>, index: usize) {
    let Some(mut socket) = ctx.enter("connect", join(&ctx, index)).await else {
        return;
    };
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
async fn join(ctx: &Ctx<Fanout>, index: usize) -> Result<Socket> {
    let user = format!("bench-{}-m{index}", ctx.settings.run);
    let mut socket = ctx.open_as(index, &user, "buyer", ctx.token_ttl()).await?;
    let listing = ctx.settings.listing(index % ctx.settings.rooms);
    socket
        .call_ok("listing:watch", &json!({ "listingId": listing }), 0)
        .await?;
    Ok(socket)
}

/// Takes in one packet; false when the connection is gone.
fn handle(ctx: &Ctx<Fanout>, packet: Result<Packet>) -> bool {
    let shared = &ctx.shared;
    if let Ok(Packet::Event(array)) = &packet {
        match ws::event_name(array) {
            Some("tick") => match ws::int_field(array, "t") {
                Some(t) => {
                    let took = now_micros().saturating_sub(t).max(0);
                    let took = Duration::from_micros(u64::try_from(took).unwrap_or(0));
                    let n = ws::int_field(array, "n").unwrap_or(-1);
                    ctx.out.borrow_mut().record((t, n), took);
                    shared.delivered.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    shared.unreadable.fetch_add(1, Ordering::Relaxed);
                }
            },
            Some("server:error") => {
                shared.server_errors.fetch_add(1, Ordering::Relaxed);
                ctx.problems.note(format!("server:error {array}"));
            }
            _ => {}
        }
        return true;
    }
    let Some(why) = Packet::gone(packet) else {
        return true;
    };
    shared.dropped.fetch_add(1, Ordering::Relaxed);
    ctx.problems.note(format!("dropped: {why}"));
    false
}

fn progress_line(run: Arc<Run<Fanout>>) -> impl FnMut(f64) -> String + Send {
    let total = run.settings.connections();
    let mut last = [0u64; 2];
    move |elapsed| {
        let shared = &run.shared;
        let now = [
            shared.posted.load(Ordering::Relaxed),
            shared.delivered.load(Ordering::Relaxed),
        ];
        let d: Vec<u64> = now.iter().zip(last).map(|(n, l)| n - l).collect();
        last = now;
        let connected = run.joined();
        let failed = run.failed();
        let dropped = shared.dropped.load(Ordering::Relaxed);
        match run.stage() {
            Stage::Joining => format!(
                "[{elapsed:5.1}s] connecting: {connected}/{total} connected, {failed} failed"
            ),
            stage => format!(
                "[{elapsed:5.1}s] {}: posted {}/s  delivered {}/s  conns {}/{total}",
                if stage == Stage::Window {
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
    run: &Run<Fanout>,
    connect_secs: f64,
    deliveries: &Deliveries,
    post_latency: &Latency,
) -> Result<()> {
    let latency = &deliveries.latency;
    let (to_all, complete) = deliveries.to_all(run.settings.members as u64)?;
    let (common, settings, shared) = (&run.common, &run.settings, &run.shared);
    let secs = settings.duration.as_secs_f64();
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let (connected, failed, dropped) = (run.joined(), run.failed(), load(&shared.dropped));
    let (posted, post_failed, skipped) = (
        load(&shared.posted),
        load(&shared.post_failed),
        load(&shared.skipped),
    );
    let delivered = load(&shared.delivered);
    // Every room has `members` watchers when all connected.
    let expected = posted * settings.members as u64;

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
    report.item(
        match settings.via {
            Via::Api => "POST latency",
            Via::Stream { .. } => "XADD latency",
        },
        post.line(),
    );

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
    let all = to_all.summary();
    report.item(
        "events that reached every member",
        format!("{complete} of {posted}"),
    );
    report.item("time to the last member", all.line());
    let (unreadable, server_errors) = (load(&shared.unreadable), load(&shared.server_errors));
    if unreadable + server_errors > 0 {
        report.item(
            "odd events",
            format!("tick without t {unreadable}, server:error {server_errors}"),
        );
    }

    let problems = run.problems.report(report);

    report.set(
        "params",
        run.params(json!({
            "url": common.url,
            "rooms": settings.rooms,
            "members": settings.members,
            "publishers": settings.publishers,
            "rate": settings.rate,
            "via": settings.via.name(),
            "transport": common.target.transport.name(),
            "durationSecs": secs,
            "drainSecs": settings.drain.as_secs_f64(),
        })),
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
            "eventsToAll": complete,
            "toLastMemberMs": all.json(),
            "unreadable": unreadable,
            "serverErrors": server_errors,
        }),
    );
    report.set("problems", json!(problems));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_counts_once_every_member_got_it() -> Result<()> {
        let ms = Duration::from_millis;
        let (mut one, mut two) = (Deliveries::new()?, Deliveries::new()?);
        one.record((1, 0), ms(5));
        one.record((1, 0), ms(40));
        two.record((1, 0), ms(9));
        one.record((2, 1), ms(3));
        two.record((2, 1), ms(4));
        two.record((3, 2), ms(1));
        one.merge(two)?;
        // Event 1 reached three members and 2 two: both reached the two a
        // room has here; event 3 reached one.
        let (to_all, complete) = one.to_all(2)?;
        assert_eq!(complete, 2);
        let summary = to_all.summary();
        assert_eq!(summary.count, 2);
        assert!((summary.max - 40.0).abs() < 0.1, "{}", summary.max);
        assert_eq!(one.latency.summary().count, 6);
        Ok(())
    }
}
