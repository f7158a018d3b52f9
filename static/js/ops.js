// ops.js: the cluster view and this node's metrics, polled every 2 s and
// kept in the page for the last minutes, drawn as small SVG charts.
// No service token: the cluster view is GET /api/v1/admin/cluster and the
// node's Prometheus text GET /api/v1/admin/metrics, both with the signed-in
// admin's own token (§8a; /metrics itself is kept to the backend's network
// by deploy/nginx.conf). Grafana has the same figures (deploy/grafana/souk.json).
import { httpError, read, session } from "./souk.js";
import { mountHeader } from "./header.js";
import { $, el, showError } from "./ui.js";

const EVERY_MS = 2000;
const KEEP_MS = 5 * 60_000;
const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#0f6e64", "#3f5fbf", "#a86400", "#b3261e", "#7a3fbf", "#6b7480"];
await mountHeader({ fallback: "ada", live: false });
const me = session();
let previous = null; // { at, events: Map(key -> count) }
/** The samples kept: [{ at, connections, events: Map(event -> total), deliveries, buckets: Map(le -> count) }]. */
const history = [];

/** Parses Prometheus text into [{ name, labels, value }]. */
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || line.startsWith("#")) continue;
    const labels = {};
    for (const [, k, v] of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v;
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

async function cluster() {
  if (me.role !== "admin") return null;
  return read("/api/v1/admin/cluster");
}

function drawNodes(view) {
  $("#nodes-note").hidden = view !== null;
  $("#nodes-note").textContent = "The cluster view is for admins.";
  if (!view) return;
  $("#nodes").replaceChildren(
    ...view.nodes.map((n) =>
      el(
        "tr",
        { dataset: { node: n.nodeId } },
        el("td", {}, n.nodeId),
        el("td", {}, n.address),
        el("td", { class: "connections" }, String(n.connections)),
        el("td", {}, String(n.rooms)),
        el("td", {}, new Date(n.updatedAt).toLocaleTimeString()),
      ),
    ),
  );
}

const sum = (samples, name) => samples.filter((s) => s.name === name).reduce((total, s) => total + s.value, 0);

function drawMetrics(samples) {
  const facts = [
    ["connections", sum(samples, "souk_connections")],
    ["deliveries", sum(samples, "souk_deliveries_total")],
    ["Redis ops", sum(samples, "souk_redis_ops_total")],
    ["database ops", sum(samples, "souk_db_ops_total")],
    ["disconnects", sum(samples, "souk_disconnects_total")],
  ];
  $("#gauges").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { dataset: { metric: k } }, String(v))]));
  const rooms = samples.filter((s) => s.name === "souk_rooms");
  $("#rooms").replaceChildren(...rooms.flatMap((s) => [el("dt", {}, s.labels.kind ?? "all"), el("dd", {}, String(s.value))]));

  const now = Date.now();
  const events = new Map();
  for (const s of samples.filter((s) => s.name === "souk_events_total")) {
    events.set(`${s.labels.event}|${s.labels.outcome}`, s.value);
  }
  const names = [...new Set([...events.keys()].map((k) => k.split("|")[0]))].sort();
  const rate = (key) => {
    if (!previous) return 0;
    return ((events.get(key) ?? 0) - (previous.events.get(key) ?? 0)) / ((now - previous.at) / 1000);
  };
  $("#events").replaceChildren(
    ...names.map((name) => {
      const keys = [...events.keys()].filter((k) => k.startsWith(`${name}|`));
      const ok = keys.filter((k) => k.endsWith("|ok")).reduce((total, k) => total + rate(k), 0);
      const bad = keys.filter((k) => !k.endsWith("|ok")).reduce((total, k) => total + rate(k), 0);
      const total = keys.reduce((all, k) => all + events.get(k), 0);
      return el("tr", { dataset: { event: name } }, el("td", {}, name), el("td", {}, ok.toFixed(1)), el("td", {}, bad.toFixed(1)), el("td", {}, String(total)));
    }),
  );
  previous = { at: now, events };
  remember(now, samples);
  drawCharts();
}

/** Keeps one sample of the figures the charts need, for KEEP_MS. */
function remember(at, samples) {
  const events = new Map();
  for (const s of samples.filter((s) => s.name === "souk_events_total")) {
    events.set(s.labels.event, (events.get(s.labels.event) ?? 0) + s.value);
  }
  const buckets = new Map();
  for (const s of samples.filter((s) => s.name === "souk_event_duration_seconds_bucket")) {
    const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    buckets.set(le, (buckets.get(le) ?? 0) + s.value);
  }
  history.push({ at, connections: sum(samples, "souk_connections"), events, deliveries: sum(samples, "souk_deliveries_total"), buckets });
  while (history.length > 0 && history[0].at < at - KEEP_MS) history.shift();
}

/**
 * The 0.99 quantile of the observations between two cumulative bucket
 * sets, as Prometheus's histogram_quantile does (linear within a bucket);
 * null when nothing was observed.
 */
export function p99(before, after) {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const count = (le) => (after.get(le) ?? 0) - (before.get(le) ?? 0);
  const total = count(Infinity);
  if (!(total > 0)) return null;
  const rank = 0.99 * total;
  let lower = 0;
  let below = 0;
  for (const le of bounds) {
    const here = count(le);
    if (here >= rank) {
      if (le === Infinity) return lower;
      return lower + ((le - lower) * (rank - below)) / Math.max(here - below, 1e-9);
    }
    lower = le;
    below = here;
  }
  return lower;
}

