// The Sessions page: GET /api/v1/sessions every 2 s; End sends DELETE (a BYE).
"use strict";

const { el } = IMSS;
const body = document.getElementById("sessions");
const line = document.getElementById("sessions-state");
const ending = new Set();

function row(s, admin) {
  const end = el("button", { type: "button", class: "small danger", "data-admin": true,
    "aria-label": `End session ${s.id} with ${s.peer}` }, "End");
  end.disabled = !admin || ending.has(s.id);
  end.addEventListener("click", async () => {
    if (!confirm(`End the ${s.kind.toUpperCase()} session with ${s.peer}? The caller is hung up.`)) return;
    ending.add(s.id);
    end.disabled = true;
    try {
      await IMSS.api("DELETE", `/api/v1/sessions/${encodeURIComponent(s.id)}`);
      IMSS.say(line, `Ended the session with ${s.peer}.`, "ok");
    } catch (e) {
      IMSS.showError(e, { line, prefix: "Not ended" });
    } finally {
      ending.delete(s.id);
      refresh();
    }
  });
  const tr = el("tr", { "data-id": s.id },
    el("td", {}, s.kind === "mrcp" ? "MRCP" : "SIP"),
    el("td", {}, s.peer || "–"),
    el("td", { class: "mono" }, s.call_id || "–"),
    el("td", { class: "mono" }, s.channel || "–"),
    el("td", {}, s.playing || "–"),
    el("td", {}, IMSS.when(s.since)),
    el("td", { class: "num" }, IMSS.duration(s.seconds || 0)),
    el("td", {}, s.codec || "–"),
    el("td", { class: "num" }, s.packets === undefined || s.packets === null ? "–" : String(s.packets)),
    el("td", {}, end));
  return tr;
}

let busy = false;
async function refresh() {
  if (busy) return;
  busy = true;
  try {
    const session = await IMSS.ready;
    const data = await IMSS.api("GET", "/api/v1/sessions");
    const list = data.sessions || [];
    IMSS.fillTable(body, list.map((s) => row(s, !IMSS.isViewer(session))), "No sessions now.");
    document.getElementById("sessions-count").textContent =
      `${list.length} session${list.length === 1 ? "" : "s"} · updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    IMSS.showError(e, { line, prefix: "The sessions could not be read" });
  } finally {
    busy = false;
  }
}

refresh();
setInterval(refresh, 2000);
