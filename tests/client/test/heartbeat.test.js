// PROTOCOL.md §1: the Engine.IO open packet and the ping/pong heartbeat, on a
// node with short intervals.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  T,
  useNode,
  connect,
  makeSocket,
  userToken,
  randomId,
  nextEvent,
  record,
  sleep,
} from "./helpers.js";

const PING_INTERVAL = 300;
const PING_TIMEOUT = 200;
const node = useNode({
  SOUK_PING_INTERVAL_MS: String(PING_INTERVAL),
  SOUK_PING_TIMEOUT_MS: String(PING_TIMEOUT),
});

test("the open packet carries the configured intervals, no upgrades and maxPayload", T, async () => {
  const socket = makeSocket(node.url, { auth: { token: userToken(randomId()) } });
  assert.ok(socket.io.engine, "manager did not create its engine synchronously");
  const [handshake] = await nextEvent(socket.io.engine, "handshake", 5000);
  assert.equal(typeof handshake.sid, "string");
  assert.ok(handshake.sid.length > 0);
  assert.deepEqual(handshake.upgrades, []);
  assert.equal(handshake.pingInterval, PING_INTERVAL);
  assert.equal(handshake.pingTimeout, PING_TIMEOUT);
  assert.equal(handshake.maxPayload, 1_000_000);
  await nextEvent(socket, "connect", 5000);
  assert.notEqual(socket.id, handshake.sid, "the Socket.IO sid must differ from the Engine.IO sid");
});

test("an idle client stays connected for more than 3 × (interval + timeout), then still gets an ack", T, async () => {
  const user = randomId();
  const socket = await connect(node.url, { token: userToken(user) });
  const disconnects = record(socket, "disconnect");
  const pings = record(socket.io, "ping");
  const idleMs = 3 * (PING_INTERVAL + PING_TIMEOUT) + 300;
  const start = Date.now();
  await sleep(idleMs);
  assert.deepEqual(disconnects, [], `disconnected while idle after ${Date.now() - start} ms`);
  assert.equal(socket.connected, true);
  // ~6 pings are due in 1.8 s at a 300 ms interval; at least 4 must have come.
  assert.ok(pings.length >= 4, `only ${pings.length} pings in ${idleMs} ms`);
  assert.ok(pings.length <= Math.ceil(idleMs / PING_INTERVAL) + 1, `too many pings: ${pings.length} in ${idleMs} ms`);
  const reply = await socket.timeout(2000).emitWithAck("auth:refresh", { token: userToken(user) });
  assert.equal(reply.ok, true, JSON.stringify(reply));
});

test("a client that stops answering pings is closed by the server within interval + timeout", T, async () => {
  const socket = await connect(node.url, { token: userToken(randomId()) });
  const engine = socket.io.engine;
  // engine.io-client 6.6 answers pings through its private _sendPacket("pong");
  // swallow the pongs so that only the server's pong timeout can end this.
  assert.equal(typeof engine._sendPacket, "function", "engine.io-client internals changed");
  const send = engine._sendPacket.bind(engine);
  const swallowed = [];
  engine._sendPacket = (type, ...rest) => (type === "pong" ? swallowed.push(Date.now()) : send(type, ...rest));
  // The client's own timer (reason "ping timeout") is reset by every ping it
  // receives, so it fires only if the server stops pinging.
  const start = Date.now();
  const [reason] = await nextEvent(socket, "disconnect", 4000);
  const elapsed = Date.now() - start;
  assert.ok(swallowed.length >= 1, "no ping arrived to leave unanswered");
  assert.equal(reason, "transport close", `disconnect reason ${reason} after ${elapsed} ms`);
  assert.ok(
    elapsed <= 2 * (PING_INTERVAL + PING_TIMEOUT) + 500,
    `server closed only after ${elapsed} ms (interval ${PING_INTERVAL}, timeout ${PING_TIMEOUT})`,
  );
});
