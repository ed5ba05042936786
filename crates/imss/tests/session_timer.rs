//! SIP session timers (RFC 4028) against the real server, with intervals of a few seconds
//! (`sip.min_se_s = 1`): the caller's refreshes keep a call up, silence ends it with the
//! server's BYE (its RTP stops and its port is freed), too short an interval gets 422, and a
//! caller without timer support is refreshed by the server (UPDATE or re-INVITE).

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use support::mrcp::mrcp_request;
use support::*;

const MOH: &str = "sip.min_se_s = 1\n[[external_audio]]\nname = \"moh\"\nkind = \"tone\"\n";

/// The value of the first header line `name` (case-insensitive, full name only).
fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    msg.split("\r\n")
        .take_while(|l| !l.is_empty())
        .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim())
}

fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// The caller's side of one call over UDP.
struct Caller {
    sock: UdpSocket,
    local: SocketAddr,
    server: SocketAddr,
    uri: String,
    call_id: String,
    to_tag: String,
    contact: String,
    cseq: u32,
    rtp: UdpSocket,
    rtp_port: u16,
    /// The server's RTP port (from its answer).
    server_rtp: u16,
}

impl Caller {
    /// Reads SIP messages until one satisfies `want`, failing with `what` after `limit`.
    /// Requests the test does not wait for are left unanswered.
    fn wait(&self, limit: Duration, what: &str, want: impl Fn(&str) -> bool) -> String {
        let mut buf = vec![0u8; 65536];
        let end = Instant::now() + limit;
        loop {
            assert!(Instant::now() < end, "{what}");
            if let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                let t = String::from_utf8_lossy(&buf[..n]).to_string();
                if want(&t) {
                    return t;
                }
            }
        }
    }

    /// A request in the dialog; an ACK takes the CSeq number of the last INVITE.
    fn in_dialog(&mut self, method: &str, extra: &str, body: &str) -> String {
        if method != "ACK" {
            self.cseq += 1;
        }
        format!(
            "{method} {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{id}-{method}{n}\r\nFrom: <sip:t@{local}>;tag=caller\r\nTo: <{uri}>;tag={to}\r\nCall-ID: {id}\r\nCSeq: {n} {method}\r\nMax-Forwards: 70\r\nContact: <sip:t@{local}>\r\n{extra}Content-Length: {len}\r\n\r\n{body}",
            contact = self.contact,
            local = self.local,
            id = self.call_id,
            n = self.cseq,
            uri = self.uri,
            to = self.to_tag,
            len = body.len()
        )
    }

    /// Sends a request in the dialog and returns its final response.
    fn send(&mut self, method: &str, extra: &str, body: &str) -> String {
        let msg = self.in_dialog(method, extra, body);
        self.sock
            .send_to(msg.as_bytes(), self.server)
            .expect("send");
        let cseq = format!("{} {method}", self.cseq);
        let r = self.wait(
            Duration::from_secs(5),
            &format!("no answer to {method}"),
            |t| t.starts_with("SIP/2.0 ") && !t.starts_with("SIP/2.0 1") && t.contains(&cseq),
        );
        if method == "INVITE" {
            let ack = self.in_dialog("ACK", "", "");
            self.sock.send_to(ack.as_bytes(), self.server).expect("ACK");
        }
        r
    }

    /// Answers a request of the server with `status` (and `extra` lines, `body`).
    fn reply(&self, req: &str, status: u16, extra: &str, body: &str) {
        let mut r = format!("SIP/2.0 {status} Whatever\r\n");
        for line in req.split("\r\n").take_while(|l| !l.is_empty()).skip(1) {
            let lower = line.to_ascii_lowercase();
            if ["via:", "from:", "call-id:", "cseq:"]
                .iter()
                .any(|h| lower.starts_with(h))
            {
                r.push_str(line);
                r.push_str("\r\n");
            } else if lower.starts_with("to:") {
                r.push_str(line);
                if !lower.contains("tag=") {
                    r.push_str(";tag=caller");
                }
                r.push_str("\r\n");
            }
        }
        r.push_str(&format!(
            "Contact: <sip:t@{}>\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            self.local,
            body.len()
        ));
        self.sock.send_to(r.as_bytes(), self.server).expect("reply");
    }

    /// RTP packets arriving during `span`.
    fn rtp_packets(&self, span: Duration) -> usize {
        self.rtp
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let mut buf = [0u8; 2048];
        let end = Instant::now() + span;
        let mut n = 0;
        while Instant::now() < end {
            if let Ok(len) = self.rtp.recv(&mut buf)
                && len > 12
            {
                n += 1;
            }
        }
        n
    }

    /// True once the server's RTP port can be bound again (within `limit`).
    fn server_port_freed(&self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if UdpSocket::bind(("127.0.0.1", self.server_rtp)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

/// Sends an INVITE for `uri` with `extra` header lines and `sdp` (built for the caller's RTP
/// port); returns the caller and the final response. A 2xx is acknowledged.
fn invite(
    server: &Server,
    uri: &str,
    extra: &str,
    sdp: impl Fn(u16) -> String,
) -> (Caller, String) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let local = sock.local_addr().expect("addr");
    let rtp_port = free_rtp_port();
    let rtp = UdpSocket::bind(("127.0.0.1", rtp_port)).expect("bind rtp");
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let call_id = format!(
        "st-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let msg = request(
        "INVITE",
        uri,
        local,
        &format!("Content-Type: application/sdp\r\n{extra}"),
        &sdp(rtp_port),
        "caller",
    )
    .replace("Call-ID: caller@test", &format!("Call-ID: {call_id}"))
    .replace(
        "branch=z9hG4bK-caller",
        &format!("branch=z9hG4bK-{call_id}"),
    );
    sock.send_to(msg.as_bytes(), server.sip).expect("INVITE");
    let mut caller = Caller {
        sock,
        local,
        server: server.sip,
        uri: uri.to_string(),
        call_id,
        to_tag: String::new(),
        contact: String::new(),
        cseq: 1,
        rtp,
        rtp_port,
        server_rtp: 0,
    };
    let id = caller.call_id.clone();
    let r = caller.wait(
        Duration::from_secs(5),
        "no final answer to the INVITE",
        |t| t.starts_with("SIP/2.0 ") && !t.starts_with("SIP/2.0 1") && t.contains(&id),
    );
    if r.starts_with("SIP/2.0 2") {
        caller.to_tag = header(&r, "To")
            .and_then(|t| t.split(";tag=").nth(1))
            .expect("To tag")
            .to_string();
        caller.contact = header(&r, "Contact")
            .and_then(|c| c.split('<').nth(1))
            .and_then(|c| c.split('>').next())
            .expect("Contact")
            .to_string();
        caller.server_rtp = body(&r)
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|l| l.split(' ').next())
            .and_then(|p| p.parse().ok())
            .expect("m=audio port");
    }
    let ack = caller.in_dialog("ACK", "", "");
    caller
        .sock
        .send_to(ack.as_bytes(), server.sip)
        .expect("ACK");
    (caller, r)
}

