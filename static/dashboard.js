// The live dashboard. One WebSocket (/ws/live) brings a snapshot of the whole state on connect
// and then one message per new count; the page reconnects by itself and every message carries
// absolute figures, so a message seen twice or a reconnect never skews what is shown.
// Everything user-provided is rendered with textContent, never as HTML.

const WINDOW_MS = 30_000;
const WINDOWS_SHOWN = 60; // 30 minutes
const STALE_AFTER_MS = 5 * 60_000;
const SVG_NS = "http://www.w3.org/2000/svg";

const state = {
  cameras: new Map(), // camera id -> CameraView
  windows: new Map(), // window start ms -> {start_ms, people, photos}
  totals: null,
  clockOffsetMs: 0, // server time - browser time
};

const $ = (id) => document.getElementById(id);
const serverNow = () => Date.now() + state.clockOffsetMs;

function setStatus(kind, text) {
  const pill = $("link-status");
  pill.dataset.state = kind;
  pill.textContent = text;
}

function markUpdated() {
  const now = new Date();
  $("last-update").dateTime = now.toISOString();
  $("last-update").textContent = now.toLocaleTimeString();
}

function applyTotals(totals) {
  state.totals = totals;
  state.clockOffsetMs = totals.server_time_ms - Date.now();
  $("counted-total").textContent = totals.counted_total.toLocaleString();
  $("people-now").textContent = totals.people_now.toLocaleString();
  $("last-30s").textContent = totals.last_30s.toLocaleString();
  $("photos-total").textContent = totals.photos_total.toLocaleString();
  $("camera-count").textContent = totals.camera_count.toLocaleString();
}

function applyCamera(view) {
  const current = state.cameras.get(view.camera);
  if (current && (current.timestamp_ms > view.timestamp_ms ||
      (current.timestamp_ms === view.timestamp_ms && current.event_id >= view.event_id))) {
    return; // already showing this photo or a newer one
  }
  state.cameras.set(view.camera, view);
  renderCamera(view);
}

function handle(message) {
  switch (message.type) {
    case "snapshot": {
      state.windows.clear();
      for (const w of message.histogram.windows) state.windows.set(w.start_ms, w);
      applyTotals(message.summary);
      const fresh = new Set(message.summary.cameras.map((c) => c.camera));
      for (const id of [...state.cameras.keys()]) {
        if (!fresh.has(id)) { state.cameras.delete(id); cameraCard(id)?.remove(); }
      }
      for (const camera of message.summary.cameras) applyCamera(camera);
      break;
    }
    case "count":
      if (message.camera) applyCamera(message.camera);
      state.windows.set(message.window.start_ms, message.window);
      applyTotals(message.totals);
      break;
    case "totals":
      applyTotals(message.totals);
      break;
    default:
      return;
  }
  renderHistogram();
  refreshAges();
  markUpdated();
}

// ---- cameras ---------------------------------------------------------------------------------

