//! `chat`: K buyer/seller pairs messaging in their bookings.
//!
//! K listings are created through the server API, listing i sold by seller
//! `s<i>`. Buyer `b<i>` connects and `listing:reserve`s it with an
//! idempotency key, which answers the booking; buyer and seller both
//! `booking:join` it. Once all pairs are set up, each pair sends
//! `message:send {bookingId, body, clientMsgId}` with an ack id on a fixed
//! schedule, `--rate`/K a second, buyer and seller taking turns, for
//! `--duration`. Every ack's latency goes into a histogram. After the
//! drain each pair reads its booking's whole `message:history` (pages of
//! 200, going back with `beforeId`) and checks that every acked
//! clientMsgId is there: an acked message is committed to Postgres (§3).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};
use tokio::time::{sleep_until, timeout, Instant};

use super::{wait_settled, Problems};
use crate::cli::{Common, Options};
use crate::error::{fail, Result};
use crate::procs;
use crate::progress::Progress;
use crate::report::Report;
use crate::stats::{per_sec, Latency};
use crate::ws::{self, Packet, Socket};
use crate::{http, shard, token};

/// How long one pair may take to connect, reserve and join.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the history check of one booking may take.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct Settings {
    pairs: usize,
    duration: Duration,
    rate: f64,
    drain: Duration,
    run: String,
}

impl Settings {
    fn listing(&self, pair: usize) -> String {
        format!("bench-chat-{}-{pair}", self.run)
    }

    fn seller(&self, pair: usize) -> String {
        format!("bench-{}-s{pair}", self.run)
    }

    fn buyer(&self, pair: usize) -> String {
        format!("bench-{}-b{pair}", self.run)
    }
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    SettingUp,
    Sending { start: Instant, end: Instant },
    Stop,
}

const STAGE_SETUP: u8 = 0;
const STAGE_SENDING: u8 = 1;
const STAGE_DRAINING: u8 = 2;
const STAGE_VERIFYING: u8 = 3;

#[derive(Default)]
struct Shared {
    stage: AtomicU8,
    ready: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    sent: AtomicU64,
    acked: AtomicU64,
    /// Acks that came before the window's end.
    acked_in_window: AtomicU64,
    refused: AtomicU64,
    unanswered: AtomicU64,
    verified: AtomicU64,
    verify_failed: AtomicU64,
    missing: AtomicU64,
    unexpected: AtomicU64,
    server_errors: AtomicU64,
    problems: Problems,
}

struct ShardOut {
    acked: Latency,
    codes: BTreeMap<String, u64>,
}

struct Ctx {
    common: Common,
    settings: Settings,
    shared: Arc<Shared>,
    phase: watch::Receiver<Phase>,
    gate: Semaphore,
    out: RefCell<ShardOut>,
}

pub async fn run(common: &Common, mut options: Options) -> Result<Report> {
    let settings = Settings {
        pairs: options.take("pairs", 100usize)?,
        duration: Duration::from_secs_f64(options.take("duration", 10.0f64)?.max(0.1)),
        rate: options.take("rate", 1000.0f64)?,
        drain: Duration::from_secs_f64(options.take("drain", 5.0f64)?.max(0.0)),
        run: super::run_id(),
    };
    options.finish()?;
    if settings.pairs == 0 {
        return fail("--pairs must be at least 1");
    }
    if !(settings.rate > 0.0 && settings.rate.is_finite()) {
        return fail("--rate must be above 0");
    }
    let service = token::mint(&common.secret, "souk-bench", Some("service"), 3600 * 24)?;
    for pair in 0..settings.pairs {
        let body = json!({
            "sellerId": settings.seller(pair),
            "title": "souk-bench chat",
            "price": 100,
            "currency": "EUR",
        });
        http::request(
            &common.target,
            "PUT",
            &format!("/api/v1/listings/{}", settings.listing(pair)),
            Some(&service),
            Some(&body),
        )
        .await
        .map_err(|e| format!("create listing {pair}: {e}"))?
        .ok("create a listing")?;
    }

    let shared = Arc::new(Shared::default());
    let (phase_tx, phase_rx) = watch::channel(Phase::SettingUp);
    let progress = Progress::start(progress_line(shared.clone(), settings.pairs));
    let threads = common.threads.min(settings.pairs);
    let shards = shard::run_each(threads, common, &settings, &shared, phase_rx, shard_main);
    let mut report = Report::new(
        "chat",
        format!(
            "souk-bench chat: {} pairs, {} messages/s in total, {:.0} s, against {}",
            settings.pairs,
            settings.rate,
            settings.duration.as_secs_f64(),
            common.url
        ),
    );
    let conductor = conduct(common, &settings, &shared, phase_tx);
    let (shards, conducted) = tokio::join!(shards, conductor);
    drop(progress);
    let (setup_secs, readings) = conducted?;
    let mut acked = Latency::new()?;
    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    for out in shards? {
        acked.merge(&out.acked)?;
        for (code, n) in out.codes {
            *codes.entry(code).or_default() += n;
        }
    }
    fill_report(
        &mut report,
        common,
        &settings,
        &shared,
        setup_secs,
        &acked,
        &codes,
    );
    report.append(readings);
    Ok(report)
}

