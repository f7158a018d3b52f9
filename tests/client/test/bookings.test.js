// PROTOCOL.md §4, §5, §7, §8 for bookings: booking:join / booking:leave,
// booking:transition (every listed move against buyer, seller, admin and a
// stranger), booking:statusChanged, the listing's availability following the
// booking, and the bookings server API.
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
  withoutOffsets,
  assertRoomEvent,
  sleep,
  api,
  request,
  requestOk,
  assertAckError,
  flushRoom,
  watchListing,
  market,
  tab,
  dbRows,
  RFC3339_MS,
} from "./helpers.js";

const node = useNode();

const WHO = ["buyer", "seller", "admin", "stranger"];
const STATUSES = ["requested", "confirmed", "declined", "cancelled", "completed", "disputed", "resolved"];

/** §7: every listed move and who may make it over a socket. */
const MOVES = [
  ["requested", "confirmed", ["seller"]],
  ["requested", "declined", ["seller"]],
  ["requested", "cancelled", ["buyer"]],
  ["confirmed", "completed", []], // only the server API
  ["confirmed", "cancelled", ["buyer", "seller"]],
  ["confirmed", "disputed", ["buyer", "seller"]],
  ["completed", "disputed", ["buyer", "seller"]],
  ["disputed", "resolved", ["admin"]],
];
const listed = (from, to) => MOVES.some(([f, t]) => f === from && t === to);

/** How a booking gets from requested to `status`, and who makes each move. */
const PATH = {
  requested: [],
  confirmed: [["seller", "confirmed"]],
  declined: [["seller", "declined"]],
  cancelled: [["buyer", "cancelled"]],
  completed: [["seller", "confirmed"], ["api", "completed"]],
  disputed: [["seller", "confirmed"], ["buyer", "disputed"]],
  resolved: [["seller", "confirmed"], ["buyer", "disputed"], ["admin", "resolved"]],
};

/** A market (see helpers) whose booking has been moved to `status`. */
async function bookingAt(status) {
  const m = await market(node.url);
  for (const [who, to] of PATH[status]) {
    if (who === "api") {
      const res = await api(node.url, "POST", `/api/v1/bookings/${m.booking.id}/transitions`, { to });
      assert.equal(res.status, 200, res.text);
      m.booking = res.body.booking;
    } else {
      m.booking = (await requestOk(m[who], "booking:transition", { bookingId: m.booking.id, to })).booking;
    }
  }
  assert.equal(m.booking.status, status);
  return m;
}

async function statusOf(bookingId) {
  const res = await api(node.url, "GET", `/api/v1/bookings/${bookingId}`);
  assert.equal(res.status, 200, res.text);
  return res.body.booking.status;
}

async function availabilityOf(listingId) {
  return (await api(node.url, "GET", `/api/v1/listings/${listingId}`)).body.listing.availability;
}

// ------------------------------------------------------------------ booking:join / leave

test("booking:join: buyer, seller and an admin get {booking, unread:0, lastReadMessageId:null}; a stranger is forbidden", T, async () => {
  const m = await market(node.url);
  for (const who of ["buyer", "seller", "admin"]) {
    const reply = await request(m[who], "booking:join", { bookingId: m.booking.id });
    assert.deepEqual(reply, { ok: true, booking: m.booking, unread: 0, lastReadMessageId: null }, who);
  }
  assertAckError(await request(m.stranger, "booking:join", { bookingId: m.booking.id }), "forbidden", "stranger");
  // Another seller, not this booking's, is a stranger too.
  const otherSeller = await connect(node.url, { token: userToken(randomId("seller"), { role: "seller" }) });
  assertAckError(await request(otherSeller, "booking:join", { bookingId: m.booking.id }), "forbidden", "other seller");
});

test("booking:join: unknown booking → not_found; bad bookingId → bad_request", T, async () => {
  const socket = await connect(node.url, { token: userToken(randomId(), { role: "admin" }) });
  assertAckError(await request(socket, "booking:join", { bookingId: randomId("bk") }), "not_found");
  for (const payload of [{}, { bookingId: "" }, { bookingId: "a/b" }, { bookingId: "b".repeat(65) }, { bookingId: 1 }]) {
    assertAckError(await request(socket, "booking:join", payload), "bad_request", JSON.stringify(payload));
  }
});

