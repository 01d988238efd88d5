// The live dashboard, entry module. One WebSocket (/ws/live) brings a snapshot of the whole state
// on connect and then one message per new count; the page reconnects by itself and every message
// carries absolute figures, so a message seen twice or a reconnect never skews what is shown.
// Two pages in one document: the overview (/) and a camera's own page (/cameras/<id>), switched
// with history.pushState. Everything user-provided is rendered with textContent, never as HTML.
//
// Modules: common.js (state, helpers), chart.js (SVG charts), overview.js (grid, table, groups,
// export), camera.js (a camera's page).

import {
  state, $, el, setText, fmt, num, timeOf, levelBadge, getJson, cameraPath, serverNow, mark, crowdPage,
} from "./common.js";
import { drawHistogram, histogramHover } from "./chart.js";
import * as overview from "./overview.js";
import * as camera from "./camera.js";

const WINDOWS_SHOWN = 60; // 30 minutes
const ALERTS_KEPT = 100;

// ---- routing -------------------------------------------------------------------------------------

let overviewUrl = "/";
let overviewScroll = 0;

function cameraFromPath(path) {
  const m = /^\/cameras\/([^/]+)\/?$/.exec(path);
  return m ? decodeURIComponent(m[1]) : null;
}

function route() {
  const params = new URLSearchParams(location.search);
  const id = cameraFromPath(location.pathname);
  const onCamera = id !== null;
  if (onCamera && $("camera-page").hidden) overviewScroll = window.scrollY;
  $("overview").hidden = onCamera;
  $("camera-page").hidden = !onCamera;
  document.body.dataset.page = onCamera ? "camera" : "overview";
  if (onCamera) {
    camera.show(id, params);
    window.scrollTo(0, 0);
  } else {
    camera.hide();
    document.title = "crowd — live people counts";
    overview.setParams(params);
    setScope(params.get("scope") ?? "", false);
    overviewUrl = location.pathname + location.search;
    $("back-link").href = overviewUrl;
    scheduleHistogram();
    requestAnimationFrame(() => window.scrollTo(0, overviewScroll));
  }
}

function navigate(url, replace = false) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  route();
}

/// The overview's options changed (view, sort, filter, scope): keep them in the URL.
function writeOverviewUrl() {
  if (!$("overview").hidden) {
    const q = new URLSearchParams(overview.params());
    if (scope.key) q.set("scope", scope.key);
    const url = q.toString() ? `/?${q}` : "/";
    if (url !== location.pathname + location.search) history.replaceState(null, "", url);
    overviewUrl = url;
    $("back-link").href = url;
  }
}

document.addEventListener("click", (event) => {
  const a = event.target.closest?.("a[data-nav]");
  if (!a || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey ||
      event.shiftKey || event.altKey) return;
  event.preventDefault();
  navigate(a.getAttribute("href"));
});
window.addEventListener("popstate", route);

// ---- status, totals --------------------------------------------------------------------------------

function setStatus(kind, text) {
  const pill = $("link-status");
  pill.dataset.state = kind;
  pill.textContent = text;
}

function markUpdated() {
  const now = new Date();
  $("last-update").dateTime = now.toISOString();
  setText($("last-update"), timeOf(now.getTime()));
}

function applyTotals(totals) {
  state.totals = totals;
  state.clockOffsetMs = totals.server_time_ms - Date.now();
  setText($("counted-total"), num(totals.counted_total));
  setText($("people-now"), num(totals.people_now));
  setText($("last-30s"), num(totals.last_30s));
  setText($("photos-total"), num(totals.photos_total));
  setText($("camera-count"), num(totals.camera_count));
}

// ---- cameras and groups ------------------------------------------------------------------------------

/// Newer photo, or the same photo with new settings (name, level...): true when applied.
function isNewer(current, view) {
  return !current || current.timestamp_ms < view.timestamp_ms ||
    (current.timestamp_ms === view.timestamp_ms && current.event_id <= view.event_id);
}

// Live counts may arrive by the dozen a second. Each is taken into `state` at once, but the page is
// redrawn at most every FLUSH_EVERY_MS, one pass for all counts that arrived meanwhile (the latest
// view per camera): the browser lays out and paints once per pass rather than once per count.
const FLUSH_EVERY_MS = 100;
const pending = { cameras: new Map(), groups: new Map(), recount: new Set(), alerts: [], totals: null, since: null,
  timer: 0, at: 0 };

function applyCamera(view, receivedAt) {
  if (!isNewer(state.cameras.get(view.camera), view)) return false;
  state.cameras.set(view.camera, view);
  pending.cameras.set(view.camera, view);
  scheduleFlush(receivedAt);
  return true;
}

