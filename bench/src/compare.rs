//! `souk-bench report DIR...`: the side-by-side view of one scenario run
//! against several servers (`scripts/bench --compare`).
//!
//! Each DIR holds the JSON of one scenario's runs, one file per server:
//! `souk.json`, `node.json` (the Node Socket.IO peer), `limit.json` (the
//! bare reference), any of them but souk's may be missing; and
//! `meta.json` (`{command, date, commit, load}`, written by scripts/bench).
//! For each DIR the report takes the scenario's headline figures out of the
//! JSON and writes `report.md` (a markdown table: the servers, the ratios
//! souk / Node and souk / reference, the command and the date) and
//! `SCENARIO.svg` (a bar chart of the first figures, plain SVG), and prints
//! the markdown of every DIR.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{fail, Result};

pub const USAGE: &str = "\
usage: souk-bench report DIR... [--charts DIR] [--link-prefix PREFIX]

  DIR                 a folder of `scripts/bench --compare`: souk.json, node.json,
                      limit.json (any but souk.json may be missing), meta.json
  --charts DIR        also write each SCENARIO.svg into this folder (e.g. docs/bench)
  --link-prefix P     the markdown printed links its chart as P + SCENARIO.svg
                      (default: none; DIR/report.md always links SCENARIO.svg)

writes DIR/report.md and DIR/SCENARIO.svg for each DIR, prints the markdown
";

/// The servers a comparison may hold: file stem and name shown.
const SERVERS: [(&str, &str); 3] = [
    ("souk", "souk"),
    ("node", "Node peer"),
    ("limit", "bare reference"),
];

/// Bar colours, in the order of `SERVERS`.
const COLOURS: [&str; 3] = ["#d9480f", "#2b8a3e", "#868e96"];

/// How many of a scenario's figures (the first) the chart shows.
const CHARTED: usize = 2;

/// Whether more of a figure is better.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Better {
    Higher,
    Lower,
}

impl Better {
    fn words(self) -> &'static str {
        match self {
            Better::Higher => "higher is better",
            Better::Lower => "lower is better",
        }
    }
}

/// One headline figure: what it is and its value for each server.
#[derive(Debug)]
struct Figure {
    label: &'static str,
    unit: &'static str,
    better: Better,
    /// In the order of `SERVERS`.
    values: [Option<f64>; 3],
}

/// A figure's definition: how to read it out of one server's JSON.
struct Spec {
    label: &'static str,
    unit: &'static str,
    better: Better,
    read: fn(&Value) -> Option<f64>,
}

/// One DIR, read.
struct Comparison {
    scenario: String,
    /// In the order of `SERVERS`.
    runs: [Option<Value>; 3],
    meta: Value,
}

/// The number at `path` (object keys) in `json`.
fn at(json: &Value, path: &[&str]) -> Option<f64> {
    path.iter()
        .try_fold(json, |value, key| value.get(key))
        .and_then(Value::as_f64)
}

/// Microseconds of CPU per unit: `cpu_secs` over `count`.
fn micros_per(cpu_secs: Option<f64>, count: Option<f64>) -> Option<f64> {
    match (cpu_secs, count) {
        (Some(cpu), Some(n)) if n > 0.0 => Some(cpu * 1e6 / n),
        _ => None,
    }
}

/// The server's CPU seconds in the measured window.
fn server_cpu(json: &Value) -> Option<f64> {
    at(json, &["processes", "server", "cpuSecs"])
}

/// The server's, Redis's and Postgres's CPU seconds in the measured window
/// (the last two when watched; the bare reference uses neither).
fn stack_cpu(json: &Value) -> Option<f64> {
    let watched = ["redis-server", "postgres"]
        .iter()
        .filter_map(|name| at(json, &["processes", "watched", name, "cpuSecs"]))
        .sum::<f64>();
    server_cpu(json).map(|cpu| cpu + watched)
}

fn spec(
    label: &'static str,
    unit: &'static str,
    better: Better,
    read: fn(&Value) -> Option<f64>,
) -> Spec {
    Spec {
        label,
        unit,
        better,
        read,
    }
}

