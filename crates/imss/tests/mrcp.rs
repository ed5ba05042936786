//! MRCPv2 sessions end to end, driven by the messages UniMRCP's client `umc` sends
//! (shared/interop/unimrcp-1.8): SIP set-up with a control channel, SPEAK over TCP, RTP
//! audio, SPEAK-COMPLETE.

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};
use support::mrcp::{fds_and_threads, with_message_length};
use support::session::{new_call_id, retarget, ulaw, vector};
use support::*;

/// Reads SIP messages on `sock` until one satisfies `want` (returned), failing with `what`
/// after `limit`.
fn wait_sip(sock: &UdpSocket, limit: Duration, what: &str, want: impl Fn(&str) -> bool) -> String {
    let mut buf = vec![0u8; 65536];
    let end = Instant::now() + limit;
    loop {
        assert!(Instant::now() < end, "{what}");
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let t = String::from_utf8_lossy(&buf[..n]).to_string();
            if want(&t) {
                return t;
            }
        }
    }
}

/// A captured MRCP message with its Channel-Identifier replaced (same length: the
/// message-length field stays right) — or rebuilt with a new body.
fn speak(channel: &str, request_id: u32, body: Option<(&str, &str)>) -> Vec<u8> {
    let captured =
        vector("mrcp-speak-from-umc.txt").replace("bec57cd70a2f4130@speechsynth", channel);
    let Some((content_type, body)) = body else {
        assert_eq!(
            captured.len(),
            295,
            "same-length channel id keeps the message-length right"
        );
        return captured.into_bytes();
    };
    speak_with(channel, request_id, "", content_type, body)
}

