// The External audio page: the live sources with their state (GET /api/v1/sources every
// 2 s), a form to add or edit one, Remove, Listen (a WAV stream) and Test upstream.
"use strict";

const { el, api, say } = IMSS;
const KINDS = ["http", "playlist", "command", "tone", "silence"];
const UPSTREAM = ["http", "command"];
const KIND_HELP = {
  http: "an internet stream (Icecast/Shoutcast, HTTP), or a .pls/.m3u playlist of streams",
  playlist: "files played in a loop",
  command: "a program's output, e.g. a sound card's line-in",
  tone: "a sine tone",
  silence: "comfort silence",
};

/** The keys of a source, grouped as the form shows them; `kinds`: the kinds they apply to. */
const GROUPS = [
  { title: null, fields: [
    { key: "name", label: "Name", help: "The name callers and SPEAK requests use (sip:NAME@host, source:NAME)." },
    { key: "kind", label: "Kind", type: "select", options: KINDS, help: "What feeds the source." },
    { key: "url", label: "Stream URL", kinds: ["http"], optional: true, placeholder: "https://radio.example/stream",
      help: "The stream, or a playlist of streams (.pls, .m3u, .m3u8)." },
    { key: "path", label: "Folder", kinds: ["playlist"], optional: true,
      help: "Folder of files, relative to the audio root or absolute." },
    { key: "files", label: "Files", type: "list", kinds: ["playlist"], rows: 3,
      help: "Or an explicit list, one per line: paths relative to the audio root, absolute paths or http(s) URLs." },
    { key: "shuffle", label: "Shuffle", type: "bool", kinds: ["playlist"], help: "Shuffle the playlist on every round." },
    { key: "command", label: "Command line", kinds: ["command"], optional: true,
      placeholder: "arecord -q -D hw:1,0 -t raw -f S16_LE -r 16000 -c 2",
      help: "The program and its arguments, split like a shell splits them, but no shell runs: write sh -c '…' for a pipeline." },
    { key: "format", label: "Output format", type: "select", kinds: ["command"], optional: true,
      defaultLabel: "default (s16le)", options: ["s16le", "wav"],
      help: "What the program writes: raw signed 16-bit little-endian PCM, or a WAV header then PCM." },
    { key: "sample_rate", label: "Sample rate", type: "number", unit: "Hz", kinds: ["command"], optional: true,
      min: 4000, max: 192000, step: 1, placeholder: "8000", help: "The raw PCM's rate (s16le only; 4,000–192,000 Hz)." },
    { key: "channels", label: "Channels", type: "number", kinds: ["command"], optional: true, min: 1, max: 8, step: 1,
      placeholder: "1", help: "The raw PCM's interleaved channels, mixed to mono (s16le only; 1–8)." },
    { key: "frequency_hz", label: "Frequency", type: "number", unit: "Hz", kinds: ["tone"], optional: true,
      min: 1, max: 4000, placeholder: "440", help: "Tone frequency." },
    { key: "level_dbfs", label: "Tone level", type: "number", unit: "dBFS", kinds: ["tone"], optional: true,
      max: 0, placeholder: "−12", help: "Tone level; default −12 dBFS." },
    { key: "fallback", label: "Fallback", optional: true, placeholder: "tone",
      help: "What listeners hear while the source is down: tone (the default), silence or another source's name." },
  ] },
  { title: "Sound processing", fields: [
    { key: "gain_db", label: "Gain", type: "number", unit: "dB", optional: true, min: -40, max: 40, placeholder: "0",
      help: "Fixed gain (−40…+40 dB), for a source that is not normalised." },
    { key: "normalize", label: "Normalise loudness", type: "bool",
      help: "Bring the source to the target loudness (EBU R128), with a gain that adapts over a few seconds." },
    { key: "target_lufs", label: "Target loudness", type: "number", unit: "LUFS", optional: true, min: -40, max: -6,
      placeholder: "−21", help: "Loudness normalisation aims at (−40…−6 LUFS); needs Normalise loudness." },
    { key: "band_pass", label: "Telephone band", type: "bool", help: "Filter the source to 300–3,400 Hz." },
    { key: "limiter_ceiling_dbfs", label: "Limiter ceiling", type: "number", unit: "dBFS", optional: true, min: -20, max: 0,
      placeholder: "−1", help: "Ceiling of the peak limiter (−20…0 dBFS)." },
    { key: "announcement", label: "Announcement", optional: true, placeholder: "welcome.wav",
      help: "A file each new listener hears before joining the source: a path under the audio root." },
    { key: "chime", label: "Chime", optional: true,
      help: "A file that replaces the source's audio every chime interval, heard by every listener at once." },
    { key: "chime_every_s", label: "Chime interval", type: "number", unit: "s", optional: true, min: 1, max: 3600, step: 1,
      placeholder: "60", help: "Seconds from the start of one chime to the next (1–3,600); needs a chime." },
  ] },
  { title: "Upstream (http and command)", kinds: UPSTREAM, fields: [
    { key: "prebuffer_ms", label: "Pre-buffer", type: "number", unit: "ms", kinds: UPSTREAM, optional: true, min: 0, max: 10000,
      step: 1, placeholder: "1000", help: "Audio queued before the upstream is heard, at the start and after every interruption." },
    { key: "stall_ms", label: "Stall after", type: "number", unit: "ms", kinds: UPSTREAM, optional: true, min: 500, max: 60000,
      step: 1, placeholder: "2000", help: "An upstream that delivers nothing this long is dropped and made again." },
    { key: "reconnect_min_ms", label: "First retry after", type: "number", unit: "ms", kinds: UPSTREAM, optional: true,
      min: 50, max: 60000, step: 1, placeholder: "500", help: "First wait before reconnecting; each failure doubles it." },
    { key: "reconnect_max_ms", label: "Longest retry wait", type: "number", unit: "ms", kinds: UPSTREAM, optional: true,
      min: 50, max: 3600000, step: 1, placeholder: "30000", help: "Longest wait between reconnections." },
  ] },
  { title: "Running", fields: [
    { key: "idle_stop_s", label: "Stop when idle after", type: "number", unit: "s", optional: true, min: 0, max: 86400,
      step: 1, placeholder: "60", help: "Seconds a source keeps running after its last listener left (ignored when kept warm)." },
    { key: "keep_warm", label: "Keep warm", type: "bool",
      help: "Run the source from start-up on, listeners or not: its first caller hears it at once." },
  ] },
];
const FIELDS = GROUPS.flatMap((g) => g.fields);

