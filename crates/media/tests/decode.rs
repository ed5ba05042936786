//! Decoding real files of every supported kind, generated at test time, checked by
//! content: the 1 kHz tone they hold must come out at 8 kHz with the right frequency,
//! level, phase and length.

mod common;

use std::f64::consts::TAU;
use std::path::{Path, PathBuf};

use common::{ffmpeg, measure_tone, run};
use imss_media::{Clip, Law, MediaError, Pcm, decode_bytes, decode_file, resample_to_8k};

const FREQ: f64 = 1000.0;

fn sine(rate: u32, n: usize, amplitude: f64) -> impl Iterator<Item = f64> {
    (0..n).map(move |i| amplitude * (TAU * FREQ * i as f64 / f64::from(rate)).sin())
}

fn hound_wav(
    path: &Path,
    rate: u32,
    channels: u16,
    bits: u16,
    format: hound::SampleFormat,
    right_silent: bool,
) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: format,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for v in sine(rate, rate as usize, 0.5) {
        for ch in 0..channels {
            let v = if right_silent && ch == 1 { 0.0 } else { v };
            match (format, bits) {
                (hound::SampleFormat::Float, _) => w.write_sample(v as f32).unwrap(),
                (_, 8) => w.write_sample((v * 127.0).round() as i8).unwrap(),
                (_, 16) => w.write_sample((v * 32767.0).round() as i16).unwrap(),
                (_, 24) => w.write_sample((v * 8_388_607.0).round() as i32).unwrap(),
                _ => w
                    .write_sample((v * 2_147_483_647.0).round() as i32)
                    .unwrap(),
            }
        }
    }
    w.finalize().unwrap();
}

/// A one-second 1 kHz tone at half scale, encoded by ffmpeg.
fn ffmpeg_file(dir: &Path, name: &str, rate: u32, codec_args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let source = format!("aevalsrc=0.5*sin(2*PI*{FREQ}*t):s={rate}:d=1");
    let mut args = vec![
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        &source,
    ];
    args.extend_from_slice(codec_args);
    let out = path.to_str().unwrap().to_string();
    args.push(&out);
    run(&ffmpeg(), &args);
    path
}

/// The same file decoded by ffmpeg, as mono f32 at its own rate.
fn ffmpeg_decode(path: &Path, rate: u32) -> Pcm {
    let raw = path.with_extension("f32");
    run(
        &ffmpeg(),
        &[
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-i",
            path.to_str().unwrap(),
            "-ac",
            "1",
            "-f",
            "f32le",
            raw.to_str().unwrap(),
        ],
    );
    let samples = std::fs::read(&raw)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Pcm { rate, samples }
}

/// Signal-to-difference ratio of `x` against `reference`, in dB.
fn snr_against(x: &[f32], reference: &[f32]) -> f64 {
    let signal: f64 = reference.iter().map(|&r| f64::from(r).powi(2)).sum();
    let noise: f64 = x
        .iter()
        .zip(reference)
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
        .sum();
    10.0 * (signal / noise).log10()
}

/// Lossy files: our decode must match ffmpeg's decode of the same file, in time
/// (encoder delay removed, so the tone's phase at t = 0 is the original's) and closely
/// in value. `exact_length` when the container records the true length and symphonia
/// honours it (MP3's LAME tag); Ogg Vorbis keeps the last block's encoder padding.
fn check_lossy(path: &Path, rate: u32, exact_length: bool) {
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let theirs = ffmpeg_decode(path, rate);
    let n = theirs.samples.len();
    let level = measure_tone(&theirs.samples[n / 10..n * 9 / 10], rate, FREQ);
    let ours = check(
        path,
        Expect {
            rate,
            samples: exact_length.then_some(n),
            amplitude: level.amplitude,
            snr_db: 30.0,
            aligned: true,
        },
    );
    let theirs_8k = resample_to_8k(&theirs).unwrap();
    if exact_length {
        assert_eq!(ours.len(), theirs_8k.len(), "{name}");
    }
    let snr = snr_against(&ours[400..7600], &theirs_8k[400..7600]);
    assert!(snr > 40.0, "{name}: ours vs ffmpeg's decode {snr} dB");
}

