// An example souk client in TypeScript that sends and handles every event
// of the contract. It is compiled, not run, by scripts/test
// (`tsc --noEmit`): both maps below must name every event of souk.d.ts, so
// an event added there without its use here fails the check.
import { io } from "socket.io-client";

import type {
  Ack,
  AuctionState,
  Booking,
  ClientToServerEvents,
  ConnectErrorData,
  ListingsPage,
  MyBookingsPage,
  Offset,
  SoukServerEvents,
  SoukSocket,
} from "./souk";

const url = "https://rt.example.com";
const token = "<a JWT from the marketplace's login>";

// The marketplace's own room events, sent by its backend (§8, §8b).
interface FlashDeal {
  listingId: string;
  until: string;
}
type MarketEvents = {
  "deal:flash": (payload: FlashDeal, offset: Offset) => void;
};

const socket: SoukSocket<MarketEvents> = io(url, {
  auth: { token },
  transports: ["websocket"],
});

socket.on("connect_error", (err) => {
  const data = (err as Error & { data?: ConnectErrorData }).data;
  if (data?.code === "token_expired") {
    console.log("sign in again");
  }
});

/** What a failed ack says, for the log. */
function failed(event: string, reply: Ack<object>): void {
  if (!reply.ok) {
    console.warn(`${event}: ${reply.error.code} ${reply.error.message}`);
  }
}

// Every client event (§5), each sent the way an application would.
const send: { [Event in keyof ClientToServerEvents]: (socket: SoukSocket<MarketEvents>) => Promise<void> } = {
  "listing:watch": async (s) => {
    const reply = await s.emitWithAck("listing:watch", { listingId: "l1" });
    if (reply.ok) {
      const auction = reply.listing.auction;
      console.log(reply.listing.title, auction?.currentAmount ?? reply.listing.price);
    } else if (reply.error.code === "forbidden") {
      console.log("a private listing");
    }
  },
  "listing:unwatch": async (s) => {
    failed("listing:unwatch", await s.emitWithAck("listing:unwatch", { listingId: "l1" }));
  },
  "listing:reserve": async (s) => {
    const reply = await s.emitWithAck("listing:reserve", {
      listingId: "l1",
      idempotencyKey: crypto.randomUUID(),
    });
    if (reply.ok) {
      const booking: Booking = reply.booking;
      console.log(`booking ${booking.id} is ${booking.status}`);
    } else if (reply.error.code === "unavailable") {
      console.log("someone else was quicker");
    }
  },
  "bid:place": async (s) => {
    const reply = await s.emitWithAck("bid:place", { listingId: "a1", amount: 80000 });
    if (reply.ok) {
      const state: AuctionState = reply.auction;
      console.log(`you lead with ${reply.bid.amount} until ${state.endsAt}`);
    } else if (reply.error.code === "bid_too_low") {
      console.log(`bid at least ${reply.error.minAmount}`);
    } else if (reply.error.code === "rate_limited") {
      console.log(`retry in ${reply.error.retryAfterMs} ms`);
    }
  },
  "booking:join": async (s) => {
    const reply = await s.emitWithAck("booking:join", { bookingId: "b1" });
    if (reply.ok) {
      console.log(`${reply.unread} unread after ${reply.lastReadMessageId ?? "nothing"}`);
    }
  },
  "booking:leave": async (s) => {
    failed("booking:leave", await s.emitWithAck("booking:leave", { bookingId: "b1" }));
  },
  "booking:transition": async (s) => {
    const reply = await s.emitWithAck("booking:transition", { bookingId: "b1", to: "confirmed" });
    if (!reply.ok && reply.error.code === "invalid_transition") {
      console.log(reply.error.message);
    }
  },
  "message:send": async (s) => {
    // With a time limit: socket.io-client then passes an error first.
    s.timeout(5000).emit(
      "message:send",
      { bookingId: "b1", body: "Is it still available?", clientMsgId: crypto.randomUUID() },
      (err, reply) => {
        if (err) {
          console.log("no answer in 5 s: send again with the same clientMsgId");
        } else if (reply.ok) {
          console.log(`sent at ${reply.message.createdAt}`);
        }
      },
    );
  },
  "message:history": async (s) => {
    const reply = await s.emitWithAck("message:history", { bookingId: "b1", limit: 50 });
    if (reply.ok && reply.hasMore) {
      const oldest = reply.messages[0];
      await s.emitWithAck("message:history", { bookingId: "b1", beforeId: oldest?.id });
    }
  },
  "typing:start": async (s) => {
    const reply = await s.emitWithAck("typing:start", { bookingId: "b1" });
    if (reply.ok && reply.throttled) {
      console.log("already said a moment ago");
    }
  },
  "typing:stop": async (s) => {
    // Fire and forget: the ack is required by the types, and ignored.
    s.emit("typing:stop", { bookingId: "b1" }, () => {});
  },
  "read:mark": async (s) => {
    const reply = await s.emitWithAck("read:mark", { bookingId: "b1", messageId: "m9" });
    if (reply.ok) {
      console.log(`read up to ${reply.receipt.messageId} at ${reply.receipt.readAt}`);
    }
  },
  "presence:watch": async (s) => {
    const reply = await s.emitWithAck("presence:watch", { userIds: ["sella", "bob"] });
    if (reply.ok) {
      for (const [user, state] of Object.entries(reply.presence)) {
        console.log(user, state.online ? "online" : `last seen ${state.lastSeen ?? "never"}`);
      }
    }
  },
  "presence:unwatch": async (s) => {
    failed("presence:unwatch", await s.emitWithAck("presence:unwatch", { userIds: ["bob"] }));
  },
  "auth:refresh": async (s) => {
    const reply = await s.emitWithAck("auth:refresh", { token: "<a fresh JWT>" });
    if (reply.ok) {
      console.log(`token good until ${reply.expiresAt}`);
    }
  },
  "admin:watch": async (s) => {
    const reply = await s.emitWithAck("admin:watch", {});
    if (reply.ok) {
      console.log(`${reply.disputes.length} open disputes`, reply.disputes.map((b) => b.id));
    } else if (reply.error.code === "forbidden") {
      console.log("admins only");
    }
  },
  "admin:unwatch": async (s) => {
    failed("admin:unwatch", await s.emitWithAck("admin:unwatch", {}));
  },
};

