//! RTCP for a sending-only endpoint (RFC 3550 §6): sender reports compounded with SDES CNAME,
//! BYE, a receiver-report parser, and the §6.3 / appendix A.7 transmission interval.
//!
//! Sans-IO: builders write into caller buffers (no allocation, so the pacing threads can use
//! them), the parser borrows the datagram, and the interval timer takes the current time and
//! a random source as inputs.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;

/// RTCP packet type: sender report.
pub const PT_SR: u8 = 200;
/// RTCP packet type: receiver report.
pub const PT_RR: u8 = 201;
/// RTCP packet type: source description.
pub const PT_SDES: u8 = 202;
/// RTCP packet type: goodbye.
pub const PT_BYE: u8 = 203;

/// Minimum interval between reports (RFC 3550 §6.2), halved for the first report.
pub const MIN_INTERVAL: Duration = Duration::from_secs(5);
/// Fraction of the session bandwidth RTCP may use (RFC 3550 §6.2).
pub const BANDWIDTH_FRACTION: f64 = 0.05;
/// Share of the RTCP bandwidth reserved for senders when they are few (RFC 3550 §6.2).
pub const SENDER_BANDWIDTH_FRACTION: f64 = 0.25;
/// Divisor that compensates timer reconsideration (RFC 3550 §6.3.1): e − 3/2.
pub const COMPENSATION: f64 = std::f64::consts::E - 1.5;
/// IPv4 + UDP header octets, counted in the average RTCP packet size (RFC 3550 §6.3.1).
pub const LOWER_LAYER_OVERHEAD: usize = 28;

/// Largest compound packet the builders produce: SR + SDES (255-octet CNAME) + BYE with a
/// 255-octet reason.
pub const MAX_COMPOUND_LEN: usize = 28 + 264 + 268;

const SDES_CNAME: u8 = 1;
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// What went wrong building or parsing RTCP.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum RtcpError {
    /// The output buffer cannot hold the packet.
    #[error("RTCP buffer too small: {needed} octets needed, {available} available")]
    BufferTooSmall {
        /// Octets the packet needs.
        needed: usize,
        /// Octets the buffer has.
        available: usize,
    },
    /// SDES items carry at most 255 octets.
    #[error("RTCP CNAME is {len} octets long, the limit is 255")]
    CnameTooLong {
        /// CNAME length.
        len: usize,
    },
    /// A BYE reason carries at most 255 octets.
    #[error("RTCP BYE reason is {len} octets long, the limit is 255")]
    ReasonTooLong {
        /// Reason length.
        len: usize,
    },
    /// Datagram ends inside a packet.
    #[error("RTCP packet truncated")]
    Truncated,
    /// Version field other than 2.
    #[error("RTCP version {version}, expected 2")]
    Version {
        /// Version found.
        version: u8,
    },
    /// A report count that does not fit the packet length.
    #[error("RTCP {packet_type} packet announces {count} report blocks but is {len} octets long")]
    ReportCount {
        /// Packet type.
        packet_type: u8,
        /// Report blocks announced.
        count: u8,
        /// Packet length in octets.
        len: usize,
    },
}

/// A 64-bit NTP timestamp: seconds since 1900 in the high word, fraction in the low word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NtpTime(pub u64);

impl NtpTime {
    /// Converts wall-clock time (times before 1970 map to the Unix epoch).
    pub fn from_system_time(t: SystemTime) -> NtpTime {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs().wrapping_add(NTP_UNIX_OFFSET);
        let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
        NtpTime((secs << 32) | frac)
    }

    /// The middle 32 bits, as echoed in a receiver's LSR field.
    pub fn middle(self) -> u32 {
        (self.0 >> 16) as u32
    }
}

/// The sender-info section of an SR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderInfo {
    /// Wall-clock time of the report.
    pub ntp: NtpTime,
    /// The RTP timestamp corresponding to `ntp` on the media clock.
    pub rtp_timestamp: u32,
    /// Packets sent since the stream started (wraps).
    pub packet_count: u32,
    /// Payload octets sent since the stream started (wraps).
    pub octet_count: u32,
}

