// A Node Socket.IO 4 server that speaks the part of the souk contract
// souk-bench's `drops` scenario uses, so the same scenario can be run
// against it for comparison (docs/BENCHMARKS.md, "Delivery under repeated
// drops"). Not a souk: no Postgres, no JWT check, no authorization.
//
//   CONNECT {token}            the token's `sub` (read, not verified) is
//                              the user; no token is refused as souk does
//   listing:watch {listingId}  joins listing:{id}, acks {ok, listing}
//   PUT  /api/v1/listings/{id}           200 {listing} (nothing kept)
//   POST /api/v1/rooms/{room}/events     {event, data}: emits to the room,
//                                        202 {room}
//   GET  /readyz                          200
//
// Connection state recovery is on (2 min, as souk's recovery window),
// through the adapter SOUK_PEER_ADAPTER chooses:
//   memory   socket.io's in-memory adapter (one node)
//   redis    @socket.io/redis-adapter (Redis pub/sub)
//   streams  @socket.io/redis-streams-adapter (Redis streams)
//
// Environment: SOUK_HTTP_ADDR (127.0.0.1:18080), SOUK_REDIS_URL
// (redis://127.0.0.1:6379), SOUK_REDIS_PREFIX (bench:) for every Redis
// key and channel, SOUK_PEER_ADAPTER (streams).

import { createServer } from "node:http";
import { Server } from "socket.io";
import { createClient } from "redis";
import { createAdapter as redisAdapter } from "@socket.io/redis-adapter";
import { createAdapter as streamsAdapter } from "@socket.io/redis-streams-adapter";

const [host, port] = (process.env.SOUK_HTTP_ADDR || "127.0.0.1:18080").split(":");
const redisUrl = process.env.SOUK_REDIS_URL || "redis://127.0.0.1:6379";
const prefix = process.env.SOUK_REDIS_PREFIX || "bench:";
const adapterName = process.env.SOUK_PEER_ADAPTER || "streams";

async function adapter() {
  switch (adapterName) {
    case "memory":
      return undefined;
    case "redis": {
      const pub = createClient({ url: redisUrl });
      const sub = pub.duplicate();
      await Promise.all([pub.connect(), sub.connect()]);
      return redisAdapter(pub, sub, { key: `${prefix}socket.io` });
    }
    case "streams": {
      const client = createClient({ url: redisUrl });
      await client.connect();
      return streamsAdapter(client, {
        streamName: `${prefix}socket.io`,
        channelPrefix: `${prefix}socket.io`,
        sessionKeyPrefix: `${prefix}sio:session:`,
      });
    }
    default:
      throw new Error(`SOUK_PEER_ADAPTER: memory, redis or streams, not ${adapterName}`);
  }
}

function json(res, status, body) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      try {
        resolve(chunks.length ? JSON.parse(Buffer.concat(chunks).toString("utf8")) : null);
      } catch (e) {
        reject(e);
      }
    });
    req.on("error", reject);
  });
}

// The JWT's payload, read without checking the signature.
function subject(token) {
  try {
    const payload = JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString("utf8"));
    return typeof payload.sub === "string" ? payload.sub : null;
  } catch {
    return null;
  }
}

const http = createServer();
const io = new Server(http, {
  adapter: await adapter(),
  connectionStateRecovery: { maxDisconnectionDuration: 2 * 60 * 1000, skipMiddlewares: true },
  pingInterval: 25000,
  pingTimeout: 20000,
});

io.use((socket, next) => {
  const sub = subject(socket.handshake.auth?.token ?? "");
  if (!sub) {
    const err = new Error("unauthorized");
    err.data = { code: "unauthorized" };
    return next(err);
  }
  socket.data.user = sub;
  next();
});

io.on("connection", (socket) => {
  if (!socket.recovered) {
    socket.join(`user:${socket.data.user}`);
  }
  socket.on("listing:watch", (payload, ack) => {
    const id = payload?.listingId;
    if (typeof id !== "string" || id.length === 0) {
      return ack?.({ ok: false, error: { code: "bad_request", message: "listingId is required" } });
    }
    socket.join(`listing:${id}`);
    ack?.({ ok: true, listing: { id } });
  });
});

http.on("request", async (req, res) => {
  // socket.io answers its own path.
  if (req.url.startsWith("/socket.io/")) return;
  try {
    const url = new URL(req.url, "http://peer");
    let m;
    if (req.method === "GET" && (url.pathname === "/readyz" || url.pathname === "/healthz")) {
      return json(res, 200, { status: "ok" });
    }
    if (req.method === "PUT" && (m = url.pathname.match(/^\/api\/v1\/listings\/([^/]+)$/))) {
      const body = await readBody(req);
      return json(res, 200, { listing: { ...body, id: decodeURIComponent(m[1]) } });
    }
    if (req.method === "POST" && (m = url.pathname.match(/^\/api\/v1\/rooms\/([^/]+)\/events$/))) {
      const room = decodeURIComponent(m[1]);
      const body = await readBody(req);
      if (typeof body?.event !== "string") {
        return json(res, 400, { error: { code: "bad_request", message: "event is required" } });
      }
      io.to(room).emit(body.event, body.data);
      return json(res, 202, { room });
    }
    json(res, 404, { error: { code: "not_found", message: "no such route" } });
  } catch (e) {
    json(res, 400, { error: { code: "bad_request", message: String(e) } });
  }
});

http.listen(Number(port), host, () => {
  console.log(`souk-peer-node (${adapterName} adapter) on ${host}:${port}`);
});
