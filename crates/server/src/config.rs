//! The configuration model: one TOML file whose sections follow the web interface.
//!
//! The key names are a contract with operators and scripts: add keys freely, rename none.
//! Unknown keys are an error naming the key and its line (`serde(deny_unknown_fields)`
//! plus the TOML parser's spans).

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// Everything `imss serve` needs to run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Identity and role of this server.
    pub general: General,
    /// SIP listener (UDP and TCP).
    pub sip: Sip,
    /// MRCPv2 control channel listener.
    pub mrcp: Mrcp,
    /// RTP media ports and packetisation.
    pub rtp: Rtp,
    /// Admin web interface, JSON API and health check.
    pub http: Http,
    /// Audio files served by `play=` and SPEAK.
    pub audio: Audio,
    /// Audio fetched over HTTP(S) for requests (SPEAK URIs, RFC 4240 `play=`).
    pub http_audio: HttpAudio,
    /// Named live sources (music on hold).
    pub external_audio: Vec<ExternalAudio>,
    /// Voicemail mail server settings.
    pub mail: Mail,
    /// Text-to-speech engine.
    pub tts: Tts,
    /// Cluster bus; absent means the server runs alone.
    pub notifier: Option<Notifier>,
}

/// `[general]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct General {
    /// Server name shown in SIP `Server:` headers, the UI and the cluster.
    pub name: String,
    /// Location this server belongs to (selection rules match on it).
    pub location: String,
    /// Functions this server offers: `streaming`, `voicemail`, `tts`.
    pub functions: Vec<String>,
    /// Data directory; `audio/`, `mail/` and `cache/` live below it by default.
    pub data_dir: PathBuf,
    /// What the log shows: a level (`error`, `warn`, `info`, `debug`, `trace`) or
    /// comma-separated `target=level` directives after an optional level, e.g.
    /// `info,imss_server=debug`. Changes apply at once. `RUST_LOG`, when set, wins at start.
    pub log_level: String,
}

impl Default for General {
    fn default() -> Self {
        Self {
            name: "imss-1".into(),
            location: "default".into(),
            functions: vec!["streaming".into(), "voicemail".into(), "tts".into()],
            data_dir: PathBuf::from("imss-data"),
            log_level: "info".into(),
        }
    }
}

/// `[sip]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Sip {
    /// Address to listen on (UDP and TCP).
    pub bind: IpAddr,
    /// Port (UDP and TCP); 0 picks a free port (tests).
    pub port: u16,
    /// Address written into Contact headers; default: the bind address, or 127.0.0.1
    /// when binding the unspecified address.
    pub advertise: Option<IpAddr>,
    /// Most calls at once; further INVITEs get 503 with Retry-After.
    pub max_calls: usize,
    /// RFC 4028 session timers: the longest session interval granted, in seconds. A
    /// Session-Expires above it is lowered to it (never below the request's Min-SE). The
    /// server imposes no timer on a call whose INVITE asks for none.
    pub session_expires_s: u32,
    /// RFC 4028 session timers: the shortest session interval accepted, in seconds; a
    /// timer-aware caller asking for less gets 422 with this Min-SE. RFC 4028 puts the floor
    /// at 90; lower values are for tests.
    pub min_se_s: u32,
    /// Networks whose SIP and MRCPv2 clients are served, e.g. `["10.0.0.0/8",
    /// "192.0.2.7/32"]`; empty (the default) serves everyone. Requests from elsewhere get
    /// `403 Forbidden`; their MRCPv2 connections are closed. Changes apply at once.
    pub trusted_networks: Vec<ipnet::IpNet>,
}

impl Default for Sip {
    fn default() -> Self {
        Self {
            bind: IpAddr::from([0, 0, 0, 0]),
            port: 6060,
            advertise: None,
            max_calls: 8000,
            session_expires_s: 1800,
            min_se_s: 90,
            trusted_networks: Vec::new(),
        }
    }
}

/// `[mrcp]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Mrcp {
    /// Address to listen on.
    pub bind: IpAddr,
    /// TCP port of the MRCPv2 control channel.
    pub port: u16,
    /// Seconds a session may wait for its first request on the control channel before the
    /// server hangs up (a client that never connects would otherwise hold the call).
    pub connect_timeout_s: u64,
    /// TCP port of the TLS control channel listener (`TCP/TLS/MRCPv2` offers are granted
    /// there); 0 picks a free port (tests). Absent: no TLS, such offers are refused.
    pub tls_port: Option<u16>,
    /// PEM file with the server certificate chain, leaf first (needed with `tls_port`).
    pub tls_cert: Option<PathBuf>,
    /// PEM file with the certificate's private key (needed with `tls_port`).
    pub tls_key: Option<PathBuf>,
}

impl Default for Mrcp {
    fn default() -> Self {
        Self {
            bind: IpAddr::from([0, 0, 0, 0]),
            port: 8104,
            connect_timeout_s: 30,
            tls_port: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// `[rtp]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Rtp {
    /// Address RTP sockets bind to.
    pub bind: IpAddr,
    /// Address written into SDP; default: the bind address (127.0.0.1 for 0.0.0.0).
    pub advertise: Option<IpAddr>,
    /// Lowest RTP port (even); RTCP uses the next odd port.
    pub port_min: u16,
    /// Highest port of the range.
    pub port_max: u16,
    /// Packet time in milliseconds when the offer has no `a=ptime` (10–60).
    pub ptime_ms: u32,
    /// Pacing threads; 0 means one per core.
    pub pacing_threads: usize,
    /// Run the pacing threads in the SCHED_FIFO real-time class at this priority (1–99) so
    /// other work on the machine cannot delay a packet. Needs CAP_SYS_NICE; refused, the
    /// threads keep normal scheduling and one warning is logged. Absent: normal scheduling.
    pub realtime_priority: Option<u8>,
    /// Pin pacing thread i to CPU i.
    pub pin_cpus: bool,
}

impl Default for Rtp {
    fn default() -> Self {
        Self {
            bind: IpAddr::from([0, 0, 0, 0]),
            advertise: None,
            port_min: 16384,
            port_max: 32767,
            ptime_ms: 20,
            pacing_threads: 0,
            realtime_priority: None,
            pin_cpus: false,
        }
    }
}

/// `[http]`
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Address to listen on.
    pub bind: IpAddr,
    /// Port of the web interface, API, /healthz and /metrics.
    pub port: u16,
    /// People who may log in to the web interface (`imss admin set-password` adds them).
    /// With no `admin` among them the server makes a one-time admin at start.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub admins: Vec<WebAccount>,
    /// Bearer tokens for scripts (`imss admin create-token` adds them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api_tokens: Vec<ApiToken>,
    /// How long a web interface login lasts, in seconds (60…2,592,000); default 8 hours.
    pub session_ttl_s: u64,
    /// Who may read `GET /metrics`: `open` (anyone who reaches the port; the default) or
    /// `token` (requests with `Authorization: Bearer <metrics_token>`).
    pub metrics: MetricsAccess,
    /// The bearer token of `metrics = "token"`: at least 16 printable characters, no
    /// spaces. Never echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_token: Option<String>,
    /// A second listener (`address:port`, e.g. `127.0.0.1:9190`) that serves `/metrics` only,
    /// with the same access rule; absent, `/metrics` is on the main HTTP port only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_bind: Option<SocketAddr>,
    /// PEM certificate chain (leaf first) for HTTPS on `port`; with `tls_key`. A changed
    /// file is picked up without a restart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

/// `[http] metrics`: who may read `/metrics`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MetricsAccess {
    /// No authentication.
    #[default]
    Open,
    /// `Authorization: Bearer <metrics_token>` required.
    Token,
}

impl Http {
    /// Checks the `/metrics` settings.
    fn validate_metrics(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: format!("http.{key}"),
            message,
        };
        match (&self.metrics, &self.metrics_token) {
            (MetricsAccess::Token, None) => {
                return Err(invalid(
                    "metrics_token",
                    "metrics = \"token\" needs a metrics_token".into(),
                ));
            }
            (MetricsAccess::Open, Some(_)) => {
                return Err(invalid(
                    "metrics_token",
                    "is set, but metrics = \"open\" would not ask for it: set metrics = \"token\""
                        .into(),
                ));
            }
            (MetricsAccess::Token, Some(t))
                if t.chars().count() < 16
                    || t.chars().any(|c| c.is_whitespace() || c.is_control()) =>
            {
                // The value itself is a secret: not echoed.
                return Err(invalid(
                    "metrics_token",
                    "must be at least 16 printable characters without spaces".into(),
                ));
            }
            _ => {}
        }
        if let Some(b) = self.metrics_bind
            && b.port() != 0
            && b.port() == self.port
            && (b.ip() == self.bind || b.ip().is_unspecified() || self.bind.is_unspecified())
        {
            return Err(invalid(
                "metrics_bind",
                format!(
                    "{b} is the web interface's own address (http.port {})",
                    self.port
                ),
            ));
        }
        Ok(())
    }
}

