// PROTOCOL.md §1: HTTP long-polling with the upgrade to WebSocket, as
// socket.io-client does by default, and long-polling alone
// (`transports: ["polling"]`): acks, room events, pings, connection state
// recovery (§10) and the answers to bad polling requests.

import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import {
  T,
  useNode,
  connect,
  makeSocket,
  userToken,
  randomId,
  nextEvent,
  nextMatching,
  record,
  sleep,
  api,
  putListing,
  postNotification,
  request,
  requestOk,
  assertAckError,
  assertRoomEvent,
  splitOffset,
  assertIncreasing,
  flushRoom,
  waitUntil,
} from "./helpers.js";

const PING_INTERVAL = 500;
const PING_TIMEOUT = 3_000;
const node = useNode({
  SOUK_PING_INTERVAL_MS: String(PING_INTERVAL),
  SOUK_PING_TIMEOUT_MS: String(PING_TIMEOUT),
});

/** socket.io-client's own default: long-polling first, then the upgrade. */
const DEFAULT_TRANSPORTS = { transports: null };
const POLLING_ONLY = { transports: ["polling"] };

/** A public listing of a fresh seller; resolves with its id. */
async function newListing() {
  const listingId = randomId("l");
  await putListing(node.url, listingId, {
    sellerId: randomId("seller"),
    title: "Polling test listing",
    price: 1_000,
    currency: "EUR",
  });
  return listingId;
}

/** POST /api/v1/rooms/{room}/events, asserting the 202. */
async function emitToRoom(room, event, data) {
  const res = await api(node.url, "POST", `/api/v1/rooms/${room}/events`, { event, data });
  assert.equal(res.status, 202, `POST /api/v1/rooms/${room}/events: ${res.text}`);
}

/**
 * Holds socket.io-client's upgrade probe until the returned function is
 * called, so that a test can use the long-polling transport for as long as
 * it likes first. engine.io-client 6.6 (pinned through socket.io-client)
 * starts each probe through its private Socket#_probe right after the open
 * packet; this wraps it on the engine the manager created synchronously.
 */
function holdUpgrade(socket) {
  const engine = socket.io.engine;
  assert.ok(engine, "the manager did not create its engine synchronously");
  const probe = engine._probe;
  assert.equal(typeof probe, "function", "engine.io-client has no Socket#_probe any more: update holdUpgrade");
  let release;
  const released = new Promise((resolve) => {
    release = resolve;
  });
  engine._probe = function heldProbe(name) {
    released.then(() => probe.call(this, name));
  };
  return release;
}

/** Waits for the engine's "upgrade" event unless it already runs on a WebSocket. */
async function upgraded(socket, ms = 5_000) {
  const engine = socket.io.engine;
  if (engine.transport.name !== "websocket") await nextEvent(engine, "upgrade", ms);
  assert.equal(engine.transport.name, "websocket");
}

/** Every `event` that reaches `socket`, with the transport it came over. */
function recordWithTransport(socket, event) {
  const seen = [];
  socket.on(event, (...args) => seen.push({ args, transport: socket.io.engine.transport.name }));
  return seen;
}

// ------------------------------------------------------------------ default transports

test("default transports: the handshake polls, lists the websocket upgrade, and the engine upgrades", T, async () => {
  const socket = makeSocket(node.url, { auth: { token: userToken(randomId()) }, ...DEFAULT_TRANSPORTS });
  const [handshake] = await nextEvent(socket.io.engine, "handshake");
  assert.equal(socket.io.engine.transport.name, "polling", "socket.io-client starts on long-polling");
  assert.deepEqual(handshake.upgrades, ["websocket"], `open packet: ${JSON.stringify(handshake)}`);
  assert.equal(handshake.pingInterval, PING_INTERVAL);
  assert.equal(handshake.pingTimeout, PING_TIMEOUT);
  assert.equal(handshake.maxPayload, 1_000_000);
  await nextEvent(socket, "connect");
  await upgraded(socket);
  assert.equal(socket.connected, true);
  assert.equal(socket.io.engine.id, handshake.sid, "the upgrade keeps the Engine.IO session");
  const reply = await requestOk(socket, "listing:watch", { listingId: await newListing() });
  assert.equal(typeof reply.listing, "object");
});

