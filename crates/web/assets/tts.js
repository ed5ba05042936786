// The Text-to-speech page: [tts], the cache's figures and a box to hear a text spoken.
"use strict";

const { el } = IMSS;
const forms = document.getElementById("forms");

Settings.form(forms, {
  section: "tts",
  title: "Speech engine",
  fields: [
    { key: "engine", label: "Engine", type: "select", options: ["espeak-ng", "espeak"],
      help: "The program run for each utterance." },
    { key: "voice", label: "Default voice", placeholder: "en-us",
      help: "An engine voice (en-us, gmw/en-GB) or a BCP 47 language tag; used when a SPEAK names neither a voice nor a language." },
    { key: "rate_wpm", label: "Rate", type: "number", unit: "words per minute", min: 80, max: 450, step: 1,
      help: "Speaking rate (80–450); Prosody-Rate scales it." },
    { key: "pitch_percent", label: "Pitch", type: "number", unit: "%", min: 10, max: 200, step: 1,
      help: "Base pitch, percent of the voice's own (10–200; 100 = unchanged); Prosody-Pitch scales it." },
    { key: "volume_percent", label: "Volume", type: "number", unit: "%", min: 0, max: 200, step: 1,
      help: "Loudness, percent of the voice's own (0–200; 100 = unchanged); Prosody-Volume scales it." },
    { key: "cache_mib", label: "Cache", type: "number", unit: "MiB", min: 0, max: 4096, step: 1,
      help: "Memory for synthesised clips kept for repeated prompts (0–4,096; 0 keeps none)." },
  ],
  others: true,
});

const text = el("textarea", { id: "speak-text", name: "text", rows: 3, required: true,
  placeholder: "Thank you for calling.", "aria-describedby": "speak-help" });
const voice = el("input", { id: "speak-voice", name: "voice", placeholder: "the default voice", spellcheck: false });
const rate = el("input", { id: "speak-rate", name: "rate", type: "number", min: 80, max: 450, step: 1, placeholder: "the default rate" });
const player = el("audio", { id: "speak-audio", controls: true, hidden: true });
const line = el("p", { class: "result", id: "speak-result", role: "status", "aria-live": "polite" });
const speak = el("form", { id: "speak", class: "settings", "data-admin": true, "aria-labelledby": "speak-title", noValidate: true },
  el("h2", { id: "speak-title" }, "Speak"),
  el("div", { class: "fields" },
    el("div", { class: "field" }, el("label", { for: "speak-text" }, "Text"), el("div", { class: "control" }, text),
      el("p", { class: "help", id: "speak-help" }, "Plain text, up to 2,000 characters, spoken with the settings saved above.")),
    el("div", { class: "field" }, el("label", { for: "speak-voice" }, "Voice"), el("div", { class: "control" }, voice),
      el("p", { class: "help" }, "Optional: another voice for this text.")),
    el("div", { class: "field" }, el("label", { for: "speak-rate" }, "Rate", el("span", { class: "unit" }, " (words per minute)")),
      el("div", { class: "control" }, rate), el("p", { class: "help" }, "Optional: another rate for this text."))),
  el("div", { class: "actions" }, el("button", { type: "submit", id: "speak-button" }, "Speak"), line),
  player);
forms.append(speak);

let lastUrl = null;
speak.addEventListener("submit", async (event) => {
  event.preventDefault();
  IMSS.clearErrors(speak);
  const body = { text: text.value };
  if (voice.value.trim()) body.voice = voice.value.trim();
  if (rate.value.trim()) body.rate = Number(rate.value);
  IMSS.say(line, "Speaking…");
  try {
    const wav = await IMSS.api("POST", "/api/v1/tts/speak", { body, blob: true });
    if (lastUrl) URL.revokeObjectURL(lastUrl);
    lastUrl = URL.createObjectURL(wav);
    player.src = lastUrl;
    player.hidden = false;
    IMSS.say(line, `Spoken: ${IMSS.bytes(wav.size)} of audio.`, "ok");
    player.play().catch(() => {});
  } catch (e) {
    IMSS.showError(e, { container: speak, line, prefix: "Not spoken" });
  }
});

async function cacheFigures() {
  try {
    const status = await IMSS.api("GET", "/api/v1/status");
    const c = status.tts;
    if (!c) return;
    const total = c.cache_hits + c.cache_misses;
    const rate = total ? ` (${((100 * c.cache_hits) / total).toFixed(1)} % from the cache)` : "";
    document.getElementById("tts-cache").textContent =
      `Requests answered from the cache: ${c.cache_hits}; rendered by the engine: ${c.cache_misses}${rate}.`;
  } catch (_) {
    // The figures are a nicety: the form works without them.
  }
}

forms.append(el("p", { id: "tts-cache", class: "intro", role: "status" }));
Settings.start();
cacheFigures();
setInterval(cacheFigures, 5000);
