//! An MRCPv2 session over real sockets, for the end-to-end tests: SIP set up from the
//! captured UniMRCP vectors, the control connection open, the RTP received and decoded.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Server, free_rtp_port};

/// G.711 μ-law decoding (ITU-T), independent of the server's code.
pub fn ulaw(b: u8) -> i16 {
    let b = !b;
    let t = ((i32::from(b & 0x0f) << 3) + 0x84) << ((b & 0x70) >> 4);
    (if b & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
}

/// The loud μ-law packets arriving on `rtp` during `span` from the first loud one (waited
/// for up to 5 s): how many, and their frequency by zero crossings (comfort silence around
/// the audio is left out).
pub fn loud_frequency(rtp: &UdpSocket, span: Duration) -> (usize, f64) {
    rtp.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    let (mut packets, mut crossings, mut samples) = (0usize, 0usize, 0usize);
    let mut end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if let Ok(len) = rtp.recv(&mut buf)
            && len > 12
            && buf[1] & 0x7f == 0
        {
            let s: Vec<i16> = buf[12..len].iter().map(|b| ulaw(*b)).collect();
            let rms = (s
                .iter()
                .map(|x| (f64::from(*x) / 32768.0).powi(2))
                .sum::<f64>()
                / s.len() as f64)
                .sqrt();
            if rms > 0.1 {
                if packets == 0 {
                    end = Instant::now() + span;
                }
                packets += 1;
                crossings += s.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
                samples += s.len();
            }
        }
    }
    let freq = crossings as f64 / 2.0 / (samples.max(1) as f64 / 8000.0);
    (packets, freq)
}

