//! SDP (RFC 4566): a session description model that keeps every line it does not interpret,
//! in order, the RFC 3264 offer/answer of a server that only sends G.711 audio, and the
//! RFC 6787 offer/answer of MRCPv2 control channels.

mod answer;
mod mrcp;

pub use answer::{
    AnswerParams, Codec, DEFAULT_PTIME_MS, Negotiated, NegotiationError, answer_audio,
    capabilities, capabilities_sdp,
};
pub use mrcp::{
    ChannelIds, ControlChannel, MRCP_PROTO, MRCP_TLS_PROTO, MrcpAnswerParams, MrcpNegotiated,
    answer_mrcp, is_control_media, is_mrcp_offer, mrcp_capabilities, mrcp_capabilities_sdp,
};

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Largest SDP accepted (bytes), the SIP body limit.
pub const MAX_SDP_BYTES: usize = 64 * 1024;
/// Most lines accepted in one description.
pub const MAX_SDP_LINES: usize = 4096;

/// Why an SDP could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// Larger than 64 KiB or more than 4096 lines.
    #[error("session description too large")]
    TooLarge,
    /// The first line is not `v=0`.
    #[error("session description must start with v=0")]
    BadVersion,
    /// A line is not `<letter>=<value>`.
    #[error("malformed line {0}")]
    MalformedLine(usize),
    /// The o= line is missing or malformed.
    #[error("missing or malformed o= line")]
    BadOrigin,
    /// A c= line is malformed.
    #[error("malformed c= line {0}")]
    BadConnection(usize),
    /// An m= line is malformed.
    #[error("malformed m= line {0}")]
    BadMedia(usize),
}

/// One line the model keeps as text (i=, u=, e=, p=, b=, z=, k= and unknown types).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// The type letter.
    pub kind: char,
    /// The text after `=`.
    pub value: String,
}

/// The o= line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// Username (`-` when none).
    pub username: String,
    /// Session id (numeric string, kept as written).
    pub session_id: String,
    /// Session version (numeric string, kept as written).
    pub session_version: String,
    /// Network type, `IN`.
    pub net_type: String,
    /// Address type, `IP4` or `IP6`.
    pub addr_type: String,
    /// Unicast address of the originator.
    pub address: String,
}

/// A c= line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    /// Network type, `IN`.
    pub net_type: String,
    /// Address type, `IP4` or `IP6`.
    pub addr_type: String,
    /// Address, possibly with `/ttl[/count]` for multicast.
    pub address: String,
}

impl Connection {
    /// A connection line for an IP address.
    pub fn for_ip(ip: IpAddr) -> Connection {
        Connection {
            net_type: "IN".into(),
            addr_type: if ip.is_ipv4() { "IP4" } else { "IP6" }.into(),
            address: ip.to_string(),
        }
    }

    /// The address as an IP, without any `/ttl`; `None` for host names.
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.split('/').next().and_then(|a| a.parse().ok())
    }
}

/// An a= line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    /// Name (before the first `:`).
    pub name: String,
    /// Value after the first `:`, if any.
    pub value: Option<String>,
}

impl Attribute {
    /// A property attribute (`a=sendonly`).
    pub fn flag(name: &str) -> Attribute {
        Attribute {
            name: name.into(),
            value: None,
        }
    }

    /// A value attribute (`a=ptime:20`).
    pub fn value(name: &str, value: impl Into<String>) -> Attribute {
        Attribute {
            name: name.into(),
            value: Some(value.into()),
        }
    }
}

/// A t= line with its r= lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    /// `start stop`, as written.
    pub value: String,
    /// The r= lines that follow it.
    pub repeats: Vec<String>,
}

/// Media direction (RFC 3264 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Send and receive (the default).
    SendRecv,
    /// Send only.
    SendOnly,
    /// Receive only.
    RecvOnly,
    /// Neither.
    Inactive,
}

impl Direction {
    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn from_attribute(name: &str) -> Option<Direction> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }
}

