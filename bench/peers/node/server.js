// A Node Socket.IO 4 server that speaks the part of the souk contract
// souk-bench's scenarios use (drops, fanout, idle, chat, auction), built as
// a fair marketplace server on the seeds' stack would be (Socket.IO 4,
// @socket.io/redis-adapter or the streams adapter, `redis`, `pg`), so the
// same scenario can be run against it for comparison (docs/BENCHMARKS.md,
// "Side by side"; `scripts/bench --peer node` and `--compare`).
//
// Not a souk. Tokens are NOT verified: the JWT's `sub` is read and trusted,
// its signature and expiry are not checked. That skips work souk does on
// every CONNECT (an HS256 check) and so favours the peer. No authorization
// beyond what the scenarios exercise (booking participants, not bidding on
// one's own listing), no rate limits, no typing, receipts or presence.
//
//   CONNECT {token}            the token's `sub` (read, not verified) is the
//                              user; no token is refused as souk does
//   listing:watch {listingId}  joins listing:{id}, acks {listing} (Postgres,
//                              with the live auction state from Redis)
//   listing:reserve {listingId, idempotencyKey}
//                              one transaction: the listing goes from
//                              available to reserved and a booking row is
//                              inserted; the same key from the same buyer
//                              answers the same booking; acks {booking}
//   booking:join {bookingId}   participants only; joins booking:{id}; acks
//                              {booking, unread: 0, lastReadMessageId: null}
//   message:send {bookingId, body, clientMsgId}
//                              one INSERT ... ON CONFLICT DO NOTHING on
//                              (booking, sender, clientMsgId), acked after it
//                              commits; a new message goes out as message:new
//                              to booking:{id} and booking:activity to both
//                              participants' user rooms; a repeat answers
//                              the first message and sends nothing
//   message:history {bookingId, beforeId?, limit?}
//                              oldest first, limit 1-200 (default 50), hasMore
//   bid:place {listingId, amount}
//                              checked and applied atomically in Redis by one
//                              Lua script (open, not the seller, >= start
//                              price or current + increment; anti-sniping
//                              extension), then INSERTed into Postgres's bid
//                              log, then acked {bid, auction}; bid:new to the
//                              listing room, bid:outbid to the previous
//                              leader's user room
//   PUT  /api/v1/listings/{id}           upserts the listing in Postgres; an
//                                        auction's live state goes to Redis
//   GET  /api/v1/listings/{id}           the listing with its live auction
//   POST /api/v1/rooms/{room}/events     {event, data}: emits to the room,
//                                        202 {room}
//   GET  /readyz                          200 once Postgres and Redis answer
//
// Its tables (peer_listings, peer_bookings, peer_messages, peer_bids) are
// created on start (CREATE TABLE IF NOT EXISTS) in SOUK_DATABASE_URL's
// database; scripts/bench gives it a fresh one and drops it afterwards.
//
// Connection state recovery is on (2 min, as souk's recovery window),
// through the adapter SOUK_PEER_ADAPTER chooses:
//   memory   socket.io's in-memory adapter (one node)
//   redis    @socket.io/redis-adapter (Redis pub/sub)
//   streams  @socket.io/redis-streams-adapter (Redis streams)
//
// Environment: SOUK_HTTP_ADDR (127.0.0.1:18080), SOUK_REDIS_URL
// (redis://127.0.0.1:6379), SOUK_REDIS_PREFIX (bench:) for every Redis
// key and channel, SOUK_PEER_ADAPTER (streams), SOUK_DATABASE_URL
// (postgres://postgres@127.0.0.1:5432/souk_bench), SOUK_PEER_PG_POOL (10).

import { createServer } from "node:http";
import { Server } from "socket.io";
import { createClient } from "redis";
import { createAdapter as redisAdapter } from "@socket.io/redis-adapter";
import { createAdapter as streamsAdapter } from "@socket.io/redis-streams-adapter";
import { randomUUID } from "node:crypto";
import pg from "pg";