fn check_room(buf: &[u8], needed: usize) -> Result<(), RtcpError> {
    if buf.len() < needed {
        return Err(RtcpError::BufferTooSmall {
            needed,
            available: buf.len(),
        });
    }
    Ok(())
}

fn put_header(buf: &mut [u8], count: u8, packet_type: u8, len: usize) {
    buf[0] = 0x80 | (count & 0x1f);
    buf[1] = packet_type;
    let words = (len / 4 - 1) as u16;
    buf[2..4].copy_from_slice(&words.to_be_bytes());
}

fn sr_len() -> usize {
    28
}

fn sdes_len(cname: &str) -> usize {
    // header 4 + SSRC 4 + type 1 + length 1 + text, then at least one END octet, padded to 4.
    (4 + 4 + 2 + cname.len() + 1).div_ceil(4) * 4
}

fn bye_len(reason: Option<&str>) -> usize {
    8 + reason.map_or(0, |r| (1 + r.len()).div_ceil(4) * 4)
}

fn write_sr(buf: &mut [u8], ssrc: u32, info: &SenderInfo) -> usize {
    put_header(buf, 0, PT_SR, 28);
    buf[4..8].copy_from_slice(&ssrc.to_be_bytes());
    buf[8..16].copy_from_slice(&info.ntp.0.to_be_bytes());
    buf[16..20].copy_from_slice(&info.rtp_timestamp.to_be_bytes());
    buf[20..24].copy_from_slice(&info.packet_count.to_be_bytes());
    buf[24..28].copy_from_slice(&info.octet_count.to_be_bytes());
    28
}

fn write_empty_rr(buf: &mut [u8], ssrc: u32) -> usize {
    put_header(buf, 0, PT_RR, 8);
    buf[4..8].copy_from_slice(&ssrc.to_be_bytes());
    8
}

fn write_sdes(buf: &mut [u8], ssrc: u32, cname: &str) -> usize {
    let len = sdes_len(cname);
    put_header(buf, 1, PT_SDES, len);
    buf[4..8].copy_from_slice(&ssrc.to_be_bytes());
    buf[8] = SDES_CNAME;
    buf[9] = cname.len() as u8;
    buf[10..10 + cname.len()].copy_from_slice(cname.as_bytes());
    buf[10 + cname.len()..len].fill(0); // END item and padding
    len
}

fn write_bye_packet(buf: &mut [u8], ssrc: u32, reason: Option<&str>) -> usize {
    let len = bye_len(reason);
    put_header(buf, 1, PT_BYE, len);
    buf[4..8].copy_from_slice(&ssrc.to_be_bytes());
    if let Some(r) = reason {
        buf[8] = r.len() as u8;
        buf[9..9 + r.len()].copy_from_slice(r.as_bytes());
        buf[9 + r.len()..len].fill(0);
    }
    len
}

fn check_cname(cname: &str) -> Result<(), RtcpError> {
    if cname.len() > 255 {
        return Err(RtcpError::CnameTooLong { len: cname.len() });
    }
    Ok(())
}

/// Writes a compound SR (no report blocks: this endpoint receives no media) + SDES CNAME.
/// Returns the length written.
pub fn write_sender_report(
    buf: &mut [u8],
    ssrc: u32,
    info: &SenderInfo,
    cname: &str,
) -> Result<usize, RtcpError> {
    check_cname(cname)?;
    check_room(buf, sr_len() + sdes_len(cname))?;
    let n = write_sr(buf, ssrc, info);
    Ok(n + write_sdes(&mut buf[n..], ssrc, cname))
}

/// Writes a compound empty RR + SDES CNAME, the report of an interval in which nothing was
/// sent (RFC 3550 §6.4: SR only if data was sent since the last-but-one report).
pub fn write_receiver_report(buf: &mut [u8], ssrc: u32, cname: &str) -> Result<usize, RtcpError> {
    check_cname(cname)?;
    check_room(buf, 8 + sdes_len(cname))?;
    let n = write_empty_rr(buf, ssrc);
    Ok(n + write_sdes(&mut buf[n..], ssrc, cname))
}

