// The overview's cameras: a grid of panels or a table of rows, both keyed by camera id and built
// once per camera. A live update touches only that camera's row and panel (and moves it if its
// place in the sort changed); sorting, filtering and the view are kept in the URL by the caller.
// Also: the group strip and the export form.

import {
  state, $, el, setText, fmt, formatAge, formatChange, timeOf, levelBadge, updateLevelBadge,
  levelRank, cameraPath, serverNow, STALE_AFTER_MS, crowdPage, num,
} from "./common.js";
import { sparkline, updateSparkline } from "./chart.js";

const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
const hourPeak = (v) => (v.sparkline && v.sparkline.length ? Math.max(...v.sparkline) : null);

/// Sort columns: the key of a CameraView, and the order a first click gives.
export const COLUMNS = {
  camera: { key: (v) => v.camera, first: "asc", label: "camera id" },
  name: { key: (v) => v.name ?? null, first: "asc", label: "name" },
  group: { key: (v) => v.group ?? null, first: "asc", label: "group" },
  count: { key: (v) => v.count, first: "desc", label: "people now" },
  change: { key: (v) => v.change_15m ?? null, first: "desc", label: "change in 15 min" },
  time: { key: (v) => v.timestamp_ms, first: "desc", label: "last photo" },
  hour: { key: hourPeak, first: "desc", label: "peak of the last hour" },
  level: { key: (v) => levelRank(v.level), first: "desc", label: "level" },
};
export const DEFAULTS = { view: "grid", sort: "camera", order: "asc", q: "" };

const recs = new Map(); // camera id -> {id, view, panel, row, hidden, hay, ageText, stale}
let order = []; // camera ids in the current sort
const opts = { ...DEFAULTS };
let terms = [];
const built = { grid: false, table: false };
let onChange = () => {};
let onScope = () => {};
let openCamera = () => {};

// ---- sorting and filtering -----------------------------------------------------------------------

function compare(a, b) {
  const key = COLUMNS[opts.sort].key;
  const ka = key(a), kb = key(b);
  let c = 0;
  if (ka === null || kb === null) {
    c = ka === kb ? 0 : ka === null ? 1 : -1; // no value: last, whichever the order
  } else {
    c = typeof ka === "string" ? collator.compare(ka, kb) : ka - kb;
    if (opts.order === "desc") c = -c;
  }
  return c || (a.camera < b.camera ? -1 : a.camera > b.camera ? 1 : 0);
}

function haystack(v) {
  return `${v.camera} ${v.name ?? ""} ${v.group ?? ""}`.toLowerCase();
}

const matches = (rec) => terms.every((t) => rec.hay.includes(t));

function nodeOf(rec, view) {
  return view === "grid" ? rec.panel : rec.row;
}

const container = (view) => (view === "grid" ? $("cameras") : $("camera-rows"));

/// Puts every built view's nodes in `order` (moving only when the order changed).
function reorderAll() {
  for (const view of ["grid", "table"]) {
    if (!built[view]) continue;
    const parent = container(view);
    const nodes = order.map((id) => nodeOf(recs.get(id), view));
    const same = parent.children.length === nodes.length && nodes.every((n, i) => parent.children[i] === n);
    if (!same) parent.append(...nodes);
  }
}

function resort() {
  order = [...recs.keys()].sort((a, b) => compare(recs.get(a).view, recs.get(b).view));
  reorderAll();
}

/// A camera's sort key changed: move only it.
function reposition(rec) {
  const from = order.indexOf(rec.id);
  if (from >= 0) order.splice(from, 1);
  let lo = 0, hi = order.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (compare(recs.get(order[mid]).view, rec.view) < 0) lo = mid + 1; else hi = mid;
  }
  order.splice(lo, 0, rec.id);
  if (lo === from) return;
  const next = order[lo + 1] !== undefined ? recs.get(order[lo + 1]) : null;
  for (const view of ["grid", "table"]) {
    if (!built[view]) continue;
    container(view).insertBefore(nodeOf(rec, view), next ? nodeOf(next, view) : null);
  }
}

function applyFilter(rec) {
  const hidden = !matches(rec);
  if (rec.hidden === hidden) return;
  rec.hidden = hidden;
  if (rec.panel) rec.panel.hidden = hidden;
  if (rec.row) rec.row.hidden = hidden;
}

