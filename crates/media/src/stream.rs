//! Decoding of live upstreams as their bytes arrive: compressed internet radio streams
//! (MP3, AAC in ADTS, Ogg Vorbis with symphonia; Ogg Opus with `opus-decoder`) and raw or
//! WAV PCM from a pipe, into 8 kHz mono handed on in pieces.
//!
//! Unlike [`decode_file`](crate::decode_file), nothing here has an end to wait for or a
//! length to check: the stream is read until it ends or fails, never seeked, and whatever
//! is decoded leaves at once. The caller owns the bytes' transport (a socket, a pipe) and
//! decides what an end means.

use std::io::{ErrorKind, Read};
use std::ops::ControlFlow;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, CODEC_TYPE_OPUS, CodecParameters, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader, Packet};
use symphonia::core::io::{MediaSourceStream, ReadOnlySource};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;
use symphonia::default::formats::{AdtsReader, FlacReader, MpaReader, OggReader, WavReader};

use crate::Resampler8k;

/// Consecutive undecodable packets after which a stream is declared broken.
const MAX_CONSECUTIVE_BAD_PACKETS: u32 = 64;
/// Bytes read from a PCM pipe at a time.
const PCM_READ: usize = 8192;
/// Largest WAV chunk skipped before the `data` chunk of a piped WAV stream.
const MAX_SKIPPED_CHUNK: u32 = 1 << 20;

/// What an upstream turned out to carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamInfo {
    /// Codec short name, e.g. `mp3`, `aac`, `vorbis`, `opus`, `pcm_s16le`.
    pub codec: String,
    /// The upstream's sample rate, Hz.
    pub sample_rate: u32,
    /// The upstream's channel count (downmixed to mono here).
    pub channels: u32,
}

/// Why a stream stopped delivering audio.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Reading the stream failed (connection reset, timeout, pipe closed with an error).
    #[error("reading the stream failed: {0}")]
    Io(#[from] std::io::Error),
    /// The stream holds no audio this build can decode.
    #[error("unsupported stream: {0}")]
    Unsupported(String),
    /// The stream's audio data cannot be decoded.
    #[error("undecodable stream: {0}")]
    Decode(String),
}

/// How a stream that did not fail ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// The upstream closed the stream.
    Eof,
    /// The sink asked to stop.
    Stopped,
}

/// The container of a compressed stream, when its content type or URL tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamContainer {
    /// MPEG audio frames (MP3).
    Mpeg,
    /// AAC in ADTS frames.
    Adts,
    /// Ogg (Vorbis, Opus or FLAC inside).
    Ogg,
    /// Native FLAC.
    Flac,
    /// RIFF WAVE.
    Wav,
}

impl StreamContainer {
    /// From an HTTP Content-Type (parameters ignored), e.g. `audio/mpeg` or `audio/aacp`.
    pub fn from_content_type(content_type: &str) -> Option<StreamContainer> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        Some(match essence.as_str() {
            "audio/mpeg" | "audio/mp3" | "audio/mpeg3" | "audio/x-mpeg" | "audio/x-mp3" => {
                StreamContainer::Mpeg
            }
            "audio/aac" | "audio/aacp" | "audio/x-aac" | "audio/x-aacp" | "audio/vnd.dlna.adts" => {
                StreamContainer::Adts
            }
            "audio/ogg"
            | "application/ogg"
            | "audio/x-ogg"
            | "audio/opus"
            | "audio/vorbis"
            | "audio/ogg;codecs=opus" => StreamContainer::Ogg,
            "audio/flac" | "audio/x-flac" => StreamContainer::Flac,
            "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => StreamContainer::Wav,
            _ => return None,
        })
    }

    /// From a file extension (without the dot), e.g. `mp3` or `opus`.
    pub fn from_extension(ext: &str) -> Option<StreamContainer> {
        Some(match ext.to_ascii_lowercase().as_str() {
            "mp3" | "mpga" | "mp2" => StreamContainer::Mpeg,
            "aac" | "adts" => StreamContainer::Adts,
            "ogg" | "oga" | "opus" => StreamContainer::Ogg,
            "flac" => StreamContainer::Flac,
            "wav" => StreamContainer::Wav,
            _ => return None,
        })
    }
}

