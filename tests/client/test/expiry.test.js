// PROTOCOL.md §2: at `exp` the server emits server:error token_expired and
// disconnects, unless the client sent auth:refresh first.

import { test } from "node:test";
import assert from "node:assert/strict";
import { T, useNode, connect, userToken, randomId, nextEvent, sleep } from "./helpers.js";

const node = useNode();

test("a token expiring in ~2 s: server:error token_expired, then io server disconnect; a refreshed socket stays", T, async () => {
  // exp is whole seconds: 2-3 s from now.
  const exp = Math.ceil(Date.now() / 1000) + 2;
  const expMs = exp * 1000;
  const userA = randomId("a");
  const userB = randomId("b");

  const expiring = await connect(node.url, { token: userToken(userA, { claims: { exp } }) });
  const refreshed = await connect(node.url, { token: userToken(userB, { claims: { exp } }) });

  const timeline = [];
  expiring.on("server:error", (e) => timeline.push({ what: "server:error", at: Date.now(), e }));
  expiring.on("disconnect", (reason) => timeline.push({ what: "disconnect", at: Date.now(), reason }));
  const refreshedEvents = [];
  refreshed.on("server:error", (e) => refreshedEvents.push(["server:error", e]));
  refreshed.on("disconnect", (reason) => refreshedEvents.push(["disconnect", reason]));

  const newExp = Math.ceil(Date.now() / 1000) + 120;
  const reply = await refreshed.timeout(2000).emitWithAck("auth:refresh", {
    token: userToken(userB, { claims: { exp: newExp } }),
  });
  assert.ok(Date.now() < expMs, "the refresh was answered only after the old token expired; timing is off");
  assert.equal(reply.ok, true, JSON.stringify(reply));
  assert.equal(Date.parse(reply.expiresAt), newExp * 1000);

  // The expiring socket: wait for its disconnect (bounded).
  const waitMs = Math.max(0, expMs - Date.now()) + 3000;
  if (expiring.connected) await nextEvent(expiring, "disconnect", waitMs);

  assert.deepEqual(
    timeline.map((t) => t.what),
    ["server:error", "disconnect"],
    `expected server:error then disconnect, got ${JSON.stringify(timeline)}`,
  );
  const [errEvent, discEvent] = timeline;
  assert.equal(errEvent.e?.code, "token_expired", JSON.stringify(errEvent.e));
  assert.equal(typeof errEvent.e?.message, "string", JSON.stringify(errEvent.e));
  assert.equal(discEvent.reason, "io server disconnect");
  assert.ok(errEvent.at >= expMs - 100, `server:error came ${expMs - errEvent.at} ms before exp`);
  assert.ok(discEvent.at <= expMs + 1500, `disconnect came ${discEvent.at - expMs} ms after exp`);
  assert.equal(expiring.connected, false);

  // The refreshed socket is still up well past the old exp, and still acks.
  await sleep(Math.max(0, expMs + 1500 - Date.now()));
  assert.deepEqual(refreshedEvents, [], "the refreshed socket was told off or dropped");
  assert.equal(refreshed.connected, true);
  const again = await refreshed.timeout(2000).emitWithAck("auth:refresh", { token: userToken(userB) });
  assert.equal(again.ok, true, JSON.stringify(again));
});

test("a refresh to an earlier exp is honoured: the socket is dropped at the new exp", T, async () => {
  const user = randomId();
  const socket = await connect(node.url, { token: userToken(user, { ttl: 3600 }) });
  const exp = Math.ceil(Date.now() / 1000) + 1;
  const reply = await socket.timeout(2000).emitWithAck("auth:refresh", { token: userToken(user, { claims: { exp } }) });
  assert.equal(reply.ok, true, JSON.stringify(reply));
  const errors = [];
  socket.on("server:error", (e) => errors.push(e));
  const [reason] = await nextEvent(socket, "disconnect", Math.max(0, exp * 1000 - Date.now()) + 3000);
  assert.equal(reason, "io server disconnect");
  assert.deepEqual(errors.map((e) => e.code), ["token_expired"]);
});
