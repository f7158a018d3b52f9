// PROTOCOL.md §4-§6 and §8 for listings: PUT/GET /api/v1/listings/{id},
// listing:watch / listing:unwatch (public and private), the listing room's
// events, and listing:reserve with its booking:created notifications.
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
  putListing,
  request,
  requestOk,
  assertAckError,
  flushRoom,
  watchListing,
  market,
  tab,
  RFC3339_MS,
} from "./helpers.js";

const node = useNode();

const LISTING_KEYS = [
  "auction",
  "availability",
  "currency",
  "id",
  "price",
  "sellerId",
  "title",
  "updatedAt",
  "version",
  "visibility",
].sort();
const BOOKING_KEYS = ["buyerId", "createdAt", "id", "listingId", "sellerId", "status", "updatedAt"].sort();
const ID = /^[A-Za-z0-9_-]{1,64}$/;

function assertBooking(booking, { listingId, buyerId, sellerId, status }) {
  assert.deepEqual(Object.keys(booking).sort(), BOOKING_KEYS, JSON.stringify(booking));
  assert.match(booking.id, ID);
  assert.equal(booking.listingId, listingId);
  assert.equal(booking.buyerId, buyerId);
  assert.equal(booking.sellerId, sellerId);
  assert.equal(booking.status, status);
  assert.match(booking.createdAt, RFC3339_MS);
  assert.match(booking.updatedAt, RFC3339_MS);
}

const inAnHour = (h) => new Date(Date.now() + h * 3_600_000).toISOString();

// ------------------------------------------------------------------ server API

test("PUT /api/v1/listings/{id}: 201 on create, 200 on update, GET returns the same listing", T, async () => {
  const id = randomId("l");
  const seller = randomId("seller");
  const body = { sellerId: seller, title: "Oak table", price: 12_500, currency: "EUR" };
  const created = await api(node.url, "PUT", `/api/v1/listings/${id}`, body);
  assert.equal(created.status, 201, created.text);
  const l1 = created.body.listing;
  assert.deepEqual(Object.keys(l1).sort(), LISTING_KEYS, JSON.stringify(l1));
  assert.equal(l1.id, id);
  assert.equal(l1.sellerId, seller);
  assert.equal(l1.title, "Oak table");
  assert.equal(l1.price, 12_500);
  assert.equal(l1.currency, "EUR");
  assert.equal(l1.visibility, "public", "visibility defaults to public");
  assert.equal(l1.availability, "available", "availability defaults to available");
  assert.equal(l1.auction, null);
  assert.equal(typeof l1.version, "number");
  assert.match(l1.updatedAt, RFC3339_MS);

  const got = await api(node.url, "GET", `/api/v1/listings/${id}`);
  assert.equal(got.status, 200, got.text);
  assert.deepEqual(got.body, { listing: l1 });

  const updated = await api(node.url, "PUT", `/api/v1/listings/${id}`, { ...body, price: 9_900, visibility: "private" });
  assert.equal(updated.status, 200, updated.text);
  const l2 = updated.body.listing;
  assert.equal(l2.price, 9_900);
  assert.equal(l2.visibility, "private");
  assert.ok(l2.version > l1.version, `version did not grow: ${l1.version} -> ${l2.version}`);
  assert.deepEqual((await api(node.url, "GET", `/api/v1/listings/${id}`)).body, { listing: l2 });
});

