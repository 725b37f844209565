// One run: summary and actions, the queue answer while it waits, metrics charts, logs per
// attempt and rank with live follow, spec (YAML), status timeline, attempts, checkpoints, outputs
// and provenance (each fact marked observed or reported, with a verify action). Kept fresh by one long poll on the run (GET /v1/runs/{id}?wait=&resource_version=).
import { getJson, isSameOrigin, postJson, request, url } from "../api.js";
import { errorBox, fill, h } from "../dom.js";
import {
  formatBytes, formatDuration, formatTime, gpuCount, isActive, labelPairs, metricPairs,
  progressText, provenanceFacts, queueText, runDuration,
} from "../format.js";
import { LogView, readLines } from "../logview.js";
import { toYaml } from "../yaml.js";
import { editForm } from "./run_edit.js";

const LONG_POLL_S = 25;
const METRICS_EVERY_MS = 2000;
const LOG_RETRY_MS = 1000;

export function renderRun(main, runId, { identity }) {
  const base = `/v1/runs/${encodeURIComponent(runId)}`;
  const state = { run: null, stopped: false, poll: new AbortController(), metricsAt: 0 };
  const projectName = (id) => identity.projects.find((p) => p.id === id)?.name || id;
  const parts = {
    title: h("h1", { id: "run-title" }),
    message: h("div", { id: "run-message" }),
    actions: h("div", { class: "toolbar", id: "run-actions" }),
    queue: h("div", { id: "run-queue" }),
    summary: h("dl", { class: "summary", id: "run-summary" }),
    charts: h("div", { id: "run-charts" }),
    spec: h("div", { id: "run-spec" }),
    timeline: h("ol", { class: "timeline", id: "run-timeline" }),
    attempts: h("div", { id: "run-attempts" }),
    checkpoints: h("div", { id: "run-checkpoints" }),
    outputs: h("div", { id: "run-outputs" }),
    outputsSection: h("section", { "aria-labelledby": "outputs-heading" }),
    provenance: h("div", { id: "run-provenance" }),
  };
  const logs = logPanel(base);
  const charts = new Map();
  fill(main,
    h("p", {}, h("a", { href: "#/runs" }, "← Runs")), parts.title, parts.message, parts.actions,
    parts.queue, parts.summary,
    h("h2", {}, "Metrics"), parts.charts,
    h("h2", {}, "Logs"), logs.el,
    h("div", { class: "grid2" },
      h("section", {}, h("h2", {}, "Spec"), parts.spec),
      h("section", {}, h("h2", {}, "Timeline"), parts.timeline)),
    h("h2", {}, "Attempts"), parts.attempts,
    h("h2", {}, "Checkpoints"), parts.checkpoints,
    parts.outputsSection,
    h("h2", {}, "Provenance"), parts.provenance);
  fill(parts.outputsSection, h("h2", { id: "outputs-heading" }, "Outputs"), parts.outputs);

  function show(run) {
    const first = state.run === null;
    state.run = run;
    parts.title.replaceChildren(run.name, " ", h("span", { class: `status status-${run.status}`, id: "run-status" }, run.status));
    fill(parts.queue, run.queue ? h("p", { class: "queue", id: "queue-answer" }, queueText(run.queue)) : null);
    fill(parts.summary, summary(run, projectName));
    fill(parts.actions, actions(run));
    fill(parts.attempts, attemptsTable(run.attempts));
    if (first) fill(parts.spec, specView(run.spec));
    logs.attempts(run);
    loadEvents();
    loadMetrics(first || !isActive(run.status)); // the last points come with the end
    loadCheckpoints();
    loadOutputs(run);
    if (run.started_at) loadProvenance();
  }

  function actions(run) {
    const act = (label, fn, attrs = {}) => h("button", { type: "button", ...attrs, onclick: fn }, label);
    return [
      act("Cancel run", cancel, { id: "cancel-run", class: "danger", disabled: !isActive(run.status) }),
      act("Clone", clone, { id: "clone-run" }),
      act("Edit…", () => fill(parts.message, editForm(base, run, refresh, (e) => fill(parts.message, errorBox(e)))),
        { id: "edit-run", disabled: !isActive(run.status) }),
    ];
  }

  async function cancel() {
    try {
      show(await postJson(`${base}/cancel`));
    } catch (error) {
      fill(parts.message, errorBox(error));
    }
  }

  async function clone() {
    const { name: _name, ...spec } = state.run.spec; // a new name is generated
    try {
      const made = await postJson("/v1/runs", { ...spec, project: state.run.project_id });
      location.hash = `#/runs/${encodeURIComponent(made.id)}`;
    } catch (error) {
      fill(parts.message, errorBox(error));
    }
  }

  async function refresh() {
    fill(parts.message);
    show(await getJson(base));
  }

  async function follow() {
    while (!state.stopped) {
      try {
        const version = state.run ? state.run.resource_version : null;
        const query = version == null ? {} : { wait: LONG_POLL_S, resource_version: version };
        const run = await getJson(url(base, query), { signal: state.poll.signal });
        if (!state.run || run.resource_version !== state.run.resource_version) show(run);
      } catch (error) {
        if (state.stopped) return;
        fill(parts.message, errorBox(error));
        if (error.status === 404 || error.status === 401) return;
        await new Promise((r) => setTimeout(r, 3000));
      }
    }
  }

  async function loadEvents() {
    try {
      const events = await getJson(url(`${base}/events`, { limit: 200 }));
      fill(parts.timeline, events.data.map(eventItem));
    } catch (error) {
      fill(parts.timeline, errorBox(error));
    }
  }

  async function loadMetrics(force) {
    const now = Date.now();
    if (!force && now - state.metricsAt < METRICS_EVERY_MS) return;
    state.metricsAt = now;
    try {
      const set = await getJson(url(`${base}/metrics`, { max_points: 2000 }));
      await drawCharts(set.series);
    } catch (error) {
      fill(parts.charts, errorBox(error));
    }
  }

  async function drawCharts(series) {
    const { metricChart } = await import("../chart.js"); // uPlot loads only where a chart is
    const names = Object.keys(series).sort();
    if (!names.length && !charts.size) fill(parts.charts, h("p", { class: "muted" }, "No metrics yet."));
    for (const name of names) {
      const data = [{ label: name, ...series[name] }];
      if (!charts.has(name)) {
        if (!charts.size) fill(parts.charts);
        const chart = metricChart(name, data);
        charts.set(name, chart);
        parts.charts.append(chart.el);
      }
      charts.get(name).update(data);
    }
  }

  async function loadCheckpoints() {
    try {
      const list = await getJson(`${base}/checkpoints`);
      fill(parts.checkpoints, checkpointsTable(list));
    } catch (error) {
      fill(parts.checkpoints, errorBox(error));
    }
  }

  // Outputs are kept when an attempt ends: read them again only when an attempt has ended since.
  let outputsSeen = -1;
  async function loadOutputs(run) {
    const ended = run.attempts.filter((a) => a.ended_at).length;
    if (ended === outputsSeen || parts.outputsSection.hidden) return;
    outputsSeen = ended;
    try {
      fill(parts.outputs, outputsTable(await getJson(`${base}/outputs`)));
    } catch (error) {
      // A server without the outputs API answers 404: no section rather than an error.
      if (error.status === 404) parts.outputsSection.hidden = true;
      else fill(parts.outputs, errorBox(error));
    }
  }

  async function loadProvenance() {
    if (parts.provenance.childElementCount) return; // written once, when the run starts
    try {
      fill(parts.provenance, provenanceView(await getJson(`${base}/provenance`)));
    } catch (error) {
      if (error.status !== 404) fill(parts.provenance, errorBox(error));
    }
  }

  // Metrics do not move the run's version (heartbeats do, rarely): poll them while it is active.
  const metricsTimer = setInterval(() => {
    if (state.run && isActive(state.run.status) && !document.hidden) loadMetrics(false);
  }, METRICS_EVERY_MS);
  follow();
  return () => {
    clearInterval(metricsTimer);
    state.stopped = true;
    state.poll.abort();
    logs.stop();
  };
}

