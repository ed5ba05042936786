//! RFC 6787 §4.2 offer/answer for MRCPv2 sessions: resource control channels
//! (`m=application … TCP/MRCPv2`, RFC 4145 `a=setup`/`a=connection`) next to the audio stream,
//! and the resource-discovery SDP answered to OPTIONS (§7).
//!
//! The audio stream is answered by [`answer_audio`]; this module adds the control channels,
//! keeps channel identifiers stable across re-offers and refuses, with port 0, what the
//! server cannot grant while keeping the rest of the session.

use super::answer::answer_envelope;
use super::{
    AnswerParams, Attribute, MediaDescription, Negotiated, NegotiationError, SessionDescription,
    answer_audio, capabilities,
};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};

/// Transport of a control channel over plain TCP.
pub const MRCP_PROTO: &str = "TCP/MRCPv2";
/// Transport of a control channel over TLS.
pub const MRCP_TLS_PROTO: &str = "TCP/TLS/MRCPv2";

/// Mints channel identifiers (RFC 6787 §4.2): hard to guess and unique among the channels
/// the server holds.
///
/// The first 8 hex digits are a counter (unique over 2³² consecutive channels), the last 8
/// are random, so a client cannot guess another session's channel.
#[derive(Debug)]
pub struct ChannelIds {
    next: AtomicU32,
}

impl ChannelIds {
    /// A source whose counter starts at a random value, so identifiers differ across restarts.
    pub fn new() -> ChannelIds {
        ChannelIds {
            next: AtomicU32::new(rand::random()),
        }
    }

    /// A new `<16 hex digits>@<resource>` channel identifier.
    pub fn mint(&self, resource: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{n:08x}{:08x}@{resource}", rand::random::<u32>())
    }
}

impl Default for ChannelIds {
    fn default() -> Self {
        ChannelIds::new()
    }
}

/// What an MRCPv2 answer needs from the server.
#[derive(Clone, Debug)]
pub struct MrcpAnswerParams<'a> {
    /// Address, RTP port, o= fields and default ptime for the audio stream.
    pub audio: AnswerParams,
    /// The TCP port the server accepts plain control connections on (`mrcp.port`).
    pub mrcp_port: u16,
    /// The port of the TLS control channel listener (`mrcp.tls_port`): `TCP/TLS/MRCPv2`
    /// offers are granted there. `None` (TLS off): they are refused with port 0.
    pub tls_port: Option<u16>,
    /// Resource types the server offers, e.g. `["speechsynth", "basicsynth"]`.
    pub supported_resources: Vec<String>,
    /// Where new channel identifiers come from.
    pub channel_ids: &'a ChannelIds,
    /// The channels of the dialog so far (empty for an initial INVITE); a re-offer that
    /// keeps one of them keeps its identifier.
    pub existing: &'a [ControlChannel],
}

/// One granted resource control channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlChannel {
    /// The resource type, spelt as in [`MrcpAnswerParams::supported_resources`].
    pub resource: String,
    /// The full Channel-Identifier, `<id>@<resource>`.
    pub channel_id: String,
    /// The offer's `a=cmid` (the `a=mid` of the audio stream this channel controls).
    pub cmid: Option<String>,
    /// Whether the client opens a new TCP connection (`a=connection:new`) rather than
    /// reusing one (`existing`).
    pub connection_new: bool,
    /// Index of the control m= line in the offer (RFC 3264 keeps it across re-offers).
    pub media_index: usize,
    /// Granted over `TCP/TLS/MRCPv2`: requests for it must come over TLS.
    pub tls: bool,
}

/// The outcome of an MRCPv2 negotiation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MrcpNegotiated {
    /// The audio stream; `None` when the offer disabled every audio stream (port 0).
    pub audio: Option<Negotiated>,
    /// The granted control channels, in the offer's order.
    pub channels: Vec<ControlChannel>,
}

/// Whether an m= line is an MRCPv2 resource control channel.
pub fn is_control_media(m: &MediaDescription) -> bool {
    m.media.eq_ignore_ascii_case("application")
        && (m.proto.eq_ignore_ascii_case(MRCP_PROTO)
            || m.proto.eq_ignore_ascii_case(MRCP_TLS_PROTO))
}

/// Whether an offer sets up an MRCPv2 session: it has at least one control m= line.
pub fn is_mrcp_offer(offer: &SessionDescription) -> bool {
    offer.media.iter().any(is_control_media)
}

