//! The imss client: places SIP calls to a media server, receives their G.711 RTP and
//! measures it. `imss call` uses [`place_call`] (one call, WAV output, a loss/jitter report;
//! with [`MrcpOptions`] an MRCPv2 session with a SPEAK) and `imss bench` uses [`run_bench`]
//! (thousands of concurrent calls, percentiles, server CPU).
//!
//! This crate owns the UAC shell (one tokio UDP socket moving bytes for `imss_sip::uac`
//! state machines, demultiplexed by Call-ID), the MRCPv2 control connection of a call, the
//! RTP receiver threads and the receiver statistics. It only receives media: it never sends
//! RTP, and it must not reimplement SIP or SDP (that is `imss-sip`'s job), MRCP framing
//! (`imss-mrcp`) or G.711 (`imss-media`).
//!
//! Hand-written here, because they are this crate's own job or its hot path:
//! - the RFC 3550 appendix A receiver statistics (A.1 sequence tracking, A.3 loss, A.8
//!   jitter) and the spacing histogram: a few integer operations per packet in fixed-size,
//!   preallocated state, where a general metrics crate would allocate or lock;
//! - the receive path on `libc` (`epoll`, `recvmmsg`, `SO_TIMESTAMPNS`): kernel arrival
//!   timestamps keep scheduler noise out of the spacing figures, and neither std nor tokio
//!   expose them;
//! - `/proc` parsing for CPU and memory figures: two fields of two files.
//!
//! `socket2` (already in the tree under tokio) sets `SO_LINGER` on an MRCP bench's control
//! connections, which tokio only offers as a deprecated call.
//!
//! Definitions used in the reports:
//! - *expected* and *lost* follow RFC 3550 A.3 over the extended sequence range (restarts
//!   and SSRC changes add up); *packets* counts duplicates, *lost* never goes negative;
//! - *jitter* is the A.8 estimator at the end of the stream, kept in timestamp units as a
//!   float (no 125 µs rounding);
//! - *spacing error* is |arrival gap − ptime| between packets with consecutive sequence
//!   numbers in arrival order (a loss does not count as a 20 ms error), from kernel receive
//!   timestamps, leaving out the first [`SPACING_SKIP`] of each call (set-up transient);
//! - the WAV places every packet at its RTP timestamp relative to the first one, so lost
//!   packets are silence and never shift what follows.
//!
//! A bench call binds its RTP port and, when the open-files limit allows two descriptors
//! per call, the RTCP port next to it (held, not read, so the server's RTCP is not
//! answered with ICMP errors); below that limit only RTP is bound and the report says so.

mod bench;
mod bench_mrcp;
mod call;
pub mod capture;
mod error;
pub mod mrcp;
pub mod net;
pub mod procstat;
pub mod receiver;
mod sdp_offer;
mod sip_shell;
pub mod stats;
pub mod target;

pub use bench::{
    BenchOptions, BenchReport, CallFailure, CpuFigures, LatencySummary, raise_open_files_limit,
    run_bench,
};
pub use bench_mrcp::{BenchMrcp, CauseCount, MrcpFigures};
pub use call::{CallOptions, CallReport, RtpGap, place_call};
pub use error::{ClientError, Transcript};
pub use mrcp::{MrcpOptions, SpeakBody};
pub use target::SipTarget;

use imss_media::Law;
use serde::Serialize;

/// Spacing statistics leave out this much of the start of every call (set-up transient).
pub const SPACING_SKIP: std::time::Duration = std::time::Duration::from_millis(200);

/// A G.711 codec the client can offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Codec {
    /// μ-law, static payload type 0.
    #[serde(rename = "PCMU")]
    Pcmu,
    /// A-law, static payload type 8.
    #[serde(rename = "PCMA")]
    Pcma,
}

impl Codec {
    /// The static RTP payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        self.law().payload_type()
    }

    /// The SDP encoding name.
    pub fn name(self) -> &'static str {
        self.law().encoding_name()
    }

    /// The companding law, for decoding.
    pub fn law(self) -> Law {
        match self {
            Codec::Pcmu => Law::Pcmu,
            Codec::Pcma => Law::Pcma,
        }
    }

    /// The codec of a static payload type.
    pub fn from_payload_type(pt: u8) -> Option<Codec> {
        match pt {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
