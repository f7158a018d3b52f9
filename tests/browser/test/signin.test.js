// Off dev mode there are no demo tokens and no user switcher: a person
// signs in with the token the marketplace's own login gave them, pasted or
// handed over in the address (#token=…), kept for the tab only.
import { test } from "node:test";
import assert from "node:assert/strict";
import { T, screenshot, signToken, useMarketplace, userToken } from "./helpers.js";

const ctx = useMarketplace({ dev: false });

async function freshPage(pagePath) {
  const context = await ctx.browser.newContext({ viewport: { width: 1200, height: 860 } });
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  await page.goto(`${ctx.url}/${pagePath}`);
  return page;
}

test("a node without SOUK_DEV says so, and mints no tokens", T, async () => {
  assert.equal((await fetch(`${ctx.url}/dev/`)).status, 404);
  const minted = await fetch(`${ctx.url}/dev/token`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ sub: "mallory", role: "admin" }),
  });
  assert.equal(minted.status, 404);
});

test("signing in by pasting a token, keeping it on reload, and signing out", T, async () => {
  const page = await freshPage("seller.html");
  await page.locator("#sign-in").waitFor();
  assert.equal(await page.locator("#user-switcher").count(), 0);
  assert.match(await page.locator("#sign-in-needed").textContent(), /token your marketplace's login gave you/);
  // Nothing connects before someone signs in.
  assert.equal(await page.locator("#conn").getAttribute("data-state"), "idle");
  await screenshot(page, "sign-in-prod");

  // A service token is not for a browser; nor is junk.
  const now = Math.floor(Date.now() / 1000);
  await page.getByLabel("Your token").fill(signToken(ctx, { sub: "backend", role: "service", exp: now + 600 }));
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#token-error", { hasText: "service token" }).waitFor();
  await page.getByLabel("Your token").fill("not a token");
  await page.getByLabel("Your token").press("Enter");
  await page.locator("#token-error", { hasText: "invalid_token" }).waitFor();

  await page.getByLabel("Your token").fill(userToken(ctx, "sam"));
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#who-am-i", { hasText: "signed in as sam (seller)" }).waitFor();
  await page.locator('#conn[data-state="online"]').waitFor();
  await page.locator('#my-listings [data-listing-id="demo-camera"]').waitFor();

  await page.reload();
  await page.locator("#who-am-i", { hasText: "signed in as sam" }).waitFor();
  await page.locator('#conn[data-state="online"]').waitFor();

  await page.getByRole("button", { name: "Sign out" }).click();
  await page.locator("#sign-in").waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  await page.context().close();
});

test("a token in the address signs the tab in and leaves the address bar", T, async () => {
  const page = await freshPage(`listing.html?id=demo-camera#token=${userToken(ctx, "ana")}`);
  await page.locator("#who-am-i", { hasText: "signed in as ana (buyer)" }).waitFor();
  await page.locator("#auction-status", { hasText: "open" }).waitFor();
  assert.equal(new URL(page.url()).hash, "");
  assert.match(page.url(), /listing\.html\?id=demo-camera$/);
  // Another tab of the same browser is a session of its own.
  const other = await page.context().newPage();
  await other.goto(`${ctx.url}/listing.html?id=demo-camera`);
  await other.locator("#sign-in").waitFor();

  // An expired token is refused with a reason, and nobody is signed in.
  const past = Math.floor(Date.now() / 1000) - 60;
  await other.goto(`${ctx.url}/index.html#token=${signToken(ctx, { sub: "ana", role: "buyer", exp: past })}`);
  await other.locator("#sign-in").waitFor();
  await other.locator(".error", { hasText: "token_expired" }).waitFor();
  await page.context().close();
});

test("when the token expires the tab says so and forgets it", T, async () => {
  const page = await freshPage(`listing.html?id=demo-lamp#token=${userToken(ctx, "ben", 8)}`);
  await page.locator('#conn[data-state="online"]').waitFor();
  await page.locator("#session-ended", { hasText: "Your session has ended" }).waitFor({ timeout: 15_000 });
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  await page.locator("#session-ended a", { hasText: "sign in again" }).click();
  await page.locator("#sign-in").waitFor();
  await page.context().close();
});