test("default transports: acks and room events work over long-polling, then over the WebSocket, one offset order", T, async () => {
  const socket = makeSocket(node.url, { auth: { token: userToken(randomId()) }, ...DEFAULT_TRANSPORTS });
  const release = holdUpgrade(socket);
  await nextEvent(socket, "connect");
  assert.equal(socket.io.engine.transport.name, "polling");

  // Before the upgrade: everything travels in polling requests.
  const listingId = await newListing();
  const room = `listing:${listingId}`;
  const watched = await requestOk(socket, "listing:watch", { listingId });
  assert.equal(watched.listing.id, listingId);
  assertAckError(await request(socket, "no:such:event", {}), "unsupported");
  await flushRoom(node.url, room, [socket]);
  const notes = recordWithTransport(socket, "test:note");
  await emitToRoom(room, "test:note", { n: 0 });
  await waitUntil(() => notes.length === 1, 3_000, "test:note 0 over polling");
  assert.equal(socket.io.engine.transport.name, "polling", "upgraded while the probe was held");

  // The upgrade.
  release();
  await upgraded(socket);

  // After it: the same socket, its room kept, acks and events on the WebSocket.
  await emitToRoom(room, "test:note", { n: 1 });
  await waitUntil(() => notes.length === 2, 3_000, "test:note 1 over the WebSocket");
  const other = await newListing();
  await requestOk(socket, "listing:watch", { listingId: other });
  assertAckError(await request(socket, "listing:watch", { listingId: randomId("nope") }), "not_found");
  await flushRoom(node.url, `listing:${other}`, [socket]);
  await emitToRoom(`listing:${other}`, "test:note", { n: 2 });
  await waitUntil(() => notes.length === 3, 3_000, "test:note 2 in the second room");

  assert.deepEqual(
    notes.map((e) => [e.transport, ...splitOffset(e.args).args]),
    [
      ["polling", { n: 0 }],
      ["websocket", { n: 1 }],
      ["websocket", { n: 2 }],
    ],
  );
  assertIncreasing(notes.slice(0, 2).map((e) => splitOffset(e.args).offset), `offsets in ${room} across the upgrade`);
});

test("default transports: a burst of room events during the upgrade arrives once each, in order", T, async () => {
  const socket = makeSocket(node.url, { auth: { token: userToken(randomId()) }, ...DEFAULT_TRANSPORTS });
  const release = holdUpgrade(socket);
  await nextEvent(socket, "connect");
  const listingId = await newListing();
  const room = `listing:${listingId}`;
  await requestOk(socket, "listing:watch", { listingId });
  await flushRoom(node.url, room, [socket]);
  const seen = recordWithTransport(socket, "test:seq");

  // 0-9 over polling; the probe goes ahead while 10-39 are posted; 40-49 once upgraded.
  const COUNT = 50;
  for (let n = 0; n < 40; n++) {
    if (n === 10) release();
    await emitToRoom(room, "test:seq", { n });
  }
  await upgraded(socket);
  for (let n = 40; n < COUNT; n++) await emitToRoom(room, "test:seq", { n });
  await flushRoom(node.url, room, [socket]);

  const got = seen.map((e) => splitOffset(e.args).args[0].n);
  assert.deepEqual(got, [...Array(COUNT).keys()], `events out of order, lost or repeated: ${JSON.stringify(got)}`);
  assertIncreasing(seen.map((e) => splitOffset(e.args).offset), `offsets in ${room}`);
  const by = new Set(seen.map((e) => e.transport));
  assert.ok(by.has("polling"), "no event came over polling: the test did not cover the upgrade");
  assert.ok(by.has("websocket"), "no event came over the WebSocket");
});

