//! Bad input over SIP gets a specific 4xx (or is dropped when unreadable) while a call in
//! progress keeps its audio; bad files and paths get their status codes.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};
use support::*;

/// Sends one datagram and returns the first final (non-1xx) response's status line.
fn udp_final(sock: &UdpSocket, server: SocketAddr, msg: &[u8]) -> Option<String> {
    sock.set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");
    sock.send_to(msg, server).expect("send");
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            return None;
        };
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        let line = text.lines().next().unwrap_or_default().to_string();
        if !line.starts_with("SIP/2.0 1") {
            return Some(text);
        }
    }
    None
}

fn status(resp: &Option<String>) -> u16 {
    resp.as_deref()
        .and_then(|r| r.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn malformed_sip_gets_specific_errors_while_a_call_keeps_its_audio() {
    let mut server = start_server(
        "[[external_audio]]\nname = \"moh\"\nkind = \"tone\"\nfrequency_hz = 1000\n",
        |_| {},
    );
    // A caller on hold, received by ffmpeg, for the whole test.
    let rtp = free_rtp_port();
    let rx = FfmpegReceiver::start(server.dir.path(), rtp, 0);
    std::thread::sleep(Duration::from_millis(700));
    let caller = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let local = caller.local_addr().expect("addr");
    let uri = format!("sip:moh@{}", server.sip);
    let invite = request(
        "INVITE",
        &uri,
        local,
        "Content-Type: application/sdp\r\n",
        &offer(rtp, "0"),
        "hold1",
    );
    caller
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    caller.send_to(invite.as_bytes(), server.sip).expect("send");
    let mut buf = vec![0u8; 65536];
    let mut answered = String::new();
    while let Ok((n, _)) = caller.recv_from(&mut buf) {
        let t = String::from_utf8_lossy(&buf[..n]).to_string();
        if t.starts_with("SIP/2.0 200") {
            answered = t;
            break;
        }
    }
    assert!(answered.starts_with("SIP/2.0 200"), "call on hold answered");
    let started = Instant::now();

    let s = server.sip;
    let probe = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let me = probe.local_addr().expect("addr");
    // Bad Content-Length (claims more than was sent).
    let bad_len = request("OPTIONS", &uri, me, "", "", "badlen")
        .replace("Content-Length: 0", "Content-Length: 50");
    let r = udp_final(&probe, s, bad_len.as_bytes());
    assert_eq!(status(&r), 400, "bad Content-Length: {r:?}");
    assert!(
        r.as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase()
            .contains("content-length"),
        "reason names the problem: {r:?}"
    );
    // Missing Call-ID: unreadable for a response that matches → 400 or dropped, never 2xx.
    let no_callid =
        request("OPTIONS", &uri, me, "", "", "nocid").replace("Call-ID: nocid@test\r\n", "");
    let r = udp_final(&probe, s, no_callid.as_bytes());
    assert!(r.is_none() || status(&r) == 400, "missing Call-ID: {r:?}");
    // Truncated in the middle of the headers.
    let full = request("INVITE", &uri, me, "", "", "trunc");
    let r = udp_final(&probe, s, &full.as_bytes()[..full.len() / 2]);
    assert!(r.is_none() || status(&r) == 400, "truncated: {r:?}");
    // Binary junk: dropped.
    let junk: Vec<u8> = (0..1400u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert_eq!(
        udp_final(&probe, s, &junk),
        None,
        "junk is dropped silently"
    );
    // 10,000 headers over TCP.
    let many: String = (0..10_000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let huge_headers = request("OPTIONS", &uri, me, &many, "", "many");
    let r = tcp_exchange(server.sip, huge_headers.as_bytes());
    assert!(
        r.is_empty() || r.starts_with("SIP/2.0 4"),
        "10,000 headers: {}",
        &r[..r.len().min(200)]
    );
    // A 1 MB body over TCP.
    let body = "a".repeat(1 << 20);
    let big = request(
        "INVITE",
        &uri,
        me,
        "Content-Type: application/sdp\r\n",
        &body,
        "big",
    );
    let r = tcp_exchange(server.sip, big.as_bytes());
    assert!(
        r.is_empty() || r.starts_with("SIP/2.0 4"),
        "1 MB body: {}",
        &r[..r.len().min(200)]
    );
    // Unknown method → 405 with Allow.
    let r = udp_final(
        &probe,
        s,
        request("FROB", &uri, me, "", "", "frob").as_bytes(),
    );
    assert_eq!(status(&r), 405, "unknown method: {r:?}");
    assert!(
        r.as_deref().unwrap_or_default().contains("Allow:"),
        "405 carries Allow"
    );
    // BYE for a dialog that does not exist → 481.
    let r = udp_final(
        &probe,
        s,
        request("BYE", &uri, me, "", "", "nodialog")
            .replace(&format!("To: <{uri}>"), &format!("To: <{uri}>;tag=nope"))
            .as_bytes(),
    );
    assert_eq!(status(&r), 481, "unknown dialog: {r:?}");
    // Max-Forwards: 0 → 483.
    let r = udp_final(
        &probe,
        s,
        request("OPTIONS", &uri, me, "", "", "mf")
            .replace("Max-Forwards: 70", "Max-Forwards: 0")
            .as_bytes(),
    );
    assert_eq!(status(&r), 483, "Max-Forwards 0: {r:?}");
    // Neither PCMU nor PCMA → 488 with a Warning.
    let g722 = request(
        "INVITE",
        &uri,
        me,
        "Content-Type: application/sdp\r\n",
        &offer(40000, "9"),
        "g722",
    );
    let r = udp_final(&probe, s, g722.as_bytes());
    assert_eq!(status(&r), 488, "no common codec: {r:?}");
    assert!(
        r.as_deref().unwrap_or_default().contains("Warning:"),
        "488 carries a Warning: {r:?}"
    );
    // Unknown source → 404; missing file → 404; escaping the root → 403.
    let r = udp_final(
        &probe,
        s,
        request(
            "INVITE",
            &format!("sip:nosuch@{}", s),
            me,
            "Content-Type: application/sdp\r\n",
            &offer(40002, "0"),
            "nosrc",
        )
        .as_bytes(),
    );
    assert_eq!(status(&r), 404, "unknown source: {r:?}");
    let r = udp_final(
        &probe,
        s,
        request(
            "INVITE",
            &format!("sip:annc@{};play=missing.wav", s),
            me,
            "Content-Type: application/sdp\r\n",
            &offer(40004, "0"),
            "nofile",
        )
        .as_bytes(),
    );
    assert_eq!(status(&r), 404, "missing file: {r:?}");
    let r = udp_final(
        &probe,
        s,
        request(
            "INVITE",
            &format!("sip:annc@{};play=../imss.toml", s),
            me,
            "Content-Type: application/sdp\r\n",
            &offer(40006, "0"),
            "escape",
        )
        .as_bytes(),
    );
    assert_eq!(status(&r), 403, "path escaping the root: {r:?}");

    // The call on hold still runs: hang it up after at least 3 s and check its audio.
    let held = started.elapsed().max(Duration::from_secs(3));
    std::thread::sleep(Duration::from_secs(3).saturating_sub(started.elapsed()));
    let to_tag = answered
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("to:"))
        .and_then(|l| l.split(";tag=").nth(1))
        .expect("To tag")
        .trim()
        .to_string();
    let contact = answered
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("contact:"))
        .and_then(|l| l.split('<').nth(1))
        .and_then(|l| l.split('>').next())
        .expect("Contact")
        .to_string();
    let bye = format!(
        "BYE {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-bye1\r\nFrom: <sip:t@{local}>;tag=hold1\r\nTo: <{uri}>;tag={to_tag}\r\nCall-ID: hold1@test\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    caller
        .send_to(bye.as_bytes(), server.sip)
        .expect("send BYE");
    let mut got_200 = false;
    while let Ok((n, _)) = caller.recv_from(&mut buf) {
        if String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200") {
            got_200 = true;
            break;
        }
    }
    assert!(got_200, "BYE answered 200");
    std::thread::sleep(Duration::from_millis(300));
    let (_, audio) = read_wav(&rx.finish());
    let seconds = audio.len() as f64 / 8000.0;
    assert!(
        // ffmpeg keeps up to a few hundred ms in its RTP reorder queue when stopped.
        seconds >= held.as_secs_f64() - 0.6,
        "held call kept its audio: {seconds:.2} s of {held:?}"
    );
    // Every 100 ms window carries the tone: no silent gap while the junk arrived.
    for (i, w) in audio.chunks(800).enumerate().take(audio.len() / 800 - 1) {
        let rms = (w.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
        assert!(rms > 0.05, "window {i} is silent (rms {rms:.4})");
    }
    assert!(server.alive(), "server survived; log:\n{}", server.log());
}

/// Writes `msg` on a new TCP connection and returns whatever comes back before the server
/// closes or 3 s pass.
fn tcp_exchange(server: SocketAddr, msg: &[u8]) -> String {
    let mut s = TcpStream::connect(server).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let _ = s.write_all(msg);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

#[test]
fn options_lists_capabilities() {
    let server = start_server("", |_| {});
    let me = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let local = me.local_addr().expect("addr");
    let opt = request(
        "OPTIONS",
        &format!("sip:{}", server.sip),
        local,
        "Accept: application/sdp\r\n",
        "",
        "opt1",
    );
    let r = udp_final(&me, server.sip, opt.as_bytes()).expect("OPTIONS answered");
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(
        r.contains("PCMU/8000") && r.contains("PCMA/8000"),
        "capabilities list both laws: {r}"
    );
    assert!(r.contains("Allow:") && r.contains("INVITE"), "{r}");
    // RFC 6787 §7: the MRCPv2 resources on offer.
    assert!(
        r.contains("a=resource:speechsynth") && r.contains("TCP/MRCPv2"),
        "{r}"
    );
}