impl Default for Http {
    fn default() -> Self {
        Self {
            bind: IpAddr::from([0, 0, 0, 0]),
            port: 8190,
            admins: Vec::new(),
            api_tokens: Vec::new(),
            session_ttl_s: Http::DEFAULT_SESSION_TTL_S,
            metrics: MetricsAccess::Open,
            metrics_token: None,
            metrics_bind: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl Http {
    /// `session_ttl_s` when not given: 8 hours.
    pub const DEFAULT_SESSION_TTL_S: u64 = 8 * 3600;

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            key: format!("http.{key}"),
            message,
        };
        if !(60..=30 * 24 * 3600).contains(&self.session_ttl_s) {
            return Err(invalid(
                "session_ttl_s".into(),
                format!("{} s is outside 60…2,592,000 s", self.session_ttl_s),
            ));
        }
        let mut users = std::collections::HashSet::new();
        for (i, a) in self.admins.iter().enumerate() {
            let key = |field: &str| format!("admins[{i}].{field}");
            if a.user.trim().is_empty() || a.user.len() > 64 || a.user.chars().any(char::is_control)
            {
                return Err(invalid(
                    key("user"),
                    format!("{:?}: 1 to 64 printable characters", a.user),
                ));
            }
            if !users.insert(a.user.as_str()) {
                return Err(invalid(
                    key("user"),
                    format!("{:?} is listed twice", a.user),
                ));
            }
            match argon2::PasswordHash::new(&a.password_hash) {
                Ok(h) if h.algorithm.as_str() == "argon2id" && h.hash.is_some() => {}
                // The value itself is never echoed: it is a secret.
                _ => {
                    return Err(invalid(
                        key("password_hash"),
                        format!(
                            "the hash of {:?} is not an argon2id PHC string ($argon2id$v=19$…); \
                             set it with `imss admin set-password`",
                            a.user
                        ),
                    ));
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, t) in self.api_tokens.iter().enumerate() {
            let key = |field: &str| format!("api_tokens[{i}].{field}");
            if t.name.trim().is_empty() || t.name.len() > 64 || t.name.chars().any(char::is_control)
            {
                return Err(invalid(
                    key("name"),
                    format!("{:?}: 1 to 64 printable characters", t.name),
                ));
            }
            if !names.insert(t.name.as_str()) {
                return Err(invalid(
                    key("name"),
                    format!("{:?} is listed twice", t.name),
                ));
            }
            if t.hash.len() != 64 || !t.hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(
                    key("hash"),
                    format!(
                        "the hash of token {:?} is not 64 hex digits (a SHA-256); \
                         make tokens with `imss admin create-token`",
                        t.name
                    ),
                ));
            }
            if !is_rfc3339(&t.created) {
                return Err(invalid(
                    key("created"),
                    format!(
                        "{:?} is not an RFC 3339 time (2026-01-31T12:00:00Z)",
                        t.created
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Http {
    /// Accounts and tokens by name and role; hashes and tokens are never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("bind", &self.bind)
            .field("port", &self.port)
            .field("admins", &self.admins)
            .field("api_tokens", &self.api_tokens)
            .field("session_ttl_s", &self.session_ttl_s)
            .field("metrics", &self.metrics)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<set>"),
            )
            .field("metrics_bind", &self.metrics_bind)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .finish()
    }
}

/// `[[http.admins]]`: one person who may log in to the web interface.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebAccount {
    /// Login name.
    pub user: String,
    /// argon2id hash of the password as a PHC string (`$argon2id$v=19$…`). Never echoed.
    pub password_hash: String,
    /// `admin` (may change settings) or `viewer` (may look).
    #[serde(default = "WebAccount::default_role")]
    pub role: imss_web::auth::Role,
    /// The next login must set a new password before anything else.
    #[serde(default)]
    pub must_change_password: bool,
}

impl WebAccount {
    fn default_role() -> imss_web::auth::Role {
        imss_web::auth::Role::Admin
    }
}

impl std::fmt::Debug for WebAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebAccount")
            .field("user", &self.user)
            .field("password_hash", &"<set>")
            .field("role", &self.role)
            .field("must_change_password", &self.must_change_password)
            .finish()
    }
}

/// `[[http.api_tokens]]`: a bearer token for scripts; only its SHA-256 is kept.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// Name to tell tokens apart (and to revoke one by deleting its entry).
    pub name: String,
    /// SHA-256 of the token, 64 hex digits. Never echoed.
    pub hash: String,
    /// `admin` or `viewer`.
    #[serde(default = "WebAccount::default_role")]
    pub role: imss_web::auth::Role,
    /// When the token was made (RFC 3339).
    pub created: String,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("hash", &"<set>")
            .field("role", &self.role)
            .field("created", &self.created)
            .finish()
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, with fields in range.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
            && s[r].parse::<u32>().is_ok()
    };
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(u32::MAX);
    if b.len() < 20
        || !(digits(0..4) && digits(5..7) && digits(8..10))
        || !(digits(11..13) && digits(14..16) && digits(17..19))
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return false;
    }
    if !(1..=12).contains(&num(5..7))
        || !(1..=31).contains(&num(8..10))
        || num(11..13) > 23
        || num(14..16) > 59
        || num(17..19) > 60
    {
        return false;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    match rest.as_bytes() {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
    }
}

/// `[audio]`
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Audio {
    /// Root folder of playable files; default `<data_dir>/audio`.
    pub root: Option<PathBuf>,
    /// Decoded-clip cache bound, in MiB.
    pub cache_mib: Option<usize>,
}

/// `[http_audio]`: `http://` and `https://` URIs in SPEAK bodies and RFC 4240 `play=`,
/// fetched, decoded once and cached on disk and in memory (see `docs/HTTP-AUDIO.md`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpAudio {
    /// Hosts audio may be fetched from: a name or IP address (`audio.example.com`,
    /// `192.0.2.7`, `::1`), `*.example.com` for any name below `example.com`, or `*` for any
    /// host (the default). The port does not matter. Checked again at every redirect. An
    /// empty list turns HTTP audio off.
    pub allow_hosts: Vec<String>,
    /// How long one fetch may take, connection, redirects and body together, in
    /// milliseconds, when the request does not say (MRCP `Fetch-Timeout` does).
    pub fetch_timeout_ms: u64,
    /// Largest audio file fetched, in MiB: a longer `Content-Length`, or a body that grows
    /// past it, is refused at once without reading the rest.
    pub max_file_mib: u64,
    /// Bound of the fetched files kept on disk, in MiB; the least recently used go first.
    pub disk_cache_mib: u64,
    /// Bound of the decoded clips of fetched files kept in memory, in MiB.
    pub memory_cache_mib: u64,
    /// Most redirects followed by one fetch.
    pub max_redirects: u32,
    /// Folder of the disk cache; default `<data_dir>/cache/http`.
    pub cache_dir: Option<PathBuf>,
    /// PEM file of CA certificates to trust for `https://` instead of the built-in Mozilla
    /// roots (servers with a private CA). Certificates are always verified.
    pub ca_file: Option<PathBuf>,
    /// Proxy for every fetch (`http://host:port`, `socks5://host:port`). Absent: direct
    /// connections; the environment's proxy variables are not read.
    pub proxy: Option<String>,
}

impl Default for HttpAudio {
    fn default() -> Self {
        Self {
            allow_hosts: vec!["*".into()],
            fetch_timeout_ms: 10_000,
            max_file_mib: 50,
            disk_cache_mib: 1024,
            memory_cache_mib: 128,
            max_redirects: 5,
            cache_dir: None,
            ca_file: None,
            proxy: None,
        }
    }
}

/// What feeds a named live source.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// An internet stream (Icecast/Shoutcast, HTTP).
    Http,
    /// Files played in a loop.
    Playlist,
    /// Output of a command (e.g. a line-in capture).
    Command,
    /// A sine tone.
    Tone,
    /// Comfort silence.
    Silence,
}

