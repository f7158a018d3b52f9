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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::{sleep_until, timeout, Instant};

use super::create_listing;
use crate::cli::{Common, Options};
use crate::error::{fail, Result};
use crate::report::Report;
use crate::runner::{Ctx, Found, Merge, Phase, Run, Scenario, Stage};
use crate::stats::{per_sec, Latency};
use crate::ws::{self, Packet, Socket};

/// How long the history check of one booking may take.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Chat {
    pairs: usize,
    duration: Duration,
    rate: f64,
    drain: Duration,
    run: String,
}

impl Chat {
    fn listing(&self, pair: usize) -> String {
        super::room_listing(Self::NAME, &self.run, pair)
    }

    fn seller(&self, pair: usize) -> String {
        format!("bench-{}-s{pair}", self.run)
    }

    fn buyer(&self, pair: usize) -> String {
        format!("bench-{}-b{pair}", self.run)
    }
}

#[derive(Default)]
pub struct Shared {
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
}

pub struct ShardOut {
    acked: Latency,
    codes: BTreeMap<String, u64>,
}

impl Merge for ShardOut {
    fn merge(&mut self, other: ShardOut) -> Result<()> {
        self.acked.merge(&other.acked)?;
        super::add_counts(&mut self.codes, other.codes);
        Ok(())
    }
}

impl Scenario for Chat {
    const NAME: &'static str = "chat";
    const UNITS: &'static str = "pairs";
    type Shared = Shared;
    type Out = ShardOut;
    type Window = ();
    type After = ();

    fn parse(options: &mut Options) -> Result<Chat> {
        Ok(Chat {
            pairs: options.take("pairs", 100usize)?,
            duration: Duration::from_secs_f64(options.take("duration", 10.0f64)?.max(0.1)),
            rate: options.take("rate", 1000.0f64)?,
            drain: Duration::from_secs_f64(options.take("drain", 5.0f64)?.max(0.0)),
            run: super::run_id(),
        })
    }

    fn check(&self) -> Result<()> {
        if self.pairs == 0 {
            return fail("--pairs must be at least 1");
        }
        super::positive_rate(self.rate)?;
        Ok(())
    }

    async fn prepare(&self, common: &Common, service: &str) -> Result<()> {
        for pair in 0..self.pairs {
            let seller = self.seller(pair);
            create_listing(
                common,
                service,
                &seller,
                "souk-bench chat",
                &self.listing(pair),
            )
            .await?;
        }
        Ok(())
    }

    fn out(&self) -> Result<ShardOut> {
        Ok(ShardOut {
            acked: Latency::new()?,
            codes: BTreeMap::new(),
        })
    }

    fn title(&self, common: &Common) -> String {
        format!(
            "souk-bench chat: {} pairs, {} messages/s in total, {:.0} s, against {}",
            self.pairs,
            self.rate,
            self.duration.as_secs_f64(),
            common.url
        )
    }

    fn units(&self) -> Vec<usize> {
        vec![self.pairs]
    }

    fn duration(&self) -> Duration {
        self.duration
    }

    /// Two connections a pair.
    fn gate(&self, common: &Common, threads: usize) -> usize {
        (common.connect_concurrency / threads / 2).max(1)
    }

    async fn unit(ctx: Rc<Ctx<Chat>>, _kind: usize, index: usize) {
        run_pair(ctx, index).await;
    }

    /// The pairs send on their own schedule.
    async fn window(_run: &Run<Chat>, _start: Instant, _end: Instant) -> Result<()> {
        Ok(())
    }

    /// The drain, then the pairs verify.
    async fn after(run: &Run<Chat>, end: Instant) -> Result<()> {
        sleep_until(end + run.settings.drain).await;
        run.set_stage(Stage::After);
        Ok(())
    }

    fn progress(run: Arc<Run<Chat>>) -> impl FnMut(f64) -> String + Send + 'static {
        progress_line(run)
    }

    async fn report(
        run: &Run<Chat>,
        report: &mut Report,
        out: ShardOut,
        found: Found<Chat>,
    ) -> Result<()> {
        fill_report(report, run, found.settle_secs, &out.acked, &out.codes);
        Ok(())
    }
}

/// One booking: its two connections and the messages in flight.
struct Pair {
    ctx: Rc<Ctx<Chat>>,
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

async fn run_pair(ctx: Rc<Ctx<Chat>>, index: usize) {
    let Some((booking, buyer, seller)) = ctx.enter("setup", set_up(&ctx, index)).await else {
        return;
    };
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
            ctx.problems.note(format!("verify: {e}"));
        }
        Err(_) => {
            ctx.shared.verify_failed.fetch_add(1, Ordering::Relaxed);
            ctx.problems.note("verify: timed out".into());
        }
    }
    pair.buyer.close().await;
    pair.seller.close().await;
}

