// The run table: filters kept in the URL, cursor paging, live updates from the change feed
// (one conditional feed request per second while the tab is visible), multi-select cancel.
import { Conditional, getJson, postJson, url } from "../api.js";
import { errorBox, fill, h } from "../dom.js";
import {
  formatDuration, formatTime, gpuCount, labelPairs, progressText, runDuration,
} from "../format.js";
import {
  baselineVersion, filtersFromQuery, filtersToQuery, mergeChanges, toApiTime,
} from "../runlist.js";

export const FEED_INTERVAL_MS = 1000;
const PAGE_SIZE = 50;
const FEED_PAGE = 200;
const STATUSES = ["pending", "queued", "starting", "running", "stopping", "succeeded", "failed", "cancelled"];

export function renderRuns(main, { params, identity }) {
  const state = {
    filters: filtersFromQuery(params),
    cursors: params.get("after") ? [params.get("after")] : [],
    rows: [], next: null, selected: new Set(), version: null, stopped: false, timer: null,
  };
  const projects = identity.projects;
  const projectIds = Object.fromEntries(projects.map((p) => [p.name, p.id]));
  const projectName = (id) => projects.find((p) => p.id === id)?.name || id;
  const feed = new Conditional();
  const message = h("div", { id: "runs-message" });
  const tbody = h("tbody", { id: "runs-body" });
  const pager = h("div", { class: "toolbar" });
  const cancelButton = h("button", { type: "button", id: "cancel-selected", class: "danger", disabled: true, onclick: cancelSelected }, "Cancel selected");
  const compareButton = h("button", { type: "button", id: "compare-selected", disabled: true, onclick: compareSelected }, "Compare selected");
  const live = h("span", { class: "muted", id: "live", "aria-live": "polite" });

  fill(
    main,
    h("h1", {}, "Runs"),
    filterForm(state.filters, projects, applyFilters),
    h("div", { class: "toolbar" }, cancelButton, compareButton, live),
    message,
    h("table", { id: "runs-table" },
      h("thead", {}, h("tr", {},
        h("th", {}, h("span", { class: "sr-only" }, "Select")),
        ...["Status", "Project", "Name", "Labels", "GPUs", "Attempts", "Progress", "Created", "Started", "Duration"].map((t) => h("th", { scope: "col" }, t)),
      )),
      tbody),
    pager,
  );

  function applyFilters(filters) {
    const query = filtersToQuery(filters).toString();
    location.hash = `#/runs${query ? `?${query}` : ""}`;
  }

  function apiQuery(extra) {
    const q = filtersToQuery({
      ...state.filters,
      created_after: toApiTime(state.filters.created_after),
      created_before: toApiTime(state.filters.created_before),
    });
    for (const [k, v] of Object.entries(extra)) if (v != null) q.set(k, v);
    return q;
  }

  async function loadPage() {
    try {
      const after = state.cursors.at(-1);
      const page = await getJson(url("/v1/runs", apiQuery({ limit: PAGE_SIZE, after })));
      state.rows = page.data;
      state.next = page.has_more ? page.next_cursor : null;
      fill(message);
      draw();
      if (!performance.getEntriesByName("trainport:runs-painted").length) {
        performance.mark("trainport:runs-painted"); // first meaningful paint (bench/ui_bench.py)
      }
      if (state.version == null) await startFeed(page.data);
    } catch (error) {
      fill(message, errorBox(error));
    }
  }

  async function startFeed(rows) {
    // Begin at the newest version already seen: the org's newest run and this page's rows.
    const newest = await getJson(url("/v1/runs", { limit: 1 }));
    state.version = baselineVersion(rows, newest.data);
    schedule();
  }

  function schedule() {
    if (!state.stopped) state.timer = setTimeout(poll, FEED_INTERVAL_MS);
  }

  async function poll() {
    if (document.hidden) return schedule(); // a hidden tab asks nothing
    try {
      let more = true;
      while (more && !state.stopped) {
        const page = await feed.get(url("/v1/runs", { changed_since: state.version, limit: FEED_PAGE }));
        if (page === null) break; // 304: nothing changed in the org
        apply(page.data);
        state.version = page.resource_version;
        more = page.has_more;
      }
      live.textContent = `Live · updated ${new Date().toLocaleTimeString()}`;
    } catch (error) {
      live.textContent = `Live updates paused: ${error.message}`;
    }
    return schedule();
  }

  function apply(changes) {
    const merged = mergeChanges(state.rows, changes, state.filters, {
      firstPage: state.cursors.length === 0, projectIds,
    });
    if (merged.changed) {
      state.rows = merged.rows;
      draw();
    }
  }

  function draw() {
    const now = Date.now();
    fill(tbody, state.rows.map((run) => row(run, now)));
    if (!state.rows.length) tbody.append(h("tr", {}, h("td", { colspan: 11, class: "muted" }, "No runs match.")));
    drawPager();
    updateButtons();
  }

  function row(run, now) {
    const box = h("input", {
      type: "checkbox", "aria-label": `select ${run.name}`, checked: state.selected.has(run.id),
      onchange: (e) => { e.target.checked ? state.selected.add(run.id) : state.selected.delete(run.id); updateButtons(); },
    });
    return h("tr", { dataset: { runId: run.id, status: run.status } },
      h("td", {}, box),
      h("td", { class: `status status-${run.status}`, title: run.status_message || "" },
        run.status, run.status_reason && run.status_reason !== run.status ? h("div", { class: "muted" }, run.status_reason) : null),
      h("td", {}, projectName(run.project_id)),
      h("td", { class: "name" }, h("a", { href: `#/runs/${encodeURIComponent(run.id)}` }, run.name)),
      h("td", {}, labelPairs(run.labels).map((l) => h("span", { class: "label" }, l))),
      h("td", {}, String(gpuCount(run.spec))),
      h("td", {}, String(run.attempt)),
      h("td", {}, progressText(run, now)),
      h("td", {}, formatTime(run.created_at)),
      h("td", {}, formatTime(run.started_at)),
      h("td", {}, formatDuration(runDuration(run, now))),
    );
  }

  function drawPager() {
    const newer = h("button", { type: "button", disabled: !state.cursors.length, onclick: () => page(-1) }, "← Newer");
    const older = h("button", { type: "button", id: "older", disabled: !state.next, onclick: () => page(1) }, "Older →");
    fill(pager, newer, older, h("span", { class: "muted" }, `${state.rows.length} shown`));
  }

  function page(direction) {
    if (direction > 0) state.cursors.push(state.next);
    else state.cursors.pop();
    loadPage();
  }

  function updateButtons() {
    const n = state.selected.size;
    cancelButton.disabled = n === 0;
    cancelButton.textContent = n ? `Cancel selected (${n})` : "Cancel selected";
    compareButton.disabled = n < 2;
  }

  async function cancelSelected() {
    const ids = [...state.selected];
    if (!window.confirm(`Cancel ${ids.length} run(s)?`)) return;
    const failures = [];
    for (const id of ids) {
      try {
        await postJson(`/v1/runs/${encodeURIComponent(id)}/cancel`);
      } catch (error) {
        failures.push(error);
      }
    }
    state.selected.clear();
    fill(message, failures.map(errorBox));
    updateButtons();
    poll();
  }

  function compareSelected() {
    location.hash = `#/compare?${new URLSearchParams({ ids: [...state.selected].join(",") })}`;
  }

  loadPage();
  return () => {
    state.stopped = true;
    clearTimeout(state.timer);
  };
}

