//! RTP data packets (RFC 3550 §5.1): the packetiser a sender drives, and a header parser.

/// Length of an RTP fixed header without CSRCs or extension.
pub const HEADER_LEN: usize = 12;

/// Builds the RTP packets of one outgoing stream (one SSRC).
///
/// SSRC, first sequence number and first timestamp are random, as RFC 3550 §5.1 asks, so that
/// a receiver can tell a new stream from an old one and known-plaintext attacks on SRTP get
/// no help. The timestamp advances by the payload's sample count; for G.711 one octet is one
/// sample at 8 kHz.
#[derive(Clone, Debug)]
pub struct Packetizer {
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    payload_type: u8,
    packets: u64,
    octets: u64,
}

impl Packetizer {
    /// A packetiser with random SSRC, initial sequence number and initial timestamp.
    pub fn new(payload_type: u8) -> Self {
        Self::with_initial(payload_type, rand::random(), rand::random(), rand::random())
    }

    /// A packetiser with the given SSRC, first sequence number and first timestamp.
    pub fn with_initial(payload_type: u8, ssrc: u32, seq: u16, timestamp: u32) -> Self {
        Packetizer {
            ssrc,
            seq,
            timestamp,
            payload_type: payload_type & 0x7f,
            packets: 0,
            octets: 0,
        }
    }

    /// The synchronisation source identifier of this stream.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The sequence number the next packet will carry.
    pub fn next_seq(&self) -> u16 {
        self.seq
    }

    /// The RTP timestamp the next packet will carry.
    pub fn next_timestamp(&self) -> u32 {
        self.timestamp
    }

    /// The payload type written into each packet.
    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    /// Changes the payload type (after a re-negotiation); SSRC, sequence and timestamp go on.
    pub fn set_payload_type(&mut self, payload_type: u8) {
        self.payload_type = payload_type & 0x7f;
    }

    /// Writes header+payload into buf, returns length; advances seq by 1 and ts by payload samples.
    ///
    /// # Panics
    /// If `buf` is shorter than `HEADER_LEN + payload.len()`: buffers are sized by the caller.
    pub fn write(&mut self, payload: &[u8], marker: bool, buf: &mut [u8]) -> usize {
        let len = HEADER_LEN + payload.len();
        buf[HEADER_LEN..len].copy_from_slice(payload);
        self.write_header(payload.len(), marker, buf)
    }