/// Decodes a compressed live stream until it ends, fails, or `sink` breaks: every decoded
/// piece goes to `sink` as 8 kHz mono; `on_info` hears what the stream carries once it is
/// known (again after an Ogg chain boundary changes it).
///
/// `container` picks the demuxer when the transport named it (a live stream may start
/// anywhere, so guessing is the last resort); `None` probes the first bytes.
pub fn decode_stream(
    source: Box<dyn Read + Send + Sync>,
    container: Option<StreamContainer>,
    on_info: &mut dyn FnMut(&StreamInfo),
    sink: &mut dyn FnMut(&[f32]) -> ControlFlow<()>,
) -> Result<StreamEnd, StreamError> {
    let mss = MediaSourceStream::new(Box::new(ReadOnlySource::new(source)), Default::default());
    let options = FormatOptions {
        enable_gapless: false,
        ..Default::default()
    };
    let mut format: Box<dyn FormatReader> = match container {
        Some(StreamContainer::Mpeg) => Box::new(MpaReader::try_new(mss, &options).map_err(open)?),
        Some(StreamContainer::Adts) => Box::new(AdtsReader::try_new(mss, &options).map_err(open)?),
        Some(StreamContainer::Ogg) => Box::new(OggReader::try_new(mss, &options).map_err(open)?),
        Some(StreamContainer::Flac) => Box::new(FlacReader::try_new(mss, &options).map_err(open)?),
        Some(StreamContainer::Wav) => Box::new(WavReader::try_new(mss, &options).map_err(open)?),
        None => {
            symphonia::default::get_probe()
                .format(&Hint::new(), mss, &options, &MetadataOptions::default())
                .map_err(open)?
                .format
        }
    };
    let mut out = Pcm8k::default();
    loop {
        let track = format
            .tracks()
            .iter()
            .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
            .ok_or_else(|| StreamError::Unsupported("the stream has no audio track".into()))?;
        let track_id = track.id;
        let mut decoder = TrackDecoder::new(&track.codec_params)?;
        let mut announced = false;
        let mut bad_packets = 0u32;
        loop {
            let packet = match format.next_packet() {
                Ok(packet) => packet,
                // A new Ogg chain (or the like): pick the track and decoder again.
                Err(SymphoniaError::ResetRequired) => break,
                Err(SymphoniaError::IoError(e)) if e.kind() == ErrorKind::UnexpectedEof => {
                    return Ok(StreamEnd::Eof);
                }
                Err(SymphoniaError::IoError(e)) => return Err(StreamError::Io(e)),
                Err(SymphoniaError::DecodeError(e)) => {
                    // The demuxer lost sync on damaged data; it resynchronises itself.
                    bad_packets += 1;
                    if bad_packets >= MAX_CONSECUTIVE_BAD_PACKETS {
                        return Err(StreamError::Decode(e.to_string()));
                    }
                    continue;
                }
                Err(e) => return Err(StreamError::Decode(e.to_string())),
            };
            if packet.track_id() != track_id {
                continue;
            }
            match decoder.decode(&packet, &mut out.mono) {
                Ok(rate) => {
                    bad_packets = 0;
                    if !announced {
                        on_info(&StreamInfo {
                            codec: decoder.codec_name(),
                            sample_rate: rate,
                            channels: decoder.channels(),
                        });
                        announced = true;
                    }
                    if out.flush(rate, sink)?.is_break() {
                        return Ok(StreamEnd::Stopped);
                    }
                }
                Err(detail) => {
                    bad_packets += 1;
                    if bad_packets >= MAX_CONSECUTIVE_BAD_PACKETS {
                        return Err(StreamError::Decode(detail));
                    }
                }
            }
        }
    }
}

fn open(e: SymphoniaError) -> StreamError {
    match e {
        SymphoniaError::IoError(e) => StreamError::Io(e),
        SymphoniaError::Unsupported(what) => StreamError::Unsupported(what.to_string()),
        e => StreamError::Decode(e.to_string()),
    }
}

/// Mono samples at their own rate, resampled to 8 kHz on their way to the sink.
#[derive(Default)]
struct Pcm8k {
    /// Decoded mono samples waiting to be resampled.
    mono: Vec<f32>,
    resampler: Option<(u32, Resampler8k)>,
    out: Vec<f32>,
}

