//! The one scenario runner. Every scenario but `idle` has the same life:
//! parse its options, prepare the server (listings), start the generator
//! threads (`shard`), each with its share of the scenario's units (members,
//! pairs, bidders…), show a progress line, wait until every unit joined or
//! failed, open the measured window (300 ms later, for `duration`, with
//! the CPU readings around it), drain, stop everyone, and fill the report.
//! The runner owns that life; a scenario is a [`Scenario`]: its settings,
//! its counters, what one unit does, what it does during the window and
//! after it, its progress line and its report.
//!
//! `idle` is not one: it holds connections in child processes, which
//! speak to the parent in lines, and measures the server's RSS, not a
//! window of traffic (see its module).

use std::cell::RefCell;
use std::future::Future;
use std::ops::Deref;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{watch, Semaphore};
use tokio::time::{sleep_until, timeout, Instant};

use crate::cli::{Common, Options};
use crate::error::{fail, Result};
use crate::progress::Progress;
use crate::report::Report;
use crate::scenarios::Problems;
use crate::stats::Latency;
use crate::ws::{self, Socket};
use crate::{procs, shard, token};

/// How long one unit may take to join (open, CONNECT, watch or set up),
/// and how long the runner waits, at least, for all of them.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the run is, as every unit sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Phase {
    /// Units are joining.
    Joining,
    /// The measured window, from `start` (a little after every unit has
    /// settled) to `end`.
    Window {
        start: Instant,
        end: Instant,
    },
    /// The window is over; the drain (and the scenario's checks) go on.
    Drain,
    Stop,
}

/// Where the run is, for the progress line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stage {
    Joining,
    Window,
    Drain,
    /// The scenario's own checks after the drain (it sets this stage).
    After,
}

/// A scenario: what the runner asks of it. `Self` is its settings.
pub trait Scenario: Sized + Send + Sync + 'static {
    /// Its name, as on the command line and in the JSON.
    const NAME: &'static str;
    /// What its units are called, for messages ("members", "pairs").
    const UNITS: &'static str;
    /// Whether the run fails when no unit joined.
    const NEEDS_ONE: bool = true;

    /// Counters its units add to, beside the runner's own.
    type Shared: Default + Send + Sync + 'static;
    /// One generator thread's findings (histograms, tallies); the
    /// threads' are merged into one for the report.
    type Out: Merge + Send + 'static;
    /// What its work during the window answers.
    type Window;
    /// What its work after the window answers.
    type After;

    /// Takes its options (the runner rejects what is left).
    fn parse(options: &mut Options) -> Result<Self>;
    /// Checks the options together.
    fn check(&self) -> Result<()>;
    /// Creates what it needs on the server, with the service token.
    fn prepare(&self, common: &Common, service: &str) -> impl Future<Output = Result<()>>;
    fn shared(&self) -> Self::Shared {
        Self::Shared::default()
    }
    fn out(&self) -> Result<Self::Out>;
    /// The report's title line.
    fn title(&self, common: &Common) -> String;
    /// How many units of each kind the threads share (`unit`'s `kind`).
    fn units(&self) -> Vec<usize>;
    /// How many units must have joined or failed before the window: those
    /// of the first kind.
    fn settling(&self) -> usize {
        self.units().first().copied().unwrap_or(0)
    }
    /// How long the measured window lasts.
    fn duration(&self) -> Duration;
    fn threads(&self, common: &Common) -> usize {
        common.threads.min(self.units().iter().sum())
    }
    /// How many units of one thread may be joining at once.
    fn gate(&self, common: &Common, threads: usize) -> usize {
        (common.connect_concurrency / threads).max(1)
    }

    /// Unit `index` of kind `kind`, on a generator thread, from joining
    /// to `Phase::Stop`.
    fn unit(ctx: Rc<Ctx<Self>>, kind: usize, index: usize) -> impl Future<Output = ()> + 'static;
    /// Its work during the window (publishers), if any.
    fn window(
        run: &Run<Self>,
        start: Instant,
        end: Instant,
    ) -> impl Future<Output = Result<Self::Window>>;
    /// Its work after the window: at least waiting for the drain.
    fn after(run: &Run<Self>, end: Instant) -> impl Future<Output = Result<Self::After>>;
    /// The progress line, given the seconds since the start.
    fn progress(run: Arc<Run<Self>>) -> impl FnMut(f64) -> String + Send + 'static;
    /// Fills the report from what every thread found (the runner adds the
    /// CPU readings after).
    fn report(
        run: &Run<Self>,
        report: &mut Report,
        out: Self::Out,
        found: Found<Self>,
    ) -> impl Future<Output = Result<()>>;
}

