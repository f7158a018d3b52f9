// listing-card.js: a listing as a card (browse page, seller dashboard),
// redrawn in place whenever its model changes.
import { request } from "./souk.js";
import { el, money, countdown, badge } from "./ui.js";

/** A card element for `listing`; call `card.redraw(listing)` after changes. */
export function listingCard(listing, { href } = {}) {
  const card = el("article", { class: "card", dataset: { listingId: listing.id } });
  card.redraw = (l) => {
    const a = l.auction;
    // An auction shows what it stands at (the current bid, else where it
    // starts), never the listing's price beside it.
    const shown = a ? (a.currentAmount ?? a.startPrice) : l.price;
    const label = a ? (a.currentAmount != null ? " current bid" : " starting bid") : "";
    const lines = [
      el("h3", {}, href ? el("a", { href }, l.title) : l.title),
      el(
        "p",
        { class: "price" },
        el("span", { class: "amount" }, money(shown, l.currency)),
        el("span", { class: "muted small" }, label),
        " ",
        badge(l.availability),
      ),
    ];
    if (a) {
      const closed = a.status === "closed";
      lines.push(
        el(
          "p",
          { class: "auction-line" },
          `auction · `,
          el("span", { class: "bid-count" }, `${a.bidCount} bid${a.bidCount === 1 ? "" : "s"}`),
          a.leaderId ? ` · ${a.leaderId} leads` : "",
          " · ",
          el("span", { class: "countdown", dataset: { endsAt: a.endsAt, status: a.status } }, closed ? "closed" : countdown(a.endsAt)),
          closed ? "" : " left",
        ),
      );
      if (a.reservePrice !== undefined && a.reservePrice !== null) {
        lines.push(el("p", { class: "muted" }, `reserve ${money(a.reservePrice, l.currency)}`));
      }
    }
    card.replaceChildren(...lines);
  };
  card.redraw(listing);
  return card;
}

/** Ticks every countdown on the page once a second. */
export function tickCountdowns() {
  setInterval(() => {
    for (const node of document.querySelectorAll(".countdown[data-ends-at]")) {
      if (node.dataset.status !== "closed") node.textContent = countdown(node.dataset.endsAt);
    }
  }, 1000);
}

/**
 * Watches every listing of `shown` (id -> { listing, card }), which makes
 * the cards live, and redraws each from the watch answer (the freshest
 * state; its seller and admins also get the reserve price). Resolves with
 * the first refusal, or null.
 */
export async function watchCards(socket, shown) {
  for (const [listingId, entry] of shown) {
    const reply = await request(socket, "listing:watch", { listingId });
    if (!reply.ok) return reply.error;
    Object.assign(entry.listing, reply.listing);
    entry.card.redraw(entry.listing);
  }
  return null;
}
