// The Mail server page: [mail] and a connection test with the values in the form.
"use strict";

const { el } = IMSS;
const forms = document.getElementById("forms");

const mail = Settings.form(forms, {
  section: "mail",
  title: "IMAP server",
  fields: [
    { key: "imap_host", label: "Host", optional: true, placeholder: "none: imap: URIs fail",
      help: "IMAP server host; empty: imap: URIs fail with \"no IMAP server configured\"." },
    { key: "imap_port", label: "Port", type: "number", optional: true, min: 1, max: 65535, step: 1,
      placeholder: "993 (implicit TLS) / 143", help: "IMAP port; default 993 with implicit TLS, else 143." },
    { key: "imap_tls", label: "TLS", type: "select", optional: true, defaultLabel: "default (implicit)",
      options: ["implicit", "starttls", "none"],
      help: "implicit (IMAPS, the default), starttls, or none (plain text)." },
    { key: "imap_tls_verify", label: "Verify certificate", type: "optbool", defaultLabel: "default (yes)",
      help: "Check the server's certificate chain and name. For a private CA, set a CA file rather than turning this off." },
    { key: "imap_ca_file", label: "CA file", optional: true, placeholder: "public roots",
      help: "PEM file of the CA(s) to trust for the IMAP server instead of the public roots." },
    { key: "imap_auth", label: "Authentication", type: "select", optional: true, defaultLabel: "default (login)",
      options: ["login", "plain"], help: "login (IMAP LOGIN, the default) or plain (AUTHENTICATE PLAIN)." },
    { key: "imap_user", label: "User", optional: true, help: "The service account, used for URIs that name no user." },
    { key: "imap_password", label: "Password", type: "secret", setKey: "imap_password_set",
      help: "The service account's password: never shown. Type a new one to replace it; leave empty to keep it." },
    { key: "connect_timeout_ms", label: "Connect timeout", type: "number", unit: "ms", optional: true, min: 100, max: 120000, step: 1,
      placeholder: "5000", help: "Bound on name resolution, TCP and the TLS handshake, each (100–120,000 ms)." },
    { key: "read_timeout_ms", label: "Read timeout", type: "number", unit: "ms", optional: true, min: 100, max: 300000, step: 1,
      placeholder: "10000", help: "Bound on any IMAP read or write that makes no progress (100–300,000 ms)." },
    { key: "pool_size", label: "Connections", type: "number", optional: true, min: 1, max: 256, step: 1,
      placeholder: "8", help: "Most IMAP connections open at once, in use or idle for reuse (1–256)." },
    { key: "max_message_mib", label: "Largest message", type: "number", unit: "MiB", optional: true, min: 1, max: 1024, step: 1,
      placeholder: "20", help: "A larger message fails before its body is downloaded (1–1,024 MiB)." },
    { key: "cache_mib", label: "Replay cache", type: "number", unit: "MiB", optional: true, min: 0, max: 4096, step: 1,
      placeholder: "64", help: "Decoded voicemail kept in memory for replays (0–4,096 MiB)." },
    { key: "fbmc_root", label: "File mail store", optional: true, placeholder: "<data folder>/mail",
      help: "Root of the file-based mail store (fbmc:MAILBOX/MESSAGE)." },
    { key: "read_headers_ssml", label: "Header announcement", type: "textarea", optional: true, rows: 3,
      placeholder: "default: Message from {from}, received {date} at {time}.",
      help: "SSML read before a message when a SPEAK asks for read-headers=true; {from}, {from_name}, {from_address}, {caller_id}, {date}, {time}, {subject}, {duration} and {message} are filled in." },
  ],
});

// Per-mailbox users are secrets kept in the file: only their names are shown.
const users = el("p", { class: "intro", id: "imap-users" });
mail.formEl.querySelector(".fields").after(users);
Settings.onLoad((state) => {
  const map = (state.config.mail && (state.config.mail.imap_users || state.config.mail.imap_users_set)) || null;
  const names = Array.isArray(map) ? map : (map && typeof map === "object" ? Object.keys(map) : []);
  users.textContent = names.length
    ? `Per-mailbox users (mail.imap_users, set in the configuration file): ${names.join(", ")}.`
    : "No per-mailbox users (mail.imap_users) are set in the configuration file.";
});

// The connection test: the values in the form now, saved or not.
const testButton = el("button", { type: "button", class: "secondary", id: "mail-test", "data-admin": true }, "Test connection");
const testResult = el("div", { class: "result", id: "mail-test-result", role: "status", "aria-live": "polite" });
const actions = mail.formEl.querySelector(".actions");
actions.insertBefore(testButton, actions.querySelector(".result"));
mail.formEl.after(el("section", { "aria-labelledby": "test-title" },
  el("h2", { id: "test-title" }, "Connection test"),
  el("p", { class: "intro" }, "Test connection tries the values in the form above (saved or not): name resolution, TCP, TLS, login and the mailbox."),
  testResult));

const STEPS = ["dns", "tcp", "tls", "login", "mailbox", "done"];
const STEP_NAMES = { dns: "name resolution", tcp: "TCP connection", tls: "TLS handshake", login: "login", mailbox: "mailbox", done: "done" };

testButton.addEventListener("click", async () => {
  const formEl = mail.formEl;
  IMSS.clearErrors(formEl);
  const body = {};
  for (const input of formEl.querySelectorAll("[name]")) {
    const name = input.name;
    if (!name || name.endsWith("[]")) continue;
    const text = input.value.trim();
    if (name === "imap_password") {
      if (input.value !== "") body[name] = input.value;
      continue;
    }
    if (text === "") continue;
    if (input.type === "number") body[name] = Number(text);
    else if (name === "imap_tls_verify") body[name] = text === "true";
    else body[name] = text;
  }
  testButton.disabled = true;
  testResult.className = "result";
  testResult.replaceChildren("Testing…");
  try {
    const r = await IMSS.api("POST", "/api/v1/mail/test", { body });
    const reached = STEPS.indexOf(r.step);
    const tried = new Map((r.steps || []).map((s) => [s.step, s]));
    const list = el("ol", { class: "steps" }, STEPS.slice(0, -1).map((s, i) => {
      const step = tried.get(s);
      let mark = "not tried", cls = "untried";
      if (step) { mark = step.ok ? "ok" : "failed"; cls = step.ok ? "ok" : "bad"; }
      else if (r.ok || i < reached) { mark = "ok"; cls = "ok"; }
      else if (i === reached) { mark = "failed"; cls = "bad"; }
      const detail = step && step.detail ? ` — ${step.detail}` : "";
      const time = step && typeof step.elapsed_ms === "number" ? ` (${step.elapsed_ms} ms)` : "";
      return el("li", { class: cls, "data-step": s }, `${STEP_NAMES[s]}: ${mark}${time}${detail}`);
    }));
    const head = r.ok
      ? `Connection works (${r.elapsed_ms} ms). ${r.message || ""}`
      : `Failed at the ${STEP_NAMES[r.step] || r.step} step after ${r.elapsed_ms} ms: ${r.message}`;
    testResult.className = `result ${r.ok ? "ok" : "bad"}`;
    testResult.replaceChildren(el("p", {}, head), list);
    testResult.scrollIntoView({ block: "nearest" });
  } catch (e) {
    IMSS.showError(e, { container: formEl, line: testResult, prefix: "The test could not run" });
  } finally {
    testButton.disabled = false;
    IMSS.guard(formEl);
  }
});

Settings.start();