/// Drops whatever RTP is queued on `rtp`.
pub fn drain(rtp: &UdpSocket) {
    rtp.set_read_timeout(Some(Duration::from_millis(5)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    while rtp.recv(&mut buf).is_ok() {}
}

// ---------------------------------------------------------------------------------------
// MRCPv2 sessions (UniMRCP umc's SIP messages, as in tests/mrcp.rs)
// ---------------------------------------------------------------------------------------

/// A message captured from UniMRCP 1.8 (the copies the sip and mrcp crates test with).
pub fn vector(name: &str) -> String {
    let dir = if name.starts_with("sip-") {
        "../sip/tests/vectors/unimrcp-1.8"
    } else {
        "../mrcp/tests/data"
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A Call-ID no other session of this test process uses.
pub fn new_call_id() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("session-{}-{n}", std::process::id())
}

/// A captured SIP message with this test's addresses, Call-ID and a fresh branch.
pub fn retarget(
    msg: &str,
    server: SocketAddr,
    me: SocketAddr,
    rtp_port: u16,
    call_id: &str,
) -> String {
    // Branches must be unique per request (RFC 3261 §8.1.1.7): a port the OS hands out again
    // would otherwise make a new INVITE a retransmission of an old one.
    let branch: String = call_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let msg = msg
        .replace("eb6a0766-6216-1240-f1ab-b6f5632ca98f", call_id)
        .replace("branch=z9hG4bK", &format!("branch=z9hG4bK{branch}x"))
        .replace("127.0.0.1:8060", &server.to_string())
        .replace("127.0.0.1:8062", &me.to_string())
        .replace("m=audio 4000 ", &format!("m=audio {rtp_port} "));
    let (head, body) = msg.split_once("\r\n\r\n").expect("header/body split");
    let head: Vec<String> = head
        .split("\r\n")
        .map(|l| {
            if l.to_ascii_lowercase().starts_with("content-length:") {
                format!("Content-Length: {}", body.len())
            } else {
                l.to_string()
            }
        })
        .collect();
    format!("{}\r\n\r\n{body}", head.join("\r\n"))
}

/// An MRCPv2 session: SIP set up and acknowledged, the control connection open.
pub struct Session {
    pub rtp: UdpSocket,
    pub channel: String,
    pub tcp: TcpStream,
    buf: Vec<u8>,
    /// The SIP socket of the dialog and its Call-ID.
    pub sip: UdpSocket,
    pub call_id: String,
}

pub fn open_session(server: &Server) -> Session {
    let sip = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sip.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let me = sip.local_addr().expect("addr");
    let rtp_port = free_rtp_port();
    let rtp = UdpSocket::bind(("127.0.0.1", rtp_port)).expect("bind rtp");
    let call_id = new_call_id();
    let invite = retarget(
        &vector("sip-invite-from-umc.txt"),
        server.sip,
        me,
        rtp_port,
        &call_id,
    );
    sip.send_to(invite.as_bytes(), server.sip).expect("INVITE");
    let mut buf = vec![0u8; 65536];
    let end = Instant::now() + Duration::from_secs(5);
    let ok = loop {
        assert!(Instant::now() < end, "no 200 OK; log:\n{}", server.log());
        if let Ok((n, _)) = sip.recv_from(&mut buf) {
            let t = String::from_utf8_lossy(&buf[..n]).to_string();
            if t.contains(&call_id) && t.starts_with("SIP/2.0 200") {
                break t;
            }
        }
    };
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
    let ack = retarget(
        &vector("sip-ack-from-umc.txt"),
        server.sip,
        me,
        rtp_port,
        &call_id,
    )
    .replace("Q8jF6rpvQmHpS", &to_tag);
    sip.send_to(ack.as_bytes(), server.sip).expect("ACK");
    let tcp = TcpStream::connect(server.mrcp).expect("MRCP connect");
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    Session {
        rtp,
        channel,
        tcp,
        buf: Vec::new(),
        sip,
        call_id,
    }
}

impl Session {
    /// Sends a SPEAK of `uri` as a text/uri-list, with `extra` header lines.
    pub fn speak_uri(&mut self, request_id: u32, extra: &str, uri: &str) {
        self.speak(request_id, extra, "text/uri-list", &format!("{uri}\r\n"));
    }

    pub fn speak(&mut self, request_id: u32, extra: &str, content_type: &str, body: &str) {
        drain(&self.rtp);
        let msg = super::mrcp::mrcp_request(
            &self.channel,
            "SPEAK",
            request_id,
            &format!("{extra}Content-Type: {content_type}\r\n"),
            body,
        );
        self.tcp.write_all(&msg).expect("SPEAK");
    }

    pub fn read_until(&mut self, want: &str, limit: Duration) -> String {
        super::mrcp::read_until(&mut self.tcp, &mut self.buf, want, limit)
    }

    /// Waits for the SPEAK's `200 IN-PROGRESS` and measures the audio that follows.
    pub fn plays(&mut self, request_id: u32, span: Duration) -> (usize, f64) {
        let r = self.read_until(" 200 IN-PROGRESS", Duration::from_secs(10));
        assert!(r.contains(&format!(" {request_id} 200 IN-PROGRESS")), "{r}");
        loud_frequency(&self.rtp, span)
    }

    pub fn complete(&mut self, limit: Duration) -> String {
        self.read_until("SPEAK-COMPLETE", limit)
    }

    /// Sends `method` (CONTROL, PAUSE, STOP, …) on the channel with `headers` (CRLF-ended
    /// lines).
    pub fn request(&mut self, method: &str, request_id: u32, headers: &str) {
        self.request_with_body(method, request_id, headers, "");
    }

    /// A request with a body (its `Content-Type` in `headers`).
    pub fn request_with_body(&mut self, method: &str, request_id: u32, headers: &str, body: &str) {
        let msg = super::mrcp::mrcp_request(&self.channel, method, request_id, headers, body);
        self.tcp.write_all(&msg).expect("request");
    }

    /// Waits for SPEAK `request_id`'s IN-PROGRESS, then records its audio until its
    /// SPEAK-COMPLETE; returns the audio, the SPEAK-COMPLETE and the events before it.
    pub fn play_through(
        &mut self,
        request_id: u32,
        limit: Duration,
    ) -> (Vec<f32>, String, Vec<String>) {
        let r = self.read_until(" 200 IN-PROGRESS", Duration::from_secs(15));
        assert!(r.contains(&format!(" {request_id} 200 IN-PROGRESS")), "{r}");
        let end = Instant::now() + limit;
        let mut audio = Vec::new();
        let mut events = Vec::new();
        loop {
            audio.extend(self.record(Duration::from_millis(100)));
            for msg in self.poll() {
                if msg
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .contains("SPEAK-COMPLETE")
                {
                    // What was in flight.
                    audio.extend(self.record(Duration::from_millis(100)));
                    return (audio, msg, events);
                }
                events.push(msg);
            }
            assert!(Instant::now() < end, "no SPEAK-COMPLETE within {limit:?}");
        }
    }

    /// The MRCP messages that arrived by now (waiting at most the connection's read
    /// timeout), whole, in order.
    pub fn poll(&mut self) -> Vec<String> {
        let mut chunk = [0u8; 4096];
        match std::io::Read::read(&mut self.tcp, &mut chunk) {
            Ok(0) => panic!("MRCP connection closed"),
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read: {e}"),
        }
        let mut out = Vec::new();
        while let Some(msg) = super::mrcp::take_message(&mut self.buf) {
            out.push(msg);
        }
        out
    }

    /// The μ-law audio of the RTP arriving for `span`, decoded, in arrival order.
    pub fn record(&mut self, span: Duration) -> Vec<f32> {
        self.rtp
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let mut buf = [0u8; 2048];
        let mut out = Vec::new();
        let end = Instant::now() + span;
        while Instant::now() < end {
            if let Ok(len) = self.rtp.recv(&mut buf)
                && len > 12
                && buf[1] & 0x7f == 0
            {
                out.extend(buf[12..len].iter().map(|b| f32::from(ulaw(*b)) / 32768.0));
            }
        }
        out
    }
}
