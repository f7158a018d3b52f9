// seller.js: the seller's dashboard: my listings with live bids, incoming
// bookings to confirm or decline, and a live feed of booking:activity and
// notification events with unread counts across all my bookings.
import { backend, connect, request, session } from "./souk.js";
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
      el("td", {}, unread ? el("span", { class: "count" }, String(unread)) : ""),
      el(
        "td",
        {},
        booking.status === "requested" && booking.sellerId === session().sub
          ? [
              el("button", { onclick: () => move(socket, booking.id, "confirmed") }, "Confirm"),
              el("button", { class: "secondary", onclick: () => move(socket, booking.id, "declined") }, "Decline"),
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

async function load(socket) {
  try {
    const [mine, mineBookings] = await Promise.all([backend("/dev/listings"), backend("/dev/bookings")]);
    bookings.clear();
    for (const item of mineBookings.bookings) bookings.set(item.booking.id, item);
    drawBookings(socket);
    listings.clear();
    $("#my-listings").replaceChildren();
    for (const listing of mine.listings.filter((l) => l.sellerId === session().sub)) {
      const card = listingCard(listing, { href: `listing.html?id=${encodeURIComponent(listing.id)}` });
      listings.set(listing.id, { listing, card });
      $("#my-listings").append(card);
    }
    showError($("#seller-error"), await watchCards(socket, listings));
  } catch (error) {
    showError($("#seller-error"), error);
  }
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

  socket.on("notification", (n) => feed(`notification ${n.kind}: ${JSON.stringify(n.data)}`, "notification"));

  // Reading a thread in another tab clears its unread count here on return.
  document.addEventListener("visibilitychange", async () => {
    if (document.visibilityState !== "visible") return;
    const fresh = await backend("/dev/bookings").catch(() => null);
    for (const item of fresh?.bookings ?? []) bookings.set(item.booking.id, item);
    drawBookings(socket);
  });
  tickCountdowns();
}
