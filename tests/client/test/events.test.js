// PROTOCOL.md §3 (and §2 auth:refresh): acks, error codes, server:error.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  T,
  useNode,
  connect,
  userToken,
  randomId,
  nowSeconds,
  nextEvent,
  record,
  sleep,
  RFC3339_MS,
} from "./helpers.js";

const node = useNode();

const ACK = 3; // socket.io-parser PacketType.ACK

function assertFailure(reply, code) {
  assert.equal(reply?.ok, false, `expected ok:false, got ${JSON.stringify(reply)}`);
  assert.equal(reply.error?.code, code, `expected code ${code}, got ${JSON.stringify(reply)}`);
  assert.equal(typeof reply.error.message, "string", `error.message missing: ${JSON.stringify(reply)}`);
  assert.ok(reply.error.message.length > 0, "error.message is empty");
}

test("auth:refresh with a fresh token of the same user → {ok:true, expiresAt}", T, async () => {
  const user = randomId();
  const socket = await connect(node.url, { token: userToken(user, { ttl: 600 }) });
  const exp = nowSeconds() + 7200;
  const reply = await socket.timeout(2000).emitWithAck("auth:refresh", { token: userToken(user, { claims: { exp } }) });
  assert.equal(reply.ok, true, JSON.stringify(reply));
  assert.equal(typeof reply.expiresAt, "string", JSON.stringify(reply));
  assert.match(reply.expiresAt, RFC3339_MS);
  assert.equal(Date.parse(reply.expiresAt), exp * 1000, `expiresAt ${reply.expiresAt} is not the new exp`);
  assert.equal(socket.connected, true);
});

test("every acked event is answered exactly once", T, async () => {
  const user = randomId();
  const socket = await connect(node.url, { token: userToken(user) });
  const acks = [];
  socket.io.on("packet", (p) => p.type === ACK && acks.push(p.id));
  await socket.timeout(2000).emitWithAck("auth:refresh", { token: userToken(user) });
  await socket.timeout(2000).emitWithAck("no:such:event", { x: 1 });
  await socket.timeout(2000).emitWithAck("auth:refresh", {});
  await sleep(300);
  assert.equal(acks.length, 3, `ack packets seen: ${JSON.stringify(acks)}`);
  assert.equal(new Set(acks).size, 3, `duplicate ack ids: ${JSON.stringify(acks)}`);
});

test("auth:refresh with another user's token → forbidden, socket stays up", T, async () => {
  const socket = await connect(node.url, { token: userToken(randomId()) });
  const reply = await socket.timeout(2000).emitWithAck("auth:refresh", { token: userToken(randomId()) });
  assertFailure(reply, "forbidden");
  assert.equal(socket.connected, true);
});

for (const [name, make] of Object.entries({
  "a forged token": () => userToken("x", { secret: "wrong" }),
  "garbage": () => "garbage",
  "an expired token": () => userToken("x", { ttl: -3600 }),
  "a service token": () => userToken("x", { role: "service" }),
})) {
  test(`auth:refresh with ${name} → unauthorized`, T, async () => {
    // sub "x" on both sides, so only the token's validity can be the reason.
    const socket = await connect(node.url, { token: userToken("x") });
    const reply = await socket.timeout(2000).emitWithAck("auth:refresh", { token: make() });
    assertFailure(reply, "unauthorized");
    assert.equal(socket.connected, true);
  });
}

test("unknown event with an ack → {ok:false, error:{code:'unsupported'}}", T, async () => {
  const socket = await connect(node.url, { token: userToken(randomId()) });
  const reply = await socket.timeout(2000).emitWithAck("no:such:event", { a: 1 });
  assertFailure(reply, "unsupported");
  assert.equal(socket.connected, true);
});

test("auth:refresh with {} → bad_request naming the token field", T, async () => {
  const socket = await connect(node.url, { token: userToken(randomId()) });
  const reply = await socket.timeout(2000).emitWithAck("auth:refresh", {});
  assertFailure(reply, "bad_request");
  assert.match(reply.error.message, /token/, `message does not name the field: ${reply.error.message}`);
});

test("auth:refresh with a non-object payload or none → bad_request", T, async () => {
  const socket = await connect(node.url, { token: userToken(randomId()) });
  for (const args of [["just a string"], [42], [null], [{ token: 42 }], []]) {
    const reply = await socket.timeout(2000).emitWithAck("auth:refresh", ...args);
    assertFailure(reply, "bad_request");
  }
  assert.equal(socket.connected, true);
});

test("unknown event without an ack → server:error {code:'unsupported', message, event}", T, async () => {
  const socket = await connect(node.url, { token: userToken(randomId()) });
  const errors = nextEvent(socket, "server:error", 3000);
  socket.emit("no:such:event", { a: 1 });
  const args = await errors;
  assert.equal(args.length, 1, `server:error carries no offset: ${JSON.stringify(args)}`);
  const [err] = args;
  assert.equal(err.code, "unsupported", JSON.stringify(err));
  assert.equal(err.event, "no:such:event", JSON.stringify(err));
  assert.equal(typeof err.message, "string", JSON.stringify(err));
  assert.equal(socket.connected, true);
});

test("bad payload without an ack → server:error {code:'bad_request', event:'auth:refresh'}", T, async () => {
  const socket = await connect(node.url, { token: userToken(randomId()) });
  const errors = nextEvent(socket, "server:error", 3000);
  socket.emit("auth:refresh", {});
  const args = await errors;
  assert.equal(args.length, 1, `server:error carries no offset: ${JSON.stringify(args)}`);
  const [err] = args;
  assert.equal(err.code, "bad_request", JSON.stringify(err));
  assert.equal(err.event, "auth:refresh", JSON.stringify(err));
  assert.match(err.message, /token/);
});

test("a successful event without an ack produces no server:error", T, async () => {
  const user = randomId();
  const socket = await connect(node.url, { token: userToken(user) });
  const errors = record(socket, "server:error");
  socket.emit("auth:refresh", { token: userToken(user) });
  // An acked event afterwards: its reply proves the first one was handled.
  const reply = await socket.timeout(2000).emitWithAck("auth:refresh", { token: userToken(user) });
  assert.equal(reply.ok, true);
  await sleep(100);
  assert.deepEqual(errors, []);
});

test("after a string of failures the socket still answers acks", T, async () => {
  const user = randomId();
  const socket = await connect(node.url, { token: userToken(user) });
  const errors = record(socket, "server:error");
  for (let i = 0; i < 5; i++) socket.emit(`nope:${i}`);
  for (let i = 0; i < 5; i++) assertFailure(await socket.timeout(2000).emitWithAck("auth:refresh", {}), "bad_request");
  const reply = await socket.timeout(2000).emitWithAck("auth:refresh", { token: userToken(user) });
  assert.equal(reply.ok, true, JSON.stringify(reply));
  assert.ok(errors.every((args) => args.length === 1), `server:error carries no offset: ${JSON.stringify(errors)}`);
  assert.deepEqual(
    errors.map(([e]) => [e.code, e.event]),
    [0, 1, 2, 3, 4].map((i) => ["unsupported", `nope:${i}`]),
  );
});