    /// Writes only the header in front of a payload already in `buf[HEADER_LEN..][..payload_len]`
    /// and returns the packet length; advances like [`Packetizer::write`]. This lets the pacing
    /// engine fill audio straight into the send buffer.
    ///
    /// # Panics
    /// If `buf` is shorter than `HEADER_LEN + payload_len`.
    pub fn write_header(&mut self, payload_len: usize, marker: bool, buf: &mut [u8]) -> usize {
        let len = HEADER_LEN + payload_len;
        let header = &mut buf[..len][..HEADER_LEN];
        header[0] = 0x80; // V=2, P=0, X=0, CC=0
        header[1] = (u8::from(marker) << 7) | self.payload_type;
        header[2..4].copy_from_slice(&self.seq.to_be_bytes());
        header[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        header[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        self.seq = self.seq.wrapping_add(1);
        // G.711: one octet per sample.
        self.timestamp = self.timestamp.wrapping_add(payload_len as u32);
        self.packets += 1;
        self.octets += payload_len as u64;
        len
    }

    /// Advances the timestamp by `samples` without sending, so that media time keeps pace
    /// with wall-clock time across a pause (the receiver sees a silent gap, not a loss).
    pub fn skip(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
    }

    /// Packets written so far (the RTCP SR sender's packet count).
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Payload octets written so far (the RTCP SR sender's octet count: headers excluded).
    pub fn octets(&self) -> u64 {
        self.octets
    }
}

/// The fixed fields of a received RTP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpHeader {
    /// Marker bit.
    pub marker: bool,
    /// Payload type (7 bits).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Media timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Offset of the payload in the packet (after CSRCs and any header extension).
    pub payload_offset: usize,
    /// Payload length (padding removed).
    pub payload_len: usize,
}

/// Why a datagram is not an RTP packet.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum RtpParseError {
    /// Shorter than the header it announces.
    #[error("RTP packet truncated: {len} octets")]
    Truncated {
        /// Datagram length.
        len: usize,
    },
    /// Version field other than 2.
    #[error("RTP version {version}, expected 2")]
    Version {
        /// Version found.
        version: u8,
    },
    /// Padding count larger than the payload.
    #[error("RTP padding of {padding} octets exceeds the payload")]
    Padding {
        /// Padding count found.
        padding: u8,
    },
}

impl RtpHeader {
    /// Parses the header of an RTP packet (CSRCs, extension and padding are skipped).
    pub fn parse(buf: &[u8]) -> Result<RtpHeader, RtpParseError> {
        let truncated = RtpParseError::Truncated { len: buf.len() };
        if buf.len() < HEADER_LEN {
            return Err(truncated);
        }
        let version = buf[0] >> 6;
        if version != 2 {
            return Err(RtpParseError::Version { version });
        }
        let csrc_count = usize::from(buf[0] & 0x0f);
        let mut offset = HEADER_LEN + 4 * csrc_count;
        if buf[0] & 0x10 != 0 {
            let ext = buf.get(offset..offset + 4).ok_or(truncated.clone())?;
            let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
            offset += 4 + 4 * words;
        }
        if offset > buf.len() {
            return Err(truncated);
        }
        let mut end = buf.len();
        if buf[0] & 0x20 != 0 {
            let padding = buf[end - 1];
            if padding == 0 || usize::from(padding) > end - offset {
                return Err(RtpParseError::Padding { padding });
            }
            end -= usize::from(padding);
        }
        Ok(RtpHeader {
            marker: buf[1] & 0x80 != 0,
            payload_type: buf[1] & 0x7f,
            sequence: u16::from_be_bytes([buf[2], buf[3]]),
            timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
            payload_offset: offset,
            payload_len: end - offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_is_rfc3550() {
        let mut p = Packetizer::with_initial(8, 0xdead_beef, 0x1234, 0x0102_0304);
        let mut buf = [0u8; 200];
        let n = p.write(&[0xd5; 160], true, &mut buf);
        assert_eq!(n, 172);
        assert_eq!(
            &buf[..12],
            &[
                0x80, 0x88, 0x12, 0x34, 0x01, 0x02, 0x03, 0x04, 0xde, 0xad, 0xbe, 0xef
            ]
        );
        assert!(buf[12..172].iter().all(|&b| b == 0xd5));
        let n = p.write(&[0xd5; 160], false, &mut buf);
        assert_eq!(n, 172);
        assert_eq!(buf[1], 0x08, "marker clear, PT 8");
        assert_eq!(&buf[2..4], &[0x12, 0x35]);
        assert_eq!(
            u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            0x0102_0304 + 160
        );
        assert_eq!(p.packets(), 2);
        assert_eq!(p.octets(), 320);
    }

    #[test]
    fn sequence_and_timestamp_wrap() {
        let mut p = Packetizer::with_initial(0, 1, u16::MAX, u32::MAX - 79);
        let mut buf = [0u8; 100];
        p.write(&[0xff; 80], false, &mut buf);
        assert_eq!(
            RtpHeader::parse(&buf[..92]).map(|h| h.sequence),
            Ok(u16::MAX)
        );
        assert_eq!(p.next_seq(), 0);
        assert_eq!(p.next_timestamp(), 0);
        p.write(&[0xff; 80], false, &mut buf);
        let h = RtpHeader::parse(&buf[..92]).map_err(|e| e.to_string());
        assert_eq!(h.map(|h| (h.sequence, h.timestamp)), Ok((0, 0)));
        assert_eq!(p.next_timestamp(), 80);
    }

    #[test]
    fn skip_moves_timestamp_not_sequence() {
        let mut p = Packetizer::with_initial(0, 1, 10, 1000);
        p.skip(8000);
        assert_eq!(p.next_timestamp(), 9000);
        assert_eq!(p.next_seq(), 10);
        assert_eq!(p.packets(), 0);
    }

    #[test]
    fn random_initial_state_differs() {
        let a = Packetizer::new(0);
        let b = Packetizer::new(0);
        // Three independent 32/16/32-bit draws all colliding is ~2^-80.
        assert!(
            a.ssrc() != b.ssrc()
                || a.next_seq() != b.next_seq()
                || a.next_timestamp() != b.next_timestamp()
        );
    }

    #[test]
    fn write_header_matches_write() {
        let mut a = Packetizer::with_initial(0, 7, 3, 5);
        let mut b = a.clone();
        let payload: Vec<u8> = (0..160u8).collect();
        let mut buf_a = [0u8; 172];
        let mut buf_b = [0u8; 172];
        a.write(&payload, false, &mut buf_a);
        buf_b[12..].copy_from_slice(&payload);
        b.write_header(160, false, &mut buf_b);
        assert_eq!(buf_a, buf_b);
    }

    #[test]
    fn parse_rejects_bad_packets() {
        assert_eq!(
            RtpHeader::parse(&[0x80; 11]),
            Err(RtpParseError::Truncated { len: 11 })
        );
        let mut buf = [0u8; 20];
        buf[0] = 0x40;
        assert_eq!(
            RtpHeader::parse(&buf),
            Err(RtpParseError::Version { version: 1 })
        );
        buf[0] = 0x81; // one CSRC
        assert_eq!(RtpHeader::parse(&buf).map(|h| h.payload_offset), Ok(16));
        buf[0] = 0xa0; // padding
        buf[19] = 9;
        assert_eq!(
            RtpHeader::parse(&buf),
            Err(RtpParseError::Padding { padding: 9 })
        );
        buf[19] = 8;
        assert_eq!(RtpHeader::parse(&buf).map(|h| h.payload_len), Ok(0));
        buf[0] = 0x90; // extension header claiming more words than present
        buf[14] = 0;
        buf[15] = 9;
        assert!(RtpHeader::parse(&buf).is_err());
    }
}
