//! Interoperability with a real peer: SIPp (Debian package `sip-tester`) calls the endpoint
//! over UDP and TCP with its built-in `uac` scenario, and answers a `ClientCall` with its
//! built-in `uas` scenario. A minimal blocking shell moves the bytes; the protocol work is
//! the crate's.

use imss_sip::endpoint::{Endpoint, EndpointConfig, Event, Input};
use imss_sip::message;
use imss_sip::sdp::{self, AnswerParams, SessionDescription};
use imss_sip::uac::{ClientCall, UacConfig, UacEvent};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SIPP: &str = "/usr/bin/sipp";

fn sipp() -> Command {
    assert!(
        Path::new(SIPP).exists(),
        "{SIPP} not found: install the Debian package sip-tester (apt-get install sip-tester)"
    );
    let mut c = Command::new(SIPP);
    c.current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Kills the child if the test fails before it exits.
struct Reaped(Option<Child>);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Reaped {
    /// Waits for the child while `step` runs the shell; returns the exit status and stderr.
    fn wait_while(&mut self, deadline: Instant, mut step: impl FnMut()) -> (bool, String) {
        let child = self.0.as_mut().expect("child");
        loop {
            step();
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                self.0 = None;
                return (status.success(), err);
            }
            assert!(Instant::now() < deadline, "sipp did not finish in time");
        }
    }
}

struct Server {
    ep: Endpoint,
    udp: UdpSocket,
    tcp: TcpListener,
    conns: Vec<(u64, SocketAddr, TcpStream, Vec<u8>)>,
    established: usize,
    ended: usize,
}

impl Server {
    fn new() -> Server {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
        udp.set_nonblocking(true).expect("nonblocking");
        let port = udp.local_addr().expect("addr").port();
        let tcp = TcpListener::bind(("127.0.0.1", port)).expect("bind TCP on the same port");
        tcp.set_nonblocking(true).expect("nonblocking");
        let mut ep = Endpoint::new(EndpointConfig {
            contact_host: "127.0.0.1".into(),
            contact_port: port,
            user_agent: "imss-sip-test".into(),
        });
        ep.set_options_sdp(sdp::capabilities_sdp(
            "127.0.0.1".parse().expect("ip"),
            "imss",
        ));
        Server {
            ep,
            udp,
            tcp,
            conns: Vec::new(),
            established: 0,
            ended: 0,
        }
    }

    fn port(&self) -> u16 {
        self.udp.local_addr().expect("addr").port()
    }