/// `[[external_audio]]`: one named live source.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExternalAudio {
    /// Name callers and SPEAK requests use (`sip:NAME@host`, `source:NAME`).
    pub name: String,
    /// What feeds the source.
    pub kind: SourceKind,
    /// Stream URL (`kind = "http"`).
    #[serde(default)]
    pub url: Option<String>,
    /// Folder of files (`kind = "playlist"`), relative to the audio root or absolute.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Explicit file list (`kind = "playlist"`), relative to the audio root or absolute.
    #[serde(default)]
    pub files: Option<Vec<PathBuf>>,
    /// Shuffle the playlist on every round.
    #[serde(default)]
    pub shuffle: bool,
    /// Tone frequency in Hz (`kind = "tone"`).
    #[serde(default)]
    pub frequency_hz: Option<f64>,
    /// Tone level in dBFS (`kind = "tone"`), default −12.
    #[serde(default)]
    pub level_dbfs: Option<f64>,
    /// Command line (`kind = "command"`).
    #[serde(default)]
    pub command: Option<String>,
    /// What listeners hear while the source is down: `tone`, `silence` or a source name.
    #[serde(default)]
    pub fallback: Option<String>,
    /// Fixed gain applied to the source, in dB (−40…+40; default 0). For a source that is
    /// not normalised: with `normalize = true` the level is `target_lufs`'s to set.
    #[serde(default)]
    pub gain_db: Option<f64>,
    /// Bring the source to `target_lufs` (EBU R128 loudness, measured once in the source's
    /// producer), with a gain that adapts over a few seconds and holds through pauses.
    #[serde(default)]
    pub normalize: bool,
    /// Loudness `normalize` aims at, in LUFS (−40…−6); default −21, about −15 dBm0 (the
    /// conventional mean level of a telephone signal). Needs `normalize = true`.
    #[serde(default)]
    pub target_lufs: Option<f64>,
    /// Filter the source to the telephone band, 300–3,400 Hz, so that bass a phone cannot
    /// reproduce takes up no level.
    #[serde(default)]
    pub band_pass: bool,
    /// Ceiling of the source's peak limiter, in dBFS (−20…0); default −1. The limiter runs on
    /// every processed source (with `gain_db`, `normalize` or `band_pass`), and on any other
    /// when this is set.
    #[serde(default)]
    pub limiter_ceiling_dbfs: Option<f64>,
    /// A file each new listener hears before joining the source, e.g. "thank you for
    /// calling, please hold": a path relative to the audio root, or `file:///…` inside it.
    /// Processed like the source (normalised with one static gain). A missing file is a
    /// warning at start-up, and callers then join the source at once.
    #[serde(default)]
    pub announcement: Option<String>,
    /// A file that replaces the source's audio every `chime_every_s`, heard by every
    /// listener at the same moment ("your call is important to us"); a path as for
    /// `announcement`, and processed the same way.
    #[serde(default)]
    pub chime: Option<String>,
    /// Seconds from the start of one chime to the next (1…3600); default 60. Needs `chime`.
    #[serde(default)]
    pub chime_every_s: Option<u32>,
    // Upstream keys of `kind = "http"` and `kind = "command"` (see docs/SOURCES.md).
    /// Audio buffered before an `http` or `command` source is heard, at the start and after
    /// every interruption, so that a recovering upstream does not stutter; milliseconds
    /// (0…10,000), default 1,000.
    #[serde(default)]
    pub prebuffer_ms: Option<u32>,
    /// An `http` or `command` source that delivers nothing for this long is stalled:
    /// listeners get the fallback by then, and the connection is dropped (the program
    /// killed) and made again; milliseconds (500…60,000), default 2,000.
    #[serde(default)]
    pub stall_ms: Option<u32>,
    /// First wait before reconnecting an `http` source or restarting a `command`, in
    /// milliseconds (50…60,000); default 500. Each failed attempt doubles it, up to
    /// `reconnect_max_ms`; every wait is drawn at random from its upper half (jitter), and
    /// a connection that delivered audio for 10 s starts again from this.
    #[serde(default)]
    pub reconnect_min_ms: Option<u32>,
    /// Longest wait between reconnections, in milliseconds (at least `reconnect_min_ms`, at
    /// most 3,600,000); default 30,000.
    #[serde(default)]
    pub reconnect_max_ms: Option<u32>,
    /// `kind = "command"`: what the program writes to its stdout: `"s16le"` (raw signed
    /// 16-bit little-endian PCM, the default) or `"wav"` (a WAV header, then PCM).
    #[serde(default)]
    pub format: Option<CommandFormat>,
    /// `kind = "command"` with `format = "s16le"`: the sample rate in Hz (4,000…192,000);
    /// default 8,000.
    #[serde(default)]
    pub sample_rate: Option<u32>,
    /// `kind = "command"` with `format = "s16le"`: interleaved channels, mixed to mono
    /// (1…8); default 1.
    #[serde(default)]
    pub channels: Option<u16>,
    /// Seconds a source keeps running after its last listener left (0…86,400); default 60.
    /// A source starts when its first listener arrives: an `http` source connects, a
    /// `command` source starts its program, a playlist goes on where it stopped. Ignored
    /// with `keep_warm`.
    #[serde(default)]
    pub idle_stop_s: Option<u32>,
    /// Run the source from start-up on, listeners or not: its first caller hears it at
    /// once, without waiting for a connection and a pre-buffer.
    #[serde(default)]
    pub keep_warm: bool,
}

/// What a `kind = "command"` source's program writes to its stdout.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CommandFormat {
    /// Raw signed 16-bit little-endian PCM at `sample_rate` with `channels`.
    S16le,
    /// A WAV header (its length field ignored), then its PCM.
    Wav,
}

impl ExternalAudio {
    /// A source called `name` of `kind` with every optional key left out.
    pub fn new(name: &str, kind: SourceKind) -> ExternalAudio {
        ExternalAudio {
            name: name.into(),
            kind,
            url: None,
            path: None,
            files: None,
            shuffle: false,
            frequency_hz: None,
            level_dbfs: None,
            command: None,
            fallback: None,
            gain_db: None,
            normalize: false,
            target_lufs: None,
            band_pass: false,
            limiter_ceiling_dbfs: None,
            announcement: None,
            chime: None,
            chime_every_s: None,
            prebuffer_ms: None,
            stall_ms: None,
            reconnect_min_ms: None,
            reconnect_max_ms: None,
            format: None,
            sample_rate: None,
            channels: None,
            idle_stop_s: None,
            keep_warm: false,
        }
    }

    /// `idle_stop_s` when not given.
    pub const DEFAULT_IDLE_STOP_S: u32 = 60;

    /// How long the source runs without listeners before it stops; `None` when it is kept
    /// warm.
    pub fn idle_stop(&self) -> Option<std::time::Duration> {
        (!self.keep_warm).then(|| {
            std::time::Duration::from_secs(u64::from(
                self.idle_stop_s.unwrap_or(Self::DEFAULT_IDLE_STOP_S),
            ))
        })
    }

    /// `prebuffer_ms` when not given.
    pub const DEFAULT_PREBUFFER_MS: u32 = 1000;
    /// `stall_ms` when not given.
    pub const DEFAULT_STALL_MS: u32 = 2000;
    /// `reconnect_min_ms` when not given.
    pub const DEFAULT_RECONNECT_MIN_MS: u32 = 500;
    /// `reconnect_max_ms` when not given.
    pub const DEFAULT_RECONNECT_MAX_MS: u32 = 30_000;

