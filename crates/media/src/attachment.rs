//! Voicemail attachments: the audio files that voicemail systems and PBXs mail out, decoded
//! to 8 kHz mono whole ([`decode_attachment`]) or as their bytes arrive
//! ([`ProgressiveDecoder`]), so that a caller can start playing a message before its
//! attachment has finished arriving over IMAP.
//!
//! What arrives: GSM 06.10 in WAV ("WAV49", Asterisk's default `.WAV`), raw `.gsm`, μ-law
//! and A-law WAV (also as `WAVE_FORMAT_EXTENSIBLE`), Sun audio `.au` (`audio/basic`),
//! headerless μ-law or A-law, PCM WAV and MP3. The container is recognised by its first
//! bytes (RIFF/WAVE, `.snd`, ID3 or an MPEG frame header, Ogg, FLAC, or the 0xD nibble
//! that starts every 33-byte GSM frame); the content type and the file name only break
//! ties, and name the headerless formats that no signature identifies. The GSM nibbles
//! are such a tie (A-law silence has them too): a hint naming another headerless format
//! outweighs them.
//!
//! Read here, as the bytes arrive: WAV holding 8/16-bit PCM, μ-law, A-law or GSM 06.10,
//! Sun audio (μ-law, A-law, 8/16-bit PCM), raw GSM and headerless G.711. Symphonia reads
//! none of GSM, Sun audio or headerless data, rejects μ-law in `WAVE_FORMAT_EXTENSIBLE`
//! (0.5's sub-format GUID for μ-law is wrong) and any G.711 `fmt ` chunk not exactly 18
//! bytes long, and its readers pull from a `Read` where these bytes are pushed; the
//! containers are a few dozen lines. Everything else (MP3, Ogg Vorbis, FLAC, WAV with
//! float, 24/32-bit or ADPCM samples) is decoded whole by symphonia, as
//! [`decode_bytes`](crate::decode_bytes) does.

use std::path::{Path, PathBuf};

use crate::decode::{self, MAX_DURATION};
use crate::{Clip, MediaError, Resampler8k, SAMPLE_RATE, g711, gsm610};

const IN_MEMORY: &str = "(in-memory audio)";
/// Bytes needed to recognise a container by its signature (`RIFF....WAVE`).
const SIGNATURE_BYTES: usize = 12;
/// Raw GSM frames whose 0xD nibble identifies raw GSM without a hint (a chance match of
/// other data is 16⁻⁸).
const GSM_SNIFF_FRAMES: usize = 8;
/// Largest WAV `fmt ` chunk read.
const MAX_FMT_CHUNK: u32 = 1024;
/// Lowest sample rate accepted, Hz: resampling to 8 kHz multiplies the samples by 8 at most.
const MIN_RATE: u32 = 1000;
/// Highest sample rate accepted, Hz.
const MAX_RATE: u32 = 768_000;
/// Most interleaved channels accepted.
const MAX_CHANNELS: u16 = 64;
/// Input bytes decoded at a time, bounding the intermediate sample buffer.
const DECODE_CHUNK: usize = 8 * 1024;
/// The tail common to every `KSDATAFORMAT_SUBTYPE_*` GUID whose first two bytes are a
/// WAVE format tag.
const KSDATAFORMAT_TAIL: [u8; 14] = [
    0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
];

/// The container (or headerless format) an attachment was recognised as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttachmentFormat {
    /// RIFF WAVE, whatever its codec.
    Wav,
    /// Sun/NeXT audio (`.snd` header; `.au` files).
    SunAudio,
    /// Headerless GSM 06.10 in 33-byte frames (`.gsm`).
    RawGsm,
    /// Headerless 8 kHz mono μ-law (`audio/basic` without a `.snd` header, `.ul`).
    RawMulaw,
    /// Headerless 8 kHz mono A-law (`.al`).
    RawAlaw,
    /// MPEG audio (MP3), with or without an ID3 tag.
    Mp3,
    /// Ogg (Vorbis).
    Ogg,
    /// Native FLAC.
    Flac,
}

impl AttachmentFormat {
    /// A short name for logs and errors, e.g. "WAV" or "raw GSM 06.10".
    pub fn name(self) -> &'static str {
        match self {
            AttachmentFormat::Wav => "WAV",
            AttachmentFormat::SunAudio => "Sun audio",
            AttachmentFormat::RawGsm => "raw GSM 06.10",
            AttachmentFormat::RawMulaw => "headerless μ-law",
            AttachmentFormat::RawAlaw => "headerless A-law",
            AttachmentFormat::Mp3 => "MP3",
            AttachmentFormat::Ogg => "Ogg",
            AttachmentFormat::Flac => "FLAC",
        }
    }

    fn from_content_type(content_type: &str) -> Option<AttachmentFormat> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        Some(match essence.as_str() {
            "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => AttachmentFormat::Wav,
            // RFC 2046: single-channel 8 kHz μ-law; in practice often a `.snd` file, which
            // its signature then reveals.
            "audio/basic" | "audio/pcmu" | "audio/x-mulaw" => AttachmentFormat::RawMulaw,
            "audio/pcma" | "audio/x-alaw-basic" | "audio/x-alaw" => AttachmentFormat::RawAlaw,
            "audio/au" | "audio/x-au" => AttachmentFormat::SunAudio,
            "audio/gsm" | "audio/x-gsm" => AttachmentFormat::RawGsm,
            "audio/mpeg" | "audio/mp3" | "audio/mpeg3" | "audio/x-mpeg" | "audio/x-mp3" => {
                AttachmentFormat::Mp3
            }
            "audio/ogg" | "application/ogg" | "audio/vorbis" => AttachmentFormat::Ogg,
            "audio/flac" | "audio/x-flac" => AttachmentFormat::Flac,
            _ => return None,
        })
    }

    fn from_extension(ext: &str) -> Option<AttachmentFormat> {
        Some(match ext.to_ascii_lowercase().as_str() {
            "wav" | "wave" => AttachmentFormat::Wav,
            "au" | "snd" => AttachmentFormat::SunAudio,
            "gsm" => AttachmentFormat::RawGsm,
            "ul" | "ulaw" | "mulaw" | "mu" | "pcmu" => AttachmentFormat::RawMulaw,
            "al" | "alaw" | "pcma" => AttachmentFormat::RawAlaw,
            "mp3" | "mpga" => AttachmentFormat::Mp3,
            "ogg" | "oga" => AttachmentFormat::Ogg,
            "flac" => AttachmentFormat::Flac,
            _ => return None,
        })
    }

    /// Formats without a signature of their own, which only a hint can name.
    fn is_headerless(self) -> bool {
        matches!(
            self,
            AttachmentFormat::RawGsm
                | AttachmentFormat::RawMulaw
                | AttachmentFormat::RawAlaw
                | AttachmentFormat::Mp3
        )
    }

    /// The extension symphonia's probe is hinted with.
    fn extension(self) -> Option<&'static str> {
        match self {
            AttachmentFormat::Wav => Some("wav"),
            AttachmentFormat::Mp3 => Some("mp3"),
            AttachmentFormat::Ogg => Some("ogg"),
            AttachmentFormat::Flac => Some("flac"),
            _ => None,
        }
    }
}