/// RFC 6787 §4.2 answer to an offer with control channels.
///
/// Each control m= line whose resource the server supports is answered
/// `m=application <mrcp_port> TCP/MRCPv2 1` (`<tls_port> TCP/TLS/MRCPv2` for a TLS one) with `a=setup:passive`, `a=connection` mirroring
/// the offer (`existing` only when offered), `a=channel:<id>@<resource>` and the offer's
/// `a=cmid`. A control line at port 0, for an unsupported resource, over TLS when TLS is off,
/// or with a setup the server cannot answer is refused with port 0. The audio stream is
/// answered as [`answer_audio`] does (sendonly, G.711 in the offer's order, the offer's
/// payload numbers, telephone-event when offered). Errors (→ 488): no audio m= line, audio
/// without G.711, or no control channel left to grant.
pub fn answer_mrcp(
    offer: &SessionDescription,
    p: &MrcpAnswerParams<'_>,
) -> Result<(SessionDescription, MrcpNegotiated), NegotiationError> {
    let is_audio = |m: &MediaDescription| m.media.eq_ignore_ascii_case("audio");
    if !offer.media.iter().any(is_audio) {
        return Err(NegotiationError::NoAudio);
    }
    let audio = if offer.media.iter().any(|m| is_audio(m) && m.port != 0) {
        Some(answer_audio(offer, &p.audio)?)
    } else {
        None
    };

    let mut reused = vec![false; p.existing.len()];
    let mut channels = Vec::new();
    let mut refusals = Vec::new();
    let mut media = Vec::with_capacity(offer.media.len());
    for (i, om) in offer.media.iter().enumerate() {
        if is_control_media(om) {
            match answer_control(offer, i, om, p, &mut reused) {
                Ok((m, channel)) => {
                    media.push(m);
                    channels.push(channel);
                }
                Err(reason) => {
                    refusals.extend(reason);
                    media.push(refuse(om));
                }
            }
            continue;
        }
        let answered = audio
            .as_ref()
            .filter(|(_, n)| n.media_index == i)
            .and_then(|(a, _)| a.media.get(i));
        media.push(match answered {
            Some(m) => m.clone(),
            None => refuse(om),
        });
    }
    if channels.is_empty() {
        if refusals.is_empty() {
            refusals.push("no open control channel offered".into());
        }
        return Err(NegotiationError::NoUsableResource(refusals.join("; ")));
    }

    let answer = answer_envelope(offer, &p.audio, media);
    let negotiated = MrcpNegotiated {
        audio: audio.map(|(_, n)| n),
        channels,
    };
    Ok((answer, negotiated))
}

/// A media-level attribute value, else the session-level one, trimmed.
fn attr_value<'a>(
    offer: &'a SessionDescription,
    m: &'a MediaDescription,
    name: &str,
) -> Option<&'a str> {
    m.attribute(name)
        .or_else(|| offer.attribute(name))
        .flatten()
        .map(str::trim)
}

/// Answers one open control m= line; `Err(Some(reason))` when it is refused for a reason
/// worth reporting, `Err(None)` when the offer itself closed it (port 0).
fn answer_control(
    offer: &SessionDescription,
    index: usize,
    om: &MediaDescription,
    p: &MrcpAnswerParams<'_>,
    reused: &mut [bool],
) -> Result<(MediaDescription, ControlChannel), Option<String>> {
    if om.port == 0 {
        return Err(None);
    }
    let offered_channel = om
        .attribute("channel")
        .flatten()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    let name = om
        .attribute("resource")
        .flatten()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .or_else(|| {
            offered_channel
                .and_then(|c| c.rsplit_once('@'))
                .map(|(_, r)| r)
        })
        .ok_or_else(|| Some(format!("control m-line {} names no resource", index + 1)))?;
    let resource = p
        .supported_resources
        .iter()
        .find(|r| r.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            Some(format!(
                "resource {name} is not supported (supported: {})",
                p.supported_resources.join(", ")
            ))
        })?;
    let tls = om.proto.eq_ignore_ascii_case(MRCP_TLS_PROTO);
    let port = match (tls, p.tls_port) {
        (false, _) => p.mrcp_port,
        (true, Some(port)) => port,
        (true, None) => {
            return Err(Some(format!(
                "{resource} over {MRCP_TLS_PROTO}: TLS is not enabled, offer {MRCP_PROTO}"
            )));
        }
    };
    // RFC 4145 §4.1: the client connects (active, or actpass left to us); absent means active.
    let setup = match attr_value(offer, om, "setup") {
        None => "passive",
        Some(s) if s.eq_ignore_ascii_case("active") || s.eq_ignore_ascii_case("actpass") => {
            "passive"
        }
        Some(s) if s.eq_ignore_ascii_case("holdconn") => "holdconn",
        Some(s) => {
            return Err(Some(format!(
                "{resource}: a=setup:{s} cannot be answered, the client must connect (active)"
            )));
        }
    };
    let connection_new =
        !attr_value(offer, om, "connection").is_some_and(|c| c.eq_ignore_ascii_case("existing"));

    // RFC 3264 §8: a kept stream stays at its index; a client may also repeat the channel.
    let same_resource = |c: &ControlChannel| c.resource.eq_ignore_ascii_case(resource);
    let kept = offered_channel
        .and_then(|oc| {
            p.existing
                .iter()
                .enumerate()
                .position(|(k, c)| !reused[k] && same_resource(c) && c.channel_id == oc)
        })
        .or_else(|| {
            p.existing
                .iter()
                .enumerate()
                .position(|(k, c)| !reused[k] && same_resource(c) && c.media_index == index)
        });
    let channel_id = match kept {
        Some(k) => {
            reused[k] = true;
            p.existing[k].channel_id.clone()
        }
        None => p.channel_ids.mint(resource),
    };

    let cmids: Vec<&str> = om
        .attributes
        .iter()
        .filter(|a| a.name.eq_ignore_ascii_case("cmid"))
        .filter_map(|a| a.value.as_deref().map(str::trim))
        .collect();
    let mut attributes = vec![
        Attribute::value("setup", setup),
        Attribute::value(
            "connection",
            if connection_new { "new" } else { "existing" },
        ),
        Attribute::value("channel", channel_id.clone()),
    ];
    attributes.extend(cmids.iter().map(|c| Attribute::value("cmid", *c)));
    let answer = MediaDescription {
        media: "application".into(),
        port,
        port_count: None,
        proto: if tls { MRCP_TLS_PROTO } else { MRCP_PROTO }.into(),
        // RFC 6787 §4.2: the format is the arbitrary "1".
        formats: vec!["1".into()],
        connection: None,
        attributes,
        extra: Vec::new(),
    };
    let channel = ControlChannel {
        resource: resource.clone(),
        channel_id,
        cmid: cmids.first().map(|c| (*c).to_string()),
        connection_new,
        media_index: index,
        tls,
    };
    Ok((answer, channel))
}

