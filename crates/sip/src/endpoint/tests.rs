//! Endpoint scenarios driven by hand-written messages and an explicit clock.

use super::*;
use crate::message::{MAX_HEADERS, parse_datagram};

const CALLER: &str = "198.51.100.7:5062";
const SDP: &str = "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8\r\n";

fn caller() -> SocketAddr {
    CALLER.parse().unwrap()
}

fn endpoint() -> Endpoint {
    let mut ep = Endpoint::new(EndpointConfig {
        contact_host: "192.0.2.10".into(),
        contact_port: 5060,
        user_agent: "imss-test".into(),
    });
    ep.set_options_sdp(
        "v=0\r\no=imss 1 1 IN IP4 192.0.2.10\r\ns=-\r\nt=0 0\r\nm=audio 0 RTP/AVP 0 8\r\n".into(),
    );
    ep
}

/// A request from the caller; `extra` lines are inserted before Content-Length.
fn request(
    method: &str,
    branch: &str,
    call_id: &str,
    to_tag: Option<&str>,
    cseq: u32,
    extra: &str,
    body: &str,
) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "{method} sip:annc@192.0.2.10:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.7:5062;rport;branch={branch}\r\n\
Max-Forwards: 70\r\n\
From: \"Caller\" <sip:alice@198.51.100.7>;tag=fromtag1\r\n\
To: <sip:annc@192.0.2.10>{to_tag}\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq} {method}\r\n\
Contact: <sip:alice@198.51.100.7:5062>\r\n\
{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn invite(branch: &str, call_id: &str) -> String {
    request(
        "INVITE",
        branch,
        call_id,
        None,
        1,
        "Content-Type: application/sdp\r\n",
        SDP,
    )
}

fn feed(ep: &mut Endpoint, now: Instant, msg: &str) {
    ep.handle_input(
        now,
        Input::Datagram {
            from: caller(),
            bytes: msg.as_bytes(),
        },
    );
}

fn transmits(ep: &mut Endpoint) -> Vec<Transmit> {
    std::iter::from_fn(|| ep.poll_transmit()).collect()
}

fn events(ep: &mut Endpoint) -> Vec<Event> {
    std::iter::from_fn(|| ep.poll_event()).collect()
}

fn parse(t: &Transmit) -> Message {
    match parse_datagram(&t.bytes) {
        Ok(m) => m,
        // A 400 to a request without Call-ID cannot carry one; read it with a stand-in.
        Err(message::ParseError::MissingHeader("Call-ID")) => {
            let text = String::from_utf8_lossy(&t.bytes).replacen(
                "\r\nCSeq:",
                "\r\nCall-ID: (none)\r\nCSeq:",
                1,
            );
            parse_datagram(text.as_bytes())
                .unwrap_or_else(|e| panic!("endpoint sent unparsable bytes: {e}"))
        }
        Err(e) => panic!("endpoint sent unparsable bytes: {e}"),
    }
}

fn responses(ep: &mut Endpoint) -> Vec<Response> {
    transmits(ep)
        .iter()
        .map(|t| match parse(t) {
            Message::Response(r) => r,
            Message::Request(r) => panic!("expected a response, got {}", r.method),
        })
        .collect()
}

fn statuses(rs: &[Response]) -> Vec<u16> {
    rs.iter().map(|r| r.status).collect()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// INVITE → 100, IncomingCall, accept → 200. Returns the call and the 200's To tag.
fn answered_call(ep: &mut Endpoint, t0: Instant, call_id: &str) -> (CallId, String) {
    feed(ep, t0, &invite(&format!("z9hG4bK{call_id}"), call_id));
    let r = responses(ep);
    assert_eq!(statuses(&r), [100]);
    let call = match events(ep).as_slice() {
        [Event::IncomingCall { call, .. }] => call.clone(),
        other => panic!("expected IncomingCall, got {other:?}"),
    };
    ep.accept(t0, call.clone(), "v=0\r\n".into());
    let r = responses(ep);
    assert_eq!(statuses(&r), [200]);
    let tag = r[0]
        .to()
        .and_then(|t| t.tag().map(String::from))
        .expect("To tag");
    (call, tag)
}

fn ack(call_id: &str, tag: &str) -> String {
    request("ACK", "z9hG4bKack1", call_id, Some(tag), 1, "", "")
}

#[test]
fn invite_trying_ok_ack() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let msg = invite("z9hG4bKinv1", "call-1")
        .replace("Max-Forwards: 70\r\n", "Max-Forwards: 70\r\nRecord-Route: <sip:p2.example;lr>, <sip:p1.example;lr>\r\nTimestamp: 54\r\n");
    feed(&mut ep, t0, &msg);
    let tx = transmits(&mut ep);
    assert_eq!(tx.len(), 1);
    assert_eq!(tx[0].to, caller(), "rport: back to the source");
    assert_eq!(tx[0].transport, Transport::Udp);
    let Message::Response(trying) = parse(&tx[0]) else {
        panic!()
    };
    assert_eq!(trying.status, 100);
    assert_eq!(trying.headers.get("Timestamp"), Some("54"));
    assert_eq!(trying.to().unwrap().tag(), None, "100 carries no To tag");
    let via = trying.top_via().unwrap();
    assert_eq!(via.rport(), Some(Some(5062)));
    assert_eq!(via.received(), Some("198.51.100.7"));

    let evs = events(&mut ep);
    let Event::IncomingCall {
        call,
        request_uri,
        offer,
        from,
        remote,
        transport,
    } = &evs[0]
    else {
        panic!("{evs:?}")
    };
    assert_eq!(request_uri, "sip:annc@192.0.2.10:5060");
    assert_eq!(offer.as_deref(), Some(SDP));
    assert!(from.contains("tag=fromtag1"));
    assert_eq!(*remote, caller());
    assert_eq!(*transport, Transport::Udp);
    assert_eq!(ep.sip_call_id(call), Some("call-1"));

    ep.accept(t0, call.clone(), "v=0\r\nanswer".into());
    let ok = responses(&mut ep);
    assert_eq!(statuses(&ok), [200]);
    let ok = &ok[0];
    let h = &ok.headers;
    assert_eq!(h.get("Call-ID"), Some("call-1"));
    assert_eq!(h.get("CSeq"), Some("1 INVITE"));
    assert_eq!(
        h.get("From"),
        Some("\"Caller\" <sip:alice@198.51.100.7>;tag=fromtag1")
    );
    assert!(ok.to().unwrap().tag().is_some_and(|t| t.len() >= 8));
    assert_eq!(h.get("Contact"), Some("<sip:192.0.2.10:5060>"));
    assert_eq!(
        h.list("Record-Route"),
        ["<sip:p2.example;lr>", "<sip:p1.example;lr>"]
    );
    assert_eq!(h.get("Server"), Some("imss-test"));
    assert_eq!(h.get("Content-Type"), Some("application/sdp"));
    assert_eq!(h.get("Content-Length"), Some("11"));
    assert_eq!(ok.body, b"v=0\r\nanswer");
    let tag = ok.to().unwrap().tag().unwrap().to_string();

    // 2xx retransmitted with T1 doubling up to T2 until the ACK.
    let mut at = t0;
    for gap in [500, 1000, 2000, 4000, 4000] {
        assert_eq!(ep.poll_timeout(), Some(at + ms(gap)));
        at += ms(gap);
        ep.handle_timeout(at - ms(1));
        assert!(transmits(&mut ep).is_empty(), "nothing before the deadline");
        ep.handle_timeout(at);
        assert_eq!(statuses(&responses(&mut ep)), [200]);
    }
    feed(&mut ep, at + ms(10), &ack("call-1", &tag));
    assert_eq!(events(&mut ep), [Event::Established { call: call.clone() }]);
    ep.handle_timeout(at + ms(60_000));
    assert!(
        transmits(&mut ep).is_empty(),
        "ACK stopped the retransmissions"
    );
    assert!(events(&mut ep).is_empty());
    assert_eq!(ep.call_count(), 1);
    assert_eq!(ep.transaction_count(), 0);
    assert_eq!(ep.poll_timeout(), None);
}