struct Expect {
    rate: u32,
    /// Exact decoded length, when the format preserves it.
    samples: Option<usize>,
    amplitude: f64,
    snr_db: f64,
    /// Check the phase at t = 0 (formats without encoder delay, or with gapless info).
    aligned: bool,
}

fn check(path: &Path, e: Expect) -> Vec<f32> {
    let pcm = decode_file(path).unwrap_or_else(|err| panic!("{err}"));
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    assert_eq!(pcm.rate, e.rate, "{name}: rate");
    match e.samples {
        Some(n) => assert_eq!(pcm.samples.len(), n, "{name}: length"),
        None => {
            let n = pcm.samples.len() as f64 / f64::from(pcm.rate);
            assert!((0.98..1.08).contains(&n), "{name}: {n} s");
        }
    }
    let out = resample_to_8k(&pcm).unwrap();
    let expected_len = (pcm.samples.len() as f64 * 8000.0 / f64::from(pcm.rate)).round() as usize;
    assert_eq!(out.len(), expected_len, "{name}: resampled length");
    // The middle 0.8 s, away from encoder start-up and the filter's edges.
    let middle = &out[800..7200];
    let m = measure_tone(middle, 8000, FREQ);
    assert!((m.frequency - FREQ).abs() < 0.5, "{name}: {m:?}");
    assert!(
        (m.amplitude - e.amplitude).abs() < 0.02 * e.amplitude,
        "{name}: {m:?}"
    );
    assert!(
        (m.rms - e.amplitude / 2f64.sqrt()).abs() < 0.03 * e.amplitude,
        "{name}: {m:?}"
    );
    assert!(m.snr_db >= e.snr_db, "{name}: {m:?}");
    if e.aligned {
        let (_, phase, _) = common::fit(middle, 8000, FREQ, 800);
        assert!(phase.abs() < 0.02, "{name}: phase {phase} rad at t = 0");
    }
    out
}

#[test]
fn wav_pcm_variants() {
    use hound::SampleFormat::{Float, Int};
    let dir = tempfile::tempdir().unwrap();
    for (name, rate, channels, bits, format, snr) in [
        ("s16_44k1.wav", 44_100, 1, 16, Int, 60.0),
        ("u8_22k05.wav", 22_050, 1, 8, Int, 35.0),
        ("s24_48k_stereo.wav", 48_000, 2, 24, Int, 60.0),
        ("s32_16k.wav", 16_000, 1, 32, Int, 60.0),
        ("f32_44k1.wav", 44_100, 1, 32, Float, 60.0),
        ("s16_8k.wav", 8000, 1, 16, Int, 60.0),
    ] {
        let path = dir.path().join(name);
        hound_wav(&path, rate, channels, bits, format, false);
        check(
            &path,
            Expect {
                rate,
                samples: Some(rate as usize),
                amplitude: 0.5,
                snr_db: snr,
                aligned: true,
            },
        );
    }
}

#[test]
fn stereo_is_averaged_to_mono() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("left_only.wav");
    hound_wav(&path, 32_000, 2, 16, hound::SampleFormat::Int, true);
    check(
        &path,
        Expect {
            rate: 32_000,
            samples: Some(32_000),
            amplitude: 0.25,
            snr_db: 60.0,
            aligned: true,
        },
    );
}

#[test]
fn wav_g711() {
    let dir = tempfile::tempdir().unwrap();
    for (name, codec) in [("mulaw.wav", "pcm_mulaw"), ("alaw.wav", "pcm_alaw")] {
        let path = ffmpeg_file(dir.path(), name, 8000, &["-c:a", codec]);
        check(
            &path,
            Expect {
                rate: 8000,
                samples: Some(8000),
                amplitude: 0.5,
                snr_db: 33.0,
                aligned: true,
            },
        );
    }
}

#[test]
fn mp3_flac_and_vorbis() {
    let dir = tempfile::tempdir().unwrap();
    let mp3 = ffmpeg_file(
        dir.path(),
        "tone.mp3",
        44_100,
        &["-c:a", "libmp3lame", "-b:a", "128k"],
    );
    check_lossy(&mp3, 44_100, true);
    let flac = ffmpeg_file(dir.path(), "tone.flac", 48_000, &["-c:a", "flac"]);
    check(
        &flac,
        Expect {
            rate: 48_000,
            samples: Some(48_000),
            amplitude: 0.5,
            snr_db: 60.0,
            aligned: true,
        },
    );
    let ogg = ffmpeg_file(
        dir.path(),
        "tone.ogg",
        44_100,
        &["-c:a", "libvorbis", "-q:a", "4"],
    );
    check_lossy(&ogg, 44_100, false);
}