/// Decodes a whole attachment to a clip. `content_type` (the MIME part's, parameters
/// allowed) and `file_name` break ties between formats the bytes do not tell apart; errors
/// name `file_name`, or "(in-memory audio)".
///
/// A truncated or corrupt attachment is an error that names the format and the fault
/// (`MediaError::Decode`); an unknown format or codec is `MediaError::Unsupported`.
pub fn decode_attachment(
    bytes: &[u8],
    content_type: Option<&str>,
    file_name: Option<&str>,
) -> Result<Clip, MediaError> {
    let mut decoder = ProgressiveDecoder::new(content_type, file_name);
    let mut samples = Vec::new();
    match decoder.decode_whole(bytes, &mut samples) {
        Ok(()) => {
            let scaled: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32768.0).collect();
            Ok(Clip::from_samples_8k(&scaled))
        }
        Err(Stop::NotProgressive(_)) => {
            let ext = decoder
                .format
                .and_then(AttachmentFormat::extension)
                .or(decoder.hints.extension.as_deref());
            decode_with_symphonia(bytes, ext, &decoder.hints.label)
        }
        Err(stop) => Err(decoder.hints.error(stop)),
    }
}

fn decode_with_symphonia(
    bytes: &[u8],
    ext: Option<&str>,
    label: &Path,
) -> Result<Clip, MediaError> {
    let mut resampler: Option<Resampler8k> = None;
    let mut samples = Vec::new();
    decode::decode_memory_with(bytes.to_vec(), ext, label, &mut |rate, block| {
        let r = match &mut resampler {
            Some(r) => r,
            slot => slot.insert(Resampler8k::new(rate)?),
        };
        r.push(block, &mut samples)
    })?;
    if let Some(r) = resampler {
        r.finish(&mut samples)?;
    }
    Ok(Clip::from_samples_8k(&samples))
}

/// Decodes an attachment pushed in pieces of any size, handing back the 8 kHz mono samples
/// each piece completes.
///
/// Streamable formats: WAV with 8/16-bit PCM, μ-law, A-law or GSM 06.10; Sun audio; raw
/// GSM; headerless μ-law and A-law. Audio at another rate or with several channels is
/// averaged to mono and resampled as it arrives, with the crate's [`Resampler8k`], so the
/// samples are those [`decode_attachment`] produces. A piece may end anywhere, even inside a
/// header; only the bytes of an incomplete header or block are held back, never the
/// attachment.
///
/// Errors, after which the decoder stays failed:
/// - `MediaError::Unsupported`: the attachment is not in a streamable format (MP3, Ogg,
///   FLAC, WAV with float or ADPCM samples) or cannot be played at all; the caller keeps
///   the bytes and, once they are all there, calls [`decode_attachment`];
/// - `MediaError::Decode`: the attachment is corrupt (a GSM frame without its signature, a
///   malformed header) or, from [`finish`](ProgressiveDecoder::finish), truncated.
pub struct ProgressiveDecoder {
    hints: Hints,
    format: Option<AttachmentFormat>,
    state: State,
    /// Bytes received and not yet consumed: at most a header or one block's worth.
    pending: Vec<u8>,
    /// The `fmt ` chunk of a WAV attachment, once read.
    wav_fmt: Option<WavFmt>,
    /// Bytes received in all.
    received: u64,
}

impl ProgressiveDecoder {
    /// A decoder for an attachment with this MIME content type and file name, if known.
    pub fn new(content_type: Option<&str>, file_name: Option<&str>) -> ProgressiveDecoder {
        ProgressiveDecoder {
            hints: Hints::new(content_type, file_name),
            format: None,
            state: State::Sniff,
            pending: Vec::new(),
            wav_fmt: None,
            received: 0,
        }
    }

    /// What the attachment was recognised as, once its first bytes are in.
    pub fn format(&self) -> Option<AttachmentFormat> {
        self.format
    }

