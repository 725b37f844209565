// Formatting and the YAML view.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  admissionOrder, formatBytes, formatDuration, gpuCount, labelPairs, metricPairs, progressText, provenanceFacts, queueText, runDuration,
  smooth,
} from "../static/js/format.js";
import { flatten, toYaml } from "../static/js/yaml.js";

test("durations read as a person would say them", () => {
  assert.equal(formatDuration(42), "42s");
  assert.equal(formatDuration(185), "3m 05s");
  assert.equal(formatDuration(3720), "1h 02m");
  assert.equal(formatDuration(90000), "1d 01h");
  assert.equal(formatDuration(null), "");
});

test("a run's duration runs to now until it finishes", () => {
  const run = { started_at: "2026-01-01T00:00:00Z", finished_at: null };
  assert.equal(runDuration(run, Date.parse("2026-01-01T00:01:00Z")), 60);
  assert.equal(runDuration({ ...run, finished_at: "2026-01-01T00:00:30Z" }), 30);
  assert.equal(runDuration({ started_at: null }), null);
});

test("GPUs are nodes × GPUs per node", () => {
  assert.equal(gpuCount({ compute: { nodes: 2, gpus_per_node: 8 } }), 16);
  assert.equal(gpuCount({}), 0);
});

test("the queue answer reads like the issue's example", () => {
  const queue = { position: 3, reason: "quota_exhausted", detail: "16 of 16 GPUs of org acme in use" };
  assert.equal(queueText(queue), "#3 — quota_exhausted: 16 of 16 GPUs of org acme in use");
  assert.equal(queueText(null), "");
});

test("progress shows a percentage and an ETA while active", () => {
  const now = Date.parse("2026-01-01T00:00:00Z");
  const run = { status: "running", progress: { step: 5, fraction: 0.5 }, estimated_finish: "2026-01-01T00:01:05Z" };
  assert.equal(progressText(run, now), "50% · ETA 1m 05s");
  assert.equal(progressText({ ...run, status: "succeeded" }, now), "50%");
});

test("labels, bytes and smoothing", () => {
  assert.deepEqual(labelPairs({ b: "2", a: "" }), ["a", "b=2"]);
  assert.equal(formatBytes(1536), "1.5 KiB");
  assert.deepEqual(smooth([1, 3, null], 0.5), [1, 2, null]);
  assert.deepEqual(smooth([1, 3], 0), [1, 3]);
});

test("the spec's YAML quotes whatever YAML would read otherwise", () => {
  const yaml = toYaml({ name: "a", command: ["python", "-c", "print('x: y')"], env: { X: "<b>", N: "3", T: "true" }, compute: { nodes: 2 }, labels: {} });
  assert.equal(yaml, [
    "name: a", "command:", "  - python", "  - -c", "  - \"print('x: y')\"", "env:",
    "  X: \"<b>\"", "  N: \"3\"", "  T: \"true\"", "compute:", "  nodes: 2", "labels: {}", "",
  ].join("\n"));
});

test("flatten gives JSON-pointer paths for a spec diff", () => {
  assert.deepEqual(flatten({ a: { b: 1 }, c: [2], d: {} }), { "/a/b": 1, "/c/0": 2, "/d": {} });
});

test("each provenance fact is listed by its path with who vouches for it", () => {
  const record = {
    run_id: "run_1",
    spec: { source: "reported", name: "x" },
    datasets: { pile: { source: "observed", digest: "sha256:ab" } },
    attempts: [{ where: { source: "observed", node: "n1" }, image: { source: "reported", used: true } }],
  };
  assert.deepEqual(provenanceFacts(record), [
    ["/spec", "reported"], ["/datasets/pile", "observed"],
    ["/attempts/0/where", "observed"], ["/attempts/0/image", "reported"],
  ]);
  assert.deepEqual(provenanceFacts(null), []);
});

test("metric values read at four significant digits, integers whole", () => {
  assert.equal(metricPairs({ loss: 1 / 6, step: 3, acc: 0.5 }), "loss=0.1667  step=3  acc=0.5");
  assert.equal(metricPairs(null), "");
});

test("waiting runs are listed by queue position, then by when they were queued", () => {
  const runs = [
    { id: "c", queued_at: "2026-01-01T00:00:03Z", queue: null },
    { id: "b", queued_at: "2026-01-01T00:00:01Z", queue: { position: 2 } },
    { id: "a", queued_at: "2026-01-01T00:00:02Z", queue: { position: 1 } },
    { id: "d", created_at: "2026-01-01T00:00:00Z", queue: null },
  ];
  assert.deepEqual(admissionOrder(runs).map((r) => r.id), ["a", "b", "d", "c"]);
});
