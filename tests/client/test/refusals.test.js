// PROTOCOL.md §1, §2: every refused CONNECT, as socket.io-client sees it.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  T,
  useNode,
  connect,
  connectError,
  makeSocket,
  userToken,
  signJwt,
  randomId,
  nowSeconds,
  nextEvent,
  sleep,
} from "./helpers.js";

const node = useNode();

async function assertRefused(auth, code, opts) {
  const err = await connectError(node.url, auth, opts);
  assert.equal(err.message, "unauthorized", `connect_error message (data ${JSON.stringify(err.data)})`);
  assert.deepEqual(err.data, { code });
}

test("no token at all → missing_token", T, async () => {
  await assertRefused(undefined, "missing_token");
});

test("empty auth object → missing_token", T, async () => {
  await assertRefused({}, "missing_token");
});

const invalid = {
  "garbage string": () => "not-a-jwt",
  "three garbage segments": () => "a.b.c",
  "forged signature (wrong secret)": () => userToken(randomId(), { secret: "not-the-server-secret" }),
  "tampered payload (sub changed after signing)": () => {
    const [h, , s] = userToken("victim").split(".");
    const p = Buffer.from(JSON.stringify({ sub: "attacker", exp: nowSeconds() + 600 })).toString("base64url");
    return `${h}.${p}.${s}`;
  },
  "alg none, no signature": () => signJwt({ sub: randomId(), exp: nowSeconds() + 600 }, { alg: "none" }),
  "HS512 with the right secret (only HS256 is accepted)": () =>
    signJwt({ sub: randomId(), exp: nowSeconds() + 600 }, { alg: "HS512" }),
  "not yet valid (nbf 10 minutes ahead)": () => userToken(randomId(), { nbf: nowSeconds() + 600 }),
  "service role": () => userToken(randomId(), { role: "service" }),
  "no sub claim": () => signJwt({ exp: nowSeconds() + 600 }),
  "no exp claim": () => signJwt({ sub: randomId() }),
  "sub with characters outside [A-Za-z0-9_-]": () => userToken("alice smith/1"),
  "sub longer than 64 characters": () => userToken("a".repeat(65)),
};

for (const [name, make] of Object.entries(invalid)) {
  test(`${name} → invalid_token`, T, async () => {
    await assertRefused({ token: make() }, "invalid_token");
  });
}

test("expired an hour ago → token_expired", T, async () => {
  await assertRefused({ token: userToken(randomId(), { ttl: -3600 }) }, "token_expired");
});

test("expired 5 seconds ago → token_expired (no leeway past exp)", T, async () => {
  await assertRefused({ token: userToken(randomId(), { ttl: -5 }) }, "token_expired");
});

test("a refused socket never becomes connected and gets no events", T, async () => {
  const socket = makeSocket(node.url, { auth: { token: "garbage" } });
  const events = [];
  socket.onAny((...args) => events.push(args));
  let connected = false;
  socket.on("connect", () => (connected = true));
  const [err] = await nextEvent(socket, "connect_error", 5_000);
  assert.equal(err.message, "unauthorized");
  await sleep(200);
  assert.equal(connected, false);
  assert.equal(socket.connected, false);
  assert.equal(socket.id, undefined);
  assert.deepEqual(events, []);
});

test('namespace /admin → connect_error "Invalid namespace"', T, async () => {
  const err = await connectError(`${node.url}/admin`, { token: userToken(randomId(), { role: "admin" }) });
  assert.equal(err.message, "Invalid namespace");
});

test("a refusal does not break the next connection from the same user", T, async () => {
  const user = randomId();
  await assertRefused({ token: userToken(user, { secret: "wrong" }) }, "invalid_token");
  const socket = await connect(node.url, { token: userToken(user) });
  assert.equal(socket.connected, true);
});
