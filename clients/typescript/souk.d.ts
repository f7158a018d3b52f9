// TypeScript definitions of souk's wire contract (PROTOCOL.md, v1) for
// socket.io-client (v4.6 or later):
//
//   import { io } from "socket.io-client";
//   import type { SoukSocket } from "./souk";
//   const socket: SoukSocket = io(url, { auth: { token } });
//   socket.emit("bid:place", { listingId, amount }, (reply) => {
//     if (reply.ok) console.log(reply.auction.currentAmount);
//     else if (reply.error.code === "bid_too_low") console.log(reply.error.minAmount);
//   });
//
// Checked by scripts/test with `tsc --noEmit` on example.ts, which uses
// every event. Keep this file in step with PROTOCOL.md §3-§8b.

import type { Socket } from "socket.io-client";

// ------------------------------------------------------------ scalars (§2)

/** An id (user, listing, booking, message): 1-64 characters of `[A-Za-z0-9_-]`. */
export type Id = string;
/** A user id (a token's `sub`). */
export type UserId = Id;
export type ListingId = Id;
export type BookingId = Id;
export type MessageId = Id;
/** An RFC 3339 UTC time with milliseconds, e.g. `2026-12-03T08:00:00.000Z`. */
export type Timestamp = string;
/** An amount in minor units (cents), 0 to 10^12. */
export type Amount = number;
/** A room event's offset: a string, increasing within the room (§4). */
export type Offset = string;
/** Any JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

// ------------------------------------------------------------ shapes (§6)

export type Visibility = "public" | "private";
export type Availability = "available" | "reserved" | "sold" | "withdrawn";
export type AuctionStatus = "scheduled" | "open" | "closed";
/** §7: requested → confirmed | declined | cancelled; confirmed → completed |
 * cancelled | disputed; completed → disputed; disputed → resolved. */
export type BookingStatus =
  | "requested"
  | "confirmed"
  | "declined"
  | "cancelled"
  | "completed"
  | "disputed"
  | "resolved";
/** Roles a token's `role` claim may carry; `service` is for the server API only. */
export type Role = "buyer" | "seller" | "admin" | "service";

export interface Auction {
  startsAt: Timestamp;
  endsAt: Timestamp;
  startPrice: Amount;
  minIncrement: Amount;
  /** Shown only to the listing's seller and admins. */
  reservePrice?: Amount;
  extendWindowSecs: number;
  status: AuctionStatus;
  /** Null before the first bid. */
  currentAmount: Amount | null;
  leaderId: UserId | null;
  bidCount: number;
  version: number;
}

export interface Listing {
  id: ListingId;
  sellerId: UserId;
  title: string;
  price: Amount;
  currency: string;
  visibility: Visibility;
  availability: Availability;
  auction: Auction | null;
  version: number;
  updatedAt: Timestamp;
}

export interface Booking {
  id: BookingId;
  listingId: ListingId;
  buyerId: UserId;
  sellerId: UserId;
  status: BookingStatus;
  createdAt: Timestamp;
  updatedAt: Timestamp;
}

export interface Message {
  id: MessageId;
  bookingId: BookingId;
  senderId: UserId;
  body: string;
  clientMsgId: string;
  createdAt: Timestamp;
}

export interface Bid {
  id: string;
  listingId: ListingId;
  bidderId: UserId;
  amount: Amount;
  version: number;
  endsAt: Timestamp;
}

/** The live auction state a `bid:place` ack carries. */
export interface AuctionState {
  status: AuctionStatus;
  endsAt: Timestamp;
  currentAmount: Amount;
  leaderId: UserId;
  bidCount: number;
  version: number;
}

export interface ReadReceipt {
  bookingId: BookingId;
  userId: UserId;
  messageId: MessageId;
  readAt: Timestamp;
}

export interface PresenceState {
  online: boolean;
  /** Null when the user was never seen. */
  lastSeen: Timestamp | null;
}

// ------------------------------------------------------------ acks and errors (§3)

/** Every error code of the contract. */
export type ErrorCode =
  | "bad_request"
  | "unauthorized"
  | "forbidden"
  | "not_found"
  | "conflict"
  | "rate_limited"
  | "unavailable"
  | "auction_closed"
  | "bid_too_low"
  | "invalid_transition"
  | "unsupported"
  | "service_unavailable"
  | "internal";

