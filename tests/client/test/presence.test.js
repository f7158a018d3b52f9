// PROTOCOL.md §4-§6, §8 for presence: presence:watch / presence:unwatch,
// presence:changed on the online and offline transitions, no flicker on a
// quick reconnect, and GET /api/v1/presence. The node runs with a 1 s
// presence TTL (SOUK_PRESENCE_TTL_MS) so expiry shows within ~1-2 s.
//
// Room events are `(payload, offset)` (§4): every one is checked for both.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  T,
  useNode,
  connect,
  userToken,
  randomId,
  nextEvent,
  nextMatching,
  record,
  splitOffset,
  withoutOffsets,
  sleep,
  api,
  request,
  requestOk,
  assertAckError,
  flushRoom,
  RFC3339_MS,
} from "./helpers.js";

const TTL_MS = 1_000;
const node = useNode({ SOUK_PRESENCE_TTL_MS: String(TTL_MS) });

const user = (id, role = "buyer") => connect(node.url, { token: userToken(id, { role }) });
/** The next presence:changed for `userId` going `online`; resolves with its arguments (payload, offset). */
const changedFor = (socket, userId, online, ms = 3_000) =>
  nextMatching(socket, "presence:changed", (p) => p?.userId === userId && p?.online === online, ms);

/** A presence:changed's one payload, its offset asserted. */
function presencePayload(args, what = "presence:changed") {
  const split = splitOffset(args, what);
  assert.equal(split.args.length, 1, `${what}: ${JSON.stringify(args)}`);
  return split.args[0];
}

function assertRecent(time, what) {
  assert.match(time, RFC3339_MS, `${what}: ${time}`);
  const age = Date.now() - Date.parse(time);
  assert.ok(age >= -2_000 && age < 30_000, `${what} ${time} is not recent (age ${age} ms)`);
}

test("presence:watch answers each user's {online, lastSeen}: a user never seen is {online:false, lastSeen:null}", T, async () => {
  const watcher = await user(randomId("w"));
  const online = randomId("on");
  const never = randomId("never");
  // Watch first, so the online transition can be awaited instead of raced.
  await requestOk(watcher, "presence:watch", { userIds: [online] });
  const cameOnline = changedFor(watcher, online, true);
  await user(online, "seller");
  presencePayload(await cameOnline);

  const reply = await request(watcher, "presence:watch", { userIds: [online, never] });
  assert.equal(reply.ok, true, JSON.stringify(reply));
  assert.deepEqual(Object.keys(reply).sort(), ["ok", "presence"]);
  assert.deepEqual(Object.keys(reply.presence).sort(), [never, online].sort());
  assert.deepEqual(reply.presence[never], { online: false, lastSeen: null });
  assert.equal(reply.presence[online].online, true);
  assertRecent(reply.presence[online].lastSeen, "lastSeen");
  assert.deepEqual(Object.keys(reply.presence[online]).sort(), ["lastSeen", "online"]);
});

test("presence:changed {userId, online:true, lastSeen} when a watched user connects; a second tab announces nothing", T, async () => {
  const watcher = await user(randomId("w"), "admin");
  const target = randomId("t");
  const before = await requestOk(watcher, "presence:watch", { userIds: [target] });
  assert.deepEqual(before.presence, { [target]: { online: false, lastSeen: null } });
  const changes = record(watcher, "presence:changed");
  const online = nextEvent(watcher, "presence:changed", 3_000);

  await user(target);
  const payload = presencePayload(await online);
  assert.deepEqual(Object.keys(payload).sort(), ["lastSeen", "online", "userId"]);
  assert.equal(payload.userId, target);
  assert.equal(payload.online, true);
  assertRecent(payload.lastSeen, "lastSeen");

  await user(target); // another tab
  await sleep(TTL_MS / 2); // a few heartbeat refreshes
  await flushRoom(node.url, `presence:${target}`, [watcher]);
  assert.equal(changes.length, 1, `presence:changed seen: ${JSON.stringify(changes)}`);
  assert.deepEqual(withoutOffsets(changes), [[payload]]);
});

test("offline is announced when the presence TTL expires after the last connection closes, not at the disconnect", T, async () => {
  const watcher = await user(randomId("w"));
  const target = randomId("t");
  await requestOk(watcher, "presence:watch", { userIds: [target] });
  const online = changedFor(watcher, target, true);
  const socket = await user(target);
  const on = presencePayload(await online, "online");

  const offline = changedFor(watcher, target, false, 4_000);
  const closedAt = Date.now();
  socket.disconnect();
  const off = presencePayload(await offline, "offline");
  const after = Date.now() - closedAt;
  assert.ok(after >= TTL_MS / 2, `offline came ${after} ms after the disconnect: the disconnect itself deleted presence`);
  assert.ok(after <= TTL_MS + 2_000, `offline came ${after} ms after the disconnect (TTL ${TTL_MS} ms)`);
  assert.deepEqual(Object.keys(off).sort(), ["lastSeen", "online", "userId"]);
  assert.equal(off.userId, target);
  assert.equal(off.online, false);
  assertRecent(off.lastSeen, "lastSeen");
  assert.ok(off.lastSeen >= on.lastSeen, `lastSeen went back: ${on.lastSeen} -> ${off.lastSeen}`);
  // The last heartbeat before the close (the server may see the close a little late).
  assert.ok(Date.parse(off.lastSeen) <= closedAt + 500, `lastSeen ${off.lastSeen} is well after the disconnect`);

  const now = await requestOk(watcher, "presence:watch", { userIds: [target] });
  assert.deepEqual(now.presence, { [target]: { online: false, lastSeen: off.lastSeen } });
  const res = await api(node.url, "GET", `/api/v1/presence?userIds=${target}`);
  assert.equal(res.status, 200, res.text);
  assert.deepEqual(res.body, { presence: { [target]: { online: false, lastSeen: off.lastSeen } } });

  // Coming back is a new online transition.
  const back = changedFor(watcher, target, true);
  await user(target);
  presencePayload(await back, "back online");
});

