// The Administration page: users, API tokens, trusted networks ([sip]), the web port
// ([http]: certificate, logins, /metrics), the log level ([general]) and the audit log.
"use strict";

const { el, api, say } = IMSS;

function small(action, label, name, handler, cls = "secondary") {
  const b = el("button", { type: "button", class: `small ${cls}`, "data-action": action, "data-admin": true,
    "aria-label": `${label} ${name}` }, label);
  b.addEventListener("click", handler);
  return b;
}

/** Accounts and tokens live in the configuration file too: after a change of theirs the
 * settings forms below save against the file's new version, and the audit log shows it. */
function changedElsewhere() {
  Settings.refreshVersion().catch(() => loadAudit());
}

// ---- users ----------------------------------------------------------------------------------

const usersBody = document.getElementById("users");
const usersState = document.getElementById("users-state");
const userForm = document.getElementById("user-form");
const userResult = document.getElementById("user-result");
const userName = document.getElementById("user-name");
const userPassword = document.getElementById("user-password");
const userRole = document.getElementById("user-role");
const userMustChange = document.getElementById("user-must-change");
let editingUser = null;
let users = [];

async function loadUsers() {
  try {
    const data = await api("GET", "/api/v1/users");
    users = data.users || [];
    IMSS.fillTable(usersBody, users.map((u) => el("tr", { "data-user": u.user },
      el("td", {}, el("strong", {}, u.user)),
      el("td", {}, u.role),
      el("td", {}, u.must_change_password ? "yes" : "no"),
      el("td", { class: "actions-cell" },
        small("edit", "Edit", u.user, () => editUser(u)),
        small("delete", "Delete", u.user, () => deleteUser(u.user), "danger")))), "No users.");
    IMSS.guard(usersBody);
  } catch (e) {
    IMSS.showError(e, { line: usersState, prefix: "The users could not be read" });
  }
}

function addUserMode() {
  editingUser = null;
  userForm.reset();
  IMSS.clearErrors(userForm);
  userName.readOnly = false;
  userMustChange.checked = true;
  document.getElementById("user-form-title").textContent = "Add a user";
  document.getElementById("user-save").textContent = "Add user";
  document.getElementById("user-cancel").hidden = true;
}

function editUser(u) {
  editingUser = u.user;
  IMSS.clearErrors(userForm);
  userName.value = u.user;
  userName.readOnly = true;
  userPassword.value = "";
  userRole.value = u.role;
  userMustChange.checked = !!u.must_change_password;
  document.getElementById("user-form-title").textContent = `Edit ${u.user}`;
  document.getElementById("user-save").textContent = "Save user";
  document.getElementById("user-cancel").hidden = false;
  say(userResult, "");
  userRole.focus();
}

document.getElementById("user-cancel").addEventListener("click", addUserMode);

userForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  IMSS.clearErrors(userForm);
  try {
    if (editingUser) {
      const body = { role: userRole.value, must_change_password: userMustChange.checked };
      if (userPassword.value) body.password = userPassword.value;
      await api("PUT", `/api/v1/users/${encodeURIComponent(editingUser)}`, { body });
      say(userResult, `Saved ${editingUser}.`, "ok");
    } else {
      const body = { user: userName.value.trim(), password: userPassword.value, role: userRole.value,
        must_change_password: userMustChange.checked };
      await api("POST", "/api/v1/users", { body });
      say(userResult, `Added ${body.user}.`, "ok");
    }
    const message = userResult.textContent;
    addUserMode();
    say(userResult, message, "ok");
    loadUsers();
    changedElsewhere();
  } catch (e) {
    IMSS.showError(e, { container: userForm, line: userResult, prefix: "Not saved" });
  }
});

async function deleteUser(name) {
  if (!confirm(`Delete the user ${name}? Their logins end.`)) return;
  try {
    await api("DELETE", `/api/v1/users/${encodeURIComponent(name)}`);
    say(usersState, `Deleted ${name}.`, "ok");
    if (editingUser === name) addUserMode();
  } catch (e) {
    IMSS.showError(e, { line: usersState, prefix: "Not deleted" });
  }
  loadUsers();
  changedElsewhere();
}

// ---- tokens ---------------------------------------------------------------------------------

const tokensBody = document.getElementById("tokens");
const tokensState = document.getElementById("tokens-state");
const tokenForm = document.getElementById("token-form");
const tokenResult = document.getElementById("token-result");

async function loadTokens() {
  try {
    const data = await api("GET", "/api/v1/tokens");
    IMSS.fillTable(tokensBody, (data.tokens || []).map((t) => el("tr", { "data-token": t.name },
      el("td", {}, el("strong", {}, t.name)),
      el("td", {}, t.role),
      el("td", {}, IMSS.when(t.created)),
      el("td", { class: "actions-cell" }, small("revoke", "Revoke", t.name, () => revoke(t.name), "danger")))),
    "No tokens.");
    IMSS.guard(tokensBody);
  } catch (e) {
    IMSS.showError(e, { line: tokensState, prefix: "The tokens could not be read" });
  }
}

tokenForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  IMSS.clearErrors(tokenForm);
  const body = { name: document.getElementById("token-name").value.trim(), role: document.getElementById("token-role").value };
  try {
    const made = await api("POST", "/api/v1/tokens", { body });
    document.getElementById("token-once").hidden = false;
    const value = document.getElementById("token-value");
    value.value = made.token;
    value.focus();
    value.select();
    say(tokenResult, `Created ${made.name} (${made.role}). Copy the token below now: it is not shown again.`, "ok");
    document.getElementById("token-name").value = "";
    loadTokens();
    changedElsewhere();
  } catch (e) {
    IMSS.showError(e, { container: tokenForm, line: tokenResult, prefix: "Not created" });
  }
});

document.getElementById("token-copy").addEventListener("click", async () => {
  const value = document.getElementById("token-value");
  value.select();
  try {
    await navigator.clipboard.writeText(value.value);
    say(tokenResult, "Copied to the clipboard.", "ok");
  } catch (_) {
    say(tokenResult, "Selected: press Ctrl+C (⌘C) to copy.");
  }
});

async function revoke(name) {
  if (!confirm(`Revoke the token ${name}? Scripts using it are refused from now on.`)) return;
  try {
    await api("DELETE", `/api/v1/tokens/${encodeURIComponent(name)}`);
    say(tokensState, `Revoked ${name}.`, "ok");
  } catch (e) {
    IMSS.showError(e, { line: tokensState, prefix: "Not revoked" });
  }
  loadTokens();
  changedElsewhere();
}

// ---- settings -------------------------------------------------------------------------------

const forms = document.getElementById("forms");
Settings.form(forms, {
  section: "sip",
  title: "Trusted networks",
  fields: [
    { key: "trusted_networks", label: "Networks served", type: "list", rows: 4, placeholder: "10.0.0.0/8\n192.0.2.7/32",
      help: "One network a line (CIDR). Requests from elsewhere get 403 Forbidden and their MRCPv2 connections are closed. Empty: everyone is served. Applies at once." },
  ],
});
Settings.form(forms, {
  section: "http",
  title: "Web port",
  fields: [
    { key: "tls_cert", label: "TLS certificate", optional: true, placeholder: "no HTTPS",
      help: "PEM certificate chain (leaf first) for HTTPS on the web port, with the key below. A changed file is picked up without a restart." },
    { key: "tls_key", label: "TLS key", optional: true, help: "PEM private key of the certificate." },
    { key: "bind", label: "Address", help: "Address the web interface, API, /healthz and /metrics listen on." },
    { key: "port", label: "Port", type: "number", min: 0, max: 65535, step: 1, help: "Port of the web interface, API, /healthz and /metrics." },
    { key: "session_ttl_s", label: "Login lasts", type: "number", unit: "s", min: 60, max: 2592000, step: 1,
      help: "How long a login to this interface lasts (60–2,592,000 s; default 8 hours)." },
    { key: "metrics", label: "/metrics access", type: "select", options: ["open", "token"],
      help: "open: anyone who reaches the port; token: requests with Authorization: Bearer <metrics token>." },
    { key: "metrics_token", label: "Metrics token", type: "secret", setKey: "metrics_token_set",
      help: "The bearer token of token access: at least 16 printable characters, no spaces. Never shown." },
    { key: "metrics_bind", label: "Metrics listener", optional: true, placeholder: "the web port only",
      help: "A second listener (address:port, e.g. 127.0.0.1:9190) that serves /metrics only, with the same access rule." },
  ],
});
Settings.form(forms, {
  section: "general",
  title: "Log",
  fields: [
    { key: "log_level", label: "Log level", datalist: "log-levels",
      help: "A level (error, warn, info, debug, trace) or comma-separated target=level directives after an optional level, e.g. info,imss_server=debug. Applies at once." },
  ],
});
document.body.append(el("datalist", { id: "log-levels" },
  ["error", "warn", "info", "debug", "trace"].map((l) => el("option", { value: l }))));

// ---- audit ----------------------------------------------------------------------------------

const auditBody = document.getElementById("audit");
const auditState = document.getElementById("audit-state");

function shown(v) {
  if (v === null || v === undefined) return "(none)";
  return typeof v === "string" ? v : JSON.stringify(v);
}

async function loadAudit() {
  try {
    const data = await api("GET", "/api/v1/audit?limit=100");
    IMSS.fillTable(auditBody, (data.entries || []).map((e) => el("tr", {},
      el("td", { class: "nowrap" }, IMSS.when(e.at)),
      el("td", {}, e.who),
      el("td", {}, el("ul", { class: "changes" }, (e.changes || []).map((c) =>
        el("li", {}, el("code", {}, c.key), ": ", el("span", { class: "old" }, shown(c.old)), " → ",
          el("span", { class: "new" }, shown(c.new)))))))), "No changes recorded yet.");
  } catch (e) {
    IMSS.showError(e, { line: auditState, prefix: "The audit log could not be read" });
  }
}

Settings.onLoad(() => loadAudit());
addUserMode();
loadUsers();
loadTokens();
Settings.start();
