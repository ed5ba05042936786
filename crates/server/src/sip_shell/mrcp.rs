//! MRCPv2 sessions (RFC 6787): the SIP side of their set-up, and the control channels
//! they grant.

use super::{Call, Shell, ShellInput, new_stream};
use crate::Shared;
use crate::audio_root::{self, AudioPathError};
use crate::fetch::{self, FetchOptions};
use crate::tts::{self, SpeakDefaults, TtsError, Utterance};
use crate::voicemail;
use imss_media::{Clip, GrowingClip, PlayItem, Playout, Repeat, samples_in};
use imss_mrcp::{
    CompletionCause, MediaCommand, MediaFailure, Message, PlanItem, PlayPlan, RequestId,
    RequestState, SeekOffset, SpeakSettings, SsmlSubset, StatusCode, SynthConfig, Synthesizer,
    names,
};
use imss_sip::endpoint::CallId;
use imss_sip::sdp::{
    self, AnswerParams, ControlChannel, MrcpAnswerParams, Negotiated, NegotiationError,
    SessionDescription,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Resources this server's media player implements.
pub(crate) const RESOURCES: [&str; 2] = ["speechsynth", "basicsynth"];

/// One granted control channel: its media player and where its messages go.
pub(super) struct Channel {
    /// The dialog that owns it.
    call: CallId,
    /// The speechsynth state machine.
    synth: Synthesizer,
    /// The control connection its last request came in on; its output goes there.
    conn: Option<u64>,
    /// The SPEAK whose audio the stream is playing now.
    playing: Option<RequestId>,
    /// Names of the marks in that SPEAK's plan, by `PlayItem::Mark` number (one number per
    /// name; [`ITEM_START`] is the start of a spoken item).
    marks: Vec<String>,
    /// The SPEAK the synthesizer made active, from its Play command until it ends.
    current: Option<CurrentSpeak>,
    /// Voicemail of the playing SPEAK that is still downloading: a download that fails
    /// ends the SPEAK with `uri-failure` rather than `normal`.
    growing: Vec<Arc<GrowingClip>>,
}

/// The active SPEAK of a channel: what it plays and how, so that its text can be rendered
/// again (CONTROL `Prosody-*`), and the CONTROL changes that came before its audio was ready.
struct CurrentSpeak {
    request_id: RequestId,
    plan: PlayPlan,
    settings: SpeakSettings,
    /// Renders of the plan started so far; only the latest one's result is used.
    renders: u64,
    /// CONTROL `Speak-Length` received while the first render ran.
    limit: Option<Duration>,
    end_mark: Option<String>,
}

/// The `PlayItem::Mark` number of the start of a spoken item: SPEECH-MARKER without a name.
const ITEM_START: u32 = u32::MAX;

/// The NTP time now, for `Speech-Marker`.
fn ntp_now() -> u64 {
    imss_rtp::rtcp::NtpTime::from_system_time(std::time::SystemTime::now()).0
}

/// The control channels of every MRCPv2 session, by Channel-Identifier, and the control
/// connections' writers.
pub(super) struct Channels {
    by_id: HashMap<String, Channel>,
    writers: HashMap<u64, mpsc::UnboundedSender<Vec<u8>>>,
    /// Counts responses and SPEAK-COMPLETE causes sent.
    metrics: Arc<crate::metrics::Metrics>,
}

impl Channels {
    pub fn new(metrics: Arc<crate::metrics::Metrics>) -> Channels {
        Channels {
            by_id: HashMap::new(),
            writers: HashMap::new(),
            metrics,
        }
    }

    fn insert(&mut self, call: &CallId, c: &ControlChannel) {
        if let Some(existing) = self.by_id.get_mut(&c.channel_id) {
            existing.call = call.clone();
            return;
        }
        let config = SynthConfig {
            ssml: if c.resource.eq_ignore_ascii_case("basicsynth") {
                SsmlSubset::Basic
            } else {
                SsmlSubset::Full
            },
            ..SynthConfig::default()
        };
        self.by_id.insert(
            c.channel_id.clone(),
            Channel {
                call: call.clone(),
                synth: Synthesizer::new(c.channel_id.clone(), config),
                conn: None,
                playing: None,
                marks: Vec::new(),
                growing: Vec::new(),
                current: None,
            },
        );
    }

    /// Forgets `channels` (their SPEAKs end without SPEAK-COMPLETE: the session is gone).
    pub fn remove_call(&mut self, channels: &[ControlChannel]) {
        for c in channels {
            if let Some(mut ch) = self.by_id.remove(&c.channel_id) {
                ch.synth.close();
            }
        }
    }

    /// Channels whose active SPEAK plays voicemail (`imap:`/`fbmc:` URIs), and channels
    /// whose active SPEAK speaks text.
    pub fn speaking(&self) -> (u64, u64) {
        let (mut voicemail, mut tts) = (0, 0);
        for cur in self.by_id.values().filter_map(|c| c.current.as_ref()) {
            let (mut mail, mut text) = (false, false);
            for item in cur.plan.iter() {
                match item {
                    PlanItem::Audio { uri, .. } => {
                        mail |= crate::voicemail::is_mail_uri(uri);
                    }
                    PlanItem::Text { .. } | PlanItem::Speech(_) => text = true,
                    PlanItem::Break(_) | PlanItem::Mark(_) => {}
                }
            }
            voicemail += u64::from(mail);
            tts += u64::from(text);
        }
        (voicemail, tts)
    }

    /// What the SPEAKs active on `channels` play, in a line: their URIs and the start of
    /// their text; `None` while none is active.
    pub fn playing(&self, channels: &[ControlChannel]) -> Option<String> {
        let parts: Vec<String> = channels
            .iter()
            .filter_map(|c| self.by_id.get(&c.channel_id)?.current.as_ref())
            .map(|cur| plan_summary(&cur.plan))
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    fn send(&self, conn: Option<u64>, message: &Message) {
        if let Some(w) = conn.and_then(|c| self.writers.get(&c)) {
            self.metrics.mrcp_sent(message);
            let _ = w.send(message.encode());
        }
    }
}

/// Longest summary of a play plan, in characters.
const SUMMARY_CHARS: usize = 160;

/// A play plan in a line: its URIs as written and its text in quotes, cut at
/// [`SUMMARY_CHARS`].
fn plan_summary(plan: &PlayPlan) -> String {
    let parts: Vec<String> = plan
        .iter()
        .filter_map(|item| match item {
            PlanItem::Audio { uri, .. } => Some(uri.clone()),
            PlanItem::Text { text, .. } => Some(format!("\"{text}\"")),
            PlanItem::Speech(speech) => Some(format!(
                "\"{}\"",
                speech.plain_text(speech.language.as_deref().unwrap_or("en"))
            )),
            PlanItem::Break(_) | PlanItem::Mark(_) => None,
        })
        .collect();
    let line = parts.join(", ");
    if line.chars().count() <= SUMMARY_CHARS {
        return line;
    }
    let mut cut: String = line.chars().take(SUMMARY_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// What a session plays while no SPEAK is active: comfort silence, so NAT bindings and the
/// client's RTP timeouts stay happy.
fn idle_playout() -> Playout {
    Playout::new(
        vec![PlayItem::Silence(Duration::from_secs(3600))],
        Repeat::Forever,
        Duration::ZERO,
        None,
    )
}

impl Shell {
    fn mrcp_params<'a>(
        &'a self,
        audio: AnswerParams,
        existing: &'a [ControlChannel],
    ) -> MrcpAnswerParams<'a> {
        MrcpAnswerParams {
            audio,
            mrcp_port: self.shared.mrcp_port,
            tls_port: self.shared.mrcp_tls_port,
            supported_resources: RESOURCES.iter().map(|r| (*r).to_string()).collect(),
            channel_ids: &self.shared.channel_ids,
            existing,
        }
    }

    /// Answers an INVITE that opens an MRCPv2 session: audio stream plus control channels.
    pub(super) fn start_mrcp_session(
        &mut self,
        now: Instant,
        call: CallId,
        offer: String,
        offer_sdp: &SessionDescription,
        peer: std::net::SocketAddr,
    ) {
        let ports = match self.shared.ports.allocate() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(call_id = ?call, error = %e, "no RTP port");
                self.endpoint.reject(
                    now,
                    call,
                    503,
                    "Service Unavailable (no free RTP port)",
                    None,
                );
                return;
            }
        };
        let session_id = u64::from(rand::random::<u32>());
        let audio = AnswerParams {
            addr: self.shared.config.rtp_advertise(),
            port: ports.port(),
            session_id,
            session_version: 1,
            username: "imss".into(),
            default_ptime_ms: self.shared.config.rtp.ptime_ms,
        };
        let (answer, negotiated) = match sdp::answer_mrcp(offer_sdp, &self.mrcp_params(audio, &[]))
        {
            Ok(r) => r,
            Err(e) => {
                reject_negotiation(self, now, call, &e);
                return;
            }
        };
        let stream_id = self.next_stream;
        self.next_stream += 1;
        let mut c = Call {
            _session: self
                .shared
                .metrics
                .session(crate::metrics::SessionKind::Mrcp),
            playouts: 0,
            created: now,
            since: std::time::SystemTime::now(),
            peer,
            codec: negotiated.audio.as_ref().map(|n| n.codec),
            playing: None,
            offer: Some(offer),
            channels: negotiated.channels.clone(),
            stream_id,
            parked: None,
            port: ports.port(),
            in_pacer: false,
            session_id,
            session_version: 1,
            local_sdp: Some(answer.to_string()),
            hanging_up: false,
        };
        match negotiated
            .audio
            .as_ref()
            .and_then(|n| n.remote.map(|r| (n, r)))
        {
            Some((n, remote)) => {
                let s = new_stream(
                    stream_id,
                    ports,
                    remote,
                    n,
                    idle_playout(),
                    &self.shared.config.general.name,
                );
                match self.shared.pacer.add(s) {
                    Ok(()) => c.in_pacer = true,
                    Err(e) => {
                        tracing::error!(call_id = ?call, error = %e, "pacing engine refused stream")
                    }
                }
            }
            None => c.parked = Some((ports, idle_playout())),
        }
        for ch in &negotiated.channels {
            self.channels.insert(&call, ch);
        }
        tracing::info!(
            call_id = ?call,
            channels = ?negotiated.channels.iter().map(|c| c.channel_id.as_str()).collect::<Vec<_>>(),
            port = c.port,
            "MRCPv2 session answered"
        );
        self.by_stream.insert(stream_id, call.clone());
        self.calls.insert(call.clone(), c);
        self.endpoint.accept(now, call, answer.to_string());
    }

    /// Negotiates a re-offer in an MRCPv2 session: channels kept keep their identifiers,
    /// channels set to port 0 are closed, new ones are opened.
    pub(super) fn renegotiate_mrcp(
        &mut self,
        call: &CallId,
        offer_sdp: &SessionDescription,
        audio: AnswerParams,
    ) -> Result<(SessionDescription, Option<Negotiated>), NegotiationError> {
        let existing = self
            .calls
            .get(call)
            .map(|c| c.channels.clone())
            .unwrap_or_default();
        let (answer, negotiated) =
            sdp::answer_mrcp(offer_sdp, &self.mrcp_params(audio, &existing))?;
        let dropped: Vec<ControlChannel> = existing
            .into_iter()
            .filter(|old| {
                !negotiated
                    .channels
                    .iter()
                    .any(|c| c.channel_id == old.channel_id)
            })
            .collect();
        self.channels.remove_call(&dropped);
        for ch in &negotiated.channels {
            self.channels.insert(call, ch);
        }
        if let Some(c) = self.calls.get_mut(call) {
            c.channels = negotiated.channels;
        }
        Ok((answer, negotiated.audio))
    }
}

