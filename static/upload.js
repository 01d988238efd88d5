// Sends each chosen photo to POST /upload (one request per photo, the same form fields a plain
// form post uses) and lists what came back. Text from the server is shown with textContent.

const form = document.getElementById("upload-form");
const results = document.getElementById("results");
const rows = results.querySelector("tbody");

const dashboard = new URL(location.href);
dashboard.port = "4400";
dashboard.pathname = "/";
document.getElementById("dashboard-link").href = dashboard.href;

function addRow(name) {
  const tr = document.createElement("tr");
  const cells = ["name", "count", "details"].map((cls) => {
    const td = document.createElement("td");
    td.className = cls;
    tr.append(td);
    return td;
  });
  cells[0].textContent = name;
  cells[1].textContent = "…";
  rows.prepend(tr);
  results.hidden = false;
  return { count: cells[1], details: cells[2], row: tr };
}

async function uploadOne(camera, file) {
  const cells = addRow(file.name);
  const body = new FormData();
  body.append("camera_id", camera);
  body.append("imageFileField", file, file.name);
  try {
    const response = await fetch("/upload", { method: "POST", body });
    const answer = await response.json().catch(() => ({ message: `HTTP ${response.status}` }));
    if (response.ok) {
      cells.count.textContent = String(answer.count);
      cells.details.textContent =
        `camera ${answer.camera} · ${answer.image.width}×${answer.image.height} · ` +
        `${answer.model} · ${Math.round(answer.inference_ms)} ms`;
      cells.row.dataset.count = String(answer.count);
    } else {
      cells.count.textContent = "—";
      cells.details.textContent = `${response.status}: ${answer.message ?? answer.error}`;
      cells.details.classList.add("error");
      cells.row.dataset.error = answer.error ?? String(response.status);
    }
  } catch (error) {
    cells.count.textContent = "—";
    cells.details.textContent = `upload failed: ${error}`;
    cells.details.classList.add("error");
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const camera = form.camera_id.value.trim();
  const files = [...form.imageFileField.files];
  const button = document.getElementById("submit");
  button.disabled = true;
  try {
    for (const file of files) await uploadOne(camera, file);
  } finally {
    button.disabled = false;
  }
});
