// The bounded outbound queue (SOUK_MAX_OUTBOUND_BYTES): a client that stops
// reading is closed as a slow consumer (close code 1013 "slow consumer" on a
// WebSocket, souk_disconnects_total{reason="slow consumer"}). It missed more
// than its queue held, which is more than a recovery may replay
// (SOUK_MAX_REPLAY_BYTES, half the outbound bound, since a replay counts
// against it: issue 12), so it comes back fresh (recovered false, a new pid)
// and is served again once it rejoins. A replay within the bound is checked in
// recovery.test.js and tests/integration. A client that reads is never closed,
// however much passes through, as long as no single burst outgrows the limit.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  useNode,
  connect,
  makeSocket,
  userToken,
  randomId,
  nextEvent,
  record,
  api,
  putListing,
  requestOk,
  flushRoom,
  splitOffset,
  assertIncreasing,
  waitUntil,
  sleep,
  OFFSET,
} from "./helpers.js";

const MAX_OUTBOUND = 200_000;
const node = useNode({
  SOUK_MAX_OUTBOUND_BYTES: String(MAX_OUTBOUND),
  // Long enough room logs that nothing a stalled client missed is trimmed.
  SOUK_ROOM_LOG_LEN: "10000",
});

const SLOW = { timeout: 60_000 };
const PAD = "x".repeat(8_000); // ~8 KB a frame: 25 of them fill the queue

async function slowConsumerDisconnects() {
  const res = await fetch(`${node.url}/metrics`, { signal: AbortSignal.timeout(5_000) });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  const m = /^souk_disconnects_total\{reason="slow consumer"\} (\d+)$/m.exec(text);
  return m ? Number(m[1]) : 0;
}

async function newListingRoom() {
  const listingId = randomId("l");
  await putListing(node.url, listingId, {
    sellerId: randomId("seller"),
    title: "Slow consumer test",
    price: 1_000,
    currency: "EUR",
  });
  return { listingId, room: `listing:${listingId}` };
}

/** Posts `count` padded `tick` events numbered from `first`, `concurrency` at a time. */
async function postTicks(room, first, count, concurrency = 10) {
  for (let start = first; start < first + count; start += concurrency) {
    const batch = [];
    for (let n = start; n < Math.min(start + concurrency, first + count); n++) {
      batch.push(
        api(node.url, "POST", `/api/v1/rooms/${room}/events`, { event: "tick", data: { n, pad: PAD } }).then((res) =>
          assert.equal(res.status, 202, res.text),
        ),
      );
    }
    await Promise.all(batch);
  }
}

/** Asserts that `ticks` (recorded arguments) are 0..total-1, each once, in room order. */
function assertEveryTickOnceInOrder(ticks, total, what) {
  const ns = ticks.map((args) => splitOffset(args, what).args[0].n);
  const missing = [];
  for (let n = 0; n < total; n++) if (!ns.includes(n)) missing.push(n);
  assert.deepEqual(missing, [], `${what}: ${missing.length} of ${total} ticks never arrived`);
  assert.equal(ns.length, total, `${what}: ${ns.length - new Set(ns).size} ticks arrived twice`);
  // Concurrent posts take their room order from Redis, not from n: the offsets are the order.
  assertIncreasing(ticks.map((args) => splitOffset(args, what).offset), `${what}: offsets`);
}

test("a reading client gets 300 × 8 KB (12× the limit) in bursts of 10 without being closed, on both transports", SLOW, async () => {
  const before = await slowConsumerDisconnects();
  for (const transports of [["websocket"], ["polling"]]) {
    const { listingId, room } = await newListingRoom();
    const socket = await connect(node.url, { token: userToken(randomId()) }, { transports });
    await requestOk(socket, "listing:watch", { listingId });
    await flushRoom(node.url, room, [socket]);
    const ticks = record(socket, "tick");
    const disconnects = record(socket, "disconnect");
    await postTicks(room, 0, 300, 10);
    await waitUntil(() => ticks.length === 300 || disconnects.length > 0, 20_000, `300 ticks over ${transports}`);
    assert.deepEqual(disconnects, [], `${transports}: a reading client was closed`);
    assertEveryTickOnceInOrder(ticks, 300, `${transports}`);
  }
  assert.equal(await slowConsumerDisconnects(), before, "a reading client counted as a slow consumer");
});