/// An `a=rtpmap:` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpMap {
    /// Payload type.
    pub payload_type: u8,
    /// Encoding name as written (compare case-insensitively).
    pub encoding: String,
    /// Clock rate in Hz.
    pub clock_rate: u32,
    /// Channels, if written.
    pub channels: Option<u16>,
}

/// One media section (m= and what follows it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaDescription {
    /// Media type (`audio`, `application`, …).
    pub media: String,
    /// Port (0 = rejected or disabled).
    pub port: u16,
    /// `/count` after the port, if any.
    pub port_count: Option<u16>,
    /// Transport protocol (`RTP/AVP`, `TCP/MRCPv2`, …).
    pub proto: String,
    /// Format list (payload types for RTP).
    pub formats: Vec<String>,
    /// Media-level c= line.
    pub connection: Option<Connection>,
    /// Attributes in order.
    pub attributes: Vec<Attribute>,
    /// Other lines (i=, b=, k=, further c=) in order.
    pub extra: Vec<Line>,
}

/// A session description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionDescription {
    /// The o= line.
    pub origin: Origin,
    /// The s= line.
    pub session_name: String,
    /// Session-level c= line.
    pub connection: Option<Connection>,
    /// t= lines with their r= lines.
    pub timing: Vec<Timing>,
    /// Session-level attributes in order.
    pub attributes: Vec<Attribute>,
    /// Other session-level lines (i=, u=, e=, p=, b=, z=, k=, unknown) in order.
    pub extra: Vec<Line>,
    /// Media sections in order.
    pub media: Vec<MediaDescription>,
}

fn find_attr<'a>(attrs: &'a [Attribute], name: &str) -> Option<Option<&'a str>> {
    attrs
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(name))
        .map(|a| a.value.as_deref())
}

impl SessionDescription {
    /// A session-level attribute: `Some(None)` for a property attribute.
    pub fn attribute(&self, name: &str) -> Option<Option<&str>> {
        find_attr(&self.attributes, name)
    }

    /// The session-level direction attribute, if any.
    pub fn direction(&self) -> Option<Direction> {
        self.attributes
            .iter()
            .find_map(|a| Direction::from_attribute(&a.name))
    }
}

/// The offer of a session refresh by re-INVITE (RFC 4028 §7.4) from the description the
/// server sent last: the same session with its o= version set to `version` (RFC 3264 §8:
/// the previous one plus one), and control channels marked `a=connection:existing` so that
/// the client keeps its MRCPv2 connection (RFC 4145 §5).
pub fn refresh_offer(previous: &SessionDescription, version: u64) -> SessionDescription {
    let mut offer = previous.clone();
    offer.origin.session_version = version.to_string();
    for m in offer.media.iter_mut().filter(|m| is_control_media(m)) {
        for a in m
            .attributes
            .iter_mut()
            .filter(|a| a.name.eq_ignore_ascii_case("connection"))
        {
            a.value = Some("existing".into());
        }
    }
    offer
}

impl MediaDescription {
    /// A media-level attribute: `Some(None)` for a property attribute.
    pub fn attribute(&self, name: &str) -> Option<Option<&str>> {
        find_attr(&self.attributes, name)
    }

    /// The media-level direction attribute, if any.
    pub fn direction(&self) -> Option<Direction> {
        self.attributes
            .iter()
            .find_map(|a| Direction::from_attribute(&a.name))
    }

    /// The rtpmap for a payload type.
    pub fn rtpmap(&self, payload_type: u8) -> Option<RtpMap> {
        self.attributes
            .iter()
            .filter(|a| a.name.eq_ignore_ascii_case("rtpmap"))
            .filter_map(|a| parse_rtpmap(a.value.as_deref()?))
            .find(|m| m.payload_type == payload_type)
    }

    /// The fmtp parameters for a payload type.
    pub fn fmtp(&self, payload_type: u8) -> Option<&str> {
        self.attributes
            .iter()
            .filter(|a| a.name.eq_ignore_ascii_case("fmtp"))
            .filter_map(|a| a.value.as_deref())
            .find_map(|v| {
                let (pt, params) = v.split_once(' ').unwrap_or((v, ""));
                (pt.parse::<u8>().ok() == Some(payload_type)).then(|| params.trim())
            })
    }
}

