//! `auction`: N bidders on one auction listing.
//!
//! The listing is created through the server API. Every bidder opens its
//! own connection as its own user, watches the listing, and learns the
//! current amount from the watch answer, from `bid:new` and `bid:outbid`,
//! and from its own acks (`auction.currentAmount`, or `minAmount` in
//! `bid_too_low`). Once all are connected, each bids on a fixed schedule,
//! `--rate` a second with a random start offset, at the latest known
//! amount + 1 + a random bump, with an ack id, for `--duration`. A bidder
//! keeps at most `--inflight` bids unanswered; a slot that finds that many
//! is skipped and counted (so slow acks show instead of hiding). Every
//! ack's latency goes into a histogram, by outcome.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::{sleep_until, Instant};

use crate::cli::{Common, Options};
use crate::error::{fail, Result};
use crate::http;
use crate::report::Report;
use crate::runner::{Ctx, Found, Merge, Phase, Run, Scenario, Stage};
use crate::stats::{per_sec, Latency};
use crate::ws::{self, Packet, Socket};

/// How a bidder picks its amounts.
#[derive(Clone, Copy, PartialEq)]
enum Amounts {
    /// The latest amount it knows + 1 + a random bump: a real bidder.
    Known,
    /// Rising with the send time (microseconds since the start, with the
    /// bidder's index in the last two digits), so a bid loses only to one
    /// sent later that got there first: measures what the server can
    /// accept rather than how well bidders learn the price.
    Rising,
}

pub struct Auction {
    bidders: usize,
    /// How many of the bidders watch the listing (the first ones).
    watchers: usize,
    duration: Duration,
    rate: f64,
    bump: i64,
    amounts: Amounts,
    inflight: usize,
    /// Bids a second the server allows one bidder (0: no guard).
    limit: usize,
    drain: Duration,
    listing: String,
    /// The listing id as a JSON string, ready to paste into frames.
    listing_json: String,
    /// Where souk's bid log is, to check every accepted bid is in it.
    database_url: Option<String>,
    run: String,
}

/// Counters every thread adds to; read by the progress line and the report.
#[derive(Default)]
pub struct Shared {
    sent: AtomicU64,
    ok: AtomicU64,
    too_low: AtomicU64,
    rate_limited: AtomicU64,
    other: AtomicU64,
    skipped: AtomicU64,
    unanswered: AtomicU64,
    dropped: AtomicU64,
    bid_new: AtomicU64,
    server_errors: AtomicU64,
}

impl Shared {
    fn answered(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
            + self.too_low.load(Ordering::Relaxed)
            + self.rate_limited.load(Ordering::Relaxed)
            + self.other.load(Ordering::Relaxed)
    }
}

/// One thread's histograms and rarer outcomes.
pub struct ShardOut {
    accepted: Latency,
    all: Latency,
    other_codes: BTreeMap<String, u64>,
    /// The auction version of every accepted bid (its id).
    versions: Vec<i64>,
}

impl Merge for ShardOut {
    fn merge(&mut self, other: ShardOut) -> Result<()> {
        self.accepted.merge(&other.accepted)?;
        self.all.merge(&other.all)?;
        super::add_counts(&mut self.other_codes, other.other_codes);
        self.versions.extend(other.versions);
        Ok(())
    }
}

impl Scenario for Auction {
    const NAME: &'static str = "auction";
    const UNITS: &'static str = "bidders";
    type Shared = Shared;
    type Out = ShardOut;
    type Window = ();
    type After = ();

    fn parse(options: &mut Options) -> Result<Auction> {
        let run = super::run_id();
        let bidders = options.take("bidders", 100usize)?;
        let listing = options.take_text("listing");
        let settings = Auction {
            bidders,
            watchers: options.take("watchers", bidders)?.min(bidders),
            duration: Duration::from_secs_f64(options.take("duration", 10.0f64)?.max(0.1)),
            rate: options.take("rate", 5.0f64)?,
            bump: options.take("bump", 3i64)?.max(0),
            amounts: match options.take_text("amounts").as_deref() {
                None | Some("known") => Amounts::Known,
                Some("rising") => Amounts::Rising,
                Some(other) => return fail(format!("--amounts: known or rising, not {other:?}")),
            },
            inflight: options.take("inflight", 1usize)?.max(1),
            limit: options.take("server-limit", 5usize)?,
            drain: Duration::from_secs_f64(options.take("drain", 5.0f64)?.max(0.0)),
            listing: listing.unwrap_or_else(|| format!("bench-auction-{run}")),
            listing_json: String::new(),
            database_url: options.take_text("database-url"),
            run,
        };
        Ok(Auction {
            listing_json: Value::String(settings.listing.clone()).to_string(),
            ..settings
        })
    }