/** An error as acks, `server:error` and the HTTP APIs carry it; the codes
 * with extra fields narrow on `code`. */
export type SoukError =
  | { code: "rate_limited"; message: string; retryAfterMs: number }
  | { code: "bid_too_low"; message: string; minAmount: Amount }
  | { code: Exclude<ErrorCode, "rate_limited" | "bid_too_low">; message: string };

/** The one answer to an event sent with an ack: `{ok: true, …T}` or
 * `{ok: false, error}`. */
export type Ack<T extends object = {}> = ({ ok: true } & T) | { ok: false; error: SoukError };

/** An ack callback for an event whose success carries `T`. */
export type AckCallback<T extends object = {}> = (reply: Ack<T>) => void;

/** Why a CONNECT was refused (`connect_error`'s `data.code`, §2). */
export type ConnectErrorCode = "missing_token" | "invalid_token" | "token_expired";

/** socket.io-client's `connect_error` as souk sends it (`err.data`). */
export interface ConnectErrorData {
  code: ConnectErrorCode;
}

/** The CONNECT payload (socket.io-client's `auth`); `pid`/`offset` are
 * added by socket.io-client itself when it recovers a session (§10). */
export interface ConnectAuth {
  token: string;
}

// ------------------------------------------------------------ client → server (§5)

export interface ListingWatch {
  listingId: ListingId;
}
export interface ListingUnwatch {
  listingId: ListingId;
}
export interface ListingReserve {
  listingId: ListingId;
  idempotencyKey: string;
}
export interface BidPlace {
  listingId: ListingId;
  amount: Amount;
  idempotencyKey?: string;
}
export interface BookingJoin {
  bookingId: BookingId;
}
export interface BookingLeave {
  bookingId: BookingId;
}
export interface BookingTransition {
  bookingId: BookingId;
  to: BookingStatus;
}
export interface MessageSend {
  bookingId: BookingId;
  /** 1-4000 characters, not only white space. */
  body: string;
  clientMsgId: string;
}
export interface MessageHistory {
  bookingId: BookingId;
  beforeId?: MessageId;
  /** 1-200, default 50. */
  limit?: number;
}
export interface TypingStart {
  bookingId: BookingId;
}
export interface TypingStop {
  bookingId: BookingId;
}
export interface ReadMark {
  bookingId: BookingId;
  messageId: MessageId;
}
export interface PresenceWatch {
  /** 1-100 user ids. */
  userIds: UserId[];
}
export interface PresenceUnwatch {
  userIds: UserId[];
}
export interface AuthRefresh {
  token: string;
}
/** `admin:watch` and `admin:unwatch` take an empty object. */
export type Empty = Record<string, never>;

// What each event's ack carries on success (besides `ok: true`).
export interface ListingWatchReply {
  listing: Listing;
}
export interface ListingReserveReply {
  booking: Booking;
}
export interface BidPlaceReply {
  bid: Bid;
  auction: AuctionState;
}
export interface BookingJoinReply {
  booking: Booking;
  unread: number;
  lastReadMessageId: MessageId | null;
}
export interface BookingTransitionReply {
  booking: Booking;
}
export interface MessageSendReply {
  message: Message;
}
export interface MessageHistoryReply {
  /** Oldest first. */
  messages: Message[];
  hasMore: boolean;
}
export interface TypingStartReply {
  /** True when this start was not broadcast (at most one per 3 s). */
  throttled: boolean;
}
export interface ReadMarkReply {
  receipt: ReadReceipt;
}
export interface PresenceWatchReply {
  presence: Record<UserId, PresenceState>;
}
export interface AuthRefreshReply {
  expiresAt: Timestamp;
}
export interface AdminWatchReply {
  /** The open disputes, oldest first, at most 200. */
  disputes: Booking[];
}

/** Every event a client may send. The contract makes the ack optional (a
 * failure without one comes back as `server:error`), but here it is a
 * required parameter: socket.io-client's `emitWithAck` types its answer only
 * when the ack is the last required parameter. Pass `() => {}` to ignore it. */
