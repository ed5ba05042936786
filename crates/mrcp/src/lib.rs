//! imss-mrcp: the MRCPv2 control protocol of the media player (RFC 6787).
//!
//! Owns the MRCPv2 codec ([`codec`]: framing by message-length, parsing, serialising), the
//! generic and synthesizer header fields with typed accessors ([`headers`]), the speechsynth
//! resource state machine of one channel ([`synth`]: SPEAK, STOP, PAUSE, RESUME,
//! BARGE-IN-OCCURRED, CONTROL, GET-PARAMS, SET-PARAMS, DEFINE-LEXICON; SPEAK-COMPLETE and
//! SPEECH-MARKER; `speechsynth` and `basicsynth`), and the translation of a SPEAK body into a
//! play plan ([`body`]: SSML — all of it, or the basicsynth subset — text/uri-list,
//! text/plain), whose text keeps the markup a synthesizer renders itself ([`speech`], with
//! `<say-as>` read out by [`say_as`]).
//!
//! It must not do I/O, read a clock or touch audio: it holds no sockets, every input that
//! depends on time takes `now: Instant` (and NTP timestamps come from the caller, with
//! [`Synthesizer::handle_wall_clock`] and the media plane's reports), and the
//! media plane receives [`MediaCommand`]s and reports back through the synthesizer's
//! `media_*`/`mark_reached` inputs. Run-loop rule: after every input, drain
//! [`Synthesizer::poll_transmit`] and [`Synthesizer::poll_command`] until they return `None`.
//!
//! Hand-written rather than taken from a crate: MRCPv2 is the product's own protocol, there
//! is no maintained Rust implementation, and interoperating with real clients (UniMRCP,
//! which Asterisk and FreeSWITCH use) needs exact control over framing, status codes and
//! request states. SSML is read with `quick-xml`.

#![warn(missing_docs)]

pub mod body;
pub mod codec;
pub mod headers;
pub mod message;
pub mod say_as;
pub mod speech;
pub mod synth;

pub use body::{
    BASIC_SSML_ELEMENTS, BodyError, MAX_BREAK, PlanItem, PlayPlan, SsmlSubset, parse_speak_body,
    parse_speak_body_in,
};
pub use codec::{Check, FrameError, Limits, ParseError, ParseErrorKind, check, parse};
pub use headers::{
    CompletionCause, HeaderError, Headers, Prosody, SpeechLength, SpeechMarker, SpeechUnit, names,
};
pub use message::{
    EventName, Message, Method, RequestId, RequestState, StartLine, StatusCode, Version,
};
pub use speech::{Gender, Markup, Speech, SpeechPart, VoiceSelection};
pub use synth::{
    MediaCommand, MediaFailure, SeekOffset, SpeakSettings, SynthConfig, SynthState, Synthesizer,
};
