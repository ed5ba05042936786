//! Sans-IO SIP (RFC 3261) and SDP (RFC 4566, RFC 3264 offer/answer) for imss.
//!
//! This crate owns the SIP message codec ([`message`]), the SDP model and the audio
//! offer/answer of a server that only sends G.711 ([`sdp`]), the user-agent server core with
//! its transactions, dialogs and RFC 4028 session timers ([`endpoint`]), and the user-agent
//! client used by `imss call` and `imss bench` ([`uac`]).
//!
//! It must not do I/O: it holds no sockets, never reads the clock, never sleeps and spawns
//! nothing. All time is external input (`now: Instant`); the state machines hand back what to
//! send and when to wake up. The tokio shells in `imss-server` and `imss-client` move the
//! bytes. The run-loop rule for a shell is: after every `handle_*` call or command, drain
//! `poll_transmit` and `poll_event` until both return `None`, then sleep until `poll_timeout`
//! (or the next input) and call `handle_timeout`.
//!
//! The codec and the transaction layer are hand-written rather than taken from a crate. The
//! established Rust SIP parser (rsip 0.4) has no transaction layer and no input bounds (message
//! size, header count, line length, body size) of its own; the sans-IO SIP stacks on crates.io
//! (sipx-sip, rsiprtp) are young pre-1.0 releases. What a media server needs is a small
//! subset of SIP whose behaviour (which request gets which answer, when a call ends) is the
//! product's own job, so it is owned here, with every RFC 3261 timer testable on a virtual
//! clock.

#![warn(missing_docs)]

pub mod endpoint;
pub mod message;
pub(crate) mod routing;
pub mod sdp;
pub mod uac;
pub(crate) mod util;
