// scripts/dashboard-rules.mjs DASHBOARD.json: print a Prometheus rules file
// (JSON, which promtool reads as YAML) with one recording rule per panel
// query of a Grafana dashboard, so that `promtool check rules` parses the
// dashboard's PromQL as it parses the alert rules. Grafana's interval
// variables become 5m and every other variable `.*` (they only ever stand in
// label matchers). scripts/test runs it on deploy/grafana/souk.json.
import { readFileSync } from "node:fs";

const path = process.argv[2];
if (!path) {
  console.error("usage: node scripts/dashboard-rules.mjs DASHBOARD.json");
  process.exit(2);
}
const dashboard = JSON.parse(readFileSync(path, "utf8"));

const exprs = [];
(function walk(node, where) {
  if (Array.isArray(node)) {
    node.forEach((child, i) => walk(child, `${where}[${i}]`));
  } else if (node && typeof node === "object") {
    if (typeof node.expr === "string") {
      exprs.push({ where, expr: node.expr });
    }
    for (const [key, child] of Object.entries(node)) {
      walk(child, `${where}.${key}`);
    }
  }
})(dashboard, "$");

if (exprs.length === 0) {
  console.error(`${path}: no "expr" found`);
  process.exit(1);
}
const rules = exprs.map(({ where, expr }, i) => ({
  record: `dashboard:query_${i + 1}`,
  expr: expr
    .replace(/\$(__rate_interval|__interval|__range)\b|\$\{(__rate_interval|__interval|__range)\}/g, "5m")
    .replace(/\$\{?[A-Za-z_][A-Za-z0-9_]*\}?/g, ".*"),
  labels: { dashboard_query: where },
}));
console.log(JSON.stringify({ groups: [{ name: `dashboard ${path}`, rules }] }, null, 2));