    /// The keys of `http` and `command` sources: ranges, the URL and the command line
    /// usable, and no upstream key on a source of another kind.
    fn validate_upstream(&self, i: usize) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            key: format!("external_audio[{i}].{field}"),
            message,
        };
        let upstream = matches!(self.kind, SourceKind::Http | SourceKind::Command);
        for (field, value, min, max) in [
            ("prebuffer_ms", self.prebuffer_ms, 0, 10_000),
            ("stall_ms", self.stall_ms, 500, 60_000),
            ("reconnect_min_ms", self.reconnect_min_ms, 50, 60_000),
            ("reconnect_max_ms", self.reconnect_max_ms, 50, 3_600_000),
        ] {
            let Some(v) = value else { continue };
            if !upstream {
                return Err(invalid(
                    field,
                    "only applies to kind = \"http\" and kind = \"command\"".into(),
                ));
            }
            if !(min..=max).contains(&v) {
                return Err(invalid(field, format!("{v} ms is outside {min}…{max} ms")));
            }
        }
        let min = self
            .reconnect_min_ms
            .unwrap_or(Self::DEFAULT_RECONNECT_MIN_MS);
        let max = self
            .reconnect_max_ms
            .unwrap_or(Self::DEFAULT_RECONNECT_MAX_MS);
        if max < min {
            let field = if self.reconnect_max_ms.is_some() {
                "reconnect_max_ms"
            } else {
                "reconnect_min_ms"
            };
            return Err(invalid(
                field,
                format!("reconnect_max_ms ({max} ms) is below reconnect_min_ms ({min} ms)"),
            ));
        }
        let command = self.kind == SourceKind::Command;
        for (field, given) in [
            ("format", self.format.is_some()),
            ("sample_rate", self.sample_rate.is_some()),
            ("channels", self.channels.is_some()),
        ] {
            if given && !command {
                return Err(invalid(field, "only applies to kind = \"command\"".into()));
            }
        }
        if self.format == Some(CommandFormat::Wav) {
            for (field, given) in [
                ("sample_rate", self.sample_rate.is_some()),
                ("channels", self.channels.is_some()),
            ] {
                if given {
                    return Err(invalid(
                        field,
                        "comes from the WAV header with format = \"wav\"; remove it".into(),
                    ));
                }
            }
        }
        if let Some(rate) = self.sample_rate
            && !(4000..=192_000).contains(&rate)
        {
            return Err(invalid(
                "sample_rate",
                format!("{rate} Hz is outside 4,000…192,000 Hz"),
            ));
        }
        if let Some(channels) = self.channels
            && !(1..=8).contains(&channels)
        {
            return Err(invalid("channels", format!("{channels} is outside 1…8")));
        }
        if self.kind == SourceKind::Http
            && let Some(url) = &self.url
        {
            match url::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                Ok(_) => {
                    return Err(invalid(
                        "url",
                        format!("{url:?} is not an http:// or https:// URL"),
                    ));
                }
                Err(e) => return Err(invalid("url", format!("{url:?}: {e}"))),
            }
        }
        if command && let Some(line) = &self.command {
            match shlex::split(line) {
                Some(argv) if !argv.is_empty() => {}
                Some(_) => return Err(invalid("command", "is empty".into())),
                None => {
                    return Err(invalid(
                        "command",
                        format!("{line:?} has an unclosed quote or a trailing backslash"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Seconds between chimes when `chime_every_s` is not given.
    pub const DEFAULT_CHIME_EVERY_S: u32 = 60;

    /// The loudness and announcement keys: ranges, and keys that need one another.
    fn validate_loudness(&self, i: usize) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            key: format!("external_audio[{i}].{field}"),
            message,
        };
        for (field, value, min, max, unit) in [
            ("gain_db", self.gain_db, -40.0, 40.0, "dB"),
            ("target_lufs", self.target_lufs, -40.0, -6.0, "LUFS"),
            (
                "limiter_ceiling_dbfs",
                self.limiter_ceiling_dbfs,
                -20.0,
                0.0,
                "dBFS",
            ),
        ] {
            if let Some(v) = value
                && !(min..=max).contains(&v)
            {
                return Err(invalid(
                    field,
                    format!("{v} {unit} is outside {min}…{max} {unit}"),
                ));
            }
        }
        if self.normalize && self.gain_db.is_some() {
            return Err(invalid(
                "gain_db",
                "a normalised source's level is set by target_lufs; remove gain_db".into(),
            ));
        }
        if self.target_lufs.is_some() && !self.normalize {
            return Err(invalid(
                "target_lufs",
                "has no effect without normalize = true".into(),
            ));
        }
        for (field, file) in [("announcement", &self.announcement), ("chime", &self.chime)] {
            if let Some(file) = file
                && (file.trim().is_empty()
                    || (file.contains("://") && !file.starts_with("file://"))
                    || file.starts_with("source:"))
            {
                return Err(invalid(
                    field,
                    format!("{file:?} must name a file under the audio root"),
                ));
            }
        }
        if let Some(s) = self.idle_stop_s
            && s > 86_400
        {
            return Err(invalid(
                "idle_stop_s",
                format!("{s} s is outside 0…86400 s"),
            ));
        }
        match (self.chime_every_s, &self.chime) {
            (Some(_), None) => Err(invalid(
                "chime_every_s",
                "has no effect without chime = \"FILE\"".into(),
            )),
            (Some(s), Some(_)) if !(1..=3600).contains(&s) => Err(invalid(
                "chime_every_s",
                format!("{s} s is outside 1…3600 s"),
            )),
            _ => Ok(()),
        }
    }
}

/// `[mail]`: the IMAP server voicemail is fetched from, and the file-based mail store.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Mail {
    /// IMAP server host; absent: `imap:` URIs fail with "no IMAP server configured".
    pub imap_host: Option<String>,
    /// IMAP port; default 993 with `imap_tls = "implicit"`, else 143.
    pub imap_port: Option<u16>,
    /// `implicit` (IMAPS, the default), `starttls`, or `none` (plain text: only when written
    /// here explicitly).
    pub imap_tls: Option<String>,
    /// Check the server's certificate chain and name (default true). For a private CA, set
    /// `imap_ca_file` rather than turning this off.
    pub imap_tls_verify: Option<bool>,
    /// PEM file of the CA(s) to trust for the IMAP server instead of the public roots.
    pub imap_ca_file: Option<PathBuf>,
    /// `login` (IMAP LOGIN, the default) or `plain` (AUTHENTICATE PLAIN).
    pub imap_auth: Option<String>,
    /// The service account: used for URIs that name no user.
    pub imap_user: Option<String>,
    /// The service account's password. Never echoed by the UI, API or logs.
    pub imap_password: Option<String>,
    /// Per-mailbox users: `imap://USER@host/…` logs in as USER with this password. Never
    /// echoed.
    pub imap_users: std::collections::BTreeMap<String, String>,
    /// Bound on connecting (name resolution, TCP, TLS handshake, each), in milliseconds
    /// (100…120,000); default 5,000.
    pub connect_timeout_ms: Option<u32>,
    /// Bound on any IMAP read or write that makes no progress, in milliseconds
    /// (100…300,000); default 10,000.
    pub read_timeout_ms: Option<u32>,
    /// Most IMAP connections open at once, in use or idle for reuse (1…256); default 8.
    pub pool_size: Option<u32>,
    /// Largest message fetched, in MiB (1…1,024); default 20. A larger one fails before
    /// its body is downloaded.
    pub max_message_mib: Option<u32>,
    /// Decoded voicemail kept in memory for replays ("press 1 to repeat"), in MiB
    /// (0…4,096); default 64.
    pub cache_mib: Option<u32>,
    /// Root of the file-based mail store (`fbmc:MAILBOX/MESSAGE`); default
    /// `<data_dir>/mail`.
    pub fbmc_root: Option<PathBuf>,
    /// SSML read before a message when a SPEAK of a message URI carries
    /// `Vendor-Specific-Parameters: read-headers=true`; `{from}`, `{from_name}`,
    /// `{from_address}`, `{caller_id}`, `{date}`, `{time}`, `{subject}`, `{duration}` and
    /// `{message}` are filled in (escaped for XML). Default: [`Mail::DEFAULT_HEADERS_SSML`].
    pub read_headers_ssml: Option<String>,
}

impl Mail {
    /// `read_headers_ssml` when not given.
    pub const DEFAULT_HEADERS_SSML: &str = "<speak>Message from {from}, received \
        <say-as interpret-as=\"date\" format=\"ymd\">{date}</say-as> at \
        <say-as interpret-as=\"time\">{time}</say-as>.<break time=\"300ms\"/></speak>";
    /// `connect_timeout_ms` when not given.
    pub const DEFAULT_CONNECT_TIMEOUT_MS: u32 = 5_000;
    /// `read_timeout_ms` when not given.
    pub const DEFAULT_READ_TIMEOUT_MS: u32 = 10_000;
    /// `pool_size` when not given.
    pub const DEFAULT_POOL_SIZE: u32 = 8;
    /// `max_message_mib` when not given.
    pub const DEFAULT_MAX_MESSAGE_MIB: u32 = 20;
    /// `cache_mib` when not given.
    pub const DEFAULT_CACHE_MIB: u32 = 64;

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: format!("mail.{key}"),
            message,
        };
        if let Some(tls) = &self.imap_tls
            && !["implicit", "starttls", "none"].contains(&tls.as_str())
        {
            return Err(invalid(
                "imap_tls",
                format!("{tls:?}: expected implicit, starttls or none"),
            ));
        }
        if let Some(auth) = &self.imap_auth
            && !["login", "plain"].contains(&auth.as_str())
        {
            return Err(invalid(
                "imap_auth",
                format!("{auth:?}: expected login or plain"),
            ));
        }
        if let Some(host) = &self.imap_host
            && (host.trim().is_empty() || host.contains(['/', '@', ' ']))
        {
            return Err(invalid("imap_host", format!("{host:?} is not a host name")));
        }
        let ranges: [(&str, Option<u32>, u32, u32, &str); 6] = [
            (
                "connect_timeout_ms",
                self.connect_timeout_ms,
                100,
                120_000,
                "ms",
            ),
            ("read_timeout_ms", self.read_timeout_ms, 100, 300_000, "ms"),
            ("pool_size", self.pool_size, 1, 256, "connections"),
            ("max_message_mib", self.max_message_mib, 1, 1024, "MiB"),
            ("cache_mib", self.cache_mib, 0, 4096, "MiB"),
            ("imap_port", self.imap_port.map(u32::from), 1, 65_535, ""),
        ];
        for (key, value, min, max, unit) in ranges {
            if let Some(v) = value
                && !(min..=max).contains(&v)
            {
                return Err(invalid(key, format!("{v} {unit} is outside {min}…{max}")));
            }
        }
        if self.imap_host.is_some() && self.imap_user.is_some() != self.imap_password.is_some() {
            return Err(invalid(
                "imap_password",
                "imap_user and imap_password go together".into(),
            ));
        }
        if let Some(ca) = &self.imap_ca_file
            && let Err(e) = std::fs::metadata(ca)
        {
            return Err(invalid("imap_ca_file", format!("{}: {e}", ca.display())));
        }
        Ok(())
    }
}

