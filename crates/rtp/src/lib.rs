//! imss-rtp: the media plane's wire protocol and its only I/O.
//!
//! Owns the RTP packetiser and RTCP reports (sans-IO: no sockets, no clock), the RTP/RTCP
//! port allocator, and the pacing engine — dedicated threads that send every stream's packets
//! on time. It must not decode audio (that is `imss-media`'s job, whose `Playout` it drives)
//! nor know about SIP or MRCP.
//!
//! Hand-written rather than taken from a crate: RTP/RTCP for a send-only G.711 server is a few
//! hundred lines, and the packetiser and pacing loop are the product's hot path — they must
//! write into preallocated buffers and never allocate, lock or log per packet, which general
//! RTP stacks (webrtc-rs, str0m) do not promise and whose session machinery we do not need.

#![warn(missing_docs)]

pub mod packet;
pub mod ports;
pub mod rtcp;

pub use packet::{HEADER_LEN, Packetizer, RtpHeader, RtpParseError};
pub use ports::{PortAllocator, PortError, PortPair};
pub mod pacing;

pub use pacing::{Lateness, NewStream, Pacer, PacerConfig, PacerStats, PacingError, StreamEvent};
