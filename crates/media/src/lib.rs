//! Audio for imss's media plane: decoding files, resampling to 8 kHz, G.711 companding,
//! immutable decoded clips and their byte-bounded cache, live broadcast rings with their
//! per-source processing (loudness, band-pass, limiter, chimes), and the per-stream playout
//! cursor that pacing threads drive.
//!
//! This crate owns samples, not sockets: it never opens a network connection, never
//! touches RTP headers and never reads the clock on behalf of a caller (the pacing
//! thread passes the packet's due time to [`Playout::fill`]). The only threads it starts
//! are the producers of [`LiveSource`]s and their file loaders.
//!
//! Decoding is symphonia's job, resampling rubato's and loudness measurement (EBU R128)
//! ebur128's. Hand-written here, because they are the product's hot path or its own
//! semantics:
//! - [`g711`]: a few integer operations per sample, bit-exact with ITU-T G.711 as the
//!   telephony stacks implement it, with no table to initialise and nothing to allocate;
//! - [`LiveRing`]: a single-producer, many-reader seqlock ring of 10 ms blocks, read
//!   without locks or allocation by any number of pacing threads;
//! - [`Playout`]: the play-plan cursor (items, repeat, gap, limit) of RFC 4240 and MRCP;
//! - [`ProcessedFeed`]'s stages: four biquads (the telephone band-pass), a look-ahead peak
//!   limiter and the normaliser's gain control. They run on every 10 ms block of a live
//!   source and are a few dozen lines with fixed coefficients; a filter crate (e.g.
//!   `biquad`) would bring the same cookbook formulas and nothing else, and the limiter's
//!   guarantee (no sample over the ceiling) is easier to check in code we own;
//! - [`gsm610`]: the GSM 06.10 full-rate decoder for voicemail attachments (raw `.gsm` and
//!   the WAV49 layout Asterisk writes). No maintained pure-Rust decoder exists (the one
//!   crate binds libgsm's C code and states no licence); it follows libgsm and is checked
//!   sample for sample against sox's decoding of the same files;
//! - the WAV (PCM, μ-law, A-law, GSM), Sun `.au` and raw G.711 readers of
//!   [`decode_attachment`] and [`ProgressiveDecoder`]: symphonia has no GSM and no `.au`,
//!   reads μ-law/A-law WAV only with one `fmt ` layout, and decodes whole files, while a
//!   voicemail attachment should play as it arrives ([`GrowingClip`]).
//!
//! Live upstreams (internet radio, a program's output) are decoded as their bytes arrive
//! ([`decode_stream`], [`decode_pcm_stream`]) by a worker the caller runs, and played
//! through an [`UpstreamFeed`] that covers stalls and failures with a fallback. Opus, which
//! symphonia demuxes from Ogg but cannot decode, is decoded by `opus-decoder`: a pure-Rust
//! port of the reference decoder that passes the RFC 8251 conformance vectors and decodes
//! at 8 kHz natively, so the build needs no libopus and no C compiler. The header of a
//! WAV stream from a pipe is read here (a dozen lines) because piped WAV carries a
//! placeholder length that file readers take at its word.

mod attachment;
mod chime;
mod clip;
mod decode;
mod error;
pub mod g711;
mod growing;
pub mod gsm610;
mod live;
mod loudness;
mod playout;
mod resample;
mod stream;
mod upstream;

