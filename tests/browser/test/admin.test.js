// An admin finds the dispute, joins its thread (audited), reads it and resolves it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { T, dbRows, openAs, screenshot, useMarketplace } from "./helpers.js";

const ctx = useMarketplace();

test("an admin joins a disputed booking and resolves it", T, async () => {
  const ada = await openAs(ctx, "ada", "admin.html");
  const row = ada.locator('tr[data-booking-id="demo-bk-guitar"]');
  await row.waitFor();
  assert.match(await row.textContent(), /Acoustic guitar with case/);
  await screenshot(ada, "admin-console");

  // The buyer watches the thread while the admin comes in.
  const ana = await openAs(ctx, "ana", "booking.html?id=demo-bk-guitar");
  await ana.locator("#status", { hasText: "disputed" }).waitFor();

  await row.getByText("Join and review").click();
  await ada.locator("#audit-note").waitFor();
  assert.match(await ada.locator("#audit-note").textContent(), /audit log/);
  await ada.locator(".msg", { hasText: "crack in the top" }).waitFor();
  const audited = await dbRows(ctx, "SELECT actor_id, subject FROM audit_log WHERE actor_id = 'ada'");
  assert.ok(audited.some(([, subject]) => subject.includes("demo-bk-guitar")), JSON.stringify(audited));
  await screenshot(ada, "admin-thread");

  // Only "Resolve" is offered to an admin; both sides see the move.
  assert.deepEqual(await ada.locator("#actions button").allTextContents(), ["Resolve dispute"]);
  await ada.locator('#actions button[data-to="resolved"]').click();
  await ada.locator("#status", { hasText: "resolved" }).waitFor();
  await ana.locator("#status", { hasText: "resolved" }).waitFor();
  await screenshot(ana, "thread-resolved-buyer");

  // Nothing is left to do, and resolving again would be refused by souk.
  assert.equal(await ada.locator("#actions button").count(), 0);
  const again = await ada.evaluate(() =>
    window.souk.timeout(5000).emitWithAck("booking:transition", { bookingId: "demo-bk-guitar", to: "resolved" }),
  );
  assert.equal(again.error.code, "invalid_transition");

  await ada.goto(`${ctx.url}/admin.html`);
  await ada.locator("#no-disputes").waitFor();
  for (const p of [ada, ana]) await p.context().close();
});