/// The headline figures of `scenario`, the charted ones first.
fn specs(scenario: &str) -> Result<Vec<Spec>> {
    use Better::{Higher, Lower};
    let specs = match scenario {
        "idle" => vec![
            spec("RSS per connection", "KiB", Lower, |j| {
                at(j, &["server", "rssPerConnectionKiB"])
            }),
            spec("connects/s", "", Higher, |j| {
                at(j, &["connections", "connectPerSec"])
            }),
            spec("connections held", "", Higher, |j| {
                at(j, &["connections", "connected"])
            }),
        ],
        "fanout" => vec![
            spec("deliveries/s", "", Higher, |j| {
                at(j, &["deliveries", "perSec"])
            }),
            spec("server CPU per delivery", "µs", Lower, |j| {
                micros_per(server_cpu(j), at(j, &["deliveries", "delivered"]))
            }),
            spec("delivery p99", "ms", Lower, |j| {
                at(j, &["deliveries", "latencyMs", "p99"])
            }),
        ],
        "chat" => vec![
            spec("acked messages/s", "", Higher, |j| {
                at(j, &["messages", "ackedPerSec"])
            }),
            spec("ack p99", "ms", Lower, |j| {
                at(j, &["messages", "ackLatencyMs", "p99"])
            }),
            spec("server CPU per message", "µs", Lower, |j| {
                micros_per(server_cpu(j), at(j, &["messages", "ackedInWindow"]))
            }),
            spec(
                "server + Redis + Postgres CPU per message",
                "µs",
                Lower,
                |j| micros_per(stack_cpu(j), at(j, &["messages", "ackedInWindow"])),
            ),
            spec("acked but missing from history", "", Lower, |j| {
                at(j, &["persisted", "missing"])
            }),
        ],
        "auction" => vec![
            spec("answered bids/s", "", Higher, |j| {
                at(j, &["bids", "allPerSec"])
            }),
            spec("ack p99", "ms", Lower, |j| {
                at(j, &["ackLatencyMs", "all", "p99"])
            }),
            spec("accepted bids/s", "", Higher, |j| {
                at(j, &["bids", "acceptedPerSec"])
            }),
            spec("server CPU per bid", "µs", Lower, |j| {
                micros_per(server_cpu(j), at(j, &["bids", "answered"]))
            }),
            spec("server + Redis + Postgres CPU per bid", "µs", Lower, |j| {
                micros_per(stack_cpu(j), at(j, &["bids", "answered"]))
            }),
        ],
        other => {
            return fail(format!(
                "report: no headline figures for scenario {other:?} (idle, fanout, chat, auction)"
            ))
        }
    };
    Ok(specs)
}

fn figures(comparison: &Comparison) -> Result<Vec<Figure>> {
    Ok(specs(&comparison.scenario)?
        .into_iter()
        .map(|spec| Figure {
            label: spec.label,
            unit: spec.unit,
            better: spec.better,
            values: [0, 1, 2].map(|i| comparison.runs[i].as_ref().and_then(spec.read)),
        })
        .collect())
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display()).into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => fail(format!("cannot read {}: {e}", path.display())),
    }
}

fn load(dir: &Path) -> Result<Comparison> {
    let mut runs = [None, None, None];
    for (slot, (stem, _)) in runs.iter_mut().zip(SERVERS) {
        *slot = read_json(&dir.join(format!("{stem}.json")))?;
    }
    let Some(souk) = &runs[0] else {
        return fail(format!("{}: no souk.json", dir.display()));
    };
    let scenario = souk["scenario"]
        .as_str()
        .ok_or_else(|| format!("{}/souk.json names no scenario", dir.display()))?
        .to_owned();
    for ((stem, _), run) in SERVERS.iter().zip(&runs).skip(1) {
        if let Some(other) = run.as_ref().and_then(|r| r["scenario"].as_str()) {
            if other != scenario {
                return fail(format!(
                    "{}: {stem}.json is a {other} run, souk.json a {scenario} run",
                    dir.display()
                ));
            }
        }
    }
    let meta = read_json(&dir.join("meta.json"))?.unwrap_or(Value::Null);
    Ok(Comparison {
        scenario,
        runs,
        meta,
    })
}

