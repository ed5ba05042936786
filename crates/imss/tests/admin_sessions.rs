//! `GET /api/v1/sessions` and `DELETE /api/v1/sessions/{id}` on the real server, with a
//! plain SIP call and an MRCPv2 session that this test places itself, so every field the API
//! shows can be checked against what the client knows; ending one session sends its client
//! a BYE and stops its audio while the other keeps playing.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::raw::{self, ADMIN_TOKEN, VIEWER_TOKEN, server_with_tokens};
use support::session::{loud_frequency, open_session};
use support::*;

/// `METHOD path` with an optional bearer token; the status code and the body.
fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let a = raw::request(
        addr,
        method,
        path,
        token,
        "application/json",
        None,
        Duration::from_secs(10),
    );
    (a.status, a.text())
}

/// The session list, read with the admin token.
fn sessions(addr: SocketAddr) -> Vec<serde_json::Value> {
    let (code, body) = http(addr, "GET", "/api/v1/sessions", Some(ADMIN_TOKEN));
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("sessions JSON ({e}): {body}"));
    v["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("no sessions array: {body}"))
        .clone()
}

/// The session whose SIP Call-ID is `call_id`.
fn find(list: &[serde_json::Value], call_id: &str) -> serde_json::Value {
    list.iter()
        .find(|s| s["call_id"] == call_id)
        .unwrap_or_else(|| panic!("no session with Call-ID {call_id}: {list:?}"))
        .clone()
}

/// Seconds since the Unix epoch of `YYYY-MM-DDTHH:MM:SSZ`.
fn unix_of(rfc3339: &str) -> u64 {
    let b = rfc3339.as_bytes();
    assert!(
        b.len() == 20 && b[4] == b'-' && b[10] == b'T' && b[19] == b'Z',
        "not RFC 3339 UTC: {rfc3339}"
    );
    let n = |r: std::ops::Range<usize>| -> i64 {
        rfc3339[r]
            .parse()
            .unwrap_or_else(|_| panic!("bad number in {rfc3339}"))
    };
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from civil (H. Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)) as u64
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// The first SIP message on `sock` with Call-ID `call_id` that `want` accepts, within
/// `limit`.
fn wait_sip(
    sock: &UdpSocket,
    call_id: &str,
    limit: Duration,
    want: impl Fn(&str) -> bool,
) -> Option<String> {
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let t = String::from_utf8_lossy(&buf[..n]).to_string();
            if header(&t, "Call-ID") == Some(call_id) && want(&t) {
                return Some(t);
            }
        }
    }
    None
}

/// Waits for the server's BYE of `call_id` on `sock` and answers it 200 OK.
fn expect_bye(sock: &UdpSocket, server: SocketAddr, call_id: &str) {
    let bye = wait_sip(sock, call_id, Duration::from_secs(5), |t| {
        t.starts_with("BYE ")
    })
    .unwrap_or_else(|| panic!("no BYE for {call_id}"));
    let mut ok = String::from("SIP/2.0 200 OK\r\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        for line in bye.lines().filter(|l| {
            l.to_ascii_lowercase()
                .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        }) {
            ok.push_str(line);
            ok.push_str("\r\n");
        }
    }
    ok.push_str("Content-Length: 0\r\n\r\n");
    sock.send_to(ok.as_bytes(), server).expect("200 to BYE");
}