const table = document.getElementById("sources");
const line = document.getElementById("sources-state");
let version = null;
let sources = [];
const rows = new Map();
let shown = false;

// ---- the table ---------------------------------------------------------------------------

function describe(source) {
  const st = source.status || {};
  if (st.now_playing) return st.now_playing;
  if (st.last_error) return `error: ${st.last_error}`;
  const c = source.config;
  return c.url || c.command || c.path || (c.frequency_hz ? `${c.frequency_hz} Hz` : "") || "";
}

function actionButton(action, label, name, handler, admin = true) {
  const b = el("button", { type: "button", class: "small secondary", "data-action": action,
    "data-admin": admin || null, "aria-label": `${label} ${name}` }, label);
  b.addEventListener("click", handler);
  return b;
}

function buildRow(source) {
  const name = source.config.name;
  const cells = {
    name: el("td", {}, el("strong", {}, name)),
    kind: el("td"), state: el("td"), listeners: el("td", { class: "num" }),
    playing: el("td", { class: "wrap" }), level: el("td"),
  };
  const actions = el("td", { class: "actions-cell" },
    actionButton("listen", "Listen", name, () => listen(name)),
    actionButton("test", "Test upstream", name, () => testUpstream(name)),
    // Viewers may open a source's settings, in the read-only form.
    actionButton("edit", "Edit", name, () => edit(name), false),
    actionButton("remove", "Remove", name, () => remove(name)));
  const tr = el("tr", { "data-name": name }, cells.name, cells.kind, cells.state, cells.listeners,
    cells.playing, cells.level, actions);
  return { tr, cells };
}

function updateRow({ cells }, source) {
  const st = source.status || {};
  cells.kind.textContent = source.config.kind;
  cells.state.textContent = st.state || "–";
  cells.state.className = `state ${st.state || ""}`;
  cells.listeners.textContent = st.listeners === undefined ? "–" : String(st.listeners);
  const detail = describe(source);
  const extra = [st.codec, st.bitrate_kbps ? `${st.bitrate_kbps} kbit/s` : null,
    st.reconnects ? `${st.reconnects} reconnects` : null].filter(Boolean).join(" · ");
  cells.playing.replaceChildren(detail, extra ? el("span", { class: "muted" }, ` (${extra})`) : "");
  cells.level.replaceChildren(IMSS.levelMeter(st.level_dbfs, source.config.name));
}

