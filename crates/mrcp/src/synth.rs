//! The speechsynth and basicsynth resources of one channel (RFC 6787 §8): the media player.
//!
//! Inputs: [`Synthesizer::handle_request`] for requests from the client,
//! [`Synthesizer::media_finished`], [`Synthesizer::media_failed`],
//! [`Synthesizer::mark_reached`] and [`Synthesizer::item_started`] for what the media plane
//! reports, and [`Synthesizer::handle_wall_clock`] for the NTP time that `Speech-Marker`
//! fields carry. Outputs: [`Synthesizer::poll_transmit`] (messages for the client, in order)
//! and [`Synthesizer::poll_command`] (commands for the media plane, in order). Drain both
//! after every input.
//!
//! `Speech-Marker` (RFC 6787): a SPEECH-MARKER event for every SSML `<mark>` playback reaches
//! (`timestamp=<NTP>;<name>`) and for the start of every spoken item (`timestamp=<NTP>`, no
//! name: the "null marker value" the RFC asks for when a request starts speaking); and the
//! field in the IN-PROGRESS response to SPEAK, in SPEAK-COMPLETE and in the responses to
//! STOP, CONTROL and BARGE-IN-OCCURRED, with the last `<mark>` the request reached, if any.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tracing::debug;

use crate::body::{
    BodyError, PlanItem, PlayPlan, SsmlSubset, is_supported_content_type, parse_speak_body_in,
};
use crate::headers::{
    CompletionCause, HeaderError, Headers, Prosody, SpeechLength, SpeechMarker, SpeechUnit,
    format_request_id_list, is_settable_synth_param, is_voice, names, quote, validate_param,
};
use crate::message::{
    EventName, Message, Method, RequestId, RequestState, StartLine, StatusCode, Version,
};

/// The resource state of §8.3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynthState {
    /// Nothing playing, nothing queued.
    Idle,
    /// A SPEAK is IN-PROGRESS and playing.
    Speaking,
    /// A SPEAK is IN-PROGRESS and paused.
    Paused,
}

/// Per-channel settings of the synthesizer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthConfig {
    /// Parameter values before any SET-PARAMS (GET-PARAMS reports them).
    /// Default: `Kill-On-Barge-In: true` (the RFC's default).
    pub defaults: Headers,
    /// Most SPEAK requests waiting behind the active one; more are refused with 407.
    pub max_queued: usize,
    /// The SSML the resource reads: [`SsmlSubset::Basic`] for a `basicsynth` channel.
    pub ssml: SsmlSubset,
}

impl Default for SynthConfig {
    fn default() -> Self {
        let mut defaults = Headers::new();
        defaults.push(names::KILL_ON_BARGE_IN, "true");
        SynthConfig {
            defaults,
            max_queued: 32,
            ssml: SsmlSubset::Full,
        }
    }
}

/// What a SPEAK asked for beyond its body: the channel's parameters overlaid with the
/// request's own header fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpeakSettings {
    /// Whether BARGE-IN-OCCURRED stops this SPEAK.
    pub kill_on_barge_in: bool,
    /// Default language for text without `xml:lang`.
    pub speech_language: Option<String>,
    /// `Voice-Name`.
    pub voice_name: Option<String>,
    /// `Voice-Gender`.
    pub voice_gender: Option<String>,
    /// How long a URI fetch may take.
    pub fetch_timeout: Option<Duration>,
    /// Stop after this much audio (`Speak-Length` in seconds). A `Speak-Length: <mark> Tag`
    /// does not show here: the plan already ends at that mark.
    pub speak_length: Option<Duration>,
    /// `Prosody-Rate`, `Prosody-Volume`, `Prosody-Pitch` for the text of the plan.
    pub prosody: Prosody,
    /// Base for relative URIs in the plan.
    pub content_base: Option<String>,
    /// `Logging-Tag`, for the media side's logs.
    pub logging_tag: Option<String>,
    /// Every effective parameter, for what the typed fields do not cover.
    pub params: Headers,
}

/// Which way and how far a CONTROL moves the playout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeekOffset {
    /// Skip ahead.
    Forward(Duration),
    /// Go back (to the start at most; the media side clamps).
    Backward(Duration),
}

