//! The server's figures: Prometheus metrics (`GET /metrics`) and the dashboard's status
//! snapshot (`GET /api/v1/status`).
//!
//! The exposition is written by `prometheus-client`, the Prometheus project's own Rust
//! client: it encodes the OpenMetrics text format (HELP/TYPE lines, label escaping,
//! cumulative histogram buckets) and has no HTTP stack of its own, so `/metrics` is one more
//! axum route. The `metrics` crate with its Prometheus exporter was the alternative; its
//! exporter brings hyper and a listener of its own, and its global recorder would mix the
//! figures of several servers started in one test process.
//!
//! Figures are kept where they happen, as plain atomics, and read only when scraped:
//! - the control plane (one thread) counts SIP and MRCP responses in [`Metrics`] with one
//!   relaxed atomic add each, and every call in the call table holds a [`SessionGuard`]
//!   that counts it in and out of the session gauges;
//! - the pacing engine keeps its own counters and lateness buckets (`imss_rtp::PacerStats`);
//! - HTTP audio, voicemail and text-to-speech count on the blocking threads that do the
//!   work ([`FetchStats`], [`MailStats`], [`LatencyHistogram`]; only voicemail failures by
//!   cause and the last failure's text sit behind a short mutex, off the control plane);
//! - live sources are asked for their state at scrape time.
//!
//! The status snapshot needs rates (packets per second, CPU), so a sampler task on the
//! control plane ([`spawn_sampler`]) takes one every second and stores it as JSON; the
//! endpoint serves the stored text.

use crate::Shared;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

/// What kind of session a call is, as far as the call table can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SessionKind {
    /// An MRCPv2 session (SIP dialog with control channels).
    Mrcp,
    /// A plain SIP call to a live source (music on hold).
    SipSource,
    /// A plain SIP RFC 4240 announcement of a file or URL.
    SipAnnouncement,
}

impl SessionKind {
    const ALL: [SessionKind; 3] = [
        SessionKind::Mrcp,
        SessionKind::SipSource,
        SessionKind::SipAnnouncement,
    ];

    fn label(self) -> &'static str {
        match self {
            SessionKind::Mrcp => "mrcp",
            SessionKind::SipSource => "sip_source",
            SessionKind::SipAnnouncement => "sip_announcement",
        }
    }
}

/// Status codes 100–699 counted one atomic each (SIP and MRCP codes are three digits).
struct CodeCounters(Box<[AtomicU64]>);

impl CodeCounters {
    const FIRST: u16 = 100;
    const LAST: u16 = 699;

    fn new() -> CodeCounters {
        CodeCounters(
            (Self::FIRST..=Self::LAST)
                .map(|_| AtomicU64::new(0))
                .collect(),
        )
    }