fn moh_call(server: &Server, extra: &str) -> (Caller, String) {
    let uri = format!("sip:moh@{}", server.sip);
    invite(server, &uri, extra, |port| offer(port, "0 8"))
}

#[test]
fn caller_refreshes_keep_the_call_up_and_silence_ends_it() {
    let server = start_server(MOH, |_| {});
    let (mut caller, ok) = moh_call(&server, "Supported: timer\r\nSession-Expires: 3\r\n");
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert_eq!(header(&ok, "Session-Expires"), Some("3;refresher=uac"));
    assert_eq!(header(&ok, "Require"), Some("timer"));
    assert_eq!(header(&ok, "Supported"), Some("timer"));
    assert!(
        header(&ok, "Allow").is_some_and(|a| a.contains("UPDATE")),
        "{ok}"
    );

    // Five seconds of refreshes every 1.2 s (an UPDATE, then a re-INVITE, …): the 3 s
    // session outlives its interval, the tone keeps playing, no BYE.
    let started = Instant::now();
    let mut last_refresh = Instant::now();
    for i in 0..4 {
        let packets = caller.rtp_packets(Duration::from_millis(1200));
        assert!(packets >= 40, "refresh {i}: RTP flows ({packets} packets)");
        let r = if i % 2 == 0 {
            caller.send(
                "UPDATE",
                "Supported: timer\r\nSession-Expires: 3;refresher=uac\r\n",
                "",
            )
        } else {
            caller.send(
                "INVITE",
                "Content-Type: application/sdp\r\nSupported: timer\r\nSession-Expires: 3\r\n",
                &offer(caller.rtp_port, "0 8"),
            )
        };
        assert!(r.starts_with("SIP/2.0 200"), "refresh {i}: {r}");
        assert_eq!(
            header(&r, "Session-Expires"),
            Some("3;refresher=uac"),
            "{r}"
        );
        last_refresh = Instant::now();
    }
    assert!(
        started.elapsed() > Duration::from_secs(4),
        "longer than the interval"
    );
    assert!(
        UdpSocket::bind(("127.0.0.1", caller.server_rtp)).is_err(),
        "the server holds its RTP port while the call is up"
    );

    // No refresh any more: the server's BYE at 3 − min(32, 1) = 2 s after the last one.
    let bye = caller.wait(
        Duration::from_secs(5),
        "no BYE after the session expired",
        |t| t.starts_with("BYE "),
    );
    let after = last_refresh.elapsed();
    assert!(
        (Duration::from_millis(1700)..Duration::from_millis(3000)).contains(&after),
        "BYE {after:?} after the last refresh"
    );
    assert!(bye.contains(&caller.call_id), "{bye}");
    caller.reply(&bye, 200, "", "");
    let _ = caller.rtp_packets(Duration::from_millis(100));
    assert_eq!(
        caller.rtp_packets(Duration::from_millis(400)),
        0,
        "RTP stops with the BYE"
    );
    assert!(
        caller.server_port_freed(Duration::from_secs(2)),
        "the server's RTP port {} is released",
        caller.server_rtp
    );
}