function summary(run, projectName) {
  const rows = [
    ["ID", run.id], ["Project", projectName(run.project_id)],
    ["Status", run.status_reason ? `${run.status} (${run.status_reason})` : run.status],
    ["Message", run.status_message], ["Priority", run.priority],
    ["GPUs", String(gpuCount(run.spec))], ["Attempt", String(run.attempt)],
    ["Progress", progressText(run)], ["Created", formatTime(run.created_at)],
    ["Started", formatTime(run.started_at)], ["Finished", formatTime(run.finished_at)],
    ["Duration", formatDuration(runDuration(run))], ["Created by", run.created_by],
  ];
  const out = rows.filter(([, v]) => v).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]);
  out.push(h("dt", {}, "Labels"), h("dd", {}, labelPairs(run.labels).map((l) => h("span", { class: "label" }, l))));
  const metrics = metricPairs(run.latest_metrics);
  if (metrics) out.push(h("dt", {}, "Latest metrics"), h("dd", {}, metrics));
  for (const warning of run.warnings || []) out.push(h("dt", {}, "Warning"), h("dd", {}, warning));
  return out;
}

function specView(spec) {
  const yaml = toYaml(spec);
  const copy = h("button", { type: "button", id: "copy-spec" }, "Copy YAML");
  copy.addEventListener("click", async () => {
    await navigator.clipboard.writeText(yaml).catch(() => {});
    copy.textContent = "Copied";
  });
  return [copy, h("pre", { class: "spec", id: "spec-yaml", tabindex: 0, "aria-label": "spec as YAML" }, yaml)];
}

