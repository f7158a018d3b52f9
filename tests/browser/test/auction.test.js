// Bids: one context's bid appears in the other's; a bid too low is refused
// with souk's error shown inline; the countdown follows the auction's end.
import { test } from "node:test";
import assert from "node:assert/strict";
import { T, openAs, screenshot, useMarketplace } from "./helpers.js";

const ctx = useMarketplace();

test("a bid in one context appears in the other, and refusals are shown inline", T, async () => {
  const page = "listing.html?id=demo-camera";
  const ana = await openAs(ctx, "ana", page);
  const ben = await openAs(ctx, "ben", page);
  for (const p of [ana, ben]) {
    await p.locator("#auction-status", { hasText: "open" }).waitFor();
    assert.match(await p.locator("#ends-in").textContent(), /^[0-9]:\d\d$/);
  }

  await ana.locator("#bid-amount").fill("800");
  await ana.locator("#bid-button").click();
  await ana.locator("#bid-ok", { hasText: "leads" }).waitFor();
  await ben.locator("#current-bid", { hasText: "800.00" }).waitFor();
  assert.equal(await ben.locator("#leader").textContent(), "ana");
  assert.equal(await ben.locator("#bid-count").textContent(), "1");
  assert.match(await ben.locator("#min-bid").textContent(), /825\.00/);

  // Too low: souk says bid_too_low with the minimum, shown under the box.
  await ben.locator("#bid-amount").fill("810");
  await ben.locator("#bid-button").click();
  await ben.locator("#bid-error", { hasText: "bid_too_low" }).waitFor();
  assert.match(await ben.locator("#bid-error").textContent(), /at least €825\.00/);
  await screenshot(ben, "listing-auction-bid-too-low");

  // Ben outbids Ana: Ana is told so, and sees the new amount.
  await ben.locator("#bid-amount").fill("850");
  await ben.locator("#bid-button").click();
  await ben.locator("#bid-error").waitFor({ state: "hidden" });
  await ana.locator("#current-bid", { hasText: "850.00" }).waitFor();
  await ana.locator("#outbid", { hasText: "You were outbid" }).waitFor();
  await screenshot(ana, "listing-auction-outbid");

  // The seller cannot bid: the box is not offered, and the reserve shows.
  const sam = await openAs(ctx, "sam", page);
  await sam.locator("#auction-rules", { hasText: "Reserve: €950.00" }).waitFor();
  assert.equal(await sam.locator("#bid-form").isHidden(), true);
  // Buyers never see the reserve price.
  assert.doesNotMatch(await ana.locator("#auction-rules").textContent(), /Reserve/);
  await screenshot(sam, "listing-auction-seller");
  for (const p of [ana, ben, sam]) await p.context().close();
});
