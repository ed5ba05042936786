#![no_main]
//! RTP header and RTCP compound parsing.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = imss_rtp::RtpHeader::parse(data);
    for p in imss_rtp::rtcp::parse_compound(data).take(64) {
        let _ = p;
    }
});