function cameraCard(id) {
  return [...$("cameras").children].find((el) => el.dataset.camera === id);
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderCamera(view) {
  let card = cameraCard(view.camera);
  if (!card) {
    card = el("article", "camera");
    card.dataset.camera = view.camera;
    const head = el("div", "head");
    head.append(el("span", "name", view.camera));
    const count = el("span", "count");
    count.append(el("span", "n"), el("small", null, " people"));
    head.append(count);
    const img = el("img", "thumbnail");
    img.addEventListener("click", () => openPhoto(card.dataset.camera, img.src));
    const meta = el("div", "meta");
    meta.append(el("span", "age"), el("span", null, " · "), el("time", "taken"));
    card.append(head, img, meta);
    // Keep the grid sorted by camera id.
    const next = [...$("cameras").children].find((c) => c.dataset.camera > view.camera);
    $("cameras").insertBefore(card, next ?? null);
  }
  card.querySelector(".n").textContent = view.count.toLocaleString();
  const img = card.querySelector("img.thumbnail");
  img.alt = `Latest photo from camera ${view.camera}, ${view.count} people marked`;
  if (img.getAttribute("src") !== view.photo_url) img.src = view.photo_url;
  const taken = card.querySelector(".taken");
  taken.dateTime = new Date(view.timestamp_ms).toISOString();
  taken.textContent = new Date(view.timestamp_ms).toLocaleTimeString();
  card.dataset.timestamp = view.timestamp_ms;
  $("no-cameras").hidden = state.cameras.size > 0;
}

function formatAge(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

function refreshAges() {
  const now = serverNow();
  for (const card of $("cameras").children) {
    const age = now - Number(card.dataset.timestamp);
    const stale = age > STALE_AFTER_MS;
    card.querySelector(".age").textContent = stale ? `stale: ${formatAge(age)}` : formatAge(age);
    card.classList.toggle("stale", stale);
  }
}

function openPhoto(camera, src) {
  $("photo-dialog-title").textContent = `Camera ${camera}`;
  $("photo-dialog-img").src = src;
  $("photo-dialog-img").alt = `Latest photo from camera ${camera}`;
  $("photo-dialog").showModal();
}

// ---- histogram -------------------------------------------------------------------------------

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceMax(value) {
  if (value <= 5) return 5;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * magnitude >= value) return step * magnitude;
  return 10 * magnitude;
}

const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

// The windows shown, oldest first, ending with the one holding "now"; the geometry of the last
// drawing, for the hover tip.
let shown = { windows: [], left: 0, slot: 1 };

function renderHistogram() {
  const chart = $("histogram");
  // Drawn in CSS pixels (the viewBox follows the element's size) so that text is never stretched.
  const width = Math.max(chart.clientWidth, 200), height = Math.max(chart.clientHeight, 120);
  const rem = parseFloat(getComputedStyle(document.documentElement).fontSize) || 16;
  const left = 3.6 * rem, right = 2.2 * rem, top = 0.8 * rem, bottom = 2.8 * rem;
  chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const lastStart = Math.floor(serverNow() / WINDOW_MS) * WINDOW_MS;
  const windows = [];
  for (let i = WINDOWS_SHOWN - 1; i >= 0; i--) {
    const start = lastStart - i * WINDOW_MS;
    windows.push(state.windows.get(start) ?? { start_ms: start, people: 0, photos: 0 });
  }
  const max = niceMax(Math.max(...windows.map((w) => w.people)));
  const plotW = width - left - right, plotH = height - top - bottom;
  const slot = plotW / windows.length;
  shown = { windows, left, slot };
  const nodes = [];
  for (let i = 0; i <= 4; i++) {
    const value = (max * i) / 4, y = top + plotH - (plotH * i) / 4;
    nodes.push(svg("line", { class: "gridline", x1: left, x2: width - right, y1: y, y2: y }));
    nodes.push(svg("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, Math.round(value).toLocaleString()));
  }
  // Time labels on whole minutes, as far apart as the width allows.
  const labelEvery = [5, 10, 15, 30].find((m) => (m * 2 * slot) >= 4.5 * rem) ?? 30;
  windows.forEach((w, i) => {
    const h = (plotH * w.people) / max;
    const bar = svg("rect", { class: "bar", x: left + i * slot + 1, y: top + plotH - h,
      width: Math.max(1, slot - 2), height: h });
    bar.dataset.start = w.start_ms;
    bar.dataset.people = w.people;
    nodes.push(bar);
    const t = new Date(w.start_ms);
    if (t.getSeconds() === 0 && t.getMinutes() % labelEvery === 0) {
      const x = left + i * slot;
      nodes.push(svg("line", { class: "axis", x1: x, x2: x, y1: top + plotH, y2: top + plotH + 4 }));
      nodes.push(svg("text", { x, y: top + plotH + 1.1 * rem, "text-anchor": "middle" }, clock(w.start_ms)));
    }
  });
  nodes.push(svg("line", { class: "axis", x1: left, x2: width - right, y1: top + plotH, y2: top + plotH }));
  nodes.push(svg("line", { class: "axis", x1: left, x2: left, y1: top, y2: top + plotH }));
  nodes.push(svg("text", { class: "axis-title", x: left + plotW / 2, y: height - 0.3 * rem, "text-anchor": "middle" },
    "time (each bar: 30 seconds)"));
  nodes.push(svg("text", { class: "axis-title", x: 0.9 * rem, y: top + plotH / 2, "text-anchor": "middle",
    transform: `rotate(-90 ${0.9 * rem} ${top + plotH / 2})` }, "people counted"));
  chart.replaceChildren(...nodes);
  if (pointer) showTip(pointer); // keep the tip true while the bars move on
}

// The value on hover: the whole column answers, so empty windows can be read too.
let pointer = null; // the last pointer position over the chart, while it is there

function showTip(event) {
  pointer = event;
  const chart = $("histogram");
  const box = chart.getBoundingClientRect();
  const i = Math.floor((event.clientX - box.left - shown.left) / shown.slot);
  const w = shown.windows[i];
  if (!w) {
    $("histogram-tip").hidden = true;
    return;
  }
  const tip = $("histogram-tip");
  const from = new Date(w.start_ms).toLocaleTimeString();
  const to = new Date(w.start_ms + WINDOW_MS).toLocaleTimeString();
  tip.textContent = `${from} – ${to}: ${w.people.toLocaleString()} people in ${w.photos.toLocaleString()} photos`;
  tip.hidden = false;
  const x = Math.min(Math.max(event.clientX - box.left, tip.offsetWidth / 2), box.width - tip.offsetWidth / 2);
  tip.style.left = `${x}px`;
  for (const bar of chart.querySelectorAll(".bar")) bar.classList.toggle("hover", Number(bar.dataset.start) === w.start_ms);
}

function hideTip() {
  pointer = null;
  $("histogram-tip").hidden = true;
  for (const bar of $("histogram").querySelectorAll(".bar.hover")) bar.classList.remove("hover");
}

// ---- connection ------------------------------------------------------------------------------

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
    try {
      handle(JSON.parse(event.data));
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

$("histogram").addEventListener("pointermove", showTip);
$("histogram").addEventListener("pointerleave", hideTip);
new ResizeObserver(() => renderHistogram()).observe($("histogram"));
renderHistogram();
// Ages count in seconds; the histogram moves on by one bar every 30 s.
setInterval(refreshAges, 1_000);
setInterval(renderHistogram, 5_000);
connect();
