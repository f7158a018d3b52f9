// PROTOCOL.md §5, §6 for a booking's thread: message:send (message:new,
// booking:activity, clientMsgId de-duplication), message:history paging,
// typing:start / typing:stop (3 s throttle, 5 s auto-stop), read:mark with
// read:updated and booking:join's unread count — each against buyer, seller,
// admin and a stranger.
//
// Room events are `(payload, offset)` (§4): every one is checked for both.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  T,
  useNode,
  randomId,
  nextEvent,
  nextMatching,
  record,
  withoutOffsets,
  assertRoomEvent,
  sleep,
  api,
  request,
  requestOk,
  assertAckError,
  flushRoom,
  market,
  tab,
  RFC3339_MS,
} from "./helpers.js";

const node = useNode();

const MESSAGE_KEYS = ["body", "bookingId", "clientMsgId", "createdAt", "id", "senderId"].sort();
const DECIMAL_ID = /^[1-9][0-9]*$/;

async function send(socket, bookingId, body, clientMsgId = randomId("c")) {
  return (await requestOk(socket, "message:send", { bookingId, body, clientMsgId })).message;
}

async function history(socket, payload) {
  const reply = await requestOk(socket, "message:history", payload);
  assert.deepEqual(Object.keys(reply).sort(), ["hasMore", "messages", "ok"], JSON.stringify(reply));
  return reply;
}

/** A market whose buyer, seller and admin have joined the booking room. */
async function joined() {
  const m = await market(node.url);
  for (const who of ["buyer", "seller", "admin"]) await requestOk(m[who], "booking:join", { bookingId: m.booking.id });
  m.room = `booking:${m.booking.id}`;
  return m;
}

// ------------------------------------------------------------------ message:send

test("message:send: {message}; message:new to the booking room; booking:activity to both participants' user rooms", T, async () => {
  const m = await joined();
  const buyerTab2 = await tab(node.url, m.ids.buyer, "buyer"); // not in the booking room
  const sellerTab2 = await tab(node.url, m.ids.seller, "seller"); // not in the booking room
  const newMsg = { buyer: m.buyer, seller: m.seller, admin: m.admin };
  const activity = { buyer: m.buyer, buyerTab2, seller: m.seller, sellerTab2 };
  const newWaits = Object.entries(newMsg).map(([who, s]) => [who, nextEvent(s, "message:new", 3_000)]);
  const actWaits = Object.entries(activity).map(([who, s]) => [who, nextEvent(s, "booking:activity", 3_000)]);
  const notNew = [buyerTab2, sellerTab2, m.stranger].map((s) => record(s, "message:new"));
  const notAct = [m.admin, m.stranger].map((s) => record(s, "booking:activity"));

  const body = "  Hi — is it still available? ✓ \n";
  const reply = await request(m.buyer, "message:send", { bookingId: m.booking.id, body, clientMsgId: "c-1" });
  assert.equal(reply.ok, true, JSON.stringify(reply));
  assert.deepEqual(Object.keys(reply).sort(), ["message", "ok"]);
  const msg = reply.message;
  assert.deepEqual(Object.keys(msg).sort(), MESSAGE_KEYS, JSON.stringify(msg));
  assert.match(msg.id, DECIMAL_ID, "message ids are decimal strings");
  assert.equal(msg.bookingId, m.booking.id);
  assert.equal(msg.senderId, m.ids.buyer);
  assert.equal(msg.body, body, "the body is kept as sent");
  assert.equal(msg.clientMsgId, "c-1");
  assert.match(msg.createdAt, RFC3339_MS);

  const newOffsets = new Set();
  for (const [who, wait] of newWaits) newOffsets.add(assertRoomEvent(await wait, { message: msg }, `message:new at ${who}`));
  assert.equal(newOffsets.size, 1, `one message:new, one offset in the booking room: ${[...newOffsets]}`);
  const act = { bookingId: m.booking.id, messageId: msg.id, senderId: m.ids.buyer };
  for (const [who, wait] of actWaits) assertRoomEvent(await wait, act, `booking:activity at ${who}`);

  // Acked means committed: the server API already has it.
  const stored = await api(node.url, "GET", `/api/v1/bookings/${m.booking.id}/messages`);
  assert.equal(stored.status, 200, stored.text);
  assert.deepEqual(stored.body, { messages: [msg], hasMore: false });

  await sleep(200);
  assert.deepEqual(notNew, [[], [], []], "message:new reached a socket outside the booking room");
  assert.deepEqual(notAct, [[], []], "booking:activity reached a non-participant");
});