/// A refused stream: the offer's m= line at port 0 (RFC 3264 §6).
fn refuse(om: &MediaDescription) -> MediaDescription {
    let formats = if !om.formats.is_empty() {
        om.formats.clone()
    } else if is_control_media(om) {
        vec!["1".into()]
    } else {
        vec!["0".into()]
    };
    MediaDescription {
        media: om.media.clone(),
        port: 0,
        port_count: None,
        proto: om.proto.clone(),
        formats,
        connection: None,
        attributes: Vec::new(),
        extra: Vec::new(),
    }
}

/// The resource-discovery description for OPTIONS (RFC 6787 §7): a port-0 control m= line
/// listing each resource (a second one, `TCP/TLS/MRCPv2`, when `tls` is on), then the audio
/// capabilities of [`capabilities`]. Names that are not single tokens are left out.
pub fn mrcp_capabilities(
    addr: IpAddr,
    username: &str,
    resources: &[&str],
    tls: bool,
) -> SessionDescription {
    let mut sd = capabilities(addr, username);
    let attributes: Vec<Attribute> = resources
        .iter()
        .filter(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_graphic()))
        .map(|r| Attribute::value("resource", *r))
        .collect();
    let protos: &[&str] = if tls {
        &[MRCP_PROTO, MRCP_TLS_PROTO]
    } else {
        &[MRCP_PROTO]
    };
    for (i, proto) in protos.iter().enumerate() {
        sd.media.insert(
            i,
            MediaDescription {
                media: "application".into(),
                port: 0,
                port_count: None,
                proto: (*proto).into(),
                formats: vec!["1".into()],
                connection: None,
                attributes: attributes.clone(),
                extra: Vec::new(),
            },
        );
    }
    sd
}

/// [`mrcp_capabilities`] as text, ready for [`crate::endpoint::Endpoint::set_options_sdp`].
pub fn mrcp_capabilities_sdp(
    addr: IpAddr,
    username: &str,
    resources: &[&str],
    tls: bool,
) -> String {
    mrcp_capabilities(addr, username, resources, tls).to_string()
}

#[cfg(test)]
mod tests {
    use super::super::{Codec, Connection, DEFAULT_PTIME_MS, Direction};
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    /// The SDP of UniMRCP 1.8's client INVITE over UDP, as captured
    /// (`interop/unimrcp-1.8/sip-invite-from-umc.txt`).
    const UMC_OFFER_UDP: &str = "v=0\r\n\
o=UniMRCPClient 1669579941710454808 555449156831218042 IN IP4 192.0.2.2\r\n\
s=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=application 9 TCP/MRCPv2 1\r\na=setup:active\r\na=connection:new\r\n\
a=resource:speechsynth\r\na=cmid:1\r\n\
m=audio 4000 RTP/AVP 0 8 9 96 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:9 G722/8000\r\na=rtpmap:96 L16/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\na=recvonly\r\na=ptime:20\r\na=mid:1\r\n";

    /// The same client's INVITE over TCP (`sip-invite-from-umc-over-tcp.txt`).
    const UMC_OFFER_TCP: &str = "v=0\r\n\
o=UniMRCPClient 8462222234134970140 6647962841798789641 IN IP4 192.0.2.2\r\n\
s=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=application 9 TCP/MRCPv2 1\r\na=setup:active\r\na=connection:new\r\n\
a=resource:speechsynth\r\na=cmid:1\r\n\
m=audio 4000 RTP/AVP 0 8 9 96 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:9 G722/8000\r\na=rtpmap:96 L16/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\na=recvonly\r\na=ptime:20\r\na=mid:1\r\n";

    /// unimrcpserver 1.8's answer to it (`sip-200ok-from-unimrcpserver.txt`).
    const UMS_ANSWER: &str = "v=0\r\n\
o=UniMRCPServer 1635482100914939961 4059347855574890094 IN IP4 192.0.2.2\r\n\
s=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=application 1544 TCP/MRCPv2 1\r\na=setup:passive\r\na=connection:new\r\n\
a=channel:bec57cd70a2f4130@speechsynth\r\na=cmid:1\r\n\
m=audio 5000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\na=sendonly\r\na=ptime:20\r\na=mid:1\r\n";

