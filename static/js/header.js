// header.js: the bar on every page: navigation, who is signed in (the
// user switcher in dev mode only; otherwise the user's own token) and the
// connection state.
import { devMode, devSignIn, session, sessionLive, signOut, takeTokenFromAddress, tokenSignIn } from "./souk.js";
import { el } from "./ui.js";

/** The demo users `souk seed-demo` writes data for. */
export const DEMO_USERS = [
  { sub: "ana", role: "buyer" },
  { sub: "ben", role: "buyer" },
  { sub: "sam", role: "seller" },
  { sub: "ada", role: "admin" },
];

const PAGES = [
  ["index.html", "Browse"],
  ["seller.html", "Seller"],
  ["admin.html", "Admin"],
  ["ops.html", "Ops"],
];

/**
 * Draws the header and makes sure someone is signed in. A token handed
 * over as `#token=…` comes first (the marketplace's login); then the tab's
 * session. In dev mode only: `?as=ben` in the URL, else `fallback` (each
 * page's typical user), so a newcomer sees a living page at once. Resolves
 * with the session, or null when nobody is signed in (off dev mode the
 * header then asks for a token). Pages that only poll say `live: false`.
 */
export async function mountHeader({ fallback = "ana", live = true } = {}) {
  const refused = takeTokenFromAddress();
  const dev = await devMode();
  let current = session();
  // A demo token means nothing to a node off dev mode; an expired one to any.
  if (current && ((current.dev && !dev) || !sessionLive(current))) {
    signOut();
    current = null;
  }
  if (dev) {
    const wanted = new URLSearchParams(location.search).get("as");
    if (wanted && wanted !== current?.sub) current = (await signInAs(wanted)) ?? current;
    if (!current) current = await signInAs(fallback);
  }

  const here = location.pathname.split("/").pop() || "index.html";
  const nav = el(
    "nav",
    { "aria-label": "pages" },
    PAGES.map(([href, label]) =>
      el("a", { href, class: href === here ? "here" : null, "aria-current": href === here ? "page" : null }, label),
    ),
  );
  const who = dev ? switcher(current) : tokenBox(current);
  const conn = live
    ? el("span", { id: "conn", class: "conn", role: "status", dataset: { state: "idle" } }, "not connected")
    : el("span", { id: "conn", class: "conn", role: "status", dataset: { state: "polling" } }, "polling");
  document.body.prepend(
    el("header", { class: "top" }, el("a", { href: "index.html", class: "brand" }, "souk"), nav, who, conn),
    el("div", { id: "server-errors", role: "alert" }),
  );
  if (!current) signInNotice(refused);
  return current;
}

/** Off dev mode with nobody signed in: the page says how to sign in. */
function signInNotice(refused) {
  const main = document.querySelector("main");
  const notice = el(
    "p",
    { id: "sign-in-needed", class: "notice" },
    "Sign in with the token your marketplace's login gave you: paste it above, ",
    "or open this page as ",
    el("code", {}, `${location.pathname}#token=…`),
    ".",
  );
  const problem = refused ? el("p", { class: "error", role: "alert" }, `${refused.code}: ${refused.message}`) : null;
  main?.prepend(...[problem, notice].filter(Boolean));
}

/** A demo token for `sub`, or null where the server has no dev mode. */
async function signInAs(sub) {
  const known = DEMO_USERS.find((u) => u.sub === sub);
  try {
    return await devSignIn(sub, known?.role ?? "buyer");
  } catch {
    return null;
  }
}

function switcher(current) {
  const select = el(
    "select",
    {
      id: "user-switcher",
      title: "Dev mode: demo tokens from POST /dev/token",
      onchange: async (event) => {
        const [sub, role] = event.target.value.split(":");
        await devSignIn(sub, role);
        // The page starts over as the new user (the URL's ?as= would undo it).
        const url = new URL(location.href);
        url.searchParams.delete("as");
        location.replace(url);
      },
    },
    DEMO_USERS.map((u) =>
      el("option", { value: `${u.sub}:${u.role}`, selected: u.sub === current?.sub }, `${u.sub} (${u.role})`),
    ),
  );
  return el("label", { class: "who" }, "signed in as (dev mode) ", select);
}

/**
 * Outside dev mode: who is signed in and a way out, or a field to paste the
 * token the marketplace's login handed out.
 */
function tokenBox(current) {
  if (current) {
    return el(
      "div",
      { class: "who", id: "signed-in" },
      el("span", { id: "who-am-i" }, `signed in as ${current.sub} (${current.role})`),
      " ",
      el(
        "button",
        {
          type: "button",
          class: "secondary",
          id: "sign-out",
          onclick: () => {
            signOut();
            location.reload();
          },
        },
        "Sign out",
      ),
    );
  }
  const input = el("input", {
    id: "token-input",
    type: "password",
    autocomplete: "off",
    placeholder: "eyJ…",
    size: 20,
    required: true,
  });
  const problem = el("span", { id: "token-error", class: "error", role: "alert", hidden: true });
  return el(
    "form",
    {
      class: "who",
      id: "sign-in",
      onsubmit: (event) => {
        event.preventDefault();
        try {
          tokenSignIn(input.value.trim());
          location.reload();
        } catch (error) {
          problem.hidden = false;
          problem.textContent = `${error.code}: ${error.message}`;
        }
      },
    },
    el("label", { for: "token-input" }, "Your token "),
    input,
    " ",
    el("button", { id: "sign-in-button" }, "Sign in"),
    problem,
  );
}