/// Writes a compound SR (or empty RR when `info` is `None`) + SDES CNAME + BYE.
///
/// The SDES is included because RFC 3550 §6.1 requires a CNAME in every compound packet.
pub fn write_bye(
    buf: &mut [u8],
    ssrc: u32,
    info: Option<&SenderInfo>,
    cname: &str,
    reason: Option<&str>,
) -> Result<usize, RtcpError> {
    check_cname(cname)?;
    if let Some(r) = reason
        && r.len() > 255
    {
        return Err(RtcpError::ReasonTooLong { len: r.len() });
    }
    let report = if info.is_some() { sr_len() } else { 8 };
    check_room(buf, report + sdes_len(cname) + bye_len(reason))?;
    let mut n = match info {
        Some(info) => write_sr(buf, ssrc, info),
        None => write_empty_rr(buf, ssrc),
    };
    n += write_sdes(&mut buf[n..], ssrc, cname);
    n += write_bye_packet(&mut buf[n..], ssrc, reason);
    Ok(n)
}

/// One reception report block (RFC 3550 §6.4.1), as a receiver reports on our stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportBlock {
    /// The source reported on (our SSRC when it is about our stream).
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed; duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR received.
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    fn parse(b: &[u8]) -> ReportBlock {
        let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        // Sign-extend the 24-bit cumulative count.
        let cumulative_lost = (i32::from_be_bytes([b[5], b[6], b[7], 0])) >> 8;
        ReportBlock {
            ssrc: word(0),
            fraction_lost: b[4],
            cumulative_lost,
            highest_seq: word(8),
            jitter: word(12),
            last_sr: word(16),
            delay_since_last_sr: word(20),
        }
    }

    /// Fraction lost as a ratio in [0, 1).
    pub fn loss_ratio(&self) -> f64 {
        f64::from(self.fraction_lost) / 256.0
    }

    /// Jitter as a duration, given the media clock rate (8000 for G.711).
    pub fn jitter_duration(&self, clock_rate: u32) -> Duration {
        Duration::from_secs_f64(f64::from(self.jitter) / f64::from(clock_rate.max(1)))
    }
}

/// The report blocks of an SR or RR.
#[derive(Clone, Debug)]
pub struct ReportBlocks<'a> {
    rest: &'a [u8],
}

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;
    fn next(&mut self) -> Option<ReportBlock> {
        if self.rest.len() < 24 {
            return None;
        }
        let (block, rest) = self.rest.split_at(24);
        self.rest = rest;
        Some(ReportBlock::parse(block))
    }
}

/// One packet of a compound RTCP datagram.
#[derive(Clone, Debug)]
pub enum RtcpPacket<'a> {
    /// SR: sender info and report blocks.
    SenderReport {
        /// Sender's SSRC.
        ssrc: u32,
        /// Sender info.
        info: SenderInfo,
        /// Reception reports.
        blocks: ReportBlocks<'a>,
    },
    /// RR: report blocks.
    ReceiverReport {
        /// Reporter's SSRC.
        ssrc: u32,
        /// Reception reports.
        blocks: ReportBlocks<'a>,
    },
    /// BYE: the sources leaving (first SSRC only; 0 when the count is zero).
    Goodbye {
        /// First SSRC listed.
        ssrc: u32,
    },
    /// SDES, APP, feedback or anything else; not interpreted here.
    Other {
        /// Packet type.
        packet_type: u8,
    },
}

/// Iterates over the packets of a compound RTCP datagram.
#[derive(Clone, Debug)]
pub struct CompoundPackets<'a> {
    rest: &'a [u8],
}

/// Parses a compound RTCP datagram lazily; stops at the first malformed packet.
pub fn parse_compound(buf: &[u8]) -> CompoundPackets<'_> {
    CompoundPackets { rest: buf }
}

impl<'a> Iterator for CompoundPackets<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let result = self.parse_one();
        if result.is_err() {
            self.rest = &[];
        }
        Some(result)
    }
}