    /// unimrcpserver 1.8's OPTIONS answer (`sip-options-200ok-from-unimrcpserver.txt`).
    const UMS_OPTIONS: &str = "v=0\r\n\
o=UniMRCPServer 2889808371442311531 8961641549942563314 IN IP4 192.0.2.2\r\n\
s=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=application 0 TCP/MRCPv2 1\r\na=resource:speechsynth\r\na=resource:speechrecog\r\n\
m=audio 0 RTP/AVP 0 8 96 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:96 L16/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

    const SYNTH: &str = "m=application 9 TCP/MRCPv2 1\r\na=setup:active\r\n\
a=connection:new\r\na=resource:speechsynth\r\na=cmid:1\r\n";
    const AUDIO: &str = "m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\na=recvonly\r\na=ptime:20\r\na=mid:1\r\n";

    fn audio_params() -> AnswerParams {
        AnswerParams {
            addr: "192.0.2.10".parse().unwrap(),
            port: 16384,
            session_id: 42,
            session_version: 1,
            username: "imss".into(),
            default_ptime_ms: DEFAULT_PTIME_MS,
        }
    }

    fn params<'a>(ids: &'a ChannelIds, existing: &'a [ControlChannel]) -> MrcpAnswerParams<'a> {
        MrcpAnswerParams {
            audio: audio_params(),
            mrcp_port: 8104,
            tls_port: None,
            supported_resources: vec!["speechsynth".into(), "basicsynth".into()],
            channel_ids: ids,
            existing,
        }
    }

    fn offer(media: &str) -> SessionDescription {
        format!("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n{media}")
            .parse()
            .unwrap()
    }

    fn answer(media: &str) -> Result<(SessionDescription, MrcpNegotiated), NegotiationError> {
        let ids = ChannelIds::new();
        answer_mrcp(&offer(media), &params(&ids, &[]))
    }

