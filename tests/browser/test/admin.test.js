// The admin console: the open disputes arrive live (admin:watch, no
// polling); an admin reads a booking's audit trail, joins its thread
// (audited), reads it and resolves it; on a dev node and on a node as in
// production (no SOUK_DEV).
import { test } from "node:test";
import assert from "node:assert/strict";
import { T, api, dbRows, openAs, screenshot, inBothModes } from "./helpers.js";

inBothModes((ctx, tag) => {
  test("an admin sees disputes live, reads the audit trail, joins and resolves", T, async () => {
    const ada = await openAs(ctx, "ada", "admin.html");
    const guitar = ada.locator('#disputes tr[data-booking-id="demo-bk-guitar"]');
    await guitar.waitFor();
    assert.match(await guitar.textContent(), /Acoustic guitar with case.*ana.*sam/);
    // From here on the console asks nothing by itself: no polling.
    const asked = [];
    ada.on("request", (r) => {
      const url = new URL(r.url());
      if (url.pathname.startsWith("/api/") || url.pathname.startsWith("/dev/")) asked.push(url.pathname);
    });

    // Ben opens a dispute on the tent through the server API: it shows at once.
    const moved = await api(ctx, "POST", "/api/v1/bookings/demo-bk-tent/transitions", { to: "disputed", by: "ben" });
    assert.equal(moved.status, 200, JSON.stringify(moved.body));
    const tent = ada.locator('#disputes tr[data-booking-id="demo-bk-tent"]');
    await tent.waitFor({ timeout: 3000 });
    await ada.locator("#dispute-count", { hasText: "2" }).waitFor();
    await ada.locator("#dispute-feed li", { hasText: "ben opened a dispute on demo-bk-tent" }).waitFor();
    await screenshot(ada, `admin-console${tag}`);

    // The buyer watches the thread while the admin comes in.
    const ana = await openAs(ctx, "ana", "booking.html?id=demo-bk-guitar");
    await ana.locator("#status", { hasText: "disputed" }).waitFor();

    const thread = await openAs(ctx, "ada", "booking.html?id=demo-bk-guitar");
    await thread.locator("#audit-note").waitFor();
    assert.match(await thread.locator("#audit-note").textContent(), /audit log/);
    await thread.locator(".msg", { hasText: "crack in the top" }).waitFor();
    const audited = await dbRows(ctx, "SELECT actor_id, subject FROM audit_log WHERE actor_id = 'ada'");
    assert.ok(audited.some(([, subject]) => subject.includes("demo-bk-guitar")), JSON.stringify(audited));
    await screenshot(thread, `admin-thread${tag}`);

    // Only "Resolve" is offered to an admin; both sides see the move, and
    // the console drops the row by itself.
    assert.deepEqual(await thread.locator("#actions button").allTextContents(), ["Resolve dispute"]);
    await thread.locator('#actions button[data-to="resolved"]').click();
    await thread.locator("#status", { hasText: "resolved" }).waitFor();
    await ana.locator("#status", { hasText: "resolved" }).waitFor();
    await guitar.waitFor({ state: "detached", timeout: 3000 });
    await ada.locator("#dispute-count", { hasText: "1" }).waitFor();
    await screenshot(ana, `thread-resolved-buyer${tag}`);

    // Nothing is left to do, and resolving again would be refused by souk.
    assert.equal(await thread.locator("#actions button").count(), 0);
    const again = await thread.evaluate(() =>
      window.souk.timeout(5000).emitWithAck("booking:transition", { bookingId: "demo-bk-guitar", to: "resolved" }),
    );
    assert.equal(again.error.code, "invalid_transition");
    assert.deepEqual(asked, [], "the console polled");

    // The audit trail of the guitar: the admin's join and the resolution.
    await ada.locator("#join-id").fill("demo-bk-guitar");
    await ada.locator("#audit-button").click();
    await ada.locator("#audit-booking", { hasText: "demo-bk-guitar" }).waitFor();
    const trail = ada.locator("#audit-entries tr");
    await trail.filter({ hasText: "booking:transition" }).first().waitFor();
    const lines = await trail.allTextContents();
    assert.ok(lines.some((l) => /ada.*booking:join/.test(l)), lines.join("\n"));
    assert.ok(lines.some((l) => /ada.*booking:transition.*disputed → resolved/.test(l)), lines.join("\n"));
    // The tent's row opens its trail too.
    await tent.getByRole("button", { name: "Audit trail of demo-bk-tent" }).click();
    await ada.locator("#audit-booking", { hasText: "demo-bk-tent" }).waitFor();
    await ada.locator("#audit-entries tr", { hasText: "→ disputed" }).waitFor();
    await screenshot(ada, `admin-audit${tag}`);
    for (const p of [ada, ana, thread]) await p.context().close();
  });
});
