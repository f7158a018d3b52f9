// ui.js: small DOM helpers shared by the pages.

/** el("p", { class: "x", onclick }, "text", child): builds an element. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined));
  return node;
}

/** Amounts are integers in minor units (cents). */
export function money(amount, currency = "EUR") {
  if (amount === null || amount === undefined) return "–";
  return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(amount / 100);
}

/** Parses what a person typed in major units ("812.50") into minor units. */
export function toMinor(text) {
  const value = Number(String(text).replace(",", "."));
  return Number.isFinite(value) ? Math.round(value * 100) : NaN;
}

export function clock(iso) {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** "4:05" or "1:02:03" until `iso`; "ended" once past. */
export function countdown(iso) {
  const left = Math.max(0, Date.parse(iso) - Date.now());
  if (left === 0) return "ended";
  const s = Math.floor(left / 1000);
  const hms = [Math.floor(s / 3600), Math.floor(s / 60) % 60, s % 60];
  const pad = (n) => String(n).padStart(2, "0");
  return hms[0] > 0 ? `${hms[0]}:${pad(hms[1])}:${pad(hms[2])}` : `${hms[1]}:${pad(hms[2])}`;
}

/** An ack or HTTP error (§3) as one line a person can read. */
export function errorText(error) {
  let text = `${error.code}: ${error.message}`;
  if (error.minAmount !== undefined) text += ` (at least ${money(error.minAmount)})`;
  if (error.retryAfterMs !== undefined) text += ` (retry in ${Math.ceil(error.retryAfterMs / 1000)} s)`;
  return text;
}

/** Shows an error inline in `node` (an element with class "error"), or clears it. */
export function showError(node, error) {
  node.textContent = error ? errorText(error) : "";
  node.hidden = !error;
}

/** A fresh idempotency key or clientMsgId: 1-64 of [A-Za-z0-9_-]. */
export function newKey(prefix = "k") {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `${prefix}-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

export function param(name) {
  return new URLSearchParams(location.search).get(name);
}

export function badge(word) {
  return el("span", { class: `badge ${word}` }, word);
}

/** The one element matching `selector`. */
export function $(selector, root = document) {
  return root.querySelector(selector);
}
