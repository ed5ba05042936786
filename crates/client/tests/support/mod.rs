//! A scripted SIP user-agent server and G.711 sender for the client's tests: plain std UDP
//! sockets, imss-sip's message codec, imss-rtp's packetiser, imss-media's G.711.

#![allow(dead_code)]

use imss_media::Law;
use imss_rtp::Packetizer;
use imss_sip::message::{self, Message, Method, Request, Response};
use imss_sip::sdp::SessionDescription;
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Sample `n` of the test tone: 1 kHz at 8 kHz (period 8), amplitude 8000.
pub fn tone(n: u64) -> i16 {
    let phase = (n % 8) as f64 / 8.0 * std::f64::consts::TAU;
    (phase.sin() * 8000.0).round() as i16
}

/// What the fake server does with an INVITE.
#[derive(Clone, Debug)]
pub enum Script {
    /// 200 OK with the first offered G.711 codec; after the ACK, `packets` of tone every
    /// `ptime_ms`, then a BYE when `then_bye`.
    Answer {
        ptime_ms: u32,
        packets: u64,
        then_bye: bool,
    },
    /// A final failure with a Warning header.
    Reject {
        status: u16,
        reason: &'static str,
        warning: &'static str,
    },
}

/// What the fake server saw.
#[derive(Clone, Debug, Default)]
pub struct UasStats {
    pub invites: usize,
    pub request_uris: Vec<String>,
    pub acks: usize,
    pub byes_received: usize,
    pub byes_sent: usize,
    pub packets_sent: u64,
    pub laws: Vec<Law>,
}

pub struct FakeUas {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    join: Option<JoinHandle<UasStats>>,
}

impl FakeUas {
    pub fn start(script: Script) -> FakeUas {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind fake UAS");
        let addr = sock.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let join = std::thread::spawn(move || run(sock, script, stop2));
        FakeUas {
            addr,
            stop,
            join: Some(join),
        }
    }

    pub fn stop(mut self) -> UasStats {
        self.stop.store(true, Ordering::SeqCst);
        self.join
            .take()
            .expect("running")
            .join()
            .expect("fake UAS thread")
    }
}