test("server API refusals: 404 not_found, 401 without token, 403 for a user token, 422 bad values", T, async () => {
  const missing = await api(node.url, "GET", `/api/v1/listings/${randomId("nope")}`);
  assert.equal(missing.status, 404, missing.text);
  assert.equal(missing.body?.error?.code, "not_found", missing.text);

  const body = { sellerId: randomId("s"), title: "Lamp", price: 100, currency: "EUR" };
  const anonymous = await api(node.url, "PUT", `/api/v1/listings/${randomId("l")}`, body, null);
  assert.equal(anonymous.status, 401, anonymous.text);
  assert.equal(anonymous.body?.error?.code, "unauthorized", anonymous.text);

  const asUser = await api(node.url, "PUT", `/api/v1/listings/${randomId("l")}`, body, userToken(randomId(), { role: "admin" }));
  assert.equal(asUser.status, 403, asUser.text);
  assert.equal(asUser.body?.error?.code, "forbidden", asUser.text);

  for (const bad of [
    { ...body, currency: "euro" },
    { ...body, price: -1 },
    { ...body, price: 1_000_000_000_001 },
    { ...body, visibility: "secret" },
    { ...body, title: "" },
  ]) {
    const res = await api(node.url, "PUT", `/api/v1/listings/${randomId("l")}`, bad);
    assert.equal(res.status, 422, `${JSON.stringify(bad)} -> ${res.status} ${res.text}`);
    assert.equal(res.body?.error?.code, "bad_request", res.text);
  }
});

test("POST /api/v1/rooms/listing:{id}/events reaches the listing's watchers only (202)", T, async () => {
  const m = await market(node.url, { reserve: false });
  await requestOk(m.stranger, "listing:watch", { listingId: m.listingId });
  const notWatching = record(m.buyer, "listing:promo");
  const got = nextEvent(m.stranger, "listing:promo", 3_000);
  const data = { listingId: m.listingId, text: "−10 % today ✓", n: 3 };
  const res = await api(node.url, "POST", `/api/v1/rooms/listing:${m.listingId}/events`, { event: "listing:promo", data });
  assert.equal(res.status, 202, res.text);
  assertRoomEvent(await got, data, "listing:promo");
  await sleep(200);
  assert.deepEqual(notWatching, []);
});

// ------------------------------------------------------------------ listing:watch

test("listing:watch of a public listing: anyone gets {ok:true, listing}, the listing as GET shows it", T, async () => {
  const m = await market(node.url, { reserve: false });
  const expected = (await api(node.url, "GET", `/api/v1/listings/${m.listingId}`)).body.listing;
  for (const who of ["buyer", "seller", "admin", "stranger"]) {
    const reply = await request(m[who], "listing:watch", { listingId: m.listingId });
    assert.deepEqual(reply, { ok: true, listing: expected }, `${who}: ${JSON.stringify(reply)}`);
  }
});

test("listing:watch: unknown listing → not_found; bad listingId → bad_request", T, async () => {
  const socket = await connect(node.url, { token: userToken(randomId()) });
  assertAckError(await request(socket, "listing:watch", { listingId: randomId("nope") }), "not_found");
  for (const payload of [{}, { listingId: "" }, { listingId: "has space" }, { listingId: "x".repeat(65) }, { listingId: 7 }]) {
    assertAckError(await request(socket, "listing:watch", payload), "bad_request", JSON.stringify(payload));
  }
  assert.equal(socket.connected, true);
});

test("listing:watch of a private listing: seller, admin and a buyer with a booking on it may; a stranger is forbidden", T, async () => {
  // The buyer's booking is made while the listing is public; then it turns private.
  const m = await market(node.url);
  await putListing(node.url, m.listingId, {
    sellerId: m.ids.seller,
    title: m.listing.title,
    price: m.listing.price,
    currency: m.listing.currency,
    visibility: "private",
    availability: "reserved",
  });
  const expected = (await api(node.url, "GET", `/api/v1/listings/${m.listingId}`)).body.listing;
  assert.equal(expected.visibility, "private");
  for (const who of ["seller", "admin", "buyer"]) {
    const reply = await request(m[who], "listing:watch", { listingId: m.listingId });
    assert.deepEqual(reply, { ok: true, listing: expected }, `${who}: ${JSON.stringify(reply)}`);
  }
  assertAckError(await request(m.stranger, "listing:watch", { listingId: m.listingId }), "forbidden", "stranger");
  // A user with the seller's role but not this listing's seller is a stranger too.
  const otherSeller = await connect(node.url, { token: userToken(randomId("seller"), { role: "seller" }) });
  assertAckError(await request(otherSeller, "listing:watch", { listingId: m.listingId }), "forbidden", "other seller");
});