// ------------------------------------------------------------------ long-polling only

test("polling only: connects, acks, server:error, a room event and a notification; never upgrades", T, async () => {
  const user = randomId();
  const socket = await connect(node.url, { token: userToken(user) }, POLLING_ONLY);
  assert.equal(socket.io.engine.transport.name, "polling");
  assert.equal(typeof socket.connectPacket?.data?.pid, "string", JSON.stringify(socket.connectPacket));

  const listingId = await newListing();
  const room = `listing:${listingId}`;
  const reply = await requestOk(socket, "listing:watch", { listingId });
  assert.equal(reply.listing.id, listingId);
  assertAckError(await request(socket, "listing:watch", {}), "bad_request");

  const errors = record(socket, "server:error");
  socket.emit("no:such:event", { a: 1 });
  await waitUntil(() => errors.length === 1, 3_000, "server:error");
  assert.deepEqual(errors[0], [{ code: "unsupported", message: errors[0][0].message, event: "no:such:event" }]);

  await flushRoom(node.url, room, [socket]);
  const note = nextEvent(socket, "test:note");
  await emitToRoom(room, "test:note", { hello: "polling" });
  assertRoomEvent(await note, { hello: "polling" }, "test:note");

  const notification = nextEvent(socket, "notification");
  const res = await postNotification(node.url, user, { kind: "test.polling", data: { x: 1 } });
  assert.equal(res.status, 202, res.text);
  assertRoomEvent(await notification, { kind: "test.polling", data: { x: 1 } }, "notification");

  // Many acked events in flight at once: one POST may carry several, one GET several answers.
  const replies = await Promise.all(
    Array.from({ length: 20 }, () => request(socket, "listing:watch", { listingId })),
  );
  assert.ok(replies.every((r) => r?.ok === true), JSON.stringify(replies));
  assert.equal(socket.io.engine.transport.name, "polling");
});

test("polling only: pings and pongs keep an idle socket up for several intervals", T, async () => {
  const user = randomId();
  const socket = await connect(node.url, { token: userToken(user) }, POLLING_ONLY);
  const disconnects = record(socket, "disconnect");
  const pings = record(socket.io, "ping");
  await sleep(4 * PING_INTERVAL + 400);
  assert.deepEqual(disconnects, []);
  assert.ok(pings.length >= 3, `only ${pings.length} pings in ${4 * PING_INTERVAL + 400} ms`);
  await requestOk(socket, "auth:refresh", { token: userToken(user) });
});

test("polling only: connection state recovery across a dropped connection, with automatic reconnection", T, async () => {
  const user = randomId();
  const socket = makeSocket(node.url, {
    auth: { token: userToken(user) },
    ...POLLING_ONLY,
    reconnection: true,
    reconnectionDelay: 1_500,
    reconnectionDelayMax: 1_500,
    randomizationFactor: 0,
  });
  await nextEvent(socket, "connect");
  assert.equal(socket.recovered, false);
  const pid = socket.connectPacket.data.pid;
  const listingId = await newListing();
  const room = `listing:${listingId}`;
  await requestOk(socket, "listing:watch", { listingId });
  await flushRoom(node.url, room, [socket]);
  const ticks = record(socket, "tick");
  await emitToRoom(room, "tick", 0);
  await waitUntil(() => ticks.length === 1, 3_000, "tick 0");

  // The drop: the engine closes under the socket, which reconnects after 1.5 s.
  const reconnected = nextEvent(socket, "connect", 8_000);
  const [reason] = await Promise.all([nextEvent(socket, "disconnect"), Promise.resolve(socket.io.engine.close())]);
  assert.notEqual(reason, "io client disconnect", "a client disconnect would not reconnect");
  for (let n = 1; n <= 3; n++) await emitToRoom(room, "tick", n); // missed while away
  await reconnected;

  assert.equal(socket.recovered, true, `not recovered: pid ${pid} then ${socket.connectPacket?.data?.pid}`);
  assert.equal(socket.connectPacket.data.pid, pid);
  assert.equal(socket.io.engine.transport.name, "polling");
  await waitUntil(() => ticks.length === 4, 3_000, "the three missed ticks");
  // Its room came back without a new listing:watch.
  await emitToRoom(room, "tick", 4);
  await flushRoom(node.url, room, [socket]);
  assert.deepEqual(
    ticks.map((args) => splitOffset(args).args[0]),
    [0, 1, 2, 3, 4],
    `ticks: ${JSON.stringify(ticks)}`,
  );
  assertIncreasing(ticks.map((args) => splitOffset(args).offset), `offsets in ${room}`);
});