test("booking:join by an admin is recorded in the audit log; participants' joins are not", T, async () => {
  const m = await market(node.url);
  await requestOk(m.buyer, "booking:join", { bookingId: m.booking.id });
  await requestOk(m.seller, "booking:join", { bookingId: m.booking.id });
  await requestOk(m.admin, "booking:join", { bookingId: m.booking.id });
  // Reads souk's audit_log table directly: the contract names the audit log
  // but no API for it.
  const rows = await dbRows(
    node.db.url,
    `SELECT actor_id, actor_role, action, subject FROM audit_log WHERE subject = 'booking:${m.booking.id}' ORDER BY id`,
  );
  assert.deepEqual(rows, [[m.ids.admin, "admin", "booking:join", `booking:${m.booking.id}`]]);
});

test("booking room: only joined sockets get its events; a refused join joins nothing; booking:leave stops them", T, async () => {
  const m = await market(node.url);
  const room = `booking:${m.booking.id}`;
  await requestOk(m.buyer, "booking:join", { bookingId: m.booking.id });
  await requestOk(m.admin, "booking:join", { bookingId: m.booking.id });
  assertAckError(await request(m.stranger, "booking:join", { bookingId: m.booking.id }), "forbidden");
  const seen = Object.fromEntries(WHO.map((w) => [w, record(m[w], "booking:note")]));

  const post = (data) => api(node.url, "POST", `/api/v1/rooms/${room}/events`, { event: "booking:note", data });
  assert.equal((await post({ n: 1 })).status, 202);
  await flushRoom(node.url, room, [m.buyer, m.admin]);
  assert.deepEqual(withoutOffsets(seen.buyer), [[{ n: 1 }]]);
  assert.deepEqual(withoutOffsets(seen.admin), [[{ n: 1 }]]);
  assert.equal(seen.buyer[0].at(-1), seen.admin[0].at(-1), "one event, one offset for every member");

  assert.deepEqual(await request(m.buyer, "booking:leave", { bookingId: m.booking.id }), { ok: true });
  assert.deepEqual(await request(m.buyer, "booking:leave", { bookingId: m.booking.id }), { ok: true }, "leave twice");
  assert.deepEqual(await request(m.stranger, "booking:leave", { bookingId: m.booking.id }), { ok: true }, "never joined");
  assertAckError(await request(m.buyer, "booking:leave", {}), "bad_request");
  assert.equal((await post({ n: 2 })).status, 202);
  await flushRoom(node.url, room, [m.admin]);
  await sleep(100);
  assert.deepEqual(withoutOffsets(seen.admin), [[{ n: 1 }], [{ n: 2 }]]);
  assert.deepEqual(withoutOffsets(seen.buyer), [[{ n: 1 }]], "the buyer left but still got room events");
  assert.deepEqual(seen.seller, [], "the seller never joined");
  assert.deepEqual(seen.stranger, [], "the stranger's refused join joined the room");
});

test("booking:leave keeps the user room: a status change still reaches the buyer who left", T, async () => {
  const m = await market(node.url);
  await requestOk(m.buyer, "booking:join", { bookingId: m.booking.id });
  await requestOk(m.buyer, "booking:leave", { bookingId: m.booking.id });
  const got = record(m.buyer, "booking:statusChanged");
  await requestOk(m.seller, "booking:transition", { bookingId: m.booking.id, to: "confirmed" });
  await flushRoom(node.url, `user:${m.ids.buyer}`, [m.buyer]);
  assert.deepEqual(withoutOffsets(got), [
    [{ bookingId: m.booking.id, status: "confirmed", previousStatus: "requested", by: m.ids.seller }],
  ]);
});

// ------------------------------------------------------------------ booking:transition

for (const [from, to, allowed] of MOVES) {
  test(`booking:transition ${from} → ${to}: ${allowed.join(" and ") || "nobody over a socket"} may; the rest are forbidden`, T, async () => {
    // Refusals first, on one booking: it must not move.
    const m = await bookingAt(from);
    for (const who of WHO.filter((w) => !allowed.includes(w))) {
      const reply = await request(m[who], "booking:transition", { bookingId: m.booking.id, to });
      assertAckError(reply, "forbidden", who);
    }
    assert.equal(await statusOf(m.booking.id), from, "a refused move changed the booking");

    // Each allowed mover, on a booking of their own.
    for (const [i, who] of allowed.entries()) {
      const b = i === 0 ? m : await bookingAt(from);
      const reply = await request(b[who], "booking:transition", { bookingId: b.booking.id, to });
      assert.equal(reply.ok, true, `${who}: ${JSON.stringify(reply)}`);
      assert.deepEqual(Object.keys(reply).sort(), ["booking", "ok"]);
      assert.deepEqual(
        { ...reply.booking, updatedAt: undefined },
        { ...b.booking, status: to, updatedAt: undefined },
        "only status and updatedAt may change",
      );
      assert.match(reply.booking.updatedAt, RFC3339_MS);
      assert.ok(reply.booking.updatedAt >= b.booking.updatedAt, "updatedAt went backwards");
      assert.equal(await statusOf(b.booking.id), to);
    }
  });
}

