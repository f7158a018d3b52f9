// Shared helpers for the browser suite: a throw-away database seeded with
// the demo marketplace, a souk node on a free port serving static/ (in dev
// mode, or as in production with tokens the test signs with its own
// secret), and headless Debian Chromium driven by playwright-core.
//
// Environment (all optional):
//   SOUK_BIN             the souk binary (default: <repo>/target/debug/souk)
//   SOUK_TEST_PG_URL     Postgres server URL without a database part
//   SOUK_TEST_REDIS_URL  Redis URL
//   CHROMIUM             the browser (default /usr/bin/chromium)
//   SOUK_SCREENSHOTS     where screenshots go (default <repo>/target/browser-screenshots)
//   SOUK_TEST_VERBOSE=1  copy the node's log lines and the pages' console to stderr

import { spawn, execFile } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { once } from "node:events";
import { before, after, describe } from "node:test";
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

/** The demo users `souk seed-demo` writes data for, and their roles. */
export const ROLES = { ana: "buyer", ben: "buyer", sam: "seller", ada: "admin" };

/**
 * A fresh database `souk_test_browser_*`, migrated and seeded by `souk
 * seed-demo`, and `souk serve` on it. Every Redis key goes under its own
 * prefix, so a `scripts/dev` on the same Redis is left alone. In dev mode
 * the node signs with its fixed dev secret (it refuses any other) and
 * listens on loopback only; otherwise it runs as in production, without
 * SOUK_DEV, with a random HS256 secret that only this test knows.
 */
async function startMarketplace({ dev }) {
  const name = `souk_test_browser_${randomBytes(6).toString("hex")}`;
  const databaseUrl = `${PG_URL}/${name}`;
  await psql(`${PG_URL}/postgres`, `CREATE DATABASE "${name}"`);
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("SOUK_")) env[k] = v;
  const secret = dev ? null : randomBytes(32).toString("hex");
  Object.assign(env, {
    SOUK_HTTP_ADDR: "127.0.0.1:0",
    SOUK_DATABASE_URL: databaseUrl,
    SOUK_REDIS_URL: REDIS_URL,
    SOUK_REDIS_PREFIX: `souk-browser-${randomBytes(4).toString("hex")}:`,
    SOUK_STATIC_DIR: path.join(repoRoot, "static"),
    SOUK_WORKERS: "2",
    SOUK_SHUTDOWN_GRACE_MS: "500",
  });
  if (dev) env.SOUK_DEV = "1";
  else env.SOUK_JWT_SECRET = secret;
  const ctx = { databaseUrl, name, url: "", child: null, logs: [], dev, secret };
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
 * Registers before/after hooks for the calling file: one seeded node (in
 * dev mode unless `{ dev: false }`) and one Chromium for the whole file.
 * Inside tests, `ctx.url` is the node and `ctx.browser` the browser.
 */
