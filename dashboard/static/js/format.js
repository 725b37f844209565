// Pure formatting helpers: no DOM, so node's test runner checks them (tests/format.test.mjs).

const ACTIVE = new Set(["pending", "queued", "starting", "running", "stopping"]);

export function isActive(status) {
  return ACTIVE.has(status);
}

/** "1h 02m", "3m 05s", "42s" for a number of seconds; "" for null. */
export function formatDuration(seconds) {
  if (seconds == null || !Number.isFinite(seconds) || seconds < 0) return "";
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n) => String(n).padStart(2, "0");
  if (d) return `${d}d ${pad(h)}h`;
  if (h) return `${h}h ${pad(m)}m`;
  if (m) return `${m}m ${pad(s % 60)}s`;
  return `${s}s`;
}

/** How long a run has run: started → finished, or → now while it still runs. */
export function runDuration(run, now = Date.now()) {
  if (!run.started_at) return null;
  const end = run.finished_at ? Date.parse(run.finished_at) : now;
  return (end - Date.parse(run.started_at)) / 1000;
}

/** "2026-12-03 23:41:07" in local time; "" for null. */
export function formatTime(iso) {
  if (!iso) return "";
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  const date = `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())}`;
  return `${date} ${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`;
}

/** Total GPUs a run asks for: nodes × GPUs per node. */
export function gpuCount(spec) {
  const compute = (spec && spec.compute) || {};
  return (compute.nodes ?? 1) * (compute.gpus_per_node ?? 0);
}

/** "succeeded", "failed · exit_code", "queued · quota_exhausted". */
export function statusText(run) {
  return run.status_reason ? `${run.status} · ${run.status_reason}` : run.status;
}

/** The queue answer: "#3 — quota_exhausted: 16 of 16 GPUs of org acme in use". */
export function queueText(queue) {
  if (!queue) return "";
  const place = queue.position != null ? `#${queue.position} — ` : "";
  return `${place}${queue.reason}: ${queue.detail}`;
}

/** Waiting runs in admission order: by their queue answer's position (runs without one last),
 * then by when they were queued. */
export function admissionOrder(runs) {
  const place = (r) => r.queue?.position ?? Number.POSITIVE_INFINITY;
  const since = (r) => r.queued_at || r.created_at || "";
  return [...runs].sort((a, b) => place(a) - place(b) || since(a).localeCompare(since(b)));
}

/** "45% · ETA 3m 05s" from a run's heartbeat progress and estimated finish. */
export function progressText(run, now = Date.now()) {
  const p = run.progress;
  if (!p) return "";
  const part = p.fraction != null ? `${Math.round(p.fraction * 100)}%` : `step ${p.step}`;
  if (!run.estimated_finish || !isActive(run.status)) return part;
  const eta = (Date.parse(run.estimated_finish) - now) / 1000;
  return eta > 0 ? `${part} · ETA ${formatDuration(eta)}` : part;
}

export function formatBytes(n) {
  if (n == null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** Labels as "k=v" strings, sorted by key. */
export function labelPairs(labels) {
  return Object.keys(labels || {})
    .sort()
    .map((k) => (labels[k] === "" ? k : `${k}=${labels[k]}`));
}

/** Exponential moving average with weight `alpha` in [0, 1): 0 leaves the series as it is. */
export function smooth(values, alpha) {
  if (!alpha) return values.slice();
  let last = null;
  return values.map((v) => {
    if (v == null || !Number.isFinite(v)) return v;
    last = last == null ? v : alpha * last + (1 - alpha) * v;
    return last;
  });
}

/** Every fact of the record that says who vouches for it (`source`), by its path. */
export function provenanceFacts(record, path = "") {
  if (record === null || typeof record !== "object") return [];
  const here = !Array.isArray(record) && typeof record.source === "string" ? [[path || "/", record.source]] : [];
  return here.concat(Object.entries(record).flatMap(([k, v]) => provenanceFacts(v, `${path}/${k}`)));
}

/** A metric value as a person reads it: integers whole, others to 4 significant digits. */
export function formatNumber(value) {
  if (typeof value !== "number" || !Number.isFinite(value) || Number.isInteger(value)) return String(value);
  return String(Number(value.toPrecision(4)));
}

/** `{loss: 0.16666, step: 3}` → "loss=0.1667 step=3" */
export function metricPairs(values) {
  return Object.entries(values || {}).map(([k, v]) => `${k}=${formatNumber(v)}`).join("  ");
}
