// Shared helpers for the official-client suite: a throw-away database, a souk
// node on a free port, JWT minting, and bounded waits around socket.io-client.
//
// Environment (all optional):
//   SOUK_BIN             the souk binary (default: <repo>/target/debug/souk)
//   SOUK_TEST_PG_URL     Postgres server URL without a database part
//   SOUK_TEST_REDIS_URL  Redis URL, or `memory`: nodes on the memory broker
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
/** Nodes run on the memory broker: one node per database, no Redis. */
export const MEMORY_BROKER = REDIS_URL === "memory";
/** A test's `skip` when it needs several nodes on one database: why, or false. */
export const SEVERAL_NODES = MEMORY_BROKER && "needs several nodes on one database; the memory broker serves one node";
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
 * `transports` defaults to WebSocket only; `transports: null` leaves the
 * client's own default (long-polling first, then the upgrade).
 */
export function makeSocket(url, { auth, transports = ["websocket"], ...opts } = {}) {
  const socket = io(url, {
    ...(transports === null ? {} : { transports }),
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

// ------------------------------------------------------------------ offsets
// §4: every room event (anything delivered through a listing:, booking:,
// user: or presence: room, backend events included) carries its offset as
// its last argument, as Socket.IO's connection state recovery does. souk's
// offsets are Redis stream entry ids, `<ms>-<seq>`. Acks and server:error
// are not room events and carry none.

/** A room event's offset. */
export const OFFSET = /^\d+-\d+$/;

/**
 * Splits a room event's arguments into the payload arguments and the
 * trailing offset, asserting that the offset is there and well formed.
 */
export function splitOffset(args, what = "room event") {
  assert.ok(Array.isArray(args), `${what}: arguments ${JSON.stringify(args)} are not an array`);
  assert.ok(args.length >= 2, `${what}: no offset after the payload in ${JSON.stringify(args)}`);
  const offset = args.at(-1);
  assert.equal(typeof offset, "string", `${what}: last argument is not an offset string in ${JSON.stringify(args)}`);
  assert.match(offset, OFFSET, `${what}: last argument is not an offset in ${JSON.stringify(args)}`);
  return { args: args.slice(0, -1), offset };
}

/** The arguments of recorded room events (see `record`) without their offsets, each offset asserted. */
export function withoutOffsets(seen, what = "room event") {
  return seen.map((args, i) => splitOffset(args, `${what} #${i}`).args);
}

/** The offsets of recorded room events, each asserted. */
export function offsetsOf(seen, what = "room event") {
  return seen.map((args, i) => splitOffset(args, `${what} #${i}`).offset);
}

/** Asserts that a room event's arguments are exactly `(payload, offset)`; returns the offset. */
export function assertRoomEvent(args, payload, what = "room event") {
  const split = splitOffset(args, what);
  assert.deepEqual(split.args, [payload], what);
  return split.offset;
}

/** Orders two offsets `<ms>-<seq>` numerically: ms first, then seq. */
export function compareOffsets(a, b) {
  const [am, as] = a.split("-").map(BigInt);
  const [bm, bs] = b.split("-").map(BigInt);
  if (am !== bm) return am < bm ? -1 : 1;
  if (as !== bs) return as < bs ? -1 : 1;
  return 0;
}

/** Asserts that `offsets` strictly increase. */
export function assertIncreasing(offsets, what = "offsets") {
  for (const o of offsets) assert.match(o, OFFSET, `${what}: ${JSON.stringify(offsets)}`);
  for (let i = 1; i < offsets.length; i++) {
    assert.equal(
      compareOffsets(offsets[i - 1], offsets[i]),
      -1,
      `${what}: ${offsets[i - 1]} then ${offsets[i]} (#${i}) do not increase: ${JSON.stringify(offsets)}`,
    );
  }
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

// ------------------------------------------------------------------ marketplace
// Used by the room files (listings, bookings, chat, presence): PROTOCOL.md §4-§8.

/** Any server API call (§8) with a service token; resolves with {status, body, text}. */
export async function api(url, method, apiPath, body, token = serviceToken()) {
  const headers = token === null ? {} : { authorization: `Bearer ${token}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`${url}${apiPath}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
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

/** PUT /api/v1/listings/{id}; throws unless 200 or 201; resolves with the listing. */
export async function putListing(url, id, body) {
  const res = await api(url, "PUT", `/api/v1/listings/${id}`, body);
  if (res.status !== 200 && res.status !== 201) {
    throw new Error(`PUT /api/v1/listings/${id} answered ${res.status}: ${res.text}`);
  }
  return res.body.listing;
}

/** Emits `event` with an ack id; resolves with the reply, rejects after `ms`. */
export function request(socket, event, payload, ms = 3_000) {
  return socket.timeout(ms).emitWithAck(event, payload);
}

/** Emits `event` and asserts an `{ok:true}` reply, which it resolves with. */
export async function requestOk(socket, event, payload, ms = 3_000) {
  const reply = await request(socket, event, payload, ms);
  assert.equal(reply?.ok, true, `${event} ${JSON.stringify(payload)} answered ${JSON.stringify(reply)}`);
  return reply;
}

/** Asserts a `{ok:false, error:{code, message}}` reply with this code. */
export function assertAckError(reply, code, what = "") {
  const where = what ? `${what}: ` : "";
  assert.equal(reply?.ok, false, `${where}expected ok:false/${code}, got ${JSON.stringify(reply)}`);
  assert.equal(reply.error?.code, code, `${where}expected code ${code}, got ${JSON.stringify(reply)}`);
  assert.equal(typeof reply.error.message, "string", `${where}error.message missing: ${JSON.stringify(reply)}`);
  assert.ok(reply.error.message.length > 0, `${where}error.message is empty`);
}

/** Like nextEvent, but only for an event whose first argument passes `predicate`. */
export function nextMatching(emitter, event, predicate, ms = 5_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, handler);
      reject(new Error(`no matching "${event}" within ${ms} ms`));
    }, ms);
    function handler(...args) {
      if (!predicate(args[0])) return;
      clearTimeout(timer);
      emitter.off(event, handler);
      resolve(args);
    }
    emitter.on(event, handler);
  });
}

/**
 * Posts a marker event to `room` through the server API and waits until every
 * socket in `members` has it. Room events reach each member in one order
 * (§4), so anything emitted to the room before the marker has arrived by then.
 */
export async function flushRoom(url, room, members, ms = 3_000) {
  const tag = randomId("flush");
  const seen = members.map((s) => nextMatching(s, "test:flush", (d) => d?.tag === tag, ms));
  const res = await api(url, "POST", `/api/v1/rooms/${room}/events`, { event: "test:flush", data: { tag } });
  if (res.status !== 202) throw new Error(`POST /api/v1/rooms/${room}/events answered ${res.status}: ${res.text}`);
  // A backend event is a room event too: (data, offset).
  for (const args of await Promise.all(seen)) assertRoomEvent(args, { tag }, `test:flush in ${room}`);
}

/**
 * Has each socket watch `listingId`, then flushes the listing room; resolves
 * with the watch replies. Room events go out through Redis after the write
 * that caused them is acked, so an event emitted just before a join (the
 * listing's creation by `market`, a reservation) can still reach the new
 * watcher after its listing:watch ack. The flush marker leaves the node after
 * those, so once it is in, nothing older can come: record after this.
 */
export async function watchListing(url, sockets, listingId) {
  const replies = [];
  for (const s of sockets) replies.push(await requestOk(s, "listing:watch", { listingId }));
  await flushRoom(url, `listing:${listingId}`, sockets);
  return replies;
}

/**
 * A buyer, a seller, an admin (role admin) and a stranger, each connected
 * with the official client; a listing of the seller's created through the
 * API (`listing` overrides its fields); and, unless `reserve` is false, a
 * booking the buyer made with `listing:reserve`.
 */
export async function market(url, { listing = {}, reserve = true } = {}) {
  const ids = {
    buyer: randomId("buyer"),
    seller: randomId("seller"),
    admin: randomId("admin"),
    stranger: randomId("stranger"),
  };
  const roles = { buyer: "buyer", seller: "seller", admin: "admin", stranger: "buyer" };
  const [buyer, seller, admin, stranger] = await Promise.all(
    ["buyer", "seller", "admin", "stranger"].map((who) =>
      connect(url, { token: userToken(ids[who], { role: roles[who] }) }),
    ),
  );
  const listingId = randomId("l");
  const created = await putListing(url, listingId, {
    sellerId: ids.seller,
    title: "Road bike, 56 cm",
    price: 45_000,
    currency: "EUR",
    ...listing,
  });
  const m = { ids, buyer, seller, admin, stranger, listingId, listing: created, booking: null };
  if (reserve) {
    const reply = await requestOk(buyer, "listing:reserve", { listingId, idempotencyKey: randomId("k") });
    m.booking = reply.booking;
  }
  return m;
}

/** A further connection (another tab) of `user`. */
export function tab(url, user, role) {
  return connect(url, { token: userToken(user, role === undefined ? {} : { role }) });
}

/** Runs one SQL statement on a test database; resolves with its rows (tab-separated, unaligned). */
export async function dbRows(databaseUrl, sql) {
  const { stdout } = await run("psql", ["-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", databaseUrl, "-c", sql], {
    env: { PGCONNECT_TIMEOUT: "10" },
  });
  return stdout
    .split("\n")
    .filter((line) => line.length > 0)
    .map((line) => line.split("\t"));
}

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