test("message:send authorization: buyer, seller and admin may (senderId is theirs); a stranger is forbidden and stores nothing", T, async () => {
  const m = await joined();
  const sent = [];
  for (const who of ["buyer", "seller", "admin"]) {
    const activity = nextMatching(m.seller, "booking:activity", (a) => a?.senderId === m.ids[who], 3_000);
    const msg = await send(m[who], m.booking.id, `from the ${who}`);
    assert.equal(msg.senderId, m.ids[who]);
    assertRoomEvent(await activity, { bookingId: m.booking.id, messageId: msg.id, senderId: m.ids[who] }, who);
    sent.push(msg);
  }
  assertAckError(
    await request(m.stranger, "message:send", { bookingId: m.booking.id, body: "let me in", clientMsgId: "s1" }),
    "forbidden",
    "stranger",
  );
  // An admin may write without joining the room first, like a participant.
  const admin2 = await tab(node.url, randomId("admin"), "admin");
  sent.push(await send(admin2, m.booking.id, "second admin"));
  const page = await history(m.buyer, { bookingId: m.booking.id });
  assert.deepEqual(page.messages, sent);
  assert.ok(
    sent.every((x, i) => i === 0 || BigInt(x.id) > BigInt(sent[i - 1].id)),
    `ids do not grow: ${sent.map((x) => x.id)}`,
  );
});

test("message:send with the same clientMsgId from the same sender returns the first message and broadcasts nothing new", T, async () => {
  const m = await joined();
  const first = await send(m.buyer, m.booking.id, "first body", "dup-1");
  await flushRoom(node.url, m.room, [m.seller]);
  await flushRoom(node.url, `user:${m.ids.seller}`, [m.seller]);
  const news = record(m.seller, "message:new");
  const activity = record(m.seller, "booking:activity");

  const again = await request(m.buyer, "message:send", { bookingId: m.booking.id, body: "first body", clientMsgId: "dup-1" });
  assert.deepEqual(again, { ok: true, message: first });
  const otherBody = await request(m.buyer, "message:send", { bookingId: m.booking.id, body: "edited", clientMsgId: "dup-1" });
  assert.deepEqual(otherBody, { ok: true, message: first }, "a retry with another body still returns the first message");
  const otherTab = await tab(node.url, m.ids.buyer, "buyer");
  assert.deepEqual(await request(otherTab, "message:send", { bookingId: m.booking.id, body: "x", clientMsgId: "dup-1" }), {
    ok: true,
    message: first,
  });
  await flushRoom(node.url, m.room, [m.seller]);
  await flushRoom(node.url, `user:${m.ids.seller}`, [m.seller]);
  assert.deepEqual(news, [], "a repeated clientMsgId broadcast message:new");
  assert.deepEqual(activity, [], "a repeated clientMsgId sent booking:activity");

  // Another sender's clientMsgId is theirs: a new message.
  const sellers = await send(m.seller, m.booking.id, "seller's own", "dup-1");
  assert.notEqual(sellers.id, first.id);
  assert.equal(sellers.senderId, m.ids.seller);
  const page = await history(m.seller, { bookingId: m.booking.id });
  assert.deepEqual(page.messages, [first, sellers]);
});

test("message:send refusals: not_found for an unknown booking; bad_request for blank, too long or missing fields", T, async () => {
  const m = await joined();
  const bookingId = m.booking.id;
  assertAckError(
    await request(m.admin, "message:send", { bookingId: randomId("bk"), body: "hi", clientMsgId: "c" }),
    "not_found",
  );
  for (const payload of [
    { bookingId, body: "", clientMsgId: "c" },
    { bookingId, body: " \n\t  ", clientMsgId: "c" },
    { bookingId, body: "x".repeat(4001), clientMsgId: "c" },
    { bookingId, body: 42, clientMsgId: "c" },
    { bookingId, clientMsgId: "c" },
    { bookingId, body: "hi" },
    { bookingId, body: "hi", clientMsgId: "" },
    { bookingId, body: "hi", clientMsgId: "c".repeat(65) },
    { bookingId, body: "hi", clientMsgId: "a\u0000b" },
    { body: "hi", clientMsgId: "c" },
  ]) {
    const shown = JSON.stringify(payload).slice(0, 80);
    assertAckError(await request(m.buyer, "message:send", payload), "bad_request", shown);
  }
  const page = await history(m.buyer, { bookingId });
  assert.deepEqual(page.messages, [], "a refused message:send stored something");

  // The limits themselves are fine: 4000 characters, and a one-character body.
  const long = await send(m.buyer, bookingId, "é".repeat(4000));
  assert.equal(long.body, "é".repeat(4000));
  assert.equal((await send(m.buyer, bookingId, "k")).body, "k");
});