/// A figure as people read it: thousands grouped, three significant
/// digits below 1,000.
fn number(x: f64) -> String {
    let magnitude = x.abs();
    if magnitude >= 999.5 {
        let digits = format!("{:.0}", magnitude);
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if x < 0.0 {
            grouped.insert(0, '-');
        }
        grouped
    } else if magnitude >= 99.95 || magnitude == 0.0 {
        format!("{x:.0}")
    } else if magnitude >= 9.995 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn with_unit(x: f64, unit: &str) -> String {
    if unit.is_empty() {
        number(x)
    } else {
        format!("{} {unit}", number(x))
    }
}

/// souk's value over another's, as `2.23×`.
fn ratio(souk: Option<f64>, other: Option<f64>) -> String {
    match (souk, other) {
        (Some(a), Some(b)) if b != 0.0 => format!("{}×", number(a / b)),
        _ => "—".into(),
    }
}

fn meta_text(meta: &Value, key: &str) -> Option<String> {
    meta[key].as_str().map(str::to_owned)
}

/// The markdown section of one comparison: a table, the command and the
/// date, and the chart linked as `chart`.
fn markdown(comparison: &Comparison, figures: &[Figure], chart: &str) -> String {
    let scenario = &comparison.scenario;
    let mut out = format!("### {scenario}\n\n");
    out.push_str(
        "| figure | souk | Node peer | bare reference | souk / Node | souk / reference |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|\n");
    for figure in figures {
        let cells: Vec<String> = figure
            .values
            .iter()
            .map(|v| v.map_or("—".into(), |v| with_unit(v, figure.unit)))
            .collect();
        let _ = writeln!(
            out,
            "| {} ({}) | {} | {} | {} | {} | {} |",
            figure.label,
            figure.better.words(),
            cells[0],
            cells[1],
            cells[2],
            ratio(figure.values[0], figure.values[1]),
            ratio(figure.values[0], figure.values[2]),
        );
    }
    out.push('\n');
    let meta = &comparison.meta;
    if let Some(command) = meta_text(meta, "command") {
        let _ = writeln!(out, "Command: `{command}`  ");
    }
    let mut when = Vec::new();
    if let Some(date) = meta_text(meta, "date") {
        when.push(format!("date {date}"));
    }
    if let Some(commit) = meta_text(meta, "commit") {
        when.push(format!("commit {commit}"));
    }
    if let Some(load) = meta_text(meta, "load") {
        when.push(format!("load average before the runs {load}"));
    }
    if !when.is_empty() {
        let _ = writeln!(out, "{}  ", when.join(", "));
    }
    let missing: Vec<&str> = SERVERS
        .iter()
        .zip(&comparison.runs)
        .filter(|(_, run)| run.is_none())
        .map(|(server, _)| server.1)
        .collect();
    if !missing.is_empty() {
        let why = if comparison.runs[2].is_none() && !matches!(scenario.as_str(), "fanout" | "idle")
        {
            " (the bare reference serves only fanout and idle)"
        } else {
            ""
        };
        let _ = writeln!(out, "Not run: {}{why}.  ", missing.join(", "));
    }
    let _ = writeln!(
        out,
        "\n![{scenario}: souk, Node peer and bare reference side by side]({chart})"
    );
    out
}

/// Text made safe inside SVG (XML) elements and attributes.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A bar chart of the first `CHARTED` figures, one panel each, one bar per
/// server that ran.
fn svg(comparison: &Comparison, figures: &[Figure]) -> String {
    const PANEL_W: f64 = 360.0;
    const LABEL_W: f64 = 110.0;
    const BAR_MAX: f64 = 150.0;
    const BAR_H: f64 = 22.0;
    const GAP: f64 = 8.0;
    const TOP: f64 = 74.0;
    let charted: Vec<&Figure> = figures.iter().take(CHARTED).collect();
    let servers: Vec<usize> = (0..SERVERS.len())
        .filter(|&i| comparison.runs[i].is_some())
        .collect();
    let width = PANEL_W * charted.len().max(1) as f64;
    let height = TOP + servers.len() as f64 * (BAR_H + GAP) + 30.0;
    let title = format!("souk-bench {}: side by side", comparison.scenario);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" font-size="13">"#
    );
    let _ = writeln!(out, "<title>{}</title>", escape(&title));
    let _ = writeln!(
        out,
        r##"<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        out,
        r##"<text x="10" y="20" font-size="15" font-weight="bold" fill="#212529">{}</text>"##,
        escape(&title)
    );
    let subtitle: Vec<String> = ["date", "command"]
        .iter()
        .filter_map(|key| meta_text(&comparison.meta, key))
        .collect();
    if !subtitle.is_empty() {
        let _ = writeln!(
            out,
            r##"<text x="10" y="36" font-size="11" fill="#495057">{}</text>"##,
            escape(&subtitle.join(" · "))
        );
    }
    for (panel, figure) in charted.iter().enumerate() {
        let x0 = panel as f64 * PANEL_W + 10.0;
        let heading = if figure.unit.is_empty() {
            figure.label.to_owned()
        } else {
            format!("{} ({})", figure.label, figure.unit)
        };
        let _ = writeln!(
            out,
            r##"<text x="{x0}" y="58" font-weight="bold" fill="#212529">{}</text>"##,
            escape(&heading)
        );
        let _ = writeln!(
            out,
            r##"<text x="{x0}" y="{}" font-size="11" fill="#495057">{}</text>"##,
            height - 10.0,
            figure.better.words()
        );
        let top = figure
            .values
            .iter()
            .flatten()
            .copied()
            .fold(0.0f64, f64::max);
        for (row, &server) in servers.iter().enumerate() {
            let y = TOP + row as f64 * (BAR_H + GAP);
            let _ = writeln!(
                out,
                r##"<text x="{x0}" y="{}" fill="#212529">{}</text>"##,
                y + BAR_H * 0.7,
                escape(SERVERS[server].1)
            );
            let (bar, text) = match figure.values[server] {
                Some(v) if top > 0.0 => ((v / top * BAR_MAX).max(1.0), with_unit(v, figure.unit)),
                Some(v) => (1.0, with_unit(v, figure.unit)),
                None => (0.0, "no figure".to_owned()),
            };
            let _ = writeln!(
                out,
                r#"<rect x="{}" y="{y}" width="{bar:.1}" height="{BAR_H}" fill="{}"/>"#,
                x0 + LABEL_W,
                COLOURS[server]
            );
            let _ = writeln!(
                out,
                r##"<text x="{:.1}" y="{}" fill="#212529">{}</text>"##,
                x0 + LABEL_W + bar + 6.0,
                y + BAR_H * 0.7,
                escape(&text)
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

/// What `report` was asked.
struct Args {
    dirs: Vec<PathBuf>,
    charts: Option<PathBuf>,
    link_prefix: String,
}

fn parse(args: &[String]) -> Result<Args> {
    let mut parsed = Args {
        dirs: Vec::new(),
        charts: None,
        link_prefix: String::new(),
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--charts" => {
                parsed.charts = Some(iter.next().ok_or("--charts needs a folder")?.into());
            }
            "--link-prefix" => {
                parsed.link_prefix = iter.next().ok_or("--link-prefix needs a value")?.clone();
            }
            other if other.starts_with("--") => {
                return fail(format!("report: unknown option {other}\n{USAGE}"))
            }
            dir => parsed.dirs.push(dir.into()),
        }
    }
    if parsed.dirs.is_empty() {
        return fail(format!("report: no DIR\n{USAGE}"));
    }
    Ok(parsed)
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()).into())
}