export function useMarketplace({ dev = true } = {}) {
  const ctx = { url: "", browser: null, cspViolations: [] };
  before(
    async () => {
      mkdirSync(SCREENSHOTS, { recursive: true });
      Object.assign(ctx, await startMarketplace({ dev }));
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
 * Runs `body(ctx, tag)` twice, each in a suite with its own node: once in
 * dev mode (tag "") and once as in production, without SOUK_DEV (tag
 * "-prod", for screenshot names), so every main journey is proven on both.
 */
export function inBothModes(body) {
  for (const dev of [true, false]) {
    describe(dev ? "dev mode" : "production (no SOUK_DEV)", () => body(useMarketplace({ dev }), dev ? "" : "-prod"));
  }
}

/** Phone width, for the screenshots and layout checks at 390 px. */
export const PHONE = { width: 390, height: 844 };

/**
 * A new browser context (its own storage: one person) with a page open at
 * `pagePath`, signed in as `user`: in dev mode through the header's user
 * switcher; otherwise as a marketplace's login would hand over, with a
 * token the test signs, in the address (`#token=…`).
 */
export async function openAs(ctx, user, pagePath, { viewport = { width: 1200, height: 860 } } = {}) {
  const context = await ctx.browser.newContext({ viewport });
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  page.on("pageerror", (err) => process.stderr.write(`[page ${user}] ${err.stack ?? err}\n`));
  page.on("console", (msg) => {
    if (msg.type() === "error" && msg.text().includes("Content Security Policy")) {
      ctx.cspViolations.push(`${pagePath} as ${user}: ${msg.text()}`);
    }
  });
  if (VERBOSE) page.on("console", (msg) => process.stderr.write(`[console ${user}] ${msg.text()}\n`));
  if (ctx.dev) {
    await page.goto(`${ctx.url}/${pagePath}`);
    await switchUser(page, user);
  } else {
    await page.goto(`${ctx.url}/${pagePath}#token=${userToken(ctx, user)}`);
    await page.locator("#who-am-i", { hasText: `signed in as ${user} ` }).waitFor();
  }
  // Live pages wait to be online; polling pages (ops) have no socket.
  await page.locator('#conn[data-state="online"], #conn[data-state="polling"]').waitFor();
  return page;
}

/** An HS256 JWT signed with the non-dev node's secret. */
export function signToken(ctx, claims) {
  if (!ctx.secret) throw new Error("signToken: this node is in dev mode");
  const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const body = `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}`;
  const signature = createHmac("sha256", ctx.secret).update(body).digest("base64url");
  return `${body}.${signature}`;
}

/** A user token for a demo user, as the marketplace's own login would issue it. */
export function userToken(ctx, user, ttlSecs = 3600) {
  const now = Math.floor(Date.now() / 1000);
  return signToken(ctx, { sub: user, role: ROLES[user] ?? "buyer", iat: now, exp: now + ttlSecs });
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

/**
 * Saves a full-page screenshot as <name>.png, and one at phone width
 * (390 px) as <name>-390.png, in the kept folder; returns the first path.
 * At phone width nothing may stick out sideways: a page that needs
 * horizontal scrolling there fails the test.
 */
export async function screenshot(page, name) {
  const file = path.join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  const wide = page.viewportSize();
  if (wide.width !== PHONE.width) await page.setViewportSize(PHONE);
  try {
    await page.screenshot({ path: path.join(SCREENSHOTS, `${name}-390.png`), fullPage: true });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 1) throw new Error(`${name}: ${overflow} px wider than a ${PHONE.width} px phone screen`);
  } finally {
    if (wide.width !== PHONE.width) await page.setViewportSize(wide);
  }
  return file;
}

/**
 * Every visible control (input, select, textarea, button, link) of the
 * page without an accessible name a screen reader can read: a label (for=
 * or wrapping), aria-label, aria-labelledby, title, or for buttons and links
 * their text. Placeholders do not count. Resolves with descriptions.
 */
export async function unnamedControls(page) {
  return page.evaluate(() => {
    const visible = (node) => node.getClientRects().length > 0 && getComputedStyle(node).visibility !== "hidden";
    const text = (node) => (node?.textContent ?? "").replace(/\s+/g, " ").trim();
    const nameOf = (node) => {
      const by = node.getAttribute("aria-labelledby");
      if (by) return by.split(/\s+/).map((id) => text(document.getElementById(id))).join(" ").trim();
      if (node.getAttribute("aria-label")?.trim()) return node.getAttribute("aria-label").trim();
      const labels = [...(node.labels ?? [])].map(text).join(" ").trim();
      if (labels) return labels;
      if (["BUTTON", "A"].includes(node.tagName) && text(node)) return text(node);
      return node.getAttribute("title")?.trim() ?? "";
    };
    return [...document.querySelectorAll("input:not([type=hidden]), select, textarea, button, a[href]")]
      .filter(visible)
      .filter((node) => !nameOf(node))
      .map((node) => node.outerHTML.slice(0, 120));
  });
}

/** A service token for the server API: minted by a dev node, else signed by the test. */
export async function serviceToken(ctx) {
  if (!ctx.dev) {
    const now = Math.floor(Date.now() / 1000);
    return signToken(ctx, { sub: "browser-suite", role: "service", iat: now, exp: now + 600 });
  }
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