test("message:send without an ack id by a stranger → server:error forbidden", T, async () => {
  const m = await market(node.url);
  const err = nextEvent(m.stranger, "server:error", 3_000);
  m.stranger.emit("message:send", { bookingId: m.booking.id, body: "hello?", clientMsgId: "c" });
  const args = await err;
  assert.equal(args.length, 1, `server:error is not a room event: no offset expected, got ${JSON.stringify(args)}`);
  const [payload] = args;
  assert.equal(payload.code, "forbidden", JSON.stringify(payload));
  assert.equal(payload.event, "message:send");
});

// ------------------------------------------------------------------ message:history

test("message:history pages oldest first with beforeId and limit; hasMore says whether older ones exist", T, async () => {
  const m = await market(node.url);
  const other = await market(node.url); // a second thread: none of its messages may leak in
  await send(other.buyer, other.booking.id, "elsewhere");
  const msgs = [];
  for (let i = 1; i <= 5; i++) msgs.push(await send(i % 2 ? m.buyer : m.seller, m.booking.id, `message ${i}`));
  const bookingId = m.booking.id;

  assert.deepEqual(await history(m.buyer, { bookingId }), { ok: true, messages: msgs, hasMore: false });
  assert.deepEqual(await history(m.buyer, { bookingId, limit: 2 }), { ok: true, messages: msgs.slice(3), hasMore: true });
  assert.deepEqual(await history(m.buyer, { bookingId, beforeId: msgs[3].id, limit: 2 }), {
    ok: true,
    messages: msgs.slice(1, 3),
    hasMore: true,
  });
  assert.deepEqual(await history(m.buyer, { bookingId, beforeId: msgs[1].id, limit: 2 }), {
    ok: true,
    messages: msgs.slice(0, 1),
    hasMore: false,
  });
  assert.deepEqual(await history(m.buyer, { bookingId, beforeId: msgs[0].id }), { ok: true, messages: [], hasMore: false });
  assert.deepEqual(await history(m.buyer, { bookingId, limit: 5 }), { ok: true, messages: msgs, hasMore: false });
  assert.deepEqual(await history(m.buyer, { bookingId, limit: 200 }), { ok: true, messages: msgs, hasMore: false });

  // The server API pages the same way.
  const res = await api(node.url, "GET", `/api/v1/bookings/${bookingId}/messages?beforeId=${msgs[3].id}&limit=2`);
  assert.equal(res.status, 200, res.text);
  assert.deepEqual(res.body, { messages: msgs.slice(1, 3), hasMore: true });
});

test("message:history's default limit is 50", T, async () => {
  const m = await market(node.url);
  const sent = await Promise.all(
    Array.from({ length: 51 }, (_, i) => send(i % 2 ? m.seller : m.buyer, m.booking.id, `n${i}`)),
  );
  sent.sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1));
  const page = await history(m.seller, { bookingId: m.booking.id });
  assert.equal(page.messages.length, 50);
  assert.equal(page.hasMore, true);
  assert.deepEqual(page.messages, sent.slice(1));
});

test("message:history authorization: buyer, seller and admin read the thread; a stranger is forbidden", T, async () => {
  const m = await market(node.url);
  const msg = await send(m.seller, m.booking.id, "the only message");
  for (const who of ["buyer", "seller", "admin"]) {
    assert.deepEqual(await request(m[who], "message:history", { bookingId: m.booking.id }), {
      ok: true,
      messages: [msg],
      hasMore: false,
    }, who);
  }
  assertAckError(await request(m.stranger, "message:history", { bookingId: m.booking.id }), "forbidden", "stranger");
});