function eventItem(event) {
  const change = event.to_status ? `${event.from_status || "—"} → ${event.to_status}` : event.kind;
  return h("li", {}, h("span", { class: "muted" }, formatTime(event.created_at)), " ", change,
    event.reason ? ` (${event.reason})` : "", event.message ? h("div", { class: "muted" }, event.message) : null);
}

function table(headers, rows) {
  return h("table", {}, h("thead", {}, h("tr", {}, headers.map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c))))));
}

function attemptsTable(attempts) {
  if (!attempts.length) return h("p", { class: "muted" }, "Not started yet.");
  return table(
    ["#", "Where", "GPUs", "Admitted", "Started", "Ended", "Outcome", "Exit code", "Reason", "Steps lost"],
    attempts.map((a) => [String(a.attempt), a.where, String(a.gpus), formatTime(a.admitted_at),
      formatTime(a.started_at), formatTime(a.ended_at), a.outcome || "", a.exit_code ?? "",
      [a.reason, a.message].filter(Boolean).join(": "), a.steps_lost ?? ""]));
}

function checkpointsTable(list) {
  if (!list.length) return h("p", { class: "muted" }, "No checkpoints.");
  return table(["Step", "Attempt", "Size", "Metrics", "Created", ""],
    list.map((c) => [String(c.step), String(c.attempt), formatBytes(c.size_bytes),
      metricPairs(c.metrics), formatTime(c.created_at),
      h("button", { type: "button", "aria-label": `download checkpoint ${c.step}`, onclick: () => download(c.download_url, `checkpoint-${c.step}`) }, "Download")]));
}

function outputsTable(list) {
  if (!list.data.length) return h("p", { class: "muted" }, "No outputs.");
  return table(["Attempt", "Path", "Size", "sha256", "Created", ""],
    list.data.map((o) => [String(o.attempt), o.path, formatBytes(o.size), h("code", { class: "digest" }, o.sha256),
      formatTime(o.created_at),
      h("button", { type: "button", "aria-label": `download ${o.path}`, onclick: () => download(o.url, o.path.split("/").pop()) }, "Download")]));
}

