//! Audio fetched over HTTP(S) for requests: `http://` and `https://` URIs in SPEAK bodies
//! and RFC 4240 `play=`.
//!
//! [`HttpAudio::clip`] turns such a URI into a decoded [`Clip`] (8 kHz, both G.711 laws),
//! fetching it only when no usable copy is cached:
//! - **Memory**: decoded clips by URI, least recently used first out, bounded in bytes
//!   (`http_audio.memory_cache_mib`). A fresh one is used without any I/O, which is what
//!   [`HttpAudio::fresh_clip`] asks on the request's fast path.
//! - **Disk** (`<data_dir>/cache/http/` by default): the fetched body as it came and a JSON
//!   file with its URI and cache policy, bounded in bytes (`http_audio.disk_cache_mib`), so a
//!   restart need not fetch again.
//! - **Freshness** follows RFC 7234 for a private cache (the server is the user agent, like a
//!   VoiceXML browser): `Cache-Control` (`max-age`, `no-cache`, `no-store`, …), `Expires`,
//!   and revalidation with `If-None-Match` / `If-Modified-Since` from the stored `ETag` /
//!   `Last-Modified`, a `304` reusing the cached clip. The rules come from
//!   `http-cache-semantics` (the RFC 7234 crate of the Rust ecosystem) and take the time
//!   as input, so [`freshness`] and [`revalidated`] are tested with explicit time. A
//!   request's own MRCP `Cache-Control` (`max-age`, `max-stale`, `min-fresh`) is applied
//!   too.
//! - **One fetch per URI at a time**: concurrent requests for a URI that is being fetched
//!   wait for that fetch and share its result (or its failure), each within its own
//!   timeout.
//!
//! Limits: a fetch has one deadline for connection, redirects and body (MRCP
//! `Fetch-Timeout`, else `http_audio.fetch_timeout_ms`); bodies over `max_file_mib` are
//! refused on their `Content-Length` or as soon as the bytes read pass it; only audio
//! content types are accepted (`audio/*`, `application/ogg`, and
//! `application/octet-stream` or none for a URL with an audio file extension); redirects
//! are followed by hand, at most `max_redirects`, so that every hop is checked against
//! `allow_hosts`. TLS certificates are always verified.
//!
//! Blocking: [`HttpAudio::clip`] does network and file I/O and decodes; call it on the
//! blocking pool. [`HttpAudio::fresh_clip`] only looks at memory.

use http_cache_semantics::{AfterResponse, BeforeRequest, CacheOptions, CachePolicy};
use imss_media::Clip;
use lru::LruCache;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use ureq::http::{self, HeaderMap, HeaderValue, Request, StatusCode, header};
use url::Url;

use crate::config::Config;

/// Why the audio of a URI could not be had. Each maps to an MRCP `Failed-URI-Cause`
/// ([`FetchError::failed_uri_cause`]) and an RFC 4240 SIP status ([`FetchError::sip_status`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Not an absolute `http://` or `https://` URL.
    #[error("not an http(s) URL: {0}")]
    BadUri(String),
    /// The host (of the URI or of a redirect) is not in `http_audio.allow_hosts`.
    #[error("host {host} is not in http_audio.allow_hosts: refused")]
    HostNotAllowed {
        /// The host asked for.
        host: String,
    },
    /// The HTTP server answered with a status other than 200 (or 304 to a revalidation).
    #[error("the HTTP server answered {status}")]
    Status {
        /// The HTTP status code.
        status: u16,
    },
    /// The fetch did not finish within its deadline.
    #[error("no complete answer within {} ms (Fetch-Timeout)", .0.as_millis())]
    Timeout(Duration),
    /// The body is larger than `http_audio.max_file_mib`.
    #[error("the audio is larger than the {limit_mib} MiB limit (http_audio.max_file_mib)")]
    TooLarge {
        /// The limit, in MiB.
        limit_mib: u64,
    },
    /// The content type is not audio.
    #[error("content type {0} is not audio")]
    ContentType(String),
    /// More redirects than `http_audio.max_redirects`.
    #[error("more than {0} redirects (http_audio.max_redirects)")]
    TooManyRedirects(u32),
    /// The server could not be reached (name resolution, connection, I/O).
    #[error("cannot fetch: {0}")]
    Connect(String),
    /// The TLS handshake failed (certificate not trusted, wrong name, …).
    #[error("TLS: {0}")]
    Tls(String),
    /// The body is not audio the server can decode.
    #[error("not playable audio: {0}")]
    Undecodable(String),
    /// The disk cache could not be written.
    #[error("HTTP audio cache: {0}")]
    Cache(String),
}

impl FetchError {
    /// The MRCP `Failed-URI-Cause` (RFC 6787 §8.4.x: the URI scheme's own response code):
    /// the HTTP status for an HTTP answer, else a short token (`timeout`, `too-large`,
    /// `unsupported-content-type`, `host-not-allowed`, …).
    pub fn failed_uri_cause(&self) -> String {
        match self {
            FetchError::Status { status } => status.to_string(),
            FetchError::BadUri(_) => "bad-uri".into(),
            FetchError::HostNotAllowed { .. } => "host-not-allowed".into(),
            FetchError::Timeout(_) => "timeout".into(),
            FetchError::TooLarge { .. } => "too-large".into(),
            FetchError::ContentType(_) => "unsupported-content-type".into(),
            FetchError::TooManyRedirects(_) => "too-many-redirects".into(),
            FetchError::Connect(_) => "connection-failed".into(),
            FetchError::Tls(_) => "tls-failed".into(),
            FetchError::Undecodable(_) => "unsupported-audio".into(),
            FetchError::Cache(_) => "cache-error".into(),
        }
    }

    /// The SIP status and reason phrase of an RFC 4240 announcement that failed so: 404 for
    /// what cannot be had (HTTP 4xx and 5xx, unreachable, too large, too many redirects),
    /// 408 for a timeout, 415 for what is not playable audio, 403 for a host outside the
    /// allow-list, 500 for a local cache failure.
    pub fn sip_status(&self) -> (u16, &'static str) {
        match self {
            FetchError::Timeout(_) => (408, "Request Timeout"),
            FetchError::ContentType(_) | FetchError::Undecodable(_) => {
                (415, "Unsupported Media Type")
            }
            FetchError::HostNotAllowed { .. } => (403, "Forbidden"),
            FetchError::Cache(_) => (500, "Server Internal Error"),
            FetchError::BadUri(_)
            | FetchError::Status { .. }
            | FetchError::TooLarge { .. }
            | FetchError::TooManyRedirects(_)
            | FetchError::Connect(_)
            | FetchError::Tls(_) => (404, "Not Found"),
        }
    }
}