impl<'a> CompoundPackets<'a> {
    fn parse_one(&mut self) -> Result<RtcpPacket<'a>, RtcpError> {
        let buf = self.rest;
        if buf.len() < 4 {
            return Err(RtcpError::Truncated);
        }
        let version = buf[0] >> 6;
        if version != 2 {
            return Err(RtcpError::Version { version });
        }
        let count = buf[0] & 0x1f;
        let packet_type = buf[1];
        let len = (usize::from(u16::from_be_bytes([buf[2], buf[3]])) + 1) * 4;
        let packet = buf.get(..len).ok_or(RtcpError::Truncated)?;
        self.rest = &buf[len..];
        let mut body_end = len;
        if buf[0] & 0x20 != 0 {
            body_end = body_end.saturating_sub(usize::from(packet[len - 1]));
        }
        let body = &packet[..body_end];
        let word = |i: usize| u32::from_be_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
        let blocks_at = |start: usize| -> Result<ReportBlocks<'a>, RtcpError> {
            let end = start + 24 * usize::from(count);
            if end > body.len() {
                return Err(RtcpError::ReportCount {
                    packet_type,
                    count,
                    len,
                });
            }
            Ok(ReportBlocks {
                rest: &packet[start..end],
            })
        };
        match packet_type {
            PT_SR => {
                if body.len() < 28 {
                    return Err(RtcpError::Truncated);
                }
                Ok(RtcpPacket::SenderReport {
                    ssrc: word(4),
                    info: SenderInfo {
                        ntp: NtpTime((u64::from(word(8)) << 32) | u64::from(word(12))),
                        rtp_timestamp: word(16),
                        packet_count: word(20),
                        octet_count: word(24),
                    },
                    blocks: blocks_at(28)?,
                })
            }
            PT_RR => {
                if body.len() < 8 {
                    return Err(RtcpError::Truncated);
                }
                Ok(RtcpPacket::ReceiverReport {
                    ssrc: word(4),
                    blocks: blocks_at(8)?,
                })
            }
            PT_BYE => Ok(RtcpPacket::Goodbye {
                ssrc: if count > 0 && body.len() >= 8 {
                    word(4)
                } else {
                    0
                },
            }),
            _ => Ok(RtcpPacket::Other { packet_type }),
        }
    }
}

/// The first report block about `ssrc` in a compound datagram, from an SR or RR.
pub fn find_report(buf: &[u8], ssrc: u32) -> Option<ReportBlock> {
    parse_compound(buf)
        .map_while(Result::ok)
        .find_map(|packet| match packet {
            RtcpPacket::SenderReport { mut blocks, .. }
            | RtcpPacket::ReceiverReport { mut blocks, .. } => blocks.find(|b| b.ssrc == ssrc),
            _ => None,
        })
}

/// Session bandwidth in octets per second of one G.711 stream, lower layers included
/// (RTP 12 + UDP 8 + IPv4 20 octets per packet), the base of the 5% rule.
pub fn g711_session_bandwidth(ptime: Duration) -> f64 {
    let secs = ptime.as_secs_f64().max(0.001);
    let payload = secs * 8000.0;
    (payload + 12.0 + LOWER_LAYER_OVERHEAD as f64) / secs
}

/// The inputs of RFC 3550 appendix A.7 `rtcp_interval()`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IntervalInputs {
    /// Session members, this endpoint included.
    pub members: u32,
    /// Members that sent data recently, this endpoint included.
    pub senders: u32,
    /// RTCP bandwidth in octets per second (5% of the session bandwidth).
    pub rtcp_bandwidth: f64,
    /// Whether this endpoint sent data since the last-but-one report.
    pub we_sent: bool,
    /// Average compound RTCP packet size in octets, lower layers included.
    pub avg_rtcp_size: f64,
    /// Whether no report has been sent yet (halves the minimum).
    pub initial: bool,
}

/// The deterministic interval Td of RFC 3550 §6.3.1: the bandwidth share, floored at the
/// 5 s minimum (2.5 s before the first report).
pub fn deterministic_interval(i: &IntervalInputs) -> Duration {
    let min = if i.initial {
        MIN_INTERVAL.as_secs_f64() / 2.0
    } else {
        MIN_INTERVAL.as_secs_f64()
    };
    let mut bandwidth = i.rtcp_bandwidth;
    let mut n = f64::from(i.members.max(1));
    if f64::from(i.senders) <= f64::from(i.members) * SENDER_BANDWIDTH_FRACTION {
        if i.we_sent {
            bandwidth *= SENDER_BANDWIDTH_FRACTION;
            n = f64::from(i.senders.max(1));
        } else {
            bandwidth *= 1.0 - SENDER_BANDWIDTH_FRACTION;
            n = f64::from(i.members.saturating_sub(i.senders).max(1));
        }
    }
    let t = if bandwidth > 0.0 {
        i.avg_rtcp_size * n / bandwidth
    } else {
        min
    };
    Duration::from_secs_f64(if t.is_finite() { t.max(min) } else { min })
}