function scheduleFlush(receivedAt) {
  pending.since ??= receivedAt;
  if (pending.timer) return;
  pending.timer = setTimeout(flush, Math.max(0, pending.at + FLUSH_EVERY_MS - performance.now()));
}

function flush() {
  pending.timer = 0;
  pending.at = performance.now();
  const cameras = [...pending.cameras.values()];
  let added = false;
  for (const view of cameras) {
    // a snapshot may have replaced it meanwhile: draw what state holds
    const latest = state.cameras.get(view.camera);
    if (!latest) continue;
    added ||= !overview.has(view.camera);
    overview.applyCamera(latest);
    camera.onCamera(latest);
  }
  for (const group of pending.groups.values()) applyGroup(group);
  for (const name of pending.recount) if (!pending.groups.has(name)) recountGroup(name);
  if (pending.totals) applyTotals(pending.totals);
  if (pending.alerts.length) addAlerts(pending.alerts);
  if (added) scheduleScopeOptions();
  const since = pending.since;
  pending.cameras.clear();
  pending.groups.clear();
  pending.recount.clear();
  pending.totals = null;
  pending.alerts = [];
  pending.since = null;
  crowdPage.liveUpdates += cameras.length;
  const at = mark("live-update-applied", { cameras: cameras.map((v) => v.camera) });
  const update = { camera: cameras.length === 1 ? cameras[0].camera : null, cameras: cameras.length,
    applyMs: at - since, paintMs: null };
  crowdPage.lastLiveUpdate = update;
  // Painted: once the frame holding these changes has been laid out and drawn (one probe at a
  // time, and none in a hidden tab, where frames wait).
  if (!paintProbe && document.visibilityState === "visible") {
    paintProbe = true;
    requestAnimationFrame(() => setTimeout(() => {
      paintProbe = false;
      update.paintMs = mark("live-update-painted") - since;
    }, 0));
  }
  markUpdated();
}
let paintProbe = false;

/// A whole list of cameras (snapshot or summary): the one authority for which cameras exist.
function applyCameraList(list) {
  const fresh = new Map();
  for (const view of list) {
    const current = state.cameras.get(view.camera);
    fresh.set(view.camera, isNewer(current, view) ? view : current);
  }
  state.cameras = fresh;
  overview.applyAll([...fresh.values()]);
  scheduleScopeOptions();
}

function applyGroups(list) {
  state.groups = new Map(list.map((g) => [g.group, g]));
  overview.applyGroups(list);
  scheduleScopeOptions();
}

function applyGroup(group) {
  const isNew = !state.groups.has(group.group);
  state.groups.set(group.group, group);
  overview.applyGroup(group);
  if (isNew) scheduleScopeOptions();
}

/// Without a group figure in the message, the group's people now is still the sum of its cameras.
function recountGroup(name) {
  const g = state.groups.get(name);
  if (!g) return;
  let people = 0;
  for (const v of state.cameras.values()) if (v.group === name) people += v.count;
  if (people !== g.people_now) applyGroup({ ...g, people_now: people });
}

async function refreshSummary() {
  try {
    const summary = await getJson("/api/v1/summary");
    applyTotals(summary);
    applyCameraList(summary.cameras);
    if (summary.groups) applyGroups(summary.groups);
    camera.onRegistry();
  } catch (error) {
    console.warn("summary refresh failed", error);
  }
}

// ---- histogram, optionally narrowed to a camera or a group ------------------------------------------

const scope = { key: "", kind: null, value: null, windows: new Map(), timer: 0, error: null, token: 0 };
let geometry = { windows: [], left: 0, slot: 1 };
let histogramQueued = false;

let histogramDrawnAt = 0;
const HISTOGRAM_EVERY_MS = 500; // live counts may arrive by the dozen a second: redraw at most twice

function scheduleHistogram() {
  if (histogramQueued) return;
  histogramQueued = true;
  const wait = Math.max(0, histogramDrawnAt + HISTOGRAM_EVERY_MS - performance.now());
  setTimeout(() => {
    histogramQueued = false;
    histogramDrawnAt = performance.now();
    renderHistogram();
  }, wait);
}

function renderHistogram() {
  if ($("overview").hidden) return;
  const windows = scope.key ? scope.windows : state.windows;
  geometry = drawHistogram($("histogram"), windows, serverNow(), WINDOWS_SHOWN);
  histogramTip.refresh();
}

function parseScope(key) {
  const m = /^(camera|group):(.+)$/.exec(key ?? "");
  return m ? { kind: m[1], value: m[2] } : { kind: null, value: null };
}

function setScope(key, writeUrl = true) {
  const { kind, value } = parseScope(key);
  const normal = kind ? `${kind}:${value}` : "";
  if (normal !== scope.key) {
    Object.assign(scope, { key: normal, kind, value, windows: new Map(), error: null });
    if (kind) fetchScoped();
  }
  overview.showScope(normal);
  showScopeControls();
  scheduleHistogram();
  if (writeUrl) writeOverviewUrl();
}

