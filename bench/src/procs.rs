//! CPU time and memory of processes, read from /proc (Linux): the server
//! given by `--server-pid`, processes named by `--watch-procs`, and the
//! generator itself.

use std::collections::BTreeMap;
use std::fs;

use serde_json::{json, Map, Value};

use crate::cli::Common;
use crate::report::Report;
use crate::stats::round3;

/// Clock ticks a second in /proc's times (USER_HZ: 100 on every Linux
/// architecture souk runs on).
const TICKS_PER_SEC: f64 = 100.0;

/// utime + stime of one process, in ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name (field 2) is in parentheses and may hold spaces: split after it.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    // Fields 14 and 15 of the whole line are utime and stime; `after`
    // starts at field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// utime + stime of one process, in seconds.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    cpu_ticks(pid).map(|t| t as f64 / TICKS_PER_SEC)
}

/// The resident memory (`VmRSS`) of one process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(&pid.to_string(), "VmRSS:")
}

/// How many files one process holds open (entries of /proc/PID/fd).
pub fn open_files(pid: u32) -> Option<u64> {
    let dir = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(dir.count() as u64)
}

/// One process's soft limit of open files (`Max open files` in
/// /proc/PID/limits); `None` when unlimited or unreadable.
pub fn open_files_limit(pid: u32) -> Option<u64> {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// How many connections the kernel dropped because a listen queue was full
/// (`TcpExt: ListenOverflows` of /proc/net/netstat, for the network
/// namespace; the client retries such a SYN after a second). A connect
/// rate measured while this grows measures the accept queue as much as
/// the server.
pub fn listen_overflows() -> Option<u64> {
    netstat_field(
        &fs::read_to_string("/proc/net/netstat").ok()?,
        "TcpExt:",
        "ListenOverflows",
    )
}

/// A field of /proc/net/netstat: each group is a line of names and a line
/// of values, both starting with the group's name.
fn netstat_field(text: &str, group: &str, name: &str) -> Option<u64> {
    let mut lines = text.lines().filter(|line| line.starts_with(group));
    let names = lines.next()?;
    let values = lines.next()?;
    let at = names.split_whitespace().position(|field| field == name)?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// The machine's CPU time since boot from /proc/stat, in ticks: (busy, all).
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let all: u64 = fields.iter().take(8).sum();
    // idle and iowait are the 4th and 5th fields.
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((all - idle, all))
}

/// A `Vm…:` line of /proc/<pid>/status, in KiB.
fn status_kib(pid: &str, key: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The processes whose name (`comm`) is one of `names`: pid → name.
fn find_named(names: &[String]) -> BTreeMap<u32, String> {
    let mut found = BTreeMap::new();
    if names.is_empty() {
        return found;
    }
    let Ok(dir) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Ok(comm) = fs::read_to_string(format!("/proc/{pid}/comm")) {
            let comm = comm.trim();
            if names.iter().any(|n| n == comm) {
                found.insert(pid, comm.to_owned());
            }
        }
    }
    found
}

/// CPU readings taken at the start of a measured window.
pub struct Probe {
    server_pid: Option<u32>,
    server_start: Option<u64>,
    self_start: Option<u64>,
    names: Vec<String>,
    named_start: BTreeMap<u32, (String, u64)>,
    machine_start: Option<(u64, u64)>,
    started: std::time::Instant,
    /// CPU seconds of generator processes other than this one.
    helpers_cpu: f64,
}

/// Runs `work`, waits until `end`, and answers what `work` gave with the
/// process readings from now until `end`: the measured window. The readings
/// are a table of their own, to go at the end of the report.
pub async fn measure<T>(
    common: &Common,
    end: tokio::time::Instant,
    work: impl std::future::Future<Output = T>,
) -> (T, Report) {
    let probe = Probe::start(common);
    let done = work.await;
    tokio::time::sleep_until(end).await;
    let mut readings = Report::new("", String::new());
    probe.finish(&mut readings);
    (done, readings)
}

impl Probe {
    pub fn start(common: &Common) -> Probe {
        let named_start = find_named(&common.watch_procs)
            .into_iter()
            .filter_map(|(pid, name)| Some((pid, (name, cpu_ticks(pid)?))))
            .collect();
        Probe {
            server_pid: common.server_pid,
            server_start: common.server_pid.and_then(cpu_ticks),
            self_start: cpu_ticks(std::process::id()),
            names: common.watch_procs.clone(),
            named_start,
            machine_start: machine_ticks(),
            started: std::time::Instant::now(),
            helpers_cpu: 0.0,
        }
    }

    /// Readings at the end of the window, added to the report.
    pub fn finish(self, report: &mut Report) {
        self.stop().report(report);
    }

    /// Takes the readings that end the window, to report later.
    pub fn stop(self) -> Stopped {
        let named_end = find_named(&self.names)
            .into_iter()
            .filter_map(|(pid, name)| Some((pid, (name, cpu_ticks(pid)?))))
            .collect();
        let server = self.server_pid.map(|pid| {
            let pid_text = pid.to_string();
            (
                cpu_ticks(pid),
                status_kib(&pid_text, "VmRSS:"),
                status_kib(&pid_text, "VmHWM:"),
            )
        });
        Stopped {
            secs: self.started.elapsed().as_secs_f64(),
            machine_end: machine_ticks(),
            server_end: server,
            self_end: cpu_ticks(std::process::id()),
            named_end,
            probe: self,
        }
    }
}

/// A probe's window, ended.
pub struct Stopped {
    probe: Probe,
    secs: f64,
    machine_end: Option<(u64, u64)>,
    /// The server's CPU ticks, RSS and peak RSS (KiB).
    server_end: Option<(Option<u64>, Option<u64>, Option<u64>)>,
    self_end: Option<u64>,
    named_end: BTreeMap<u32, (String, u64)>,
}

impl Stopped {
    /// Counts CPU seconds that helper generator processes (`--processes`)
    /// spent in the window as the generator's.
    pub fn add_generator_cpu(&mut self, secs: f64) {
        self.probe.helpers_cpu += secs;
    }

    /// The readings, added to the report.
    pub fn report(self, report: &mut Report) {
        let Stopped {
            probe: this,
            secs,
            machine_end,
            server_end,
            self_end,
            named_end,
        } = self;
        let share = |cpu: f64| if secs > 0.0 { cpu / secs * 100.0 } else { 0.0 };
        report.section("processes (during the measured window)");
        report.item("window", format!("{secs:.1} s"));
        let mut json = Map::new();
        json.insert("windowSecs".into(), json!(round3(secs)));
        let machine = this.machine_start.zip(machine_end);
        // CPU seconds the readings below account for.
        let mut accounted = 0.0;
        if let Some(((busy0, all0), (busy1, all1))) = machine {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            let busy = (busy1 - busy0) as f64 / TICKS_PER_SEC;
            let percent = if all1 > all0 {
                (busy1 - busy0) as f64 / (all1 - all0) as f64 * 100.0
            } else {
                0.0
            };
            report.item(
                "machine CPU busy",
                format!("{percent:.0}% of {cores} cores ({busy:.2} CPU s)"),
            );
            json.insert(
                "machine".into(),
                json!({ "cores": cores, "busyPercent": round3(percent), "busyCpuSecs": round3(busy) }),
            );
        }
        if let Some((pid, (cpu_end, rss, hwm))) = this.server_pid.zip(server_end) {
            let cpu = match (this.server_start, cpu_end) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / TICKS_PER_SEC),
                _ => None,
            };
            let mib = |kib: Option<u64>| kib.map(|k| k as f64 / 1024.0);
            accounted += cpu.unwrap_or(0.0);
            report.item(
                "server CPU",
                match cpu {
                    Some(cpu) => format!("{cpu:.2} s ({:.0}% of one core)", share(cpu)),
                    None => format!("unknown (pid {pid} unreadable)"),
                },
            );
            report.item(
                "server RSS",
                match (mib(rss), mib(hwm)) {
                    (Some(rss), Some(hwm)) => format!("{rss:.1} MiB (peak {hwm:.1} MiB)"),
                    _ => "unknown".into(),
                },
            );
            json.insert(
                "server".into(),
                json!({
                    "pid": pid,
                    "cpuSecs": cpu.map(round3),
                    "cpuPercentOfOneCore": cpu.map(|c| round3(share(c))),
                    "rssMiB": mib(rss).map(round3),
                    "peakRssMiB": mib(hwm).map(round3),
                }),
            );
        }
        let own = match (this.self_start, self_end) {
            (Some(a), Some(b)) => {
                Some(b.saturating_sub(a) as f64 / TICKS_PER_SEC + this.helpers_cpu)
            }
            _ => None,
        };
        if let Some(cpu) = own {
            accounted += cpu;
            report.item(
                "generator CPU",
                format!("{cpu:.2} s ({:.0}% of one core)", share(cpu)),
            );
        }
        json.insert(
            "generator".into(),
            json!({ "cpuSecs": own.map(round3), "cpuPercentOfOneCore": own.map(|c| round3(share(c))) }),
        );
        if !this.names.is_empty() {
            // Processes that started during the window count from zero.
            let mut by_name: BTreeMap<String, (u64, usize)> =
                this.names.iter().map(|n| (n.clone(), (0, 0))).collect();
            for (pid, (name, now)) in named_end {
                let before = this.named_start.get(&pid).map_or(0, |(_, t)| *t);
                let entry = by_name.entry(name).or_default();
                entry.0 += now.saturating_sub(before);
                entry.1 += 1;
            }
            let mut watched = Map::new();
            for (name, (ticks, count)) in by_name {
                let cpu = ticks as f64 / TICKS_PER_SEC;
                accounted += cpu;
                report.item(
                    &format!("{name} CPU"),
                    format!(
                        "{cpu:.2} s ({:.0}% of one core; {count} processes)",
                        share(cpu)
                    ),
                );
                watched.insert(
                    name,
                    json!({ "cpuSecs": round3(cpu), "cpuPercentOfOneCore": round3(share(cpu)), "processes": count }),
                );
            }
            json.insert("watched".into(), Value::Object(watched));
        }
        if let Some(((busy0, _), (busy1, _))) = machine {
            // Other processes, and kernel work not charged to any process
            // (part of loopback networking): a large share means the
            // machine was not quiet.
            let rest = ((busy1 - busy0) as f64 / TICKS_PER_SEC - accounted).max(0.0);
            report.item(
                "everything else",
                format!("{rest:.2} s ({:.0}% of one core)", share(rest)),
            );
            json.insert("otherCpuSecs".into(), json!(round3(rest)));
        }
        report.set("processes", Value::Object(json));
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_netstat_field_is_read_from_its_group_s_two_lines() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\n\
                    TcpExt: 0 1242 1250\n\
                    IpExt: InNoRoutes ListenOverflows\n\
                    IpExt: 7 9\n";
        assert_eq!(
            netstat_field(text, "TcpExt:", "ListenOverflows"),
            Some(1242)
        );
        assert_eq!(netstat_field(text, "IpExt:", "ListenOverflows"), Some(9));
        assert_eq!(netstat_field(text, "TcpExt:", "Nothing"), None);
    }
    use super::*;

    #[test]
    fn reads_its_own_process() {
        assert!(cpu_ticks(std::process::id()).is_some());
        assert!(rss_kib(std::process::id()).is_some());
        assert!(open_files(std::process::id()).is_some_and(|n| n >= 3));
        assert!(open_files_limit(std::process::id()).is_some_and(|n| n > 0));
    }
}