/// Waits for every pair, starts the sending, takes the CPU readings around
/// the window, and lets the pairs verify after the drain.
async fn conduct(
    common: &Common,
    settings: &Settings,
    shared: &Shared,
    phase: watch::Sender<Phase>,
) -> Result<(f64, Report)> {
    let total = settings.pairs as u64;
    let setup_secs = wait_settled(
        total,
        SETUP_TIMEOUT,
        "pairs",
        || shared.ready.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed),
        || {
            let _ = phase.send(Phase::Stop);
        },
    )
    .await?;
    if shared.ready.load(Ordering::Relaxed) == 0 {
        let _ = phase.send(Phase::Stop);
        let problems = shared.problems.counts();
        return fail(format!("no pair was set up: {problems:?}"));
    }
    let start = Instant::now() + Duration::from_millis(300);
    let end = start + settings.duration;
    let _ = phase.send(Phase::Sending { start, end });
    sleep_until(start).await;
    shared.stage.store(STAGE_SENDING, Ordering::Relaxed);
    let ((), readings) = procs::measure(common, end, std::future::ready(())).await;
    shared.stage.store(STAGE_DRAINING, Ordering::Relaxed);
    sleep_until(end + settings.drain).await;
    shared.stage.store(STAGE_VERIFYING, Ordering::Relaxed);
    let _ = phase.send(Phase::Stop);
    Ok((setup_secs, readings))
}