// Every server event (§6), plus the marketplace's own.
const handle: SoukServerEvents & MarketEvents = {
  "listing:updated": ({ listing }, offset) => console.log(listing.title, offset),
  "listing:priceChanged": (p) => console.log(`${p.previousPrice} → ${p.price} ${p.currency}`),
  "listing:availabilityChanged": (p) => console.log(p.listingId, p.availability),
  "bid:new": (p) => console.log(`${p.bidderId} bid ${p.amount}; ends ${p.endsAt}`),
  "bid:outbid": (p) => console.log(`your ${p.yourAmount} was beaten by ${p.amount}`),
  "auction:extended": (p) => console.log(`now ends ${p.endsAt}`),
  "auction:closed": (p) =>
    console.log(p.winnerId === null ? "no sale" : `${p.winnerId} won at ${p.amount}`, p.reserveMet),
  "booking:created": ({ booking }) => console.log(`new booking ${booking.id}`),
  "booking:statusChanged": (p) => console.log(`${p.previousStatus} → ${p.status} by ${p.by}`),
  "message:new": ({ message }) => console.log(`${message.senderId}: ${message.body}`),
  "booking:activity": (p) => console.log(`new message in ${p.bookingId}`),
  typing: (p) => console.log(p.userId, p.typing ? "is typing" : "stopped"),
  "read:updated": (p) => console.log(`${p.userId} read ${p.messageId}`),
  "presence:changed": (p) => console.log(p.userId, p.online, p.lastSeen),
  notification: ({ kind, data }) => console.log(kind, JSON.stringify(data)),
  "dispute:changed": ({ booking, previousStatus, by }) =>
    console.log(`${booking.id}: ${previousStatus} → ${booking.status} by ${by}`),
  "room:left": ({ room, reason }) =>
    console.log(`left ${room}: ${reason === "listing_private" ? "the listing is private now" : "new token"}`),
  "server:error": ({ code, message, event }) => console.warn(`${event ?? "frame"}: ${code} ${message}`),
  "deal:flash": (p, offset) => console.log(`flash deal on ${p.listingId} until ${p.until}`, offset),
};

socket.on("listing:updated", handle["listing:updated"]);
socket.on("listing:priceChanged", handle["listing:priceChanged"]);
socket.on("listing:availabilityChanged", handle["listing:availabilityChanged"]);
socket.on("bid:new", handle["bid:new"]);
socket.on("bid:outbid", handle["bid:outbid"]);
socket.on("auction:extended", handle["auction:extended"]);
socket.on("auction:closed", handle["auction:closed"]);
socket.on("booking:created", handle["booking:created"]);
socket.on("booking:statusChanged", handle["booking:statusChanged"]);
socket.on("message:new", handle["message:new"]);
socket.on("booking:activity", handle["booking:activity"]);
socket.on("typing", handle.typing);
socket.on("read:updated", handle["read:updated"]);
socket.on("presence:changed", handle["presence:changed"]);
socket.on("notification", handle.notification);
socket.on("dispute:changed", handle["dispute:changed"]);
socket.on("room:left", handle["room:left"]);
socket.on("server:error", handle["server:error"]);
socket.on("deal:flash", handle["deal:flash"]);

socket.on("connect", async () => {
  for (const run of Object.values(send)) {
    await run(socket);
  }
});

// §8a: the web front's reads over HTTP, with the user's own token.
async function myBookings(): Promise<MyBookingsPage> {
  const response = await fetch(`${url}/api/v1/me/bookings?as=seller`, {
    headers: { authorization: `Bearer ${token}` },
  });
  return (await response.json()) as MyBookingsPage;
}
async function browse(cursor: string | null): Promise<ListingsPage> {
  const query = cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`;
  const response = await fetch(`${url}/api/v1/listings?availability=available${query}`);
  return (await response.json()) as ListingsPage;
}
void myBookings().then((page) =>
  page.bookings.forEach((row) => console.log(row.listing.title, row.unread, row.lastMessage?.body)),
);
void browse(null).then((page) => console.log(page.listings.length, page.nextCursor));

// What the types refuse.
// @ts-expect-error: not an event of the contract
socket.emit("listing:buy", { listingId: "l1" }, () => {});
// @ts-expect-error: amounts are integers in minor units, not strings
socket.emit("bid:place", { listingId: "a1", amount: "800.00" }, () => {});
// @ts-expect-error: not a booking status
socket.emit("booking:transition", { bookingId: "b1", to: "shipped" }, () => {});
// @ts-expect-error: `bid:new` carries no `price`
socket.on("bid:new", (p) => console.log(p.price));
socket.emit("bid:place", { listingId: "a1", amount: 1 }, (reply) => {
  // @ts-expect-error: minAmount is there only once the code says bid_too_low
  if (!reply.ok) console.log(reply.error.minAmount);
});
const joined = await socket.emitWithAck("booking:join", { bookingId: "b1" });
if (joined.ok) {
  // @ts-expect-error: emitWithAck's answer is typed: there is no unreadCount
  console.log(joined.unreadCount);
}