/// Answers 488 with a Warning that says what could not be negotiated.
pub(super) fn reject_negotiation(
    shell: &mut Shell,
    now: Instant,
    call: CallId,
    e: &NegotiationError,
) {
    let warning = format!("304 imss \"{e}\"");
    shell
        .endpoint
        .reject(now, call, 488, "Not Acceptable Here", Some(&warning));
}

/// Largest MRCPv2 message accepted; larger ones are answered 504 and the connection closed.
const MRCP_LIMITS: imss_mrcp::codec::Limits = imss_mrcp::codec::Limits {
    max_message_size: 64 * 1024,
    max_headers: 64,
};

/// Starts the reader and writer tasks of one MRCPv2 control connection: plain TCP, or TLS
/// once its handshake is done (`tls`); both are handled alike from here on.
pub(super) fn spawn_connection<S>(
    conn: u64,
    peer: std::net::SocketAddr,
    stream: S,
    tx: mpsc::UnboundedSender<ShellInput>,
    tls: bool,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    use imss_mrcp::codec::{self, Check};
    use tokio::io::AsyncReadExt;
    let (mut reader, wtx) = super::split_with_writer(stream);
    let _ = tx.send(ShellInput::MrcpOpened {
        conn,
        writer: wtx.clone(),
        tls,
    });
    tokio::spawn(async move {
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let mut chunk = vec![0u8; 16 * 1024];
        'read: loop {
            let n = match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            loop {
                match codec::check(&buf, &MRCP_LIMITS) {
                    Ok(Check::Incomplete) => break,
                    Ok(Check::Complete(len)) => {
                        let parsed = codec::parse(&buf[..len], &MRCP_LIMITS);
                        buf.drain(..len);
                        match parsed {
                            Ok(message) => {
                                if tx.send(ShellInput::Mrcp { conn, message }).is_err() {
                                    break 'read;
                                }
                            }
                            Err(e) => {
                                tracing::info!(%peer, error = %e, "malformed MRCPv2 message");
                                if let Some(r) = e.response() {
                                    let _ = wtx.send(r.encode());
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::info!(%peer, error = %e, "MRCPv2 framing lost; closing");
                        if let Some(r) = e.response() {
                            let _ = wtx.send(r.encode());
                        }
                        // Let the answer be written before the connection goes.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break 'read;
                    }
                }
            }
        }
        let _ = tx.send(ShellInput::MrcpClosed { conn });
    });
}

/// What a SPEAK's play plan became once its files were read and its text spoken: the items
/// and the names of its marks; `render` tells which render of the request it is (1 for the
/// first, more after CONTROL changed the prosody).
pub(super) struct Resolved {
    render: u64,
    result: Result<(Vec<PlayItem>, Vec<String>), MediaFailure>,
}

impl Shell {
    /// Hangs up sessions whose client never used a control channel within
    /// `mrcp.connect_timeout_s`.
    pub(super) fn mrcp_housekeeping(&mut self, now: Instant) {
        let (voicemail, tts) = self.channels.speaking();
        let metrics = &self.shared.metrics;
        metrics
            .speaking_voicemail
            .store(voicemail, std::sync::atomic::Ordering::Relaxed);
        metrics
            .speaking_tts
            .store(tts, std::sync::atomic::Ordering::Relaxed);
        let limit = Duration::from_secs(self.shared.config.mrcp.connect_timeout_s);
        let stale: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                !c.channels.is_empty()
                    && !c.hanging_up
                    && now.duration_since(c.created) >= limit
                    && c.channels.iter().all(|ch| {
                        self.channels
                            .by_id
                            .get(&ch.channel_id)
                            .is_some_and(|x| x.conn.is_none())
                    })
            })
            .map(|(id, _)| id.clone())
            .collect();
        for call in stale {
            self.hang_up(
                now,
                call,
                "no request on the MRCPv2 control channel in time",
            );
        }
    }

    /// A request on a plain connection for a channel granted over `TCP/TLS/MRCPv2` is
    /// refused (405, as for a channel that is not there): the session asked for TLS, so its
    /// channel is not controlled in the clear. Returns true when it was refused.
    pub(super) fn mrcp_refused_in_clear(&mut self, conn: u64, message: &Message) -> bool {
        if self.tls_conns.contains(&conn) {
            return false;
        }
        let Some(channel_id) = message.headers.channel_identifier() else {
            return false;
        };
        let tls_only = self
            .channels
            .by_id
            .get(channel_id)
            .and_then(|ch| self.calls.get(&ch.call))
            .and_then(|c| c.channels.iter().find(|c| c.channel_id == channel_id))
            .is_some_and(|c| c.tls);
        if tls_only {
            tracing::info!(
                channel = channel_id,
                "request for a TLS channel over plain TCP refused"
            );
            let r = Message::response(
                message.request_id(),
                StatusCode::RESOURCE_NOT_ALLOCATED,
                RequestState::Complete,
            )
            .with_header(names::CHANNEL_IDENTIFIER, channel_id.to_string());
            self.channels.send(Some(conn), &r);
        }
        tls_only
    }

    pub(super) fn mrcp_opened(&mut self, conn: u64, writer: mpsc::UnboundedSender<Vec<u8>>) {
        self.channels.writers.insert(conn, writer);
    }

    /// A control connection dropped: its sessions cannot be controlled any more, so they
    /// end (BYE).
    pub(super) fn mrcp_closed(&mut self, now: Instant, conn: u64) {
        self.channels.writers.remove(&conn);
        let calls: Vec<CallId> = self
            .channels
            .by_id
            .values()
            .filter(|c| c.conn == Some(conn))
            .map(|c| c.call.clone())
            .collect();
        for call in calls {
            self.hang_up(now, call, "MRCPv2 control connection closed");
        }
    }

    /// One MRCPv2 request from a control connection.
    pub(super) fn handle_mrcp(&mut self, now: Instant, conn: u64, message: Message) {
        let request_id = message.request_id();
        let Some(channel_id) = message.headers.channel_identifier().map(str::to_string) else {
            let r = Message::response(
                request_id,
                StatusCode::MANDATORY_HEADER_MISSING,
                RequestState::Complete,
            );
            self.channels.send(Some(conn), &r);
            return;
        };
        let Some(channel) = self.channels.by_id.get_mut(&channel_id) else {
            let r = Message::response(
                request_id,
                StatusCode::RESOURCE_NOT_ALLOCATED,
                RequestState::Complete,
            )
            .with_header(names::CHANNEL_IDENTIFIER, channel_id.clone());
            self.channels.send(Some(conn), &r);
            return;
        };
        channel.conn = Some(conn);
        channel.synth.handle_wall_clock(now, ntp_now());
        channel.synth.handle_request(now, &message);
        self.drain_channel(&channel_id);
    }

    /// Sends what a channel's state machine has to say and carries out its media commands.
    fn drain_channel(&mut self, channel_id: &str) {
        loop {
            let Some(channel) = self.channels.by_id.get_mut(channel_id) else {
                return;
            };
            if let Some(m) = channel.synth.poll_transmit() {
                let conn = channel.conn;
                self.channels.send(conn, &m);
                continue;
            }
            let Some(command) = channel.synth.poll_command() else {
                return;
            };
            let call = channel.call.clone();
            let Some(c) = self.calls.get_mut(&call) else {
                return;
            };
            let stream_id = c.stream_id;
            let pacer = &self.shared.pacer;
            let playing = |id: RequestId| channel.playing == Some(id);
            match command {
                MediaCommand::Play {
                    request_id,
                    plan,
                    settings,
                } => {
                    channel.current = Some(CurrentSpeak {
                        request_id,
                        plan: plan.clone(),
                        settings: settings.clone(),
                        renders: 1,
                        limit: None,
                        end_mark: None,
                    });
                    self.resolve_speak(channel_id, request_id, 1, plan, settings);
                }
                MediaCommand::Stop { .. } => {
                    channel.playing = None;
                    channel.current = None;
                    c.replace_playout(pacer, idle_playout());
                }
                MediaCommand::Pause { .. } => pacer.pause(stream_id),
                MediaCommand::Resume { .. } => pacer.resume(stream_id),
                MediaCommand::Seek { offset, .. } => {
                    let delta = |d: Duration| i64::try_from(samples_in(d)).unwrap_or(i64::MAX);
                    pacer.seek(
                        stream_id,
                        match offset {
                            SeekOffset::Forward(d) => delta(d),
                            SeekOffset::Backward(d) => -delta(d),
                        },
                    );
                }
                MediaCommand::Restart { .. } => pacer.restart(stream_id),
                MediaCommand::Limit {
                    request_id,
                    remaining,
                } => {
                    if playing(request_id) {
                        pacer.limit_remaining(stream_id, remaining);
                    } else if let Some(cur) = current_of(&mut channel.current, request_id) {
                        // Nothing has played yet: the limit counts from the start.
                        cur.limit = Some(remaining);
                    }
                }
                MediaCommand::EndAtMark { request_id, mark } => {
                    if playing(request_id) {
                        match channel.marks.iter().position(|m| *m == mark) {
                            Some(n) => pacer.end_at_mark(stream_id, u32::try_from(n).ok()),
                            None => {
                                tracing::debug!(
                                    channel = channel_id,
                                    request_id,
                                    mark,
                                    "Speak-Length names a mark the request does not have"
                                )
                            }
                        }
                    } else if let Some(cur) = current_of(&mut channel.current, request_id) {
                        cur.end_mark = Some(mark);
                    }
                }
                MediaCommand::Prosody {
                    request_id,
                    prosody,
                } => {
                    let Some(cur) = current_of(&mut channel.current, request_id) else {
                        continue;
                    };
                    cur.settings.prosody = prosody;
                    if cur.plan.iter().any(has_text) {
                        // Render the text again; what has not started playing is replaced
                        // when it is ready (a first render still running is superseded).
                        cur.renders += 1;
                        let (render, plan, settings) =
                            (cur.renders, cur.plan.clone(), cur.settings.clone());
                        self.resolve_speak(channel_id, request_id, render, plan, settings);
                    }
                }
            }
        }
    }

    /// Reads the files and speaks the text of a SPEAK (its `render`-th time) on the blocking
    /// pool.
    fn resolve_speak(
        &mut self,
        channel_id: &str,
        request_id: RequestId,
        render: u64,
        plan: PlayPlan,
        settings: SpeakSettings,
    ) {
        let shared = self.shared.clone();
        let tx = self.input_tx.clone();
        let channel_id = channel_id.to_string();
        let limit = settings.speak_length;
        if let Some(fetched) = ready_at_once(&shared, &plan, &settings) {
            // Cached clips, live sources, breaks and marks only: nothing to read, fetch or
            // speak, so no blocking thread (its hand-offs cost milliseconds under load). The
            // result goes through the shell's own queue like any other.
            let result = Resolved {
                render,
                result: resolve_plan(&shared, plan, &settings, &fetched),
            };
            let _ = tx.send(ShellInput::SpeakResolved {
                channel_id,
                request_id,
                result,
                limit,
            });
            return;
        }
        tokio::task::spawn_blocking(move || {
            let result = Resolved {
                render,
                result: with_voicemail_headers(&shared, plan, &settings)
                    .and_then(|plan| resolve_plan(&shared, plan, &settings, &HashMap::new())),
            };
            let _ = tx.send(ShellInput::SpeakResolved {
                channel_id,
                request_id,
                result,
                limit,
            });
        });
    }

    /// A SPEAK's audio is ready (or failed): play it, unless the request was stopped
    /// meanwhile. A later render (new prosody) replaces the items that have not started.
    pub(super) fn speak_resolved(
        &mut self,
        now: Instant,
        channel_id: &str,
        request_id: RequestId,
        resolved: Resolved,
        limit: Option<Duration>,
    ) {
        let Some(channel) = self.channels.by_id.get_mut(channel_id) else {
            return;
        };
        if channel.synth.active_request() != Some(request_id) {
            return;
        }
        let Some(cur) = current_of(&mut channel.current, request_id) else {
            return;
        };
        if resolved.render != cur.renders {
            return; // superseded by a render with newer prosody
        }
        let Some(c) = self.calls.get_mut(&channel.call) else {
            return;
        };
        let playing = channel.playing == Some(request_id);
        match resolved.result {
            Ok((items, _)) if playing => {
                self.shared.pacer.replace_upcoming(c.stream_id, items);
            }
            Ok((items, marks)) => {
                let growing = growing_of(&items);
                // A CONTROL Speak-Length that came first counts from the start, as the
                // SPEAK's own does.
                let mut playout =
                    Playout::new(items, Repeat::Times(1), Duration::ZERO, cur.limit.or(limit));
                if let Some(mark) = &cur.end_mark {
                    playout.end_at_mark(
                        marks
                            .iter()
                            .position(|m| m == mark)
                            .and_then(|n| u32::try_from(n).ok()),
                    );
                }
                channel.playing = Some(request_id);
                channel.marks = marks;
                channel.growing = growing;
                c.replace_playout(&self.shared.pacer, playout);
            }
            Err(failure) if playing => {
                // The audio playing stays; only the prosody change is lost.
                tracing::info!(channel = channel_id, request_id, reason = %failure.reason, "text could not be rendered again with the new prosody");
            }
            Err(failure) => {
                tracing::info!(channel = channel_id, request_id, reason = %failure.reason, "SPEAK failed");
                channel.current = None;
                channel.synth.handle_wall_clock(now, ntp_now());
                channel.synth.media_failed(now, request_id, failure);
            }
        }
        self.drain_channel(channel_id);
    }

    /// The stream of an MRCPv2 session reached mark number `mark` of its `playout`-th playout:
    /// SPEECH-MARKER.
    pub(super) fn mrcp_mark(&mut self, now: Instant, call: &CallId, playout: u64, mark: u32) {
        let Some(c) = self.calls.get(call) else {
            return;
        };
        if c.playouts != playout {
            return;
        }
        let ntp = ntp_now();
        let ids: Vec<String> = c.channels.iter().map(|c| c.channel_id.clone()).collect();
        for id in ids {
            let Some(channel) = self.channels.by_id.get_mut(&id) else {
                continue;
            };
            let Some(request_id) = channel.playing else {
                continue;
            };
            if mark == ITEM_START {
                channel.synth.item_started(now, request_id, ntp);
            } else {
                let Some(name) = usize::try_from(mark)
                    .ok()
                    .and_then(|m| channel.marks.get(m))
                    .cloned()
                else {
                    continue;
                };
                channel.synth.mark_reached(now, request_id, &name, ntp);
            }
            self.drain_channel(&id);
        }
    }

    /// The stream of an MRCPv2 session reached the end of its `playout`-th playout. Returns
    /// false when `call` is not such a session.
    pub(super) fn mrcp_stream_ended(&mut self, now: Instant, call: &CallId, playout: u64) -> bool {
        let Some(c) = self.calls.get_mut(call) else {
            return false;
        };
        if c.channels.is_empty() {
            return false;
        }
        if c.playouts != playout {
            // The end of a playout already replaced (stopped): nothing completed.
            return true;
        }
        let ids: Vec<String> = c.channels.iter().map(|c| c.channel_id.clone()).collect();
        for id in ids {
            let Some(channel) = self.channels.by_id.get_mut(&id) else {
                continue;
            };
            if let Some(request_id) = channel.playing.take() {
                if let Some(c) = self.calls.get_mut(call) {
                    c.replace_playout(&self.shared.pacer, idle_playout());
                }
                channel.current = None;
                channel.synth.handle_wall_clock(now, ntp_now());
                let failed = std::mem::take(&mut channel.growing)
                    .into_iter()
                    .find_map(|g| {
                        g.failure_with_cause()
                            .map(|(cause, why)| (g.name().to_string(), cause, why))
                    });
                match failed {
                    Some((uri, cause, why)) => {
                        tracing::info!(channel = %id, request_id, %why, "voicemail failed during playback");
                        let completion = if cause == voicemail::UNDECODABLE {
                            CompletionCause::Error
                        } else {
                            CompletionCause::UriFailure
                        };
                        channel.synth.media_failed(
                            now,
                            request_id,
                            MediaFailure::new(completion, why).with_failed_uri(uri, cause),
                        );
                    }
                    None => channel.synth.media_finished(now, request_id),
                }
                self.drain_channel(&id);
            }
        }
        true
    }
}