#[test]
fn retransmitted_invite_gets_the_cached_response() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    feed(&mut ep, t0, &invite("z9hG4bKinv1", "call-1"));
    let first = transmits(&mut ep);
    assert_eq!(events(&mut ep).len(), 1);
    feed(&mut ep, t0 + ms(500), &invite("z9hG4bKinv1", "call-1"));
    assert_eq!(transmits(&mut ep), first, "same 100 Trying again");
    assert!(events(&mut ep).is_empty(), "no second call");

    let Some(call) = ep.dialogs.keys().next().cloned() else {
        panic!("no call")
    };
    ep.accept(t0 + ms(600), call, "v=0\r\n".into());
    let ok = transmits(&mut ep);
    feed(&mut ep, t0 + ms(700), &invite("z9hG4bKinv1", "call-1"));
    assert_eq!(transmits(&mut ep), ok, "cached 200 OK");
    assert_eq!(ep.stats().retransmissions_absorbed, 2);
}

#[test]
fn merged_request_gets_482() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    feed(&mut ep, t0, &invite("z9hG4bKpath1", "call-1"));
    let _ = transmits(&mut ep);
    feed(&mut ep, t0, &invite("z9hG4bKpath2", "call-1"));
    let r = responses(&mut ep);
    assert_eq!(statuses(&r), [482]);
    assert_eq!(events(&mut ep).len(), 1);
}

#[test]
fn cancel_gets_200_and_the_invite_487() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    feed(&mut ep, t0, &invite("z9hG4bKinv1", "call-1"));
    let _ = transmits(&mut ep);
    let Event::IncomingCall { call, .. } = events(&mut ep).remove(0) else {
        panic!()
    };
    feed(
        &mut ep,
        t0 + ms(100),
        &request("CANCEL", "z9hG4bKinv1", "call-1", None, 1, "", ""),
    );
    let r = responses(&mut ep);
    assert_eq!(statuses(&r), [200, 487]);
    assert_eq!(r[0].headers.get("CSeq"), Some("1 CANCEL"));
    assert_eq!(r[1].headers.get("CSeq"), Some("1 INVITE"));
    assert_eq!(r[0].to().unwrap().tag(), r[1].to().unwrap().tag());
    assert_eq!(events(&mut ep), [Event::Cancelled { call: call.clone() }]);
    assert_eq!(ep.call_count(), 0);

    // accept() after the cancel is ignored.
    ep.accept(t0 + ms(150), call, "v=0\r\n".into());
    assert!(transmits(&mut ep).is_empty());

    // 487 retransmitted (Timer G) until the ACK, which reuses the INVITE's branch.
    ep.handle_timeout(t0 + ms(600));
    assert_eq!(statuses(&responses(&mut ep)), [487]);
    let tag = r[1].to().unwrap().tag().unwrap().to_string();
    feed(
        &mut ep,
        t0 + ms(700),
        &request("ACK", "z9hG4bKinv1", "call-1", Some(&tag), 1, "", ""),
    );
    ep.handle_timeout(t0 + ms(3000));
    assert!(transmits(&mut ep).is_empty());
    assert!(events(&mut ep).is_empty());
    // Timer I (T4) then Timer J (64·T1) clear the transactions.
    ep.handle_timeout(t0 + ms(40_000));
    assert_eq!(ep.transaction_count(), 0);

    // CANCEL for nothing: 481.
    feed(
        &mut ep,
        t0 + ms(41_000),
        &request("CANCEL", "z9hG4bKnone", "call-9", None, 1, "", ""),
    );
    assert_eq!(statuses(&responses(&mut ep)), [481]);
}

#[test]
fn cancel_after_the_answer_changes_nothing() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let (_, _) = answered_call(&mut ep, t0, "call-1");
    feed(
        &mut ep,
        t0 + ms(10),
        &request("CANCEL", "z9hG4bKcall-1", "call-1", None, 1, "", ""),
    );
    assert_eq!(statuses(&responses(&mut ep)), [200]);
    assert!(events(&mut ep).is_empty());
    assert_eq!(ep.call_count(), 1);
}

#[test]
fn bye_from_the_caller() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let (call, tag) = answered_call(&mut ep, t0, "call-1");
    feed(&mut ep, t0 + ms(5), &ack("call-1", &tag));
    let _ = events(&mut ep);
    let bye = request("BYE", "z9hG4bKbye1", "call-1", Some(&tag), 2, "", "");
    feed(&mut ep, t0 + ms(1000), &bye);
    let r = responses(&mut ep);
    assert_eq!(statuses(&r), [200]);
    assert_eq!(r[0].headers.get("CSeq"), Some("2 BYE"));
    assert_eq!(r[0].to().unwrap().tag(), Some(tag.as_str()));
    assert_eq!(
        events(&mut ep),
        [Event::Ended {
            call,
            reason: EndReason::RemoteBye
        }]
    );
    // Retransmitted BYE: the cached 200, no second event.
    feed(&mut ep, t0 + ms(1500), &bye);
    assert_eq!(statuses(&responses(&mut ep)), [200]);
    assert!(events(&mut ep).is_empty());
    // A new BYE for the ended dialog: 481.
    feed(
        &mut ep,
        t0 + ms(2000),
        &request("BYE", "z9hG4bKbye2", "call-1", Some(&tag), 3, "", ""),
    );
    assert_eq!(statuses(&responses(&mut ep)), [481]);
    ep.handle_timeout(t0 + ms(100_000));
    assert_eq!(ep.transaction_count(), 0);
}

fn sent_request(ep: &mut Endpoint) -> (Transmit, Request) {
    let tx = transmits(ep);
    assert_eq!(tx.len(), 1, "one request expected");
    match parse(&tx[0]) {
        Message::Request(r) => (tx[0].clone(), r),
        Message::Response(r) => panic!("expected a request, got {}", r.status),
    }
}

fn reply(req: &Request, status: u16) -> String {
    let mut r = Response::new(status, message::reason_phrase(status));
    for n in ["Via", "From", "To", "Call-ID", "CSeq"] {
        r.headers.copy_from(&req.headers, n);
    }
    String::from_utf8(r.to_bytes()).unwrap()
}

