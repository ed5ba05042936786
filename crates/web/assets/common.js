// Shared by every page behind the login: the navigation bar, who is logged in, the Logout
// button, calls to the JSON API (with the CSRF token) and how their errors are shown.
"use strict";

const IMSS = (() => {
  /** The pages of the navigation bar, in order: path and label. */
  const PAGES = [
    ["/", "Dashboard"],
    ["/sessions", "Sessions"],
    ["/general", "General"],
    ["/audio", "Audio"],
    ["/mail", "Mail server"],
    ["/sources", "External audio"],
    ["/tts", "Text-to-speech"],
    ["/files", "Audio files"],
    ["/admin", "Administration"],
  ];

  /** An API answer that is not 2xx: `{error, message, field, current_version}` and status. */
  class ApiError extends Error {
    constructor(status, body) {
      const b = body && typeof body === "object" ? body : {};
      super(b.message || (typeof body === "string" && body) || `HTTP ${status}`);
      this.status = status;
      this.error = b.error || "failed";
      this.field = b.field || null;
      this.currentVersion = b.current_version || null;
    }
  }

  // Who is logged in, with the CSRF token; a page without a session goes to the login.
  const ready = fetch("/api/v1/session", { cache: "no-store" }).then(async (r) => {
    if (r.status === 401) {
      location.assign("/login");
      throw new ApiError(401, { error: "unauthenticated", message: "not logged in" });
    }
    if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null));
    const session = await r.json();
    if (session.must_change_password) location.assign("/login");
    return session;
  });

  /** `tag` with `attrs` (properties; `class`, `for`, `aria-*` and `data-*` as attributes)
   * and children (nodes or text). */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "for") node.htmlFor = v;
      else if (k.startsWith("aria-") || k.startsWith("data-") || k === "role" || k === "scope"
        || k === "colspan" || k === "list") node.setAttribute(k, v === true ? "" : v);
      else node[k] = v;
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  /** Calls the API. `body`: an object (sent as JSON), a Blob/File (sent as it is) or
   * nothing. Resolves to the parsed JSON (or text, or a Blob with `blob: true`); rejects
   * with an [`ApiError`]. */
  async function api(method, path, { body, headers = {}, blob = false } = {}) {
    const session = await ready;
    const h = { ...headers };
    if (method !== "GET" && method !== "HEAD" && session.csrf_token) {
      h["X-CSRF-Token"] = session.csrf_token;
    }
    let payload = body;
    if (body !== undefined && !(body instanceof Blob) && typeof body !== "string") {
      h["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    let r;
    try {
      r = await fetch(path, { method, headers: h, body: payload, cache: "no-store" });
    } catch (e) {
      throw new ApiError(0, { error: "unavailable", message: "the server cannot be reached" });
    }
    if (r.status === 401) {
      location.assign("/login");
      throw new ApiError(401, { error: "unauthenticated", message: "the login has expired" });
    }
    const type = r.headers.get("Content-Type") || "";
    if (!r.ok) {
      let detail = null;
      if (type.includes("json")) detail = await r.json().catch(() => null);
      else detail = (await r.text().catch(() => "")).trim() || `${r.status} ${r.statusText}`;
      throw new ApiError(r.status, detail);
    }
    if (blob) return r.blob();
    if (r.status === 204) return null;
    if (type.includes("json")) return r.json();
    return r.text();
  }

  /** The input of `container` that an error's `field` names: `mail.imap_port` →
   * `imap_port`, `external_audio[2].url` → `url`, `http_audio.allow_hosts[0]` →
   * `allow_hosts`. */
  function inputFor(container, field) {
    if (!container || !field) return null;
    const candidates = [field];
    const last = field.split(".").pop().replace(/\[\d+\]$/, "");
    candidates.push(last);
    for (const name of candidates) {
      const found = container.querySelector(`[name="${CSS.escape(name)}"]`);
      if (found) return found;
    }
    return null;
  }

  /** Removes the error marks `showError` put into `container`. */
  function clearErrors(container) {
    if (!container) return;
    for (const p of container.querySelectorAll(".field-error")) p.remove();
    for (const i of container.querySelectorAll("[aria-invalid]")) {
      i.removeAttribute("aria-invalid");
      const ids = (i.getAttribute("aria-describedby") || "").split(" ")
        .filter((id) => id && !id.startsWith("err-"));
      if (ids.length) i.setAttribute("aria-describedby", ids.join(" "));
      else i.removeAttribute("aria-describedby");
    }
  }

  let errorIds = 0;

  /** Shows `err` (an ApiError or any Error): its message next to the input its `field`
   * names inside `container`, and `prefix: message` in `line` (a status element). */
  function showError(err, { container = null, line = null, prefix = "Failed" } = {}) {
    clearErrors(container);
    const message = err && err.message ? err.message : String(err);
    const input = err && err.field ? inputFor(container, err.field) : null;
    if (input) {
      const id = `err-${++errorIds}`;
      const p = el("p", { class: "field-error", id }, message);
      const folded = input.closest("details");
      if (folded) folded.open = true;
      const holder = input.closest(".field") || input.parentElement;
      holder.append(p);
      input.setAttribute("aria-invalid", "true");
      const described = input.getAttribute("aria-describedby");
      input.setAttribute("aria-describedby", described ? `${described} ${id}` : id);
      if (!input.disabled) input.focus();
    }
    if (line) {
      const where = err && err.field && !input ? ` (${err.field})` : "";
      say(line, `${prefix}: ${message}${where}`, "bad");
    }
  }

  /** Writes `text` into the status element `line`, marked `ok`, `bad` or neutral. */
  function say(line, text, kind = "") {
    if (!line) return;
    line.className = `result ${kind}`.trim();
    line.replaceChildren(text);
  }

  /** Whether the logged-in person may only look. */
  function isViewer(session) {
    return session && session.role === "viewer";
  }

  /** For a viewer: every control under `root` marked `data-admin` (or inside a form marked
   * so) is disabled, and a note says why. */
  async function guard(root = document) {
    const session = await ready;
    if (!isViewer(session)) return;
    const marked = [...root.querySelectorAll("[data-admin]")];
    if (root.matches && root.matches("[data-admin]")) marked.push(root);
    for (const node of marked) {
      const controls = node.matches("input, select, textarea, button")
        ? [node] : node.querySelectorAll("input, select, textarea, button");
      for (const c of controls) {
        c.disabled = true;
        c.title = "Viewers may look but not change anything";
      }
    }
  }

  /** Seconds as `1 h 02 min`, `3 min 04 s`, `5 s`. */
  function duration(s) {
    s = Math.max(0, Math.round(s));
    const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24;
    const m = Math.floor(s / 60) % 60, sec = s % 60;
    if (d > 0) return `${d} d ${h} h`;
    if (h > 0) return `${h} h ${String(m).padStart(2, "0")} min`;
    if (m > 0) return `${m} min ${String(sec).padStart(2, "0")} s`;
    return `${sec} s`;
  }

  /** Bytes as B, KiB, MiB or GiB. */
  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return n.toFixed(i ? 1 : 0) + " " + units[i];
  }

  /** An RFC 3339 time as local date and time. */
  function when(t) {
    if (!t) return "–";
    const d = new Date(t);
    return Number.isNaN(d.getTime()) ? String(t) : d.toLocaleString();
  }

  /** Fills a table body with `rows` (arrays of cells: nodes or text), or one row saying
   * `empty` when there are none. */
  function fillTable(tbody, rows, empty) {
    const columns = tbody.closest("table").querySelectorAll("thead th").length || 1;
    if (!rows.length) {
      tbody.replaceChildren(el("tr", {}, el("td", { colspan: columns, class: "empty" }, empty)));
      return;
    }
    tbody.replaceChildren(...rows.map((cells) => {
      if (cells instanceof Node) return cells;
      return el("tr", {}, ...cells.map((c) => (c instanceof Node && c.tagName === "TD" ? c : el("td", {}, c))));
    }));
  }

  /** A level meter for a level in dBFS (−60…0), or a dash when there is none. */
  function levelMeter(dbfs, name) {
    if (dbfs === null || dbfs === undefined || !Number.isFinite(dbfs)) {
      return el("span", { class: "muted", title: "no level reported" }, "–");
    }
    const shown = Math.max(-60, Math.min(0, dbfs));
    const text = `${dbfs.toFixed(1)} dBFS`;
    return el("span", { class: "level" },
      el("meter", { min: -60, max: 0, low: -40, high: -6, optimum: -20, value: shown,
        "aria-label": name ? `Level of ${name}` : "Level", title: text }),
      el("span", { class: "level-text" }, text));
  }

  function navBar(session) {
    const here = location.pathname;
    const links = PAGES.map(([path, label]) => el("li", {},
      el("a", { href: path, "aria-current": path === here ? "page" : null }, label)));
    const logout = el("button", { type: "button", class: "secondary small", id: "logout" }, "Log out");
    logout.addEventListener("click", async () => {
      try {
        await api("POST", "/logout");
      } catch (_) {
        // Logged out or not, the login page is where to go now.
      }
      location.assign("/login");
    });
    const who = el("p", { class: "who", id: "who" },
      "Logged in as ", el("strong", {}, session.user),
      ` (${session.role})`, " ", logout);
    const bar = el("header", { class: "bar" },
      el("a", { class: "skip", href: "#main" }, "Skip to the content"),
      el("div", { class: "bar-top" }, el("span", { class: "brand" }, "imss"), who),
      el("nav", { "aria-label": "Pages" }, el("ul", {}, links)));
    document.body.prepend(bar);
    if (isViewer(session)) {
      const main = document.querySelector("main");
      if (main) {
        main.prepend(el("p", { class: "note", role: "note" },
          "You are logged in as a viewer: you can look at everything, but not change it."));
      }
    }
  }

  ready.then(navBar, () => {});
  document.addEventListener("DOMContentLoaded", () => guard());

  return { PAGES, ApiError, ready, el, api, showError, clearErrors, say, guard, isViewer,
    duration, bytes, when, fillTable, inputFor, levelMeter };
})();
