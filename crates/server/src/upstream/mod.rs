//! The workers of live sources fed from outside the server: `kind = "http"` (Icecast,
//! Shoutcast and other internet radio, see [`http`]) and `kind = "command"` (a program's
//! stdout, see [`command`]).
//!
//! Each source has one worker thread. It blocks on its socket or pipe — which is why it is
//! a thread of its own and not a task on the control plane's runtime — decodes what
//! arrives and pushes 8 kHz mono into the source's [`Upstream`]. The media crate's
//! [`UpstreamFeed`] plays that on the source's producer thread, with a pre-buffer, and
//! plays the fallback whenever the upstream cannot be played; the worker only has to
//! reconnect. It does so with exponential backoff and jitter ([`Backoff`]), and logs an
//! outage once when it begins and once when it ends, not once per attempt.
//!
//! [`probe`] tests an upstream on demand (the API's "test" of a source) with the same
//! client, decoders and program handling, on an upstream of its own that nobody plays.
//!
//! The framework lives here, split from the media crate's half, because this half does the
//! I/O: sockets, TLS, processes. Everything that touches samples (decoding, the queue, the
//! fallback) is in `imss_media`.

mod command;
mod http;
mod icy;
mod playlist;
pub(crate) mod probe;

use std::ops::ControlFlow;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use imss_media::{
    Fallback, LiveFeed, Overflow, PcmFormat, StreamInfo, Upstream, UpstreamFeed, UpstreamSettings,
    UpstreamWriter,
};
use rand::Rng;

use crate::config::{CommandFormat, ExternalAudio, SourceKind};

/// A connection that delivered audio this long was a success: the backoff starts over.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// How long dropping a worker waits for its thread before leaving it to finish alone (a
/// read blocked on a silent socket returns within `stall_ms`).
const JOIN_WAIT: Duration = Duration::from_secs(1);
/// Slices of a backoff wait, between which a stop is noticed.
const SLEEP_SLICE: Duration = Duration::from_millis(50);
/// An outage still going on is logged again this often.
const OUTAGE_REMINDER: Duration = Duration::from_secs(600);

/// What a worker plays.
enum Source {
    Http { url: url::Url, agent: ureq::Agent },
    Command(command::CommandSpec),
}

/// Reconnection timing.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Retry {
    min: Duration,
    max: Duration,
}

/// Starts the worker of an `http` or `command` source: the feed to spawn the source's
/// producer with, and the worker that must live as long as the source.
pub(crate) fn start(
    ext: &ExternalAudio,
    fallback: Fallback,
) -> Result<(Box<dyn LiveFeed>, UpstreamWorker), String> {
    let ms = |v: Option<u32>, default: u32| Duration::from_millis(u64::from(v.unwrap_or(default)));
    let settings = UpstreamSettings {
        prebuffer: ms(ext.prebuffer_ms, ExternalAudio::DEFAULT_PREBUFFER_MS),
        stall: ms(ext.stall_ms, ExternalAudio::DEFAULT_STALL_MS),
        // A stream is read as it arrives, so that its end is seen at once; a program is
        // paced by its pipe.
        overflow: match ext.kind {
            SourceKind::Command => Overflow::Wait,
            _ => Overflow::DropOldest,
        },
    };
    let retry = Retry {
        min: ms(
            ext.reconnect_min_ms,
            ExternalAudio::DEFAULT_RECONNECT_MIN_MS,
        ),
        max: ms(
            ext.reconnect_max_ms,
            ExternalAudio::DEFAULT_RECONNECT_MAX_MS,
        ),
    };
    let source = match ext.kind {
        SourceKind::Http => {
            let url = ext.url.as_deref().ok_or("no url")?;
            Source::Http {
                url: url::Url::parse(url).map_err(|e| format!("url {url:?}: {e}"))?,
                agent: http::agent(settings.stall),
            }
        }
        SourceKind::Command => Source::Command(command_spec(ext)?),
        other => return Err(format!("kind {other:?} has no upstream")),
    };
    let (up, writer) = Upstream::new(&ext.name, settings);
    // A lazy source connects when its first listener arrives.
    up.set_wanted(ext.idle_stop().is_none());
    let feed = UpstreamFeed::new(Arc::clone(&up), fallback);
    let worker = UpstreamWorker::spawn(up, writer, source, retry)
        .map_err(|e| format!("cannot start the upstream thread: {e}"))?;
    Ok((Box::new(feed), worker))
}