test("default transports: connection state recovery after an upgraded socket's WebSocket breaks", T, async () => {
  const user = randomId();
  const socket = makeSocket(node.url, {
    auth: { token: userToken(user) },
    ...DEFAULT_TRANSPORTS,
    reconnection: true,
    reconnectionDelay: 1_500,
    reconnectionDelayMax: 1_500,
    randomizationFactor: 0,
  });
  await nextEvent(socket, "connect");
  await upgraded(socket);
  const listingId = await newListing();
  const room = `listing:${listingId}`;
  await requestOk(socket, "listing:watch", { listingId });
  await flushRoom(node.url, room, [socket]);
  const ticks = record(socket, "tick");
  await emitToRoom(room, "tick", 0);
  await waitUntil(() => ticks.length === 1, 3_000, "tick 0");

  // The TCP connection under the WebSocket goes away without a close frame.
  const reconnected = nextEvent(socket, "connect", 8_000);
  const disconnected = nextEvent(socket, "disconnect");
  socket.io.engine.transport.ws._socket.destroy();
  const [reason] = await disconnected;
  assert.equal(reason, "transport close");
  for (let n = 1; n <= 3; n++) await emitToRoom(room, "tick", n);
  await reconnected;
  assert.equal(socket.recovered, true);
  await waitUntil(() => ticks.length === 4, 3_000, "the three missed ticks");
  await emitToRoom(room, "tick", 4);
  await flushRoom(node.url, room, [socket]);
  assert.deepEqual(ticks.map((args) => splitOffset(args).args[0]), [0, 1, 2, 3, 4]);
  assertIncreasing(ticks.map((args) => splitOffset(args).offset), `offsets in ${room}`);
});

// ------------------------------------------------------------------ raw long-polling requests

const SEP = "\x1e";

/** One Engine.IO long-polling session driven by hand with fetch. */
class Polling {
  static query(extra = "") {
    return `${node.url}/socket.io/?EIO=4&transport=polling${extra}`;
  }

  /** Opens a session: resolves with it and the open packet. */
  static async open() {
    const res = await fetch(Polling.query(), { signal: AbortSignal.timeout(5_000) });
    const text = await res.text();
    assert.equal(res.status, 200, text);
    assert.equal(text[0], "0", `not an open packet: ${text}`);
    const open = JSON.parse(text.slice(1));
    return new Polling(open.sid, open);
  }

  constructor(sid, open) {
    this.sid = sid;
    this.open = open;
    this.url = Polling.query(`&sid=${encodeURIComponent(sid)}`);
  }

  /** A GET: resolves with {status, text, packets}. */
  async get(ms = 5_000) {
    const res = await fetch(this.url, { signal: AbortSignal.timeout(ms) });
    const text = await res.text();
    return { status: res.status, text, packets: res.status === 200 ? text.split(SEP) : [], type: res.headers.get("content-type") };
  }

  /** A POST of `body` (a string, or packets joined with the separator). */
  async post(body) {
    const res = await fetch(this.url, {
      method: "POST",
      body: Array.isArray(body) ? body.join(SEP) : body,
      headers: { "content-type": "text/plain;charset=UTF-8" },
      signal: AbortSignal.timeout(5_000),
    });
    return { status: res.status, text: await res.text() };
  }

