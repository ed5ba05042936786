// The dashboard: figures and live sources from the server-sent `status` events of
// /api/v1/events, and charts of the last 15 minutes: the server's history
// (/api/v1/status/history) when the page opens, then each live sample.
"use strict";

const WINDOW_MS = 15 * 60 * 1000;
const samples = []; // { t, streams, packets, p50, p99, cpu }

function text(id, value) {
  document.getElementById(id).textContent = value;
}

function duration(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24;
  const m = Math.floor(s / 60) % 60, sec = s % 60;
  if (d > 0) return `${d} d ${h} h`;
  if (h > 0) return `${h} h ${m} min`;
  if (m > 0) return `${m} min ${sec} s`;
  return `${sec} s`;
}

function ms(v) {
  return v === null || v === undefined ? "–" : v.toFixed(2);
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}

function show(status) {
  const s = status.server;
  text("server-name", s.name);
  text("server-version", "imss " + s.version + (s.location ? " · " + s.location : ""));
  document.title = s.name + " — imss";
  text("uptime", duration(s.uptime_s));
  text("sessions", status.sessions.total);
  // Voicemail and TTS are MRCP sessions doing that now.
  const by = status.sessions;
  const within = [["voicemail", "voicemail"], ["tts", "TTS"]]
    .filter(([key]) => typeof by[key] === "number")
    .map(([key, label]) => `${label} ${by[key]}`);
  text("sessions-kinds",
    `MRCP ${by.mrcp}${within.length ? ` (${within.join(", ")})` : ""} · plain SIP ${by.plain_sip}`);
  text("streams", status.streams);
  text("packets", Math.round(status.packets_per_s));
  text("lateness", ms(status.lateness_ms.p50) + " / " + ms(status.lateness_ms.p99));
  text("cpu", status.cpu_percent.toFixed(1) + " %");
  text("memory", bytes(status.memory_rss_bytes));
  text("capacity", status.capacity.free);
  text("capacity-label", `Free calls of ${status.capacity.max_calls}`);
  showMail(status.mail);

  const rows = status.sources.map((src) => {
    const tr = document.createElement("tr");
    const playing = src.now_playing || (src.last_error ? "error: " + src.last_error : "");
    for (const value of [src.name, src.kind, src.state, src.listeners, playing]) {
      const td = document.createElement("td");
      td.textContent = value;
      tr.append(td);
    }
    tr.children[2].className = "state " + src.state;
    const level = document.createElement("td");
    level.append(IMSS.levelMeter(src.level_dbfs, src.name));
    tr.append(level);
    return tr;
  });
  const body = document.getElementById("sources");
  if (rows.length) {
    body.replaceChildren(...rows);
  } else {
    const tr = document.createElement("tr");
    tr.innerHTML = '<td colspan="6">No live sources configured.</td>';
    body.replaceChildren(tr);
  }
  showWarnings(status.warnings);

  const now = Date.now();
  samples.push({
    t: now, streams: status.streams, packets: status.packets_per_s,
    p50: status.lateness_ms.p50, p99: status.lateness_ms.p99, cpu: status.cpu_percent,
  });
  while (samples.length && samples[0].t < now - WINDOW_MS) samples.shift();
  drawAll(now);
}

// Whether the IMAP server answered the last check (once a minute).
function showMail(mail) {
  const dd = document.getElementById("mail");
  const server = (mail && mail.server) || {};
  if (!mail || !mail.configured) {
    dd.textContent = "not configured";
    dd.className = "";
  } else if (server.reachable === true) {
    dd.textContent = "reachable" + (server.detail ? ` · ${server.detail}` : "");
    dd.className = "state playing";
  } else if (server.reachable === false) {
    dd.textContent = "unreachable · " + (server.detail || "");
    dd.className = "state failed";
  } else {
    dd.textContent = "not checked yet";
    dd.className = "";
  }
}

// The server's last 15 minutes, so the charts are full from the start.
async function loadHistory() {
  try {
    const r = await fetch("/api/v1/status/history", { cache: "no-store" });
    if (!r.ok) return;
    const h = await r.json();
    const old = h.t.map((t, i) => ({
      t, streams: h.streams[i], packets: h.packets_per_s[i],
      p50: h.lateness_p50_ms[i], p99: h.lateness_p99_ms[i], cpu: h.cpu_percent[i],
    }));
    const first = samples.length ? samples[0].t : Infinity;
    samples.unshift(...old.filter((s) => s.t < first));
    drawAll(Date.now());
  } catch (e) {
    // The live samples still draw.
  }
}