/// The program of a `command` source, as configured.
fn command_spec(ext: &ExternalAudio) -> Result<command::CommandSpec, String> {
    let line = ext.command.as_deref().ok_or("no command")?;
    let argv = shlex::split(line)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| format!("command {line:?} cannot be split into words"))?;
    let format = match ext.format {
        Some(CommandFormat::Wav) => PcmFormat::Wav,
        Some(CommandFormat::S16le) | None => PcmFormat::S16Le {
            sample_rate: ext.sample_rate.unwrap_or(8000),
            channels: ext.channels.unwrap_or(1),
        },
    };
    Ok(command::CommandSpec {
        argv,
        line: line.to_string(),
        format,
    })
}

/// A running upstream worker thread; stopped (and its program killed) on drop.
pub(crate) struct UpstreamWorker {
    up: Arc<Upstream>,
    thread: Option<JoinHandle<()>>,
}

impl UpstreamWorker {
    fn spawn(
        up: Arc<Upstream>,
        writer: UpstreamWriter,
        source: Source,
        retry: Retry,
    ) -> std::io::Result<UpstreamWorker> {
        let thread = std::thread::Builder::new()
            .name(format!("upstream-{}", up.name()))
            .spawn(move || run(writer, &source, retry))?;
        Ok(UpstreamWorker {
            up,
            thread: Some(thread),
        })
    }

    /// The upstream's shared state (health figures).
    pub(crate) fn upstream(&self) -> &Arc<Upstream> {
        &self.up
    }
}

impl Drop for UpstreamWorker {
    fn drop(&mut self) {
        self.up.stop();
        let Some(thread) = self.thread.take() else {
            return;
        };
        let until = Instant::now() + JOIN_WAIT;
        while !thread.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !thread.is_finished() {
            tracing::debug!(
                source = self.up.name(),
                "upstream worker left to finish its read"
            );
        } else if thread.join().is_err() {
            tracing::error!(source = self.up.name(), "upstream worker panicked");
        }
    }
}

/// The worker's loop: play, and when that ends, wait and play again, until stopped.
fn run(mut writer: UpstreamWriter, source: &Source, retry: Retry) {
    let up = Arc::clone(writer.upstream());
    let mut backoff = Backoff::new(retry);
    let mut outage = Outage::default();
    while !up.is_stopped() {
        if !up.is_wanted() {
            // Idle for want of listeners: no connection, no program, until one arrives.
            up.stopped();
            while !up.is_stopped() && !up.is_wanted() {
                std::thread::sleep(SLEEP_SLICE);
            }
            backoff.reset();
            continue;
        }
        let mut attempt = Attempt::new(&mut writer, &mut outage);
        let reason = match source {
            Source::Http { url, agent } => http::play(agent, url, &mut attempt),
            Source::Command(spec) => command::play(spec, &mut attempt),
        };
        let played = attempt.audio_since.map(|t| t.elapsed());
        // A program that played and ended: its last audio still plays while it restarts.
        let clean = attempt.ended_cleanly && played.is_some();
        if clean {
            writer.end_output();
        } else {
            writer.end_connection();
        }
        if up.is_stopped() {
            break;
        }
        if !up.is_wanted() {
            tracing::info!(
                source = up.name(),
                "upstream let go: the source has no listeners"
            );
            // An outage ends with the wish to be connected.
            outage.since = None;
            outage.attempts = 0;
            continue;
        }
        up.failed(&reason);
        if clean {
            // A program that plays something and exits (looping a file, say) is working as
            // configured: no outage for the log, its exit status is in the health.
            tracing::debug!(
                source = up.name(),
                reason,
                "upstream output ended; starting it again"
            );
        } else {
            outage.begin(&up, &reason, played);
        }
        if played.is_some_and(|p| p >= STABLE_AFTER) {
            backoff.reset();
        }
        let wait = backoff.next();
        tracing::debug!(
            source = up.name(),
            wait_ms = wait.as_millis() as u64,
            "reconnecting after a pause"
        );
        let until = Instant::now() + wait;
        while !up.should_let_go() {
            let now = Instant::now();
            if now >= until {
                break;
            }
            std::thread::sleep((until - now).min(SLEEP_SLICE));
        }
    }
    up.stopped();
}

/// One round of playing an upstream: the worker's writer and its outage log.
pub(super) struct Attempt<'a> {
    writer: &'a mut UpstreamWriter,
    outage: &'a mut Outage,
    /// When this round delivered its first audio.
    audio_since: Option<Instant>,
    /// The upstream's output ended as it may (a program's did), rather than failed.
    ended_cleanly: bool,
    /// Samples decoded this round.
    samples: u64,
    /// The round ends once this many samples were decoded: a test of the upstream
    /// ([`probe`]), not a source's worker.
    enough: Option<u64>,
}