test("a WebSocket client that stops reading is closed as a slow consumer and, past the replay bound, comes back fresh and is served", SLOW, async () => {
  const before = await slowConsumerDisconnects();
  const { listingId, room } = await newListingRoom();
  const socket = makeSocket(node.url, {
    auth: { token: userToken(randomId()) },
    reconnection: true,
    reconnectionDelay: 300,
    reconnectionDelayMax: 300,
    randomizationFactor: 0,
  });
  await nextEvent(socket, "connect");
  const pid = socket.connectPacket.data.pid;
  await requestOk(socket, "listing:watch", { listingId });
  await flushRoom(node.url, room, [socket]);
  const ticks = record(socket, "tick");
  const connects = [];
  // The client keeps the pid of its latest CONNECT in `_pid` (socket.io-client 4).
  socket.on("connect", () => connects.push({ recovered: socket.recovered, pid: socket._pid }));
  const disconnects = [];
  socket.on("disconnect", (reason, details) =>
    disconnects.push({ reason, code: details?.context?.code, text: details?.context?.reason?.toString() }),
  );

  // Stop reading: the TCP socket under the WebSocket is paused, so the
  // kernel buffers fill and souk's writes back up into its outbound queue.
  const tcp = socket.io.engine.transport.ws._socket;
  tcp.pause();
  let posted = 0;
  while ((await slowConsumerDisconnects()) === before) {
    assert.ok(posted < 6_000, `no slow-consumer disconnect after ${posted} events of 8 KB (${posted * 8} KB)`);
    await postTicks(room, posted, 50);
    posted += 50;
  }
  // The room goes on while the client is away: 100 more (800 KB, 4× the limit).
  await postTicks(room, posted, 100);
  posted += 100;

  // Reading again, the client takes what was written before the close and
  // the close frame, then reconnects with {pid, offset}: past the replay
  // bound it starts fresh.
  tcp.resume();
  await waitUntil(() => connects.length >= 1, 30_000, "a reconnection");
  assert.deepEqual(disconnects, [{ reason: "transport close", code: 1013, text: "slow consumer" }]);
  assert.equal(connects.length, 1, JSON.stringify(connects));
  assert.equal(connects[0].recovered, false, "past SOUK_MAX_REPLAY_BYTES the client starts fresh");
  assert.notEqual(connects[0].pid, pid, "a fresh session has a new pid");
  // What it got before the close came once each, in room order.
  assertIncreasing(ticks.map((args) => splitOffset(args, "ticks").offset), "ticks: offsets");
  // Fresh, it rejoins and is served.
  await requestOk(socket, "listing:watch", { listingId });
  const had = ticks.length;
  await postTicks(room, posted, 1);
  await waitUntil(() => ticks.length > had, 10_000, "a tick after rejoining");
  assert.equal(await slowConsumerDisconnects(), before + 1, "the fresh connection was closed too");
});

test("a long-polling client that stops polling is closed as a slow consumer; past the replay bound a new connection starts fresh and is served", SLOW, async () => {
  const before = await slowConsumerDisconnects();
  const { listingId, room } = await newListingRoom();
  const user = randomId();
  const token = userToken(user);
  const base = `${node.url}/socket.io/?EIO=4&transport=polling`;
  const get = async (url) => {
    const res = await fetch(url, { signal: AbortSignal.timeout(5_000) });
    return { status: res.status, text: await res.text() };
  };
  const post = async (url, body) => {
    const res = await fetch(url, { method: "POST", body, signal: AbortSignal.timeout(5_000) });
    assert.equal(res.status, 200, await res.text());
  };

  // A hand-driven polling session: open, CONNECT, listing:watch, one tick read.
  const open = await get(base);
  const { sid } = JSON.parse(open.text.slice(1));
  const url = `${base}&sid=${sid}`;
  await post(url, `40${JSON.stringify({ token })}`);
  const hello = await get(url);
  const { pid } = JSON.parse(hello.text.slice(2));
  await post(url, `420${JSON.stringify(["listing:watch", { listingId }])}`);
  assert.match((await get(url)).text, /^430\[\{"ok":true/);
  const first = api(node.url, "POST", `/api/v1/rooms/${room}/events`, { event: "tick", data: { n: -1 } });
  let offset = null;
  for (let i = 0; i < 10 && !offset; i++) {
    const { text } = await get(url);
    for (const p of text.split("\x1e")) {
      if (p.startsWith('42["tick"')) offset = JSON.parse(p.slice(2)).at(-1);
    }
  }
  assert.equal((await first).status, 202);
  assert.match(String(offset), OFFSET, "the first tick never came");

  // No more GETs: 40 events of 8 KB (320 KB) pile up.
  await postTicks(room, 0, 40, 1);
  let closed = 0;
  for (let i = 0; i < 50 && closed === 0; i++) {
    closed = (await slowConsumerDisconnects()) - before;
    if (closed === 0) await sleep(50);
  }
  assert.equal(closed, 1, "a poller that stopped polling was not closed as a slow consumer");
  // What was queued before the close comes first, then the close packet
  // alone (or, after the linger, the sid is unknown).
  let after = await get(url);
  for (let i = 0; i < 5 && after.status === 200 && after.text !== "1"; i++) {
    assert.ok(!after.text.split("\x1e").includes("1"), "the close packet travels alone");
    after = await get(url);
  }
  assert.ok(
    after.status === 400 || after.text === "1",
    `after the close a GET must be refused or carry the close packet: ${after.status} ${after.text.slice(0, 200)}`,
  );

  // Back with the official client and {pid, offset}: it missed 320 KB, more
  // than a replay carries (100 KB here), so it starts fresh and rejoins.
  const back = makeSocket(node.url, { auth: { token, pid, offset }, transports: ["polling"] });
  const ticks = record(back, "tick");
  await nextEvent(back, "connect");
  assert.notEqual(back.connectPacket.data.pid, pid, `recovered past the bound: ${JSON.stringify(back.connectPacket.data)}`);
  assert.equal(back.recovered, false);
  await requestOk(back, "listing:watch", { listingId });
  await postTicks(room, 40, 1);
  await waitUntil(() => ticks.length >= 1, 10_000, `a tick after rejoining (have ${ticks.length})`);
  back.close();
});