impl Pcm8k {
    /// Resamples what `mono` holds (at `rate`) and hands it to `sink`.
    fn flush(
        &mut self,
        rate: u32,
        sink: &mut dyn FnMut(&[f32]) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, StreamError> {
        let resampler = match &mut self.resampler {
            Some((r, resampler)) if *r == rate => resampler,
            slot => {
                let resampler =
                    Resampler8k::new(rate).map_err(|e| StreamError::Unsupported(e.to_string()))?;
                &mut slot.insert((rate, resampler)).1
            }
        };
        self.out.clear();
        resampler
            .push(&self.mono, &mut self.out)
            .map_err(|e| StreamError::Decode(e.to_string()))?;
        self.mono.clear();
        if self.out.is_empty() {
            return Ok(ControlFlow::Continue(()));
        }
        Ok(sink(&self.out))
    }
}

/// The decoder of one track: symphonia's, or Opus (which symphonia demuxes but cannot
/// decode).
enum TrackDecoder {
    Symphonia {
        decoder: Box<dyn symphonia::core::codecs::Decoder>,
        name: String,
        channels: u32,
        interleaved: Option<SampleBuffer<f32>>,
    },
    Opus(Box<OpusTrack>),
}

impl TrackDecoder {
    fn new(params: &CodecParameters) -> Result<TrackDecoder, StreamError> {
        if params.codec == CODEC_TYPE_OPUS {
            let opus = OpusTrack::new(params.extra_data.as_deref())?;
            return Ok(TrackDecoder::Opus(Box::new(opus)));
        }
        let codecs = symphonia::default::get_codecs();
        let name = codecs
            .get_codec(params.codec)
            .map(|d| d.short_name.to_string())
            .unwrap_or_else(|| format!("{}", params.codec));
        let decoder = codecs
            .make(params, &DecoderOptions::default())
            .map_err(|_| StreamError::Unsupported(format!("audio codec {name}")))?;
        Ok(TrackDecoder::Symphonia {
            decoder,
            name,
            channels: params.channels.map_or(0, |c| c.count() as u32),
            interleaved: None,
        })
    }

    fn codec_name(&self) -> String {
        match self {
            TrackDecoder::Symphonia { name, .. } => name.clone(),
            TrackDecoder::Opus(_) => "opus".into(),
        }
    }

    fn channels(&self) -> u32 {
        match self {
            TrackDecoder::Symphonia { channels, .. } => *channels,
            TrackDecoder::Opus(opus) => opus.channels,
        }
    }