function showTable() {
  const names = sources.map((s) => s.config.name);
  const same = shown && names.length === rows.size && names.every((n) => rows.has(n));
  if (!same) {
    shown = true;
    rows.clear();
    for (const s of sources) rows.set(s.config.name, buildRow(s));
    IMSS.fillTable(table, [...rows.values()].map((r) => r.tr),
      "No live sources yet: add one below.");
    IMSS.guard(table);
  }
  for (const s of sources) updateRow(rows.get(s.config.name), s);
}

let busy = false;
async function refresh() {
  if (busy) return;
  busy = true;
  try {
    const data = await api("GET", "/api/v1/sources");
    version = data.version;
    sources = data.sources || [];
    showTable();
  } catch (e) {
    IMSS.showError(e, { line, prefix: "The sources could not be read" });
  } finally {
    busy = false;
  }
}

// ---- listen and test ------------------------------------------------------------------------

const listenBox = document.getElementById("listen");

/** Plays a source's WAV stream (`GET …/listen`) as it arrives, through Web Audio: an
 * `<audio>` element given a live stream waits to buffer many seconds before it starts,
 * this starts within a quarter of a second. Shows what was heard, its level and its
 * frequency (zero crossings of the last second). */
class LivePlayer {
  constructor(name) {
    this.name = name;
    this.controller = new AbortController();
    this.context = new AudioContext();
    this.next = 0;
    this.heard = 0;
    this.recent = new Float32Array(0);
  }

  async run() {
    const url = `/api/v1/sources/${encodeURIComponent(this.name)}/listen?seconds=300`;
    const response = await fetch(url, { signal: this.controller.signal, cache: "no-store" });
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      throw new IMSS.ApiError(response.status, body);
    }
    const reader = response.body.getReader();
    let pending = new Uint8Array(0);
    let format = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const joined = new Uint8Array(pending.length + value.length);
      joined.set(pending);
      joined.set(value, pending.length);
      pending = joined;
      if (!format) {
        format = LivePlayer.header(pending);
        if (!format) continue;
        pending = pending.slice(format.dataAt);
      }
      const whole = pending.length - (pending.length % (2 * format.channels));
      if (whole) {
        this.play(new DataView(pending.buffer, pending.byteOffset, whole), format);
        pending = pending.slice(whole);
      }
    }
  }

  /** The sample rate, channels and where the samples start, once the header is in. */
  static header(bytes) {
    if (bytes.length < 12) return null;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    const tag = (at) => String.fromCharCode(...bytes.slice(at, at + 4));
    if (tag(0) !== "RIFF" || tag(8) !== "WAVE") throw new Error("the stream is not WAV");
    let at = 12, rate = 8000, channels = 1;
    while (at + 8 <= bytes.length) {
      const size = view.getUint32(at + 4, true);
      if (tag(at) === "fmt " && at + 16 <= bytes.length) {
        channels = view.getUint16(at + 10, true);
        rate = view.getUint32(at + 12, true);
      }
      if (tag(at) === "data") return { rate, channels, dataAt: at + 8 };
      at += 8 + size + (size % 2);
    }
    return null;
  }

  play(view, { rate, channels }) {
    const frames = view.byteLength / (2 * channels);
    const buffer = this.context.createBuffer(1, frames, rate);
    const out = buffer.getChannelData(0);
    for (let i = 0; i < frames; i++) {
      let sum = 0;
      for (let c = 0; c < channels; c++) sum += view.getInt16(2 * (i * channels + c), true);
      out[i] = sum / channels / 32768;
    }
    const node = this.context.createBufferSource();
    node.buffer = buffer;
    node.connect(this.context.destination);
    // A quarter of a second of jitter buffer; after a gap, start again from now.
    const now = this.context.currentTime;
    if (this.next < now + 0.05) this.next = now + 0.25;
    node.start(this.next);
    this.next += buffer.duration;
    this.heard += buffer.duration;
    const total = this.recent.length + frames;
    const merged = new Float32Array(total);
    merged.set(this.recent);
    merged.set(out, this.recent.length);
    this.recent = merged.slice(Math.max(0, total - rate));
    this.rate = rate;
  }

  /** Level (dBFS RMS) and frequency (Hz, by zero crossings) of the last second. */
  figures() {
    const x = this.recent;
    if (!x.length) return { dbfs: null, hz: null };
    let energy = 0, crossings = 0;
    for (let i = 0; i < x.length; i++) {
      energy += x[i] * x[i];
      if (i && (x[i - 1] < 0) !== (x[i] < 0)) crossings++;
    }
    const rms = Math.sqrt(energy / x.length);
    return { dbfs: rms > 0 ? 20 * Math.log10(rms) : -Infinity, hz: crossings / 2 / (x.length / this.rate) };
  }

  stop() {
    this.controller.abort();
    this.context.close().catch(() => {});
  }
}

