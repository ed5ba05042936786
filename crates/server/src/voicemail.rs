//! Voicemail: the audio of `imap://…` (RFC 5092) and `fbmc:MAILBOX/MESSAGE` URIs in play
//! plans, fetched out of email messages and decoded into clips.
//!
//! An IMAP attachment plays while it downloads: the message's audio part is fetched in
//! partial fetches, transfer-decoded and audio-decoded as it arrives
//! ([`ProgressiveDecoder`]) into a [`GrowingClip`] the stream plays from its first second.
//! Formats that cannot be decoded in pieces (MP3) play once they are complete. Decoded
//! messages are kept, by URI, in a byte-bounded cache, so that a caller who presses
//! "repeat" is not made to wait for the mail server again.
//!
//! What can fail is told apart ([`VoicemailFailure`]): the URI names nothing playable, the
//! mail server cannot be reached or refuses the login, the attachment is too large, or its
//! audio cannot be decoded; each maps to an MRCP completion cause and a Failed-URI-Cause.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use imss_mail::{
    AuthMethod, FetchedMessage, ImapSettings, ImapUrl, MailError, MailStore, MailUri, MessageInfo,
    TlsMode,
};
use imss_media::{Clip, GrowingClip, GrowingClipWriter, MediaError, PlayItem, ProgressiveDecoder};
use imss_mrcp::CompletionCause;
use lru::LruCache;

use crate::config::{Config, Mail};

/// Failed-URI-Cause of an attachment whose audio cannot be decoded (`004 error`).
pub(crate) const UNDECODABLE: &str = "undecodable";
/// Longest a fetch may take when the request gives no Fetch-Timeout.
const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest voicemail played (a GrowingClip's bound), like any decoded file.
const MAX_SAMPLES: usize = imss_media::MAX_DURATION.as_secs() as usize * 8000;

/// Why a voicemail URI could not be played.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VoicemailFailure {
    /// The completion cause to report.
    pub cause: CompletionCause,
    /// For a person: what failed, naming the URI.
    pub reason: String,
    /// Failed-URI-Cause: a short token (`not-found`, `login-rejected`, `timeout`, …).
    pub uri_cause: String,
}

impl VoicemailFailure {
    fn of(uri: &str, e: &MailError) -> VoicemailFailure {
        let (cause, token) = match e {
            MailError::Uri(_) => (CompletionCause::UriFailure, "malformed-uri"),
            MailError::NotFound { .. } => (CompletionCause::UriFailure, "not-found"),
            MailError::Deleted { .. } => (CompletionCause::UriFailure, "deleted"),
            MailError::UidValidityChanged { .. } => {
                (CompletionCause::UriFailure, "uidvalidity-changed")
            }
            MailError::MailboxNotFound { .. } => (CompletionCause::UriFailure, "no-such-mailbox"),
            MailError::TooLarge { .. } => (CompletionCause::UriFailure, "too-large"),
            MailError::NoAudio { .. } => (CompletionCause::UriFailure, "no-audio"),
            MailError::Auth { .. } => (CompletionCause::UriFailure, "login-rejected"),
            MailError::Dns { .. } | MailError::Connect { .. } => {
                (CompletionCause::UriFailure, "unreachable")
            }
            MailError::Tls { .. } => (CompletionCause::UriFailure, "tls"),
            MailError::Timeout { .. } => (CompletionCause::UriFailure, "timeout"),
            MailError::Closed { .. } => (CompletionCause::UriFailure, "connection-closed"),
            MailError::ServerNotConfigured { .. } | MailError::NotConfigured { .. } => {
                (CompletionCause::UriFailure, "not-configured")
            }
            MailError::PathEscape { .. } => (CompletionCause::UriFailure, "outside-store"),
            _ => (CompletionCause::Error, "error"),
        };
        VoicemailFailure {
            cause,
            reason: if e.to_string().contains(uri) {
                e.to_string()
            } else {
                format!("{uri}: {e}")
            },
            uri_cause: token.to_string(),
        }
    }

    fn undecodable(uri: &str, e: &MediaError) -> VoicemailFailure {
        VoicemailFailure {
            cause: CompletionCause::Error,
            reason: format!("{uri}: the attachment's audio cannot be decoded: {e}"),
            uri_cause: UNDECODABLE.into(),
        }
    }

