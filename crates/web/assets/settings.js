// Settings forms over the configuration file: `GET /api/v1/config` fills them, Save sends
// the changed keys of one section with `PUT /api/v1/config/{section}` and `If-Match`.
// Every page's forms share the version they were loaded from, so that a change someone
// else saved meanwhile is refused (409 conflict) rather than overwritten.
"use strict";

const Settings = (() => {
  const { el, api, say } = IMSS;
  const state = { version: null, config: null, pending: [], forms: [], loaded: null };
  let ids = 0;

  function original(section, key) {
    const s = state.config && state.config[section];
    const v = s ? s[key] : undefined;
    return v === undefined ? null : v;
  }

  /** The value a field's control holds, in the configuration's types; `undefined` for a
   * secret left empty (unchanged). Throws an Error naming the key for unusable input. */
  function read(field, control) {
    switch (field.type) {
      case "bool":
        return control.checked;
      case "optbool":
        return control.value === "" ? null : control.value === "true";
      case "number": {
        const text = control.value.trim();
        if (text === "") {
          if (field.optional) return null;
          throw Object.assign(new Error("a number is needed"), { field: field.key });
        }
        const n = Number(text);
        if (!Number.isFinite(n)) throw Object.assign(new Error(`${text} is not a number`), { field: field.key });
        return n;
      }
      case "list":
        return control.value.split("\n").map((s) => s.trim()).filter((s) => s);
      case "choices":
        return [...control.querySelectorAll("input[type=checkbox]")]
          .filter((c) => c.checked).map((c) => c.value);
      case "secret":
        return control.value === "" ? undefined : control.value;
      case "json": {
        const text = control.value.trim();
        if (text === "") return null;
        try {
          return JSON.parse(text);
        } catch (_) {
          return text;
        }
      }
      default: {
        const text = control.value.trim();
        if (text === "" && field.optional) return null;
        return text;
      }
    }
  }

  /** Puts the configuration's value into a field's control. */
  function write(field, control, value, section) {
    switch (field.type) {
      case "bool":
        control.checked = value === true;
        break;
      case "optbool":
        control.value = value === null ? "" : String(value);
        break;
      case "list":
        control.value = Array.isArray(value) ? value.join("\n") : "";
        break;
      case "choices":
        for (const c of control.querySelectorAll("input[type=checkbox]")) {
          c.checked = Array.isArray(value) && value.includes(c.value);
        }
        break;
      case "secret": {
        control.value = "";
        const set = original(section, field.setKey) === true;
        const badge = control.parentElement.querySelector(".secret-state");
        if (badge) {
          badge.textContent = set ? "set" : "not set";
          badge.className = `secret-state ${set ? "ok" : ""}`;
        }
        break;
      }
      case "json":
        control.value = value === null ? "" : (typeof value === "string" ? value : JSON.stringify(value));
        break;
      default:
        control.value = value === null || value === undefined ? "" : String(value);
    }
  }

  /** One labelled control with its help text (which names the TOML key). */
  function fieldRow(section, field) {
    const id = `f-${section}-${field.key}-${++ids}`;
    const helpId = `${id}-help`;
    const help = el("p", { class: "help", id: helpId }, field.help || "",
      " ", el("code", {}, `${section}.${field.key}`));
    let control;
    const common = { id, name: field.key, "aria-describedby": helpId };
    switch (field.type) {
      case "bool":
        control = el("input", { ...common, type: "checkbox" });
        break;
      case "optbool":
        control = el("select", common,
          el("option", { value: "" }, field.defaultLabel || "default"),
          el("option", { value: "true" }, "yes"),
          el("option", { value: "false" }, "no"));
        break;
      case "select":
        control = el("select", common,
          field.optional ? el("option", { value: "" }, field.defaultLabel || "default") : null,
          field.options.map((o) => el("option", { value: o }, o)));
        break;
      case "number":
        control = el("input", { ...common, type: "number", inputMode: "numeric",
          min: field.min, max: field.max, step: field.step || "any",
          placeholder: field.placeholder || "" });
        break;
      case "list":
      case "textarea":
        control = el("textarea", { ...common, rows: field.rows || 3,
          placeholder: field.placeholder || "", spellcheck: false });
        break;
      case "choices": {
        control = el("fieldset", { class: "choices", id, name: field.key, "aria-describedby": helpId },
          el("legend", { class: "visually-hidden" }, field.label),
          field.options.map(([value, label]) => el("label", { class: "choice" },
            el("input", { type: "checkbox", value, name: `${field.key}[]` }), " ", label)));
        break;
      }
      case "secret":
        control = el("input", { ...common, type: "password", autocomplete: "new-password",
          placeholder: "leave empty to keep" });
        break;
      default:
        control = el("input", { ...common, type: "text", placeholder: field.placeholder || "",
          spellcheck: false, list: field.datalist || null });
    }
    const label = field.type === "choices"
      ? el("span", { class: "label", id: `${id}-label` }, field.label)
      : el("label", { for: id }, field.label, field.unit ? el("span", { class: "unit" }, ` (${field.unit})`) : null);
    if (field.type === "choices") control.setAttribute("aria-labelledby", `${id}-label`);
    const holder = field.type === "secret"
      ? el("div", { class: "control" }, control, " ",
        el("span", { class: "secret-state", "aria-live": "polite" }, "–"))
      : el("div", { class: "control" }, control);
    const row = el("div", { class: "field" }, label, holder, help);
    return { row, control };
  }

  /** Fields for keys the page does not describe (a newer server's keys): typed by value. */
  function extraFields(section, described) {
    const values = (state.config && state.config[section]) || {};
    const extra = [];
    for (const [key, value] of Object.entries(values)) {
      if (described.has(key) || key.endsWith("_set")) continue;
      let type = "text";
      if (typeof value === "boolean") type = "bool";
      else if (typeof value === "number") type = "number";
      else if (Array.isArray(value) && value.every((v) => typeof v === "string")) type = "list";
      else if (value !== null && typeof value === "object") type = "json";
      extra.push({ key, label: key, type, optional: true, help: "" });
    }
    return extra;
  }

  /** A form over section `section` of the configuration, in `container`. `fields`: the
   * keys shown, each `{key, label, type, help, optional, …}`. With `others: true` keys of
   * the section the page does not describe are shown too. */
  function form(container, { section, title, intro, fields, others = false }) {
    const formEl = el("form", { class: "settings", "data-admin": true, "data-section": section,
      "aria-labelledby": `${section}-title-${ids + 1}`, noValidate: true });
    const heading = el("h2", { id: `${section}-title-${++ids}` }, title);
    const rows = el("div", { class: "fields" });
    const save = el("button", { type: "submit" }, "Save");
    const line = el("p", { class: "result", role: "status", "aria-live": "polite" });
    const actions = el("div", { class: "actions" }, save, line);
    formEl.append(heading, ...(intro ? [el("p", { class: "intro" }, intro)] : []), rows, actions);
    container.append(formEl);
    const controls = new Map();
    let shown = [];

    function render() {
      if (controls.size) return;
      const described = new Set(fields.map((f) => f.key));
      shown = others ? fields.concat(extraFields(section, described)) : fields;
      for (const field of shown) {
        const { row, control } = fieldRow(section, field);
        controls.set(field.key, control);
        rows.append(row);
      }
      IMSS.guard(formEl);
    }

    function fill() {
      render();
      for (const field of shown) {
        write(field, controls.get(field.key), original(section, field.key), section);
      }
    }

    /** The keys whose value differs from what was loaded. */
    function changes() {
      const changed = {};
      for (const field of shown) {
        const value = read(field, controls.get(field.key));
        if (value === undefined) continue;
        const before = original(section, field.key);
        if (JSON.stringify(value) !== JSON.stringify(before)) changed[field.key] = value;
      }
      return changed;
    }

    formEl.addEventListener("submit", async (event) => {
      event.preventDefault();
      IMSS.clearErrors(formEl);
      let body;
      try {
        body = changes();
      } catch (e) {
        IMSS.showError(e, { container: formEl, line, prefix: "Not saved" });
        return;
      }
      if (!Object.keys(body).length) {
        say(line, "Nothing changed.");
        return;
      }
      save.disabled = true;
      say(line, "Saving…");
      try {
        const saved = await api("PUT", `/api/v1/config/${section}`,
          { body, headers: { "If-Match": `"${state.version}"` } });
        state.version = saved.version || state.version;
        say(line, outcome(saved, Object.keys(body)), "ok");
        // The saved form shows what the file holds now; other forms keep their edits.
        await reload({ only: api_form }).catch(() => {});
      } catch (e) {
        if (e.status === 409 && e.error === "conflict") {
          conflict(line);
        } else {
          IMSS.showError(e, { container: formEl, line, prefix: "Not saved" });
        }
      } finally {
        save.disabled = false;
      }
    });

    const api_form = { fill, section, formEl, line };
    state.forms.push(api_form);
    if (state.config) fill();
    return api_form;
  }

  /** "Applied at once: …; saved, takes effect after a restart: …" for a change's answer. */
  function outcome(saved, keys) {
    const parts = [`Saved ${keys.join(", ")}.`];
    if (saved.applied && saved.applied.length) parts.push(`Applied at once: ${saved.applied.join(", ")}.`);
    if (saved.needs_restart && saved.needs_restart.length) {
      parts.push(`Saved; takes effect after a restart: ${saved.needs_restart.join(", ")}.`);
    }
    return parts.join(" ");
  }

  /** Explains a 409 conflict and offers to load the settings again. */
  function conflict(line) {
    const again = el("button", { type: "button", class: "secondary small" }, "Load the current settings");
    again.addEventListener("click", async () => {
      await reload();
      say(line, "Loaded the current settings: make your change again.", "");
    });
    line.className = "result bad conflict";
    line.replaceChildren(
      "Not saved: someone else changed the settings since this page loaded them. ",
      "Load the current settings (your unsaved changes in this form are lost), then make your change again. ",
      again);
  }

  /** Loads the configuration and fills the forms (all, or `only` one). */
  async function reload({ only = null } = {}) {
    const data = await api("GET", "/api/v1/config");
    state.version = data.version;
    state.config = data.config || {};
    state.pending = data.pending_restart || [];
    for (const f of state.forms) {
      if (!only || f === only) f.fill();
    }
    showPending();
    for (const cb of listeners) cb(state);
    return state;
  }

  /** Takes the file's version after a change made elsewhere on the page that none of the
   * forms shows (accounts, tokens): the forms keep what is typed in them. */
  async function refreshVersion() {
    const data = await api("GET", "/api/v1/config");
    state.version = data.version;
    state.config = data.config || {};
    state.pending = data.pending_restart || [];
    showPending();
    for (const cb of listeners) cb(state);
  }

  const listeners = [];
  /** Calls `cb(state)` after every load of the configuration. */
  function onLoad(cb) {
    listeners.push(cb);
    if (state.config) cb(state);
  }

  function showPending() {
    const box = document.getElementById("pending");
    if (!box) return;
    if (state.pending.length) {
      box.hidden = false;
      box.textContent = `Saved but waiting for a restart of the server: ${state.pending.join(", ")}.`;
    } else {
      box.hidden = true;
    }
  }

  /** Loads the configuration once the page is ready; shows a failure in `#load-error`. */
  function start() {
    state.loaded = reload().catch((e) => {
      const box = document.getElementById("load-error");
      if (box) IMSS.showError(e, { line: box, prefix: "The settings could not be loaded" });
    });
    return state.loaded;
  }

  return { state, form, reload, refreshVersion, start, onLoad, outcome, conflict, original, fieldRow, read, write };
})();