async function fetchScoped() {
  clearTimeout(scope.timer);
  scope.timer = 0;
  const token = ++scope.token;
  const key = scope.key;
  try {
    const q = new URLSearchParams({ windows: String(WINDOWS_SHOWN), [scope.kind]: scope.value });
    const histogram = await getJson(`/api/v1/histogram?${q}`);
    if (token !== scope.token || key !== scope.key) return;
    scope.windows = new Map(histogram.windows.map((w) => [w.start_ms, w]));
    scope.error = null;
  } catch (error) {
    if (token !== scope.token) return;
    scope.error = error.message;
  }
  showScopeControls();
  scheduleHistogram();
}

/// A count for the scoped camera or group: its windows are re-read (the message's window is
/// the figure for all cameras), at most about once a second.
function scopedCount(view) {
  if (!scope.key) return;
  const matches = !view || (scope.kind === "camera" ? view.camera === scope.value : view.group === scope.value);
  if (!matches || scope.timer) return;
  scope.timer = setTimeout(fetchScoped, 1_000);
}

function showScopeControls() {
  const select = $("scope");
  if (scope.key && !select.querySelector(`option[value="${CSS.escape(scope.key)}"]`)) buildScopeOptions();
  select.value = scope.key;
  const what = scope.kind === "camera" ? `camera ${scope.value}` : scope.kind === "group" ? `group ${scope.value}` : "all cameras";
  setText($("histogram-scope"), `last 30 minutes · ${what}`);
  $("histogram").setAttribute("aria-label",
    `Bar chart of people counted per 30-second window, last 30 minutes, ${what}`);
  $("scope-clear").hidden = !scope.key;
  $("scope-error").hidden = !scope.error;
  setText($("scope-error"), scope.error ? `Could not narrow the histogram: ${scope.error}` : "");
}

let scopeOptionsTimer = 0;
function scheduleScopeOptions() {
  clearTimeout(scopeOptionsTimer);
  scopeOptionsTimer = setTimeout(buildScopeOptions, 300);
}

function buildScopeOptions() {
  const select = $("scope");
  const all = el("option", null, "all cameras");
  all.value = "";
  const groups = el("optgroup");
  groups.label = "groups";
  for (const name of [...state.groups.keys()].sort()) {
    const o = el("option", null, `group ${name}`);
    o.value = `group:${name}`;
    groups.append(o);
  }
  const cameras = el("optgroup");
  cameras.label = "cameras";
  const ids = [...state.cameras.keys()].sort();
  if (scope.kind === "camera" && !state.cameras.has(scope.value)) ids.unshift(scope.value);
  for (const id of ids) {
    const o = el("option", null, id);
    o.value = `camera:${id}`;
    cameras.append(o);
  }
  if (scope.kind === "group" && !state.groups.has(scope.value)) {
    const o = el("option", null, `group ${scope.value}`);
    o.value = scope.key;
    groups.append(o);
  }
  select.replaceChildren(all, groups, cameras);
  select.value = scope.key;
}

const histogramTip = histogramHover($("histogram"), $("histogram-tip"), () => geometry);

// ---- alerts --------------------------------------------------------------------------------------

const alertIds = new Set();

function alertItem(a) {
  const li = el("li", `alert ${a.kind}`);
  li.dataset.alert = a.id;
  li.dataset.kind = a.kind;
  li.dataset.level = a.level;
  const when = el("time", "when", timeOf(a.time_ms));
  when.dateTime = new Date(a.time_ms).toISOString();
  const kind = el("span", `badge kind ${a.kind}`, a.kind === "raised" ? "RAISED" : "CLEARED");
  let subject;
  if (a.subject_kind === "camera") {
    subject = el("a", "subject", a.subject);
    subject.href = cameraPath(a.subject);
    subject.dataset.nav = "";
  } else {
    subject = el("span", "subject", `group ${a.subject}`);
  }
  const detail = el("div", "detail");
  const what = el("span", "what");
  if (a.kind === "raised") {
    what.append(el("span", null, "reached "), levelBadge(a.level));
  } else {
    what.append(el("span", null, "back to "), levelBadge(a.level),
      el("span", "from", ` from ${(a.previous_level ?? "").toUpperCase()}`));
  }
  const figures = el("span", "figures",
    ` · ${fmt(a.count)} people${a.threshold !== null && a.threshold !== undefined ? ` (threshold ${fmt(a.threshold)})` : ""}`);
  detail.append(what, figures);
  li.append(when, kind, subject, detail);
  return li;
}

