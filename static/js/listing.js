// listing.js: one listing, live: price, availability, and for an auction
// the current bid, a countdown that follows extensions, and a bid box that
// shows the server's refusal inline (bid_too_low says the minimum).
import { connect, request, session } from "./souk.js";
import { mountHeader } from "./header.js";
import { $, money, countdown, showError, newKey, param, toMinor } from "./ui.js";
import { applyListingEvent, auctionOpen, onListingEvents } from "./listing-model.js";

const me = await mountHeader({ fallback: "ana" });
const listingId = param("id");
let listing = null;

function draw() {
  $("#listing").hidden = false;
  $("#title").textContent = listing.title;
  $("#seller").textContent = listing.sellerId;
  $("#availability").textContent = listing.availability;
  $("#availability").className = `badge ${listing.availability}`;
  $("#price").textContent = money(listing.price, listing.currency);
  const mine = listing.sellerId === session()?.sub;
  $("#buy").hidden = Boolean(listing.auction) || mine;
  $("#reserve").disabled = listing.availability !== "available";
  drawAuction(mine);
}

function drawAuction(mine) {
  const a = listing.auction;
  $("#auction").hidden = !a;
  if (!a) return;
  const open = auctionOpen(a);
  const status = a.status === "closed" || !open && Date.parse(a.endsAt) <= Date.now() ? "closed" : a.status;
  $("#auction-status").textContent = status;
  $("#auction-status").className = `badge ${status}`;
  $("#current-bid").textContent = money(a.currentAmount, listing.currency);
  $("#leader").textContent = a.leaderId ?? "no bids yet";
  $("#bid-count").textContent = String(a.bidCount);
  $("#ends-in").dataset.endsAt = a.endsAt;
  $("#ends-in").textContent = countdown(a.endsAt);
  $("#min-bid").textContent = money(nextMinimum(a), listing.currency);
  $("#auction-rules").textContent =
    `Bids within ${a.extendWindowSecs} s of the end move the end to ${a.extendWindowSecs} s from then.` +
    (a.reservePrice != null ? ` Reserve: ${money(a.reservePrice, listing.currency)} (you see it as seller or admin).` : "");
  $("#bid-form").hidden = mine || status === "closed";
}

function nextMinimum(a) {
  return a.currentAmount == null ? a.startPrice : a.currentAmount + a.minIncrement;
}

async function watch(socket) {
  const reply = await request(socket, "listing:watch", { listingId });
  if (!reply.ok) return showError($("#listing-error"), reply.error);
  showError($("#listing-error"), null);
  listing = reply.listing;
  draw();
}

if (me && listingId) {
  const socket = connect({ onFresh: watch });

  onListingEvents(socket, (id, event, data) => {
    if (id !== listingId || !listing) return;
    applyListingEvent(listing, event, data);
    if (event === "auction:extended") $("#extended").hidden = false;
    if (event === "auction:closed") {
      $("#closed-result").hidden = false;
      $("#closed-result").textContent = data.winnerId
        ? `Sold to ${data.winnerId} for ${money(data.amount, listing.currency)}.`
        : `Closed without a winner${data.amount != null ? ` (highest bid ${money(data.amount, listing.currency)} missed the reserve)` : ""}.`;
    }
    draw();
  });

  socket.on("bid:outbid", (data) => {
    if (data.listingId !== listingId) return;
    $("#outbid").hidden = false;
    $("#outbid").textContent = `You were outbid: ${money(data.amount, listing?.currency)} beats your ${money(data.yourAmount, listing?.currency)}.`;
  });

  $("#reserve").addEventListener("click", async () => {
    $("#reserve").disabled = true;
    const reply = await request(socket, "listing:reserve", { listingId, idempotencyKey: newKey("reserve") });
    showError($("#reserve-error"), reply.ok ? null : reply.error);
    if (reply.ok) {
      $("#reserved").hidden = false;
      $("#booking-link").href = `booking.html?id=${encodeURIComponent(reply.booking.id)}`;
    }
  });

  $("#bid-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const amount = toMinor($("#bid-amount").value);
    $("#bid-ok").hidden = true;
    const reply = await request(socket, "bid:place", { listingId, amount, idempotencyKey: newKey("bid") });
    showError($("#bid-error"), reply.ok ? null : reply.error);
    if (reply.ok) {
      $("#bid-ok").hidden = false;
      $("#bid-ok").textContent = `Your bid of ${money(reply.bid.amount, listing.currency)} leads.`;
      $("#outbid").hidden = true;
      $("#bid-amount").value = "";
    }
  });

  setInterval(() => listing?.auction && drawAuction(listing.sellerId === session()?.sub), 1000);
} else if (!listingId) {
  showError($("#listing-error"), { code: "bad_request", message: "no listing id in the address (?id=…)" });
}