    fn count(&self, code: u16) {
        if let Some(c) = code
            .checked_sub(Self::FIRST)
            .and_then(|i| self.0.get(usize::from(i)))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `(code, count)` of every code seen.
    fn seen(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.0.iter().enumerate().filter_map(|(i, c)| {
            let n = c.load(Ordering::Relaxed);
            (n > 0).then(|| (Self::FIRST + i as u16, n))
        })
    }

    #[cfg(test)]
    fn get(&self, code: u16) -> u64 {
        code.checked_sub(Self::FIRST)
            .and_then(|i| self.0.get(usize::from(i)))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// Counters the control plane writes: sessions by kind, SIP and MRCP responses.
pub(crate) struct Metrics {
    sessions: [AtomicI64; 3],
    /// MRCPv2 sessions whose active SPEAK plays voicemail, and those that speak text,
    /// counted by the SIP shell once a second.
    pub speaking_voicemail: AtomicU64,
    /// See `speaking_voicemail`.
    pub speaking_tts: AtomicU64,
    sip_responses: CodeCounters,
    mrcp_responses: CodeCounters,
    /// SPEAK-COMPLETE events by completion cause code (000–099).
    completions: [AtomicU64; 100],
    /// Names of the completion causes seen, by code.
    completion_names: [std::sync::OnceLock<&'static str>; 100],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            sessions: Default::default(),
            speaking_voicemail: AtomicU64::new(0),
            speaking_tts: AtomicU64::new(0),
            sip_responses: CodeCounters::new(),
            mrcp_responses: CodeCounters::new(),
            completions: std::array::from_fn(|_| AtomicU64::new(0)),
            completion_names: std::array::from_fn(|_| std::sync::OnceLock::new()),
        }
    }
}

impl Metrics {
    /// Counts a session in; it is counted out when the guard drops.
    pub fn session(self: &Arc<Self>, kind: SessionKind) -> SessionGuard {
        self.sessions[kind as usize].fetch_add(1, Ordering::Relaxed);
        SessionGuard {
            metrics: Arc::clone(self),
            kind,
        }
    }

    /// Sessions of `kind` now.
    pub fn sessions(&self, kind: SessionKind) -> u64 {
        self.sessions[kind as usize].load(Ordering::Relaxed).max(0) as u64
    }

    /// Counts a SIP message about to be sent when it is a response (`SIP/2.0 NNN …`).
    pub fn sip_sent(&self, bytes: &[u8]) {
        if let Some(code) = bytes
            .strip_prefix(b"SIP/2.0 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| d.parse::<u16>().ok())
        {
            self.sip_responses.count(code);
        }
    }

    /// SIP responses sent with `code` so far.
    #[cfg(test)]
    fn sip_responses(&self, code: u16) -> u64 {
        self.sip_responses.get(code)
    }

    /// Counts an MRCP message about to be sent: responses by status code, SPEAK-COMPLETE by
    /// completion cause.
    pub fn mrcp_sent(&self, message: &imss_mrcp::Message) {
        use imss_mrcp::message::{EventName, StartLine};
        match &message.start {
            StartLine::Response { status, .. } => self.mrcp_responses.count(status.as_u16()),
            StartLine::Event {
                event: EventName::SpeakComplete,
                ..
            } => {
                if let Ok(Some(cause)) = message.headers.completion_cause() {
                    let code = usize::from(cause.code());
                    if let Some(c) = self.completions.get(code) {
                        c.fetch_add(1, Ordering::Relaxed);
                        let _ = self.completion_names[code].set(cause.name());
                    }
                }
            }
            _ => {}
        }
    }
}

/// One session counted in [`Metrics`]; counted out on drop (the call table entry went).
pub(crate) struct SessionGuard {
    metrics: Arc<Metrics>,
    kind: SessionKind,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.metrics.sessions[self.kind as usize].fetch_sub(1, Ordering::Relaxed);
    }
}

/// A histogram of durations with fixed bounds, updated with atomics only (no lock), so any
/// thread may observe into it.
pub struct LatencyHistogram {
    /// Upper bounds in seconds; one more bucket holds the rest.
    bounds: &'static [f64],
    buckets: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

/// Bounds for work measured in milliseconds to seconds (a synthesis, a mail fetch).
pub const SECONDS_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram::new(SECONDS_BOUNDS)
    }
}

impl LatencyHistogram {
    /// A histogram with these upper bounds (seconds, increasing).
    pub fn new(bounds: &'static [f64]) -> LatencyHistogram {
        LatencyHistogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Counts one duration.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = self.bounds.partition_point(|&b| b < s);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Durations counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// `(upper bound, count in that bucket)`, the last bound infinite, and the sum in seconds.
    fn snapshot(&self) -> (Vec<(f64, u64)>, f64) {
        let buckets = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, b)| {
                (
                    self.bounds.get(i).copied().unwrap_or(f64::INFINITY),
                    b.load(Ordering::Relaxed),
                )
            })
            .collect();
        (buckets, self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9)
    }
}

/// Counters of the HTTP audio fetcher.
#[derive(Default)]
pub struct FetchStats {
    /// Requests for a URI answered from memory or disk without asking the origin.
    pub cache_hits: AtomicU64,
    /// Requests that had to ask the origin (a full fetch or a revalidation).
    pub cache_misses: AtomicU64,
    /// HTTP requests sent to origins (redirect hops each count).
    pub fetches: AtomicU64,
    /// Requests that ended without audio.
    pub failures: AtomicU64,
}

/// Counters of voicemail.
#[derive(Default)]
pub struct MailStats {
    /// Time from the request to the first audio of an IMAP message (or its failure).
    pub imap_fetch: LatencyHistogram,
    /// Messages played from the decoded-voicemail cache.
    pub cache_hits: AtomicU64,
    /// Failures by Failed-URI-Cause token (`not-found`, `login-rejected`, `timeout`, …).
    failures: Mutex<Vec<(String, u64)>>,
    /// The last failure, for the dashboard.
    last_error: Mutex<Option<String>>,
}

impl MailStats {
    /// Counts a failure with its cause token and reason.
    pub fn failed(&self, cause: &str, reason: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match failures.iter_mut().find(|(c, _)| c == cause) {
            Some((_, n)) => *n += 1,
            None => failures.push((cause.to_string(), 1)),
        }
        drop(failures);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.to_string());
    }

    fn failures(&self) -> Vec<(String, u64)> {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

// ---- the exposition ------------------------------------------------------------------------

/// The `/metrics` exposition of a running server.
pub(crate) struct Exporter {
    registry: Registry,
}

impl Exporter {
    /// An exporter reading `shared` while the server runs (empty once it is gone).
    pub fn new(shared: &Arc<Shared>) -> Exporter {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ServerCollector {
            shared: Arc::downgrade(shared),
        }));
        Exporter { registry }
    }

    /// The OpenMetrics text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            // Writing into a String cannot fail.
            out.clear();
        }
        out
    }
}

