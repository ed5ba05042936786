//! The speechsynth state machine, scenario by scenario, with explicit time.

use std::time::{Duration, Instant};

use imss_mrcp::{
    CompletionCause, EventName, MediaCommand, MediaFailure, Message, Method, PlanItem, Prosody,
    RequestId, RequestState, SeekOffset, StartLine, StatusCode, SynthConfig, SynthState,
    Synthesizer, names,
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
    // Prosody applies to the text that has not started; a voice change cannot: 201.
    let (out, cmds) = h.send(request(Method::Control, 8).with_header(names::PROSODY_RATE, "fast"));
    assert_eq!(response_of(&out[0]).1, StatusCode::SUCCESS);
    assert_eq!(
        cmds,
        vec![MediaCommand::Prosody {
            request_id: 2,
            prosody: Prosody {
                rate: Some(150),
                ..Prosody::default()
            }
        }]
    );
    let (out, cmds) = h.send(
        request(Method::Control, 9)
            .with_header(names::PROSODY_VOLUME, "soft")
            .with_header(names::VOICE_NAME, "Mary"),
    );
    assert_eq!(
        response_of(&out[0]).1,
        StatusCode::SUCCESS_WITH_IGNORED_FIELDS
    );
    assert_eq!(
        cmds,
        vec![MediaCommand::Prosody {
            request_id: 2,
            prosody: Prosody {
                rate: Some(150),
                volume: Some(50),
                pitch: None
            }
        }],
        "the changes add up"
    );
    let (out, cmds) =
        h.send(request(Method::Control, 10).with_header("Prosody-Contour", "(0%,+20Hz)"));
    assert_eq!(
        response_of(&out[0]).1,
        StatusCode::SUCCESS_WITH_IGNORED_FIELDS
    );
    assert!(cmds.is_empty());
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

fn ssml(body: &str) -> String {
    format!(
        r#"<?xml version="1.0"?><speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis">{body}</speak>"#
    )
}

fn plan_of(cmds: &[MediaCommand]) -> Vec<PlanItem> {
    match cmds {
        [MediaCommand::Play { plan, .. }, ..] => plan.clone(),
        other => panic!("expected Play, got {other:?}"),
    }
}

#[test]
fn speak_length_in_seconds_up_to_a_mark_or_refused_for_other_units() {
    let mut h = Harness::new();
    let audio = |uri: &str| PlanItem::Audio {
        uri: uri.into(),
        fallback: None,
    };
    let body =
        ssml(r#"<audio src="a.wav"/><mark name="end"/><audio src="b.wav"/><mark name="x"/>"#);
    // Seconds limit the time played; the plan is whole.
    let (out, cmds) = h.send(
        request(Method::Speak, 1)
            .with_header(names::SPEAK_LENGTH, "+7 Second")
            .with_body("application/ssml+xml", body.as_str()),
    );
    assert_eq!(response_of(&out[0]).1, StatusCode::SUCCESS);
    match &cmds[..] {
        [MediaCommand::Play { plan, settings, .. }] => {
            assert_eq!(settings.speak_length, Some(Duration::from_secs(7)));
            assert_eq!(plan.len(), 4);
        }
        other => panic!("{other:?}"),
    }
    h.send(request(Method::Stop, 2));

    // A mark tag: the plan ends with that mark (reported, then SPEAK-COMPLETE normal).
    let (_, cmds) = h.send(
        request(Method::Speak, 3)
            .with_header(names::SPEAK_LENGTH, "end Tag")
            .with_body("application/ssml+xml", body.as_str()),
    );
    assert_eq!(
        plan_of(&cmds),
        vec![audio("a.wav"), PlanItem::Mark("end".into())]
    );
    h.synth.mark_reached(h.now, 3, "end", 1);
    h.synth.media_finished(h.now, 3);
    let (out, _) = h.drain();
    assert!(is_speak_complete(&out[1], 3, CompletionCause::Normal));
    // A tag the plan does not hold: all of it plays.
    let (_, cmds) = h.send(
        request(Method::Speak, 4)
            .with_header(names::SPEAK_LENGTH, "nowhere Tag")
            .with_body("application/ssml+xml", body.as_str()),
    );
    assert_eq!(plan_of(&cmds).len(), 4);
    h.send(request(Method::Stop, 5));

    // Words, sentences and paragraphs cannot be counted in audio: 409 echoing the field.
    for value in ["3 Word", "+1 Sentence", "2 paragraph"] {
        let (out, cmds) = h.send(
            request(Method::Speak, 6)
                .with_header(names::SPEAK_LENGTH, value)
                .with_body("text/plain", "hello"),
        );
        assert_eq!(
            response_of(&out[0]),
            (
                6,
                StatusCode::UNSUPPORTED_HEADER_VALUE,
                RequestState::Complete
            )
        );
        assert_eq!(out[0].headers.get(names::SPEAK_LENGTH), Some(value));
        assert!(cmds.is_empty());
        h.synth = Synthesizer::new(CH, SynthConfig::default());
    }
    let (out, _) = h.send(
        request(Method::Speak, 7)
            .with_header(names::SPEAK_LENGTH, "-3 Second")
            .with_body("text/plain", "hello"),
    );
    assert_eq!(response_of(&out[0]).1, StatusCode::ILLEGAL_HEADER_VALUE);
}

#[test]
fn control_speak_length_limits_the_playing_request_from_now() {
    let mut h = Harness::new();
    h.send(request(Method::Speak, 1).with_body("text/uri-list", "source:moh\r\n"));
    let (out, cmds) =
        h.send(request(Method::Control, 2).with_header(names::SPEAK_LENGTH, "3 Second"));
    assert_eq!(
        response_of(&out[0]),
        (2, StatusCode::SUCCESS, RequestState::Complete)
    );
    assert_eq!(active_list(&out[0]), Some(vec![1]));
    assert_eq!(
        cmds,
        vec![MediaCommand::Limit {
            request_id: 1,
            remaining: Duration::from_secs(3)
        }]
    );
    let (out, cmds) =
        h.send(request(Method::Control, 3).with_header(names::SPEAK_LENGTH, "chapter2 Tag"));
    assert_eq!(response_of(&out[0]).1, StatusCode::SUCCESS);
    assert_eq!(
        cmds,
        vec![MediaCommand::EndAtMark {
            request_id: 1,
            mark: "chapter2".into()
        }]
    );
    let (out, cmds) =
        h.send(request(Method::Control, 4).with_header(names::SPEAK_LENGTH, "2 Sentence"));
    assert_eq!(response_of(&out[0]).1, StatusCode::UNSUPPORTED_HEADER_VALUE);
    assert_eq!(out[0].headers.get(names::SPEAK_LENGTH), Some("2 Sentence"));
    assert!(cmds.is_empty());
    // The limit reached is a normal end.
    h.synth.media_finished(h.now, 1);
    let (out, _) = h.drain();
    assert!(is_speak_complete(&out[0], 1, CompletionCause::Normal));
}

/// The NTP time `after` past an NTP time `base`.
fn ntp_after(base: u64, after: Duration) -> u64 {
    base + (after.as_secs() << 32) + ((u64::from(after.subsec_nanos()) << 32) / 1_000_000_000)
}

fn marker_of(msg: &Message) -> Option<String> {
    msg.headers
        .speech_marker()
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|m| m.to_string())
}

#[test]
fn speech_markers_for_item_starts_marks_and_in_responses() {
    const NTP: u64 = 0xE000_0000_0000_0000;
    let mut h = Harness::new();
    let t0 = h.now;
    h.synth.handle_wall_clock(t0, NTP);
    let at = |h: &Harness| ntp_after(NTP, h.now - t0);

    // The IN-PROGRESS response: the time, no mark yet.
    let (out, _) = h.speak(1, "one");
    assert_eq!(marker_of(&out[0]), Some(format!("timestamp={}", at(&h))));
    // A PENDING response has none (the RFC asks for it in IN-PROGRESS only).
    let (out, _) = h.speak(2, "two");
    assert_eq!(
        response_of(&out[0]),
        (2, StatusCode::SUCCESS, RequestState::Pending)
    );
    assert_eq!(marker_of(&out[0]), None);

    // Each spoken item's first packet: SPEECH-MARKER with no name, at the media's time.
    h.synth.item_started(h.now, 1, 77);
    let (out, _) = h.drain();
    assert_eq!(
        out[0].start,
        StartLine::Event {
            event: EventName::SpeechMarker,
            request_id: 1,
            state: RequestState::InProgress
        }
    );
    assert_eq!(marker_of(&out[0]).as_deref(), Some("timestamp=77"));
    // Reports about a request that is not playing are dropped.
    h.synth.item_started(h.now, 2, 78);
    assert!(h.drain().0.is_empty());

    // After a mark, CONTROL and SPEAK-COMPLETE name it; an item start does not replace it.
    h.synth.mark_reached(h.now, 1, "m1", 88);
    h.synth.item_started(h.now, 1, 89);
    let (out, _) = h.drain();
    assert_eq!(marker_of(&out[0]).as_deref(), Some("timestamp=88;m1"));
    assert_eq!(marker_of(&out[1]).as_deref(), Some("timestamp=89"));
    let (out, _) = h.send(request(Method::Control, 3).with_header(names::JUMP_SIZE, "+1 Second"));
    assert_eq!(marker_of(&out[0]), Some(format!("timestamp={};m1", at(&h))));
    h.now += Duration::from_millis(1500);
    h.synth.media_finished(h.now, 1);
    let (out, _) = h.drain();
    assert!(is_speak_complete(&out[0], 1, CompletionCause::Normal));
    assert_eq!(marker_of(&out[0]), Some(format!("timestamp={};m1", at(&h))));

    // Request 2 now plays and has reached no mark: STOP carries only the time.
    let (out, _) = h.send(request(Method::Stop, 4));
    assert_eq!(active_list(&out[0]), Some(vec![2]));
    assert_eq!(marker_of(&out[0]), Some(format!("timestamp={}", at(&h))));
    // BARGE-IN-OCCURRED: with the stopped request's last mark.
    h.speak(5, "five");
    h.synth.mark_reached(h.now, 5, "half", 99);
    h.drain();
    let (out, _) = h.send(request(Method::BargeInOccurred, 6));
    assert_eq!(active_list(&out[0]), Some(vec![5]));
    assert_eq!(
        marker_of(&out[0]),
        Some(format!("timestamp={};half", at(&h)))
    );
    // A failed SPEAK completes with the time too.
    let (out, _) = h.send(request(Method::Speak, 7).with_body("application/ssml+xml", "<x/>"));
    assert!(is_speak_complete(&out[1], 7, CompletionCause::ParseFailure));
    assert_eq!(marker_of(&out[1]), Some(format!("timestamp={}", at(&h))));
}

#[test]
fn speech_marker_timestamp_is_zero_without_a_wall_clock() {
    let mut h = Harness::new();
    let (out, _) = h.speak(1, "one");
    assert_eq!(marker_of(&out[0]).as_deref(), Some("timestamp=0"));
}

#[test]
fn basicsynth_fails_ssml_beyond_its_subset_with_parse_failure() {
    let basic = SynthConfig {
        ssml: imss_mrcp::SsmlSubset::Basic,
        ..SynthConfig::default()
    };
    let mut h = Harness::new();
    h.synth = Synthesizer::new(CH, basic);
    let fine = ssml(
        r#"Call <say-as interpret-as="telephone">555 0100</say-as><mark name="m"/><audio src="a.wav"/>"#,
    );
    let (out, cmds) =
        h.send(request(Method::Speak, 1).with_body("application/ssml+xml", fine.as_str()));
    assert_eq!(out.len(), 1);
    assert_eq!(plan_of(&cmds).len(), 3);
    h.synth.media_finished(h.now, 1);
    h.drain();

    let rich = ssml(r#"Hello <prosody rate="slow">there</prosody>"#);
    let (out, cmds) =
        h.send(request(Method::Speak, 2).with_body("application/ssml+xml", rich.as_str()));
    assert_eq!(
        response_of(&out[0]),
        (2, StatusCode::SUCCESS, RequestState::InProgress)
    );
    assert!(is_speak_complete(&out[1], 2, CompletionCause::ParseFailure));
    let reason = out[1].headers.completion_reason().unwrap_or_default();
    assert!(
        reason.contains("<prosody>") && reason.contains("basicsynth"),
        "{reason}"
    );
    assert!(cmds.is_empty());
    assert_eq!(h.synth.state(), SynthState::Idle);

    // The same body on a speechsynth channel plays.
    let mut h = Harness::new();
    let (_, cmds) =
        h.send(request(Method::Speak, 1).with_body("application/ssml+xml", rich.as_str()));
    assert_eq!(plan_of(&cmds).len(), 1);
}

#[test]
fn speak_prosody_comes_from_the_request_over_set_params() {
    let mut h = Harness::new();
    h.send(
        request(Method::SetParams, 1)
            .with_header(names::PROSODY_RATE, "slow")
            .with_header(names::PROSODY_VOLUME, "loud"),
    );
    let (_, cmds) = h.send(
        request(Method::Speak, 2)
            .with_header(names::PROSODY_RATE, "x-fast")
            .with_body("text/plain", "hi"),
    );
    match &cmds[..] {
        [MediaCommand::Play { settings, .. }] => assert_eq!(
            settings.prosody,
            Prosody {
                rate: Some(200),
                volume: Some(150),
                pitch: None
            }
        ),
        other => panic!("{other:?}"),
    }
    // CONTROL overlays the request's prosody, not the channel's defaults.
    let (_, cmds) = h.send(request(Method::Control, 3).with_header(names::PROSODY_PITCH, "high"));
    assert_eq!(
        cmds,
        vec![MediaCommand::Prosody {
            request_id: 2,
            prosody: Prosody {
                rate: Some(200),
                volume: Some(150),
                pitch: Some(125)
            }
        }]
    );
}
