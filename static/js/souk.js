// souk.js: the one connection module every page shares. Copy it as it is.
//
// - who the user is: a token kept in sessionStorage (each tab may be
//   another user): from the marketplace's own login (pasted, or handed
//   over as #token=… in the address), or in dev mode minted by POST /dev/token
// - connect(): socket.io-client over WebSocket, reconnecting with backoff
//   and jitter, showing the connection state, relying on connection state
//   recovery (souk replays every missed room event after a short drop)
// - request(): an event with an ack, answered { ok, ... } or { ok:false, error }
import { io } from "/vendor/socket.io-client/socket.io.esm.min.js";

const SESSION_KEY = "souk.session";

/** The signed-in user: { sub, role, token, expiresAt, dev } or null. */
export function session() {
  try {
    return JSON.parse(sessionStorage.getItem(SESSION_KEY));
  } catch {
    return null;
  }
}

function saveSession(value) {
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(value));
  return value;
}

export function signOut() {
  sessionStorage.removeItem(SESSION_KEY);
}

/** Dev mode only: a demo token from POST /dev/token, { token, expiresAt }. */
export async function devToken(sub, role) {
  const res = await fetch("/dev/token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ sub, role, ttlSecs: 8 * 3600 }),
  });
  if (!res.ok) throw await httpError(res);
  return res.json();
}

/** Dev mode only: signs this tab in as `sub` with a demo token. */
export async function devSignIn(sub, role) {
  const { token, expiresAt } = await devToken(sub, role);
  return saveSession({ sub, role, token, expiresAt, dev: true });
}

/**
 * Whether this node runs in dev mode: it answers GET /dev/ only then (404
 * otherwise). Only dev mode mints demo tokens, so only it gets a switcher.
 */
export async function devMode() {
  try {
    const res = await fetch("/dev/", { headers: { accept: "application/json" } });
    return res.ok && (await res.json()).dev === true;
  } catch {
    return false;
  }
}

/** The claims of a JWT (not verified: souk does that), or null if it is none. */
export function claimsOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part));
    return typeof claims?.sub === "string" && Number.isFinite(claims.exp) ? claims : null;
  } catch {
    return null;
  }
}

/**
 * Signs in with a token from elsewhere (the marketplace's own login).
 * Throws { code, message } when it is not a user token this page can use.
 */
export function tokenSignIn(token) {
  const claims = claimsOf(token);
  if (!claims) throw { code: "invalid_token", message: "that is not a JWT with sub and exp" };
  if (claims.role === "service") {
    throw { code: "invalid_token", message: "a service token belongs to the marketplace backend, not a browser" };
  }
  if (claims.exp * 1000 <= Date.now()) throw { code: "token_expired", message: "that token has expired" };
  const expiresAt = new Date(claims.exp * 1000).toISOString();
  return saveSession({ sub: claims.sub, role: claims.role ?? "buyer", token, expiresAt, dev: false });
}

/**
 * A token handed over in the address (`#token=<JWT>`, as a marketplace's
 * login redirects here): taken into this tab's session, and the fragment
 * removed from the address bar and history so it is not copied or kept.
 * Returns the error if the token is unusable.
 */
export function takeTokenFromAddress() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get("token");
  if (!token) return null;
  history.replaceState(history.state, "", location.pathname + location.search);
  try {
    tokenSignIn(token);
    return null;
  } catch (error) {
    return error;
  }
}

/** Whether the session's token is still valid for a while. */
export function sessionLive(current = session()) {
  return Boolean(current?.token) && Date.parse(current.expiresAt) > Date.now() + 5_000;
}

/**
 * GET one of souk's user reads (§8a) with the user's own token; resolves
 * with the JSON answer or rejects with { code, message }.
 */
export async function read(path) {
  const res = await fetch(path, { headers: { authorization: `Bearer ${session()?.token}` } });
  if (!res.ok) throw await httpError(res);
  return res.json();
}

/** Every page of a paged read (§8a): the items under `key`, at most `max`. */
export async function readAll(path, key, max = 1000) {
  const items = [];
  let cursor = null;
  do {
    const url = new URL(path, location.origin);
    url.searchParams.set("limit", "200");
    if (cursor) url.searchParams.set("cursor", cursor);
    const page = await read(url.pathname + url.search);
    items.push(...page[key]);
    cursor = page.nextCursor;
  } while (cursor && items.length < max);
  return items;
}

/** An HTTP error answer as the contract's { code, message }. */
export async function httpError(res) {
  try {
    const body = await res.json();
    if (body?.error?.code) return body.error;
  } catch {
    // not JSON
  }
  return { code: `http_${res.status}`, message: res.statusText || "request failed" };
}

