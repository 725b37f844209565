// Editing a run's priority, labels and max duration: PATCH with If-Match, so an edit made on a
// stale copy is refused (412) instead of overwriting someone else's.
import { request } from "../api.js";
import { h } from "../dom.js";

function parseLabels(text) {
  const labels = {};
  for (const line of text.split(/[\n,]/)) {
    const item = line.trim();
    if (!item) continue;
    const at = item.indexOf("=");
    labels[at < 0 ? item : item.slice(0, at).trim()] = at < 0 ? "" : item.slice(at + 1).trim();
  }
  return labels;
}

export function editForm(base, run, onSaved, onError) {
  const priority = h("select", { name: "priority" },
    ["low", "normal", "high"].map((p) => h("option", { value: p, selected: run.priority === p }, p)));
  const duration = h("input", { name: "max_duration", placeholder: "12h (unchanged when empty)" });
  const labels = h("textarea", { name: "labels", rows: 3, cols: 40 });
  labels.value = Object.entries(run.labels).map(([k, v]) => (v ? `${k}=${v}` : k)).join("\n");
  const submit = async (event) => {
    event.preventDefault();
    const patch = { priority: priority.value, labels: parseLabels(labels.value) };
    if (duration.value.trim()) patch.max_duration = duration.value.trim();
    try {
      await request(base, {
        method: "PATCH", body: patch, headers: { "If-Match": `"${run.resource_version}"` },
      });
      await onSaved();
    } catch (error) {
      onError(error);
    }
  };
  return h("form", { class: "filters", id: "edit-form", onsubmit: submit },
    h("label", {}, "Priority", priority), h("label", {}, "Max duration", duration),
    h("label", {}, "Labels (k=v per line)", labels),
    h("button", { type: "submit", class: "primary" }, "Save"));
}