#[test]
fn hangup_sends_bye_with_route_set_and_ends_on_200() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let msg = invite("z9hG4bKinv1", "call-1").replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nRecord-Route: <sip:203.0.113.5:5070;lr>\r\nRecord-Route: <sip:203.0.113.9;lr>\r\n",
    );
    feed(&mut ep, t0, &msg);
    let _ = transmits(&mut ep);
    let Event::IncomingCall { call, .. } = events(&mut ep).remove(0) else {
        panic!()
    };
    ep.accept(t0, call.clone(), "v=0\r\n".into());
    let tag = responses(&mut ep)[0]
        .to()
        .unwrap()
        .tag()
        .unwrap()
        .to_string();

    // Before the ACK, the BYE waits (RFC 3261 §15).
    ep.hangup(t0 + ms(10), call.clone());
    assert!(transmits(&mut ep).is_empty());
    feed(&mut ep, t0 + ms(20), &ack("call-1", &tag));
    assert_eq!(events(&mut ep), [Event::Established { call: call.clone() }]);
    let (t, bye) = sent_request(&mut ep);
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(
        t.to,
        "203.0.113.5:5070".parse().unwrap(),
        "first Route is the next hop"
    );
    assert_eq!(
        bye.uri, "sip:alice@198.51.100.7:5062",
        "remote target from Contact"
    );
    assert_eq!(
        bye.headers.list("Route"),
        ["<sip:203.0.113.5:5070;lr>", "<sip:203.0.113.9;lr>"]
    );
    assert_eq!(bye.from().unwrap().tag(), Some(tag.as_str()));
    assert_eq!(bye.to().unwrap().tag(), Some("fromtag1"));
    assert_eq!(bye.call_id(), Some("call-1"));
    assert_eq!(bye.headers.get("User-Agent"), Some("imss-test"));
    assert!(bye.top_via().unwrap().is_rfc3261());

    // Timer E retransmits over UDP.
    ep.handle_timeout(t0 + ms(520));
    let (_, again) = sent_request(&mut ep);
    assert_eq!(again, bye);
    feed(&mut ep, t0 + ms(600), &reply(&bye, 200));
    assert_eq!(
        events(&mut ep),
        [Event::Ended {
            call: call.clone(),
            reason: EndReason::LocalBye { status: Some(200) }
        }]
    );
    // A retransmitted 200 is absorbed; a stray response is dropped and counted.
    feed(&mut ep, t0 + ms(700), &reply(&bye, 200));
    assert!(events(&mut ep).is_empty());
    let stray = reply(&bye, 200).replace(bye.top_via().unwrap().branch().unwrap(), "z9hG4bKother");
    feed(&mut ep, t0 + ms(700), &stray);
    assert_eq!(ep.stats().dropped_responses, 1);
    ep.handle_timeout(t0 + ms(100_000));
    assert!(transmits(&mut ep).is_empty());
    assert_eq!(ep.transaction_count(), 0);
}

#[test]
fn bye_ends_the_call_on_481_or_timeout() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let (call, tag) = answered_call(&mut ep, t0, "call-1");
    feed(&mut ep, t0, &ack("call-1", &tag));
    let _ = events(&mut ep);
    ep.hangup(t0 + ms(1), call.clone());
    let (t, bye) = sent_request(&mut ep);
    assert_eq!(t.to, caller(), "no route set: the Contact");
    feed(&mut ep, t0 + ms(50), &reply(&bye, 481));
    assert_eq!(
        events(&mut ep),
        [Event::Ended {
            call,
            reason: EndReason::LocalBye { status: Some(481) }
        }]
    );

    let (call, tag) = answered_call(&mut ep, t0, "call-2");
    feed(&mut ep, t0, &ack("call-2", &tag));
    let _ = events(&mut ep);
    ep.hangup(t0, call.clone());
    let _ = sent_request(&mut ep);
    let mut retransmissions = 0;
    while let Some(at) = ep.poll_timeout() {
        ep.handle_timeout(at);
        retransmissions += transmits(&mut ep).len();
        if let Some(e) = ep.poll_event() {
            assert_eq!(
                e,
                Event::Ended {
                    call: call.clone(),
                    reason: EndReason::LocalBye { status: None }
                }
            );
            assert_eq!(at, t0 + ms(32_000), "Timer F = 64·T1");
            break;
        }
    }
    // 0.5, 1.5, 3.5, 7.5, then every 4 s up to 32 s.
    assert_eq!(retransmissions, 10);
}

#[test]
fn timer_h_ends_an_unacknowledged_call() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let (call, _) = answered_call(&mut ep, t0, "call-1");
    let mut sent = 0;
    loop {
        let at = ep.poll_timeout().expect("a timer runs");
        ep.handle_timeout(at);
        let tx = transmits(&mut ep);
        let evs = events(&mut ep);
        if !evs.is_empty() {
            assert_eq!(
                evs,
                [Event::Ended {
                    call: call.clone(),
                    reason: EndReason::AckTimeout
                }]
            );
            assert_eq!(at, t0 + ms(32_000));
            let bye = tx.iter().filter_map(|t| match parse(t) {
                Message::Request(r) if r.method == Method::Bye => Some(r),
                _ => None,
            });
            assert_eq!(bye.count(), 1, "BYE sent on ACK timeout");
            break;
        }
        sent += tx.len();
    }
    assert_eq!(sent, 10, "200 OK retransmitted until Timer H");
    assert_eq!(ep.call_count(), 0);
}

#[test]
fn unknown_dialog_gets_481() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    feed(
        &mut ep,
        t0,
        &request("BYE", "z9hG4bKb", "nope", Some("xyz"), 2, "", ""),
    );
    feed(
        &mut ep,
        t0,
        &request("INVITE", "z9hG4bKr", "nope", Some("xyz"), 3, "", ""),
    );
    feed(
        &mut ep,
        t0,
        &request("BYE", "z9hG4bKc", "nope", None, 2, "", ""),
    );
    let r = responses(&mut ep);
    assert_eq!(statuses(&r), [481, 481, 481]);
    assert_eq!(r[0].reason, "Call/Transaction Does Not Exist");
    assert!(events(&mut ep).is_empty());
}

#[test]
fn unknown_method_gets_405_with_allow() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    for m in ["REGISTER", "SUBSCRIBE", "FOOBAR"] {
        feed(
            &mut ep,
            t0,
            &request(m, &format!("z9hG4bK{m}"), "c", None, 1, "", ""),
        );
        let r = responses(&mut ep);
        assert_eq!(statuses(&r), [405], "{m}");
        assert_eq!(r[0].headers.get("Allow"), Some(ALLOW));
        assert_eq!(r[0].headers.get("CSeq"), Some(format!("1 {m}").as_str()));
    }
}

#[test]
fn max_forwards_zero_gets_483() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let m = invite("z9hG4bK1", "c").replace("Max-Forwards: 70", "Max-Forwards: 0");
    feed(&mut ep, t0, &m);
    let r = responses(&mut ep);
    assert_eq!(statuses(&r), [483]);
    assert_eq!(r[0].reason, "Too Many Hops");
    assert!(events(&mut ep).is_empty());
}

#[test]
fn unsupported_require_gets_420() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let m = invite("z9hG4bK1", "c").replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nRequire: 100rel, precondition\r\n",
    );
    feed(&mut ep, t0, &m);
    let r = responses(&mut ep);
    assert_eq!(statuses(&r), [420]);
    assert_eq!(
        r[0].headers.get("Unsupported"),
        Some("100rel, precondition")
    );
}

#[test]
fn non_sdp_body_gets_415() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let m = request(
        "INVITE",
        "z9hG4bK1",
        "c",
        None,
        1,
        "Content-Type: text/plain\r\n",
        "hello",
    );
    feed(&mut ep, t0, &m);
    let r = responses(&mut ep);
    assert_eq!(statuses(&r), [415]);
    assert_eq!(r[0].headers.get("Accept"), Some("application/sdp"));
}