/// What `GET /metrics` serves and who may read it, from `[http]`.
pub(crate) fn metrics_endpoint(
    shared: &Arc<Shared>,
) -> (
    imss_web::metrics::RenderText,
    imss_web::metrics::MetricsAccess,
) {
    let exporter = Exporter::new(shared);
    let access = match (
        &shared.config.http.metrics,
        &shared.config.http.metrics_token,
    ) {
        (crate::config::MetricsAccess::Token, Some(token)) => {
            imss_web::metrics::MetricsAccess::Token(token.clone())
        }
        _ => imss_web::metrics::MetricsAccess::Open,
    };
    (Arc::new(move || exporter.render()), access)
}

struct ServerCollector {
    shared: Weak<Shared>,
}

impl std::fmt::Debug for ServerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerCollector")
    }
}

type Labels = Vec<(&'static str, String)>;

/// Writes one metric family from `(labels, value)` pairs.
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    members: impl IntoIterator<Item = (Labels, M)>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in members {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

fn histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    buckets: &[(f64, u64)],
    sum: f64,
) -> Result<(), std::fmt::Error> {
    let count = buckets.iter().map(|(_, n)| n).sum();
    encoder
        .encode_descriptor(name, help, None, MetricType::Histogram)?
        .encode_histogram::<NoLabelSet>(sum, count, buckets, None)
}

/// The pacer's lateness buckets as `(upper bound in seconds, count)`.
pub(crate) fn lateness_buckets(l: &imss_rtp::Lateness) -> Vec<(f64, u64)> {
    l.buckets
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let bound = imss_rtp::pacing::LATENESS_BOUNDS_NS
                .get(i)
                .map_or(f64::INFINITY, |&ns| ns as f64 / 1e9);
            (bound, n)
        })
        .collect()
}

