// deploy/nginx.conf, checked: three souk nodes (one database, one Redis)
// behind nginx configured by the shipped file, with only its listen address,
// its upstream servers and the paths nginx writes changed. The official
// client with its default transports connects through nginx (long-polling
// first, which needs the config's session affinity, then the upgrade), and
// room events from clients connected straight to other nodes reach it
// (PROTOCOL.md §1 and §10). Without the affinity line, long-polling breaks.
//
// nginx must be installed (scripts/lib.sh's ensure_packages installs it):
// this file fails, it does not skip, when the binary is missing.

import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, writeFileSync, rmSync, chmodSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  T,
  createDatabase,
  startNode,
  closeAllSockets,
  connect,
  makeSocket,
  userToken,
  randomId,
  nextEvent,
  nextMatching,
  api,
  putListing,
  requestOk,
  request,
  assertRoomEvent,
  waitUntil,
  sleep,
  serviceToken,
  SEVERAL_NODES,
} from "./helpers.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const SHIPPED_CONF = path.resolve(here, "..", "..", "..", "deploy", "nginx.conf");
const NODES = 3;
const REDIS_PREFIX = `souk_nginx_${randomId("t")}:`;

/** The nginx binary, or a clear failure: CI installs it through scripts/lib.sh. */
function nginxBinary() {
  for (const dir of (process.env.PATH || "").split(":").concat(["/usr/sbin", "/usr/local/sbin"])) {
    const candidate = path.join(dir || ".", "nginx");
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(
    "nginx not found on PATH nor in /usr/sbin: install it (scripts/lib.sh ensure_packages does, " +
      "e.g. `bash -c 'source scripts/lib.sh && ensure_packages'`, or apt-get install nginx)",
  );
}

/** A TCP port free right now on 127.0.0.1. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * deploy/nginx.conf with `listen` on `port`, the upstream's `server` lines
 * pointing at `nodes` (as many as the file has), everything nginx writes
 * under `scratch`, when `affinity` is false, the hash line removed
 * (round robin), and when `backend` is false, the backend network's
 * addresses removed from the `geo $souk_backend` block (so this machine is
 * an outsider to the server API and /metrics).
 */
function renderConf(template, { port, nodes, scratch, affinity = true, backend = true }) {
  let conf = template;
  const listens = conf.match(/^\s*listen\s+[^;]+;/gm) ?? [];
  assert.equal(listens.length, 1, `deploy/nginx.conf: expected one listen line, found ${listens.length}`);
  conf = conf.replace(/^(\s*)listen\s+[^;]+;/m, `$1listen 127.0.0.1:${port};`);

  const servers = conf.match(/^\s*server\s+[^\s{;]+[^;{]*;/gm) ?? [];
  assert.equal(servers.length, nodes.length, `deploy/nginx.conf has ${servers.length} upstream servers, the test ${nodes.length} nodes`);
  let i = 0;
  conf = conf.replace(/^(\s*)server\s+[^\s{;]+([^;{]*);/gm, (_, indent, params) => `${indent}server ${nodes[i++]}${params};`);

  const hashes = conf.match(/^\s*hash\s+\$remote_addr\s+consistent;/gm) ?? [];
  assert.equal(hashes.length, 1, "deploy/nginx.conf no longer has `hash $remote_addr consistent;`");
  if (!affinity) conf = conf.replace(/^(\s*)hash\s+\$remote_addr\s+consistent;/m, "$1# (affinity removed by the test)");

  const geo = /geo \$souk_backend \{([^}]*)\}/.exec(conf);
  assert.ok(geo, "deploy/nginx.conf no longer has a `geo $souk_backend` block");
  assert.match(geo[1], /^\s*127\.0\.0\.1\/32\s+1;/m, "the geo block no longer lets 127.0.0.1 in");
  if (!backend) conf = conf.replace(geo[1], "\n        default 0;\n    ");

  assert.match(conf, /^http\s*\{/m, "deploy/nginx.conf has no top-level http block");
  const paths = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
    .map((kind) => `    ${kind}_temp_path ${scratch}/${kind};`)
    .join("\n");
  conf = conf.replace(/^http\s*\{/m, `http {\n${paths}\n    access_log off;\n`);
  return conf;
}

/** Starts nginx in the foreground on `conf`; resolves once it proxies /healthz. */
async function startNginx(conf, port) {
  const bin = nginxBinary();
  const scratch = mkdtempSync(path.join(tmpdir(), "souk-nginx-"));
  // nginx's workers drop root; they must reach the temp dirs under scratch.
  chmodSync(scratch, 0o755);
  const confPath = path.join(scratch, "nginx.conf");
  writeFileSync(confPath, conf(scratch));
  const globals = `daemon off; master_process on; pid ${scratch}/nginx.pid; error_log stderr;`;
  try {
    execFileSync(bin, ["-t", "-q", "-p", scratch, "-c", confPath, "-g", globals], { stdio: "pipe" });
  } catch (err) {
    throw new Error(`nginx -t refused the rendered deploy/nginx.conf:\n${err.stderr}\n${readFileSync(confPath, "utf8")}`);
  }
  const child = spawn(bin, ["-p", scratch, "-c", confPath, "-g", globals], { stdio: ["ignore", "ignore", "pipe"] });
  const logs = [];
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk) => {
    logs.push(chunk);
    if (process.env.SOUK_TEST_VERBOSE === "1") process.stderr.write(`[nginx] ${chunk}`);
  });
  const proxy = {
    child,
    logs,
    url: `http://127.0.0.1:${port}`,
    exited: false,
    async stop() {
      if (!proxy.exited) {
        child.kill("SIGQUIT");
        const killer = setTimeout(() => child.kill("SIGKILL"), 5_000);
        await once(child, "exit").catch(() => {});
        clearTimeout(killer);
      }
      rmSync(scratch, { recursive: true, force: true });
    },
  };
  child.on("exit", () => {
    proxy.exited = true;
  });
  process.on("exit", () => proxy.exited || child.kill("SIGKILL"));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (proxy.exited) throw new Error(`nginx exited at start:\n${logs.join("")}`);
    try {
      const res = await fetch(`${proxy.url}/healthz`, { signal: AbortSignal.timeout(1_000) });
      if (res.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await proxy.stop();
      throw new Error(`nginx on ${proxy.url} did not proxy /healthz within 10 s:\n${logs.join("")}`);
    }
    await sleep(100);
  }
  return proxy;
}

// ------------------------------------------------------------------ the cluster

/** Every test here runs three nodes: skipped on the memory broker. */
const TN = { ...T, skip: SEVERAL_NODES };

const ctx = { db: null, nodes: [], nginx: null, roundRobin: null, outside: null };

before(
  async () => {
    if (SEVERAL_NODES) return;
    const template = readFileSync(SHIPPED_CONF, "utf8");
    ctx.db = await createDatabase();
    for (let i = 0; i < NODES; i++) {
      ctx.nodes.push(
        await startNode({
          databaseUrl: ctx.db.url,
          env: {
            SOUK_NODE_ID: `nginx-test-${i}`,
            SOUK_REDIS_PREFIX: REDIS_PREFIX,
            SOUK_NODE_HEARTBEAT_MS: "200",
          },
        }),
      );
    }
    const upstreams = ctx.nodes.map((n) => `127.0.0.1:${n.port}`);
    const port = await freePort();
    ctx.nginx = await startNginx((scratch) => renderConf(template, { port, nodes: upstreams, scratch }), port);
    const rrPort = await freePort();
    ctx.roundRobin = await startNginx(
      (scratch) => renderConf(template, { port: rrPort, nodes: upstreams, scratch, affinity: false }),
      rrPort,
    );
    const outsidePort = await freePort();
    ctx.outside = await startNginx(
      (scratch) => renderConf(template, { port: outsidePort, nodes: upstreams, scratch, backend: false }),
      outsidePort,
    );
  },
  { timeout: 90_000 },
);

afterEach(() => closeAllSockets());

after(
  async () => {
    closeAllSockets();
    for (const proxy of [ctx.nginx, ctx.roundRobin, ctx.outside]) if (proxy) await proxy.stop();
    await Promise.all(ctx.nodes.map((n) => n.stop()));
    if (ctx.db) await ctx.db.drop();
  },
  { timeout: 30_000 },
);

/** The cluster view through nginx: {nodeId: connections}. */
async function connectionsByNode() {
  const res = await api(ctx.nginx.url, "GET", "/api/v1/cluster", undefined, serviceToken());
  assert.equal(res.status, 200, res.text);
  return Object.fromEntries(res.body.nodes.map((n) => [n.nodeId, n.connections]));
}

/** Waits until the cluster view shows exactly `total` connections; resolves with the view. */
async function settledView(total, ms = 5_000) {
  let view = {};
  const deadline = Date.now() + ms;
  for (;;) {
    view = await connectionsByNode();
    const sum = Object.values(view).reduce((a, b) => a + b, 0);
    if (Object.keys(view).length === NODES && sum === total) return view;
    if (Date.now() > deadline) throw new Error(`cluster view never showed ${total} connections: ${JSON.stringify(view)}`);
    await sleep(100);
  }
}

/** Connects `user` with default transports through nginx; resolves once upgraded. */
async function throughNginx(user, role) {
  const socket = makeSocket(ctx.nginx.url, { auth: { token: userToken(user, role ? { role } : {}) }, transports: null });
  const [handshake] = await nextEvent(socket.io.engine, "handshake");
  assert.deepEqual(handshake.upgrades, ["websocket"], "the handshake through nginx was not a polling one");
  await nextEvent(socket, "connect");
  if (socket.io.engine.transport.name !== "websocket") await nextEvent(socket.io.engine, "upgrade");
  assert.equal(socket.io.engine.transport.name, "websocket", "no upgrade through nginx");
  return socket;
}

// ------------------------------------------------------------------ tests

test("nginx: the shipped config proxies the API, health and the cluster view of all three nodes", TN, async () => {
  assert.equal((await fetch(`${ctx.nginx.url}/readyz`)).status, 200);
  const view = await settledView(0);
  assert.deepEqual(Object.keys(view).sort(), ["nginx-test-0", "nginx-test-1", "nginx-test-2"]);
  const refused = await api(ctx.nginx.url, "GET", "/api/v1/cluster", undefined, null);
  assert.equal(refused.status, 401, refused.text);
});

test("nginx: the server API and /metrics answer only the backend's network, the user reads anyone; /dev/ never goes through", TN, async () => {
  // From the backend's network (127.0.0.1 is in the shipped geo block).
  assert.equal((await api(ctx.nginx.url, "GET", "/api/v1/cluster", undefined, serviceToken())).status, 200);
  assert.equal((await fetch(`${ctx.nginx.url}/metrics`)).status, 200);
  // From outside it (the same nginx with the geo block emptied): refused by
  // nginx, with a valid service token too, while sockets and health work.
  const api403 = await api(ctx.outside.url, "GET", "/api/v1/cluster", undefined, serviceToken());
  assert.equal(api403.status, 403, api403.text);
  const post403 = await api(ctx.outside.url, "POST", "/api/v1/users/u1/notifications", { kind: "x", data: {} });
  assert.equal(post403.status, 403, post403.text);
  assert.equal((await fetch(`${ctx.outside.url}/metrics`)).status, 403);
  const putOutside = await api(ctx.outside.url, "PUT", "/api/v1/listings/l-outside", { sellerId: "s", title: "t", price: 1, currency: "EUR" }, serviceToken());
  assert.equal(putOutside.status, 403, putOutside.text);
  // The user reads (§8a) answer browsers anywhere, with the user's own token.
  const user = userToken(randomId("u"));
  for (const path of ["/api/v1/me/bookings", "/api/v1/me/listings", "/api/v1/listings?availability=available"]) {
    const read = await api(ctx.outside.url, "GET", path, undefined, user);
    assert.equal(read.status, 200, `${path}: ${read.text}`);
  }
  const admin = userToken(randomId("a"), { role: "admin" });
  const metrics = await api(ctx.outside.url, "GET", "/api/v1/admin/metrics", undefined, admin);
  assert.equal(metrics.status, 200, metrics.text);
  assert.match(metrics.text, /souk_connections/);
  const notAdmin = await api(ctx.outside.url, "GET", "/api/v1/admin/metrics", undefined, user);
  assert.equal(notAdmin.status, 403, notAdmin.text);
  assert.equal((await fetch(`${ctx.outside.url}/healthz`)).status, 200);
  const socket = makeSocket(ctx.outside.url, { auth: { token: userToken(randomId("u")) } });
  await nextEvent(socket, "connect");
  // /dev/ is answered by nginx itself, never by a node.
  for (const url of [ctx.nginx.url, ctx.outside.url]) {
    const res = await fetch(`${url}/dev/token`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    assert.equal(res.status, 404);
    assert.match(await res.text(), /nginx/);
  }
});

test("nginx: default transports connect through nginx, poll, upgrade to websocket, and ack", TN, async () => {
  await settledView(0);
  const user = randomId("u");
  const socket = await throughNginx(user);
  const reply = await requestOk(socket, "auth:refresh", { token: userToken(user) });
  assert.equal(typeof reply.expiresAt, "string");
  // One connection, on one node: every polling request and the upgrade went there.
  const view = await settledView(1);
  assert.equal(Object.values(view).filter((c) => c === 1).length, 1, JSON.stringify(view));
});

test("nginx: chat between a client through nginx and a client connected straight to another node", TN, async () => {
  await settledView(0);
  const buyerId = randomId("buyer");
  const sellerId = randomId("seller");
  const buyer = await throughNginx(buyerId, "buyer");
  const view = await settledView(1);
  const viaNginx = Object.keys(view).find((id) => view[id] === 1);
  const other = ctx.nodes.find((_, i) => `nginx-test-${i}` !== viaNginx);
  assert.ok(other, `no node other than ${viaNginx}`);
  const seller = await connect(other.url, { token: userToken(sellerId, { role: "seller" }) });
  await settledView(2);
  const after2 = await connectionsByNode();
  assert.equal(after2[viaNginx], 1, `the seller landed on the buyer's node: ${JSON.stringify(after2)}`);

  const listingId = randomId("l");
  await putListing(other.url, listingId, { sellerId, title: "Cargo bike", price: 120_000, currency: "EUR" });
  const { booking } = await requestOk(buyer, "listing:reserve", { listingId, idempotencyKey: randomId("k") });
  await requestOk(buyer, "booking:join", { bookingId: booking.id });
  await requestOk(seller, "booking:join", { bookingId: booking.id });

  // Seller (straight to its node) → buyer (through nginx, on another node).
  // Senders get their own message:new too: wait for the other side's.
  const from = (clientMsgId) => (d) => d?.message?.clientMsgId === clientMsgId;
  const toBuyer = nextMatching(buyer, "message:new", from("c1"));
  const sent = await requestOk(seller, "message:send", { bookingId: booking.id, body: "Still available?", clientMsgId: "c1" });
  assertRoomEvent(await toBuyer, { message: sent.message }, "message:new at the buyer");
  // And back.
  const toSeller = nextMatching(seller, "message:new", from("c2"));
  const answer = await requestOk(buyer, "message:send", { bookingId: booking.id, body: "Yes!", clientMsgId: "c2" });
  assertRoomEvent(await toSeller, { message: answer.message }, "message:new at the seller");

  // A backend room event posted through nginx reaches both nodes' members.
  const a = nextEvent(buyer, "test:note");
  const b = nextEvent(seller, "test:note");
  const res = await api(ctx.nginx.url, "POST", `/api/v1/rooms/booking:${booking.id}/events`, { event: "test:note", data: { x: 1 } });
  assert.equal(res.status, 202, res.text);
  assertRoomEvent(await a, { x: 1 });
  assertRoomEvent(await b, { x: 1 });
});

test("nginx: a polling-only client keeps its node for 30 acked events and gets room events", TN, async () => {
  const user = randomId("p");
  const socket = await connect(ctx.nginx.url, { token: userToken(user) }, { transports: ["polling"] });
  const listingId = randomId("l");
  await putListing(ctx.nodes[0].url, listingId, { sellerId: randomId("s"), title: "Lamp", price: 900, currency: "EUR" });
  for (let i = 0; i < 30; i++) await requestOk(socket, "listing:watch", { listingId });
  const note = nextEvent(socket, "test:note");
  for (const node of ctx.nodes) {
    const res = await api(node.url, "POST", `/api/v1/rooms/listing:${listingId}/events`, { event: "test:note", data: { from: node.port } });
    assert.equal(res.status, 202, res.text);
  }
  const [first] = await note;
  assert.equal(typeof first.from, "number");
  assert.equal(socket.io.engine.transport.name, "polling");
  assert.equal(socket.connected, true);
});

test("nginx without the affinity line: long-polling breaks (unknown sid), WebSocket-only still works", TN, async (t) => {
  // Round robin sends a session's requests to different nodes: some land
  // where the sid is unknown. Several tries, since two requests can land on
  // one node by chance.
  const failures = [];
  for (let attempt = 0; attempt < 6 && failures.length === 0; attempt++) {
    const socket = makeSocket(ctx.roundRobin.url, { auth: { token: userToken(randomId()) }, transports: ["polling"] });
    const outcome = await Promise.race([
      nextEvent(socket, "connect", 5_000).then(async () => {
        for (let i = 0; i < 10; i++) {
          const reply = await request(socket, "auth:refresh", { token: userToken(randomId()) }, 1_000).catch((err) => err);
          if (reply instanceof Error) return `ack lost: ${reply.message}`;
        }
        return socket.connected ? null : "disconnected";
      }),
      nextEvent(socket, "connect_error", 5_000).then(([err]) => `connect_error: ${err.message}`),
      nextEvent(socket, "disconnect", 5_000).then(([reason]) => `disconnect: ${reason}`),
    ]).catch((err) => `no outcome: ${err.message}`);
    if (outcome) failures.push(outcome);
    socket.disconnect();
  }
  assert.ok(failures.length > 0, "long-polling worked through round robin: the test shows nothing about affinity");
  t.diagnostic(`without affinity: ${failures.join("; ")}`);

  const ws = await connect(ctx.roundRobin.url, { token: userToken(randomId()) });
  assert.equal(ws.io.engine.transport.name, "websocket");
  const user = randomId();
  const again = await connect(ctx.roundRobin.url, { token: userToken(user) });
  await requestOk(again, "auth:refresh", { token: userToken(user) });
  await waitUntil(() => ws.connected && again.connected, 1_000, "WebSocket-only clients stay up");
});

// Last: it kills a node.
test("nginx: when a client's node dies, it reconnects through nginx to another node and recovers its events", TN, async () => {
  await settledView(0);
  const user = randomId("u");
  const socket = makeSocket(ctx.nginx.url, {
    auth: { token: userToken(user) },
    transports: null,
    reconnection: true,
    reconnectionDelay: 500,
    reconnectionDelayMax: 500,
    randomizationFactor: 0,
  });
  await nextEvent(socket, "connect");
  const pid = socket.connectPacket.data.pid;
  const view = await settledView(1);
  const doomedId = Object.keys(view).find((id) => view[id] === 1);
  const doomed = ctx.nodes[Number(doomedId.split("-").at(-1))];
  const survivor = ctx.nodes.find((n) => n !== doomed);

  const listingId = randomId("l");
  await putListing(survivor.url, listingId, { sellerId: randomId("s"), title: "Sofa", price: 30_000, currency: "EUR" });
  await requestOk(socket, "listing:watch", { listingId });
  const ticks = [];
  socket.on("tick", (...args) => ticks.push(args));
  const post = async (n) => {
    const res = await api(survivor.url, "POST", `/api/v1/rooms/listing:${listingId}/events`, { event: "tick", data: n });
    assert.equal(res.status, 202, res.text);
  };
  await post(0);
  await waitUntil(() => ticks.length === 1, 3_000, "tick 0");

  const reconnected = nextEvent(socket, "connect", 10_000);
  doomed.child.kill("SIGKILL");
  await nextEvent(socket, "disconnect", 5_000);
  for (let n = 1; n <= 3; n++) await post(n);
  await reconnected;
  assert.equal(socket.recovered, true, `not recovered after the node died: ${JSON.stringify(socket.connectPacket?.data)}`);
  assert.equal(socket.connectPacket.data.pid, pid);
  await waitUntil(() => ticks.length === 4, 5_000, "the three missed ticks");
  await post(4);
  await waitUntil(() => ticks.length === 5, 3_000, "tick 4, live");
  assert.deepEqual(
    ticks.map((args) => args[0]),
    [0, 1, 2, 3, 4],
  );
});
