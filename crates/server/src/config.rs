//! The configuration model: one TOML file whose sections follow the web interface.
//!
//! The key names are a contract with operators and scripts: add keys freely, rename none.
//! Unknown keys are an error naming the key and its line (`serde(deny_unknown_fields)`
//! plus the TOML parser's spans).

use serde::{Deserialize, Serialize};
use std::net::IpAddr;
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
}

impl Default for General {
    fn default() -> Self {
        Self {
            name: "imss-1".into(),
            location: "default".into(),
            functions: vec!["streaming".into(), "voicemail".into(), "tts".into()],
            data_dir: PathBuf::from("imss-data"),
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Address to listen on.
    pub bind: IpAddr,
    /// Port of the web interface, API, /healthz and /metrics.
    pub port: u16,
}

impl Default for Http {
    fn default() -> Self {
        Self {
            bind: IpAddr::from([0, 0, 0, 0]),
            port: 8190,
        }
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
}

/// `[mail]`
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Mail {
    /// IMAP server host.
    pub imap_host: Option<String>,
    /// IMAP port.
    pub imap_port: Option<u16>,
    /// `implicit`, `starttls` or `none`.
    pub imap_tls: Option<String>,
    /// Account used when a URI names no user.
    pub imap_user: Option<String>,
    /// Never echoed by the UI, API or logs.
    pub imap_password: Option<String>,
    /// Root of the file-based mail store; default `<data_dir>/mail`.
    pub fbmc_root: Option<PathBuf>,
}

/// `[tts]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Tts {
    /// Engine name.
    pub engine: String,
    /// Default voice.
    pub voice: String,
    /// Speaking rate, words per minute.
    pub rate_wpm: u32,
}

impl Default for Tts {
    fn default() -> Self {
        Self {
            engine: "espeak-ng".into(),
            voice: "en-us".into(),
            rate_wpm: 175,
        }
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

const FUNCTIONS: [&str; 3] = ["streaming", "voicemail", "tts"];

impl Config {
    /// The embedded defaults with data below `data_dir` and a `moh` tone source, so that
    /// `sip:moh@host` works on a fresh start.
    pub fn embedded(data_dir: &Path) -> Config {
        let mut c = Config::default();
        c.general.data_dir = data_dir.to_path_buf();
        c.external_audio.push(ExternalAudio {
            name: "moh".into(),
            kind: SourceKind::Playlist,
            url: None,
            path: Some(PathBuf::from("moh")),
            files: None,
            shuffle: false,
            frequency_hz: None,
            level_dbfs: None,
            command: None,
            fallback: Some("tone".into()),
        });
        c.external_audio.push(ExternalAudio {
            name: "beep".into(),
            kind: SourceKind::Tone,
            url: None,
            path: None,
            files: None,
            shuffle: false,
            frequency_hz: Some(440.0),
            level_dbfs: None,
            command: None,
            fallback: None,
        });
        c
    }

    /// Parses TOML text; `origin` names the file in error messages.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate()?;
        Ok(config)
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
        if let Some(tls) = &self.mail.imap_tls
            && !["implicit", "starttls", "none"].contains(&tls.as_str())
        {
            return Err(invalid(
                "mail.imap_tls",
                format!("{tls:?}: expected implicit, starttls or none"),
            ));
        }
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
    fn embedded_defaults_validate() {
        let c = Config::embedded(Path::new("imss-data"));
        c.validate().expect("embedded defaults are valid");
        assert!(c.external_audio.iter().any(|s| s.name == "moh"));
        assert_eq!(c.sip.port, 6060);
        assert_eq!(c.http.port, 8190);
        assert_eq!(c.mrcp.port, 8104);
    }
}