    /// Decodes one packet, appending mono samples to `mono`; returns their rate.
    fn decode(&mut self, packet: &Packet, mono: &mut Vec<f32>) -> Result<u32, String> {
        match self {
            TrackDecoder::Opus(opus) => opus.decode(&packet.data, mono),
            TrackDecoder::Symphonia {
                decoder,
                channels: known_channels,
                interleaved,
                ..
            } => {
                let audio = decoder.decode(packet).map_err(|e| e.to_string())?;
                let spec = *audio.spec();
                if spec.rate == 0 {
                    return Err("the stream has no sample rate".into());
                }
                let channels = spec.channels.count().max(1);
                *known_channels = channels as u32;
                let buffer = match interleaved {
                    Some(b) if b.capacity() >= audio.capacity() * channels => b,
                    slot => slot.insert(SampleBuffer::new(audio.capacity() as u64, spec)),
                };
                buffer.copy_interleaved_ref(audio);
                downmix(buffer.samples(), channels, mono);
                Ok(spec.rate)
            }
        }
    }
}

fn downmix(interleaved: &[f32], channels: usize, mono: &mut Vec<f32>) {
    if channels == 1 {
        mono.extend_from_slice(interleaved);
    } else {
        let scale = 1.0 / channels as f32;
        mono.extend(
            interleaved
                .chunks_exact(channels)
                .map(|frame| frame.iter().sum::<f32>() * scale),
        );
    }
}

/// Opus decoded straight to 8 kHz mono (Opus decodes at any of its rates natively, so no
/// resampling is needed), honouring the Ogg Opus header's pre-skip and output gain
/// (RFC 7845 §5.1).
struct OpusTrack {
    decoder: opus_decoder::OpusDecoder,
    /// Output samples still to drop at the start (the encoder's look-ahead).
    skip: usize,
    gain: f32,
    channels: u32,
    scratch: Vec<f32>,
}

/// Opus's internal rate, the unit of the header's pre-skip.
const OPUS_RATE: u32 = 48_000;
/// The rate Opus is decoded at here.
const OPUS_OUT_RATE: u32 = 8000;

impl OpusTrack {
    fn new(head: Option<&[u8]>) -> Result<OpusTrack, StreamError> {
        let head = head.ok_or_else(|| StreamError::Decode("Ogg Opus without OpusHead".into()))?;
        let head = OpusHead::parse(head)?;
        if head.mapping_family != 0 && head.channels > 2 {
            return Err(StreamError::Unsupported(format!(
                "Opus with {} channels (mapping family {})",
                head.channels, head.mapping_family
            )));
        }
        let decoder = opus_decoder::OpusDecoder::new(OPUS_OUT_RATE, 1)
            .map_err(|e| StreamError::Decode(e.to_string()))?;
        // 120 ms, the longest Opus packet.
        let scratch = vec![0.0; (OPUS_OUT_RATE as usize) * 120 / 1000];
        Ok(OpusTrack {
            decoder,
            skip: usize::from(head.pre_skip) * OPUS_OUT_RATE as usize / OPUS_RATE as usize,
            gain: 10f32.powf(f32::from(head.output_gain_q8) / (20.0 * 256.0)),
            channels: u32::from(head.channels),
            scratch,
        })
    }

    fn decode(&mut self, data: &[u8], mono: &mut Vec<f32>) -> Result<u32, String> {
        let n = self
            .decoder
            .decode_float(data, &mut self.scratch, false)
            .map_err(|e| e.to_string())?;
        let decoded = &self.scratch[..n.min(self.scratch.len())];
        let skip = self.skip.min(decoded.len());
        self.skip -= skip;
        mono.extend(decoded[skip..].iter().map(|s| s * self.gain));
        Ok(OPUS_OUT_RATE)
    }
}

/// The fields of an Ogg Opus identification header this decoder uses (RFC 7845 §5.1).
#[derive(Debug, PartialEq)]
struct OpusHead {
    channels: u8,
    pre_skip: u16,
    output_gain_q8: i16,
    mapping_family: u8,
}

impl OpusHead {
    fn parse(b: &[u8]) -> Result<OpusHead, StreamError> {
        if b.len() < 19 || &b[..8] != b"OpusHead" {
            return Err(StreamError::Decode("malformed OpusHead".into()));
        }
        if b[8] >> 4 != 0 {
            return Err(StreamError::Unsupported(format!(
                "Ogg Opus version {}",
                b[8]
            )));
        }
        Ok(OpusHead {
            channels: b[9].max(1),
            pre_skip: u16::from_le_bytes([b[10], b[11]]),
            output_gain_q8: i16::from_le_bytes([b[16], b[17]]),
            mapping_family: b[18],
        })
    }
}

/// How a PCM upstream (a program's stdout) is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PcmFormat {
    /// Headerless signed 16-bit little-endian samples, channels interleaved.
    S16Le {
        /// Sample rate, Hz.
        sample_rate: u32,
        /// Interleaved channels (downmixed to mono).
        channels: u16,
    },
    /// A WAV header, then its PCM data (8/16/24/32-bit integer or 32-bit float); the
    /// header's data length is ignored, as programs writing to a pipe cannot know it.
    Wav,
}

/// The sample encoding of PCM bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    U8,
    S16,
    S24,
    S32,
    F32,
}

impl Encoding {
    fn bytes(self) -> usize {
        match self {
            Encoding::U8 => 1,
            Encoding::S16 => 2,
            Encoding::S24 => 3,
            Encoding::S32 | Encoding::F32 => 4,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Encoding::U8 => "pcm_u8",
            Encoding::S16 => "pcm_s16le",
            Encoding::S24 => "pcm_s24le",
            Encoding::S32 => "pcm_s32le",
            Encoding::F32 => "pcm_f32le",
        }
    }