/// The active SPEAK of a channel if it is `request_id`.
fn current_of(
    current: &mut Option<CurrentSpeak>,
    request_id: RequestId,
) -> Option<&mut CurrentSpeak> {
    current.as_mut().filter(|c| c.request_id == request_id)
}

/// Whether rendering `item` involves the TTS engine (text, or an audio item's fallback text).
fn has_text(item: &PlanItem) -> bool {
    match item {
        PlanItem::Text { .. } | PlanItem::Speech(_) => true,
        PlanItem::Audio { fallback, .. } => fallback.is_some(),
        PlanItem::Break(_) | PlanItem::Mark(_) => false,
    }
}

/// Turns a play plan into playable items: files under the audio root, live sources, text
/// through the TTS engine, breaks as silence, SSML marks as numbered marks (one number per
/// name) and, before each spoken item, an [`ITEM_START`] mark — also at the start of a plan
/// that opens with a break, so that every request reports when it starts. The same plan
/// always gives items in the same places. HTTP(S) URIs in `ready` are not fetched again.
/// Blocking, unless [`ready_at_once`] said otherwise.
fn resolve_plan(
    shared: &Arc<Shared>,
    plan: PlayPlan,
    settings: &SpeakSettings,
    ready: &HashMap<String, Arc<Clip>>,
) -> Result<(Vec<PlayItem>, Vec<String>), MediaFailure> {
    let applied = shared.applied();
    let tts_config = &applied.tts;
    let defaults = SpeakDefaults::new(tts_config, settings);
    let speak = |utterance: Utterance| {
        tts::service(tts_config)
            .and_then(|tts| tts.speak(&utterance))
            .map(PlayItem::Clip)
            .map_err(|e| match e {
                TtsError::Voice { .. } | TtsError::Language { .. } => {
                    MediaFailure::new(CompletionCause::LanguageUnsupported, e.to_string())
                }
                _ => MediaFailure::new(CompletionCause::Error, e.to_string()),
            })
    };
    let mut items = Vec::with_capacity(2 * plan.len());
    let mut marks: Vec<String> = Vec::new();
    let mut started = false;
    for item in plan {
        match item {
            PlanItem::Audio { uri, fallback } => match audio_items(shared, &uri, settings, ready) {
                Ok(found) => {
                    items.push(PlayItem::Mark(ITEM_START));
                    for item in found {
                        // A new listener of a live source hears its announcement first.
                        if let PlayItem::Live(ring) = &item
                            && let Some(clip) = shared.sources.announcement(ring.name())
                        {
                            items.push(PlayItem::Clip(clip));
                        }
                        items.push(item);
                    }
                    started = true;
                }
                Err((reason, cause)) => match fallback {
                    Some(text) if !text.trim().is_empty() => {
                        items.push(PlayItem::Mark(ITEM_START));
                        items.push(speak(defaults.text(&text, None, None))?);
                        started = true;
                    }
                    _ => {
                        return Err(MediaFailure::new(CompletionCause::UriFailure, reason)
                            .with_failed_uri(uri, cause));
                    }
                },
            },
            PlanItem::Text {
                text,
                voice,
                language,
            } => {
                if !text.trim().is_empty() {
                    items.push(PlayItem::Mark(ITEM_START));
                    items.push(speak(defaults.text(
                        &text,
                        voice.as_deref(),
                        language.as_deref(),
                    ))?);
                    started = true;
                }
            }
            PlanItem::Speech(speech) => {
                items.push(PlayItem::Mark(ITEM_START));
                items.push(speak(defaults.speech(&speech))?);
                started = true;
            }
            PlanItem::Break(d) => {
                if !started {
                    items.push(PlayItem::Mark(ITEM_START));
                    started = true;
                }
                items.push(PlayItem::Silence(d));
            }
            PlanItem::Mark(name) => {
                let n = match marks.iter().position(|m| *m == name) {
                    Some(n) => n,
                    None => {
                        marks.push(name);
                        marks.len() - 1
                    }
                };
                // ITEM_START is u32::MAX: a plan never holds that many marks.
                items.push(PlayItem::Mark(u32::try_from(n).unwrap_or(ITEM_START - 1)));
            }
        }
    }
    Ok((items, marks))
}