    fn step(&mut self) {
        let now = Instant::now();
        let mut buf = [0u8; 65_535];
        let mut idle = true;
        while let Ok((n, from)) = self.udp.recv_from(&mut buf) {
            idle = false;
            self.ep.handle_input(
                now,
                Input::Datagram {
                    from,
                    bytes: &buf[..n],
                },
            );
        }
        if let Ok((s, from)) = self.tcp.accept() {
            s.set_nonblocking(true).expect("nonblocking");
            self.conns
                .push((self.conns.len() as u64 + 1, from, s, Vec::new()));
        }
        for (conn, from, stream, pending) in &mut self.conns {
            match stream.read(&mut buf) {
                Ok(n) if n > 0 => {
                    idle = false;
                    pending.extend_from_slice(&buf[..n]);
                }
                _ => {}
            }
            loop {
                match message::parse_stream_detailed(pending) {
                    Ok(Some((message, used))) => {
                        pending.drain(..used);
                        self.ep.handle_input(
                            now,
                            Input::Stream {
                                conn: *conn,
                                from: *from,
                                message,
                            },
                        );
                    }
                    Ok(None) => break,
                    Err(malformed) => panic!("SIPp sent a malformed message: {malformed}"),
                }
            }
        }
        self.ep.handle_timeout(Instant::now());
        self.drain();
        if idle {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn drain(&mut self) {
        loop {
            while let Some(t) = self.ep.poll_transmit() {
                match t.conn {
                    None => {
                        let _ = self.udp.send_to(&t.bytes, t.to);
                    }
                    Some(c) => {
                        let stream = self
                            .conns
                            .iter_mut()
                            .find(|(id, ..)| *id == c)
                            .map(|(_, _, s, _)| s)
                            .expect("connection");
                        stream.write_all(&t.bytes).expect("TCP write");
                    }
                }
            }
            let Some(e) = self.ep.poll_event() else {
                break;
            };
            match e {
                Event::IncomingCall { call, offer, .. } => {
                    let offer: SessionDescription = offer
                        .as_deref()
                        .expect("SIPp offers SDP")
                        .parse()
                        .expect("SIPp's SDP parses");
                    let params = AnswerParams {
                        addr: "127.0.0.1".parse().expect("ip"),
                        port: 20_000,
                        session_id: 1,
                        session_version: 1,
                        username: "imss".into(),
                        default_ptime_ms: imss_sip::sdp::DEFAULT_PTIME_MS,
                    };
                    let (answer, n) = sdp::answer_audio(&offer, &params).expect("negotiates");
                    assert_eq!(n.codec, sdp::Codec::Pcmu);
                    self.ep.accept(Instant::now(), call, answer.to_string());
                }
                Event::Established { .. } => self.established += 1,
                Event::Ended { .. } => self.ended += 1,
                _ => {}
            }
        }
    }
}

fn sipp_calls_the_endpoint(transport: &str) {
    let mut server = Server::new();
    let target = format!("127.0.0.1:{}", server.port());
    let child = sipp()
        .args(["-sn", "uac", "-i", "127.0.0.1", "-p", "0", "-t", transport])
        .args(["-m", "5", "-l", "5", "-r", "20", "-d", "200"])
        .args([
            "-timeout",
            "30s",
            "-timeout_error",
            "-max_recv_loops",
            "100",
        ])
        .arg(&target)
        .spawn()
        .expect("start sipp");
    let (ok, err) =
        Reaped(Some(child)).wait_while(Instant::now() + Duration::from_secs(40), || server.step());
    assert!(ok, "sipp uac over {transport} failed: {err}");
    for _ in 0..50 {
        server.step();
    }
    assert_eq!(server.established, 5, "five calls ACKed");
    assert_eq!(server.ended, 5, "five calls ended by SIPp's BYE");
    assert_eq!(server.ep.call_count(), 0);
    assert_eq!(server.ep.stats().dropped_malformed, 0);
}

#[test]
fn sipp_uac_over_udp() {
    sipp_calls_the_endpoint("u1");
}

#[test]
fn sipp_uac_over_tcp() {
    sipp_calls_the_endpoint("t1");
}

#[test]
fn client_call_against_sipp_uas() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port();
    let child = sipp()
        .args([
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "u1",
        ])
        .args(["-m", "1", "-timeout", "30s", "-timeout_error"])
        .spawn()
        .expect("start sipp");
    let mut reaped = Reaped(Some(child));
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_nonblocking(true).expect("nonblocking");
    let local = sock.local_addr().expect("addr");
    let remote: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut call = ClientCall::new(
        Instant::now(),
        UacConfig {
            local,
            target_uri: format!("sip:service@127.0.0.1:{port}"),
            remote,
            sdp_offer: "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n".into(),
            from_user: "imss".into(),
        },
    );
    let mut events = Vec::new();
    let (ok, err) = reaped.wait_while(Instant::now() + Duration::from_secs(40), || {
        let mut buf = [0u8; 65_535];
        let now = Instant::now();
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            if let Ok(msg) = message::parse_datagram(&buf[..n]) {
                call.handle_message(now, msg);
            }
        }
        call.handle_timeout(now);
        while let Some((to, bytes)) = call.poll_transmit() {
            let _ = sock.send_to(&bytes, to);
        }
        while let Some(e) = call.poll_event() {
            if matches!(e, UacEvent::Answered { .. }) {
                call.hangup(now);
            }
            events.push(e);
        }
        while let Some((to, bytes)) = call.poll_transmit() {
            let _ = sock.send_to(&bytes, to);
        }
        std::thread::sleep(Duration::from_millis(1));
    });
    assert!(ok, "sipp uas failed: {err}; client saw {events:?}");
    assert!(events.contains(&UacEvent::Provisional(180)), "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, UacEvent::Answered { .. })),
        "{events:?}"
    );
    assert_eq!(events.last(), Some(&UacEvent::Terminated), "{events:?}");
}
