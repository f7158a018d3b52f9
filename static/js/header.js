// header.js: the bar on every page: navigation, the dev-mode user switcher
// and the connection state.
import { session, devSignIn, tokenSignIn } from "./souk.js";
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
 * Draws the header and makes sure someone is signed in: `?as=ben` in the
 * URL, else the tab's user, else `fallback` (each page's typical user), so
 * a newcomer sees a living page at once. Resolves with the session, or null
 * when there is no dev mode and no token yet. Pages that only poll say
 * `live: false`.
 */
export async function mountHeader({ fallback = "ana", live = true } = {}) {
  const wanted = new URLSearchParams(location.search).get("as");
  let current = session();
  if (wanted && wanted !== current?.sub) current = (await signInAs(wanted)) ?? current;
  if (!current) current = await signInAs(fallback);
  // Without dev mode there are no demo tokens: the user pastes one.
  const dev = current?.dev ?? false;

  const here = location.pathname.split("/").pop() || "index.html";
  const nav = el(
    "nav",
    {},
    PAGES.map(([href, label]) => el("a", { href, class: href === here ? "here" : null }, label)),
  );
  const who = dev ? switcher(current) : tokenBox(current);
  const conn = live
    ? el("span", { id: "conn", class: "conn", dataset: { state: "idle" } }, "not connected")
    : el("span", { id: "conn", class: "conn", dataset: { state: "polling" } }, "polling");
  document.body.prepend(
    el("header", { class: "top" }, el("a", { href: "index.html", class: "brand" }, "souk"), nav, who, conn),
    el("div", { id: "server-errors" }),
  );
  return current;
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
  return el("label", { class: "who" }, "signed in as ", select);
}

/** Outside dev mode: paste a token the marketplace's login handed out. */
function tokenBox(current) {
  const input = el("input", { placeholder: "paste a user token (JWT)", size: 28 });
  const form = el(
    "form",
    {
      class: "who",
      onsubmit: (event) => {
        event.preventDefault();
        tokenSignIn(input.value.trim());
        location.reload();
      },
    },
    current ? `${current.sub} (${current.role}) ` : "",
    input,
    el("button", {}, "use"),
  );
  return form;
}
