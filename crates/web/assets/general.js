// The General page: [general], [sip] (but trusted_networks, on Administration) and [mrcp].
"use strict";

const LOG_LEVEL_HELP = "What the log shows: a level (error, warn, info, debug, trace) or " +
  "comma-separated target=level directives after an optional level, e.g. " +
  "info,imss_server=debug. Applies at once; RUST_LOG, when set, wins at start.";

/** Log levels offered as suggestions (directives may be typed too). */
function logLevelList() {
  if (document.getElementById("log-levels")) return;
  document.body.append(IMSS.el("datalist", { id: "log-levels" },
    ["error", "warn", "info", "debug", "trace"].map((l) => IMSS.el("option", { value: l }))));
}

logLevelList();
const forms = document.getElementById("forms");

Settings.form(forms, {
  section: "general",
  title: "This server",
  fields: [
    { key: "name", label: "Name", help: "Shown in SIP Server: headers, this interface and the cluster." },
    { key: "location", label: "Location", help: "The location this server belongs to; selection rules match on it." },
    { key: "functions", label: "Functions", type: "choices",
      options: [["streaming", "Streaming (files and live sources)"], ["voicemail", "Voicemail"], ["tts", "Text-to-speech"]],
      help: "The functions this server offers." },
    { key: "data_dir", label: "Data folder", help: "audio/, mail/ and cache/ live below it by default. Takes effect after a restart." },
    { key: "log_level", label: "Log level", datalist: "log-levels", help: LOG_LEVEL_HELP },
  ],
  others: true,
});

Settings.form(forms, {
  section: "sip",
  title: "SIP listener",
  intro: "Trusted networks are set on the Administration page.",
  fields: [
    { key: "bind", label: "Address", help: "Address to listen on (UDP and TCP)." },
    { key: "port", label: "Port", type: "number", min: 0, max: 65535, step: 1, help: "UDP and TCP port; 0 picks a free port." },
    { key: "advertise", label: "Advertised address", optional: true, placeholder: "the bind address",
      help: "Address written into Contact headers; empty: the bind address, or 127.0.0.1 when binding 0.0.0.0." },
    { key: "max_calls", label: "Most calls", type: "number", min: 1, step: 1, help: "Most calls at once; further INVITEs get 503 with Retry-After." },
    { key: "session_expires_s", label: "Longest session interval", type: "number", unit: "s", min: 1, step: 1,
      help: "RFC 4028 session timers: the longest interval granted; a larger Session-Expires is lowered to it." },
    { key: "min_se_s", label: "Shortest session interval", type: "number", unit: "s", min: 1, step: 1,
      help: "RFC 4028: a timer-aware caller asking for less gets 422 with this Min-SE (RFC 4028's floor is 90)." },
  ],
});

Settings.form(forms, {
  section: "mrcp",
  title: "MRCPv2 listener",
  fields: [
    { key: "bind", label: "Address", help: "Address the MRCPv2 control channel listens on." },
    { key: "port", label: "Port", type: "number", min: 0, max: 65535, step: 1, help: "TCP port of the MRCPv2 control channel." },
    { key: "connect_timeout_s", label: "Connect timeout", type: "number", unit: "s", min: 1, step: 1,
      help: "How long a session may wait for its first request on the control channel before the server hangs up." },
    { key: "tls_port", label: "TLS port", type: "number", optional: true, min: 0, max: 65535, step: 1, placeholder: "no TLS",
      help: "TCP port of the TLS control channel (TCP/TLS/MRCPv2 offers are granted there); empty: no TLS." },
    { key: "tls_cert", label: "TLS certificate", optional: true, help: "PEM file with the server certificate chain, leaf first (needed with a TLS port)." },
    { key: "tls_key", label: "TLS key", optional: true, help: "PEM file with the certificate's private key (needed with a TLS port)." },
  ],
});

Settings.start();