const [host, port] = (process.env.SOUK_HTTP_ADDR || "127.0.0.1:18080").split(":");
const redisUrl = process.env.SOUK_REDIS_URL || "redis://127.0.0.1:6379";
const prefix = process.env.SOUK_REDIS_PREFIX || "bench:";
const adapterName = process.env.SOUK_PEER_ADAPTER || "streams";
const databaseUrl =
  process.env.SOUK_DATABASE_URL || "postgres://postgres@127.0.0.1:5432/souk_bench";
const poolSize = Number(process.env.SOUK_PEER_PG_POOL || 10);

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

// Postgres: the peer's own tables, made on start.
const db = new pg.Pool({ connectionString: databaseUrl, max: poolSize });
await db.query(`
  CREATE TABLE IF NOT EXISTS peer_listings (
    id text PRIMARY KEY,
    seller_id text NOT NULL,
    availability text NOT NULL DEFAULT 'available',
    body jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
  );
  CREATE TABLE IF NOT EXISTS peer_bookings (
    id text PRIMARY KEY,
    listing_id text NOT NULL REFERENCES peer_listings (id),
    buyer_id text NOT NULL,
    seller_id text NOT NULL,
    idempotency_key text NOT NULL,
    status text NOT NULL DEFAULT 'requested',
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (buyer_id, idempotency_key)
  );
  CREATE TABLE IF NOT EXISTS peer_messages (
    id bigserial PRIMARY KEY,
    booking_id text NOT NULL REFERENCES peer_bookings (id),
    sender_id text NOT NULL,
    body text NOT NULL,
    client_msg_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (booking_id, sender_id, client_msg_id)
  );
  CREATE INDEX IF NOT EXISTS peer_messages_booking ON peer_messages (booking_id, id);
  CREATE TABLE IF NOT EXISTS peer_bids (
    id bigserial PRIMARY KEY,
    listing_id text NOT NULL,
    bidder_id text NOT NULL,
    amount bigint NOT NULL,
    version bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
  );
`);

// Redis: the live auction state, one hash per listing, changed only by
// PLACE_BID (atomic: Redis runs one script at a time).
const redis = createClient({ url: redisUrl });
await redis.connect();
const auctionKey = (id) => `${prefix}peer:auction:${id}`;

// KEYS[1] the auction's hash; ARGV amount, bidder, now (ms). Answers
// {"ok", version, bidCount, endsAt, previous leader, previous amount,
// extended} or {refusal, detail}.
const PLACE_BID = `
local a = redis.call('HMGET', KEYS[1], 'starts', 'ends', 'start', 'inc', 'ext', 'seller',
  'current', 'leader', 'count', 'version')
if not a[1] then return {'not_found', ''} end
local amount, bidder, now = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local starts, ends = tonumber(a[1]), tonumber(a[2])
if now < starts then return {'not_open', a[1]} end
if now >= ends then return {'closed', a[2]} end
if bidder == a[6] then return {'seller', ''} end
local min = tonumber(a[3])
if a[7] then min = tonumber(a[7]) + tonumber(a[4]) end
if amount < min then return {'too_low', tostring(min)} end
local extended = '0'
local ext = tonumber(a[5]) * 1000
if ext > 0 and ends - now < ext then ends = now + ext; extended = '1' end
local count, version = tonumber(a[9]) + 1, tonumber(a[10]) + 1
redis.call('HSET', KEYS[1], 'current', ARGV[1], 'leader', bidder, 'count', count,
  'version', version, 'ends', ends)
return {'ok', tostring(version), tostring(count), tostring(ends), a[8] or '', a[7] or '', extended}
`;
const placeBidSha = await redis.scriptLoad(PLACE_BID);

const iso = (ms) => new Date(Number(ms)).toISOString();

// The live auction of listing `id` as the contract shows it, or null.
async function liveAuction(id, settings) {
  if (!settings) return null;
  const s = await redis.hGetAll(auctionKey(id));
  const now = Date.now();
  const ends = Number(s.ends ?? Date.parse(settings.endsAt));
  const starts = Number(s.starts ?? Date.parse(settings.startsAt));
  return {
    ...settings,
    reservePrice: undefined,
    endsAt: iso(ends),
    status: now < starts ? "scheduled" : now < ends ? "open" : "closed",
    currentAmount: s.current === undefined ? null : Number(s.current),
    leaderId: s.leader ?? null,
    bidCount: Number(s.count ?? 0),
    version: Number(s.version ?? 0),
  };
}