  /** CONNECTs to "/" with a fresh user's token; resolves with the CONNECT reply packet. */
  async connect() {
    assert.equal((await this.post(`40${JSON.stringify({ token: userToken(randomId()) })}`)).status, 200);
    const { packets } = await this.get();
    assert.match(packets[0], /^40\{/, `CONNECT answered ${JSON.stringify(packets)}`);
    return packets[0];
  }

  /** GETs until a packet matching `re` has come (pings are answered); resolves with every packet seen. */
  async until(re, ms = 5_000) {
    const deadline = Date.now() + ms;
    const seen = [];
    while (Date.now() < deadline) {
      const res = await this.get(deadline - Date.now());
      assert.equal(res.status, 200, `GET answered ${res.status} ${res.text} after ${JSON.stringify(seen)}`);
      for (const p of res.packets) {
        seen.push(p);
        if (p === "2") await this.post("3");
      }
      if (res.packets.some((p) => re.test(p))) return seen;
    }
    throw new Error(`no packet matching ${re} within ${ms} ms: ${JSON.stringify(seen)}`);
  }
}

/** Asserts an HTTP 400 whose body is the API's JSON error. */
function assertJsonError(res, status, code, what) {
  assert.equal(res.status, status, `${what}: ${res.status} ${res.text}`);
  let body = null;
  try {
    body = JSON.parse(res.text);
  } catch {
    assert.fail(`${what}: body is not JSON: ${res.text}`);
  }
  assert.equal(body?.error?.code, code, `${what}: ${res.text}`);
  assert.equal(typeof body.error.message, "string", `${what}: ${res.text}`);
  assert.ok(body.error.message.length > 0, `${what}: empty message`);
}

async function raw(url, init = {}) {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(5_000) });
  return { status: res.status, text: await res.text() };
}

async function assertNodeAlive() {
  assert.equal(node.node.exited, false, "the node exited");
  const res = await raw(`${node.url}/healthz`);
  assert.equal(res.status, 200, res.text);
}

test("bad polling requests: an unknown sid, another EIO, JSONP, a POST without sid get HTTP 400 with a JSON error", T, async () => {
  assertJsonError(await raw(Polling.query("&sid=nosuchsid0000000000")), 400, "bad_request", "GET, unknown sid");
  assertJsonError(
    await raw(Polling.query("&sid=nosuchsid0000000000"), { method: "POST", body: "40" }),
    400,
    "bad_request",
    "POST, unknown sid",
  );
  assertJsonError(await raw(`${node.url}/socket.io/?EIO=3&transport=polling`), 400, "bad_request", "EIO=3");
  assertJsonError(await raw(`${node.url}/socket.io/?EIO=4&transport=flying`), 400, "bad_request", "unknown transport");
  assertJsonError(await raw(Polling.query("&j=0")), 400, "unsupported", "JSONP");
  assertJsonError(await raw(Polling.query(), { method: "POST", body: "40" }), 400, "bad_request", "POST without sid");
  await assertNodeAlive();
});

test("bad polling requests: a sid opened on a WebSocket is not polled, and its socket stays up", T, async () => {
  const user = randomId();
  const socket = await connect(node.url, { token: userToken(user) });
  const sid = socket.io.engine.id;
  assertJsonError(await raw(Polling.query(`&sid=${sid}`)), 400, "bad_request", "GET on a WebSocket session");
  assertJsonError(
    await raw(Polling.query(`&sid=${sid}`), { method: "POST", body: '42["listing:watch",{}]' }),
    400,
    "bad_request",
    "POST on a WebSocket session",
  );
  await sleep(100);
  assert.equal(socket.connected, true, "a stranger's request closed the WebSocket session");
  await requestOk(socket, "auth:refresh", { token: userToken(user) });
  await assertNodeAlive();
});

