// Every page opens, shows what it should, and is kept as a screenshot; the
// connection indicator follows a drop and a recovered reconnect.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { T, SCREENSHOTS, openAs, repoRoot, screenshot, inBothModes, useMarketplace } from "./helpers.js";

/** The claims of a JWT a page sent, or null. */
function claimsOf(authorization) {
  const token = /^Bearer (.+)$/.exec(authorization ?? "")?.[1];
  if (!token) return null;
  return JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString());
}

inBothModes((ctx, tag) => {
  test("the browse page lists the demo marketplace with a live auction", T, async () => {
    const ana = await openAs(ctx, "ana", "index.html");
    await ana.locator('.card[data-listing-id="demo-camera"] .countdown').waitFor();
    assert.equal(await ana.locator(".card").count(), 6);
    assert.match(await ana.locator('.card[data-listing-id="demo-bike"]').textContent(), /Road bike.*€450\.00.*available/);
    // A buyer never sees the reserve price.
    assert.doesNotMatch(await ana.locator("#listings").textContent(), /reserve €/);
    const file = await screenshot(ana, `browse${tag}`);
    console.log(`screenshots in ${SCREENSHOTS} (e.g. ${path.basename(file)})`);
    await ana.context().close();
  });

  test("the ops view charts the node's figures over the last minutes, with no service token", T, async () => {
    const watcher = await openAs(ctx, "ben", "index.html");
    await watcher.locator('.card[data-listing-id="demo-camera"] .countdown').waitFor();
    const sent = [];
    const ops = await openAs(ctx, "ada", "ops.html");
    ops.context().on("request", (r) => sent.push({ path: new URL(r.url()).pathname, claims: claimsOf(r.headers().authorization) }));
    const node = ops.locator("#nodes tr");
    await node.first().waitFor();
    assert.match(await node.first().textContent(), /127\.0\.0\.1:\d+/);
    await ops.locator('#gauges dd[data-metric="connections"]').waitFor();
    assert.ok(Number(await ops.locator('#gauges dd[data-metric="connections"]').textContent()) >= 1);
    // Every known event has a row from the start (at 0): wait for the count.
    await ops.locator('#events tr[data-event="listing:watch"] td:nth-child(4)', { hasText: /^[1-9]/ }).waitFor();
    assert.match(await ops.locator("#rooms").textContent(), /listing/);

    // Traffic while the page samples: the charts draw it.
    for (let i = 0; i < 3; i++) {
      await watcher.reload();
      await watcher.locator('.card[data-listing-id="demo-camera"] .countdown').waitFor();
    }
    await ops.waitForFunction(() => Number(document.querySelector("#chart-connections")?.dataset.points) >= 3);
    await ops.locator('#chart-events polyline[data-series="listing:watch"]').waitFor({ state: "attached" });
    await ops.locator('#chart-latency polyline[data-series="p99"]').waitFor({ state: "attached" });
    await ops.locator("#chart-deliveries polyline").first().waitFor({ state: "attached" });
    for (const id of ["connections", "events", "deliveries", "latency"]) {
      const label = await ops.locator(`#chart-${id} svg`).getAttribute("aria-label");
      assert.match(label, /over the last 5 minutes; now /, id);
    }
    assert.match(await ops.locator("#chart-latency svg").getAttribute("aria-label"), /p99 \d+(\.\d+)? ms/);
    await screenshot(ops, `ops${tag}`);
    // The browser never held a service token, and never asked for one.
    assert.ok(sent.length > 0);
    assert.deepEqual(sent.filter((r) => r.path === "/dev/token" || r.claims?.role === "service"), []);
    assert.ok(sent.some((r) => r.path === "/api/v1/admin/cluster" && r.claims?.sub === "ada"));
    for (const p of [watcher, ops]) await p.context().close();
  });
});

describe("dev mode only", () => {
  const ctx = useMarketplace();

  test("a dropped connection shows, reconnects and recovers what it missed", T, async () => {
    const ben = await openAs(ctx, "ben", "listing.html?id=demo-camera");
    const ana = await openAs(ctx, "ana", "listing.html?id=demo-camera");
    await ben.locator("#auction-status", { hasText: "open" }).waitFor();
    // Recovery resumes from the last event a socket received, so Ben gets one first.
    await ana.locator("#bid-amount").fill("800");
    await ana.locator("#bid-button").click();
    await ben.locator("#bid-history li", { hasText: "€800.00 by ana" }).waitFor();
    // Drop Ben's transport; while he is away, Ana bids again.
    await ben.evaluate(() => window.souk.io.engine.close());
    await ben.locator('#conn[data-state="reconnecting"]').waitFor();
    await ana.locator("#bid-amount").fill("825");
    await ana.locator("#bid-button").click();
    await ana.locator("#bid-ok", { hasText: "825.00" }).waitFor();
    // Ben comes back by himself, recovered: souk replays the bid he missed.
    await ben.locator("#conn", { hasText: "online · recovered" }).waitFor({ timeout: 15_000 });
    await ben.locator("#current-bid", { hasText: "825.00" }).waitFor();
    assert.equal(await ben.locator("#bid-count").textContent(), "2");
    await screenshot(ben, "listing-after-recovery");
    for (const p of [ben, ana]) await p.context().close();
  });

  test("the vendored socket.io-client is the pinned npm package's build", () => {
    const vendored = readFileSync(path.join(repoRoot, "static/vendor/socket.io-client/socket.io.esm.min.js"));
    const pinned = readFileSync(path.join(repoRoot, "tests/browser/node_modules/socket.io-client/dist/socket.io.esm.min.js"));
    assert.ok(vendored.equals(pinned), "static/vendor differs from node_modules: copy it again (see README)");
    const pkg = JSON.parse(readFileSync(path.join(repoRoot, "tests/browser/package.json"), "utf8"));
    const clientPkg = JSON.parse(readFileSync(path.join(repoRoot, "tests/client/package.json"), "utf8"));
    assert.equal(pkg.dependencies["socket.io-client"], clientPkg.dependencies["socket.io-client"]);
    readFileSync(path.join(repoRoot, "static/vendor/socket.io-client/LICENSE"));
  });
});