/// A command for the media plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaCommand {
    /// Start playing a SPEAK's plan; report with `media_finished`/`media_failed`/`mark_reached`.
    Play {
        /// The SPEAK's request-id.
        request_id: RequestId,
        /// What to play.
        plan: PlayPlan,
        /// How to play it.
        settings: SpeakSettings,
    },
    /// Stop and forget this SPEAK; report nothing more about it.
    Stop {
        /// The SPEAK's request-id.
        request_id: RequestId,
    },
    /// Stop sending audio, keeping the position.
    Pause {
        /// The SPEAK's request-id.
        request_id: RequestId,
    },
    /// Carry on from where Pause left off.
    Resume {
        /// The SPEAK's request-id.
        request_id: RequestId,
    },
    /// Move the playout position within the current SPEAK.
    Seek {
        /// The SPEAK's request-id.
        request_id: RequestId,
        /// Direction and distance.
        offset: SeekOffset,
    },
    /// Play the current SPEAK again from its start.
    Restart {
        /// The SPEAK's request-id.
        request_id: RequestId,
    },
    /// Play at most this much more of the current SPEAK, from the current point; replaces
    /// any earlier limit (CONTROL `Speak-Length` in seconds).
    Limit {
        /// The SPEAK's request-id.
        request_id: RequestId,
        /// Remaining audio.
        remaining: Duration,
    },
    /// End the current SPEAK (normally) when playback next reaches the SSML mark `mark`,
    /// after reporting it; if it is not ahead, play to the end (CONTROL `Speak-Length:
    /// <mark> Tag`).
    EndAtMark {
        /// The SPEAK's request-id.
        request_id: RequestId,
        /// The mark's name.
        mark: String,
    },
    /// Speak the text of the current SPEAK that has not started yet with this prosody (a
    /// CONTROL's `Prosody-*` overlaid on the request's own). Audio already rendered for an
    /// item that is playing cannot change.
    Prosody {
        /// The SPEAK's request-id.
        request_id: RequestId,
        /// The prosody from now on.
        prosody: Prosody,
    },
}

/// Why the media plane could not finish a SPEAK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaFailure {
    /// The completion cause to report (003 uri-failure, 004 error, 005 language-unsupported…).
    pub cause: CompletionCause,
    /// What went wrong, for a person: names the URI, file or setting involved.
    pub reason: String,
    /// The URI that failed, with its scheme-specific cause (Failed-URI, Failed-URI-Cause).
    pub failed_uri: Option<(String, String)>,
}

impl MediaFailure {
    /// A failure with a cause and a reason.
    pub fn new(cause: CompletionCause, reason: impl Into<String>) -> MediaFailure {
        MediaFailure {
            cause,
            reason: reason.into(),
            failed_uri: None,
        }
    }

    /// Adds the failed URI and its cause (e.g. `404` for HTTP, `ENOENT` for a file).
    pub fn with_failed_uri(mut self, uri: impl Into<String>, cause: impl Into<String>) -> Self {
        self.failed_uri = Some((uri.into(), cause.into()));
        self
    }
}

struct Pending {
    request_id: RequestId,
    plan: Result<PlayPlan, BodyError>,
    settings: SpeakSettings,
}

struct Active {
    request_id: RequestId,
    kill_on_barge_in: bool,
    /// The last SSML mark playback reached (for `Speech-Marker` in responses).
    last_mark: Option<String>,
    /// The prosody its text is spoken with (CONTROL changes it).
    prosody: Prosody,
}

/// The speechsynth resource of one MRCP channel.
pub struct Synthesizer {
    channel_id: String,
    config: SynthConfig,
    params: Headers,
    active: Option<Active>,
    paused: bool,
    queue: VecDeque<Pending>,
    last_request_id: Option<RequestId>,
    last_activity: Option<Instant>,
    transmit: VecDeque<Message>,
    commands: VecDeque<MediaCommand>,
    /// The latest input's time, and a monotonic instant with its NTP time.
    now: Option<Instant>,
    wall_clock: Option<(Instant, u64)>,
}

/// Header fields that frame a message rather than carry a parameter.
fn is_framing_header(name: &str) -> bool {
    [
        names::CHANNEL_IDENTIFIER,
        names::CONTENT_LENGTH,
        names::CONTENT_TYPE,
    ]
    .iter()
    .any(|n| n.eq_ignore_ascii_case(name))
}