    fn timed_out(uri: &str, after: Duration) -> VoicemailFailure {
        VoicemailFailure {
            cause: CompletionCause::UriFailure,
            reason: format!("{uri}: no answer from the mail server within {after:?}"),
            uri_cause: "timeout".into(),
        }
    }
}

/// Whether `uri` names voicemail (`imap://` or `fbmc:`).
pub(crate) fn is_mail_uri(uri: &str) -> bool {
    let lower = uri.get(..7).unwrap_or(uri).to_ascii_lowercase();
    lower.starts_with("imap://") || lower.starts_with("fbmc:")
}

/// The mail store and the decoded-voicemail cache.
pub(crate) struct Voicemail {
    /// The `[mail]` settings in use; replaced whole when they change.
    settings: std::sync::RwLock<Arc<MailSettings>>,
    /// The mail runtime's handle; the runtime itself is owned by `_mail_runtime`.
    runtime: tokio::runtime::Handle,
    _mail_runtime: MailRuntime,
    cache: Arc<Mutex<Cache>>,
    stats: crate::metrics::MailStats,
}

/// What `[mail]` sets: the store (with its pool of connections) and the limits.
struct MailSettings {
    store: MailStore,
    max_bytes: u64,
    headers_ssml: String,
    /// The `[mail]` section these came from.
    mail: Mail,
}

impl MailSettings {
    fn new(config: &Config) -> Result<MailSettings, MailError> {
        let fbmc_root = config
            .mail
            .fbmc_root
            .clone()
            .unwrap_or_else(|| config.general.data_dir.join("mail"));
        let store = MailStore::new(imap_settings(&config.mail), Some(fbmc_root))?;
        let mib = |v: Option<u32>, default: u32| u64::from(v.unwrap_or(default)) * 1024 * 1024;
        Ok(MailSettings {
            store,
            max_bytes: mib(config.mail.max_message_mib, Mail::DEFAULT_MAX_MESSAGE_MIB),
            headers_ssml: config
                .mail
                .read_headers_ssml
                .clone()
                .unwrap_or_else(|| Mail::DEFAULT_HEADERS_SSML.to_string()),
            mail: config.mail.clone(),
        })
    }
}

/// Decoded messages by URI, bounded in bytes.
struct Cache {
    clips: LruCache<String, Vec<Arc<Clip>>>,
    bytes: usize,
    limit: usize,
}

impl Cache {
    fn size(clips: &[Arc<Clip>]) -> usize {
        clips.iter().map(|c| 2 * c.samples()).sum()
    }

    fn insert(&mut self, uri: String, clips: Vec<Arc<Clip>>) {
        let size = Cache::size(&clips);
        if size > self.limit {
            return;
        }
        if let Some(old) = self.clips.put(uri, clips) {
            self.bytes -= Cache::size(&old);
        }
        self.bytes += size;
        while self.bytes > self.limit {
            match self.clips.pop_lru() {
                Some((_, old)) => self.bytes -= Cache::size(&old),
                None => break,
            }
        }
    }
}

/// The IMAP settings of `[mail]`, or `None` without `imap_host`.
pub(crate) fn imap_settings(mail: &Mail) -> Option<ImapSettings> {
    let host = mail.imap_host.clone()?;
    let tls = match mail.imap_tls.as_deref() {
        Some("none") => TlsMode::None,
        Some("starttls") => TlsMode::StartTls,
        _ => TlsMode::Implicit,
    };
    let ms = |v: Option<u32>, default: u32| Duration::from_millis(u64::from(v.unwrap_or(default)));
    Some(ImapSettings {
        host,
        port: mail.imap_port.unwrap_or(match tls {
            TlsMode::Implicit => 993,
            _ => 143,
        }),
        tls,
        verify_certificates: mail.imap_tls_verify.unwrap_or(true),
        ca_file: mail.imap_ca_file.clone(),
        auth: match mail.imap_auth.as_deref() {
            Some("plain") => AuthMethod::Plain,
            _ => AuthMethod::Login,
        },
        user: mail.imap_user.clone().unwrap_or_default(),
        password: mail.imap_password.clone().unwrap_or_default(),
        users: mail.imap_users.clone(),
        connect_timeout: ms(mail.connect_timeout_ms, Mail::DEFAULT_CONNECT_TIMEOUT_MS),
        read_timeout: ms(mail.read_timeout_ms, Mail::DEFAULT_READ_TIMEOUT_MS),
        pool_size: mail.pool_size.unwrap_or(Mail::DEFAULT_POOL_SIZE) as usize,
        ..ImapSettings::default()
    })
}