/// What one request asks of a fetch.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// How long the fetch may take (MRCP `Fetch-Timeout`); `None`: the configured default.
    pub timeout: Option<Duration>,
    /// The request's `Cache-Control` (MRCP: `max-age`, `max-stale`, `min-fresh`).
    pub cache_control: Option<String>,
}

/// Whether `uri` is one [`HttpAudio`] fetches (`http://` or `https://`, any case).
pub fn is_http_uri(uri: &str) -> bool {
    let lower = |n: usize| uri.get(..n).map(str::to_ascii_lowercase);
    lower(7).is_some_and(|s| s == "http://") || lower(8).is_some_and(|s| s == "https://")
}

/// Checks one `http_audio.allow_hosts` entry: `*`, `*.domain`, a host name or an IP
/// address (IPv6 with or without brackets).
pub fn check_host_pattern(pattern: &str) -> Result<(), &'static str> {
    if pattern == "*" {
        return Ok(());
    }
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    if strip_brackets(name).parse::<IpAddr>().is_ok() && !pattern.starts_with("*.") {
        return Ok(());
    }
    let label_ok = |l: &str| {
        !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if !name.is_empty() && name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err("is not a host name, an IP address, *.domain or *")
    }
}

fn strip_brackets(s: &str) -> &str {
    s.strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s)
}

/// Whether `url`'s host matches one of `patterns` (see [`check_host_pattern`]). The host is
/// taken as the URL parser normalised it (lower case, punycode, canonical IP addresses), so
/// another spelling of a refused host is refused too.
fn host_allowed(patterns: &[String], url: &Url) -> bool {
    let Some(host) = url.host() else {
        return false;
    };
    patterns.iter().any(|p| {
        if p == "*" {
            return true;
        }
        match &host {
            url::Host::Domain(d) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                match p.strip_prefix("*.") {
                    Some(suffix) => {
                        let suffix = suffix.trim_end_matches('.').to_ascii_lowercase();
                        d.len() > suffix.len()
                            && d.ends_with(&suffix)
                            && d.as_bytes()[d.len() - suffix.len() - 1] == b'.'
                    }
                    None => d == p.trim_end_matches('.').to_ascii_lowercase(),
                }
            }
            url::Host::Ipv4(ip) => strip_brackets(p).parse::<IpAddr>() == Ok(IpAddr::V4(*ip)),
            url::Host::Ipv6(ip) => strip_brackets(p).parse::<IpAddr>() == Ok(IpAddr::V6(*ip)),
        }
    })
}

/// File extensions of audio the server decodes (symphonia: WAV, MP3, FLAC, Ogg).
const AUDIO_EXTENSIONS: [&str; 6] = ["wav", "wave", "mp3", "flac", "ogg", "oga"];

/// Decides from the `Content-Type` and the URL's path whether a body is audio; returns
/// the file extension to store it under (a hint for the decoder) or why it is refused.
fn audio_extension(content_type: Option<&str>, url: &Url) -> Result<&'static str, String> {
    let from_path = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .and_then(|name| name.rsplit_once('.'))
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .and_then(|ext| AUDIO_EXTENSIONS.iter().copied().find(|e| *e == ext));
    let mime = content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|m| !m.is_empty());
    let by_mime = |m: &str| match m {
        "audio/mpeg" | "audio/mp3" | "audio/mpeg3" | "audio/x-mpeg" => Some("mp3"),
        "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => Some("wav"),
        "audio/ogg" | "audio/vorbis" | "audio/opus" | "application/ogg" => Some("ogg"),
        "audio/flac" | "audio/x-flac" => Some("flac"),
        _ => None,
    };
    match mime.as_deref() {
        Some(m) if m.starts_with("audio/") || m == "application/ogg" => {
            Ok(by_mime(m).or(from_path).unwrap_or("audio"))
        }
        Some("application/octet-stream") | Some("binary/octet-stream") | None => from_path
            .ok_or_else(|| {
                format!(
                    "{} without an audio file extension in the URL",
                    mime.as_deref().unwrap_or("(no Content-Type)")
                )
            }),
        Some(m) => Err(m.to_string()),
    }
}

/// A cached copy: where it came from, its RFC 7234 policy, and its body's file.
#[derive(Clone, Serialize, Deserialize)]
struct Meta {
    /// The URI requests name (the cache key).
    uri: String,
    /// The URL the body came from, after redirects (what the policy describes).
    final_url: String,
    policy: CachePolicy,
    /// File name of the body in the cache folder.
    body: String,
    /// Body length in bytes.
    size: u64,
}

/// The cache's view: a private cache (`private` responses may be kept, `s-maxage` is for
/// shared ones), heuristic freshness of 10 % of a `Last-Modified` age as RFC 7234 suggests.
fn cache_options() -> CacheOptions {
    CacheOptions {
        shared: false,
        ..CacheOptions::default()
    }
}

/// The GET the policy of `url` is judged against, with the request's own headers.
fn policy_request(url: &str, headers: &HeaderMap) -> Request<()> {
    let mut req = Request::get(url).body(()).unwrap_or_default();
    *req.headers_mut() = headers.clone();
    req
}

/// What a cached copy is good for at `now`.
#[derive(Debug, PartialEq)]
enum Freshness {
    /// Use it without asking the server.
    Fresh,
    /// Ask the server with these headers (with `If-None-Match` / `If-Modified-Since` when
    /// the copy has validators, so a `304` can confirm it).
    Stale(HeaderMap),
}

/// Sans-IO: whether `meta`'s copy satisfies a request with `headers` at `now`.
fn freshness(meta: &Meta, headers: &HeaderMap, now: SystemTime) -> Freshness {
    match meta
        .policy
        .before_request(&policy_request(&meta.final_url, headers), now)
    {
        BeforeRequest::Fresh(_) => Freshness::Fresh,
        BeforeRequest::Stale { request, .. } => Freshness::Stale(request.headers),
    }
}