    fn check(&self) -> Result<()> {
        if self.bidders == 0 {
            return fail("--bidders must be at least 1");
        }
        super::positive_rate(self.rate)?;
        Ok(())
    }

    async fn prepare(&self, common: &Common, service: &str) -> Result<()> {
        create_listing(common, self, service).await
    }

    fn out(&self) -> Result<ShardOut> {
        Ok(ShardOut {
            accepted: Latency::new()?,
            all: Latency::new()?,
            other_codes: BTreeMap::new(),
            versions: Vec::new(),
        })
    }

    fn title(&self, common: &Common) -> String {
        format!(
            "souk-bench auction: {} bidders ({} watching), {:.0} s, {} bids/s each, amounts {}, against {}",
            self.bidders,
            self.watchers,
            self.duration.as_secs_f64(),
            self.rate,
            match self.amounts {
                Amounts::Known => "known+1+bump",
                Amounts::Rising => "rising",
            },
            common.url
        )
    }

    fn units(&self) -> Vec<usize> {
        vec![self.bidders]
    }

    fn duration(&self) -> Duration {
        self.duration
    }

    async fn unit(ctx: Rc<Ctx<Auction>>, _kind: usize, index: usize) {
        run_bidder(ctx, index).await;
    }

    /// The bidders bid on their own schedule.
    async fn window(_run: &Run<Auction>, _start: Instant, _end: Instant) -> Result<()> {
        Ok(())
    }

    async fn after(run: &Run<Auction>, end: Instant) -> Result<()> {
        sleep_until(end + run.settings.drain + Duration::from_millis(200)).await;
        Ok(())
    }

    fn progress(run: Arc<Run<Auction>>) -> impl FnMut(f64) -> String + Send + 'static {
        progress_line(run)
    }

    async fn report(
        run: &Run<Auction>,
        report: &mut Report,
        out: ShardOut,
        found: Found<Auction>,
    ) -> Result<()> {
        let server_view = http::request(
            &run.common.target,
            "GET",
            &format!("/api/v1/listings/{}", run.settings.listing),
            Some(&run.service),
            None,
        )
        .await
        .map(|r| r.json()["listing"]["auction"].clone())
        .unwrap_or(Value::Null);
        let stored = run
            .settings
            .database_url
            .as_ref()
            .map(|url| stored_versions(url, &run.settings.listing));
        fill_report(report, run, found.settle_secs, &out, &server_view, stored);
        Ok(())
    }
}

async fn create_listing(common: &Common, settings: &Auction, service: &str) -> Result<()> {
    let now = Utc::now();
    let ends =
        now + chrono::Duration::seconds(3600) + chrono::Duration::from_std(settings.duration)?;
    let body = json!({
        "sellerId": format!("bench-seller-{}", settings.run),
        "title": "souk-bench auction",
        "price": 1,
        "currency": "EUR",
        "auction": {
            "startsAt": (now - chrono::Duration::seconds(60)).to_rfc3339_opts(SecondsFormat::Millis, true),
            "endsAt": ends.to_rfc3339_opts(SecondsFormat::Millis, true),
            "startPrice": 1,
            "minIncrement": 1,
            "extendWindowSecs": 0,
        },
    });
    http::request(
        &common.target,
        "PUT",
        &format!("/api/v1/listings/{}", settings.listing),
        Some(service),
        Some(&body),
    )
    .await
    .map_err(|e| format!("create the listing: {e}"))?
    .ok("create the listing")?;
    Ok(())
}

/// One bidder's connection and what it knows.
struct Bidder {
    ctx: Rc<Ctx<Auction>>,
    index: usize,
    /// When bidding started (for rising amounts).
    start: Instant,
    socket: Socket,
    /// The highest amount it has seen accepted.
    known: i64,
    /// Bids sent and not yet answered: ack id and when sent, oldest first.
    inflight: VecDeque<(u64, std::time::Instant)>,
    /// The last `limit` bids sent: ack id and when the ack came, if yet.
    recent: VecDeque<(u64, Option<Instant>)>,
    next_ack: u64,
}

