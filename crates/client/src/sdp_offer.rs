//! The receive-only audio offer this client sends, and what it takes from the answer.

use crate::{ClientError, Codec};
use imss_sip::sdp::{Direction, SessionDescription};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// RTP payload type offered for RFC 4733 telephone events.
pub const TELEPHONE_EVENT_PT: u8 = 101;

/// A receive-only G.711 audio offer on `ip:port`, codecs in order of preference.
pub fn offer(ip: IpAddr, port: u16, codecs: &[Codec], ptime_ms: u32, session_id: u64) -> String {
    let mut s = session_header(ip, session_id);
    s.push_str(&audio_section(port, codecs, ptime_ms));
    s
}

/// An MRCPv2 session offer (RFC 6787 §4.2): a new control channel for `resource`
/// (`a=setup:active`, `a=connection:new`, `a=cmid:1`) and the receive-only audio stream it
/// controls (`a=mid:1`), as UniMRCP's client sends it.
pub fn mrcp_offer(
    ip: IpAddr,
    port: u16,
    codecs: &[Codec],
    ptime_ms: u32,
    session_id: u64,
    resource: &str,
) -> String {
    let mut s = session_header(ip, session_id);
    s.push_str(&format!(
        "m=application 9 TCP/MRCPv2 1\r\n\
         a=setup:active\r\n\
         a=connection:new\r\n\
         a=resource:{resource}\r\n\
         a=cmid:1\r\n"
    ));
    s.push_str(&audio_section(port, codecs, ptime_ms));
    s.push_str("a=mid:1\r\n");
    s
}

fn session_header(ip: IpAddr, session_id: u64) -> String {
    let ip_ver = if ip.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\n\
         o=imss-client {session_id} 1 IN {ip_ver} {ip}\r\n\
         s=imss call\r\n\
         c=IN {ip_ver} {ip}\r\n\
         t=0 0\r\n"
    )
}

fn audio_section(port: u16, codecs: &[Codec], ptime_ms: u32) -> String {
    let mut fmts: Vec<String> = codecs
        .iter()
        .map(|c| c.payload_type().to_string())
        .collect();
    fmts.push(TELEPHONE_EVENT_PT.to_string());
    let mut s = format!("m=audio {port} RTP/AVP {}\r\n", fmts.join(" "));
    for c in codecs {
        s.push_str(&format!(
            "a=rtpmap:{} {}/8000\r\n",
            c.payload_type(),
            c.name()
        ));
    }
    s.push_str(&format!(
        "a=rtpmap:{TELEPHONE_EVENT_PT} telephone-event/8000\r\n\
         a=fmtp:{TELEPHONE_EVENT_PT} 0-16\r\n\
         a=ptime:{ptime_ms}\r\n\
         a=recvonly\r\n"
    ));
    s
}

/// The control channel the server granted in its answer (RFC 6787 §4.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlAnswer {
    /// Where to open the TCP control connection: the answer's `c=` address and the port of
    /// its `m=application` line.
    pub addr: SocketAddr,
    /// The `a=channel` identifier, e.g. `32AECB23433801@speechsynth`.
    pub channel: String,
}

/// Reads the control channel for `resource` from the SDP of a 200 OK.
pub fn read_control_answer(sdp: &str, resource: &str) -> Result<ControlAnswer, ClientError> {
    let bad = |d: String| ClientError::BadAnswer(d);
    let desc: SessionDescription = sdp.parse().map_err(|e| bad(format!("{e}")))?;
    let app = desc
        .media
        .iter()
        .find(|m| {
            m.media.eq_ignore_ascii_case("application")
                && m.proto.to_ascii_uppercase().ends_with("MRCPV2")
        })
        .ok_or_else(|| {
            bad("no MRCPv2 control channel (m=application ... TCP/MRCPv2) in the answer".into())
        })?;
    if app.port == 0 {
        return Err(bad(format!(
            "the server declined the {resource} resource (m=application port 0)"
        )));
    }
    if !app.proto.eq_ignore_ascii_case("TCP/MRCPv2") {
        return Err(bad(format!(
            "control channel over {} is not supported by this client (TCP/MRCPv2 only)",
            app.proto
        )));
    }
    let channel = app
        .attribute("channel")
        .flatten()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ClientError::MissingChannel {
            resource: resource.to_string(),
        })?;
    let granted = channel.rsplit_once('@').map(|(_, r)| r);
    if !granted.is_some_and(|r| r.eq_ignore_ascii_case(resource)) {
        return Err(bad(format!(
            "a=channel:{channel} is not a {resource} channel"
        )));
    }
    let ip = app
        .connection
        .as_ref()
        .or(desc.connection.as_ref())
        .and_then(|c| c.ip())
        .ok_or_else(|| bad("no usable c= address for the control channel".into()))?;
    Ok(ControlAnswer {
        addr: SocketAddr::new(ip, app.port),
        channel: channel.to_string(),
    })
}

