//! The speechsynth state machine, scenario by scenario, with explicit time.

use std::time::{Duration, Instant};

use imss_mrcp::{
    CompletionCause, EventName, MediaCommand, MediaFailure, Message, Method, PlanItem, RequestId,
    RequestState, SeekOffset, StartLine, StatusCode, SynthConfig, SynthState, Synthesizer, names,
};

const CH: &str = "ch1@speechsynth";

struct Harness {
    synth: Synthesizer,
    now: Instant,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            synth: Synthesizer::new(CH, SynthConfig::default()),
            now: Instant::now(),
        }
    }

    /// Sends a request through the wire format (encode, then parse) and returns what came out.
    fn send(&mut self, msg: Message) -> (Vec<Message>, Vec<MediaCommand>) {
        let bytes = msg.encode();
        let parsed = imss_mrcp::parse(&bytes, &imss_mrcp::Limits::default())
            .unwrap_or_else(|e| panic!("our own request does not parse: {e}"));
        self.now += Duration::from_millis(10);
        self.synth.handle_request(self.now, &parsed);
        self.drain()
    }

    fn drain(&mut self) -> (Vec<Message>, Vec<MediaCommand>) {
        let mut out = Vec::new();
        while let Some(m) = self.synth.poll_transmit() {
            out.push(m);
        }
        let mut cmds = Vec::new();
        while let Some(c) = self.synth.poll_command() {
            cmds.push(c);
        }
        (out, cmds)
    }

    fn speak(&mut self, id: RequestId, text: &str) -> (Vec<Message>, Vec<MediaCommand>) {
        self.send(request(Method::Speak, id).with_body("text/plain", text))
    }
}

fn request(method: Method, id: RequestId) -> Message {
    Message::request(method, id).with_header(names::CHANNEL_IDENTIFIER, CH)
}

fn response_of(msg: &Message) -> (RequestId, StatusCode, RequestState) {
    match msg.start {
        StartLine::Response {
            request_id,
            status,
            state,
        } => (request_id, status, state),
        ref other => panic!("expected a response, got {other:?}"),
    }
}

fn is_speak_complete(msg: &Message, id: RequestId, cause: CompletionCause) -> bool {
    msg.start
        == StartLine::Event {
            event: EventName::SpeakComplete,
            request_id: id,
            state: RequestState::Complete,
        }
        && msg.headers.completion_cause() == Ok(Some(cause))
        && msg.headers.channel_identifier() == Some(CH)
}

fn active_list(msg: &Message) -> Option<Vec<RequestId>> {
    msg.headers.active_request_id_list().ok().flatten()
}