function addAlerts(list) {
  const log = $("alert-log");
  const fresh = list.filter((a) => a && a.id && !alertIds.has(a.id)).sort((a, b) => b.time_ms - a.time_ms);
  if (fresh.length === 0) return;
  for (const a of fresh) alertIds.add(a.id);
  // Newest first: insert each before the first older entry.
  const items = [...log.children];
  let i = 0;
  for (const a of fresh) {
    while (i < items.length && Number(items[i].dataset.time) > a.time_ms) i++;
    const li = alertItem(a);
    li.dataset.time = a.time_ms;
    log.insertBefore(li, items[i] ?? null);
  }
  while (log.children.length > ALERTS_KEPT) {
    alertIds.delete(log.lastElementChild.dataset.alert);
    log.lastElementChild.remove();
  }
  $("no-alerts").hidden = log.children.length > 0;
  setText($("alert-count"), `${num(log.children.length)} newest first`);
}

// ---- live messages -------------------------------------------------------------------------------

function handle(message, receivedAt) {
  switch (message.type) {
    case "snapshot": {
      pending.cameras.clear();
      state.windows.clear();
      for (const w of message.histogram.windows) state.windows.set(w.start_ms, w);
      applyTotals(message.summary);
      applyCameraList(message.summary.cameras);
      applyGroups(message.summary.groups ?? []);
      addAlerts(message.alerts ?? []);
      state.snapshotSeen = true;
      camera.onSnapshot();
      if (scope.key) fetchScoped();
      const at = mark("cameras-rendered", { cameras: state.cameras.size, view: crowdPage.view });
      crowdPage.snapshotApplyMs = at - receivedAt;
      // Painted: after the next frame has been laid out and drawn.
      requestAnimationFrame(() => setTimeout(() => {
        crowdPage.snapshotPaintMs = mark("cameras-painted", { cameras: state.cameras.size }) - receivedAt;
      }, 0));
      break;
    }
    case "count": {
      const view = message.camera;
      if (view) applyCamera(view, receivedAt);
      if (message.group && typeof message.group === "object") pending.groups.set(message.group.group, message.group);
      else if (view?.group) pending.recount.add(view.group);
      if (message.window) state.windows.set(message.window.start_ms, message.window);
      scopedCount(view);
      state.totals = message.totals;
      state.clockOffsetMs = message.totals.server_time_ms - Date.now();
      pending.totals = message.totals;
      scheduleFlush(receivedAt);
      scheduleHistogram();
      return;
    }
    case "totals":
      applyTotals(message.totals);
      break;
    case "alert":
      pending.alerts.push(message.alert);
      scheduleFlush(receivedAt);
      return;
    case "registry":
      refreshSummary();
      break;
    default:
      return;
  }
  scheduleHistogram();
  markUpdated();
}

// ---- connection ------------------------------------------------------------------------------------

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 5_000; // a wall screen should come back soon after the dashboard does
let retryMs = RETRY_MIN_MS;

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws/live`);
  socket.addEventListener("open", () => {
    retryMs = RETRY_MIN_MS;
    setStatus("connected", "connected · live");
  });
  socket.addEventListener("message", (event) => {
    const receivedAt = mark("live-message-received");
    try {
      handle(JSON.parse(event.data), receivedAt);
    } catch (error) {
      console.error("bad live message", error);
    }
  });
  socket.addEventListener("close", () => {
    setStatus("reconnecting", "reconnecting…");
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
  });
}

// ---- the enlarged photo ------------------------------------------------------------------------------

function openPhoto(title, src) {
  $("photo-dialog-title").textContent = title;
  $("photo-dialog-img").src = src;
  $("photo-dialog-img").alt = title;
  $("photo-dialog").showModal();
}

// ---- start ---------------------------------------------------------------------------------------

overview.init({
  onChange: writeOverviewUrl,
  onScope: (key) => setScope(key === scope.key ? "" : key),
  openCamera: (id) => navigate(cameraPath(id)),
});
camera.init({
  setRange: (range) => {
    const q = new URLSearchParams(location.search);
    if (range === "1h") q.delete("range"); else q.set("range", range);
    navigate(`${location.pathname}${q.toString() ? `?${q}` : ""}`, true);
  },
  openPhoto,
});
$("scope").addEventListener("change", () => setScope($("scope").value));
$("scope-clear").addEventListener("click", () => setScope(""));
new ResizeObserver(() => scheduleHistogram()).observe($("histogram"));
route();
// Ages count in seconds; the histogram moves on by one bar every 30 s.
setInterval(() => {
  if (!$("overview").hidden) overview.refreshAges();
  else camera.refreshAge();
}, 1_000);
setInterval(scheduleHistogram, 5_000);
// Sparklines and changes over 15 minutes move on with time alone: re-read the summary now and then.
setInterval(() => {
  if (document.visibilityState === "visible" && state.snapshotSeen) refreshSummary();
}, 60_000);
connect();
