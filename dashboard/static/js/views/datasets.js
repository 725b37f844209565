// Datasets: every dataset with its versions (digest, files, size), a version's files, creating a
// dataset and uploading a small one from the browser (multipart, one part per file).
import { getJson, postJson, request, url } from "../api.js";
import { errorBox, fill, h } from "../dom.js";
import { formatBytes, formatTime } from "../format.js";

export function renderDatasets(main) {
  const body = h("div", { id: "datasets" });
  const message = h("div", { id: "datasets-message" });
  fill(main, h("h1", {}, "Datasets"), createForm(message, () => load(body, message)), message, body);
  load(body, message);
}

async function load(body, message) {
  try {
    const list = await getJson("/v1/datasets");
    if (!list.data.length) return fill(body, h("p", { class: "muted" }, "No datasets yet."));
    return fill(body, list.data.map((d) => datasetSection(d, message, () => load(body, message))));
  } catch (error) {
    return fill(message, errorBox(error));
  }
}

function createForm(message, reload) {
  const name = h("input", { name: "name", placeholder: "pile-dedup", required: true, "aria-label": "dataset name" });
  const description = h("input", { name: "description", placeholder: "description", "aria-label": "description" });
  const submit = async (event) => {
    event.preventDefault();
    try {
      await postJson("/v1/datasets", { name: name.value.trim(), description: description.value });
      fill(message);
      reload();
    } catch (error) {
      fill(message, errorBox(error));
    }
  };
  return h("form", { class: "filters", onsubmit: submit }, name, description,
    h("button", { type: "submit" }, "Create dataset"));
}

function datasetSection(dataset, message, reload) {
  const files = h("div");
  const versions = dataset.versions.map((v) => h("tr", {},
    h("td", {}, String(v.version)), h("td", { class: "name" }, v.digest), h("td", {}, String(v.file_count)),
    h("td", {}, formatBytes(v.size_bytes)), h("td", {}, formatTime(v.created_at)),
    h("td", {}, h("button", { type: "button", onclick: () => showFiles(dataset.name, v.version, files) }, "Files"))));
  return h("section", { dataset: { dataset: dataset.name } },
    h("h2", {}, dataset.name), dataset.description ? h("p", { class: "muted" }, dataset.description) : null,
    versions.length
      ? h("table", {}, h("thead", {}, h("tr", {}, ["Version", "Digest", "Files", "Size", "Created", ""].map((t) => h("th", {}, t)))), h("tbody", {}, versions))
      : h("p", { class: "muted" }, "No versions yet."),
    files, uploadForm(dataset.name, message, reload));
}

async function showFiles(name, version, into) {
  try {
    const manifest = await getJson(`/v1/datasets/${encodeURIComponent(name)}/versions/${version}/manifest`);
    fill(into, h("table", {}, h("thead", {}, h("tr", {}, ["Path", "Size", "sha256"].map((t) => h("th", {}, t)))),
      h("tbody", {}, manifest.files.map((f) => h("tr", {}, h("td", { class: "name" }, f.path), h("td", {}, formatBytes(f.size)), h("td", { class: "name" }, f.sha256))))));
  } catch (error) {
    fill(into, errorBox(error));
  }
}

function uploadForm(name, message, reload) {
  const files = h("input", { type: "file", multiple: true, "aria-label": `files for ${name}` });
  const submit = async (event) => {
    event.preventDefault();
    const form = new FormData();
    for (const file of files.files) form.append("files", file, file.webkitRelativePath || file.name);
    try {
      await request(url(`/v1/datasets/${encodeURIComponent(name)}/versions`), { method: "POST", body: form });
      fill(message);
      reload();
    } catch (error) {
      fill(message, errorBox(error));
    }
  };
  return h("form", { class: "toolbar", onsubmit: submit }, files, h("button", { type: "submit" }, "Upload as a new version"));
}
