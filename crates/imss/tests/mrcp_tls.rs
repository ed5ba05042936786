//! MRCPv2 control channels over TLS (`TCP/TLS/MRCPv2`) against the real server: a
//! self-signed certificate made here, a rustls client trusting it, SPEAK with
//! SPEAK-COMPLETE and its audio checked by content; a plain client on the TLS port is
//! dropped without disturbing the session, and the TLS channel is not controllable in clear.

mod support;

use rustls_pki_types::CertificateDer;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::mrcp::{mrcp_request, read_until};
use support::session::ulaw;
use support::*;
use tokio_rustls::rustls;

/// Seconds of the 1 kHz tone the sessions SPEAK.
const TONE_SECONDS: f64 = 2.0;

/// A self-signed certificate for localhost / 127.0.0.1: PEM files in `dir`, and its DER.
fn certificate(
    dir: &Path,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    CertificateDer<'static>,
) {
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("rcgen");
    let cert = dir.join("mrcp-cert.pem");
    let key = dir.join("mrcp-key.pem");
    std::fs::write(&cert, pair.cert.pem()).expect("write cert");
    std::fs::write(&key, pair.key_pair.serialize_pem()).expect("write key");
    (cert, key, pair.cert.der().clone())
}

fn tls_server(certs: &tempfile::TempDir) -> (Server, CertificateDer<'static>) {
    let (cert, key, der) = certificate(certs.path());
    let server = start_server(
        &format!(
            "mrcp.tls_port = 0\nmrcp.tls_cert = \"{}\"\nmrcp.tls_key = \"{}\"",
            cert.display(),
            key.display()
        ),
        |audio| write_wav(&audio.join("tone.wav"), 8000, &tone(8000, TONE_SECONDS)),
    );
    (server, der)
}

/// An MRCPv2 offer with one speechsynth channel over `proto`, audio to `rtp_port`.
fn offer_mrcp(proto: &str, rtp_port: u16) -> String {
    format!(
        "v=0\r\no=client 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=application 9 {proto} 1\r\na=setup:active\r\na=connection:new\r\na=resource:speechsynth\r\na=cmid:1\r\nm=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=recvonly\r\na=mid:1\r\n"
    )
}

/// A session: the SIP socket, the RTP socket, and the granted control line.
struct Session {
    _sip: UdpSocket,
    rtp: UdpSocket,
    channel: String,
    proto: String,
    control: SocketAddr,
}

fn open_session(server: &Server, proto: &str, call_id: &str) -> Session {
    let sip = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sip.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let me = sip.local_addr().expect("addr");
    let rtp_port = free_rtp_port();
    let rtp = UdpSocket::bind(("127.0.0.1", rtp_port)).expect("bind rtp");
    let uri = format!("sip:imss@{}", server.sip);
    let invite = request(
        "INVITE",
        &uri,
        me,
        "Content-Type: application/sdp\r\n",
        &offer_mrcp(proto, rtp_port),
        call_id,
    );
    sip.send_to(invite.as_bytes(), server.sip).expect("INVITE");
    let mut buf = vec![0u8; 65536];
    let end = Instant::now() + Duration::from_secs(5);
    let ok = loop {
        assert!(Instant::now() < end, "no answer; log:\n{}", server.log());
        if let Ok((n, _)) = sip.recv_from(&mut buf) {
            let t = String::from_utf8_lossy(&buf[..n]).to_string();
            if t.starts_with("SIP/2.0 1") || !t.contains(call_id) {
                continue;
            }
            break t;
        }
    };
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let line = ok
        .lines()
        .find(|l| l.starts_with("m=application "))
        .expect("m=application")
        .to_string();
    let mut parts = line.split(' ');
    let port: u16 = parts.nth(1).and_then(|p| p.parse().ok()).expect("port");
    let answered_proto = parts.next().expect("proto").to_string();
    let channel = ok
        .lines()
        .find_map(|l| l.strip_prefix("a=channel:"))
        .expect("a=channel")
        .trim()
        .to_string();
    let to_tag = ok
        .lines()
        .find(|l| l.starts_with("To:"))
        .and_then(|l| l.split(";tag=").nth(1))
        .expect("To tag")
        .trim()
        .to_string();
    let ack = request("ACK", &uri, me, "", "", call_id)
        .replace(
            &format!("To: <{uri}>"),
            &format!("To: <{uri}>;tag={to_tag}"),
        )
        .replace(
            &format!("branch=z9hG4bK-{call_id}"),
            &format!("branch=z9hG4bK-{call_id}-ack"),
        );
    sip.send_to(ack.as_bytes(), server.sip).expect("ACK");
    Session {
        _sip: sip,
        rtp,
        channel,
        proto: answered_proto,
        control: SocketAddr::from(([127, 0, 0, 1], port)),
    }
}