impl Voicemail {
    /// The mail store of `config`. Its connections run on a runtime of their own (two
    /// threads), so that downloading attachments — tens of MB/s of TLS and IMAP parsing
    /// under load — never delays the control plane's SIP and MRCP.
    pub fn new(config: &Config) -> Result<Voicemail, MailError> {
        let mail_runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("imss-mail")
            .enable_all()
            .build()
            .map_err(|e| MailError::Settings {
                detail: format!("cannot start the mail threads: {e}"),
            })?;
        let runtime = mail_runtime.handle().clone();
        let settings = MailSettings::new(config)?;
        let mib = |v: Option<u32>, default: u32| u64::from(v.unwrap_or(default)) * 1024 * 1024;
        Ok(Voicemail {
            settings: std::sync::RwLock::new(Arc::new(settings)),
            runtime,
            _mail_runtime: MailRuntime(Some(mail_runtime)),
            cache: Arc::new(Mutex::new(Cache {
                clips: LruCache::unbounded(),
                bytes: 0,
                limit: usize::try_from(mib(config.mail.cache_mib, Mail::DEFAULT_CACHE_MIB))
                    .unwrap_or(usize::MAX),
            })),
            stats: crate::metrics::MailStats::default(),
        })
    }

    /// The settings in use now.
    fn settings(&self) -> Arc<MailSettings> {
        Arc::clone(
            &self
                .settings
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Uses the `[mail]` settings of `config` from now on (fetches under way finish with the
    /// old ones). Returns whether they differ from those in use. The decoded-message cache
    /// stays: a message's audio does not depend on how it was fetched.
    pub fn reconfigure(&self, config: &Config) -> Result<bool, MailError> {
        if self.settings().mail == config.mail {
            return Ok(false);
        }
        let settings = Arc::new(MailSettings::new(config)?);
        *self
            .settings
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = settings;
        Ok(true)
    }

    /// The mail runtime, where connections to the mail server run (a connection test too).
    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// The IMAP settings in use (for a connection test), if a server is configured.
    pub fn imap_settings(&self) -> Option<imss_mail::ImapSettings> {
        imap_settings(&self.settings().mail)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        lock(&self.cache)
    }

    /// The decoded audio of `uri`, if a playback of it completed recently.
    pub fn cached(&self, uri: &str) -> Option<Vec<Arc<Clip>>> {
        self.cache().clips.get(uri).cloned()
    }

    /// What a plan plays for `uri`: one item per audio part, in message order. Blocking
    /// (call it from the blocking pool): returns as soon as the first part's audio can
    /// start, and keeps downloading on a thread of its own. `timeout` bounds the wait for
    /// the mail server (MRCP Fetch-Timeout).
    pub fn items(
        &self,
        uri: &str,
        timeout: Option<Duration>,
    ) -> Result<Vec<PlayItem>, VoicemailFailure> {
        if let Some(clips) = self.cached(uri) {
            tracing::debug!(uri, "voicemail from the cache");
            self.stats
                .cache_hits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(clips.into_iter().map(PlayItem::Clip).collect());
        }
        let result = self.fetch_items(uri, timeout);
        if let Err(f) = &result {
            self.stats.failed(&f.uri_cause, &f.reason);
        }
        result
    }

    /// Voicemail counters, for metrics and the status snapshot.
    pub fn stats(&self) -> &crate::metrics::MailStats {
        &self.stats
    }

    /// [`Voicemail::items`] of a message not in the cache.
    fn fetch_items(
        &self,
        uri: &str,
        timeout: Option<Duration>,
    ) -> Result<Vec<PlayItem>, VoicemailFailure> {
        let parsed = MailUri::parse(uri).map_err(|e| VoicemailFailure::of(uri, &e.into()))?;
        let timeout = timeout.unwrap_or(DEFAULT_FETCH_TIMEOUT);
        match parsed {
            MailUri::Imap(url) => {
                let started = std::time::Instant::now();
                let result = self.stream_imap(uri, &url, timeout);
                self.stats.imap_fetch.observe(started.elapsed());
                result
            }
            MailUri::Fbmc(_) => {
                let message = self.fetch_whole(uri, timeout)?;
                let clips = decode_parts(uri, &message)?;
                self.cache().insert(uri.to_string(), clips.clone());
                Ok(clips.into_iter().map(PlayItem::Clip).collect())
            }
        }
    }

    /// The message's header fields (From, Date, Subject, Asterisk's fields).
    pub fn message_info(
        &self,
        uri: &str,
        timeout: Option<Duration>,
    ) -> Result<MessageInfo, VoicemailFailure> {
        let timeout = timeout.unwrap_or(DEFAULT_FETCH_TIMEOUT);
        let parsed = MailUri::parse(uri).map_err(|e| VoicemailFailure::of(uri, &e.into()))?;
        if let MailUri::Imap(url) = &parsed
            && let Some(client) = self.settings().store.imap()
        {
            let fetch = client.audio_parts(url, self.settings().max_bytes);
            return self
                .block_on(uri, timeout, fetch)?
                .map(|(info, _)| info)
                .map_err(|e| VoicemailFailure::of(uri, &e));
        }
        Ok(self.fetch_whole(uri, timeout)?.info)
    }

    /// The SSML read before a message (`read-headers=true`): the configured template with
    /// the message's fields filled in.
    pub fn headers_ssml(
        &self,
        uri: &str,
        timeout: Option<Duration>,
    ) -> Result<String, VoicemailFailure> {
        let info = self.message_info(uri, timeout)?;
        Ok(fill_template(&self.settings().headers_ssml, &info))
    }

    fn block_on<F: std::future::Future>(
        &self,
        uri: &str,
        timeout: Duration,
        fut: F,
    ) -> Result<F::Output, VoicemailFailure> {
        self.runtime
            .block_on(async { tokio::time::timeout(timeout, fut).await })
            .map_err(|_| VoicemailFailure::timed_out(uri, timeout))
    }

    fn fetch_whole(
        &self,
        uri: &str,
        timeout: Duration,
    ) -> Result<FetchedMessage, VoicemailFailure> {
        let settings = self.settings();
        let fetch = settings.store.fetch_audio(uri, settings.max_bytes);
        self.block_on(uri, timeout, fetch)?
            .map_err(|e| VoicemailFailure::of(uri, &e))
    }

    /// Streams the audio parts of an IMAP message into growing clips.
    fn stream_imap(
        &self,
        uri: &str,
        url: &ImapUrl,
        timeout: Duration,
    ) -> Result<Vec<PlayItem>, VoicemailFailure> {
        let client = self
            .settings()
            .store
            .imap()
            .ok_or_else(|| VoicemailFailure::of(uri, &MailError::NotConfigured { scheme: "imap" }))?
            .clone();
        // The parts to play: the URI's SECTION, else every audio part of the message.
        let (_, parts) = self
            .block_on(
                uri,
                timeout,
                client.audio_parts(url, self.settings().max_bytes),
            )?
            .map_err(|e| VoicemailFailure::of(uri, &e))?;
        let sections: Vec<Option<String>> = parts.into_iter().map(|p| Some(p.section)).collect();
        // The first part's download starts here, so that a failure (a missing message, a
        // refused login) is the request's failure; the rest follow on the same thread.
        let first = self
            .block_on(
                uri,
                timeout,
                client.fetch_part_stream(url, sections[0].as_deref(), self.settings().max_bytes),
            )?
            .map_err(|e| VoicemailFailure::of(uri, &e))?;
        let mut writers = Vec::with_capacity(sections.len());
        let mut items = Vec::with_capacity(sections.len());
        for _ in &sections {
            let (clip, writer) = GrowingClip::named(uri, MAX_SAMPLES);
            items.push(PlayItem::Growing(clip));
            writers.push(writer);
        }
        // The first chunk is decoded before the SPEAK starts: audio is there when playback
        // begins, and an attachment that is not audio fails the request at once.
        let (info, rx) = first;
        let mut first = PartDecode::new(uri, info, rx);
        if let Some(writer) = writers.first_mut() {
            let chunk = self.block_on(uri, timeout, first.rx.recv())?;
            if let Some(chunk) = chunk {
                first.feed(chunk, writer)?;
            }
        }
        let job = Download {
            uri: uri.to_string(),
            url: url.clone(),
            client,
            runtime: self.runtime.clone(),
            max_bytes: self.settings().max_bytes,
            timeout,
        };
        let cache = Arc::clone(&self.cache);
        std::thread::Builder::new()
            .name("voicemail".into())
            .spawn(move || job.run(first, &sections, writers, &cache))
            .map_err(|e| VoicemailFailure {
                cause: CompletionCause::Error,
                reason: format!("{uri}: cannot start the download thread: {e}"),
                uri_cause: "error".into(),
            })?;
        Ok(items)
    }
}

/// The mail runtime, shut down without waiting when the server stops (its tasks are
/// downloads nobody waits for any more).
struct MailRuntime(Option<tokio::runtime::Runtime>);

impl Drop for MailRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

fn lock(cache: &Mutex<Cache>) -> std::sync::MutexGuard<'_, Cache> {
    // Plain values: a panic elsewhere leaves them usable.
    cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One message's remaining download, on its own thread.
struct Download {
    uri: String,
    url: ImapUrl,
    client: imss_mail::ImapClient,
    runtime: tokio::runtime::Handle,
    max_bytes: u64,
    timeout: Duration,
}

/// One audio part being decoded as it downloads.
struct PartDecode {
    uri: String,
    info: imss_mail::PartInfo,
    rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, MailError>>,
    decoder: ProgressiveDecoder,
    /// Everything received, for formats decoded only whole (MP3); dropped once the
    /// progressive decoder has produced audio.
    whole: Vec<u8>,
    keep_whole: bool,
    progressive: bool,
}

impl PartDecode {
    fn new(
        uri: &str,
        info: imss_mail::PartInfo,
        rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, MailError>>,
    ) -> PartDecode {
        PartDecode {
            uri: uri.to_string(),
            decoder: ProgressiveDecoder::new(Some(&info.content_type), info.file_name.as_deref()),
            info,
            rx,
            whole: Vec::new(),
            keep_whole: true,
            progressive: true,
        }
    }

    /// Decodes one chunk of the download into `writer`, as far as the format allows.
    fn feed(
        &mut self,
        chunk: Result<Vec<u8>, MailError>,
        writer: &mut GrowingClipWriter,
    ) -> Result<(), VoicemailFailure> {
        let bytes = chunk.map_err(|e| VoicemailFailure::of(&self.uri, &e))?;
        if self.keep_whole {
            self.whole.extend_from_slice(&bytes);
        }
        if self.progressive {
            match self.decoder.push(&bytes) {
                Ok(samples) => {
                    if !samples.is_empty() && self.keep_whole {
                        // Audio came out: the format decodes in pieces, the bytes need
                        // not be kept.
                        self.keep_whole = false;
                        self.whole = Vec::new();
                    }
                    writer.push(&to_pcm(&samples));
                }
                Err(MediaError::Unsupported { .. }) => self.progressive = false,
                Err(e) => return Err(VoicemailFailure::undecodable(&self.uri, &e)),
            }
        }
        Ok(())
    }

    /// The download ended: the rest of the audio (or all of it, for a format decoded
    /// whole).
    fn finish(self, writer: &mut GrowingClipWriter) -> Result<(), VoicemailFailure> {
        let rest = if self.progressive {
            self.decoder.finish().map(|s| to_pcm(&s))
        } else {
            imss_media::decode_attachment(
                &self.whole,
                Some(&self.info.content_type),
                self.info.file_name.as_deref(),
            )
            .map(|clip| clip.to_pcm())
        };
        let pcm = rest.map_err(|e| VoicemailFailure::undecodable(&self.uri, &e))?;
        writer.push(&pcm);
        Ok(())
    }

    /// Downloads and decodes the rest of the part into `writer`, then finishes it (or fails
    /// it with the failure's cause).
    fn run(mut self, mut writer: GrowingClipWriter) {
        let uri = self.uri.clone();
        let result = (|| {
            while let Some(chunk) = self.rx.blocking_recv() {
                self.feed(chunk, &mut writer)?;
            }
            Ok(())
        })()
        .and_then(|()| self.finish(&mut writer));
        match result {
            Ok(()) => writer.finish(),
            Err(failure) => {
                tracing::warn!(%uri, reason = %failure.reason, "voicemail download failed");
                writer.fail_because(&failure.uri_cause, &failure.reason);
            }
        }
    }
}

fn to_pcm(samples: &[i16]) -> Vec<f32> {
    samples.iter().map(|&s| f32::from(s) / 32768.0).collect()
}

impl Download {
    fn run(
        self,
        first: PartDecode,
        sections: &[Option<String>],
        writers: Vec<GrowingClipWriter>,
        cache: &Mutex<Cache>,
    ) {
        let started = std::time::Instant::now();
        let mut first = Some(first);
        let mut clips = Vec::with_capacity(writers.len());
        let mut writers = writers.into_iter();
        for section in sections {
            let Some(writer) = writers.next() else {
                break;
            };
            let part = match first.take() {
                Some(part) => Ok(part),
                None => self
                    .runtime
                    .block_on(async {
                        tokio::time::timeout(
                            self.timeout,
                            self.client.fetch_part_stream(
                                &self.url,
                                section.as_deref(),
                                self.max_bytes,
                            ),
                        )
                        .await
                    })
                    .unwrap_or_else(|_| {
                        Err(MailError::Timeout {
                            step: "fetching the next audio part".into(),
                            after: self.timeout,
                        })
                    })
                    .map(|(info, rx)| PartDecode::new(&self.uri, info, rx)),
            };
            let clip = Arc::clone(writer.clip());
            match part {
                Ok(part) => part.run(writer),
                Err(e) => {
                    let failure = VoicemailFailure::of(&self.uri, &e);
                    writer.fail_because(&failure.uri_cause, &failure.reason);
                }
            }
            match clip.to_clip() {
                Some(c) => clips.push(Arc::new(c)),
                None => {
                    // The rest fail with it: the message is not kept.
                    for w in writers.by_ref() {
                        w.fail("an earlier part of the message failed");
                    }
                    return;
                }
            }
        }
        tracing::info!(
            uri = %self.uri,
            parts = clips.len(),
            seconds = clips.iter().map(|c| c.content_samples()).sum::<usize>() as f64 / 8000.0,
            download_ms = started.elapsed().as_millis() as u64,
            "voicemail downloaded"
        );
        lock(cache).insert(self.uri.clone(), clips);
    }
}

/// Every audio part of a whole message, decoded.
fn decode_parts(uri: &str, message: &FetchedMessage) -> Result<Vec<Arc<Clip>>, VoicemailFailure> {
    message
        .parts
        .iter()
        .map(|part| {
            imss_media::decode_attachment(
                &part.data,
                Some(&part.content_type),
                part.file_name.as_deref(),
            )
            .map(Arc::new)
            .map_err(|e| VoicemailFailure::undecodable(uri, &e))
        })
        .collect()
}

/// `template` with the message's fields in place of `{from}`, `{date}`, …, escaped for
/// XML.
pub(crate) fn fill_template(template: &str, info: &MessageInfo) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let from = info
        .from_name
        .clone()
        .or_else(|| info.caller_id().map(str::to_string))
        .or_else(|| info.from_address.clone())
        .unwrap_or_else(|| "an unknown caller".into());
    let (date, time) = match info.date.as_deref() {
        // RFC 3339: 2026-11-24T14:05:00+01:00
        Some(d) if d.len() >= 16 => (d[..10].to_string(), d[11..16].to_string()),
        _ => (String::new(), String::new()),
    };
    let fields: [(&str, String); 9] = [
        ("{from}", from),
        ("{from_name}", info.from_name.clone().unwrap_or_default()),
        (
            "{from_address}",
            info.from_address.clone().unwrap_or_default(),
        ),
        (
            "{caller_id}",
            info.caller_id().unwrap_or_default().to_string(),
        ),
        ("{date}", date),
        ("{time}", time),
        ("{subject}", info.subject.clone().unwrap_or_default()),
        (
            "{duration}",
            info.duration_secs()
                .map(|s| s.to_string())
                .unwrap_or_default(),
        ),
        (
            "{message}",
            info.asterisk_field("Message-Num")
                .unwrap_or_default()
                .to_string(),
        ),
    ];
    let mut out = template.to_string();
    for (key, value) in fields {
        out = out.replace(key, &escape(&value));
    }
    out
}