#[test]
fn malformed_but_answerable_gets_400_with_reason() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let bad_cl = invite("z9hG4bK1", "c").replace(
        &format!("Content-Length: {}", SDP.len()),
        "Content-Length: 9999",
    );
    feed(&mut ep, t0, &bad_cl);
    let no_call_id = invite("z9hG4bK2", "c").replace("Call-ID: c\r\n", "");
    feed(&mut ep, t0, &no_call_id);
    let r = responses(&mut ep);
    assert_eq!(statuses(&r), [400, 400]);
    assert_eq!(r[0].reason, "Bad Content-Length");
    assert_eq!(r[1].reason, "Missing Call-ID");
    assert_eq!(r[1].headers.get("Call-ID"), Some("(none)"), "not invented");
    assert_eq!(r[0].headers.get("Call-ID"), Some("c"));
    assert!(r[0].to().unwrap().tag().is_some());
    assert!(
        r[0].headers
            .get("Warning")
            .is_some_and(|w| w.starts_with("399 "))
    );
    assert!(events(&mut ep).is_empty());
    assert_eq!(ep.stats().rejected_malformed, 2);
}

#[test]
fn ten_thousand_headers_are_rejected() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    // Short enough to stay under 64 KiB: answered 400 Too many headers.
    let flood: String = (0..10_000).map(|_| "X: 1\r\n").collect();
    let m = invite("z9hG4bK1", "c").replace("Content-Type", &format!("{flood}Content-Type"));
    assert!(m.len() < 64 * 1024);
    feed(&mut ep, t0, &m);
    let r = responses(&mut ep);
    assert_eq!(statuses(&r), [400]);
    assert_eq!(r[0].reason, "Too many headers");
    assert!(r[0].headers.len() < MAX_HEADERS);
    // Long ones exceed the message limit before the headers are even read: dropped.
    let flood: String = (0..10_000)
        .map(|i| format!("X-Header-{i}: value\r\n"))
        .collect();
    let m = format!("{flood}{}", invite("z9hG4bK2", "c"));
    feed(&mut ep, t0, &m);
    assert!(transmits(&mut ep).is_empty());
    assert!(events(&mut ep).is_empty());
}

#[test]
fn binary_junk_is_dropped_and_counted() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let junk: Vec<u8> = (0..2000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    ep.handle_input(
        t0,
        Input::Datagram {
            from: caller(),
            bytes: &junk,
        },
    );
    ep.handle_input(
        t0,
        Input::Datagram {
            from: caller(),
            bytes: b"\r\n\r\n",
        },
    );
    ep.handle_input(
        t0,
        Input::Datagram {
            from: caller(),
            bytes: b"",
        },
    );
    assert!(transmits(&mut ep).is_empty());
    assert!(events(&mut ep).is_empty());
    assert_eq!(ep.stats().dropped_malformed, 3);
}

#[test]
fn one_megabyte_body_is_rejected() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let body = "a".repeat(1 << 20);
    let m = request(
        "INVITE",
        "z9hG4bK1",
        "c",
        None,
        1,
        "Content-Type: application/sdp\r\n",
        &body,
    );
    feed(&mut ep, t0, &m);
    let r = responses(&mut ep);
    assert_eq!(statuses(&r), [413]);
    assert_eq!(r[0].reason, "Body too large");
    assert!(events(&mut ep).is_empty());
}

#[test]
fn options_outside_a_dialog() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    feed(
        &mut ep,
        t0,
        &request("OPTIONS", "z9hG4bKo", "o1", None, 7, "", ""),
    );
    let r = responses(&mut ep);
    assert_eq!(statuses(&r), [200]);
    let h = &r[0].headers;
    assert_eq!(h.get("Allow"), Some(ALLOW));
    assert_eq!(h.get("Accept"), Some("application/sdp"));
    assert!(h.contains("Supported"));
    assert_eq!(h.get("Content-Type"), Some("application/sdp"));
    assert!(r[0].body.starts_with(b"v=0"));
    assert_eq!(events(&mut ep), [Event::Options { from: caller() }]);
    assert_eq!(ep.call_count(), 0);
}

#[test]
fn reinvite_accept_and_glare() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let (call, tag) = answered_call(&mut ep, t0, "call-1");
    feed(&mut ep, t0, &ack("call-1", &tag));
    let _ = events(&mut ep);
    let hold = SDP.replace(
        "m=audio 4000 RTP/AVP 0 8\r\n",
        "m=audio 4000 RTP/AVP 0 8\r\na=sendonly\r\n",
    );
    let reinvite = request(
        "INVITE",
        "z9hG4bKre1",
        "call-1",
        Some(&tag),
        2,
        "Content-Type: application/sdp\r\n",
        &hold,
    )
    .replace(
        "<sip:alice@198.51.100.7:5062>",
        "<sip:alice@198.51.100.8:5099>",
    );
    feed(&mut ep, t0 + ms(100), &reinvite);
    assert_eq!(statuses(&responses(&mut ep)), [100]);
    assert_eq!(
        events(&mut ep),
        [Event::ReInvite {
            call: call.clone(),
            offer: Some(hold.clone())
        }]
    );
    feed(
        &mut ep,
        t0 + ms(150),
        &request("INVITE", "z9hG4bKre2", "call-1", Some(&tag), 3, "", ""),
    );
    assert_eq!(statuses(&responses(&mut ep)), [491]);
    feed(
        &mut ep,
        t0 + ms(160),
        &request("ACK", "z9hG4bKre2", "call-1", Some(&tag), 3, "", ""),
    );
    ep.accept(t0 + ms(200), call.clone(), "v=0\r\nheld".into());
    let r = responses(&mut ep);
    assert_eq!(statuses(&r), [200]);
    assert_eq!(r[0].to().unwrap().tag(), Some(tag.as_str()));
    let ack2 = request("ACK", "z9hG4bKack2", "call-1", Some(&tag), 2, "", "");
    feed(&mut ep, t0 + ms(300), &ack2);
    assert!(events(&mut ep).is_empty(), "no second Established");
    ep.handle_timeout(t0 + ms(5000));
    assert!(
        transmits(&mut ep).is_empty(),
        "ACK stopped the retransmissions"
    );
    // The re-INVITE refreshed the target: the BYE goes to the new Contact.
    ep.hangup(t0 + ms(6000), call.clone());
    let (t, _) = sent_request(&mut ep);
    assert_eq!(t.to, "198.51.100.8:5099".parse().unwrap());

    // A rejected re-INVITE leaves the call up.
    let (call, tag) = answered_call(&mut ep, t0, "call-2");
    feed(&mut ep, t0, &ack("call-2", &tag));
    let _ = events(&mut ep);
    feed(
        &mut ep,
        t0,
        &request("INVITE", "z9hG4bKre3", "call-2", Some(&tag), 2, "", ""),
    );
    let _ = transmits(&mut ep);
    let _ = events(&mut ep);
    ep.reject(
        t0,
        call.clone(),
        488,
        "Not Acceptable Here",
        Some("no common codec"),
    );
    let r = responses(&mut ep);
    assert_eq!(statuses(&r), [488]);
    assert_eq!(
        r[0].headers.get("Warning"),
        Some("399 192.0.2.10 \"no common codec\"")
    );
    assert!(events(&mut ep).is_empty());
    assert!(ep.sip_call_id(&call).is_some());
}

#[test]
fn out_of_order_cseq_gets_500() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let (_, tag) = answered_call(&mut ep, t0, "call-1");
    feed(&mut ep, t0, &ack("call-1", &tag));
    feed(
        &mut ep,
        t0,
        &request("BYE", "z9hG4bKold", "call-1", Some(&tag), 1, "", ""),
    );
    assert_eq!(statuses(&responses(&mut ep)), [500]);
}