function filterForm(filters, projects, onApply) {
  const field = (label, input) => h("label", {}, label, input);
  const status = h("select", { name: "status", multiple: true, size: 3, "aria-label": "status" },
    STATUSES.map((s) => h("option", { value: s, selected: filters.status.includes(s) }, s)));
  const project = h("select", { name: "project" }, h("option", { value: "" }, "all"),
    projects.map((p) => h("option", { value: p.name, selected: filters.project === p.name }, p.name)));
  const text = (name, placeholder, type = "text") =>
    h("input", { name, type, placeholder, value: filters[name] || "" });
  const inputs = {
    labels: text("labels", "team=nlp,gpu"), name_prefix: text("name_prefix", "llama-"),
    created_after: text("created_after", "", "datetime-local"),
    created_before: text("created_before", "", "datetime-local"),
  };
  const submit = (event) => {
    event.preventDefault();
    const chosen = { status: [...status.selectedOptions].map((o) => o.value), project: project.value };
    for (const [k, input] of Object.entries(inputs)) chosen[k] = input.value.trim();
    onApply(chosen);
  };
  return h("form", { class: "filters", id: "filters", onsubmit: submit },
    field("Status", status), field("Project", project), field("Labels", inputs.labels),
    field("Name prefix", inputs.name_prefix), field("Created after", inputs.created_after),
    field("Created before", inputs.created_before),
    h("button", { type: "submit", class: "primary" }, "Apply"),
    h("button", { type: "button", onclick: () => onApply({ status: [] }) }, "Clear"));
}