// Listing `id` with its live auction, or null.
async function listing(id) {
  const { rows } = await db.query(
    "SELECT id, seller_id, availability, body FROM peer_listings WHERE id = $1",
    [id],
  );
  if (rows.length === 0) return null;
  const row = rows[0];
  return {
    ...row.body,
    id: row.id,
    sellerId: row.seller_id,
    availability: row.availability,
    auction: await liveAuction(row.id, row.body.auction),
  };
}

async function putListing(id, body) {
  if (typeof body?.sellerId !== "string") throw new Refusal("validation", "sellerId is required");
  await db.query(
    `INSERT INTO peer_listings (id, seller_id, availability, body) VALUES ($1, $2, $3, $4)
     ON CONFLICT (id) DO UPDATE SET seller_id = $2, body = $4, updated_at = now(),
       availability = COALESCE($5, peer_listings.availability)`,
    [id, body.sellerId, body.availability ?? "available", body, body.availability ?? null],
  );
  const a = body.auction;
  if (a) {
    const key = auctionKey(id);
    await redis
      .multi()
      .hSet(key, {
        starts: Date.parse(a.startsAt),
        ends: Date.parse(a.endsAt),
        start: a.startPrice ?? 1,
        inc: a.minIncrement ?? 1,
        ext: a.extendWindowSecs ?? 0,
        seller: body.sellerId,
      })
      .hSetNX(key, "count", "0")
      .hSetNX(key, "version", "0")
      .exec();
  }
  const shown = await listing(id);
  io.to(`listing:${id}`).emit("listing:updated", { listing: shown });
  return shown;
}

class Refusal extends Error {
  constructor(code, message, extra = {}) {
    super(message);
    this.code = code;
    this.extra = extra;
  }
}

const bookingJson = (row) => ({
  id: row.id,
  listingId: row.listing_id,
  buyerId: row.buyer_id,
  sellerId: row.seller_id,
  status: row.status,
  createdAt: row.created_at.toISOString(),
});

const messageJson = (row) => ({
  id: row.id,
  bookingId: row.booking_id,
  senderId: row.sender_id,
  body: row.body,
  clientMsgId: row.client_msg_id,
  createdAt: row.created_at.toISOString(),
});

// The booking, if `user` takes part in it (cached on the socket once read).
async function participantBooking(socket, bookingId) {
  if (typeof bookingId !== "string") throw new Refusal("validation", "bookingId is required");
  let booking = socket.data.bookings.get(bookingId);
  if (!booking) {
    const { rows } = await db.query("SELECT * FROM peer_bookings WHERE id = $1", [bookingId]);
    if (rows.length === 0) throw new Refusal("not_found", "no such booking");
    booking = rows[0];
  }
  const user = socket.data.user;
  if (booking.buyer_id !== user && booking.seller_id !== user) {
    throw new Refusal("forbidden", "not a participant of this booking");
  }
  socket.data.bookings.set(bookingId, booking);
  return booking;
}