function refilter() {
  terms = opts.q.toLowerCase().split(/\s+/).filter(Boolean);
  for (const rec of recs.values()) applyFilter(rec);
  showCounts();
  scheduleAges();
}

export function shownIds() {
  return order.filter((id) => !recs.get(id).hidden);
}

function showCounts() {
  const total = recs.size;
  let shown = 0;
  for (const rec of recs.values()) if (!rec.hidden) shown++;
  setText($("camera-shown"), terms.length ? `${num(shown)} of ${num(total)} match “${opts.q}”`
    : `${num(total)} camera${total === 1 ? "" : "s"}`);
  $("no-cameras").hidden = total > 0;
  document.body.dataset.rendered = String(total);
  crowdPage.rendered = total;
  $("no-match").hidden = total === 0 || shown > 0;
  updateExportLink();
}

// ---- building and painting one camera --------------------------------------------------------------
// Each node keeps references to the parts a live update writes (no lookups per update). Ages move
// on every second, but only on the nodes on screen, found by a binary search over the shown
// nodes' positions (a few layout reads a second, instead of observing 1,000 nodes).

const MARGIN_PX = 300;

function onScreenRecs() {
  const view = opts.view;
  if (!built[view]) return [];
  const shown = [];
  for (const id of order) {
    const rec = recs.get(id);
    if (!rec.hidden) shown.push(rec);
  }
  const top = -MARGIN_PX, bottom = window.innerHeight + MARGIN_PX;
  let lo = 0, hi = shown.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (nodeOf(shown[mid], view).getBoundingClientRect().bottom < top) lo = mid + 1; else hi = mid;
  }
  const out = [];
  for (let i = lo; i < shown.length; i++) {
    if (nodeOf(shown[i], view).getBoundingClientRect().top > bottom) break;
    out.push(shown[i]);
  }
  return out;
}

// A panel and a row are cloned from one prototype each (cheaper than building 15 nodes by hand,
// a thousand times); the parts a live update writes are kept by reference.
let panelProto = null;
let rowProto = null;

function makePanelProto() {
  const card = el("article", "camera");
  const head = el("div", "head");
  const title = el("div", "title");
  const link = el("a", "name");
  link.dataset.nav = "";
  title.append(link, el("div", "label"));
  const count = el("div", "count");
  count.append(el("span", "n"), el("small", null, " people"));
  head.append(title, count);
  const img = el("img", "thumbnail");
  img.loading = "lazy";
  img.decoding = "async";
  img.width = 320;
  img.height = 240;
  const meta = el("div", "meta");
  meta.append(levelBadge("normal"), el("span", "age"), el("span", "change"), el("time", "taken"));
  card.append(head, img, meta);
  return card;
}

function buildPanel(rec) {
  panelProto ??= makePanelProto();
  const card = panelProto.cloneNode(true);
  card.dataset.camera = rec.id;
  const [head, img, meta] = card.children;
  const [title, count] = head.children;
  const [link, label] = title.children;
  link.textContent = rec.id;
  link.href = cameraPath(rec.id);
  const [badge, age, change, taken] = meta.children;
  card.hidden = rec.hidden;
  rec.panel = card;
  rec.p = { label, n: count.firstChild, img, badge, change, age, taken, ageText: null, stale: null };
  paintPanel(rec);
  return card;
}

function paintPanel(rec) {
  const v = rec.view, p = rec.p, card = rec.panel;
  setText(p.n, num(v.count));
  setText(p.label, [v.name, v.group].filter(Boolean).join(" · "));
  if (p.img.getAttribute("src") !== v.photo_url) {
    p.img.src = v.photo_url;
    p.img.alt = `Latest photo from camera ${v.camera}, ${v.count} people marked`;
  }
  const change = formatChange(v.change_15m);
  setText(p.change, change.text === "—" ? "" : `${change.text} /15 min`);
  if (!p.change.title) p.change.title = "change against 15 minutes before the latest photo";
  if (p.change.dataset.dir !== change.dir) p.change.dataset.dir = change.dir;
  paintTaken(p.taken, v.timestamp_ms);
  updateLevelBadge(p.badge, v.level);
  setData(card, "level", v.level ?? "normal");
  setData(card, "count", String(v.count));
  setData(card, "timestamp", String(v.timestamp_ms));
  paintAge(rec, card, serverNow());
}