#[test]
fn reject_initial_invite_with_warning() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    feed(&mut ep, t0, &invite("z9hG4bK1", "c"));
    let _ = transmits(&mut ep);
    let Event::IncomingCall { call, .. } = events(&mut ep).remove(0) else {
        panic!()
    };
    ep.reject(
        t0,
        call.clone(),
        488,
        "Not Acceptable Here",
        Some("304 imss \"no PCMU or PCMA\""),
    );
    let r = responses(&mut ep);
    assert_eq!(statuses(&r), [488]);
    assert_eq!(
        r[0].headers.get("Warning"),
        Some("304 imss \"no PCMU or PCMA\"")
    );
    assert_eq!(
        events(&mut ep),
        [Event::Ended {
            call,
            reason: EndReason::Rejected { status: 488 }
        }]
    );
    assert_eq!(ep.call_count(), 0);
}

#[test]
fn hangup_before_answer_declines() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    feed(&mut ep, t0, &invite("z9hG4bK1", "c"));
    let _ = transmits(&mut ep);
    let Event::IncomingCall { call, .. } = events(&mut ep).remove(0) else {
        panic!()
    };
    ep.hangup(t0, call.clone());
    assert_eq!(statuses(&responses(&mut ep)), [480]);
    assert_eq!(
        events(&mut ep),
        [Event::Ended {
            call,
            reason: EndReason::Rejected { status: 480 }
        }]
    );
}

#[test]
fn dialog_limit_gives_503() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    ep.set_limits(EndpointLimits {
        max_dialogs: 1,
        ..EndpointLimits::default()
    });
    feed(&mut ep, t0, &invite("z9hG4bK1", "c1"));
    feed(&mut ep, t0, &invite("z9hG4bK2", "c2"));
    let r = responses(&mut ep);
    assert_eq!(statuses(&r), [100, 503]);
    assert_eq!(r[1].headers.get("Retry-After"), Some("5"));
    assert_eq!(ep.stats().refused_overload, 1);

    let mut ep = endpoint();
    ep.set_limits(EndpointLimits {
        max_transactions: 1,
        ..EndpointLimits::default()
    });
    feed(&mut ep, t0, &invite("z9hG4bK1", "c1"));
    feed(
        &mut ep,
        t0,
        &request("OPTIONS", "z9hG4bK3", "c3", None, 1, "", ""),
    );
    assert_eq!(statuses(&responses(&mut ep)), [100, 503]);
}

#[test]
fn response_goes_to_sent_by_without_rport() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let m = request("OPTIONS", "z9hG4bKo", "o1", None, 1, "", "")
        .replace("198.51.100.7:5062;rport;", "client.example.com:5070;");
    feed(&mut ep, t0, &m);
    let tx = transmits(&mut ep);
    assert_eq!(tx[0].to, "198.51.100.7:5070".parse().unwrap());
    let Message::Response(r) = parse(&tx[0]) else {
        panic!()
    };
    let via = r.top_via().unwrap();
    assert_eq!(via.received(), Some("198.51.100.7"));
    assert_eq!(via.rport(), None);
}

#[test]
fn all_vias_are_copied_in_order() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let m = request("OPTIONS", "z9hG4bKo", "o1", None, 1, "", "").replace(
        "Max-Forwards: 70\r\n",
        "Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKp1, SIP/2.0/TCP 10.0.0.2:5080;branch=z9hG4bKp2\r\nMax-Forwards: 70\r\n",
    );
    feed(&mut ep, t0, &m);
    let r = responses(&mut ep);
    let vias = r[0].headers.list("Via");
    assert_eq!(vias.len(), 3);
    assert!(vias[0].contains("branch=z9hG4bKo"));
    assert_eq!(vias[1], "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKp1");
    assert_eq!(vias[2], "SIP/2.0/TCP 10.0.0.2:5080;branch=z9hG4bKp2");
}

#[test]
fn rfc2543_peer_without_magic_cookie() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let old = invite("z9hG4bK", "old-1").replace(";rport;branch=z9hG4bK", "");
    feed(&mut ep, t0, &old);
    assert_eq!(statuses(&responses(&mut ep)), [100]);
    assert_eq!(events(&mut ep).len(), 1);
    feed(&mut ep, t0 + ms(500), &old);
    assert_eq!(
        statuses(&responses(&mut ep)),
        [100],
        "retransmission recognised"
    );
    assert!(events(&mut ep).is_empty());
    let cancel = request("CANCEL", "x", "old-1", None, 1, "", "").replace(";rport;branch=x", "");
    feed(&mut ep, t0 + ms(600), &cancel);
    assert_eq!(statuses(&responses(&mut ep)), [200, 487]);
    assert!(matches!(
        events(&mut ep).as_slice(),
        [Event::Cancelled { .. }]
    ));
}

#[test]
fn tcp_answers_on_the_connection_without_retransmissions() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let from: SocketAddr = "198.51.100.7:40000".parse().unwrap();
    let text = invite("z9hG4bKt1", "tcp-1").replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    let Message::Request(req) = parse_datagram(text.as_bytes()).unwrap() else {
        panic!()
    };
    ep.handle_input(
        t0,
        Input::Stream {
            conn: 7,
            from,
            message: Message::Request(req),
        },
    );
    let tx = transmits(&mut ep);
    assert_eq!(
        (tx[0].transport, tx[0].conn, tx[0].to),
        (Transport::Tcp, Some(7), from)
    );
    let Event::IncomingCall {
        call, transport, ..
    } = events(&mut ep).remove(0)
    else {
        panic!()
    };
    assert_eq!(transport, Transport::Tcp);
    ep.accept(t0, call.clone(), "v=0\r\n".into());
    let tx = transmits(&mut ep);
    let Message::Response(ok) = parse(&tx[0]) else {
        panic!()
    };
    assert_eq!(
        ok.headers.get("Contact"),
        Some("<sip:192.0.2.10:5060;transport=tcp>")
    );
    assert_eq!(
        ep.poll_timeout(),
        Some(t0 + ms(32_000)),
        "only Timer H, no Timer G"
    );
    let tag = ok.to().unwrap().tag().unwrap().to_string();
    let ack = ack("tcp-1", &tag).replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    let Message::Request(ack) = parse_datagram(ack.as_bytes()).unwrap() else {
        panic!()
    };
    ep.handle_input(
        t0,
        Input::Stream {
            conn: 7,
            from,
            message: Message::Request(ack),
        },
    );
    assert_eq!(events(&mut ep), [Event::Established { call: call.clone() }]);
    ep.handle_timeout(t0);
    assert_eq!(ep.transaction_count(), 0);

    // After the connection closes, the BYE asks the shell to connect to the Contact.
    ep.connection_closed(7);
    ep.hangup(t0, call);
    let (t, bye) = sent_request(&mut ep);
    assert_eq!(
        (t.transport, t.conn, t.to),
        (Transport::Tcp, None, caller())
    );
    assert!(
        bye.headers
            .get("Via")
            .unwrap()
            .starts_with("SIP/2.0/TCP 192.0.2.10:5060;")
    );
    assert_eq!(
        ep.poll_timeout(),
        Some(t0 + ms(32_000)),
        "no Timer E over TCP"
    );

    // A malformed message on a stream is answered on the connection.
    let bad = invite("z9hG4bKt2", "tcp-2").replace("Call-ID: tcp-2\r\n", "");
    let malformed = message::parse_stream_detailed(bad.as_bytes()).unwrap_err();
    ep.handle_input(
        t0,
        Input::StreamMalformed {
            conn: 8,
            from,
            malformed,
        },
    );
    let tx = transmits(&mut ep);
    assert_eq!(tx[0].conn, Some(8));
    let Message::Response(r) = parse(&tx[0]) else {
        panic!()
    };
    assert_eq!((r.status, r.reason.as_str()), (400, "Missing Call-ID"));
}