test("a refused listing:watch joins nothing: the stranger sees none of the private listing's events", T, async () => {
  const m = await market(node.url, { reserve: false, listing: { visibility: "private" } });
  assertAckError(await request(m.stranger, "listing:watch", { listingId: m.listingId }), "forbidden");
  await requestOk(m.seller, "listing:watch", { listingId: m.listingId });
  const strangerSaw = [
    ...["listing:updated", "listing:priceChanged", "listing:availabilityChanged"].map((e) => record(m.stranger, e)),
  ];
  const sellerSaw = record(m.seller, "listing:priceChanged");
  await putListing(node.url, m.listingId, {
    sellerId: m.ids.seller,
    title: "Road bike, 56 cm",
    price: 40_000,
    currency: "EUR",
    visibility: "private",
  });
  await flushRoom(node.url, `listing:${m.listingId}`, [m.seller]);
  assert.equal(sellerSaw.length, 1, "the seller (a member) got listing:priceChanged");
  assert.equal(withoutOffsets(sellerSaw)[0][0].price, 40_000);
  await sleep(100);
  assert.deepEqual(strangerSaw, [[], [], []]);
});

test("listing room: a PUT emits listing:updated, listing:priceChanged and listing:availabilityChanged to watchers", T, async () => {
  const m = await market(node.url, { reserve: false });
  const watchers = [m.buyer, m.stranger];
  await watchListing(node.url, watchers, m.listingId); // the creation's listing:updated is in
  const outsider = await connect(node.url, { token: userToken(randomId()) });
  const outsiderSaw = ["listing:updated", "listing:priceChanged", "listing:availabilityChanged"].map((e) =>
    record(outsider, e),
  );
  const seen = watchers.map((s) => ({
    updated: record(s, "listing:updated"),
    price: record(s, "listing:priceChanged"),
    availability: record(s, "listing:availabilityChanged"),
  }));

  // 1. A price change: updated + priceChanged, no availabilityChanged.
  const base = { sellerId: m.ids.seller, title: m.listing.title, currency: "EUR" };
  const l2 = await putListing(node.url, m.listingId, { ...base, price: 39_900 });
  await flushRoom(node.url, `listing:${m.listingId}`, watchers);
  for (const s of seen) {
    assert.deepEqual(withoutOffsets(s.updated), [[{ listing: l2 }]]);
    assert.deepEqual(withoutOffsets(s.price), [
      [{ listingId: m.listingId, price: 39_900, previousPrice: 45_000, currency: "EUR", version: l2.version }],
    ]);
    assert.deepEqual(s.availability, []);
  }

  // 2. An availability change: updated + availabilityChanged, no priceChanged.
  const l3 = await putListing(node.url, m.listingId, { ...base, price: 39_900, availability: "withdrawn" });
  await flushRoom(node.url, `listing:${m.listingId}`, watchers);
  for (const s of seen) {
    assert.deepEqual(withoutOffsets(s.updated), [[{ listing: l2 }], [{ listing: l3 }]]);
    assert.equal(s.price.length, 1, "no priceChanged when only the availability changed");
    assert.deepEqual(withoutOffsets(s.availability), [[{ listingId: m.listingId, availability: "withdrawn" }]]);
  }

  // 3. A title change only: listing:updated alone.
  const l4 = await putListing(node.url, m.listingId, { ...base, title: "Road bike, 56 cm, new tyres", price: 39_900, availability: "withdrawn" });
  await flushRoom(node.url, `listing:${m.listingId}`, watchers);
  for (const s of seen) {
    assert.deepEqual(withoutOffsets(s.updated).at(-1), [{ listing: l4 }]);
    assert.equal(s.updated.length, 3);
    assert.equal(s.price.length, 1);
    assert.equal(s.availability.length, 1);
  }
  // Both watchers saw each event with the same offset.
  assert.deepEqual(seen[0], seen[1], "the two watchers saw different arguments or offsets");
  await sleep(100);
  assert.deepEqual(outsiderSaw, [[], [], []], "a socket that did not watch got listing events");
});

