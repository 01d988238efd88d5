// A camera's own page (/cameras/<id>?range=1h|6h|24h|7d): its counts over the range as a chart
// with hover values, the range's min/max/mean, its latest photo with the counting zones drawn over
// it (and an editor for them), its recent photos, and its settings (saved with an admin token).

import {
  state, $, el, svg, setText, fmt, fmtMean, formatAge, formatChange, timeOf, dayClock,
  updateLevelBadge, getJson, cameraPath, serverNow, STALE_AFTER_MS, copy, mark, num,
} from "./common.js";
import { drawSeries, seriesHover } from "./chart.js";

export const RANGES = {
  "1h": { ms: 3_600_000, step: "60s", refresh: 5_000 },
  "6h": { ms: 6 * 3_600_000, step: "5m", refresh: 30_000 },
  "24h": { ms: 24 * 3_600_000, step: "15m", refresh: 60_000 },
  "7d": { ms: 7 * 24 * 3_600_000, step: "1h", refresh: 300_000 },
};
const TOKEN_KEY = "crowd.adminToken";

const page = {
  id: null,
  range: "1h",
  series: null,
  geometry: null,
  settings: null, // as the server last answered
  draft: null, // the zones and fields being edited
  dirty: false,
  drawing: null, // points of the zone being drawn, or null
  token: 0, // bumps with each navigation, so late answers for another camera are dropped
  seriesAt: 0,
  seriesTimer: 0,
  photosTimer: 0,
};
let callbacks = { setRange: () => {}, openPhoto: () => {} };

// ---- entering and leaving ------------------------------------------------------------------------

export function show(id, params) {
  const range = RANGES[params.get("range")] ? params.get("range") : "1h";
  const same = page.id === id;
  const rangeChanged = page.range !== range;
  page.range = range;
  for (const button of document.querySelectorAll("#range button[data-range]")) {
    button.setAttribute("aria-pressed", String(button.dataset.range === range));
  }
  if (!same) {
    page.id = id;
    page.token++;
    page.series = null;
    page.settings = null;
    page.draft = null;
    page.dirty = false;
    page.drawing = null;
    showDrawing();
    $("cam-title").textContent = id;
    $("series-chart").replaceChildren();
    $("recent-photos").replaceChildren();
    $("zone-list").replaceChildren();
    for (const s of ["min", "max", "mean", "photos"]) $(`stat-${s}`).textContent = "…";
    setText($("settings-message"), "");
    $("cam-scope").href = `/?scope=${encodeURIComponent(`camera:${id}`)}`;
    document.title = `${id} — crowd`;
    paintHeader();
    loadSettings();
    loadPhotos();
  }
  if (!same || rangeChanged) loadSeries();
  updateExportLinks();
}

export function hide() {
  page.id = null;
  page.token++;
  clearTimeout(page.seriesTimer);
  clearTimeout(page.photosTimer);
}

export const current = () => page.id;
export const range = () => page.range;

// ---- header and latest photo ---------------------------------------------------------------------

function paintHeader() {
  const v = state.cameras.get(page.id);
  const known = Boolean(v);
  $("camera-missing").hidden = known || !state.snapshotSeen;
  $("cam-now").hidden = !known;
  $("cam-level").hidden = !known;
  if (!v) {
    setText($("cam-label"), "");
    $("zone-photo").removeAttribute("src");
    return;
  }
  setText($("cam-label"), [v.name, v.group ? `group ${v.group}` : null].filter(Boolean).join(" · "));
  setText($("cam-count"), fmt(v.count));
  setText($("cam-capacity"), v.capacity ? `of ${fmt(v.capacity)} capacity` : "no capacity set");
  const change = formatChange(v.change_15m);
  setText($("cam-change"), change.text === "—" ? "no photo 15 min before" : `${change.text} against 15 min before`);
  $("cam-change").dataset.dir = change.dir;
  updateLevelBadge($("cam-level"), v.level);
  const taken = $("cam-taken");
  taken.dateTime = new Date(v.timestamp_ms).toISOString();
  setText(taken, timeOf(v.timestamp_ms));
  refreshAge();
  const img = $("zone-photo");
  if (img.getAttribute("src") !== v.photo_url) {
    img.src = v.photo_url;
    img.alt = `Latest photo from camera ${v.camera}, ${v.count} people marked`;
  }
  drawZones();
}