/// The randomised interval: Td × `u`∈[0.5, 1.5) ÷ (e − 3/2), with `u` drawn by the caller
/// (pass `0.5 + rng.gen::<f64>()`). Values of `u` outside the range are clamped.
pub fn randomized_interval(i: &IntervalInputs, u: f64) -> Duration {
    let u = if u.is_finite() {
        u.clamp(0.5, 1.5)
    } else {
        1.0
    };
    deterministic_interval(i).mul_f64(u / COMPENSATION)
}

/// When to send the next compound report of one stream: RFC 3550 §6.3 with timer
/// reconsideration (A.7 `OnExpire`), for an endpoint that sends and never receives media.
///
/// Run loop: wait until [`RtcpTimer::poll_timeout`]; call [`RtcpTimer::handle_timeout`]; when
/// it returns true, send a report and call [`RtcpTimer::on_sent`] with its size.
#[derive(Clone, Debug)]
pub struct RtcpTimer {
    last_sent: Instant,
    next: Instant,
    avg_rtcp_size: f64,
    rtcp_bandwidth: f64,
    members: u32,
    senders: u32,
    we_sent: bool,
    initial: bool,
}

impl RtcpTimer {
    /// A timer for a session of `session_bandwidth` octets/s starting at `now`. Members start
    /// at two (us and the party in the SDP) with one sender (us).
    pub fn new(now: Instant, session_bandwidth: f64, rng: &mut impl Rng) -> RtcpTimer {
        let mut timer = RtcpTimer {
            last_sent: now,
            next: now,
            // A first guess: SR 28 + SDES with a ~20-octet CNAME + lower layers.
            avg_rtcp_size: 88.0,
            rtcp_bandwidth: session_bandwidth * BANDWIDTH_FRACTION,
            members: 2,
            senders: 1,
            we_sent: true,
            initial: true,
        };
        timer.next = now + timer.interval(rng);
        timer
    }

    fn inputs(&self) -> IntervalInputs {
        IntervalInputs {
            members: self.members,
            senders: self.senders,
            rtcp_bandwidth: self.rtcp_bandwidth,
            we_sent: self.we_sent,
            avg_rtcp_size: self.avg_rtcp_size,
            initial: self.initial,
        }
    }

    fn interval(&self, rng: &mut impl Rng) -> Duration {
        randomized_interval(&self.inputs(), 0.5 + rng.r#gen::<f64>())
    }

    /// When the timer next expires.
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        self.next
    }

    /// At or after expiry: true when a report is due now; otherwise the timer was pushed back
    /// (reconsideration found the recomputed interval not yet elapsed).
    pub fn handle_timeout(&mut self, now: Instant, rng: &mut impl Rng) -> bool {
        if now < self.next {
            return false;
        }
        let candidate = self.last_sent + self.interval(rng);
        if candidate <= now {
            true
        } else {
            self.next = candidate;
            false
        }
    }

    /// Records a report of `size` octets (RTCP only; lower layers are added here) sent at
    /// `now` and schedules the next one.
    pub fn on_sent(&mut self, now: Instant, size: usize, rng: &mut impl Rng) {
        let size = (size + LOWER_LAYER_OVERHEAD) as f64;
        self.avg_rtcp_size = size / 16.0 + self.avg_rtcp_size * 15.0 / 16.0;
        self.initial = false;
        self.last_sent = now;
        self.next = now + self.interval(rng);
    }

    /// Whether data was sent in the current reporting interval (an SR rather than an RR).
    pub fn set_we_sent(&mut self, we_sent: bool) {
        self.we_sent = we_sent;
        self.senders = u32::from(we_sent);
    }

    /// Changes the session bandwidth (after a ptime change).
    pub fn set_session_bandwidth(&mut self, session_bandwidth: f64) {
        self.rtcp_bandwidth = session_bandwidth * BANDWIDTH_FRACTION;
    }