    /// Takes the next piece of the attachment; returns the samples it completes.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<i16>, MediaError> {
        let mut out = Vec::new();
        self.run(bytes, false, &mut out)
            .map_err(|stop| self.fail(stop))?;
        Ok(out)
    }

    /// Ends the attachment: returns the last samples (the resampler's tail, a short file's
    /// only ones), or the error if the attachment is truncated or holds no audio.
    pub fn finish(mut self) -> Result<Vec<i16>, MediaError> {
        let mut out = Vec::new();
        self.end(&mut out).map_err(|stop| self.fail(stop))?;
        Ok(out)
    }

    /// Decodes a complete attachment in one go.
    fn decode_whole(&mut self, bytes: &[u8], out: &mut Vec<i16>) -> Result<(), Stop> {
        self.run(bytes, false, out)?;
        self.end(out)
    }

    fn end(&mut self, out: &mut Vec<i16>) -> Result<(), Stop> {
        if self.received == 0 {
            return Err(Stop::Broken("the attachment is empty".into()));
        }
        // A short attachment may have been waiting for more bytes to be recognised.
        self.run(&[], true, out)?;
        let pending = self.pending.len();
        match &mut self.state {
            State::Sniff => Err(Stop::NotProgressive("an unrecognised format".into())),
            State::Failed(f) => Err(f.again()),
            State::WavHeader | State::WavChunk | State::WavFmt { .. } => Err(Stop::Broken(
                "WAV: the attachment ends inside its header, before any audio".into(),
            )),
            State::Skip { chunk, .. } => Err(Stop::Broken(format!(
                "WAV: the attachment ends inside its {:?} chunk, before any audio",
                String::from_utf8_lossy(chunk)
            ))),
            State::SunHeader | State::SunSkip { .. } => Err(Stop::Broken(
                "Sun audio: the attachment ends inside its header, before any audio".into(),
            )),
            State::Data(data) => {
                if let Some(remaining) = data.remaining.filter(|&r| r > 0) {
                    let declared = data.declared.unwrap_or_default();
                    return Err(Stop::Broken(format!(
                        "{}: truncated: the header declares {declared} bytes of audio, the \
                         attachment holds {}",
                        data.name,
                        declared - remaining
                    )));
                }
                // With no declared length, a last lone byte is the data chunk's pad byte.
                let padding = data.riff && data.remaining.is_none() && pending == 1;
                if pending > 0 && !padding {
                    return Err(Stop::Broken(format!(
                        "{}: truncated: the attachment ends {pending} bytes into a {}-byte \
                         {}",
                        data.name,
                        data.block,
                        data.codec.unit()
                    )));
                }
                data.output.finish(out)?;
                if data.output.produced == 0 {
                    return Err(Stop::Broken(format!("{}: no audio samples", data.name)));
                }
                Ok(())
            }
        }
    }

    fn fail(&mut self, stop: Stop) -> MediaError {
        let failure = Failure::of(&stop);
        self.state = State::Failed(failure);
        self.pending = Vec::new();
        self.hints.error(stop)
    }

    /// Consumes what `bytes` (after anything pending) allows, keeping the rest pending.
    fn run(&mut self, bytes: &[u8], complete: bool, out: &mut Vec<i16>) -> Result<(), Stop> {
        if let State::Failed(f) = &self.state {
            return Err(f.again());
        }
        self.received += bytes.len() as u64;
        if self.pending.is_empty() {
            let used = self.feed(bytes, complete, out)?;
            self.pending.extend_from_slice(&bytes[used..]);
        } else {
            let mut pending = std::mem::take(&mut self.pending);
            pending.extend_from_slice(bytes);
            let used = self.feed(&pending, complete, out)?;
            pending.drain(..used);
            self.pending = pending;
        }
        Ok(())
    }

    fn feed(&mut self, data: &[u8], complete: bool, out: &mut Vec<i16>) -> Result<usize, Stop> {
        let mut used = 0;
        while let Some(n) = self.step(&data[used..], complete, out)? {
            used += n;
        }
        Ok(used)
    }

    /// One parsing step: `Some(bytes consumed)` (zero when only the state changed), or
    /// `None` when more bytes are needed.
    fn step(
        &mut self,
        data: &[u8],
        complete: bool,
        out: &mut Vec<i16>,
    ) -> Result<Option<usize>, Stop> {
        match &mut self.state {
            State::Failed(f) => Err(f.again()),
            State::Sniff => {
                let format = match sniff(data, complete, &self.hints) {
                    Sniffed::NeedMore => return Ok(None),
                    Sniffed::Unknown => {
                        return Err(Stop::NotProgressive("an unrecognised format".into()));
                    }
                    Sniffed::Format(format) => format,
                };
                self.format = Some(format);
                self.state = match format {
                    AttachmentFormat::Wav => State::WavHeader,
                    AttachmentFormat::SunAudio => State::SunHeader,
                    AttachmentFormat::RawGsm => State::Data(Box::new(Data::new(
                        "raw GSM 06.10",
                        Codec::GsmFrames(Box::default()),
                        Output::new(SAMPLE_RATE, 1)?,
                        None,
                    ))),
                    AttachmentFormat::RawMulaw => State::Data(Box::new(Data::new(
                        "headerless μ-law",
                        Codec::Mulaw,
                        Output::new(SAMPLE_RATE, 1)?,
                        None,
                    ))),
                    AttachmentFormat::RawAlaw => State::Data(Box::new(Data::new(
                        "headerless A-law",
                        Codec::Alaw,
                        Output::new(SAMPLE_RATE, 1)?,
                        None,
                    ))),
                    AttachmentFormat::Mp3 | AttachmentFormat::Ogg | AttachmentFormat::Flac => {
                        return Err(Stop::NotProgressive(format.name().into()));
                    }
                };
                Ok(Some(0))
            }
            State::WavHeader => {
                if data.len() < 12 {
                    return Ok(None);
                }
                // The signature was checked when sniffing.
                self.state = State::WavChunk;
                Ok(Some(12))
            }
            State::WavChunk => {
                if data.len() < 8 {
                    return Ok(None);
                }
                let id: [u8; 4] = data[..4].try_into().expect("4 bytes");
                let size = u32::from_le_bytes(data[4..8].try_into().expect("4 bytes"));
                self.state = match &id {
                    b"fmt " => {
                        if !(16..=MAX_FMT_CHUNK).contains(&size) {
                            return Err(Stop::Broken(format!(
                                "WAV: a fmt chunk of {size} bytes (16 to {MAX_FMT_CHUNK} expected)"
                            )));
                        }
                        State::WavFmt { size }
                    }
                    b"data" => {
                        let fmt = self.wav_fmt.ok_or_else(|| {
                            Stop::Broken("WAV: the data chunk comes before the fmt chunk".into())
                        })?;
                        // 0 and 0xFFFFFFFF are the placeholders of writers that could not
                        // go back to fill the length in.
                        let declared = match size {
                            0 | u32::MAX => None,
                            n => Some(u64::from(n)),
                        };
                        State::Data(Box::new(fmt.data(declared)?))
                    }
                    _ => State::Skip {
                        chunk: id,
                        remaining: u64::from(size) + u64::from(size & 1),
                    },
                };
                Ok(Some(8))
            }
            State::WavFmt { size } => {
                let size = *size as usize;
                let padded = size + (size & 1);
                if data.len() < padded {
                    return Ok(None);
                }
                self.wav_fmt = Some(WavFmt::parse(&data[..size])?);
                self.state = State::WavChunk;
                Ok(Some(padded))
            }
            State::Skip { remaining, .. } => {
                if *remaining == 0 {
                    self.state = State::WavChunk;
                    return Ok(Some(0));
                }
                if data.is_empty() {
                    return Ok(None);
                }
                let n = (*remaining).min(data.len() as u64);
                *remaining -= n;
                Ok(Some(n as usize))
            }
            State::SunHeader => {
                if data.len() < 24 {
                    return Ok(None);
                }
                let (skip, audio) = sun_header(data[..24].try_into().expect("24 bytes"))?;
                self.state = State::SunSkip {
                    remaining: skip,
                    data: Box::new(audio),
                };
                Ok(Some(24))
            }
            State::SunSkip { remaining, .. } => {
                if *remaining == 0 {
                    if let State::SunSkip { data, .. } =
                        std::mem::replace(&mut self.state, State::Sniff)
                    {
                        self.state = State::Data(data);
                    }
                    return Ok(Some(0));
                }
                if data.is_empty() {
                    return Ok(None);
                }
                let n = (*remaining).min(data.len() as u64);
                *remaining -= n;
                Ok(Some(n as usize))
            }
            State::Data(audio) => audio.step(data, out),
        }
    }
}

