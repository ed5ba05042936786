//! re-INVITE on a music-on-hold call: hold stops the RTP, a new address and ptime resume it
//! there with the same SSRC and continuing sequence numbers.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use support::*;

struct Dialog {
    sock: UdpSocket,
    local: SocketAddr,
    server: SocketAddr,
    uri: String,
    to_tag: String,
    contact: String,
    cseq: u32,
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        })
        .map(|l| l[name.len() + 1..].trim())
}

/// Reads until a final response to `method` arrives.
fn final_response(sock: &UdpSocket, method: &str) -> String {
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let t = String::from_utf8_lossy(&buf[..n]).to_string();
            if t.starts_with("SIP/2.0 1")
                || !header(&t, "CSeq").is_some_and(|c| c.ends_with(method))
            {
                continue;
            }
            return t;
        }
    }
    panic!("no final response to {method}");
}

impl Dialog {
    /// A request in this dialog; an ACK takes the CSeq number of its INVITE.
    fn in_dialog(&mut self, method: &str, extra: &str, body: &str) -> String {
        if method != "ACK" {
            self.cseq += 1;
        }
        let cseq = self.cseq;
        let local = self.local;
        format!(
            "{method} {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{method}{n}\r\nFrom: <sip:t@{local}>;tag=caller\r\nTo: <{uri}>;tag={to}\r\nCall-ID: reinvite@test\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContact: <sip:t@{local}>\r\n{extra}Content-Length: {len}\r\n\r\n{body}",
            contact = self.contact,
            n = self.cseq,
            uri = self.uri,
            to = self.to_tag,
            len = body.len()
        )
    }

    fn reinvite(&mut self, sdp: &str) -> String {
        let msg = self.in_dialog("INVITE", "Content-Type: application/sdp\r\n", sdp);
        self.sock
            .send_to(msg.as_bytes(), self.server)
            .expect("send re-INVITE");
        let r = final_response(&self.sock, "INVITE");
        let ack = self.in_dialog("ACK", "", "");
        self.sock
            .send_to(ack.as_bytes(), self.server)
            .expect("send ACK");
        r
    }
}

struct Rtp {
    seq: u16,
    ssrc: u32,
    marker: bool,
    payload: usize,
}

/// Packets arriving on `sock` during `span`.
fn receive(sock: &UdpSocket, span: Duration) -> Vec<Rtp> {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    let end = Instant::now() + span;
    while Instant::now() < end {
        if let Ok(n) = sock.recv(&mut buf)
            && n >= 12
        {
            out.push(Rtp {
                seq: u16::from_be_bytes([buf[2], buf[3]]),
                ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
                marker: buf[1] & 0x80 != 0,
                payload: n - 12,
            });
        }
    }
    out
}

fn bind_pair() -> (UdpSocket, u16) {
    let port = free_rtp_port();
    (
        UdpSocket::bind(("127.0.0.1", port)).expect("bind rtp"),
        port,
    )
}

#[test]
fn hold_new_address_and_ptime_by_reinvite() {
    let server = start_server(
        "[[external_audio]]\nname = \"moh\"\nkind = \"tone\"\n",
        |_| {},
    );
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let local = sock.local_addr().expect("addr");
    let uri = format!("sip:moh@{}", server.sip);
    let (rtp_a, port_a) = bind_pair();
    let (rtp_b, port_b) = bind_pair();

    let invite = request(
        "INVITE",
        &uri,
        local,
        "Content-Type: application/sdp\r\n",
        &offer(port_a, "0 8"),
        "caller",
    )
    .replace("Call-ID: caller@test", "Call-ID: reinvite@test");
    sock.send_to(invite.as_bytes(), server.sip)
        .expect("send INVITE");
    let ok = final_response(&sock, "INVITE");
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let to_tag = header(&ok, "To")
        .and_then(|t| t.split(";tag=").nth(1))
        .expect("To tag")
        .to_string();
    let contact = header(&ok, "Contact")
        .and_then(|c| c.split('<').nth(1))
        .and_then(|c| c.split('>').next())
        .expect("Contact")
        .to_string();
    let mut d = Dialog {
        sock,
        local,
        server: server.sip,
        uri,
        to_tag,
        contact,
        cseq: 1,
    };
    let ack = d.in_dialog("ACK", "", "");
    d.sock.send_to(ack.as_bytes(), server.sip).expect("ACK");

    let first = receive(&rtp_a, Duration::from_millis(600));
    assert!(first.len() >= 20, "RTP flows to A: {} packets", first.len());
    assert!(
        first.iter().all(|p| p.payload == 160),
        "ptime 20: 160-byte payloads"
    );
    let ssrc = first[0].ssrc;

    // Hold: the caller only sends from now on.
    let hold = offer(port_a, "0 8").replace("a=recvonly", "a=sendonly");
    let r = d.reinvite(&hold);
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(
        r.contains("a=inactive") || r.contains("a=recvonly"),
        "hold answered as inactive: {r}"
    );
    let _ = receive(&rtp_a, Duration::from_millis(150)); // packets already in flight
    let during_hold = receive(&rtp_a, Duration::from_millis(600));
    assert!(
        during_hold.len() <= 1,
        "no RTP while on hold: {} packets",
        during_hold.len()
    );
    let last_seq = first.last().map(|p| p.seq).expect("packets");

    // Resume at a new address with ptime 30.
    let resume = format!("{}a=ptime:30\r\n", offer(port_b, "0 8"));
    let r = d.reinvite(&resume);
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(r.contains("a=sendonly"), "resume answered sendonly: {r}");
    let moved = receive(&rtp_b, Duration::from_millis(700));
    assert!(moved.len() >= 15, "RTP flows to B: {} packets", moved.len());
    assert!(
        moved.iter().all(|p| p.payload == 240),
        "ptime 30: 240-byte payloads"
    );
    assert_eq!(moved[0].ssrc, ssrc, "same SSRC after the re-INVITE");
    assert!(moved[0].marker, "marker bit on the first packet after hold");
    let gap = moved[0].seq.wrapping_sub(last_seq);
    assert!(
        (1..=10).contains(&gap),
        "sequence numbers continue (gap {gap})"
    );
    for w in moved.windows(2) {
        assert_eq!(
            w[1].seq,
            w[0].seq.wrapping_add(1),
            "contiguous sequence at B"
        );
    }
    assert!(
        receive(&rtp_a, Duration::from_millis(200)).is_empty(),
        "nothing goes to A any more"
    );

    let bye = d.in_dialog("BYE", "", "");
    d.sock.send_to(bye.as_bytes(), server.sip).expect("BYE");
    let r = final_response(&d.sock, "BYE");
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    let _ = receive(&rtp_b, Duration::from_millis(150));
    assert!(
        receive(&rtp_b, Duration::from_millis(400)).is_empty(),
        "RTP stops after BYE"
    );
}