export function refreshAge() {
  const v = page.id && state.cameras.get(page.id);
  if (!v) return;
  const age = serverNow() - v.timestamp_ms;
  const stale = age > STALE_AFTER_MS;
  setText($("cam-age"), formatAge(age));
  $("cam-stale").hidden = !stale;
  $("cam-now").classList.toggle("stale", stale);
}

/// A new view of some camera arrived (live or in a refresh).
export function onCamera(view) {
  if (view.camera !== page.id) return;
  paintHeader();
  scheduleSeries();
  clearTimeout(page.photosTimer);
  page.photosTimer = setTimeout(loadPhotos, 1_500);
}

export function onSnapshot() {
  if (!page.id) return;
  paintHeader();
  scheduleSeries();
}

/// Settings changed somewhere (a `registry` message): reload them unless the person is editing.
export function onRegistry() {
  if (!page.id) return;
  paintHeader();
  if (!page.dirty && !page.drawing) loadSettings();
  loadSeries();
}

// ---- the series chart ----------------------------------------------------------------------------

function scheduleSeries() {
  if (page.seriesTimer) return;
  const wait = Math.max(1_000, page.seriesAt + RANGES[page.range].refresh - Date.now());
  page.seriesTimer = setTimeout(() => {
    page.seriesTimer = 0;
    loadSeries();
  }, wait);
}

async function loadSeries() {
  const token = page.token, id = page.id, r = page.range;
  clearTimeout(page.seriesTimer);
  page.seriesTimer = 0;
  page.seriesAt = Date.now();
  const to = serverNow();
  const q = new URLSearchParams({ from: String(to - RANGES[r].ms), to: String(to), step: RANGES[r].step });
  $("series-status").hidden = page.series !== null;
  setText($("series-status"), "loading…");
  try {
    const series = await getJson(`/api/v1/cameras/${encodeURIComponent(id)}/series?${q}`);
    if (token !== page.token || r !== page.range) return;
    page.series = series;
    $("series-status").hidden = true;
    drawChart();
    const s = series.stats ?? {};
    setText($("stat-min"), fmt(s.min));
    setText($("stat-max"), fmt(s.max));
    setText($("stat-mean"), fmtMean(s.mean));
    setText($("stat-photos"), fmt(s.photos));
    setText($("series-source"), series.source === "rollups" ? "from rollups (older photos are kept as per-step figures)" : "");
    mark("series-rendered", { camera: id, steps: series.steps.length });
  } catch (error) {
    if (token !== page.token) return;
    $("series-status").hidden = false;
    setText($("series-status"), error.status === 404
      ? `No history for camera ${id}: ${error.message}` : `Could not load the counts: ${error.message}`);
    if (error.status === 404) $("camera-missing").hidden = false;
    for (const k of ["min", "max", "mean", "photos"]) setText($(`stat-${k}`), "—");
  }
}

function limits() {
  const v = state.cameras.get(page.id);
  const s = page.settings ?? {};
  const capacity = s.capacity ?? v?.capacity ?? null;
  const resolve = (t) => {
    if (t === null || t === undefined) return null;
    if (typeof t === "string" && t.endsWith("%")) return capacity ? Math.ceil((capacity * parseFloat(t)) / 100) : null;
    return Number(t);
  };
  const out = [];
  const warning = resolve(s.warning), critical = resolve(s.critical);
  if (capacity) out.push({ value: capacity, label: critical === capacity ? "capacity = critical" : "capacity", kind: "capacity" });
  if (warning && warning !== capacity) out.push({ value: warning, label: "warning", kind: "warning" });
  if (critical && critical !== capacity) out.push({ value: critical, label: "critical", kind: "critical" });
  return out;
}

function drawChart() {
  if (!page.series || $("camera-page").hidden) return;
  page.geometry = drawSeries($("series-chart"), page.series, limits());
  hover.refresh();
}

let hover = { refresh() {} };

function updateExportLinks() {
  if (!page.id) return;
  const from = new Date(serverNow() - RANGES[page.range].ms).toISOString();
  const q = (kind) => new URLSearchParams({ kind, format: "csv", from, cameras: page.id,
    ...(kind === "series" ? { step: RANGES[page.range].step } : {}) });
  $("series-export").href = `/api/v1/export?${q("series")}`;
  $("events-export").href = `/api/v1/export?${q("events")}`;
}