fn vector(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/unimrcp-1.8")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn unimrcp_client_call_flow() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let umc: SocketAddr = "127.0.0.1:8062".parse().unwrap();
    let inv = vector("sip-invite-from-umc.txt");
    ep.handle_input(
        t0,
        Input::Datagram {
            from: umc,
            bytes: inv.as_bytes(),
        },
    );
    let r = responses(&mut ep);
    assert_eq!(statuses(&r), [100]);
    let Event::IncomingCall { call, offer, .. } = events(&mut ep).remove(0) else {
        panic!()
    };
    assert!(offer.unwrap().contains("m=audio 4000 RTP/AVP 0 8 9 96 101"));
    ep.accept(t0, call.clone(), "v=0\r\n".into());
    let ok = &responses(&mut ep)[0];
    let tag = ok.to().unwrap().tag().unwrap().to_string();
    // The captured ACK and BYE carry unimrcpserver's tag; ours replaces it.
    let ack = vector("sip-ack-from-umc.txt").replace("Q8jF6rpvQmHpS", &tag);
    ep.handle_input(
        t0 + ms(2),
        Input::Datagram {
            from: umc,
            bytes: ack.as_bytes(),
        },
    );
    assert_eq!(events(&mut ep), [Event::Established { call: call.clone() }]);
    let bye = vector("sip-bye-from-umc.txt").replace("Q8jF6rpvQmHpS", &tag);
    ep.handle_input(
        t0 + ms(5000),
        Input::Datagram {
            from: umc,
            bytes: bye.as_bytes(),
        },
    );
    let r = responses(&mut ep);
    assert_eq!(statuses(&r), [200]);
    assert_eq!(
        events(&mut ep),
        [Event::Ended {
            call,
            reason: EndReason::RemoteBye
        }]
    );

    let opts = vector("sip-options-from-umc.txt");
    ep.handle_input(
        t0,
        Input::Datagram {
            from: umc,
            bytes: opts.as_bytes(),
        },
    );
    assert_eq!(statuses(&responses(&mut ep)), [200]);
}

#[test]
fn hangup_answers_a_pending_reinvite_with_487() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let (call, tag) = answered_call(&mut ep, t0, "call-1");
    feed(&mut ep, t0, &ack("call-1", &tag));
    let _ = events(&mut ep);
    feed(
        &mut ep,
        t0,
        &request("INVITE", "z9hG4bKre", "call-1", Some(&tag), 2, "", ""),
    );
    assert_eq!(statuses(&responses(&mut ep)), [100]);
    assert!(matches!(
        events(&mut ep).as_slice(),
        [Event::ReInvite { .. }]
    ));
    ep.hangup(t0, call.clone());
    let tx = transmits(&mut ep);
    let lines: Vec<String> = tx
        .iter()
        .map(|t| {
            String::from_utf8_lossy(&t.bytes)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(lines[0], "SIP/2.0 487 Request Terminated");
    assert!(lines[1].starts_with("BYE "));
    // accept() for the terminated re-INVITE is ignored.
    ep.accept(t0, call, "v=0\r\n".into());
    assert!(transmits(&mut ep).is_empty());
}

// ---- RFC 4028 session timers ----------------------------------------------------------

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// When the session of `call` expires (the server's BYE), if a session timer runs.
fn expiry(ep: &Endpoint, call: &CallId) -> Option<Instant> {
    ep.timers.deadline(Timer::SessionExpiry(call.0))
}

/// When the server refreshes the session of `call`, if it is the refresher.
fn refresh_due(ep: &Endpoint, call: &CallId) -> Option<Instant> {
    ep.timers.deadline(Timer::SessionRefresh(call.0))
}

/// An INVITE with `extra` header lines answered and acknowledged; returns the call, the To
/// tag and the 200 OK.
fn timed_call(
    ep: &mut Endpoint,
    t0: Instant,
    call_id: &str,
    extra: &str,
) -> (CallId, String, Response) {
    let msg = request(
        "INVITE",
        &format!("z9hG4bK{call_id}"),
        call_id,
        None,
        1,
        &format!("Content-Type: application/sdp\r\n{extra}"),
        SDP,
    );
    feed(ep, t0, &msg);
    assert_eq!(statuses(&responses(ep)), [100]);
    let call = match events(ep).as_slice() {
        [Event::IncomingCall { call, .. }] => call.clone(),
        other => panic!("expected IncomingCall, got {other:?}"),
    };
    ep.accept(t0, call.clone(), "v=0\r\n".into());
    let r = responses(ep);
    assert_eq!(statuses(&r), [200]);
    let ok = r[0].clone();
    let tag = ok.to().and_then(|t| t.tag().map(String::from)).unwrap();
    feed(ep, t0, &ack(call_id, &tag));
    assert_eq!(events(ep), [Event::Established { call: call.clone() }]);
    (call, tag, ok)
}

#[test]
fn session_interval_too_small_gets_422_with_min_se() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    ep.set_session_timers(SessionTimerSettings {
        session_expires: 1800,
        min_se: 120,
    });
    let msg = request(
        "INVITE",
        "z9hG4bKsmall",
        "small",
        None,
        1,
        "Content-Type: application/sdp\r\nSupported: timer\r\nx: 90\r\n",
        SDP,
    );
    feed(&mut ep, t0, &msg);
    let r = responses(&mut ep);
    assert_eq!(statuses(&r), [422]);
    assert_eq!(r[0].reason, "Session Interval Too Small");
    assert_eq!(r[0].headers.get("Min-SE"), Some("120"));
    assert!(events(&mut ep).is_empty(), "no call for the server");
    assert_eq!(ep.call_count(), 0);
    feed(&mut ep, t0, &ack("small", "x"));

    // The retry with the minimum is accepted (the INVITE's own Min-SE is fine too).
    let (call, _, ok) = timed_call(
        &mut ep,
        t0,
        "retry",
        "Supported: timer\r\nSession-Expires: 120\r\nMin-SE: 120\r\n",
    );
    assert_eq!(ok.headers.get("Session-Expires"), Some("120;refresher=uac"));
    assert_eq!(ok.headers.get("Require"), Some("timer"));
    assert_eq!(ep.session_timer(&call), Some((120, false)));

    // A malformed Session-Expires is a bad request.
    let msg = request(
        "INVITE",
        "z9hG4bKbad",
        "bad",
        None,
        1,
        "Content-Type: application/sdp\r\nSession-Expires: soon\r\n",
        SDP,
    );
    feed(&mut ep, t0, &msg);
    let r = responses(&mut ep);
    assert_eq!(statuses(&r), [400]);
    assert!(r[0].reason.contains("Session-Expires"), "{}", r[0].reason);
}

#[test]
fn without_session_expires_the_2xx_only_says_supported() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let (call, _, ok) = timed_call(&mut ep, t0, "plain", "Supported: timer\r\n");
    assert_eq!(ok.headers.get("Supported"), Some("timer"));
    assert_eq!(ok.headers.get("Session-Expires"), None);
    assert_eq!(ok.headers.get("Require"), None);
    assert!(ok.headers.get("Allow").unwrap().contains("UPDATE"));
    assert_eq!(ep.session_timer(&call), None);
    assert_eq!(expiry(&ep, &call), None, "no session timer runs");
    // Require: timer is understood (no 420).
    let msg = request(
        "INVITE",
        "z9hG4bKreq",
        "req",
        None,
        1,
        "Content-Type: application/sdp\r\nRequire: timer\r\nSession-Expires: 1800\r\n",
        SDP,
    );
    feed(&mut ep, t0, &msg);
    assert_eq!(statuses(&responses(&mut ep)), [100]);
}

