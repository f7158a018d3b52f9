// listing.js: one listing, live: price, availability, and for an auction
// the current bid where the price would be, the bids seen live (amount,
// bidder, time), a countdown that follows extensions, and a bid box that
// shows the server's refusal inline (bid_too_low says the minimum). A
// status line that the next event makes false ("your bid leads" once
// someone outbids it) goes away with that event.
import { connect, request, session } from "./souk.js";
import { mountHeader } from "./header.js";
import { $, el, money, countdown, showError, newKey, param, toMinor } from "./ui.js";
import { applyListingEvent, auctionOpen, onListingEvents } from "./listing-model.js";

const me = await mountHeader({ fallback: "ana" });
const listingId = param("id");
let listing = null;
/** The bids seen since the page opened, newest first: { bidId, amount, bidderId, at }. */
const bids = [];

function draw() {
  $("#listing").hidden = false;
  $("#title").textContent = listing.title;
  $("#seller").textContent = listing.sellerId;
  $("#availability").textContent = listing.availability;
  $("#availability").className = `badge ${listing.availability}`;
  const a = listing.auction;
  // An auction is at its current bid (or where it starts): that is the
  // figure people look at, so it takes the price's place.
  $("#price").hidden = Boolean(a);
  $("#current-bid").hidden = !a;
  $("#price").textContent = money(listing.price, listing.currency);
  if (a) $("#current-bid").textContent = money(a.currentAmount ?? a.startPrice, listing.currency);
  $("#price-label").textContent = a ? (a.currentAmount != null ? "current bid" : "starting bid") : "";
  $("#bid-currency").textContent = listing.currency;
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
  $("#leader").textContent = a.leaderId ?? "no bids yet";
  $("#bid-count").textContent = String(a.bidCount);
  $("#ends-in").dataset.endsAt = a.endsAt;
  $("#ends-in").textContent = countdown(a.endsAt);
  $("#min-bid").textContent = money(nextMinimum(a), listing.currency);
  $("#auction-rules").textContent =
    `Bids within ${a.extendWindowSecs} s of the end move the end to ${a.extendWindowSecs} s from then.` +
    (a.reservePrice != null ? ` Reserve: ${money(a.reservePrice, listing.currency)} (you see it as seller or admin).` : "");
  $("#bid-form").hidden = mine || status === "closed";
  drawBids();
}

function drawBids() {
  const a = listing.auction;
  $("#bid-history").replaceChildren(
    ...bids.map((b) =>
      el(
        "li",
        { class: "bid", dataset: { bidId: b.bidId, bidder: b.bidderId } },
        el("span", { class: "amount" }, money(b.amount, listing.currency)),
        " by ",
        el("span", { class: "bidder" }, b.bidderId === session()?.sub ? `${b.bidderId} (you)` : b.bidderId),
        " at ",
        el("time", { datetime: b.at }, new Date(b.at).toLocaleTimeString()),
      ),
    ),
  );
  // Numbered as placed: the newest, on top, is bid number bidCount.
  $("#bid-history").start = Math.max(a?.bidCount ?? 0, bids.length);
  const earlier = Math.max(0, (a?.bidCount ?? 0) - bids.length);
  $("#earlier-bids").hidden = earlier === 0;
  $("#earlier-bids").textContent = `${earlier} earlier bid${earlier === 1 ? "" : "s"}, placed before this page opened${
    a?.currentAmount != null && bids.length === 0 ? `; the highest is ${money(a.currentAmount, listing.currency)} by ${a.leaderId}` : ""
  }.`;
  $("#no-bids").hidden = (a?.bidCount ?? 0) > 0 || bids.length > 0;
}

/** Hides the status lines the latest bid made false. */
function retireStatus(data) {
  const me = session()?.sub;
  if (data.bidderId !== me) $("#bid-ok").hidden = true; // someone else leads now
  else $("#outbid").hidden = true; // I lead again (maybe from another tab)
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
    if (event === "bid:new") {
      if (!bids.some((b) => b.bidId === data.bidId)) {
        bids.unshift({ bidId: data.bidId, amount: data.amount, bidderId: data.bidderId, at: new Date().toISOString() });
      }
      retireStatus(data);
    }
    if (event === "auction:closed") {
      $("#bid-ok").hidden = true;
      $("#outbid").hidden = true;
    }
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
    $("#bid-ok").hidden = true;
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
    // A later bid by someone else may have come in before this answer.
    const current = listing.auction?.currentAmount;
    if (reply.ok && (current == null || reply.bid.amount >= current)) {
      $("#bid-ok").hidden = false;
      $("#bid-ok").textContent = `Your bid of ${money(reply.bid.amount, listing.currency)} leads.`;
      $("#outbid").hidden = true;
    }
    if (reply.ok) {
      $("#bid-amount").value = "";
    }
  });

  setInterval(() => listing?.auction && drawAuction(listing.sellerId === session()?.sub), 1000);
} else if (!listingId) {
  showError($("#listing-error"), { code: "bad_request", message: "no listing id in the address (?id=…)" });
}