/// Where the parser is.
enum State {
    /// Waiting for enough bytes to recognise the format.
    Sniff,
    /// Before the 12-byte RIFF header.
    WavHeader,
    /// Before a chunk header.
    WavChunk,
    /// Before the body of the `fmt ` chunk.
    WavFmt { size: u32 },
    /// Inside a chunk that is not needed.
    Skip { chunk: [u8; 4], remaining: u64 },
    /// Before the 24-byte Sun audio header.
    SunHeader,
    /// Between the Sun audio header and the data offset (the annotation).
    SunSkip { remaining: u64, data: Box<Data> },
    /// Decoding audio.
    Data(Box<Data>),
    /// An error ended decoding.
    Failed(Failure),
}

/// Why decoding stopped, before it is turned into a [`MediaError`] naming the attachment.
enum Stop {
    /// Not a streamable format: a whole-file decoder may read it.
    NotProgressive(String),
    /// A format or codec variant nothing here decodes.
    Unsupported(String),
    /// Corrupt or truncated.
    Broken(String),
    /// An error from elsewhere in the crate (resampling).
    Media(MediaError),
}

impl From<MediaError> for Stop {
    fn from(e: MediaError) -> Stop {
        Stop::Media(e)
    }
}

/// A stop remembered, so that later calls report it again.
struct Failure {
    unsupported: bool,
    detail: String,
}

impl Failure {
    fn of(stop: &Stop) -> Failure {
        match stop {
            Stop::NotProgressive(d) => Failure {
                unsupported: true,
                detail: not_progressive(d),
            },
            Stop::Unsupported(d) => Failure {
                unsupported: true,
                detail: d.clone(),
            },
            Stop::Broken(d) => Failure {
                unsupported: false,
                detail: d.clone(),
            },
            Stop::Media(e) => Failure {
                unsupported: matches!(e, MediaError::Unsupported { .. }),
                detail: match e {
                    MediaError::Unsupported { detail, .. } | MediaError::Decode { detail, .. } => {
                        detail.clone()
                    }
                    other => other.to_string(),
                },
            },
        }
    }

    fn again(&self) -> Stop {
        if self.unsupported {
            Stop::Unsupported(self.detail.clone())
        } else {
            Stop::Broken(self.detail.clone())
        }
    }
}

fn not_progressive(what: &str) -> String {
    format!("{what} is not decoded as it arrives: decode the whole attachment")
}

/// What the content type and file name say.
struct Hints {
    /// The name errors give the attachment.
    label: PathBuf,
    by_type: Option<AttachmentFormat>,
    by_name: Option<AttachmentFormat>,
    /// The file name's extension, for symphonia's probe.
    extension: Option<String>,
}

impl Hints {
    fn new(content_type: Option<&str>, file_name: Option<&str>) -> Hints {
        let file_name = file_name.map(str::trim).filter(|n| !n.is_empty());
        let extension = file_name
            .and_then(|n| Path::new(n).extension())
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        Hints {
            label: PathBuf::from(file_name.unwrap_or(IN_MEMORY)),
            by_type: content_type.and_then(AttachmentFormat::from_content_type),
            by_name: extension
                .as_deref()
                .and_then(AttachmentFormat::from_extension),
            extension,
        }
    }

    /// The headerless format the hints name, the content type's first.
    fn headerless(&self) -> Option<AttachmentFormat> {
        [self.by_type, self.by_name]
            .into_iter()
            .flatten()
            .find(|f| f.is_headerless())
    }

    fn names(&self, format: AttachmentFormat) -> bool {
        self.by_type == Some(format) || self.by_name == Some(format)
    }

    fn error(&self, stop: Stop) -> MediaError {
        let path = self.label.clone();
        match stop {
            Stop::NotProgressive(what) => MediaError::Unsupported {
                path,
                detail: not_progressive(&what),
            },
            Stop::Unsupported(detail) => MediaError::Unsupported { path, detail },
            Stop::Broken(detail) => MediaError::Decode { path, detail },
            Stop::Media(e) => e,
        }
    }
}

enum Sniffed {
    Format(AttachmentFormat),
    NeedMore,
    Unknown,
}