async function reserve(socket, { listingId, idempotencyKey } = {}) {
  if (typeof listingId !== "string" || typeof idempotencyKey !== "string") {
    throw new Refusal("validation", "listingId and idempotencyKey are required");
  }
  const buyer = socket.data.user;
  const client = await db.connect();
  let booking;
  try {
    await client.query("BEGIN");
    const same = await client.query(
      "SELECT * FROM peer_bookings WHERE buyer_id = $1 AND idempotency_key = $2",
      [buyer, idempotencyKey],
    );
    if (same.rows.length > 0) {
      await client.query("COMMIT");
      return { booking: bookingJson(same.rows[0]) };
    }
    const taken = await client.query(
      `UPDATE peer_listings SET availability = 'reserved', updated_at = now()
       WHERE id = $1 AND availability = 'available' AND seller_id <> $2 RETURNING seller_id`,
      [listingId, buyer],
    );
    if (taken.rows.length === 0) {
      await client.query("ROLLBACK");
      const { rows } = await db.query("SELECT seller_id FROM peer_listings WHERE id = $1", [
        listingId,
      ]);
      if (rows.length === 0) throw new Refusal("not_found", "no such listing");
      if (rows[0].seller_id === buyer) {
        throw new Refusal("forbidden", "sellers cannot reserve their own listing");
      }
      throw new Refusal("unavailable", "this listing is not available");
    }
    const inserted = await client.query(
      `INSERT INTO peer_bookings (id, listing_id, buyer_id, seller_id, idempotency_key)
       VALUES ($1, $2, $3, $4, $5) RETURNING *`,
      [randomUUID(), listingId, buyer, taken.rows[0].seller_id, idempotencyKey],
    );
    await client.query("COMMIT");
    booking = inserted.rows[0];
  } catch (e) {
    await client.query("ROLLBACK").catch(() => {});
    throw e;
  } finally {
    client.release();
  }
  const shown = bookingJson(booking);
  io.to(`listing:${listingId}`).emit("listing:availabilityChanged", {
    listingId,
    availability: "reserved",
  });
  io.to([`user:${booking.buyer_id}`, `user:${booking.seller_id}`]).emit("booking:created", {
    booking: shown,
  });
  return { booking: shown };
}

async function sendMessage(socket, { bookingId, body, clientMsgId } = {}) {
  if (typeof body !== "string" || body.length < 1 || body.length > 4000 || !body.trim()) {
    throw new Refusal("validation", "body must be 1-4000 characters, not only white space");
  }
  if (typeof clientMsgId !== "string" || clientMsgId.length === 0) {
    throw new Refusal("validation", "clientMsgId is required");
  }
  const booking = await participantBooking(socket, bookingId);
  const sender = socket.data.user;
  // One statement, so committed when it answers.
  const inserted = await db.query(
    `INSERT INTO peer_messages (booking_id, sender_id, body, client_msg_id)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (booking_id, sender_id, client_msg_id) DO NOTHING RETURNING *`,
    [bookingId, sender, body, clientMsgId],
  );
  if (inserted.rows.length === 0) {
    const { rows } = await db.query(
      `SELECT * FROM peer_messages WHERE booking_id = $1 AND sender_id = $2 AND client_msg_id = $3`,
      [bookingId, sender, clientMsgId],
    );
    return { message: messageJson(rows[0]) };
  }
  const message = messageJson(inserted.rows[0]);
  io.to(`booking:${bookingId}`).emit("message:new", { message });
  io.to([`user:${booking.buyer_id}`, `user:${booking.seller_id}`]).emit("booking:activity", {
    bookingId,
    messageId: message.id,
    senderId: sender,
  });
  return { message };
}

async function history(socket, { bookingId, beforeId, limit } = {}) {
  await participantBooking(socket, bookingId);
  const n = limit === undefined ? 50 : Number(limit);
  if (!Number.isInteger(n) || n < 1 || n > 200) {
    throw new Refusal("validation", "limit must be 1-200");
  }
  const { rows } = await db.query(
    `SELECT * FROM peer_messages WHERE booking_id = $1 AND ($2::bigint IS NULL OR id < $2)
     ORDER BY id DESC LIMIT $3`,
    [bookingId, beforeId ?? null, n + 1],
  );
  const hasMore = rows.length > n;
  return { messages: rows.slice(0, n).reverse().map(messageJson), hasMore };
}

