// thread.js: a booking's messages: history (older pages on scroll-up), live
// messages, sending with an idempotent clientMsgId, read receipts both ways
// (one tick: stored; two: the other side read it), and typing.
import { request } from "./souk.js";
import { $, clock, el, newKey, showError } from "./ui.js";

const PAGE = 30;
const TYPING_EVERY_MS = 2500; // souk broadcasts a start at most every 3 s anyway

export function createThread({ bookingId, me }) {
  const list = $("#messages");
  const state = $("#history-state");
  let socket = null;
  let canMarkRead = false;
  let hasMore = false;
  let loadingOlder = false;
  let othersRead = 0; // the highest message id another participant has read
  let myRead = 0;
  const byId = new Map(); // message id -> element
  const pending = new Map(); // clientMsgId -> element not yet acked
  const typists = new Map(); // user id -> timer that hides them

  function bubble(message) {
    const mine = message.senderId === me;
    const node = el(
      "div",
      { class: `msg ${mine ? "mine" : "theirs"}`, dataset: { id: message.id ?? "", clientMsgId: message.clientMsgId } },
      mine ? null : el("span", { class: "sender" }, message.senderId),
      el("p", { class: "body" }, message.body),
      el("span", { class: "meta" }, message.createdAt ? clock(message.createdAt) : "sending…", mine ? el("span", { class: "ticks" }) : null),
    );
    paintTicks(node);
    return node;
  }

  function paintTicks(node) {
    const ticks = node.querySelector(".ticks");
    if (!ticks) return;
    const id = Number(node.dataset.id || 0);
    const state = !id ? "pending" : id <= othersRead ? "read" : "sent";
    ticks.dataset.state = state;
    ticks.textContent = state === "pending" ? "○" : state === "read" ? "✓✓" : "✓";
    ticks.title = state === "read" ? "read" : state === "sent" ? "stored" : "sending";
  }

  function repaintTicks() {
    for (const node of list.querySelectorAll(".msg.mine")) paintTicks(node);
  }

  /** Adds or updates a stored message (history, live, or our own ack). */
  function place(message, { prepend = false } = {}) {
    if (byId.has(message.id)) return;
    const node = bubble(message);
    const waiting = message.senderId === me ? pending.get(message.clientMsgId) : null;
    if (waiting) {
      pending.delete(message.clientMsgId);
      waiting.replaceWith(node);
    } else if (prepend) {
      state.after(node);
    } else {
      list.append(node);
    }
    byId.set(message.id, node);
  }

  function lastId() {
    let last = 0;
    for (const id of byId.keys()) last = Math.max(last, Number(id));
    return last;
  }

  async function markRead() {
    const last = lastId();
    if (!canMarkRead || last <= myRead || document.visibilityState !== "visible") return;
    myRead = last;
    await request(socket, "read:mark", { bookingId, messageId: String(last) });
  }

  function atBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 60;
  }

  async function loadOlder() {
    if (!hasMore || loadingOlder) return;
    loadingOlder = true;
    const oldest = Math.min(...[...byId.keys()].map(Number));
    const before = list.scrollHeight;
    const reply = await request(socket, "message:history", { bookingId, beforeId: String(oldest), limit: PAGE });
    loadingOlder = false;
    if (!reply.ok) return showError($("#send-error"), reply.error);
    for (const message of [...reply.messages].reverse()) place(message, { prepend: true });
    hasMore = reply.hasMore;
    state.textContent = hasMore ? "scroll up for older messages" : "start of the conversation";
    list.scrollTop += list.scrollHeight - before; // keep what was on screen in place
  }

  function showTyping() {
    const names = [...typists.keys()];
    $("#typing").hidden = names.length === 0;
    $("#typing").textContent = names.length ? `${names.join(", ")} ${names.length === 1 ? "is" : "are"} typing…` : "";
  }

  /** Listeners, once per socket. */
  function bind(s) {
    socket = s;
    socket.on("message:new", ({ message }) => {
      if (message.bookingId !== bookingId) return;
      const follow = atBottom();
      place(message);
      if (follow || message.senderId === me) list.scrollTop = list.scrollHeight;
      typists.delete(message.senderId);
      showTyping();
      markRead();
    });
    socket.on("read:updated", (data) => {
      if (data.bookingId !== bookingId || data.userId === me) return;
      othersRead = Math.max(othersRead, Number(data.messageId));
      repaintTicks();
    });
    socket.on("typing", (data) => {
      if (data.bookingId !== bookingId || data.userId === me) return;
      clearTimeout(typists.get(data.userId));
      if (data.typing) typists.set(data.userId, setTimeout(() => (typists.delete(data.userId), showTyping()), 6000));
      else typists.delete(data.userId);
      showTyping();
    });
    list.addEventListener("scroll", () => list.scrollTop < 40 && loadOlder());
    document.addEventListener("visibilitychange", markRead);

    let lastTypingStart = 0;
    $("#message-body").addEventListener("input", () => {
      if (!$("#message-body").value || Date.now() - lastTypingStart < TYPING_EVERY_MS) return;
      lastTypingStart = Date.now();
      socket.emit("typing:start", { bookingId }, () => {});
    });
    $("#send-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = $("#message-body").value;
      if (!body.trim()) return;
      const clientMsgId = newKey("m");
      const draft = bubble({ senderId: me, body, clientMsgId });
      pending.set(clientMsgId, draft);
      list.append(draft);
      list.scrollTop = list.scrollHeight;
      $("#message-body").value = "";
      lastTypingStart = 0;
      socket.emit("typing:stop", { bookingId }, () => {});
      const reply = await request(socket, "message:send", { bookingId, body, clientMsgId });
      showError($("#send-error"), reply.ok ? null : reply.error);
      if (reply.ok) place(reply.message);
      else draft.classList.add("failed");
    });
  }

  /** (Re)loads the newest page; called after every fresh connect. */
  async function start(s, opts) {
    socket = s;
    canMarkRead = opts.canMarkRead;
    for (const [user, id] of Object.entries(opts.lastReadByOthers)) {
      if (user !== me) othersRead = Math.max(othersRead, Number(id));
    }
    const reply = await request(socket, "message:history", { bookingId, limit: PAGE });
    if (!reply.ok) return showError($("#send-error"), reply.error);
    for (const node of byId.values()) node.remove();
    byId.clear();
    for (const message of reply.messages) place(message);
    hasMore = reply.hasMore;
    state.textContent = hasMore ? "scroll up for older messages" : "start of the conversation";
    list.scrollTop = list.scrollHeight;
    markRead();
  }

  return { bind, start };
}