/// What the client uses from the server's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The codec the server will send (the first G.711 format of the answer).
    pub codec: Codec,
    /// The answer's packet time (20 ms when it names none).
    pub ptime: Duration,
    /// The answer's direction (media level, else session level, else sendrecv).
    pub direction: Direction,
}

/// Reads the codec and ptime from the SDP of a 200 OK.
pub fn read_answer(sdp: &str, offered: &[Codec]) -> Result<Answer, ClientError> {
    let bad = |d: String| ClientError::BadAnswer(d);
    if sdp.trim().is_empty() {
        return Err(bad("the 200 OK has no SDP body".into()));
    }
    let desc: SessionDescription = sdp.parse().map_err(|e| bad(format!("{e}")))?;
    let audio = desc
        .media
        .iter()
        .find(|m| m.media.eq_ignore_ascii_case("audio") && m.port != 0)
        .ok_or_else(|| bad("no accepted audio stream (m=audio with a non-zero port)".into()))?;
    let codec = audio
        .formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .filter_map(Codec::from_payload_type)
        .find(|c| offered.contains(c))
        .ok_or_else(|| {
            bad(format!(
                "no offered codec in m=audio formats {:?}",
                audio.formats
            ))
        })?;
    let ptime_ms = audio
        .attribute("ptime")
        .or_else(|| desc.attribute("ptime"))
        .flatten()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| *v >= 1.0 && *v <= 1000.0)
        .unwrap_or(20.0);
    let direction = audio
        .direction()
        .or_else(|| desc.direction())
        .unwrap_or(Direction::SendRecv);
    Ok(Answer {
        codec,
        ptime: Duration::from_secs_f64(ptime_ms / 1000.0),
        direction,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_lists_codecs_in_order_and_is_recvonly() {
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let o = offer(ip, 40000, &[Codec::Pcma, Codec::Pcmu], 30, 42);
        let d: SessionDescription = o.parse().expect("valid SDP");
        let m = &d.media[0];
        assert_eq!(m.port, 40000);
        assert_eq!(m.formats, vec!["8", "0", "101"]);
        assert_eq!(m.direction(), Some(Direction::RecvOnly));
        assert_eq!(m.attribute("ptime"), Some(Some("30")));
        assert_eq!(
            m.rtpmap(101).map(|r| r.encoding),
            Some("telephone-event".into())
        );
        assert!(o.contains("c=IN IP4 127.0.0.1\r\n"));
        let v6 = offer("::1".parse().expect("ip"), 40002, &[Codec::Pcmu], 20, 1);
        assert!(v6.contains("c=IN IP6 ::1\r\n"));
    }

    #[test]
    fn mrcp_offer_has_the_control_channel_and_the_audio_it_controls() {
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let o = mrcp_offer(ip, 40000, &[Codec::Pcmu, Codec::Pcma], 20, 7, "speechsynth");
        let d: SessionDescription = o.parse().expect("valid SDP");
        assert_eq!(d.media.len(), 2);
        let app = &d.media[0];
        assert_eq!(
            (app.media.as_str(), app.port, app.proto.as_str()),
            ("application", 9, "TCP/MRCPv2")
        );
        assert_eq!(app.formats, vec!["1"]);
        for (name, value) in [
            ("setup", "active"),
            ("connection", "new"),
            ("resource", "speechsynth"),
            ("cmid", "1"),
        ] {
            assert_eq!(app.attribute(name), Some(Some(value)), "a={name}");
        }
        let audio = &d.media[1];
        assert_eq!(audio.port, 40000);
        assert_eq!(audio.formats, vec!["0", "8", "101"]);
        assert_eq!(audio.direction(), Some(Direction::RecvOnly));
        assert_eq!(audio.attribute("mid"), Some(Some("1")));
    }

    const UNIMRCP_ANSWER: &str = "v=0\r\no=UniMRCPServer 1 2 IN IP4 192.0.2.2\r\ns=-\r\n\
        c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=application 1544 TCP/MRCPv2 1\r\na=setup:passive\r\n\
        a=connection:new\r\na=channel:bec57cd70a2f4130@speechsynth\r\na=cmid:1\r\n\
        m=audio 5000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=sendonly\r\na=ptime:20\r\na=mid:1\r\n";

    #[test]
    fn control_answer_of_unimrcp_server() {
        let c = read_control_answer(UNIMRCP_ANSWER, "speechsynth").expect("answer");
        assert_eq!(
            c.addr,
            "127.0.0.1:1544".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(c.channel, "bec57cd70a2f4130@speechsynth");
        let audio = read_answer(UNIMRCP_ANSWER, &[Codec::Pcmu]).expect("audio");
        assert_eq!(audio.direction, Direction::SendOnly);
    }

    #[test]
    fn control_answers_that_cannot_be_used() {
        let no_channel = UNIMRCP_ANSWER.replace("a=channel:bec57cd70a2f4130@speechsynth\r\n", "");
        assert!(matches!(
            read_control_answer(&no_channel, "speechsynth"),
            Err(ClientError::MissingChannel { .. })
        ));
        let declined = UNIMRCP_ANSWER.replace("m=application 1544", "m=application 0");
        let e = read_control_answer(&declined, "speechsynth").expect_err("port 0");
        assert!(e.to_string().contains("declined"), "{e}");
        let other = read_control_answer(UNIMRCP_ANSWER, "basicsynth").expect_err("resource");
        assert!(other.to_string().contains("basicsynth"), "{other}");
        let tls = UNIMRCP_ANSWER.replace("TCP/MRCPv2", "TCP/TLS/MRCPv2");
        assert!(read_control_answer(&tls, "speechsynth").is_err());
        let plain = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                     m=audio 20000 RTP/AVP 0\r\n";
        assert!(read_control_answer(plain, "speechsynth").is_err());
    }

    #[test]
    fn answer_codec_and_ptime() {
        let a = "v=0\r\no=imss 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio 20000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=ptime:30\r\na=sendonly\r\n";
        let ans = read_answer(a, &[Codec::Pcmu, Codec::Pcma]).expect("answer");
        assert_eq!(ans.codec, Codec::Pcma);
        assert_eq!(ans.ptime, Duration::from_millis(30));
        assert_eq!(ans.direction, Direction::SendOnly);
    }

    #[test]
    fn answer_without_ptime_defaults_to_20ms() {
        let a = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                 m=audio 20000 RTP/AVP 0\r\n";
        let ans = read_answer(a, &[Codec::Pcmu]).expect("answer");
        assert_eq!(
            (ans.codec, ans.ptime),
            (Codec::Pcmu, Duration::from_millis(20))
        );
    }

    #[test]
    fn unusable_answers_are_errors() {
        let rejected = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n";
        assert!(read_answer(rejected, &[Codec::Pcmu]).is_err());
        let other = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 RTP/AVP 8\r\n";
        assert!(
            read_answer(other, &[Codec::Pcmu]).is_err(),
            "PCMA was not offered"
        );
        assert!(read_answer("", &[Codec::Pcmu]).is_err());
        assert!(read_answer("garbage", &[Codec::Pcmu]).is_err());
    }
}