function setData(node, key, value) {
  if (node.dataset[key] !== value) node.dataset[key] = value;
}

function paintTaken(node, ms) {
  const iso = new Date(ms).toISOString();
  if (node.dateTime !== iso) {
    node.dateTime = iso;
    node.textContent = timeOf(ms);
  }
}

function makeRowProto() {
  const tr = el("div", "tr");
  tr.setAttribute("role", "row");
  const cell = (cls, ...children) => {
    const td = el("div", `td ${cls}`);
    td.setAttribute("role", "cell");
    td.append(...children);
    tr.append(td);
  };
  const link = el("a", "name");
  link.dataset.nav = "";
  cell("c-camera", link);
  cell("c-name");
  cell("c-group");
  cell("c-count num", el("span", "n"), el("small", "cap"));
  cell("c-change num", el("span", "change"));
  cell("c-time", el("time", "taken"), el("span", "age"), el("span", "badge stale-badge", "STALE"));
  cell("c-hour", sparkline());
  cell("c-level", levelBadge("normal"));
  return tr;
}

function buildRow(rec) {
  rowProto ??= makeRowProto();
  const tr = rowProto.cloneNode(true);
  tr.dataset.camera = rec.id;
  const [camera, name, group, count, change, time, hour, level] = tr.children;
  const link = camera.firstChild;
  link.textContent = rec.id;
  link.href = cameraPath(rec.id);
  tr.hidden = rec.hidden;
  rec.row = tr;
  rec.r = { name, group, n: count.firstChild, cap: count.lastChild, change: change.firstChild,
    taken: time.firstChild, age: time.children[1], spark: hour.firstChild, badge: level.firstChild,
    ageText: null, stale: null };
  paintRow(rec);
  return tr;
}

function paintRow(rec) {
  const v = rec.view, r = rec.r;
  setText(r.name, v.name ?? "");
  setText(r.group, v.group ?? "");
  setText(r.n, num(v.count));
  setText(r.cap, v.capacity ? ` / ${num(v.capacity)}` : "");
  const change = formatChange(v.change_15m);
  setText(r.change, change.text);
  if (r.change.dataset.dir !== change.dir) r.change.dataset.dir = change.dir;
  paintTaken(r.taken, v.timestamp_ms);
  updateSparkline(r.spark, v.sparkline);
  updateLevelBadge(r.badge, v.level);
  setData(rec.row, "level", v.level ?? "normal");
  setData(rec.row, "count", String(v.count));
  paintAge(rec, rec.row, serverNow());
}

/// The age of the camera's photo on one of its nodes, and the stale look past 5 minutes.
function paintAge(rec, node, now) {
  const age = now - rec.view.timestamp_ms;
  const stale = age > STALE_AFTER_MS;
  const parts = node === rec.row ? rec.r : rec.p;
  if (!parts) return;
  const text = node === rec.row ? formatAge(age) : stale ? `stale: ${formatAge(age)}` : formatAge(age);
  if (parts.ageText !== text) {
    parts.ageText = text;
    parts.age.textContent = text;
  }
  if (parts.stale !== stale) {
    parts.stale = stale;
    node.classList.toggle("stale", stale);
  }
}

/// Ages move on with the clock: only the nodes on screen are repainted (others when they come
/// on screen: on the next tick, or on scrolling).
export function refreshAges() {
  const now = serverNow();
  for (const rec of onScreenRecs()) paintAge(rec, nodeOf(rec, opts.view), now);
}

/// Soon, not now: finding the nodes on screen reads layout, which must not be forced in the
/// middle of building or filtering a thousand nodes.
let agesQueued = false;
function scheduleAges(wait = 0) {
  if (agesQueued) return;
  agesQueued = true;
  setTimeout(() => {
    agesQueued = false;
    if (!$("overview").hidden) refreshAges();
  }, wait);
}
window.addEventListener("scroll", () => scheduleAges(150), { passive: true });

