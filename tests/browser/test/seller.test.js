// The seller's dashboard: live listings, bookings to confirm, and the feed
// of booking:activity and notification with unread counts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { T, api, openAs, screenshot, useMarketplace } from "./helpers.js";

const ctx = useMarketplace();

test("the seller dashboard follows bids, messages and notifications live", T, async () => {
  const sam = await openAs(ctx, "sam", "seller.html");
  await sam.locator('#my-listings [data-listing-id="demo-camera"]').waitFor();
  assert.equal(await sam.locator("#my-listings .card").count(), 6);
  const sofa = sam.locator('tr[data-booking-id="demo-bk-sofa"]');
  await sofa.waitFor();
  // Seeded unread: 1 on the sofa, 2 on the tent, 2 on the guitar.
  assert.equal(await sam.locator("#unread-total").textContent(), "5");

  // A buyer writes on the tent thread: the feed says so and the counts go up.
  const ben = await openAs(ctx, "ben", "booking.html?id=demo-bk-tent");
  await ben.locator("#message-body").fill("Is the footprint the right size?");
  await ben.locator("#send-button").click();
  await sam.locator("#feed li.activity", { hasText: "new message from ben on Two-person tent" }).waitFor();
  await sam.locator("#unread-total", { hasText: "6" }).waitFor();
  assert.equal(await sam.locator('tr[data-booking-id="demo-bk-tent"] .count').textContent(), "3");

  // A bid on the auction shows on its card and in the feed.
  const ana = await openAs(ctx, "ana", "listing.html?id=demo-camera");
  await ana.locator("#bid-amount").fill("800");
  await ana.locator("#bid-button").click();
  await sam.locator("#feed li.bid", { hasText: "ana bid €800.00" }).waitFor();
  await sam.locator('[data-listing-id="demo-camera"]', { hasText: "1 bid" }).waitFor();

  // The marketplace backend notifies the seller.
  const posted = await api(ctx, "POST", "/api/v1/users/sam/notifications", { kind: "payout", data: { amount: 12000 } });
  assert.equal(posted.status, 202);
  await sam.locator("#feed li.notification", { hasText: "notification payout" }).waitFor();

  // Confirm the sofa request; the buyer's thread follows.
  const anaThread = await openAs(ctx, "ana", "booking.html?id=demo-bk-sofa");
  await anaThread.locator("#status", { hasText: "requested" }).waitFor();
  await sofa.getByRole("button", { name: "Confirm" }).click();
  await sofa.locator(".badge", { hasText: "confirmed" }).waitFor();
  await anaThread.locator("#status", { hasText: "confirmed" }).waitFor();
  await screenshot(sam, "seller-dashboard");
  for (const p of [sam, ben, ana, anaThread]) await p.context().close();
});