// ---- recent photos -------------------------------------------------------------------------------

async function loadPhotos() {
  const token = page.token, id = page.id;
  try {
    const { photos } = await getJson(`/api/v1/cameras/${encodeURIComponent(id)}/photos`);
    if (token !== page.token) return;
    const list = $("recent-photos");
    const keep = new Map([...list.children].map((n) => [n.dataset.event, n]));
    const nodes = photos.map((p) => keep.get(p.event_id) ?? photoTile(p));
    list.replaceChildren(...nodes);
    $("no-recent").hidden = photos.length > 0;
  } catch (error) {
    if (token !== page.token) return;
    $("no-recent").hidden = false;
    setText($("no-recent"), `Could not load the recent photos: ${error.message}`);
  }
}

function photoTile(p) {
  const button = el("button", "recent-photo");
  button.type = "button";
  button.dataset.event = p.event_id;
  const img = el("img");
  img.loading = "lazy";
  img.decoding = "async";
  img.src = p.url;
  img.alt = `Photo of ${timeOf(p.timestamp_ms)}, ${p.count} people marked`;
  const caption = el("span", "caption");
  const today = new Date(p.timestamp_ms).toDateString() === new Date().toDateString();
  const when = el("time", null, today ? timeOf(p.timestamp_ms) : dayClock(p.timestamp_ms));
  when.dateTime = new Date(p.timestamp_ms).toISOString();
  caption.append(when, el("span", null, " · "), el("strong", null, fmt(p.count)), el("span", null, " people"));
  button.append(img, caption);
  button.addEventListener("click", () => callbacks.openPhoto(`Camera ${page.id}, ${dayClock(p.timestamp_ms)}`, p.url));
  return button;
}

// ---- settings --------------------------------------------------------------------------------------

async function loadSettings() {
  const token = page.token, id = page.id;
  try {
    const settings = await getJson(`/api/v1/cameras/${encodeURIComponent(id)}/settings`);
    if (token !== page.token) return;
    adoptSettings(settings);
  } catch (error) {
    if (token !== page.token) return;
    if (!page.draft) adoptSettings({ camera: id, name: null, group: null, capacity: null, warning: null, critical: null, zones: [] });
    setMessage(`Could not load the settings: ${error.message}`, "error");
  }
}

function adoptSettings(settings) {
  page.settings = settings;
  page.draft = copy(settings);
  page.draft.zones ??= [];
  page.dirty = false;
  const f = $("settings-form");
  f.elements["set-name"].value = settings.name ?? "";
  f.elements["set-group"].value = settings.group ?? "";
  f.elements["set-capacity"].value = settings.capacity ?? "";
  f.elements["set-warning"].value = settings.warning ?? "";
  f.elements["set-critical"].value = settings.critical ?? "";
  drawZones();
  drawChart();
  showDirty();
}

function showDirty() {
  $("settings-save").classList.toggle("attention", page.dirty);
  setText($("settings-dirty"), page.dirty ? "unsaved changes" : "");
}

function setMessage(text, kind = "info") {
  const node = $("settings-message");
  node.dataset.kind = kind;
  node.setAttribute("role", kind === "error" ? "alert" : "status");
  setText(node, text);
}

function threshold(raw, what) {
  const text = raw.trim();
  if (text === "") return null;
  if (/^\d+$/.test(text)) return Number(text);
  if (/^\d+(\.\d+)?\s*%$/.test(text)) return text.replace(/\s+/g, "");
  throw new Error(`${what} must be a number of people, a percentage of the capacity like “80%”, or empty`);
}