#[test]
fn clip_from_mp3_holds_the_tone_in_both_laws() {
    let dir = tempfile::tempdir().unwrap();
    let mp3 = ffmpeg_file(
        dir.path(),
        "tone.mp3",
        44_100,
        &["-c:a", "libmp3lame", "-b:a", "128k"],
    );
    let clip = Clip::from_file(&mp3).unwrap();
    assert_eq!(clip.samples() % 80, 0);
    let secs = clip.duration().as_secs_f64();
    assert!((0.99..1.08).contains(&secs), "{secs} s");
    for law in [Law::Pcmu, Law::Pcma] {
        let pcm: Vec<f32> = clip.bytes(law)[800..7200]
            .iter()
            .map(|&b| f32::from(law.decode(b)) / 32768.0)
            .collect();
        let m = measure_tone(&pcm, 8000, FREQ);
        assert!((m.frequency - FREQ).abs() < 0.5, "{law:?}: {m:?}");
        // LAME leaves this tone at 0.475 of full scale (ffmpeg's decoder agrees).
        assert!((m.amplitude - 0.475).abs() < 0.01, "{law:?}: {m:?}");
        // G.711 itself limits the SNR of a half-scale tone to about 38 dB.
        assert!(m.snr_db >= 30.0, "{law:?}: {m:?}");
    }
}

#[test]
fn bytes_decode_like_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.wav");
    hound_wav(&path, 16_000, 1, 16, hound::SampleFormat::Int, false);
    let from_file = decode_file(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(decode_bytes(bytes.clone(), Some("wav")).unwrap(), from_file);
    assert_eq!(decode_bytes(bytes, None).unwrap(), from_file);
    let err = decode_bytes(b"hello".to_vec(), Some("mp3")).unwrap_err();
    assert!(err.to_string().contains("in-memory"), "{err}");
}

#[test]
fn errors_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("missing.wav");
    let err = decode_file(&missing).unwrap_err();
    assert!(matches!(err, MediaError::NotFound { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{}: audio file not found", missing.display())
    );

    let text = dir.path().join("readme.mp3");
    std::fs::write(&text, "This is a text file, not an MP3.\n".repeat(50)).unwrap();
    let err = decode_file(&text).unwrap_err();
    assert!(matches!(err, MediaError::Unsupported { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("readme.mp3") && msg.contains("not a recognised audio format"),
        "{msg}"
    );

    let empty = dir.path().join("empty.wav");
    std::fs::write(&empty, b"").unwrap();
    let err = decode_file(&empty).unwrap_err();
    assert!(err.to_string().contains("empty.wav"), "{err}");

    let err = decode_file(dir.path()).unwrap_err();
    assert!(err.to_string().contains("directory"), "{err}");

    // Containers symphonia reads, with codecs it does not decode.
    for (name, codec) in [("voice.opus.ogg", "libopus"), ("gsm.wav", "libgsm_ms")] {
        let path = ffmpeg_file(
            dir.path(),
            name,
            if codec == "libopus" { 48_000 } else { 8000 },
            &["-c:a", codec],
        );
        let err = decode_file(&path).unwrap_err();
        assert!(
            matches!(err, MediaError::Unsupported { .. }),
            "{name}: {err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(name) && msg.contains("codec"), "{msg}");
    }

    // A container this server does not read at all.
    let m4a = ffmpeg_file(dir.path(), "tone.m4a", 44_100, &["-c:a", "aac"]);
    let err = decode_file(&m4a).unwrap_err();
    assert!(
        err.to_string().contains("not a recognised audio format"),
        "{err}"
    );
}

#[test]
fn truncated_wav_keeps_what_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.wav");
    hound_wav(&path, 8000, 1, 16, hound::SampleFormat::Int, false);
    let bytes = std::fs::read(&path).unwrap();
    // Header says 1 s; only the first half of the data is present.
    std::fs::write(&path, &bytes[..44 + 8000]).unwrap();
    let pcm: Pcm = decode_file(&path).unwrap();
    assert_eq!(pcm.samples.len(), 4000);
}
