// Shared helpers for the official-client suite: a throw-away database, a souk
// node on a free port, JWT minting, and bounded waits around socket.io-client.
//
// Environment (all optional):
//   SOUK_BIN             the souk binary (default: <repo>/target/debug/souk)
//   SOUK_TEST_PG_URL     Postgres server URL without a database part
//   SOUK_TEST_REDIS_URL  Redis URL
//   SOUK_TEST_VERBOSE=1  copy every node's log lines to this process's stderr

import { spawn, execFile } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { fileURLToPath, pathToFileURL } from "node:url";
import path from "node:path";
import { once } from "node:events";
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, "..", "..", "..");

export const SOUK_BIN = process.env.SOUK_BIN || path.join(repoRoot, "target", "debug", "souk");
export const PG_URL = (process.env.SOUK_TEST_PG_URL || "postgres://postgres@127.0.0.1:5432").replace(/\/+$/, "");
export const REDIS_URL = process.env.SOUK_TEST_REDIS_URL || "redis://127.0.0.1:6379";
export const JWT_SECRET = `client-suite-${randomBytes(12).toString("hex")}`;
const VERBOSE = process.env.SOUK_TEST_VERBOSE === "1";

/** Per-test options: nothing may hang the suite. */
export const T = { timeout: 20_000 };

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A fresh id matching the contract's id syntax (1-64 of [A-Za-z0-9_-]). */
export function randomId(prefix = "u") {
  return `${prefix}_${randomBytes(6).toString("hex")}`;
}

// ------------------------------------------------------------------ commands

function run(file, args, { env = {}, timeoutMs = 30_000 } = {}) {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 8 << 20 },
      (err, stdout, stderr) => {
        if (err) {
          err.message += `\n--- stdout\n${stdout}\n--- stderr\n${stderr}`;
          reject(err);
        } else {
          resolve({ stdout, stderr });
        }
      },
    );
  });
}

function psql(sql) {
  return run("psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", `${PG_URL}/postgres`, "-c", sql], {
    env: { PGCONNECT_TIMEOUT: "10" },
  });
}

// ------------------------------------------------------------------ database

/** Creates `souk_test_client_<random>` and applies souk's migrations to it. */
export async function createDatabase() {
  const name = `souk_test_client_${randomBytes(6).toString("hex")}`;
  if (!/^souk_test_client_[0-9a-f]+$/.test(name)) throw new Error(`bad db name ${name}`);
  await psql(`CREATE DATABASE "${name}"`);
  const url = `${PG_URL}/${name}`;
  const db = {
    name,
    url,
    async drop() {
      await psql(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    },
  };
  try {
    await run(SOUK_BIN, ["migrate"], {
      env: { SOUK_DATABASE_URL: url, SOUK_REDIS_URL: REDIS_URL, SOUK_JWT_SECRET: JWT_SECRET },
    });
  } catch (err) {
    await db.drop().catch(() => {});
    throw err;
  }
  return db;
}

// ------------------------------------------------------------------ nodes

const liveChildren = new Set();
process.on("exit", () => {
  for (const child of liveChildren) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
});

/**
 * Starts `souk serve --no-migrate` on a free port and resolves once its
 * "listening on 127.0.0.1:PORT" log line is seen.
 */
export async function startNode({ databaseUrl, env = {}, startTimeoutMs = 20_000 } = {}) {
  const childEnv = { ...process.env };
  // Only this suite's settings reach the node (no stray SOUK_DEV, SOUK_CONFIG, ...).
  for (const k of Object.keys(childEnv)) if (k.startsWith("SOUK_")) delete childEnv[k];
  Object.assign(childEnv, {
    SOUK_HTTP_ADDR: "127.0.0.1:0",
    SOUK_DATABASE_URL: databaseUrl,
    SOUK_REDIS_URL: REDIS_URL,
    SOUK_JWT_SECRET: JWT_SECRET,
    SOUK_WORKERS: "1",
    SOUK_SHUTDOWN_GRACE_MS: "500",
    ...env,
  });
  const child = spawn(SOUK_BIN, ["serve", "--no-migrate"], {
    env: childEnv,
    stdio: ["ignore", "pipe", "pipe"],
  });
  liveChildren.add(child);
  const logs = [];
  const node = {
    child,
    logs,
    port: 0,
    url: "",
    exited: false,
    async stop() {
      if (node.exited) return;
      child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      try {
        await once(child, "exit");
      } finally {
        clearTimeout(killer);
      }
    },
  };
  child.on("exit", (code, signal) => {
    node.exited = true;
    node.exitCode = code;
    node.exitSignal = signal;
    liveChildren.delete(child);
  });
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (chunk) => VERBOSE && process.stderr.write(`[souk stdout] ${chunk}`));

  const ready = new Promise((resolve, reject) => {
    let buffered = "";
    const timer = setTimeout(
      () => reject(new Error(`souk did not log "listening on" within ${startTimeoutMs} ms\n${logs.join("\n")}`)),
      startTimeoutMs,
    );
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk) => {
      buffered += chunk;
      let nl;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        logs.push(line);
        if (VERBOSE) process.stderr.write(`[souk] ${line}\n`);
        let msg = "";
        try {
          msg = JSON.parse(line).msg ?? "";
        } catch {
          msg = "";
        }
        const m = /^listening on 127\.0\.0\.1:(\d+) as node /.exec(msg);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      }
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`souk exited early (code ${code}, signal ${signal})\n${logs.join("\n")}`));
    });
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
  try {
    node.port = await ready;
  } catch (err) {
    await node.stop().catch(() => {});
    throw err;
  }
  node.url = `http://127.0.0.1:${node.port}`;
  return node;
}

