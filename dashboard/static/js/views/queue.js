// The queue: waiting runs in admission order with their queue answers, quota limits beside
// usage for the org and each project that has one, and this month's GPU-hours and cost.
import { getJson, url } from "../api.js";
import { errorBox, fill, h } from "../dom.js";
import { admissionOrder, formatTime, gpuCount, queueText } from "../format.js";

const SHOWN = 50;

export function renderQueue(main, { identity }) {
  const body = h("div", { id: "queue" });
  fill(main, h("h1", {}, "Queue"), body);
  load(body, identity);
}

async function load(body, identity) {
  try {
    const page = await getJson(url("/v1/runs", new URLSearchParams([["status", "pending"], ["status", "queued"], ["limit", "200"]])));
    const waiting = page.data.sort((a, b) => (a.queued_at || a.created_at).localeCompare(b.queued_at || b.created_at));
    // The queue answer is part of a run read, not of the list: read the first few runs.
    const detailed = await Promise.all(waiting.slice(0, SHOWN).map((r) => getJson(`/v1/runs/${encodeURIComponent(r.id)}`)));
    const org = encodeURIComponent(identity.me.organization.id);
    const quota = await getJson(`/v1/orgs/${org}/quota`);
    const usage = await getJson(`/v1/orgs/${org}/usage?group_by=project`).catch((error) => error);
    fill(body, quotaTable(quota, identity.projects), usageTable(usage),
      h("h2", {}, `Waiting runs (${waiting.length}${page.has_more ? "+" : ""})`),
      waitingTable(admissionOrder(detailed)));
  } catch (error) {
    fill(body, errorBox(error));
  }
}

function quotaTable(quota, projects) {
  const name = (id) => projects.find((p) => p.id === id)?.name || id;
  const limit = (v) => (v == null ? "unlimited" : String(v));
  const rows = [quota, ...quota.projects].map((q) => h("tr", {},
    h("td", {}, q.project_id ? `project ${name(q.project_id)}` : "organisation"),
    h("td", {}, `${q.usage.gpus} of ${limit(q.max_gpus)}`),
    h("td", {}, `${q.usage.running_runs} of ${limit(q.max_running_runs)}`)));
  return h("table", { id: "quota" }, h("thead", {}, h("tr", {}, h("th", {}, "Quota"), h("th", {}, "GPUs in use"), h("th", {}, "Running runs"))),
    h("tbody", {}, rows));
}

// GET /v1/orgs/{id}/usage: GPU-hours and their cost per project since the month's first day.
function usageTable(usage) {
  if (usage instanceof Error) return errorBox(usage);
  const hours = (u) => u.gpu_hours.toFixed(2);
  const cost = (u) => `${u.cost.toFixed(2)} ${usage.currency}`;
  const rows = usage.data.map((row) => h("tr", {},
    h("td", {}, `project ${row.project || row.key}`), h("td", {}, hours(row)), h("td", {}, cost(row))));
  rows.push(h("tr", {}, h("th", { scope: "row" }, "total"), h("td", {}, hours(usage.total)), h("td", {}, cost(usage.total))));
  return h("table", { id: "usage" },
    h("caption", {}, `GPU-hours and cost from ${usage.from} to before ${usage.to}`),
    h("thead", {}, h("tr", {}, h("th", {}, "Usage"), h("th", {}, "GPU-hours"), h("th", {}, "Cost"))),
    h("tbody", {}, rows));
}

function waitingTable(runs) {
  if (!runs.length) return h("p", { class: "muted" }, "Nothing is waiting.");
  return h("table", {}, h("thead", {}, h("tr", {}, ["Run", "Status", "GPUs", "Queued", "Queue answer"].map((t) => h("th", {}, t)))),
    h("tbody", {}, runs.map((r) => h("tr", {},
      h("td", {}, h("a", { href: `#/runs/${encodeURIComponent(r.id)}` }, r.name)),
      h("td", {}, r.status), h("td", {}, String(gpuCount(r.spec))),
      h("td", {}, formatTime(r.queued_at || r.created_at)), h("td", {}, queueText(r.queue))))));
}
