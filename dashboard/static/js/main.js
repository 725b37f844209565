// The dashboard's entry point: sign-in, the identity bar, and a hash router over the views.
// Routes live in the URL's fragment (#/runs?status=running), so filters survive a reload and
// the server only ever serves /ui/index.html.
import { getJson, session } from "./api.js";
import { errorBox, fill, h } from "./dom.js";
import { renderCompare } from "./views/compare.js";
import { renderDatasets } from "./views/datasets.js";
import { renderQueue } from "./views/queue.js";
import { renderRun } from "./views/run.js";
import { renderRuns } from "./views/runs.js";
import { renderSettings } from "./views/settings.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const whoami = document.getElementById("whoami");
let cleanup = null;
const identity = { me: null, projects: [] };

function route() {
  const hash = location.hash.replace(/^#/, "") || "/runs";
  const [path, query = ""] = hash.split("?");
  return { parts: path.split("/").filter(Boolean), params: new URLSearchParams(query) };
}

function viewFor({ parts }) {
  if (parts[0] === "runs" && parts[1]) return (el, r) => renderRun(el, decodeURIComponent(parts[1]), r);
  if (parts[0] === "compare") return renderCompare;
  if (parts[0] === "queue") return renderQueue;
  if (parts[0] === "datasets") return renderDatasets;
  if (parts[0] === "settings") return renderSettings;
  return renderRuns;
}

async function show() {
  if (cleanup) cleanup();
  cleanup = null;
  if (!session.key()) return showSignIn();
  if (!identity.me) {
    const ok = await loadIdentity();
    if (!ok) return undefined;
  }
  const current = route();
  fill(main);
  cleanup = viewFor(current)(main, { ...current, identity }) || null;
  return undefined;
}

async function loadIdentity(key) {
  try {
    [identity.me, identity.projects] = await Promise.all([
      getJson("/v1/me", { key }), getJson("/v1/projects", { key }),
    ]);
  } catch (error) {
    identity.me = null;
    session.clear();
    showSignIn(error);
    return false;
  }
  showIdentity();
  return true;
}

function projectName(id) {
  return identity.projects.find((p) => p.id === id)?.name || id;
}

function showIdentity() {
  const { organization, key } = identity.me;
  const scope = key.project_id ? `project ${projectName(key.project_id)}` : "all projects";
  nav.hidden = false;
  fill(
    whoami,
    h("span", { id: "identity" }, `${organization.name} · ${key.role} · ${scope}`),
    h("span", { class: "muted" }, `key ${key.prefix}…`),
    h("button", { type: "button", id: "signout", onclick: signOut }, "Sign out"),
  );
}

function signOut() {
  session.clear();
  identity.me = null;
  nav.hidden = true;
  fill(whoami);
  location.hash = "#/runs";
  show();
}

function showSignIn(error) {
  nav.hidden = true;
  fill(whoami);
  const input = h("input", {
    id: "api-key", type: "password", autocomplete: "off", required: true,
    placeholder: "tp_…", "aria-label": "API key",
  });
  const form = h(
    "form", { class: "signin", onsubmit: (e) => signIn(e, input.value.trim()) },
    h("h1", {}, "Sign in to Trainport"),
    h("label", { for: "api-key" }, "API key"),
    input,
    h("p", { class: "muted" },
      "The key stays in this tab (sessionStorage) and is sent only as a bearer header to this server."),
    h("button", { type: "submit", class: "primary" }, "Sign in"),
    error ? errorBox(error) : null,
  );
  fill(main, form);
  input.focus();
}

async function signIn(event, key) {
  event.preventDefault();
  if (!key) return;
  if (await loadIdentity(key)) {
    session.save(key);
    await show();
    main.focus(); // the form that had focus is gone: keyboard users continue in the content
  }
}

// The skip link moves focus past the header; its href would change the route (the fragment).
document.getElementById("skip").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});
window.addEventListener("hashchange", show);
window.addEventListener("trainport:signed-out", (event) => {
  if (cleanup) cleanup();
  cleanup = null;
  identity.me = null;
  showSignIn(event.detail);
});
show();