/// Findings of several threads added into one.
pub trait Merge: Sized {
    fn merge(&mut self, other: Self) -> Result<()>;
}

impl Merge for Latency {
    fn merge(&mut self, other: Latency) -> Result<()> {
        Latency::merge(self, &other)
    }
}

/// What every thread and the conductor share.
pub struct Run<S: Scenario> {
    pub common: Common,
    pub settings: S,
    /// A service token for the server API.
    pub service: String,
    pub shared: S::Shared,
    /// Units joined, and units that failed to.
    pub joined: AtomicU64,
    pub failed: AtomicU64,
    /// What went wrong, by kind.
    pub problems: Problems,
    stage: AtomicU8,
}

impl<S: Scenario> Run<S> {
    pub fn stage(&self) -> Stage {
        match self.stage.load(Ordering::Relaxed) {
            0 => Stage::Joining,
            1 => Stage::Window,
            2 => Stage::Drain,
            _ => Stage::After,
        }
    }

    pub fn set_stage(&self, stage: Stage) {
        self.stage.store(stage as u8, Ordering::Relaxed);
    }

    pub fn joined(&self) -> u64 {
        self.joined.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// How long a unit's token lives: the run and then some.
    pub fn token_ttl(&self) -> u64 {
        3600 + self.settings.duration().as_secs() * 2
    }

    /// `open_as` with the run's options.
    pub async fn open_as(&self, source: usize, user: &str, role: &str, ttl: u64) -> Result<Socket> {
        open_as(&self.common, source, user, role, ttl).await
    }

    /// The params every report has (`url`, `sources`, `threads`) after the
    /// scenario's own.
    pub fn params(&self, mut own: serde_json::Value) -> serde_json::Value {
        let sources: Vec<String> = self
            .common
            .sources
            .iter()
            .map(ToString::to_string)
            .collect();
        own["sources"] = json!(sources);
        own["threads"] = json!(self.common.threads);
        own
    }
}

/// What one generator thread's units share.
pub struct Ctx<S: Scenario> {
    pub run: Arc<Run<S>>,
    pub phase: watch::Receiver<Phase>,
    gate: Semaphore,
    pub out: RefCell<S::Out>,
}

impl<S: Scenario> Deref for Ctx<S> {
    type Target = Run<S>;

    fn deref(&self) -> &Run<S> {
        &self.run
    }
}

impl<S: Scenario> Ctx<S> {
    /// Runs `join` through the thread's gate within `JOIN_TIMEOUT`, and
    /// counts the unit joined, or failed with why (after `what: `).
    pub async fn enter<T>(&self, what: &str, join: impl Future<Output = Result<T>>) -> Option<T> {
        let counts = Joins {
            joined: &self.joined,
            failed: &self.failed,
            problems: &self.problems,
        };
        counts.enter(&self.gate, JOIN_TIMEOUT, what, join).await
    }
}

/// Where joins are counted (for `idle` too, which has no `Run`).
pub struct Joins<'a> {
    pub joined: &'a AtomicU64,
    pub failed: &'a AtomicU64,
    pub problems: &'a Problems,
}

