// Buyer and seller in two browser contexts on one booking thread: presence
// dots, typing, messages both ways and read ticks.
import { test } from "node:test";
import assert from "node:assert/strict";
import { T, openAs, screenshot, useMarketplace } from "./helpers.js";

const ctx = useMarketplace();

test("buyer and seller chat and see each other's typing, read ticks and presence", T, async () => {
  const thread = "booking.html?id=demo-bk-tent";
  const ben = await openAs(ctx, "ben", thread);
  const sam = await openAs(ctx, "sam", thread);

  // The seeded thread is there, and each sees the other online.
  for (const page of [ben, sam]) {
    await page.locator(".msg", { hasText: "is the tent still waterproof?" }).waitFor();
    assert.equal(await page.locator("#booking-title").textContent(), "Two-person tent");
  }
  await ben.locator('#seller .dot[data-online="yes"]').waitFor();
  await sam.locator('#buyer .dot[data-online="yes"]').waitFor();

  // Ben types: Sam sees it; Ben sends: Sam gets the message and the indicator goes.
  await ben.locator("#message-body").pressSequentially("Can I come on Thursday", { delay: 20 });
  await sam.locator("#typing", { hasText: "ben is typing" }).waitFor();
  await screenshot(sam, "thread-seller-sees-typing");
  await ben.locator("#send-button").click();
  await sam.locator(".msg.theirs", { hasText: "Can I come on Thursday" }).waitFor();
  await sam.locator("#typing").waitFor({ state: "hidden" });

  // Sam's open thread marks it read: Ben's message gets two ticks.
  const mine = ben.locator(".msg.mine", { hasText: "Can I come on Thursday" });
  await mine.locator('.ticks[data-state="read"]').waitFor();
  assert.equal(await mine.locator(".ticks").textContent(), "✓✓");

  // And back.
  await sam.locator("#message-body").fill("Thursday works, after 6 pm.");
  await sam.locator("#send-button").click();
  await ben.locator(".msg.theirs", { hasText: "Thursday works, after 6 pm." }).waitFor();
  await sam.locator('.msg.mine:has-text("Thursday works") .ticks[data-state="read"]').waitFor();
  await screenshot(ben, "thread-buyer");
  await screenshot(sam, "thread-seller");

  // An empty-looking body is refused by souk and the error is shown inline.
  await ben.evaluate(() => window.souk.emit("message:send", { bookingId: "demo-bk-tent", body: "  ", clientMsgId: "blank-1" }, (r) => (window.lastReply = r)));
  await ben.waitForFunction(() => window.lastReply);
  assert.equal(await ben.evaluate(() => window.lastReply.error.code), "bad_request");

  // Ben leaves: Sam's dot for him stays green (presence outlives a quick drop), the thread stays.
  await ben.context().close();
  assert.equal(await sam.locator(".msg").count() >= 6, true);
  await sam.context().close();
});

test("older messages load on scroll-up", T, async () => {
  const thread = "booking.html?id=demo-bk-tent";
  const ben = await openAs(ctx, "ben", thread);
  // 40 more messages make the first page (30) leave older ones behind.
  for (let i = 1; i <= 40; i++) {
    await ben.evaluate(
      (n) => window.souk.timeout(5000).emitWithAck("message:send", { bookingId: "demo-bk-tent", body: `filler ${n}`, clientMsgId: `filler-${n}` }),
      i,
    );
  }
  await ben.reload();
  await ben.locator(".msg", { hasText: "filler 40" }).waitFor();
  assert.equal(await ben.locator(".msg", { hasText: "is the tent still waterproof?" }).count(), 0);
  assert.match(await ben.locator("#history-state").textContent(), /scroll up/);
  await ben.locator("#messages").evaluate((list) => (list.scrollTop = 0));
  await ben.locator(".msg", { hasText: "is the tent still waterproof?" }).waitFor();
  await ben.locator("#history-state", { hasText: "start of the conversation" }).waitFor();
  await screenshot(ben, "thread-history");
  await ben.context().close();
});