export interface ClientToServerEvents {
  "listing:watch": (payload: ListingWatch, ack: AckCallback<ListingWatchReply>) => void;
  "listing:unwatch": (payload: ListingUnwatch, ack: AckCallback) => void;
  "listing:reserve": (payload: ListingReserve, ack: AckCallback<ListingReserveReply>) => void;
  "bid:place": (payload: BidPlace, ack: AckCallback<BidPlaceReply>) => void;
  "booking:join": (payload: BookingJoin, ack: AckCallback<BookingJoinReply>) => void;
  "booking:leave": (payload: BookingLeave, ack: AckCallback) => void;
  "booking:transition": (
    payload: BookingTransition,
    ack: AckCallback<BookingTransitionReply>,
  ) => void;
  "message:send": (payload: MessageSend, ack: AckCallback<MessageSendReply>) => void;
  "message:history": (payload: MessageHistory, ack: AckCallback<MessageHistoryReply>) => void;
  "typing:start": (payload: TypingStart, ack: AckCallback<TypingStartReply>) => void;
  "typing:stop": (payload: TypingStop, ack: AckCallback) => void;
  "read:mark": (payload: ReadMark, ack: AckCallback<ReadMarkReply>) => void;
  "presence:watch": (payload: PresenceWatch, ack: AckCallback<PresenceWatchReply>) => void;
  "presence:unwatch": (payload: PresenceUnwatch, ack: AckCallback) => void;
  "auth:refresh": (payload: AuthRefresh, ack: AckCallback<AuthRefreshReply>) => void;
  "admin:watch": (payload: Empty, ack: AckCallback<AdminWatchReply>) => void;
  "admin:unwatch": (payload: Empty, ack: AckCallback) => void;
}

// ------------------------------------------------------------ server → client (§6)

export interface ListingUpdated {
  listing: Listing;
}
export interface ListingPriceChanged {
  listingId: ListingId;
  price: Amount;
  previousPrice: Amount;
  currency: string;
  version: number;
}
export interface ListingAvailabilityChanged {
  listingId: ListingId;
  availability: Availability;
}
export interface BidNew {
  listingId: ListingId;
  bidId: string;
  amount: Amount;
  bidderId: UserId;
  version: number;
  endsAt: Timestamp;
}
export interface BidOutbid {
  listingId: ListingId;
  /** The new leading amount. */
  amount: Amount;
  /** The amount of yours it beat. */
  yourAmount: Amount;
}
export interface AuctionExtended {
  listingId: ListingId;
  endsAt: Timestamp;
}
export interface AuctionClosed {
  listingId: ListingId;
  /** Null when no bid met the reserve. */
  winnerId: UserId | null;
  amount: Amount | null;
  reserveMet: boolean;
}
export interface BookingCreated {
  booking: Booking;
}
export interface BookingStatusChanged {
  bookingId: BookingId;
  status: BookingStatus;
  previousStatus: BookingStatus;
  /** Who moved it: a user id, or the server API's `by`. */
  by: UserId;
}
export interface MessageNew {
  message: Message;
}
export interface BookingActivity {
  bookingId: BookingId;
  messageId: MessageId;
  senderId: UserId;
}
export interface Typing {
  bookingId: BookingId;
  userId: UserId;
  typing: boolean;
}
export type ReadUpdated = ReadReceipt;
export interface PresenceChanged extends PresenceState {
  userId: UserId;
}
/** From the server API or the backend's queue (§8, §8b): `kind` and `data`
 * are the marketplace's own. */
export interface Notification<Data = Json> {
  kind: string;
  data: Data;
}
export interface DisputeChanged {
  /** The booking after the move (status `disputed`, or where it left it). */
  booking: Booking;
  previousStatus: BookingStatus;
  by: UserId;
}
export interface ServerError {
  code: ErrorCode;
  message: string;
  /** The event that failed, or null for a frame that did not parse. */
  event: string | null;
}
/** Why the server took a socket out of a room it had joined. */
export type RoomLeftReason =
  /** `auth:refresh` brought a token that may no longer be in the room. */
  | "reauthorized"
  /** The listing became private and the caller may not watch it any more. */
  | "listing_private";
export interface RoomLeft {
  /** The room's name, e.g. `listing:l1`, `booking:b1`, `admin:disputes`. */
  room: string;
  reason: RoomLeftReason;
}

/** Every event the server sends. Room events carry their offset as the
 * last argument (§4); `server:error` and `room:left` go to one socket and
 * carry none. */
