// Two buyers reserve the same listing at once: exactly one wins.
import { test } from "node:test";
import assert from "node:assert/strict";
import { T, dbRows, openAs, screenshot, useMarketplace } from "./helpers.js";

const ctx = useMarketplace();

test("a reservation race between two contexts shows one winner", T, async () => {
  const page = "listing.html?id=demo-lamp";
  const ana = await openAs(ctx, "ana", page);
  const ben = await openAs(ctx, "ben", page);
  for (const p of [ana, ben]) await p.locator("#reserve:not([disabled])").waitFor();

  // Both click at once. Playwright's click() waits for the button to be
  // enabled, and the first winner's listing:updated can disable the other
  // page's button before its click lands, which left that page waiting
  // forever; a person clicking at that instant still sends the request, so
  // each page clicks in one step, as that person would.
  const press = (p) =>
    p.evaluate(() => {
      const button = document.querySelector("#reserve");
      button.disabled = false;
      button.click();
    });
  await Promise.all([press(ana), press(ben)]);
  const outcome = async (p) => {
    await p.locator("#reserved:not([hidden]), #reserve-error:not([hidden])").first().waitFor();
    return (await p.locator("#reserved").isVisible()) ? "won" : await p.locator("#reserve-error").textContent();
  };
  const results = await Promise.all([outcome(ana), outcome(ben)]);
  assert.equal(results.filter((r) => r === "won").length, 1, JSON.stringify(results));
  const loser = results.find((r) => r !== "won");
  assert.match(loser, /^unavailable: /);

  // Both pages now say reserved, and the winner's link opens their booking.
  for (const p of [ana, ben]) await p.locator("#availability", { hasText: "reserved" }).waitFor();
  const [winner, other] = results[0] === "won" ? [ana, ben] : [ben, ana];
  await screenshot(winner, "listing-reserve-winner");
  await screenshot(other, "listing-reserve-loser");
  const rows = await dbRows(ctx, "SELECT buyer_id FROM bookings WHERE listing_id = 'demo-lamp'");
  assert.equal(rows.length, 1);
  await winner.locator("#booking-link").click();
  await winner.locator("#status", { hasText: "requested" }).waitFor();
  assert.equal(await winner.locator("#booking-title").textContent(), "Brass desk lamp");
  for (const p of [ana, ben]) await p.context().close();
});