impl Joins<'_> {
    /// Runs `join` through `gate` within `limit`, and counts it joined, or
    /// failed with why (after `what: `).
    pub async fn enter<T>(
        &self,
        gate: &Semaphore,
        limit: Duration,
        what: &str,
        join: impl Future<Output = Result<T>>,
    ) -> Option<T> {
        let joined = {
            let Ok(_permit) = gate.acquire().await else {
                return None;
            };
            timeout(limit, join).await
        };
        match joined {
            Ok(Ok(joined)) => {
                self.joined.fetch_add(1, Ordering::Relaxed);
                return Some(joined);
            }
            Ok(Err(e)) => self.problems.note(format!("{what}: {e}")),
            Err(_) => self.problems.note(format!("{what}: timed out")),
        }
        self.failed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// Opens a connection from the `source`-th of `common`'s source addresses
/// (modulo their number) and CONNECTs as `user` with `role`, with a token
/// that lives `ttl` seconds.
pub async fn open_as(
    common: &Common,
    source: usize,
    user: &str,
    role: &str,
    ttl: u64,
) -> Result<Socket> {
    let sources = &common.sources;
    let mut socket = ws::open(&common.target, sources[source % sources.len()]).await?;
    let token = token::mint(&common.secret, user, Some(role), ttl)?;
    socket.connect(&json!({ "token": token })).await?;
    Ok(socket)
}

/// What the conductor found, for the report.
pub struct Found<S: Scenario> {
    /// How long the units took to settle.
    pub settle_secs: f64,
    pub window: S::Window,
    pub after: S::After,
}

/// Runs scenario `S` with its options; answers its report.
pub async fn run<S: Scenario>(common: &Common, mut options: Options) -> Result<Report> {
    let settings = S::parse(&mut options)?;
    options.finish()?;
    settings.check()?;
    let service = token::mint(&common.secret, "souk-bench", Some("service"), 3600 * 24)?;
    settings.prepare(common, &service).await?;

    let threads = settings.threads(common);
    let gate = settings.gate(common, threads);
    let run = Arc::new(Run {
        common: common.clone(),
        shared: settings.shared(),
        settings,
        service,
        joined: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        problems: Problems::default(),
        stage: AtomicU8::new(Stage::Joining as u8),
    });
    let (phase_tx, phase_rx) = watch::channel(Phase::Joining);
    let progress = Progress::start(S::progress(run.clone()));
    let shards = {
        let run = run.clone();
        shard::run(threads, move |index| {
            shard_main(index, threads, gate, run.clone(), phase_rx.clone())
        })
    };
    let (outs, conducted) = tokio::join!(shards, conduct(&run, phase_tx));
    drop(progress);
    let (found, readings) = conducted?;
    let mut out = run.settings.out()?;
    for part in outs? {
        out.merge(part)?;
    }
    let mut report = Report::new(S::NAME, run.settings.title(common));
    S::report(&run, &mut report, out, found).await?;
    report.append(readings);
    Ok(report)
}

/// One generator thread: its share of every kind of unit, each a task,
/// until all are done; answers what they found.
async fn shard_main<S: Scenario>(
    index: usize,
    threads: usize,
    gate: usize,
    run: Arc<Run<S>>,
    phase: watch::Receiver<Phase>,
) -> Result<S::Out> {
    let kinds = run.settings.units();
    let ctx = Rc::new(Ctx {
        out: RefCell::new(run.settings.out()?),
        gate: Semaphore::new(gate),
        run,
        phase,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for (kind, &count) in kinds.iter().enumerate() {
        for unit in shard::items(index, threads, count) {
            tasks.spawn_local(S::unit(ctx.clone(), kind, unit));
        }
    }
    while tasks.join_next().await.is_some() {}
    Ok(ctx.out.replace(ctx.settings.out()?))
}

/// Waits for every unit to settle, opens the window (with the CPU readings
/// around the scenario's work in it), lets the scenario drain and check,
/// and stops everyone.
async fn conduct<S: Scenario>(
    run: &Run<S>,
    phase: watch::Sender<Phase>,
) -> Result<(Found<S>, Report)> {
    let settle_secs = wait_settled(
        run.settings.settling() as u64,
        JOIN_TIMEOUT,
        S::UNITS,
        || run.joined() + run.failed(),
        || {
            let _ = phase.send(Phase::Stop);
        },
    )
    .await?;
    if S::NEEDS_ONE && run.joined() == 0 {
        let _ = phase.send(Phase::Stop);
        let problems = run.problems.counts();
        return fail(format!("none of the {} joined: {problems:?}", S::UNITS));
    }
    let start = Instant::now() + Duration::from_millis(300);
    let end = start + run.settings.duration();
    let _ = phase.send(Phase::Window { start, end });
    sleep_until(start).await;
    run.set_stage(Stage::Window);
    let (window, readings) = procs::measure(&run.common, end, S::window(run, start, end)).await;
    run.set_stage(Stage::Drain);
    let _ = phase.send(Phase::Drain);
    let window = window?;
    let after = S::after(run, end).await?;
    let _ = phase.send(Phase::Stop);
    Ok((
        Found {
            settle_secs,
            window,
            after,
        },
        readings,
    ))
}

/// Waits until `settled()` (units joined or failed) reaches `total`,
/// giving up after `timeout` plus a second per ten units; then `stop()` is
/// called and the run fails. Answers the seconds it took.
async fn wait_settled(
    total: u64,
    timeout: Duration,
    what: &str,
    settled: impl Fn() -> u64,
    stop: impl FnOnce(),
) -> Result<f64> {
    let started = Instant::now();
    loop {
        let settled = settled();
        if settled >= total {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > timeout + Duration::from_secs(total / 10 + 30) {
            stop();
            return fail(format!(
                "only {settled} of {total} {what} settled; giving up"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Slots at a fixed interval through the window, for work done one step
/// at a time: a slot that went by while a step was out is skipped.
pub struct Pacer {
    next: Instant,
    end: Instant,
    interval: Duration,
}

impl Pacer {
    /// Slots every `interval` from `start` plus `share` of an interval.
    pub fn new(start: Instant, end: Instant, interval: Duration, share: f64) -> Pacer {
        Pacer {
            next: start + interval.mul_f64(share),
            end,
            interval,
        }
    }

    /// Waits for the next slot; false once the window is over.
    pub async fn wait(&mut self) -> bool {
        if self.next >= self.end {
            return false;
        }
        sleep_until(self.next).await;
        true
    }

    /// Moves on after a step; answers how many slots went by meanwhile.
    pub fn advance(&mut self) -> u64 {
        self.next += self.interval;
        let now = Instant::now();
        let mut skipped = 0;
        while self.next <= now && self.next < self.end {
            self.next += self.interval;
            skipped += 1;
        }
        skipped
    }
}

/// Posts `body` (`{event, data}`) to listing `listing`'s room through the
/// server API: on a 2xx records the request's latency and answers true;
/// otherwise notes why (`post: …`) and answers false.
pub async fn post_event<S: Scenario>(
    run: &Run<S>,
    listing: &str,
    body: &serde_json::Value,
    latency: &mut Latency,
) -> bool {
    let sent = std::time::Instant::now();
    let outcome = crate::http::request(
        &run.common.target,
        "POST",
        &format!("/api/v1/rooms/listing:{listing}/events"),
        Some(&run.service),
        Some(body),
    )
    .await;
    match outcome {
        Ok(r) if (200..300).contains(&r.status) => {
            latency.record(sent.elapsed());
            true
        }
        Ok(r) => {
            run.problems
                .note(format!("post: HTTP {} {}", r.status, r.body));
            false
        }
        Err(e) => {
            run.problems.note(format!("post: {e}"));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cli::{self, Command};

    /// A scenario with no server: units of the first kind join (the first
    /// `failing` of them fail to), units of the second kind do not; every
    /// unit counts the phases it sees until `Stop`.
    struct Rehearsal {
        units: usize,
        failing: usize,
    }

    #[derive(Default)]
    struct Seen {
        window: AtomicU64,
        drain: AtomicU64,
        stopped: AtomicU64,
    }

    /// The units that ran, by kind and index.
    struct Ran(Vec<(usize, usize)>);

    impl Merge for Ran {
        fn merge(&mut self, other: Ran) -> Result<()> {
            self.0.extend(other.0);
            Ok(())
        }
    }

    impl Scenario for Rehearsal {
        const NAME: &'static str = "rehearsal";
        const UNITS: &'static str = "units";
        type Shared = Seen;
        type Out = Ran;
        /// Units joined when the window's work ran.
        type Window = u64;
        type After = ();

        fn parse(options: &mut Options) -> Result<Rehearsal> {
            Ok(Rehearsal {
                units: options.take("units", 5usize)?,
                failing: options.take("failing", 0usize)?,
            })
        }

        fn check(&self) -> Result<()> {
            Ok(())
        }

        async fn prepare(&self, _common: &Common, _service: &str) -> Result<()> {
            Ok(())
        }

        fn out(&self) -> Result<Ran> {
            Ok(Ran(Vec::new()))
        }

        fn title(&self, _common: &Common) -> String {
            "rehearsal".into()
        }

        fn units(&self) -> Vec<usize> {
            vec![self.units, 2]
        }

        fn duration(&self) -> Duration {
            Duration::from_millis(200)
        }

        async fn unit(ctx: Rc<Ctx<Rehearsal>>, kind: usize, index: usize) {
            if kind == 0 {
                let failing = index < ctx.settings.failing;
                let joined = ctx.enter("join", async move {
                    if failing {
                        fail("refused")
                    } else {
                        Ok(())
                    }
                });
                if joined.await.is_none() {
                    return;
                }
            }
            ctx.out.borrow_mut().0.push((kind, index));
            let mut phase = ctx.phase.clone();
            let seen = &ctx.shared;
            let (mut window, mut drain) = (false, false);
            loop {
                match *phase.borrow_and_update() {
                    Phase::Joining => {}
                    Phase::Window { .. } => window = true,
                    Phase::Drain => drain = true,
                    Phase::Stop => {
                        seen.stopped.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
                if phase.changed().await.is_err() {
                    break;
                }
            }
            seen.window.fetch_add(u64::from(window), Ordering::Relaxed);
            seen.drain.fetch_add(u64::from(drain), Ordering::Relaxed);
        }

        async fn window(run: &Run<Rehearsal>, _start: Instant, _end: Instant) -> Result<u64> {
            assert_eq!(run.stage(), Stage::Window);
            Ok(run.joined())
        }

        async fn after(run: &Run<Rehearsal>, end: Instant) -> Result<()> {
            assert_eq!(run.stage(), Stage::Drain);
            sleep_until(end + Duration::from_millis(50)).await;
            Ok(())
        }

        fn progress(_run: Arc<Run<Rehearsal>>) -> impl FnMut(f64) -> String + Send + 'static {
            |_| String::new()
        }

        async fn report(
            run: &Run<Rehearsal>,
            report: &mut Report,
            ran: Ran,
            found: Found<Rehearsal>,
        ) -> Result<()> {
            let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
            let mut ran = ran.0;
            ran.sort_unstable();
            report.set("ran", json!(ran));
            report.set("joined", json!([run.joined(), run.failed(), found.window]));
            let seen = &run.shared;
            let phases = [load(&seen.window), load(&seen.drain), load(&seen.stopped)];
            report.set("seen", json!(phases));
            Ok(())
        }
    }

    fn rehearse(args: &[&str]) -> Result<Report> {
        let mut all = vec!["rehearsal", "--url", "http://127.0.0.1:9", "--secret", "s"];
        all.extend(["--threads", "2"]);
        all.extend(args);
        let args: Vec<String> = all.into_iter().map(str::to_owned).collect();
        let Command::Run {
            common, options, ..
        } = cli::parse(&args)?
        else {
            return fail("not a run");
        };
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(run::<Rehearsal>(&common, options))
    }

    #[test]
    fn every_unit_of_every_kind_runs_once_and_sees_the_window_the_drain_and_the_stop() -> Result<()>
    {
        let report = rehearse(&["--units", "5", "--failing", "1"])?;
        let ran = json!([[0, 1], [0, 2], [0, 3], [0, 4], [1, 0], [1, 1]]);
        assert_eq!(report.field("ran"), Some(&ran));
        assert_eq!(report.field("joined"), Some(&json!([4, 1, 4])));
        assert_eq!(report.field("seen"), Some(&json!([6, 6, 6])));
        assert!(report.field("scenario") == Some(&json!("rehearsal")));
        Ok(())
    }

    #[test]
    fn a_run_where_no_unit_joined_fails() {
        match rehearse(&["--units", "3", "--failing", "3"]) {
            Ok(_) => panic!("a run with no unit joined answered a report"),
            Err(e) => assert!(e.to_string().contains("none of the units joined"), "{e}"),
        }
    }

    #[test]
    fn an_unknown_option_is_refused() {
        let refused = rehearse(&["--unit", "3"]).err().map(|e| e.to_string());
        assert!(refused.is_some_and(|e| e.contains("unit")));
    }

    #[test]
    fn a_pacer_skips_the_slots_that_went_by_and_stops_at_the_end() -> Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        runtime.block_on(async {
            let interval = Duration::from_millis(100);
            let start = Instant::now()
                .checked_sub(Duration::from_millis(1050))
                .ok_or("no clock that far back")?;
            let end = start + Duration::from_secs(2);
            let mut pacer = Pacer::new(start, end, interval, 0.5);
            assert_eq!(pacer.next, start + Duration::from_millis(50));
            assert!(pacer.wait().await, "the first slot is in the window");
            // The slots at 150 … 1050 ms went by while this step was out.
            let skipped = pacer.advance();
            assert!((10..=12).contains(&skipped), "skipped {skipped}");
            assert!(pacer.next > Instant::now());

            let mut over = Pacer::new(start, start + interval, interval, 0.0);
            assert!(over.wait().await);
            assert_eq!(over.advance(), 0, "no slot is skipped past the end");
            assert!(!over.wait().await, "the window is over");
            Ok(())
        })
    }
}
