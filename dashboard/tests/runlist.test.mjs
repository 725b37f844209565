// The run table's model: filters in the URL, matching, and merging change-feed pages.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  baselineVersion, filtersFromQuery, filtersToQuery, matches, mergeChanges, newestFirst,
} from "../static/js/runlist.js";

const run = (id, created, version, extra = {}) => ({
  id, name: `n-${id}`, project_id: "prj_1", status: "running", labels: {},
  created_at: created, resource_version: version, ...extra,
});

test("filters survive a round trip through the URL query", () => {
  const filters = { status: ["running", "queued"], project: "nlp", labels: "team=a,gpu", name_prefix: "ll" };
  const back = filtersFromQuery(new URLSearchParams(filtersToQuery(filters).toString()));
  assert.deepEqual(back, filters);
});

test("empty filters leave the query empty", () => {
  assert.equal(filtersToQuery({ status: [], project: "", labels: "" }).toString(), "");
});

test("matching follows status, project (name or id), labels, prefix and created range", () => {
  const r = run("a", "2026-01-02T00:00:00Z", 1, { labels: { team: "nlp", gpu: "" } });
  assert.ok(matches(r, { status: ["running"] }));
  assert.ok(!matches(r, { status: ["queued"] }));
  assert.ok(matches(r, { project: "nlp" }, { nlp: "prj_1" }));
  assert.ok(!matches(r, { project: "cv" }, { cv: "prj_2" }));
  assert.ok(matches(r, { labels: "team=nlp,gpu" }));
  assert.ok(!matches(r, { labels: "team=cv" }));
  assert.ok(matches(r, { name_prefix: "n-" }) && !matches(r, { name_prefix: "x" }));
  assert.ok(matches(r, { created_after: "2026-01-01T00:00:00Z", created_before: "2026-01-03T00:00:00Z" }));
  assert.ok(!matches(r, { created_before: "2026-01-02T00:00:00Z" }));
  assert.ok(!matches({ ...r, deleted: true }, {}));
});

test("a new run joins the first page in order; a changed one replaces its row", () => {
  const rows = [run("b", "2026-01-02T00:00:00Z", 5), run("a", "2026-01-01T00:00:00Z", 3)];
  const merged = mergeChanges(rows, [run("c", "2026-01-03T00:00:00Z", 6), run("a", "2026-01-01T00:00:00Z", 7, { status: "succeeded" })], { status: [] });
  assert.ok(merged.changed);
  assert.deepEqual(merged.rows.map((r) => r.id), ["c", "b", "a"]);
  assert.equal(merged.rows[2].status, "succeeded");
});

test("later pages never grow, and a stale copy never overwrites a newer row", () => {
  const rows = [run("a", "2026-01-01T00:00:00Z", 9)];
  const merged = mergeChanges(rows, [run("z", "2026-02-01T00:00:00Z", 10), run("a", "2026-01-01T00:00:00Z", 4, { status: "queued" })], { status: [] }, { firstPage: false });
  assert.equal(merged.changed, false);
  assert.equal(merged.rows, rows);
});

test("a run that stops matching, or is deleted, leaves the table", () => {
  const rows = [run("a", "2026-01-01T00:00:00Z", 1), run("b", "2026-01-01T00:00:00Z", 2)];
  const merged = mergeChanges(rows, [run("a", "2026-01-01T00:00:00Z", 3, { status: "succeeded" }), run("b", "2026-01-01T00:00:00Z", 4, { deleted: true })], { status: ["running"] });
  assert.deepEqual(merged.rows, []);
});

test("newest first, ties broken by id; the feed starts at the newest version seen", () => {
  const list = [run("a", "2026-01-01T00:00:00Z", 1), run("c", "2026-01-02T00:00:00Z", 2), run("b", "2026-01-02T00:00:00Z", 8)];
  assert.deepEqual(list.sort(newestFirst).map((r) => r.id), ["c", "b", "a"]);
  assert.equal(baselineVersion(list, []), 8);
  assert.equal(baselineVersion([], []), 0);
});
