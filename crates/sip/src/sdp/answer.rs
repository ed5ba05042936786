//! RFC 3264 offer/answer for a server that only sends G.711 audio, and the capability SDP
//! returned in OPTIONS responses.

use super::{
    Attribute, Connection, Direction, MediaDescription, Origin, SessionDescription, Timing,
};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Packet time used when the offer asks for none (ms).
pub const DEFAULT_PTIME_MS: u32 = 20;
/// Shortest packet time the server sends (ms).
pub const MIN_PTIME_MS: u32 = 10;
/// Longest packet time the server sends (ms).
pub const MAX_PTIME_MS: u32 = 60;

/// The two codecs the server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 μ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
}

impl Codec {
    /// The static RTP payload type (RFC 3551): 0 or 8.
    pub fn static_payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The rtpmap encoding name.
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }
}

/// What the answer needs from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnswerParams {
    /// Address written into o= and c= (where the server's RTP comes from and RTCP goes to).
    pub addr: IpAddr,
    /// The RTP port allocated for this call.
    pub port: u16,
    /// o= session id.
    pub session_id: u64,
    /// o= session version (increment for each new answer in the dialog).
    pub session_version: u64,
    /// o= username.
    pub username: String,
    /// Packet time when the offer asks for none (`a=ptime`), in ms; clamped to 10–60.
    pub default_ptime_ms: u32,
}

/// The outcome of a negotiation, for the pacing engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The codec chosen.
    pub codec: Codec,
    /// The payload type to send it with (the offer's number).
    pub payload_type: u8,
    /// Where to send RTP; `None` when the caller holds the call (sendonly/inactive offer,
    /// c=0.0.0.0) and nothing must be sent.
    pub remote: Option<SocketAddr>,
    /// Where to send RTCP (`a=rtcp:` if offered, else RTP port + 1); `None` with `remote`.
    pub remote_rtcp: Option<SocketAddr>,
    /// Packet time.
    pub ptime: Duration,
    /// The direction written in the answer (`SendOnly` or `Inactive`).
    pub direction: Direction,
    /// The telephone-event payload type, when offered.
    pub telephone_event: Option<u8>,
    /// Index of the answered audio section among the offer's m= lines.
    pub media_index: usize,
}

/// Why no answer can be given. `Display` is suitable as SIP Warning text (no quotes).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    /// No usable audio m= line.
    #[error("no audio stream offered")]
    NoAudio,
    /// Audio offered, but neither PCMU nor PCMA.
    #[error("incompatible media format: only PCMU and PCMA (G.711, 8000 Hz) are supported")]
    NoCommonCodec,
    /// Audio offered only over a profile the server does not speak (SRTP).
    #[error("incompatible transport protocol {0}: only RTP/AVP is supported")]
    UnsupportedProfile(String),
    /// The audio stream has no c= line at either level.
    #[error("no connection address for the audio stream")]
    NoConnection,
    /// The c= address is a host name, which this sans-IO library does not resolve.
    #[error("connection address {0} is not an IP address")]
    UnsupportedAddress(String),
    /// No MRCPv2 control channel of the offer can be granted (RFC 6787 §4.2); the text says
    /// what was offered and what is supported.
    #[error("no usable MRCPv2 resource: {0}")]
    NoUsableResource(String),
}

fn is_plain_rtp(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("RTP/AVP") || proto.eq_ignore_ascii_case("RTP/AVPF")
}

/// The first G.711 format in the offer's order, with the payload type the offer uses.
fn choose_codec(m: &MediaDescription) -> Option<(Codec, u8)> {
    m.formats.iter().find_map(|f| {
        let pt: u8 = f.parse().ok()?;
        match m.rtpmap(pt) {
            Some(map) => {
                let mono = map.channels.is_none_or(|c| c == 1);
                if map.clock_rate != 8000 || !mono {
                    return None;
                }
                if map.encoding.eq_ignore_ascii_case("PCMU") {
                    Some((Codec::Pcmu, pt))
                } else if map.encoding.eq_ignore_ascii_case("PCMA") {
                    Some((Codec::Pcma, pt))
                } else {
                    None
                }
            }
            None => match pt {
                0 => Some((Codec::Pcmu, 0)),
                8 => Some((Codec::Pcma, 8)),
                _ => None,
            },
        }
    })
}