function paint(rec) {
  if (rec.panel) paintPanel(rec);
  if (rec.row) paintRow(rec);
}

function dropNodes(rec) {
  rec.panel?.remove();
  rec.row?.remove();
}

function newRec(view) {
  const rec = { id: view.camera, view, panel: null, row: null, p: null, r: null, hidden: false, hay: haystack(view) };
  rec.hidden = !matches(rec);
  recs.set(view.camera, rec);
  return rec;
}

// ---- the public face -------------------------------------------------------------------------------

/// A camera seen live (or in a registry refresh): create or update it, and move it if needed.
export function applyCamera(view) {
  let rec = recs.get(view.camera);
  if (!rec) {
    rec = newRec(view);
    for (const v of ["grid", "table"]) {
      if (built[v]) (v === "grid" ? buildPanel : buildRow)(rec);
    }
    reposition(rec);
    showCounts();
    return;
  }
  const old = rec.view;
  rec.view = view;
  if (old.name !== view.name || old.group !== view.group) {
    rec.hay = haystack(view);
    applyFilter(rec);
    showCounts();
  }
  paint(rec);
  const key = COLUMNS[opts.sort].key;
  if (key(old) !== key(view)) reposition(rec);
}

/// A whole list at once (snapshot, summary refresh): update all, add new, remove missing, sort once.
export function applyAll(views) {
  const fresh = new Set();
  for (const view of views) {
    fresh.add(view.camera);
    const rec = recs.get(view.camera);
    if (rec) {
      const old = rec.view;
      rec.view = view;
      if (old.name !== view.name || old.group !== view.group) {
        rec.hay = haystack(view);
        applyFilter(rec);
      }
      paint(rec);
    } else {
      const rec = newRec(view);
      if (built.grid) buildPanel(rec);
      if (built.table) buildRow(rec);
    }
  }
  for (const [id, rec] of recs) {
    if (!fresh.has(id)) {
      dropNodes(rec);
      recs.delete(id);
    }
  }
  order = [...recs.keys()].sort((a, b) => compare(recs.get(a).view, recs.get(b).view));
  buildView(opts.view);
  reorderAll();
  showCounts();
}

export function removeCamera(id) {
  const rec = recs.get(id);
  if (!rec) return;
  dropNodes(rec);
  recs.delete(id);
  order = order.filter((x) => x !== id);
  showCounts();
}

/// Builds the nodes of a view once, in one fragment.
function buildView(view) {
  if (built[view]) {
    // Cameras created while the view existed got their nodes already.
    return false;
  }
  const fragment = document.createDocumentFragment();
  for (const id of order) {
    const rec = recs.get(id);
    fragment.append(view === "grid" ? buildPanel(rec) : buildRow(rec));
  }
  container(view).replaceChildren(fragment);
  built[view] = true;
  return true;
}

function showView() {
  const table = opts.view === "table";
  $("cameras").hidden = table;
  $("camera-table").hidden = !table;
  for (const v of ["grid", "table"]) {
    const button = $(`view-${v}`);
    button.setAttribute("aria-pressed", String(opts.view === v));
  }
  if (buildView(opts.view)) reorderAll();
  document.body.dataset.view = opts.view;
  crowdPage.view = opts.view;
  scheduleAges();
}

function showSort() {
  for (const th of document.querySelectorAll("#camera-table [role=columnheader][data-column]")) {
    const col = th.dataset.column;
    if (col === opts.sort) th.setAttribute("aria-sort", opts.order === "asc" ? "ascending" : "descending");
    else th.removeAttribute("aria-sort");
  }
  $("sort").value = opts.sort;
  const order = $("order");
  order.dataset.order = opts.order;
  order.textContent = opts.order === "asc" ? "↑ ascending" : "↓ descending";
  order.setAttribute("aria-label", `Order: ${opts.order === "asc" ? "ascending" : "descending"}; click to reverse`);
}