/// `souk-bench report DIR...`: writes each DIR's report.md and chart and
/// answers the markdown of them all.
pub fn run(args: &[String]) -> Result<String> {
    let args = parse(args)?;
    let mut printed = String::new();
    for dir in &args.dirs {
        let comparison = load(dir)?;
        let figures = figures(&comparison)?;
        let chart_name = format!("{}.svg", comparison.scenario);
        let chart = svg(&comparison, &figures);
        write(&dir.join(&chart_name), &chart)?;
        if let Some(charts) = &args.charts {
            std::fs::create_dir_all(charts)
                .map_err(|e| format!("cannot make {}: {e}", charts.display()))?;
            write(&charts.join(&chart_name), &chart)?;
        }
        write(
            &dir.join("report.md"),
            &markdown(&comparison, &figures, &chart_name),
        )?;
        if !printed.is_empty() {
            printed.push('\n');
        }
        printed.push_str(&markdown(
            &comparison,
            &figures,
            &format!("{}{chart_name}", args.link_prefix),
        ));
    }
    Ok(printed)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fanout(per_sec: f64, delivered: u64, cpu: f64, p99: f64) -> Value {
        json!({
            "scenario": "fanout",
            "deliveries": { "perSec": per_sec, "delivered": delivered, "latencyMs": { "p99": p99 } },
            "processes": { "server": { "cpuSecs": cpu } },
        })
    }

    /// A folder under the system's temporary one, fresh for each test.
    fn folder(name: &str) -> Result<PathBuf> {
        let dir =
            std::env::temp_dir().join(format!("souk-bench-report-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    fn put(dir: &Path, name: &str, json: &Value) -> Result<()> {
        std::fs::write(dir.join(name), json.to_string())?;
        Ok(())
    }

    /// Every tag opened is closed, in order (a tiny XML well-formedness
    /// check, enough for what `svg` writes).
    fn balanced(svg: &str) -> bool {
        let mut open: Vec<String> = Vec::new();
        for piece in svg.split('<').skip(1) {
            let tag = piece.split('>').next().unwrap_or_default();
            if let Some(name) = tag.strip_prefix('/') {
                if open.pop().as_deref() != Some(name.trim()) {
                    return false;
                }
            } else if !tag.ends_with('/') {
                open.push(tag.split_whitespace().next().unwrap_or_default().to_owned());
            }
        }
        open.is_empty()
    }

    #[test]
    fn fanout_table_and_chart_hold_the_figures_and_ratios() -> Result<()> {
        let dir = folder("fanout")?;
        put(&dir, "souk.json", &fanout(90_300.0, 903_000, 11.65, 41.2))?;
        put(&dir, "node.json", &fanout(40_500.0, 405_000, 10.37, 230.0))?;
        put(
            &dir,
            "limit.json",
            &fanout(171_100.0, 1_711_000, 9.41, 12.5),
        )?;
        put(
            &dir,
            "meta.json",
            &json!({ "command": "scripts/bench --compare fanout --rooms 10", "date": "2026-12-03T18:40:00Z", "commit": "abc1234" }),
        )?;
        let printed = run(&[
            dir.display().to_string(),
            "--link-prefix".into(),
            "bench/".into(),
        ])?;
        let table = std::fs::read_to_string(dir.join("report.md"))?;
        for text in [&printed, &table] {
            assert!(text.contains("| deliveries/s (higher is better) | 90,300 | 40,500 | 171,100 | 2.23× | 0.53× |"), "{text}");
            // 11.65 s / 903,000 = 12.9 µs; 10.37 / 405,000 = 25.6; 9.41 / 1,711,000 = 5.50.
            assert!(text.contains("| server CPU per delivery (lower is better) | 12.9 µs | 25.6 µs | 5.50 µs | 0.50× | 2.35× |"), "{text}");
            assert!(text.contains("`scripts/bench --compare fanout --rooms 10`"));
            assert!(text.contains("2026-12-03T18:40:00Z"));
            assert!(text.contains("abc1234"));
        }
        assert!(printed.contains("](bench/fanout.svg)"));
        assert!(table.contains("](fanout.svg)"));
        let chart = std::fs::read_to_string(dir.join("fanout.svg"))?;
        assert!(chart.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(balanced(&chart), "{chart}");
        for text in [
            "90,300", "40,500", "171,100", "12.9 µs", "25.6 µs", "5.50 µs",
        ] {
            assert!(chart.contains(text), "{text} not in the chart");
        }
        for name in ["souk", "Node peer", "bare reference"] {
            assert!(chart.contains(&format!(">{name}</text>")), "{name}");
        }
        // Only the charted figures: not the p99.
        assert!(!chart.contains("delivery p99"));
        // The longest bar is the bare reference's deliveries/s.
        assert!(chart.contains(r#"width="150.0""#));
        assert!(chart.contains("2026-12-03T18:40:00Z · scripts/bench --compare fanout --rooms 10"));
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[test]
    fn chat_without_a_reference_shows_dashes_and_cpu_per_message() -> Result<()> {
        let dir = folder("chat")?;
        let chat = |acked: f64, in_window: u64, p99: f64, cpu: f64, pg: f64| {
            json!({
                "scenario": "chat",
                "messages": { "ackedPerSec": acked, "ackedInWindow": in_window, "ackLatencyMs": { "p99": p99 } },
                "persisted": { "missing": 0 },
                "processes": {
                    "server": { "cpuSecs": cpu },
                    "watched": { "postgres": { "cpuSecs": pg }, "redis-server": { "cpuSecs": 1.0 } },
                },
            })
        };
        put(&dir, "souk.json", &chat(2_992.0, 29_920, 191.0, 7.39, 3.35))?;
        put(&dir, "node.json", &chat(1_155.0, 11_550, 8_700.0, 9.0, 2.0))?;
        let printed = run(&[dir.display().to_string()])?;
        assert!(
            printed.contains(
                "| acked messages/s (higher is better) | 2,992 | 1,155 | — | 2.59× | — |"
            ),
            "{printed}"
        );
        assert!(
            printed.contains("| ack p99 (lower is better) | 191 ms | 8,700 ms | — | 0.02× | — |"),
            "{printed}"
        );
        // 7.39 s / 29,920 = 247 µs; with Redis 1.0 and Postgres 3.35: 392.
        assert!(
            printed.contains("| server CPU per message (lower is better) | 247 µs |"),
            "{printed}"
        );
        assert!(
            printed.contains(
                "| server + Redis + Postgres CPU per message (lower is better) | 392 µs |"
            ),
            "{printed}"
        );
        assert!(printed
            .contains("Not run: bare reference (the bare reference serves only fanout and idle)."));
        let chart = std::fs::read_to_string(dir.join("chat.svg"))?;
        assert!(balanced(&chart));
        assert!(chart.contains("2,992") && chart.contains("8,700 ms"));
        assert!(!chart.contains("bare reference"));
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[test]
    fn idle_and_auction_read_their_headline_figures() -> Result<()> {
        let idle = json!({
            "scenario": "idle",
            "server": { "rssPerConnectionKiB": 20.06 },
            "connections": { "connectPerSec": 3262.4, "connected": 5000 },
        });
        let auction = json!({
            "scenario": "auction",
            "bids": { "allPerSec": 7_872.0, "acceptedPerSec": 7_000.0, "answered": 78_720 },
            "ackLatencyMs": { "all": { "p99": 35.5 } },
            "processes": { "server": { "cpuSecs": 9.37 } },
        });
        for (json, wanted) in [
            (
                &idle,
                [
                    "| RSS per connection (lower is better) | 20.1 KiB |",
                    "| connects/s (higher is better) | 3,262 |",
                ],
            ),
            (
                &auction,
                [
                    "| answered bids/s (higher is better) | 7,872 |",
                    "| server CPU per bid (lower is better) | 119 µs |",
                ],
            ),
        ] {
            let scenario = json["scenario"].as_str().unwrap_or_default().to_owned();
            let comparison = Comparison {
                scenario,
                runs: [Some(json.clone()), None, None],
                meta: Value::Null,
            };
            let table = markdown(&comparison, &figures(&comparison)?, "x.svg");
            for row in wanted {
                assert!(table.contains(row), "{row} not in {table}");
            }
        }
        Ok(())
    }

    fn error_of(result: Result<String>) -> String {
        result.err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn refuses_what_it_cannot_compare() -> Result<()> {
        let dir = folder("refuse")?;
        assert!(error_of(run(&[dir.display().to_string()])).contains("no souk.json"));
        put(&dir, "souk.json", &json!({ "scenario": "drops" }))?;
        assert!(error_of(run(&[dir.display().to_string()])).contains("no headline figures"));
        put(&dir, "souk.json", &fanout(1.0, 1, 1.0, 1.0))?;
        put(&dir, "node.json", &json!({ "scenario": "chat" }))?;
        assert!(error_of(run(&[dir.display().to_string()])).contains("a chat run"));
        assert!(run(&[]).is_err());
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(number(171_100.4), "171,100");
        assert_eq!(number(1_000.0), "1,000");
        assert_eq!(number(999.4), "999");
        assert_eq!(number(12.94), "12.9");
        assert_eq!(number(5.5), "5.50");
        assert_eq!(number(0.0), "0");
        assert_eq!(ratio(Some(1.0), Some(0.0)), "—");
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
