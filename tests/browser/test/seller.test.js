// The seller's dashboard: live listings with their auctions, bookings to
// confirm, unread badges that open the thread, and the feed of
// booking:activity and notification (as sentences) with unread counts; on
// a dev node and on a node as in production (no SOUK_DEV).
import { test } from "node:test";
import assert from "node:assert/strict";
import { T, api, openAs, screenshot, inBothModes } from "./helpers.js";

inBothModes((ctx, tag) => {
  test("the seller dashboard follows bids, messages and notifications live", T, async () => {
    const sam = await openAs(ctx, "sam", "seller.html");
    await sam.locator('#my-listings [data-listing-id="demo-camera"]').waitFor();
    assert.equal(await sam.locator("#my-listings .card").count(), 6);
    const sofa = sam.locator('tr[data-booking-id="demo-bk-sofa"]');
    await sofa.waitFor();
    // Seeded unread: 1 on the sofa, 2 on the tent, 2 on the guitar.
    assert.equal(await sam.locator("#unread-total").textContent(), "5");
    // The auction's card says where it stands: no bid yet, where it starts, time left.
    const camera = sam.locator('#my-listings [data-listing-id="demo-camera"]');
    assert.match(await camera.textContent(), /starting bid.*auction · 0 bids · \d+:\d\d left/);

    // A buyer writes on the tent thread: the feed says so and the counts go up.
    const ben = await openAs(ctx, "ben", "booking.html?id=demo-bk-tent");
    await ben.locator("#message-body").fill("Is the footprint the right size?");
    await ben.locator("#send-button").click();
    await sam.locator("#feed li.activity", { hasText: "new message from ben on Two-person tent" }).waitFor();
    await sam.locator("#unread-total", { hasText: "6" }).waitFor();
    assert.equal(await sam.locator('tr[data-booking-id="demo-bk-tent"] .count').textContent(), "3");

    // A bid on the auction shows on its card (current bid, bids, leader) and in the feed.
    const ana = await openAs(ctx, "ana", "listing.html?id=demo-camera");
    await ana.locator("#bid-amount").fill("800");
    await ana.locator("#bid-button").click();
    await sam.locator("#feed li.bid", { hasText: "ana bid €800.00" }).waitFor();
    await camera.locator(".bid-count", { hasText: "1 bid" }).waitFor();
    assert.match(await camera.textContent(), /€800\.00 current bid.*1 bid · ana leads · \d+:\d\d left/);

    // The marketplace backend notifies the seller: the feed reads a sentence.
    const posted = await api(ctx, "POST", "/api/v1/users/sam/notifications", {
      kind: "payoutSent",
      data: { amount: 12000, bookingId: "demo-bk-sofa" },
    });
    assert.equal(posted.status, 202);
    const note = sam.locator("#feed li.notification");
    await note.waitFor();
    assert.match(await note.textContent(), /Payout sent: amount €120\.00, booking id demo-bk-sofa\.$/);
    assert.doesNotMatch(await note.textContent(), /[{}"]/);

    // Confirm the sofa request; the buyer's thread follows.
    const anaThread = await openAs(ctx, "ana", "booking.html?id=demo-bk-sofa");
    await anaThread.locator("#status", { hasText: "requested" }).waitFor();
    await sofa.getByRole("button", { name: "Confirm" }).click();
    await sofa.locator(".badge", { hasText: "confirmed" }).waitFor();
    await anaThread.locator("#status", { hasText: "confirmed" }).waitFor();
    await screenshot(sam, `seller-dashboard${tag}`);

    // The tent's unread badge opens its thread, where the messages are read.
    await sam.locator('tr[data-booking-id="demo-bk-tent"] a.count').click();
    await sam.waitForURL(/booking\.html\?id=demo-bk-tent$/);
    await sam.locator(".msg", { hasText: "Is the footprint the right size?" }).waitFor();
    assert.equal(await sam.locator("#booking-title").textContent(), "Two-person tent");
    for (const p of [sam, ben, ana, anaThread]) await p.context().close();
  });
});