test("listing:unwatch answers {ok:true}, is idempotent, and stops the listing's events", T, async () => {
  const m = await market(node.url, { reserve: false });
  await watchListing(node.url, [m.stranger, m.buyer], m.listingId); // the creation's listing:updated is in
  for (let i = 0; i < 2; i++) {
    assert.deepEqual(await request(m.stranger, "listing:unwatch", { listingId: m.listingId }), { ok: true });
  }
  assert.deepEqual(await request(m.stranger, "listing:unwatch", { listingId: randomId("never") }), { ok: true });
  assertAckError(await request(m.stranger, "listing:unwatch", {}), "bad_request");

  const strangerSaw = record(m.stranger, "listing:updated");
  const buyerSaw = record(m.buyer, "listing:updated");
  await putListing(node.url, m.listingId, { sellerId: m.ids.seller, title: "Renamed", price: 1, currency: "EUR" });
  await flushRoom(node.url, `listing:${m.listingId}`, [m.buyer]);
  await sleep(100);
  assert.equal(buyerSaw.length, 1, "the remaining watcher got listing:updated");
  assert.equal(withoutOffsets(buyerSaw)[0][0].listing.title, "Renamed");
  assert.deepEqual(strangerSaw, []);
});

test("auction listing: the reserve price is shown to the seller and admins only, never in listing:updated", T, async () => {
  const startsAt = inAnHour(1);
  const endsAt = inAnHour(2);
  const auction = { startsAt, endsAt, startPrice: 1_000, minIncrement: 100, reservePrice: 5_000, extendWindowSecs: 60 };
  const m = await market(node.url, { reserve: false, listing: { auction } });
  assert.equal(m.listing.auction.reservePrice, 5_000, "the server API sees the reserve price");

  const seller = (await requestOk(m.seller, "listing:watch", { listingId: m.listingId })).listing;
  const admin = (await requestOk(m.admin, "listing:watch", { listingId: m.listingId })).listing;
  const buyer = (await requestOk(m.buyer, "listing:watch", { listingId: m.listingId })).listing;
  for (const [who, l] of [["seller", seller], ["admin", admin]]) {
    assert.equal(l.auction?.reservePrice, 5_000, `${who}: ${JSON.stringify(l.auction)}`);
  }
  await flushRoom(node.url, `listing:${m.listingId}`, [m.seller, m.admin, m.buyer]); // the creation's listing:updated is in
  const a = buyer.auction;
  assert.ok(a, "auction missing");
  assert.equal("reservePrice" in a, false, `the buyer sees the reserve price: ${JSON.stringify(a)}`);
  assert.equal(Date.parse(a.startsAt), Date.parse(startsAt));
  assert.equal(Date.parse(a.endsAt), Date.parse(endsAt));
  assert.match(a.startsAt, RFC3339_MS);
  assert.match(a.endsAt, RFC3339_MS);
  assert.equal(a.startPrice, 1_000);
  assert.equal(a.minIncrement, 100);
  assert.equal(a.extendWindowSecs, 60);
  assert.equal(a.status, "scheduled");
  assert.equal(a.currentAmount, null);
  assert.equal(a.leaderId, null);
  assert.equal(a.bidCount, 0);

  const updated = nextEvent(m.buyer, "listing:updated", 3_000);
  const sellerUpdated = nextEvent(m.seller, "listing:updated", 3_000);
  await putListing(node.url, m.listingId, {
    sellerId: m.ids.seller,
    title: "Signed print",
    price: 45_000,
    currency: "EUR",
    auction,
  });
  for (const args of [await updated, await sellerUpdated]) {
    const [[payload]] = withoutOffsets([args], "listing:updated");
    assert.equal(payload.listing.title, "Signed print");
    assert.equal("reservePrice" in payload.listing.auction, false, JSON.stringify(payload.listing.auction));
  }
});

// ------------------------------------------------------------------ listing:reserve

