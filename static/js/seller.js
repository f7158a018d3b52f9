// seller.js: the seller's dashboard: my listings with their live auctions
// (GET /api/v1/me/listings), incoming bookings to confirm or decline (GET
// /api/v1/me/bookings?as=seller) with unread badges that open the thread,
// and a live feed of booking:activity and notification events, as sentences.
import { connect, readAll, request, session } from "./souk.js";
import { mountHeader } from "./header.js";
import { $, badge, clock, el, money, showError } from "./ui.js";
import { applyListingEvent, onListingEvents } from "./listing-model.js";
import { listingCard, tickCountdowns, watchCards } from "./listing-card.js";

const me = await mountHeader({ fallback: "sam" });
const listings = new Map(); // id -> { listing, card }
const bookings = new Map(); // id -> { booking, title, unread }

function feed(text, kind) {
  $("#feed").prepend(el("li", { class: kind }, el("time", {}, clock(new Date().toISOString())), " ", text));
}

function drawBookings(socket) {
  const rows = [...bookings.values()].map(({ booking, title, unread }) =>
    el(
      "tr",
      { dataset: { bookingId: booking.id } },
      el("td", {}, el("a", { href: `booking.html?id=${encodeURIComponent(booking.id)}` }, title)),
      el("td", {}, booking.buyerId),
      el("td", {}, badge(booking.status)),
      el("td", {}, unread ? unreadBadge(booking.id, unread) : ""),
      el(
        "td",
        {},
        booking.status === "requested" && booking.sellerId === session().sub
          ? [
              el("button", { "aria-label": `Confirm ${title}`, onclick: () => move(socket, booking.id, "confirmed") }, "Confirm"),
              el("button", { class: "secondary", "aria-label": `Decline ${title}`, onclick: () => move(socket, booking.id, "declined") }, "Decline"),
            ]
          : null,
      ),
    ),
  );
  $("#bookings").replaceChildren(...rows);
  const total = [...bookings.values()].reduce((sum, b) => sum + b.unread, 0);
  $("#unread-total").textContent = String(total);
}

async function move(socket, bookingId, to) {
  const reply = await request(socket, "booking:transition", { bookingId, to });
  showError($("#booking-action-error"), reply.ok ? null : reply.error);
  if (reply.ok) {
    bookings.get(bookingId).booking = reply.booking;
    drawBookings(socket);
  }
}

/** The unread count as a link into the booking's thread. */
function unreadBadge(bookingId, unread) {
  const label = `${unread} unread message${unread === 1 ? "" : "s"}: open the thread`;
  return el("a", { class: "count", href: threadUrl(bookingId), "aria-label": label, title: label }, String(unread));
}

function threadUrl(bookingId) {
  return `booking.html?id=${encodeURIComponent(bookingId)}`;
}

/** An item of GET /api/v1/me/bookings as this page keeps it. */
function bookingEntry(item) {
  return { booking: item.booking, title: item.listing?.title ?? item.booking.listingId, unread: item.unread };
}

async function loadBookings() {
  const items = await readAll("/api/v1/me/bookings?as=seller", "bookings");
  bookings.clear();
  for (const item of items) bookings.set(item.booking.id, bookingEntry(item));
}

async function load(socket) {
  try {
    const [mine] = await Promise.all([readAll("/api/v1/me/listings", "listings"), loadBookings()]);
    drawBookings(socket);
    listings.clear();
    $("#my-listings").replaceChildren();
    for (const listing of mine) {
      const card = listingCard(listing, { href: `listing.html?id=${encodeURIComponent(listing.id)}` });
      listings.set(listing.id, { listing, card });
      $("#my-listings").append(card);
    }
    showError($("#seller-error"), await watchCards(socket, listings));
  } catch (error) {
    showError($("#seller-error"), error);
  }
}

const AMOUNT_KEY = /(amount|price|total|fee|payout)$/i;

/** "payoutSent" or "payout_sent" as "payout sent". */
function words(key) {
  return String(key)
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .replace(/[_\-.:]+/g, " ")
    .toLowerCase()
    .trim();
}

/**
 * A notification (§6 `{kind, data}`, whatever the marketplace sends) as a
 * sentence: the kind in words, then its message if it has one, then its
 * other fields as "name value", amounts in minor units as money.
 */
export function notificationText({ kind, data }) {
  const head = words(kind ?? "notification");
  const sentence = [head.charAt(0).toUpperCase() + head.slice(1)];
  const fields = data && typeof data === "object" && !Array.isArray(data) ? { ...data } : { value: data };
  const message = fields.message ?? fields.text ?? fields.body;
  delete fields.message;
  delete fields.text;
  delete fields.body;
  const currency = typeof fields.currency === "string" ? fields.currency : "EUR";
  delete fields.currency;
  const parts = [];
  for (const [key, value] of Object.entries(fields)) {
    if (value === null || value === undefined) continue;
    let shown;
    if (typeof value === "number" && AMOUNT_KEY.test(key)) shown = money(value, currency);
    else if (Array.isArray(value)) shown = `${value.length} item${value.length === 1 ? "" : "s"}`;
    else if (typeof value === "object") shown = `${Object.keys(value).length} details`;
    else shown = String(value);
    parts.push(key === "value" ? shown : `${words(key)} ${shown}`);
  }
  let text = sentence[0];
  if (typeof message === "string" && message.trim()) text += `: ${message.trim()}`;
  if (parts.length) text += `${typeof message === "string" && message.trim() ? " (" : ": "}${parts.join(", ")}${typeof message === "string" && message.trim() ? ")" : ""}`;
  return /[.!?]$/.test(text) ? text : `${text}.`;
}

if (me) {
  const socket = connect({ onFresh: load });

  onListingEvents(socket, (id, event, data) => {
    const entry = listings.get(id);
    if (!entry) return;
    applyListingEvent(entry.listing, event, data);
    entry.card.redraw(entry.listing);
    if (event === "bid:new") feed(`${data.bidderId} bid ${money(data.amount, entry.listing.currency)} on ${entry.listing.title}`, "bid");
    if (event === "auction:closed") feed(`auction for ${entry.listing.title} closed${data.winnerId ? `: ${data.winnerId} won` : " without a winner"}`, "bid");
  });

  socket.on("booking:created", ({ booking }) => {
    const title = listings.get(booking.listingId)?.listing.title ?? booking.listingId;
    bookings.set(booking.id, { booking, title, unread: 0 });
    drawBookings(socket);
    feed(`${booking.buyerId} booked ${title}`, "booking");
  });

  socket.on("booking:statusChanged", (data) => {
    const entry = bookings.get(data.bookingId);
    if (!entry) return;
    entry.booking.status = data.status;
    drawBookings(socket);
    feed(`${entry.title}: ${data.previousStatus} → ${data.status} by ${data.by}`, "status");
  });

  socket.on("booking:activity", (data) => {
    const entry = bookings.get(data.bookingId);
    if (data.senderId === session().sub) return;
    if (entry) entry.unread += 1;
    drawBookings(socket);
    feed(`new message from ${data.senderId} on ${entry?.title ?? data.bookingId}`, "activity");
  });

  socket.on("notification", (n) => feed(notificationText(n), "notification"));

  // Reading a thread in another tab clears its unread count here on return.
  document.addEventListener("visibilitychange", async () => {
    if (document.visibilityState !== "visible") return;
    try {
      await loadBookings();
      drawBookings(socket);
    } catch (error) {
      showError($("#seller-error"), error);
    }
  });
  tickCountdowns();
}
