//! Byte-exact SIP captured from UniMRCP 1.8 (client `umc` and `unimrcpserver`): every message
//! parses, over UDP and TCP framing, its SDP parses, and re-serialising gives the same bytes.

use imss_sip::message::{self, Message, Method};
use imss_sip::sdp::{self, SessionDescription};
use std::path::PathBuf;

fn vectors() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/unimrcp-1.8");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("directory entry").path();
            let bytes = std::fs::read(&path).expect("vector readable");
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                bytes,
            )
        })
        .filter(|(name, _)| name.starts_with("sip-"))
        .collect();
    out.sort();
    out
}

#[test]
fn every_vector_parses_and_round_trips() {
    let all = vectors();
    assert_eq!(all.len(), 7, "expected the seven SIP captures");
    for (name, bytes) in &all {
        let msg = message::parse_datagram(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (framed, used) = message::parse_stream(bytes)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .unwrap_or_else(|| panic!("{name}: incomplete over TCP"));
        assert_eq!(used, bytes.len(), "{name}");
        assert_eq!(framed, msg, "{name}");
        assert_eq!(
            &msg.to_bytes(),
            bytes,
            "{name}: serialiser changed the bytes"
        );
        let h = msg.headers();
        for must in ["Via", "From", "To", "Call-ID", "CSeq"] {
            assert!(h.get(must).is_some(), "{name}: {must}");
        }
        let body = match &msg {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        };
        if !body.is_empty() {
            let text = std::str::from_utf8(body).expect("SDP is text");
            let sd: SessionDescription = text.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                sd.to_string(),
                text,
                "{name}: SDP re-serialised differently"
            );
        }
    }
}

#[test]
fn invite_fields() {
    let bytes = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/vectors/unimrcp-1.8/sip-invite-from-umc.txt"),
    )
    .expect("vector");
    let Message::Request(r) = message::parse_datagram(&bytes).expect("parses") else {
        panic!("not a request");
    };
    assert_eq!(r.method, Method::Invite);
    let via = r.top_via().expect("via");
    assert_eq!(via.branch(), Some("z9hG4bK7rKDN6cvcZ1XS"));
    assert_eq!(via.rport(), Some(None));
    assert_eq!(
        r.from().and_then(|f| f.tag().map(String::from)).as_deref(),
        Some("7m4HHZcgQDBFH")
    );
    assert_eq!(r.to().expect("to").tag(), None);
    let cseq = r.cseq().expect("cseq");
    assert_eq!((cseq.seq, cseq.method), (1001112730, Method::Invite));
    let contact = message::NameAddr::parse(r.headers.get("m").expect("contact")).expect("contact");
    let uri = message::SipUri::parse(&contact.uri).expect("uri");
    assert_eq!(uri.transport().as_deref(), Some("udp"));
    assert_eq!(uri.port, Some(8062));
    let offer: SessionDescription = std::str::from_utf8(&r.body)
        .expect("utf8")
        .parse()
        .expect("sdp");
    let params = sdp::AnswerParams {
        addr: "127.0.0.1".parse().expect("ip"),
        port: 5000,
        session_id: 1,
        session_version: 1,
        username: "imss".into(),
        default_ptime_ms: imss_sip::sdp::DEFAULT_PTIME_MS,
    };
    let (_, n) = sdp::answer_audio(&offer, &params).expect("negotiates");
    assert_eq!(n.codec, sdp::Codec::Pcmu);
    assert_eq!(n.remote, Some("127.0.0.1:4000".parse().expect("addr")));
}

#[test]
fn tcp_invite_arrives_in_pieces() {
    let bytes = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/vectors/unimrcp-1.8/sip-invite-from-umc-over-tcp.txt"),
    )
    .expect("vector");
    for cut in 0..bytes.len() {
        assert_eq!(
            message::parse_stream(&bytes[..cut]).expect("valid prefix"),
            None,
            "cut {cut}"
        );
    }
    let mut two = bytes.clone();
    two.extend_from_slice(&bytes);
    let (_, used) = message::parse_stream(&two).expect("ok").expect("complete");
    assert_eq!(used, bytes.len());
}
