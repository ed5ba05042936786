//! A `ClientCall` talks to an `Endpoint` through an in-memory network with a virtual clock
//! that jumps to the next deadline: delivery, retransmission timers and scripted actions.

use imss_sip::endpoint::{CallId, EndReason, Endpoint, EndpointConfig, Event, Input, Transport};
use imss_sip::message;
use imss_sip::sdp::{self, AnswerParams, SessionDescription};
use imss_sip::uac::{ClientCall, UacConfig, UacEvent};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const LATENCY: Duration = Duration::from_millis(20);
const OFFER: &str = "v=0\r\no=- 7 7 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n\
m=audio 30000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n";

fn server_addr() -> SocketAddr {
    "192.0.2.10:5060".parse().unwrap()
}

fn client_addr() -> SocketAddr {
    "198.51.100.7:40000".parse().unwrap()
}

/// What the server-side application does.
#[derive(Clone, Copy)]
struct ServerScript {
    /// Delay between IncomingCall and accept().
    answer_after: Duration,
    /// hangup() this long after Established, if set.
    hangup_after: Option<Duration>,
}

/// What the test network does with a datagram (true = lose it).
type Loss = Box<dyn FnMut(&str) -> bool>;

struct World {
    now: Instant,
    ep: Endpoint,
    call: ClientCall,
    in_flight: Vec<(Instant, SocketAddr, Vec<u8>)>,
    loss: Loss,
    script: ServerScript,
    client_hangup_at: Option<Instant>,
    pending_accept: Option<(Instant, CallId, String)>,
    pending_hangup: Option<(Instant, CallId)>,
    client_events: Vec<UacEvent>,
    server_events: Vec<Event>,
    sent_by_client: Vec<String>,
    sent_by_server: Vec<String>,
}

