// Every page can be read by a screen reader (each control has an
// accessible name) and used by keyboard alone, on a node as in production.
import { test } from "node:test";
import assert from "node:assert/strict";
import { PHONE, T, openAs, unnamedControls, useMarketplace } from "./helpers.js";

const ctx = useMarketplace({ dev: false });

const PAGES = [
  ["ana", "index.html", '.card[data-listing-id="demo-camera"] .countdown'],
  ["ana", "listing.html?id=demo-camera", "#bid-amount"],
  ["ana", "listing.html?id=demo-lamp", "#reserve"],
  ["ben", "booking.html?id=demo-bk-tent", ".msg"],
  ["sam", "seller.html", 'tr[data-booking-id="demo-bk-sofa"] button'],
  ["ada", "admin.html", '#disputes tr[data-booking-id="demo-bk-guitar"]'],
  ["ada", "ops.html", "#chart-connections"],
];

test("every control on every page has a name a screen reader can read", T, async () => {
  for (const [user, pagePath, ready] of PAGES) {
    for (const viewport of [{ width: 1200, height: 860 }, PHONE]) {
      const page = await openAs(ctx, user, pagePath, { viewport });
      await page.locator(ready).first().waitFor();
      assert.deepEqual(await unnamedControls(page), [], `${pagePath} at ${viewport.width} px`);
      await page.context().close();
    }
  }
  // The sign-in form, before anyone signs in.
  const context = await ctx.browser.newContext();
  const page = await context.newPage();
  await page.goto(`${ctx.url}/seller.html`);
  await page.locator("#sign-in").waitFor();
  assert.deepEqual(await unnamedControls(page), [], "sign-in");
  await context.close();
});

/** Presses Tab until `selector` has the focus; fails after `max` presses. */
async function tabTo(page, selector, max = 40) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press("Tab");
    if (await page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector)) return;
  }
  throw new Error(`${selector} never got the focus by Tab`);
}

test("bidding, chatting, opening a thread and an audit trail by keyboard alone", T, async () => {
  const ana = await openAs(ctx, "ana", "listing.html?id=demo-camera");
  await ana.locator("#auction-status", { hasText: "open" }).waitFor();
  await tabTo(ana, "#bid-amount");
  await ana.keyboard.type("800");
  await ana.keyboard.press("Enter");
  await ana.locator("#bid-ok", { hasText: "leads" }).waitFor();

  const ben = await openAs(ctx, "ben", "booking.html?id=demo-bk-tent");
  await ben.locator(".msg").first().waitFor();
  await tabTo(ben, "#message-body");
  await ben.keyboard.type("Typed without a mouse");
  await ben.keyboard.press("Enter");
  await ben.locator(".msg.mine", { hasText: "Typed without a mouse" }).waitFor();

  const sam = await openAs(ctx, "sam", "seller.html");
  await sam.locator('tr[data-booking-id="demo-bk-tent"] a.count').waitFor();
  await tabTo(sam, 'tr[data-booking-id="demo-bk-tent"] a.count');
  await sam.keyboard.press("Enter");
  await sam.waitForURL(/booking\.html\?id=demo-bk-tent$/);

  const ada = await openAs(ctx, "ada", "admin.html");
  await ada.locator('#disputes tr[data-booking-id="demo-bk-guitar"]').waitFor();
  await tabTo(ada, 'button[aria-label="Audit trail of demo-bk-guitar"]');
  await ada.keyboard.press("Enter");
  await ada.locator("#audit-booking", { hasText: "demo-bk-guitar" }).waitFor();
  for (const p of [ana, ben, sam, ada]) await p.context().close();
});
