// Settings (admins): API keys (create, with the secret shown once; revoke) and quotas.
import { getJson, postJson, request } from "../api.js";
import { errorBox, fill, h } from "../dom.js";
import { formatTime } from "../format.js";

export function renderSettings(main, { identity }) {
  const keys = h("div", { id: "api-keys" });
  const quotas = h("div", { id: "quotas" });
  const message = h("div", { id: "settings-message" });
  fill(main, h("h1", {}, "Settings"), message, h("h2", {}, "API keys"), keys, h("h2", {}, "Quotas"), quotas);
  if (identity.me.key.role !== "admin") {
    fill(message, h("p", { class: "muted" }, "Keys and quotas are managed with an admin key."));
    return;
  }
  const orgId = identity.me.organization.id;
  loadKeys(keys, message, identity);
  loadQuotas(quotas, message, orgId, identity.projects);
}

async function loadKeys(into, message, identity) {
  try {
    const keys = await getJson("/v1/api-keys");
    fill(into, newKeyForm(into, message, identity), h("table", {},
      h("thead", {}, h("tr", {}, ["Name", "Prefix", "Role", "Project", "Created", "Last used", "Expires", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, keys.filter((k) => !k.revoked_at).map((k) => keyRow(k, into, message, identity)))));
  } catch (error) {
    fill(message, errorBox(error));
  }
}

function keyRow(key, into, message, identity) {
  const project = identity.projects.find((p) => p.id === key.project_id)?.name || "all";
  const revoke = async () => {
    if (!window.confirm(`Revoke key ${key.name}? It stops working at once.`)) return;
    try {
      await request(`/v1/api-keys/${encodeURIComponent(key.id)}`, { method: "DELETE" });
      loadKeys(into, message, identity);
    } catch (error) {
      fill(message, errorBox(error));
    }
  };
  const self = key.id === identity.me.key.id;
  return h("tr", {}, h("td", { class: "name" }, key.name), h("td", {}, key.prefix), h("td", {}, key.role),
    h("td", {}, project), h("td", {}, formatTime(key.created_at)), h("td", {}, formatTime(key.last_used_at)),
    h("td", {}, formatTime(key.expires_at)),
    h("td", {}, h("button", { type: "button", class: "danger", disabled: self, onclick: revoke }, self ? "this key" : "Revoke")));
}

function newKeyForm(into, message, identity) {
  const name = h("input", { name: "name", required: true, placeholder: "ci-bot", "aria-label": "key name" });
  const role = h("select", { name: "role", "aria-label": "role" }, ["viewer", "member", "admin"].map((r) => h("option", { value: r, selected: r === "member" }, r)));
  const project = h("select", { name: "project", "aria-label": "project" }, h("option", { value: "" }, "all projects"),
    identity.projects.map((p) => h("option", { value: p.name }, p.name)));
  const submit = async (event) => {
    event.preventDefault();
    try {
      const made = await postJson("/v1/api-keys", { name: name.value.trim(), role: role.value, project: project.value || null });
      await loadKeys(into, message, identity);
      fill(message, h("div", { class: "queue", id: "new-key" }, "New key (shown only now; copy it): ", h("code", {}, made.key)));
    } catch (error) {
      fill(message, errorBox(error));
    }
  };
  return h("form", { class: "filters", onsubmit: submit }, name, role, project, h("button", { type: "submit" }, "Create key"));
}

async function loadQuotas(into, message, orgId, projects) {
  try {
    const quota = await getJson(`/v1/orgs/${encodeURIComponent(orgId)}/quota`);
    fill(into, quotaForm("Organisation", quota, `/v1/orgs/${encodeURIComponent(orgId)}/quota`, message),
      projects.map((p) => {
        const own = quota.projects.find((q) => q.project_id === p.id) || { max_gpus: null, max_running_runs: null, usage: null };
        return quotaForm(`Project ${p.name}`, own, `/v1/orgs/${encodeURIComponent(orgId)}/projects/${encodeURIComponent(p.name)}/quota`, message);
      }));
  } catch (error) {
    fill(message, errorBox(error));
  }
}

function quotaForm(title, quota, path, message) {
  const field = (name, value) => h("input", { name, type: "number", min: 0, value: value ?? "", placeholder: "no limit", class: "number" });
  const gpus = field("max_gpus", quota.max_gpus);
  const runs = field("max_running_runs", quota.max_running_runs);
  const number = (input) => (input.value === "" ? null : Number(input.value));
  const submit = async (event) => {
    event.preventDefault();
    try {
      await request(path, { method: "PUT", body: { max_gpus: number(gpus), max_running_runs: number(runs) } });
      fill(message, h("p", {}, `${title}: quota saved.`));
    } catch (error) {
      fill(message, errorBox(error));
    }
  };
  const usage = quota.usage ? ` (in use: ${quota.usage.gpus} GPUs, ${quota.usage.running_runs} runs)` : "";
  return h("form", { class: "filters", onsubmit: submit }, h("strong", {}, title + usage),
    h("label", {}, "Max GPUs", gpus), h("label", {}, "Max running runs", runs), h("button", { type: "submit" }, "Save"));
}