test("message:history refusals: not_found for an unknown booking; bad_request for bad limit or beforeId", T, async () => {
  const m = await market(node.url);
  const bookingId = m.booking.id;
  assertAckError(await request(m.admin, "message:history", { bookingId: randomId("bk") }), "not_found");
  for (const payload of [
    {},
    { bookingId, limit: 0 },
    { bookingId, limit: 201 },
    { bookingId, limit: 1.5 },
    { bookingId, limit: "10" },
    { bookingId, limit: -1 },
    { bookingId, beforeId: "abc" },
    { bookingId, beforeId: 5 },
    { bookingId, beforeId: "-1" },
    { bookingId, beforeId: "1.5" },
  ]) {
    assertAckError(await request(m.buyer, "message:history", payload), "bad_request", JSON.stringify(payload));
  }
});

// ------------------------------------------------------------------ typing

test("typing:start → {throttled:false} and typing true to the room but not the typist; a repeat within 3 s is throttled; typing:stop says false", T, async () => {
  const m = await joined();
  const typist = record(m.buyer, "typing");
  const seller = record(m.seller, "typing");
  const admin = record(m.admin, "typing");
  const stranger = record(m.stranger, "typing");

  assert.deepEqual(await request(m.buyer, "typing:start", { bookingId: m.booking.id }), { ok: true, throttled: false });
  const on = { bookingId: m.booking.id, userId: m.ids.buyer, typing: true };
  await flushRoom(node.url, m.room, [m.buyer, m.seller, m.admin]);
  assert.deepEqual(withoutOffsets(seller), [[on]]);
  assert.deepEqual(withoutOffsets(admin), [[on]]);

  assert.deepEqual(await request(m.buyer, "typing:start", { bookingId: m.booking.id }), { ok: true, throttled: true });
  await flushRoom(node.url, m.room, [m.buyer, m.seller]);
  assert.deepEqual(withoutOffsets(seller), [[on]], "a throttled typing:start was broadcast");

  assert.deepEqual(await request(m.buyer, "typing:stop", { bookingId: m.booking.id }), { ok: true });
  await flushRoom(node.url, m.room, [m.buyer, m.seller, m.admin]);
  const off = { ...on, typing: false };
  assert.deepEqual(withoutOffsets(seller), [[on], [off]]);
  assert.deepEqual(withoutOffsets(admin), [[on], [off]]);
  assert.deepEqual(seller, admin, "the seller and the admin saw different offsets for the same events");
  assert.deepEqual(typist, [], "the typist got their own typing events");
  await sleep(100);
  assert.deepEqual(stranger, []);
});

test("typing: 5 s after the LAST typing:start the server says typing false by itself; after 3 s a start broadcasts again", T, async () => {
  const m = await joined();
  const bookingId = m.booking.id;
  const on = nextEvent(m.buyer, "typing", 3_000);
  assert.deepEqual(await request(m.seller, "typing:start", { bookingId }), { ok: true, throttled: false });
  assertRoomEvent(await on, { bookingId, userId: m.ids.seller, typing: true });

  await sleep(500);
  // A throttled start still counts as "the last start" and pushes the timer.
  const off = nextEvent(m.buyer, "typing", 7_000);
  assert.deepEqual(await request(m.seller, "typing:start", { bookingId }), { ok: true, throttled: true });
  const lastStart = Date.now();
  const offArgs = await off;
  const after = Date.now() - lastStart;
  assertRoomEvent(offArgs, { bookingId, userId: m.ids.seller, typing: false }, "the server's own typing false");
  assert.ok(after >= 4_700, `typing false came ${after} ms after the last start (timer not pushed by it?)`);
  assert.ok(after <= 6_000, `typing false came ${after} ms after the last start`);

  // The 3 s throttle is long over: this start is broadcast again.
  const again = nextEvent(m.buyer, "typing", 3_000);
  assert.deepEqual(await request(m.seller, "typing:start", { bookingId }), { ok: true, throttled: false });
  assertRoomEvent(await again, { bookingId, userId: m.ids.seller, typing: true });
  await requestOk(m.seller, "typing:stop", { bookingId });
});