/// G.711 A-law decoding (ITU-T), independent of the server's code.
fn alaw(a: u8) -> i16 {
    let a = a ^ 0x55;
    let mut t = i32::from(a & 0x0f) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => t = (t + 0x108) << (seg - 1),
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

/// The A-law (payload type 8) RTP arriving on `rtp` during `span`: packets, and their
/// frequency by zero crossings.
fn alaw_frequency(rtp: &UdpSocket, span: Duration) -> (usize, f64) {
    rtp.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    let (mut packets, mut crossings, mut samples) = (0usize, 0usize, 0usize);
    let end = Instant::now() + span;
    while Instant::now() < end {
        if let Ok(len) = rtp.recv(&mut buf)
            && len > 12
            && buf[1] & 0x7f == 8
        {
            let s: Vec<i16> = buf[12..len].iter().map(|b| alaw(*b)).collect();
            packets += 1;
            crossings += s.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
            samples += s.len();
        }
    }
    (
        packets,
        crossings as f64 / 2.0 / (samples.max(1) as f64 / 8000.0),
    )
}

/// RTP packets arriving on `rtp` during `span`, after dropping what is already queued.
fn packets_during(rtp: &UdpSocket, span: Duration) -> usize {
    rtp.set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    while rtp.recv(&mut buf).is_ok() {}
    let end = Instant::now() + span;
    let mut n = 0;
    while Instant::now() < end {
        if rtp.recv(&mut buf).is_ok() {
            n += 1;
        }
    }
    n
}

/// A plain SIP call to the live source `source`, offering A-law only.
struct PlainCall {
    sip: UdpSocket,
    rtp: UdpSocket,
    call_id: String,
}

fn plain_call(server: &Server, source: &str) -> PlainCall {
    let sip = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let local = sip.local_addr().expect("addr");
    let rtp_port = free_rtp_port();
    let rtp = UdpSocket::bind(("127.0.0.1", rtp_port)).expect("bind rtp");
    let uri = format!("sip:{source}@{}", server.sip);
    let invite = request(
        "INVITE",
        &uri,
        local,
        "Content-Type: application/sdp\r\n",
        &offer(rtp_port, "8"),
        "plain",
    );
    sip.send_to(invite.as_bytes(), server.sip).expect("INVITE");
    let ok = wait_sip(&sip, "plain@test", Duration::from_secs(5), |t| {
        t.starts_with("SIP/2.0 200")
    })
    .unwrap_or_else(|| panic!("no 200 to the plain INVITE; log:\n{}", server.log()));
    assert!(ok.contains("PCMA/8000"), "A-law answered: {ok}");
    let to = header(&ok, "To").expect("To");
    let ack = request("ACK", &uri, local, "", "", "plain")
        .replace(&format!("To: <{uri}>"), &format!("To: {to}"))
        .replace("branch=z9hG4bK-plain", "branch=z9hG4bK-plain-ack");
    sip.send_to(ack.as_bytes(), server.sip).expect("ACK");
    PlainCall {
        sip,
        rtp,
        call_id: "plain@test".into(),
    }
}

#[test]
fn sessions_are_listed_as_the_clients_see_them_and_end_on_delete() {
    let server = server_with_tokens(
        "[[external_audio]]\nname = \"beep\"\nkind = \"tone\"\nfrequency_hz = 440\n\
         [[external_audio]]\nname = \"hum\"\nkind = \"tone\"\nfrequency_hz = 1000\n",
        |_| {},
    );
    let http_addr = server.http;

    // Credentials first: none is 401, a viewer may read but not end.
    let (code, body) = http(http_addr, "GET", "/api/v1/sessions", None);
    assert_eq!(code, 401, "{body}");
    let (code, body) = http(http_addr, "DELETE", "/api/v1/sessions/call-1", None);
    assert_eq!(code, 401, "{body}");
    assert!(sessions(http_addr).is_empty(), "no session yet");
    // Both routes are in the OpenAPI document.
    let (code, body) = http(http_addr, "GET", "/api/openapi.json", Some(VIEWER_TOKEN));
    assert_eq!(code, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).expect("OpenAPI JSON");
    assert!(
        doc["paths"]["/api/v1/sessions"]["get"].is_object(),
        "{body}"
    );
    assert!(
        doc["paths"]["/api/v1/sessions/{id}"]["delete"].is_object(),
        "{body}"
    );

    let started = now_unix();
    let plain = plain_call(&server, "beep");
    let plain_peer = plain.sip.local_addr().expect("addr").to_string();
    let mut mrcp = open_session(&server);
    let mrcp_peer = mrcp.sip.local_addr().expect("addr").to_string();
    mrcp.speak_uri(1, "", "source:hum");
    let r = mrcp.read_until(" 200 IN-PROGRESS", Duration::from_secs(10));
    assert!(r.contains(" 1 200 IN-PROGRESS"), "{r}");

    // Both hear their source.
    let (n, freq) = alaw_frequency(&plain.rtp, Duration::from_millis(600));
    assert!(n >= 20, "{n} A-law packets on the plain call");
    assert!((freq - 440.0).abs() < 25.0, "plain call at {freq:.1} Hz");
    let (n, freq) = loud_frequency(&mrcp.rtp, Duration::from_millis(600));
    assert!(n >= 20, "{n} loud packets in the MRCPv2 session");
    assert!(
        (freq - 1000.0).abs() < 50.0,
        "MRCPv2 session at {freq:.1} Hz"
    );

    // The list, field by field.
    let first_read = Instant::now();
    let list = sessions(http_addr);
    assert_eq!(list.len(), 2, "{list:?}");
    let p = find(&list, &plain.call_id);
    let m = find(&list, &mrcp.call_id);
    assert_eq!(p["kind"], "sip", "{p}");
    assert_eq!(m["kind"], "mrcp", "{m}");
    assert_eq!(p["peer"], plain_peer.as_str(), "{p}");
    assert_eq!(m["peer"], mrcp_peer.as_str(), "{m}");
    assert!(p["channel"].is_null(), "{p}");
    assert_eq!(m["channel"], mrcp.channel.as_str(), "{m}");
    assert_eq!(p["playing"], "source:beep", "{p}");
    assert_eq!(m["playing"], "source:hum", "{m}");
    assert_eq!(p["codec"], "PCMA", "{p}");
    assert_eq!(m["codec"], "PCMU", "{m}");
    let elapsed = now_unix() - started;
    for s in [&p, &m] {
        let since = unix_of(s["since"].as_str().expect("since"));
        assert!(
            since >= started && since <= now_unix(),
            "since {since} outside [{started}, now]: {s}"
        );
        let seconds = s["seconds"].as_u64().expect("seconds");
        assert!(seconds <= elapsed + 1, "{seconds} s connected: {s}");
        assert!(s["id"].as_str().is_some_and(|id| !id.is_empty()), "{s}");
    }
    assert_ne!(p["id"], m["id"]);
    let p_packets = p["packets"].as_u64().expect("packets");
    let m_packets = m["packets"].as_u64().expect("packets");
    // At least what the clients counted above (600 ms each, 20 ms packets), at most 50 a
    // second since the INVITE.
    assert!(p_packets >= 20, "{p}");
    assert!(m_packets >= 20, "{m}");
    let bound = 50 * (elapsed + 1) + 10;
    assert!(p_packets <= bound && m_packets <= bound, "{p}\n{m}");

    // A viewer reads the same list.
    let (code, body) = http(http_addr, "GET", "/api/v1/sessions", Some(VIEWER_TOKEN));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(&mrcp.call_id), "{body}");

    // Later, the counters and clocks have moved on at the stream's pace.
    std::thread::sleep(Duration::from_millis(2100));
    let list = sessions(http_addr);
    let between = first_read.elapsed().as_secs_f64();
    let p2 = find(&list, &plain.call_id);
    let m2 = find(&list, &mrcp.call_id);
    for (before, after, s) in [(p_packets, &p2, "plain"), (m_packets, &m2, "mrcp")] {
        let now = after["packets"].as_u64().expect("packets");
        let rate = (now - before) as f64 / between;
        assert!(
            (40.0..=60.0).contains(&rate),
            "{s}: {before} then {now} packets over {between:.2} s"
        );
    }
    assert!(
        p2["seconds"].as_u64() >= Some(p["seconds"].as_u64().unwrap_or(0) + 2),
        "{p}\n{p2}"
    );
    assert_eq!(p2["since"], p["since"]);

    // A viewer cannot end a session; unknown ids are 404.
    let plain_id = p["id"].as_str().expect("id").to_string();
    let (code, body) = http(
        http_addr,
        "DELETE",
        &format!("/api/v1/sessions/{plain_id}"),
        Some(VIEWER_TOKEN),
    );
    assert_eq!(code, 403, "{body}");
    let (code, body) = http(
        http_addr,
        "DELETE",
        "/api/v1/sessions/call-999999",
        Some(ADMIN_TOKEN),
    );
    assert_eq!(code, 404, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("error JSON");
    assert_eq!(v["error"], "not_found", "{body}");
    assert_eq!(sessions(http_addr).len(), 2, "nothing ended so far");

    // End the plain call: its client gets a BYE and no more audio; the MRCPv2 session plays on.
    let (code, body) = http(
        http_addr,
        "DELETE",
        &format!("/api/v1/sessions/{plain_id}"),
        Some(ADMIN_TOKEN),
    );
    assert_eq!(code, 204, "{body}");
    expect_bye(&plain.sip, server.sip, &plain.call_id);
    std::thread::sleep(Duration::from_millis(100));
    let after = packets_during(&plain.rtp, Duration::from_millis(800));
    assert_eq!(after, 0, "RTP after the session was ended");
    let (n, freq) = loud_frequency(&mrcp.rtp, Duration::from_millis(800));
    assert!(n >= 30, "the MRCPv2 session went quiet: {n} packets");
    assert!(
        (freq - 1000.0).abs() < 50.0,
        "MRCPv2 session at {freq:.1} Hz"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let list = sessions(http_addr);
        if list.len() == 1 {
            assert_eq!(list[0]["call_id"], mrcp.call_id.as_str(), "{list:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the ended call is still listed: {list:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, body) = http(
        http_addr,
        "DELETE",
        &format!("/api/v1/sessions/{plain_id}"),
        Some(ADMIN_TOKEN),
    );
    assert_eq!(code, 404, "an ended session: {body}");

    // End the MRCPv2 session by its SIP Call-ID: BYE, silence, and its channel is gone.
    let (code, body) = http(
        http_addr,
        "DELETE",
        &format!("/api/v1/sessions/{}", mrcp.call_id),
        Some(ADMIN_TOKEN),
    );
    assert_eq!(code, 204, "{body}");
    expect_bye(&mrcp.sip, server.sip, &mrcp.call_id);
    std::thread::sleep(Duration::from_millis(100));
    let after = packets_during(&mrcp.rtp, Duration::from_millis(800));
    assert_eq!(after, 0, "RTP after the MRCPv2 session was ended");
    mrcp.request("STOP", 2, "");
    let r = mrcp.read_until(" 2 ", Duration::from_secs(10));
    assert!(r.contains(" 2 405 COMPLETE"), "the channel is closed: {r}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sessions(http_addr).is_empty() {
        assert!(
            Instant::now() < deadline,
            "sessions listed after both ended"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
