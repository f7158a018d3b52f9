// Bids: one context's bid appears in the other's, in the bid history and
// where the price would be; a bid too low is refused with souk's error shown
// inline; a status line made false by the next bid goes away; the countdown
// follows the auction's end.
import { test } from "node:test";
import assert from "node:assert/strict";
import { T, inBothModes, openAs, screenshot } from "./helpers.js";

inBothModes((ctx, tag) => {
  test("a bid in one context appears in the other, and refusals are shown inline", T, async () => {
    const page = "listing.html?id=demo-camera";
    const ana = await openAs(ctx, "ana", page);
    const ben = await openAs(ctx, "ben", page);
    for (const p of [ana, ben]) {
      await p.locator("#auction-status", { hasText: "open" }).waitFor();
      assert.match(await p.locator("#ends-in").textContent(), /^[0-9]:\d\d$/);
      // Where the price would be: what the auction stands at, and only that.
      assert.equal(await p.locator("#price-label").textContent(), "starting bid");
      assert.equal(await p.locator("#current-bid").textContent(), "€800.00");
      assert.equal(await p.locator("#price").isVisible(), false);
      assert.equal(await p.locator("#no-bids").textContent(), "No bids yet.");
    }

    await ana.locator("#bid-amount").fill("800");
    await ana.locator("#bid-button").click();
    await ana.locator("#bid-ok", { hasText: "leads" }).waitFor();
    await ben.locator("#bid-history li", { hasText: "€800.00 by ana" }).waitFor();
    assert.match(await ben.locator("#bid-history li").first().textContent(), /^€800\.00 by ana at \d/);
    assert.match(await ana.locator("#bid-history li").first().textContent(), /^€800\.00 by ana \(you\) at /);
    assert.equal(await ben.locator("#price-label").textContent(), "current bid");
    assert.equal(await ben.locator("#no-bids").isVisible(), false);
    await ben.locator("#current-bid", { hasText: "800.00" }).waitFor();
    assert.equal(await ben.locator("#leader").textContent(), "ana");
    assert.equal(await ben.locator("#bid-count").textContent(), "1");
    assert.match(await ben.locator("#min-bid").textContent(), /825\.00/);

    // Too low: souk says bid_too_low with the minimum, shown under the box.
    await ben.locator("#bid-amount").fill("810");
    await ben.locator("#bid-button").click();
    await ben.locator("#bid-error", { hasText: "bid_too_low" }).waitFor();
    assert.match(await ben.locator("#bid-error").textContent(), /at least €825\.00/);
    await screenshot(ben, `listing-auction-bid-too-low${tag}`);

    // Ben outbids Ana: Ana is told so, and sees the new amount.
    await ben.locator("#bid-amount").fill("850");
    await ben.locator("#bid-button").click();
    await ben.locator("#bid-error").waitFor({ state: "hidden" });
    await ana.locator("#current-bid", { hasText: "850.00" }).waitFor();
    await ana.locator("#outbid", { hasText: "You were outbid" }).waitFor();
    // "Your bid of €800.00 leads" is false now: it is gone.
    assert.equal(await ana.locator("#bid-ok").isVisible(), false);
    assert.deepEqual(
      (await ana.locator("#bid-history li .amount").allTextContents()),
      ["€850.00", "€800.00"],
    );
    await screenshot(ana, `listing-auction-outbid${tag}`);

    // Ana leads again: the outbid notice is gone, and Ben's is shown.
    await ana.locator("#bid-amount").fill("875");
    await ana.locator("#bid-button").click();
    await ana.locator("#bid-ok", { hasText: "Your bid of €875.00 leads" }).waitFor();
    assert.equal(await ana.locator("#outbid").isVisible(), false);
    await ben.locator("#outbid", { hasText: "You were outbid" }).waitFor();

    // The seller cannot bid: the box is not offered, and the reserve shows.
    const sam = await openAs(ctx, "sam", page);
    await sam.locator("#auction-rules", { hasText: "Reserve: €950.00" }).waitFor();
    // Bids from before the page opened are counted, with the highest.
    assert.equal(
      await sam.locator("#earlier-bids").textContent(),
      "3 earlier bids, placed before this page opened; the highest is €875.00 by ana.",
    );
    assert.equal(await sam.locator("#bid-form").isHidden(), true);
    // Buyers never see the reserve price.
    assert.doesNotMatch(await ana.locator("#auction-rules").textContent(), /Reserve/);
    await screenshot(sam, `listing-auction-seller${tag}`);
    for (const p of [ana, ben, sam]) await p.context().close();
  });
});