impl Collector for ServerCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(shared) = self.shared.upgrade() else {
            return Ok(());
        };
        let m = &shared.metrics;
        let kinds = SessionKind::ALL.iter().map(|k| {
            (
                vec![("kind", k.label().to_string())],
                ConstGauge::new(m.sessions(*k) as i64),
            )
        });
        family(
            &mut e,
            "imss_sessions",
            "Sessions in the call table, by kind",
            MetricType::Gauge,
            kinds,
        )?;
        gauge(
            &mut e,
            "imss_sessions_max",
            "Call limit (sip.max_calls)",
            shared.config.sip.max_calls as i64,
        )?;

        let p = shared.pacer.stats();
        gauge(
            &mut e,
            "imss_streams",
            "RTP streams on the pacing threads",
            p.streams as i64,
        )?;
        counter(
            &mut e,
            "imss_rtp_packets_sent",
            "RTP packets handed to the kernel",
            p.packets_sent,
        )?;
        counter(
            &mut e,
            "imss_rtp_octets_sent",
            "RTP octets (headers included) handed to the kernel",
            p.octets_sent,
        )?;
        counter(
            &mut e,
            "imss_rtp_send_errors",
            "RTP and RTCP sends that failed",
            p.send_errors,
        )?;
        counter(
            &mut e,
            "imss_rtp_skipped_packets",
            "RTP packets skipped because a pacing thread woke too late to send them usefully",
            p.skipped_packets,
        )?;
        counter(
            &mut e,
            "imss_rtcp_sent",
            "RTCP compound packets sent",
            p.rtcp_sent,
        )?;
        histogram(
            &mut e,
            "imss_rtp_lateness_seconds",
            "How late each RTP packet left against its deadline (pacing wake-up time)",
            &lateness_buckets(&p.lateness),
            p.lateness.sum_ns as f64 / 1e9,
        )?;

        let sources = shared.sources.statuses();
        family(
            &mut e,
            "imss_source_listeners",
            "Listeners of each live source (callers, and sources using it as fallback)",
            MetricType::Gauge,
            sources.iter().map(|s| {
                (
                    vec![("source", s.name.clone())],
                    ConstGauge::new(s.listeners as i64),
                )
            }),
        )?;
        const STATES: [imss_media::SourceState; 5] = [
            imss_media::SourceState::Idle,
            imss_media::SourceState::Connecting,
            imss_media::SourceState::Playing,
            imss_media::SourceState::Fallback,
            imss_media::SourceState::Failed,
        ];
        family(
            &mut e,
            "imss_source_state",
            "State of each live source: 1 for the state it is in, 0 for the others",
            MetricType::Gauge,
            sources.iter().flat_map(|s| {
                STATES.iter().map(move |st| {
                    (
                        vec![
                            ("source", s.name.clone()),
                            ("state", st.as_str().to_string()),
                        ],
                        ConstGauge::new(i64::from(s.state == *st)),
                    )
                })
            }),
        )?;
        family(
            &mut e,
            "imss_source_reconnects",
            "Upstream connection attempts after the first, of http and command sources",
            MetricType::Counter,
            sources.iter().filter_map(|s| {
                s.upstream.as_ref().map(|u| {
                    (
                        vec![("source", s.name.clone())],
                        ConstCounter::new(u.reconnects),
                    )
                })
            }),
        )?;

        let f = shared.http_audio.stats();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        counter(
            &mut e,
            "imss_http_audio_cache_hits",
            "HTTP audio requests answered from memory or disk without asking the origin",
            load(&f.cache_hits),
        )?;
        counter(
            &mut e,
            "imss_http_audio_cache_misses",
            "HTTP audio requests that asked the origin (fetch or revalidation)",
            load(&f.cache_misses),
        )?;
        counter(
            &mut e,
            "imss_http_audio_fetches",
            "HTTP requests sent to audio origins (each redirect hop counts)",
            load(&f.fetches),
        )?;
        counter(
            &mut e,
            "imss_http_audio_failures",
            "HTTP audio requests that ended without audio",
            load(&f.failures),
        )?;

        let (hits, misses) = shared.clips.hits_and_misses();
        counter(
            &mut e,
            "imss_audio_cache_hits",
            "Plays of files under the audio root served from the decoded-audio cache",
            hits,
        )?;
        counter(
            &mut e,
            "imss_audio_cache_misses",
            "Plays of files under the audio root that decoded the file",
            misses,
        )?;
        gauge(
            &mut e,
            "imss_audio_cache_bytes",
            "Bytes of decoded audio in the cache of files",
            i64::try_from(shared.clips.used_bytes()).unwrap_or(i64::MAX),
        )?;
        let load_gauge = |c: &AtomicU64| i64::try_from(load(c)).unwrap_or(i64::MAX);
        gauge(
            &mut e,
            "imss_sessions_speaking_voicemail",
            "MRCPv2 sessions whose active SPEAK plays voicemail",
            load_gauge(&shared.metrics.speaking_voicemail),
        )?;
        gauge(
            &mut e,
            "imss_sessions_speaking_text",
            "MRCPv2 sessions whose active SPEAK speaks text",
            load_gauge(&shared.metrics.speaking_tts),
        )?;

        let mail = shared.voicemail.stats();
        let (buckets, sum) = mail.imap_fetch.snapshot();
        histogram(
            &mut e,
            "imss_imap_fetch_seconds",
            "Time from a voicemail request to the first audio of its IMAP message (or its failure)",
            &buckets,
            sum,
        )?;
        counter(
            &mut e,
            "imss_voicemail_cache_hits",
            "Voicemail played from the decoded-message cache",
            load(&mail.cache_hits),
        )?;
        family(
            &mut e,
            "imss_voicemail_failures",
            "Voicemail requests that failed, by Failed-URI-Cause",
            MetricType::Counter,
            mail.failures()
                .into_iter()
                .map(|(cause, n)| (vec![("cause", cause)], ConstCounter::new(n))),
        )?;

        if let Ok(tts) = crate::tts::service(&shared.applied().tts) {
            let s = tts.stats();
            let (buckets, sum) = tts.synthesis_latency().snapshot();
            histogram(
                &mut e,
                "imss_tts_synthesis_seconds",
                "Time the speech engine took per synthesis",
                &buckets,
                sum,
            )?;
            counter(
                &mut e,
                "imss_tts_cache_hits",
                "Text-to-speech requests answered from the cache",
                s.hits,
            )?;
            counter(
                &mut e,
                "imss_tts_cache_misses",
                "Text-to-speech requests the engine rendered",
                s.misses,
            )?;
        }

        family(
            &mut e,
            "imss_sip_responses",
            "SIP responses sent (retransmissions included), by status code",
            MetricType::Counter,
            m.sip_responses
                .seen()
                .map(|(code, n)| (vec![("code", code.to_string())], ConstCounter::new(n))),
        )?;
        family(
            &mut e,
            "imss_mrcp_responses",
            "MRCPv2 responses sent, by status code",
            MetricType::Counter,
            m.mrcp_responses
                .seen()
                .map(|(code, n)| (vec![("code", code.to_string())], ConstCounter::new(n))),
        )?;
        family(
            &mut e,
            "imss_mrcp_speak_complete",
            "SPEAK-COMPLETE events sent, by completion cause",
            MetricType::Counter,
            m.completions.iter().enumerate().filter_map(|(code, c)| {
                let n = c.load(Ordering::Relaxed);
                (n > 0).then(|| {
                    let name = m.completion_names[code].get().copied().unwrap_or("");
                    (
                        vec![("code", format!("{code:03}")), ("cause", name.to_string())],
                        ConstCounter::new(n),
                    )
                })
            }),
        )?;
        gauge(
            &mut e,
            "imss_uptime_seconds",
            "Seconds since the server started",
            shared.started.elapsed().as_secs() as i64,
        )?;
        Ok(())
    }
}

// ---- the status snapshot -------------------------------------------------------------------