/// Whether every item of `plan` can be had without blocking: no text for the TTS engine,
/// every file already in the clip cache (and unchanged), every HTTP(S) URI fresh in the
/// fetcher's memory, every live source known. `Some` holds the clips of those URIs, taken
/// now so that one going stale a moment later is not fetched on the shell's thread.
fn ready_at_once(
    shared: &Shared,
    plan: &PlayPlan,
    settings: &SpeakSettings,
) -> Option<HashMap<String, Arc<Clip>>> {
    let root = shared.config.audio_root();
    let mut fetched = HashMap::new();
    let ready = plan.iter().all(|item| match item {
        PlanItem::Audio {
            uri,
            fallback: None,
        } => match uri.strip_prefix("source:") {
            Some(name) => shared.sources.ring(name).is_some(),
            None if voicemail::is_mail_uri(uri) => {
                !read_headers(settings) && shared.voicemail.cached(uri).is_some()
            }
            None if fetch::is_http_uri(uri) => {
                match shared.http_audio.fresh_clip(uri, &fetch_options(settings)) {
                    Some(clip) => {
                        fetched.insert(uri.clone(), clip);
                        true
                    }
                    None => false,
                }
            }
            None => audio_root::resolve(&root, uri)
                .ok()
                .is_some_and(|path| shared.clips.get_cached(&path).is_some()),
        },
        other => !has_text(other),
    });
    ready.then_some(fetched)
}

