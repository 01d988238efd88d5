// Sends each chosen photo to POST /upload (one request per photo, the same form fields a plain
// form post uses) and lists what came back. Text from the server is shown with textContent.
//
// - The camera key goes in `Authorization: Bearer <key>` (kept in localStorage when asked to).
// - Each chosen file gets its own Idempotency-Key when it is chosen: sending the same selection
//   again (a double click, a retry after a 503) is counted once by the server, which replays its
//   first answer. Choosing the files again makes new keys.
// - The optional capture time (datetime-local, the browser's time zone) is sent as RFC 3339 UTC.

const KEY_STORAGE = "crowd.cameraKey";
const form = document.getElementById("upload-form");
const results = document.getElementById("results");
const rows = results.querySelector("tbody");
const keyInput = document.getElementById("camera_key");
const remember = document.getElementById("remember_key");

const dashboard = new URL(location.href);
dashboard.port = "4400";
dashboard.pathname = "/";
dashboard.search = "";
document.getElementById("dashboard-link").href = dashboard.href;

// ---- the camera key ----------------------------------------------------------------------------

const stored = localStorage.getItem(KEY_STORAGE);
if (stored) keyInput.value = stored;
remember.checked = stored !== null || localStorage.getItem(`${KEY_STORAGE}.forget`) === null;

function keepKey() {
  const key = keyInput.value.trim();
  if (remember.checked && key) {
    localStorage.setItem(KEY_STORAGE, key);
    localStorage.removeItem(`${KEY_STORAGE}.forget`);
  } else if (!remember.checked) {
    localStorage.removeItem(KEY_STORAGE);
    localStorage.setItem(`${KEY_STORAGE}.forget`, "1");
  }
}
remember.addEventListener("change", keepKey);
document.getElementById("show-key").addEventListener("click", (event) => {
  const shown = keyInput.type === "text";
  keyInput.type = shown ? "password" : "text";
  event.currentTarget.textContent = shown ? "show" : "hide";
  event.currentTarget.setAttribute("aria-pressed", String(!shown));
});

// ---- one Idempotency-Key per chosen file -------------------------------------------------------

/// crypto.randomUUID needs a secure context (https or localhost); elsewhere build a v4 UUID from
/// crypto.getRandomValues, which every context has.
function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const keys = new WeakMap(); // File -> Idempotency-Key
const keyFor = (file) => {
  if (!keys.has(file)) keys.set(file, uuid());
  return keys.get(file);
};
form.imageFileField.addEventListener("change", () => {
  for (const file of form.imageFileField.files) keyFor(file);
});

// ---- capture time ------------------------------------------------------------------------------

/// The datetime-local value (local wall time) as RFC 3339 in UTC, or null when empty.
function captureTime() {
  const value = document.getElementById("capture_time").value;
  if (!value) return null;
  const date = new Date(value); // a datetime-local string without offset is local time
  if (Number.isNaN(date.getTime())) throw new Error(`capture time “${value}” is not a date`);
  return date.toISOString();
}

// ---- results -----------------------------------------------------------------------------------

function addRow(name) {
  const tr = document.createElement("tr");
  const cells = ["name", "count", "details"].map((cls) => {
    const td = document.createElement("td");
    td.className = cls;
    tr.append(td);
    return td;
  });
  cells[0].textContent = name;
  rows.prepend(tr);
  results.hidden = false;
  return { count: cells[1], details: cells[2], row: tr };
}

/// What to tell the person for each refusal the upload API answers.
function explain(status, answer, response, camera) {
  const retryAfter = response?.headers.get("Retry-After");
  const wait = retryAfter ? ` Try again in ${retryAfter} s.` : "";
  switch (status) {
    case 401:
      return { title: "Camera key missing or not accepted (401)",
        hint: "Enter the camera key (crowd_k_…) printed by `crowd up` or `crowd keys new`." };
    case 403:
      return { title: `This key may not upload for camera ${camera} (403)`,
        hint: "Use a key whose camera patterns include this camera id." };
    case 429:
      return { title: "Too many photos for this key (429)", hint: `The key's rate limit was reached.${wait}`, retry: true };
    case 503:
      return { title: answer?.error === "count_not_stored" ? "Counted, but not stored yet (503)" : "Service unavailable (503)",
        hint: `“send again” uses the same Idempotency-Key, so the photo is counted once.${wait}`, retry: true };
    default:
      return { title: `Refused (${status})`, hint: "" };
  }
}