async function save(event) {
  event.preventDefault();
  if (page.drawing) {
    setMessage("Finish or cancel the zone being drawn first.", "error");
    return;
  }
  const f = $("settings-form");
  let body;
  try {
    const capacity = f.elements["set-capacity"].value.trim();
    if (capacity !== "" && !/^[1-9]\d*$/.test(capacity)) throw new Error("capacity must be a whole number of people, or empty");
    body = {
      camera: page.id,
      name: f.elements["set-name"].value.trim() || null,
      group: f.elements["set-group"].value.trim() || null,
      capacity: capacity === "" ? null : Number(capacity),
      warning: threshold(f.elements["set-warning"].value, "warning"),
      critical: threshold(f.elements["set-critical"].value, "critical"),
      zones: page.draft.zones,
    };
  } catch (error) {
    setMessage(error.message, "error");
    return;
  }
  const token = $("admin-token").value.trim();
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const id = page.id, navigation = page.token;
  $("settings-save").disabled = true;
  setMessage("saving…");
  try {
    const response = await fetch(`/api/v1/cameras/${encodeURIComponent(id)}/settings`, {
      method: "PUT", headers, body: JSON.stringify(body),
    });
    const answer = await response.json().catch(() => null);
    if (navigation !== page.token) return;
    if (response.ok) {
      adoptSettings(answer && answer.camera ? answer : body);
      setMessage(`Saved at ${timeOf(Date.now())}.`, "ok");
    } else {
      const why = answer?.message ?? `HTTP ${response.status}`;
      const hint = response.status === 401 ? " Enter the admin token (DASHBOARD_ADMIN_TOKEN) below."
        : response.status === 403 ? " This token may not change settings." : "";
      setMessage(`Not saved (${response.status}${answer?.error ? ` ${answer.error}` : ""}): ${why}${hint}`, "error");
    }
  } catch (error) {
    setMessage(`Not saved: ${error.message}`, "error");
  } finally {
    $("settings-save").disabled = false;
  }
}

// ---- zones: drawn over the latest photo ------------------------------------------------------------

function zoneCounts() {
  const v = state.cameras.get(page.id);
  return new Map((v?.zones ?? []).map((z) => [z.name, z.count]));
}

function drawZones() {
  const overlay = $("zone-overlay");
  const img = $("zone-photo");
  const w = img.clientWidth, h = img.clientHeight;
  if (!w || !h) {
    overlay.replaceChildren();
    return;
  }
  overlay.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const counts = zoneCounts();
  const zones = page.draft?.zones ?? page.settings?.zones ?? [];
  const saved = new Set((page.settings?.zones ?? []).map((z) => JSON.stringify(z)));
  const nodes = [];
  const pts = (points) => points.map(([x, y]) => `${(x * w).toFixed(1)},${(y * h).toFixed(1)}`).join(" ");
  zones.forEach((z, i) => {
    const unsaved = !saved.has(JSON.stringify(z));
    const poly = svg("polygon", { class: `zone z${i % 6}${unsaved ? " unsaved" : ""}`, points: pts(z.points) });
    poly.dataset.zone = z.name;
    nodes.push(poly);
    const cx = (z.points.reduce((a, p) => a + p[0], 0) / z.points.length) * w;
    const cy = (z.points.reduce((a, p) => a + p[1], 0) / z.points.length) * h;
    const count = counts.get(z.name);
    nodes.push(svg("text", { class: "zone-label", x: cx, y: cy, "text-anchor": "middle" },
      count === undefined ? z.name : `${z.name}: ${num(count)}`));
  });
  if (page.drawing) {
    const p = page.drawing;
    if (p.length > 1) nodes.push(svg("polyline", { class: "drawing", points: pts(p) }));
    if (p.length > 2) nodes.push(svg("line", { class: "drawing closing", x1: p[p.length - 1][0] * w,
      y1: p[p.length - 1][1] * h, x2: p[0][0] * w, y2: p[0][1] * h }));
    p.forEach(([x, y], i) => nodes.push(svg("circle", { class: `vertex${i === 0 ? " first" : ""}`, cx: x * w, cy: y * h, r: 4 })));
  }
  overlay.replaceChildren(...nodes);
  overlay.classList.toggle("drawing-mode", Boolean(page.drawing));
  paintZoneList(counts, zones, saved);
}

function paintZoneList(counts, zones, saved) {
  const list = $("zone-list");
  const items = zones.map((z, i) => {
    const li = el("li", `z${i % 6}`);
    li.dataset.zone = z.name;
    const count = counts.get(z.name);
    li.append(el("span", "swatch"), el("span", "zone-name", z.name),
      el("span", "zone-count", count === undefined ? "no count yet" : `${num(count)} people`));
    if (!saved.has(JSON.stringify(z))) li.append(el("span", "badge unsaved-badge", "UNSAVED"));
    const remove = el("button", "link-button", "remove");
    remove.type = "button";
    remove.setAttribute("aria-label", `Remove zone ${z.name}`);
    remove.addEventListener("click", () => {
      page.draft.zones = page.draft.zones.filter((x) => x !== z);
      page.dirty = true;
      showDirty();
      drawZones();
      setMessage(`Zone ${z.name} removed: save the settings to store it.`);
    });
    li.append(remove);
    return li;
  });
  list.replaceChildren(...items);
  $("no-zones").hidden = zones.length > 0;
}