test("listing:reserve: {booking} requested; availabilityChanged to watchers; booking:created to buyer's and seller's user rooms", T, async () => {
  const m = await market(node.url, { reserve: false });
  const buyerTab2 = await tab(node.url, m.ids.buyer, "buyer");
  await requestOk(m.stranger, "listing:watch", { listingId: m.listingId });
  const strangerCreated = record(m.stranger, "booking:created");
  const adminCreated = record(m.admin, "booking:created");
  const availability = nextEvent(m.stranger, "listing:availabilityChanged", 3_000);
  const created = [m.buyer, buyerTab2, m.seller].map((s) => nextEvent(s, "booking:created", 3_000));

  const reply = await request(m.buyer, "listing:reserve", { listingId: m.listingId, idempotencyKey: "key-1" });
  assert.equal(reply.ok, true, JSON.stringify(reply));
  assert.deepEqual(Object.keys(reply).sort(), ["booking", "ok"]);
  assertBooking(reply.booking, {
    listingId: m.listingId,
    buyerId: m.ids.buyer,
    sellerId: m.ids.seller,
    status: "requested",
  });

  assertRoomEvent(await availability, { listingId: m.listingId, availability: "reserved" });
  for (const got of created) assertRoomEvent(await got, { booking: reply.booking }, "booking:created");

  const listing = (await api(node.url, "GET", `/api/v1/listings/${m.listingId}`)).body.listing;
  assert.equal(listing.availability, "reserved");
  const booking = await api(node.url, "GET", `/api/v1/bookings/${reply.booking.id}`);
  assert.equal(booking.status, 200, booking.text);
  assert.deepEqual(booking.body, { booking: reply.booking });

  await sleep(200);
  assert.deepEqual(strangerCreated, [], "a watcher who is not a participant got booking:created");
  assert.deepEqual(adminCreated, [], "an admin who is not a participant got booking:created");
});

test("listing:reserve with the same idempotencyKey returns the same booking and announces nothing new", T, async () => {
  const m = await market(node.url, { reserve: false });
  await requestOk(m.stranger, "listing:watch", { listingId: m.listingId });
  const sellerCreated = record(m.seller, "booking:created");
  const changes = record(m.stranger, "listing:availabilityChanged");
  const payload = { listingId: m.listingId, idempotencyKey: "same-key" };
  const first = await requestOk(m.buyer, "listing:reserve", payload);
  const second = await request(m.buyer, "listing:reserve", payload);
  assert.deepEqual(second, first);
  // From another tab of the same buyer too.
  const other = await tab(node.url, m.ids.buyer, "buyer");
  assert.deepEqual(await request(other, "listing:reserve", payload), first);

  await flushRoom(node.url, `user:${m.ids.seller}`, [m.seller]);
  await flushRoom(node.url, `listing:${m.listingId}`, [m.stranger]);
  assert.equal(sellerCreated.length, 1, `booking:created seen ${sellerCreated.length} times`);
  assert.equal(changes.length, 1, `availabilityChanged seen ${changes.length} times`);
  assert.deepEqual(withoutOffsets(sellerCreated), [[{ booking: first.booking }]]);
  assert.deepEqual(withoutOffsets(changes), [[{ listingId: m.listingId, availability: "reserved" }]]);
});

test("listing:reserve by a second buyer → unavailable; by the seller → forbidden", T, async () => {
  const m = await market(node.url);
  assertAckError(
    await request(m.stranger, "listing:reserve", { listingId: m.listingId, idempotencyKey: "k" }),
    "unavailable",
    "second buyer",
  );
  const fresh = await market(node.url, { reserve: false });
  assertAckError(
    await request(fresh.seller, "listing:reserve", { listingId: fresh.listingId, idempotencyKey: "k" }),
    "forbidden",
    "seller",
  );
  // The seller's refusal reserved nothing: a buyer still can.
  await requestOk(fresh.buyer, "listing:reserve", { listingId: fresh.listingId, idempotencyKey: "k" });
});

