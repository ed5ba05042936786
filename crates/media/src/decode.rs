//! File and memory decoding with symphonia, downmixed to mono f32.

use std::fs::File;
use std::io::{Cursor, ErrorKind};
use std::path::{Path, PathBuf};
use std::time::Duration;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use crate::MediaError;

/// The longest audio this crate decodes; longer files are refused rather than
/// exhausting memory.
pub const MAX_DURATION: Duration = Duration::from_secs(3 * 3600);

/// Consecutive undecodable packets after which a file is declared corrupt.
const MAX_CONSECUTIVE_BAD_PACKETS: u32 = 64;

const IN_MEMORY: &str = "(in-memory audio)";

/// Receives each decoded packet as mono samples, with the sample rate.
pub(crate) type PcmSink<'a> = dyn FnMut(u32, &[f32]) -> Result<(), MediaError> + 'a;

/// Mono f32 PCM at `rate`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pcm {
    /// Sample rate in Hz.
    pub rate: u32,
    /// Mono samples, nominally in [-1.0, 1.0].
    pub samples: Vec<f32>,
}

impl Pcm {
    /// The playing time of the samples.
    pub fn duration(&self) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(self.samples.len() as f64 / f64::from(self.rate))
    }
}

/// Decodes an audio file (WAV, MP3, FLAC, Ogg Vorbis) and downmixes it to mono.
pub fn decode_file(path: &Path) -> Result<Pcm, MediaError> {
    let mut pcm = Pcm::default();
    pcm.rate = decode_path_with(path, &mut |_, block| {
        pcm.samples.extend_from_slice(block);
        Ok(())
    })?;
    Ok(pcm)
}

/// Decodes audio held in memory; `ext_hint` (e.g. "mp3") helps format detection.
pub fn decode_bytes(bytes: Vec<u8>, ext_hint: Option<&str>) -> Result<Pcm, MediaError> {
    let mut pcm = Pcm::default();
    pcm.rate = decode_memory_with(bytes, ext_hint, Path::new(IN_MEMORY), &mut |_, block| {
        pcm.samples.extend_from_slice(block);
        Ok(())
    })?;
    Ok(pcm)
}

/// Decodes audio held in memory, handing each decoded packet's mono samples to `sink`
/// with the sample rate; `label` names the audio in errors. Returns the sample rate.
pub(crate) fn decode_memory_with(
    bytes: Vec<u8>,
    ext_hint: Option<&str>,
    label: &Path,
    sink: &mut PcmSink<'_>,
) -> Result<u32, MediaError> {
    let mut hint = Hint::new();
    if let Some(ext) = ext_hint {
        hint.with_extension(ext);
    }
    decode_source(Box::new(Cursor::new(bytes)), &hint, label, sink)
}

/// Decodes `path`, handing each decoded packet's mono samples to `sink` with the sample
/// rate. Returns the sample rate.
pub(crate) fn decode_path_with(path: &Path, sink: &mut PcmSink<'_>) -> Result<u32, MediaError> {
    let meta = std::fs::metadata(path).map_err(|e| MediaError::io(path, e))?;
    if meta.is_dir() {
        return Err(MediaError::Unsupported {
            path: path.to_path_buf(),
            detail: "is a directory, not an audio file".into(),
        });
    }
    let file = File::open(path).map_err(|e| MediaError::io(path, e))?;
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    decode_source(Box::new(file), &hint, path, sink)
}