async function download(href, name) {
  if (!isSameOrigin(href)) {
    h("a", { href, download: name, rel: "noopener" }).click(); // presigned: needs no key
    return;
  }
  const response = await request(href); // the bearer header, never the key in a URL
  const link = h("a", { href: URL.createObjectURL(await response.blob()), download: name });
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

function provenanceView(signed) {
  const verdict = h("span", { id: "verdict", "aria-live": "polite" });
  const verify = async () => {
    try {
      const result = await postJson("/v1/provenance/verify", signed);
      verdict.textContent = result.valid ? "✓ signature valid" : `✗ invalid: ${result.reason}`;
    } catch (error) {
      fill(verdict, errorBox(error));
    }
  };
  return [
    h("div", { class: "toolbar" }, h("button", { type: "button", id: "verify", onclick: verify }, "Verify"),
      verdict, h("span", { class: "muted" }, `${signed.algorithm} · key ${signed.key_id}`)),
    factsTable(signed.record),
    h("details", {}, h("summary", {}, "Signed record"), h("pre", { class: "spec", id: "provenance-record", tabindex: 0, "aria-label": "signed record as YAML" }, toYaml(signed.record))),
  ];
}

function factsTable(record) {
  const facts = provenanceFacts(record);
  if (!facts.length) return null;
  return h("table", { id: "provenance-facts" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Fact"), h("th", { scope: "col" }, "Vouched for by"))),
    h("tbody", {}, facts.map(([path, source]) => h("tr", { dataset: { source } },
      h("td", { class: "name" }, h("code", {}, path)),
      h("td", {}, h("span", { class: `tag source-${source}`, title: source === "observed" ? "the platform saw this itself" : "the run's or the spec's word" }, source))))));
}

function logPanel(base) {
  const view = new LogView();
  const attempt = h("select", { "aria-label": "attempt", id: "log-attempt" });
  const rank = h("input", { type: "number", min: 0, value: 0, id: "log-rank", "aria-label": "rank", class: "narrow" });
  const followBox = h("input", { type: "checkbox", checked: true, id: "log-follow" });
  const search = h("input", { type: "search", placeholder: "search", id: "log-search", "aria-label": "search the log", oninput: () => view.search(search.value) });
  const status = h("span", { class: "muted", id: "log-status" });
  const save = () => {
    const link = h("a", { href: URL.createObjectURL(new Blob([view.text()], { type: "text/plain" })), download: "log.txt" });
    link.click();
  };
  let controller = null;
  let known = 0;
  let chosen = false; // the user picked an attempt: do not jump to a newer one
  let retry = null;
  let stopped = false;
  let active = true; // the run may still write to its log

  async function open() {
    clearTimeout(retry);
    if (controller) controller.abort();
    controller = new AbortController();
    view.clear();
    const query = { rank: rank.value || 0, follow: followBox.checked };
    if (attempt.value) query.attempt = attempt.value;
    status.textContent = followBox.checked ? "following…" : "";
    try {
      const response = await request(url(`${base}/logs`, query), { signal: controller.signal, headers: { Accept: "text/plain" } });
      await readLines(response, (lines) => view.push(lines));
      status.textContent = `${view.lines.length} lines · end of log`;
    } catch (error) {
      if (error.name === "AbortError") return;
      status.textContent = error.status === 404 ? "No log yet." : error.message;
      // A started attempt's first line may not be stored yet: keep asking while following.
      if (error.status === 404 && followBox.checked && active && !stopped) retry = setTimeout(open, LOG_RETRY_MS);
    }
  }

  for (const input of [rank, followBox]) input.addEventListener("change", open);
  attempt.addEventListener("change", () => { chosen = true; open(); });
  const el = h("div", {},
    h("div", { class: "toolbar" }, h("label", {}, "Attempt ", attempt), h("label", {}, "Rank ", rank),
      h("label", {}, followBox, " follow"), search,
      h("button", { type: "button", onclick: save }, "Download"), status),
    view.el);

  return {
    el,
    attempts(run) {
      active = isActive(run.status);
      const started = run.attempts.filter((a) => a.started_at).map((a) => a.attempt);
      if (started.length === known) return;
      known = started.length;
      const keep = chosen ? attempt.value : String(started.at(-1));
      fill(attempt, started.map((n) => h("option", { value: n, selected: String(n) === keep }, String(n))));
      if (!chosen || !controller) open();
    },
    stop() {
      stopped = true;
      clearTimeout(retry);
      if (controller) controller.abort();
    },
  };
}
