//! Tests of a live source on demand (`POST /api/v1/sources/{name}/test`): the stream is
//! reached, the program run or the files read once, with the same HTTP client, decoders and
//! program handling as the source's worker, and the answer names the step that failed.
//!
//! A test never touches the running source: it has an [`Upstream`] of its own, which nobody
//! plays, and stops once it has decoded [`ENOUGH`] audio or its time is up. Every step has a
//! timeout, so that a test ends within about ten seconds whatever the upstream does.

use std::io::BufReader;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use imss_media::{
    Overflow, StreamContainer, StreamEnd, StreamInfo, Upstream, UpstreamSettings, UpstreamStatus,
    decode_stream,
};
use url::{Host, Url};

use super::{Attempt, Outage, command, command_spec, http};
use crate::config::ExternalAudio;

/// Audio a test decodes before it calls an upstream good.
pub const ENOUGH: Duration = Duration::from_millis(1500);
/// Longest a name lookup may take.
const DNS_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a TCP connection (and, in the client, the TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest the HTTP response's headers may take.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a read of the stream or of the program's output may wait.
const MAX_STALL: Duration = Duration::from_secs(2);

/// Where a test stopped: the step that failed, or `done`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// Resolving the stream's host name.
    Dns,
    /// Connecting to the stream's host.
    Tcp,
    /// The TLS handshake (certificate, protocol).
    Tls,
    /// The HTTP request and response (status, redirects, playlists).
    Http,
    /// Decoding the audio.
    Decode,
    /// Starting the program and reading its output.
    Program,
    /// Finding the playlist's files.
    Files,
    /// Every step passed.
    Done,
}

/// What a test found.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    /// Every step passed.
    pub ok: bool,
    /// The step that failed, or [`Step::Done`].
    pub step: Step,
    /// What was found, for people.
    pub message: String,
    /// Codec, sample rate, channels and bit rate, as far as they are known.
    pub format: Option<String>,
}

impl Probe {
    fn failed(step: Step, message: impl Into<String>) -> Probe {
        Probe {
            ok: false,
            step,
            message: message.into(),
            format: None,
        }
    }

    fn passed(message: impl Into<String>, format: Option<String>) -> Probe {
        Probe {
            ok: true,
            step: Step::Done,
            message: message.into(),
            format,
        }
    }
}