/** Per-second rates between consecutive samples: [[at, value]]. */
function rates(pick) {
  const points = [];
  for (let i = 1; i < history.length; i++) {
    const dt = (history[i].at - history[i - 1].at) / 1000;
    if (dt > 0) points.push([history[i].at, Math.max(0, (pick(history[i]) - pick(history[i - 1])) / dt)]);
  }
  return points;
}

function drawCharts() {
  const byEvent = new Map();
  for (const sample of history) for (const name of sample.events.keys()) byEvent.set(name, 0);
  const series = [...byEvent.keys()].map((name) => ({ name, points: rates((s) => s.events.get(name) ?? 0) }));
  // The busiest events over the window, so the chart stays readable.
  const busiest = series
    .map((s) => ({ ...s, weight: s.points.reduce((t, [, v]) => t + v, 0) }))
    .filter((s) => s.weight > 0)
    .sort((a, b) => b.weight - a.weight)
    .slice(0, COLOURS.length);
  const latency = [];
  for (let i = 1; i < history.length; i++) {
    const q = p99(history[i - 1].buckets, history[i].buckets);
    if (q !== null) latency.push([history[i].at, q * 1000]);
  }
  const charts = [
    { id: "connections", title: "Connections", unit: "", series: [{ name: "connections", points: history.map((s) => [s.at, s.connections]) }] },
    { id: "events", title: "Events/s by event", unit: "/s", series: busiest },
    { id: "deliveries", title: "Deliveries/s", unit: "/s", series: [{ name: "deliveries", points: rates((s) => s.deliveries) }] },
    { id: "latency", title: "Event latency p99", unit: " ms", series: [{ name: "p99", points: latency }] },
  ];
  $("#charts").replaceChildren(...charts.map(chart));
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

const fmt = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2).replace(/\.?0+$/, "") || "0");

/** A line chart of `series` over the kept window, as a <figure> with an SVG. */
function chart({ id, title, unit, series }) {
  const W = 300;
  const H = 100;
  const now = Date.now();
  const from = now - KEEP_MS;
  const all = series.flatMap((s) => s.points.map(([, v]) => v));
  const top = Math.max(1, ...all) * 1.1;
  const x = (at) => (((at - from) / KEEP_MS) * W).toFixed(1);
  const y = (v) => (H - (v / top) * H).toFixed(1);
  const latest = series.map((s) => `${s.name} ${fmt(s.points.at(-1)?.[1] ?? 0)}${unit}`).join(", ");
  const picture = svg("svg", {
    viewBox: `0 0 ${W} ${H}`,
    preserveAspectRatio: "none",
    role: "img",
    "aria-label": `${title} over the last ${KEEP_MS / 60_000} minutes; now ${latest || "no data"}`,
  });
  for (const frac of [0.25, 0.5, 0.75]) {
    picture.append(svg("line", { x1: 0, x2: W, y1: H * frac, y2: H * frac, stroke: "#dfe3e8", "stroke-width": 0.5 }));
  }
  series.forEach((s, i) => {
    if (s.points.length === 0) return;
    const d = s.points.map(([at, v]) => `${x(at)},${y(v)}`).join(" ");
    picture.append(
      svg("polyline", {
        points: d,
        fill: "none",
        stroke: COLOURS[i % COLOURS.length],
        "stroke-width": 1.5,
        "vector-effect": "non-scaling-stroke",
        "data-series": s.name,
        "data-points": s.points.length,
      }),
    );
    // The latest value as a dot, so a single sample shows too.
    const [at, v] = s.points.at(-1);
    picture.append(svg("circle", { cx: x(at), cy: y(v), r: 2.5, fill: COLOURS[i % COLOURS.length], "data-series": s.name }));
  });
  return el(
    "figure",
    { class: "chart", id: `chart-${id}`, dataset: { points: String(Math.max(0, ...series.map((s) => s.points.length))) } },
    el("figcaption", {}, el("span", {}, title), el("span", { class: "muted" }, `max ${fmt(top / 1.1)}${unit}`)),
    picture,
    el("div", { class: "axis muted", "aria-hidden": "true" }, el("span", {}, `${KEEP_MS / 60_000} min ago`), el("span", {}, "now")),
    el(
      "ul",
      { class: "legend" },
      series.map((s, i) =>
        el("li", { dataset: { series: s.name } }, el("span", { class: `swatch c${i % COLOURS.length}` }), `${s.name} ${fmt(s.points.at(-1)?.[1] ?? 0)}${unit}`),
      ),
    ),
  );
}

async function poll() {
  try {
    const [view, text] = await Promise.all([
      cluster(),
      fetch("/api/v1/admin/metrics", { headers: { authorization: `Bearer ${session()?.token}` } }).then(async (r) => {
        if (!r.ok) throw await httpError(r);
        return r.text();
      }),
    ]);
    drawNodes(view);
    drawMetrics(parseMetrics(text));
    $("#updated").textContent = new Date().toLocaleTimeString();
    showError($("#ops-error"), null);
  } catch (error) {
    showError($("#ops-error"), error);
  }
}

if (me) {
  await poll();
  setInterval(poll, EVERY_MS);
}
