// booking.js: a booking's thread: chat with read ticks, the typing
// indicator, the other party's presence, older messages on scroll-up, and
// the §7 moves the signed-in user may make. Admins join too (audited).
import { read, readAll, connect, request, session } from "./souk.js";
import { mountHeader } from "./header.js";
import { $, badge, el, param, showError } from "./ui.js";
import { presenceDot, watchPresence } from "./presence.js";
import { createThread } from "./thread.js";

const me = await mountHeader({ fallback: "ben" });
const bookingId = param("id");
let booking = null;

/** The moves §7 lets this user make from the current status. */
function movesFor(user, b) {
  if (!user) return [];
  if (user.role === "admin" && user.sub !== b.buyerId && user.sub !== b.sellerId) {
    return b.status === "disputed" ? [["resolved", "Resolve dispute"]] : [];
  }
  const buyer = user.sub === b.buyerId;
  switch (b.status) {
    case "requested":
      return buyer ? [["cancelled", "Cancel request"]] : [["confirmed", "Confirm"], ["declined", "Decline"]];
    case "confirmed":
      return [["cancelled", "Cancel"], ["disputed", "Open dispute"]];
    case "completed":
      return [["disputed", "Open dispute"]];
    default:
      return [];
  }
}

function drawBooking(socket) {
  $("#booking").hidden = false;
  $("#status").replaceWith(Object.assign(badge(booking.status), { id: "status" }));
  $("#buyer").replaceChildren(presenceDot(booking.buyerId), booking.buyerId);
  $("#seller").replaceChildren(presenceDot(booking.sellerId), booking.sellerId);
  $("#actions").replaceChildren(
    ...movesFor(session(), booking).map(([to, label]) =>
      el("button", { dataset: { to }, onclick: () => move(socket, to) }, label),
    ),
  );
}

async function move(socket, to) {
  const reply = await request(socket, "booking:transition", { bookingId, to });
  showError($("#action-error"), reply.ok ? null : reply.error);
  if (reply.ok) {
    booking = reply.booking;
    drawBooking(socket);
  }
}

/** The listing title of one of the caller's own bookings, or null. */
async function titleOf(id) {
  try {
    const mine = await readAll("/api/v1/me/bookings", "bookings");
    return mine.find((item) => item.booking.id === id)?.listing.title ?? null;
  } catch {
    return null;
  }
}

if (me && bookingId) {
  const user = session();
  const thread = createThread({ bookingId, me: user.sub });
  const socket = connect({
    onFresh: async (socket) => {
      const reply = await request(socket, "booking:join", { bookingId });
      if (!reply.ok) return showError($("#booking-error"), reply.error);
      showError($("#booking-error"), null);
      booking = reply.booking;
      const party = user.sub === booking.buyerId || user.sub === booking.sellerId;
      $("#audit-note").hidden = party;
      // The title from the participant's own bookings (§8a); in dev mode the
      // demo backend also knows where the others have read to.
      const extra = user.dev ? await read(`/dev/bookings/${encodeURIComponent(bookingId)}`).catch(() => null) : null;
      const title = extra?.title ?? (party ? await titleOf(bookingId) : null);
      $("#booking-title").textContent = title ?? `Booking ${bookingId}`;
      drawBooking(socket);
      await watchPresence(socket, [booking.buyerId, booking.sellerId].filter((id) => id !== user.sub));
      await thread.start(socket, { canMarkRead: party, lastReadByOthers: extra?.lastReadMessageIds ?? {} });
    },
  });
  thread.bind(socket);

  socket.on("booking:statusChanged", (data) => {
    if (data.bookingId !== bookingId || !booking) return;
    booking.status = data.status;
    drawBooking(socket);
  });
} else if (!bookingId) {
  showError($("#booking-error"), { code: "bad_request", message: "no booking id in the address (?id=…)" });
}