/// Recognises the format from the first bytes; `complete` when no more will come.
fn sniff(head: &[u8], complete: bool, hints: &Hints) -> Sniffed {
    if head.len() < SIGNATURE_BYTES && !complete {
        return Sniffed::NeedMore;
    }
    if head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WAVE") {
        return Sniffed::Format(AttachmentFormat::Wav);
    }
    for (signature, format) in [
        (&b".snd"[..], AttachmentFormat::SunAudio),
        (b"ID3", AttachmentFormat::Mp3),
        (b"OggS", AttachmentFormat::Ogg),
        (b"fLaC", AttachmentFormat::Flac),
    ] {
        if head.starts_with(signature) {
            return Sniffed::Format(format);
        }
    }
    let hinted = hints.headerless();
    // Every 33rd byte of raw GSM starts with the 0xD nibble. That is no signature (A-law
    // silence, 0xD5 throughout, has it too), so a hint naming another headerless format
    // wins; without one, eight frames are conclusive.
    let frames = head.len().div_ceil(gsm610::FRAME_BYTES);
    let examined = &head[..head.len().min(GSM_SNIFF_FRAMES * gsm610::FRAME_BYTES)];
    if frames > 0
        && examined
            .iter()
            .step_by(gsm610::FRAME_BYTES)
            .all(|b| b >> 4 == gsm610::FRAME_SIGNATURE)
        && examined.iter().any(|&b| b != examined[0])
    {
        if hints.names(AttachmentFormat::RawGsm) {
            return Sniffed::Format(AttachmentFormat::RawGsm);
        }
        if let Some(format) = hinted {
            return Sniffed::Format(format);
        }
        if frames < GSM_SNIFF_FRAMES && !complete {
            return Sniffed::NeedMore;
        }
        return Sniffed::Format(AttachmentFormat::RawGsm);
    }
    if mpeg_frame_header(head) {
        return Sniffed::Format(hinted.unwrap_or(AttachmentFormat::Mp3));
    }
    hinted.map_or(Sniffed::Unknown, Sniffed::Format)
}

/// An MPEG audio frame header (layer I–III, any version) at the start of `b`.
fn mpeg_frame_header(b: &[u8]) -> bool {
    b.len() >= 4
        && b[0] == 0xFF
        && b[1] & 0xE0 == 0xE0
        && (b[1] >> 3) & 3 != 1
        && (b[1] >> 1) & 3 != 0
        && b[2] >> 4 != 15
        && (b[2] >> 2) & 3 != 3
}

/// The fields of a WAV `fmt ` chunk that decoding needs.
#[derive(Clone, Copy, Debug)]
struct WavFmt {
    /// The format tag; for `WAVE_FORMAT_EXTENSIBLE`, its sub-format's.
    tag: u16,
    channels: u16,
    rate: u32,
    block_align: u16,
    bits: u16,
    /// The first word of the extension (samples per block for GSM).
    extra_word: Option<u16>,
}

impl WavFmt {
    fn parse(f: &[u8]) -> Result<WavFmt, Stop> {
        let u16_at = |i: usize| u16::from_le_bytes([f[i], f[i + 1]]);
        let extension = if f.len() >= 18 {
            let n = usize::from(u16_at(16)).min(f.len() - 18);
            &f[18..18 + n]
        } else {
            &[]
        };
        let mut tag = u16_at(0);
        if tag == 0xFFFE {
            if extension.len() < 22 {
                return Err(Stop::Broken(
                    "WAV: a WAVE_FORMAT_EXTENSIBLE fmt chunk without its 22-byte extension".into(),
                ));
            }
            // A channel mask that cannot describe the channels: symphonia 0.5 overflows a
            // shift on such a header (a panic in debug builds) before it can refuse it.
            let channels = u16_at(2);
            let mask = u32::from_le_bytes(extension[2..6].try_into().expect("4 bytes"));
            if channels > 32 || (mask >= 1 << 31 && u32::from(channels) > mask.count_ones()) {
                return Err(Stop::Broken(format!(
                    "WAV: WAVE_FORMAT_EXTENSIBLE with {channels} channels and channel mask \
                     {mask:#010x}"
                )));
            }
            let guid = &extension[6..22];
            if guid[2..] != KSDATAFORMAT_TAIL {
                return Err(Stop::NotProgressive(
                    "WAV with a sub-format that is not a WAVE format tag".into(),
                ));
            }
            tag = u16::from_le_bytes([guid[0], guid[1]]);
        }
        Ok(WavFmt {
            tag,
            channels: u16_at(2),
            rate: u32::from_le_bytes([f[4], f[5], f[6], f[7]]),
            block_align: u16_at(12),
            bits: u16_at(14),
            extra_word: (extension.len() >= 2)
                .then(|| u16::from_le_bytes([extension[0], extension[1]])),
        })
    }

    /// The decoder for the data chunk that follows.
    fn data(self, declared: Option<u64>) -> Result<Data, Stop> {
        let (name, codec) = match (self.tag, self.bits) {
            (0x0001, 8) => ("WAV (8-bit PCM)", Codec::U8),
            (0x0001, 16) => ("WAV (16-bit PCM)", Codec::S16Le),
            (0x0001, bits) => {
                return Err(Stop::NotProgressive(format!("WAV with {bits}-bit PCM")));
            }
            (0x0006, _) => ("WAV (A-law)", Codec::Alaw),
            (0x0007, _) => ("WAV (μ-law)", Codec::Mulaw),
            (0x0031, _) => {
                let name = "WAV (GSM 6.10)";
                if self.channels != 1 {
                    return Err(Stop::Unsupported(format!(
                        "{name}: {} channels (Microsoft GSM 6.10 is mono)",
                        self.channels
                    )));
                }
                if usize::from(self.block_align) != gsm610::WAV49_BLOCK_BYTES {
                    return Err(Stop::Unsupported(format!(
                        "{name}: blocks of {} bytes, not Microsoft GSM 6.10's 65",
                        self.block_align
                    )));
                }
                if let Some(n) = self.extra_word.filter(|&n| n != 320) {
                    return Err(Stop::Unsupported(format!(
                        "{name}: {n} samples per block, not Microsoft GSM 6.10's 320"
                    )));
                }
                (name, Codec::GsmWav49(Box::default()))
            }
            (0x0003, _) => return Err(Stop::NotProgressive("WAV with float samples".into())),
            (0x0002, _) => return Err(Stop::NotProgressive("WAV with MS ADPCM".into())),
            (0x0011, _) => return Err(Stop::NotProgressive("WAV with IMA ADPCM".into())),
            (tag, _) => {
                return Err(Stop::NotProgressive(format!(
                    "WAV with format tag {tag:#06x}"
                )));
            }
        };
        let output = Output::new(self.rate, self.channels).map_err(|e| match e {
            Stop::Broken(detail) => Stop::Broken(format!("{name}: {detail}")),
            other => other,
        })?;
        let mut data = Data::new(name, codec, output, declared);
        data.riff = true;
        Ok(data)
    }
}