#[test]
fn caller_refreshes_or_the_server_sends_bye() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let (call, tag, ok) = timed_call(
        &mut ep,
        t0,
        "st",
        "Supported: timer\r\nSession-Expires: 600\r\n",
    );
    assert_eq!(ok.headers.get("Session-Expires"), Some("600;refresher=uac"));
    assert_eq!(ok.headers.get("Require"), Some("timer"));
    // The BYE would go at 600 − min(32, 200) = 568 s.
    assert_eq!(expiry(&ep, &call), Some(t0 + secs(568)));
    assert_eq!(refresh_due(&ep, &call), None, "the caller refreshes");

    // A body-less UPDATE at 300 s refreshes: 200 with the timer, expiry moves.
    let update = request(
        "UPDATE",
        "z9hG4bKup1",
        "st",
        Some(&tag),
        2,
        "Supported: timer\r\nSession-Expires: 600;refresher=uac\r\n",
        "",
    );
    feed(&mut ep, t0 + secs(300), &update);
    let r = responses(&mut ep);
    assert_eq!(statuses(&r), [200]);
    assert_eq!(r[0].headers.get("CSeq"), Some("2 UPDATE"));
    assert_eq!(
        r[0].headers.get("Session-Expires"),
        Some("600;refresher=uac")
    );
    assert_eq!(r[0].headers.get("Require"), Some("timer"));
    assert!(r[0].body.is_empty());
    assert_eq!(events(&mut ep), [Event::Refreshed { call: call.clone() }]);
    assert_eq!(expiry(&ep, &call), Some(t0 + secs(868)));

    // A re-INVITE refreshes too, once accepted.
    let reinvite = request(
        "INVITE",
        "z9hG4bKre1",
        "st",
        Some(&tag),
        3,
        "Content-Type: application/sdp\r\nSupported: timer\r\nSession-Expires: 600\r\n",
        SDP,
    );
    feed(&mut ep, t0 + secs(600), &reinvite);
    assert_eq!(statuses(&responses(&mut ep)), [100]);
    let _ = events(&mut ep);
    ep.accept(t0 + secs(600), call.clone(), "v=0\r\n".into());
    let r = responses(&mut ep);
    assert_eq!(
        r[0].headers.get("Session-Expires"),
        Some("600;refresher=uac")
    );
    feed(
        &mut ep,
        t0 + secs(600),
        &request("ACK", "z9hG4bKack3", "st", Some(&tag), 3, "", ""),
    );
    let expiry = t0 + secs(600 + 568);
    ep.handle_timeout(expiry - ms(1));
    assert!(transmits(&mut ep).is_empty(), "nothing before the expiry");
    assert!(events(&mut ep).is_empty());

    // No refresh after that: BYE at the expiry, the call ends at once.
    ep.handle_timeout(expiry);
    let (_, bye) = sent_request(&mut ep);
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(
        events(&mut ep),
        [Event::Ended {
            call: call.clone(),
            reason: EndReason::SessionExpired
        }]
    );
    assert_eq!(ep.call_count(), 0);
    // The BYE transaction goes on by itself; its 200 is absorbed.
    feed(&mut ep, expiry + ms(50), &reply(&bye, 200));
    assert!(events(&mut ep).is_empty());
}

#[test]
fn refused_refresh_keeps_the_old_timer() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let (call, tag, _) = timed_call(
        &mut ep,
        t0,
        "keep",
        "Supported: timer\r\nSession-Expires: 300\r\n",
    );
    // Too small a re-offer by UPDATE: 422, the 300 s timer stays.
    let update = request(
        "UPDATE",
        "z9hG4bKup1",
        "keep",
        Some(&tag),
        2,
        "Supported: timer\r\nSession-Expires: 30\r\n",
        "",
    );
    feed(&mut ep, t0 + secs(100), &update);
    let r = responses(&mut ep);
    assert_eq!(statuses(&r), [422]);
    assert_eq!(r[0].headers.get("Min-SE"), Some("90"));
    assert_eq!(ep.session_timer(&call), Some((300, false)));
    assert_eq!(expiry(&ep, &call), Some(t0 + secs(268)));
    // A re-INVITE the server rejects does not refresh either.
    let reinvite = request(
        "INVITE",
        "z9hG4bKre1",
        "keep",
        Some(&tag),
        3,
        "Content-Type: application/sdp\r\nSupported: timer\r\nSession-Expires: 300\r\n",
        SDP,
    );
    feed(&mut ep, t0 + secs(150), &reinvite);
    let _ = transmits(&mut ep);
    let _ = events(&mut ep);
    ep.reject(t0 + secs(150), call.clone(), 488, "", None);
    let _ = transmits(&mut ep);
    feed(
        &mut ep,
        t0 + secs(150),
        &request("ACK", "z9hG4bKre1", "keep", Some(&tag), 3, "", ""),
    );
    ep.handle_timeout(t0 + secs(268));
    let (_, bye) = sent_request(&mut ep);
    assert_eq!(bye.method, Method::Bye);
}

#[test]
fn update_with_an_offer_is_answered_like_a_reinvite() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let (call, tag, _) = timed_call(&mut ep, t0, "upd", "");
    let update = request(
        "UPDATE",
        "z9hG4bKup1",
        "upd",
        Some(&tag),
        2,
        "Content-Type: application/sdp\r\nSupported: timer\r\nSession-Expires: 900\r\n",
        SDP,
    );
    feed(&mut ep, t0, &update);
    assert!(transmits(&mut ep).is_empty(), "no 100 for a non-INVITE");
    assert_eq!(
        events(&mut ep),
        [Event::ReInvite {
            call: call.clone(),
            offer: Some(SDP.into())
        }]
    );
    // A second offer meanwhile: 491.
    let again = request(
        "UPDATE",
        "z9hG4bKup2",
        "upd",
        Some(&tag),
        3,
        "Content-Type: application/sdp\r\n",
        SDP,
    );
    feed(&mut ep, t0, &again);
    assert_eq!(statuses(&responses(&mut ep)), [491]);
    ep.accept(t0, call.clone(), "v=0\r\nanswer".into());
    let r = responses(&mut ep);
    assert_eq!(statuses(&r), [200]);
    assert_eq!(r[0].headers.get("CSeq"), Some("2 UPDATE"));
    assert_eq!(r[0].body, b"v=0\r\nanswer");
    assert_eq!(
        r[0].headers.get("Session-Expires"),
        Some("900;refresher=uac")
    );
    assert_eq!(events(&mut ep), [Event::Refreshed { call: call.clone() }]);
    // No ACK is awaited: hangup sends BYE at once, and nothing is retransmitted.
    ep.handle_timeout(t0 + secs(5));
    assert!(transmits(&mut ep).is_empty());
    ep.hangup(t0 + secs(5), call);
    let (_, bye) = sent_request(&mut ep);
    assert_eq!(bye.method, Method::Bye);
    // UPDATE outside a dialog: 481.
    feed(
        &mut ep,
        t0,
        &request("UPDATE", "z9hG4bKup9", "nodialog", None, 1, "", ""),
    );
    assert_eq!(statuses(&responses(&mut ep)), [481]);
}

