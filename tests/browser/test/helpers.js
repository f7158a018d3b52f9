// Shared helpers for the browser suite: a throw-away database seeded with
// the demo marketplace, a souk node in dev mode on a free port serving
// static/, and headless Debian Chromium driven by playwright-core.
//
// Environment (all optional):
//   SOUK_BIN             the souk binary (default: <repo>/target/debug/souk)
//   SOUK_TEST_PG_URL     Postgres server URL without a database part
//   SOUK_TEST_REDIS_URL  Redis URL
//   CHROMIUM             the browser (default /usr/bin/chromium)
//   SOUK_SCREENSHOTS     where screenshots go (default <repo>/target/browser-screenshots)
//   SOUK_TEST_VERBOSE=1  copy the node's log lines and the pages' console to stderr

import { spawn, execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { once } from "node:events";
import { before, after } from "node:test";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, "..", "..", "..");

const SOUK_BIN = process.env.SOUK_BIN || path.join(repoRoot, "target", "debug", "souk");
const PG_URL = (process.env.SOUK_TEST_PG_URL || "postgres://postgres@127.0.0.1:5432").replace(/\/+$/, "");
const REDIS_URL = process.env.SOUK_TEST_REDIS_URL || "redis://127.0.0.1:6379";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
export const SCREENSHOTS = process.env.SOUK_SCREENSHOTS || path.join(repoRoot, "target", "browser-screenshots");
const VERBOSE = process.env.SOUK_TEST_VERBOSE === "1";

/** Per-test options: nothing may hang the suite. */
export const T = { timeout: 60_000 };

function run(file, args, env = {}) {
  return new Promise((resolve, reject) => {
    execFile(file, args, { env: { ...process.env, ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) {
        err.message += `\n--- stdout\n${stdout}\n--- stderr\n${stderr}`;
        reject(err);
      } else {
        resolve({ stdout, stderr });
      }
    });
  });
}

const psql = (url, sql) =>
  run("psql", ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", url, "-c", sql], { PGCONNECT_TIMEOUT: "10" });

/** Runs SQL on the node's database; resolves with its rows as arrays of strings. */
export async function dbRows(ctx, sql) {
  const { stdout } = await psql(ctx.databaseUrl, sql);
  return stdout
    .split("\n")
    .filter((line) => line.length > 0)
    .map((line) => line.split("|"));
}

/**
 * A fresh database `souk_test_browser_*`, migrated and seeded by `souk
 * seed-demo`, and `souk serve` on it in dev mode. Every Redis key goes under
 * its own prefix, so a `scripts/dev` on the same Redis is left alone.
 * Dev mode signs with its fixed dev secret (it refuses any other) and
 * listens on loopback only.
 */
async function startMarketplace() {
  const name = `souk_test_browser_${randomBytes(6).toString("hex")}`;
  const databaseUrl = `${PG_URL}/${name}`;
  await psql(`${PG_URL}/postgres`, `CREATE DATABASE "${name}"`);
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("SOUK_")) env[k] = v;
  Object.assign(env, {
    SOUK_DEV: "1",
    SOUK_HTTP_ADDR: "127.0.0.1:0",
    SOUK_DATABASE_URL: databaseUrl,
    SOUK_REDIS_URL: REDIS_URL,
    SOUK_REDIS_PREFIX: `souk-browser-${randomBytes(4).toString("hex")}:`,
    SOUK_STATIC_DIR: path.join(repoRoot, "static"),
    SOUK_WORKERS: "2",
    SOUK_SHUTDOWN_GRACE_MS: "500",
  });
  const ctx = { databaseUrl, name, url: "", child: null, logs: [] };
  await run(SOUK_BIN, ["migrate"], env);
  await run(SOUK_BIN, ["seed-demo"], env);
  const child = spawn(SOUK_BIN, ["serve", "--no-migrate"], { env, stdio: ["ignore", "ignore", "pipe"] });
  ctx.child = child;
  ctx.url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`souk did not start\n${ctx.logs.join("\n")}`)), 20_000);
    let buffered = "";
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk) => {
      buffered += chunk;
      let nl;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        ctx.logs.push(line);
        if (VERBOSE) process.stderr.write(`[souk] ${line}\n`);
        const m = /listening on (127\.0\.0\.1:\d+) as node/.exec(line);
        if (m) {
          clearTimeout(timer);
          resolve(`http://${m[1]}`);
        }
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`souk exited (${code})\n${ctx.logs.join("\n")}`));
    });
  });
  return ctx;
}