/// A SPEAK with `extra` header lines (each ending in CRLF) and a body.
fn speak_with(
    channel: &str,
    request_id: u32,
    extra: &str,
    content_type: &str,
    body: &str,
) -> Vec<u8> {
    let rest = format!(
        " SPEAK {request_id}\r\nChannel-Identifier: {channel}\r\n{extra}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    with_message_length(&rest)
}

/// Reads MRCP messages until one whose start line contains `want` (returned whole).
fn read_until(tcp: &mut TcpStream, buf: &mut Vec<u8>, want: &str, limit: Duration) -> String {
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    support::mrcp::read_until(tcp, buf, want, limit)
}

/// Packets, RMS and loudest packet's RMS of the μ-law audio arriving on `rtp` during `span`
/// (payload type 0 only).
fn audio_rms(rtp: &UdpSocket, span: Duration) -> (usize, f64, f64) {
    rtp.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    let (mut n_packets, mut sum, mut n, mut loudest) = (0usize, 0f64, 0usize, 0f64);
    let end = Instant::now() + span;
    while Instant::now() < end {
        if let Ok(len) = rtp.recv(&mut buf)
            && len > 12
            && buf[1] & 0x7f == 0
        {
            n_packets += 1;
            let mut packet = 0f64;
            for b in &buf[12..len] {
                let v = f64::from(ulaw(*b)) / 32768.0;
                packet += v * v;
            }
            sum += packet;
            n += len - 12;
            loudest = loudest.max((packet / (len - 12) as f64).sqrt());
        }
    }
    let rms = if n == 0 { 0.0 } else { (sum / n as f64).sqrt() };
    (n_packets, rms, loudest)
}

/// A session set up with umc's INVITE: the caller's SIP and RTP sockets and what the
/// server's 200 OK granted.
struct Session {
    sip: UdpSocket,
    me: SocketAddr,
    rtp: UdpSocket,
    rtp_port: u16,
    call_id: String,
    channel: String,
    to_tag: String,
}

fn open_session(server: &Server) -> Session {
    open_session_for(server, "speechsynth")
}

/// A session whose control channel is for `resource` (umc's INVITE asks for speechsynth).
fn open_session_for(server: &Server, resource: &str) -> Session {
    let sip = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sip.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let me = sip.local_addr().expect("addr");
    let rtp_port = free_rtp_port();
    let rtp = UdpSocket::bind(("127.0.0.1", rtp_port)).expect("bind rtp");

    let call_id = new_call_id();
    let invite = retarget(
        &vector("sip-invite-from-umc.txt")
            .replace("a=resource:speechsynth", &format!("a=resource:{resource}")),
        server.sip,
        me,
        rtp_port,
        &call_id,
    );
    sip.send_to(invite.as_bytes(), server.sip).expect("INVITE");
    let mut buf = vec![0u8; 65536];
    let end = Instant::now() + Duration::from_secs(5);
    let ok = loop {
        assert!(
            Instant::now() < end,
            "no 200 OK; server log:\n{}",
            server.log()
        );
        if let Ok((n, _)) = sip.recv_from(&mut buf) {
            let t = String::from_utf8_lossy(&buf[..n]).to_string();
            // Only the answer to this INVITE (a reused port may still see another's).
            if !t.contains(&call_id) {
                continue;
            }
            if t.starts_with("SIP/2.0 200") {
                break t;
            }
            assert!(t.starts_with("SIP/2.0 1"), "unexpected answer: {t}");
        }
    };
    assert!(
        ok.contains(&format!(
            "m=application {} TCP/MRCPv2 1",
            server.mrcp.port()
        )),
        "{ok}"
    );
    assert!(
        ok.contains("a=setup:passive")
            && ok.contains("a=connection:new")
            && ok.contains("a=cmid:1"),
        "{ok}"
    );
    assert!(
        ok.contains("RTP/AVP 0 101") && ok.contains("a=sendonly") && ok.contains("a=mid:1"),
        "{ok}"
    );
    let channel = ok
        .lines()
        .find_map(|l| l.strip_prefix("a=channel:"))
        .expect("a=channel")
        .trim()
        .to_string();
    assert!(
        channel.ends_with(&format!("@{resource}")) && channel.len() == 17 + resource.len(),
        "{channel}"
    );
    let to_tag = ok
        .lines()
        .find(|l| l.starts_with("To:"))
        .and_then(|l| l.split(";tag=").nth(1))
        .expect("To tag")
        .trim()
        .to_string();

    Session {
        sip,
        me,
        rtp,
        rtp_port,
        call_id,
        channel,
        to_tag,
    }
}

impl Session {
    /// Sends umc's ACK for the 200 OK.
    fn ack(&self, server: &Server) {
        let ack = self.in_dialog(server, "sip-ack-from-umc.txt");
        self.sip.send_to(ack.as_bytes(), server.sip).expect("ACK");
    }

    /// umc's ACK (or BYE) for this session.
    fn in_dialog(&self, server: &Server, vector_name: &str) -> String {
        retarget(
            &vector(vector_name),
            server.sip,
            self.me,
            self.rtp_port,
            &self.call_id,
        )
        .replace("Q8jF6rpvQmHpS", &self.to_tag)
    }
}

#[test]
fn umc_session_speak_and_bye() {
    require("espeak-ng", "espeak-ng");
    let server = start_server("", |audio| {
        write_wav(&audio.join("tone.wav"), 8000, &tone(8000, 1.0))
    });
    let Session {
        sip,
        me,
        rtp,
        rtp_port,
        call_id,
        channel,
        to_tag,
    } = open_session(&server);
    // umc opens the control connection and sends SPEAK at once, before its ACK.
    let mut tcp = TcpStream::connect(server.mrcp).expect("MRCP connect");
    tcp.write_all(&speak(&channel, 1, None)).expect("SPEAK");
    let ack = retarget(
        &vector("sip-ack-from-umc.txt"),
        server.sip,
        me,
        rtp_port,
        &call_id,
    )
    .replace("Q8jF6rpvQmHpS", &to_tag);
    sip.send_to(ack.as_bytes(), server.sip).expect("ACK");
    let mut mbuf = Vec::new();
    let r = read_until(
        &mut tcp,
        &mut mbuf,
        "200 IN-PROGRESS",
        Duration::from_secs(10),
    );
    assert!(
        r.starts_with("MRCP/2.0 ") && r.contains(" 1 200 IN-PROGRESS\r\n"),
        "{r}"
    );
    assert!(r.contains(&format!("Channel-Identifier: {channel}")), "{r}");
    // The text is spoken: loud audio on the RTP port.
    let (packets, rms, _) = audio_rms(&rtp, Duration::from_millis(800));
    assert!(packets >= 30, "{packets} RTP packets while speaking");
    assert!(rms > 0.02, "speech is audible (rms {rms:.4})");
    let done = read_until(
        &mut tcp,
        &mut mbuf,
        "SPEAK-COMPLETE",
        Duration::from_secs(10),
    );
    assert!(done.contains("SPEAK-COMPLETE 1 COMPLETE"), "{done}");
    assert!(done.contains("Completion-Cause: 000 normal"), "{done}");

    // An audio file by SSML.
    let ssml = r#"<?xml version="1.0"?><speak version="1.0" xml:lang="en-US" xmlns="http://www.w3.org/2001/10/synthesis"><audio src="tone.wav"/></speak>"#;
    tcp.write_all(&speak(&channel, 2, Some(("application/ssml+xml", ssml))))
        .expect("SPEAK 2");
    let r = read_until(&mut tcp, &mut mbuf, "IN-PROGRESS", Duration::from_secs(10));
    assert!(r.contains(" 2 200 IN-PROGRESS"), "{r}");
    let (_, _, loudest) = audio_rms(&rtp, Duration::from_millis(600));
    // A 0.5-amplitude sine has an RMS of 0.354 in every 20 ms packet.
    assert!(
        (0.33..0.38).contains(&loudest),
        "the 1 kHz tone at -6 dBFS (packet rms {loudest:.3})"
    );
    let done = read_until(
        &mut tcp,
        &mut mbuf,
        "SPEAK-COMPLETE",
        Duration::from_secs(10),
    );
    assert!(
        done.contains("SPEAK-COMPLETE 2 COMPLETE") && done.contains("000 normal"),
        "{done}"
    );

    // A missing file: the request completes with 003 uri-failure and a reason.
    tcp.write_all(&speak(
        &channel,
        3,
        Some(("text/uri-list", "missing.wav\r\n")),
    ))
    .expect("SPEAK 3");
    let done = read_until(&mut tcp, &mut mbuf, " 3 ", Duration::from_secs(10));
    let done = if done.contains("SPEAK-COMPLETE") {
        done
    } else {
        read_until(
            &mut tcp,
            &mut mbuf,
            "SPEAK-COMPLETE",
            Duration::from_secs(10),
        )
    };
    assert!(done.contains("Completion-Cause: 003 uri-failure"), "{done}");
    assert!(
        done.contains("Completion-Reason:") && done.contains("missing.wav"),
        "{done}"
    );

    // BYE from umc; the channel is gone afterwards.
    let bye = retarget(
        &vector("sip-bye-from-umc.txt"),
        server.sip,
        me,
        rtp_port,
        &call_id,
    )
    .replace("Q8jF6rpvQmHpS", &to_tag);
    sip.send_to(bye.as_bytes(), server.sip).expect("BYE");
    wait_sip(&sip, Duration::from_secs(5), "BYE not answered", |t| {
        t.starts_with("SIP/2.0 200") && t.contains(" BYE")
    });
    tcp.write_all(&speak(&channel, 4, Some(("text/plain", "hello"))))
        .expect("SPEAK 4");
    let r = read_until(&mut tcp, &mut mbuf, " 4 ", Duration::from_secs(5));
    assert!(
        r.contains(" 4 4"),
        "a SPEAK on a closed channel is refused with a 4xx: {r}"
    );
}

#[test]
fn umc_options_discovers_the_resources() {
    let server = start_server("", |_| {});
    let sip = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sip.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let me = sip.local_addr().expect("addr");
    let options = retarget(
        &vector("sip-options-from-umc.txt"),
        server.sip,
        me,
        0,
        &new_call_id(),
    );
    sip.send_to(options.as_bytes(), server.sip)
        .expect("OPTIONS");
    let mut buf = vec![0u8; 65536];
    let (n, _) = sip.recv_from(&mut buf).expect("answer");
    let r = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(r.contains("m=application 0 TCP/MRCPv2"), "{r}");
    assert!(r.contains("a=resource:speechsynth"), "{r}");
    assert!(
        r.contains("a=rtpmap:0 PCMU/8000") && r.contains("a=rtpmap:8 PCMA/8000"),
        "{r}"
    );
}

#[test]
fn stop_pause_queue_and_a_dropped_control_connection() {
    let server = start_server("", |audio| {
        write_wav(&audio.join("long.wav"), 8000, &tone(8000, 6.0));
        write_wav(&audio.join("short.wav"), 8000, &tone(8000, 0.5));
    });
    let session = open_session(&server);
    session.ack(&server);
    let ch = session.channel.clone();
    let mut tcp = TcpStream::connect(server.mrcp).expect("MRCP connect");
    let mut mbuf = Vec::new();
    let uri_list = |uri: &str| Some(("text/uri-list", format!("{uri}\r\n")));

    // A long play, queued behind it a short one.
    let long = uri_list("long.wav");
    tcp.write_all(&speak(&ch, 1, long.as_ref().map(|(t, b)| (*t, b.as_str()))))
        .expect("SPEAK 1");
    let r = read_until(&mut tcp, &mut mbuf, " 1 200 ", Duration::from_secs(10));
    assert!(r.contains("IN-PROGRESS"), "{r}");
    let short = uri_list("short.wav");
    tcp.write_all(&speak(
        &ch,
        2,
        short.as_ref().map(|(t, b)| (*t, b.as_str())),
    ))
    .expect("SPEAK 2");
    let r = read_until(&mut tcp, &mut mbuf, " 2 200 ", Duration::from_secs(10));
    assert!(r.contains("PENDING"), "the second SPEAK waits: {r}");

    // PAUSE silences the stream; RESUME brings the tone back.
    let (_, _, loud) = audio_rms(&session.rtp, Duration::from_millis(300));
    assert!(loud > 0.3, "the long tone plays (packet rms {loud:.3})");
    tcp.write_all(&request(&ch, "PAUSE", 3, "")).expect("PAUSE");
    let r = read_until(&mut tcp, &mut mbuf, " 3 ", Duration::from_secs(5));
    assert!(r.contains(" 3 200 COMPLETE"), "{r}");
    let _ = audio_rms(&session.rtp, Duration::from_millis(150));
    let (packets, _, _) = audio_rms(&session.rtp, Duration::from_millis(400));
    assert!(packets <= 1, "no RTP while paused: {packets} packets");
    tcp.write_all(&request(&ch, "RESUME", 4, ""))
        .expect("RESUME");
    let r = read_until(&mut tcp, &mut mbuf, " 4 ", Duration::from_secs(5));
    assert!(r.contains(" 4 200 COMPLETE"), "{r}");
    let (_, _, loud) = audio_rms(&session.rtp, Duration::from_millis(300));
    assert!(
        loud > 0.3,
        "the tone is back after RESUME (packet rms {loud:.3})"
    );

    // STOP of SPEAK 1 only ends it without SPEAK-COMPLETE; the queued one then plays and
    // completes.
    tcp.write_all(&request(&ch, "STOP", 5, "Active-Request-Id-List: 1\r\n"))
        .expect("STOP");
    let r = read_until(&mut tcp, &mut mbuf, " 5 ", Duration::from_secs(5));
    assert!(
        r.contains(" 5 200 COMPLETE") && r.contains("Active-Request-Id-List: 1\r\n"),
        "{r}"
    );
    let done = read_until(
        &mut tcp,
        &mut mbuf,
        "SPEAK-COMPLETE",
        Duration::from_secs(10),
    );
    assert!(
        done.contains("SPEAK-COMPLETE 2 COMPLETE") && done.contains("000 normal"),
        "no SPEAK-COMPLETE for the stopped SPEAK 1, then 2 completes: {done}"
    );

    // A STOP without a list stops everything: the active SPEAK and the queued ones.
    let body = |b: &Option<(&'static str, String)>| b.as_ref().map(|(t, b)| (*t, b.clone()));
    for id in [6, 7] {
        let (t, b) = body(&long).expect("body");
        tcp.write_all(&speak(&ch, id, Some((t, &b))))
            .expect("SPEAK");
        let _ = read_until(
            &mut tcp,
            &mut mbuf,
            &format!(" {id} 200 "),
            Duration::from_secs(10),
        );
    }
    tcp.write_all(&request(&ch, "STOP", 8, ""))
        .expect("STOP all");
    let r = read_until(&mut tcp, &mut mbuf, " 8 ", Duration::from_secs(5));
    assert!(
        r.contains(" 8 200 COMPLETE") && r.contains("Active-Request-Id-List: 6,7"),
        "{r}"
    );
    let _ = audio_rms(&session.rtp, Duration::from_millis(150));
    let (_, _, loud) = audio_rms(&session.rtp, Duration::from_millis(400));
    assert!(loud < 0.01, "silence after STOP (packet rms {loud:.3})");

    // BARGE-IN-OCCURRED stops a SPEAK (Kill-On-Barge-In defaults to true).
    let (t, b) = body(&long).expect("body");
    tcp.write_all(&speak(&ch, 9, Some((t, &b))))
        .expect("SPEAK 9");
    let _ = read_until(&mut tcp, &mut mbuf, " 9 200 ", Duration::from_secs(10));
    let (_, _, loud) = audio_rms(&session.rtp, Duration::from_millis(300));
    assert!(loud > 0.3, "SPEAK 9 plays (packet rms {loud:.3})");
    tcp.write_all(&request(&ch, "BARGE-IN-OCCURRED", 10, ""))
        .expect("BARGE-IN-OCCURRED");
    let r = read_until(&mut tcp, &mut mbuf, " 10 ", Duration::from_secs(5));
    assert!(
        r.contains(" 10 200 COMPLETE") && r.contains("Active-Request-Id-List: 9"),
        "{r}"
    );
    let _ = audio_rms(&session.rtp, Duration::from_millis(150));
    let (_, _, loud) = audio_rms(&session.rtp, Duration::from_millis(400));
    assert!(loud < 0.01, "silence after barge-in (packet rms {loud:.3})");

    // Malformed MRCP on a second connection gets its own error; this session is unaffected.
    let mut junk = TcpStream::connect(server.mrcp).expect("connect");
    junk.write_all(b"MRCP/2.0 99999999 SPEAK 9\r\n")
        .expect("write");
    let mut jbuf = Vec::new();
    let r = read_until(&mut junk, &mut jbuf, " 9 504", Duration::from_secs(5));
    assert!(
        r.contains("COMPLETE"),
        "oversized message answered 504: {r}"
    );

    // Dropping the control connection ends the session: the server sends BYE.
    drop(tcp);
    wait_sip(
        &session.sip,
        Duration::from_secs(5),
        "no BYE after the control connection dropped",
        |t| t.starts_with("BYE "),
    );
}

/// A body-less request on `channel` with `extra` header lines, with a correct message-length.
fn request(channel: &str, method: &str, request_id: u32, extra: &str) -> Vec<u8> {
    let rest = format!(" {method} {request_id}\r\nChannel-Identifier: {channel}\r\n{extra}\r\n");
    let mut len = "MRCP/2.0 ".len() + rest.len();
    loop {
        let total = "MRCP/2.0 ".len() + len.to_string().len() + rest.len();
        if total == len {
            break;
        }
        len = total;
    }
    format!("MRCP/2.0 {len}{rest}").into_bytes()
}

#[test]
fn a_session_whose_client_never_connects_is_hung_up() {
    let server = start_server("mrcp.connect_timeout_s = 1", |_| {});
    let session = open_session(&server);
    session.ack(&server);
    let started = Instant::now();
    let bye = wait_sip(
        &session.sip,
        Duration::from_secs(6),
        "no BYE for an idle session",
        |t| t.starts_with("BYE "),
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before the timeout"
    );
    assert!(
        bye.contains(&format!("Call-ID: {}", session.call_id)),
        "{bye}"
    );
    // The channel is gone: a late SPEAK on it is refused.
    let mut tcp = TcpStream::connect(server.mrcp).expect("connect");
    tcp.write_all(&speak(&session.channel, 1, None))
        .expect("SPEAK");
    let mut mbuf = Vec::new();
    let r = read_until(&mut tcp, &mut mbuf, " 1 ", Duration::from_secs(5));
    assert!(r.contains(" 1 405 COMPLETE"), "{r}");
}

#[test]
fn many_sessions_leak_no_sockets_or_threads() {
    let server = start_server("", |audio| {
        write_wav(&audio.join("short.wav"), 8000, &tone(8000, 0.1))
    });
    // One session first, so lazily created pools and threads exist before the baseline.
    let run_session = |i: u32| {
        let session = open_session(&server);
        session.ack(&server);
        let mut tcp = TcpStream::connect(server.mrcp).expect("MRCP connect");
        let mut mbuf = Vec::new();
        tcp.write_all(&speak(
            &session.channel,
            1,
            Some(("text/uri-list", "short.wav\r\n")),
        ))
        .expect("SPEAK");
        let r = read_until(&mut tcp, &mut mbuf, " 1 ", Duration::from_secs(10));
        assert!(r.contains(" 1 200 IN-PROGRESS"), "session {i}: {r}");
        let done = read_until(
            &mut tcp,
            &mut mbuf,
            "SPEAK-COMPLETE",
            Duration::from_secs(10),
        );
        assert!(done.contains("000 normal"), "session {i}: {done}");
        let bye = session.in_dialog(&server, "sip-bye-from-umc.txt");
        session
            .sip
            .send_to(bye.as_bytes(), server.sip)
            .expect("BYE");
        wait_sip(
            &session.sip,
            Duration::from_secs(5),
            &format!("session {i}: BYE not answered"),
            |t| t.starts_with("SIP/2.0 200") && t.contains(" BYE"),
        );
    };
    run_session(0);
    std::thread::sleep(Duration::from_millis(300));
    let before = fds_and_threads(server.pid());
    for i in 1..=150 {
        run_session(i);
    }
    // Streams are released by the pacing threads within a packet time or two.
    std::thread::sleep(Duration::from_millis(500));
    let after = fds_and_threads(server.pid());
    assert!(
        after.0 <= before.0 + 2,
        "descriptors before {} after {} sessions: {}",
        before.0,
        150,
        after.0
    );
    assert!(
        after.1 <= before.1 + 2,
        "threads before {} after: {}",
        before.1,
        after.1
    );
}

/// Dominant frequency of the μ-law audio arriving on `rtp` during `span`, by zero crossings.
fn received_frequency(rtp: &UdpSocket, span: Duration) -> f64 {
    rtp.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    let mut samples: Vec<i16> = Vec::new();
    let end = Instant::now() + span;
    while Instant::now() < end {
        if let Ok(len) = rtp.recv(&mut buf)
            && len > 12
        {
            samples.extend(buf[12..len].iter().map(|b| ulaw(*b)));
        }
    }
    let crossings = samples
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count();
    crossings as f64 / 2.0 / (samples.len().max(1) as f64 / 8000.0)
}

#[test]
fn control_jumps_within_the_item_and_restarts() {
    // 3 s at 500 Hz, then 3 s at 1,500 Hz: where the cursor is shows in the frequency.
    let server = start_server("", |audio| {
        let two_tones: Vec<f32> = (0..48_000)
            .map(|i| {
                let f = if i < 24_000 { 500.0 } else { 1500.0 };
                (0.5 * (2.0 * std::f64::consts::PI * f * i as f64 / 8000.0).sin()) as f32
            })
            .collect();
        write_wav(&audio.join("two.wav"), 8000, &two_tones);
    });
    let session = open_session(&server);
    session.ack(&server);
    let ch = session.channel.clone();
    let mut tcp = TcpStream::connect(server.mrcp).expect("MRCP connect");
    let mut mbuf = Vec::new();
    tcp.write_all(&speak(&ch, 1, Some(("text/uri-list", "two.wav\r\n"))))
        .expect("SPEAK");
    let _ = read_until(&mut tcp, &mut mbuf, " 1 200 ", Duration::from_secs(10));
    let _ = received_frequency(&session.rtp, Duration::from_millis(100));
    let f = received_frequency(&session.rtp, Duration::from_millis(300));
    assert!(
        (450.0..550.0).contains(&f),
        "plays the first tone ({f:.0} Hz)"
    );

    tcp.write_all(&request(&ch, "CONTROL", 2, "Jump-Size: +3 Second\r\n"))
        .expect("CONTROL");
    let r = read_until(&mut tcp, &mut mbuf, " 2 ", Duration::from_secs(5));
    assert!(r.contains(" 2 200 COMPLETE"), "{r}");
    let _ = received_frequency(&session.rtp, Duration::from_millis(100));
    let f = received_frequency(&session.rtp, Duration::from_millis(300));
    assert!(
        (1400.0..1600.0).contains(&f),
        "jumped 3 s into the second tone ({f:.0} Hz)"
    );

    tcp.write_all(&request(&ch, "CONTROL", 3, "Speak-Restart: true\r\n"))
        .expect("CONTROL");
    let r = read_until(&mut tcp, &mut mbuf, " 3 ", Duration::from_secs(5));
    assert!(r.contains(" 3 200 COMPLETE"), "{r}");
    let _ = received_frequency(&session.rtp, Duration::from_millis(100));
    let f = received_frequency(&session.rtp, Duration::from_millis(300));
    assert!(
        (450.0..550.0).contains(&f),
        "restarted at the first tone ({f:.0} Hz)"
    );
}

#[test]
fn ssml_marks_and_item_starts_are_reported_when_playback_reaches_them() {
    let server = start_server("", |audio| {
        write_wav(&audio.join("half.wav"), 8000, &tone(8000, 0.5))
    });
    let session = open_session(&server);
    session.ack(&server);
    let mut tcp = TcpStream::connect(server.mrcp).expect("MRCP connect");
    let mut mbuf = Vec::new();
    let ssml = r#"<?xml version="1.0"?><speak version="1.0" xml:lang="en-US" xmlns="http://www.w3.org/2001/10/synthesis"><audio src="half.wav"/><mark name="middle"/><audio src="half.wav"/></speak>"#;
    tcp.write_all(&speak(
        &session.channel,
        1,
        Some(("application/ssml+xml", ssml)),
    ))
    .expect("SPEAK");
    let r = read_until(&mut tcp, &mut mbuf, " 1 200 ", Duration::from_secs(10));
    let started = Instant::now();
    // The IN-PROGRESS response carries the time (no mark reached yet).
    let response_ntp = speech_marker(&r).expect("Speech-Marker in IN-PROGRESS").0;
    let mut markers = Vec::new();
    let done = loop {
        let m = read_until(&mut tcp, &mut mbuf, " 1 ", Duration::from_secs(5));
        if m.contains("SPEAK-COMPLETE") {
            break m;
        }
        assert!(m.contains("SPEECH-MARKER 1 IN-PROGRESS"), "{m}");
        markers.push((started.elapsed(), speech_marker(&m).expect("Speech-Marker")));
    };
    // Each audio item's first packet (no name), and the SSML mark between them.
    let names: Vec<Option<&str>> = markers.iter().map(|(_, (_, n))| n.as_deref()).collect();
    assert_eq!(names, [None, Some("middle"), None], "{markers:?}");
    let at = markers[1].0;
    assert!(
        at >= Duration::from_millis(350) && at <= Duration::from_millis(900),
        "the mark is half a second into the audio, reported after {at:?}"
    );
    // The timestamps are NTP times of the media: the mark comes 0.5 s after the start.
    let seconds = |a: u64, b: u64| b.wrapping_sub(a) as f64 / 4_294_967_296.0;
    let first = (markers[0].1).0;
    let apart = seconds(first, (markers[1].1).0);
    assert!((0.4..0.7).contains(&apart), "marks {apart:.3} s apart");
    assert!(
        (0.0..0.5).contains(&seconds(response_ntp, first)),
        "audio starts right after the response"
    );
    assert!(done.contains("000 normal"), "{done}");
    // SPEAK-COMPLETE carries the last mark the request reached.
    let (end_ntp, last) = speech_marker(&done).expect("Speech-Marker in SPEAK-COMPLETE");
    assert_eq!(last.as_deref(), Some("middle"), "{done}");
    assert!((0.9..1.4).contains(&seconds(first, end_ntp)), "{done}");
}

/// The `Speech-Marker` of a message: NTP timestamp and mark name.
fn speech_marker(message: &str) -> Option<(u64, Option<String>)> {
    let value = message
        .split("\r\n")
        .find_map(|l| l.strip_prefix("Speech-Marker: "))?;
    let (ts, name) = match value.split_once(';') {
        Some((ts, name)) => (ts, Some(name.to_string())),
        None => (value, None),
    };
    Some((ts.strip_prefix("timestamp=")?.parse().ok()?, name))
}

/// Reads MRCP messages until one whose start line has `want`, failing if one with `not`
/// comes first.
fn read_until_not(
    tcp: &mut TcpStream,
    buf: &mut Vec<u8>,
    want: &str,
    not: &str,
    limit: Duration,
) -> String {
    let m = read_until_any(tcp, buf, &[want, not], limit);
    assert!(!m.lines().next().unwrap_or_default().contains(not), "{m}");
    m
}

/// Reads MRCP messages until one whose start line contains one of `wanted`.
fn read_until_any(
    tcp: &mut TcpStream,
    buf: &mut Vec<u8>,
    wanted: &[&str],
    limit: Duration,
) -> String {
    let end = Instant::now() + limit;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        // Any message at all (every start line has "MRCP/2.0"), then filter.
        let m = read_until(tcp, buf, "MRCP/2.0", left.max(Duration::from_millis(1)));
        let start = m.lines().next().unwrap_or_default();
        if wanted.iter().any(|w| start.contains(w)) {
            return m;
        }
    }
}

#[test]
fn speak_length_limits_live_sources_and_control_shortens_the_playing_request() {
    let server = start_server(
        "[[external_audio]]\nname = \"beep\"\nkind = \"tone\"\nfrequency_hz = 440\n",
        |_| {},
    );
    let session = open_session(&server);
    session.ack(&server);
    let ch = session.channel.clone();
    let mut tcp = TcpStream::connect(server.mrcp).expect("MRCP connect");
    let mut mbuf = Vec::new();

    // A live source with a Speak-Length of 1 s: the tone, then SPEAK-COMPLETE 000 normal.
    tcp.write_all(&speak_with(
        &ch,
        1,
        "Speak-Length: 1 Second\r\n",
        "text/uri-list",
        "source:beep\r\n",
    ))
    .expect("SPEAK 1");
    let _ = read_until(&mut tcp, &mut mbuf, " 1 200 ", Duration::from_secs(10));
    let started = Instant::now();
    let f = received_frequency(&session.rtp, Duration::from_millis(500));
    assert!((400.0..480.0).contains(&f), "the 440 Hz source ({f:.0} Hz)");
    let done = read_until(
        &mut tcp,
        &mut mbuf,
        "SPEAK-COMPLETE",
        Duration::from_secs(5),
    );
    let took = started.elapsed();
    assert!(
        done.contains("SPEAK-COMPLETE 1 COMPLETE") && done.contains("000 normal"),
        "{done}"
    );
    assert!(
        took >= Duration::from_millis(850) && took <= Duration::from_millis(1500),
        "1 s of the live source, completed after {took:?}"
    );

    // Without Speak-Length it plays until told otherwise; CONTROL Speak-Length: 1 Second
    // then ends it a second after the CONTROL.
    tcp.write_all(&speak(&ch, 2, Some(("text/uri-list", "source:beep\r\n"))))
        .expect("SPEAK 2");
    let _ = read_until(&mut tcp, &mut mbuf, " 2 200 ", Duration::from_secs(10));
    let f = received_frequency(&session.rtp, Duration::from_millis(1500));
    assert!(
        (400.0..480.0).contains(&f),
        "still the source after 1.5 s ({f:.0} Hz)"
    );
    tcp.write_all(&request(&ch, "CONTROL", 3, "Speak-Length: 1 Second\r\n"))
        .expect("CONTROL");
    let r = read_until_not(
        &mut tcp,
        &mut mbuf,
        " 3 ",
        "SPEAK-COMPLETE",
        Duration::from_secs(5),
    );
    let controlled = Instant::now();
    assert!(
        r.contains(" 3 200 COMPLETE")
            && r.contains("Active-Request-Id-List: 2\r\n")
            && r.contains("Speech-Marker: timestamp="),
        "{r}"
    );
    let done = read_until(
        &mut tcp,
        &mut mbuf,
        "SPEAK-COMPLETE",
        Duration::from_secs(5),
    );
    let took = controlled.elapsed();
    assert!(
        done.contains("SPEAK-COMPLETE 2 COMPLETE") && done.contains("000 normal"),
        "{done}"
    );
    assert!(
        took >= Duration::from_millis(800) && took <= Duration::from_millis(1400),
        "ended 1 s after the CONTROL, not 1 s after the start: {took:?}"
    );
    let _ = audio_rms(&session.rtp, Duration::from_millis(100));
    let (_, rms, _) = audio_rms(&session.rtp, Duration::from_millis(300));
    assert!(rms < 0.01, "silence after the limit (rms {rms:.4})");

    // Units that cannot be counted in audio: 409 naming the field as sent.
    tcp.write_all(&speak_with(
        &ch,
        4,
        "Speak-Length: 3 Word\r\n",
        "text/uri-list",
        "source:beep\r\n",
    ))
    .expect("SPEAK 4");
    let r = read_until(&mut tcp, &mut mbuf, " 4 ", Duration::from_secs(5));
    assert!(
        r.contains(" 4 409 COMPLETE") && r.contains("Speak-Length: 3 Word\r\n"),
        "{r}"
    );
}

#[test]
fn speak_length_up_to_a_mark_in_speak_and_in_control() {
    // 1.5 s at 500 Hz, then 3 s at 1,500 Hz, a mark between them.
    let server = start_server("", |audio| {
        let sine = |f: f64, seconds: f64| -> Vec<f32> {
            (0..(seconds * 8000.0) as usize)
                .map(|i| (0.5 * (2.0 * std::f64::consts::PI * f * i as f64 / 8000.0).sin()) as f32)
                .collect()
        };
        write_wav(&audio.join("low.wav"), 8000, &sine(500.0, 1.5));
        write_wav(&audio.join("high.wav"), 8000, &sine(1500.0, 3.0));
    });
    let session = open_session(&server);
    session.ack(&server);
    let ch = session.channel.clone();
    let mut tcp = TcpStream::connect(server.mrcp).expect("MRCP connect");
    let mut mbuf = Vec::new();
    let ssml = r#"<?xml version="1.0"?><speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis"><audio src="low.wav"/><mark name="chapter2"/><audio src="high.wav"/></speak>"#;

    // In SPEAK: the low tone only, the mark reported, then SPEAK-COMPLETE 000 normal.
    tcp.write_all(&speak_with(
        &ch,
        1,
        "Speak-Length: chapter2 Tag\r\n",
        "application/ssml+xml",
        ssml,
    ))
    .expect("SPEAK 1");
    let _ = read_until(&mut tcp, &mut mbuf, " 1 200 ", Duration::from_secs(10));
    let started = Instant::now();
    let f = received_frequency(&session.rtp, Duration::from_millis(1200));
    assert!((450.0..550.0).contains(&f), "the low tone ({f:.0} Hz)");
    let events = ["SPEECH-MARKER", "SPEAK-COMPLETE"];
    let mark = read_until_any(&mut tcp, &mut mbuf, &events, Duration::from_secs(5));
    let mark = if speech_marker(&mark).is_some_and(|(_, n)| n.is_none()) {
        read_until_any(&mut tcp, &mut mbuf, &events, Duration::from_secs(5))
    } else {
        mark
    };
    assert!(
        mark.contains("SPEECH-MARKER 1") && mark.contains(";chapter2"),
        "{mark}"
    );
    let done = read_until(
        &mut tcp,
        &mut mbuf,
        "SPEAK-COMPLETE",
        Duration::from_secs(5),
    );
    let took = started.elapsed();
    assert!(
        done.contains("000 normal") && done.contains(";chapter2"),
        "{done}"
    );
    assert!(
        took <= Duration::from_millis(2000),
        "ended at the mark: {took:?}"
    );
    let _ = audio_rms(&session.rtp, Duration::from_millis(100));
    let (_, rms, _) = audio_rms(&session.rtp, Duration::from_millis(300));
    assert!(rms < 0.01, "the high tone never plays (rms {rms:.4})");

    // In CONTROL, while the low tone plays: the same end, counted from where playback is.
    tcp.write_all(&speak(&ch, 2, Some(("application/ssml+xml", ssml))))
        .expect("SPEAK 2");
    let _ = read_until(&mut tcp, &mut mbuf, " 2 200 ", Duration::from_secs(10));
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    tcp.write_all(&request(
        &ch,
        "CONTROL",
        3,
        "Speak-Length: chapter2 Tag\r\n",
    ))
    .expect("CONTROL");
    let r = read_until(&mut tcp, &mut mbuf, " 3 ", Duration::from_secs(5));
    assert!(r.contains(" 3 200 COMPLETE"), "{r}");
    let done = read_until(
        &mut tcp,
        &mut mbuf,
        "SPEAK-COMPLETE",
        Duration::from_secs(5),
    );
    let took = started.elapsed();
    assert!(
        done.contains("SPEAK-COMPLETE 2") && done.contains("000 normal"),
        "{done}"
    );
    assert!(
        took >= Duration::from_millis(1300) && took <= Duration::from_millis(2100),
        "ended at the mark 1.5 s in, not after 4.5 s: {took:?}"
    );
}

#[test]
fn basicsynth_plays_its_ssml_subset_and_refuses_the_rest() {
    let server = start_server("", |audio| {
        write_wav(&audio.join("tone.wav"), 8000, &tone(8000, 0.5))
    });
    let session = open_session_for(&server, "basicsynth");
    session.ack(&server);
    let ch = session.channel.clone();
    let mut tcp = TcpStream::connect(server.mrcp).expect("MRCP connect");
    let mut mbuf = Vec::new();
    let ok = r#"<?xml version="1.0"?><speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis"><mark name="a"/><audio src="tone.wav"/></speak>"#;
    tcp.write_all(&speak(&ch, 1, Some(("application/ssml+xml", ok))))
        .expect("SPEAK 1");
    let r = read_until(&mut tcp, &mut mbuf, " 1 200 ", Duration::from_secs(10));
    assert!(r.contains(&format!("Channel-Identifier: {ch}")), "{r}");
    let (_, _, loudest) = audio_rms(&session.rtp, Duration::from_millis(400));
    assert!(
        (0.33..0.38).contains(&loudest),
        "the tone plays (packet rms {loudest:.3})"
    );
    let done = read_until(
        &mut tcp,
        &mut mbuf,
        "SPEAK-COMPLETE",
        Duration::from_secs(5),
    );
    assert!(done.contains("000 normal"), "{done}");

    let rich = r#"<?xml version="1.0"?><speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis"><audio src="tone.wav"/><prosody rate="slow"><audio src="tone.wav"/></prosody></speak>"#;
    tcp.write_all(&speak(&ch, 2, Some(("application/ssml+xml", rich))))
        .expect("SPEAK 2");
    let r = read_until(&mut tcp, &mut mbuf, " 2 200 ", Duration::from_secs(10));
    assert!(r.contains("IN-PROGRESS"), "{r}");
    let done = read_until(
        &mut tcp,
        &mut mbuf,
        "SPEAK-COMPLETE",
        Duration::from_secs(5),
    );
    assert!(
        done.contains("SPEAK-COMPLETE 2 COMPLETE")
            && done.contains("Completion-Cause: 002 parse-failure")
            && done.contains("Completion-Reason: \"<prosody> is not supported by a basicsynth"),
        "{done}"
    );
    drain_rtp(&session.rtp);
    let (_, _, loudest) = audio_rms(&session.rtp, Duration::from_millis(300));
    assert!(
        loudest < 0.01,
        "nothing of it plays (packet rms {loudest:.3})"
    );
}

/// Reads and drops what is waiting on `rtp`.
fn drain_rtp(rtp: &UdpSocket) {
    rtp.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 2048];
    while rtp.recv(&mut buf).is_ok() {}
    rtp.set_nonblocking(false).expect("blocking");
}