/**
 * Emits `event` with an ack and resolves with the answer, which is
 * { ok: true, ... } or { ok: false, error: { code, message, ... } } (§3).
 * No answer within `ms` (say, while offline) resolves as a `timeout` error.
 */
export async function request(socket, event, payload, ms = 8000) {
  try {
    return await socket.timeout(ms).emitWithAck(event, payload);
  } catch {
    return { ok: false, error: { code: "timeout", message: `no answer to ${event} within ${ms / 1000} s` } };
  }
}

/**
 * Connects as the signed-in user. `onFresh(socket)` runs after every
 * connect that souk did not recover: the first, and any after a drop longer
 * than the recovery window. That is where a page joins its rooms and loads
 * its state. After a recovered reconnect souk has rejoined the rooms and
 * replayed what was missed, so nothing is to be done.
 */
export function connect({ onFresh, indicator = document.querySelector("#conn") } = {}) {
  const socket = io({
    // A function, so a refreshed token is used on reconnect; socket.io-client
    // adds { pid, offset } to it by itself to ask for recovery.
    auth: (cb) => cb({ token: session()?.token }),
    transports: ["websocket"],
    reconnectionDelay: 500, // first retry after 0.5 s ...
    reconnectionDelayMax: 10_000, // ... doubling up to 10 s ...
    randomizationFactor: 0.5, // ... each delay ±50 %, so clients do not reconnect in step
  });
  const show = (state, text) => {
    if (!indicator) return;
    indicator.dataset.state = state;
    indicator.textContent = text;
  };
  show("connecting", "connecting…");
  socket.on("connect", () => {
    show("online", socket.recovered ? "online · recovered" : "online");
    if (!socket.recovered && onFresh) onFresh(socket);
  });
  socket.on("disconnect", (reason) => {
    // "io server disconnect": souk ended the session (token expired); no retry.
    if (reason === "io server disconnect") {
      show("offline", "signed out by the server");
      sessionEnded();
    } else show("reconnecting", "reconnecting…");
  });
  socket.on("connect_error", (err) => {
    const code = err?.data?.code;
    if (code) show("offline", `refused: ${code}`);
    else show("reconnecting", "reconnecting…");
    if (code === "token_expired" || code === "invalid_token") sessionEnded();
  });
  socket.io.on("reconnect_attempt", (attempt) => show("reconnecting", `reconnecting (attempt ${attempt})…`));
  socket.on("server:error", (error) => reportServerError(error));
  // souk took this socket out of a room it may no longer be in (a listing
  // made private, a refreshed token without admin): its events stop.
  socket.on("room:left", ({ room, reason }) =>
    reportServerError({ event: room, code: reason, message: "left this room; its updates stop" }),
  );
  keepTokenFresh(socket);
  window.souk = socket; // for poking at it from the console
  return socket;
}

/**
 * Off dev mode nothing can renew a token in the page: once souk ends the
 * session (the token expired) or refuses the token, the tab forgets it and
 * says how to go on; a reload then shows the sign-in form.
 */
function sessionEnded() {
  const current = session();
  if (!current || current.dev || sessionLive(current)) return;
  signOut();
  const box = document.querySelector("#server-errors");
  if (!box || box.querySelector("#session-ended")) return;
  const reload = document.createElement("a");
  reload.href = location.pathname + location.search;
  reload.textContent = "sign in again";
  const line = document.createElement("p");
  line.id = "session-ended";
  line.className = "notice";
  line.append("Your session has ended (the token expired): ", reload, ".");
  box.append(line);
}

/** Dev tokens are re-minted a minute before they expire and handed over with auth:refresh. */
function keepTokenFresh(socket) {
  const current = session();
  if (!current?.dev) return;
  const wait = Date.parse(current.expiresAt) - Date.now() - 60_000;
  setTimeout(async () => {
    const fresh = await devSignIn(current.sub, current.role);
    await request(socket, "auth:refresh", { token: fresh.token });
    keepTokenFresh(socket);
  }, Math.max(wait, 1000));
}

/** `server:error` answers events sent without an ack; show it where every page can. */
function reportServerError(error) {
  const box = document.querySelector("#server-errors");
  if (!box) return;
  const line = document.createElement("p");
  line.className = "error";
  line.textContent = `${error.event ?? "frame"}: ${error.code}: ${error.message}`;
  box.append(line);
  setTimeout(() => line.remove(), 10_000);
}
