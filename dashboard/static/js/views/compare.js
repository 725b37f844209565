// Compare runs: one metric overlaid across them (loss vs step) and the differences of their specs.
import { getJson, url } from "../api.js";
import { errorBox, fill, h } from "../dom.js";
import { flatten } from "../yaml.js";

export function renderCompare(main, { params }) {
  const ids = (params.get("ids") || "").split(",").map((s) => s.trim()).filter(Boolean);
  const chosen = params.get("metric") || "loss";
  const input = h("input", { name: "ids", value: ids.join(","), size: 60, placeholder: "run_…,run_…", "aria-label": "run ids" });
  const form = h("form", { class: "filters", onsubmit: (e) => {
    e.preventDefault();
    location.hash = `#/compare?${new URLSearchParams({ ids: input.value, metric: chosen })}`;
  } }, input, h("button", { type: "submit" }, "Compare"));
  const body = h("div", { id: "compare" });
  fill(main, h("h1", {}, "Compare runs"),
    h("p", { class: "muted" }, "Select runs in the run table and press “Compare selected”, or paste their ids."),
    form, body);
  if (ids.length) load(ids, chosen, body);
}

async function load(ids, chosen, body) {
  try {
    const runs = await Promise.all(ids.map((id) => getJson(`/v1/runs/${encodeURIComponent(id)}`)));
    const sets = await Promise.all(ids.map((id) => getJson(url(`/v1/runs/${encodeURIComponent(id)}/metrics`, { max_points: 2000 }))));
    const names = [...new Set(sets.flatMap((s) => Object.keys(s.series)))].sort();
    const metric = names.includes(chosen) ? chosen : names[0];
    const picker = h("select", { "aria-label": "metric", id: "compare-metric", onchange: () => {
      location.hash = `#/compare?${new URLSearchParams({ ids: ids.join(","), metric: picker.value })}`;
    } }, names.map((n) => h("option", { value: n, selected: n === metric }, n)));
    const { metricChart } = await import("../chart.js"); // uPlot loads only where a chart is
    const chart = metric ? overlay(metricChart, runs, sets, metric) : h("p", { class: "muted" }, "These runs have no metrics.");
    fill(body, h("div", { class: "toolbar" }, h("label", {}, "Metric ", picker)), chart,
      h("h2", {}, "Spec differences"), specDiff(runs));
  } catch (error) {
    fill(body, errorBox(error));
  }
}

function overlay(metricChart, runs, sets, metric) {
  const series = runs.map((run, i) => {
    const s = sets[i].series[metric] || { steps: [], values: [] };
    return { label: `${run.name} (${run.id.slice(-6)})`, steps: s.steps, values: s.values };
  });
  const chart = metricChart(metric, series, { width: 1000, height: 360 });
  requestAnimationFrame(() => chart.update(series));
  return chart.el;
}

function specDiff(runs) {
  const flat = runs.map((r) => flatten(r.spec));
  const keys = [...new Set(flat.flatMap((f) => Object.keys(f)))].sort();
  const show = (v) => (v === undefined ? "—" : JSON.stringify(v));
  const differing = keys.filter((k) => new Set(flat.map((f) => show(f[k]))).size > 1);
  if (!differing.length) return h("p", { class: "muted" }, "The specs are the same.");
  return h("table", { class: "diff", id: "spec-diff" },
    h("thead", {}, h("tr", {}, h("th", {}, "Field"), runs.map((r) => h("th", {}, r.name)))),
    h("tbody", {}, differing.map((k) => h("tr", {}, h("td", {}, k),
      flat.map((f) => h("td", { class: "changed" }, show(f[k])))))));
}