/**
 * Registers before/after hooks for the calling test file: one database and
 * one node for the whole file, every socket closed after each test. The
 * returned object's `url` is valid inside tests.
 */
export function useNode(env = {}) {
  const ctx = { url: "", node: null, db: null };
  before(
    async () => {
      ctx.db = await createDatabase();
      ctx.node = await startNode({ databaseUrl: ctx.db.url, env });
      ctx.url = ctx.node.url;
    },
    { timeout: 60_000 },
  );
  afterEach(() => closeAllSockets());
  after(
    async () => {
      closeAllSockets();
      try {
        if (ctx.node) await ctx.node.stop();
      } finally {
        if (ctx.db) await ctx.db.drop();
      }
    },
    { timeout: 30_000 },
  );
  return ctx;
}

// ------------------------------------------------------------------ tokens

const b64url = (value) => Buffer.from(value).toString("base64url");
const HMAC = { HS256: "sha256", HS384: "sha384", HS512: "sha512" };

/** The base64url HMAC signature of a JWS signing input. */
export function hmacSignature(input, secret, alg = "HS256") {
  const hash = HMAC[alg];
  if (!hash) throw new Error(`unsupported alg ${alg}`);
  return createHmac(hash, secret).update(input).digest("base64url");
}

/** Signs `payload` as a compact JWT. alg "none" gives an unsigned token. */
export function signJwt(payload, { secret = JWT_SECRET, alg = "HS256", header } = {}) {
  const head = header ?? { alg, typ: "JWT" };
  const input = `${b64url(JSON.stringify(head))}.${b64url(JSON.stringify(payload))}`;
  if (alg === "none") return `${input}.`;
  return `${input}.${hmacSignature(input, secret, alg)}`;
}

export const nowSeconds = () => Math.floor(Date.now() / 1000);

/**
 * A user token for `sub`. `ttl` is seconds from now (negative = expired);
 * `claims` are merged last so they can override or remove (undefined) claims.
 */
export function userToken(sub, { ttl = 3600, role, nbf, claims = {}, ...signOpts } = {}) {
  const payload = { sub, iat: nowSeconds(), exp: nowSeconds() + ttl };
  if (role !== undefined) payload.role = role;
  if (nbf !== undefined) payload.nbf = nbf;
  Object.assign(payload, claims);
  for (const k of Object.keys(payload)) if (payload[k] === undefined) delete payload[k];
  return signJwt(payload, signOpts);
}

/** A token for the server HTTP API (§8). */
export function serviceToken(sub = "backend") {
  return userToken(sub, { role: "service", ttl: 600 });
}

// ------------------------------------------------------------------ sockets

const openSockets = new Set();

export function closeAllSockets() {
  for (const s of openSockets) {
    s.removeAllListeners();
    s.disconnect();
    s.io.engine?.close();
  }
  openSockets.clear();
}

/**
 * Creates a socket.io-client socket with reconnection off (so failures show
 * up once and nothing retries in the background). Records the decoded
 * CONNECT packet the server sent for this namespace in `socket.connectPacket`.
 */
export function makeSocket(url, { auth, ...opts } = {}) {
  const socket = io(url, {
    transports: ["websocket"],
    reconnection: false,
    forceNew: true,
    timeout: 5_000,
    ...(auth === undefined ? {} : { auth }),
    ...opts,
  });
  openSockets.add(socket);
  socket.connectPacket = null;
  socket.io.on("packet", (packet) => {
    // socket.io-parser PacketType.CONNECT === 0
    if (packet.type === 0 && packet.nsp === socket.nsp) socket.connectPacket = packet;
  });
  return socket;
}

/**
 * Resolves with "connect" or the connect_error's Error (as {err}), or
 * {timeout: true} after `waitMs`; leaves no timer or listener behind.
 */