async fn run_bidder(ctx: Rc<Ctx<Auction>>, index: usize) {
    let Some((socket, known)) = ctx.enter("connect", join(&ctx, index)).await else {
        return;
    };
    let mut bidder = Bidder {
        ctx: ctx.clone(),
        index,
        start: Instant::now(),
        socket,
        known,
        inflight: VecDeque::new(),
        recent: VecDeque::new(),
        next_ack: 1,
    };
    if bidder.bid_all().await {
        bidder.socket.close().await;
    }
}

/// Opens, CONNECTs and watches the listing; answers the socket and the
/// current amount (0 before the first bid).
async fn join(ctx: &Ctx<Auction>, index: usize) -> Result<(Socket, i64)> {
    let user = format!("bench-{}-{index}", ctx.settings.run);
    let mut socket = ctx.open_as(index, &user, "buyer", ctx.token_ttl()).await?;
    if index >= ctx.settings.watchers {
        // Not a watcher: it learns the amount from its own acks only.
        return Ok((socket, 0));
    }
    let watch = json!({ "listingId": ctx.settings.listing });
    let reply = socket.call_ok("listing:watch", &watch, 0).await?;
    let known = reply["listing"]["auction"]["currentAmount"]
        .as_i64()
        .unwrap_or(0);
    Ok((socket, known))
}

#[derive(Deserialize)]
struct Reply {
    ok: bool,
    error: Option<ReplyError>,
    bid: Option<BidState>,
    auction: Option<AuctionState>,
}