function showDrawing() {
  const drawing = Boolean(page.drawing);
  $("zone-editor").hidden = !drawing;
  $("zone-draw").hidden = drawing;
  if (!drawing) return;
  const n = page.drawing.length;
  setText($("zone-hint"), n < 3 ? `Click the photo to place the corners (${n} placed, at least 3).`
    : `${n} corners placed. Name the zone and press “Add zone”.`);
  $("zone-finish").disabled = n < 3;
  $("zone-undo").disabled = n === 0;
}

function startDrawing() {
  if (!page.draft) return;
  page.drawing = [];
  $("zone-name").value = "";
  showDrawing();
  drawZones();
  $("zone-figure").scrollIntoView({ block: "nearest" });
}

function finishDrawing() {
  const name = $("zone-name").value.trim();
  if (page.drawing.length < 3) return;
  if (!name) {
    setMessage("Give the zone a name first.", "error");
    $("zone-name").focus();
    return;
  }
  if (page.draft.zones.some((z) => z.name === name)) {
    setMessage(`There is already a zone named ${name}.`, "error");
    return;
  }
  page.draft.zones.push({ name, points: page.drawing });
  page.drawing = null;
  page.dirty = true;
  showDirty();
  showDrawing();
  drawZones();
  setMessage(`Zone ${name} added: save the settings to store it.`);
}

function cancelDrawing() {
  page.drawing = null;
  showDrawing();
  drawZones();
}

function photoClick(event) {
  if (!page.drawing) {
    const v = state.cameras.get(page.id);
    if (v) callbacks.openPhoto(`Camera ${v.camera}`, v.photo_url);
    return;
  }
  const box = $("zone-overlay").getBoundingClientRect();
  const clamp = (t) => Math.round(Math.min(1, Math.max(0, t)) * 10_000) / 10_000;
  page.drawing.push([clamp((event.clientX - box.left) / box.width), clamp((event.clientY - box.top) / box.height)]);
  showDrawing();
  drawZones();
}

// ---- wiring ----------------------------------------------------------------------------------------

export function init(cb) {
  callbacks = cb;
  hover = seriesHover($("series-chart"), $("series-tip"), () => page.geometry);
  new ResizeObserver(() => drawChart()).observe($("series-chart"));
  new ResizeObserver(() => drawZones()).observe($("zone-photo"));
  $("zone-photo").addEventListener("load", drawZones);
  for (const button of document.querySelectorAll("#range button[data-range]")) {
    button.addEventListener("click", () => callbacks.setRange(button.dataset.range));
  }
  $("zone-overlay").addEventListener("click", photoClick);
  $("zone-draw").addEventListener("click", startDrawing);
  $("zone-undo").addEventListener("click", () => {
    page.drawing.pop();
    showDrawing();
    drawZones();
  });
  $("zone-finish").addEventListener("click", finishDrawing);
  $("zone-cancel").addEventListener("click", cancelDrawing);
  $("zone-name").addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      finishDrawing();
    } else if (event.key === "Escape") cancelDrawing();
  });
  const form = $("settings-form");
  form.addEventListener("submit", save);
  form.addEventListener("input", (event) => {
    if (event.target.id === "admin-token") return;
    page.dirty = true;
    showDirty();
  });
  $("settings-reset").addEventListener("click", () => {
    if (page.settings) adoptSettings(page.settings);
    cancelDrawing();
    setMessage("Changes discarded.");
  });
  const tokenInput = $("admin-token");
  tokenInput.value = sessionStorage.getItem(TOKEN_KEY) ?? "";
  tokenInput.addEventListener("input", () => sessionStorage.setItem(TOKEN_KEY, tokenInput.value.trim()));
  for (const id of ["series-export", "events-export"]) $(id).addEventListener("click", updateExportLinks);
}

export { cameraPath };