async function uploadOne(camera, file, idempotencyKey, capture, cells) {
  cells.count.textContent = "…";
  cells.details.textContent = "";
  cells.details.classList.remove("error");
  cells.row.classList.remove("replayed");
  delete cells.row.dataset.count;
  delete cells.row.dataset.error;
  const body = new FormData();
  body.append("camera_id", camera);
  if (capture) body.append("capture_time", capture);
  body.append("imageFileField", file, file.name);
  const headers = { "Idempotency-Key": idempotencyKey, Accept: "application/json" };
  const key = keyInput.value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;
  let response = null;
  try {
    response = await fetch("/upload", { method: "POST", body, headers });
    const answer = await response.json().catch(() => ({ message: `HTTP ${response.status}` }));
    if (response.ok) {
      cells.count.textContent = String(answer.count);
      const replayed = answer.replayed === true || response.headers.get("Idempotent-Replayed") === "true";
      const parts = [`camera ${answer.camera}`];
      if (answer.image) parts.push(`${answer.image.width}×${answer.image.height}`);
      if (answer.model) parts.push(answer.model);
      if (answer.inference_ms !== undefined) parts.push(`${Math.round(answer.inference_ms)} ms`);
      // timestamp_ms is the photo's time: the capture time when one was sent, else when counted.
      if (capture && answer.timestamp_ms) parts.push(`taken ${new Date(answer.timestamp_ms).toLocaleString()}`);
      if (answer.zones?.length) parts.push(`zones: ${answer.zones.map((z) => `${z.name} ${z.count}`).join(", ")}`);
      cells.details.textContent = (replayed ? "already counted: the first answer, counted once · " : "") + parts.join(" · ");
      cells.row.classList.toggle("replayed", replayed);
      cells.row.dataset.count = String(answer.count);
      if (replayed) cells.row.dataset.replayed = "true";
    } else {
      const why = explain(response.status, answer, response, camera);
      cells.count.textContent = "—";
      cells.details.replaceChildren();
      const title = document.createElement("strong");
      title.textContent = why.title;
      const hint = document.createElement("span");
      hint.className = "hint";
      hint.textContent = why.hint;
      cells.details.append(title, document.createTextNode(`${response.status}: ${answer.message ?? answer.error}`), hint);
      cells.details.classList.add("error");
      cells.row.dataset.error = answer.error ?? String(response.status);
      if (why.retry) addRetry(camera, file, idempotencyKey, capture, cells);
    }
  } catch (error) {
    cells.count.textContent = "—";
    cells.details.textContent = `upload failed: ${error}`;
    cells.details.classList.add("error");
    cells.row.dataset.error = "network";
    addRetry(camera, file, idempotencyKey, capture, cells);
  }
}

/// Sends the same photo again with the same Idempotency-Key (never counted twice).
function addRetry(camera, file, idempotencyKey, capture, cells) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "retry";
  button.textContent = "send again";
  button.addEventListener("click", () => uploadOne(camera, file, idempotencyKey, capture, cells));
  cells.details.append(button);
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const camera = form.camera_id.value.trim();
  const files = [...form.imageFileField.files];
  const button = document.getElementById("submit");
  let capture;
  try {
    capture = captureTime();
  } catch (error) {
    const cells = addRow("—");
    cells.count.textContent = "—";
    cells.details.textContent = error.message;
    cells.details.classList.add("error");
    cells.row.dataset.error = "invalid_capture_time";
    return;
  }
  keepKey();
  button.disabled = true;
  try {
    for (const file of files) await uploadOne(camera, file, keyFor(file), capture, addRow(file.name));
  } finally {
    button.disabled = false;
  }
});