/// Sans-IO: what a `304` answer (with `response`'s headers, received at `now`) to a
/// revalidation of `meta` means: the same body with an updated policy, or `None` when the
/// answer does not confirm this copy (its validator differs) and the body must be fetched.
fn revalidated(
    meta: &Meta,
    request_headers: &HeaderMap,
    response: &http::Response<()>,
    now: SystemTime,
) -> Option<Meta> {
    let req = policy_request(&meta.final_url, request_headers);
    match meta.policy.after_response(&req, response, now) {
        AfterResponse::NotModified(policy, _) => Some(Meta {
            policy,
            ..meta.clone()
        }),
        AfterResponse::Modified(..) => None,
    }
}

/// Failures of the origin rather than of the request: a stale copy may stand in for them.
fn upstream_failure(e: &FetchError) -> bool {
    match e {
        FetchError::Timeout(_) | FetchError::Connect(_) => true,
        FetchError::Status { status } => *status >= 500,
        _ => false,
    }
}

/// Sans-IO: whether `meta`'s copy may be served stale at `now` when its server cannot be
/// reached: any staleness the request accepts (`max-stale` with no limit), unless the
/// response said `must-revalidate` or `no-cache`.
fn stale_allowed(meta: &Meta, headers: &HeaderMap, now: SystemTime) -> bool {
    let mut headers = headers.clone();
    let own = headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .map(|v| format!("{v}, max-stale"))
        .unwrap_or_else(|| "max-stale".into());
    let Ok(own) = HeaderValue::from_str(&own) else {
        return false;
    };
    headers.insert(header::CACHE_CONTROL, own);
    // `must-revalidate` is the policy's to apply; `no-cache` shows in the stored response.
    match meta
        .policy
        .before_request(&policy_request(&meta.final_url, &headers), now)
    {
        BeforeRequest::Fresh(response) => !response
            .headers
            .get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|d| {
                let d = d.trim();
                d.eq_ignore_ascii_case("no-cache")
                    || d.get(..9)
                        .is_some_and(|p| p.eq_ignore_ascii_case("no-cache="))
            }),
        BeforeRequest::Stale { .. } => false,
    }
}

