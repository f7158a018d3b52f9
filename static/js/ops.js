// ops.js: the cluster view and this node's metrics, polled. The cluster
// route is part of the server API, so it takes a service token: dev mode
// mints one here; in production this page belongs behind the operators'
// own login, or its figures in Prometheus and Grafana.
import { devToken, httpError, session } from "./souk.js";
import { mountHeader } from "./header.js";
import { $, el, showError } from "./ui.js";

const EVERY_MS = 2000;
await mountHeader({ fallback: "ada", live: false });
const me = session();
let serviceToken = null;
let previous = null; // { at, events: Map(key -> count) }

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
  serviceToken ??= (await devToken("ops-console", "service")).token;
  const res = await fetch("/api/v1/cluster", { headers: { authorization: `Bearer ${serviceToken}` } });
  if (res.status === 401) serviceToken = null; // expired: mint another next time
  if (!res.ok) throw await httpError(res);
  return res.json();
}

function drawNodes({ nodes }) {
  $("#nodes").replaceChildren(
    ...nodes.map((n) =>
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

function drawMetrics(samples) {
  const one = (name) => samples.filter((s) => s.name === name).reduce((sum, s) => sum + s.value, 0);
  const facts = [
    ["connections", one("souk_connections")],
    ["deliveries", one("souk_deliveries_total")],
    ["Redis ops", one("souk_redis_ops_total")],
    ["database ops", one("souk_db_ops_total")],
    ["disconnects", one("souk_disconnects_total")],
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
      const ok = keys.filter((k) => k.endsWith("|ok")).reduce((sum, k) => sum + rate(k), 0);
      const bad = keys.filter((k) => !k.endsWith("|ok")).reduce((sum, k) => sum + rate(k), 0);
      const total = keys.reduce((sum, k) => sum + events.get(k), 0);
      return el("tr", { dataset: { event: name } }, el("td", {}, name), el("td", {}, ok.toFixed(1)), el("td", {}, bad.toFixed(1)), el("td", {}, String(total)));
    }),
  );
  previous = { at: now, events };
}

async function poll() {
  try {
    const [nodes, text] = await Promise.all([cluster(), fetch("/metrics").then((r) => r.text())]);
    drawNodes(nodes);
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