test("typing:start authorization: buyer, seller and admin may; a stranger is forbidden and nothing is broadcast", T, async () => {
  const m = await joined();
  const observer = await tab(node.url, randomId("admin"), "admin");
  await requestOk(observer, "booking:join", { bookingId: m.booking.id });
  const seen = record(observer, "typing");
  for (const who of ["buyer", "seller", "admin"]) {
    assert.deepEqual(await request(m[who], "typing:start", { bookingId: m.booking.id }), { ok: true, throttled: false }, who);
  }
  assertAckError(await request(m.stranger, "typing:start", { bookingId: m.booking.id }), "forbidden", "stranger");
  await flushRoom(node.url, m.room, [observer]);
  assert.deepEqual(
    withoutOffsets(seen).map(([p]) => p.userId),
    [m.ids.buyer, m.ids.seller, m.ids.admin],
    `typing seen: ${JSON.stringify(seen)}`,
  );
  for (const who of ["buyer", "seller", "admin"]) await requestOk(m[who], "typing:stop", { bookingId: m.booking.id });
});

test("typing refusals: not_found for an unknown booking, bad_request without bookingId; a stop that was not typing broadcasts nothing", T, async () => {
  const m = await joined();
  assertAckError(await request(m.admin, "typing:start", { bookingId: randomId("bk") }), "not_found");
  assertAckError(await request(m.buyer, "typing:start", {}), "bad_request");
  assertAckError(await request(m.buyer, "typing:stop", {}), "bad_request");
  assertAckError(await request(m.buyer, "typing:start", { bookingId: "no way" }), "bad_request");

  const seen = record(m.seller, "typing");
  assert.deepEqual(await request(m.buyer, "typing:stop", { bookingId: m.booking.id }), { ok: true });
  // A stranger's stop: whatever the ack, nobody may hear "stranger stopped typing".
  await request(m.stranger, "typing:stop", { bookingId: m.booking.id });
  await flushRoom(node.url, m.room, [m.seller]);
  assert.deepEqual(seen, []);
});

// ------------------------------------------------------------------ read:mark

test("read:mark: {receipt}; read:updated to the booking room and the OTHER participant's user room; only forward", T, async () => {
  const m = await joined();
  const bookingId = m.booking.id;
  const sellerTab2 = await tab(node.url, m.ids.seller, "seller"); // user room only
  const buyerTab2 = await tab(node.url, m.ids.buyer, "buyer"); // user room only: must not hear its own receipt
  const [m1, m2, m3] = [
    await send(m.seller, bookingId, "one"),
    await send(m.seller, bookingId, "two"),
    await send(m.seller, bookingId, "three"),
  ];
  await flushRoom(node.url, m.room, [m.buyer, m.seller, m.admin]);
  const seen = Object.fromEntries(
    Object.entries({ buyer: m.buyer, seller: m.seller, admin: m.admin, sellerTab2, buyerTab2, stranger: m.stranger }).map(
      ([who, s]) => [who, record(s, "read:updated")],
    ),
  );

  const before = Date.now();
  const reply = await request(m.buyer, "read:mark", { bookingId, messageId: m2.id });
  assert.equal(reply.ok, true, JSON.stringify(reply));
  assert.deepEqual(Object.keys(reply).sort(), ["ok", "receipt"]);
  const receipt = reply.receipt;
  assert.deepEqual(Object.keys(receipt).sort(), ["bookingId", "messageId", "readAt", "userId"]);
  assert.deepEqual({ ...receipt, readAt: undefined }, { bookingId, userId: m.ids.buyer, messageId: m2.id, readAt: undefined });
  assert.match(receipt.readAt, RFC3339_MS);
  assert.ok(Math.abs(Date.parse(receipt.readAt) - before) < 60_000, `readAt ${receipt.readAt} is not now`);

  await flushRoom(node.url, m.room, [m.buyer, m.seller, m.admin]);
  await flushRoom(node.url, `user:${m.ids.seller}`, [m.seller, sellerTab2]);
  await flushRoom(node.url, `user:${m.ids.buyer}`, [m.buyer, buyerTab2]);
  for (const who of ["buyer", "admin", "sellerTab2"]) assert.deepEqual(withoutOffsets(seen[who], who), [[receipt]], who);
  assert.equal(seen.buyer[0].at(-1), seen.admin[0].at(-1), "the booking room's members saw different offsets");
  // The seller's first tab is in the booking room and in its user room: one
  // copy from each, with that room's offset.
  assert.ok(seen.seller.length >= 1, JSON.stringify(seen.seller));
  for (const args of withoutOffsets(seen.seller, "seller")) assert.deepEqual(args, [receipt], JSON.stringify(seen.seller));
  assert.deepEqual(seen.buyerTab2, [], "the reader's own user room got read:updated");
  assert.deepEqual(seen.stranger, []);

  // An older message: the current receipt, nothing broadcast.
  const sellerSeen = seen.sellerTab2.length;
  assert.deepEqual(await request(m.buyer, "read:mark", { bookingId, messageId: m1.id }), { ok: true, receipt });
  await flushRoom(node.url, m.room, [m.admin]);
  await flushRoom(node.url, `user:${m.ids.seller}`, [sellerTab2]);
  assert.equal(seen.admin.length, 1, "a backward read:mark was broadcast to the room");
  assert.equal(seen.sellerTab2.length, sellerSeen, "a backward read:mark was sent to the seller");

  // Forward again.
  const next = nextMatching(sellerTab2, "read:updated", (p) => p?.messageId === m3.id, 3_000);
  const r3 = (await requestOk(m.buyer, "read:mark", { bookingId, messageId: m3.id })).receipt;
  assert.equal(r3.messageId, m3.id);
  assert.ok(r3.readAt >= receipt.readAt);
  assertRoomEvent(await next, r3);
});