/// Reads a Sun audio header: the bytes of annotation to skip, and the data's decoder.
fn sun_header(h: &[u8; 24]) -> Result<(u64, Data), Stop> {
    let word = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let offset = word(4);
    if offset < 24 {
        return Err(Stop::Broken(format!(
            "Sun audio: a data offset of {offset}, inside the 24-byte header"
        )));
    }
    let declared = match word(8) {
        u32::MAX => None,
        n => Some(u64::from(n)),
    };
    let (name, codec) = match word(12) {
        1 => ("Sun audio (μ-law)", Codec::Mulaw),
        2 => ("Sun audio (8-bit PCM)", Codec::S8),
        3 => ("Sun audio (16-bit PCM)", Codec::S16Be),
        27 => ("Sun audio (A-law)", Codec::Alaw),
        n => {
            return Err(Stop::Unsupported(format!(
                "Sun audio with encoding {n} (only μ-law, A-law and 8/16-bit PCM are decoded)"
            )));
        }
    };
    let channels = u16::try_from(word(20)).unwrap_or(u16::MAX);
    let output = Output::new(word(16), channels).map_err(|e| match e {
        Stop::Broken(detail) => Stop::Broken(format!("{name}: {detail}")),
        other => other,
    })?;
    Ok((
        u64::from(offset - 24),
        Data::new(name, codec, output, declared),
    ))
}

/// The audio data of an attachment, being decoded.
struct Data {
    /// The format and codec, for errors: "WAV (GSM 6.10)".
    name: &'static str,
    codec: Codec,
    /// Bytes in the smallest decodable unit (a sample of every channel, a GSM frame).
    block: usize,
    /// Data bytes the header declares, if it knows.
    declared: Option<u64>,
    /// Declared bytes not yet consumed.
    remaining: Option<u64>,
    /// Blocks decoded so far.
    blocks: u64,
    /// Whether this is a RIFF chunk (padded to an even length).
    riff: bool,
    output: Output,
    /// Decoded interleaved samples on their way to `output`.
    scratch: Vec<i16>,
}

impl Data {
    fn new(name: &'static str, codec: Codec, output: Output, declared: Option<u64>) -> Data {
        let block = codec.block_bytes(output.channels);
        Data {
            name,
            codec,
            block,
            declared,
            remaining: declared,
            blocks: 0,
            riff: false,
            output,
            scratch: Vec::new(),
        }
    }

    fn step(&mut self, data: &[u8], out: &mut Vec<i16>) -> Result<Option<usize>, Stop> {
        if data.is_empty() {
            return Ok(None);
        }
        let available = match self.remaining {
            // Past the declared audio: whatever follows (chunks, padding) is not needed.
            Some(0) => return Ok(Some(data.len())),
            Some(r) => r.min(data.len() as u64) as usize,
            None => data.len(),
        };
        let whole = available / self.block * self.block;
        if whole == 0 {
            if let Some(r) = self.remaining
                && available as u64 == r
            {
                // The declared audio ends inside a block: the pad byte that writers of odd
                // blocks (sox's GSM) count into the data chunk, or a fault.
                if self.riff && r == 1 && self.block % 2 == 1 {
                    self.remaining = Some(0);
                    return Ok(Some(1));
                }
                return Err(Stop::Broken(format!(
                    "{}: the header declares {} bytes of audio, which end {r} bytes into a \
                     {}-byte {}",
                    self.name,
                    self.declared.unwrap_or_default(),
                    self.block,
                    self.codec.unit()
                )));
            }
            return Ok(None);
        }
        for piece in data[..whole].chunks(DECODE_CHUNK / self.block * self.block) {
            self.scratch.clear();
            self.codec
                .decode(piece, self.blocks, &mut self.scratch)
                .map_err(|detail| Stop::Broken(format!("{}: {detail}", self.name)))?;
            self.blocks += (piece.len() / self.block) as u64;
            self.output.push(&self.scratch, out)?;
        }
        if let Some(r) = &mut self.remaining {
            *r -= whole as u64;
        }
        Ok(Some(whole))
    }
}

/// How data bytes become 16-bit samples.
enum Codec {
    /// Unsigned 8-bit PCM (WAV).
    U8,
    /// Signed 8-bit PCM (Sun audio).
    S8,
    S16Le,
    S16Be,
    Mulaw,
    Alaw,
    /// 33-byte frames.
    GsmFrames(Box<gsm610::Decoder>),
    /// 65-byte Microsoft GSM 6.10 blocks.
    GsmWav49(Box<gsm610::Decoder>),
}

impl Codec {
    fn block_bytes(&self, channels: usize) -> usize {
        match self {
            Codec::U8 | Codec::S8 | Codec::Mulaw | Codec::Alaw => channels,
            Codec::S16Le | Codec::S16Be => 2 * channels,
            Codec::GsmFrames(_) => gsm610::FRAME_BYTES,
            Codec::GsmWav49(_) => gsm610::WAV49_BLOCK_BYTES,
        }
    }