/// What a SPEAK asks of a fetch: its `Fetch-Timeout` and `Cache-Control`.
fn fetch_options(settings: &SpeakSettings) -> FetchOptions {
    FetchOptions {
        timeout: settings.fetch_timeout,
        cache_control: settings
            .params
            .get(names::CACHE_CONTROL)
            .map(str::to_string),
    }
}

/// Whether the SPEAK asks for voicemail headers to be read out
/// (`Vendor-Specific-Parameters: read-headers=true`).
fn read_headers(settings: &SpeakSettings) -> bool {
    settings
        .params
        .get(names::VENDOR_SPECIFIC_PARAMETERS)
        .is_some_and(|v| {
            v.split(';').any(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                name.trim().eq_ignore_ascii_case("read-headers")
                    && value.trim().trim_matches('"').eq_ignore_ascii_case("true")
            })
        })
}

/// With `read-headers=true`, each voicemail URI of `plan` is preceded by the configured
/// SSML (`[mail] read_headers_ssml`) filled in from its message: "message from …, received
/// …". Blocking (the message's header is fetched).
fn with_voicemail_headers(
    shared: &Shared,
    plan: PlayPlan,
    settings: &SpeakSettings,
) -> Result<PlayPlan, MediaFailure> {
    if !read_headers(settings)
        || !plan
            .iter()
            .any(|i| matches!(i, PlanItem::Audio { uri, .. } if voicemail::is_mail_uri(uri)))
    {
        return Ok(plan);
    }
    let mut out = Vec::with_capacity(plan.len() + 8);
    for item in plan {
        if let PlanItem::Audio { uri, .. } = &item
            && voicemail::is_mail_uri(uri)
        {
            let ssml = shared
                .voicemail
                .headers_ssml(uri, settings.fetch_timeout)
                .map_err(|f| {
                    MediaFailure::new(f.cause, f.reason).with_failed_uri(uri.clone(), f.uri_cause)
                })?;
            let header = imss_mrcp::parse_speak_body("application/ssml+xml", ssml.as_bytes())
                .map_err(|e| {
                    MediaFailure::new(
                        CompletionCause::Error,
                        format!(
                            "[mail] read_headers_ssml does not parse once filled in for {uri}: {e}"
                        ),
                    )
                })?;
            out.extend(header);
        }
        out.push(item);
    }
    Ok(out)
}