let player = null;
let showing = null;

function listen(name) {
  stopListening();
  listenBox.hidden = false;
  document.getElementById("listen-title").textContent = `Listening to ${name}`;
  const state = document.getElementById("listen-state");
  state.textContent = "Connecting…";
  const current = new LivePlayer(name);
  player = current;
  listenBox.dataset.source = name;
  showing = setInterval(() => {
    const { dbfs, hz } = current.figures();
    listenBox.dataset.seconds = current.heard.toFixed(2);
    if (hz !== null) listenBox.dataset.hz = hz.toFixed(1);
    if (current.heard > 0) state.textContent = `${IMSS.duration(current.heard)} heard`;
    document.getElementById("listen-level").replaceChildren(
      IMSS.levelMeter(dbfs === null || !Number.isFinite(dbfs) ? null : dbfs, name));
  }, 250);
  current.run().then(() => {
    if (player === current) state.textContent = `The stream of ${name} ended.`;
  }, (e) => {
    if (e.name === "AbortError") return;
    if (player === current) IMSS.showError(e, { line: state, prefix: `${name} cannot be heard` });
  });
}

function stopListening() {
  if (player) player.stop();
  player = null;
  clearInterval(showing);
  delete listenBox.dataset.source;
  delete listenBox.dataset.seconds;
  delete listenBox.dataset.hz;
}

document.getElementById("listen-stop").addEventListener("click", () => {
  stopListening();
  listenBox.hidden = true;
});

const STEP_NAMES = { dns: "name resolution", tcp: "TCP connection", tls: "TLS handshake", http: "HTTP request",
  decode: "decoding", program: "program", files: "files", done: "done" };

async function testUpstream(name) {
  const box = document.getElementById("test");
  const result = document.getElementById("test-result");
  box.hidden = false;
  document.getElementById("test-title").textContent = `Upstream test of ${name}`;
  result.className = "result";
  result.replaceChildren(`Testing ${name}…`);
  box.scrollIntoView({ block: "nearest" });
  try {
    const r = await api("POST", `/api/v1/sources/${encodeURIComponent(name)}/test`);
    const step = STEP_NAMES[r.step] || r.step;
    const format = r.format ? (typeof r.format === "string" ? r.format : JSON.stringify(r.format)) : null;
    result.className = `result ${r.ok ? "ok" : "bad"}`;
    result.replaceChildren(r.ok
      ? `${name} works (${r.elapsed_ms} ms)${format ? `: ${format}` : ""}. ${r.message || ""}`
      : `${name} failed at the ${step} step after ${r.elapsed_ms} ms: ${r.message}`);
  } catch (e) {
    IMSS.showError(e, { line: result, prefix: "The test could not run" });
  }
}

async function remove(name) {
  if (!confirm(`Remove the live source ${name}? Its listeners are cut off.`)) return;
  try {
    await api("DELETE", `/api/v1/sources/${encodeURIComponent(name)}`,
      { headers: { "If-Match": `"${version}"` } });
    say(line, `Removed ${name}.`, "ok");
    if (editing === name) startAdd();
  } catch (e) {
    changeFailed(e, line);
  }
  refresh();
}

function changeFailed(e, where, container = null) {
  if (e.status === 409 && e.error === "conflict") {
    const again = el("button", { type: "button", class: "secondary small" }, "Load the current sources");
    again.addEventListener("click", async () => { await refresh(); say(where, "Loaded: make your change again."); });
    where.className = "result bad conflict";
    where.replaceChildren("Not saved: someone else changed the settings since this page loaded them. ", again);
  } else {
    IMSS.showError(e, { container, line: where, prefix: "Not saved" });
  }
}

// ---- the editor -----------------------------------------------------------------------------