test("bad polling requests: garbage in a POST is answered with server:error bad_request; the session stays up", T, async () => {
  const session = await Polling.open();
  assert.deepEqual(session.open.upgrades, ["websocket"]);
  await session.connect();
  assert.equal((await session.post("zzz")).status, 200);
  assert.equal((await session.post(["7", '42["listing:watch"', "4"])).status, 200);
  const errors = [];
  while (errors.length < 4) {
    const more = await session.until(/^42\["server:error"/);
    errors.push(...more.filter((p) => p.startsWith('42["server:error"')));
  }
  assert.equal(errors.length, 4, JSON.stringify(errors));
  for (const p of errors) {
    const [, payload] = JSON.parse(p.slice(2));
    assert.equal(payload.code, "bad_request", p);
    assert.equal(payload.event, null, p);
  }
  // Still up: an acked event is answered.
  assert.equal((await session.post('421["listing:watch",{"listingId":"nope_nope"}]')).status, 200);
  const acked = await session.until(/^431\[/);
  const ack = JSON.parse(acked.find((p) => p.startsWith("431")).slice(3));
  assert.equal(ack[0].ok, false);
  assert.equal(ack[0].error.code, "not_found");
  await assertNodeAlive();
});

test("bad polling requests: a second GET while one waits closes the session; the waiting GET gets the close packet", T, async () => {
  const session = await Polling.open();
  await session.connect();
  const first = session.get();
  await sleep(200);
  const second = await session.get();
  assertJsonError({ status: second.status, text: second.text }, 400, "bad_request", "overlapping GET");
  const answered = await first;
  assert.equal(answered.status, 200, answered.text);
  assert.equal(answered.packets.at(-1), "1", `the waiting GET: ${JSON.stringify(answered.packets)}`);
  assertJsonError(await raw(session.url), 400, "bad_request", "GET after the close");
  await assertNodeAlive();
});

test("bad polling requests: a POST larger than maxPayload gets 413 and ends the session", T, async () => {
  const session = await Polling.open();
  await session.connect();
  const big = `42${JSON.stringify(["test", "x".repeat(session.open.maxPayload)])}`;
  const res = await session.post(big);
  assertJsonError(res, 413, "bad_request", "oversized POST");
  const after = await session.get().catch((err) => ({ status: 0, text: String(err) }));
  assert.ok(
    after.status === 400 || (after.status === 200 && after.packets.includes("1")),
    `after an oversized POST the session must be gone or closing: ${after.status} ${after.text}`,
  );
  await assertNodeAlive();
});

/** A raw WebSocket to /socket.io/ with `sid`; resolves once open, or with {status} when refused. */
function rawWebSocket(sid) {
  const ws = new WebSocket(`${node.url.replace("http", "ws")}/socket.io/?EIO=4&transport=websocket&sid=${sid}`);
  ws.texts = [];
  ws.on("message", (data) => ws.texts.push(data.toString()));
  ws.closed = new Promise((resolve) => ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() })));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("WebSocket neither opened nor was refused in 5 s")), 5_000);
    ws.on("open", () => {
      clearTimeout(timer);
      resolve(ws);
    });
    ws.on("unexpected-response", (_req, res) => {
      clearTimeout(timer);
      let body = "";
      res.on("data", (chunk) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode, text: body }));
    });
    ws.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** Resolves with the WebSocket's close {code, reason}, or rejects after `ms`. */
function closeOf(ws, ms = 5_000) {
  return Promise.race([
    ws.closed,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`no close within ${ms} ms: ${JSON.stringify(ws.texts)}`)), ms)),
  ]);
}