fn parse_rtpmap(v: &str) -> Option<RtpMap> {
    let (pt, rest) = v.trim().split_once(' ')?;
    let mut parts = rest.trim().split('/');
    let encoding = parts.next()?.trim().to_string();
    let clock_rate = parts.next()?.trim().parse().ok()?;
    let channels = match parts.next() {
        Some(c) => Some(c.trim().parse().ok()?),
        None => None,
    };
    Some(RtpMap {
        payload_type: pt.parse().ok()?,
        encoding,
        clock_rate,
        channels,
    })
}

fn parse_connection(v: &str, n: usize) -> Result<Connection, SdpError> {
    let mut w = v.split_whitespace();
    match (w.next(), w.next(), w.next(), w.next()) {
        (Some(net), Some(addr_type), Some(address), None) => Ok(Connection {
            net_type: net.into(),
            addr_type: addr_type.into(),
            address: address.into(),
        }),
        _ => Err(SdpError::BadConnection(n)),
    }
}

fn parse_media(v: &str, n: usize) -> Result<MediaDescription, SdpError> {
    let bad = SdpError::BadMedia(n);
    let mut w = v.split_whitespace();
    let media = w.next().ok_or(bad.clone())?;
    let ports = w.next().ok_or(bad.clone())?;
    let proto = w.next().ok_or(bad.clone())?;
    let (port, port_count) = match ports.split_once('/') {
        Some((p, c)) => (p, Some(c.parse().map_err(|_| bad.clone())?)),
        None => (ports, None),
    };
    Ok(MediaDescription {
        media: media.into(),
        port: port.parse().map_err(|_| bad)?,
        port_count,
        proto: proto.into(),
        formats: w.map(String::from).collect(),
        connection: None,
        attributes: Vec::new(),
        extra: Vec::new(),
    })
}

fn parse_attribute(v: &str) -> Attribute {
    match v.split_once(':') {
        Some((n, val)) => Attribute::value(n, val),
        None => Attribute::flag(v),
    }
}

impl FromStr for SessionDescription {
    type Err = SdpError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_SDP_BYTES {
            return Err(SdpError::TooLarge);
        }
        let mut lines = s
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        match lines.next() {
            Some((_, l)) if l.trim_end() == "v=0" => {}
            _ => return Err(SdpError::BadVersion),
        }
        let mut origin = None;
        let mut sd = SessionDescription {
            origin: Origin {
                username: String::new(),
                session_id: String::new(),
                session_version: String::new(),
                net_type: String::new(),
                addr_type: String::new(),
                address: String::new(),
            },
            session_name: "-".into(),
            connection: None,
            timing: Vec::new(),
            attributes: Vec::new(),
            extra: Vec::new(),
            media: Vec::new(),
        };
        for (count, (i, line)) in lines.enumerate() {
            let n = i + 1;
            if count >= MAX_SDP_LINES {
                return Err(SdpError::TooLarge);
            }
            let b = line.as_bytes();
            if b.len() < 2 || b[1] != b'=' || !b[0].is_ascii_lowercase() {
                return Err(SdpError::MalformedLine(n));
            }
            let kind = char::from(b[0]);
            let value = &line[2..];
            if let Some(m) = sd.media.last_mut() {
                match kind {
                    'm' => sd.media.push(parse_media(value, n)?),
                    'c' if m.connection.is_none() => {
                        m.connection = Some(parse_connection(value, n)?);
                    }
                    'a' => m.attributes.push(parse_attribute(value)),
                    _ => m.extra.push(Line {
                        kind,
                        value: value.into(),
                    }),
                }
                continue;
            }
            match kind {
                'o' => {
                    let w: Vec<&str> = value.split_whitespace().collect();
                    let [user, id, ver, net, at, addr] = w[..] else {
                        return Err(SdpError::BadOrigin);
                    };
                    origin = Some(Origin {
                        username: user.into(),
                        session_id: id.into(),
                        session_version: ver.into(),
                        net_type: net.into(),
                        addr_type: at.into(),
                        address: addr.into(),
                    });
                }
                's' => sd.session_name = value.into(),
                'c' if sd.connection.is_none() => {
                    sd.connection = Some(parse_connection(value, n)?);
                }
                't' => sd.timing.push(Timing {
                    value: value.into(),
                    repeats: Vec::new(),
                }),
                'r' => match sd.timing.last_mut() {
                    Some(t) => t.repeats.push(value.into()),
                    None => return Err(SdpError::MalformedLine(n)),
                },
                'a' => sd.attributes.push(parse_attribute(value)),
                'm' => sd.media.push(parse_media(value, n)?),
                'v' => return Err(SdpError::MalformedLine(n)),
                _ => sd.extra.push(Line {
                    kind,
                    value: value.into(),
                }),
            }
        }
        sd.origin = origin.ok_or(SdpError::BadOrigin)?;
        Ok(sd)
    }
}

