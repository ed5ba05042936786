//! `sip.trusted_networks` on the real server: a client outside the list gets 403 over UDP
//! and TCP and its MRCPv2 connection is closed, without the server starting anything for
//! it; once a reload (SIGHUP) lists the client, the same client gets a call with audio.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};
use support::api::reload;
use support::session::loud_frequency;
use support::*;

/// The first final response to `method` on `sock` whose Call-ID is `call_id`, or `None`
/// after `limit`.
fn final_response(
    sock: &UdpSocket,
    call_id: &str,
    method: &str,
    limit: Duration,
) -> Option<String> {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let t = String::from_utf8_lossy(&buf[..n]).to_string();
            if t.starts_with("SIP/2.0 ")
                && !t.starts_with("SIP/2.0 1")
                && header(&t, "Call-ID") == Some(call_id)
                && header(&t, "CSeq").is_some_and(|c| c.ends_with(method))
            {
                return Some(t);
            }
        }
    }
    None
}

/// Whether the server closes a fresh MRCPv2 connection within `limit` (EOF or reset).
fn mrcp_closed_by_server(addr: SocketAddr, limit: Duration) -> bool {
    let mut tcp = TcpStream::connect(addr).expect("MRCP connect");
    tcp.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        match tcp.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn untrusted_clients_are_refused_until_a_reload_trusts_them() {
    let server = start_server(
        "sip.trusted_networks = [\"127.0.0.2/32\"]\n\
         [[external_audio]]\nname = \"beep\"\nkind = \"tone\"\nfrequency_hz = 440\n",
        |_| {},
    );
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let local = sock.local_addr().expect("addr");
    let uri = format!("sip:beep@{}", server.sip);
    let rtp_port = free_rtp_port();
    let rtp = UdpSocket::bind(("127.0.0.1", rtp_port)).expect("bind rtp");

    // Outside the list: 403 naming the address, no call and no media.
    let invite = request(
        "INVITE",
        &uri,
        local,
        "Content-Type: application/sdp\r\n",
        &offer(rtp_port, "0"),
        "refused1",
    );
    sock.send_to(invite.as_bytes(), server.sip).expect("INVITE");
    let r = final_response(&sock, "refused1@test", "INVITE", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no answer to the INVITE; log:\n{}", server.log()));
    assert!(r.starts_with("SIP/2.0 403 "), "{r}");
    let warning = header(&r, "Warning").unwrap_or_default();
    assert!(
        warning.contains("127.0.0.1 is not in sip.trusted_networks"),
        "{r}"
    );
    assert!(header(&r, "To").is_some_and(|t| t.contains(";tag=")), "{r}");
    let options = request("OPTIONS", &uri, local, "", "", "refused2");
    sock.send_to(options.as_bytes(), server.sip)
        .expect("OPTIONS");
    let r = final_response(&sock, "refused2@test", "OPTIONS", Duration::from_secs(5))
        .expect("OPTIONS answer");
    assert!(r.starts_with("SIP/2.0 403 "), "{r}");
    // An ACK is not answered.
    let ack = request("ACK", &uri, local, "", "", "refused3");
    sock.send_to(ack.as_bytes(), server.sip).expect("ACK");
    assert!(
        final_response(&sock, "refused3@test", "ACK", Duration::from_millis(400)).is_none(),
        "an ACK from outside got an answer"
    );
    // Over TCP too.
    let mut tcp = TcpStream::connect(server.sip).expect("SIP/TCP connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let tcp_local = tcp.local_addr().expect("addr");
    let over_tcp = request("OPTIONS", &uri, tcp_local, "", "", "refused4")
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    tcp.write_all(over_tcp.as_bytes()).expect("send");
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let n = tcp.read(&mut chunk).expect("the 403 over TCP");
        assert!(n > 0, "connection closed without an answer");
        got.extend_from_slice(&chunk[..n]);
    }
    let r = String::from_utf8_lossy(&got).to_string();
    assert!(
        r.starts_with("SIP/2.0 403 ") && r.contains("refused4@test"),
        "{r}"
    );
    drop(tcp);
    // Nothing was started for the refused INVITE.
    rtp.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    assert!(rtp.recv(&mut buf).is_err(), "RTP for a refused call");
    assert!(
        !server.log().contains("answered"),
        "a refused INVITE was answered:\n{}",
        server.log()
    );

    // MRCPv2 control connections from outside are closed at once, with one warning.
    assert!(
        mrcp_closed_by_server(server.mrcp, Duration::from_secs(3)),
        "the untrusted MRCPv2 connection stayed open"
    );
    let log = server.log();
    assert_eq!(
        log.matches("MRCPv2 connection from outside sip.trusted_networks closed")
            .count(),
        1,
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("outside sip.trusted_networks") && l.contains("127.0.0.1:")),
        "the warning names the peer:\n{log}"
    );

    // List 127.0.0.1 and reload: the same client is served.
    let path = server.dir.path().join("imss.toml");
    let text = std::fs::read_to_string(&path).expect("read config");
    let trusted = text.replace(
        "trusted_networks = [\"127.0.0.2/32\"]",
        "trusted_networks = [\"127.0.0.2/32\", \"127.0.0.1/32\"]",
    );
    assert_ne!(trusted, text, "the config file holds the list");
    std::fs::write(&path, trusted).expect("write config");
    reload(&server);

    let invite = request(
        "INVITE",
        &uri,
        local,
        "Content-Type: application/sdp\r\n",
        &offer(rtp_port, "0"),
        "trusted1",
    );
    sock.send_to(invite.as_bytes(), server.sip).expect("INVITE");
    let ok = final_response(&sock, "trusted1@test", "INVITE", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no answer after the reload; log:\n{}", server.log()));
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let to = header(&ok, "To").expect("To").to_string();
    let ack = request("ACK", &uri, local, "", "", "trusted1")
        .replace(&format!("To: <{uri}>"), &format!("To: {to}"))
        .replace("branch=z9hG4bK-trusted1", "branch=z9hG4bK-trusted1-ack");
    sock.send_to(ack.as_bytes(), server.sip).expect("ACK");
    let (packets, freq) = loud_frequency(&rtp, Duration::from_secs(1));
    assert!(
        packets >= 40,
        "{packets} loud packets in 1 s after the reload"
    );
    assert!((freq - 440.0).abs() < 15.0, "the tone is at {freq:.1} Hz");
    let bye = request("BYE", &uri, local, "", "", "trusted1")
        .replace(&format!("To: <{uri}>"), &format!("To: {to}"))
        .replace("CSeq: 1 BYE", "CSeq: 2 BYE")
        .replace("branch=z9hG4bK-trusted1", "branch=z9hG4bK-trusted1-bye");
    sock.send_to(bye.as_bytes(), server.sip).expect("BYE");
    let r =
        final_response(&sock, "trusted1@test", "BYE", Duration::from_secs(5)).expect("BYE answer");
    assert!(r.starts_with("SIP/2.0 200"), "{r}");

    // Its MRCPv2 connections now stay open.
    assert!(
        !mrcp_closed_by_server(server.mrcp, Duration::from_millis(700)),
        "a trusted MRCPv2 connection was closed"
    );
}
