// Metric charts on uPlot (vendored, static/vendor/uplot): drag to zoom, double-click to reset,
// hover for values in the legend; a log-scale toggle and EMA smoothing on top.
import uPlot from "../vendor/uplot/uPlot.esm.js";
import { h } from "./dom.js";
import { smooth } from "./format.js";

const COLORS = ["#2457c5", "#d1495b", "#2a9d8f", "#e09f3e", "#7b2cbf", "#6c757d", "#00a6fb", "#8ac926"];

/** Align several (steps, values) series on the union of their steps (nulls where absent). */
export function align(seriesList) {
  const steps = [...new Set(seriesList.flatMap((s) => s.steps))].sort((a, b) => a - b);
  const index = new Map(steps.map((s, i) => [s, i]));
  const columns = seriesList.map((s) => {
    const column = new Array(steps.length).fill(null);
    s.steps.forEach((step, i) => { column[index.get(step)] = s.values[i]; });
    return column;
  });
  return [steps, ...columns];
}

/**
 * A chart of named series: [{label, steps, values}]. Returns {el, update(series)}; the
 * controls (log scale, smoothing) redraw it from the raw data.
 */
export function metricChart(title, series, { width = 640, height = 260 } = {}) {
  let raw = series;
  let plot = null;
  let zoomed = false; // a live update keeps the user's zoom instead of resetting the scales
  const holder = h("div", { class: "chart-plot" });
  const log = h("input", { type: "checkbox", onchange: () => draw(true) });
  const smoothing = h("input", { type: "range", min: 0, max: 0.99, step: 0.01, value: 0, onchange: () => draw(false), "aria-label": "smoothing" });
  const el = h("div", { class: "chart", dataset: { metric: title } },
    h("div", { class: "toolbar" }, h("strong", {}, title),
      h("label", {}, log, " log scale"), h("label", {}, "smoothing ", smoothing)),
    holder);

  function data() {
    const [steps, ...columns] = align(raw);
    const alpha = Number(smoothing.value);
    return [steps, ...columns.map((c) => smooth(c, alpha))];
  }

  function draw(rebuild) {
    el.dataset.points = String(raw.reduce((n, s) => n + s.steps.length, 0)); // for tests, readers
    el.dataset.scale = log.checked ? "log" : "linear";
    if (plot && !rebuild && plot.series.length === raw.length + 1) {
      plot.setData(data(), !zoomed);
      return;
    }
    zoomed = false;
    if (plot) plot.destroy();
    const opts = {
      width: Math.min(width, holder.clientWidth || width), height,
      scales: { x: { time: false }, y: { distr: log.checked ? 3 : 1 } },
      axes: [{ label: "step", stroke: "currentColor" }, { stroke: "currentColor" }],
      series: [{ label: "step" }, ...raw.map((s, i) => ({
        label: s.label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true,
      }))],
      cursor: { drag: { x: true, y: false } },
      hooks: {
        setSelect: [(u) => { if (u.select.width > 0) zoomed = true; }],
        setScale: [(u, key) => {
          if (key === "x") el.dataset.xRange = `${u.scales.x.min}..${u.scales.x.max}`; // for tests
        }],
      },
    };
    plot = new uPlot(opts, data(), holder);
    plot.over.addEventListener("dblclick", () => { zoomed = false; }); // uPlot resets the zoom
  }

  return {
    el,
    update(next) {
      const rebuild = !plot || next.length !== raw.length;
      raw = next;
      draw(rebuild);
    },
  };
}