#[derive(Deserialize)]
struct BidState {
    version: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReplyError {
    code: String,
    min_amount: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuctionState {
    current_amount: Option<i64>,
}

impl Bidder {
    /// Waits for the start, bids till the end, waits for the last acks.
    /// Answers false when the connection is gone.
    async fn bid_all(&mut self) -> bool {
        let mut phase = self.ctx.phase.clone();
        let (start, end) = loop {
            let now = *phase.borrow_and_update();
            match now {
                Phase::Window { start, end } => {
                    self.start = start;
                    break (start, end);
                }
                Phase::Stop => return true,
                Phase::Joining | Phase::Drain => {}
            }
            tokio::select! {
                changed = phase.changed() => if changed.is_err() { return true },
                packet = self.socket.recv() => if !self.handle(packet) { return false },
            }
        };
        let interval = Duration::from_secs_f64(1.0 / self.ctx.settings.rate);
        let offset = rand::rng().random_range(0.0..1.0);
        let mut next = start + interval.mul_f64(offset);
        // A bid never leaves before its slot, nor sooner than 1 s (and a
        // little) after the ack of the bid `limit` back: then the server, whatever its
        // window's phase, has never counted more than `limit` bids of ours
        // within a second (see docs/BENCHMARKS.md).
        while next < end {
            let wake = next.max(self.guard().unwrap_or(end));
            tokio::select! {
                packet = self.socket.recv() => if !self.handle(packet) { return false },
                () = sleep_until(wake) => {
                    if wake >= end {
                        break;
                    }
                    if self.inflight.len() >= self.ctx.settings.inflight {
                        self.ctx.shared.skipped.fetch_add(1, Ordering::Relaxed);
                    } else if !self.bid().await {
                        return false;
                    }
                    // Slots that went by meanwhile are skipped, and counted.
                    next += interval;
                    let now = Instant::now();
                    while next <= now && next < end {
                        next += interval;
                        self.ctx.shared.skipped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        let deadline = end + self.ctx.settings.drain;
        while !self.inflight.is_empty() {
            tokio::select! {
                packet = self.socket.recv() => if !self.handle(packet) { return false },
                () = sleep_until(deadline) => break,
            }
        }
        let left = self.inflight.len() as u64;
        self.ctx
            .shared
            .unanswered
            .fetch_add(left, Ordering::Relaxed);
        self.inflight.clear();
        true
    }

    /// The earliest time the next bid may leave under the server's limit;
    /// `None` while the bid `limit` back is unanswered.
    fn guard(&self) -> Option<Instant> {
        let limit = self.ctx.settings.limit;
        if limit == 0 || self.recent.len() < limit {
            return Some(Instant::now());
        }
        self.recent
            .front()
            .and_then(|(_, acked)| *acked)
            // 5 ms over the second: Redis rounds a key's TTL to the ms.
            .map(|acked| acked + Duration::from_millis(1005))
    }

    /// Sends one bid; false when the connection is gone.
    async fn bid(&mut self) -> bool {
        let amount = match self.ctx.settings.amounts {
            Amounts::Known => {
                let bump = match self.ctx.settings.bump {
                    0 => 0,
                    n => rand::rng().random_range(0..=n),
                };
                self.known + 1 + bump
            }
            Amounts::Rising => {
                let micros =
                    i64::try_from(self.start.elapsed().as_micros()).unwrap_or(i64::MAX / 200);
                let index = i64::try_from(self.index % 100).unwrap_or(0);
                (1 + micros * 100 + index).max(self.known + 1)
            }
        };
        let id = self.next_ack;
        self.next_ack += 1;
        let frame = format!(
            "42{id}[\"bid:place\",{{\"listingId\":{},\"amount\":{amount}}}]",
            self.ctx.settings.listing_json
        );
        self.inflight.push_back((id, std::time::Instant::now()));
        if self.ctx.settings.limit > 0 {
            self.recent.push_back((id, None));
            while self.recent.len() > self.ctx.settings.limit {
                self.recent.pop_front();
            }
        }
        self.ctx.shared.sent.fetch_add(1, Ordering::Relaxed);
        match self.socket.send_text(frame).await {
            Ok(()) => true,
            Err(e) => {
                self.gone(format!("send: {e}"));
                false
            }
        }
    }

    /// Takes in one packet; false when the connection is gone.
    fn handle(&mut self, packet: Result<Packet>) -> bool {
        match packet {
            Ok(Packet::Event(array)) => {
                match ws::event_name(&array) {
                    Some("bid:new") => {
                        self.ctx.shared.bid_new.fetch_add(1, Ordering::Relaxed);
                        if let Some(amount) = ws::int_field(&array, "amount") {
                            self.known = self.known.max(amount);
                        }
                    }
                    Some("bid:outbid") => {
                        if let Some(amount) = ws::int_field(&array, "amount") {
                            self.known = self.known.max(amount);
                        }
                    }
                    Some("server:error") => {
                        self.ctx
                            .shared
                            .server_errors
                            .fetch_add(1, Ordering::Relaxed);
                        self.ctx.problems.note(format!("server:error {array}"));
                    }
                    _ => {}
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

    /// Records an ack: its latency and outcome, and what it says of the
    /// current amount.
    fn answer(&mut self, id: u64, args: &str) {
        let Some(position) = self.inflight.iter().position(|(sent, _)| *sent == id) else {
            return;
        };
        let Some((_, sent_at)) = self.inflight.remove(position) else {
            return;
        };
        let took = sent_at.elapsed();
        if let Some(entry) = self.recent.iter_mut().find(|(sent, _)| *sent == id) {
            entry.1 = Some(Instant::now());
        }
        let shared = &self.ctx.shared;
        let mut out = self.ctx.out.borrow_mut();
        out.all.record(took);
        let reply = serde_json::from_str::<Vec<Reply>>(args)
            .ok()
            .and_then(|mut replies| (!replies.is_empty()).then(|| replies.swap_remove(0)));
        match reply {
            Some(Reply {
                ok: true,
                auction,
                bid,
                ..
            }) => {
                shared.ok.fetch_add(1, Ordering::Relaxed);
                out.accepted.record(took);
                // An ack without a version counts as missing from the log.
                out.versions
                    .push(bid.and_then(|bid| bid.version).unwrap_or(-1));
                if let Some(current) = auction.and_then(|a| a.current_amount) {
                    self.known = self.known.max(current);
                }
            }
            Some(Reply {
                error: Some(error), ..
            }) => match error.code.as_str() {
                "bid_too_low" => {
                    shared.too_low.fetch_add(1, Ordering::Relaxed);
                    if let Some(min) = error.min_amount {
                        self.known = self.known.max(min - 1);
                    }
                }
                "rate_limited" => {
                    shared.rate_limited.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    shared.other.fetch_add(1, Ordering::Relaxed);
                    *out.other_codes.entry(error.code).or_default() += 1;
                }
            },
            _ => {
                shared.other.fetch_add(1, Ordering::Relaxed);
                *out.other_codes.entry("unreadable ack".into()).or_default() += 1;
            }
        }
    }
}

/// The progress line: stage, connections, and this second's rates.
fn progress_line(run: Arc<Run<Auction>>) -> impl FnMut(f64) -> String + Send {
    let bidders = run.settings.bidders;
    let mut last = [0u64; 5];
    move |elapsed| {
        let shared = &run.shared;
        let now = [
            shared.sent.load(Ordering::Relaxed),
            shared.ok.load(Ordering::Relaxed),
            shared.too_low.load(Ordering::Relaxed),
            shared.rate_limited.load(Ordering::Relaxed) + shared.other.load(Ordering::Relaxed),
            shared.bid_new.load(Ordering::Relaxed),
        ];
        let d: Vec<u64> = now.iter().zip(last).map(|(n, l)| n - l).collect();
        last = now;
        let connected = run.joined();
        let failed = run.failed();
        let dropped = shared.dropped.load(Ordering::Relaxed);
        let inflight =
            now[0].saturating_sub(shared.answered() + shared.unanswered.load(Ordering::Relaxed));
        match run.stage() {
            Stage::Joining => format!(
                "[{elapsed:5.1}s] connecting: {connected}/{bidders} connected, {failed} failed"
            ),
            stage => format!(
                "[{elapsed:5.1}s] {}: sent {}/s  ok {}/s  too_low {}/s  limited+other {}/s  bid:new {}/s  inflight {inflight}  conns {}/{bidders}",
                if stage == Stage::Window { "bidding" } else { "draining" },
                d[0], d[1], d[2], d[3], d[4],
                connected - dropped,
            ),
        }
    }
}

fn fill_report(
    report: &mut Report,
    run: &Run<Auction>,
    connect_secs: f64,
    out: &ShardOut,
    server_view: &Value,
    stored: Option<std::result::Result<BTreeSet<i64>, String>>,
) {
    let (common, settings, shared) = (&run.common, &run.settings, &run.shared);
    let (accepted, all, other_codes) = (&out.accepted, &out.all, &out.other_codes);
    let secs = settings.duration.as_secs_f64();
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let (connected, failed, dropped) = (run.joined(), run.failed(), load(&shared.dropped));
    let (sent, ok, too_low, limited, other) = (
        load(&shared.sent),
        load(&shared.ok),
        load(&shared.too_low),
        load(&shared.rate_limited),
        load(&shared.other),
    );
    let answered = ok + too_low + limited + other;
    let (skipped, unanswered, bid_new) = (
        load(&shared.skipped),
        load(&shared.unanswered),
        load(&shared.bid_new),
    );
    let sources: Vec<String> = common.sources.iter().map(ToString::to_string).collect();

    report.section("connections");
    report.item(
        "bidders connected",
        format!(
            "{connected} of {} ({failed} failed) in {connect_secs:.1} s",
            settings.bidders
        ),
    );
    report.item("dropped during the run", dropped.to_string());
    report.item("sources", sources.join(","));
    report.item("generator threads", common.threads.to_string());
    report.item("listing", settings.listing.clone());

    report.section(&format!("bids (sent during the {secs:.0} s window)"));
    report.item("accepted bids/s", format!("{}", per_sec(ok, secs)));
    report.item(
        "all bids/s",
        format!("{} (answered, any outcome)", per_sec(answered, secs)),
    );
    report.item(
        "sent",
        format!("{sent} (unanswered {unanswered}; slots skipped {skipped})"),
    );
    report.item(
        "outcomes",
        format!("ok {ok}, bid_too_low {too_low}, rate_limited {limited}, other {other}"),
    );
    if !other_codes.is_empty() {
        let list: Vec<String> = other_codes
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        report.item("other codes", list.join(", "));
    }

    let (acc, every) = (accepted.summary(), all.summary());
    report.section("ack latency");
    report.item("accepted", acc.line());
    report.item("all", every.line());

    report.section("events");
    report.item(
        "bid:new received",
        format!("{bid_new} ({}/s over the window)", per_sec(bid_new, secs)),
    );
    let server_errors = load(&shared.server_errors);
    if server_errors > 0 {
        report.item("server:error received", server_errors.to_string());
    }

    report.section("server's view after the run");
    let bid_count = server_view["bidCount"].as_u64();
    report.item(
        "auction",
        match bid_count {
            Some(count) => format!(
                "bidCount {count}, currentAmount {} (the generator saw {ok} accepted{})",
                server_view["currentAmount"],
                if count == ok { "" } else { ": MISMATCH" }
            ),
            None => "unknown (GET /api/v1/listings failed)".into(),
        },
    );

    let persisted = stored.map(|stored| {
        stored.map(|stored| {
            let acked: BTreeSet<i64> = out.versions.iter().copied().collect();
            let missing = out
                .versions
                .iter()
                .filter(|version| !stored.contains(version))
                .count();
            let repeated = out.versions.len() - acked.len();
            let unacked = stored.difference(&acked).count();
            (missing, repeated, unacked)
        })
    });
    report.section("persisted (souk's bid log in Postgres afterwards)");
    match &persisted {
        None => report.item("checked", "no (no --database-url)".to_owned()),
        Some(Err(why)) => report.item("checked", format!("failed: {why}")),
        Some(Ok((missing, repeated, unacked))) => {
            report.item(
                "acked but missing",
                format!("{missing}{}", if *missing == 0 { "" } else { "  << LOST" }),
            );
            report.item(
                "one version acked twice",
                format!(
                    "{repeated}{}",
                    if *repeated == 0 { "" } else { "  << DUPLICATE" }
                ),
            );
            report.item("stored, not acked", unacked.to_string());
        }
    }

    let problems = run.problems.report(report);

    let mut params = run.params(json!({
        "url": common.url,
        "bidders": settings.bidders,
        "watchers": settings.watchers,
        "durationSecs": secs,
        "ratePerBidder": settings.rate,
        "bump": settings.bump,
        "amounts": match settings.amounts {
            Amounts::Known => "known",
            Amounts::Rising => "rising",
        },
        "inflight": settings.inflight,
        "serverLimit": settings.limit,
        "drainSecs": settings.drain.as_secs_f64(),
    }));
    params["listingId"] = json!(settings.listing);
    report.set("params", params);
    report.set(
        "connections",
        json!({ "connected": connected, "failed": failed, "dropped": dropped, "connectSecs": connect_secs }),
    );
    report.set(
        "bids",
        json!({
            "acceptedPerSec": per_sec(ok, secs),
            "allPerSec": per_sec(answered, secs),
            "sent": sent,
            "answered": answered,
            "unanswered": unanswered,
            "skippedSlots": skipped,
            "outcomes": {
                "ok": ok,
                "bid_too_low": too_low,
                "rate_limited": limited,
                "other": other,
                "otherCodes": other_codes,
            },
        }),
    );
    report.set(
        "ackLatencyMs",
        json!({ "accepted": acc.json(), "all": every.json() }),
    );
    report.set(
        "events",
        json!({ "bidNew": bid_new, "bidNewPerSec": per_sec(bid_new, secs), "serverErrors": server_errors }),
    );
    report.set("serverView", server_view.clone());
    report.set(
        "persisted",
        match &persisted {
            None => Value::Null,
            Some(Err(why)) => json!({ "error": why }),
            Some(Ok((missing, repeated, unacked))) => json!({
                "missing": missing,
                "ackedTwice": repeated,
                "storedNotAcked": unacked,
            }),
        },
    );
    report.set("problems", json!(problems));
}

/// The versions of the listing's bids in souk's bid log, read with psql
/// (the generator has no Postgres client of its own).
fn stored_versions(url: &str, listing: &str) -> std::result::Result<BTreeSet<i64>, String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut psql = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-v"])
        .arg(format!("listing={listing}"))
        .arg(url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("psql: {e}"))?;
    // From stdin, not -c: psql fills in :'listing' (quoted) only there.
    let query = "SELECT auction_version FROM bids WHERE listing_id = :'listing';\n";
    if let Some(mut stdin) = psql.stdin.take() {
        stdin
            .write_all(query.as_bytes())
            .map_err(|e| format!("psql: {e}"))?;
    }
    let output = psql.wait_with_output().map_err(|e| format!("psql: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "psql: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            line.trim()
                .parse::<i64>()
                .map_err(|e| format!("psql answered {line:?}: {e}"))
        })
        .collect()
}
