// PROTOCOL.md §1, §2, §8: a successful CONNECT, the user room shared by every
// tab of a user, and notifications posted through the server HTTP API.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  T,
  useNode,
  connect,
  userToken,
  randomId,
  record,
  withoutOffsets,
  waitUntil,
  sleep,
  postNotification,
} from "./helpers.js";

const node = useNode();

test("a valid token connects: socket.id set, connected, CONNECT reply carries sid and pid", T, async () => {
  const socket = await connect(node.url, { token: userToken(randomId()) });
  assert.equal(socket.connected, true);
  assert.equal(typeof socket.id, "string");
  assert.ok(socket.id.length > 0, "socket.id is empty");

  const packet = socket.connectPacket;
  assert.ok(packet, "no CONNECT packet was seen for namespace /");
  assert.equal(packet.nsp, "/");
  assert.equal(packet.data.sid, socket.id, "CONNECT sid differs from socket.id");
  assert.equal(typeof packet.data.pid, "string", `CONNECT reply has no string pid: ${JSON.stringify(packet.data)}`);
  assert.ok(packet.data.pid.length > 0, "CONNECT pid is empty");
  assert.notEqual(packet.data.pid, packet.data.sid, "pid must not be the public sid");
});

test("buyer, seller and admin roles all connect", T, async () => {
  for (const role of ["buyer", "seller", "admin"]) {
    const socket = await connect(node.url, { token: userToken(randomId(role), { role }) });
    assert.equal(socket.connected, true, `role ${role} did not connect`);
  }
});

test("Authorization: Bearer on the upgrade request is accepted instead of the CONNECT payload", T, async () => {
  const socket = await connect(node.url, undefined, {
    extraHeaders: { Authorization: `Bearer ${userToken(randomId())}` },
  });
  assert.equal(socket.connected, true);
  assert.equal(typeof socket.id, "string");
});

test("two tabs of one user get distinct sids and pids", T, async () => {
  const user = randomId();
  const a = await connect(node.url, { token: userToken(user) });
  const b = await connect(node.url, { token: userToken(user) });
  assert.notEqual(a.id, b.id);
  assert.notEqual(a.connectPacket.data.pid, b.connectPacket.data.pid);
});

test("a notification posted through the API reaches both tabs of the user and no one else", T, async () => {
  const alice = randomId("alice");
  const bob = randomId("bob");
  const tab1 = await connect(node.url, { token: userToken(alice) });
  const tab2 = await connect(node.url, { token: userToken(alice, { role: "seller" }) });
  const other = await connect(node.url, { token: userToken(bob) });
  const got1 = record(tab1, "notification");
  const got2 = record(tab2, "notification");
  const gotOther = record(other, "notification");

  const payload = { kind: "booking.confirmed", data: { bookingId: "b_42", amount: 12500, note: "ünïcødé ✓" } };
  const res = await postNotification(node.url, alice, payload);
  assert.equal(res.status, 202, `POST notifications answered ${res.status}: ${res.text}`);

  await waitUntil(() => got1.length >= 1 && got2.length >= 1, 3_000, "the notification on both tabs");
  assert.deepEqual(withoutOffsets(got1), [[payload]]);
  assert.deepEqual(withoutOffsets(got2), [[payload]]);
  assert.equal(got1[0].at(-1), got2[0].at(-1), "two tabs in one user room saw different offsets");

  // Then one for bob: once it has arrived (and 200 ms more for anything
  // astray), bob's socket must have seen only his own, and alice's tabs must
  // not have seen it.
  const bobPayload = { kind: "message.new", data: { from: alice } };
  const res2 = await postNotification(node.url, bob, bobPayload);
  assert.equal(res2.status, 202, `POST notifications answered ${res2.status}: ${res2.text}`);
  await waitUntil(() => gotOther.length >= 1, 3_000, "bob's notification");
  await sleep(200);
  assert.deepEqual(withoutOffsets(gotOther), [[bobPayload]], "bob received alice's notification");
  assert.deepEqual(withoutOffsets(got1), [[payload]], "tab 1 received bob's notification or a duplicate");
  assert.deepEqual(withoutOffsets(got2), [[payload]], "tab 2 received bob's notification or a duplicate");
});

test("the notification API refuses a user (non-service) token and delivers nothing", T, async () => {
  const user = randomId();
  const socket = await connect(node.url, { token: userToken(user) });
  const got = record(socket, "notification");
  const res = await postNotification(node.url, user, { kind: "x", data: {} }, userToken(randomId(), { role: "admin" }));
  assert.ok([401, 403].includes(res.status), `expected 401 or 403, got ${res.status}: ${res.text}`);
  assert.equal(typeof res.body?.error?.code, "string", `error body is not {error:{code,message}}: ${res.text}`);
  assert.equal(typeof res.body?.error?.message, "string", `error body is not {error:{code,message}}: ${res.text}`);
  await sleep(300);
  assert.deepEqual(got, []);
});