fn telephone_event(m: &MediaDescription) -> Option<u8> {
    m.formats.iter().find_map(|f| {
        let pt: u8 = f.parse().ok()?;
        let map = m.rtpmap(pt)?;
        (map.encoding.eq_ignore_ascii_case("telephone-event") && map.clock_rate == 8000)
            .then_some(pt)
    })
}

fn ms_attr(v: Option<Option<&str>>) -> Option<u32> {
    let v: f64 = v.flatten()?.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| v.round().min(f64::from(u32::MAX)) as u32)
}

/// RFC 3264 answer for a send-only audio server.
///
/// The first audio stream with PCMU or PCMA is answered (codec chosen in the offer's order,
/// with the offer's payload number; telephone-event answered when offered; ptime honoured
/// within 10–60 ms); every other m= line is refused with port 0. A sendrecv or recvonly offer
/// is answered sendonly; a sendonly or inactive offer, or c=0.0.0.0 (RFC 2543 hold), is
/// answered inactive with `remote = None`.
pub fn answer_audio(
    offer: &SessionDescription,
    p: &AnswerParams,
) -> Result<(SessionDescription, Negotiated), NegotiationError> {
    let mut chosen: Option<(usize, Codec, u8)> = None;
    let mut saw_audio = false;
    let mut saw_secure = None;
    for (i, m) in offer.media.iter().enumerate() {
        if !m.media.eq_ignore_ascii_case("audio") || m.port == 0 {
            continue;
        }
        if !is_plain_rtp(&m.proto) {
            saw_secure.get_or_insert_with(|| m.proto.clone());
            continue;
        }
        saw_audio = true;
        if let Some((codec, pt)) = choose_codec(m) {
            chosen = Some((i, codec, pt));
            break;
        }
    }
    let Some((index, codec, payload_type)) = chosen else {
        return Err(match (saw_audio, saw_secure) {
            (true, _) => NegotiationError::NoCommonCodec,
            (false, Some(proto)) => NegotiationError::UnsupportedProfile(proto),
            (false, None) => NegotiationError::NoAudio,
        });
    };
    let m = &offer.media[index];
    let conn = m
        .connection
        .as_ref()
        .or(offer.connection.as_ref())
        .ok_or(NegotiationError::NoConnection)?;
    let ip = conn
        .ip()
        .ok_or_else(|| NegotiationError::UnsupportedAddress(conn.address.clone()))?;
    let offered = m
        .direction()
        .or(offer.direction())
        .unwrap_or(Direction::SendRecv);
    let hold = ip.is_unspecified() || matches!(offered, Direction::SendOnly | Direction::Inactive);
    let direction = if hold {
        Direction::Inactive
    } else {
        Direction::SendOnly
    };
    let ptime_attr = |name| m.attribute(name).or(offer.attribute(name));
    let mut ptime = ms_attr(ptime_attr("ptime")).unwrap_or(p.default_ptime_ms);
    if let Some(max) = ms_attr(ptime_attr("maxptime")) {
        ptime = ptime.min(max);
    }
    let ptime = ptime.clamp(MIN_PTIME_MS, MAX_PTIME_MS);
    let te = telephone_event(m);

    let (remote, remote_rtcp) = if hold {
        (None, None)
    } else {
        let rtp = SocketAddr::new(ip, m.port);
        let rtcp = m
            .attribute("rtcp")
            .flatten()
            .and_then(|v| parse_rtcp_attr(v, ip))
            .unwrap_or_else(|| SocketAddr::new(ip, m.port.wrapping_add(1)));
        (Some(rtp), Some(rtcp))
    };

    let mut media = Vec::with_capacity(offer.media.len());
    for (i, om) in offer.media.iter().enumerate() {
        if i != index {
            media.push(MediaDescription {
                media: om.media.clone(),
                port: 0,
                port_count: None,
                proto: om.proto.clone(),
                formats: if om.formats.is_empty() {
                    vec!["0".into()]
                } else {
                    om.formats.clone()
                },
                connection: None,
                attributes: Vec::new(),
                extra: Vec::new(),
            });
            continue;
        }
        let mut formats = vec![payload_type.to_string()];
        let mut attributes = vec![Attribute::value(
            "rtpmap",
            format!("{payload_type} {}/8000", codec.encoding_name()),
        )];
        if let Some(te) = te {
            formats.push(te.to_string());
            attributes.push(Attribute::value(
                "rtpmap",
                format!("{te} telephone-event/8000"),
            ));
            let events = m.fmtp(te).filter(|f| !f.is_empty()).unwrap_or("0-15");
            attributes.push(Attribute::value("fmtp", format!("{te} {events}")));
        }
        attributes.push(Attribute::value("ptime", ptime.to_string()));
        attributes.push(Attribute::flag(direction.as_str()));
        if let Some(Some(mid)) = om.attribute("mid") {
            attributes.push(Attribute::value("mid", mid));
        }
        media.push(MediaDescription {
            media: om.media.clone(),
            port: p.port,
            port_count: None,
            proto: om.proto.clone(),
            formats,
            connection: None,
            attributes,
            extra: Vec::new(),
        });
    }

    let answer = answer_envelope(offer, p, media);
    let negotiated = Negotiated {
        codec,
        payload_type,
        remote,
        remote_rtcp,
        ptime: Duration::from_millis(u64::from(ptime)),
        direction,
        telephone_event: te,
        media_index: index,
    };
    Ok((answer, negotiated))
}