/// `GET /api/v1/status`: the dashboard's figures.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Status {
    /// Which server this is.
    pub server: ServerInfo,
    /// Sessions in the call table.
    pub sessions: Sessions,
    /// RTP streams on the pacing threads.
    pub streams: usize,
    /// RTP packets sent per second over the last sampling interval.
    pub packets_per_s: f64,
    /// Lateness quantiles of the packets sent over the last interval, in milliseconds
    /// (`null` when none were sent).
    pub lateness_ms: LatenessMs,
    /// Process CPU over the last interval, in percent of one core.
    pub cpu_percent: f64,
    /// Resident memory, bytes.
    pub memory_rss_bytes: u64,
    /// Room for more calls.
    pub capacity: Capacity,
    /// Live sources.
    pub sources: Vec<SourceInfo>,
    /// Voicemail.
    pub mail: MailInfo,
    /// Text-to-speech cache.
    pub tts: TtsInfo,
    /// The decoded-audio cache of files.
    pub audio_cache: AudioCacheInfo,
    /// The last warnings and errors of the log, newest last.
    pub warnings: Vec<Warning>,
}

/// One warning or error of the log.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Warning {
    /// When (RFC 3339, UTC).
    pub at: String,
    /// `warn` or `error`.
    pub level: &'static str,
    /// The module that logged it.
    pub target: String,
    /// The message and its fields.
    pub message: String,
}

/// The last warnings and errors of the process's log, for the dashboard. The log subscriber
/// pushes them ([`recent_warnings`]); the status snapshot reads them.
#[derive(Debug, Default)]
pub struct RecentWarnings {
    last: Mutex<std::collections::VecDeque<Warning>>,
}

impl RecentWarnings {
    /// How many are kept.
    pub const KEPT: usize = 20;

    /// Records one (the oldest goes beyond [`RecentWarnings::KEPT`]). Messages are cut to
    /// 500 characters.
    pub fn push(&self, level: &'static str, target: &str, mut message: String) {
        if let Some((cut, _)) = message.char_indices().nth(500) {
            message.truncate(cut);
            message.push('…');
        }
        let warning = Warning {
            at: crate::config_file::now_rfc3339(),
            level,
            target: target.to_string(),
            message,
        };
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.len() == Self::KEPT {
            last.pop_front();
        }
        last.push_back(warning);
    }

    /// The ones kept, oldest first.
    pub fn list(&self) -> Vec<Warning> {
        let last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        last.iter().cloned().collect()
    }
}

/// The process's [`RecentWarnings`].
pub fn recent_warnings() -> &'static RecentWarnings {
    static WARNINGS: std::sync::OnceLock<RecentWarnings> = std::sync::OnceLock::new();
    WARNINGS.get_or_init(RecentWarnings::default)
}

/// Name, location, version and uptime.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServerInfo {
    /// `general.name`.
    pub name: String,
    /// `general.location`.
    pub location: String,
    /// The imss version.
    pub version: &'static str,
    /// Seconds since start.
    pub uptime_s: u64,
}

/// Sessions by kind.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sessions {
    /// MRCPv2 sessions.
    pub mrcp: u64,
    /// MRCPv2 sessions playing voicemail now.
    pub voicemail: u64,
    /// MRCPv2 sessions speaking text now.
    pub tts: u64,
    /// Plain SIP calls (announcements and live sources).
    pub plain_sip: u64,
    /// All sessions.
    pub total: u64,
}

/// p50 and p99 in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatenessMs {
    /// Median.
    pub p50: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

/// Call limit and free room.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Capacity {
    /// `sip.max_calls`.
    pub max_calls: usize,
    /// Calls that can still be taken.
    pub free: usize,
}

/// One live source.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SourceInfo {
    /// Configured name.
    pub name: String,
    /// `http`, `playlist`, `command`, `tone` or `silence`.
    pub kind: crate::config::SourceKind,
    /// `idle`, `connecting`, `playing`, `fallback` or `failed`.
    pub state: &'static str,
    /// Listeners now.
    pub listeners: usize,
    /// The upstream's current title.
    pub now_playing: Option<String>,
    /// The upstream's codec.
    pub codec: Option<String>,
    /// The upstream's bit rate.
    pub bitrate_kbps: Option<u32>,
    /// Why the last upstream attempt failed.
    pub last_error: Option<String>,
    /// Upstream connection attempts after the first.
    pub reconnects: u64,
    /// The level of what listeners hear: RMS of the last 100 ms in dBFS (−100 for digital
    /// silence); `null` while the source is idle.
    pub level_dbfs: Option<f64>,
}

/// Voicemail settings and health.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MailInfo {
    /// An IMAP server is configured (`mail.imap_host`).
    pub configured: bool,
    /// The last voicemail failure.
    pub last_error: Option<String>,
    /// The last check of the mail server (once a minute).
    pub server: crate::mail_watch::Reachability,
}

/// Text-to-speech cache counters.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TtsInfo {
    /// Requests answered from the cache.
    pub cache_hits: u64,
    /// Requests the engine rendered.
    pub cache_misses: u64,
}

/// The decoded-audio cache of files under the audio root (`audio.cache_mib`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AudioCacheInfo {
    /// Bytes of decoded audio held.
    pub used_bytes: usize,
    /// The most it holds.
    pub max_bytes: usize,
    /// Files held.
    pub clips: usize,
    /// Plays served from the cache since the start.
    pub hits: u64,
    /// Plays that decoded their file.
    pub misses: u64,
}