    /// What a block is called in errors.
    fn unit(&self) -> &'static str {
        match self {
            Codec::GsmFrames(_) => "frame",
            Codec::GsmWav49(_) => "block",
            _ => "sample frame",
        }
    }

    /// Decodes whole blocks; `first` is the index of the first, for errors.
    fn decode(&mut self, bytes: &[u8], first: u64, pcm: &mut Vec<i16>) -> Result<(), String> {
        match self {
            Codec::U8 => pcm.extend(bytes.iter().map(|&b| (i16::from(b) - 128) << 8)),
            Codec::S8 => pcm.extend(bytes.iter().map(|&b| i16::from(b as i8) << 8)),
            Codec::S16Le => pcm.extend(
                bytes
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]])),
            ),
            Codec::S16Be => pcm.extend(
                bytes
                    .chunks_exact(2)
                    .map(|b| i16::from_be_bytes([b[0], b[1]])),
            ),
            Codec::Mulaw => pcm.extend(bytes.iter().map(|&b| g711::ulaw_decode(b))),
            Codec::Alaw => pcm.extend(bytes.iter().map(|&b| g711::alaw_decode(b))),
            Codec::GsmFrames(decoder) => {
                let mut frame = [0i16; gsm610::FRAME_SAMPLES];
                for (i, bytes) in bytes.chunks_exact(gsm610::FRAME_BYTES).enumerate() {
                    let bytes = bytes.try_into().expect("whole frames");
                    decoder.decode_frame(bytes, &mut frame).map_err(|e| {
                        let n = first + i as u64;
                        format!("frame {n} (byte {}): {e}", n * gsm610::FRAME_BYTES as u64)
                    })?;
                    pcm.extend_from_slice(&frame);
                }
            }
            Codec::GsmWav49(decoder) => {
                let mut block = [0i16; gsm610::WAV49_BLOCK_SAMPLES];
                for bytes in bytes.chunks_exact(gsm610::WAV49_BLOCK_BYTES) {
                    decoder.decode_wav49_block(bytes.try_into().expect("whole blocks"), &mut block);
                    pcm.extend_from_slice(&block);
                }
            }
        }
        Ok(())
    }
}

/// Interleaved samples at the attachment's rate to 8 kHz mono.
struct Output {
    rate: u32,
    channels: usize,
    /// Input sample frames so far, against [`MAX_DURATION`].
    frames: u64,
    max_frames: u64,
    /// Output samples so far.
    produced: u64,
    /// `None` at 8 kHz.
    resampler: Option<Resampler8k>,
    mono: Vec<f32>,
    resampled: Vec<f32>,
}

impl Output {
    fn new(rate: u32, channels: u16) -> Result<Output, Stop> {
        if !(MIN_RATE..=MAX_RATE).contains(&rate) {
            return Err(Stop::Broken(format!("a sample rate of {rate} Hz")));
        }
        if channels == 0 || channels > MAX_CHANNELS {
            return Err(Stop::Broken(format!("{channels} channels")));
        }
        Ok(Output {
            rate,
            channels: usize::from(channels),
            frames: 0,
            max_frames: MAX_DURATION.as_secs() * u64::from(rate),
            produced: 0,
            resampler: if rate == SAMPLE_RATE {
                None
            } else {
                Some(Resampler8k::new(rate)?)
            },
            mono: Vec::new(),
            resampled: Vec::new(),
        })
    }