#[test]
fn an_interval_below_min_se_gets_422() {
    let server = start_server(
        "sip.min_se_s = 2\n[[external_audio]]\nname = \"moh\"\nkind = \"tone\"\n",
        |_| {},
    );
    let (_, r) = moh_call(&server, "Supported: timer\r\nx: 1\r\n");
    assert!(
        r.starts_with("SIP/2.0 422 Session Interval Too Small"),
        "{r}"
    );
    assert_eq!(header(&r, "Min-SE"), Some("2"));
    // The retry with the minimum is answered.
    let (caller, r) = moh_call(
        &server,
        "Supported: timer\r\nSession-Expires: 2\r\nMin-SE: 2\r\n",
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert_eq!(header(&r, "Session-Expires"), Some("2;refresher=uac"));
    // Without Session-Expires the server imposes none: no BYE within 3 s.
    let (plain, r) = moh_call(&server, "Supported: timer\r\n");
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert_eq!(header(&r, "Session-Expires"), None, "{r}");
    assert_eq!(header(&r, "Supported"), Some("timer"));
    let _ = caller.wait(Duration::from_secs(4), "the timed call ends", |t| {
        t.starts_with("BYE ")
    });
    let mut buf = [0u8; 4096];
    plain
        .sock
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < end {
        if let Ok((n, _)) = plain.sock.recv_from(&mut buf) {
            let t = String::from_utf8_lossy(&buf[..n]);
            assert!(!t.starts_with("BYE "), "a call without a timer stays: {t}");
        }
    }
    assert!(plain.rtp_packets(Duration::from_millis(300)) > 5);
}

#[test]
fn the_server_refreshes_a_caller_without_timer_support_by_update() {
    let server = start_server(MOH, |_| {});
    // The caller allows UPDATE; a proxy asked for the timer (no Supported: timer).
    let (caller, ok) = moh_call(
        &server,
        "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE\r\nSession-Expires: 2\r\n",
    );
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert_eq!(header(&ok, "Session-Expires"), Some("2;refresher=uas"));
    assert_eq!(header(&ok, "Require"), None);
    let t0 = Instant::now();
    for i in 0..2 {
        let update = caller.wait(Duration::from_secs(3), "no UPDATE from the server", |t| {
            t.starts_with("UPDATE ")
        });
        let at = t0.elapsed();
        assert!(
            (Duration::from_millis(800 + 1000 * i)..Duration::from_millis(1600 + 1000 * i))
                .contains(&at),
            "refresh {i} at {at:?}: half the 2 s interval after the last"
        );
        assert_eq!(header(&update, "Session-Expires"), Some("2;refresher=uac"));
        assert_eq!(header(&update, "Supported"), Some("timer"));
        assert!(body(&update).is_empty(), "{update}");
        assert!(update.contains(&caller.call_id));
        caller.reply(&update, 200, "", "");
    }
    assert!(
        caller.rtp_packets(Duration::from_millis(300)) > 5,
        "still up"
    );
    // The caller has forgotten the call: 481, and the server ends it.
    let update = caller.wait(Duration::from_secs(3), "no third UPDATE", |t| {
        t.starts_with("UPDATE ")
    });
    caller.reply(&update, 481, "", "");
    let bye = caller.wait(
        Duration::from_secs(2),
        "no BYE after the failed refresh",
        |t| t.starts_with("BYE "),
    );
    caller.reply(&bye, 200, "", "");
    let _ = caller.rtp_packets(Duration::from_millis(100));
    assert_eq!(
        caller.rtp_packets(Duration::from_millis(300)),
        0,
        "RTP stopped"
    );
    assert!(caller.server_port_freed(Duration::from_secs(2)));
}

#[test]
fn the_server_refreshes_by_reinvite_when_update_is_not_allowed() {
    let server = start_server(MOH, |_| {});
    let (mut caller, ok) = moh_call(
        &server,
        "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS\r\nSession-Expires: 2\r\n",
    );
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert_eq!(header(&ok, "Session-Expires"), Some("2;refresher=uas"));
    let version = |sdp: &str| -> u64 {
        sdp.lines()
            .find_map(|l| l.strip_prefix("o="))
            .and_then(|o| o.split(' ').nth(2))
            .and_then(|v| v.parse().ok())
            .expect("o= version")
    };
    let mut previous = body(&ok).to_string();
    for _ in 0..2 {
        let reinvite = caller.wait(
            Duration::from_secs(3),
            "no re-INVITE from the server",
            |t| t.starts_with("INVITE "),
        );
        assert_eq!(
            header(&reinvite, "Session-Expires"),
            Some("2;refresher=uac")
        );
        let sdp = body(&reinvite);
        assert_eq!(version(sdp), version(&previous) + 1, "{sdp}");
        assert_eq!(
            sdp.lines()
                .filter(|l| !l.starts_with("o="))
                .collect::<Vec<_>>(),
            previous
                .lines()
                .filter(|l| !l.starts_with("o="))
                .collect::<Vec<_>>(),
            "the same session, re-offered"
        );
        previous = sdp.to_string();
        caller.reply(
            &reinvite,
            200,
            "Content-Type: application/sdp\r\n",
            &offer(caller.rtp_port, "0"),
        );
        let ack = caller.wait(Duration::from_secs(2), "no ACK for the 200", |t| {
            t.starts_with("ACK ")
        });
        assert_eq!(
            header(&ack, "CSeq").and_then(|c| c.split(' ').next()),
            header(&reinvite, "CSeq").and_then(|c| c.split(' ').next())
        );
    }
    assert!(
        caller.rtp_packets(Duration::from_millis(300)) > 5,
        "still up"
    );
    // A later re-INVITE of the caller answers with the next version.
    let r = caller.send(
        "INVITE",
        "Content-Type: application/sdp\r\n",
        &offer(caller.rtp_port, "0 8"),
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert_eq!(version(body(&r)), version(&previous) + 1);
    let r = caller.send("BYE", "", "");
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
}

/// The umc-style MRCPv2 offer for the caller's RTP port.
fn mrcp_offer(port: u16) -> String {
    format!(
        "v=0\r\no=client 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=application 9 TCP/MRCPv2 1\r\na=setup:active\r\na=connection:new\r\na=resource:speechsynth\r\na=cmid:1\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=recvonly\r\na=mid:1\r\n"
    )
}

#[test]
fn an_mrcp_session_without_refresh_ends_and_its_channel_goes() {
    use std::io::{Read, Write};
    let server = start_server("sip.min_se_s = 1", |audio| {
        write_wav(&audio.join("long.wav"), 8000, &tone(8000, 10.0))
    });
    let uri = format!("sip:imss@{}", server.sip);
    let (caller, ok) = invite(
        &server,
        &uri,
        "Supported: timer\r\nSession-Expires: 3\r\n",
        mrcp_offer,
    );
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert_eq!(header(&ok, "Session-Expires"), Some("3;refresher=uac"));
    let channel = body(&ok)
        .lines()
        .find_map(|l| l.strip_prefix("a=channel:"))
        .expect("a=channel")
        .trim()
        .to_string();
    let mut tcp = std::net::TcpStream::connect(server.mrcp).expect("MRCP connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    tcp.write_all(&mrcp_request(
        &channel,
        "SPEAK",
        1,
        "Content-Type: text/uri-list\r\n",
        "long.wav\r\n",
    ))
    .expect("SPEAK");
    let mut buf = [0u8; 4096];
    let n = tcp.read(&mut buf).expect("IN-PROGRESS");
    let r = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(r.contains(" 1 200 IN-PROGRESS"), "{r}");
    assert!(
        caller.rtp_packets(Duration::from_millis(500)) > 15,
        "the tone plays"
    );

    let bye = caller.wait(
        Duration::from_secs(4),
        "no BYE for the expired session",
        |t| t.starts_with("BYE "),
    );
    caller.reply(&bye, 200, "", "");
    let _ = caller.rtp_packets(Duration::from_millis(100));
    assert_eq!(
        caller.rtp_packets(Duration::from_millis(300)),
        0,
        "RTP stopped"
    );
    assert!(caller.server_port_freed(Duration::from_secs(2)));
    // The channel went with the session.
    tcp.write_all(&mrcp_request(&channel, "STOP", 2, "", ""))
        .expect("STOP");
    let mut got = String::new();
    let end = Instant::now() + Duration::from_secs(5);
    while !got.contains(" 2 ") && Instant::now() < end {
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(
        got.contains(" 2 405 COMPLETE"),
        "the channel is gone: {got:?}"
    );
}