let editing = null;
let editVersion = null;
const controls = new Map();
const title = el("h2", { id: "editor-title" }, "Add a source");
const save = el("button", { type: "submit", id: "source-save" }, "Add source");
const cancel = el("button", { type: "button", class: "secondary", id: "source-cancel", hidden: true }, "Cancel editing");
const result = el("p", { class: "result", id: "source-result", role: "status", "aria-live": "polite" });
const form = el("form", { id: "source-form", class: "settings", "data-admin": true, "aria-labelledby": "editor-title", noValidate: true },
  title);
for (const group of GROUPS) {
  const box = group.title
    ? el("details", { class: "group", "data-kinds": group.kinds ? group.kinds.join(" ") : null },
      el("summary", {}, group.title))
    : el("div", { class: "fields" });
  for (const field of group.fields) {
    const { row, control } = Settings.fieldRow("external_audio", field);
    if (field.kinds) row.dataset.kinds = field.kinds.join(" ");
    controls.set(field.key, control);
    box.append(row);
  }
  form.append(box);
}
form.append(el("div", { class: "actions" }, save, cancel, result));
document.getElementById("editor").append(form);
const kindSelect = controls.get("kind");
const kindHelp = el("span", { class: "kind-help" });
kindSelect.after(" ", kindHelp);

function showKind() {
  const kind = kindSelect.value;
  kindHelp.textContent = KIND_HELP[kind] || "";
  for (const node of form.querySelectorAll("[data-kinds]")) {
    node.hidden = !node.dataset.kinds.split(" ").includes(kind);
  }
}
kindSelect.addEventListener("change", showKind);

function fill(config) {
  for (const field of FIELDS) {
    const v = config[field.key];
    Settings.write(field, controls.get(field.key), v === undefined ? null : v, "external_audio");
  }
  // A folded group opens when the source sets one of its keys.
  for (const group of form.querySelectorAll("details.group")) {
    group.open = [...group.querySelectorAll("[name]")].some((c) => {
      const v = config[c.name];
      return v !== undefined && v !== null && v !== false;
    });
  }
  showKind();
}

function startAdd() {
  editing = null;
  IMSS.clearErrors(form);
  title.textContent = "Add a source";
  save.textContent = "Add source";
  cancel.hidden = true;
  controls.get("name").readOnly = false;
  fill({ kind: "tone" });
}

function edit(name) {
  const source = sources.find((s) => s.config.name === name);
  if (!source) return;
  editing = name;
  // A change saved by someone else while this form is open is refused, not overwritten.
  editVersion = version;
  IMSS.clearErrors(form);
  title.textContent = `Edit ${name}`;
  save.textContent = "Save source";
  cancel.hidden = false;
  fill(source.config);
  // The name is what the source is known by: a new name is a new source.
  controls.get("name").readOnly = true;
  say(result, "");
  form.scrollIntoView({ block: "start" });
  controls.get("kind").focus();
}
cancel.addEventListener("click", startAdd);

/** The source's settings as the form holds them: the keys of its kind that are set. */
function settings() {
  const kind = kindSelect.value;
  const body = {};
  for (const field of FIELDS) {
    if (field.kinds && !field.kinds.includes(kind)) continue;
    const v = Settings.read(field, controls.get(field.key));
    if (v === null || v === undefined || v === false) continue;
    if (Array.isArray(v) && !v.length) continue;
    body[field.key] = v;
  }
  body.kind = kind;
  return body;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  IMSS.clearErrors(form);
  let body;
  try {
    body = settings();
  } catch (e) {
    IMSS.showError(e, { container: form, line: result, prefix: "Not saved" });
    return;
  }
  if (!body.name) {
    IMSS.showError({ message: "a source needs a name", field: "name" }, { container: form, line: result, prefix: "Not saved" });
    return;
  }
  save.disabled = true;
  try {
    const headers = { "If-Match": `"${editing ? editVersion : version}"` };
    const saved = editing
      ? await api("PUT", `/api/v1/sources/${encodeURIComponent(editing)}`, { body, headers })
      : await api("POST", "/api/v1/sources", { body, headers });
    const what = editing ? `Saved ${body.name}.` : `Added ${body.name}.`;
    const restart = saved && saved.needs_restart && saved.needs_restart.length
      ? ` Takes effect after a restart: ${saved.needs_restart.join(", ")}.` : "";
    await refresh();
    if (!editing) startAdd();
    say(result, what + restart, "ok");
  } catch (e) {
    changeFailed(e, result, form);
  } finally {
    save.disabled = false;
  }
});

startAdd();
IMSS.guard(form);
refresh();
setInterval(refresh, 2000);