/// Tests an `http` source: resolves its host, connects, then requests the stream with the
/// source's client (TLS, redirects, playlists, ICY) and decodes [`ENOUGH`] of it; gives up
/// at `deadline`. Blocking.
pub(crate) fn test_http(ext: &ExternalAudio, deadline: Instant) -> Probe {
    let Some(text) = ext.url.as_deref() else {
        return Probe::failed(Step::Http, "the source has no url");
    };
    let url = match Url::parse(text) {
        Ok(url) => url,
        Err(e) => return Probe::failed(Step::Http, format!("url {text:?}: {e}")),
    };
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs = match url.host() {
        Some(Host::Domain(name)) => match resolve(name, port, DNS_TIMEOUT.min(left(deadline))) {
            Ok(addrs) => addrs,
            Err(why) => return Probe::failed(Step::Dns, why),
        },
        Some(Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        Some(Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        None => return Probe::failed(Step::Http, format!("{url}: no host")),
    };
    let mut refused = Vec::new();
    let reached = addrs.iter().any(|addr| {
        match TcpStream::connect_timeout(addr, CONNECT_TIMEOUT.min(left(deadline))) {
            Ok(_) => true,
            Err(e) => {
                refused.push(format!("{addr}: {e}"));
                false
            }
        }
    });
    if !reached {
        return Probe::failed(
            Step::Tcp,
            format!("cannot connect to port {port}: {}", refused.join("; ")),
        );
    }
    let stall = stall_of(ext, deadline);
    let agent = http::agent_with(
        stall,
        CONNECT_TIMEOUT.min(left(deadline)),
        RESPONSE_TIMEOUT.min(left(deadline)),
    );
    let (up, mut writer) = Upstream::new(
        &format!("{} (test)", ext.name),
        UpstreamSettings {
            prebuffer: ENOUGH,
            stall,
            overflow: Overflow::DropOldest,
        },
    );
    let watchdog = Watchdog::start(&up, deadline);
    let mut outage = Outage::default();
    let mut attempt = Attempt::new(&mut writer, &mut outage);
    let enough = imss_media::samples_in(ENOUGH);
    attempt.enough = Some(enough);
    let result = http::probe(&agent, &url, &mut attempt, 0);
    let samples = attempt.samples;
    drop(watchdog);
    let status = up.status();
    let format = format_of(&status);
    let from = status.upstream.as_deref().unwrap_or(text);
    let reason = match result {
        Err((step, why)) => return Probe::failed(step, why),
        Ok(_) if samples >= enough => {
            return Probe::passed(
                format!("{} of audio decoded from {from}", seconds(samples)),
                format,
            );
        }
        Ok(reason) => reason,
    };
    Probe {
        format,
        ..Probe::failed(Step::Decode, too_little(samples, &up, &reason))
    }
}

/// Tests a `command` source: runs its program as the source would and decodes [`ENOUGH`]
/// of its output, then kills it; gives up at `deadline`. Blocking.
pub(crate) fn test_command(ext: &ExternalAudio, deadline: Instant) -> Probe {
    let spec = match command_spec(ext) {
        Ok(spec) => spec,
        Err(why) => return Probe::failed(Step::Program, why),
    };
    let (up, mut writer) = Upstream::new(
        &format!("{} (test)", ext.name),
        UpstreamSettings {
            prebuffer: ENOUGH,
            stall: stall_of(ext, deadline),
            overflow: Overflow::Wait,
        },
    );
    let watchdog = Watchdog::start(&up, deadline);
    let mut outage = Outage::default();
    let mut attempt = Attempt::new(&mut writer, &mut outage);
    let enough = imss_media::samples_in(ENOUGH);
    attempt.enough = Some(enough);
    let reason = command::play(&spec, &mut attempt);
    let samples = attempt.samples;
    drop(watchdog);
    let status = up.status();
    let format = format_of(&status);
    if samples >= enough {
        return Probe::passed(
            format!("{} of audio decoded from {}", seconds(samples), spec.line),
            format,
        );
    }
    let step = if samples == 0
        && format.is_none()
        && (reason.contains("undecodable") || reason.contains("unsupported"))
    {
        Step::Decode
    } else {
        Step::Program
    };
    Probe {
        format,
        ..Probe::failed(step, too_little(samples, &up, &reason))
    }
}

/// Tests a `playlist` source: its files exist, and each decodes (the first [`ENOUGH`] of
/// it), as many as fit before `deadline`. `http(s)://` entries are counted, not fetched.
/// Blocking.
pub(crate) fn test_playlist(ext: &ExternalAudio, root: &Path, deadline: Instant) -> Probe {
    let entries = match crate::live::playlist_files(ext, root) {
        Ok(entries) => entries,
        Err(why) => return Probe::failed(Step::Files, why),
    };
    let (urls, files): (Vec<PathBuf>, Vec<PathBuf>) = entries
        .into_iter()
        .partition(|f| imss_media::is_http_entry(f));
    if files.is_empty() && urls.is_empty() {
        return Probe::failed(Step::Files, "the playlist has no audio files");
    }
    let missing: Vec<String> = files
        .iter()
        .filter(|f| !f.is_file())
        .map(|f| f.display().to_string())
        .collect();
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(3).map(String::as_str).collect();
        return Probe::failed(
            Step::Files,
            format!(
                "{} of {} files not found: {}{}",
                missing.len(),
                files.len(),
                shown.join(", "),
                if missing.len() > shown.len() {
                    ", …"
                } else {
                    ""
                }
            ),
        );
    }
    let mut format = None;
    let mut decoded = 0;
    for file in &files {
        if Instant::now() >= deadline {
            break;
        }
        match decode_start(file) {
            Ok(f) => {
                decoded += 1;
                format.get_or_insert(f);
            }
            Err(why) => {
                return Probe {
                    format,
                    ..Probe::failed(Step::Decode, format!("{}: {why}", file.display()))
                };
            }
        }
    }
    let mut message = format!("{decoded} of {} files decoded", files.len());
    if decoded < files.len() {
        message.push_str(" (the rest were not checked in the time a test has)");
    }
    if !urls.is_empty() {
        message.push_str(&format!(
            "; {} http(s) entries not checked (they are fetched when played)",
            urls.len()
        ));
    }
    Probe::passed(message, format)
}

/// Decodes the first [`ENOUGH`] of `file`; its format.
fn decode_start(file: &Path) -> Result<String, String> {
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let Some(container) = StreamContainer::from_extension(&ext) else {
        // Raw G.711 (`.ul`, `.al`): every byte is a sample.
        let len = std::fs::metadata(file).map_err(|e| e.to_string())?.len();
        if len == 0 {
            return Err("the file holds no audio".into());
        }
        return Ok(format!("raw G.711 ({ext}), 8000 Hz, 1 channel"));
    };
    let reader = std::fs::File::open(file).map_err(|e| e.to_string())?;
    let enough = imss_media::samples_in(ENOUGH);
    let mut info: Option<StreamInfo> = None;
    let mut samples = 0u64;
    let end = decode_stream(
        Box::new(BufReader::new(reader)),
        Some(container),
        &mut |i| info = Some(i.clone()),
        &mut |s| {
            samples += s.len() as u64;
            if samples >= enough {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
    .map_err(|e| e.to_string())?;
    if end == StreamEnd::Eof && samples == 0 {
        return Err("the file holds no audio".into());
    }
    let info = info.ok_or("the file holds no audio")?;
    Ok(format_of(&UpstreamStatus {
        codec: Some(info.codec),
        sample_rate: Some(info.sample_rate),
        channels: Some(info.channels),
        ..UpstreamStatus::default()
    })
    .unwrap_or_default())
}

/// The message of a test that decoded less than [`ENOUGH`].
fn too_little(samples: u64, up: &Upstream, reason: &str) -> String {
    if up.is_stopped() {
        return format!(
            "only {} of audio arrived in the time a test has",
            seconds(samples)
        );
    }
    if samples == 0 {
        format!("no audio: {reason}")
    } else {
        format!("only {} of audio: {reason}", seconds(samples))
    }
}

/// `1.5 s` for 12,000 samples.
fn seconds(samples: u64) -> String {
    format!(
        "{:.1} s",
        samples as f64 / f64::from(imss_media::SAMPLE_RATE)
    )
}

/// "mp3, 44100 Hz, 2 channels, 128 kbit/s", as far as known.
fn format_of(status: &UpstreamStatus) -> Option<String> {
    let mut parts = vec![status.codec.clone()?];
    if let Some(rate) = status.sample_rate {
        parts.push(format!("{rate} Hz"));
    }
    match status.channels {
        Some(1) => parts.push("1 channel".into()),
        Some(n) => parts.push(format!("{n} channels")),
        None => {}
    }
    if let Some(kbps) = status.bitrate_kbps {
        parts.push(format!("{kbps} kbit/s"));
    }
    Some(parts.join(", "))
}

/// The source's stall time, within what a test has.
fn stall_of(ext: &ExternalAudio, deadline: Instant) -> Duration {
    let configured = Duration::from_millis(u64::from(
        ext.stall_ms.unwrap_or(ExternalAudio::DEFAULT_STALL_MS),
    ));
    configured
        .min(MAX_STALL)
        .min(left(deadline))
        .max(Duration::from_millis(100))
}

/// Time until `deadline`.
fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// The addresses of `host`, looked up on a thread of its own so that a resolver that does not
/// answer costs `timeout` at most.
fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, String> {
    let (tx, rx) = mpsc::channel();
    let target = (host.to_string(), port);
    std::thread::Builder::new()
        .name("source-test-dns".into())
        .spawn(move || {
            let _ = tx.send(
                target
                    .to_socket_addrs()
                    .map(|addrs| addrs.collect::<Vec<_>>()),
            );
        })
        .map_err(|e| format!("cannot start the lookup of {host}: {e}"))?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err(format!("{host} has no address")),
        Ok(Err(e)) => Err(format!("cannot resolve {host}: {e}")),
        Err(_) => Err(format!(
            "no answer for {host} within {} ms",
            timeout.as_millis()
        )),
    }
}

/// Stops a test's upstream at its deadline, unless the test ended first (dropped).
struct Watchdog {
    done: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    fn start(up: &Arc<Upstream>, deadline: Instant) -> Watchdog {
        let (done, rx) = mpsc::channel::<()>();
        let name = up.name().to_string();
        let up = Arc::clone(up);
        let thread = std::thread::Builder::new()
            .name("source-test".into())
            .spawn(move || {
                if let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(left(deadline)) {
                    up.stop();
                }
            });
        if let Err(e) = &thread {
            // Without it the test still ends: every read has a timeout.
            tracing::warn!(source = %name, error = %e, "cannot start the watchdog of a source test");
        }
        Watchdog {
            done: Some(done),
            thread: thread.ok(),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Disconnecting wakes the thread, which then ends without stopping anything.
        drop(self.done.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Tests the source `ext` as its kind asks ([`test_http`], [`test_command`],
/// [`test_playlist`]); a tone or silence has nothing that can fail. Gives up at `deadline`;
/// blocking.
pub(crate) fn test(ext: &ExternalAudio, root: &Path, deadline: Instant) -> Probe {
    use crate::config::SourceKind;
    match ext.kind {
        SourceKind::Http => test_http(ext, deadline),
        SourceKind::Command => test_command(ext, deadline),
        SourceKind::Playlist => test_playlist(ext, root, deadline),
        SourceKind::Tone => Probe::passed(
            "a tone is made by the server",
            Some(format!(
                "tone, {} Hz, {} dBFS, 8000 Hz, 1 channel",
                ext.frequency_hz.unwrap_or(crate::live::FALLBACK_TONE_HZ),
                ext.level_dbfs.unwrap_or(crate::live::DEFAULT_TONE_DBFS)
            )),
        ),
        SourceKind::Silence => Probe::passed(
            "silence is made by the server",
            Some("silence, 8000 Hz, 1 channel".into()),
        ),
    }
}