/// Overview options from the URL (missing ones take their defaults).
export function setParams(params) {
  const view = params.get("view") === "table" ? "table" : "grid";
  const sort = COLUMNS[params.get("sort")] ? params.get("sort") : DEFAULTS.sort;
  const order = ["asc", "desc"].includes(params.get("order")) ? params.get("order") : COLUMNS[sort].first;
  const q = params.get("q") ?? "";
  const resorted = sort !== opts.sort || order !== opts.order;
  Object.assign(opts, { view, sort, order });
  if ($("filter").value !== q) $("filter").value = q;
  if (q !== opts.q) {
    opts.q = q;
    refilter();
  }
  if (resorted) resort();
  showSort();
  showView();
}

/// The overview options that differ from their defaults, for the URL.
export function params() {
  const out = [];
  if (opts.view !== DEFAULTS.view) out.push(["view", opts.view]);
  if (opts.sort !== DEFAULTS.sort || opts.order !== DEFAULTS.order) {
    out.push(["sort", opts.sort], ["order", opts.order]);
  }
  if (opts.q) out.push(["q", opts.q]);
  return out;
}

function setSort(sort, order) {
  opts.sort = sort;
  opts.order = order ?? COLUMNS[sort].first;
  resort();
  showSort();
  onChange();
}

// ---- groups ----------------------------------------------------------------------------------------

const groupChips = new Map();
let scopeShown = "";

export function applyGroups(list) {
  const strip = $("groups");
  const fresh = new Set(list.map((g) => g.group));
  for (const [name, chip] of groupChips) {
    if (!fresh.has(name)) {
      chip.remove();
      groupChips.delete(name);
    }
  }
  for (const g of list) applyGroup(g, false);
  const sorted = [...groupChips.keys()].sort(collator.compare).map((n) => groupChips.get(n));
  if (sorted.some((chip, i) => strip.children[i] !== chip)) strip.append(...sorted);
  $("groups-section").hidden = groupChips.size === 0;
  updateExportGroups();
}

export function applyGroup(g, place = true) {
  let chip = groupChips.get(g.group);
  if (!chip) {
    chip = el("button", "group");
    chip.type = "button";
    chip.dataset.group = g.group;
    const top = el("span", "g-top");
    top.append(el("span", "g-name", g.group), levelBadge(g.level));
    const bar = el("span", "g-bar");
    bar.append(el("span", "g-fill"));
    chip.append(top, el("span", "g-now"), bar, el("span", "g-cams"));
    chip.addEventListener("click", () => onScope(`group:${g.group}`));
    groupChips.set(g.group, chip);
    chip.setAttribute("aria-pressed", String(scopeShown === `group:${g.group}`));
    if (place) {
      const next = [...groupChips.keys()].filter((n) => collator.compare(n, g.group) > 0).sort(collator.compare)[0];
      $("groups").insertBefore(chip, next ? groupChips.get(next) : null);
      $("groups-section").hidden = false;
      updateExportGroups();
    }
  }
  const cap = g.capacity;
  setText(chip.querySelector(".g-now"), cap ? `${fmt(g.people_now)} / ${fmt(cap)} people` : `${fmt(g.people_now)} people`);
  setText(chip.querySelector(".g-cams"), `${fmt(g.cameras)} camera${g.cameras === 1 ? "" : "s"}`);
  const fill = chip.querySelector(".g-fill");
  const share = cap ? Math.min(1, g.people_now / cap) : 0;
  fill.style.width = `${(share * 100).toFixed(1)}%`;
  chip.querySelector(".g-bar").hidden = !cap;
  updateLevelBadge(chip.querySelector(".badge.level"), g.level);
  chip.dataset.level = g.level;
  chip.title = `Group ${g.group}: ${cap ? `${Math.round(share * 100)}% of capacity, ` : ""}level ${g.level}. ` +
    "Click to narrow the 30-second histogram to this group.";
}

export function showScope(scope) {
  scopeShown = scope;
  for (const [name, chip] of groupChips) chip.setAttribute("aria-pressed", String(scope === `group:${name}`));
}

// ---- export ----------------------------------------------------------------------------------------

const RANGES = { "1h": 3_600_000, "6h": 6 * 3_600_000, "24h": 24 * 3_600_000, "7d": 7 * 24 * 3_600_000 };
const SERIES_STEP = { "1h": "1m", "6h": "5m", "24h": "15m", "7d": "1h" };
const MAX_LISTED = 300;

