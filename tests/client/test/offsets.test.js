// PROTOCOL.md §4: "each room event carries its offset (a string, increasing
// within the room) as the last argument, as Socket.IO's connection state
// recovery does". Offsets strictly increase within a room, whatever kind of
// event (listing, booking, user and backend events alike); every member of a
// room sees one event with one offset; acks and server:error are not room
// events and carry none.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  T,
  useNode,
  connect,
  userToken,
  randomId,
  sleep,
  api,
  putListing,
  postNotification,
  request,
  requestOk,
  assertAckError,
  flushRoom,
  watchListing,
  market,
  waitUntil,
  splitOffset,
  assertIncreasing,
  compareOffsets,
  OFFSET,
} from "./helpers.js";

const node = useNode();

const ACK = 3; // Socket.IO packet type ACK
const EVENT = 2; // Socket.IO packet type EVENT

/**
 * Every Socket.IO EVENT and ACK frame of namespace "/" that reaches `socket`,
 * as {type, id, data}, decoded from the Engine.IO message text itself:
 * socket.io-client's decoded packets are no witness, since it prepends the
 * `null` error argument of a `timeout()` ack to the packet's own data.
 */
function recordFrames(socket) {
  const frames = [];
  socket.io.engine.on("packet", (p) => {
    if (p.type !== "message" || typeof p.data !== "string") return;
    const m = /^([23])(\d*)(\[.*)$/s.exec(p.data);
    if (m) frames.push({ type: Number(m[1]), id: m[2], data: JSON.parse(m[3]), text: p.data });
  });
  return frames;
}

/** Every event `socket` receives, in arrival order: {event, args, offset} (args without the offset). */
function recordAll(socket) {
  const seen = [];
  socket.onAny((event, ...all) => {
    // Assert later (a throw here would land in socket.io-client's packet loop).
    const ok = all.length >= 2 && typeof all.at(-1) === "string" && OFFSET.test(all.at(-1));
    seen.push({ event, raw: all, args: ok ? all.slice(0, -1) : all, offset: ok ? all.at(-1) : null });
  });
  return seen;
}

function assertAllHaveOffsets(seen, what) {
  for (const [i, e] of seen.entries()) splitOffset(e.raw, `${what}: #${i} ${e.event}`);
}

test("offsets: the helper's ordering is numeric, ms first, then seq", () => {
  assert.equal(compareOffsets("9-0", "10-0"), -1, "ms compared as numbers, not strings");
  assert.equal(compareOffsets("10-9", "10-10"), -1, "seq compared as numbers, not strings");
  assert.equal(compareOffsets("11-0", "10-99"), 1, "ms before seq");
  assert.equal(compareOffsets("1795379740327-3", "1795379740327-3"), 0);
  assert.throws(() => assertIncreasing(["5-1", "5-1"]), /do not increase/);
  assert.doesNotThrow(() => assertIncreasing(["5-1", "5-2", "6-0", "10-0"]));
});

// ------------------------------------------------------------------ (a) strictly increasing

test("offsets strictly increase in a listing room across PUTs, backend events and a reservation, same for every watcher", T, async () => {
  const m = await market(node.url, { reserve: false });
  // Fresh users who do nothing else: every event they get comes from the listing room.
  const watchers = await Promise.all([0, 1].map(() => connect(node.url, { token: userToken(randomId("w")) })));
  await watchListing(node.url, watchers, m.listingId); // the creation's listing:updated is in
  const seen = watchers.map(recordAll);
  const room = `listing:${m.listingId}`;
  const base = { sellerId: m.ids.seller, title: m.listing.title, currency: "EUR" };

  await putListing(node.url, m.listingId, { ...base, price: 44_000 }); // updated + priceChanged
  for (let n = 0; n < 3; n++) {
    const res = await api(node.url, "POST", `/api/v1/rooms/${room}/events`, { event: "listing:note", data: { n } });
    assert.equal(res.status, 202, res.text);
  }
  await putListing(node.url, m.listingId, { ...base, title: "Renamed", price: 44_000 }); // updated
  const { booking } = await requestOk(m.buyer, "listing:reserve", { listingId: m.listingId, idempotencyKey: "k" }); // availabilityChanged
  await requestOk(m.seller, "booking:transition", { bookingId: booking.id, to: "declined" }); // availabilityChanged
  await flushRoom(node.url, room, watchers);

  const names = (s) => s.map((e) => e.event);
  const expected = [
    ["listing:updated", "listing:priceChanged"],
    ["listing:note", "listing:note", "listing:note"],
    ["listing:updated"],
    ["listing:availabilityChanged"],
    ["listing:availabilityChanged"],
    ["test:flush"],
  ];
  for (const [i, s] of seen.entries()) {
    assertAllHaveOffsets(s, `watcher ${i}`);
    // listing:updated and listing:priceChanged of one PUT: either order is one order.
    const got = names(s);
    assert.deepEqual([...got.slice(0, 2)].sort(), [...expected[0]].sort(), JSON.stringify(got));
    assert.deepEqual(got.slice(2), expected.slice(1).flat(), JSON.stringify(got));
    assert.deepEqual(s.filter((e) => e.event === "listing:note").map((e) => e.args), [[{ n: 0 }], [{ n: 1 }], [{ n: 2 }]]);
    assert.deepEqual(
      s.filter((e) => e.event === "listing:availabilityChanged").map((e) => e.args[0].availability),
      ["reserved", "available"],
    );
    assertIncreasing(s.map((e) => e.offset), `watcher ${i}'s offsets in ${room}`);
  }
  assert.deepEqual(seen[0].map((e) => e.raw), seen[1].map((e) => e.raw), "the two watchers saw different events or offsets");
});

test("offsets strictly increase in a booking room across message:new, typing, read:updated and booking:statusChanged", T, async () => {
  const m = await market(node.url);
  const bookingId = m.booking.id;
  const room = `booking:${bookingId}`;
  // The admin is in the booking room but is no participant: nothing reaches its user room.
  await requestOk(m.admin, "booking:join", { bookingId });
  const seen = recordAll(m.admin);

  const sent = [];
  for (let i = 0; i < 5; i++) {
    const who = i % 2 ? m.seller : m.buyer;
    sent.push((await requestOk(who, "message:send", { bookingId, body: `m${i}`, clientMsgId: `c${i}` })).message);
  }
  await requestOk(m.buyer, "typing:start", { bookingId });
  await requestOk(m.buyer, "typing:stop", { bookingId });
  await requestOk(m.seller, "read:mark", { bookingId, messageId: sent[4].id });
  await requestOk(m.seller, "booking:transition", { bookingId, to: "confirmed" });
  await flushRoom(node.url, room, [m.admin]);

  assertAllHaveOffsets(seen, "admin");
  assert.deepEqual(
    seen.map((e) => e.event),
    [...sent.map(() => "message:new"), "typing", "typing", "read:updated", "booking:statusChanged", "test:flush"],
    JSON.stringify(seen.map((e) => e.event)),
  );
  assert.deepEqual(
    seen.filter((e) => e.event === "message:new").map((e) => e.args),
    sent.map((message) => [{ message }]),
  );
  assert.deepEqual(
    seen.filter((e) => e.event === "typing").map((e) => e.args[0].typing),
    [true, false],
  );
  assertIncreasing(seen.map((e) => e.offset), `offsets in ${room}`);
});

test("offsets strictly increase in a user room: notifications and booking events, the same on both tabs", T, async () => {
  const m = await market(node.url, { reserve: false });
  const sellerTab2 = await connect(node.url, { token: userToken(m.ids.seller, { role: "seller" }) });
  const tabs = [m.seller, sellerTab2];
  const seen = tabs.map(recordAll);
  const room = `user:${m.ids.seller}`;

  for (let n = 0; n < 5; n++) {
    const res = await postNotification(node.url, m.ids.seller, { kind: "test.seq", data: { n } });
    assert.equal(res.status, 202, res.text);
  }
  const { booking } = await requestOk(m.buyer, "listing:reserve", { listingId: m.listingId, idempotencyKey: "k" }); // booking:created
  await requestOk(m.buyer, "booking:transition", { bookingId: booking.id, to: "cancelled" }); // booking:statusChanged
  await flushRoom(node.url, room, tabs);

  for (const [i, s] of seen.entries()) {
    assertAllHaveOffsets(s, `tab ${i}`);
    assert.deepEqual(
      s.map((e) => e.event),
      ["notification", "notification", "notification", "notification", "notification", "booking:created", "booking:statusChanged", "test:flush"],
    );
    assert.deepEqual(
      s.filter((e) => e.event === "notification").map((e) => e.args),
      [0, 1, 2, 3, 4].map((n) => [{ kind: "test.seq", data: { n } }]),
    );
    assertIncreasing(s.map((e) => e.offset), `tab ${i}'s offsets in ${room}`);
  }
  assert.deepEqual(seen[0].map((e) => e.raw), seen[1].map((e) => e.raw), "the two tabs saw different events or offsets");
});

// ------------------------------------------------------------------ (b) acks and server:error

test("acks and server:error carry no offset, while the room events around them do", T, async () => {
  const m = await market(node.url, { reserve: false });
  const packets = recordFrames(m.buyer);
  // Acks whose handlers also emit room events to this very socket.
  await requestOk(m.buyer, "listing:watch", { listingId: m.listingId });
  const reserved = await requestOk(m.buyer, "listing:reserve", { listingId: m.listingId, idempotencyKey: "k" }); // availabilityChanged + booking:created
  const bookingId = reserved.booking.id;
  await requestOk(m.buyer, "booking:join", { bookingId });
  const { message } = await requestOk(m.buyer, "message:send", { bookingId, body: "hi", clientMsgId: "c1" }); // message:new + booking:activity
  await requestOk(m.buyer, "typing:start", { bookingId });
  await requestOk(m.buyer, "typing:stop", { bookingId });
  await requestOk(m.seller, "message:send", { bookingId, body: "hello", clientMsgId: "c2" });
  await requestOk(m.buyer, "read:mark", { bookingId, messageId: message.id });
  await requestOk(m.buyer, "message:history", { bookingId });
  await requestOk(m.buyer, "presence:watch", { userIds: [m.ids.seller] });
  await requestOk(m.buyer, "presence:unwatch", { userIds: [m.ids.seller] });
  await requestOk(m.buyer, "auth:refresh", { token: userToken(m.ids.buyer, { role: "buyer" }) });
  // Failing acks.
  assertAckError(await request(m.buyer, "listing:watch", { listingId: randomId("nope") }), "not_found");
  assertAckError(await request(m.buyer, "listing:reserve", { listingId: m.listingId, idempotencyKey: "k2" }), "unavailable");
  assertAckError(await request(m.buyer, "booking:transition", { bookingId, to: "confirmed" }), "forbidden");
  assertAckError(await request(m.buyer, "no:such:event", {}), "unsupported");
  assertAckError(await request(m.buyer, "message:send", { bookingId }), "bad_request");

  // server:error, for refusals of events sent without an ack id.
  const errors = [];
  m.buyer.on("server:error", (...args) => errors.push(args));
  m.buyer.emit("no:such:event", { a: 1 });
  m.buyer.emit("listing:watch", {});
  m.buyer.emit("booking:transition", { bookingId, to: "confirmed" });
  m.buyer.emit("listing:reserve", { listingId: randomId("nope"), idempotencyKey: "k-nope" });
  await waitUntil(() => errors.length >= 4, 3_000, "four server:error events");
  await flushRoom(node.url, `booking:${bookingId}`, [m.buyer]);
  await flushRoom(node.url, `user:${m.ids.buyer}`, [m.buyer]);
  await flushRoom(node.url, `listing:${m.listingId}`, [m.buyer]);

  // What the client handed to the listeners.
  assert.deepEqual(
    errors.map((args) => [args.length, args[0]?.code, args[0]?.event]),
    [
      [1, "unsupported", "no:such:event"],
      [1, "bad_request", "listing:watch"],
      [1, "forbidden", "booking:transition"],
      [1, "not_found", "listing:reserve"],
    ],
    `server:error arguments: ${JSON.stringify(errors)}`,
  );

  // What came over the wire: every ACK is 43<id>[reply]; server:error is 42["server:error",payload].
  const acks = packets.filter((p) => p.type === ACK);
  assert.equal(acks.length, 16, `ACK packets: ${JSON.stringify(acks)}`);
  for (const p of acks) {
    assert.equal(p.data.length, 1, `an ACK carries more than its reply: ${p.text}`);
    assert.equal(typeof p.data[0], "object", JSON.stringify(p.data));
    assert.equal(typeof p.data[0].ok, "boolean", JSON.stringify(p.data));
  }
  assert.equal(new Set(acks.map((p) => p.id)).size, acks.length, "one ACK per ack id");
  const events = packets.filter((p) => p.type === EVENT);
  assert.equal(events.filter((p) => p.data[0] === "server:error").length, 4);
  for (const p of events.filter((p) => p.data[0] === "server:error")) {
    assert.equal(p.data.length, 2, `server:error carries more than its payload: ${p.text}`);
  }
  // And the room events in between did carry one (name, payload, offset).
  const roomEvents = events.filter((p) => p.data[0] !== "server:error");
  const names = new Set(roomEvents.map((p) => p.data[0]));
  for (const name of ["listing:availabilityChanged", "booking:created", "message:new", "booking:activity", "read:updated", "test:flush"]) {
    assert.ok(names.has(name), `no ${name} among ${[...names]}`);
  }
  for (const p of roomEvents) {
    assert.equal(p.data.length, 3, `a room event is not (name, payload, offset): ${p.text}`);
    assert.match(p.data[2], OFFSET, JSON.stringify(p.data));
  }
});

// ------------------------------------------------------------------ (c) one order, one offset

test("two watchers on one node get a burst of 20 backend events in the same order with identical, increasing offsets", T, async () => {
  const m = await market(node.url, { reserve: false });
  const watchers = await Promise.all([0, 1].map(() => connect(node.url, { token: userToken(randomId("w")) })));
  await watchListing(node.url, watchers, m.listingId); // the creation's listing:updated is in
  const seen = watchers.map(recordAll);
  const room = `listing:${m.listingId}`;

  // All 20 at once: the server picks the order, and both must see that one.
  const replies = await Promise.all(
    Array.from({ length: 20 }, (_, n) =>
      api(node.url, "POST", `/api/v1/rooms/${room}/events`, { event: "listing:burst", data: { n, text: `event ${n}` } }),
    ),
  );
  for (const res of replies) assert.equal(res.status, 202, res.text);
  await waitUntil(() => seen.every((s) => s.length >= 20), 5_000, "20 events at both watchers");
  await sleep(100); // nothing more may come

  for (const [i, s] of seen.entries()) {
    assert.equal(s.length, 20, `watcher ${i} got ${s.length} events: ${JSON.stringify(s.map((e) => e.raw))}`);
    assertAllHaveOffsets(s, `watcher ${i}`);
    assert.ok(s.every((e) => e.event === "listing:burst"), JSON.stringify(s.map((e) => e.event)));
    assert.ok(s.every((e) => e.args.length === 1), "one payload per event");
    assert.deepEqual(
      s.map((e) => e.args[0].n).sort((a, b) => a - b),
      Array.from({ length: 20 }, (_, n) => n),
      `watcher ${i} did not get each event exactly once`,
    );
    for (const e of s) assert.deepEqual(e.args[0], { n: e.args[0].n, text: `event ${e.args[0].n}` });
    assertIncreasing(s.map((e) => e.offset), `watcher ${i}'s offsets`);
  }
  assert.deepEqual(
    seen[0].map((e) => [e.args[0].n, e.offset]),
    seen[1].map((e) => [e.args[0].n, e.offset]),
    "the watchers saw the burst in different orders or with different offsets",
  );
});
