// The Audio files page: the files under the audio root (GET /api/v1/files), upload
// (PUT with the raw file as the body), play (decoded to WAV by the server) and delete.
"use strict";

const { el, api, say } = IMSS;
const table = document.getElementById("files");
const state = document.getElementById("files-state");
const form = document.getElementById("upload");
const fileInput = document.getElementById("upload-file");
const folderInput = document.getElementById("upload-folder");
const result = document.getElementById("upload-result");

/** A path's segments URL-encoded, the slashes kept. */
function encodePath(path) {
  return path.split("/").map(encodeURIComponent).join("/");
}

function button(action, label, path, handler, admin) {
  const b = el("button", { type: "button", class: "small secondary", "data-action": action,
    "data-admin": admin || null, "aria-label": `${label} ${path}` }, label);
  b.addEventListener("click", handler);
  return b;
}

function row(f) {
  const length = f.seconds === null || f.seconds === undefined ? "–" : `${f.seconds.toFixed(1)} s`;
  const format = f.error ? el("span", { class: "bad" }, `cannot be decoded: ${f.error}`) : (f.format || "–");
  return el("tr", { "data-path": f.path },
    el("td", { class: "mono" }, f.path),
    el("td", {}, format),
    el("td", { class: "num" }, length),
    el("td", { class: "num" }, IMSS.bytes(f.bytes || 0)),
    el("td", {}, IMSS.when(f.modified)),
    el("td", { class: "actions-cell" },
      f.error ? null : button("play", "Play", f.path, () => play(f.path)),
      button("delete", "Delete", f.path, () => remove(f.path), true)));
}

async function refresh() {
  try {
    const data = await api("GET", "/api/v1/files");
    document.getElementById("root").textContent = data.root ? ` (${data.root})` : "";
    const files = data.files || [];
    IMSS.fillTable(table, files.map(row), "No audio files yet: upload one above.");
    state.textContent = `${files.length} file${files.length === 1 ? "" : "s"}.` +
      (data.truncated ? " More are there than a listing shows: only these are listed." : "");
    state.className = "result";
    IMSS.guard(table);
  } catch (e) {
    IMSS.showError(e, { line: state, prefix: "The files could not be read" });
  }
}

function play(path) {
  const box = document.getElementById("play");
  const player = document.getElementById("play-audio");
  box.hidden = false;
  document.getElementById("play-title").textContent = `Playing ${path}`;
  player.src = `/api/v1/files/${encodePath(path)}?as=wav`;
  player.dataset.path = path;
  player.play().catch((e) => say(state, `The browser did not play ${path}: ${e.message}`, "bad"));
}

async function remove(path) {
  if (!confirm(`Delete ${path}? Calls and sources that name it cannot play it any more.`)) return;
  try {
    await api("DELETE", `/api/v1/files/${encodePath(path)}`);
    say(state, `Deleted ${path}.`, "ok");
  } catch (e) {
    IMSS.showError(e, { line: state, prefix: "Not deleted" });
  }
  refresh();
}

/** Where the chosen file goes: the folder (without leading or trailing slashes) and name. */
function target() {
  const file = fileInput.files[0];
  const folder = folderInput.value.trim().replace(/^\/+|\/+$/g, "");
  return { file, path: folder ? `${folder}/${file.name}` : file.name };
}

async function upload(overwrite) {
  IMSS.clearErrors(form);
  if (!fileInput.files.length) {
    IMSS.showError({ message: "choose a file first", field: "file" }, { container: form, line: result, prefix: "Not uploaded" });
    return;
  }
  const { file, path } = target();
  say(result, `Uploading ${path} (${IMSS.bytes(file.size)})…`);
  try {
    const url = `/api/v1/files/${encodePath(path)}${overwrite ? "?overwrite=true" : ""}`;
    await api("PUT", url, { body: file, headers: { "Content-Type": file.type || "application/octet-stream" } });
    say(result, `Uploaded ${path}.`, "ok");
    form.reset();
    refresh();
  } catch (e) {
    if (e.status === 409 && e.error === "exists") {
      const again = el("button", { type: "button", class: "small danger", id: "upload-overwrite" }, "Replace it");
      again.addEventListener("click", () => upload(true));
      result.className = "result bad";
      result.replaceChildren(`${path} exists already. `, again);
    } else {
      // The field a decoder or path error names is the file or its folder.
      if (e.field && e.field !== "file") e.field = e.field === "body" ? "file" : "path";
      IMSS.showError(e, { container: form, line: result, prefix: "Not uploaded" });
    }
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  upload(false);
});

refresh();