impl<'a> Attempt<'a> {
    /// A round of the worker that owns `writer`, logging outages in `outage`.
    fn new(writer: &'a mut UpstreamWriter, outage: &'a mut Outage) -> Attempt<'a> {
        Attempt {
            writer,
            outage,
            audio_since: None,
            ended_cleanly: false,
            samples: 0,
            enough: None,
        }
    }

    /// The upstream being fed.
    fn upstream(&self) -> &Arc<Upstream> {
        self.writer.upstream()
    }

    /// Queues decoded audio; breaks once the source stopped.
    fn push(&mut self, samples: &[f32]) -> ControlFlow<()> {
        if self.audio_since.is_none() {
            self.audio_since = Some(Instant::now());
            self.outage.end(self.writer.upstream());
        }
        self.samples += samples.len() as u64;
        let flow = self.writer.push(samples);
        if self.enough.is_some_and(|n| self.samples >= n) {
            return ControlFlow::Break(());
        }
        flow
    }

    /// Whether this round delivered audio.
    fn heard_audio(&self) -> bool {
        self.audio_since.is_some()
    }
}

/// Records the upstream's format and logs it.
fn format_known(up: &Upstream, info: &StreamInfo) {
    tracing::debug!(
        source = up.name(),
        codec = %info.codec,
        sample_rate = info.sample_rate,
        channels = info.channels,
        "upstream format"
    );
    up.set_format(info);
}

/// Logs an outage once when it begins, once when it ends (and a reminder while it lasts),
/// rather than once per failed attempt.
#[derive(Default)]
struct Outage {
    /// When the current outage began; `None` while the upstream plays.
    since: Option<Instant>,
    /// Failed attempts in the current outage.
    attempts: u32,
    last_reminder: Option<Instant>,
    /// The upstream has played at least once.
    ever_played: bool,
}

impl Outage {
    fn begin(&mut self, up: &Upstream, reason: &str, played: Option<Duration>) {
        self.attempts += 1;
        let now = Instant::now();
        match self.since {
            None => {
                self.since = Some(now);
                self.last_reminder = Some(now);
                tracing::warn!(
                    source = up.name(),
                    error = reason,
                    played_s = played.map(|p| p.as_secs()),
                    "upstream lost; listeners hear the fallback while it reconnects"
                );
            }
            Some(since) => {
                if self
                    .last_reminder
                    .is_some_and(|t| now - t >= OUTAGE_REMINDER)
                {
                    self.last_reminder = Some(now);
                    tracing::warn!(
                        source = up.name(),
                        error = reason,
                        attempts = self.attempts,
                        down_s = (now - since).as_secs(),
                        "upstream still down"
                    );
                } else {
                    tracing::debug!(
                        source = up.name(),
                        error = reason,
                        attempts = self.attempts,
                        "upstream attempt failed"
                    );
                }
            }
        }
    }

    fn end(&mut self, up: &Upstream) {
        let status = up.status();
        let upstream = status.upstream.as_deref().unwrap_or_default();
        match self.since.take() {
            Some(since) => tracing::info!(
                source = up.name(),
                upstream,
                attempts = self.attempts,
                down_ms = since.elapsed().as_millis() as u64,
                "upstream recovered"
            ),
            None if !self.ever_played => {
                tracing::info!(source = up.name(), upstream, codec = ?status.codec, "upstream delivers audio");
            }
            None => {}
        }
        self.attempts = 0;
        self.ever_played = true;
    }
}

/// Exponential backoff with jitter: waits double from `min` up to `max`, each drawn at
/// random from the upper half of its step so that many servers reconnecting to one
/// upstream spread out.
struct Backoff {
    retry: Retry,
    step: Duration,
}

impl Backoff {
    fn new(retry: Retry) -> Backoff {
        Backoff {
            retry,
            step: retry.min,
        }
    }