    fn push(&mut self, interleaved: &[i16], out: &mut Vec<i16>) -> Result<(), Stop> {
        self.frames += (interleaved.len() / self.channels) as u64;
        if self.frames > self.max_frames {
            return Err(Stop::Unsupported(format!(
                "longer than the {} s limit",
                MAX_DURATION.as_secs()
            )));
        }
        let before = out.len();
        if self.channels == 1 && self.rate == SAMPLE_RATE {
            out.extend_from_slice(interleaved);
        } else {
            self.mono.clear();
            if self.channels == 1 {
                self.mono
                    .extend(interleaved.iter().map(|&s| f32::from(s) / 32768.0));
            } else {
                let scale = 1.0 / self.channels as f32;
                self.mono
                    .extend(interleaved.chunks_exact(self.channels).map(|frame| {
                        frame.iter().map(|&s| f32::from(s) / 32768.0).sum::<f32>() * scale
                    }));
            }
            match &mut self.resampler {
                None => out.extend(self.mono.iter().map(|&x| g711::f32_to_i16(x))),
                Some(r) => {
                    self.resampled.clear();
                    r.push(&self.mono, &mut self.resampled)?;
                    out.extend(self.resampled.iter().map(|&x| g711::f32_to_i16(x)));
                }
            }
        }
        self.produced += (out.len() - before) as u64;
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<i16>) -> Result<(), Stop> {
        if let Some(r) = self.resampler.take() {
            self.resampled.clear();
            r.finish(&mut self.resampled)?;
            out.extend(self.resampled.iter().map(|&x| g711::f32_to_i16(x)));
            self.produced += self.resampled.len() as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hints(content_type: Option<&str>, file_name: Option<&str>) -> Hints {
        Hints::new(content_type, file_name)
    }

    fn sniffed(head: &[u8], complete: bool, h: &Hints) -> Option<AttachmentFormat> {
        match sniff(head, complete, h) {
            Sniffed::Format(f) => Some(f),
            Sniffed::NeedMore => panic!("needs more"),
            Sniffed::Unknown => None,
        }
    }

    fn gsm_like(frames: usize) -> Vec<u8> {
        let mut b = vec![0x55u8; frames * gsm610::FRAME_BYTES];
        for f in b.chunks_mut(gsm610::FRAME_BYTES) {
            f[0] = 0xD7;
        }
        b
    }

    #[test]
    fn signatures_win_over_hints() {
        let none = hints(None, None);
        let mut wav = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        assert_eq!(
            sniffed(&wav, false, &hints(Some("audio/basic"), Some("a.gsm"))),
            Some(AttachmentFormat::Wav)
        );
        wav[8] = b'X';
        assert_eq!(sniffed(&wav, true, &none), None);
        assert_eq!(
            sniffed(
                b".snd\0\0\0\x18\0\0\0\0",
                false,
                &hints(Some("audio/mpeg"), None)
            ),
            Some(AttachmentFormat::SunAudio)
        );
        assert_eq!(
            sniffed(
                b"ID3\x04\0\0\0\0\0\0\0\0",
                false,
                &hints(None, Some("x.wav"))
            ),
            Some(AttachmentFormat::Mp3)
        );
        assert_eq!(
            sniffed(b"OggS\0\x02\0\0\0\0\0\0", false, &none),
            Some(AttachmentFormat::Ogg)
        );
        assert_eq!(
            sniffed(b"fLaC\0\0\0\x22\0\0\0\0", false, &none),
            Some(AttachmentFormat::Flac)
        );
        assert_eq!(
            sniffed(
                &[0xFF, 0xFB, 0x90, 0x64, 0, 0, 0, 0, 0, 0, 0, 0],
                false,
                &none
            ),
            Some(AttachmentFormat::Mp3)
        );
        // An ADTS (AAC) header is not an MPEG audio layer.
        assert_eq!(
            sniffed(
                &[0xFF, 0xF1, 0x50, 0x80, 0, 0, 0, 0, 0, 0, 0, 0],
                true,
                &none
            ),
            None
        );
    }

    #[test]
    fn raw_gsm_is_recognised_by_its_frame_nibbles() {
        let none = hints(None, None);
        let long = gsm_like(GSM_SNIFF_FRAMES);
        assert_eq!(sniffed(&long, false, &none), Some(AttachmentFormat::RawGsm));
        // A hint naming another headerless format breaks the tie; of two hints, the one
        // naming GSM.
        assert_eq!(
            sniffed(&long, false, &hints(Some("audio/basic"), None)),
            Some(AttachmentFormat::RawMulaw)
        );
        assert_eq!(
            sniffed(&long, false, &hints(Some("audio/basic"), Some("m.gsm"))),
            Some(AttachmentFormat::RawGsm)
        );
        // A-law silence has the nibbles, but is constant.
        assert_eq!(sniffed(&[0xD5; 400], true, &none), None);
        assert_eq!(
            sniffed(&[0xD5; 400], true, &hints(None, Some("m.al"))),
            Some(AttachmentFormat::RawAlaw)
        );
        // Fewer frames: wait for more, unless a hint decides.
        assert!(matches!(
            sniff(&long[..100], false, &none),
            Sniffed::NeedMore
        ));
        assert_eq!(
            sniffed(&long[..100], false, &hints(None, Some("vm.GSM"))),
            Some(AttachmentFormat::RawGsm)
        );
        // A short complete file.
        assert_eq!(
            sniffed(&long[..66], true, &none),
            Some(AttachmentFormat::RawGsm)
        );
        assert_eq!(
            sniffed(&long[..66], true, &hints(Some("audio/basic"), None)),
            Some(AttachmentFormat::RawMulaw)
        );
        assert_eq!(
            sniffed(&long[..66], true, &hints(None, Some("x.al"))),
            Some(AttachmentFormat::RawAlaw)
        );
        // One frame without the nibble: not raw GSM unless a hint says so.
        let mut broken = long.clone();
        broken[33 * 5] = 0x12;
        assert_eq!(sniffed(&broken, true, &none), None);
        assert_eq!(
            sniffed(&broken, true, &hints(Some("audio/x-gsm"), None)),
            Some(AttachmentFormat::RawGsm)
        );
    }

    #[test]
    fn headerless_formats_come_from_hints() {
        let silence = [0xFFu8; 400];
        assert_eq!(sniffed(&silence, true, &hints(None, None)), None);
        assert_eq!(
            sniffed(&silence, true, &hints(Some("audio/basic; rate=8000"), None)),
            Some(AttachmentFormat::RawMulaw)
        );
        assert_eq!(
            sniffed(
                &silence,
                true,
                &hints(Some("application/octet-stream"), Some("msg0001.ul"))
            ),
            Some(AttachmentFormat::RawMulaw)
        );
        // A hint for a format with a signature cannot stand in for the signature.
        assert_eq!(
            sniffed(&silence, true, &hints(Some("audio/wav"), Some("msg.wav"))),
            None
        );
        // The content type is asked first.
        assert_eq!(
            sniffed(
                &silence,
                true,
                &hints(Some("audio/x-alaw-basic"), Some("m.ul"))
            ),
            Some(AttachmentFormat::RawAlaw)
        );
    }

    #[test]
    fn hints_parse_content_types_and_names() {
        let h = hints(Some(" Audio/X-WAV ; name=\"msg.wav\""), Some("  "));
        assert_eq!(h.by_type, Some(AttachmentFormat::Wav));
        assert_eq!(h.by_name, None);
        assert_eq!(h.label, PathBuf::from(IN_MEMORY));
        let h = hints(None, Some("msg0000.WAV"));
        assert_eq!(h.by_name, Some(AttachmentFormat::Wav));
        assert_eq!(h.extension.as_deref(), Some("wav"));
        assert_eq!(h.label, PathBuf::from("msg0000.WAV"));
    }

    #[test]
    fn extensible_fmt_resolves_the_sub_format() {
        let mut fmt = Vec::new();
        fmt.extend_from_slice(&0xFFFEu16.to_le_bytes());
        fmt.extend_from_slice(&1u16.to_le_bytes());
        fmt.extend_from_slice(&8000u32.to_le_bytes());
        fmt.extend_from_slice(&8000u32.to_le_bytes());
        fmt.extend_from_slice(&1u16.to_le_bytes());
        fmt.extend_from_slice(&8u16.to_le_bytes());
        fmt.extend_from_slice(&22u16.to_le_bytes());
        fmt.extend_from_slice(&8u16.to_le_bytes());
        fmt.extend_from_slice(&4u32.to_le_bytes());
        fmt.extend_from_slice(&[0x07, 0x00]);
        fmt.extend_from_slice(&KSDATAFORMAT_TAIL);
        let parsed = WavFmt::parse(&fmt).unwrap_or_else(|_| panic!("parses"));
        assert_eq!(parsed.tag, 7);
        let data = parsed
            .data(Some(10))
            .unwrap_or_else(|_| panic!("decodable"));
        assert_eq!(data.name, "WAV (μ-law)");
        // Channel masks that cannot describe the channels.
        for (channels, mask) in [(33u16, 0u32), (2, 1 << 31), (3, 0xC000_0000)] {
            let mut odd = fmt.clone();
            odd[2..4].copy_from_slice(&channels.to_le_bytes());
            odd[20..24].copy_from_slice(&mask.to_le_bytes());
            assert!(
                matches!(WavFmt::parse(&odd), Err(Stop::Broken(_))),
                "{channels} {mask:#x}"
            );
        }
        // A GUID from elsewhere is not a format tag.
        let n = fmt.len();
        fmt[n - 1] = 0;
        assert!(matches!(WavFmt::parse(&fmt), Err(Stop::NotProgressive(_))));
        fmt.truncate(30);
        fmt[16] = 12;
        assert!(matches!(WavFmt::parse(&fmt), Err(Stop::Broken(_))));
    }
}