fn decode_source(
    source: Box<dyn MediaSource>,
    hint: &Hint,
    path: &Path,
    sink: &mut PcmSink<'_>,
) -> Result<u32, MediaError> {
    let stream = MediaSourceStream::new(source, Default::default());
    let format_options = FormatOptions {
        enable_gapless: true,
        ..Default::default()
    };
    let probed = symphonia::default::get_probe()
        .format(hint, stream, &format_options, &MetadataOptions::default())
        .map_err(|e| match e {
            SymphoniaError::IoError(source) if source.kind() != ErrorKind::UnexpectedEof => {
                MediaError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            }
            // A reader recognised the container but not what it holds.
            SymphoniaError::Unsupported(what) if !what.contains("no suitable format reader") => {
                unsupported(
                    path,
                    &format!("unsupported codec or format variant ({what})"),
                )
            }
            _ => unsupported(
                path,
                "not a recognised audio format (expected WAV, MP3, FLAC or Ogg Vorbis)",
            ),
        })?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| unsupported(path, "contains no audio track"))?;
    let track_id = track.id;
    let codecs = symphonia::default::get_codecs();
    let mut decoder = codecs
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|_| {
            let name = codecs
                .get_codec(track.codec_params.codec)
                .map(|d| d.short_name.to_string())
                .unwrap_or_else(|| format!("{}", track.codec_params.codec));
            unsupported(path, &format!("unsupported audio codec {name}"))
        })?;

    let mut rate = track.codec_params.sample_rate.unwrap_or(0);
    let mut frames: u64 = 0;
    let mut interleaved: Option<SampleBuffer<f32>> = None;
    let mut mono: Vec<f32> = Vec::new();
    let mut bad_packets = 0u32;
    let mut last_error = String::new();

    loop {
        let packet = match format.next_packet() {
            Ok(packet) => packet,
            Err(SymphoniaError::IoError(e)) if e.kind() == ErrorKind::UnexpectedEof => break,
            Err(SymphoniaError::ResetRequired) => break,
            Err(SymphoniaError::IoError(source)) => {
                return Err(MediaError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
            Err(e) => {
                if frames > 0 {
                    // A damaged tail: keep what played.
                    tracing::warn!(path = %path.display(), error = %e, "audio file ends in damaged data");
                    break;
                }
                return Err(decode_error(path, &e.to_string()));
            }
        };
        if packet.track_id() != track_id {
            continue;
        }
        let audio = match decoder.decode(&packet) {
            Ok(audio) => audio,
            Err(SymphoniaError::DecodeError(e)) => {
                bad_packets += 1;
                last_error = e.to_string();
                if bad_packets >= MAX_CONSECUTIVE_BAD_PACKETS {
                    return Err(decode_error(path, &last_error));
                }
                continue;
            }
            Err(SymphoniaError::IoError(e)) if e.kind() == ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(decode_error(path, &e.to_string())),
        };
        bad_packets = 0;
        let spec = *audio.spec();
        let channels = spec.channels.count().max(1);
        if rate == 0 {
            rate = spec.rate;
        } else if spec.rate != rate {
            return Err(unsupported(
                path,
                &format!(
                    "sample rate changes mid-stream ({rate} Hz to {} Hz)",
                    spec.rate
                ),
            ));
        }
        if rate == 0 {
            return Err(decode_error(path, "stream has no sample rate"));
        }
        let buffer = match &mut interleaved {
            Some(b) if b.capacity() >= audio.capacity() * channels => b,
            slot => slot.insert(SampleBuffer::new(audio.capacity() as u64, spec)),
        };
        buffer.copy_interleaved_ref(audio);
        let samples = buffer.samples();
        mono.clear();
        if channels == 1 {
            mono.extend_from_slice(samples);
        } else {
            let scale = 1.0 / channels as f32;
            mono.extend(
                samples
                    .chunks_exact(channels)
                    .map(|frame| frame.iter().sum::<f32>() * scale),
            );
        }
        frames += mono.len() as u64;
        if frames > MAX_DURATION.as_secs() * u64::from(rate) {
            return Err(unsupported(
                path,
                &format!("longer than the {} s limit", MAX_DURATION.as_secs()),
            ));
        }
        sink(rate, &mono)?;
    }
    if frames == 0 {
        let detail = if last_error.is_empty() {
            "no audio samples in the file".to_string()
        } else {
            last_error
        };
        return Err(decode_error(path, &detail));
    }
    Ok(rate)
}

fn unsupported(path: &Path, detail: &str) -> MediaError {
    MediaError::Unsupported {
        path: PathBuf::from(path),
        detail: detail.to_string(),
    }
}

fn decode_error(path: &Path, detail: &str) -> MediaError {
    MediaError::Decode {
        path: PathBuf::from(path),
        detail: detail.to_string(),
    }
}
