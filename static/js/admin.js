// admin.js: disputes to look at, and a way into any booking's thread. The
// thread page (booking.html) does the audited join and offers "Resolve".
import { backend } from "./souk.js";
import { mountHeader } from "./header.js";
import { $, clock, el, showError } from "./ui.js";

const me = await mountHeader({ fallback: "ada", live: false });

function threadUrl(id) {
  return `booking.html?id=${encodeURIComponent(id)}`;
}

async function refresh() {
  try {
    const { bookings } = await backend("/dev/bookings?status=disputed");
    $("#disputes").replaceChildren(
      ...bookings.map(({ booking, title }) =>
        el(
          "tr",
          { dataset: { bookingId: booking.id } },
          el("td", {}, title),
          el("td", {}, booking.buyerId),
          el("td", {}, booking.sellerId),
          el("td", {}, clock(booking.updatedAt)),
          el("td", {}, el("a", { class: "button", href: threadUrl(booking.id) }, "Join and review")),
        ),
      ),
    );
    $("#no-disputes").hidden = bookings.length > 0;
    showError($("#admin-error"), null);
  } catch (error) {
    showError($("#admin-error"), error);
  }
}

if (me) {
  if (me.role !== "admin") {
    showError($("#admin-error"), { code: "forbidden", message: `${me.sub} is not an admin: switch to ada` });
  }
  $("#join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    location.href = threadUrl($("#join-id").value.trim());
  });
  await refresh();
  // Disputes of other people's bookings reach no admin room, so poll.
  setInterval(refresh, 5000);
}