/// What an audio URI of a plan plays: voicemail (`imap:`, `fbmc:`: one item per audio part
/// of the message), or the one item of [`audio_item`].
fn audio_items(
    shared: &Shared,
    uri: &str,
    settings: &SpeakSettings,
    ready: &HashMap<String, Arc<Clip>>,
) -> Result<Vec<PlayItem>, (String, String)> {
    if voicemail::is_mail_uri(uri) {
        return shared
            .voicemail
            .items(uri, settings.fetch_timeout)
            .map_err(|f| (f.reason, f.uri_cause));
    }
    audio_item(shared, uri, settings, ready).map(|item| vec![item])
}

/// The growing clips (voicemail still downloading) among `items`.
fn growing_of(items: &[PlayItem]) -> Vec<Arc<GrowingClip>> {
    items
        .iter()
        .filter_map(|item| match item {
            PlayItem::Growing(clip) => Some(Arc::clone(clip)),
            _ => None,
        })
        .collect()
}

/// One audio URI of a plan: `source:NAME`, an `http(s)://` URI, or a file under the audio
/// root. A failure gives the reason (Completion-Reason) and the URI's cause
/// (Failed-URI-Cause: the HTTP status or a short token for HTTP, the reason for the rest).
fn audio_item(
    shared: &Shared,
    uri: &str,
    settings: &SpeakSettings,
    ready: &HashMap<String, Arc<Clip>>,
) -> Result<PlayItem, (String, String)> {
    let same = |reason: String| (reason.clone(), reason);
    if let Some(name) = uri.strip_prefix("source:") {
        return shared
            .sources
            .ring(name)
            .map(|ring| PlayItem::Live(ring.listen()))
            .ok_or_else(|| same(format!("no live source named {name}")));
    }
    if fetch::is_http_uri(uri) {
        if let Some(clip) = ready.get(uri) {
            // Found fresh in memory on the request's fast path.
            shared
                .http_audio
                .stats()
                .cache_hits
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(PlayItem::Clip(clip.clone()));
        }
        return shared
            .http_audio
            .clip(uri, &fetch_options(settings))
            .map(PlayItem::Clip)
            .map_err(|e| (format!("{uri}: {e}"), e.failed_uri_cause()));
    }
    let root = shared.config.audio_root();
    let path = audio_root::resolve(&root, uri).map_err(|e| match e {
        AudioPathError::Forbidden(_) => same(format!("{e}: refused")),
        _ => same(e.to_string()),
    })?;
    shared
        .clips
        .get(&path)
        .map(PlayItem::Clip)
        .map_err(|e| same(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_summary_lists_uris_and_quoted_text_and_is_cut() {
        let plan = vec![
            PlanItem::Break(Duration::from_millis(300)),
            PlanItem::Audio {
                uri: "source:hold".into(),
                fallback: None,
            },
            PlanItem::Mark("m1".into()),
            PlanItem::Text {
                text: "Your call is important".into(),
                voice: None,
                language: None,
            },
        ];
        assert_eq!(
            plan_summary(&plan),
            "source:hold, \"Your call is important\""
        );
        let long = vec![PlanItem::Text {
            text: "ä".repeat(400),
            voice: None,
            language: None,
        }];
        let cut = plan_summary(&long);
        assert_eq!(cut.chars().count(), SUMMARY_CHARS);
        assert!(cut.starts_with("\"ä") && cut.ends_with('…'), "{cut}");
    }
}