/// A TLS client connection trusting only `cert`.
fn connect_tls(
    addr: SocketAddr,
    cert: &CertificateDer<'_>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(cert.clone().into_owned())
        .expect("trust the test certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let tcp = TcpStream::connect(addr).expect("connect to the TLS port");
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    rustls::StreamOwned::new(conn, tcp)
}

fn speak(channel: &str, request_id: u32) -> Vec<u8> {
    mrcp_request(
        channel,
        "SPEAK",
        request_id,
        "Content-Type: text/uri-list\r\n",
        "tone.wav\r\n",
    )
}

/// Decoded audio and arrival times of the RTP received on `rtp` for `span`, on a thread.
fn record(rtp: UdpSocket, span: Duration) -> std::thread::JoinHandle<(Vec<f32>, Vec<Instant>)> {
    std::thread::spawn(move || {
        rtp.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let (mut samples, mut arrivals) = (Vec::new(), Vec::new());
        let mut buf = [0u8; 2048];
        let end = Instant::now() + span;
        while Instant::now() < end {
            if let Ok(n) = rtp.recv(&mut buf)
                && n > 12
                && buf[1] & 0x7f == 0
            {
                samples.extend(buf[12..n].iter().map(|b| f32::from(ulaw(*b)) / 32768.0));
                arrivals.push(Instant::now());
            }
        }
        (samples, arrivals)
    })
}

/// The part of a recording that is not silence.
fn sounding(samples: &[f32]) -> &[f32] {
    let loud = |x: &f32| x.abs() > 0.01;
    let first = samples.iter().position(loud).unwrap_or(0);
    let last = samples.iter().rposition(loud).map_or(first, |l| l + 1);
    &samples[first..last]
}

#[test]
fn speak_over_tls_and_a_plain_client_on_the_tls_port_is_dropped() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (server, cert) = tls_server(&certs);

    // A plain offer on the same server keeps the plain port.
    let plain = open_session(&server, "TCP/MRCPv2", "plain-session");
    assert_eq!(plain.proto, "TCP/MRCPv2");
    assert_eq!(plain.control, server.mrcp);

    let session = open_session(&server, "TCP/TLS/MRCPv2", "tls-session");
    assert_eq!(session.proto, "TCP/TLS/MRCPv2");
    assert_ne!(
        session.control.port(),
        server.mrcp.port(),
        "a port of its own"
    );
    assert!(session.channel.ends_with("@speechsynth"));

    let recording = record(
        session.rtp.try_clone().expect("clone"),
        Duration::from_secs_f64(TONE_SECONDS + 1.5),
    );
    let mut tls = connect_tls(session.control, &cert);
    tls.write_all(&speak(&session.channel, 1)).expect("SPEAK");
    let mut mbuf = Vec::new();
    let r = read_until(&mut tls, &mut mbuf, " 1 ", Duration::from_secs(10));
    assert!(r.contains(" 1 200 IN-PROGRESS"), "{r}");

    // Meanwhile a client speaks plain MRCP to the TLS port: the handshake fails and the
    // connection is dropped.
    let mut clear = TcpStream::connect(session.control).expect("connect");
    clear
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    clear
        .write_all(&speak(&session.channel, 7))
        .expect("plain SPEAK");
    let mut junk = [0u8; 4096];
    let dropped = loop {
        match clear.read(&mut junk) {
            Ok(0) => break true,
            // A TLS alert may come first; what matters is that the connection ends.
            Ok(n) => assert!(
                !String::from_utf8_lossy(&junk[..n]).contains("MRCP/2.0"),
                "no MRCP answer in clear"
            ),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    assert!(dropped, "the plain client is dropped");

    // The TLS channel cannot be driven through the plain port either.
    let mut sneaky = TcpStream::connect(server.mrcp).expect("connect plain port");
    sneaky
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    sneaky
        .write_all(&mrcp_request(&session.channel, "STOP", 8, "", ""))
        .expect("STOP in clear");
    let mut sbuf = Vec::new();
    let r = read_until(&mut sneaky, &mut sbuf, " 8 ", Duration::from_secs(5));
    assert!(r.contains(" 8 405 COMPLETE"), "{r}");

    // The session played on: SPEAK-COMPLETE 000, and the tone arrived whole.
    let done = read_until(
        &mut tls,
        &mut mbuf,
        "SPEAK-COMPLETE",
        Duration::from_secs(10),
    );
    assert!(
        done.contains("SPEAK-COMPLETE 1 COMPLETE") && done.contains("Completion-Cause: 000 normal"),
        "{done}"
    );
    let (samples, arrivals) = recording.join().expect("recorder");
    let got = sounding(&samples);
    let seconds = got.len() as f64 / 8000.0;
    assert!(
        (seconds - TONE_SECONDS).abs() < 0.05,
        "{seconds:.3} s of tone, expected {TONE_SECONDS}"
    );
    let reference = tone(8000, TONE_SECONDS);
    let (_, snr) = snr_db(&reference, got, 80, 160);
    assert!(snr > 30.0, "the tone through G.711: SNR {snr:.1} dB");
    let gaps = arrivals
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    assert!(
        gaps < Duration::from_millis(150),
        "no gap in the RTP while the plain client was dropped ({gaps:?})"
    );

    // The plain session works on its own port.
    let mut tcp = TcpStream::connect(plain.control).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    tcp.write_all(&speak(&plain.channel, 1)).expect("SPEAK");
    let mut pbuf = Vec::new();
    let r = read_until(&mut tcp, &mut pbuf, " 1 ", Duration::from_secs(10));
    assert!(r.contains(" 1 200 IN-PROGRESS"), "{r}");
}

#[test]
fn a_tls_client_that_never_handshakes_does_not_hold_up_others() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (server, cert) = tls_server(&certs);
    let session = open_session(&server, "TCP/TLS/MRCPv2", "tls-idle");
    // Connected, silent: the handshake is pending on its own task.
    let mut idle = TcpStream::connect(session.control).expect("connect");
    let started = Instant::now();
    let mut tls = connect_tls(session.control, &cert);
    tls.write_all(&speak(&session.channel, 1)).expect("SPEAK");
    let mut mbuf = Vec::new();
    let r = read_until(&mut tls, &mut mbuf, " 1 ", Duration::from_secs(5));
    assert!(r.contains(" 1 200 IN-PROGRESS"), "{r}");
    // A client that does not trust the server's certificate fails its handshake; the
    // session still completes.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("rcgen");
    let mut untrusting = connect_tls(session.control, other.cert.der());
    let e = untrusting
        .write_all(b"x")
        .and_then(|()| untrusting.flush())
        .expect_err("the handshake fails");
    assert!(e.to_string().contains("certificate"), "{e}");
    let done = read_until(
        &mut tls,
        &mut mbuf,
        "SPEAK-COMPLETE",
        Duration::from_secs(10),
    );
    assert!(done.contains("000 normal"), "{done}");
    // The silent connection is closed once the handshake time (10 s) is up.
    idle.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let mut b = [0u8; 16];
    let closed_at = loop {
        match idle.read(&mut b) {
            Ok(0) => break started.elapsed(),
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break started.elapsed(),
            Err(e) => panic!("the idle connection stays open: {e}"),
        }
    };
    assert!(
        (Duration::from_secs(9)..Duration::from_secs(14)).contains(&closed_at),
        "closed after {closed_at:?}"
    );
}

#[test]
fn options_lists_the_tls_control_transport() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (server, _) = tls_server(&certs);
    let sip = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sip.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let me = sip.local_addr().expect("addr");
    let options = request(
        "OPTIONS",
        &format!("sip:{}", server.sip),
        me,
        "Accept: application/sdp\r\n",
        "",
        "tls-options",
    );
    sip.send_to(options.as_bytes(), server.sip)
        .expect("OPTIONS");
    let mut buf = vec![0u8; 65536];
    let (n, _) = sip.recv_from(&mut buf).expect("OPTIONS answered");
    let r = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(r.contains("m=application 0 TCP/MRCPv2 1"), "{r}");
    assert!(r.contains("m=application 0 TCP/TLS/MRCPv2 1"), "{r}");
}
