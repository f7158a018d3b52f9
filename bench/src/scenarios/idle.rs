//! `idle`: N authenticated connections, opened and held.
//!
//! Every connection is its own user: it opens a WebSocket, CONNECTs with a
//! token and then only answers pings for `--hold` seconds. Reported: the
//! connect rate (connections a second from the first open to the last
//! CONNECT answer), the server's RSS before, once all are connected and at
//! the end of the hold, the RSS each connection adds, its open files
//! against its limit, and its CPU seconds.
//!
//! A process may hold only `ulimit -Hn` sockets, so `--processes K` runs
//! the connections in K child processes (this same binary, re-executed
//! with `--child I`), each with a share of the connections and of
//! `--sources`. Children talk to the parent in lines: a child prints JSON
//! lines on stdout (`ready`, `progress`, `settled`, `done`) and reads
//! `go` and `stop` on stdin (end of input is `stop` too, so children of a
//! parent that died let go). It is not a `runner::Scenario` (no one
//! connects before `go`, and it holds rather than measures a window of
//! traffic), but it joins and opens connections as the runner does.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};
use tokio::time::{sleep, Instant};

use super::Problems;
use crate::cli::{Common, Options};
use crate::error::{fail, Result};
use crate::procs::{self, Probe, Stopped};
use crate::progress::Progress;
use crate::report::Report;
use crate::runner::{self, Joins};
use crate::shard;
use crate::stats::round3;
use crate::ws::Packet;

/// How long the parent waits for a new connection before it gives up on
/// the ones still opening (at least; twice `--connect-timeout` when longer).
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);
/// How often a child tells the parent its counts.
const CHILD_PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// How long children may take to start, and to close and report.
const CHILD_GRACE: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct Settings {
    connections: usize,
    hold: Duration,
    /// How long one connection may take to open and CONNECT.
    connect_timeout: Duration,
    processes: usize,
    /// This process's index when it is a child.
    child: Option<usize>,
    run: String,
}

/// Where every connection of a process is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// Started; waiting for the parent's `go`.
    Wait,
    Go,
    Stop,
}

/// One process's counts; read by the progress line and the report.
#[derive(Default)]
struct Counters {
    connected: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    closed: AtomicU64,
    problems: Problems,
}

