//! Property tests of the RTP and RTCP parsers: arbitrary input never panics, and what the
//! builders write parses back to what was put in.

use imss_rtp::rtcp::{self, NtpTime, RtcpPacket, SenderInfo};
use imss_rtp::{HEADER_LEN, Packetizer, RtpHeader};
use proptest::prelude::*;

proptest! {
    #[test]
    fn rtp_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(h) = RtpHeader::parse(&bytes) {
            prop_assert!(h.payload_offset + h.payload_len <= bytes.len());
        }
    }

    #[test]
    fn rtcp_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        for packet in rtcp::parse_compound(&bytes) {
            if let Ok(RtcpPacket::SenderReport { blocks, .. } | RtcpPacket::ReceiverReport { blocks, .. }) = packet {
                prop_assert!(blocks.count() <= 31);
            }
        }
        let _ = rtcp::find_report(&bytes, 0);
    }

    #[test]
    fn rtp_roundtrip(
        pt in 0u8..128, ssrc: u32, seq: u16, ts: u32, marker: bool,
        payload in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut p = Packetizer::with_initial(pt, ssrc, seq, ts);
        let mut buf = vec![0u8; HEADER_LEN + payload.len()];
        let n = p.write(&payload, marker, &mut buf);
        let h = RtpHeader::parse(&buf[..n]);
        prop_assert!(h.is_ok());
        let h = h.unwrap_or_else(|_| unreachable!());
        prop_assert_eq!((h.payload_type, h.ssrc, h.sequence, h.timestamp, h.marker), (pt, ssrc, seq, ts, marker));
        prop_assert_eq!(&buf[h.payload_offset..h.payload_offset + h.payload_len], &payload[..]);
        prop_assert_eq!(p.next_timestamp(), ts.wrapping_add(payload.len() as u32));
    }

    #[test]
    fn bye_roundtrip(ssrc: u32, ntp: u64, rtp_timestamp: u32, packet_count: u32, octet_count: u32,
                     cname in "[a-z0-9@.]{0,255}", reason in proptest::option::of("[ -~]{0,255}")) {
        let info = SenderInfo { ntp: NtpTime(ntp), rtp_timestamp, packet_count, octet_count };
        let mut buf = [0u8; rtcp::MAX_COMPOUND_LEN];
        let n = rtcp::write_bye(&mut buf, ssrc, Some(&info), &cname, reason.as_deref());
        prop_assert!(n.is_ok());
        let n = n.unwrap_or(0);
        prop_assert_eq!(n % 4, 0);
        let packets: Vec<_> = rtcp::parse_compound(&buf[..n]).collect();
        prop_assert_eq!(packets.len(), 3);
        let sr_ok = matches!(&packets[0], Ok(RtcpPacket::SenderReport { ssrc: s, info: i, .. }) if *s == ssrc && *i == info);
        prop_assert!(sr_ok);
        let bye_ok = matches!(&packets[2], Ok(RtcpPacket::Goodbye { ssrc: s }) if *s == ssrc);
        prop_assert!(bye_ok);
    }
}
