//! Messages captured from UniMRCP 1.8 (`umc` and `unimrcpserver`), kept byte for byte in
//! `tests/data` (copied from shared/interop/unimrcp-1.8): they parse, re-serialise to the same
//! bytes, and our answers to the captured SPEAK have the shape of unimrcpserver's (plus the
//! `Speech-Marker` field RFC 6787 asks for).

use std::time::Instant;

use imss_mrcp::{
    Check, CompletionCause, EventName, Limits, Message, Method, PlanItem, RequestState, StartLine,
    StatusCode, SynthConfig, Synthesizer, check, names, parse, parse_speak_body,
};

const SPEAK: &[u8] = include_bytes!("data/mrcp-speak-from-umc.txt");
const RESPONSE: &[u8] = include_bytes!("data/mrcp-speak-response-from-unimrcpserver.txt");
const COMPLETE: &[u8] = include_bytes!("data/mrcp-speak-complete-from-unimrcpserver.txt");
const CHANNEL: &str = "bec57cd70a2f4130@speechsynth";

fn parse_whole(bytes: &[u8]) -> Message {
    let limits = Limits::default();
    assert_eq!(check(bytes, &limits), Ok(Check::Complete(bytes.len())));
    match parse(bytes, &limits) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn every_captured_message_parses_and_reencodes_byte_for_byte() {
    for bytes in [SPEAK, RESPONSE, COMPLETE] {
        let msg = parse_whole(bytes);
        assert_eq!(msg.headers.channel_identifier(), Some(CHANNEL));
        assert_eq!(msg.encode(), bytes, "{}", String::from_utf8_lossy(bytes));
    }
}

#[test]
fn captured_speak_is_understood() {
    let msg = parse_whole(SPEAK);
    assert_eq!(
        msg.start,
        StartLine::Request {
            method: Method::Speak,
            request_id: 1
        }
    );
    assert_eq!(
        msg.headers.content_type().as_deref(),
        Some("application/synthesis+ssml")
    );
    assert_eq!(msg.headers.content_length(), Ok(Some(158)));
    // The body keeps its bare LF line endings.
    assert!(msg.body.starts_with(b"<?xml version=\"1.0\"?>\n<speak"));
    let plan = parse_speak_body("application/synthesis+ssml", &msg.body);
    assert_eq!(
        plan,
        Ok(vec![PlanItem::Text {
            text: "Welcome to Uni MRCP.".into(),
            voice: None,
            language: Some("en-US".into()),
        }])
    );
}

#[test]
fn captured_server_messages_are_understood() {
    let response = parse_whole(RESPONSE);
    assert_eq!(
        response.start,
        StartLine::Response {
            request_id: 1,
            status: StatusCode::SUCCESS,
            state: RequestState::InProgress
        }
    );
    let complete = parse_whole(COMPLETE);
    assert_eq!(
        complete.start,
        StartLine::Event {
            event: EventName::SpeakComplete,
            request_id: 1,
            state: RequestState::Complete
        }
    );
    assert_eq!(
        complete.headers.completion_cause(),
        Ok(Some(CompletionCause::Normal))
    );
}

/// `message` without its `Speech-Marker` field, which RFC 6787 asks for in the
/// IN-PROGRESS response and in SPEAK-COMPLETE and unimrcpserver leaves out.
fn without_speech_marker(mut message: Message) -> (Vec<u8>, Option<String>) {
    let marker = message.headers.remove(names::SPEECH_MARKER);
    (message.encode(), marker)
}

#[test]
fn our_answers_to_the_captured_speak_match_unimrcpserver() {
    let now = Instant::now();
    let mut synth = Synthesizer::new(CHANNEL, SynthConfig::default());
    synth.handle_wall_clock(now, 0xE000_0000_8000_0000);
    synth.handle_request(now, &parse_whole(SPEAK));
    let response = synth.poll_transmit().map(without_speech_marker);
    assert_eq!(
        response,
        Some((
            RESPONSE.to_vec(),
            Some("timestamp=16140901066643341312".into())
        ))
    );
    assert!(synth.poll_transmit().is_none());

    let Some(imss_mrcp::MediaCommand::Play {
        request_id, plan, ..
    }) = synth.poll_command()
    else {
        panic!("SPEAK should start playback");
    };
    assert_eq!(request_id, 1);
    assert_eq!(plan.len(), 1);

    synth.media_finished(now + std::time::Duration::from_millis(1500), 1);
    let complete = synth.poll_transmit().map(without_speech_marker);
    // 1.5 s later: 0x1_8000_0000 more in NTP units.
    assert_eq!(
        complete,
        Some((
            COMPLETE.to_vec(),
            Some("timestamp=16140901073085792256".into())
        ))
    );
    assert!(synth.poll_transmit().is_none());
}

#[test]
fn captured_speak_split_at_every_byte_and_fed_in_pieces() {
    let limits = Limits::default();
    for split in 1..SPEAK.len() {
        let mut buf = SPEAK[..split].to_vec();
        assert_eq!(check(&buf, &limits), Ok(Check::Incomplete), "split {split}");
        buf.extend_from_slice(&SPEAK[split..]);
        assert_eq!(check(&buf, &limits), Ok(Check::Complete(SPEAK.len())));
    }
    // One byte at a time, as a slow TCP peer would deliver it.
    let mut buf = Vec::new();
    let mut found = None;
    for (i, b) in SPEAK.iter().enumerate() {
        buf.push(*b);
        if let Ok(Check::Complete(n)) = check(&buf, &limits) {
            found = Some((i, n));
            break;
        }
    }
    assert_eq!(found, Some((SPEAK.len() - 1, SPEAK.len())));
}

#[test]
fn captured_messages_back_to_back_in_one_buffer() {
    let limits = Limits::default();
    let mut buf = Vec::new();
    for bytes in [SPEAK, RESPONSE, COMPLETE] {
        buf.extend_from_slice(bytes);
    }
    let mut rest = &buf[..];
    let mut starts = Vec::new();
    while !rest.is_empty() {
        let Ok(Check::Complete(n)) = check(rest, &limits) else {
            panic!("framing lost with {} bytes left", rest.len());
        };
        starts.push(parse(&rest[..n], &limits).map(|m| m.start));
        rest = &rest[n..];
    }
    assert_eq!(starts.len(), 3);
    assert!(starts.iter().all(Result::is_ok));
    assert_eq!(
        parse_whole(COMPLETE).headers.get(names::COMPLETION_CAUSE),
        Some("000 normal")
    );
}