/// `a=rtcp:port [IN IP4 addr]` (RFC 3605).
fn parse_rtcp_attr(v: &str, default_ip: IpAddr) -> Option<SocketAddr> {
    let mut w = v.split_whitespace();
    let port: u16 = w.next()?.parse().ok()?;
    let ip = match (w.next(), w.next(), w.next()) {
        (Some(_), Some(_), Some(addr)) => addr.parse().ok()?,
        _ => default_ip,
    };
    Some(SocketAddr::new(ip, port))
}

/// The session-level part of an answer to `offer` around `media`: our o= and c=, and the
/// offer's t= (RFC 3264 §6).
pub(super) fn answer_envelope(
    offer: &SessionDescription,
    p: &AnswerParams,
    media: Vec<MediaDescription>,
) -> SessionDescription {
    SessionDescription {
        origin: origin(p.addr, &p.username, p.session_id, p.session_version),
        session_name: "-".into(),
        connection: Some(Connection::for_ip(p.addr)),
        timing: if offer.timing.is_empty() {
            vec![zero_timing()]
        } else {
            offer.timing.clone()
        },
        attributes: Vec::new(),
        extra: Vec::new(),
        media,
    }
}

fn origin(addr: IpAddr, username: &str, id: u64, version: u64) -> Origin {
    let c = Connection::for_ip(addr);
    Origin {
        username: if username.is_empty() || username.contains(char::is_whitespace) {
            "-".into()
        } else {
            username.into()
        },
        session_id: id.to_string(),
        session_version: version.to_string(),
        net_type: c.net_type,
        addr_type: c.addr_type,
        address: c.address,
    }
}

fn zero_timing() -> Timing {
    Timing {
        value: "0 0".into(),
        repeats: Vec::new(),
    }
}

/// What the server can send, for OPTIONS responses (RFC 3261 §11.2, RFC 3264 §9): one audio
/// m= line with port 0 listing PCMU, PCMA and telephone-event, marked sendonly.
pub fn capabilities(addr: IpAddr, username: &str) -> SessionDescription {
    let attrs = vec![
        Attribute::value("rtpmap", "0 PCMU/8000"),
        Attribute::value("rtpmap", "8 PCMA/8000"),
        Attribute::value("rtpmap", "101 telephone-event/8000"),
        Attribute::value("fmtp", "101 0-15"),
        Attribute::flag("sendonly"),
    ];
    SessionDescription {
        origin: origin(addr, username, rand::random::<u32>().into(), 1),
        session_name: "-".into(),
        connection: Some(Connection::for_ip(addr)),
        timing: vec![zero_timing()],
        attributes: Vec::new(),
        extra: Vec::new(),
        media: vec![MediaDescription {
            media: "audio".into(),
            port: 0,
            port_count: None,
            proto: "RTP/AVP".into(),
            formats: vec!["0".into(), "8".into(), "101".into()],
            connection: None,
            attributes: attrs,
            extra: Vec::new(),
        }],
    }
}