function drawAll(now) {
  const css = getComputedStyle(document.documentElement);
  const a = css.getPropertyValue("--streams"), b = css.getPropertyValue("--packets");
  draw("chart", now, [
    { color: a, value: (s) => s.streams, axis: "left" },
    { color: b, value: (s) => s.packets, axis: "right" },
  ]);
  draw("chart-lateness", now, [
    { color: a, value: (s) => s.p50, axis: "left" },
    { color: b, value: (s) => s.p99, axis: "left" },
  ]);
  draw("chart-cpu", now, [{ color: a, value: (s) => s.cpu, axis: "left" }]);
}

// Recent warnings, when the server reports them (`{at, level, message}`, newest last):
// shown newest first.
function showWarnings(warnings) {
  const section = document.getElementById("warnings-section");
  if (!Array.isArray(warnings) || !warnings.length) {
    section.hidden = true;
    return;
  }
  section.hidden = false;
  document.getElementById("warnings").replaceChildren(...warnings.slice().reverse().map((w) =>
    IMSS.el("tr", {},
      IMSS.el("td", { class: "nowrap" }, IMSS.when(w.at)),
      IMSS.el("td", { class: `state ${w.level === "error" ? "failed" : "fallback"}` }, w.level || "warn"),
      IMSS.el("td", { class: "wrap" }, w.message))));
}

function niceMax(v) {
  if (v <= 1) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// One chart: `series` of `{color, value, axis}` on a left and an optional right axis;
// missing values (null) break the line.
function draw(id, now, series) {
  const canvas = document.getElementById(id);
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  if (canvas.width !== width * ratio || canvas.height !== height * ratio) {
    canvas.width = width * ratio;
    canvas.height = height * ratio;
  }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const css = getComputedStyle(canvas);
  const left = 48, right = 64, top = 10, bottom = 24;
  const w = width - left - right, h = height - top - bottom;
  const max = {};
  for (const axis of ["left", "right"]) {
    const values = series.filter((s) => s.axis === axis)
      .flatMap((s) => samples.map(s.value)).filter((v) => typeof v === "number");
    if (values.length || axis === "left") max[axis] = niceMax(Math.max(0, ...values));
  }

  g.font = "12px system-ui, sans-serif";
  g.strokeStyle = css.getPropertyValue("--grid");
  g.fillStyle = css.getPropertyValue("--muted");
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = top + h - (h * i) / 4;
    g.beginPath(); g.moveTo(left, y); g.lineTo(left + w, y); g.stroke();
    g.textAlign = "right";
    g.fillText(String(+(max.left * i / 4).toFixed(2)), left - 6, y + 4);
    if (max.right !== undefined) {
      g.textAlign = "left";
      g.fillText(String(+(max.right * i / 4).toFixed(1)), left + w + 6, y + 4);
    }
  }
  g.textAlign = "center";
  for (let min = 15; min >= 0; min -= 5) {
    const x = left + w - (w * min) / 15;
    g.fillText(min ? `−${min} min` : "now", x, height - 6);
  }

  const x = (t) => left + w - (w * (now - t)) / WINDOW_MS;
  for (const s of series) {
    g.strokeStyle = s.color;
    g.lineWidth = 2;
    g.beginPath();
    let drawing = false;
    for (const p of samples) {
      const v = s.value(p);
      if (typeof v !== "number") { drawing = false; continue; }
      const y = top + h - (h * Math.min(v, max[s.axis])) / max[s.axis];
      if (drawing) g.lineTo(x(p.t), y); else g.moveTo(x(p.t), y);
      drawing = true;
    }
    g.stroke();
  }
}

function connect() {
  const feed = new EventSource("/api/v1/events");
  feed.addEventListener("status", (event) => {
    text("feed", "live");
    show(JSON.parse(event.data));
  });
  feed.addEventListener("error", () => {
    text("feed", "reconnecting…");
    // A lost login answers 401: the browser gives up, so go and log in again.
    if (feed.readyState === EventSource.CLOSED) {
      fetch("/api/v1/session").then((r) => {
        if (r.status === 401) location.assign("/login");
        else setTimeout(connect, 2000);
      });
    }
  });
}

window.addEventListener("resize", () => drawAll(Date.now()));
connect();
loadHistory();
