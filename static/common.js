// Shared by the dashboard's modules: the page's state (what the live feed and the REST API told
// us), DOM helpers, and formatting. Text from the server only ever goes into textContent or
// attributes, never into HTML.

export const STALE_AFTER_MS = 5 * 60_000;
export const WINDOW_MS = 30_000;
const SVG_NS = "http://www.w3.org/2000/svg";

export const state = {
  cameras: new Map(), // camera id -> CameraView (the newest one seen)
  groups: new Map(), // group name -> {group, cameras, people_now, capacity, level}
  windows: new Map(), // window start ms -> {start_ms, people, photos}, all cameras
  totals: null,
  clockOffsetMs: 0, // server time - browser time
  snapshotSeen: false,
};

export const serverNow = () => Date.now() + state.clockOffsetMs;
export const $ = (id) => document.getElementById(id);

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

export function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

/// Sets a node's text only when it changes (each write costs a style/layout pass later).
export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

// Formatters made once: Number#toLocaleString and Date#toLocaleTimeString build one per call,
// which costs tens of milliseconds over 1,000 cameras.
const NUMBER = new Intl.NumberFormat();
const MEAN = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const TIME = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit", second: "2-digit" });
const CLOCK = new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit" });
const DAY_CLOCK = new Intl.DateTimeFormat([], { weekday: "short", hour: "2-digit", minute: "2-digit" });

/// A whole number as the reader's locale writes it.
export const num = (n) => NUMBER.format(n);
export const fmt = (n) => (n === null || n === undefined ? "—" : NUMBER.format(n));
export const fmtMean = (n) => (n === null || n === undefined ? "—" : MEAN.format(n));

export function formatAge(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export const timeOf = (ms) => TIME.format(ms);
export const clock = (ms) => CLOCK.format(ms);
export const dayClock = (ms) => DAY_CLOCK.format(ms);

export function formatChange(change) {
  if (change === null || change === undefined) return { text: "—", dir: "none" };
  if (change > 0) return { text: `▲ +${NUMBER.format(change)}`, dir: "up" };
  if (change < 0) return { text: `▼ −${NUMBER.format(-change)}`, dir: "down" };
  return { text: "± 0", dir: "flat" };
}

export const LEVELS = ["normal", "warning", "critical"];
export const levelRank = (level) => Math.max(0, LEVELS.indexOf(level ?? "normal"));

/// A level badge: colour AND text (never colour alone).
export function levelBadge(level, className = "") {
  const node = el("span", `badge level ${className}`.trim());
  updateLevelBadge(node, level);
  return node;
}

export function updateLevelBadge(node, level) {
  const l = LEVELS.includes(level) ? level : "normal";
  if (node.dataset.level !== l) {
    node.dataset.level = l;
    node.textContent = l.toUpperCase();
  }
}

/// A round top for a value axis with four gridlines: each step a whole 1, 2 or 5 × 10^n
/// (or 25 × 10^n), so that the labels are exact.
export function niceMax(value) {
  const raw = Math.max(1, value / 4);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) {
    const step = m * magnitude;
    if (step >= raw && Number.isInteger(step)) return 4 * step;
  }
  return 40 * magnitude;
}

export function cameraPath(id) {
  return `/cameras/${encodeURIComponent(id)}`;
}

/// GET a JSON document; throws an Error carrying the server's `{error, message}` on failure.
export async function getJson(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error(body?.message ?? `HTTP ${response.status}`);
    error.status = response.status;
    error.code = body?.error;
    throw error;
  }
  return body;
}

/// A stand-in for structuredClone where objects are plain JSON.
export const copy = (value) => JSON.parse(JSON.stringify(value));

/// Timing marks for whoever measures the page (tests, the lead's headless runs). Only the latest
/// mark of each name is kept, so that a long-running wall screen does not collect millions.
export const crowdPage = (window.crowdPage = {
  marks: {},
  liveUpdates: 0,
  lastLiveUpdate: null, // {camera, applyMs}
  view: null,
  rendered: 0,
});

export function mark(name, detail) {
  performance.clearMarks(name);
  const m = performance.mark(name, detail === undefined ? undefined : { detail });
  crowdPage.marks[name] = m.startTime;
  return m.startTime;
}