impl Counters {
    fn load(&self) -> Counts {
        Counts {
            connected: self.connected.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

#[derive(Clone, Copy, Default, Debug)]
struct Counts {
    connected: u64,
    failed: u64,
    dropped: u64,
}

impl Counts {
    fn json(&self) -> Value {
        json!({ "connected": self.connected, "failed": self.failed, "dropped": self.dropped })
    }

    fn from_json(value: &Value) -> Counts {
        let n = |key: &str| value[key].as_u64().unwrap_or(0);
        Counts {
            connected: n("connected"),
            failed: n("failed"),
            dropped: n("dropped"),
        }
    }

    fn add(&mut self, other: Counts) {
        self.connected += other.connected;
        self.failed += other.failed;
        self.dropped += other.dropped;
    }
}

pub async fn run(common: &Common, mut options: Options) -> Result<Option<Report>> {
    let settings = Settings {
        connections: options.take("connections", 1000usize)?,
        hold: Duration::from_secs_f64(options.take("hold", 10.0f64)?.max(0.0)),
        connect_timeout: Duration::from_secs_f64(
            options.take("connect-timeout", 15.0f64)?.max(0.1),
        ),
        processes: options.take("processes", 1usize)?.max(1),
        child: match options.take_text("child") {
            None => None,
            Some(text) => Some(
                text.parse()
                    .map_err(|_| format!("--child: not an index: {text:?}"))?,
            ),
        },
        run: options.take_text("run").unwrap_or_else(super::run_id),
    };
    options.finish()?;
    if settings.connections == 0 {
        return fail("--connections must be at least 1");
    }
    if let Some(index) = settings.child {
        child_main(common, &settings, index).await?;
        return Ok(None);
    }
    let mut fleet = if settings.processes > 1 {
        Fleet::Children(spawn_children(common, &settings)?)
    } else {
        Fleet::InProcess(InProcess::start(common, &settings, 0)?)
    };
    let outcome = conduct(common, &settings, &mut fleet).await;
    let finished = fleet.finish().await;
    let (mut report, mut readings, held) = outcome?;
    let (counts, problems, helper_cpu) = finished?;
    readings.add_generator_cpu(helper_cpu);
    fill_report(&mut report, common, &settings, held, counts, &problems);
    readings.report(&mut report);
    Ok(Some(report))
}

/// The connections of this process: `shard` threads holding them, and the
/// switch that starts and stops them.
struct InProcess {
    counters: Arc<Counters>,
    phase: watch::Sender<Phase>,
    shards: std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<()>>>>>,
}

impl InProcess {
    /// Starts the threads; they wait for `go`.
    fn start(common: &Common, settings: &Settings, part: usize) -> Result<InProcess> {
        let counters = Arc::new(Counters::default());
        let (phase, phase_rx) = watch::channel(Phase::Wait);
        let threads = common.threads.min(settings.connections).max(1);
        let shards = {
            let (common, settings, counters) = (common.clone(), settings.clone(), counters.clone());
            shard::start(threads, move |index| {
                hold_shard(
                    index,
                    threads,
                    part,
                    common.clone(),
                    settings.clone(),
                    counters.clone(),
                    phase_rx.clone(),
                )
            })?
        };
        Ok(InProcess {
            counters,
            phase,
            shards: Box::pin(shards),
        })
    }
}

/// Child processes, each holding a part of the connections.
struct Children {
    kids: Vec<Kid>,
}

struct Kid {
    process: Child,
    stdin: Option<ChildStdin>,
    state: Arc<Mutex<KidState>>,
}

/// What a child has said so far.
#[derive(Default)]
struct KidState {
    ready: bool,
    counts: Counts,
    settled: bool,
    done: Option<Value>,
    /// Its stdout closed (it exited or died).
    gone: bool,
}

enum Fleet {
    InProcess(InProcess),
    Children(Children),
}

impl Fleet {
    fn counts(&self) -> Counts {
        match self {
            Fleet::InProcess(own) => own.counters.load(),
            Fleet::Children(children) => {
                let mut total = Counts::default();
                for kid in &children.kids {
                    if let Ok(state) = kid.state.lock() {
                        total.add(state.counts);
                    }
                }
                total
            }
        }
    }

    /// Whether every part is started and waiting for `go`; an error when
    /// a child died first.
    fn ready(&self) -> Result<bool> {
        match self {
            Fleet::InProcess(_) => Ok(true),
            Fleet::Children(children) => {
                let mut all = true;
                for (i, kid) in children.kids.iter().enumerate() {
                    let state = kid.state.lock().map_err(|_| "child state poisoned")?;
                    if state.gone {
                        return fail(format!("generator process {i} exited before it was ready"));
                    }
                    all &= state.ready;
                }
                Ok(all)
            }
        }
    }

    fn tell(&mut self, phase: Phase) {
        match self {
            Fleet::InProcess(own) => {
                let _ = own.phase.send(phase);
            }
            Fleet::Children(children) => {
                let line = match phase {
                    Phase::Go => "go\n",
                    _ => "stop\n",
                };
                for kid in &mut children.kids {
                    if let Some(stdin) = kid.stdin.as_mut() {
                        if stdin
                            .write_all(line.as_bytes())
                            .and_then(|()| stdin.flush())
                            .is_err()
                        {
                            kid.stdin = None;
                        }
                    }
                }
            }
        }
    }

    /// Stops every part and waits for it: the totals, the problems by
    /// kind and the CPU seconds the children used.
    async fn finish(self) -> Result<(Counts, BTreeMap<String, u64>, f64)> {
        match self {
            Fleet::InProcess(own) => {
                let _ = own.phase.send(Phase::Stop);
                own.shards.await?;
                Ok((own.counters.load(), own.counters.problems.counts(), 0.0))
            }
            Fleet::Children(mut children) => {
                for kid in &mut children.kids {
                    // End of input is `stop` for a child.
                    kid.stdin = None;
                }
                let started = Instant::now();
                let mut total = Counts::default();
                let mut problems = BTreeMap::new();
                let mut cpu = 0.0;
                for (i, kid) in children.kids.iter_mut().enumerate() {
                    loop {
                        if kid.process.try_wait()?.is_some() {
                            break;
                        }
                        if started.elapsed() > CHILD_GRACE {
                            let _ = kid.process.kill();
                            let _ = kid.process.wait();
                            break;
                        }
                        sleep(Duration::from_millis(20)).await;
                    }
                    // Its last line may still be on the way to the reader.
                    let reader_done = Instant::now();
                    let done = loop {
                        let (done, gone) = {
                            let state = kid.state.lock().map_err(|_| "child state poisoned")?;
                            (state.done.clone(), state.gone)
                        };
                        if done.is_some() || gone {
                            break done;
                        }
                        if reader_done.elapsed() > Duration::from_secs(2) {
                            break None;
                        }
                        sleep(Duration::from_millis(10)).await;
                    };
                    let Some(done) = done else {
                        return fail(format!("generator process {i} ended without its report"));
                    };
                    total.add(Counts::from_json(&done));
                    cpu += done["cpuSecs"].as_f64().unwrap_or(0.0);
                    if let Some(map) = done["problems"].as_object() {
                        for (what, n) in map {
                            *problems.entry(what.clone()).or_insert(0) += n.as_u64().unwrap_or(0);
                        }
                    }
                }
                Ok((total, problems, cpu))
            }
        }
    }
}

/// The sources child `index` of `processes` connects from: every
/// `processes`-th of the list, or one of them when the list is shorter.
fn child_sources(sources: &[IpAddr], index: usize, processes: usize) -> Vec<IpAddr> {
    let mine: Vec<IpAddr> = sources
        .iter()
        .copied()
        .skip(index)
        .step_by(processes)
        .collect();
    if mine.is_empty() {
        vec![sources[index % sources.len()]]
    } else {
        mine
    }
}

/// How many of `total` connections child `index` of `processes` holds.
fn child_share(total: usize, index: usize, processes: usize) -> usize {
    total / processes + usize::from(index < total % processes)
}

fn spawn_children(common: &Common, settings: &Settings) -> Result<Children> {
    let exe = std::env::current_exe()?;
    let mut kids = Vec::with_capacity(settings.processes);
    for index in 0..settings.processes {
        let share = child_share(settings.connections, index, settings.processes);
        if share == 0 {
            continue;
        }
        let sources: Vec<String> = child_sources(&common.sources, index, settings.processes)
            .iter()
            .map(ToString::to_string)
            .collect();
        let concurrency = (common.connect_concurrency / settings.processes).max(1);
        let mut process = Command::new(&exe)
            .arg("idle")
            .args(["--url", &common.url, "--secret", &common.secret])
            .args(["--connections", &share.to_string()])
            .args([
                "--connect-timeout",
                &settings.connect_timeout.as_secs_f64().to_string(),
            ])
            .args(["--child", &index.to_string(), "--run", &settings.run])
            .args(["--sources", &sources.join(",")])
            .args(["--transport", common.target.transport.name()])
            .args(["--threads", &common.threads.to_string()])
            .args(["--connect-concurrency", &concurrency.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let stdout = process.stdout.take().ok_or("child without stdout")?;
        let state = Arc::new(Mutex::new(KidState::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout)
                .lines()
                .map_while(std::result::Result::ok)
            {
                let Ok(message) = serde_json::from_str::<Value>(&line) else {
                    eprintln!("souk-bench: generator process {index}: {line}");
                    continue;
                };
                let Ok(mut state) = shared.lock() else {
                    return;
                };
                if message.get("ready").is_some() {
                    state.ready = true;
                } else if let Some(counts) = message.get("progress") {
                    state.counts = Counts::from_json(counts);
                } else if let Some(counts) = message.get("settled") {
                    state.counts = Counts::from_json(counts);
                    state.settled = true;
                } else if let Some(done) = message.get("done") {
                    state.counts = Counts::from_json(done);
                    state.done = Some(done.clone());
                }
            }
            if let Ok(mut state) = shared.lock() {
                state.gone = true;
            }
        });
        kids.push(Kid {
            stdin: process.stdin.take(),
            process,
            state,
        });
    }
    Ok(Children { kids })
}

/// What the parent measures: RSS before, after connecting and after the
/// hold; CPU over the connect and over the hold.
async fn conduct(
    common: &Common,
    settings: &Settings,
    fleet: &mut Fleet,
) -> Result<(Report, Stopped, Counts)> {
    let total = settings.connections as u64;
    let started = Instant::now();
    while !fleet.ready()? {
        if started.elapsed() > CHILD_GRACE {
            return fail("generator processes did not start in time");
        }
        sleep(Duration::from_millis(10)).await;
    }
    let server = common.server_pid;
    let rss_before = server.and_then(procs::rss_kib);
    let files_before = server.and_then(procs::open_files);
    let cpu_before = server.and_then(procs::cpu_secs);
    let overflows_before = procs::listen_overflows();
    let probe = Probe::start(common);
    let progress = {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let shown = counts.clone();
        let held_since = Arc::new(Mutex::new(None::<std::time::Instant>));
        let line = progress_line(shown, held_since.clone(), total, settings.hold, server);
        (Progress::start(line), counts, held_since)
    };
    let go = Instant::now();
    fleet.tell(Phase::Go);
    // Wait until every connection connected or failed, or no new one
    // connected for a while (a server that refuses connections leaves
    // them waiting in its backlog).
    let give_up_after = GIVE_UP_AFTER.max(settings.connect_timeout * 2);
    let mut last_connected = 0;
    let mut last_success = Instant::now();
    let (connect_secs, given_up) = loop {
        let counts = fleet.counts();
        if let Ok(mut shown) = progress.1.lock() {
            *shown = counts;
        }
        if counts.connected + counts.failed >= total {
            break (go.elapsed().as_secs_f64(), 0);
        }
        if counts.connected != last_connected {
            last_connected = counts.connected;
            last_success = Instant::now();
        } else if last_success.elapsed() > give_up_after {
            let secs = last_success.duration_since(go).as_secs_f64();
            break (secs, total - counts.connected - counts.failed);
        }
        if let Fleet::Children(children) = fleet {
            for (i, kid) in children.kids.iter().enumerate() {
                let state = kid.state.lock().map_err(|_| "child state poisoned")?;
                if state.gone && !state.settled {
                    return fail(format!("generator process {i} died while connecting"));
                }
            }
        }
        sleep(Duration::from_millis(10)).await;
    };
    let cpu_connected = server.and_then(procs::cpu_secs);
    let rss_connected = server.and_then(procs::rss_kib);
    let overflows = overflows_before
        .zip(procs::listen_overflows())
        .map(|(before, after)| after.saturating_sub(before));
    if let Ok(mut since) = progress.2.lock() {
        *since = Some(std::time::Instant::now());
    }
    let hold_end = Instant::now() + settings.hold;
    while Instant::now() < hold_end {
        if let Ok(mut shown) = progress.1.lock() {
            *shown = fleet.counts();
        }
        sleep(Duration::from_millis(100).min(hold_end - Instant::now())).await;
    }
    let counts = fleet.counts();
    let rss_held = server.and_then(procs::rss_kib);
    let files_held = server.and_then(procs::open_files);
    let files_limit = server.and_then(procs::open_files_limit);
    let cpu_held = server.and_then(procs::cpu_secs);
    drop(progress);

    let mut report = Report::new(
        "idle",
        format!(
            "souk-bench idle: {} connections ({}) held {:.0} s, {} generator process{}, against {}",
            settings.connections,
            common.target.transport.name(),
            settings.hold.as_secs_f64(),
            settings.processes,
            if settings.processes == 1 { "" } else { "es" },
            common.url
        ),
    );
    let connect_rate = if connect_secs > 0.0 {
        counts.connected as f64 / connect_secs
    } else {
        0.0
    };
    report.section("connections");
    report.item(
        "connected",
        format!(
            "{} of {total} ({} failed) in {connect_secs:.1} s",
            counts.connected, counts.failed
        ),
    );
    if given_up > 0 {
        report.item(
            "given up",
            format!(
                "{given_up} still opening after {:.0} s without a new connection",
                give_up_after.as_secs_f64()
            ),
        );
    }
    report.item("connect rate", format!("{connect_rate:.0} connections/s"));
    if let Some(overflows) = overflows {
        report.item(
            "listen-queue overflows",
            format!(
                "{overflows} while connecting (kernel, this machine; each such SYN is retried after a second)"
            ),
        );
    }
    report.item(
        "dropped during the hold",
        format!("{} (counted at the end of the hold)", counts.dropped),
    );
    let mut server_json = json!({});
    if let Some(pid) = server {
        let mib = |kib: Option<u64>| kib.map(|k| round3(k as f64 / 1024.0));
        let per_conn = |after: Option<u64>| match (rss_before, after) {
            (Some(a), Some(b)) if counts.connected > 0 => {
                Some(round3((b as f64 - a as f64) / counts.connected as f64))
            }
            _ => None,
        };
        let show = |kib: Option<u64>| {
            kib.map_or("unknown".into(), |k| {
                format!("{:.1} MiB", k as f64 / 1024.0)
            })
        };
        let show_per = |kib: Option<f64>| kib.map_or("unknown".into(), |k| format!("{k:.2} KiB"));
        report.section(&format!("server (pid {pid})"));
        report.item(
            "RSS",
            format!(
                "before {}, all connected {}, end of hold {}",
                show(rss_before),
                show(rss_connected),
                show(rss_held)
            ),
        );
        report.item(
            "RSS per connection",
            format!(
                "{} at the end of the hold ({} once all connected)",
                show_per(per_conn(rss_held)),
                show_per(per_conn(rss_connected))
            ),
        );
        report.item(
            "open files",
            format!(
                "{} before, {} at the end of the hold, limit {}",
                files_before.map_or("?".into(), |n| n.to_string()),
                files_held.map_or("?".into(), |n| n.to_string()),
                files_limit.map_or("unlimited or unknown".into(), |n| n.to_string())
            ),
        );
        let diff = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| round3(b - a));
        let (cpu_connect, cpu_hold) = (
            diff(cpu_before, cpu_connected),
            diff(cpu_connected, cpu_held),
        );
        report.item(
            "CPU",
            format!(
                "{} s while connecting ({} µs a connection), {} s during the hold",
                cpu_connect.map_or("?".into(), |c| format!("{c:.2}")),
                cpu_connect
                    .filter(|_| counts.connected > 0)
                    .map_or("?".into(), |c| format!(
                        "{:.0}",
                        c * 1e6 / counts.connected as f64
                    )),
                cpu_hold.map_or("?".into(), |c| format!("{c:.2}"))
            ),
        );
        server_json = json!({
            "pid": pid,
            "rssBeforeMiB": mib(rss_before),
            "rssConnectedMiB": mib(rss_connected),
            "rssHeldMiB": mib(rss_held),
            "rssPerConnectionKiB": per_conn(rss_held),
            "rssPerConnectionConnectedKiB": per_conn(rss_connected),
            "openFilesBefore": files_before,
            "openFilesHeld": files_held,
            "openFilesLimit": files_limit,
            "cpuSecsConnecting": cpu_connect,
            "cpuSecsHolding": cpu_hold,
        });
    }
    report.set(
        "connections",
        json!({
            "connected": counts.connected,
            "failed": counts.failed,
            "droppedDuringHold": counts.dropped,
            "givenUp": given_up,
            "connectSecs": round3(connect_secs),
            "connectPerSec": round3(connect_rate),
            "listenOverflows": overflows,
        }),
    );
    report.set("server", server_json);
    Ok((report, probe.stop(), counts))
}

fn fill_report(
    report: &mut Report,
    common: &Common,
    settings: &Settings,
    held: Counts,
    counts: Counts,
    problems: &BTreeMap<String, u64>,
) {
    report.section("after the hold");
    let late = counts.connected.saturating_sub(held.connected);
    report.item(
        "closed by the generator",
        format!(
            "{} of {} connected{}",
            counts.connected - counts.dropped,
            counts.connected,
            if late == 0 {
                String::new()
            } else {
                format!(" ({late} of them connected only after the hold, as others closed)")
            }
        ),
    );
    if !problems.is_empty() {
        report.section("problems (first 10 kinds)");
        for (what, n) in problems.iter().take(10) {
            let what: String = what.chars().take(160).collect();
            report.item(&format!("{n}x"), what);
        }
    }
    let sources: Vec<String> = common.sources.iter().map(ToString::to_string).collect();
    report.set(
        "params",
        json!({
            "url": common.url,
            "connections": settings.connections,
            "holdSecs": settings.hold.as_secs_f64(),
            "connectTimeoutSecs": settings.connect_timeout.as_secs_f64(),
            "processes": settings.processes,
            "sources": sources,
            "transport": common.target.transport.name(),
            "threads": common.threads,
            "connectConcurrency": common.connect_concurrency,
        }),
    );
    report.set("problems", json!(problems));
}

fn progress_line(
    counts: Arc<Mutex<Counts>>,
    held_since: Arc<Mutex<Option<std::time::Instant>>>,
    total: u64,
    hold: Duration,
    server: Option<u32>,
) -> impl FnMut(f64) -> String + Send {
    let mut last = 0u64;
    move |elapsed| {
        let c = counts.lock().map(|c| *c).unwrap_or_default();
        let rate = c.connected - last.min(c.connected);
        last = c.connected;
        let rss = server.and_then(procs::rss_kib).map_or(String::new(), |k| {
            format!("  server RSS {:.1} MiB", k as f64 / 1024.0)
        });
        match held_since.lock().ok().and_then(|s| *s) {
            None => format!(
                "[{elapsed:5.1}s] connecting: {}/{total} connected ({rate}/s), {} failed{rss}",
                c.connected, c.failed
            ),
            Some(since) => format!(
                "[{elapsed:5.1}s] holding {:.0}/{:.0} s: {} connected, {} dropped{rss}",
                since.elapsed().as_secs_f64(),
                hold.as_secs_f64(),
                c.connected - c.dropped.min(c.connected),
                c.dropped
            ),
        }
    }
}

/// A child: waits for `go`, connects its part, says when settled, holds
/// until `stop`, closes and prints its last report.
async fn child_main(common: &Common, settings: &Settings, index: usize) -> Result<()> {
    let own = InProcess::start(common, settings, index)?;
    let phase = own.phase.clone();
    // The CPU this process used up to `stop`, before it closes anything.
    let cpu_at_stop = Arc::new(Mutex::new(None::<f64>));
    let at_stop = cpu_at_stop.clone();
    // stdin lines → phase; end of input means stop.
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            match line.as_deref().map(str::trim) {
                Ok("go") => {
                    let _ = phase.send(Phase::Go);
                }
                Ok("stop") | Err(_) => break,
                Ok(_) => {}
            }
        }
        if let Ok(mut slot) = at_stop.lock() {
            *slot = procs::cpu_secs(std::process::id());
        }
        let _ = phase.send(Phase::Stop);
    });
    let cpu_start = procs::cpu_secs(std::process::id());
    say(&json!({ "ready": true }));
    let counters = own.counters.clone();
    let total = settings.connections as u64;
    let reporter = async {
        let mut settled = false;
        loop {
            let counts = counters.load();
            if !settled && counts.connected + counts.failed >= total {
                settled = true;
                say(&json!({ "settled": counts.json() }));
            } else {
                say(&json!({ "progress": counts.json() }));
            }
            sleep(if settled {
                CHILD_PROGRESS_EVERY
            } else {
                Duration::from_millis(50)
            })
            .await;
        }
    };
    let shards = own.shards;
    tokio::select! {
        result = shards => { result?; }
        () = reporter => {}
    }
    let counts = own.counters.load();
    let cpu_end = cpu_at_stop.lock().ok().and_then(|slot| *slot);
    let cpu = cpu_start.zip(cpu_end).map(|(a, b)| round3(b - a));
    let mut done = counts.json();
    done["cpuSecs"] = json!(cpu);
    done["problems"] = json!(own.counters.problems.counts());
    say(&json!({ "done": done }));
    Ok(())
}