test("booking:transition: unlisted moves → invalid_transition for buyer, seller and admin", T, async () => {
  for (const from of ["requested", "declined", "cancelled", "resolved"]) {
    const m = await bookingAt(from);
    for (const to of STATUSES.filter((t) => !listed(from, t))) {
      for (const who of ["buyer", "seller", "admin"]) {
        const reply = await request(m[who], "booking:transition", { bookingId: m.booking.id, to });
        assertAckError(reply, "invalid_transition", `${who} ${from} → ${to}`);
      }
    }
    assert.equal(await statusOf(m.booking.id), from);
  }
});

test("booking:transition refusals: unknown booking → not_found; bad payloads → bad_request", T, async () => {
  const m = await market(node.url);
  assertAckError(await request(m.seller, "booking:transition", { bookingId: randomId("bk"), to: "confirmed" }), "not_found");
  for (const payload of [
    { bookingId: m.booking.id },
    { bookingId: m.booking.id, to: "shipped" },
    { bookingId: m.booking.id, to: "CONFIRMED" },
    { bookingId: m.booking.id, to: 1 },
    { to: "confirmed" },
    { bookingId: "no way", to: "confirmed" },
  ]) {
    assertAckError(await request(m.seller, "booking:transition", payload), "bad_request", JSON.stringify(payload));
  }
  assert.equal(await statusOf(m.booking.id), "requested");
});

test("booking:statusChanged goes to the booking room and both participants' user rooms, not to strangers", T, async () => {
  const m = await market(node.url);
  const buyerTab2 = await tab(node.url, m.ids.buyer, "buyer"); // not in the booking room
  await requestOk(m.buyer, "booking:join", { bookingId: m.booking.id });
  await requestOk(m.admin, "booking:join", { bookingId: m.booking.id }); // room only: not a participant
  await requestOk(m.stranger, "listing:watch", { listingId: m.listingId });
  const strangerSaw = record(m.stranger, "booking:statusChanged");
  const sockets = { buyer: m.buyer, buyerTab2, seller: m.seller, admin: m.admin };
  const waits = Object.fromEntries(Object.entries(sockets).map(([k, s]) => [k, nextEvent(s, "booking:statusChanged", 3_000)]));

  await requestOk(m.seller, "booking:transition", { bookingId: m.booking.id, to: "confirmed" });
  const expected = { bookingId: m.booking.id, status: "confirmed", previousStatus: "requested", by: m.ids.seller };
  for (const [who, wait] of Object.entries(waits)) assertRoomEvent(await wait, expected, who);

  // The admin is in the booking room only: exactly one copy.
  const adminSaw = record(m.admin, "booking:statusChanged");
  const sellerSaw = record(m.seller, "booking:statusChanged");
  await requestOk(m.buyer, "booking:transition", { bookingId: m.booking.id, to: "disputed" });
  await flushRoom(node.url, `booking:${m.booking.id}`, [m.admin]);
  await flushRoom(node.url, `user:${m.ids.seller}`, [m.seller]);
  const disputed = { bookingId: m.booking.id, status: "disputed", previousStatus: "confirmed", by: m.ids.buyer };
  assert.deepEqual(withoutOffsets(adminSaw), [[disputed]]);
  assert.deepEqual(withoutOffsets(sellerSaw), [[disputed]]);

  // The admin resolves: `by` is the admin.
  const resolved = nextEvent(m.seller, "booking:statusChanged", 3_000);
  await requestOk(m.admin, "booking:transition", { bookingId: m.booking.id, to: "resolved" });
  assertRoomEvent(await resolved, { bookingId: m.booking.id, status: "resolved", previousStatus: "disputed", by: m.ids.admin });
  await sleep(100);
  assert.deepEqual(strangerSaw, []);
});

for (const [how, to] of [
  ["the seller declines", "declined"],
  ["the buyer cancels the request", "cancelled"],
]) {
  test(`${how}: the listing is available again (listing:availabilityChanged) and can be reserved anew`, T, async () => {
    const m = await market(node.url);
    await watchListing(node.url, [m.stranger], m.listingId); // the reservation's own event is in
    assert.equal(await availabilityOf(m.listingId), "reserved");
    const changed = nextEvent(m.stranger, "listing:availabilityChanged", 3_000);
    const mover = to === "declined" ? m.seller : m.buyer;
    await requestOk(mover, "booking:transition", { bookingId: m.booking.id, to });
    assertRoomEvent(await changed, { listingId: m.listingId, availability: "available" });
    assert.equal(await availabilityOf(m.listingId), "available");
    const again = await requestOk(m.stranger, "listing:reserve", { listingId: m.listingId, idempotencyKey: "again" });
    assert.equal(again.booking.status, "requested");
    assert.equal(again.booking.buyerId, m.ids.stranger);
    assert.notEqual(again.booking.id, m.booking.id);
  });
}