pub use attachment::{AttachmentFormat, ProgressiveDecoder, decode_attachment};
pub use chime::ChimeFeed;
pub use clip::{Clip, ClipCache};
pub use decode::{MAX_DURATION, Pcm, decode_bytes, decode_file};
pub use error::MediaError;
pub use growing::{GrowingClip, GrowingClipWriter};
pub use live::{
    ClipFetcher, LEAD, LiveBlock, LiveFeed, LiveListener, LiveRing, LiveSource, LiveSpec,
    PLAYLIST_EXTENSIONS, is_http_entry, list_audio_files,
};
pub use loudness::{DEFAULT_CEILING_DBFS, DEFAULT_TARGET_LUFS, ProcessedFeed, Processing};
pub use playout::{Fill, PlayItem, Playout, Repeat};
pub use resample::{Resampler8k, resample_to_8k};
pub use stream::{
    PcmFormat, StreamContainer, StreamEnd, StreamError, StreamInfo, decode_pcm_stream,
    decode_stream,
};
pub use upstream::{
    DEFAULT_PREBUFFER, DEFAULT_STALL, Fallback, FallbackFeed, Overflow, SourceState, Upstream,
    UpstreamFeed, UpstreamSettings, UpstreamStatus, UpstreamWriter, WatchedRead,
};

use std::time::Duration;

/// The sample rate of everything this crate hands to the media plane, in Hz.
pub const SAMPLE_RATE: u32 = 8000;

/// Samples in one 10 ms block: the unit of clip padding and of live rings.
pub const BLOCK_SAMPLES: usize = 80;

/// A G.711 companding law, as negotiated in SDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Law {
    /// μ-law, RTP payload type 0.
    Pcmu,
    /// A-law, RTP payload type 8.
    Pcma,
}

impl Law {
    /// The static RTP payload type (RFC 3551): 0 for PCMU, 8 for PCMA.
    pub fn payload_type(self) -> u8 {
        match self {
            Law::Pcmu => 0,
            Law::Pcma => 8,
        }
    }

    /// The code of digital silence: 0xFF for μ-law, 0xD5 for A-law.
    pub fn silence(self) -> u8 {
        match self {
            Law::Pcmu => 0xFF,
            Law::Pcma => 0xD5,
        }
    }

    /// The SDP encoding name: "PCMU" or "PCMA".
    pub fn encoding_name(self) -> &'static str {
        match self {
            Law::Pcmu => "PCMU",
            Law::Pcma => "PCMA",
        }
    }

    /// Expands one code to 16-bit linear PCM.
    pub fn decode(self, b: u8) -> i16 {
        match self {
            Law::Pcmu => g711::ulaw_decode(b),
            Law::Pcma => g711::alaw_decode(b),
        }
    }

    /// Compresses one 16-bit linear sample.
    pub fn encode(self, s: i16) -> u8 {
        match self {
            Law::Pcmu => g711::ulaw_encode(s),
            Law::Pcma => g711::alaw_encode(s),
        }
    }
}

/// The number of 8 kHz samples in `d`, rounded to the nearest sample.
pub fn samples_in(d: Duration) -> u64 {
    let n = d.as_nanos() * u128::from(SAMPLE_RATE);
    u64::try_from((n + 500_000_000) / 1_000_000_000).unwrap_or(u64::MAX)
}

/// The duration of `samples` 8 kHz samples.
pub fn duration_of(samples: u64) -> Duration {
    Duration::from_nanos(samples.saturating_mul(1_000_000_000 / u64::from(SAMPLE_RATE)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn law_constants() {
        assert_eq!(Law::Pcmu.payload_type(), 0);
        assert_eq!(Law::Pcma.payload_type(), 8);
        assert_eq!(Law::Pcmu.silence(), 0xFF);
        assert_eq!(Law::Pcma.silence(), 0xD5);
        assert_eq!(Law::Pcmu.encoding_name(), "PCMU");
        assert_eq!(Law::Pcma.encoding_name(), "PCMA");
        for law in [Law::Pcmu, Law::Pcma] {
            assert_eq!(law.encode(0), law.silence());
            assert!(law.decode(law.silence()).abs() <= 8);
        }
    }

    #[test]
    fn sample_time_conversions() {
        assert_eq!(samples_in(Duration::from_millis(20)), 160);
        assert_eq!(samples_in(Duration::from_micros(62)), 0);
        assert_eq!(samples_in(Duration::from_micros(63)), 1);
        assert_eq!(samples_in(Duration::from_secs(3)), 24_000);
        assert_eq!(duration_of(160), Duration::from_millis(20));
    }
}