fn first_line(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

impl World {
    fn new(script: ServerScript, loss: Loss) -> World {
        let now = Instant::now();
        let mut ep = Endpoint::new(EndpointConfig {
            contact_host: "192.0.2.10".into(),
            contact_port: 5060,
            user_agent: "imss-test".into(),
        });
        ep.set_options_sdp(sdp::capabilities_sdp("192.0.2.10".parse().unwrap(), "imss"));
        let call = ClientCall::new(
            now,
            UacConfig {
                local: client_addr(),
                target_uri: "sip:annc@192.0.2.10:5060;play=hello.wav".into(),
                remote: server_addr(),
                sdp_offer: OFFER.into(),
                from_user: "bench".into(),
            },
        );
        World {
            now,
            ep,
            call,
            in_flight: Vec::new(),
            loss,
            script,
            client_hangup_at: None,
            pending_accept: None,
            pending_hangup: None,
            client_events: Vec::new(),
            server_events: Vec::new(),
            sent_by_client: Vec::new(),
            sent_by_server: Vec::new(),
        }
    }

    fn flush(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.ep.poll_transmit() {
                assert_eq!(t.transport, Transport::Udp);
                progressed = true;
                self.sent_by_server.push(first_line(&t.bytes));
                if !(self.loss)(&first_line(&t.bytes)) {
                    self.in_flight.push((self.now + LATENCY, t.to, t.bytes));
                }
            }
            while let Some((to, bytes)) = self.call.poll_transmit() {
                progressed = true;
                self.sent_by_client.push(first_line(&bytes));
                if !(self.loss)(&first_line(&bytes)) {
                    self.in_flight.push((self.now + LATENCY, to, bytes));
                }
            }
            while let Some(e) = self.ep.poll_event() {
                progressed = true;
                self.on_server_event(e);
            }
            while let Some(e) = self.call.poll_event() {
                progressed = true;
                self.client_events.push(e);
            }
            if !progressed {
                break;
            }
        }
    }

    fn on_server_event(&mut self, e: Event) {
        match &e {
            Event::IncomingCall { call, offer, .. } => {
                let offer: SessionDescription =
                    offer.as_deref().expect("offer").parse().expect("SDP");
                let params = AnswerParams {
                    addr: "192.0.2.10".parse().unwrap(),
                    port: 16384,
                    session_id: 1,
                    session_version: 1,
                    username: "imss".into(),
                    default_ptime_ms: imss_sip::sdp::DEFAULT_PTIME_MS,
                };
                let (answer, negotiated) = sdp::answer_audio(&offer, &params).expect("answer");
                assert_eq!(
                    negotiated.codec,
                    sdp::Codec::Pcma,
                    "offer order: PCMA first"
                );
                assert_eq!(negotiated.telephone_event, Some(101));
                self.pending_accept = Some((
                    self.now + self.script.answer_after,
                    call.clone(),
                    answer.to_string(),
                ));
            }
            Event::Established { call } => {
                if let Some(after) = self.script.hangup_after {
                    self.pending_hangup = Some((self.now + after, call.clone()));
                }
            }
            _ => {}
        }
        self.server_events.push(e);
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.in_flight.iter().map(|(t, _, _)| *t).min(),
            self.ep.poll_timeout(),
            self.call.poll_timeout(),
            self.client_hangup_at,
            self.pending_accept.as_ref().map(|(t, _, _)| *t),
            self.pending_hangup.as_ref().map(|(t, _)| *t),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs until nothing is left to do or `limit` of virtual time has passed.
    fn run(&mut self, limit: Duration) {
        let end = self.now + limit;
        self.flush();
        while let Some(next) = self.next_deadline() {
            if next > end {
                break;
            }
            self.now = next;
            let (due, later): (Vec<_>, Vec<_>) =
                self.in_flight.drain(..).partition(|(t, _, _)| *t <= next);
            self.in_flight = later;
            for (_, to, bytes) in due {
                if to == server_addr() {
                    self.ep.handle_input(
                        self.now,
                        Input::Datagram {
                            from: client_addr(),
                            bytes: &bytes,
                        },
                    );
                } else {
                    assert_eq!(to, client_addr(), "server sent to the caller's address");
                    let msg = message::parse_datagram(&bytes).expect("server sent valid SIP");
                    self.call.handle_message(self.now, msg);
                }
            }
            if self.client_hangup_at.is_some_and(|t| t <= next) {
                self.client_hangup_at = None;
                self.call.hangup(self.now);
            }
            if let Some((t, call, answer)) = self.pending_accept.take() {
                if t <= next {
                    self.ep.accept(self.now, call, answer);
                } else {
                    self.pending_accept = Some((t, call, answer));
                }
            }
            if let Some((t, call)) = self.pending_hangup.take() {
                if t <= next {
                    self.ep.hangup(self.now, call);
                } else {
                    self.pending_hangup = Some((t, call));
                }
            }
            self.ep.handle_timeout(self.now);
            self.call.handle_timeout(self.now);
            self.flush();
        }
    }

    fn count(lines: &[String], prefix: &str) -> usize {
        lines.iter().filter(|l| l.starts_with(prefix)).count()
    }
}

fn no_loss() -> Loss {
    Box::new(|_| false)
}

#[test]
fn client_hangs_up_an_answered_call() {
    let mut w = World::new(
        ServerScript {
            answer_after: Duration::from_millis(100),
            hangup_after: None,
        },
        no_loss(),
    );
    w.client_hangup_at = Some(w.now + Duration::from_secs(5));
    w.run(Duration::from_secs(120));
    assert!(w.call.is_terminated());
    let sdp = match &w.client_events[..] {
        [
            UacEvent::Provisional(100),
            UacEvent::Answered { sdp },
            UacEvent::Terminated,
        ] => sdp,
        other => panic!("client saw {other:?}"),
    };
    assert!(sdp.contains("m=audio 16384 RTP/AVP 8 101"), "{sdp}");
    assert!(sdp.contains("a=sendonly"));
    let call = match &w.server_events[..] {
        [
            Event::IncomingCall { call, .. },
            Event::Established { call: c2 },
            Event::Ended {
                call: c3,
                reason: EndReason::RemoteBye,
            },
        ] if call == c2 && c2 == c3 => call.clone(),
        other => panic!("server saw {other:?}"),
    };
    assert_eq!(w.ep.sip_call_id(&call), None, "dialog gone");
    assert_eq!(
        w.sent_by_client,
        [
            "INVITE sip:annc@192.0.2.10:5060;play=hello.wav SIP/2.0",
            "ACK sip:192.0.2.10:5060 SIP/2.0",
            "BYE sip:192.0.2.10:5060 SIP/2.0"
        ]
    );
    assert_eq!(
        w.sent_by_server,
        ["SIP/2.0 100 Trying", "SIP/2.0 200 OK", "SIP/2.0 200 OK"]
    );
    assert_eq!(w.ep.call_count(), 0);
    assert_eq!(
        w.ep.transaction_count(),
        0,
        "all transactions timed out cleanly"
    );
}

#[test]
fn server_hangs_up_and_lost_packets_are_retransmitted() {
    // Lose the first INVITE, the first 200 OK and the first BYE.
    let mut lost = std::collections::HashSet::new();
    let loss: Loss = Box::new(move |line: &str| {
        let kind = if line.starts_with("INVITE") {
            "invite"
        } else if line == "SIP/2.0 200 OK" {
            "ok"
        } else if line.starts_with("BYE") {
            "bye"
        } else {
            return false;
        };
        lost.insert(kind)
    });
    let mut w = World::new(
        ServerScript {
            answer_after: Duration::ZERO,
            hangup_after: Some(Duration::from_secs(3)),
        },
        loss,
    );
    w.run(Duration::from_secs(120));
    assert_eq!(
        w.client_events,
        [
            UacEvent::Provisional(100),
            UacEvent::Answered {
                sdp: match &w.client_events[1] {
                    UacEvent::Answered { sdp } => sdp.clone(),
                    _ => String::new(),
                }
            },
            UacEvent::RemoteBye,
            UacEvent::Terminated
        ]
    );
    assert!(matches!(
        w.server_events.last(),
        Some(Event::Ended {
            reason: EndReason::LocalBye { status: Some(200) },
            ..
        })
    ));
    assert_eq!(World::count(&w.sent_by_client, "INVITE"), 2, "Timer A");
    assert_eq!(World::count(&w.sent_by_server, "BYE"), 2, "Timer E");
    assert!(
        World::count(&w.sent_by_server, "SIP/2.0 200 OK") >= 2,
        "2xx retransmitted"
    );
    assert_eq!(w.ep.transaction_count(), 0);
}

#[test]
fn client_cancels_before_the_answer() {
    let mut w = World::new(
        ServerScript {
            answer_after: Duration::from_secs(10),
            hangup_after: None,
        },
        no_loss(),
    );
    w.client_hangup_at = Some(w.now + Duration::from_secs(1));
    w.run(Duration::from_secs(120));
    assert_eq!(
        w.client_events,
        [
            UacEvent::Provisional(100),
            UacEvent::Failed {
                status: 487,
                reason: "Request Terminated".into()
            },
            UacEvent::Terminated
        ]
    );
    assert!(matches!(
        &w.server_events[..],
        [Event::IncomingCall { .. }, Event::Cancelled { .. }]
    ));
    assert_eq!(
        w.sent_by_client
            .iter()
            .map(|l| l.split(' ').next().unwrap_or(""))
            .collect::<Vec<_>>(),
        ["INVITE", "CANCEL", "ACK"]
    );
    assert_eq!(
        w.sent_by_server,
        [
            "SIP/2.0 100 Trying",
            "SIP/2.0 200 OK",
            "SIP/2.0 487 Request Terminated"
        ],
        "the late accept() is ignored"
    );
    assert_eq!(w.ep.call_count(), 0);
}
