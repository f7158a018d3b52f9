// admin.js: the open disputes, live: `admin:watch` answers them and joins
// `admin:disputes`, whose `dispute:changed` events add and remove rows, on
// any node, whoever made the move (socket or server API). No polling.
// Any booking's audit trail (GET /api/v1/admin/bookings/{id}/audit), and a
// way into its thread: booking.html does the audited join and offers "Resolve".
import { connect, read, readAll, request } from "./souk.js";
import { mountHeader } from "./header.js";
import { $, clock, el, showError } from "./ui.js";

const me = await mountHeader({ fallback: "ada" });
const disputes = new Map(); // booking id -> booking
const titles = new Map(); // listing id -> title, of the public listings

function threadUrl(id) {
  return `booking.html?id=${encodeURIComponent(id)}`;
}

function draw() {
  const rows = [...disputes.values()]
    .sort((a, b) => Date.parse(a.updatedAt) - Date.parse(b.updatedAt))
    .map((booking) =>
      el(
        "tr",
        { dataset: { bookingId: booking.id } },
        el("td", {}, booking.id),
        el("td", {}, titles.get(booking.listingId) ?? booking.listingId),
        el("td", {}, booking.buyerId),
        el("td", {}, booking.sellerId),
        el("td", {}, el("time", { datetime: booking.updatedAt }, clock(booking.updatedAt))),
        el(
          "td",
          {},
          el("a", { class: "button", href: threadUrl(booking.id), "aria-label": `Join and review ${booking.id}` }, "Join and review"),
          " ",
          el(
            "button",
            { type: "button", class: "secondary", "aria-label": `Audit trail of ${booking.id}`, onclick: () => showAudit(booking.id) },
            "Audit trail",
          ),
        ),
      ),
    );
  $("#disputes").replaceChildren(...rows);
  $("#dispute-count").textContent = String(disputes.size);
  $("#no-disputes").hidden = disputes.size > 0;
}

function note(text) {
  $("#dispute-feed").prepend(el("li", { class: "notification" }, el("time", {}, clock(new Date().toISOString())), " ", text));
}

/** The booking's audit entries, oldest first. */
async function showAudit(bookingId) {
  try {
    const entries = await readAll(`/api/v1/admin/bookings/${encodeURIComponent(bookingId)}/audit`, "entries");
    $("#audit").hidden = false;
    $("#audit-booking").textContent = bookingId;
    $("#audit-entries").replaceChildren(
      ...entries.map((e) =>
        el(
          "tr",
          { class: "audit-entry" },
          el("td", {}, el("time", { datetime: e.at }, new Date(e.at).toLocaleString())),
          el("td", {}, e.actorId ?? "souk"),
          el("td", {}, e.action),
          el("td", {}, detailText(e.detail)),
        ),
      ),
    );
    $("#audit-empty").hidden = entries.length > 0;
    showError($("#admin-error"), null);
  } catch (error) {
    showError($("#admin-error"), error);
  }
}

/** An audit entry's detail (any JSON) as "from → to, key value, …". */
function detailText(detail) {
  if (detail === null || detail === undefined) return "";
  if (typeof detail !== "object") return String(detail);
  const parts = [];
  const rest = { ...detail };
  if (rest.from !== undefined && rest.to !== undefined) {
    parts.push(`${rest.from} → ${rest.to}`);
    delete rest.from;
    delete rest.to;
  }
  for (const [k, v] of Object.entries(rest)) parts.push(`${k} ${typeof v === "object" && v !== null ? JSON.stringify(v) : v}`);
  return parts.join(", ");
}

async function loadTitles() {
  try {
    for (const l of await readAll("/api/v1/listings", "listings", 400)) titles.set(l.id, l.title);
  } catch {
    // Titles are a nicety: the listing id stands in.
  }
}

if (me) {
  if (me.role !== "admin") {
    showError($("#admin-error"), { code: "forbidden", message: `${me.sub} is not an admin: sign in as an admin` });
  }
  const socket = connect({
    // After any connect souk did not recover, the queue is read afresh.
    onFresh: async (socket) => {
      const reply = await request(socket, "admin:watch", {});
      if (!reply.ok) return showError($("#admin-error"), reply.error);
      disputes.clear();
      for (const booking of reply.disputes) disputes.set(booking.id, booking);
      draw();
    },
  });
  socket.on("dispute:changed", ({ booking, previousStatus, by }) => {
    if (booking.status === "disputed") {
      disputes.set(booking.id, booking);
      note(`${by ?? "someone"} opened a dispute on ${booking.id} (was ${previousStatus}).`);
    } else {
      disputes.delete(booking.id);
      note(`${by ?? "someone"} moved ${booking.id} from ${previousStatus} to ${booking.status}.`);
    }
    draw();
  });
  $("#join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    location.href = threadUrl($("#join-id").value.trim());
  });
  $("#audit-button").addEventListener("click", () => {
    if ($("#join-form").reportValidity()) showAudit($("#join-id").value.trim());
  });
  draw();
  loadTitles().then(draw);
}
