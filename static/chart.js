// Hand-written SVG charts: the 30-second histogram, a camera's series over a range, and the
// table's sparklines. Each chart is drawn in CSS pixels (the viewBox follows the element's size)
// so that text is never stretched; hover tips are HTML elements beside the SVG.

import { WINDOW_MS, svg, niceMax, clock, dayClock, fmt, fmtMean, timeOf, num } from "./common.js";

const remPx = () => parseFloat(getComputedStyle(document.documentElement).fontSize) || 16;

/// Margins in rem (top, right, bottom, left); the left one grows with the widest value label.
function frame(chart, margins, max) {
  const width = Math.max(chart.clientWidth, 200), height = Math.max(chart.clientHeight, 120);
  const rem = remPx();
  const label = num(Math.round(max)).length;
  const [top, right, bottom, left] = margins.map((m, i) => (i === 3 ? Math.max(m, 2.1 + 0.5 * label) : m) * rem);
  chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
  return { width, height, rem, top, right, bottom, left, plotW: width - left - right, plotH: height - top - bottom };
}

function yAxis(nodes, f, max, title) {
  const { left, width, right, top, plotH, rem } = f;
  for (let i = 0; i <= 4; i++) {
    const value = (max * i) / 4, y = top + plotH - (plotH * i) / 4;
    nodes.push(svg("line", { class: "gridline", x1: left, x2: width - right, y1: y, y2: y }));
    nodes.push(svg("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, num(Math.round(value))));
  }
  nodes.push(svg("line", { class: "axis", x1: left, x2: left, y1: top, y2: top + plotH }));
  nodes.push(svg("line", { class: "axis", x1: left, x2: width - right, y1: top + plotH, y2: top + plotH }));
  nodes.push(svg("text", { class: "axis-title", x: 0.9 * rem, y: top + plotH / 2, "text-anchor": "middle",
    transform: `rotate(-90 ${0.9 * rem} ${top + plotH / 2})` }, title));
}

// ---- histogram: people counted per 30-second window ----------------------------------------------

/// Draws `count` windows ending with the one holding `nowMs`; missing windows are zeros.
/// Returns the geometry for the hover tip.
export function drawHistogram(chart, windowsByStart, nowMs, count) {
  const lastStart = Math.floor(nowMs / WINDOW_MS) * WINDOW_MS;
  const windows = [];
  for (let i = count - 1; i >= 0; i--) {
    const start = lastStart - i * WINDOW_MS;
    windows.push(windowsByStart.get(start) ?? { start_ms: start, people: 0, photos: 0 });
  }
  const max = niceMax(Math.max(...windows.map((w) => w.people)));
  const f = frame(chart, [0.8, 2.2, 2.8, 3.6], max);
  const slot = f.plotW / windows.length;
  const nodes = [];
  yAxis(nodes, f, max, "people counted");
  const labelEvery = [5, 10, 15, 30].find((m) => (m * 2 * slot) >= 4.5 * f.rem) ?? 30;
  windows.forEach((w, i) => {
    const h = (f.plotH * w.people) / max;
    const bar = svg("rect", { class: "bar", x: f.left + i * slot + 1, y: f.top + f.plotH - h,
      width: Math.max(1, slot - 2), height: h });
    bar.dataset.start = w.start_ms;
    bar.dataset.people = w.people;
    nodes.push(bar);
    const t = new Date(w.start_ms);
    if (t.getSeconds() === 0 && t.getMinutes() % labelEvery === 0) {
      const x = f.left + i * slot;
      nodes.push(svg("line", { class: "axis", x1: x, x2: x, y1: f.top + f.plotH, y2: f.top + f.plotH + 4 }));
      nodes.push(svg("text", { x, y: f.top + f.plotH + 1.1 * f.rem, "text-anchor": "middle" }, clock(w.start_ms)));
    }
  });
  nodes.push(svg("text", { class: "axis-title", x: f.left + f.plotW / 2, y: f.height - 0.3 * f.rem,
    "text-anchor": "middle" }, "time (each bar: 30 seconds)"));
  chart.replaceChildren(...nodes);
  return { windows, left: f.left, slot };
}

/// The value on hover: the whole column answers, so empty windows can be read too.
export function histogramHover(chart, tip, geometry) {
  let pointer = null;
  const show = (event) => {
    pointer = event;
    const g = geometry();
    const box = chart.getBoundingClientRect();
    const w = g.windows[Math.floor((event.clientX - box.left - g.left) / g.slot)];
    if (!w) {
      tip.hidden = true;
      return;
    }
    tip.textContent = `${timeOf(w.start_ms)} – ${timeOf(w.start_ms + WINDOW_MS)}: ` +
      `${num(w.people)} people in ${num(w.photos)} photos`;
    tip.hidden = false;
    placeTip(tip, event.clientX - box.left, box.width);
    for (const bar of chart.querySelectorAll(".bar")) bar.classList.toggle("hover", Number(bar.dataset.start) === w.start_ms);
  };
  const hide = () => {
    pointer = null;
    tip.hidden = true;
    for (const bar of chart.querySelectorAll(".bar.hover")) bar.classList.remove("hover");
  };
  chart.addEventListener("pointermove", show);
  chart.addEventListener("pointerleave", hide);
  return { refresh: () => pointer && show(pointer) };
}

function placeTip(tip, x, width) {
  const half = tip.offsetWidth / 2;
  tip.style.left = `${Math.min(Math.max(x, half), width - half)}px`;
}

// ---- a camera's (or group's) series ------------------------------------------------------------

const TICKS = [5, 10, 15, 30, 60, 120, 180, 360, 720, 1440].map((m) => m * 60_000);

/// Steps as bars (max per step), a line (mean) and points (last), with the thresholds that fit.
/// `limits`: [{value, label, kind}] horizontal lines (capacity, warning, critical).
export function drawSeries(chart, series, limits = []) {
  const steps = series.steps;
  const stepMs = series.step_ms;
  const from = steps.length ? steps[0].start_ms : series.from_ms;
  const to = steps.length ? steps[steps.length - 1].start_ms + stepMs : series.to_ms;
  const dataMax = Math.max(0, ...steps.map((s) => s.max ?? 0));
  const shownLimits = limits.filter((l) => l.value !== null && l.value !== undefined &&
    l.value > 0 && (dataMax === 0 || l.value <= dataMax * 1.6));
  const max = niceMax(Math.max(dataMax, ...shownLimits.map((l) => l.value)));
  const f = frame(chart, [1.0, 1.6, 2.9, 3.8], max);
  const slot = f.plotW / Math.max(1, steps.length);
  const x = (ms) => f.left + ((ms - from) / (to - from)) * f.plotW;
  const y = (v) => f.top + f.plotH - (f.plotH * v) / max;
  const nodes = [];
  yAxis(nodes, f, max, "people");

  // Time ticks on round local times, as far apart as the width allows.
  const span = to - from;
  const tick = TICKS.find((t) => (t / span) * f.plotW >= 5.5 * f.rem) ?? 1440 * 60_000;
  const tz = new Date(from).getTimezoneOffset() * 60_000;
  const multiDay = span > 25 * 3_600_000;
  for (let t = Math.ceil((from - tz) / tick) * tick + tz; t <= to; t += tick) {
    const px = x(t);
    nodes.push(svg("line", { class: "axis", x1: px, x2: px, y1: f.top + f.plotH, y2: f.top + f.plotH + 4 }));
    nodes.push(svg("line", { class: "gridline vertical", x1: px, x2: px, y1: f.top, y2: f.top + f.plotH }));
    nodes.push(svg("text", { x: px, y: f.top + f.plotH + 1.15 * f.rem, "text-anchor": "middle" },
      multiDay ? dayClock(t) : clock(t)));
  }

  const band = svg("rect", { class: "hover-band", x: 0, y: f.top, width: Math.max(1, slot), height: f.plotH, visibility: "hidden" });
  nodes.push(band);
  let path = "";
  let pen = false;
  steps.forEach((s, i) => {
    const x0 = f.left + i * slot;
    if (s.max === null || s.max === undefined) {
      pen = false;
      return;
    }
    const bar = svg("rect", { class: "bar", x: x0 + Math.min(1, slot * 0.1), y: y(s.max),
      width: Math.max(1, slot - 2 * Math.min(1, slot * 0.1)), height: f.top + f.plotH - y(s.max) });
    bar.dataset.start = s.start_ms;
    bar.dataset.max = s.max;
    nodes.push(bar);
    if (s.mean !== null && s.mean !== undefined) {
      path += `${pen ? "L" : "M"}${(x0 + slot / 2).toFixed(1)},${y(s.mean).toFixed(1)}`;
      pen = true;
    }
  });
  if (path) nodes.push(svg("path", { class: "mean", d: path }));
  steps.forEach((s, i) => {
    if (s.last === null || s.last === undefined) return;
    const point = svg("circle", { class: "point", cx: f.left + i * slot + slot / 2, cy: y(s.last),
      r: Math.max(1.5, Math.min(3.5, slot / 3)) });
    point.dataset.start = s.start_ms;
    point.dataset.last = s.last;
    nodes.push(point);
  });
  for (const l of shownLimits) {
    const py = y(l.value);
    nodes.push(svg("line", { class: `limit ${l.kind}`, x1: f.left, x2: f.width - f.right, y1: py, y2: py }));
    nodes.push(svg("text", { class: `limit-label ${l.kind}`, x: f.width - f.right - 4, y: py - 5, "text-anchor": "end" },
      `${l.label} ${num(l.value)}`));
  }
  if (!steps.some((s) => s.photos > 0)) {
    nodes.push(svg("text", { class: "no-data", x: f.left + f.plotW / 2, y: f.top + f.plotH / 2,
      "text-anchor": "middle" }, "no photos in this range"));
  }
  nodes.push(svg("text", { class: "axis-title", x: f.left + f.plotW / 2, y: f.height - 0.3 * f.rem,
    "text-anchor": "middle" }, `time (each step: ${humanStep(stepMs)})`));
  chart.replaceChildren(...nodes);
  return { steps, left: f.left, slot, stepMs, band, multiDay };
}

export function humanStep(ms) {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000} h`;
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  return `${Math.round(ms / 1000)} s`;
}

export function seriesHover(chart, tip, geometry) {
  let pointer = null;
  const show = (event) => {
    pointer = event;
    const g = geometry();
    if (!g) return;
    const box = chart.getBoundingClientRect();
    const i = Math.floor((event.clientX - box.left - g.left) / g.slot);
    const s = g.steps[i];
    if (!s) {
      hide();
      return;
    }
    const when = `${g.multiDay ? dayClock(s.start_ms) : clock(s.start_ms)} – ${clock(s.start_ms + g.stepMs)}`;
    tip.textContent = s.photos > 0
      ? `${when}: last ${fmt(s.last)} · max ${fmt(s.max)} · mean ${fmtMean(s.mean)} people (${fmt(s.photos)} photo${s.photos === 1 ? "" : "s"})`
      : `${when}: no photos`;
    tip.hidden = false;
    placeTip(tip, event.clientX - box.left, box.width);
    g.band.setAttribute("x", g.left + i * g.slot);
    g.band.setAttribute("visibility", "visible");
  };
  const hide = () => {
    pointer = null;
    tip.hidden = true;
    geometry()?.band.setAttribute("visibility", "hidden");
  };
  chart.addEventListener("pointermove", show);
  chart.addEventListener("pointerleave", hide);
  return { refresh: () => pointer && show(pointer) };
}

// ---- sparkline -----------------------------------------------------------------------------------

const SPARK_W = 72, SPARK_H = 20;

/// An inline SVG for a table cell; `update` it with 12 values (or null).
export function sparkline() {
  const node = svg("svg", { class: "sparkline", viewBox: `0 0 ${SPARK_W} ${SPARK_H}`, role: "img",
    preserveAspectRatio: "none" });
  node.append(svg("polyline", { class: "line", points: "" }), svg("circle", { class: "dot", r: 1.8, cx: -5, cy: -5 }));
  node.dataset.values = "";
  return node;
}

export function updateSparkline(node, values) {
  const key = values ? values.join(",") : "";
  if (node.dataset.values === key) return;
  node.dataset.values = key;
  if (!values || values.length === 0) {
    node.firstChild.setAttribute("points", "");
    node.lastChild.setAttribute("cx", -5);
    node.setAttribute("aria-label", "no photos in the last hour");
    return;
  }
  const max = Math.max(1, ...values);
  const dx = SPARK_W / Math.max(1, values.length - 1);
  const pts = values.map((v, i) => `${(i * dx).toFixed(1)},${(SPARK_H - 2 - (v / max) * (SPARK_H - 4)).toFixed(1)}`);
  node.firstChild.setAttribute("points", pts.join(" "));
  const [cx, cy] = pts[pts.length - 1].split(",");
  node.lastChild.setAttribute("cx", cx);
  node.lastChild.setAttribute("cy", cy);
  node.setAttribute("aria-label", `last hour, 5-minute steps: ${values.join(", ")}`);
}