impl std::fmt::Debug for Mail {
    /// Passwords are shown as set or not, never as written.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |p: &Option<String>| p.as_ref().map(|_| "<set>");
        f.debug_struct("Mail")
            .field("imap_host", &self.imap_host)
            .field("imap_port", &self.imap_port)
            .field("imap_tls", &self.imap_tls)
            .field("imap_tls_verify", &self.imap_tls_verify)
            .field("imap_ca_file", &self.imap_ca_file)
            .field("imap_auth", &self.imap_auth)
            .field("imap_user", &self.imap_user)
            .field("imap_password", &set(&self.imap_password))
            .field("imap_users", &self.imap_users.keys().collect::<Vec<_>>())
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("read_timeout_ms", &self.read_timeout_ms)
            .field("pool_size", &self.pool_size)
            .field("max_message_mib", &self.max_message_mib)
            .field("cache_mib", &self.cache_mib)
            .field("fbmc_root", &self.fbmc_root)
            .field("read_headers_ssml", &self.read_headers_ssml)
            .finish()
    }
}

/// `[tts]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Tts {
    /// Engine name: `espeak-ng` (or `espeak`), the program run for each utterance.
    pub engine: String,
    /// Default voice: an engine voice (`en-us`, `gmw/en-GB`) or a BCP 47 language tag; used
    /// when a SPEAK names neither a voice nor a language.
    pub voice: String,
    /// Speaking rate, words per minute (80–450); `Prosody-Rate` scales it.
    pub rate_wpm: u32,
    /// Base pitch, percent of the voice's own (10–200; 100 = unchanged); `Prosody-Pitch`
    /// scales it.
    pub pitch_percent: u16,
    /// Loudness, percent of the voice's own (0–200; 100 = unchanged); `Prosody-Volume`
    /// scales it.
    pub volume_percent: u16,
    /// Memory for synthesised clips kept for repeated prompts, MiB (0–4096; 0 keeps none).
    pub cache_mib: u32,
}

impl Default for Tts {
    fn default() -> Self {
        Self {
            engine: "espeak-ng".into(),
            voice: "en-us".into(),
            rate_wpm: 175,
            pitch_percent: 100,
            volume_percent: 100,
            cache_mib: 32,
        }
    }
}

impl Tts {
    /// Engines `engine` may name.
    pub const ENGINES: [&'static str; 2] = ["espeak-ng", "espeak"];

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: format!("tts.{key}"),
            message,
        };
        if !Self::ENGINES.contains(&self.engine.as_str()) {
            return Err(invalid(
                "engine",
                format!("{:?}: expected one of {:?}", self.engine, Self::ENGINES),
            ));
        }
        if self.voice.trim().is_empty() {
            return Err(invalid("voice", "must not be empty".into()));
        }
        if !(80..=450).contains(&self.rate_wpm) {
            return Err(invalid(
                "rate_wpm",
                format!("{} words per minute is outside 80–450", self.rate_wpm),
            ));
        }
        if !(10..=200).contains(&self.pitch_percent) {
            return Err(invalid(
                "pitch_percent",
                format!("{}% is outside 10–200%", self.pitch_percent),
            ));
        }
        if self.volume_percent > 200 {
            return Err(invalid(
                "volume_percent",
                format!("{}% is above 200%", self.volume_percent),
            ));
        }
        if self.cache_mib > 4096 {
            return Err(invalid(
                "cache_mib",
                format!("{} MiB is above 4096 MiB", self.cache_mib),
            ));
        }
        Ok(())
    }
}

/// `[notifier]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Notifier {
    /// NATS URL of the cluster bus.
    pub url: String,
}

/// A configuration that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key or wrong type (the message names line and key).
    #[error("{path}: {message}")]
    Parse {
        /// File path.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("{key}: {message}")]
    Invalid {
        /// Dotted key, e.g. `rtp.port_min` or `external_audio[1].url`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// The same error with the line of its key in `text` (the TOML it was parsed from), when
    /// the key is written there, or else the line of its table.
    fn at_line_in(self, text: &str) -> ConfigError {
        match self {
            ConfigError::Invalid { key, message } => match line_of_key(text, &key) {
                Some(line) => ConfigError::Invalid {
                    message: format!("{message} (line {line})"),
                    key,
                },
                None => ConfigError::Invalid { key, message },
            },
            other => other,
        }
    }
}

/// The 1-based line of a dotted key such as `rtp.port_min`, `external_audio[2].gain_db` or
/// `http_audio.allow_hosts[0]` in TOML `text`; the line of its table when the key itself is
/// not written. Reads `[table]` and `[[array]]` headers and `key = …` lines, which is how
/// configuration files are written; `None` for anything else.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let (table, field) = key.rsplit_once('.')?;
    let field = field.split('[').next().unwrap_or(field);
    let (table, index) = match table.split_once('[') {
        Some((name, rest)) => (name, rest.strip_suffix(']')?.parse::<usize>().ok()?),
        None => (table, 0),
    };
    let mut header_line = None;
    let mut seen = 0usize;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('[') {
            if header_line.is_some() {
                break;
            }
            let name = line.trim_start_matches('[').split(']').next();
            let name = name.unwrap_or("").trim();
            if name == table {
                if seen == index {
                    header_line = Some(n + 1);
                }
                seen += 1;
            }
        } else if header_line.is_some()
            && let Some(rest) = line.strip_prefix(field)
            && rest.trim_start().starts_with('=')
        {
            return Some(n + 1);
        }
    }
    header_line
}

const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Checks a `general.log_level` value: `level` or `target=level` items, comma-separated.
pub fn check_log_level(value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("must name a level: one of {LOG_LEVELS:?}"));
    }
    for item in value.split(',') {
        let item = item.trim();
        let (target, level) = match item.split_once('=') {
            Some((t, l)) => (Some(t.trim()), l.trim()),
            None => (None, item),
        };
        if let Some(t) = target
            && (t.is_empty()
                || !t
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_:-".contains(c)))
        {
            return Err(format!(
                "{item:?}: the target must be a module path such as imss_server"
            ));
        }
        if !LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!("{item:?}: the level must be one of {LOG_LEVELS:?}"));
        }
    }
    Ok(())
}

const FUNCTIONS: [&str; 3] = ["streaming", "voicemail", "tts"];

impl Config {
    /// The embedded defaults with data below `data_dir` and a `moh` tone source, so that
    /// `sip:moh@host` works on a fresh start.
    pub fn embedded(data_dir: &Path) -> Config {
        let mut c = Config::default();
        c.general.data_dir = data_dir.to_path_buf();
        c.external_audio.push(ExternalAudio {
            path: Some(PathBuf::from("moh")),
            fallback: Some("tone".into()),
            ..ExternalAudio::new("moh", SourceKind::Playlist)
        });
        c.external_audio.push(ExternalAudio {
            frequency_hz: Some(440.0),
            ..ExternalAudio::new("beep", SourceKind::Tone)
        });
        c
    }