export interface SoukServerEvents {
  "listing:updated": (payload: ListingUpdated, offset: Offset) => void;
  "listing:priceChanged": (payload: ListingPriceChanged, offset: Offset) => void;
  "listing:availabilityChanged": (payload: ListingAvailabilityChanged, offset: Offset) => void;
  "bid:new": (payload: BidNew, offset: Offset) => void;
  "bid:outbid": (payload: BidOutbid, offset: Offset) => void;
  "auction:extended": (payload: AuctionExtended, offset: Offset) => void;
  "auction:closed": (payload: AuctionClosed, offset: Offset) => void;
  "booking:created": (payload: BookingCreated, offset: Offset) => void;
  "booking:statusChanged": (payload: BookingStatusChanged, offset: Offset) => void;
  "message:new": (payload: MessageNew, offset: Offset) => void;
  "booking:activity": (payload: BookingActivity, offset: Offset) => void;
  typing: (payload: Typing, offset: Offset) => void;
  "read:updated": (payload: ReadUpdated, offset: Offset) => void;
  "presence:changed": (payload: PresenceChanged, offset: Offset) => void;
  notification: (payload: Notification, offset: Offset) => void;
  "dispute:changed": (payload: DisputeChanged, offset: Offset) => void;
  "room:left": (payload: RoomLeft) => void;
  "server:error": (payload: ServerError) => void;
}

/** The marketplace's own room events (sent with `POST
 * /api/v1/rooms/{room}/events` or the backend's queue, §8b) are declared
 * by the application: `ServerToClientEvents<{ "deal:flash": (p: Flash,
 * offset: Offset) => void }>`. */
export type ServerToClientEvents<Custom extends object = {}> = SoukServerEvents & Custom;

/** socket.io-client's Socket, typed with souk's events. */
export type SoukSocket<Custom extends object = {}> = Socket<
  ServerToClientEvents<Custom>,
  ClientToServerEvents
>;

// ------------------------------------------------------------ rooms (§4)

export type RoomName =
  | `listing:${ListingId}`
  | `booking:${BookingId}`
  | `user:${UserId}`
  | `presence:${UserId}`
  | "admin:disputes";

// ------------------------------------------------------------ user reads over HTTP (§8a)

/** A page of a §8a list; `nextCursor` is null on the last page. */
export interface Page {
  nextCursor: string | null;
}
/** `GET /api/v1/me/bookings?as=buyer|seller&status=`. */
export interface MyBookingsPage extends Page {
  bookings: Array<{
    booking: Booking;
    listing: Pick<Listing, "id" | "title" | "price" | "currency">;
    unread: number;
    lastMessage: Message | null;
  }>;
}
/** `GET /api/v1/me/listings?availability=` (with reserve prices) and
 * `GET /api/v1/listings?availability=available` (without). */
export interface ListingsPage extends Page {
  listings: Listing[];
}
/** `GET /api/v1/admin/bookings?status=` (admins). */
export interface AdminBookingsPage extends Page {
  bookings: Booking[];
}
/** `GET /api/v1/admin/bookings/{id}/audit` (admins). */
export interface AuditTrail {
  entries: Array<{ at: Timestamp; actorId: UserId; action: string; detail: Json }>;
}
/** `GET /api/v1/admin/cluster` (admins), as `GET /api/v1/cluster`. */
export interface ClusterView {
  nodes: Array<{
    nodeId: string;
    address: string;
    connections: number;
    rooms: number;
    startedAt: Timestamp;
    updatedAt: Timestamp;
  }>;
}
/** The body of an HTTP error from §8 and §8a. */
export interface HttpErrorBody {
  error: SoukError;
}

// ------------------------------------------------------------ the backend's queue (§8b)

/** The fields of an entry the backend appends with `XADD <prefix>{ingest}`. */
export type IngestEntry =
  | {
      kind: "room_event";
      /** `listing:{id}`, `booking:{id}` or `user:{id}`. */
      target: `listing:${ListingId}` | `booking:${BookingId}` | `user:${UserId}`;
      /** Not a client event of §5, nor `server:error`. */
      event: string;
      /** The payload, as a JSON document. */
      data: string;
      /** Idempotency key: 1-64 characters of the id alphabet. */
      id: string;
    }
  | {
      kind: "notification";
      /** A user id. */
      target: UserId;
      /** `{kind, data}` of the notification, as a JSON document. */
      data: string;
      id: string;
    };
