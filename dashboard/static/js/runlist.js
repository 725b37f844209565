// The run table's model, pure: filters ⇄ URL query, the filters as the API's query, whether a
// run matches them, and merging change-feed pages into the rows shown (tests/runlist.test.mjs).

export const FILTER_KEYS = [
  "status",
  "project",
  "labels",
  "name_prefix",
  "created_after",
  "created_before",
];

/** Filters from a URL query: {status: ["running", ...], project: "nlp", ...}. */
export function filtersFromQuery(params) {
  const filters = { status: params.getAll("status").filter(Boolean) };
  for (const key of FILTER_KEYS.slice(1)) {
    const value = params.get(key);
    if (value) filters[key] = value;
  }
  return filters;
}

/** The URL query (and the API's query) of filters; empty filters are left out. */
export function filtersToQuery(filters) {
  const params = new URLSearchParams();
  for (const s of filters.status || []) params.append("status", s);
  for (const key of FILTER_KEYS.slice(1)) {
    if (filters[key]) params.set(key, filters[key]);
  }
  return params;
}

/** A datetime-local value ("2026-12-03T10:00") as the API's RFC 3339 with a zone. */
export function toApiTime(local) {
  if (!local) return "";
  const t = new Date(local);
  return Number.isNaN(t.getTime()) ? "" : t.toISOString();
}

function parseSelector(text) {
  const equal = {};
  const present = [];
  for (const part of (text || "").split(",")) {
    const item = part.trim();
    if (!item) continue;
    const at = item.indexOf("=");
    if (at < 0) present.push(item);
    else equal[item.slice(0, at).trim()] = item.slice(at + 1).trim();
  }
  return { equal, present };
}

/** Whether a run belongs in the table under these filters (as the server would decide).
 * `projectIds` maps a project name to its id, since a filter may name either. */
export function matches(run, filters, projectIds = {}) {
  if (run.deleted) return false;
  if (filters.status?.length && !filters.status.includes(run.status)) return false;
  if (filters.project) {
    const id = projectIds[filters.project] || filters.project;
    if (run.project_id !== id) return false;
  }
  if (filters.name_prefix && !run.name.startsWith(filters.name_prefix)) return false;
  const { equal, present } = parseSelector(filters.labels);
  const labels = run.labels || {};
  for (const [k, v] of Object.entries(equal)) if (labels[k] !== v) return false;
  for (const k of present) if (!(k in labels)) return false;
  const created = Date.parse(run.created_at);
  if (filters.created_after && created < Date.parse(filters.created_after)) return false;
  if (filters.created_before && created >= Date.parse(filters.created_before)) return false;
  return true;
}

/** The list's order: newest first, ties by id (as the server's keyset pages). */
export function newestFirst(a, b) {
  if (a.created_at !== b.created_at) return a.created_at < b.created_at ? 1 : -1;
  if (a.id === b.id) return 0;
  return a.id < b.id ? 1 : -1;
}

/**
 * Merge changed runs into the rows shown. A changed run replaces its row when it still matches
 * and is not older than the row; one that no longer matches (or was deleted) leaves. New matching
 * runs are added only on the first page (`firstPage`), where newer runs belong; later pages
 * keep their rows and never grow. Returns {rows, changed}.
 */
export function mergeChanges(rows, changes, filters, { firstPage = true, projectIds = {} } = {}) {
  const byId = new Map(rows.map((r) => [r.id, r]));
  let changed = false;
  for (const run of changes) {
    const old = byId.get(run.id);
    if (old && old.resource_version > run.resource_version) continue; // a stale copy
    if (!matches(run, filters, projectIds)) {
      if (old) changed = byId.delete(run.id) || changed;
      continue;
    }
    if (old || firstPage) {
      byId.set(run.id, run);
      changed = true;
    }
  }
  if (!changed) return { rows, changed };
  return { rows: [...byId.values()].sort(newestFirst), changed };
}

/** The feed's starting point: the newest version among the runs already read. */
export function baselineVersion(...pages) {
  let version = 0;
  for (const runs of pages) for (const r of runs) version = Math.max(version, r.resource_version);
  return version;
}