    /// Parses TOML text; `origin` names the file in error messages.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate().map_err(|e| e.at_line_in(text))?;
        Ok(config)
    }

    /// What can run but probably not as meant: announcement and chime files that are not
    /// under the audio root now. One line each, naming the key.
    pub fn warnings(&self) -> Vec<String> {
        let root = self.audio_root();
        let mut warnings = Vec::new();
        for (i, s) in self.external_audio.iter().enumerate() {
            for (field, file) in [("announcement", &s.announcement), ("chime", &s.chime)] {
                if let Some(file) = file
                    && let Err(e) = crate::audio_root::resolve(&root, file)
                {
                    warnings.push(format!(
                        "external_audio[{i}].{field}: {e} (source {:?} plays without it)",
                        s.name
                    ));
                }
            }
        }
        warnings
    }

    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Checks ranges and cross-references that the TOML types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.to_string(),
            message,
        };
        if self.general.name.trim().is_empty() {
            return Err(invalid("general.name", "must not be empty".into()));
        }
        for f in &self.general.functions {
            if !FUNCTIONS.contains(&f.as_str()) {
                return Err(invalid(
                    "general.functions",
                    format!("unknown function {f:?}; expected one of {FUNCTIONS:?}"),
                ));
            }
        }
        let rtp = &self.rtp;
        if rtp.port_min < 1024 || !rtp.port_min.is_multiple_of(2) {
            return Err(invalid(
                "rtp.port_min",
                format!("{} must be an even port ≥ 1024", rtp.port_min),
            ));
        }
        if rtp.port_max <= rtp.port_min {
            return Err(invalid(
                "rtp.port_max",
                format!(
                    "{} must be above rtp.port_min ({})",
                    rtp.port_max, rtp.port_min
                ),
            ));
        }
        if !(10..=60).contains(&rtp.ptime_ms) {
            return Err(invalid(
                "rtp.ptime_ms",
                format!("{} ms is outside 10–60 ms", rtp.ptime_ms),
            ));
        }
        if self.mrcp.connect_timeout_s == 0 {
            return Err(invalid(
                "mrcp.connect_timeout_s",
                "must be at least 1 second".into(),
            ));
        }
        self.validate_session_timers()?;
        self.validate_mrcp_tls()?;
        self.validate_http_audio()?;
        self.tts.validate()?;
        self.http.validate()?;
        self.http.validate_metrics()?;
        if self.http.tls_cert.is_some() != self.http.tls_key.is_some() {
            let missing = if self.http.tls_cert.is_some() {
                "tls_key"
            } else {
                "tls_cert"
            };
            return Err(invalid(
                &format!("http.{missing}"),
                "tls_cert and tls_key go together".into(),
            ));
        }
        if let (Some(cert), Some(key)) = (&self.http.tls_cert, &self.http.tls_key) {
            crate::tls::server_config(cert, key).map_err(|e| {
                let which = if e.key().ends_with("cert") {
                    "tls_cert"
                } else {
                    "tls_key"
                };
                invalid(&format!("http.{which}"), e.detail())
            })?;
        }
        check_log_level(&self.general.log_level).map_err(|m| invalid("general.log_level", m))?;
        if let Some(p) = rtp.realtime_priority
            && !(1..=99).contains(&p)
        {
            return Err(invalid(
                "rtp.realtime_priority",
                format!("{p} is outside 1–99"),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, s) in self.external_audio.iter().enumerate() {
            let key = |field: &str| format!("external_audio[{i}].{field}");
            if s.name.is_empty()
                || !s
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(invalid(
                    &key("name"),
                    format!(
                        "{:?} must be non-empty letters, digits, '-', '_' or '.' (it is used in SIP URIs)",
                        s.name
                    ),
                ));
            }
            if !names.insert(s.name.to_ascii_lowercase()) {
                return Err(invalid(
                    &key("name"),
                    format!("{:?} is defined twice", s.name),
                ));
            }
            match s.kind {
                SourceKind::Http if s.url.is_none() => {
                    return Err(invalid(&key("url"), "required for kind = \"http\"".into()));
                }
                SourceKind::Playlist if s.path.is_none() && s.files.is_none() => {
                    return Err(invalid(
                        &key("path"),
                        "kind = \"playlist\" needs `path` (a folder) or `files`".into(),
                    ));
                }
                SourceKind::Command if s.command.is_none() => {
                    return Err(invalid(
                        &key("command"),
                        "required for kind = \"command\"".into(),
                    ));
                }
                SourceKind::Tone => {
                    let f = s.frequency_hz.unwrap_or(440.0);
                    if !(20.0..=3900.0).contains(&f) {
                        return Err(invalid(
                            &key("frequency_hz"),
                            format!("{f} Hz is outside 20–3900 Hz (8 kHz sampling)"),
                        ));
                    }
                }
                _ => {}
            }
            s.validate_loudness(i)?;
            s.validate_upstream(i)?;
            if let Some(level) = s.level_dbfs
                && !(-60.0..=0.0).contains(&level)
            {
                return Err(invalid(
                    &key("level_dbfs"),
                    format!("{level} dBFS is outside −60–0"),
                ));
            }
        }
        for (i, s) in self.external_audio.iter().enumerate() {
            if let Some(fb) = &s.fallback
                && fb != "tone"
                && fb != "silence"
                && !names.contains(&fb.to_ascii_lowercase())
            {
                return Err(invalid(
                    &format!("external_audio[{i}].fallback"),
                    format!("{fb:?} is neither \"tone\", \"silence\" nor a source name"),
                ));
            }
        }
        self.validate_fallback_chains()?;
        self.mail.validate()?;
        if let Some(n) = &self.notifier
            && !n.url.starts_with("nats://")
            && !n.url.starts_with("tls://")
        {
            return Err(invalid(
                "notifier.url",
                format!("{:?} must start with nats:// or tls://", n.url),
            ));
        }
        Ok(())
    }

    /// A source's fallback may name another source, whose fallback may name a third: the
    /// chain must end in `tone`, `silence` or a source without a fallback, not loop back.
    fn validate_fallback_chains(&self) -> Result<(), ConfigError> {
        let by_name: std::collections::HashMap<String, &ExternalAudio> = self
            .external_audio
            .iter()
            .map(|s| (s.name.to_ascii_lowercase(), s))
            .collect();
        for (i, s) in self.external_audio.iter().enumerate() {
            let mut chain = vec![s.name.clone()];
            let mut at = s;
            while let Some(next) = at
                .fallback
                .as_deref()
                .and_then(|f| by_name.get(&f.to_ascii_lowercase()))
            {
                chain.push(next.name.clone());
                if next.name.eq_ignore_ascii_case(&s.name) {
                    return Err(ConfigError::Invalid {
                        key: format!("external_audio[{i}].fallback"),
                        message: format!(
                            "the fallbacks loop back to {:?}: {}",
                            s.name,
                            chain.join(" → ")
                        ),
                    });
                }
                if chain.len() > self.external_audio.len() {
                    // A loop that does not pass through `s`: reported at its own sources.
                    break;
                }
                at = next;
            }
        }
        Ok(())
    }

    fn validate_session_timers(&self) -> Result<(), ConfigError> {
        let sip = &self.sip;
        if sip.min_se_s == 0 {
            return Err(ConfigError::Invalid {
                key: "sip.min_se_s".into(),
                message: "must be at least 1 second (RFC 4028 recommends 90)".into(),
            });
        }
        if sip.session_expires_s < sip.min_se_s {
            return Err(ConfigError::Invalid {
                key: "sip.session_expires_s".into(),
                message: format!(
                    "{} s is below sip.min_se_s ({} s)",
                    sip.session_expires_s, sip.min_se_s
                ),
            });
        }
        Ok(())
    }

    /// `tls_port`, `tls_cert` and `tls_key` go together, and the files must hold a usable
    /// PEM certificate chain and its key.
    fn validate_mrcp_tls(&self) -> Result<(), ConfigError> {
        let m = &self.mrcp;
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.into(),
            message,
        };
        let (cert, key) = match (m.tls_port, &m.tls_cert, &m.tls_key) {
            (None, None, None) => return Ok(()),
            (None, _, _) => {
                return Err(invalid(
                    "mrcp.tls_port",
                    "required with mrcp.tls_cert and mrcp.tls_key (the TLS listener's port)".into(),
                ));
            }
            (Some(_), None, _) => {
                return Err(invalid(
                    "mrcp.tls_cert",
                    "required with mrcp.tls_port (a PEM certificate chain)".into(),
                ));
            }
            (Some(_), Some(_), None) => {
                return Err(invalid(
                    "mrcp.tls_key",
                    "required with mrcp.tls_port (the certificate's PEM private key)".into(),
                ));
            }
            (Some(port), Some(cert), Some(key)) => {
                if port != 0 && port == m.port {
                    return Err(invalid(
                        "mrcp.tls_port",
                        format!("{port} is also mrcp.port; TLS needs a port of its own"),
                    ));
                }
                (cert, key)
            }
        };
        crate::tls::server_config(cert, key)
            .map(|_| ())
            .map_err(|e| invalid(e.key(), e.detail()))
    }

    /// `[http_audio]`: host patterns readable, limits above zero, the CA file and the proxy
    /// usable.
    fn validate_http_audio(&self) -> Result<(), ConfigError> {
        let h = &self.http_audio;
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: format!("http_audio.{key}"),
            message,
        };
        for (i, host) in h.allow_hosts.iter().enumerate() {
            if let Err(why) = crate::fetch::check_host_pattern(host) {
                return Err(invalid(
                    &format!("allow_hosts[{i}]"),
                    format!("{host:?} {why}"),
                ));
            }
        }
        for (key, value) in [
            ("fetch_timeout_ms", h.fetch_timeout_ms),
            ("max_file_mib", h.max_file_mib),
            ("disk_cache_mib", h.disk_cache_mib),
            ("memory_cache_mib", h.memory_cache_mib),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1".into()));
            }
        }
        if h.fetch_timeout_ms > 600_000 {
            return Err(invalid(
                "fetch_timeout_ms",
                format!("{} ms is over 10 minutes", h.fetch_timeout_ms),
            ));
        }
        if h.max_file_mib > 4096 {
            return Err(invalid(
                "max_file_mib",
                format!("{} MiB is over 4 GiB", h.max_file_mib),
            ));
        }
        if h.max_redirects > 20 {
            return Err(invalid(
                "max_redirects",
                format!("{} is over 20", h.max_redirects),
            ));
        }
        if let Some(ca) = &h.ca_file {
            crate::fetch::read_ca_file(ca).map_err(|e| invalid("ca_file", e))?;
        }
        if let Some(proxy) = &h.proxy {
            ureq::Proxy::new(proxy).map_err(|e| invalid("proxy", format!("{proxy:?}: {e}")))?;
        }
        Ok(())
    }

    /// The folder of the HTTP audio disk cache.
    pub fn http_cache_dir(&self) -> PathBuf {
        self.http_audio
            .cache_dir
            .clone()
            .unwrap_or_else(|| self.general.data_dir.join("cache").join("http"))
    }

    /// The folder `play=` URIs and playlists are resolved against.
    pub fn audio_root(&self) -> PathBuf {
        self.audio
            .root
            .clone()
            .unwrap_or_else(|| self.general.data_dir.join("audio"))
    }

    /// The address written into SDP.
    pub fn rtp_advertise(&self) -> IpAddr {
        self.rtp
            .advertise
            .unwrap_or_else(|| concrete(self.rtp.bind))
    }

    /// The address written into SIP Contact headers.
    pub fn sip_advertise(&self) -> IpAddr {
        self.sip
            .advertise
            .unwrap_or_else(|| concrete(self.sip.bind))
    }
}