/// The process's CPU time (user + system) and resident memory, from `/proc/self`.
fn process_usage() -> Option<(Duration, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let (tck, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let tck = u64::try_from(tck).ok().filter(|t| *t > 0)?;
    let cpu = Duration::from_nanos((utime + stime).saturating_mul(1_000_000_000) / tck);
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some((cpu, pages * u64::try_from(page).unwrap_or(4096)))
}

/// What the sampler keeps between two samples.
struct Sample {
    at: Instant,
    packets: u64,
    lateness: imss_rtp::Lateness,
    cpu: Duration,
}

/// Takes a status snapshot; `previous` gives the rates.
fn snapshot(shared: &Shared, previous: Option<&Sample>) -> (Status, Sample) {
    let now = Instant::now();
    let p = shared.pacer.stats();
    let (cpu, rss) = process_usage().unwrap_or_default();
    let sample = Sample {
        at: now,
        packets: p.packets_sent,
        lateness: p.lateness,
        cpu,
    };
    let (packets_per_s, cpu_percent, lateness) = match previous {
        Some(prev) => {
            let dt = now.duration_since(prev.at).as_secs_f64().max(1e-3);
            (
                p.packets_sent.saturating_sub(prev.packets) as f64 / dt,
                cpu.saturating_sub(prev.cpu).as_secs_f64() / dt * 100.0,
                p.lateness.since(&prev.lateness),
            )
        }
        None => (0.0, 0.0, imss_rtp::Lateness::default()),
    };
    let ms = |d: Option<Duration>| d.map(|d| (d.as_secs_f64() * 1e5).round() / 100.0);
    let m = &shared.metrics;
    let mrcp = m.sessions(SessionKind::Mrcp);
    let plain = m.sessions(SessionKind::SipSource) + m.sessions(SessionKind::SipAnnouncement);
    let total = mrcp + plain;
    let max_calls = shared.config.sip.max_calls;
    let sources = shared
        .sources
        .statuses()
        .into_iter()
        .map(|s| {
            let u = s.upstream.unwrap_or_default();
            SourceInfo {
                level_dbfs: shared.sources.level_dbfs(&s.name),
                name: s.name,
                kind: s.kind,
                state: s.state.as_str(),
                listeners: s.listeners,
                now_playing: u.now_playing,
                codec: u.codec,
                bitrate_kbps: u.bitrate_kbps,
                last_error: u.last_error,
                reconnects: u.reconnects,
            }
        })
        .collect();
    let tts = crate::tts::service(&shared.applied().tts)
        .map(|t| t.stats())
        .unwrap_or_default();
    let status = Status {
        server: ServerInfo {
            name: shared.config.general.name.clone(),
            location: shared.applied().general.location.clone(),
            version: env!("CARGO_PKG_VERSION"),
            uptime_s: shared.started.elapsed().as_secs(),
        },
        sessions: Sessions {
            mrcp,
            voicemail: shared.metrics.speaking_voicemail.load(Ordering::Relaxed),
            tts: shared.metrics.speaking_tts.load(Ordering::Relaxed),
            plain_sip: plain,
            total,
        },
        streams: p.streams,
        packets_per_s: (packets_per_s * 10.0).round() / 10.0,
        lateness_ms: LatenessMs {
            p50: ms(lateness.quantile(0.5)),
            p99: ms(lateness.quantile(0.99)),
        },
        cpu_percent: (cpu_percent * 10.0).round() / 10.0,
        memory_rss_bytes: rss,
        capacity: Capacity {
            max_calls,
            free: max_calls.saturating_sub(usize::try_from(total).unwrap_or(usize::MAX)),
        },
        sources,
        mail: MailInfo {
            configured: shared.applied().mail.imap_host.is_some(),
            last_error: shared.voicemail.stats().last_error(),
            server: crate::mail_watch::last(),
        },
        tts: TtsInfo {
            cache_hits: tts.hits,
            cache_misses: tts.misses,
        },
        audio_cache: {
            let (hits, misses) = shared.clips.hits_and_misses();
            AudioCacheInfo {
                used_bytes: shared.clips.used_bytes(),
                max_bytes: shared.clips.max_bytes(),
                clips: shared.clips.len(),
                hits,
                misses,
            }
        },
        warnings: recent_warnings().list(),
    };
    (status, sample)
}

/// The latest status snapshot as JSON, shared with the HTTP handler.
pub(crate) type StatusCell = Arc<RwLock<Arc<str>>>;

/// How often the status snapshot is taken.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Samples kept for the dashboard's charts: the last 15 minutes.
pub(crate) const HISTORY_POINTS: usize = 900;

/// One second of the charted figures.
#[derive(Debug, Clone, Copy)]
struct Point {
    /// Unix time, ms.
    t: u64,
    streams: usize,
    packets_per_s: f64,
    p50: Option<f64>,
    p99: Option<f64>,
    cpu_percent: f64,
}

/// The figures the dashboard charts, once a second: streams, packets/s, lateness and CPU.
#[derive(Debug, Default)]
pub(crate) struct History {
    points: std::collections::VecDeque<Point>,
}

impl History {
    fn push(&mut self, status: &Status) {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        if self.points.len() == HISTORY_POINTS {
            self.points.pop_front();
        }
        self.points.push_back(Point {
            t,
            streams: status.streams,
            packets_per_s: status.packets_per_s,
            p50: status.lateness_ms.p50,
            p99: status.lateness_ms.p99,
            cpu_percent: status.cpu_percent,
        });
    }

    /// `{"interval_s": 1, "t": [unix ms…], "streams": […], "packets_per_s": […],
    /// "lateness_p50_ms": […], "lateness_p99_ms": […], "cpu_percent": […]}`, oldest first.
    pub(crate) fn to_json(&self) -> String {
        let col = |f: &dyn Fn(&Point) -> serde_json::Value| {
            serde_json::Value::Array(self.points.iter().map(f).collect())
        };
        serde_json::json!({
            "interval_s": SAMPLE_EVERY.as_secs(),
            "t": col(&|p| p.t.into()),
            "streams": col(&|p| p.streams.into()),
            "packets_per_s": col(&|p| p.packets_per_s.into()),
            "lateness_p50_ms": col(&|p| p.p50.into()),
            "lateness_p99_ms": col(&|p| p.p99.into()),
            "cpu_percent": col(&|p| p.cpu_percent.into()),
        })
        .to_string()
    }
}

/// The chart history the sampler keeps.
pub(crate) type HistoryCell = Arc<Mutex<History>>;

/// Takes a first snapshot now and starts the sampler that renews it every second until
/// `shutdown`; returns where the JSON is kept.
pub(crate) fn spawn_sampler(
    shared: &Arc<Shared>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> (StatusCell, HistoryCell, tokio::task::JoinHandle<()>) {
    let (status, mut previous) = snapshot(shared, None);
    let cell: StatusCell = Arc::new(RwLock::new(to_json(&status)));
    let history: HistoryCell = Arc::default();
    let weak = Arc::downgrade(shared);
    let out = Arc::clone(&cell);
    let charted = Arc::clone(&history);
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let Some(shared) = weak.upgrade() else {
                return;
            };
            let (status, sample) = snapshot(&shared, Some(&previous));
            previous = sample;
            let json = to_json(&status);
            *out.write().unwrap_or_else(|p| p.into_inner()) = json;
            charted
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(&status);
        }
    });
    (cell, history, task)
}