async fn shard_main(
    index: usize,
    threads: usize,
    common: Common,
    settings: Settings,
    shared: Arc<Shared>,
    phase: watch::Receiver<Phase>,
) -> Result<ShardOut> {
    let gate = Semaphore::new((common.connect_concurrency / threads / 2).max(1));
    let fresh = || -> Result<ShardOut> {
        Ok(ShardOut {
            acked: Latency::new()?,
            codes: BTreeMap::new(),
        })
    };
    let ctx = Rc::new(Ctx {
        out: RefCell::new(fresh()?),
        common,
        settings,
        shared,
        phase,
        gate,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for pair in shard::items(index, threads, ctx.settings.pairs) {
        tasks.spawn_local(run_pair(ctx.clone(), pair));
    }
    while tasks.join_next().await.is_some() {}
    Ok(ctx.out.replace(fresh()?))
}

/// One booking: its two connections and the messages in flight.
struct Pair {
    ctx: Rc<Ctx>,
    index: usize,
    booking: String,
    buyer: Socket,
    seller: Socket,
    next_ack: u64,
    /// The end of the sending window, once known.
    end: Option<Instant>,
    /// Ack id → (sent at, clientMsgId).
    inflight: HashMap<u64, (std::time::Instant, String)>,
    acked: HashSet<String>,
}

async fn run_pair(ctx: Rc<Ctx>, index: usize) {
    let setup = {
        let Ok(_permit) = ctx.gate.acquire().await else {
            return;
        };
        timeout(SETUP_TIMEOUT, set_up(&ctx, index)).await
    };
    let (booking, buyer, seller) = match setup {
        Ok(Ok(set)) => set,
        Ok(Err(e)) => {
            ctx.shared.problems.note(format!("setup: {e}"));
            ctx.shared.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Err(_) => {
            ctx.shared.problems.note("setup: timed out".into());
            ctx.shared.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    ctx.shared.ready.fetch_add(1, Ordering::Relaxed);
    let mut pair = Pair {
        ctx: ctx.clone(),
        index,
        booking,
        buyer,
        seller,
        next_ack: 1,
        end: None,
        inflight: HashMap::new(),
        acked: HashSet::new(),
    };
    if !pair.send_all().await {
        return;
    }
    match timeout(VERIFY_TIMEOUT, pair.verify()).await {
        Ok(Ok(())) => {
            ctx.shared.verified.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Err(e)) => {
            ctx.shared.verify_failed.fetch_add(1, Ordering::Relaxed);
            ctx.shared.problems.note(format!("verify: {e}"));
        }
        Err(_) => {
            ctx.shared.verify_failed.fetch_add(1, Ordering::Relaxed);
            ctx.shared.problems.note("verify: timed out".into());
        }
    }
    pair.buyer.close().await;
    pair.seller.close().await;
}

async fn connect(ctx: &Ctx, index: usize, user: &str, role: &str) -> Result<Socket> {
    let sources = &ctx.common.sources;
    let source = sources[index % sources.len()];
    let mut socket = ws::open(&ctx.common.target, source).await?;
    let ttl = 3600 + ctx.settings.duration.as_secs() * 2;
    let token = token::mint(&ctx.common.secret, user, Some(role), ttl)?;
    socket.connect(&json!({ "token": token })).await?;
    Ok(socket)
}

fn ok_reply(what: &str, reply: Value) -> Result<Value> {
    if reply["ok"] == json!(true) {
        Ok(reply)
    } else {
        fail(format!("{what} refused: {reply}"))
    }
}

/// Connects both sides, reserves the listing and joins the booking;
/// answers the booking id and the buyer's and seller's sockets.
async fn set_up(ctx: &Ctx, index: usize) -> Result<(String, Socket, Socket)> {
    let settings = &ctx.settings;
    let mut buyer = connect(ctx, index, &settings.buyer(index), "buyer").await?;
    let mut seller = connect(ctx, index, &settings.seller(index), "seller").await?;
    let reply = buyer
        .call(
            "listing:reserve",
            &json!({
                "listingId": settings.listing(index),
                "idempotencyKey": format!("bench-{}-{index}", settings.run),
            }),
            0,
        )
        .await?;
    let reply = ok_reply("listing:reserve", reply)?;
    let booking = reply["booking"]["id"]
        .as_str()
        .ok_or("listing:reserve answered no booking id")?
        .to_owned();
    let join = json!({ "bookingId": booking });
    ok_reply(
        "booking:join (buyer)",
        buyer.call("booking:join", &join, 0).await?,
    )?;
    ok_reply(
        "booking:join (seller)",
        seller.call("booking:join", &join, 0).await?,
    )?;
    Ok((booking, buyer, seller))
}

impl Pair {
    /// Waits for the start, sends till the end, waits for the last acks.
    /// Answers false when a connection is gone.
    async fn send_all(&mut self) -> bool {
        let mut phase = self.ctx.phase.clone();
        let (start, end) = loop {
            match *phase.borrow_and_update() {
                Phase::Sending { start, end } => {
                    self.end = Some(end);
                    break (start, end);
                }
                Phase::Stop => return true,
                Phase::SettingUp => {}
            }
            tokio::select! {
                changed = phase.changed() => if changed.is_err() { return true },
                packet = self.buyer.recv() => if !self.handle(packet) { return false },
                packet = self.seller.recv() => if !self.handle(packet) { return false },
            }
        };
        let per_pair = self.ctx.settings.rate / self.ctx.settings.pairs as f64;
        let interval = Duration::from_secs_f64(1.0 / per_pair);
        let offset = rand::random::<f64>();
        let mut next = start + interval.mul_f64(offset);
        let mut n: u64 = 0;
        while next < end {
            tokio::select! {
                packet = self.buyer.recv() => if !self.handle(packet) { return false },
                packet = self.seller.recv() => if !self.handle(packet) { return false },
                () = sleep_until(next) => {
                    if !self.send(n).await {
                        return false;
                    }
                    n += 1;
                    next += interval;
                }
            }
        }
        let deadline = end + self.ctx.settings.drain;
        while !self.inflight.is_empty() {
            tokio::select! {
                packet = self.buyer.recv() => if !self.handle(packet) { return false },
                packet = self.seller.recv() => if !self.handle(packet) { return false },
                () = sleep_until(deadline) => break,
            }
        }
        self.ctx
            .shared
            .unanswered
            .fetch_add(self.inflight.len() as u64, Ordering::Relaxed);
        self.inflight.clear();
        // Wait for the others, so the history reads do not overlap sends.
        while !matches!(*phase.borrow_and_update(), Phase::Stop) {
            tokio::select! {
                changed = phase.changed() => if changed.is_err() { break },
                packet = self.buyer.recv() => if !self.handle(packet) { return false },
                packet = self.seller.recv() => if !self.handle(packet) { return false },
            }
        }
        true
    }

    /// Sends message `n`, from the buyer when even, else the seller.
    async fn send(&mut self, n: u64) -> bool {
        let id = self.next_ack;
        self.next_ack += 1;
        let client_id = format!("{}-{}-{n}", self.ctx.settings.run, self.index);
        let frame = format!(
            "42{id}[\"message:send\",{{\"bookingId\":\"{}\",\"body\":\"souk-bench message {n}\",\"clientMsgId\":\"{client_id}\"}}]",
            self.booking
        );
        self.inflight
            .insert(id, (std::time::Instant::now(), client_id));
        self.ctx.shared.sent.fetch_add(1, Ordering::Relaxed);
        let socket = if n.is_multiple_of(2) {
            &mut self.buyer
        } else {
            &mut self.seller
        };
        match socket.send_text(frame).await {
            Ok(()) => true,
            Err(e) => {
                self.gone(format!("send: {e}"));
                false
            }
        }
    }

    fn handle(&mut self, packet: Result<Packet>) -> bool {
        let why = match packet {
            Ok(Packet::Event(array)) => {
                if ws::event_name(&array) == Some("server:error") {
                    self.ctx
                        .shared
                        .server_errors
                        .fetch_add(1, Ordering::Relaxed);
                    self.ctx
                        .shared
                        .problems
                        .note(format!("server:error {array}"));
                }
                return true;
            }
            Ok(Packet::Ack(id, args)) => {
                self.answer(id, &args);
                return true;
            }
            Ok(Packet::Closed(why)) => why,
            Ok(Packet::Disconnect) => "server sent DISCONNECT".into(),
            Ok(_) => return true,
            Err(e) => e.to_string(),
        };
        self.gone(why);
        false
    }

    fn gone(&mut self, why: String) {
        let shared = &self.ctx.shared;
        shared.dropped.fetch_add(1, Ordering::Relaxed);
        shared
            .unanswered
            .fetch_add(self.inflight.len() as u64, Ordering::Relaxed);
        self.inflight.clear();
        shared.problems.note(format!("dropped: {why}"));
    }

    fn answer(&mut self, id: u64, args: &str) {
        let Some((sent_at, client_id)) = self.inflight.remove(&id) else {
            return;
        };
        let took = sent_at.elapsed();
        let reply: Value = serde_json::from_str::<Vec<Value>>(args)
            .ok()
            .and_then(|mut r| (!r.is_empty()).then(|| r.swap_remove(0)))
            .unwrap_or(Value::Null);
        let mut out = self.ctx.out.borrow_mut();
        if reply["ok"] == json!(true) {
            out.acked.record(took);
            self.ctx.shared.acked.fetch_add(1, Ordering::Relaxed);
            if self.end.is_some_and(|end| Instant::now() < end) {
                self.ctx
                    .shared
                    .acked_in_window
                    .fetch_add(1, Ordering::Relaxed);
            }
            self.acked.insert(client_id);
        } else {
            self.ctx.shared.refused.fetch_add(1, Ordering::Relaxed);
            let code = reply["error"]["code"]
                .as_str()
                .unwrap_or("unreadable ack")
                .to_owned();
            *out.codes.entry(code).or_default() += 1;
        }
    }

    /// Reads the booking's whole history and checks every acked message
    /// is in it.
    async fn verify(&mut self) -> Result<()> {
        let mut seen: HashSet<String> = HashSet::new();
        let mut before: Option<String> = None;
        let mut ack = 1_000_000_000u64;
        loop {
            let mut query = json!({ "bookingId": self.booking, "limit": 200 });
            if let Some(id) = &before {
                query["beforeId"] = json!(id);
            }
            ack += 1;
            let reply = ok_reply(
                "message:history",
                self.buyer.call("message:history", &query, ack).await?,
            )?;
            let messages = reply["messages"].as_array().cloned().unwrap_or_default();
            for message in &messages {
                if let Some(id) = message["clientMsgId"].as_str() {
                    seen.insert(id.to_owned());
                }
            }
            let oldest = messages.first().and_then(|m| match &m["id"] {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
            match oldest {
                Some(id) if reply["hasMore"] == json!(true) => before = Some(id),
                _ => break,
            }
        }
        let missing = self.acked.difference(&seen).count() as u64;
        let unexpected = seen.difference(&self.acked).count() as u64;
        let shared = &self.ctx.shared;
        shared.missing.fetch_add(missing, Ordering::Relaxed);
        shared.unexpected.fetch_add(unexpected, Ordering::Relaxed);
        Ok(())
    }
}

fn progress_line(shared: Arc<Shared>, pairs: usize) -> impl FnMut(f64) -> String + Send {
    let mut last = [0u64; 3];
    move |elapsed| {
        let now = [
            shared.sent.load(Ordering::Relaxed),
            shared.acked.load(Ordering::Relaxed),
            shared.refused.load(Ordering::Relaxed),
        ];
        let d: Vec<u64> = now.iter().zip(last).map(|(n, l)| n - l).collect();
        last = now;
        let ready = shared.ready.load(Ordering::Relaxed);
        let failed = shared.failed.load(Ordering::Relaxed);
        let inflight =
            now[0].saturating_sub(now[1] + now[2] + shared.unanswered.load(Ordering::Relaxed));
        match shared.stage.load(Ordering::Relaxed) {
            STAGE_SETUP => {
                format!("[{elapsed:5.1}s] setting up: {ready}/{pairs} pairs ready, {failed} failed")
            }
            STAGE_VERIFYING => format!(
                "[{elapsed:5.1}s] verifying: {}/{ready} bookings read",
                shared.verified.load(Ordering::Relaxed)
                    + shared.verify_failed.load(Ordering::Relaxed)
            ),
            stage => format!(
                "[{elapsed:5.1}s] {}: sent {}/s  acked {}/s  refused {}/s  inflight {inflight}",
                if stage == STAGE_SENDING {
                    "sending"
                } else {
                    "draining"
                },
                d[0],
                d[1],
                d[2],
            ),
        }
    }
}

fn fill_report(
    report: &mut Report,
    common: &Common,
    settings: &Settings,
    shared: &Shared,
    setup_secs: f64,
    acked_latency: &Latency,
    codes: &BTreeMap<String, u64>,
) {
    let secs = settings.duration.as_secs_f64();
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let (ready, failed, dropped) = (
        load(&shared.ready),
        load(&shared.failed),
        load(&shared.dropped),
    );
    let (sent, acked, refused, unanswered) = (
        load(&shared.sent),
        load(&shared.acked),
        load(&shared.refused),
        load(&shared.unanswered),
    );
    let (verified, verify_failed, missing, unexpected) = (
        load(&shared.verified),
        load(&shared.verify_failed),
        load(&shared.missing),
        load(&shared.unexpected),
    );

    report.section("set-up");
    report.item(
        "pairs ready",
        format!(
            "{ready} of {} ({failed} failed) in {setup_secs:.1} s",
            settings.pairs
        ),
    );
    report.item("connections dropped", dropped.to_string());
    report.item("generator threads", common.threads.to_string());

    report.section(&format!("messages (sent during the {secs:.0} s window)"));
    let in_window = load(&shared.acked_in_window);
    report.item(
        "acked messages/s",
        format!(
            "{} within the window (asked {}; {} counting the drain's acks)",
            per_sec(in_window, secs),
            settings.rate,
            per_sec(acked, secs)
        ),
    );
    report.item(
        "sent",
        format!("{sent} (acked ok {acked}, refused {refused}, unanswered {unanswered})"),
    );
    if !codes.is_empty() {
        let list: Vec<String> = codes.iter().map(|(c, n)| format!("{c} {n}")).collect();
        report.item("refusal codes", list.join(", "));
    }
    let lat = acked_latency.summary();
    report.item("ack latency (ok)", lat.line());
    let server_errors = load(&shared.server_errors);
    if server_errors > 0 {
        report.item("server:error received", server_errors.to_string());
    }

    report.section("persisted (message:history afterwards)");
    report.item(
        "bookings read",
        format!("{verified} of {ready} ({verify_failed} failed)"),
    );
    report.item(
        "acked but missing",
        format!("{missing}{}", if missing == 0 { "" } else { "  << LOST" }),
    );
    report.item("in history, not acked", unexpected.to_string());

    let problems = shared.problems.report(report);

    let sources: Vec<String> = common.sources.iter().map(ToString::to_string).collect();
    report.set(
        "params",
        json!({
            "url": common.url,
            "pairs": settings.pairs,
            "rate": settings.rate,
            "durationSecs": secs,
            "drainSecs": settings.drain.as_secs_f64(),
            "sources": sources,
            "threads": common.threads,
        }),
    );
    report.set(
        "setup",
        json!({ "ready": ready, "failed": failed, "dropped": dropped, "setupSecs": setup_secs }),
    );
    report.set(
        "messages",
        json!({
            "ackedPerSec": per_sec(in_window, secs),
            "ackedInWindow": in_window,
            "ackedPerSecWithDrain": per_sec(acked, secs),
            "sent": sent,
            "acked": acked,
            "refused": refused,
            "unanswered": unanswered,
            "refusalCodes": codes,
            "ackLatencyMs": lat.json(),
            "serverErrors": server_errors,
        }),
    );
    report.set(
        "persisted",
        json!({
            "bookingsRead": verified,
            "bookingsFailed": verify_failed,
            "missing": missing,
            "unexpected": unexpected,
        }),
    );
    report.set("problems", json!(problems));
}