#[test]
fn speak_plays_and_completes_normally() {
    let mut h = Harness::new();
    let (out, cmds) = h.speak(1, "Hello there");
    assert_eq!(out.len(), 1);
    assert_eq!(
        response_of(&out[0]),
        (1, StatusCode::SUCCESS, RequestState::InProgress)
    );
    assert_eq!(out[0].headers.channel_identifier(), Some(CH));
    match &cmds[..] {
        [
            MediaCommand::Play {
                request_id: 1,
                plan,
                settings,
            },
        ] => {
            assert_eq!(
                plan,
                &vec![PlanItem::Text {
                    text: "Hello there".into(),
                    voice: None,
                    language: None
                }]
            );
            assert!(settings.kill_on_barge_in);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.synth.state(), SynthState::Speaking);

    h.synth.mark_reached(h.now, 1, "m1", 0xE000_0000_0000_0001);
    let (out, _) = h.drain();
    assert_eq!(
        out[0].start,
        StartLine::Event {
            event: EventName::SpeechMarker,
            request_id: 1,
            state: RequestState::InProgress
        }
    );
    let marker = out[0].headers.speech_marker().ok().flatten();
    assert_eq!(
        marker.map(|m| m.to_string()).as_deref(),
        Some("timestamp=16140901064495857665;m1")
    );

    h.synth.media_finished(h.now, 1);
    let (out, cmds) = h.drain();
    assert_eq!(out.len(), 1);
    assert!(is_speak_complete(&out[0], 1, CompletionCause::Normal));
    assert_eq!(out[0].headers.get(names::COMPLETION_REASON), None);
    assert!(cmds.is_empty());
    assert_eq!(h.synth.state(), SynthState::Idle);

    // A late report for a finished request changes nothing.
    h.synth.media_finished(h.now, 1);
    h.synth.mark_reached(h.now, 1, "late", 1);
    assert_eq!(h.drain(), (vec![], vec![]));
}

#[test]
fn speaks_queue_behind_the_active_one() {
    let mut h = Harness::new();
    h.speak(1, "one");
    let (out, cmds) = h.speak(2, "two");
    assert_eq!(
        response_of(&out[0]),
        (2, StatusCode::SUCCESS, RequestState::Pending)
    );
    assert!(cmds.is_empty(), "a queued SPEAK does not play yet");
    h.speak(3, "three");
    assert_eq!(h.synth.pending_requests(), vec![2, 3]);

    h.synth.media_finished(h.now, 1);
    let (out, cmds) = h.drain();
    assert!(is_speak_complete(&out[0], 1, CompletionCause::Normal));
    assert!(matches!(
        cmds[..],
        [MediaCommand::Play { request_id: 2, .. }]
    ));
    assert_eq!(h.synth.active_request(), Some(2));

    h.synth.media_finished(h.now, 2);
    h.synth.media_finished(h.now, 3);
    let (out, _) = h.drain();
    assert!(is_speak_complete(&out[0], 2, CompletionCause::Normal));
    assert!(is_speak_complete(&out[1], 3, CompletionCause::Normal));
    assert_eq!(h.synth.state(), SynthState::Idle);
}

#[test]
fn stop_without_list_ends_active_and_queued_without_speak_complete() {
    let mut h = Harness::new();
    h.speak(1, "one");
    h.speak(2, "two");
    h.speak(3, "three");
    let (out, cmds) = h.send(request(Method::Stop, 4));
    assert_eq!(out.len(), 1, "no SPEAK-COMPLETE for stopped requests");
    assert_eq!(
        response_of(&out[0]),
        (4, StatusCode::SUCCESS, RequestState::Complete)
    );
    assert_eq!(active_list(&out[0]), Some(vec![1, 2, 3]));
    assert_eq!(cmds, vec![MediaCommand::Stop { request_id: 1 }]);
    assert_eq!(h.synth.state(), SynthState::Idle);

    // STOP with nothing to stop: success without a list.
    let (out, cmds) = h.send(request(Method::Stop, 5));
    assert_eq!(
        response_of(&out[0]),
        (5, StatusCode::SUCCESS, RequestState::Complete)
    );
    assert_eq!(out[0].headers.get(names::ACTIVE_REQUEST_ID_LIST), None);
    assert!(cmds.is_empty());
}

#[test]
fn stop_with_list_ends_only_the_listed_requests() {
    let mut h = Harness::new();
    h.speak(1, "one");
    h.speak(2, "two");
    h.speak(3, "three");
    // Only a queued one.
    let (out, cmds) =
        h.send(request(Method::Stop, 4).with_header(names::ACTIVE_REQUEST_ID_LIST, "2"));
    assert_eq!(active_list(&out[0]), Some(vec![2]));
    assert!(cmds.is_empty());
    assert_eq!(h.synth.active_request(), Some(1));
    assert_eq!(h.synth.pending_requests(), vec![3]);
    // The active one: the next pending starts.
    let (out, cmds) =
        h.send(request(Method::Stop, 5).with_header(names::ACTIVE_REQUEST_ID_LIST, "1,99"));
    assert_eq!(active_list(&out[0]), Some(vec![1]));
    assert_eq!(cmds.len(), 2);
    assert_eq!(cmds[0], MediaCommand::Stop { request_id: 1 });
    assert!(matches!(cmds[1], MediaCommand::Play { request_id: 3, .. }));
    // A malformed list is a 404 echoing the field.
    let (out, _) = h.send(request(Method::Stop, 6).with_header(names::ACTIVE_REQUEST_ID_LIST, "x"));
    assert_eq!(response_of(&out[0]).1, StatusCode::ILLEGAL_HEADER_VALUE);
    assert_eq!(out[0].headers.get(names::ACTIVE_REQUEST_ID_LIST), Some("x"));
}

#[test]
fn pause_and_resume() {
    let mut h = Harness::new();
    // Not valid while idle.
    let (out, _) = h.send(request(Method::Pause, 1));
    assert_eq!(
        response_of(&out[0]).1,
        StatusCode::METHOD_NOT_VALID_IN_STATE
    );
    let (out, _) = h.send(request(Method::Resume, 2));
    assert_eq!(
        response_of(&out[0]).1,
        StatusCode::METHOD_NOT_VALID_IN_STATE
    );

    h.speak(3, "text");
    let (out, cmds) = h.send(request(Method::Pause, 4));
    assert_eq!(
        response_of(&out[0]),
        (4, StatusCode::SUCCESS, RequestState::Complete)
    );
    assert_eq!(active_list(&out[0]), Some(vec![3]));
    assert_eq!(cmds, vec![MediaCommand::Pause { request_id: 3 }]);
    assert_eq!(h.synth.state(), SynthState::Paused);

    // PAUSE while paused stays paused without another command.
    let (out, cmds) = h.send(request(Method::Pause, 5));
    assert_eq!(response_of(&out[0]).1, StatusCode::SUCCESS);
    assert!(cmds.is_empty());

    let (out, cmds) = h.send(request(Method::Resume, 6));
    assert_eq!(active_list(&out[0]), Some(vec![3]));
    assert_eq!(cmds, vec![MediaCommand::Resume { request_id: 3 }]);
    assert_eq!(h.synth.state(), SynthState::Speaking);

    // RESUME while speaking: success, nothing to do.
    let (out, cmds) = h.send(request(Method::Resume, 7));
    assert_eq!(response_of(&out[0]).1, StatusCode::SUCCESS);
    assert!(cmds.is_empty());
}

#[test]
fn stopping_a_paused_speak_hands_the_pause_to_the_next() {
    let mut h = Harness::new();
    h.speak(1, "one");
    h.speak(2, "two");
    h.send(request(Method::Pause, 3));
    let (_, cmds) =
        h.send(request(Method::Stop, 4).with_header(names::ACTIVE_REQUEST_ID_LIST, "1"));
    assert_eq!(cmds[0], MediaCommand::Stop { request_id: 1 });
    assert!(matches!(cmds[1], MediaCommand::Play { request_id: 2, .. }));
    assert_eq!(cmds[2], MediaCommand::Pause { request_id: 2 });
    assert_eq!(h.synth.state(), SynthState::Paused);
}

#[test]
fn barge_in_with_kill_on_barge_in() {
    let mut h = Harness::new();
    h.speak(1, "one");
    h.speak(2, "two");
    let (out, cmds) = h.send(request(Method::BargeInOccurred, 3));
    assert_eq!(
        out.len(),
        1,
        "§8.10: no SPEAK-COMPLETE for requests barge-in ended"
    );
    assert_eq!(
        response_of(&out[0]),
        (3, StatusCode::SUCCESS, RequestState::Complete)
    );
    assert_eq!(active_list(&out[0]), Some(vec![1, 2]));
    assert_eq!(cmds, vec![MediaCommand::Stop { request_id: 1 }]);
    assert_eq!(h.synth.state(), SynthState::Idle);
}

#[test]
fn barge_in_without_kill_on_barge_in_keeps_playing() {
    let mut h = Harness::new();
    h.send(
        request(Method::Speak, 1)
            .with_header(names::KILL_ON_BARGE_IN, "false")
            .with_body("text/plain", "keep going"),
    );
    let (out, cmds) = h.send(request(Method::BargeInOccurred, 2));
    assert_eq!(
        response_of(&out[0]),
        (2, StatusCode::SUCCESS, RequestState::Complete)
    );
    assert_eq!(out[0].headers.get(names::ACTIVE_REQUEST_ID_LIST), None);
    assert!(cmds.is_empty());
    assert_eq!(h.synth.state(), SynthState::Speaking);

    // The channel default set by SET-PARAMS applies to later SPEAKs.
    h.synth.media_finished(h.now, 1);
    h.drain();
    h.send(request(Method::SetParams, 3).with_header(names::KILL_ON_BARGE_IN, "false"));
    h.speak(4, "again");
    let (out, cmds) = h.send(request(Method::BargeInOccurred, 5));
    assert_eq!(out[0].headers.get(names::ACTIVE_REQUEST_ID_LIST), None);
    assert!(cmds.is_empty());
}

#[test]
fn set_params_then_get_params() {
    let mut h = Harness::new();
    let (out, _) = h.send(
        request(Method::SetParams, 1)
            .with_header(names::VOICE_NAME, "Mary")
            .with_header(names::SPEECH_LANGUAGE, "en-GB")
            .with_header(names::PROSODY_RATE, "slow")
            .with_header(names::FETCH_TIMEOUT, "3000"),
    );
    assert_eq!(response_of(&out[0]).1, StatusCode::SUCCESS);

    let (out, _) = h.send(
        request(Method::GetParams, 2)
            .with_header(names::VOICE_NAME, "")
            .with_header("speech-language", "")
            .with_header(names::VOICE_AGE, ""),
    );
    assert_eq!(response_of(&out[0]).1, StatusCode::SUCCESS);
    assert_eq!(out[0].headers.get(names::VOICE_NAME), Some("Mary"));
    assert_eq!(out[0].headers.get(names::SPEECH_LANGUAGE), Some("en-GB"));
    assert_eq!(out[0].headers.get(names::VOICE_AGE), None, "never set");

    // Without named fields: everything that has a value, defaults included.
    let (out, _) = h.send(request(Method::GetParams, 3));
    assert_eq!(out[0].headers.get(names::KILL_ON_BARGE_IN), Some("true"));
    assert_eq!(out[0].headers.get(names::PROSODY_RATE), Some("slow"));
    assert_eq!(out[0].headers.get(names::FETCH_TIMEOUT), Some("3000"));

    // The parameters reach the media side with the next SPEAK.
    let (_, cmds) = h.speak(4, "hi");
    let Some(MediaCommand::Play { settings, .. }) = cmds.first() else {
        panic!("{cmds:?}");
    };
    assert_eq!(settings.voice_name.as_deref(), Some("Mary"));
    assert_eq!(settings.speech_language.as_deref(), Some("en-GB"));
    assert_eq!(settings.fetch_timeout, Some(Duration::from_secs(3)));
}

#[test]
fn set_params_rejects_unsupported_and_illegal_fields_whole() {
    let mut h = Harness::new();
    let (out, _) = h.send(
        request(Method::SetParams, 1)
            .with_header(names::VOICE_NAME, "Mary")
            .with_header("Recognition-Timeout", "5000"),
    );
    assert_eq!(response_of(&out[0]).1, StatusCode::UNSUPPORTED_HEADER);
    assert_eq!(out[0].headers.get("Recognition-Timeout"), Some("5000"));
    let (out, _) =
        h.send(request(Method::SetParams, 2).with_header(names::KILL_ON_BARGE_IN, "maybe"));
    assert_eq!(response_of(&out[0]).1, StatusCode::ILLEGAL_HEADER_VALUE);
    assert_eq!(out[0].headers.get(names::KILL_ON_BARGE_IN), Some("maybe"));
    // Nothing of the rejected requests was applied.
    let (out, _) = h.send(request(Method::GetParams, 3).with_header(names::VOICE_NAME, ""));
    assert_eq!(out[0].headers.get(names::VOICE_NAME), None);
    let (out, _) = h.send(request(Method::GetParams, 4).with_header("Confidence-Threshold", ""));
    assert_eq!(response_of(&out[0]).1, StatusCode::UNSUPPORTED_HEADER);
}

#[test]
fn control_jumps_restarts_and_limits() {
    let mut h = Harness::new();
    let (out, _) = h.send(request(Method::Control, 1).with_header(names::JUMP_SIZE, "+5 Second"));
    assert_eq!(
        response_of(&out[0]).1,
        StatusCode::METHOD_NOT_VALID_IN_STATE
    );

    h.speak(2, "text");
    let (out, cmds) =
        h.send(request(Method::Control, 3).with_header(names::JUMP_SIZE, "+5 Second"));
    assert_eq!(
        response_of(&out[0]),
        (3, StatusCode::SUCCESS, RequestState::Complete)
    );
    assert_eq!(active_list(&out[0]), Some(vec![2]));
    assert_eq!(
        cmds,
        vec![MediaCommand::Seek {
            request_id: 2,
            offset: SeekOffset::Forward(Duration::from_secs(5))
        }]
    );
    let (_, cmds) = h.send(request(Method::Control, 4).with_header(names::JUMP_SIZE, "-2 Second"));
    assert_eq!(
        cmds,
        vec![MediaCommand::Seek {
            request_id: 2,
            offset: SeekOffset::Backward(Duration::from_secs(2))
        }]
    );
    let (_, cmds) = h.send(
        request(Method::Control, 5)
            .with_header(names::SPEAK_RESTART, "true")
            .with_header(names::SPEAK_LENGTH, "10 Second"),
    );
    assert_eq!(
        cmds,
        vec![
            MediaCommand::Restart { request_id: 2 },
            MediaCommand::Limit {
                request_id: 2,
                remaining: Duration::from_secs(10)
            }
        ]
    );
    // Words cannot be counted in recorded audio: 409, nothing done.
    let (out, cmds) = h.send(request(Method::Control, 6).with_header(names::JUMP_SIZE, "+3 Word"));
    assert_eq!(response_of(&out[0]).1, StatusCode::UNSUPPORTED_HEADER_VALUE);
    assert!(cmds.is_empty());
    let (out, _) = h.send(request(Method::Control, 7).with_header(names::JUMP_SIZE, "five"));
    assert_eq!(response_of(&out[0]).1, StatusCode::ILLEGAL_HEADER_VALUE);
    // Prosody cannot change recorded audio: 201, some fields ignored.
    let (out, _) = h.send(request(Method::Control, 8).with_header(names::PROSODY_RATE, "fast"));
    assert_eq!(
        response_of(&out[0]).1,
        StatusCode::SUCCESS_WITH_IGNORED_FIELDS
    );
}

#[test]
fn bad_ssml_completes_with_parse_failure() {
    let mut h = Harness::new();
    let (out, cmds) = h.send(
        request(Method::Speak, 1).with_body("application/ssml+xml", "<speak><p>unclosed</speak>"),
    );
    assert_eq!(out.len(), 2);
    assert_eq!(
        response_of(&out[0]),
        (1, StatusCode::SUCCESS, RequestState::InProgress)
    );
    assert!(is_speak_complete(&out[1], 1, CompletionCause::ParseFailure));
    let reason = out[1].headers.completion_reason().unwrap_or_default();
    assert!(reason.contains("SSML"), "{reason}");
    assert!(cmds.is_empty(), "nothing to play");
    assert_eq!(h.synth.state(), SynthState::Idle);
}

#[test]
fn bad_ssml_behind_a_playing_speak_fails_when_its_turn_comes() {
    let mut h = Harness::new();
    h.speak(1, "one");
    let (out, _) = h.send(request(Method::Speak, 2).with_body("application/ssml+xml", "<html/>"));
    assert_eq!(
        response_of(&out[0]),
        (2, StatusCode::SUCCESS, RequestState::Pending)
    );
    h.speak(3, "three");
    h.synth.media_finished(h.now, 1);
    let (out, cmds) = h.drain();
    assert!(is_speak_complete(&out[0], 1, CompletionCause::Normal));
    assert!(is_speak_complete(&out[1], 2, CompletionCause::ParseFailure));
    assert!(matches!(
        cmds[..],
        [MediaCommand::Play { request_id: 3, .. }]
    ));
}

#[test]
fn unsupported_or_missing_body_type() {
    let mut h = Harness::new();
    let (out, cmds) =
        h.send(request(Method::Speak, 1).with_body("application/pls+xml", "<lexicon/>"));
    assert_eq!(response_of(&out[0]).1, StatusCode::UNSUPPORTED_ENTITY);
    assert!(cmds.is_empty());
    let (out, _) = h.send(request(Method::Speak, 2));
    assert_eq!(response_of(&out[0]).1, StatusCode::MANDATORY_HEADER_MISSING);
}

#[test]
fn media_failure_reports_cause_reason_and_failed_uri() {
    let mut h = Harness::new();
    h.send(request(Method::Speak, 1).with_body("text/uri-list", "file:///missing.wav\r\n"));
    h.synth.media_failed(
        h.now,
        1,
        MediaFailure::new(
            CompletionCause::UriFailure,
            "file:///missing.wav: no such file under the audio root",
        )
        .with_failed_uri("file:///missing.wav", "ENOENT"),
    );
    let (out, _) = h.drain();
    assert!(is_speak_complete(&out[0], 1, CompletionCause::UriFailure));
    assert_eq!(
        out[0].headers.get(names::COMPLETION_REASON),
        Some("\"file:///missing.wav: no such file under the audio root\"")
    );
    assert_eq!(
        out[0].headers.get(names::FAILED_URI),
        Some("file:///missing.wav")
    );
    assert_eq!(out[0].headers.get(names::FAILED_URI_CAUSE), Some("ENOENT"));
}

#[test]
fn channel_identifier_version_and_request_id_checks() {
    let mut h = Harness::new();
    // Missing Channel-Identifier: 406.
    let (out, cmds) = h.send(Message::request(Method::Speak, 1).with_body("text/plain", "x"));
    assert_eq!(response_of(&out[0]).1, StatusCode::MANDATORY_HEADER_MISSING);
    assert!(cmds.is_empty());
    // Another channel: 405 (resource not allocated), echoing the identifier.
    let (out, _) = h.send(
        Message::request(Method::Speak, 2)
            .with_header(names::CHANNEL_IDENTIFIER, "other@speechsynth")
            .with_body("text/plain", "x"),
    );
    assert_eq!(response_of(&out[0]).1, StatusCode::RESOURCE_NOT_ALLOCATED);
    assert_eq!(
        out[0].headers.channel_identifier(),
        Some("other@speechsynth")
    );
    // Another protocol version: 502.
    let mut old = request(Method::Stop, 3);
    old.version = imss_mrcp::Version { major: 1, minor: 0 };
    let (out, _) = h.send(old);
    assert_eq!(response_of(&out[0]).1, StatusCode::VERSION_NOT_SUPPORTED);
    // Request-ids must increase.
    h.send(request(Method::Stop, 10));
    let (out, _) = h.send(request(Method::Stop, 9));
    assert_eq!(response_of(&out[0]).1, StatusCode::NON_MONOTONIC_REQUEST_ID);
    // Methods of other resources, and lexicons.
    let (out, _) = h.send(request(Method::Other("RECOGNIZE".into()), 11));
    assert_eq!(response_of(&out[0]).1, StatusCode::METHOD_NOT_ALLOWED);
    let (out, _) = h.send(request(Method::DefineLexicon, 12));
    assert_eq!(response_of(&out[0]).1, StatusCode::METHOD_FAILED);
    assert_eq!(
        out[0].headers.completion_cause(),
        Ok(Some(CompletionCause::LexiconLoadFailure))
    );
    // Responses and events from the client are not requests: ignored.
    h.synth.handle_request(
        h.now,
        &Message::response(1, StatusCode::SUCCESS, RequestState::Complete),
    );
    assert_eq!(h.drain(), (vec![], vec![]));
    assert!(h.synth.last_activity().is_some());
}

#[test]
fn close_stops_the_media_silently() {
    let mut h = Harness::new();
    h.speak(1, "one");
    h.speak(2, "two");
    h.synth.close();
    let (out, cmds) = h.drain();
    assert!(out.is_empty());
    assert_eq!(cmds, vec![MediaCommand::Stop { request_id: 1 }]);
    assert_eq!(h.synth.state(), SynthState::Idle);
    assert!(h.synth.pending_requests().is_empty());
}

#[test]
fn queue_is_bounded() {
    let mut h = Harness::new();
    h.synth = Synthesizer::new(
        CH,
        SynthConfig {
            max_queued: 1,
            ..SynthConfig::default()
        },
    );
    h.speak(1, "a");
    h.speak(2, "b");
    let (out, _) = h.speak(3, "c");
    assert_eq!(response_of(&out[0]).1, StatusCode::METHOD_FAILED);
}