fn concrete(ip: IpAddr) -> IpAddr {
    if ip.is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        ip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("test.toml"))
    }

    #[test]
    fn contract_keys_parse() {
        let text = r#"
[general]
name = "imss-1"
location = "default"
functions = ["streaming", "voicemail", "tts"]
data_dir = "/var/lib/imss"
[sip]
bind = "0.0.0.0"
port = 6060
[mrcp]
bind = "0.0.0.0"
port = 8104
[rtp]
bind = "0.0.0.0"
advertise = "192.0.2.10"
port_min = 16384
port_max = 32767
ptime_ms = 20
[http]
bind = "0.0.0.0"
port = 8190
[audio]
root = "/var/lib/imss/audio"
[[external_audio]]
name = "MP3"
kind = "http"
url = "http://radio.example/stream"
fallback = "tone"
[[external_audio]]
name = "moh"
kind = "playlist"
path = "/var/lib/imss/audio/moh"
shuffle = false
[[external_audio]]
name = "beep"
kind = "tone"
frequency_hz = 440
[mail]
imap_host = "mail.example"
imap_port = 993
imap_tls = "implicit"
imap_user = "voicemail"
imap_password = "secret"
fbmc_root = "/var/lib/imss/mail"
[tts]
engine = "espeak-ng"
voice = "en-us"
rate_wpm = 175
[notifier]
url = "nats://127.0.0.1:4222"
"#;
        let c = parse(text).expect("contract config parses");
        assert_eq!(c.rtp.advertise, Some("192.0.2.10".parse().expect("ip")));
        assert_eq!(c.external_audio.len(), 3);
        assert_eq!(c.external_audio[0].kind, SourceKind::Http);
        assert_eq!(c.rtp_advertise().to_string(), "192.0.2.10");
        assert_eq!(c.audio_root(), PathBuf::from("/var/lib/imss/audio"));
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = parse("[sip]\nport = 6060\nprot = 5\n").expect_err("unknown key");
        let msg = err.to_string();
        assert!(msg.contains("prot"), "{msg}");
        assert!(msg.contains("line 3"), "{msg}");
    }

    #[test]
    fn wrong_type_names_line() {
        let msg = parse("[rtp]\n\nport_min = \"low\"\n")
            .expect_err("type")
            .to_string();
        assert!(msg.contains("line 3"), "{msg}");
    }

    #[test]
    fn ranges_are_checked() {
        let msg = parse("[rtp]\nport_min = 16385\n")
            .expect_err("odd")
            .to_string();
        assert!(msg.starts_with("rtp.port_min"), "{msg}");
        let msg = parse("[rtp]\nptime_ms = 70\n")
            .expect_err("ptime")
            .to_string();
        assert!(msg.starts_with("rtp.ptime_ms"), "{msg}");
        let msg = parse("[[external_audio]]\nname = \"a\"\nkind = \"http\"\n")
            .expect_err("url")
            .to_string();
        assert!(msg.starts_with("external_audio[0].url"), "{msg}");
        let msg = parse(
            "[[external_audio]]\nname = \"a\"\nkind = \"tone\"\n[[external_audio]]\nname = \"A\"\nkind = \"silence\"\n",
        )
        .expect_err("dup")
        .to_string();
        assert!(msg.contains("defined twice"), "{msg}");
        let msg = parse("[[external_audio]]\nname = \"a\"\nkind = \"tone\"\nfallback = \"nope\"\n")
            .expect_err("fallback")
            .to_string();
        assert!(msg.contains("fallback"), "{msg}");
    }

    #[test]
    fn session_timer_keys() {
        let c = parse("[sip]\nsession_expires_s = 600\nmin_se_s = 120\n").expect("valid");
        assert_eq!((c.sip.session_expires_s, c.sip.min_se_s), (600, 120));
        let d = Config::default();
        assert_eq!((d.sip.session_expires_s, d.sip.min_se_s), (1800, 90));
        let msg = parse("[sip]\nmin_se_s = 0\n")
            .expect_err("zero")
            .to_string();
        assert!(msg.starts_with("sip.min_se_s"), "{msg}");
        let msg = parse("[sip]\nsession_expires_s = 60\n")
            .expect_err("below min")
            .to_string();
        assert!(
            msg.starts_with("sip.session_expires_s") && msg.contains("90"),
            "{msg}"
        );
    }

    #[test]
    fn mrcp_tls_keys_go_together_and_files_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pair = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("rcgen");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, pair.cert.pem()).expect("write");
        std::fs::write(&key, pair.key_pair.serialize_pem()).expect("write");
        let toml = |port: &str, cert: &Path, key: &Path| {
            format!(
                "[mrcp]\n{port}tls_cert = \"{}\"\ntls_key = \"{}\"\n",
                cert.display(),
                key.display()
            )
        };
        let c = parse(&toml("tls_port = 8105\n", &cert, &key)).expect("valid TLS");
        assert_eq!(c.mrcp.tls_port, Some(8105));
        let msg = parse(&toml("", &cert, &key))
            .expect_err("no port")
            .to_string();
        assert!(msg.starts_with("mrcp.tls_port"), "{msg}");
        let msg = parse("[mrcp]\ntls_port = 8105\n")
            .expect_err("no cert")
            .to_string();
        assert!(msg.starts_with("mrcp.tls_cert"), "{msg}");
        let msg = parse(&toml("tls_port = 8104\n", &cert, &key))
            .expect_err("same port")
            .to_string();
        assert!(msg.starts_with("mrcp.tls_port"), "{msg}");
        let missing = dir.path().join("nope.pem");
        let msg = parse(&toml("tls_port = 8105\n", &missing, &key))
            .expect_err("unreadable cert")
            .to_string();
        assert!(
            msg.starts_with("mrcp.tls_cert") && msg.contains("nope.pem"),
            "{msg}"
        );
        let msg = parse(&toml("tls_port = 8105\n", &cert, &cert))
            .expect_err("a certificate is no key")
            .to_string();
        assert!(msg.starts_with("mrcp.tls_key"), "{msg}");
    }

    #[test]
    fn http_audio_keys() {
        let c = parse(
            "[http_audio]\nallow_hosts = [\"audio.example\", \"*.cdn.example\", \"::1\"]\nfetch_timeout_ms = 2500\nmax_file_mib = 5\n",
        )
        .expect("valid");
        assert_eq!(c.http_audio.allow_hosts.len(), 3);
        assert_eq!(c.http_audio.fetch_timeout_ms, 2500);
        let d = Config::default();
        assert_eq!(d.http_audio.allow_hosts, vec!["*".to_string()]);
        assert_eq!(d.http_audio.max_file_mib, 50);
        assert_eq!(
            Config::embedded(Path::new("/d")).http_cache_dir(),
            PathBuf::from("/d/cache/http")
        );
        let msg = parse("[http_audio]\nallow_hosts = [\"http://x/\"]\n")
            .expect_err("scheme")
            .to_string();
        assert!(msg.starts_with("http_audio.allow_hosts[0]"), "{msg}");
        let msg = parse("[http_audio]\nmax_file_mib = 0\n")
            .expect_err("zero")
            .to_string();
        assert!(msg.starts_with("http_audio.max_file_mib"), "{msg}");
        let msg = parse("[http_audio]\nca_file = \"/nonexistent/ca.pem\"\n")
            .expect_err("missing CA file")
            .to_string();
        assert!(
            msg.starts_with("http_audio.ca_file") && msg.contains("/nonexistent/ca.pem"),
            "{msg}"
        );
        let msg = parse("[http_audio]\nproxy = \"not a url\"\n")
            .expect_err("proxy")
            .to_string();
        assert!(msg.starts_with("http_audio.proxy"), "{msg}");
    }

    #[test]
    fn loudness_and_announcement_keys() {
        let source = "[[external_audio]]\nname = \"moh\"\nkind = \"tone\"\n";
        let c = parse(&format!(
            "{source}normalize = true\ntarget_lufs = -20\nband_pass = true\n\
             limiter_ceiling_dbfs = -2\nannouncement = \"welcome.wav\"\nchime = \"chime.wav\"\n\
             chime_every_s = 30\n"
        ))
        .expect("valid");
        let s = &c.external_audio[0];
        assert!(s.normalize && s.band_pass);
        assert_eq!(s.target_lufs, Some(-20.0));
        assert_eq!(s.limiter_ceiling_dbfs, Some(-2.0));
        assert_eq!(s.announcement.as_deref(), Some("welcome.wav"));
        assert_eq!(
            (s.chime.as_deref(), s.chime_every_s),
            (Some("chime.wav"), Some(30))
        );
        parse(&format!("{source}gain_db = -6.5\n")).expect("gain alone");
        // Ranges and keys that need one another name the key and its line.
        for (extra, key, line) in [
            ("gain_db = 41\n", "external_audio[0].gain_db", 4),
            (
                "normalize = true\ntarget_lufs = -3\n",
                "external_audio[0].target_lufs",
                5,
            ),
            ("target_lufs = -20\n", "external_audio[0].target_lufs", 4),
            (
                "normalize = true\ngain_db = 3\n",
                "external_audio[0].gain_db",
                5,
            ),
            (
                "limiter_ceiling_dbfs = 1\n",
                "external_audio[0].limiter_ceiling_dbfs",
                4,
            ),
            ("chime_every_s = 30\n", "external_audio[0].chime_every_s", 4),
            (
                "chime = \"c.wav\"\nchime_every_s = 0\n",
                "external_audio[0].chime_every_s",
                5,
            ),
            (
                "announcement = \"http://x/a.wav\"\n",
                "external_audio[0].announcement",
                4,
            ),
            ("chime = \"source:other\"\n", "external_audio[0].chime", 4),
        ] {
            let msg = parse(&format!("{source}{extra}"))
                .expect_err(extra)
                .to_string();
            assert!(msg.starts_with(key), "{extra}: {msg}");
            assert!(msg.ends_with(&format!("(line {line})")), "{extra}: {msg}");
        }
        // The second source's key, not the first's.
        let msg = parse(&format!(
            "{source}gain_db = 1\n{}\nband_pass = true\ngain_db = 99\n",
            source.replace("moh", "other")
        ))
        .expect_err("second")
        .to_string();
        assert!(
            msg.starts_with("external_audio[1].gain_db") && msg.ends_with("(line 10)"),
            "{msg}"
        );
        // A wrong type is the parser's error, with its line.
        let msg = parse(&format!("{source}normalize = \"yes\"\n"))
            .expect_err("type")
            .to_string();
        assert!(msg.contains("line 4") && msg.contains("normalize"), "{msg}");
    }

    #[test]
    fn line_of_key_finds_keys_tables_and_array_entries() {
        let text = "[sip]\nport = 1\n\n[rtp]\nport_min = 2\n[[external_audio]]\nname = \"a\"\n\
                    [[external_audio]]\nname = \"b\"\n  gain_db=3\n";
        assert_eq!(line_of_key(text, "rtp.port_min"), Some(5));
        assert_eq!(line_of_key(text, "rtp.port_max"), Some(4));
        assert_eq!(line_of_key(text, "external_audio[1].gain_db"), Some(10));
        assert_eq!(line_of_key(text, "external_audio[0].gain_db"), Some(6));
        assert_eq!(line_of_key(text, "external_audio[2].name"), None);
        assert_eq!(line_of_key(text, "mail.imap_host"), None);
    }

    #[test]
    fn missing_announcement_files_are_warnings() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("here.wav"), b"x").expect("write");
        let text = format!(
            "[audio]\nroot = \"{}\"\n[[external_audio]]\nname = \"moh\"\nkind = \"tone\"\n\
             announcement = \"here.wav\"\nchime = \"gone.wav\"\n",
            dir.path().display()
        );
        let c = parse(&text).expect("a missing file is no error");
        let warnings = c.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("external_audio[0].chime") && warnings[0].contains("gone.wav"),
            "{warnings:?}"
        );
    }

    #[test]
    fn upstream_keys() {
        let http = "[[external_audio]]\nname = \"MP3\"\nkind = \"http\"\nurl = \"https://radio.example/live.mp3\"\n";
        let c = parse(&format!(
            "{http}prebuffer_ms = 500\nstall_ms = 1500\nreconnect_min_ms = 100\nreconnect_max_ms = 5000\n"
        ))
        .expect("valid");
        let s = &c.external_audio[0];
        assert_eq!(
            (
                s.prebuffer_ms,
                s.stall_ms,
                s.reconnect_min_ms,
                s.reconnect_max_ms
            ),
            (Some(500), Some(1500), Some(100), Some(5000))
        );
        let command = "[[external_audio]]\nname = \"line\"\nkind = \"command\"\ncommand = \"arecord -q -t raw -f S16_LE -r 16000 -c 2\"\n";
        let c = parse(&format!(
            "{command}format = \"s16le\"\nsample_rate = 16000\nchannels = 2\n"
        ))
        .expect("valid");
        let s = &c.external_audio[0];
        assert_eq!(
            (s.format, s.sample_rate, s.channels),
            (Some(CommandFormat::S16le), Some(16_000), Some(2))
        );
        parse(&format!("{command}format = \"wav\"\n")).expect("wav");
        let tone = "[[external_audio]]\nname = \"t\"\nkind = \"tone\"\n";
        for (base, extra, key, line) in [
            (http, "stall_ms = 100\n", "external_audio[0].stall_ms", 5),
            (
                http,
                "prebuffer_ms = 20000\n",
                "external_audio[0].prebuffer_ms",
                5,
            ),
            (
                http,
                "reconnect_min_ms = 9000\nreconnect_max_ms = 1000\n",
                "external_audio[0].reconnect_max_ms",
                6,
            ),
            (
                http,
                "reconnect_min_ms = 40000\n",
                "external_audio[0].reconnect_min_ms",
                5,
            ),
            (http, "format = \"wav\"\n", "external_audio[0].format", 5),
            (tone, "stall_ms = 1000\n", "external_audio[0].stall_ms", 4),
            (
                command,
                "format = \"wav\"\nsample_rate = 8000\n",
                "external_audio[0].sample_rate",
                6,
            ),
            (command, "channels = 0\n", "external_audio[0].channels", 5),
            (
                command,
                "sample_rate = 1000\n",
                "external_audio[0].sample_rate",
                5,
            ),
        ] {
            let msg = parse(&format!("{base}{extra}"))
                .expect_err(extra)
                .to_string();
            assert!(msg.starts_with(key), "{extra}: {msg}");
            assert!(msg.ends_with(&format!("(line {line})")), "{extra}: {msg}");
        }
        let msg = parse(&format!("{command}format = \"flac\"\n"))
            .expect_err("format")
            .to_string();
        assert!(msg.contains("line 5") && msg.contains("flac"), "{msg}");
        for (url, why) in [
            ("ftp://x/y", "not an http"),
            ("radio.example/live", "relative"),
        ] {
            let msg = parse(&format!(
                "[[external_audio]]\nname = \"a\"\nkind = \"http\"\nurl = \"{url}\"\n"
            ))
            .expect_err(url)
            .to_string();
            assert!(
                msg.starts_with("external_audio[0].url") && msg.contains(why),
                "{msg}"
            );
        }
        let msg = parse(
            "[[external_audio]]\nname = \"a\"\nkind = \"command\"\ncommand = \"sox 'unclosed\"\n",
        )
        .expect_err("quote")
        .to_string();
        assert!(msg.starts_with("external_audio[0].command"), "{msg}");
    }

    #[test]
    fn fallbacks_must_not_loop() {
        let source = |name: &str, fallback: &str| {
            format!(
                "[[external_audio]]\nname = \"{name}\"\nkind = \"http\"\nurl = \"http://r/{name}\"\nfallback = \"{fallback}\"\n"
            )
        };
        parse(&format!("{}{}", source("a", "b"), source("b", "tone"))).expect("a chain");
        let msg = parse(&source("a", "A")).expect_err("self").to_string();
        assert!(
            msg.starts_with("external_audio[0].fallback") && msg.contains("loop"),
            "{msg}"
        );
        let msg = parse(&format!(
            "{}{}{}",
            source("a", "b"),
            source("b", "c"),
            source("c", "a")
        ))
        .expect_err("loop")
        .to_string();
        assert!(msg.contains("a → b → c → a"), "{msg}");
    }

    #[test]
    fn embedded_defaults_validate() {
        let c = Config::embedded(Path::new("imss-data"));
        c.validate().expect("embedded defaults are valid");
        assert!(c.external_audio.iter().any(|s| s.name == "moh"));
        assert_eq!(c.sip.port, 6060);
        assert_eq!(c.http.port, 8190);
        assert_eq!(c.mrcp.port, 8104);
    }
}