function connectOutcome(socket, waitMs) {
  return new Promise((resolve) => {
    const done = (outcome) => {
      clearTimeout(timer);
      socket.off("connect", onConnect);
      socket.off("connect_error", onError);
      resolve(outcome);
    };
    const onConnect = () => done({ connected: true });
    const onError = (err) => done({ connected: false, err });
    const timer = setTimeout(() => done({ timeout: true }), waitMs);
    socket.on("connect", onConnect);
    socket.on("connect_error", onError);
  });
}

/** Connects and resolves with the socket; rejects with the connect_error. */
export async function connect(url, auth, opts = {}, waitMs = 5_000) {
  const socket = makeSocket(url, { auth, ...opts });
  const outcome = await connectOutcome(socket, waitMs);
  if (outcome.timeout) throw new Error(`no connect within ${waitMs} ms`);
  if (!outcome.connected) {
    const e = new Error(`connect refused: ${outcome.err?.message} ${JSON.stringify(outcome.err?.data ?? null)}`);
    e.cause = outcome.err;
    throw e;
  }
  return socket;
}

/** Connects a socket that must be refused; resolves with the connect_error's Error. */
export async function connectError(url, auth, opts = {}, waitMs = 5_000) {
  const socket = makeSocket(url, { auth, ...opts });
  const outcome = await connectOutcome(socket, waitMs);
  if (outcome.timeout) throw new Error(`neither connect nor connect_error within ${waitMs} ms`);
  if (outcome.connected) throw new Error(`expected a refusal, but the socket connected (id ${socket.id})`);
  return outcome.err;
}

/** Resolves with the arguments of the next `event` on `emitter`, or rejects after `ms`. */
export function nextEvent(emitter, event, ms = 5_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, handler);
      reject(new Error(`no "${event}" within ${ms} ms`));
    }, ms);
    function handler(...args) {
      clearTimeout(timer);
      emitter.off(event, handler);
      resolve(args);
    }
    emitter.on(event, handler);
  });
}

/** Collects every `event` on `emitter` into an array (arguments of each). */
export function record(emitter, event) {
  const seen = [];
  emitter.on(event, (...args) => seen.push(args));
  return seen;
}

/** Waits until `predicate()` is truthy, polling; rejects after `ms`. */
export async function waitUntil(predicate, ms = 5_000, what = "condition") {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

// ------------------------------------------------------------------ HTTP API

/** POST /api/v1/users/{id}/notifications; resolves with {status, body}. */
export async function postNotification(url, userId, body, token = serviceToken()) {
  const res = await fetch(`${url}/api/v1/users/${encodeURIComponent(userId)}/notifications`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(5_000),
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  return { status: res.status, body: json, text };
}

/** RFC 3339 UTC with milliseconds, as the contract says times are. */
export const RFC3339_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

// ------------------------------------------------------------------ self-check
// `node --test test/` runs every .js file under test/, this one included. Run
// as its own file, it checks the token minting every other file relies on
// (so a wrongly minted token cannot make a refusal test pass for the wrong
// reason); imported, it registers nothing.

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  test("helpers: HS256 signing reproduces RFC 7515 appendix A.1", () => {
    const input =
      "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9" +
      ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
    const key = Buffer.from(
      "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
      "base64url",
    );
    assert.equal(hmacSignature(input, key), "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
  });

  test("helpers: userToken, alg none and forged tokens have the intended shape", () => {
    const decode = (part) => JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
    const before = nowSeconds();
    const [h, p, sig] = userToken("alice", { ttl: 60, role: "seller", nbf: 5 }).split(".");
    assert.deepEqual(decode(h), { alg: "HS256", typ: "JWT" });
    const claims = decode(p);
    assert.equal(claims.sub, "alice");
    assert.equal(claims.role, "seller");
    assert.equal(claims.nbf, 5);
    assert.ok(claims.exp >= before + 60 && claims.exp <= nowSeconds() + 60);
    assert.equal(sig, hmacSignature(`${h}.${p}`, JWT_SECRET));

    assert.equal(decode(signJwt({ sub: "x" }).split(".")[1]).exp, undefined);
    assert.deepEqual(Object.keys(decode(userToken("x", { claims: { exp: undefined } }).split(".")[1])), ["sub", "iat"]);

    const none = signJwt({ sub: "x", exp: 1 }, { alg: "none" }).split(".");
    assert.equal(none.length, 3);
    assert.equal(decode(none[0]).alg, "none");
    assert.equal(none[2], "");

    const [fh, fp, fsig] = userToken("x", { secret: "other" }).split(".");
    assert.notEqual(fsig, hmacSignature(`${fh}.${fp}`, JWT_SECRET));
    assert.equal(decode(serviceToken().split(".")[1]).role, "service");
  });
}
