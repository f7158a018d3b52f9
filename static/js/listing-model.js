// listing-model.js: keeps a listing (§6 shape) up to date from the events
// of its room, so every page that shows listings applies them one way.

/** The listing room's events (§6) and the user-room ones about listings. */
export const LISTING_EVENTS = [
  "listing:updated",
  "listing:priceChanged",
  "listing:availabilityChanged",
  "bid:new",
  "auction:extended",
  "auction:closed",
];

/**
 * Applies one event to `listing` (mutated) and returns it. The seller and
 * admins keep the reserve price they got from listing:watch, since
 * listing:updated never carries it.
 */
export function applyListingEvent(listing, event, data) {
  switch (event) {
    case "listing:updated": {
      const reserve = listing.auction?.reservePrice;
      Object.assign(listing, data.listing);
      if (listing.auction && reserve !== undefined && listing.auction.reservePrice === undefined) {
        listing.auction.reservePrice = reserve;
      }
      break;
    }
    case "listing:priceChanged":
      listing.price = data.price;
      break;
    case "listing:availabilityChanged":
      listing.availability = data.availability;
      break;
    case "bid:new":
      if (listing.auction) {
        listing.auction.currentAmount = data.amount;
        listing.auction.leaderId = data.bidderId;
        listing.auction.bidCount += 1;
        listing.auction.endsAt = data.endsAt;
      }
      break;
    case "auction:extended":
      if (listing.auction) listing.auction.endsAt = data.endsAt;
      break;
    case "auction:closed":
      if (listing.auction) {
        listing.auction.status = "closed";
        listing.auction.winnerId = data.winnerId;
        listing.auction.reserveMet = data.reserveMet;
      }
      break;
  }
  return listing;
}

/** Whether the auction takes bids now (the countdown may have run out). */
export function auctionOpen(auction) {
  if (!auction || auction.status === "closed") return false;
  const now = Date.now();
  return Date.parse(auction.startsAt) <= now && now < Date.parse(auction.endsAt);
}

/** Routes every listing event of `socket` to `handler(listingId, event, data)`. */
export function onListingEvents(socket, handler) {
  for (const event of LISTING_EVENTS) {
    socket.on(event, (data) => handler(data.listingId ?? data.listing?.id, event, data));
  }
}
