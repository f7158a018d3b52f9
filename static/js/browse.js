// browse.js: the public listings (GET /api/v1/listings, §8a), as live cards.
import { connect, readAll } from "./souk.js";
import { mountHeader } from "./header.js";
import { showError } from "./ui.js";
import { applyListingEvent, onListingEvents } from "./listing-model.js";
import { listingCard, tickCountdowns, watchCards } from "./listing-card.js";

const me = await mountHeader({ fallback: "ana" });
const grid = document.querySelector("#listings");
const problem = document.querySelector("#browse-error");
const shown = new Map(); // listing id -> { listing, card }

async function load(socket) {
  showError(problem, null);
  let listings;
  try {
    listings = await readAll("/api/v1/listings", "listings");
  } catch (error) {
    return showError(problem, error);
  }
  shown.clear();
  grid.replaceChildren();
  for (const listing of listings) {
    const card = listingCard(listing, { href: `listing.html?id=${encodeURIComponent(listing.id)}` });
    shown.set(listing.id, { listing, card });
    grid.append(card);
  }
  showError(problem, await watchCards(socket, shown));
}

if (me) {
  const socket = connect({ onFresh: load });
  onListingEvents(socket, (id, event, data) => {
    const entry = shown.get(id);
    if (!entry) return;
    applyListingEvent(entry.listing, event, data);
    entry.card.redraw(entry.listing);
  });
  tickCountdowns();
}