impl Synthesizer {
    /// A synthesizer for the channel `channel_id` (`<id>@speechsynth`), idle.
    pub fn new(channel_id: impl Into<String>, config: SynthConfig) -> Synthesizer {
        Synthesizer {
            channel_id: channel_id.into(),
            params: config.defaults.clone(),
            config,
            active: None,
            paused: false,
            queue: VecDeque::new(),
            last_request_id: None,
            last_activity: None,
            transmit: VecDeque::new(),
            commands: VecDeque::new(),
            now: None,
            wall_clock: None,
        }
    }

    /// Relates the monotonic clock to wall-clock time: at `now` it is `ntp_timestamp` (the
    /// 64-bit NTP format RTCP uses). `Speech-Marker` timestamps of responses and
    /// SPEAK-COMPLETE are the NTP time of the input that caused them, counted from the latest
    /// pair given here; before any, they are 0, which RFC 3550 uses for "wall clock unknown".
    pub fn handle_wall_clock(&mut self, now: Instant, ntp_timestamp: u64) {
        self.wall_clock = Some((now, ntp_timestamp));
    }

    /// The channel identifier this resource answers to.
    pub fn channel_id(&self) -> &str {
        &self.channel_id
    }

    /// The current state.
    pub fn state(&self) -> SynthState {
        match (&self.active, self.paused) {
            (None, _) => SynthState::Idle,
            (Some(_), false) => SynthState::Speaking,
            (Some(_), true) => SynthState::Paused,
        }
    }

    /// The IN-PROGRESS SPEAK, if any.
    pub fn active_request(&self) -> Option<RequestId> {
        self.active.as_ref().map(|a| a.request_id)
    }

    /// The PENDING SPEAKs, in the order they will play.
    pub fn pending_requests(&self) -> Vec<RequestId> {
        self.queue.iter().map(|p| p.request_id).collect()
    }

    /// When the client last sent a request (for inactivity timeouts).
    pub fn last_activity(&self) -> Option<Instant> {
        self.last_activity
    }