test("no flicker: a reconnect within the TTL, or closing one of two tabs, announces nothing", T, async () => {
  const watcher = await user(randomId("w"));
  const hopper = randomId("hop"); // reconnects quickly
  const twoTabs = randomId("tabs"); // closes one of two tabs
  await requestOk(watcher, "presence:watch", { userIds: [hopper, twoTabs] });
  const up = [changedFor(watcher, hopper, true), changedFor(watcher, twoTabs, true)];
  const hop1 = await user(hopper);
  const tab1 = await user(twoTabs);
  await user(twoTabs);
  for (const args of await Promise.all(up)) presencePayload(args);
  const changes = record(watcher, "presence:changed");

  hop1.disconnect();
  tab1.disconnect();
  await sleep(150);
  await user(hopper);
  await sleep(TTL_MS * 2 + 500); // well past the TTL and a sweep
  await flushRoom(node.url, `presence:${hopper}`, [watcher]);
  await flushRoom(node.url, `presence:${twoTabs}`, [watcher]);
  assert.deepEqual(changes, [], "presence flickered");
  const now = await requestOk(watcher, "presence:watch", { userIds: [hopper, twoTabs] });
  assert.equal(now.presence[hopper].online, true);
  assert.equal(now.presence[twoTabs].online, true);
});

test("presence:unwatch answers {ok:true}, is idempotent, and stops presence:changed", T, async () => {
  const stays = await user(randomId("w1"));
  const leaves = await user(randomId("w2"), "seller");
  const target = randomId("t");
  await requestOk(stays, "presence:watch", { userIds: [target] });
  await requestOk(leaves, "presence:watch", { userIds: [target] });
  assert.deepEqual(await request(leaves, "presence:unwatch", { userIds: [target] }), { ok: true });
  assert.deepEqual(await request(leaves, "presence:unwatch", { userIds: [target, randomId("x")] }), { ok: true });
  const leftSaw = record(leaves, "presence:changed");

  const online = changedFor(stays, target, true);
  await user(target);
  presencePayload(await online);
  await flushRoom(node.url, `presence:${target}`, [stays]);
  await sleep(100);
  assert.deepEqual(leftSaw, []);
});

test("presence:watch / presence:unwatch refusals: bad_request for 0 or 101 ids, bad ids, a non-array; 100 ids are fine", T, async () => {
  const socket = await user(randomId("w"));
  const hundred = Array.from({ length: 100 }, (_, i) => `p_${i}_${randomId("x")}`);
  for (const event of ["presence:watch", "presence:unwatch"]) {
    for (const payload of [
      {},
      { userIds: [] },
      { userIds: [...hundred, "one_more"] },
      { userIds: "abc" },
      { userIds: [1] },
      { userIds: ["bad id"] },
      { userIds: ["x".repeat(65)] },
    ]) {
      const shown = JSON.stringify(payload).slice(0, 60);
      assertAckError(await request(socket, event, payload), "bad_request", `${event} ${shown}`);
    }
  }
  const reply = await requestOk(socket, "presence:watch", { userIds: hundred });
  assert.equal(Object.keys(reply.presence).length, 100);
  assert.ok(hundred.every((id) => reply.presence[id]?.online === false), "unknown users must be offline");
  assert.deepEqual(await request(socket, "presence:unwatch", { userIds: hundred }), { ok: true });
});

test("GET /api/v1/presence?userIds=a,b returns the same states; bad ids → 422", T, async () => {
  const watcher = await user(randomId("w"));
  const online = randomId("on");
  const offline = randomId("off");
  await requestOk(watcher, "presence:watch", { userIds: [online] });
  const up = changedFor(watcher, online, true);
  await user(online);
  presencePayload(await up);
  const res = await api(node.url, "GET", `/api/v1/presence?userIds=${online},${offline}`);
  assert.equal(res.status, 200, res.text);
  assert.deepEqual(Object.keys(res.body.presence).sort(), [offline, online].sort());
  assert.deepEqual(res.body.presence[offline], { online: false, lastSeen: null });
  assert.equal(res.body.presence[online].online, true);
  assertRecent(res.body.presence[online].lastSeen, "lastSeen");

  const bad = await api(node.url, "GET", `/api/v1/presence?userIds=${encodeURIComponent("bad id")}`);
  assert.equal(bad.status, 422, bad.text);
  assert.equal(bad.body?.error?.code, "bad_request", bad.text);
  const anonymous = await api(node.url, "GET", `/api/v1/presence?userIds=${online}`, undefined, null);
  assert.equal(anonymous.status, 401, anonymous.text);
});
