//! Watches what a node runs out of without saying so: open file
//! descriptors. At its open-files limit (`ulimit -n`) a node cannot accept
//! connections; actix-server then logs `Error accepting connection: Too
//! many open files (os error 24)` twice a second for as long as clients
//! wait, which neither says what it means nor how close the node was
//! before. [`FdWatch`] compares the descriptors in use (/proc/self/fd) with
//! the soft limit (/proc/self/limits), every second near the limit and
//! every ten seconds far from it (a descriptor probe catches running out
//! within a second either way), exports both as gauges, and logs each
//! change of state once: near the limit (warn), refusing connections
//! (error), accepting again (info).

use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::metrics::Metrics;

/// How often the watcher looks.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How often it counts while far from the limit.
const CALM_COUNT_EVERY: Duration = Duration::from_secs(10);
/// Descriptors in use, in percent of the limit, from which the node warns.
const HIGH_PERCENT: u64 = 90;
/// Below this percentage a warned node counts as fine again.
const CALM_PERCENT: u64 = 80;
/// `EMFILE` and `ENFILE` on Linux: the process's or the system's table is full.
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

/// Where the node stands.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Level {
    Fine,
    High,
    /// Out of descriptors since then.
    Exhausted(Instant),
}

/// One look at the descriptor table.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Reading {
    /// Descriptors in use; equal to the limit when none could be had.
    used: u64,
    /// The soft limit (`None` when unlimited or unreadable).
    limit: Option<u64>,
    /// Opening one more failed with EMFILE/ENFILE.
    exhausted: bool,
}

/// The actor that watches the node's file descriptors.
pub struct FdWatch {
    metrics: Metrics,
    /// A descriptor kept open to probe with: cloning it fails exactly when
    /// accepting a connection would.
    probe: Option<Arc<File>>,
    limit: Option<u64>,
    level: Level,
    /// A count is running on the blocking pool.
    counting: bool,
    /// When the last count ended.
    counted: Option<Instant>,
    /// Descriptors in use at the last count, in percent of the limit.
    percent: u64,
}

impl FdWatch {
    pub fn new(metrics: Metrics) -> Self {
        FdWatch {
            metrics,
            probe: File::open("/dev/null").ok().map(Arc::new),
            limit: None,
            level: Level::Fine,
            counting: false,
            counted: None,
            percent: 0,
        }
    }

    /// Every second: a count when one is due (every second near the
    /// limit, else every [`CALM_COUNT_EVERY`]) or when the probe fails.
    /// Listing /proc/self/fd takes ~16 ms at 19,000 descriptors, so it
    /// runs on the blocking pool, not on this (the main) thread.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.counting {
            return;
        }
        let every = if self.percent >= CALM_PERCENT || self.level != Level::Fine {
            CHECK_EVERY
        } else {
            CALM_COUNT_EVERY
        };
        let due = self.counted.is_none_or(|at| at.elapsed() >= every);
        if !due && !probe_fails(self.probe.as_deref()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.counting = true;
        let (probe, limit) = (self.probe.clone(), self.limit);
        let reading = runtime.spawn_blocking(move || read(probe.as_deref(), limit));
        ctx.spawn(
            async move { reading.await.ok() }
                .into_actor(self)
                .map(|reading, watch, _| {
                    watch.counting = false;
                    if let Some(reading) = reading {
                        watch.apply(reading);
                    }
                }),
        );
    }

    fn apply(&mut self, reading: Reading) {
        self.limit = reading.limit;
        self.counted = Some(Instant::now());
        self.percent = reading
            .limit
            .filter(|l| *l > 0)
            .map_or(0, |l| reading.used * 100 / l);
        self.metrics.open_fds.set(gauge(reading.used));
        if let Some(limit) = reading.limit {
            self.metrics.max_fds.set(gauge(limit));
        }
        let (level, message) = next_level(self.level, reading, Instant::now());
        self.level = level;
        if let Some((level, text)) = message {
            log::log!(level, "{text}");
        }
    }
}

fn out_of_fds(err: &std::io::Error) -> bool {
    matches!(err.raw_os_error(), Some(EMFILE | ENFILE))
}

/// Whether one more descriptor cannot be had.
fn probe_fails(probe: Option<&File>) -> bool {
    match probe.map(File::try_clone) {
        Some(Err(err)) => out_of_fds(&err),
        _ => false,
    }
}

/// How many Socket.IO connections a node with `limit` open files may hold:
/// the limit less a reserve (a quarter of it, at most 256) for the node's
/// listener, Postgres and Redis connections, logs and HTTP API requests.
/// Past it, a new connection is answered 503 instead of starving those.
pub fn connection_cap(limit: Option<u64>) -> usize {
    match limit {
        Some(limit) => {
            let reserve = (limit / 4).min(256);
            usize::try_from(limit - reserve)
                .unwrap_or(usize::MAX)
                .max(1)
        }
        None => usize::MAX,
    }
}