#[test]
fn control_prosody_applies_to_the_text_that_has_not_started() {
    require("espeak-ng", "espeak-ng");
    let server = start_server("", |_| {});
    let session = open_session(&server);
    session.ack(&server);
    let ch = session.channel.clone();
    let mut tcp = TcpStream::connect(server.mrcp).expect("MRCP connect");
    let mut mbuf = Vec::new();
    // Two pieces of text with a mark between them: the first plays for several seconds.
    let ssml = r#"<?xml version="1.0"?><speak version="1.0" xml:lang="en-US" xmlns="http://www.w3.org/2001/10/synthesis">This first sentence is spoken at the normal volume, and it goes on for a good few seconds so that the change can land before it ends.<mark name="second"/>This second sentence comes after the change and would be heard at the new volume.</speak>"#;
    tcp.write_all(&speak(&ch, 1, Some(("application/ssml+xml", ssml))))
        .expect("SPEAK");
    let _ = read_until(&mut tcp, &mut mbuf, " 1 200 ", Duration::from_secs(10));
    let first = read_until(
        &mut tcp,
        &mut mbuf,
        "SPEECH-MARKER",
        Duration::from_secs(10),
    );
    assert_eq!(speech_marker(&first).map(|m| m.1), Some(None), "{first}");
    let (_, rms, _) = audio_rms(&session.rtp, Duration::from_millis(700));
    assert!(rms > 0.02, "the first sentence is audible (rms {rms:.4})");

    tcp.write_all(&request(&ch, "CONTROL", 2, "Prosody-Volume: silent\r\n"))
        .expect("CONTROL");
    let r = read_until(&mut tcp, &mut mbuf, " 2 ", Duration::from_secs(5));
    assert!(
        r.contains(" 2 200 COMPLETE") && r.contains("Active-Request-Id-List: 1"),
        "{r}"
    );
    // The sentence playing cannot change: still audible.
    let (_, rms, _) = audio_rms(&session.rtp, Duration::from_millis(500));
    assert!(
        rms > 0.02,
        "the first sentence plays on as it was (rms {rms:.4})"
    );
    let mark = read_until(
        &mut tcp,
        &mut mbuf,
        "SPEECH-MARKER 1",
        Duration::from_secs(15),
    );
    assert!(mark.contains(";second"), "{mark}");
    drain_rtp(&session.rtp);
    let (packets, rms, loudest) = audio_rms(&session.rtp, Duration::from_millis(1500));
    assert!(packets > 50, "{packets} packets of the second sentence");
    assert!(
        loudest < 0.002,
        "the second sentence is rendered silent (rms {rms:.4}, loudest packet {loudest:.4})"
    );
    let done = read_until(
        &mut tcp,
        &mut mbuf,
        "SPEAK-COMPLETE",
        Duration::from_secs(15),
    );
    assert!(
        done.contains("000 normal") && done.contains(";second"),
        "{done}"
    );
}