/// The disk name of a URI: 64-bit FNV-1a in hex. A collision only costs a miss: the JSON
/// file names its URI, and another URI's copy is not used.
fn disk_key(uri: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in uri.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// A decoded clip in memory with the metadata that says how long it may be used.
struct MemoryEntry {
    meta: Arc<Meta>,
    clip: Arc<Clip>,
}

/// Decoded clips by URI, least recently used first out, bounded in bytes.
struct MemoryCache {
    entries: LruCache<String, MemoryEntry>,
    used: usize,
    max: usize,
}

impl MemoryCache {
    fn insert(&mut self, uri: &str, meta: Arc<Meta>, clip: Arc<Clip>) {
        self.remove(uri);
        let bytes = clip.memory_bytes();
        if bytes > self.max {
            return; // served, not kept
        }
        self.used += bytes;
        self.entries
            .put(uri.to_string(), MemoryEntry { meta, clip });
        while self.used > self.max {
            match self.entries.pop_lru() {
                Some((_, e)) => self.used -= e.clip.memory_bytes(),
                None => break,
            }
        }
    }

    fn remove(&mut self, uri: &str) {
        if let Some(e) = self.entries.pop(uri) {
            self.used -= e.clip.memory_bytes();
        }
    }
}

/// The bodies on disk by key, least recently used first out, bounded in bytes.
struct DiskIndex {
    /// Key → (body file name, bytes).
    entries: LruCache<String, (String, u64)>,
    used: u64,
    max: u64,
}

impl DiskIndex {
    /// Reads what an earlier run left in `dir`: metadata files in the order they were
    /// written; unfinished downloads are deleted.
    fn scan(dir: &Path, max: u64) -> DiskIndex {
        let mut found: Vec<(SystemTime, String, String, u64)> = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with(".part-") {
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            let Some(key) = name.strip_suffix(".json") else {
                continue;
            };
            let meta = std::fs::read(entry.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<Meta>(&b).ok());
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            match meta {
                Some(m) if dir.join(&m.body).is_file() => {
                    found.push((modified, key.to_string(), m.body, m.size));
                }
                _ => {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        found.sort();
        let mut index = DiskIndex {
            entries: LruCache::unbounded(),
            used: 0,
            max,
        };
        for (_, key, body, size) in found {
            index.used += size;
            index.entries.put(key, (body, size));
        }
        index
    }

    /// Records `key`'s body; returns the files of what must go to stay within the bound.
    fn insert(&mut self, key: &str, body: &str, size: u64) -> Vec<(String, String)> {
        if let Some((_, old)) = self.entries.pop(key) {
            self.used -= old;
        }
        self.used += size;
        self.entries.put(key.to_string(), (body.to_string(), size));
        let mut evicted = Vec::new();
        while self.used > self.max && self.entries.len() > 1 {
            match self.entries.pop_lru() {
                Some((k, (b, s))) => {
                    self.used -= s;
                    evicted.push((k, b));
                }
                None => break,
            }
        }
        evicted
    }

    fn remove(&mut self, key: &str) {
        if let Some((_, size)) = self.entries.pop(key) {
            self.used -= size;
        }
    }
}

/// One fetch in progress, which other requests for the same URI wait for.
#[derive(Default)]
struct Flight {
    result: Mutex<Option<Result<Arc<Clip>, FetchError>>>,
    done: Condvar,
}

impl Flight {
    fn finish(&self, result: Result<Arc<Clip>, FetchError>) {
        *lock(&self.result) = Some(result);
        self.done.notify_all();
    }

    /// The fetch's result, or `None` when `deadline` comes first.
    fn wait(&self, deadline: Instant) -> Option<Result<Arc<Clip>, FetchError>> {
        let mut result = lock(&self.result);
        loop {
            if let Some(r) = result.as_ref() {
                return Some(r.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            result = match self.done.wait_timeout(result, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

/// Ends a leader's flight whatever happens to it (a panic included), so no waiter hangs.
struct FlightGuard<'a> {
    audio: &'a HttpAudio,
    uri: String,
    flight: Arc<Flight>,
}

impl FlightGuard<'_> {
    fn finish(self, result: Result<Arc<Clip>, FetchError>) -> Result<Arc<Clip>, FetchError> {
        self.flight.finish(result.clone());
        result
    }
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        if lock(&self.flight.result).is_none() {
            self.flight
                .finish(Err(FetchError::Cache("the fetch was abandoned".into())));
        }
        lock(&self.audio.flights).remove(&self.uri);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads the PEM certificates of `http_audio.ca_file`.
pub fn read_ca_file(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM CERTIFICATE block", path.display()));
    }
    Ok(certs
        .iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
        .collect())
}

/// Why [`HttpAudio`] could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The cache folder cannot be created.
    #[error("http_audio: cannot create the cache folder {path}: {source}")]
    CacheDir {
        /// The folder.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// `ca_file` or `proxy` cannot be used.
    #[error("http_audio.{key}: {message}")]
    Invalid {
        /// The key at fault.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The server's HTTP(S) audio: fetcher, caches and the fetches in progress. Shared by every
/// request (`Sync`).
pub struct HttpAudio {
    allow_hosts: Vec<String>,
    default_timeout: Duration,
    max_bytes: u64,
    max_redirects: u32,
    dir: PathBuf,
    agent: ureq::Agent,
    memory: Mutex<MemoryCache>,
    disk: Mutex<DiskIndex>,
    flights: Mutex<HashMap<String, Arc<Flight>>>,
    stats: crate::metrics::FetchStats,
}

impl HttpAudio {
    /// Sets up the fetcher from `[http_audio]`: creates the cache folder and reads what an
    /// earlier run cached there.
    pub fn new(config: &Config) -> Result<HttpAudio, SetupError> {
        let h = &config.http_audio;
        let dir = config.http_cache_dir();
        std::fs::create_dir_all(&dir).map_err(|source| SetupError::CacheDir {
            path: dir.clone(),
            source,
        })?;
        let mut tls = ureq::tls::TlsConfig::builder().provider(ureq::tls::TlsProvider::Rustls);
        if let Some(ca) = &h.ca_file {
            let certs = read_ca_file(ca).map_err(|message| SetupError::Invalid {
                key: "ca_file",
                message,
            })?;
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        let proxy = match &h.proxy {
            Some(p) => Some(ureq::Proxy::new(p).map_err(|e| SetupError::Invalid {
                key: "proxy",
                message: format!("{p:?}: {e}"),
            })?),
            None => None,
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .proxy(proxy)
            .tls_config(tls.build())
            .user_agent(concat!("imss/", env!("CARGO_PKG_VERSION")))
            .accept("audio/*, application/ogg;q=0.9, application/octet-stream;q=0.5")
            .build()
            .new_agent();
        let mib = |n: u64| n.saturating_mul(1024 * 1024);
        let disk = DiskIndex::scan(&dir, mib(h.disk_cache_mib));
        Ok(HttpAudio {
            allow_hosts: h.allow_hosts.clone(),
            default_timeout: Duration::from_millis(h.fetch_timeout_ms),
            max_bytes: mib(h.max_file_mib),
            max_redirects: h.max_redirects,
            dir,
            agent,
            memory: Mutex::new(MemoryCache {
                entries: LruCache::unbounded(),
                used: 0,
                max: usize::try_from(mib(h.memory_cache_mib)).unwrap_or(usize::MAX),
            }),
            disk: Mutex::new(disk),
            flights: Mutex::new(HashMap::new()),
            stats: crate::metrics::FetchStats::default(),
        })
    }

    /// Cache and fetch counters, for metrics.
    pub fn stats(&self) -> &crate::metrics::FetchStats {
        &self.stats
    }

    /// The clip of `uri` if a fresh one is in memory: no I/O, for the request's fast path.
    pub fn fresh_clip(&self, uri: &str, options: &FetchOptions) -> Option<Arc<Clip>> {
        let headers = request_headers(options);
        let mut memory = lock(&self.memory);
        let entry = memory.entries.get(uri)?;
        (freshness(&entry.meta, &headers, SystemTime::now()) == Freshness::Fresh)
            .then(|| entry.clip.clone())
    }

    /// The clip of `uri`: from memory or disk while fresh, revalidated or fetched otherwise.
    /// A fetch of the same URI already running is waited for instead of starting another.
    /// Blocking.
    pub fn clip(&self, uri: &str, options: &FetchOptions) -> Result<Arc<Clip>, FetchError> {
        let timeout = options.timeout.unwrap_or(self.default_timeout);
        let deadline = Instant::now() + timeout;
        let url = self.check_url(uri)?;
        if let Some(clip) = self.fresh_clip(uri, options) {
            tracing::debug!(uri, "HTTP audio from memory");
            self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(clip);
        }
        let (flight, leader) = {
            let mut flights = lock(&self.flights);
            match flights.get(uri) {
                Some(f) => (f.clone(), false),
                None => {
                    let f = Arc::new(Flight::default());
                    flights.insert(uri.to_string(), f.clone());
                    (f, true)
                }
            }
        };
        if !leader {
            tracing::debug!(uri, "waiting for the fetch in progress");
            return flight
                .wait(deadline)
                .unwrap_or(Err(FetchError::Timeout(timeout)));
        }
        let guard = FlightGuard {
            audio: self,
            uri: uri.to_string(),
            flight,
        };
        let result = self.load(uri, &url, options, deadline, timeout);
        if let Err(e) = &result {
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::info!(uri, error = %e, "HTTP audio failed");
        }
        guard.finish(result)
    }

    /// Parses `uri` and checks its scheme and host.
    fn check_url(&self, uri: &str) -> Result<Url, FetchError> {
        let url = Url::parse(uri).map_err(|e| FetchError::BadUri(format!("{uri} ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(FetchError::BadUri(uri.to_string()));
        }
        if !host_allowed(&self.allow_hosts, &url) {
            return Err(FetchError::HostNotAllowed {
                host: url.host_str().unwrap_or_default().to_string(),
            });
        }
        Ok(url)
    }

    /// The leader's work: a fresh copy from disk, or a (conditional) fetch.
    fn load(
        &self,
        uri: &str,
        url: &Url,
        options: &FetchOptions,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Arc<Clip>, FetchError> {
        let base = request_headers(options);
        // Another request may have finished a fetch just before this one began.
        let memory_entry = {
            let mut memory = lock(&self.memory);
            memory
                .entries
                .get(uri)
                .map(|e| (e.meta.clone(), e.clip.clone()))
        };
        let cached: Option<(Arc<Meta>, Option<Arc<Clip>>)> = match memory_entry {
            Some((meta, clip)) => Some((meta, Some(clip))),
            None => self.disk_meta(uri).map(|m| (Arc::new(m), None)),
        };
        let mut conditional = None;
        if let Some((meta, clip)) = &cached {
            match freshness(meta, &base, SystemTime::now()) {
                Freshness::Fresh => {
                    if let Some(clip) = clip {
                        self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                        return Ok(clip.clone());
                    }
                    match self.decode_cached(meta) {
                        Ok(clip) => {
                            self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(uri, "HTTP audio from the disk cache");
                            lock(&self.memory).insert(uri, meta.clone(), clip.clone());
                            return Ok(clip);
                        }
                        Err(e) => self.forget(uri, &e),
                    }
                }
                Freshness::Stale(headers) => conditional = Some((meta.clone(), clip, headers)),
            }
        }
        self.stats.cache_misses.fetch_add(1, Ordering::Relaxed);
        if let Some((meta, clip, headers)) = conditional {
            let attempt =
                self.send(url, &headers, deadline, timeout)
                    .and_then(|(final_url, response)| {
                        if response.status() != StatusCode::NOT_MODIFIED {
                            return self
                                .store(uri, final_url, response, &base, timeout)
                                .map(Some);
                        }
                        let (parts, _) = response.into_parts();
                        let answer = http::Response::from_parts(parts, ());
                        let updated = Meta {
                            final_url: final_url.to_string(),
                            ..(*meta).clone()
                        };
                        let Some(updated) =
                            revalidated(&updated, &base, &answer, SystemTime::now())
                        else {
                            return Ok(None); // the 304 is not for our copy: fetch the body
                        };
                        let clip = match clip {
                            Some(c) => c.clone(),
                            None => self.decode_cached(&updated)?,
                        };
                        let updated = Arc::new(updated);
                        self.write_meta(&updated)?;
                        lock(&self.memory).insert(uri, updated, clip.clone());
                        tracing::info!(uri, "HTTP audio revalidated (304)");
                        Ok(Some(clip))
                    });
            match attempt {
                Ok(Some(clip)) => return Ok(clip),
                Ok(None) => {}
                Err(e)
                    if upstream_failure(&e) && stale_allowed(&meta, &base, SystemTime::now()) =>
                {
                    // RFC 7234 §4.2.4: a cache cut off from the origin may serve a stale
                    // copy the response did not forbid (`must-revalidate`, `no-cache`).
                    let clip = match clip {
                        Some(c) => c.clone(),
                        None => self.decode_cached(&meta).map_err(|_| e.clone())?,
                    };
                    tracing::warn!(uri, error = %e, "HTTP audio server failed; playing the stale cached copy");
                    return Ok(clip);
                }
                Err(e) => return Err(e),
            }
        }
        let (final_url, response) = self.send(url, &base, deadline, timeout)?;
        self.store(uri, final_url, response, &base, timeout)
    }

    /// GET `url` with `headers`, following redirects by hand so that each hop is checked.
    fn send(
        &self,
        url: &Url,
        headers: &HeaderMap,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(Url, http::Response<ureq::Body>), FetchError> {
        let mut url = url.clone();
        for _ in 0..=self.max_redirects {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(FetchError::Timeout(timeout));
            }
            let mut request = self
                .agent
                .get(url.as_str())
                .config()
                .timeout_global(Some(left))
                .build();
            for (name, value) in headers {
                request = request.header(name, value);
            }
            self.stats.fetches.fetch_add(1, Ordering::Relaxed);
            let response = request.call().map_err(|e| fetch_error(e, timeout))?;
            let status = response.status();
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                let location = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .ok_or(FetchError::Status {
                        status: status.as_u16(),
                    })?;
                let next = url
                    .join(location)
                    .map_err(|e| FetchError::BadUri(format!("redirect to {location} ({e})")))?;
                tracing::debug!(from = %url, to = %next, "HTTP audio redirected");
                url = self.check_url(next.as_str())?;
                continue;
            }
            return Ok((url, response));
        }
        Err(FetchError::TooManyRedirects(self.max_redirects))
    }

    /// Takes a fresh answer: checks status, type and size, writes the body to the cache
    /// folder, decodes it, and keeps it (disk and memory) when its policy allows.
    fn store(
        &self,
        uri: &str,
        final_url: Url,
        response: http::Response<ureq::Body>,
        request_headers: &HeaderMap,
        timeout: Duration,
    ) -> Result<Arc<Clip>, FetchError> {
        let status = response.status();
        if status != StatusCode::OK {
            return Err(FetchError::Status {
                status: status.as_u16(),
            });
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string());
        let ext = audio_extension(content_type.as_deref(), &final_url)
            .map_err(FetchError::ContentType)?;
        if response
            .body()
            .content_length()
            .is_some_and(|len| len > self.max_bytes)
        {
            return Err(self.too_large());
        }
        let now = SystemTime::now();
        let policy = CachePolicy::new_options(
            &policy_request(final_url.as_str(), request_headers),
            &response,
            now,
            cache_options(),
        );
        let key = disk_key(uri);
        let part = self.dir.join(format!(
            ".part-{key}-{}.{ext}",
            now.duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let written = self.download(response.into_body(), &part, timeout);
        let size = match written {
            Ok(size) => size,
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                return Err(e);
            }
        };
        let clip = match Clip::from_file(&part) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                return Err(FetchError::Undecodable(
                    e.to_string()
                        .replace(&part.display().to_string(), "the fetched file"),
                ));
            }
        };
        tracing::info!(
            uri,
            bytes = size,
            storable = policy.is_storable(),
            "HTTP audio fetched"
        );
        if !policy.is_storable() {
            let _ = std::fs::remove_file(&part);
            lock(&self.memory).remove(uri);
            self.remove_disk(&key);
            return Ok(clip);
        }
        let body = format!("{key}.{ext}");
        let meta = Arc::new(Meta {
            uri: uri.to_string(),
            final_url: final_url.to_string(),
            policy,
            body: body.clone(),
            size,
        });
        lock(&self.memory).insert(uri, meta.clone(), clip.clone());
        let kept = lock(&self.disk).max >= size;
        if !kept {
            let _ = std::fs::remove_file(&part);
            self.remove_disk(&key);
            return Ok(clip);
        }
        // An earlier copy of another type leaves its body behind otherwise.
        if let Some(old) = self.disk_meta(uri)
            && old.body != body
        {
            let _ = std::fs::remove_file(self.dir.join(&old.body));
        }
        std::fs::rename(&part, self.dir.join(&body)).map_err(|e| {
            let _ = std::fs::remove_file(&part);
            FetchError::Cache(format!("{}: {e}", self.dir.display()))
        })?;
        self.write_meta(&meta)?;
        let evicted = lock(&self.disk).insert(&key, &body, size);
        for (k, b) in evicted {
            let _ = std::fs::remove_file(self.dir.join(format!("{k}.json")));
            let _ = std::fs::remove_file(self.dir.join(b));
        }
        Ok(clip)
    }

    fn too_large(&self) -> FetchError {
        FetchError::TooLarge {
            limit_mib: self.max_bytes / (1024 * 1024),
        }
    }

    /// Copies the body to `path`, stopping as soon as it passes the size limit.
    fn download(
        &self,
        body: ureq::Body,
        path: &Path,
        timeout: Duration,
    ) -> Result<u64, FetchError> {
        let mut reader = body.into_reader();
        let mut file = std::fs::File::create(path)
            .map_err(|e| FetchError::Cache(format!("{}: {e}", path.display())))?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut total: u64 = 0;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_fetch_error(e, timeout)),
            };
            total += n as u64;
            if total > self.max_bytes {
                return Err(self.too_large());
            }
            file.write_all(&buf[..n])
                .map_err(|e| FetchError::Cache(format!("{}: {e}", path.display())))?;
        }
        Ok(total)
    }

    /// The metadata of `uri`'s copy on disk, if there is one and its body is there.
    fn disk_meta(&self, uri: &str) -> Option<Meta> {
        let key = disk_key(uri);
        let bytes = std::fs::read(self.dir.join(format!("{key}.json"))).ok()?;
        let meta: Meta = serde_json::from_slice(&bytes).ok()?;
        if meta.uri != uri {
            return None; // another URI with the same key
        }
        let len = std::fs::metadata(self.dir.join(&meta.body)).ok()?.len();
        if len != meta.size {
            return None;
        }
        lock(&self.disk).entries.promote(&key);
        Some(meta)
    }

    fn decode_cached(&self, meta: &Meta) -> Result<Arc<Clip>, FetchError> {
        Clip::from_file(&self.dir.join(&meta.body))
            .map(Arc::new)
            .map_err(|e| FetchError::Cache(e.to_string()))
    }

    /// Drops a copy that turned out unusable.
    fn forget(&self, uri: &str, why: &FetchError) {
        tracing::warn!(uri, error = %why, "dropping an unusable cached copy");
        lock(&self.memory).remove(uri);
        self.remove_disk(&disk_key(uri));
    }

    fn remove_disk(&self, key: &str) {
        let json = self.dir.join(format!("{key}.json"));
        if let Some(meta) = std::fs::read(&json)
            .ok()
            .and_then(|b| serde_json::from_slice::<Meta>(&b).ok())
        {
            let _ = std::fs::remove_file(self.dir.join(meta.body));
        }
        let _ = std::fs::remove_file(json);
        lock(&self.disk).remove(key);
    }

    /// Writes a copy's metadata next to its body (temp file, then rename).
    fn write_meta(&self, meta: &Meta) -> Result<(), FetchError> {
        let key = disk_key(&meta.uri);
        if !self.dir.join(&meta.body).is_file() {
            return Ok(()); // kept in memory only
        }
        let json = serde_json::to_vec(meta).map_err(|e| FetchError::Cache(e.to_string()))?;
        let tmp = self.dir.join(format!(".part-{key}.json"));
        let path = self.dir.join(format!("{key}.json"));
        std::fs::write(&tmp, json)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| FetchError::Cache(format!("{}: {e}", path.display())))
    }
}

/// The headers every fetch for `options` sends (before revalidation adds its own).
fn request_headers(options: &FetchOptions) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(cc) = options
        .cache_control
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        headers.insert(header::CACHE_CONTROL, cc);
    }
    headers
}

/// Maps the client's errors onto the causes a requester can act on.
fn fetch_error(e: ureq::Error, timeout: Duration) -> FetchError {
    match e {
        ureq::Error::Timeout(_) => FetchError::Timeout(timeout),
        ureq::Error::StatusCode(status) => FetchError::Status { status },
        ureq::Error::TooManyRedirects => FetchError::TooManyRedirects(0),
        ureq::Error::BadUri(u) => FetchError::BadUri(u),
        ureq::Error::HostNotFound => FetchError::Connect("host not found".into()),
        ureq::Error::Io(e) => io_fetch_error(e, timeout),
        ureq::Error::Tls(m) => FetchError::Tls(m.to_string()),
        ureq::Error::Rustls(e) => FetchError::Tls(e.to_string()),
        other => FetchError::Connect(other.to_string()),
    }
}

/// An I/O error while reading a body: the client's own error inside (a timeout), or the
/// connection's.
fn io_fetch_error(e: std::io::Error, timeout: Duration) -> FetchError {
    if e.kind() == std::io::ErrorKind::TimedOut || e.kind() == std::io::ErrorKind::WouldBlock {
        return FetchError::Timeout(timeout);
    }
    if e.get_ref()
        .is_some_and(|inner| inner.is::<tokio_rustls::rustls::Error>())
    {
        return FetchError::Tls(e.to_string());
    }
    if e.get_ref().is_some_and(|inner| inner.is::<ureq::Error>()) {
        if let Some(inner) = e
            .into_inner()
            .and_then(|b| b.downcast::<ureq::Error>().ok())
        {
            return fetch_error(*inner, timeout);
        }
        return FetchError::Connect("connection failed".into());
    }
    FetchError::Connect(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("url")
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    /// The copy of `uri` after a 200 with `headers`, received at `t`.
    fn meta_from(uri: &str, headers: &[(&str, &str)], t: SystemTime) -> Meta {
        let mut response = http::Response::builder().status(200);
        for (k, v) in headers {
            response = response.header(*k, *v);
        }
        let response = response.body(()).expect("response");
        let policy = CachePolicy::new_options(
            &policy_request(uri, &HeaderMap::new()),
            &response,
            t,
            cache_options(),
        );
        Meta {
            uri: uri.into(),
            final_url: uri.into(),
            policy,
            body: "x.wav".into(),
            size: 1,
        }
    }

    /// RFC 7231 IMF-fixdate, for test headers.
    fn date(t: SystemTime) -> String {
        let secs = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after epoch")
            .as_secs();
        let days = secs / 86_400;
        let rem = secs % 86_400;
        // Civil from days (Howard Hinnant's algorithm).
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
        let month = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ][(m - 1) as usize];
        format!(
            "{weekday}, {d:02} {month} {y} {:02}:{:02}:{:02} GMT",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }

    const URI: &str = "http://audio.example/a.wav";

    #[test]
    fn max_age_is_fresh_until_it_runs_out_then_revalidates_with_the_etag() {
        let t0 = at(0);
        let meta = meta_from(
            URI,
            &[
                ("cache-control", "max-age=60"),
                ("etag", "\"v1\""),
                ("date", &date(t0)),
            ],
            t0,
        );
        let none = HeaderMap::new();
        assert_eq!(freshness(&meta, &none, at(59)), Freshness::Fresh);
        let Freshness::Stale(headers) = freshness(&meta, &none, at(61)) else {
            panic!("stale after max-age");
        };
        assert_eq!(
            headers.get("if-none-match").map(|v| v.as_bytes()),
            Some(&b"\"v1\""[..])
        );

        // 304 with a new max-age: the same body, fresh again from the answer's time.
        let answer = http::Response::builder()
            .status(304)
            .header("etag", "\"v1\"")
            .header("cache-control", "max-age=30")
            .header("date", date(at(61)))
            .body(())
            .expect("304");
        let renewed = revalidated(&meta, &none, &answer, at(61)).expect("304 confirms the copy");
        assert_eq!(freshness(&renewed, &none, at(90)), Freshness::Fresh);
        assert!(matches!(
            freshness(&renewed, &none, at(92)),
            Freshness::Stale(_)
        ));

        // A 304 naming another validator does not confirm this copy.
        let other = http::Response::builder()
            .status(304)
            .header("etag", "\"v2\"")
            .body(())
            .expect("304");
        assert!(revalidated(&meta, &none, &other, at(61)).is_none());
    }

    #[test]
    fn no_cache_always_revalidates_and_last_modified_is_a_validator() {
        let t0 = at(0);
        let lm = date(at(0) - Duration::from_secs(86_400));
        let meta = meta_from(
            URI,
            &[
                ("cache-control", "no-cache"),
                ("last-modified", &lm),
                ("date", &date(t0)),
            ],
            t0,
        );
        assert!(meta.policy.is_storable(), "no-cache may be stored");
        let Freshness::Stale(headers) = freshness(&meta, &HeaderMap::new(), t0) else {
            panic!("no-cache is never fresh");
        };
        assert_eq!(
            headers
                .get("if-modified-since")
                .and_then(|v| v.to_str().ok()),
            Some(lm.as_str())
        );
    }

    #[test]
    fn a_stale_copy_may_stand_in_for_an_unreachable_server_unless_forbidden() {
        let t0 = at(0);
        let none = HeaderMap::new();
        let plain = meta_from(
            URI,
            &[("cache-control", "max-age=60"), ("date", &date(t0))],
            t0,
        );
        assert!(stale_allowed(&plain, &none, at(86_400)));
        for forbidding in ["max-age=60, must-revalidate", "no-cache"] {
            let meta = meta_from(
                URI,
                &[("cache-control", forbidding), ("date", &date(t0))],
                t0,
            );
            assert!(!stale_allowed(&meta, &none, at(120)), "{forbidding}");
        }
        assert!(upstream_failure(&FetchError::Status { status: 503 }));
        assert!(upstream_failure(&FetchError::Timeout(Duration::from_secs(
            1
        ))));
        assert!(!upstream_failure(&FetchError::Status { status: 404 }));
        assert!(!upstream_failure(&FetchError::ContentType(
            "text/html".into()
        )));
    }

    #[test]
    fn no_store_is_not_kept() {
        let meta = meta_from(URI, &[("cache-control", "no-store, max-age=600")], at(0));
        assert!(!meta.policy.is_storable());
    }

    #[test]
    fn heuristic_freshness_from_last_modified_and_none_without_validators() {
        // Last modified 10 days ago, no explicit expiry: fresh for 10 % of that, one day.
        let t0 = at(0);
        let meta = meta_from(
            URI,
            &[
                (
                    "last-modified",
                    &date(t0 - Duration::from_secs(10 * 86_400)),
                ),
                ("date", &date(t0)),
            ],
            t0,
        );
        let none = HeaderMap::new();
        assert_eq!(freshness(&meta, &none, at(3600)), Freshness::Fresh);
        assert!(matches!(
            freshness(&meta, &none, at(2 * 86_400)),
            Freshness::Stale(_)
        ));
        // Nothing at all: stale at once, and nothing to revalidate with.
        let bare = meta_from(URI, &[("date", &date(t0))], t0);
        let Freshness::Stale(headers) = freshness(&bare, &none, at(1)) else {
            panic!("no freshness information");
        };
        assert!(
            headers.get("if-none-match").is_none() && headers.get("if-modified-since").is_none()
        );
    }

    #[test]
    fn the_requests_own_cache_control_is_applied() {
        let t0 = at(0);
        let meta = meta_from(
            URI,
            &[
                ("cache-control", "max-age=600"),
                ("etag", "\"e\""),
                ("date", &date(t0)),
            ],
            t0,
        );
        let mut max_age_10 = HeaderMap::new();
        max_age_10.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=10"),
        );
        assert_eq!(freshness(&meta, &max_age_10, at(5)), Freshness::Fresh);
        assert!(matches!(
            freshness(&meta, &max_age_10, at(20)),
            Freshness::Stale(_)
        ));
        // max-stale lets an expired copy be used.
        let mut max_stale = HeaderMap::new();
        max_stale.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-stale=120"),
        );
        assert_eq!(freshness(&meta, &max_stale, at(660)), Freshness::Fresh);
        assert!(matches!(
            freshness(&meta, &max_stale, at(800)),
            Freshness::Stale(_)
        ));
    }

    #[test]
    fn allow_list_matches_hosts_names_below_a_domain_and_ip_addresses() {
        let list: Vec<String> = ["audio.example", "*.cdn.example", "192.0.2.7", "::1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for ok in [
            "http://audio.example/a.wav",
            "https://AUDIO.example:8443/a.wav",
            "http://x.cdn.example/a.wav",
            "http://a.b.cdn.example/a.wav",
            "http://192.0.2.7/a.wav",
            "http://[::1]:8080/a.wav",
        ] {
            assert!(host_allowed(&list, &url(ok)), "{ok}");
        }
        for refused in [
            "http://cdn.example/a.wav",
            "http://evilcdn.example/a.wav",
            "http://audio.example.evil/a.wav",
            "http://127.0.0.1/a.wav",
            // Another spelling of an address is the same address.
            "http://0x7f.1/a.wav",
            "http://192.0.2.8/a.wav",
        ] {
            assert!(!host_allowed(&list, &url(refused)), "{refused}");
        }
        assert!(host_allowed(&["*".to_string()], &url("http://127.0.0.1/a")));
        assert!(!host_allowed(&[], &url("http://audio.example/a")));
        assert!(host_allowed(&["127.0.0.1".into()], &url("http://0x7f.1/a")));
    }

    #[test]
    fn host_patterns_are_checked() {
        for ok in [
            "*",
            "audio.example",
            "*.example",
            "192.0.2.7",
            "::1",
            "[::1]",
            "localhost",
        ] {
            assert_eq!(check_host_pattern(ok), Ok(()), "{ok}");
        }
        for bad in ["", "http://x", "x/y", "*x", "a..b", "x:80", "*.*"] {
            assert!(check_host_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_audio_content_types_are_accepted() {
        let wav = url("http://h/p/a.WAV?x=1");
        let bare = url("http://h/p/a");
        assert_eq!(audio_extension(Some("audio/mpeg"), &bare), Ok("mp3"));
        assert_eq!(
            audio_extension(Some("audio/x-wav; charset=x"), &bare),
            Ok("wav")
        );
        assert_eq!(audio_extension(Some("audio/basic"), &wav), Ok("wav"));
        assert_eq!(audio_extension(Some("audio/basic"), &bare), Ok("audio"));
        assert_eq!(audio_extension(Some("application/ogg"), &bare), Ok("ogg"));
        assert_eq!(
            audio_extension(Some("application/octet-stream"), &wav),
            Ok("wav")
        );
        assert_eq!(audio_extension(None, &wav), Ok("wav"));
        assert!(audio_extension(Some("application/octet-stream"), &bare).is_err());
        assert!(audio_extension(None, &bare).is_err());
        assert_eq!(
            audio_extension(Some("text/html; charset=utf-8"), &wav),
            Err("text/html".to_string())
        );
    }

    #[test]
    fn failures_map_to_mrcp_causes_and_sip_statuses() {
        let cases = [
            (FetchError::Status { status: 404 }, "404", 404),
            (FetchError::Status { status: 503 }, "503", 404),
            (FetchError::Timeout(Duration::from_secs(1)), "timeout", 408),
            (FetchError::TooLarge { limit_mib: 50 }, "too-large", 404),
            (
                FetchError::ContentType("text/html".into()),
                "unsupported-content-type",
                415,
            ),
            (
                FetchError::HostNotAllowed { host: "h".into() },
                "host-not-allowed",
                403,
            ),
            (
                FetchError::Undecodable("x".into()),
                "unsupported-audio",
                415,
            ),
        ];
        for (e, cause, sip) in cases {
            assert_eq!(e.failed_uri_cause(), cause, "{e}");
            assert_eq!(e.sip_status().0, sip, "{e}");
        }
        assert!(
            FetchError::Timeout(Duration::from_millis(1500))
                .to_string()
                .contains("1500 ms")
        );
    }

    #[test]
    fn http_uris_are_recognised_in_any_case() {
        assert!(is_http_uri("http://a/b.wav"));
        assert!(is_http_uri("HTTPS://a/b.wav"));
        assert!(!is_http_uri("file:///a.wav"));
        assert!(!is_http_uri("httpx://a"));
        assert!(!is_http_uri("a.wav"));
    }

    #[test]
    fn disk_keys_are_stable_and_distinct() {
        assert_eq!(disk_key(URI), disk_key(URI));
        assert_ne!(disk_key(URI), disk_key("http://audio.example/b.wav"));
        assert_eq!(disk_key(URI).len(), 16);
    }

    #[test]
    fn the_memory_cache_stays_within_its_bound() {
        let clip = |n: usize| Arc::new(Clip::from_samples_8k(&vec![0.0; n]));
        let one = clip(8000).memory_bytes();
        let mut m = MemoryCache {
            entries: LruCache::unbounded(),
            used: 0,
            max: 2 * one + one / 2,
        };
        let meta = Arc::new(meta_from(URI, &[], at(0)));
        m.insert("a", meta.clone(), clip(8000));
        m.insert("b", meta.clone(), clip(8000));
        assert!(m.entries.get("a").is_some()); // a is now the most recent
        m.insert("c", meta.clone(), clip(8000));
        assert!(m.entries.contains("a") && m.entries.contains("c") && !m.entries.contains("b"));
        assert!(m.used <= m.max);
        m.insert("huge", meta, clip(80_000));
        assert!(
            !m.entries.contains("huge"),
            "a clip over the bound is not kept"
        );
    }
}