test("bad upgrades: an unknown sid gets 400; a WebSocket session's sid cannot be taken over; it stays up", T, async () => {
  assertJsonError(await rawWebSocket("nosuchsid0000000000"), 400, "bad_request", "upgrade, unknown sid");

  const user = randomId();
  const socket = await connect(node.url, { token: userToken(user) });
  const intruder = await rawWebSocket(socket.io.engine.id);
  intruder.send("2probe");
  const closed = await closeOf(intruder);
  assert.equal(closed.code, 1008, `the intruder's close: ${JSON.stringify(closed)} after ${JSON.stringify(intruder.texts)}`);
  assert.ok(!intruder.texts.some((t) => t.startsWith("4")), `the intruder got the session's packets: ${intruder.texts}`);
  await requestOk(socket, "auth:refresh", { token: userToken(user) });
  assert.equal(socket.connected, true);
});

test("bad upgrades: a probe that sends garbage is closed and the polling session goes on; a second probe is refused", T, async () => {
  const session = await Polling.open();
  await session.connect();

  const garbage = await rawWebSocket(session.sid);
  garbage.send("zzz");
  assert.equal((await closeOf(garbage)).code, 1002);
  assert.equal((await session.post('421["listing:watch",{"listingId":"nope_nope"}]')).status, 200);
  assert.ok((await session.until(/^431\[/)).some((p) => p.startsWith('431[{"ok":false')));

  // A proper upgrade, with a second prober arriving in the middle of it.
  const waiting = session.get(); // the GET the upgrade must release with a noop
  const first = await rawWebSocket(session.sid);
  first.send("2probe");
  await waitUntil(() => first.texts.includes("3probe"), 3_000, "3probe");
  const answered = await waiting;
  assert.equal(answered.status, 200, answered.text);
  assert.deepEqual(answered.packets, ["6"], "the waiting GET is released with a noop");
  const second = await rawWebSocket(session.sid);
  second.send("2probe");
  assert.equal((await closeOf(second)).code, 1008, `second prober got ${JSON.stringify(second.texts)}`);
  first.send("5");
  first.send('421["listing:watch",{"listingId":"nope_nope"}]');
  await waitUntil(() => first.texts.some((t) => t.startsWith("431[")), 3_000, "an ack over the upgraded WebSocket");
  // Upgraded: polling is over for this session.
  assertJsonError(await raw(session.url), 400, "bad_request", "GET after the upgrade");
  first.close();
  await closeOf(first);
  await assertNodeAlive();
});

// ------------------------------------------------------------------ the server's own close, over polling
// Found with this suite: when a polling session ends while no GET is waiting
// (the usual case right after the server answered one), souk keeps the
// packets queued for the client and the close packet for the next GET, as
// Engine.IO's reference server does, for a few seconds.

test(
  "a polling session closed by the server: the next GET gets what was queued and the close packet",
  T,
  async () => {
    const session = await Polling.open();
    await session.connect();
    const waiting = session.get(); // a GET waits, as socket.io-client always has one
    await sleep(200);
    // Ten bad packets in a row close the connection (§1): ten server:error, then the close.
    assert.equal((await session.post(Array(10).fill("zzz"))).status, 200);
    const packets = [...(await waiting).packets];
    for (let i = 0; i < 5 && packets.at(-1) !== "1"; i++) {
      const next = await session.get();
      assert.equal(next.status, 200, `GET after ${JSON.stringify(packets)} answered ${next.status} ${next.text}`);
      packets.push(...next.packets);
    }
    assert.deepEqual(
      packets.map((p) => (p.startsWith('42["server:error"') ? "server:error" : p)),
      [...Array(10).fill("server:error"), "1"],
    );
  },
);

test(
  "polling only: a token that expires gives server:error token_expired and io server disconnect",
  T,
  async () => {
    const exp = Math.ceil(Date.now() / 1000) + 2;
    const socket = await connect(node.url, { token: userToken(randomId(), { claims: { exp } }) }, POLLING_ONLY);
    const errors = record(socket, "server:error");
    const [reason] = await nextEvent(socket, "disconnect", exp * 1000 - Date.now() + 3_000);
    assert.deepEqual(errors.map(([e]) => e.code), ["token_expired"]);
    assert.equal(reason, "io server disconnect");
  },
);
