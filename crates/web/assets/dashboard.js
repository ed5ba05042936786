// The dashboard: figures and live sources from the server-sent `status` events of
// /api/v1/events, and a chart of the last 15 minutes drawn from the samples kept here.
"use strict";

const WINDOW_MS = 15 * 60 * 1000;
const samples = []; // { t, streams, packets }

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
  document.getElementById("sessions").title =
    `MRCP ${status.sessions.mrcp} · plain SIP ${status.sessions.plain_sip}`;
  text("streams", status.streams);
  text("packets", Math.round(status.packets_per_s));
  text("lateness", ms(status.lateness_ms.p50) + " / " + ms(status.lateness_ms.p99));
  text("cpu", status.cpu_percent.toFixed(1) + " %");
  text("memory", bytes(status.memory_rss_bytes));
  text("capacity", status.capacity.free);
  text("capacity-label", `Free calls of ${status.capacity.max_calls}`);

  const rows = status.sources.map((src) => {
    const tr = document.createElement("tr");
    const playing = src.now_playing || (src.last_error ? "error: " + src.last_error : "");
    for (const value of [src.name, src.kind, src.state, src.listeners, playing]) {
      const td = document.createElement("td");
      td.textContent = value;
      tr.append(td);
    }
    tr.children[2].className = "state " + src.state;
    return tr;
  });
  const body = document.getElementById("sources");
  if (rows.length) {
    body.replaceChildren(...rows);
  } else {
    const tr = document.createElement("tr");
    tr.innerHTML = '<td colspan="5">No live sources configured.</td>';
    body.replaceChildren(tr);
  }

  const now = Date.now();
  samples.push({ t: now, streams: status.streams, packets: status.packets_per_s });
  while (samples.length && samples[0].t < now - WINDOW_MS) samples.shift();
  draw(now);
}

function niceMax(v) {
  if (v <= 1) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function draw(now) {
  const canvas = document.getElementById("chart");
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
  const maxStreams = niceMax(Math.max(0, ...samples.map((s) => s.streams)));
  const maxPackets = niceMax(Math.max(0, ...samples.map((s) => s.packets)));

  g.font = "12px system-ui, sans-serif";
  g.strokeStyle = css.getPropertyValue("--grid");
  g.fillStyle = css.getPropertyValue("--muted");
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = top + h - (h * i) / 4;
    g.beginPath(); g.moveTo(left, y); g.lineTo(left + w, y); g.stroke();
    g.textAlign = "right";
    g.fillText(String(+(maxStreams * i / 4).toFixed(2)), left - 6, y + 4);
    g.textAlign = "left";
    g.fillText(String(+(maxPackets * i / 4).toFixed(1)), left + w + 6, y + 4);
  }
  g.textAlign = "center";
  for (let min = 15; min >= 0; min -= 5) {
    const x = left + w - (w * min) / 15;
    g.fillText(min ? `−${min} min` : "now", x, height - 6);
  }

  const x = (t) => left + w - (w * (now - t)) / WINDOW_MS;
  const line = (color, value, max) => {
    g.strokeStyle = color;
    g.lineWidth = 2;
    g.beginPath();
    samples.forEach((s, i) => {
      const y = top + h - (h * value(s)) / max;
      if (i) g.lineTo(x(s.t), y); else g.moveTo(x(s.t), y);
    });
    g.stroke();
  };
  line(css.getPropertyValue("--streams"), (s) => s.streams, maxStreams);
  line(css.getPropertyValue("--packets"), (s) => s.packets, maxPackets);
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

window.addEventListener("resize", () => draw(Date.now()));
connect();