/// [`capabilities`] as text, ready for [`crate::endpoint::Endpoint::set_options_sdp`].
pub fn capabilities_sdp(addr: IpAddr, username: &str) -> String {
    capabilities(addr, username).to_string()
}

#[cfg(test)]
mod tests {
    use super::super::tests::UMC_OFFER;
    use super::*;

    fn params() -> AnswerParams {
        AnswerParams {
            addr: "192.0.2.10".parse().unwrap(),
            port: 16384,
            session_id: 42,
            session_version: 1,
            username: "imss".into(),
            default_ptime_ms: DEFAULT_PTIME_MS,
        }
    }

    fn offer(audio: &str) -> SessionDescription {
        format!("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n{audio}")
            .parse()
            .unwrap()
    }

    #[test]
    fn answers_the_unimrcp_offer() {
        let o: SessionDescription = UMC_OFFER.parse().unwrap();
        let (a, n) = answer_audio(&o, &params()).unwrap();
        assert_eq!(n.codec, Codec::Pcmu);
        assert_eq!(n.payload_type, 0);
        assert_eq!(n.remote, Some("127.0.0.1:4000".parse().unwrap()));
        assert_eq!(n.remote_rtcp, Some("127.0.0.1:4001".parse().unwrap()));
        assert_eq!(n.ptime, Duration::from_millis(20));
        assert_eq!(n.direction, Direction::SendOnly);
        assert_eq!(n.telephone_event, Some(101));
        assert_eq!(n.media_index, 1);
        assert_eq!(
            a.to_string(),
            "v=0\r\no=imss 42 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
m=application 0 TCP/MRCPv2 1\r\n\
m=audio 16384 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\na=ptime:20\r\na=sendonly\r\na=mid:1\r\n"
        );
    }

    #[test]
    fn codec_follows_offer_order_and_dynamic_numbers() {
        let (_, n) = answer_audio(&offer("m=audio 5000 RTP/AVP 8 0\r\n"), &params()).unwrap();
        assert_eq!((n.codec, n.payload_type), (Codec::Pcma, 8));
        let (a, n) = answer_audio(
            &offer("m=audio 5000 RTP/AVP 97 96\r\na=rtpmap:97 opus/48000/2\r\na=rtpmap:96 pcmu/8000\r\n"),
            &params(),
        )
        .unwrap();
        assert_eq!((n.codec, n.payload_type), (Codec::Pcmu, 96));
        assert_eq!(a.media[0].formats, ["96"]);
        assert_eq!(n.telephone_event, None);
        // A static number remapped to something else is not G.711.
        let e = answer_audio(
            &offer("m=audio 5000 RTP/AVP 0\r\na=rtpmap:0 G729/8000\r\n"),
            &params(),
        )
        .unwrap_err();
        assert_eq!(e, NegotiationError::NoCommonCodec);
    }

    #[test]
    fn no_common_codec_is_a_warning_text() {
        let e = answer_audio(&offer("m=audio 5000 RTP/AVP 9 18\r\n"), &params()).unwrap_err();
        assert_eq!(e, NegotiationError::NoCommonCodec);
        assert!(!e.to_string().contains('"'));
        assert!(e.to_string().contains("PCMU"));
        let e = answer_audio(&offer("m=video 5000 RTP/AVP 31\r\n"), &params()).unwrap_err();
        assert_eq!(e, NegotiationError::NoAudio);
        let e = answer_audio(&offer("m=audio 5000 RTP/SAVP 0\r\n"), &params()).unwrap_err();
        assert_eq!(e, NegotiationError::UnsupportedProfile("RTP/SAVP".into()));
    }

    #[test]
    fn ptime_is_honoured_and_clamped() {
        for (attrs, want) in [
            ("", 20),
            ("a=ptime:30\r\n", 30),
            ("a=ptime:5\r\n", 10),
            ("a=ptime:200\r\n", 60),
            ("a=ptime:40\r\na=maxptime:20\r\n", 20),
            ("a=ptime:junk\r\n", 20),
        ] {
            let (a, n) = answer_audio(
                &offer(&format!("m=audio 5000 RTP/AVP 0\r\n{attrs}")),
                &params(),
            )
            .unwrap();
            assert_eq!(n.ptime, Duration::from_millis(want), "{attrs:?}");
            assert_eq!(
                a.media[0].attribute("ptime"),
                Some(Some(want.to_string().as_str()))
            );
        }
    }