impl Drop for FakeUas {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

struct Stream {
    peer_sip: SocketAddr,
    rtp_to: SocketAddr,
    law: Law,
    ptime: Duration,
    packetizer: Packetizer,
    sample: u64,
    next_due: Option<Instant>,
    remaining: u64,
    then_bye: bool,
    /// For a BYE of ours: INVITE's From (their tag), our To with tag, their Contact.
    their_from: String,
    our_to: String,
    their_contact: String,
    call_id: String,
    final_response: Vec<u8>,
    done: bool,
}

fn run(sock: UdpSocket, script: Script, stop: Arc<AtomicBool>) -> UasStats {
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("bind fake RTP");
    let mut stats = UasStats::default();
    let mut calls: HashMap<String, Stream> = HashMap::new();
    let mut buf = vec![0u8; 65535];
    let mut tag = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        // Send the RTP that is due.
        for s in calls.values_mut() {
            while let Some(due) = s.next_due {
                if due > now || s.done {
                    break;
                }
                if s.remaining == 0 {
                    s.next_due = None;
                    if s.then_bye {
                        let bye = bye_request(s, sock.local_addr().expect("addr"));
                        let _ = sock.send_to(&bye, s.peer_sip);
                        stats.byes_sent += 1;
                        s.done = true;
                    }
                    break;
                }
                let n = (s.ptime.as_millis() as usize) * 8;
                let payload: Vec<u8> = (0..n as u64)
                    .map(|i| s.law.encode(tone(s.sample + i)))
                    .collect();
                s.sample += n as u64;
                let mut pkt = vec![0u8; 12 + n];
                let len = s.packetizer.write(&payload, false, &mut pkt);
                let _ = rtp.send_to(&pkt[..len], s.rtp_to);
                stats.packets_sent += 1;
                s.remaining -= 1;
                s.next_due = Some(due + s.ptime);
            }
        }
        let next =
            calls
                .values()
                .filter_map(|s| s.next_due)
                .min()
                .map_or(Duration::from_millis(5), |d| {
                    d.saturating_duration_since(Instant::now())
                        .clamp(Duration::from_micros(200), Duration::from_millis(5))
                });
        sock.set_read_timeout(Some(next)).expect("timeout");
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(_) => continue,
        };
        let Ok(msg) = message::parse_datagram(&buf[..n]) else {
            continue;
        };
        let Message::Request(req) = msg else {
            continue; // responses to our BYEs
        };
        let call_id = req.headers.get("Call-ID").unwrap_or_default().to_string();
        match req.method {
            Method::Invite => {
                if let Some(s) = calls.get(&call_id) {
                    let _ = sock.send_to(&s.final_response, from);
                    continue;
                }
                stats.invites += 1;
                stats.request_uris.push(req.uri.clone());
                tag += 1;
                let our_to = format!(
                    "{};tag=fake{tag}",
                    req.headers.get("To").unwrap_or_default()
                );
                let mut resp;
                let mut stream = None;
                match &script {
                    Script::Reject {
                        status,
                        reason,
                        warning,
                    } => {
                        resp = reply(&req, *status, reason, &our_to);
                        resp.headers
                            .push("Warning", format!("399 fake \"{warning}\""));
                    }
                    Script::Answer {
                        ptime_ms,
                        packets,
                        then_bye,
                    } => {
                        let offer: SessionDescription = String::from_utf8_lossy(&req.body)
                            .parse()
                            .expect("offer parses");
                        let m = &offer.media[0];
                        let law = m
                            .formats
                            .iter()
                            .find_map(|f| match f.as_str() {
                                "0" => Some(Law::Pcmu),
                                "8" => Some(Law::Pcma),
                                _ => None,
                            })
                            .expect("a G.711 codec offered");
                        stats.laws.push(law);
                        let ip = offer
                            .connection
                            .as_ref()
                            .and_then(|c| c.ip())
                            .expect("c= address");
                        resp = reply(&req, 200, "OK", &our_to);
                        resp.headers.push(
                            "Contact",
                            format!("<sip:fake@{}>", sock.local_addr().expect("addr")),
                        );
                        resp.headers.push("Content-Type", "application/sdp");
                        resp.body = format!(
                            "v=0\r\no=fake 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
                             t=0 0\r\nm=audio {} RTP/AVP {}\r\na=rtpmap:{} {}/8000\r\n\
                             a=ptime:{ptime_ms}\r\na=sendonly\r\n",
                            rtp.local_addr().expect("addr").port(),
                            law.payload_type(),
                            law.payload_type(),
                            law.encoding_name()
                        )
                        .into_bytes();
                        let contact = req.headers.get("Contact").unwrap_or_default();
                        let contact = contact
                            .split_once('<')
                            .and_then(|(_, r)| r.split_once('>'))
                            .map_or(contact, |(u, _)| u)
                            .to_string();
                        stream = Some(Stream {
                            peer_sip: from,
                            rtp_to: SocketAddr::new(ip, m.port),
                            law,
                            ptime: Duration::from_millis(u64::from(*ptime_ms)),
                            packetizer: Packetizer::new(law.payload_type()),
                            sample: 0,
                            next_due: None,
                            remaining: *packets,
                            then_bye: *then_bye,
                            their_from: req.headers.get("From").unwrap_or_default().to_string(),
                            our_to: our_to.clone(),
                            their_contact: contact,
                            call_id: call_id.clone(),
                            final_response: Vec::new(),
                            done: false,
                        });
                    }
                }
                let bytes = resp.to_bytes();
                let _ = sock.send_to(&bytes, from);
                let mut s = stream.unwrap_or_else(|| Stream {
                    peer_sip: from,
                    rtp_to: from,
                    law: Law::Pcmu,
                    ptime: Duration::from_millis(20),
                    packetizer: Packetizer::new(0),
                    sample: 0,
                    next_due: None,
                    remaining: 0,
                    then_bye: false,
                    their_from: String::new(),
                    our_to: String::new(),
                    their_contact: String::new(),
                    call_id: call_id.clone(),
                    final_response: Vec::new(),
                    done: true,
                });
                s.final_response = bytes;
                calls.insert(call_id, s);
            }
            Method::Ack => {
                stats.acks += 1;
                if let Some(s) = calls.get_mut(&call_id)
                    && !s.done
                    && s.next_due.is_none()
                {
                    s.next_due = Some(Instant::now());
                    if s.remaining == 0 && !s.then_bye {
                        s.next_due = None;
                    }
                }
            }
            Method::Bye => {
                stats.byes_received += 1;
                let to = req.headers.get("To").unwrap_or_default().to_string();
                let resp = reply(&req, 200, "OK", &to);
                let _ = sock.send_to(&resp.to_bytes(), from);
                if let Some(s) = calls.get_mut(&call_id) {
                    s.done = true;
                    s.next_due = None;
                }
            }
            _ => {
                let to = req.headers.get("To").unwrap_or_default().to_string();
                let resp = reply(&req, 200, "OK", &to);
                let _ = sock.send_to(&resp.to_bytes(), from);
            }
        }
    }
    stats
}

fn reply(req: &Request, status: u16, reason: &str, to: &str) -> Response {
    let mut r = Response::new(status, reason);
    for name in ["Via", "From"] {
        r.headers.copy_from(&req.headers, name);
    }
    r.headers.push("To", to);
    for name in ["Call-ID", "CSeq"] {
        r.headers.copy_from(&req.headers, name);
    }
    r
}

fn bye_request(s: &Stream, local: SocketAddr) -> Vec<u8> {
    let mut r = Request::new(Method::Bye, s.their_contact.clone());
    r.headers.push(
        "Via",
        format!(
            "SIP/2.0/UDP {local};branch=z9hG4bKfake{}",
            rand::random::<u32>()
        ),
    );
    r.headers.push("Max-Forwards", "70");
    r.headers.push("From", s.our_to.clone());
    r.headers.push("To", s.their_from.clone());
    r.headers.push("Call-ID", s.call_id.clone());
    r.headers.push("CSeq", "1 BYE");
    r.to_bytes()
}
