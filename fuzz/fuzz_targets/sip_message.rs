#![no_main]
//! SIP framing and parsing, datagram and stream.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = imss_sip::message::parse_datagram(data) {
        let bytes = match m {
            imss_sip::message::Message::Request(r) => r.to_bytes(),
            imss_sip::message::Message::Response(r) => r.to_bytes(),
        };
        // What we serialise must parse again.
        assert!(imss_sip::message::parse_datagram(&bytes).is_ok());
    }
    let _ = imss_sip::message::parse_stream_detailed(data);
});