    #[test]
    fn configured_ptime_applies_when_the_offer_has_none() {
        let p = AnswerParams {
            default_ptime_ms: 30,
            ..params()
        };
        let (_, n) = answer_audio(&offer("m=audio 5000 RTP/AVP 0\r\n"), &p).unwrap();
        assert_eq!(n.ptime, Duration::from_millis(30));
        let (_, n) = answer_audio(&offer("m=audio 5000 RTP/AVP 0\r\na=ptime:20\r\n"), &p).unwrap();
        assert_eq!(n.ptime, Duration::from_millis(20), "the offer's ptime wins");
    }

    #[test]
    fn hold_offers_are_answered_inactive() {
        for (audio, session_c) in [
            ("m=audio 5000 RTP/AVP 0\r\na=sendonly\r\n", None),
            ("m=audio 5000 RTP/AVP 0\r\na=inactive\r\n", None),
            ("m=audio 5000 RTP/AVP 0\r\n", Some("0.0.0.0")),
        ] {
            let mut o = offer(audio);
            if let Some(c) = session_c {
                o.connection = Some(Connection::for_ip(c.parse().unwrap()));
            }
            let (a, n) = answer_audio(&o, &params()).unwrap();
            assert_eq!(n.direction, Direction::Inactive);
            assert_eq!(n.remote, None);
            assert_eq!(n.remote_rtcp, None);
            assert_eq!(a.media[0].direction(), Some(Direction::Inactive));
        }
        let (a, n) = answer_audio(
            &offer("m=audio 5000 RTP/AVP 0\r\na=sendrecv\r\n"),
            &params(),
        )
        .unwrap();
        assert_eq!(n.direction, Direction::SendOnly);
        assert_eq!(a.media[0].direction(), Some(Direction::SendOnly));
    }

    #[test]
    fn media_level_connection_and_rtcp_attribute() {
        let (_, n) = answer_audio(
            &offer("m=audio 5000 RTP/AVP 0\r\nc=IN IP4 10.9.9.9\r\na=rtcp:6001\r\n"),
            &params(),
        )
        .unwrap();
        assert_eq!(n.remote, Some("10.9.9.9:5000".parse().unwrap()));
        assert_eq!(n.remote_rtcp, Some("10.9.9.9:6001".parse().unwrap()));
        let (_, n) = answer_audio(
            &offer("m=audio 5000 RTP/AVP 0\r\na=rtcp:6001 IN IP4 10.1.1.1\r\n"),
            &params(),
        )
        .unwrap();
        assert_eq!(n.remote_rtcp, Some("10.1.1.1:6001".parse().unwrap()));
    }

    #[test]
    fn other_streams_are_refused_with_port_zero() {
        let (a, n) = answer_audio(
            &offer(
                "m=video 6000 RTP/AVP 31\r\nm=audio 5000 RTP/AVP 0\r\nm=audio 5002 RTP/AVP 8\r\n",
            ),
            &params(),
        )
        .unwrap();
        assert_eq!(n.media_index, 1);
        let ports: Vec<u16> = a.media.iter().map(|m| m.port).collect();
        assert_eq!(ports, [0, 16384, 0]);
        assert_eq!(a.media[0].formats, ["31"]);
        assert_eq!(a.media[2].media, "audio");
    }

    #[test]
    fn capability_sdp_lists_what_is_sent() {
        let s = capabilities_sdp("192.0.2.10".parse().unwrap(), "imss");
        let sd: SessionDescription = s.parse().unwrap();
        let m = &sd.media[0];
        assert_eq!(m.port, 0);
        assert_eq!(m.formats, ["0", "8", "101"]);
        assert_eq!(m.direction(), Some(Direction::SendOnly));
        assert_eq!(m.rtpmap(8).unwrap().encoding, "PCMA");
    }
}