    /// The current average compound packet size, lower layers included.
    pub fn avg_rtcp_size(&self) -> f64 {
        self.avg_rtcp_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn info() -> SenderInfo {
        SenderInfo {
            ntp: NtpTime(0x1122_3344_5566_7788),
            rtp_timestamp: 0xaabb_ccdd,
            packet_count: 50,
            octet_count: 8000,
        }
    }

    #[test]
    fn sender_report_byte_layout() {
        let mut buf = [0u8; 128];
        let n = write_sender_report(&mut buf, 0x0102_0304, &info(), "ab").unwrap_or(0);
        // SR: 28 octets; SDES: 4 + 4 + 2 + 2 + END 1 → 13 padded to 16.
        assert_eq!(n, 44);
        assert_eq!(
            &buf[..28],
            &[
                0x80, 200, 0, 6, // V=2 RC=0, PT=SR, length 6 words
                1, 2, 3, 4, // SSRC
                0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, // NTP
                0xaa, 0xbb, 0xcc, 0xdd, // RTP timestamp
                0, 0, 0, 50, // packets
                0, 0, 0x1f, 0x40, // octets
            ]
        );
        assert_eq!(
            &buf[28..44],
            &[0x81, 202, 0, 3, 1, 2, 3, 4, 1, 2, b'a', b'b', 0, 0, 0, 0]
        );
    }

    #[test]
    fn sdes_always_has_an_end_octet() {
        // CNAME of 2 fills 8+2+2 = 12 exactly; END needs a new word.
        assert_eq!(sdes_len("ab"), 16);
        assert_eq!(sdes_len("a"), 12);
        assert_eq!(sdes_len(""), 12);
        let mut buf = [0xffu8; 64];
        let n = write_receiver_report(&mut buf, 9, "a").unwrap_or(0);
        assert_eq!(n, 20);
        assert_eq!(&buf[..8], &[0x80, 201, 0, 1, 0, 0, 0, 9]);
        assert_eq!(&buf[8..20], &[0x81, 202, 0, 2, 0, 0, 0, 9, 1, 1, b'a', 0]);
    }

    #[test]
    fn bye_is_compound_sr_sdes_bye() {
        let mut buf = [0u8; 256];
        let n = write_bye(&mut buf, 7, Some(&info()), "host", Some("bye")).unwrap_or(0);
        // 28 + SDES(4+4+2+4+1 → 16) + BYE(8 + 4)
        assert_eq!(n, 28 + 16 + 12);
        assert_eq!(
            &buf[44..56],
            &[0x81, 203, 0, 2, 0, 0, 0, 7, 3, b'b', b'y', b'e']
        );
        let types: Vec<u8> = parse_compound(&buf[..n])
            .filter_map(Result::ok)
            .map(|p| match p {
                RtcpPacket::SenderReport { .. } => PT_SR,
                RtcpPacket::ReceiverReport { .. } => PT_RR,
                RtcpPacket::Goodbye { ssrc } => {
                    assert_eq!(ssrc, 7);
                    PT_BYE
                }
                RtcpPacket::Other { packet_type } => packet_type,
            })
            .collect();
        assert_eq!(types, vec![PT_SR, PT_SDES, PT_BYE]);
        let n = write_bye(&mut buf, 7, None, "host", None).unwrap_or(0);
        assert_eq!(n, 8 + 16 + 8);
        assert_eq!(&buf[24..32], &[0x81, 203, 0, 1, 0, 0, 0, 7]);
    }

    #[test]
    fn builders_check_sizes() {
        let mut small = [0u8; 40];
        assert_eq!(
            write_sender_report(&mut small, 1, &info(), "ab"),
            Err(RtcpError::BufferTooSmall {
                needed: 44,
                available: 40
            })
        );
        let long = "x".repeat(256);
        let mut buf = [0u8; MAX_COMPOUND_LEN];
        assert_eq!(
            write_sender_report(&mut buf, 1, &info(), &long),
            Err(RtcpError::CnameTooLong { len: 256 })
        );
        let max = "x".repeat(255);
        let n = write_bye(&mut buf, 1, Some(&info()), &max, Some(&max));
        assert_eq!(n, Ok(MAX_COMPOUND_LEN));
    }

    #[test]
    fn parses_receiver_report_block() {
        let rr: [u8; 32] = [
            0x81, 201, 0, 7, // RR, RC=1, 8 words
            0, 0, 0, 0x42, // reporter
            0xde, 0xad, 0xbe, 0xef, // about SSRC
            64, 0xff, 0xff, 0xfe, // 25% lost; cumulative -2
            0, 1, 0, 10, // highest seq
            0, 0, 0, 80, // jitter 80 ts units = 10 ms
            0x33, 0x44, 0x55, 0x66, // LSR
            0, 1, 0, 0, // DLSR 1 s
        ];
        let block = find_report(&rr, 0xdead_beef);
        let Some(block) = block else {
            panic!("no report block parsed");
        };
        assert_eq!(block.fraction_lost, 64);
        assert!((block.loss_ratio() - 0.25).abs() < 1e-9);
        assert_eq!(block.cumulative_lost, -2);
        assert_eq!(block.highest_seq, 65_546);
        assert_eq!(block.jitter_duration(8000), Duration::from_millis(10));
        assert_eq!(block.last_sr, 0x3344_5566);
        assert_eq!(block.delay_since_last_sr, 65_536);
        assert!(find_report(&rr, 1).is_none());

        let mut positive = rr;
        positive[13..16].copy_from_slice(&[0x01, 0x00, 0x00]);
        assert_eq!(
            find_report(&positive, 0xdead_beef).map(|b| b.cumulative_lost),
            Some(65_536)
        );
    }

    #[test]
    fn parser_rejects_malformed() {
        let mut rr = [0u8; 8];
        rr[0] = 0x81; // claims one block, has none
        rr[1] = PT_RR;
        rr[3] = 1;
        assert!(matches!(
            parse_compound(&rr).next(),
            Some(Err(RtcpError::ReportCount { count: 1, .. }))
        ));
        rr[3] = 9; // length beyond buffer
        assert_eq!(
            parse_compound(&rr).next().map(|r| r.err()),
            Some(Some(RtcpError::Truncated))
        );
        rr[0] = 0x40;
        assert_eq!(
            parse_compound(&rr).next().map(|r| r.err()),
            Some(Some(RtcpError::Version { version: 1 }))
        );
        assert!(
            parse_compound(&[0x80, 201])
                .next()
                .is_some_and(|r| r.is_err())
        );
    }

    #[test]
    fn sender_report_roundtrip() {
        let mut buf = [0u8; 64];
        let n = write_sender_report(&mut buf, 5, &info(), "c").unwrap_or(0);
        let first = parse_compound(&buf[..n]).next();
        match first {
            Some(Ok(RtcpPacket::SenderReport {
                ssrc,
                info: got,
                blocks,
            })) => {
                assert_eq!(ssrc, 5);
                assert_eq!(got, info());
                assert_eq!(blocks.count(), 0);
            }
            other => panic!("expected SR, got {other:?}"),
        }
    }

    #[test]
    fn ntp_conversion() {
        let t = UNIX_EPOCH + Duration::from_millis(1_500);
        let ntp = NtpTime::from_system_time(t);
        assert_eq!(ntp.0 >> 32, NTP_UNIX_OFFSET + 1);
        assert_eq!(ntp.0 & 0xffff_ffff, 1 << 31);
        assert_eq!(
            ntp.middle(),
            (((NTP_UNIX_OFFSET + 1) as u32) << 16) | 0x8000
        );
    }

    fn g711_inputs(initial: bool) -> IntervalInputs {
        IntervalInputs {
            members: 2,
            senders: 1,
            rtcp_bandwidth: g711_session_bandwidth(Duration::from_millis(20)) * BANDWIDTH_FRACTION,
            we_sent: true,
            avg_rtcp_size: 100.0,
            initial,
        }
    }

    #[test]
    fn g711_bandwidth_and_minimum() {
        let bw = g711_session_bandwidth(Duration::from_millis(20));
        assert!((bw - 10_000.0).abs() < 1e-6, "{bw}");
        assert_eq!(deterministic_interval(&g711_inputs(false)), MIN_INTERVAL);
        assert_eq!(
            deterministic_interval(&g711_inputs(true)),
            Duration::from_millis(2500)
        );
    }

    #[test]
    fn interval_follows_bandwidth_when_above_minimum() {
        // 100 members, 1 sender (≤ 25%): we_sent → n = 1 over a quarter of the bandwidth.
        let mut i = IntervalInputs {
            members: 100,
            senders: 1,
            rtcp_bandwidth: 10.0,
            we_sent: true,
            avg_rtcp_size: 100.0,
            initial: false,
        };
        assert_eq!(deterministic_interval(&i), Duration::from_secs(40));
        i.we_sent = false; // receivers: 99 over three quarters
        assert_eq!(deterministic_interval(&i), Duration::from_secs(1320));
        i.senders = 50; // more than 25% senders: everyone shares, n = members
        assert_eq!(deterministic_interval(&i), Duration::from_secs(1000));
        i.rtcp_bandwidth = 0.0;
        assert_eq!(deterministic_interval(&i), MIN_INTERVAL);
    }

    #[test]
    fn randomized_interval_bounds() {
        let i = g711_inputs(false);
        let lo = randomized_interval(&i, 0.5);
        let hi = randomized_interval(&i, 1.5);
        assert!((lo.as_secs_f64() - 2.5 / COMPENSATION).abs() < 1e-6);
        assert!((hi.as_secs_f64() - 7.5 / COMPENSATION).abs() < 1e-6);
        assert_eq!(randomized_interval(&i, 9.0), hi);
        assert_eq!(
            randomized_interval(&i, f64::NAN),
            randomized_interval(&i, 1.0)
        );
        let mut rng = StdRng::seed_from_u64(1);
        let mut sum = 0.0;
        for _ in 0..1000 {
            let t = randomized_interval(&i, 0.5 + rng.r#gen::<f64>());
            assert!(t >= lo && t <= hi);
            sum += t.as_secs_f64();
        }
        // Mean of 5 s × U(0.5,1.5) / 1.21828 ≈ 4.10 s.
        let mean = sum / 1000.0;
        assert!((mean - 5.0 / COMPENSATION).abs() < 0.15, "{mean}");
    }

    #[test]
    fn timer_schedules_within_bounds() {
        let mut rng = StdRng::seed_from_u64(7);
        let t0 = Instant::now();
        let mut timer = RtcpTimer::new(
            t0,
            g711_session_bandwidth(Duration::from_millis(20)),
            &mut rng,
        );
        let first = timer.poll_timeout() - t0;
        // Initial: 2.5 s × [0.5, 1.5) / 1.218.
        assert!(
            first >= Duration::from_secs_f64(1.25 / COMPENSATION),
            "{first:?}"
        );
        assert!(
            first <= Duration::from_secs_f64(3.75 / COMPENSATION),
            "{first:?}"
        );
        assert!(
            !timer.handle_timeout(t0 + first / 2, &mut rng),
            "not expired yet"
        );

        let mut now = t0;
        let mut sends = 0;
        // Drive one simulated hour; every gap between reports must be in [2.05 s, 6.16 s].
        let mut last_send = t0;
        while now < t0 + Duration::from_secs(3600) {
            now = timer.poll_timeout();
            if timer.handle_timeout(now, &mut rng) {
                if sends > 0 {
                    let gap = now - last_send;
                    assert!(
                        gap >= Duration::from_secs_f64(2.5 / COMPENSATION),
                        "{gap:?}"
                    );
                    assert!(
                        gap <= Duration::from_secs_f64(7.5 / COMPENSATION),
                        "{gap:?}"
                    );
                }
                timer.on_sent(now, 40, &mut rng);
                last_send = now;
                sends += 1;
            }
        }
        // Mean gap ≈ 4.1 s (reconsideration lengthens it slightly): ~700–900 reports an hour.
        assert!((650..=950).contains(&sends), "{sends}");
        // The running average converged from its 88-octet guess to 40 + 28.
        assert!(
            (timer.avg_rtcp_size() - 68.0).abs() < 0.5,
            "{}",
            timer.avg_rtcp_size()
        );
    }
}