    fn attr<'a>(m: &'a MediaDescription, name: &str) -> Option<&'a str> {
        m.attribute(name).flatten()
    }

    /// An m= line reduced to what a client checks: type, open or not, transport, formats and
    /// attributes (sorted, the channel's random part blanked).
    /// Media type, open, transport, formats, sorted attributes.
    type Shape = (String, bool, String, Vec<String>, Vec<String>);

    fn shape(sd: &SessionDescription) -> Vec<Shape> {
        sd.media
            .iter()
            .map(|m| {
                let mut attrs: Vec<String> = m
                    .attributes
                    .iter()
                    .map(|a| match (&a.name[..], &a.value) {
                        ("channel", Some(v)) => {
                            let (id, res) = v.split_once('@').unwrap();
                            assert!(id.len() >= 8 && id.chars().all(|c| c.is_ascii_hexdigit()));
                            format!("channel:ID@{res}")
                        }
                        (n, Some(v)) => format!("{n}:{v}"),
                        (n, None) => n.to_string(),
                    })
                    .collect();
                attrs.sort();
                (
                    m.media.clone(),
                    m.port != 0,
                    m.proto.clone(),
                    m.formats.clone(),
                    attrs,
                )
            })
            .collect()
    }

    #[test]
    fn answers_the_unimrcp_offers_like_unimrcpserver() {
        let reference: SessionDescription = UMS_ANSWER.parse().unwrap();
        for text in [UMC_OFFER_UDP, UMC_OFFER_TCP] {
            let o: SessionDescription = text.parse().unwrap();
            assert!(is_mrcp_offer(&o));
            let ids = ChannelIds::new();
            let (a, n) = answer_mrcp(&o, &params(&ids, &[])).unwrap();
            assert_eq!(shape(&a), shape(&reference));
            assert_eq!(a.media[0].port, 8104);
            assert_eq!(a.media[1].port, 16384);
            // What we write must parse back as the same description.
            assert_eq!(a.to_string().parse::<SessionDescription>().unwrap(), a);
            let audio = n.audio.unwrap();
            assert_eq!((audio.codec, audio.payload_type), (Codec::Pcmu, 0));
            assert_eq!(audio.telephone_event, Some(101));
            assert_eq!(audio.remote, Some("127.0.0.1:4000".parse().unwrap()));
            assert_eq!(audio.direction, Direction::SendOnly);
            assert_eq!(audio.media_index, 1);
            assert_eq!(n.channels.len(), 1);
            let ch = &n.channels[0];
            assert_eq!(ch.resource, "speechsynth");
            assert!(ch.channel_id.ends_with("@speechsynth"));
            assert_eq!(attr(&a.media[0], "channel"), Some(ch.channel_id.as_str()));
            assert_eq!(ch.cmid.as_deref(), Some("1"));
            assert!(ch.connection_new);
            assert_eq!(ch.media_index, 0);
        }
    }

    #[test]
    fn plain_audio_offers_are_not_mrcp() {
        assert!(!is_mrcp_offer(&offer(AUDIO)));
        assert!(!is_mrcp_offer(&offer(
            "m=application 9 TCP/BFCP *\r\nm=audio 4000 RTP/AVP 0\r\n"
        )));
        assert!(is_mrcp_offer(&offer(&format!(
            "m=application 9 tcp/tls/mrcpv2 1\r\n{AUDIO}"
        ))));
        let e = answer(AUDIO).unwrap_err();
        assert!(matches!(e, NegotiationError::NoUsableResource(_)), "{e}");
    }

    #[test]
    fn connection_mirrors_the_offer() {
        for (line, want, new) in [
            ("a=connection:new\r\n", "new", true),
            ("a=connection:existing\r\n", "existing", false),
            ("a=connection:EXISTING\r\n", "existing", false),
            ("", "new", true),
            ("a=connection:bogus\r\n", "new", true),
        ] {
            let (a, n) = answer(&format!(
                "m=application 9 TCP/MRCPv2 1\r\na=setup:active\r\n{line}\
a=resource:speechsynth\r\na=cmid:1\r\n{AUDIO}"
            ))
            .unwrap();
            assert_eq!(attr(&a.media[0], "connection"), Some(want), "{line:?}");
            assert_eq!(attr(&a.media[0], "setup"), Some("passive"));
            assert_eq!(n.channels[0].connection_new, new);
        }
    }

    #[test]
    fn setup_is_answered_passive_or_refused() {
        for (line, want) in [
            ("a=setup:active\r\n", Some("passive")),
            ("a=setup:actpass\r\n", Some("passive")),
            ("", Some("passive")),
            ("a=setup:holdconn\r\n", Some("holdconn")),
            ("a=setup:passive\r\n", None),
        ] {
            let r = answer(&format!(
                "m=application 9 TCP/MRCPv2 1\r\n{line}a=resource:speechsynth\r\n{AUDIO}"
            ));
            match want {
                Some(w) => assert_eq!(attr(&r.unwrap().0.media[0], "setup"), Some(w)),
                None => {
                    let e = r.unwrap_err().to_string();
                    assert!(e.contains("setup:passive"), "{e}");
                }
            }
        }
    }

    #[test]
    fn format_token_is_optional_and_mid_cmid_order_free() {
        // Audio first, so a=mid comes before a=cmid; no trailing "1" on the control line.
        let (a, n) = answer(&format!(
            "{AUDIO}m=application 9 TCP/MRCPv2\r\na=setup:active\r\na=connection:new\r\n\
a=resource:speechsynth\r\na=cmid:1\r\n"
        ))
        .unwrap();
        assert_eq!(a.media[1].formats, ["1"]);
        assert_eq!(a.media[1].port, 8104);
        assert_eq!(attr(&a.media[1], "cmid"), Some("1"));
        assert_eq!(attr(&a.media[0], "mid"), Some("1"));
        assert_eq!(n.channels[0].media_index, 1);
        assert_eq!(n.audio.unwrap().media_index, 0);
        // a=cmid before a=resource, no cmid at all.
        let (a, n) = answer(&format!(
            "m=application 9 TCP/MRCPv2 1\r\na=cmid:7\r\na=resource:speechsynth\r\n{AUDIO}"
        ))
        .unwrap();
        assert_eq!(attr(&a.media[0], "cmid"), Some("7"));
        assert_eq!(n.channels[0].cmid.as_deref(), Some("7"));
        let (a, n) = answer(&format!(
            "m=application 9 TCP/MRCPv2 1\r\na=resource:speechsynth\r\n{AUDIO}"
        ))
        .unwrap();
        assert_eq!(attr(&a.media[0], "cmid"), None);
        assert_eq!(n.channels[0].cmid, None);
    }

    #[test]
    fn audio_codec_follows_the_offer_with_its_numbers() {
        let cases = [
            // G.722 and L16 first: PCMU is the first we send.
            (
                "m=audio 4000 RTP/AVP 9 96 0 8\r\na=rtpmap:96 L16/8000\r\n",
                Codec::Pcmu,
                0,
                None,
            ),
            ("m=audio 4000 RTP/AVP 8 0\r\n", Codec::Pcma, 8, None),
            // Dynamic numbers for G.711 and telephone-event are reused.
            (
                "m=audio 4000 RTP/AVP 9 97 100\r\na=rtpmap:9 G722/8000\r\na=rtpmap:97 PCMA/8000\r\n\
a=rtpmap:100 telephone-event/8000\r\na=fmtp:100 0-16\r\n",
                Codec::Pcma,
                97,
                Some(100),
            ),
        ];
        for (audio, codec, pt, te) in cases {
            let (a, n) = answer(&format!("{SYNTH}{audio}a=ptime:30\r\na=mid:1\r\n")).unwrap();
            let got = n.audio.unwrap();
            assert_eq!((got.codec, got.payload_type), (codec, pt), "{audio:?}");
            assert_eq!(got.telephone_event, te);
            let m = &a.media[1];
            assert_eq!(m.direction(), Some(Direction::SendOnly));
            assert_eq!(attr(m, "ptime"), Some("30"));
            assert_eq!(attr(m, "mid"), Some("1"));
            let mut want = vec![pt.to_string()];
            want.extend(te.map(|t| t.to_string()));
            assert_eq!(m.formats, want);
            assert_eq!(m.rtpmap(pt).unwrap().encoding, codec.encoding_name());
            if let Some(te) = te {
                assert_eq!(m.fmtp(te), Some("0-16"));
            }
        }
        let e = answer(&format!("{SYNTH}m=audio 4000 RTP/AVP 9 18\r\n")).unwrap_err();
        assert_eq!(e, NegotiationError::NoCommonCodec);
    }

    #[test]
    fn origin_address_is_not_the_media_address() {
        let o: SessionDescription = format!(
            "v=0\r\no=client 1 1 IN IP4 203.0.113.99\r\ns=-\r\nc=IN IP4 10.1.2.3\r\nt=0 0\r\n\
{SYNTH}{AUDIO}"
        )
        .parse()
        .unwrap();
        let ids = ChannelIds::new();
        let (a, n) = answer_mrcp(&o, &params(&ids, &[])).unwrap();
        assert_eq!(
            n.audio.unwrap().remote,
            Some("10.1.2.3:4000".parse().unwrap())
        );
        assert_eq!(a.origin.address, "192.0.2.10");
        assert_eq!(a.connection, Some(Connection::for_ip(audio_params().addr)));
    }

    #[test]
    fn several_resources_in_one_session() {
        let (a, n) = answer(&format!(
            "{SYNTH}{AUDIO}m=application 9 TCP/MRCPv2 1\r\na=setup:active\r\n\
a=connection:existing\r\na=resource:basicsynth\r\na=cmid:1\r\n"
        ))
        .unwrap();
        assert_eq!(n.channels.len(), 2);
        assert_eq!(n.channels[0].resource, "speechsynth");
        assert_eq!(n.channels[1].resource, "basicsynth");
        assert_eq!(n.channels[1].media_index, 2);
        assert!(!n.channels[1].connection_new);
        assert_ne!(n.channels[0].channel_id, n.channels[1].channel_id);
        assert!(n.channels[1].channel_id.ends_with("@basicsynth"));
        let ports: Vec<u16> = a.media.iter().map(|m| m.port).collect();
        assert_eq!(ports, [8104, 16384, 8104]);
        assert_eq!(attr(&a.media[2], "connection"), Some("existing"));
    }

    #[test]
    fn unsupported_resources_get_port_zero_and_the_rest_works() {
        let (a, n) = answer(&format!(
            "m=application 9 TCP/MRCPv2 1\r\na=setup:active\r\na=connection:new\r\n\
a=resource:speechrecog\r\na=cmid:1\r\n{SYNTH}{AUDIO}\
m=application 9 TCP/MRCPv2 1\r\na=resource:recorder\r\na=cmid:1\r\n\
m=video 5000 RTP/AVP 31\r\n"
        ))
        .unwrap();
        let ports: Vec<u16> = a.media.iter().map(|m| m.port).collect();
        assert_eq!(ports, [0, 8104, 16384, 0, 0]);
        assert_eq!(a.media[0].proto, "TCP/MRCPv2");
        assert_eq!(a.media[0].formats, ["1"]);
        assert_eq!(attr(&a.media[0], "channel"), None);
        assert_eq!(a.media[4].media, "video");
        assert_eq!(n.channels.len(), 1);
        assert_eq!(n.channels[0].media_index, 1);
        assert!(n.audio.is_some());

        let e = answer(&format!(
            "m=application 9 TCP/MRCPv2 1\r\na=resource:speechrecog\r\n{AUDIO}\
m=application 9 TCP/MRCPv2 1\r\na=resource:recorder\r\n"
        ))
        .unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, NegotiationError::NoUsableResource(_)));
        assert!(
            text.contains("speechrecog") && text.contains("recorder"),
            "{text}"
        );
        assert!(text.contains("speechsynth, basicsynth"), "{text}");
        assert!(!text.contains('"'));
        let e = answer(&format!("m=application 9 TCP/MRCPv2 1\r\n{AUDIO}")).unwrap_err();
        assert!(e.to_string().contains("names no resource"), "{e}");
    }

    #[test]
    fn tls_only_when_enabled() {
        let tls_offer = offer(&format!(
            "m=application 9 TCP/TLS/MRCPv2 1\r\na=setup:active\r\na=connection:new\r\n\
a=resource:speechsynth\r\na=cmid:1\r\n{AUDIO}"
        ));
        let ids = ChannelIds::new();
        let e = answer_mrcp(&tls_offer, &params(&ids, &[])).unwrap_err();
        assert!(e.to_string().contains("TLS is not enabled"), "{e}");
        let p = MrcpAnswerParams {
            tls_port: Some(8105),
            ..params(&ids, &[])
        };
        let (a, n) = answer_mrcp(&tls_offer, &p).unwrap();
        assert_eq!(a.media[0].proto, "TCP/TLS/MRCPv2");
        assert_eq!(a.media[0].port, 8105, "the TLS listener's port");
        assert_eq!(n.channels.len(), 1);
        assert!(n.channels[0].tls);
        // Mixed offer without TLS: the TLS line is refused, the TCP one granted.
        let mixed = offer(&format!(
            "m=application 9 TCP/TLS/MRCPv2 1\r\na=resource:basicsynth\r\n{SYNTH}{AUDIO}"
        ));
        let (a, n) = answer_mrcp(&mixed, &params(&ids, &[])).unwrap();
        assert_eq!((a.media[0].port, a.media[1].port), (0, 8104));
        assert_eq!(a.media[0].proto, "TCP/TLS/MRCPv2");
        assert_eq!(n.channels[0].resource, "speechsynth");
        assert!(!n.channels[0].tls);
        // With TLS on, one session can hold one channel of each kind, each on its port.
        let (a, n) = answer_mrcp(&mixed, &p).unwrap();
        assert_eq!((a.media[0].port, a.media[1].port), (8105, 8104));
        assert_eq!(
            (a.media[0].proto.as_str(), a.media[1].proto.as_str()),
            ("TCP/TLS/MRCPv2", "TCP/MRCPv2")
        );
        assert_eq!(
            n.channels.iter().map(|c| c.tls).collect::<Vec<_>>(),
            [true, false]
        );
    }

    #[test]
    fn the_answer_always_carries_audio_and_a_channel() {
        assert_eq!(answer(SYNTH).unwrap_err(), NegotiationError::NoAudio);
        // The client disabled audio: answered at port 0, channels still granted.
        let (a, n) = answer(&format!("{SYNTH}m=audio 0 RTP/AVP 0\r\n")).unwrap();
        assert_eq!(n.audio, None);
        assert_eq!(a.media[1].media, "audio");
        assert_eq!(a.media[1].port, 0);
        assert!(attr(&a.media[0], "channel").is_some());
        // The answer is always as long as the offer (RFC 3264 §6).
        let (a, _) = answer(&format!("{SYNTH}{AUDIO}m=audio 4002 RTP/AVP 0\r\n")).unwrap();
        assert_eq!(a.media.len(), 3);
        assert_eq!(a.media[2].port, 0);
    }

    #[test]
    fn channel_ids_are_unique() {
        let ids = ChannelIds::new();
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let id = ids.mint("speechsynth");
            let (hex, res) = id.split_once('@').unwrap();
            assert_eq!(res, "speechsynth");
            assert_eq!(hex.len(), 16);
            assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));
            assert!(seen.insert(id));
        }
        // Two sessions answered from the same source never share a channel.
        let o = offer(&format!("{SYNTH}{AUDIO}"));
        let (_, n1) = answer_mrcp(&o, &params(&ids, &[])).unwrap();
        let (_, n2) = answer_mrcp(&o, &params(&ids, &[])).unwrap();
        assert_ne!(n1.channels[0].channel_id, n2.channels[0].channel_id);
    }

    #[test]
    fn re_offers_keep_add_and_remove_channels() {
        let ids = ChannelIds::new();
        let initial = offer(&format!("{SYNTH}{AUDIO}"));
        let (_, first) = answer_mrcp(&initial, &params(&ids, &[])).unwrap();
        let synth = first.channels[0].clone();

        // Add basicsynth: speechsynth keeps its id, basicsynth gets a new one.
        let add = offer(&format!(
            "m=application 9 TCP/MRCPv2 1\r\na=setup:active\r\na=connection:existing\r\n\
a=resource:speechsynth\r\na=cmid:1\r\n{AUDIO}m=application 9 TCP/MRCPv2 1\r\n\
a=setup:active\r\na=connection:existing\r\na=resource:basicsynth\r\na=cmid:1\r\n"
        ));
        let (a, second) = answer_mrcp(&add, &params(&ids, &first.channels)).unwrap();
        assert_eq!(second.channels.len(), 2);
        assert_eq!(second.channels[0].channel_id, synth.channel_id);
        assert!(!second.channels[0].connection_new);
        assert_ne!(second.channels[1].channel_id, synth.channel_id);
        assert_eq!(
            attr(&a.media[0], "channel"),
            Some(synth.channel_id.as_str())
        );

        // Remove speechsynth with port 0: only basicsynth remains, with its id.
        let remove = offer(&format!(
            "m=application 0 TCP/MRCPv2 1\r\na=resource:speechsynth\r\na=cmid:1\r\n{AUDIO}\
m=application 9 TCP/MRCPv2 1\r\na=setup:active\r\na=connection:existing\r\n\
a=resource:basicsynth\r\na=cmid:1\r\n"
        ));
        let (a, third) = answer_mrcp(&remove, &params(&ids, &second.channels)).unwrap();
        assert_eq!(third.channels.len(), 1);
        assert_eq!(third.channels[0], second.channels[1]);
        assert_eq!(a.media[0].port, 0);
        assert_eq!(attr(&a.media[0], "channel"), None);

        // Removing the last one leaves nothing usable: 488, the old session stays.
        let none = offer(&format!("m=application 0 TCP/MRCPv2 1\r\n{AUDIO}"));
        let e = answer_mrcp(&none, &params(&ids, &third.channels)).unwrap_err();
        assert!(matches!(e, NegotiationError::NoUsableResource(_)));

        // A re-offered a=channel is matched even without a=resource, and a new resource
        // at a kept index does not inherit another resource's id.
        let by_channel = offer(&format!(
            "m=application 9 TCP/MRCPv2 1\r\na=channel:{}\r\n{AUDIO}",
            synth.channel_id
        ));
        let (_, n) = answer_mrcp(&by_channel, &params(&ids, &first.channels)).unwrap();
        assert_eq!(n.channels[0].channel_id, synth.channel_id);
        let swapped = offer(&format!(
            "m=application 9 TCP/MRCPv2 1\r\na=resource:basicsynth\r\n{AUDIO}"
        ));
        let (_, n) = answer_mrcp(&swapped, &params(&ids, &first.channels)).unwrap();
        assert_ne!(n.channels[0].channel_id, synth.channel_id);
        assert!(n.channels[0].channel_id.ends_with("@basicsynth"));
    }

    #[test]
    fn capabilities_have_the_shape_of_unimrcpservers() {
        let addr: IpAddr = "192.0.2.10".parse().unwrap();
        let with_tls = mrcp_capabilities(addr, "imss", &["speechsynth"], true);
        let protos: Vec<&str> = with_tls.media.iter().map(|m| m.proto.as_str()).collect();
        assert_eq!(protos, ["TCP/MRCPv2", "TCP/TLS/MRCPv2", "RTP/AVP"]);
        assert!(with_tls.media[1].attribute("resource").is_some());
        let text = mrcp_capabilities_sdp(
            addr,
            "imss",
            &["speechsynth", "basicsynth", "bad name"],
            false,
        );
        let ours: SessionDescription = text.parse().unwrap();
        let theirs: SessionDescription = UMS_OPTIONS.parse().unwrap();
        assert_eq!(ours.media.len(), theirs.media.len());
        for (o, t) in ours.media.iter().zip(&theirs.media) {
            assert_eq!((&o.media, o.port, &o.proto), (&t.media, t.port, &t.proto));
        }
        assert_eq!(ours.media[0].formats, ["1"]);
        let resources: Vec<&str> = ours.media[0]
            .attributes
            .iter()
            .filter(|a| a.name == "resource")
            .filter_map(|a| a.value.as_deref())
            .collect();
        assert_eq!(resources, ["speechsynth", "basicsynth"]);
        let audio = &ours.media[1];
        for (pt, enc) in [(0, "PCMU"), (8, "PCMA"), (101, "telephone-event")] {
            assert!(audio.formats.contains(&pt.to_string()));
            assert_eq!(audio.rtpmap(pt).unwrap().encoding, enc);
            assert_eq!(
                audio.rtpmap(pt).unwrap().encoding,
                theirs.media[1].rtpmap(pt).unwrap().encoding
            );
        }
        assert_eq!(ours.connection, Some(Connection::for_ip(addr)));
    }

    fn sdp_line() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("m=application 9 TCP/MRCPv2 1".to_string()),
            Just("m=application 0 TCP/MRCPv2".to_string()),
            Just("m=application 9 TCP/TLS/MRCPv2 1".to_string()),
            Just("m=audio 4000 RTP/AVP 0 8 101".to_string()),
            Just("m=audio 0 RTP/AVP 0".to_string()),
            Just("m=audio 4000 RTP/SAVP 0".to_string()),
            Just("m=video 5000 RTP/AVP 31".to_string()),
            Just("c=IN IP4 0.0.0.0".to_string()),
            Just("c=IN IP4 host.example".to_string()),
            Just("a=rtpmap:101 telephone-event/8000".to_string()),
            Just("a=fmtp:101".to_string()),
            Just("a=sendonly".to_string()),
            Just("a=channel:@".to_string()),
            Just("a=channel".to_string()),
            Just("a=cmid".to_string()),
            Just("a=setup:passive".to_string()),
            "a=(resource|channel|setup|connection|cmid|mid|ptime|rtcp):[ -~]{0,12}",
        ]
    }

    proptest! {
        #[test]
        fn never_panics_on_peer_offers(lines in proptest::collection::vec(sdp_line(), 0..16)) {
            let text = format!(
                "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n{}\r\n",
                lines.join("\r\n")
            );
            if let Ok(o) = text.parse::<SessionDescription>() {
                let ids = ChannelIds::new();
                let existing = [ControlChannel {
                    resource: "speechsynth".into(),
                    channel_id: "1@speechsynth".into(),
                    cmid: None,
                    connection_new: true,
                    media_index: 7,
                    tls: false,
                }];
                if let Ok((a, n)) = answer_mrcp(&o, &params(&ids, &existing)) {
                    prop_assert_eq!(a.media.len(), o.media.len());
                    prop_assert!(!n.channels.is_empty());
                    for ch in &n.channels {
                        prop_assert_eq!(a.media[ch.media_index].port, 8104);
                    }
                }
            }
        }
    }
}