    fn sample(self, b: &[u8]) -> f32 {
        match self {
            Encoding::U8 => (f32::from(b[0]) - 128.0) / 128.0,
            Encoding::S16 => f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0,
            Encoding::S24 => (i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as f32 / 8_388_608.0,
            Encoding::S32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32 / 2_147_483_648.0,
            Encoding::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        }
    }
}

/// PCM layout: encoding, channels and rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    encoding: Encoding,
    channels: usize,
    rate: u32,
}

/// Reads PCM (raw or WAV) from `reader` until it ends, fails, or `sink` breaks, handing on
/// 8 kHz mono; `on_info` hears the layout once it is known.
pub fn decode_pcm_stream(
    reader: &mut dyn Read,
    format: PcmFormat,
    on_info: &mut dyn FnMut(&StreamInfo),
    sink: &mut dyn FnMut(&[f32]) -> ControlFlow<()>,
) -> Result<StreamEnd, StreamError> {
    let layout = match format {
        PcmFormat::S16Le {
            sample_rate,
            channels,
        } => Layout {
            encoding: Encoding::S16,
            channels: usize::from(channels.max(1)),
            rate: sample_rate,
        },
        PcmFormat::Wav => match read_wav_header(reader)? {
            Some(layout) => layout,
            None => return Ok(StreamEnd::Eof),
        },
    };
    if layout.rate == 0 {
        return Err(StreamError::Unsupported("a sample rate of 0 Hz".into()));
    }
    on_info(&StreamInfo {
        codec: layout.encoding.name().into(),
        sample_rate: layout.rate,
        channels: layout.channels as u32,
    });
    let frame = layout.encoding.bytes() * layout.channels;
    let mut buf = vec![0u8; PCM_READ.max(frame * 2)];
    let mut held = 0;
    let mut out = Pcm8k::default();
    loop {
        let n = match reader.read(&mut buf[held..]) {
            Ok(0) => return Ok(StreamEnd::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(StreamError::Io(e)),
        };
        held += n;
        let whole = held - held % frame;
        out.mono.extend(buf[..whole].chunks_exact(frame).map(|f| {
            let sum: f32 = f
                .chunks_exact(layout.encoding.bytes())
                .map(|s| layout.encoding.sample(s))
                .sum();
            sum / layout.channels as f32
        }));
        buf.copy_within(whole..held, 0);
        held -= whole;
        if out.flush(layout.rate, sink)?.is_break() {
            return Ok(StreamEnd::Stopped);
        }
    }
}

/// Parses a WAV header up to the start of its `data` chunk. `None` when the stream ended
/// before any header byte.
fn read_wav_header(r: &mut dyn Read) -> Result<Option<Layout>, StreamError> {
    let bad = |detail: &str| StreamError::Unsupported(format!("WAV stream: {detail}"));
    let mut riff = [0u8; 12];
    match read_full(r, &mut riff)? {
        0 => return Ok(None),
        12 => {}
        _ => return Err(bad("ends inside its header")),
    }
    if &riff[..4] != b"RIFF" || &riff[8..12] != b"WAVE" {
        return Err(bad("no RIFF/WAVE header"));
    }
    let mut layout = None;
    loop {
        let mut head = [0u8; 8];
        if read_full(r, &mut head)? != 8 {
            return Err(bad("ends before its data chunk"));
        }
        let size = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        match &head[..4] {
            b"data" => {
                return layout
                    .ok_or_else(|| bad("data chunk before the fmt chunk"))
                    .map(Some);
            }
            b"fmt " => {
                if !(16..=1024).contains(&size) {
                    return Err(bad("fmt chunk of an odd size"));
                }
                let mut fmt = vec![0u8; (size + (size & 1)) as usize];
                if read_full(r, &mut fmt)? != fmt.len() {
                    return Err(bad("ends inside its fmt chunk"));
                }
                layout = Some(parse_fmt(&fmt).map_err(|d| bad(&d))?);
            }
            _ => {
                if size > MAX_SKIPPED_CHUNK {
                    return Err(bad("oversized chunk before the data"));
                }
                let padded = u64::from(size + (size & 1));
                let skipped = std::io::copy(&mut r.take(padded), &mut std::io::sink())?;
                if skipped != padded {
                    return Err(bad("ends inside a chunk"));
                }
            }
        }
    }
}

fn parse_fmt(f: &[u8]) -> Result<Layout, String> {
    let u16_at = |i: usize| u16::from_le_bytes([f[i], f[i + 1]]);
    let mut tag = u16_at(0);
    let channels = usize::from(u16_at(2));
    let rate = u32::from_le_bytes([f[4], f[5], f[6], f[7]]);
    let bits = u16_at(14);
    // WAVE_FORMAT_EXTENSIBLE: the real format is the sub-format GUID's first two bytes.
    if tag == 0xFFFE {
        if f.len() < 26 {
            return Err("extensible fmt chunk too short".into());
        }
        tag = u16_at(24);
    }
    if channels == 0 || channels > 16 {
        return Err(format!("{channels} channels"));
    }
    let encoding = match (tag, bits) {
        (1, 8) => Encoding::U8,
        (1, 16) => Encoding::S16,
        (1, 24) => Encoding::S24,
        (1, 32) => Encoding::S32,
        (3, 32) => Encoding::F32,
        _ => return Err(format!("format tag {tag} with {bits}-bit samples")),
    };
    Ok(Layout {
        encoding,
        channels,
        rate,
    })
}

/// Reads until `buf` is full or the stream ends; returns how much was read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> Result<usize, std::io::Error> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::TAU;

    fn sine(rate: u32, freq: f64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (0.5 * (TAU * freq * i as f64 / f64::from(rate)).sin()) as f32)
            .collect()
    }

    /// Amplitude of `freq` in 8 kHz samples.
    fn amplitude(samples: &[f32], freq: f64) -> f64 {
        let (mut s, mut c) = (0.0, 0.0);
        for (i, &x) in samples.iter().enumerate() {
            let w = TAU * freq * i as f64 / 8000.0;
            s += f64::from(x) * w.sin();
            c += f64::from(x) * w.cos();
        }
        2.0 * s.hypot(c) / samples.len() as f64
    }

    /// A reader that hands out at most `step` bytes per call, like a socket.
    struct Trickle {
        data: Vec<u8>,
        pos: usize,
        step: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn wav_bytes(rate: u32, channels: u16, samples: &[f32]) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut cursor = std::io::Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut cursor, spec).expect("wav writer");
        for s in samples {
            for _ in 0..channels {
                w.write_sample((s * 32767.0) as i16).expect("sample");
            }
        }
        w.finalize().expect("finalize");
        cursor.into_inner()
    }

    fn collect(
        run: impl FnOnce(
            &mut dyn FnMut(&StreamInfo),
            &mut dyn FnMut(&[f32]) -> ControlFlow<()>,
        ) -> Result<StreamEnd, StreamError>,
    ) -> (Result<StreamEnd, StreamError>, Option<StreamInfo>, Vec<f32>) {
        let mut info = None;
        let mut got = Vec::new();
        let end = run(&mut |i| info = Some(i.clone()), &mut |s| {
            got.extend_from_slice(s);
            ControlFlow::Continue(())
        });
        (end, info, got)
    }

    #[test]
    fn a_wav_stream_is_decoded_and_resampled_as_it_trickles_in() {
        let bytes = wav_bytes(16_000, 2, &sine(16_000, 1000.0, 32_000));
        let source = Trickle {
            data: bytes,
            pos: 0,
            step: 1000,
        };
        let (end, info, got) =
            collect(|on_info, sink| decode_stream(Box::new(source), None, on_info, sink));
        assert_eq!(end.expect("decodes"), StreamEnd::Eof);
        let info = info.expect("info");
        assert_eq!((info.sample_rate, info.channels), (16_000, 2));
        // The resampler holds back its last partial chunk: most of 2 s arrives.
        assert!(got.len() > 14_000 && got.len() <= 16_000, "{}", got.len());
        let a = amplitude(&got[2000..12_000], 1000.0);
        assert!((a - 0.5).abs() < 0.01, "amplitude {a}");
    }

    #[test]
    fn garbage_is_not_a_stream() {
        let source = std::io::Cursor::new(vec![0x55u8; 50_000]);
        let (end, _, got) =
            collect(|on_info, sink| decode_stream(Box::new(source), None, on_info, sink));
        assert!(end.is_err(), "{end:?}");
        assert!(got.is_empty());
        let source = std::io::Cursor::new(vec![0x55u8; 50_000]);
        let (end, _, _) = collect(|on_info, sink| {
            decode_stream(Box::new(source), Some(StreamContainer::Mpeg), on_info, sink)
        });
        assert!(end.is_err(), "{end:?}");
    }

    #[test]
    fn the_sink_can_stop_a_stream() {
        let bytes = wav_bytes(8000, 1, &sine(8000, 500.0, 80_000));
        let mut pieces = 0;
        let end = decode_pcm_stream(
            &mut std::io::Cursor::new(bytes),
            PcmFormat::Wav,
            &mut |_| {},
            &mut |_| {
                pieces += 1;
                if pieces == 3 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        );
        assert_eq!(end.expect("stops"), StreamEnd::Stopped);
        assert_eq!(pieces, 3);
    }

    #[test]
    fn raw_s16le_stereo_at_48k_becomes_8k_mono() {
        let mono = sine(48_000, 600.0, 48_000);
        let mut bytes = Vec::new();
        for s in &mono {
            let v = ((s * 32767.0) as i16).to_le_bytes();
            bytes.extend_from_slice(&v);
            bytes.extend_from_slice(&v);
        }
        // An odd step splits frames across reads.
        let mut source = Trickle {
            data: bytes,
            pos: 0,
            step: 333,
        };
        let (end, info, got) = collect(|on_info, sink| {
            decode_pcm_stream(
                &mut source,
                PcmFormat::S16Le {
                    sample_rate: 48_000,
                    channels: 2,
                },
                on_info,
                sink,
            )
        });
        assert_eq!(end.expect("reads"), StreamEnd::Eof);
        assert_eq!(
            info.expect("info"),
            StreamInfo {
                codec: "pcm_s16le".into(),
                sample_rate: 48_000,
                channels: 2
            }
        );
        assert!(got.len() > 7000, "{}", got.len());
        let a = amplitude(&got[1000..7000], 600.0);
        assert!((a - 0.5).abs() < 0.01, "amplitude {a}");
    }

    #[test]
    fn raw_s16le_at_8k_passes_through_exactly() {
        let samples: Vec<i16> = (0..800).map(|i| (i * 37 % 2000 - 1000) as i16).collect();
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let (end, _, got) = collect(|on_info, sink| {
            decode_pcm_stream(
                &mut std::io::Cursor::new(bytes),
                PcmFormat::S16Le {
                    sample_rate: 8000,
                    channels: 1,
                },
                on_info,
                sink,
            )
        });
        assert_eq!(end.expect("reads"), StreamEnd::Eof);
        let want: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32768.0).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn piped_wav_headers_are_read_whatever_their_length_field() {
        // As a program writing to a pipe emits it: data length 0xFFFFFFFF, and a LIST chunk.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(b"RIFF\xff\xff\xff\xffWAVE");
        bytes.extend_from_slice(b"LIST\x05\x00\x00\x00abcde\x00");
        bytes.extend_from_slice(b"fmt \x10\x00\x00\x00");
        bytes.extend_from_slice(&1u16.to_le_bytes());
        bytes.extend_from_slice(&1u16.to_le_bytes());
        bytes.extend_from_slice(&8000u32.to_le_bytes());
        bytes.extend_from_slice(&16_000u32.to_le_bytes());
        bytes.extend_from_slice(&2u16.to_le_bytes());
        bytes.extend_from_slice(&16u16.to_le_bytes());
        bytes.extend_from_slice(b"data\xff\xff\xff\xff");
        for i in 0..160i16 {
            bytes.extend_from_slice(&(i * 100).to_le_bytes());
        }
        let (end, info, got) = collect(|on_info, sink| {
            decode_pcm_stream(
                &mut std::io::Cursor::new(bytes),
                PcmFormat::Wav,
                on_info,
                sink,
            )
        });
        assert_eq!(end.expect("reads"), StreamEnd::Eof);
        assert_eq!(info.expect("info").codec, "pcm_s16le");
        assert_eq!(got.len(), 160);
        assert_eq!(got[10], 1000.0 / 32768.0);

        for (bytes, what) in [
            (&b"RIFX\0\0\0\0WAVE"[..], "RIFF"),
            (&b"RIFF\0\0\0\0WAVEdata\0\0\0\0"[..], "before the fmt"),
            (&b"RIFF\0\0\0"[..], "inside its header"),
        ] {
            let err = decode_pcm_stream(
                &mut std::io::Cursor::new(bytes.to_vec()),
                PcmFormat::Wav,
                &mut |_| {},
                &mut |_| ControlFlow::Continue(()),
            )
            .expect_err(what);
            assert!(err.to_string().contains(what), "{err}");
        }
        let empty = decode_pcm_stream(
            &mut std::io::Cursor::new(Vec::new()),
            PcmFormat::Wav,
            &mut |_| {},
            &mut |_| ControlFlow::Continue(()),
        );
        assert_eq!(empty.expect("empty"), StreamEnd::Eof);
    }

    #[test]
    fn wav_sample_encodings() {
        assert_eq!(Encoding::U8.sample(&[128]), 0.0);
        assert_eq!(Encoding::S24.sample(&[0, 0, 0x80]), -1.0);
        assert_eq!(Encoding::S24.sample(&[0, 0, 0x40]), 0.5);
        assert_eq!(Encoding::S32.sample(&[0, 0, 0, 0xC0]), -0.5);
        assert_eq!(Encoding::F32.sample(&0.25f32.to_le_bytes()), 0.25);
        let mut fmt = vec![0u8; 40];
        fmt[..2].copy_from_slice(&0xFFFEu16.to_le_bytes());
        fmt[2..4].copy_from_slice(&2u16.to_le_bytes());
        fmt[4..8].copy_from_slice(&44_100u32.to_le_bytes());
        fmt[14..16].copy_from_slice(&32u16.to_le_bytes());
        fmt[24..26].copy_from_slice(&3u16.to_le_bytes());
        assert_eq!(
            parse_fmt(&fmt),
            Ok(Layout {
                encoding: Encoding::F32,
                channels: 2,
                rate: 44_100
            })
        );
        fmt[24..26].copy_from_slice(&2u16.to_le_bytes());
        assert!(parse_fmt(&fmt).is_err(), "ADPCM is not PCM");
    }

    #[test]
    fn opus_head_fields() {
        let mut head = b"OpusHead".to_vec();
        head.extend_from_slice(&[1, 2]);
        head.extend_from_slice(&312u16.to_le_bytes());
        head.extend_from_slice(&48_000u32.to_le_bytes());
        head.extend_from_slice(&(-256i16).to_le_bytes());
        head.push(0);
        assert_eq!(
            OpusHead::parse(&head).expect("valid"),
            OpusHead {
                channels: 2,
                pre_skip: 312,
                output_gain_q8: -256,
                mapping_family: 0
            }
        );
        let track = OpusTrack::new(Some(&head)).expect("track");
        assert_eq!(track.skip, 52);
        assert!((track.gain - 10f32.powf(-1.0 / 20.0)).abs() < 1e-6);
        assert!(OpusHead::parse(b"OpusTags...........").is_err());
        let mut surround = head.clone();
        surround[9] = 6;
        surround[18] = 1;
        assert!(matches!(
            OpusTrack::new(Some(&surround)),
            Err(StreamError::Unsupported(_))
        ));
    }

    #[test]
    fn content_types_and_extensions_name_containers() {
        assert_eq!(
            StreamContainer::from_content_type("audio/mpeg"),
            Some(StreamContainer::Mpeg)
        );
        assert_eq!(
            StreamContainer::from_content_type("Audio/AACP; charset=x"),
            Some(StreamContainer::Adts)
        );
        assert_eq!(
            StreamContainer::from_content_type("application/ogg"),
            Some(StreamContainer::Ogg)
        );
        assert_eq!(StreamContainer::from_content_type("text/html"), None);
        assert_eq!(
            StreamContainer::from_extension("OPUS"),
            Some(StreamContainer::Ogg)
        );
        assert_eq!(StreamContainer::from_extension("m3u"), None);
    }
}