test("listing:reserve: of 6 concurrent reservers exactly one wins, the others get unavailable", T, async () => {
  const m = await market(node.url, { reserve: false });
  const sellerCreated = record(m.seller, "booking:created");
  const buyers = await Promise.all(
    Array.from({ length: 6 }, () => connect(node.url, { token: userToken(randomId("b"), { role: "buyer" }) })),
  );
  const replies = await Promise.all(
    buyers.map((s, i) => request(s, "listing:reserve", { listingId: m.listingId, idempotencyKey: `race-${i}` })),
  );
  const winners = replies.filter((r) => r.ok);
  assert.equal(winners.length, 1, JSON.stringify(replies));
  for (const r of replies.filter((x) => !x.ok)) assertAckError(r, "unavailable");
  await flushRoom(node.url, `user:${m.ids.seller}`, [m.seller]);
  assert.deepEqual(withoutOffsets(sellerCreated), [[{ booking: winners[0].booking }]]);
});

test("listing:reserve refusals: not_found, bad_request, unavailable when withdrawn, forbidden when private", T, async () => {
  const socket = await connect(node.url, { token: userToken(randomId("b")) });
  assertAckError(await request(socket, "listing:reserve", { listingId: randomId("nope"), idempotencyKey: "k" }), "not_found");
  const m = await market(node.url, { reserve: false });
  for (const payload of [
    { listingId: m.listingId },
    { idempotencyKey: "k" },
    { listingId: m.listingId, idempotencyKey: "" },
    { listingId: m.listingId, idempotencyKey: "k".repeat(65) },
    { listingId: m.listingId, idempotencyKey: 5 },
    { listingId: "bad id", idempotencyKey: "k" },
  ]) {
    assertAckError(await request(m.buyer, "listing:reserve", payload), "bad_request", JSON.stringify(payload));
  }

  const withdrawn = await market(node.url, { reserve: false, listing: { availability: "withdrawn" } });
  assertAckError(
    await request(withdrawn.buyer, "listing:reserve", { listingId: withdrawn.listingId, idempotencyKey: "k" }),
    "unavailable",
    "withdrawn",
  );
  // §4: a private listing is not even visible to a buyer without a booking on it.
  const hidden = await market(node.url, { reserve: false, listing: { visibility: "private" } });
  assertAckError(
    await request(hidden.buyer, "listing:reserve", { listingId: hidden.listingId, idempotencyKey: "k" }),
    "forbidden",
    "private",
  );
});

test("listing:reserve: one idempotencyKey reused for another listing → conflict (souk's choice)", T, async () => {
  const m = await market(node.url, { reserve: false });
  const other = await putListing(node.url, randomId("l"), {
    sellerId: m.ids.seller,
    title: "Second bike",
    price: 100,
    currency: "EUR",
  });
  await requestOk(m.buyer, "listing:reserve", { listingId: m.listingId, idempotencyKey: "reused" });
  assertAckError(await request(m.buyer, "listing:reserve", { listingId: other.id, idempotencyKey: "reused" }), "conflict");
  // The key belongs to the user: another buyer may use it.
  await requestOk(m.stranger, "listing:reserve", { listingId: other.id, idempotencyKey: "reused" });
});

test("listing:reserve of an auction listing → unavailable (auctions are won by bidding)", T, async () => {
  const auction = { startsAt: inAnHour(-1), endsAt: inAnHour(1), startPrice: 100, minIncrement: 10 };
  const m = await market(node.url, { reserve: false, listing: { auction } });
  assertAckError(await request(m.buyer, "listing:reserve", { listingId: m.listingId, idempotencyKey: "k" }), "unavailable");
});

test("listing:reserve without an ack id: a refusal comes back as server:error with the event's name", T, async () => {
  const socket = await connect(node.url, { token: userToken(randomId("b")) });
  const err = nextMatching(socket, "server:error", (e) => e?.event === "listing:reserve", 3_000);
  socket.emit("listing:reserve", { listingId: randomId("nope"), idempotencyKey: "k" });
  const args = await err;
  assert.equal(args.length, 1, `server:error is not a room event: no offset expected, got ${JSON.stringify(args)}`);
  const [payload] = args;
  assert.equal(payload.code, "not_found", JSON.stringify(payload));
  assert.equal(typeof payload.message, "string");
});
