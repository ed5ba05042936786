#![no_main]
//! SDP parsing and the offer/answer of a send-only G.711 server.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(offer) = text.parse::<imss_sip::sdp::SessionDescription>() else { return };
    let params = imss_sip::sdp::AnswerParams {
        addr: std::net::IpAddr::from([127, 0, 0, 1]),
        port: 20000,
        session_id: 1,
        session_version: 1,
        username: "imss".into(),
        default_ptime_ms: imss_sip::sdp::DEFAULT_PTIME_MS,
    };
    let _ = imss_sip::sdp::answer_audio(&offer, &params);
});
