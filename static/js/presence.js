// presence.js: green dots for users who are online (§5 presence:watch).
import { request } from "./souk.js";
import { el } from "./ui.js";

const states = new Map(); // user id -> { online, lastSeen }

/** A dot that follows `userId`'s presence once it is watched. */
export function presenceDot(userId) {
  const dot = el("span", { class: "dot", dataset: { presence: userId } });
  paint(dot, states.get(userId));
  return dot;
}

function paint(dot, state) {
  dot.dataset.online = state?.online ? "yes" : "no";
  dot.title = state?.online
    ? `${dot.dataset.presence} is online`
    : `${dot.dataset.presence} is offline${state?.lastSeen ? `, last seen ${new Date(state.lastSeen).toLocaleString()}` : ""}`;
}

function repaint(userId) {
  for (const dot of document.querySelectorAll(`.dot[data-presence="${CSS.escape(userId)}"]`)) {
    paint(dot, states.get(userId));
  }
}

let listening = false;

/** Watches `userIds` (after every fresh connect) and keeps their dots painted. */
export async function watchPresence(socket, userIds) {
  if (!listening) {
    listening = true;
    socket.on("presence:changed", (data) => {
      states.set(data.userId, { online: data.online, lastSeen: data.lastSeen });
      repaint(data.userId);
    });
  }
  if (userIds.length === 0) return;
  const reply = await request(socket, "presence:watch", { userIds });
  if (!reply.ok) return;
  for (const [userId, state] of Object.entries(reply.presence)) {
    states.set(userId, state);
    repaint(userId);
  }
}