    /// The next message for the client.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Message> {
        self.transmit.pop_front()
    }

    /// The next command for the media plane.
    #[must_use]
    pub fn poll_command(&mut self) -> Option<MediaCommand> {
        self.commands.pop_front()
    }

    /// Handles one message from the client. Responses and events are queued for
    /// [`poll_transmit`](Self::poll_transmit); anything but a request is ignored.
    pub fn handle_request(&mut self, now: Instant, request: &Message) {
        let StartLine::Request { method, request_id } = &request.start else {
            debug!(channel = %self.channel_id, "ignoring a response or event from the client");
            return;
        };
        let id = *request_id;
        self.last_activity = Some(now);
        self.now = Some(now);
        match request.headers.channel_identifier() {
            None => {
                // The client cannot match an answer to a channel it did not name.
                let msg = Message::response(
                    id,
                    StatusCode::MANDATORY_HEADER_MISSING,
                    RequestState::Complete,
                );
                self.transmit.push_back(msg);
                return;
            }
            Some(ch) if !ch.eq_ignore_ascii_case(&self.channel_id) => {
                let msg = Message::response(
                    id,
                    StatusCode::RESOURCE_NOT_ALLOCATED,
                    RequestState::Complete,
                )
                .with_header(names::CHANNEL_IDENTIFIER, ch);
                self.transmit.push_back(msg);
                return;
            }
            Some(_) => {}
        }
        if request.version != Version::MRCP_2_0 {
            self.respond(id, StatusCode::VERSION_NOT_SUPPORTED);
            return;
        }
        if self.last_request_id.is_some_and(|last| id <= last) {
            self.respond(id, StatusCode::NON_MONOTONIC_REQUEST_ID);
            return;
        }
        self.last_request_id = Some(id);
        debug!(channel = %self.channel_id, method = %method, request_id = id, "request");
        match method {
            Method::Speak => self.speak(id, request),
            Method::Stop => self.stop(id, &request.headers),
            Method::Pause => self.pause(id),
            Method::Resume => self.resume(id),
            Method::BargeInOccurred => self.barge_in(id),
            Method::Control => self.control(id, &request.headers),
            Method::SetParams => self.set_params(id, &request.headers),
            Method::GetParams => self.get_params(id, &request.headers),
            Method::DefineLexicon => {
                if self.active.is_some() {
                    self.respond(id, StatusCode::METHOD_NOT_VALID_IN_STATE);
                } else {
                    let msg = self
                        .response(id, StatusCode::METHOD_FAILED, RequestState::Complete)
                        .with_header(
                            names::COMPLETION_CAUSE,
                            CompletionCause::LexiconLoadFailure.to_string(),
                        )
                        .with_header(
                            names::COMPLETION_REASON,
                            quote("this server does not support pronunciation lexicons"),
                        );
                    self.transmit.push_back(msg);
                }
            }
            Method::Other(_) => self.respond(id, StatusCode::METHOD_NOT_ALLOWED),
        }
    }

    /// The media plane has sent the last packet of `request_id`'s plan.
    pub fn media_finished(&mut self, now: Instant, request_id: RequestId) {
        self.now = Some(now);
        if self.active_request() == Some(request_id) {
            self.complete(request_id, CompletionCause::Normal, None, None);
            self.start_next();
        }
    }

    /// The media plane could not play `request_id`'s plan.
    pub fn media_failed(&mut self, now: Instant, request_id: RequestId, failure: MediaFailure) {
        self.now = Some(now);
        if self.active_request() == Some(request_id) {
            self.complete(
                request_id,
                failure.cause,
                Some(&failure.reason),
                failure.failed_uri.as_ref(),
            );
            self.start_next();
        }
    }

    /// Playback of `request_id` reached the mark `name` at NTP time `ntp_timestamp`
    /// (the 64-bit NTP timestamp, as RTCP writes it).
    pub fn mark_reached(
        &mut self,
        now: Instant,
        request_id: RequestId,
        name: &str,
        ntp_timestamp: u64,
    ) {
        self.now = Some(now);
        let Some(active) = self.active.as_mut().filter(|a| a.request_id == request_id) else {
            return;
        };
        active.last_mark = Some(name.to_string());
        self.speech_marker_event(request_id, ntp_timestamp, Some(name));
    }

    /// Playback of `request_id` sent the first packet of one of its spoken items (an audio
    /// URI or a piece of text) at NTP time `ntp_timestamp`: SPEECH-MARKER without a name.
    pub fn item_started(&mut self, now: Instant, request_id: RequestId, ntp_timestamp: u64) {
        self.now = Some(now);
        if self.active_request() == Some(request_id) {
            self.speech_marker_event(request_id, ntp_timestamp, None);
        }
    }

    fn speech_marker_event(
        &mut self,
        request_id: RequestId,
        ntp_timestamp: u64,
        name: Option<&str>,
    ) {
        let marker = SpeechMarker {
            timestamp: ntp_timestamp,
            name: name.map(str::to_string),
        };
        let msg = Message::event(
            EventName::SpeechMarker,
            request_id,
            RequestState::InProgress,
        )
        .with_header(names::CHANNEL_IDENTIFIER, self.channel_id.clone())
        .with_header(names::SPEECH_MARKER, marker.to_string());
        self.transmit.push_back(msg);
    }

    /// The channel is going away (BYE, lost connection): stop the media, send nothing.
    pub fn close(&mut self) {
        if let Some(active) = self.active.take() {
            self.commands.push_back(MediaCommand::Stop {
                request_id: active.request_id,
            });
        }
        self.queue.clear();
        self.paused = false;
    }

    /// The NTP time of the current input (see [`handle_wall_clock`](Self::handle_wall_clock)).
    fn ntp_now(&self) -> u64 {
        let (Some(now), Some((at, ntp))) = (self.now, self.wall_clock) else {
            return 0;
        };
        let to_ntp = |d: Duration| {
            (d.as_secs() << 32).wrapping_add((u64::from(d.subsec_nanos()) << 32) / 1_000_000_000)
        };
        if now >= at {
            ntp.wrapping_add(to_ntp(now - at))
        } else {
            ntp.wrapping_sub(to_ntp(at - now))
        }
    }

    /// `Speech-Marker` for a response or SPEAK-COMPLETE about `request`: now, and the last
    /// mark it reached.
    fn marker_now(&self, request: Option<RequestId>) -> String {
        let name = self
            .active
            .as_ref()
            .filter(|a| Some(a.request_id) == request)
            .and_then(|a| a.last_mark.clone());
        SpeechMarker {
            timestamp: self.ntp_now(),
            name,
        }
        .to_string()
    }

    fn response(&self, id: RequestId, status: StatusCode, state: RequestState) -> Message {
        Message::response(id, status, state)
            .with_header(names::CHANNEL_IDENTIFIER, self.channel_id.clone())
    }

    fn respond(&mut self, id: RequestId, status: StatusCode) {
        let msg = self.response(id, status, RequestState::Complete);
        self.transmit.push_back(msg);
    }

    /// Answers with a failure status echoing the offending header field (§6.1).
    fn respond_header_error(&mut self, id: RequestId, status: StatusCode, err: &HeaderError) {
        debug!(channel = %self.channel_id, request_id = id, error = %err, "header rejected");
        let msg = self
            .response(id, status, RequestState::Complete)
            .with_header(err.name, err.value.clone());
        self.transmit.push_back(msg);
    }

    /// A COMPLETE response naming the requests it acted on, and with `marker`
    /// (`Speech-Marker`) when given.
    fn respond_with_list(
        &mut self,
        id: RequestId,
        status: StatusCode,
        ids: &[RequestId],
        marker: Option<String>,
    ) {
        let mut msg = self.response(id, status, RequestState::Complete);
        if !ids.is_empty() {
            msg.headers
                .push(names::ACTIVE_REQUEST_ID_LIST, format_request_id_list(ids));
        }
        if let Some(marker) = marker {
            msg.headers.push(names::SPEECH_MARKER, marker);
        }
        self.transmit.push_back(msg);
    }

    /// Answers 409 for a speech length in a unit this media player cannot count, echoing the
    /// field as received (§6.1).
    fn respond_unsupported_unit(&mut self, id: RequestId, name: &'static str, headers: &Headers) {
        let err = HeaderError {
            name,
            value: headers.get(name).unwrap_or_default().to_string(),
            problem: "this unit cannot be counted in audio",
        };
        self.respond_header_error(id, StatusCode::UNSUPPORTED_HEADER_VALUE, &err);
    }

    fn speak(&mut self, id: RequestId, request: &Message) {
        let headers = &request.headers;
        if let Err(e) = validate_request_params(headers) {
            self.respond_header_error(id, StatusCode::ILLEGAL_HEADER_VALUE, &e);
            return;
        }
        let speak_length = match headers.speak_length() {
            Ok(v) => v,
            Err(e) => {
                self.respond_header_error(id, StatusCode::ILLEGAL_HEADER_VALUE, &e);
                return;
            }
        };
        let (time_limit, end_mark) = match speak_length {
            None => (None, None),
            Some(SpeechLength::Numeric {
                value,
                unit: SpeechUnit::Second,
            }) => (Some(Duration::from_secs(value.unsigned_abs())), None),
            Some(SpeechLength::Tag(mark)) => (None, Some(mark)),
            Some(SpeechLength::Numeric { .. }) => {
                self.respond_unsupported_unit(id, names::SPEAK_LENGTH, headers);
                return;
            }
        };
        let Some(content_type) = headers.content_type() else {
            let msg = self
                .response(
                    id,
                    StatusCode::MANDATORY_HEADER_MISSING,
                    RequestState::Complete,
                )
                .with_header(names::CONTENT_TYPE, "");
            self.transmit.push_back(msg);
            return;
        };
        if !is_supported_content_type(&content_type) {
            debug!(channel = %self.channel_id, request_id = id, content_type, "unsupported SPEAK body");
            self.respond(id, StatusCode::UNSUPPORTED_ENTITY);
            return;
        }
        let mut plan = parse_speak_body_in(self.config.ssml, &content_type, &request.body);
        if let (Ok(plan), Some(mark)) = (plan.as_mut(), end_mark) {
            // Speak-Length: <mark> Tag: speak until the mark is reached, then complete normally.
            if let Some(at) = plan
                .iter()
                .position(|item| matches!(item, PlanItem::Mark(m) if *m == mark))
            {
                plan.truncate(at + 1);
            }
        }
        let mut settings = self.settings_for(headers);
        settings.speak_length = time_limit;
        let pending = Pending {
            request_id: id,
            plan,
            settings,
        };
        if self.active.is_none() {
            let msg = self
                .response(id, StatusCode::SUCCESS, RequestState::InProgress)
                .with_header(names::SPEECH_MARKER, self.marker_now(None));
            self.transmit.push_back(msg);
            if !self.start(pending) {
                self.start_next();
            }
        } else if self.queue.len() >= self.config.max_queued {
            self.respond(id, StatusCode::METHOD_FAILED);
        } else {
            self.queue.push_back(pending);
            let msg = self.response(id, StatusCode::SUCCESS, RequestState::Pending);
            self.transmit.push_back(msg);
        }
    }

    /// Makes `pending` the IN-PROGRESS request; false if it completed at once (bad body).
    fn start(&mut self, pending: Pending) -> bool {
        match pending.plan {
            Err(e) => {
                debug!(channel = %self.channel_id, request_id = pending.request_id, error = %e, "SPEAK body rejected");
                self.complete(
                    pending.request_id,
                    CompletionCause::ParseFailure,
                    Some(&e.to_string()),
                    None,
                );
                false
            }
            Ok(plan) => {
                self.active = Some(Active {
                    request_id: pending.request_id,
                    kill_on_barge_in: pending.settings.kill_on_barge_in,
                    last_mark: None,
                    prosody: pending.settings.prosody,
                });
                self.commands.push_back(MediaCommand::Play {
                    request_id: pending.request_id,
                    plan,
                    settings: pending.settings,
                });
                if self.paused {
                    // §8.7: a stopped paused request hands the PAUSED state to the next one.
                    self.commands.push_back(MediaCommand::Pause {
                        request_id: pending.request_id,
                    });
                }
                true
            }
        }
    }

    /// Starts the first PENDING request that has a playable plan.
    fn start_next(&mut self) {
        while let Some(pending) = self.queue.pop_front() {
            if self.start(pending) {
                return;
            }
        }
        self.paused = false;
    }

    /// Sends SPEAK-COMPLETE for `id` and leaves the SPEAKING/PAUSED state.
    fn complete(
        &mut self,
        id: RequestId,
        cause: CompletionCause,
        reason: Option<&str>,
        failed_uri: Option<&(String, String)>,
    ) {
        let marker = self.marker_now(Some(id));
        if self.active_request() == Some(id) {
            self.active = None;
        }
        let mut msg = Message::event(EventName::SpeakComplete, id, RequestState::Complete)
            .with_header(names::CHANNEL_IDENTIFIER, self.channel_id.clone())
            .with_header(names::COMPLETION_CAUSE, cause.to_string());
        if let Some(reason) = reason {
            msg.headers.push(names::COMPLETION_REASON, quote(reason));
        }
        if let Some((uri, uri_cause)) = failed_uri {
            msg.headers.push(names::FAILED_URI, uri.clone());
            msg.headers.push(names::FAILED_URI_CAUSE, uri_cause.clone());
        }
        msg.headers.push(names::SPEECH_MARKER, marker);
        debug!(channel = %self.channel_id, request_id = id, cause = %cause, "SPEAK-COMPLETE");
        self.transmit.push_back(msg);
    }

    fn stop(&mut self, id: RequestId, headers: &Headers) {
        let list = match headers.active_request_id_list() {
            Ok(list) => list,
            Err(e) => {
                self.respond_header_error(id, StatusCode::ILLEGAL_HEADER_VALUE, &e);
                return;
            }
        };
        let targeted = |rid: RequestId| list.as_ref().is_none_or(|l| l.contains(&rid));
        let mut stopped = Vec::new();
        let mut active_stopped = false;
        // Speech-Marker: the response carries the stopped request's last mark.
        let marker = self.marker_now(self.active_request());
        if let Some(active) = self.active.as_ref().filter(|a| targeted(a.request_id)) {
            let rid = active.request_id;
            stopped.push(rid);
            self.commands
                .push_back(MediaCommand::Stop { request_id: rid });
            self.active = None;
            active_stopped = true;
        }
        self.queue.retain(|p| {
            let hit = targeted(p.request_id);
            if hit {
                stopped.push(p.request_id);
            }
            !hit
        });
        // §8.6: stopped requests get no SPEAK-COMPLETE; the response lists them.
        self.respond_with_list(id, StatusCode::SUCCESS, &stopped, Some(marker));
        if active_stopped {
            self.start_next();
        }
    }

    fn pause(&mut self, id: RequestId) {
        let Some(active) = self.active_request() else {
            self.respond(id, StatusCode::METHOD_NOT_VALID_IN_STATE);
            return;
        };
        if !self.paused {
            self.paused = true;
            self.commands
                .push_back(MediaCommand::Pause { request_id: active });
        }
        self.respond_with_list(id, StatusCode::SUCCESS, &[active], None);
    }

    fn resume(&mut self, id: RequestId) {
        let Some(active) = self.active_request() else {
            self.respond(id, StatusCode::METHOD_NOT_VALID_IN_STATE);
            return;
        };
        if self.paused {
            self.paused = false;
            self.commands
                .push_back(MediaCommand::Resume { request_id: active });
        }
        self.respond_with_list(id, StatusCode::SUCCESS, &[active], None);
    }

    fn barge_in(&mut self, id: RequestId) {
        let marker = self.marker_now(self.active_request());
        let kill = self.active.as_ref().filter(|a| a.kill_on_barge_in);
        let Some(active) = kill.map(|a| a.request_id) else {
            // Nothing barge-in-able is playing: success, nothing terminated, no list.
            self.respond_with_list(id, StatusCode::SUCCESS, &[], Some(marker));
            return;
        };
        // §8.10: stop the prompt and every queued SPEAK; list them; no SPEAK-COMPLETE.
        let mut stopped = vec![active];
        stopped.extend(self.queue.drain(..).map(|p| p.request_id));
        self.commands
            .push_back(MediaCommand::Stop { request_id: active });
        self.active = None;
        self.paused = false;
        self.respond_with_list(id, StatusCode::SUCCESS, &stopped, Some(marker));
    }

    fn control(&mut self, id: RequestId, headers: &Headers) {
        let Some(active) = self.active_request() else {
            self.respond(id, StatusCode::METHOD_NOT_VALID_IN_STATE);
            return;
        };
        let parsed = headers.jump_size().and_then(|jump| {
            let restart = headers.speak_restart()?;
            let length = headers.speak_length()?;
            Ok((jump, restart, length))
        });
        let (jump, restart, length) = match parsed {
            Ok(v) => v,
            Err(e) => {
                self.respond_header_error(id, StatusCode::ILLEGAL_HEADER_VALUE, &e);
                return;
            }
        };
        let seek = match jump {
            None => None,
            Some(SpeechLength::Numeric {
                value,
                unit: SpeechUnit::Second,
            }) => {
                let by = Duration::from_secs(value.unsigned_abs());
                Some(if value < 0 {
                    SeekOffset::Backward(by)
                } else {
                    SeekOffset::Forward(by)
                })
            }
            Some(_) => {
                self.respond_unsupported_unit(id, names::JUMP_SIZE, headers);
                return;
            }
        };
        let length = match length {
            None => None,
            Some(SpeechLength::Numeric {
                value,
                unit: SpeechUnit::Second,
            }) => Some(MediaCommand::Limit {
                request_id: active,
                remaining: Duration::from_secs(value.unsigned_abs()),
            }),
            Some(SpeechLength::Tag(mark)) => Some(MediaCommand::EndAtMark {
                request_id: active,
                mark,
            }),
            Some(SpeechLength::Numeric { .. }) => {
                self.respond_unsupported_unit(id, names::SPEAK_LENGTH, headers);
                return;
            }
        };
        if restart == Some(true) {
            self.commands
                .push_back(MediaCommand::Restart { request_id: active });
        } else if let Some(offset) = seek {
            self.commands.push_back(MediaCommand::Seek {
                request_id: active,
                offset,
            });
        }
        // A Speak-Length in CONTROL counts from the current point.
        self.commands.extend(length);
        // Prosody applies to the request's text that has not started yet; a voice or
        // language change would need another voice mid-request: those are ignored, and 201
        // says so, as it does for prosody dimensions and values the media player cannot read.
        let (prosody, unread) = Prosody::from_headers(headers);
        if !prosody.is_empty()
            && let Some(a) = self.active.as_mut()
        {
            a.prosody = a.prosody.overlaid(prosody);
            let prosody = a.prosody;
            self.commands.push_back(MediaCommand::Prosody {
                request_id: active,
                prosody,
            });
        }
        let ignored = !unread.is_empty()
            || headers
                .iter()
                .any(|(n, _)| is_voice(n) || n.eq_ignore_ascii_case(names::SPEECH_LANGUAGE));
        let status = if ignored {
            StatusCode::SUCCESS_WITH_IGNORED_FIELDS
        } else {
            StatusCode::SUCCESS
        };
        let marker = self.marker_now(Some(active));
        self.respond_with_list(id, status, &[active], Some(marker));
    }

    fn set_params(&mut self, id: RequestId, headers: &Headers) {
        let mut unsupported = Headers::new();
        let mut illegal = Headers::new();
        for (name, value) in headers.iter().filter(|(n, _)| !is_framing_header(n)) {
            if !is_settable_synth_param(name) {
                unsupported.push(name, value);
                continue;
            }
            let mut one = Headers::new();
            one.push(name, value);
            if validate_param(&one, name).is_err() {
                illegal.push(name, value);
            }
        }
        let (status, echo) = if !unsupported.is_empty() {
            (StatusCode::UNSUPPORTED_HEADER, unsupported)
        } else if !illegal.is_empty() {
            (StatusCode::ILLEGAL_HEADER_VALUE, illegal)
        } else {
            for (name, value) in headers.iter().filter(|(n, _)| !is_framing_header(n)) {
                self.params.set(name, value);
            }
            (StatusCode::SUCCESS, Headers::new())
        };
        let mut msg = self.response(id, status, RequestState::Complete);
        for (name, value) in echo.iter() {
            msg.headers.push(name, value);
        }
        self.transmit.push_back(msg);
    }

    fn get_params(&mut self, id: RequestId, headers: &Headers) {
        let asked: Vec<&str> = headers
            .iter()
            .map(|(n, _)| n)
            .filter(|n| !is_framing_header(n))
            .collect();
        let mut msg = self.response(id, StatusCode::SUCCESS, RequestState::Complete);
        if asked.is_empty() {
            // §6.2: without named fields, report every parameter that has a value.
            for (name, value) in self.params.iter() {
                msg.headers.push(name, value);
            }
        } else {
            let unsupported: Vec<&str> = asked
                .iter()
                .copied()
                .filter(|n| !is_settable_synth_param(n))
                .collect();
            if !unsupported.is_empty() {
                let mut msg =
                    self.response(id, StatusCode::UNSUPPORTED_HEADER, RequestState::Complete);
                for name in unsupported {
                    msg.headers.push(name, "");
                }
                self.transmit.push_back(msg);
                return;
            }
            for name in asked {
                if let Some(value) = self.params.get(name) {
                    msg.headers.push(name, value);
                }
            }
        }
        self.transmit.push_back(msg);
    }

    fn settings_for(&self, request: &Headers) -> SpeakSettings {
        let mut params = self.params.clone();
        for (name, value) in request.iter() {
            if is_settable_synth_param(name) {
                params.set(name, value);
            }
        }
        SpeakSettings {
            kill_on_barge_in: params.kill_on_barge_in().ok().flatten().unwrap_or(true),
            speech_language: params.speech_language().map(str::to_string),
            voice_name: params.voice_name().map(str::to_string),
            voice_gender: params
                .voice_gender()
                .ok()
                .flatten()
                .map(str::to_ascii_lowercase),
            fetch_timeout: params.fetch_timeout().ok().flatten(),
            speak_length: None,
            prosody: Prosody::from_headers(&params).0,
            content_base: params.content_base().map(str::to_string),
            logging_tag: params.logging_tag().map(str::to_string),
            params,
        }
    }
}

/// Checks the grammar of the parameters a SPEAK carries.
fn validate_request_params(headers: &Headers) -> Result<(), HeaderError> {
    for (name, _) in headers.iter() {
        validate_param(headers, name)?;
    }
    Ok(())
}
