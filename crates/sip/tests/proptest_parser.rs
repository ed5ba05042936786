//! Properties of the parsers: no input makes them panic, and every valid message the
//! serialiser writes parses back to itself (over UDP and TCP framing, folded or not).

use imss_sip::message::{
    self, Headers, Message, Method, NameAddr, Request, SipUri, Via, parse_datagram,
    parse_datagram_detailed, parse_stream, parse_stream_detailed,
};
use imss_sip::sdp::{self, SessionDescription};
use proptest::prelude::*;

const SEED: &str = "INVITE sip:annc@192.0.2.10:5060;play=file%3Ahello.wav SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:8062;rport;branch=z9hG4bK7rKDN6cvcZ1XS\r\n\
Max-Forwards: 70\r\n\
From: \"A\" <sip:127.0.0.1:8062>;tag=7m4HHZcgQDBFH\r\n\
To: <sip:127.0.0.1:8060>\r\n\
Call-ID: eb6a0766-6216-1240-f1ab-b6f5632ca98f\r\n\
CSeq: 1001112730 INVITE\r\n\
Contact: <sip:127.0.0.1:8062;transport=udp>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 62\r\n\
\r\n\
v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n";

fn exercise(bytes: &[u8]) {
    let _ = parse_datagram(bytes);
    let _ = parse_stream(bytes);
    if let Err(m) = parse_datagram_detailed(bytes) {
        let _ = m.to_string();
        if let Some(r) = m.answerable {
            let _ = r.to_bytes();
        }
    }
    let _ = parse_stream_detailed(bytes);
    if let Ok(s) = std::str::from_utf8(bytes) {
        let _ = s.parse::<SessionDescription>();
        let _ = SipUri::parse(s);
        let _ = NameAddr::parse(s);
        let _ = Via::parse(s);
        let _ = message::CSeq::parse(s);
        let _ = message::percent_decode(s);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        exercise(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..12)
    ) {
        let mut bytes = SEED.as_bytes().to_vec();
        for (at, b, op) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = b,
                1 => bytes.insert(i, b),
                _ => { bytes.remove(i); }
            }
        }
        exercise(&bytes);
        if let Ok(Message::Request(r)) = parse_datagram(&bytes) {
            // Whatever parses re-serialises to something that parses to the same request.
            let again = parse_datagram(&r.to_bytes());
            prop_assert!(again.is_ok(), "{:?}", again);
        }
    }

    #[test]
    fn arbitrary_sdp_text_never_panics(s in "(([a-z]=[ -~]{0,30})?\r?\n){0,40}") {
        if let Ok(sd) = s.parse::<SessionDescription>() {
            let again: SessionDescription = sd.to_string().parse().expect("re-parses");
            prop_assert_eq!(again, sd.clone());
            let params = sdp::AnswerParams {
                addr: "192.0.2.1".parse().unwrap(),
                port: 5000,
                session_id: 1,
                session_version: 1,
                username: "imss".into(),
                default_ptime_ms: imss_sip::sdp::DEFAULT_PTIME_MS,
            };
            let _ = sdp::answer_audio(&sd, &params);
        }
    }
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9.!%*_+`'~-]{0,12}"
}

fn header_value() -> impl Strategy<Value = String> {
    "[!-~]([ -~]{0,40}[!-~])?"
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Invite),
        Just(Method::Bye),
        Just(Method::Options),
        Just(Method::Cancel),
        Just(Method::Ack),
        Just(Method::Info),
        "[A-Z]{3,10}".prop_map(|m| Method::from_token(&m)),
    ]
}

prop_compose! {
    fn request()(
        method in method(),
        user in token(),
        host in "[a-z]{1,10}(\\.[a-z]{1,8}){0,2}",
        port in 1u16..,
        branch in "[A-Za-z0-9]{1,20}",
        from_tag in "[A-Za-z0-9]{1,16}",
        call_id in "[A-Za-z0-9@.-]{1,40}",
        seq in 0u32..=u32::MAX,
        extra in proptest::collection::vec(("X-[A-Za-z0-9-]{1,12}", header_value()), 0..20),
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) -> Request {
        let mut r = Request::new(method.clone(), format!("sip:{user}@{host}:{port};transport=udp"));
        let mut h = Headers::new();
        h.push("Via", format!("SIP/2.0/UDP {host}:{port};branch=z9hG4bK{branch};rport"));
        h.push("Max-Forwards", "70");
        h.push("From", format!("<sip:{user}@{host}>;tag={from_tag}"));
        h.push("To", format!("\"Name {user}\" <sip:{host}>"));
        h.push("Call-ID", call_id);
        h.push("CSeq", format!("{seq} {method}"));
        for (n, v) in extra {
            h.push(n, v);
        }
        r.headers = h;
        r.body = body;
        r
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn generated_requests_round_trip(req in request(), fold in any::<prop::sample::Index>()) {
        let bytes = req.to_bytes();
        let mut expected = req.clone();
        expected.headers.push("Content-Length", req.body.len().to_string());

        let Ok(Message::Request(parsed)) = parse_datagram(&bytes) else {
            return Err(TestCaseError::fail(format!("{:?}", parse_datagram(&bytes))));
        };
        prop_assert_eq!(&parsed, &expected);

        let (framed, used) = parse_stream(&bytes).expect("valid").expect("complete");
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(framed, Message::Request(expected.clone()));

        // Folding one header onto a continuation line does not change the parse.
        let text_end = bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("header end");
        let head = std::str::from_utf8(&bytes[..text_end]).expect("utf8");
        let mut lines: Vec<String> = head.split("\r\n").map(String::from).collect();
        let i = 1 + fold.index(lines.len() - 1);
        lines[i] = lines[i].replacen(": ", ":\r\n\t ", 1);
        let mut folded = lines.join("\r\n").into_bytes();
        folded.extend_from_slice(&bytes[text_end..]);
        prop_assert_eq!(parse_datagram(&folded).expect("folded parses"), Message::Request(expected));
    }
}

mod endpoint_fuzz {
    use super::*;
    use imss_sip::endpoint::{Endpoint, EndpointConfig, Event, Input};
    use std::time::{Duration, Instant};

    fn templates(call_id: &str, tag: &str) -> Vec<String> {
        let base = |method: &str, branch: &str, to_tag: &str, cseq: u32| {
            format!(
                "{method} sip:a@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{branch}\r\n\
Max-Forwards: 70\r\nFrom: <sip:b@10.0.0.1>;tag=f1\r\nTo: <sip:a@192.0.2.10>{to_tag}\r\n\
Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContact: <sip:b@10.0.0.1>\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let t = format!(";tag={tag}");
        vec![
            base("INVITE", "i1", "", 1),
            base("ACK", "a1", &t, 1),
            base("CANCEL", "i1", "", 1),
            base("BYE", "b1", &t, 2),
            base("INVITE", "r1", &t, 3),
            base("OPTIONS", "o1", "", 4),
            base("ACK", "i1", &t, 1),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Any interleaving of (possibly corrupted) requests, server commands and time jumps
        /// leaves the endpoint consistent: no panic, every IncomingCall ends exactly once
        /// once time runs out, and no transaction outlives its timers.
        #[test]
        fn endpoint_survives_any_sequence(
            steps in proptest::collection::vec(
                (0usize..10, any::<prop::sample::Index>(), any::<u8>(), 0u64..40_000),
                1..40,
            )
        ) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut ep = Endpoint::new(EndpointConfig {
                contact_host: "192.0.2.10".into(),
                contact_port: 5060,
                user_agent: "fuzz".into(),
            });
            let from = "10.0.0.1:5060".parse().unwrap();
            let mut tag = String::from("none");
            let mut calls = Vec::new();
            let mut open = std::collections::HashSet::new();
            for (action, at, byte, jump) in steps {
                match action {
                    0..=6 => {
                        let mut msg = templates("c1", &tag)[action].clone().into_bytes();
                        if byte % 4 == 0 {
                            let i = at.index(msg.len());
                            msg[i] = byte;
                        }
                        ep.handle_input(now, Input::Datagram { from, bytes: &msg });
                    }
                    7 => if let Some(c) = calls.last().cloned() { ep.accept(now, c, "v=0\r\n".into()) },
                    8 => if let Some(c) = calls.last().cloned() { ep.hangup(now, c) },
                    _ => now += Duration::from_millis(jump),
                }
                ep.handle_timeout(now);
                while let Some(t) = ep.poll_transmit() {
                    if let Ok(Message::Response(r)) = parse_datagram(&t.bytes)
                        && let Some(tg) = r.to().and_then(|t| t.tag().map(String::from))
                        && r.status == 200
                    {
                        tag = tg;
                    }
                }
                while let Some(e) = ep.poll_event() {
                    match e {
                        Event::IncomingCall { call, .. } => {
                            prop_assert!(open.insert(call.clone()));
                            calls.push(call);
                        }
                        Event::Cancelled { call } | Event::Ended { call, .. } => {
                            prop_assert!(open.remove(&call), "ended twice or never started");
                        }
                        _ => {}
                    }
                }
            }
            // Hang up whatever is left and let every timer run out.
            for c in open.clone() {
                ep.hangup(now, c);
            }
            for _ in 0..1000 {
                let Some(at) = ep.poll_timeout() else { break };
                now = at;
                ep.handle_timeout(now);
                while ep.poll_transmit().is_some() {}
                while let Some(e) = ep.poll_event() {
                    if let Event::Cancelled { call } | Event::Ended { call, .. } = e {
                        prop_assert!(open.remove(&call));
                    }
                }
            }
            prop_assert_eq!(ep.poll_timeout(), None);
            prop_assert_eq!(ep.transaction_count(), 0);
            prop_assert!(open.is_empty(), "calls never ended: {:?}", open);
            prop_assert_eq!(ep.call_count(), 0);
        }
    }
}

mod client_fuzz {
    use super::*;
    use imss_sip::message::Response;
    use imss_sip::uac::{ClientCall, UacConfig, UacEvent};
    use std::time::{Duration, Instant};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Any responses (right or wrong branch, any status), hangups and time jumps: no panic,
        /// `Terminated` comes last and once, and a hung-up call always terminates.
        #[test]
        fn client_call_survives_any_sequence(
            steps in proptest::collection::vec((0usize..6, 100u16..700, any::<bool>(), 0u64..40_000), 1..30)
        ) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut c = ClientCall::new(t0, UacConfig {
                local: "198.51.100.7:40000".parse().unwrap(),
                target_uri: "sip:annc@192.0.2.10".into(),
                remote: "192.0.2.10:5060".parse().unwrap(),
                sdp_offer: "v=0\r\n".into(),
                from_user: String::new(),
            });
            let mut sent: Vec<Request> = Vec::new();
            let mut events = Vec::new();
            let drain = |c: &mut ClientCall, sent: &mut Vec<Request>, events: &mut Vec<UacEvent>| {
                while let Some((_, b)) = c.poll_transmit() {
                    if let Ok(Message::Request(r)) = parse_datagram(&b) {
                        sent.push(r);
                    }
                }
                while let Some(e) = c.poll_event() {
                    events.push(e);
                }
            };
            drain(&mut c, &mut sent, &mut events);
            for (action, status, right_branch, jump) in steps {
                match action {
                    0..=2 => {
                        // Answer the last request of the chosen kind.
                        let wanted = [Method::Invite, Method::Cancel, Method::Bye][action].clone();
                        if let Some(req) = sent.iter().rev().find(|r| r.method == wanted) {
                            let mut r = Response::new(status, "X");
                            for n in ["Via", "From", "To", "Call-ID", "CSeq"] {
                                r.headers.copy_from(&req.headers, n);
                            }
                            r.headers.set("To", format!("{};tag=srv", req.headers.get("To").unwrap_or("<sip:x@y>")));
                            if !right_branch {
                                r.headers.set("Via", "SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKother");
                            }
                            c.handle_message(now, Message::Response(r));
                        }
                    }
                    3 => c.hangup(now),
                    _ => {
                        now += Duration::from_millis(jump);
                        c.handle_timeout(now);
                    }
                }
                drain(&mut c, &mut sent, &mut events);
            }
            c.hangup(now);
            drain(&mut c, &mut sent, &mut events);
            while let Some(at) = c.poll_timeout() {
                now = at;
                c.handle_timeout(now);
                drain(&mut c, &mut sent, &mut events);
            }
            prop_assert!(c.is_terminated(), "events: {:?}", events);
            prop_assert_eq!(events.iter().filter(|e| **e == UacEvent::Terminated).count(), 1);
            prop_assert_eq!(events.last(), Some(&UacEvent::Terminated));
        }
    }
}