/// Serialisation order of the text-kept session lines relative to c= and t= (RFC 4566 §5).
fn session_group(kind: char) -> u8 {
    match kind {
        'i' | 'u' | 'e' | 'p' => 0, // before c=
        'b' => 1,                   // after c=, before t=
        _ => 2,                     // z=, k= and unknown: after t=, before a=
    }
}

impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        write!(
            f,
            "v=0\r\no={} {} {} {} {} {}\r\ns={}\r\n",
            o.username,
            o.session_id,
            o.session_version,
            o.net_type,
            o.addr_type,
            o.address,
            self.session_name
        )?;
        let extra = |f: &mut fmt::Formatter<'_>, group: u8| -> fmt::Result {
            for l in self.extra.iter().filter(|l| session_group(l.kind) == group) {
                write!(f, "{}={}\r\n", l.kind, l.value)?;
            }
            Ok(())
        };
        extra(f, 0)?;
        if let Some(c) = &self.connection {
            write_connection(f, c)?;
        }
        extra(f, 1)?;
        if self.timing.is_empty() {
            f.write_str("t=0 0\r\n")?;
        }
        for t in &self.timing {
            write!(f, "t={}\r\n", t.value)?;
            for r in &t.repeats {
                write!(f, "r={r}\r\n")?;
            }
        }
        extra(f, 2)?;
        write_attributes(f, &self.attributes)?;
        for m in &self.media {
            write!(f, "m={} {}", m.media, m.port)?;
            if let Some(c) = m.port_count {
                write!(f, "/{c}")?;
            }
            write!(f, " {}", m.proto)?;
            for fmt_ in &m.formats {
                write!(f, " {fmt_}")?;
            }
            f.write_str("\r\n")?;
            for l in m.extra.iter().filter(|l| l.kind == 'i') {
                write!(f, "i={}\r\n", l.value)?;
            }
            if let Some(c) = &m.connection {
                write_connection(f, c)?;
            }
            for l in m.extra.iter().filter(|l| l.kind != 'i') {
                write!(f, "{}={}\r\n", l.kind, l.value)?;
            }
            write_attributes(f, &m.attributes)?;
        }
        Ok(())
    }
}

fn write_connection(f: &mut fmt::Formatter<'_>, c: &Connection) -> fmt::Result {
    write!(f, "c={} {} {}\r\n", c.net_type, c.addr_type, c.address)
}