/// One line to the parent.
fn say(message: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{message}");
    let _ = out.flush();
}

/// What a thread's connections share.
struct Ctx {
    common: Common,
    settings: Settings,
    part: usize,
    counters: Arc<Counters>,
    phase: watch::Receiver<Phase>,
    gate: Semaphore,
}

async fn hold_shard(
    index: usize,
    threads: usize,
    part: usize,
    common: Common,
    settings: Settings,
    counters: Arc<Counters>,
    mut phase: watch::Receiver<Phase>,
) -> Result<()> {
    // Nobody connects before `go`.
    while *phase.borrow_and_update() == Phase::Wait {
        if phase.changed().await.is_err() {
            return Ok(());
        }
    }
    let gate = Semaphore::new((common.connect_concurrency / threads).max(1));
    let ctx = Rc::new(Ctx {
        common,
        settings,
        part,
        counters,
        phase,
        gate,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for n in shard::items(index, threads, ctx.settings.connections) {
        tasks.spawn_local(hold_one(ctx.clone(), n));
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Opens, CONNECTs and holds one connection until `stop`.
async fn hold_one(ctx: Rc<Ctx>, n: usize) {
    if *ctx.phase.borrow() == Phase::Stop {
        return;
    }
    let counters = &ctx.counters;
    let joins = Joins {
        joined: &counters.connected,
        failed: &counters.failed,
        problems: &counters.problems,
    };
    let user = format!("bench-{}-i{}-{n}", ctx.settings.run, ctx.part);
    let open = runner::open_as(&ctx.common, n, &user, "buyer", 24 * 3600);
    let limit = ctx.settings.connect_timeout;
    let Some(mut socket) = joins.enter(&ctx.gate, limit, "connect", open).await else {
        return;
    };
    let mut phase = ctx.phase.clone();
    loop {
        if *phase.borrow_and_update() == Phase::Stop {
            break;
        }
        tokio::select! {
            changed = phase.changed() => if changed.is_err() { break },
            packet = socket.recv() => {
                let Some(why) = Packet::gone(packet) else {
                    continue;
                };
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                counters.problems.note(format!("dropped: {why}"));
                return;
            }
        }
    }
    socket.close().await;
    counters.closed.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        for (total, k) in [(19_000, 2), (7, 3), (2, 4)] {
            let sum: usize = (0..k).map(|i| child_share(total, i, k)).sum();
            assert_eq!(sum, total);
        }
    }

    #[test]
    fn each_child_gets_its_own_sources() {
        let ips: Vec<IpAddr> = (1..=4).map(|i| IpAddr::from([127, 0, 0, i])).collect();
        assert_eq!(child_sources(&ips, 0, 2), vec![ips[0], ips[2]]);
        assert_eq!(child_sources(&ips, 1, 2), vec![ips[1], ips[3]]);
        assert_eq!(child_sources(&ips[..1], 1, 2), vec![ips[0]]);
    }
}