fn to_json(status: &Status) -> Arc<str> {
    serde_json::to_string(status)
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        .into()
}

/// The stored JSON of `cell`.
pub(crate) fn read_status(cell: &StatusCell) -> String {
    cell.read().unwrap_or_else(|p| p.into_inner()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_counters_count_three_digit_codes_only() {
        let m = Metrics::default();
        m.sip_sent(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n");
        m.sip_sent(b"SIP/2.0 200 OK\r\n\r\n");
        m.sip_sent(b"SIP/2.0 486 Busy Here\r\n\r\n");
        m.sip_sent(b"BYE sip:a@b SIP/2.0\r\n\r\n");
        m.sip_sent(b"SIP/2.0 99 Odd\r\n\r\n");
        m.sip_sent(b"SIP/2.0 7");
        assert_eq!(m.sip_responses(200), 2);
        assert_eq!(m.sip_responses(486), 1);
        assert_eq!(m.sip_responses.seen().count(), 2);
    }

    #[test]
    fn metrics_access_settings_are_validated() {
        use crate::config::{Config, ConfigError, MetricsAccess};
        let parse = |http: &str| {
            Config::from_toml(&format!("[http]\n{http}\n"), std::path::Path::new("t.toml"))
        };
        let key = |r: Result<Config, ConfigError>| match r {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid key, got {other:?}"),
        };
        let open = parse("").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(open.http.metrics, MetricsAccess::Open);
        assert_eq!(key(parse("metrics = \"token\"")), "http.metrics_token");
        assert_eq!(
            key(parse("metrics = \"token\"\nmetrics_token = \"short\"")),
            "http.metrics_token"
        );
        assert_eq!(
            key(parse("metrics_token = \"0123456789abcdef0123\"")),
            "http.metrics_token"
        );
        let token = parse("metrics = \"token\"\nmetrics_token = \"0123456789abcdef0123\"\nmetrics_bind = \"127.0.0.1:9190\"")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(token.http.metrics, MetricsAccess::Token);
        assert_eq!(token.http.metrics_bind.map(|a| a.port()), Some(9190));
        assert_eq!(
            key(parse("port = 9190\nmetrics_bind = \"127.0.0.1:9190\"")),
            "http.metrics_bind"
        );
        assert!(parse("metrics = \"public\"").is_err());
    }

    #[test]
    fn session_guards_count_in_and_out() {
        let m = Arc::new(Metrics::default());
        let a = m.session(SessionKind::Mrcp);
        let b = m.session(SessionKind::SipSource);
        let c = m.session(SessionKind::Mrcp);
        assert_eq!(m.sessions(SessionKind::Mrcp), 2);
        drop(a);
        assert_eq!(m.sessions(SessionKind::Mrcp), 1);
        drop((b, c));
        assert_eq!(m.sessions(SessionKind::Mrcp), 0);
        assert_eq!(m.sessions(SessionKind::SipSource), 0);
    }

    #[test]
    fn speak_complete_causes_are_counted_by_code() {
        use imss_mrcp::message::{EventName, StartLine};
        let m = Metrics::default();
        let mut ev = imss_mrcp::Message::response(
            1,
            imss_mrcp::StatusCode::SUCCESS,
            imss_mrcp::RequestState::Complete,
        );
        m.mrcp_sent(&ev);
        ev.start = StartLine::Event {
            event: EventName::SpeakComplete,
            request_id: 1,
            state: imss_mrcp::RequestState::Complete,
        };
        let ev = ev.with_header(imss_mrcp::names::COMPLETION_CAUSE, "003 uri-failure");
        m.mrcp_sent(&ev);
        assert_eq!(m.mrcp_responses.get(200), 1);
        assert_eq!(m.completions[3].load(Ordering::Relaxed), 1);
        assert_eq!(m.completion_names[3].get().copied(), Some("uri-failure"));
    }

    /// Encodes what `f` writes with a collector, as `/metrics` does.
    fn exposition(
        f: impl Fn(&mut DescriptorEncoder) -> Result<(), std::fmt::Error> + Send + Sync + 'static,
    ) -> String {
        struct C<F>(F);
        impl<F> std::fmt::Debug for C<F> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("C")
            }
        }
        impl<F> Collector for C<F>
        where
            F: Fn(&mut DescriptorEncoder) -> Result<(), std::fmt::Error> + Send + Sync + 'static,
        {
            fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
                (self.0)(&mut e)
            }
        }
        let mut registry = Registry::default();
        registry.register_collector(Box::new(C(f)));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .unwrap_or_else(|e| panic!("{e}"));
        out
    }

    #[test]
    fn exposition_has_help_type_and_escaped_labels() {
        let text = exposition(|e| {
            counter(
                e,
                "imss_rtp_packets_sent",
                "RTP packets handed to the kernel",
                42,
            )?;
            family(
                e,
                "imss_source_listeners",
                "Listeners of each live source",
                MetricType::Gauge,
                [(
                    vec![("source", "say \"hi\"\\\nnow".to_string())],
                    ConstGauge::new(1),
                )],
            )
        });
        assert!(
            text.contains("# HELP imss_rtp_packets_sent RTP packets handed to the kernel\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE imss_rtp_packets_sent counter\n"),
            "{text}"
        );
        assert!(
            text.contains("\nimss_rtp_packets_sent_total 42\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE imss_source_listeners gauge\n"),
            "{text}"
        );
        assert!(
            text.contains("imss_source_listeners{source=\"say \\\"hi\\\"\\\\\\nnow\"} 1\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn lateness_histogram_is_cumulative_in_seconds() {
        let mut l = imss_rtp::Lateness::default();
        l.record(40_000); // ≤ 50 µs
        l.record(40_000);
        l.record(3_000_000); // ≤ 5 ms
        l.record(500_000_000); // above every bound
        let buckets = lateness_buckets(&l);
        let sum = l.sum_ns as f64 / 1e9;
        let text = exposition(move |e| {
            histogram(e, "imss_rtp_lateness_seconds", "How late", &buckets, sum)
        });
        assert!(
            text.contains("# TYPE imss_rtp_lateness_seconds histogram\n"),
            "{text}"
        );
        assert!(
            text.contains("imss_rtp_lateness_seconds_count 4\n"),
            "{text}"
        );
        assert!(
            text.contains("imss_rtp_lateness_seconds_bucket{le=\"5e-5\"} 2\n")
                || text.contains("imss_rtp_lateness_seconds_bucket{le=\"0.00005\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("imss_rtp_lateness_seconds_bucket{le=\"0.005\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("imss_rtp_lateness_seconds_bucket{le=\"0.1\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("imss_rtp_lateness_seconds_bucket{le=\"+Inf\"} 4\n"),
            "{text}"
        );
        assert!(
            text.contains("imss_rtp_lateness_seconds_sum 0.50308\n"),
            "{text}"
        );
    }

    #[test]
    fn latency_histogram_buckets_by_upper_bound() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_millis(5)); // = 0.005: first bucket
        h.observe(Duration::from_millis(6));
        h.observe(Duration::from_secs(60));
        let (buckets, sum) = h.snapshot();
        assert_eq!(buckets[0], (0.005, 1));
        assert_eq!(buckets[1], (0.01, 1));
        assert_eq!(buckets.last().copied(), Some((f64::INFINITY, 1)));
        assert_eq!(h.count(), 3);
        assert!((sum - 60.011).abs() < 1e-9);
    }
}