test("booking:join reports unread (messages of others after the receipt) and lastReadMessageId", T, async () => {
  const m = await market(node.url);
  const bookingId = m.booking.id;
  const msgs = [];
  for (let i = 0; i < 3; i++) msgs.push(await send(m.seller, bookingId, `s${i}`));
  await send(m.buyer, bookingId, "the buyer's own");
  const join = async (who) => {
    const reply = await requestOk(m[who], "booking:join", { bookingId });
    return { unread: reply.unread, lastReadMessageId: reply.lastReadMessageId };
  };
  assert.deepEqual(await join("buyer"), { unread: 3, lastReadMessageId: null });
  await requestOk(m.buyer, "read:mark", { bookingId, messageId: msgs[1].id });
  assert.deepEqual(await join("buyer"), { unread: 1, lastReadMessageId: msgs[1].id });
  // The seller has not read the buyer's one message.
  assert.deepEqual(await join("seller"), { unread: 1, lastReadMessageId: null });
});

test("read:mark authorization: buyer and seller may; an admin and a stranger are forbidden (participants only)", T, async () => {
  const m = await market(node.url);
  const msg = await send(m.buyer, m.booking.id, "hello");
  for (const who of ["buyer", "seller"]) {
    const reply = await request(m[who], "read:mark", { bookingId: m.booking.id, messageId: msg.id });
    assert.equal(reply.ok, true, `${who}: ${JSON.stringify(reply)}`);
    assert.equal(reply.receipt.userId, m.ids[who]);
    assert.equal(reply.receipt.messageId, msg.id);
  }
  for (const who of ["admin", "stranger"]) {
    assertAckError(await request(m[who], "read:mark", { bookingId: m.booking.id, messageId: msg.id }), "forbidden", who);
  }
});

test("read:mark refusals: not_found for an unknown booking or a message not in it; bad_request for bad ids", T, async () => {
  const m = await market(node.url);
  const other = await market(node.url);
  const elsewhere = await send(other.buyer, other.booking.id, "other thread");
  const mine = await send(m.seller, m.booking.id, "this thread");
  const bookingId = m.booking.id;
  assertAckError(await request(m.buyer, "read:mark", { bookingId: randomId("bk"), messageId: mine.id }), "not_found", "unknown booking");
  assertAckError(await request(m.buyer, "read:mark", { bookingId, messageId: elsewhere.id }), "not_found", "another booking's message");
  assertAckError(await request(m.buyer, "read:mark", { bookingId, messageId: "987654321987" }), "not_found", "no such message");
  for (const payload of [
    { bookingId },
    { bookingId, messageId: "abc" },
    { bookingId, messageId: Number(mine.id) },
    { bookingId, messageId: "0" },
    { messageId: mine.id },
  ]) {
    assertAckError(await request(m.buyer, "read:mark", payload), "bad_request", JSON.stringify(payload));
  }
  // Nothing was marked.
  assert.deepEqual(
    (await requestOk(m.buyer, "booking:join", { bookingId })).lastReadMessageId,
    null,
  );
});