/// Counts the descriptors in use; `known_limit` stands in when the
/// limit cannot be read (that needs a descriptor too).
fn read(probe: Option<&File>, known_limit: Option<u64>) -> Reading {
    let limit = soft_limit().or(known_limit);
    let exhausted = probe_fails(probe);
    match std::fs::read_dir("/proc/self/fd") {
        // The listing's own descriptor is in it.
        Ok(dir) => Reading {
            used: (dir.count() as u64).saturating_sub(1),
            limit,
            exhausted,
        },
        Err(err) if out_of_fds(&err) => Reading {
            used: limit.unwrap_or(0),
            limit,
            exhausted: true,
        },
        Err(_) => Reading {
            used: 0,
            limit,
            exhausted,
        },
    }
}

fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The soft `Max open files` of this process; `None` when unlimited or
/// unreadable (reading it needs a descriptor too).
pub fn soft_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// The level after `reading`, and what to log when it changed.
fn next_level(
    level: Level,
    reading: Reading,
    now: Instant,
) -> (Level, Option<(log::Level, String)>) {
    let Reading {
        used,
        limit,
        exhausted,
    } = reading;
    let limit_text = limit.map_or("no limit".to_owned(), |l| l.to_string());
    let percent = limit.filter(|l| *l > 0).map_or(0, |l| used * 100 / l);
    // Leaving the exhausted state needs a little room, so a node hovering
    // at its limit says so once, not every second.
    let room = limit.map_or(0, |l| (l / 50).max(4));
    match level {
        Level::Exhausted(since) => {
            let recovered = !exhausted && limit.is_some_and(|l| used + room <= l);
            if !recovered {
                return (level, None);
            }
            let next = if percent >= HIGH_PERCENT {
                Level::High
            } else {
                Level::Fine
            };
            let text = format!(
                "accepting connections again: {used} of {limit_text} file descriptors in use \
                 (refused for {:.0} s)",
                now.duration_since(since).as_secs_f64()
            );
            (next, Some((log::Level::Info, text)))
        }
        _ if exhausted => {
            let text = format!(
                "refusing connections: all {limit_text} file descriptors in use (the open-files \
                 limit, ulimit -n); new connections wait in the listen backlog until some close. \
                 Raise the limit or spread the clients over more nodes"
            );
            (Level::Exhausted(now), Some((log::Level::Error, text)))
        }
        Level::Fine if percent >= HIGH_PERCENT => {
            let text = format!(
                "{used} of {limit_text} file descriptors in use ({percent}%); at the limit the \
                 node refuses connections"
            );
            (Level::High, Some((log::Level::Warn, text)))
        }
        Level::High if percent < CALM_PERCENT => {
            let text = format!("{used} of {limit_text} file descriptors in use ({percent}%) again");
            (Level::Fine, Some((log::Level::Info, text)))
        }
        _ => (level, None),
    }
}

impl Actor for FdWatch {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // A node whose start failed drops this actor, never run, with its
        // runtime: it is first polled then, with no timer or pool to use.
        if tokio::runtime::Handle::try_current().is_err() {
            ctx.stop();
            return;
        }
        self.tick(ctx);
        ctx.run_interval(CHECK_EVERY, |watch, ctx| watch.tick(ctx));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(used: u64, exhausted: bool) -> Reading {
        Reading {
            used,
            limit: Some(1000),
            exhausted,
        }
    }

    #[test]
    fn says_each_change_once() {
        let t0 = Instant::now();
        let (level, said) = next_level(Level::Fine, at(500, false), t0);
        assert_eq!((level, said), (Level::Fine, None));

        let (level, said) = next_level(level, at(950, false), t0);
        assert_eq!(level, Level::High);
        assert_eq!(said.map(|s| s.0), Some(log::Level::Warn));
        assert_eq!(next_level(level, at(960, false), t0).1, None);

        let (level, said) = next_level(level, at(1000, true), t0);
        assert_eq!(level, Level::Exhausted(t0));
        let Some((log_level, text)) = said else {
            panic!("nothing said on running out")
        };
        assert_eq!(log_level, log::Level::Error);
        assert!(text.starts_with("refusing connections: all 1000 file descriptors in use"));
        // Hovering at the limit says nothing more.
        assert_eq!(next_level(level, at(999, false), t0).1, None);
        assert_eq!(next_level(level, at(1000, true), t0).1, None);

        let (level, said) = next_level(level, at(900, false), t0 + Duration::from_secs(3));
        assert_eq!(level, Level::High);
        assert!(said.is_some_and(|s| s.1.starts_with("accepting connections again: 900 of 1000")));

        let (level, said) = next_level(level, at(100, false), t0);
        assert_eq!(level, Level::Fine);
        assert_eq!(said.map(|s| s.0), Some(log::Level::Info));
    }

    #[test]
    fn the_connection_cap_keeps_descriptors_for_the_node_itself() {
        assert_eq!(connection_cap(Some(20_000)), 19_744);
        assert_eq!(connection_cap(Some(200)), 150);
        assert_eq!(connection_cap(Some(1)), 1);
        assert_eq!(connection_cap(None), usize::MAX);
    }

    #[test]
    fn reads_its_own_table() {
        let probe = File::open("/dev/null").ok();
        assert!(!probe_fails(probe.as_ref()));
        let reading = read(probe.as_ref(), None);
        assert!(reading.used >= 3, "{reading:?}");
        assert!(!reading.exhausted);
        assert!(reading.limit.is_some_and(|l| l >= reading.used));
    }
}