async function placeBid(socket, { listingId, amount } = {}) {
  if (typeof listingId !== "string" || !Number.isSafeInteger(amount) || amount <= 0) {
    throw new Refusal("validation", "listingId and a positive integer amount are required");
  }
  const bidder = socket.data.user;
  const r = await redis.evalSha(placeBidSha, {
    keys: [auctionKey(listingId)],
    arguments: [String(amount), bidder, String(Date.now())],
  });
  switch (r[0]) {
    case "ok":
      break;
    case "too_low":
      throw new Refusal("bid_too_low", `the lowest acceptable bid is ${r[1]}`, {
        minAmount: Number(r[1]),
      });
    case "not_open":
      throw new Refusal("auction_closed", `the auction opens at ${iso(r[1])}`);
    case "closed":
      throw new Refusal("auction_closed", "the auction has ended");
    case "seller":
      throw new Refusal("forbidden", "sellers cannot bid on their own listing");
    default:
      throw new Refusal("not_found", "no such auction");
  }
  const [, version, count, ends, previous, previousAmount, extended] = r;
  // The bid log, written before the ack.
  await db.query(
    "INSERT INTO peer_bids (listing_id, bidder_id, amount, version) VALUES ($1, $2, $3, $4)",
    [listingId, bidder, amount, version],
  );
  const endsAt = iso(ends);
  const bid = { id: version, listingId, bidderId: bidder, amount, version: Number(version), endsAt };
  io.to(`listing:${listingId}`).emit("bid:new", {
    listingId,
    bidId: version,
    amount,
    bidderId: bidder,
    version: Number(version),
    endsAt,
  });
  if (previous && previous !== bidder) {
    io.to(`user:${previous}`).emit("bid:outbid", {
      listingId,
      amount,
      yourAmount: Number(previousAmount),
    });
  }
  if (extended === "1") io.to(`listing:${listingId}`).emit("auction:extended", { listingId, endsAt });
  return {
    bid,
    auction: {
      status: "open",
      endsAt,
      currentAmount: amount,
      leaderId: bidder,
      bidCount: Number(count),
      version: Number(version),
    },
  };
}

// Answers `event`'s ack with {ok: true, ...answer} or {ok: false, error}.
function handle(socket, event, work) {
  socket.on(event, async (payload, ack) => {
    try {
      const answer = await work(socket, payload ?? {});
      ack?.({ ok: true, ...answer });
    } catch (e) {
      const error =
        e instanceof Refusal
          ? { code: e.code, message: e.message, ...e.extra }
          : { code: "internal", message: "internal error" };
      if (!(e instanceof Refusal)) console.error(`${event}:`, e);
      ack?.({ ok: false, error });
    }
  });
}

io.on("connection", (socket) => {
  socket.data.bookings = new Map();
  if (!socket.recovered) {
    socket.join(`user:${socket.data.user}`);
  }
  handle(socket, "listing:watch", async (socket, { listingId }) => {
    if (typeof listingId !== "string" || listingId.length === 0) {
      throw new Refusal("bad_request", "listingId is required");
    }
    const shown = await listing(listingId);
    if (!shown) throw new Refusal("not_found", "no such listing");
    socket.join(`listing:${listingId}`);
    return { listing: shown };
  });
  handle(socket, "listing:reserve", reserve);
  handle(socket, "booking:join", async (socket, { bookingId }) => {
    const booking = await participantBooking(socket, bookingId);
    socket.join(`booking:${bookingId}`);
    return { booking: bookingJson(booking), unread: 0, lastReadMessageId: null };
  });
  handle(socket, "message:send", sendMessage);
  handle(socket, "message:history", history);
  handle(socket, "bid:place", placeBid);
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
    if ((m = url.pathname.match(/^\/api\/v1\/listings\/([^/]+)$/))) {
      const id = decodeURIComponent(m[1]);
      if (req.method === "PUT") {
        return json(res, 200, { listing: await putListing(id, await readBody(req)) });
      }
      if (req.method === "GET") {
        const shown = await listing(id);
        if (!shown) return json(res, 404, { error: { code: "not_found", message: "no such listing" } });
        return json(res, 200, { listing: shown });
      }
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
    const error =
      e instanceof Refusal ? { code: e.code, message: e.message } : { code: "bad_request", message: String(e) };
    json(res, 400, { error });
  }
});

http.listen(Number(port), host, () => {
  console.log(`souk-peer-node (${adapterName} adapter, Postgres pool ${poolSize}) on ${host}:${port}`);
});