function updateExportGroups() {
  const select = $("export-subject");
  const have = new Set([...select.querySelectorAll("option[data-group]")].map((o) => o.dataset.group));
  const want = [...groupChips.keys()].sort(collator.compare);
  if (want.length === have.size && want.every((g) => have.has(g))) return;
  const current = select.value;
  for (const o of select.querySelectorAll("option[data-group]")) o.remove();
  const optgroup = select.querySelector("optgroup");
  for (const g of want) {
    const o = el("option", null, `group ${g}`);
    o.value = `group:${g}`;
    o.dataset.group = g;
    optgroup.append(o);
  }
  select.value = current;
  if (select.value !== current) select.value = "all";
}

/// The export link: a plain GET the server answers with a download.
export function exportUrl() {
  const kind = $("export-kind").value, format = $("export-format").value, range = $("export-range").value;
  const q = new URLSearchParams({ kind, format });
  q.set("from", new Date(serverNow() - RANGES[range]).toISOString());
  if (kind === "series") q.set("step", SERIES_STEP[range]);
  const subject = $("export-subject").value;
  let problem = null;
  if (subject === "shown") {
    const ids = shownIds();
    if (ids.length === 0) problem = "no camera is shown";
    else if (ids.length > MAX_LISTED) problem = `${ids.length} cameras shown: narrow the filter to ${MAX_LISTED} or fewer, or export all`;
    else q.set("cameras", ids.join(","));
  } else if (subject === "list") {
    const ids = $("export-cameras").value.split(/[\s,]+/).filter(Boolean);
    if (ids.length === 0) problem = "type one or more camera ids";
    else q.set("cameras", ids.join(","));
  } else if (subject.startsWith("group:")) {
    q.set("group", subject.slice(6));
  }
  return { url: `/api/v1/export?${q}`, problem };
}

export function updateExportLink() {
  const link = $("export-link");
  if (!link) return;
  const { url, problem } = exportUrl();
  $("export-cameras").hidden = $("export-subject").value !== "list";
  link.href = url;
  link.textContent = `Download ${$("export-format").value.toUpperCase()}`;
  link.toggleAttribute("aria-disabled", Boolean(problem));
  setText($("export-problem"), problem ?? "");
}

// ---- wiring ----------------------------------------------------------------------------------------

export function init(callbacks) {
  ({ onChange, onScope, openCamera } = callbacks);
  let filterTimer = 0;
  $("filter").addEventListener("input", () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => {
      opts.q = $("filter").value.trim();
      refilter();
      onChange();
    }, 120);
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "/" && !event.target.closest?.("input, textarea, select") && !$("overview").hidden) {
      event.preventDefault();
      $("filter").focus();
    }
  });
  for (const v of ["grid", "table"]) {
    $(`view-${v}`).addEventListener("click", () => {
      if (opts.view === v) return;
      opts.view = v;
      showView();
      onChange();
    });
  }
  for (const button of document.querySelectorAll("#camera-table button[data-sort]")) {
    button.addEventListener("click", () => {
      const col = button.dataset.sort;
      if (col === opts.sort) setSort(col, opts.order === "asc" ? "desc" : "asc");
      else setSort(col);
    });
  }
  $("sort").addEventListener("change", () => setSort($("sort").value));
  $("order").addEventListener("click", () => setSort(opts.sort, opts.order === "asc" ? "desc" : "asc"));
  // A photo (or anywhere on a panel but its links) opens the camera's page.
  $("cameras").addEventListener("click", (event) => {
    const card = event.target.closest("article.camera");
    if (!card || event.target.closest("a")) return;
    openCamera(card.dataset.camera);
  });
  for (const id of ["export-kind", "export-format", "export-range", "export-subject", "export-cameras"]) {
    $(id).addEventListener("input", updateExportLink);
  }
  $("export-form").addEventListener("submit", (event) => event.preventDefault());
  // The range is relative to now: recompute just before the download starts.
  $("export-link").addEventListener("click", (event) => {
    const { url, problem } = exportUrl();
    if (problem) {
      event.preventDefault();
      setText($("export-problem"), problem);
      return;
    }
    $("export-link").href = url;
  });
  showSort();
  updateExportLink();
}

export const cameraCount = () => recs.size;
export const has = (id) => recs.has(id);
