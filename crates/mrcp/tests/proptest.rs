//! Property tests: the codec and the body parser never panic on arbitrary input, and
//! generated messages survive encode → check → parse unchanged.

use std::time::Instant;

use imss_mrcp::{
    Check, EventName, Limits, Message, Method, RequestState, StartLine, StatusCode, SynthConfig,
    Synthesizer, check, names, parse, parse_speak_body,
};
use proptest::prelude::*;

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Speak),
        Just(Method::Stop),
        Just(Method::Pause),
        Just(Method::Resume),
        Just(Method::BargeInOccurred),
        Just(Method::Control),
        Just(Method::GetParams),
        Just(Method::SetParams),
        Just(Method::DefineLexicon),
        "[A-Z][A-Z-]{0,15}".prop_map(|s| Method::from_token(&s)),
    ]
}

fn state() -> impl Strategy<Value = RequestState> {
    prop_oneof![
        Just(RequestState::Complete),
        Just(RequestState::InProgress),
        Just(RequestState::Pending),
    ]
}

fn start_line() -> impl Strategy<Value = StartLine> {
    prop_oneof![
        (method(), any::<u32>())
            .prop_map(|(method, request_id)| StartLine::Request { method, request_id }),
        (any::<u32>(), 100u16..=999, state()).prop_map(|(request_id, code, state)| {
            StartLine::Response {
                request_id,
                status: StatusCode::new(code).unwrap_or(StatusCode::SUCCESS),
                state,
            }
        }),
        (
            prop_oneof![
                Just(EventName::SpeakComplete),
                Just(EventName::SpeechMarker),
                "[A-Z][A-Z-]{0,15}".prop_map(|s| EventName::from_token(&s)),
            ],
            any::<u32>(),
            state()
        )
            .prop_map(|(event, request_id, state)| StartLine::Event {
                event,
                request_id,
                state
            }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    (
        start_line(),
        prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,20}", "[ -~]{0,40}"), 0..10),
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(start, fields, body)| {
            let mut msg = match start {
                StartLine::Request { method, request_id } => Message::request(method, request_id),
                StartLine::Response {
                    request_id,
                    status,
                    state,
                } => Message::response(request_id, status, state),
                StartLine::Event {
                    event,
                    request_id,
                    state,
                } => Message::event(event, request_id, state),
            };
            for (name, value) in fields {
                if !name.eq_ignore_ascii_case(names::CONTENT_LENGTH) {
                    // Values are stored trimmed, as the parser yields them.
                    msg.headers.push(&name, value.trim());
                }
            }
            if !body.is_empty() {
                msg = msg.with_body("application/octet-stream", body);
            }
            msg
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(512)
    })]

    #[test]
    fn check_and_parse_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let limits = Limits { max_message_size: 256, max_headers: 8 };
        if let Ok(Check::Complete(n)) = check(&bytes, &limits) {
            prop_assert!(n <= bytes.len() && n <= 256);
            let _ = parse(&bytes[..n], &limits);
        }
        let _ = parse(&bytes, &limits);
    }

    #[test]
    fn mrcp_looking_input_never_panics(
        slack in -2i64..3,
        tail in "[A-Z0-9 :@-]{0,12}(\r\n[A-Za-z-]{0,12}:[ -~]{0,12}){0,4}\r\n\r\n[ -~\r\n]{0,40}",
    ) {
        // A start line whose length is right, or off by a little.
        let base = "MRCP/2.0 ".len() + 1 + tail.len();
        let mut exact = base + 1;
        while base + exact.to_string().len() != exact {
            exact = base + exact.to_string().len();
        }
        let len = (exact as i64 + slack).max(0);
        let bytes = format!("MRCP/2.0 {len} {tail}").into_bytes();
        let limits = Limits::default();
        let parsed = match check(&bytes, &limits) {
            Ok(Check::Complete(n)) => parse(&bytes[..n], &limits).ok(),
            _ => None,
        };
        if let Some(msg) = parsed {
            // Whatever parsed can be fed to the state machine.
            let mut synth = Synthesizer::new("a@speechsynth", SynthConfig::default());
            synth.handle_request(Instant::now(), &msg);
            while synth.poll_transmit().is_some() {}
            while synth.poll_command().is_some() {}
        }
    }

    #[test]
    fn generated_messages_round_trip(msg in message()) {
        let bytes = msg.encode();
        let limits = Limits { max_message_size: 1 << 20, max_headers: 64 };
        prop_assert_eq!(check(&bytes, &limits), Ok(Check::Complete(bytes.len())));
        let parsed = parse(&bytes, &limits);
        prop_assert_eq!(parsed.as_ref(), Ok(&msg));
        prop_assert_eq!(parsed.map(|m| m.encode()), Ok(bytes.clone()));
        // Split anywhere: incomplete until the last byte.
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            prop_assert_eq!(check(&bytes[..cut], &limits), Ok(Check::Incomplete));
        }
    }

    #[test]
    fn body_parser_never_panics(
        body in prop::collection::vec(any::<u8>(), 0..400),
        kind in 0usize..4,
    ) {
        let ct = ["application/ssml+xml", "application/synthesis+ssml", "text/uri-list", "text/plain"][kind];
        let _ = parse_speak_body(ct, &body);
    }

    #[test]
    fn ssml_like_input_never_panics(
        body in "<speak>([a-z ]|<break time=\"[0-9.]{0,6}m?s\"/>|<mark name=\"[a-z]{0,3}\"/>|<audio src=\"[a-z:/]{0,8}\">|</audio>|<p>|</p>|&[a-z#0-9]{0,5};)*(</speak>)?",
    ) {
        let _ = parse_speak_body("application/ssml+xml", body.as_bytes());
    }
}