/// Connects both sides, reserves the listing and joins the booking;
/// answers the booking id and the buyer's and seller's sockets.
async fn set_up(ctx: &Ctx<Chat>, index: usize) -> Result<(String, Socket, Socket)> {
    let settings = &ctx.settings;
    let ttl = ctx.token_ttl();
    let mut buyer = ctx
        .open_as(index, &settings.buyer(index), "buyer", ttl)
        .await?;
    let mut seller = ctx
        .open_as(index, &settings.seller(index), "seller", ttl)
        .await?;
    let reserve = json!({
        "listingId": settings.listing(index),
        "idempotencyKey": format!("bench-{}-{index}", settings.run),
    });
    let reply = buyer.call_ok("listing:reserve", &reserve, 0).await?;
    let booking = reply["booking"]["id"]
        .as_str()
        .ok_or("listing:reserve answered no booking id")?
        .to_owned();
    let join = json!({ "bookingId": booking });
    buyer.call_ok("booking:join", &join, 0).await?;
    seller.call_ok("booking:join", &join, 0).await?;
    Ok((booking, buyer, seller))
}

impl Pair {
    /// Waits for the start, sends till the end, waits for the last acks.
    /// Answers false when a connection is gone.
    async fn send_all(&mut self) -> bool {
        let mut phase = self.ctx.phase.clone();
        let (start, end) = loop {
            match *phase.borrow_and_update() {
                Phase::Window { start, end } => {
                    self.end = Some(end);
                    break (start, end);
                }
                Phase::Stop => return true,
                Phase::Joining | Phase::Drain => {}
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
        match packet {
            Ok(Packet::Event(array)) => {
                if ws::event_name(&array) == Some("server:error") {
                    self.ctx
                        .shared
                        .server_errors
                        .fetch_add(1, Ordering::Relaxed);
                    self.ctx.problems.note(format!("server:error {array}"));
                }
                true
            }
            Ok(Packet::Ack(id, args)) => {
                self.answer(id, &args);
                true
            }
            packet => match Packet::gone(packet) {
                Some(why) => {
                    self.gone(why);
                    false
                }
                None => true,
            },
        }
    }

    fn gone(&mut self, why: String) {
        let shared = &self.ctx.shared;
        shared.dropped.fetch_add(1, Ordering::Relaxed);
        shared
            .unanswered
            .fetch_add(self.inflight.len() as u64, Ordering::Relaxed);
        self.inflight.clear();
        self.ctx.problems.note(format!("dropped: {why}"));
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
            let reply = self.buyer.call_ok("message:history", &query, ack).await?;
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

fn progress_line(run: Arc<Run<Chat>>) -> impl FnMut(f64) -> String + Send {
    let pairs = run.settings.pairs;
    let mut last = [0u64; 3];
    move |elapsed| {
        let shared = &run.shared;
        let now = [
            shared.sent.load(Ordering::Relaxed),
            shared.acked.load(Ordering::Relaxed),
            shared.refused.load(Ordering::Relaxed),
        ];
        let d: Vec<u64> = now.iter().zip(last).map(|(n, l)| n - l).collect();
        last = now;
        let ready = run.joined();
        let failed = run.failed();
        let inflight =
            now[0].saturating_sub(now[1] + now[2] + shared.unanswered.load(Ordering::Relaxed));
        match run.stage() {
            Stage::Joining => {
                format!("[{elapsed:5.1}s] setting up: {ready}/{pairs} pairs ready, {failed} failed")
            }
            Stage::After => format!(
                "[{elapsed:5.1}s] verifying: {}/{ready} bookings read",
                shared.verified.load(Ordering::Relaxed)
                    + shared.verify_failed.load(Ordering::Relaxed)
            ),
            stage => format!(
                "[{elapsed:5.1}s] {}: sent {}/s  acked {}/s  refused {}/s  inflight {inflight}",
                if stage == Stage::Window {
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
    run: &Run<Chat>,
    setup_secs: f64,
    acked_latency: &Latency,
    codes: &BTreeMap<String, u64>,
) {
    let (common, settings, shared) = (&run.common, &run.settings, &run.shared);
    let secs = settings.duration.as_secs_f64();
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let (ready, failed, dropped) = (run.joined(), run.failed(), load(&shared.dropped));
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

    let problems = run.problems.report(report);

    report.set(
        "params",
        run.params(json!({
            "url": common.url,
            "pairs": settings.pairs,
            "rate": settings.rate,
            "durationSecs": secs,
            "drainSecs": settings.drain.as_secs_f64(),
        })),
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
