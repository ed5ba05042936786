// The Audio page: [rtp], [audio] and [http_audio], with the caches' figures from
// /api/v1/status when the server reports them.
"use strict";

const forms = document.getElementById("forms");

Settings.form(forms, {
  section: "rtp",
  title: "RTP media",
  fields: [
    { key: "bind", label: "Address", help: "Address the RTP sockets bind to." },
    { key: "advertise", label: "Advertised address", optional: true, placeholder: "the bind address",
      help: "Address written into SDP; empty: the bind address (127.0.0.1 for 0.0.0.0)." },
    { key: "port_min", label: "Lowest port", type: "number", min: 1024, max: 65535, step: 2,
      help: "Lowest RTP port (even); RTCP uses the next odd port." },
    { key: "port_max", label: "Highest port", type: "number", min: 1024, max: 65535, step: 1, help: "Highest port of the range." },
    { key: "ptime_ms", label: "Packet time", type: "number", unit: "ms", min: 10, max: 60, step: 10,
      help: "Packet time when the offer has no a=ptime (10–60 ms)." },
    { key: "pacing_threads", label: "Pacing threads", type: "number", min: 0, step: 1, help: "Threads that send RTP; 0 means one per core." },
    { key: "realtime_priority", label: "Real-time priority", type: "number", optional: true, min: 1, max: 99, step: 1,
      placeholder: "normal scheduling",
      help: "Run the pacing threads in the SCHED_FIFO class at this priority (1–99); needs CAP_SYS_NICE. Empty: normal scheduling." },
    { key: "pin_cpus", label: "Pin to CPUs", type: "bool", help: "Pin pacing thread i to CPU i." },
  ],
  others: true,
});

Settings.form(forms, {
  section: "audio",
  title: "Audio files",
  intro: "The codecs offered are G.711 μ-law (PCMU) and A-law (PCMA), at 8 kHz; the caller's offer picks one.",
  fields: [
    { key: "root", label: "Audio root", optional: true, placeholder: "<data folder>/audio",
      help: "Root folder of the files that play= and SPEAK name; empty: audio/ below the data folder." },
    { key: "cache_mib", label: "Clip cache", type: "number", unit: "MiB", optional: true, min: 0, step: 1,
      placeholder: "default", help: "Bound of the decoded clips kept in memory." },
  ],
  others: true,
});

Settings.form(forms, {
  section: "http_audio",
  title: "Audio fetched over HTTP(S)",
  intro: "http:// and https:// URIs in SPEAK bodies and RFC 4240 play=, fetched, decoded once and cached.",
  fields: [
    { key: "allow_hosts", label: "Allowed hosts", type: "list", placeholder: "*",
      help: "One per line: a name or address, *.example.com for any name below it, or * for any host. Checked again at every redirect. Empty: HTTP audio off." },
    { key: "fetch_timeout_ms", label: "Fetch timeout", type: "number", unit: "ms", min: 1, step: 1,
      help: "How long one fetch may take (connection, redirects and body) when the request does not say." },
    { key: "max_file_mib", label: "Largest file", type: "number", unit: "MiB", min: 1, step: 1,
      help: "A longer file is refused at once without reading the rest." },
    { key: "disk_cache_mib", label: "Disk cache", type: "number", unit: "MiB", min: 0, step: 1,
      help: "Bound of the fetched files kept on disk; the least recently used go first." },
    { key: "memory_cache_mib", label: "Memory cache", type: "number", unit: "MiB", min: 0, step: 1,
      help: "Bound of the decoded clips of fetched files kept in memory." },
    { key: "max_redirects", label: "Most redirects", type: "number", min: 0, step: 1, help: "Most redirects followed by one fetch." },
    { key: "cache_dir", label: "Cache folder", optional: true, placeholder: "<data folder>/cache/http", help: "Folder of the disk cache." },
    { key: "ca_file", label: "CA file", optional: true, placeholder: "Mozilla's roots",
      help: "PEM file of CA certificates to trust for https:// instead of the built-in roots. Certificates are always verified." },
    { key: "proxy", label: "Proxy", optional: true, placeholder: "direct connections",
      help: "Proxy for every fetch (http://host:port, socks5://host:port); the environment's proxy variables are not read." },
  ],
  others: true,
});

/** Cache figures from /api/v1/status: `audio_cache` (`{hits, misses, used_bytes,
 * max_bytes, clips}`) and `tts` (`{cache_hits, cache_misses}`). */
async function showCaches() {
  const box = document.getElementById("caches");
  try {
    const status = await IMSS.api("GET", "/api/v1/status");
    const rows = [];
    for (const [name, label] of [["audio_cache", "Audio files (decoded)"], ["tts", "Text-to-speech"]]) {
      const c = status[name];
      if (!c) continue;
      const hits = c.hits ?? c.cache_hits, misses = c.misses ?? c.cache_misses ?? 0;
      if (typeof hits !== "number") continue;
      const total = hits + misses;
      const rate = total ? `${((100 * hits) / total).toFixed(1)} %` : "–";
      const held = typeof c.used_bytes === "number"
        ? `${(c.used_bytes / 1048576).toFixed(1)} of ${(c.max_bytes / 1048576).toFixed(0)} MiB, ${c.clips} files`
        : "–";
      rows.push([label, String(hits), String(misses), rate, held]);
    }
    IMSS.fillTable(box, rows, "The server reports no cache figures.");
  } catch (e) {
    IMSS.fillTable(box, [], `Cache figures unavailable: ${e.message}`);
  }
}

forms.append(IMSS.el("section", { "aria-labelledby": "caches-title" },
  IMSS.el("h2", { id: "caches-title" }, "Cache hit rates"),
  IMSS.el("table", {},
    IMSS.el("thead", {}, IMSS.el("tr", {},
      ["Cache", "Hits", "Misses", "Hit rate", "Held"].map((h) => IMSS.el("th", { scope: "col" }, h)))),
    IMSS.el("tbody", { id: "caches" }))));

Settings.start();
showCaches();
setInterval(showCaches, 5000);