test("a confirmed booking cancelled by the seller frees the listing; confirming does not", T, async () => {
  const m = await market(node.url);
  await watchListing(node.url, [m.stranger], m.listingId); // the reservation's own event is in
  const changes = record(m.stranger, "listing:availabilityChanged");
  await requestOk(m.seller, "booking:transition", { bookingId: m.booking.id, to: "confirmed" });
  await flushRoom(node.url, `listing:${m.listingId}`, [m.stranger]);
  assert.deepEqual(changes, [], "confirming changed the listing's availability");
  assert.equal(await availabilityOf(m.listingId), "reserved");

  await requestOk(m.seller, "booking:transition", { bookingId: m.booking.id, to: "cancelled" });
  await flushRoom(node.url, `listing:${m.listingId}`, [m.stranger]);
  assert.deepEqual(withoutOffsets(changes), [[{ listingId: m.listingId, availability: "available" }]]);
  assert.equal(await availabilityOf(m.listingId), "available");
});

// ------------------------------------------------------------------ server API

test("POST /api/v1/bookings/{id}/transitions: completed (sold, with by), 409 invalid_transition, 404, GET booking", T, async () => {
  const m = await bookingAt("confirmed");
  await watchListing(node.url, [m.stranger], m.listingId); // the reservation's own event is in
  const sold = nextEvent(m.stranger, "listing:availabilityChanged", 3_000);
  // The confirm's own statusChanged may still be on its way: wait for this one.
  const status = nextMatching(m.buyer, "booking:statusChanged", (p) => p?.status === "completed", 3_000);
  const res = await api(node.url, "POST", `/api/v1/bookings/${m.booking.id}/transitions`, { to: "completed", by: "ops_7" });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.body.booking.status, "completed");
  assert.equal(res.body.booking.id, m.booking.id);
  assertRoomEvent(await status, { bookingId: m.booking.id, status: "completed", previousStatus: "confirmed", by: "ops_7" });
  assertRoomEvent(await sold, { listingId: m.listingId, availability: "sold" });
  assert.equal(await availabilityOf(m.listingId), "sold");

  const got = await api(node.url, "GET", `/api/v1/bookings/${m.booking.id}`);
  assert.equal(got.status, 200, got.text);
  assert.deepEqual(got.body, { booking: res.body.booking });

  const invalid = await api(node.url, "POST", `/api/v1/bookings/${m.booking.id}/transitions`, { to: "requested" });
  assert.equal(invalid.status, 409, invalid.text);
  assert.equal(invalid.body?.error?.code, "invalid_transition", invalid.text);
  assert.equal(await statusOf(m.booking.id), "completed");

  const missing = await api(node.url, "POST", `/api/v1/bookings/${randomId("bk")}/transitions`, { to: "confirmed" });
  assert.equal(missing.status, 404, missing.text);
  assert.equal(missing.body?.error?.code, "not_found", missing.text);
  const missingGet = await api(node.url, "GET", `/api/v1/bookings/${randomId("bk")}`);
  assert.equal(missingGet.status, 404, missingGet.text);
});

test("the server API may make any listed move, including the seller's and the admin's", T, async () => {
  const m = await market(node.url);
  for (const to of ["confirmed", "disputed", "resolved"]) {
    const res = await api(node.url, "POST", `/api/v1/bookings/${m.booking.id}/transitions`, { to, by: "backend" });
    assert.equal(res.status, 200, `${to}: ${res.text}`);
    assert.equal(res.body.booking.status, to);
  }
});

test("booking:transition without an ack id: a refusal comes back as server:error", T, async () => {
  const m = await market(node.url);
  const err = nextEvent(m.buyer, "server:error", 3_000);
  m.buyer.emit("booking:transition", { bookingId: m.booking.id, to: "confirmed" });
  const args = await err;
  assert.equal(args.length, 1, `server:error is not a room event: no offset expected, got ${JSON.stringify(args)}`);
  const [payload] = args;
  assert.equal(payload.code, "forbidden", JSON.stringify(payload));
  assert.equal(payload.event, "booking:transition");
  assert.equal(await statusOf(m.booking.id), "requested");
});