fn write_attributes(f: &mut fmt::Formatter<'_>, attrs: &[Attribute]) -> fmt::Result {
    for a in attrs {
        match &a.value {
            Some(v) => write!(f, "a={}:{v}\r\n", a.name)?,
            None => write!(f, "a={}\r\n", a.name)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const UMC_OFFER: &str = "v=0\r\n\
o=UniMRCPClient 1669579941710454808 555449156831218042 IN IP4 192.0.2.2\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=application 9 TCP/MRCPv2 1\r\n\
a=setup:active\r\n\
a=connection:new\r\n\
a=resource:speechsynth\r\n\
a=cmid:1\r\n\
m=audio 4000 RTP/AVP 0 8 9 96 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:96 L16/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=recvonly\r\n\
a=ptime:20\r\n\
a=mid:1\r\n";

    #[test]
    fn parses_and_reserialises_byte_exact() {
        let sd: SessionDescription = UMC_OFFER.parse().unwrap();
        assert_eq!(sd.media.len(), 2);
        assert_eq!(sd.media[0].media, "application");
        assert_eq!(sd.media[0].port, 9);
        assert_eq!(sd.media[0].proto, "TCP/MRCPv2");
        let audio = &sd.media[1];
        assert_eq!(audio.formats, ["0", "8", "9", "96", "101"]);
        assert_eq!(audio.direction(), Some(Direction::RecvOnly));
        assert_eq!(audio.attribute("ptime"), Some(Some("20")));
        assert_eq!(audio.rtpmap(101).unwrap().encoding, "telephone-event");
        assert_eq!(audio.fmtp(101), Some("0-15"));
        assert_eq!(
            sd.connection.as_ref().and_then(Connection::ip),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(sd.to_string(), UMC_OFFER);
    }

    #[test]
    fn refresh_offer_bumps_the_version_and_keeps_the_connection() {
        let sd: SessionDescription = UMC_OFFER.parse().unwrap();
        let r = refresh_offer(&sd, 555449156831218043);
        assert_eq!(r.origin.session_version, "555449156831218043");
        assert_eq!(r.origin.session_id, sd.origin.session_id);
        assert_eq!(r.media[0].attribute("connection"), Some(Some("existing")));
        assert_eq!(r.media[0].attribute("setup"), Some(Some("active")));
        assert_eq!(r.media[1], sd.media[1], "audio unchanged");
        let text = r.to_string();
        assert_eq!(
            text,
            UMC_OFFER
                .replace("555449156831218042", "555449156831218043")
                .replace("a=connection:new", "a=connection:existing")
        );
    }

    #[test]
    fn keeps_other_lines_in_rfc_order() {
        let s = "v=0\no=- 1 2 IN IP6 ::1\ns=x\ni=info\nu=http://u\ne=a@b\nc=IN IP6 ::1\nb=AS:64\n\
t=1 2\nr=7d 1h 0 25h\nk=clear:x\na=tool:t\nm=audio 5004/2 RTP/AVP 0\ni=m\nc=IN IP4 224.2.1.1/127\n\
b=AS:8\na=rtcp:53020 IN IP4 126.16.64.4\nm=video 0 RTP/AVP 31\n";
        let sd: SessionDescription = s.parse().unwrap();
        assert_eq!(sd.media[0].port_count, Some(2));
        assert_eq!(
            sd.media[0].connection.as_ref().and_then(Connection::ip),
            Some("224.2.1.1".parse().unwrap())
        );
        assert_eq!(sd.timing[0].repeats, ["7d 1h 0 25h"]);
        assert_eq!(sd.to_string(), s.replace('\n', "\r\n"));
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!("".parse::<SessionDescription>(), Err(SdpError::BadVersion));
        assert_eq!(
            "v=1\r\n".parse::<SessionDescription>(),
            Err(SdpError::BadVersion)
        );
        assert_eq!(
            "v=0\r\ns=-\r\n".parse::<SessionDescription>(),
            Err(SdpError::BadOrigin)
        );
        assert_eq!(
            "v=0\r\no=- 1 2 IN IP4 1.2.3.4\r\nxx\r\n".parse::<SessionDescription>(),
            Err(SdpError::MalformedLine(3))
        );
        assert_eq!(
            "v=0\r\no=- 1 2 IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n"
                .parse::<SessionDescription>(),
            Err(SdpError::BadMedia(3))
        );
        assert_eq!(
            "v=0\r\no=- 1 2 IN IP4 1.2.3.4\r\nc=IN IP4\r\n".parse::<SessionDescription>(),
            Err(SdpError::BadConnection(3))
        );
        let huge = format!("v=0\r\n{}", "a=x\r\n".repeat(20_000));
        assert_eq!(huge.parse::<SessionDescription>(), Err(SdpError::TooLarge));
    }
}