#[test]
fn server_refreshes_by_update_and_ends_the_call_on_481() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    // A caller without timer support whose proxy asked for a timer; it allows UPDATE.
    let (call, _, ok) = timed_call(
        &mut ep,
        t0,
        "uas",
        "Allow: INVITE, ACK, BYE, CANCEL, UPDATE\r\nSession-Expires: 600\r\n",
    );
    assert_eq!(ok.headers.get("Session-Expires"), Some("600;refresher=uas"));
    assert_eq!(ok.headers.get("Require"), None);
    assert_eq!(ep.session_timer(&call), Some((600, true)));
    assert_eq!(refresh_due(&ep, &call), Some(t0 + secs(300)));
    assert_eq!(expiry(&ep, &call), Some(t0 + secs(568)));

    ep.handle_timeout(t0 + secs(300));
    let (t, update) = sent_request(&mut ep);
    assert_eq!(t.to, caller());
    assert_eq!(update.method, Method::Update);
    assert_eq!(update.uri, "sip:alice@198.51.100.7:5062");
    assert_eq!(
        update.headers.get("Session-Expires"),
        Some("600;refresher=uac"),
        "the server is this request's client and refresher"
    );
    assert_eq!(update.headers.get("Supported"), Some("timer"));
    assert!(update.body.is_empty());
    assert!(update.to().unwrap().tag().is_some());
    // Retransmitted over UDP until answered.
    ep.handle_timeout(t0 + secs(300) + ms(500));
    let (_, again) = sent_request(&mut ep);
    assert_eq!(again.headers.get("CSeq"), update.headers.get("CSeq"));
    feed(&mut ep, t0 + secs(301), &reply(&update, 200));
    assert_eq!(events(&mut ep), [Event::Refreshed { call: call.clone() }]);
    // The next refresh half an interval after the answer.
    ep.handle_timeout(t0 + secs(601) - ms(1));
    assert!(transmits(&mut ep).is_empty());
    ep.handle_timeout(t0 + secs(601));
    let (_, update2) = sent_request(&mut ep);
    assert_eq!(update2.method, Method::Update);
    assert!(update2.cseq().unwrap().seq > update.cseq().unwrap().seq);
    // 481: the dialog is gone at the caller; BYE and the call ends.
    feed(&mut ep, t0 + secs(602), &reply(&update2, 481));
    let (_, bye) = sent_request(&mut ep);
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(
        events(&mut ep),
        [Event::Ended {
            call,
            reason: EndReason::RefreshFailed { status: Some(481) }
        }]
    );
}

#[test]
fn server_refreshes_by_reinvite_when_update_is_not_allowed() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let (call, tag, _) = timed_call(
        &mut ep,
        t0,
        "reinv",
        "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS\r\nSession-Expires: 120\r\n",
    );
    assert_eq!(ep.session_timer(&call), Some((120, true)));
    ep.handle_timeout(t0 + secs(60));
    assert!(transmits(&mut ep).is_empty());
    assert_eq!(
        events(&mut ep),
        [Event::RefreshNeeded { call: call.clone() }]
    );
    let offer = "v=0\r\no=imss 7 2 IN IP4 192.0.2.10\r\n";
    ep.refresh_with_offer(t0 + secs(60), call.clone(), offer.into());
    let (_, invite) = sent_request(&mut ep);
    assert_eq!(invite.method, Method::Invite);
    assert_eq!(invite.body, offer.as_bytes());
    assert_eq!(invite.headers.get("Content-Type"), Some("application/sdp"));
    assert_eq!(
        invite.headers.get("Session-Expires"),
        Some("120;refresher=uac")
    );
    assert!(invite.headers.get("Contact").is_some());
    // Timer A retransmits; a re-INVITE from the caller meanwhile is glare (491).
    ep.handle_timeout(t0 + secs(60) + ms(500));
    let (_, again) = sent_request(&mut ep);
    assert_eq!(again.headers.get("Via"), invite.headers.get("Via"));
    feed(
        &mut ep,
        t0 + secs(60) + ms(600),
        &request("INVITE", "z9hG4bKglare", "reinv", Some(&tag), 2, "", ""),
    );
    assert_eq!(statuses(&responses(&mut ep)), [491]);
    // The 200 is acknowledged with an ACK of its own, and again when retransmitted.
    let ok = reply(&invite, 200).replace(
        "Content-Length: 0",
        "Session-Expires: 120;refresher=uac\r\nContent-Length: 0",
    );
    feed(&mut ep, t0 + secs(61), &ok);
    let (_, ack1) = sent_request(&mut ep);
    assert_eq!(ack1.method, Method::Ack);
    assert_eq!(
        ack1.cseq().unwrap().seq,
        invite.cseq().unwrap().seq,
        "the INVITE's CSeq number"
    );
    assert_ne!(
        ack1.top_via().unwrap().branch(),
        invite.top_via().unwrap().branch()
    );
    assert_eq!(events(&mut ep), [Event::Refreshed { call: call.clone() }]);
    feed(&mut ep, t0 + secs(61) + ms(500), &ok);
    let (_, ack2) = sent_request(&mut ep);
    assert_eq!(ack2, ack1);
    assert!(events(&mut ep).is_empty());
    assert_eq!(ep.session_timer(&call), Some((120, true)));

    // The next refresh goes unanswered: Timer B, then BYE.
    ep.handle_timeout(t0 + secs(121));
    assert_eq!(
        events(&mut ep),
        [Event::RefreshNeeded { call: call.clone() }]
    );
    ep.refresh_with_offer(t0 + secs(121), call.clone(), offer.into());
    let _ = transmits(&mut ep);
    let mut now = t0 + secs(121);
    let mut ended = None;
    while ended.is_none() {
        let next = ep.poll_timeout().expect("a timer runs");
        assert!(next <= t0 + secs(200), "gave up in time");
        now = next;
        ep.handle_timeout(now);
        let _ = transmits(&mut ep);
        ended = events(&mut ep).into_iter().find_map(|e| match e {
            Event::Ended { reason, .. } => Some(reason),
            _ => None,
        });
    }
    // The session expires at 61 + 120 − 32 = 149 s, before Timer B (121 + 32 s).
    assert_eq!(ended, Some(EndReason::SessionExpired));
    assert_eq!(now, t0 + secs(149));
}

#[test]
fn update_refused_with_501_falls_back_to_reinvite() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let (call, _, _) = timed_call(
        &mut ep,
        t0,
        "fallback",
        "Allow: INVITE, ACK, BYE, UPDATE\r\nSession-Expires: 90\r\n",
    );
    ep.handle_timeout(t0 + secs(45));
    let (_, update) = sent_request(&mut ep);
    assert_eq!(update.method, Method::Update);
    feed(&mut ep, t0 + secs(46), &reply(&update, 501));
    assert_eq!(events(&mut ep), [Event::RefreshNeeded { call }]);
}

#[test]
fn unanswered_update_refresh_ends_the_call() {
    let t0 = Instant::now();
    let mut ep = endpoint();
    let (call, _, _) = timed_call(
        &mut ep,
        t0,
        "silent",
        "Allow: INVITE, ACK, BYE, UPDATE\r\nSession-Expires: 1800\r\n",
    );
    ep.handle_timeout(t0 + secs(900));
    let _ = transmits(&mut ep);
    // Timer F (64·T1) before the session's end: the refresh failed, BYE.
    let now = loop {
        let now = ep.poll_timeout().unwrap();
        ep.handle_timeout(now);
        let _ = transmits(&mut ep);
        let evs = events(&mut ep);
        if !evs.is_empty() {
            assert_eq!(
                evs,
                [Event::Ended {
                    call,
                    reason: EndReason::RefreshFailed { status: None }
                }]
            );
            break now;
        }
    };
    assert_eq!(now, t0 + secs(932));
}
