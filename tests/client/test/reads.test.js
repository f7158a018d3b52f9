// PROTOCOL.md §8a (user reads over HTTP with the user's own token) and the
// admins' dispute room (§4, §5 admin:watch, §6 dispute:changed), as a web
// front uses them next to the official client.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  T,
  useNode,
  userToken,
  serviceToken,
  api,
  request,
  requestOk,
  assertAckError,
  assertRoomEvent,
  nextEvent,
  market,
  RFC3339_MS,
} from "./helpers.js";

const node = useNode();

/** GET `path` with the bearer `token` (none when null). */
const read = (path, token) => api(node.url, "GET", path, undefined, token);

/** Every page of `path` (with a `?`), `limit` at a time: the items under `key`. */
async function allPages(path, key, token, limit) {
  const items = [];
  let cursor = null;
  for (let i = 0; i < 100; i++) {
    const url = `${path}&limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
    const res = await read(url, token);
    assert.equal(res.status, 200, `${url}: ${res.text}`);
    items.push(...res.body[key]);
    cursor = res.body.nextCursor;
    if (cursor === null) return items;
  }
  throw new Error("paging never ended");
}

test("§8a: each route wants a user's own token, admin routes an admin", T, async () => {
  const m = await market(node.url);
  const routes = [
    "/api/v1/me/bookings",
    "/api/v1/me/listings",
    "/api/v1/listings?availability=available",
    "/api/v1/admin/bookings?status=disputed",
    `/api/v1/admin/bookings/${m.booking.id}/audit`,
    "/api/v1/admin/cluster",
  ];
  for (const path of routes) {
    const admin = path.startsWith("/api/v1/admin/");
    assert.equal((await read(path, null)).status, 401, `${path} without a token`);
    assert.equal((await read(path, "not.a.jwt")).status, 401, `${path} with a bad token`);
    const service = await read(path, serviceToken());
    assert.equal(service.status, 403, `${path} with a service token`);
    assert.equal(service.body.error.code, "forbidden");
    const buyer = await read(path, userToken(m.ids.buyer, { role: "buyer" }));
    assert.equal(buyer.status, admin ? 403 : 200, `${path} as buyer: ${buyer.text}`);
    const ada = await read(path, userToken(m.ids.admin, { role: "admin" }));
    assert.equal(ada.status, 200, `${path} as admin: ${ada.text}`);
  }
});

test("§8a: a user's bookings are theirs, with the last message and unread count", T, async () => {
  const m = await market(node.url);
  await requestOk(m.buyer, "message:send", { bookingId: m.booking.id, body: "Still there?", clientMsgId: "c1" });
  const seller = await read("/api/v1/me/bookings?as=seller", userToken(m.ids.seller));
  assert.equal(seller.status, 200, seller.text);
  assert.equal(seller.body.bookings.length, 1, seller.text);
  const [line] = seller.body.bookings;
  assert.equal(line.booking.id, m.booking.id);
  assert.deepEqual(line.listing, { id: m.listingId, title: "Road bike, 56 cm", price: 45_000, currency: "EUR" });
  assert.equal(line.unread, 1);
  assert.equal(line.lastMessage.body, "Still there?");
  assert.match(line.lastMessage.createdAt, RFC3339_MS);
  assert.equal(seller.body.nextCursor, null);
  const stranger = await read("/api/v1/me/bookings", userToken(m.ids.stranger));
  assert.deepEqual(stranger.body.bookings, [], "a stranger never sees another's booking");
  // Paging one at a time visits each of the buyer's bookings once.
  const more = await market(node.url);
  const buyer = userToken(more.ids.buyer);
  for (let i = 0; i < 2; i++) {
    const m2 = await market(node.url, { reserve: false });
    await requestOk(more.buyer, "listing:reserve", { listingId: m2.listingId, idempotencyKey: `k${i}` });
  }
  const pages = await allPages("/api/v1/me/bookings?as=buyer", "bookings", buyer, 1);
  assert.equal(new Set(pages.map((l) => l.booking.id)).size, 3);
  assert.equal(pages.length, 3);
});

test("admin:watch: admins only; moves into and out of disputed arrive as dispute:changed", T, async () => {
  const m = await market(node.url);
  assertAckError(await request(m.buyer, "admin:watch", {}), "forbidden", "a buyer");
  const watch = await requestOk(m.admin, "admin:watch", {});
  assert.ok(Array.isArray(watch.disputes), JSON.stringify(watch));

  await requestOk(m.seller, "booking:transition", { bookingId: m.booking.id, to: "confirmed" });
  const opened = nextEvent(m.admin, "dispute:changed");
  await requestOk(m.buyer, "booking:transition", { bookingId: m.booking.id, to: "disputed" });
  const args = await opened;
  const [payload] = args;
  assert.equal(payload.booking.id, m.booking.id);
  assert.equal(payload.booking.status, "disputed");
  assertRoomEvent(args, { booking: payload.booking, previousStatus: "confirmed", by: m.ids.buyer }, "dispute:changed");

  // The queue an admin opens later holds it.
  const again = await requestOk(m.admin, "admin:watch", {});
  assert.ok(again.disputes.some((b) => b.id === m.booking.id), JSON.stringify(again));
  const disputed = await read("/api/v1/admin/bookings?status=disputed", userToken(m.ids.admin, { role: "admin" }));
  assert.ok(disputed.body.bookings.some((b) => b.id === m.booking.id), disputed.text);

  // Resolved through the server API: out of disputed.
  const resolved = nextEvent(m.admin, "dispute:changed");
  const res = await api(node.url, "POST", `/api/v1/bookings/${m.booking.id}/transitions`, { to: "resolved", by: m.ids.admin });
  assert.equal(res.status, 200, res.text);
  const [after] = await resolved;
  assert.equal(after.booking.status, "resolved");
  assert.equal(after.previousStatus, "disputed");
  assert.equal(after.by, m.ids.admin);

  // The audit trail has every move.
  const audit = await read(`/api/v1/admin/bookings/${m.booking.id}/audit`, userToken(m.ids.admin, { role: "admin" }));
  assert.deepEqual(
    audit.body.entries.map((e) => [e.action, e.detail.to]),
    [
      ["booking:transition", "confirmed"],
      ["booking:transition", "disputed"],
      ["booking:transition", "resolved"],
    ],
  );
  await requestOk(m.admin, "admin:unwatch", {});
});