async function stopMarketplace(ctx) {
  if (ctx.child && ctx.child.exitCode === null) {
    ctx.child.kill("SIGTERM");
    const killer = setTimeout(() => ctx.child.kill("SIGKILL"), 5_000);
    await once(ctx.child, "exit");
    clearTimeout(killer);
  }
  await psql(`${PG_URL}/postgres`, `DROP DATABASE IF EXISTS "${ctx.name}" WITH (FORCE)`);
}

/**
 * Registers before/after hooks for the calling file: one seeded node and one
 * Chromium for the whole file. Inside tests, `ctx.url` is the node and
 * `ctx.browser` the browser.
 */
export function useMarketplace() {
  const ctx = { url: "", browser: null, cspViolations: [] };
  before(
    async () => {
      mkdirSync(SCREENSHOTS, { recursive: true });
      Object.assign(ctx, await startMarketplace());
      ctx.browser = await chromium.launch({
        executablePath: CHROMIUM,
        // Without the background-networking flags Chromium waits on the
        // network this machine does not have.
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-quic",
          "--no-first-run",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
        ],
      });
    },
    { timeout: 90_000 },
  );
  after(
    async () => {
      await ctx.browser?.close();
      await stopMarketplace(ctx);
      // Every page runs under the front's Content-Security-Policy: anything
      // it had to block is a page that breaks in production.
      if (ctx.cspViolations.length > 0) {
        throw new Error(`Content-Security-Policy violations:\n${ctx.cspViolations.join("\n")}`);
      }
    },
    { timeout: 30_000 },
  );
  return ctx;
}

/**
 * A new browser context (its own storage: one person) with a page open at
 * `pagePath`, signed in as `user` through the header's user switcher.
 */
export async function openAs(ctx, user, pagePath) {
  const context = await ctx.browser.newContext({ viewport: { width: 1200, height: 860 } });
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  page.on("pageerror", (err) => process.stderr.write(`[page ${user}] ${err.stack ?? err}\n`));
  page.on("console", (msg) => {
    if (msg.type() === "error" && msg.text().includes("Content Security Policy")) {
      ctx.cspViolations.push(`${pagePath} as ${user}: ${msg.text()}`);
    }
  });
  if (VERBOSE) page.on("console", (msg) => process.stderr.write(`[console ${user}] ${msg.text()}\n`));
  await page.goto(`${ctx.url}/${pagePath}`);
  await switchUser(page, user);
  // Live pages wait to be online; polling pages (admin, ops) have no socket.
  await page.locator('#conn[data-state="online"], #conn[data-state="polling"]').waitFor();
  return page;
}

/** Picks `user` in the header's switcher (the page reloads as them). */
export async function switchUser(page, user) {
  const select = page.locator("#user-switcher");
  await select.waitFor();
  const value = await select.inputValue();
  if (value.startsWith(`${user}:`)) return;
  const option = await select.locator("option", { hasText: `${user} (` }).getAttribute("value");
  // The page reloads as the new user: wait until the old document is gone.
  await page.evaluate(() => (window.__beforeSwitch = true));
  await select.selectOption(option);
  await page.waitForFunction(() => !window.__beforeSwitch);
  await page.locator("#user-switcher").waitFor();
  const now = await page.locator("#user-switcher").inputValue();
  if (!now.startsWith(`${user}:`)) throw new Error(`switcher shows ${now}, wanted ${user}`);
}

/** Saves a full-page screenshot as <name>.png in the kept folder; returns its path. */
export async function screenshot(page, name) {
  const file = path.join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** A service token for the server API, minted by the node in dev mode. */
export async function serviceToken(ctx) {
  const res = await fetch(`${ctx.url}/dev/token`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ sub: "browser-suite", role: "service" }),
  });
  return (await res.json()).token;
}

/** Any server API call (§8); resolves with { status, body }. */
export async function api(ctx, method, apiPath, body) {
  const res = await fetch(`${ctx.url}${apiPath}`, {
    method,
    headers: { authorization: `Bearer ${await serviceToken(ctx)}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json().catch(() => null) };
}