    fn next(&mut self) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.retry.max);
        step.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
    }

    fn reset(&mut self) {
        self.step = self.retry.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::live::LiveSources;
    use imss_media::{ClipCache, Law, SourceState};

    /// The share of the energy of 8 kHz μ-law `codes` at `hz`.
    fn tone_share(codes: &[u8], hz: f64) -> f64 {
        let (mut s, mut c, mut p) = (0.0, 0.0, 0.0);
        for (i, &b) in codes.iter().enumerate() {
            let x = f64::from(Law::Pcmu.decode(b));
            let w = std::f64::consts::TAU * hz * i as f64 / 8000.0;
            s += x * w.sin();
            c += x * w.cos();
            p += x * x;
        }
        let n = codes.len() as f64;
        let amp = 2.0 * s.hypot(c) / n;
        (amp * amp / 2.0) / (p / n).max(1e-9)
    }

    #[test]
    fn sources_start_after_their_fallback_and_report_their_health() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A port nothing listens on: the stream fails at once, every time.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        let text = format!(
            "[general]\ndata_dir = \"{}\"\n\
             [[external_audio]]\nname = \"radio\"\nkind = \"http\"\n\
             url = \"http://127.0.0.1:{port}/live.mp3\"\nfallback = \"line\"\n\
             reconnect_min_ms = 50\nreconnect_max_ms = 100\nidle_stop_s = 1\n\
             [[external_audio]]\nname = \"line\"\nkind = \"command\"\n\
             command = \"sh -c 'exec sleep 30'\"\nfallback = \"beep\"\nstall_ms = 60000\n\
             idle_stop_s = 1\n\
             [[external_audio]]\nname = \"beep\"\nkind = \"tone\"\nfrequency_hz = 1000\n\
             idle_stop_s = 0\n",
            dir.path().display()
        );
        let config = Config::from_toml(&text, std::path::Path::new("test.toml")).expect("config");
        let sources = LiveSources::start(&config, &Arc::new(ClipCache::new(0)), None);
        // Nobody listens yet: nothing connects, no program runs.
        std::thread::sleep(Duration::from_millis(300));
        for name in ["radio", "line", "beep"] {
            let status = sources.status(name).expect("configured");
            assert_eq!(status.state, SourceState::Idle, "{status:?}");
            assert_eq!(status.listeners, 0, "{status:?}");
        }
        assert_eq!(sources.health("radio").expect("health").upstream, None);
        // radio → line → beep: the radio's listeners hear the tone through two fallbacks,
        // which start because radio, then line, listen to them.
        let ring = sources.ring("RADIO").expect("radio runs");
        let listener = ring.listen();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut codes = [0u8; 800];
            let pos = ring.position_at(Instant::now());
            let share = if ring.read(Law::Pcmu, pos, &mut codes) {
                tone_share(&codes, 1000.0)
            } else {
                0.0
            };
            if share > 0.9 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "radio's listeners do not hear beep ({share:.3}): {:?}",
                sources.statuses()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(sources.status("radio").expect("radio").listeners, 1);
        assert_eq!(
            sources.status("line").expect("line").listeners,
            1,
            "radio plays line"
        );

        let deadline = Instant::now() + Duration::from_secs(5);
        let radio = loop {
            let h = sources.health("radio").expect("radio has health");
            if h.reconnects >= 2 {
                break h;
            }
            assert!(Instant::now() < deadline, "no reconnection: {h:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            matches!(radio.state, SourceState::Failed | SourceState::Connecting),
            "{radio:?}"
        );
        assert!(
            radio
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("/live.mp3")),
            "{radio:?}"
        );
        assert_eq!(
            radio.upstream.as_deref(),
            Some(format!("http://127.0.0.1:{port}/live.mp3").as_str())
        );
        // The command runs but writes nothing: connected, listeners on the fallback.
        let line = sources.health("line").expect("line has health");
        assert_eq!(line.state, SourceState::Fallback, "{line:?}");
        assert_eq!(line.upstream.as_deref(), Some("sh -c 'exec sleep 30'"));
        assert!(sources.health("beep").is_none(), "a tone has no upstream");
        assert!(sources.health("nope").is_none());

        // The last listener leaves: after idle_stop_s radio stops, which lets line go, whose
        // program is stopped in turn.
        drop(listener);
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            let states: Vec<_> = sources.statuses();
            if states
                .iter()
                .all(|s| s.state == SourceState::Idle && s.listeners == 0)
            {
                break;
            }
            assert!(Instant::now() < deadline, "sources still run: {states:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Retry {
            min: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        });
        let steps = [100u64, 200, 400, 800, 1000, 1000];
        for _ in 0..20 {
            b.reset();
            for step in steps {
                let d = b.next().as_millis() as u64;
                assert!((step / 2..=step).contains(&d), "step {step} ms gave {d} ms");
            }
        }
        // Jitter: not every wait of a step is the same.
        let waits: std::collections::HashSet<u128> = (0..20)
            .map(|_| {
                b.reset();
                b.next().as_micros()
            })
            .collect();
        assert!(waits.len() > 5, "{waits:?}");
    }
}
