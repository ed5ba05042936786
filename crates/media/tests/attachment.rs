//! Voicemail attachments in every format voicemail systems mail out, made by sox, ffmpeg and
//! espeak-ng at test time and decoded here: the samples must be exactly those sox (libgsm,
//! Sun's G.711 tables) decodes from the same file, whole or pushed in pieces of any size;
//! damaged files must give an error naming the format and the fault, never a panic.

mod common;

use std::f64::consts::TAU;
use std::path::{Path, PathBuf};

use common::{ffmpeg, require, run, sox};
use imss_media::{
    AttachmentFormat, Clip, Law, MediaError, Pcm, ProgressiveDecoder, decode_attachment,
    decode_bytes, g711, resample_to_8k,
};

/// A deterministic xorshift generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn noise(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

/// Speech-like audio at 8 kHz: a gliding pitch with a few harmonics shaped by two moving
/// resonances, syllable-rate loudness, unvoiced noise bursts, pauses, and stretches driven
/// into clipping so that the codec's saturating arithmetic is exercised.
fn speech_like(seconds: f64, peak: f64) -> Vec<i16> {
    let n = (seconds * 8000.0) as usize;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut phase = 0.0f64;
    (0..n)
        .map(|i| {
            let t = i as f64 / 8000.0;
            let pitch = 150.0 + 60.0 * (TAU * 0.7 * t).sin() + 20.0 * (TAU * 3.1 * t).sin();
            phase += TAU * pitch / 8000.0;
            let f1 = 500.0 + 300.0 * (TAU * 1.3 * t).sin();
            let f2 = 1500.0 + 700.0 * (TAU * 0.9 * t + 1.0).sin();
            let mut voiced = 0.0;
            for h in 1..=12 {
                let f = pitch * f64::from(h);
                if f > 3800.0 {
                    break;
                }
                let gain = 1.0 / (1.0 + ((f - f1) / 150.0).powi(2))
                    + 0.6 / (1.0 + ((f - f2) / 250.0).powi(2));
                voiced += gain * (phase * f64::from(h)).sin();
            }
            let syllable = (TAU * 4.0 * t).sin().max(0.0).powf(0.7);
            let pause = if (t % 2.0) > 1.7 { 0.0 } else { 1.0 };
            let hiss = if (t * 4.0) % 1.0 < 0.15 {
                0.3 * rng.noise()
            } else {
                0.0
            };
            let loud = if (t % 3.0) > 2.5 { 3.0 } else { 1.0 };
            let v = peak * loud * pause * (0.5 * syllable * voiced + hiss);
            (v.clamp(-1.0, 1.0) * 32767.0).round() as i16
        })
        .collect()
}

fn write_wav(path: &Path, rate: u32, channels: u16, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

fn espeak_recording(dir: &Path) -> PathBuf {
    let path = dir.join("espeak.wav");
    run(
        &require("espeak-ng", "espeak-ng"),
        &[
            "-w",
            path.to_str().unwrap(),
            "You have two new messages. First message, received at nine forty five: \
             hello, this is Sam from accounts, please call me back on extension 4471.",
        ],
    );
    path
}

/// `sox [args] input output`, no dither.
fn sox_convert(input: &Path, output: &Path, args: &[&str]) {
    let mut all = vec!["-D", "-V1", input.to_str().unwrap()];
    all.extend_from_slice(args);
    all.push(output.to_str().unwrap());
    run(&sox(), &all);
}

/// The file as sox decodes it: signed 16-bit little-endian samples, all channels.
fn sox_samples(path: &Path) -> Vec<i16> {
    let raw = path.with_extension("sox.raw");
    sox_convert(
        path,
        &raw,
        &["-t", "raw", "-e", "signed-integer", "-b", "16", "-L"],
    );
    std::fs::read(&raw)
        .unwrap()
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Pushes the attachment in pieces of the given sizes (the last takes the rest).
fn progressive(bytes: &[u8], hint: (Option<&str>, Option<&str>), sizes: &[usize]) -> Vec<i16> {
    let mut d = ProgressiveDecoder::new(hint.0, hint.1);
    let mut out = Vec::new();
    let mut rest = bytes;
    for &n in sizes {
        let (piece, tail) = rest.split_at(n.min(rest.len()));
        out.extend(d.push(piece).unwrap_or_else(|e| panic!("{e}")));
        rest = tail;
    }
    out.extend(d.push(rest).unwrap_or_else(|e| panic!("{e}")));
    out.extend(d.finish().unwrap_or_else(|e| panic!("{e}")));
    out
}

fn whole(bytes: &[u8], hint: (Option<&str>, Option<&str>)) -> Vec<i16> {
    progressive(bytes, hint, &[])
}

/// The clip holds exactly `expected`, in both laws.
fn assert_clip_is(clip: &Clip, expected: &[i16], name: &str) {
    assert_eq!(
        clip.content_samples(),
        expected.len(),
        "{name}: clip length"
    );
    for law in [Law::Pcmu, Law::Pcma] {
        let want: Vec<u8> = expected.iter().map(|&s| law.encode(s)).collect();
        let got = &clip.bytes(law)[..expected.len()];
        let first_diff = got.iter().zip(&want).position(|(a, b)| a != b);
        assert_eq!(first_diff, None, "{name}: {law:?} clip differs");
    }
}

fn assert_same(ours: &[i16], theirs: &[i16], name: &str) {
    assert_eq!(ours.len(), theirs.len(), "{name}: length");
    if let Some(i) = ours.iter().zip(theirs).position(|(a, b)| a != b) {
        panic!(
            "{name}: sample {i} is {} here, {} from sox (of {})",
            ours[i],
            theirs[i],
            ours.len()
        );
    }
}

fn rms(x: &[i16]) -> f64 {
    (x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

fn format_tag(wav: &[u8]) -> u16 {
    assert_eq!(&wav[12..16], b"fmt ");
    u16::from_le_bytes([wav[20], wav[21]])
}

#[test]
fn gsm_in_wav_and_raw_gsm_decode_exactly_as_sox_does() {
    let dir = tempfile::tempdir().unwrap();
    let speech = dir.path().join("speech.wav");
    write_wav(&speech, 8000, 1, &speech_like(6.0, 0.4));
    let hot = dir.path().join("hot.wav");
    write_wav(&hot, 8000, 1, &speech_like(4.0, 1.5));
    let sources = [speech, hot, espeak_recording(dir.path())];
    for source in &sources {
        let stem = source.file_stem().unwrap().to_str().unwrap();
        let wav49 = dir.path().join(format!("{stem}-gsm.wav"));
        sox_convert(
            source,
            &wav49,
            &["-r", "8000", "-c", "1", "-e", "gsm-full-rate"],
        );
        let raw = dir.path().join(format!("{stem}.gsm"));
        sox_convert(source, &raw, &["-r", "8000", "-c", "1"]);

        for (path, content_type, format) in [
            (&wav49, "audio/x-wav", AttachmentFormat::Wav),
            (&raw, "application/octet-stream", AttachmentFormat::RawGsm),
        ] {
            let name = path.file_name().unwrap().to_str().unwrap();
            let bytes = std::fs::read(path).unwrap();
            if format == AttachmentFormat::Wav {
                assert_eq!(
                    format_tag(&bytes),
                    0x0031,
                    "{name}: sox wrote Microsoft GSM"
                );
            }
            let theirs = sox_samples(path);
            assert!(
                rms(&theirs) > 1000.0,
                "{name}: the test signal is not silence"
            );
            // No hint at all: the bytes alone tell the format.
            let ours = whole(&bytes, (None, None));
            assert_same(&ours, &theirs, name);
            let mut d = ProgressiveDecoder::new(Some(content_type), Some(name));
            let mut streamed = d.push(&bytes).unwrap();
            assert_eq!(d.format(), Some(format));
            streamed.extend(d.finish().unwrap());
            assert_same(&streamed, &theirs, name);

            let clip = decode_attachment(&bytes, Some(content_type), Some(name))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_clip_is(&clip, &theirs, name);
        }
    }
}

/// Random bits, which no encoder would write, reach every parameter value: out-of-range
/// lags, extreme reflection coefficients, saturation everywhere.
#[test]
fn random_gsm_frames_decode_exactly_as_sox_does() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x5EED);
    let mut raw: Vec<u8> = (0..33 * 400).map(|_| rng.next() as u8).collect();
    for frame in raw.chunks_mut(33) {
        frame[0] = 0xD0 | (frame[0] & 0x0F);
    }
    let raw_path = dir.path().join("random.gsm");
    std::fs::write(&raw_path, &raw).unwrap();

    // sox's own WAV49 header, around random blocks.
    let source = dir.path().join("short.wav");
    write_wav(&source, 8000, 1, &speech_like(0.1, 0.5));
    let template = dir.path().join("template.wav");
    sox_convert(&source, &template, &["-e", "gsm-full-rate"]);
    let template = std::fs::read(&template).unwrap();
    let fmt = find_chunk(&template, b"fmt ");
    let blocks: Vec<u8> = (0..65 * 200).map(|_| rng.next() as u8).collect();
    let wav = riff(&[(b"fmt ", fmt), (b"data", &blocks)]);
    let wav_path = dir.path().join("random.wav");
    std::fs::write(&wav_path, &wav).unwrap();

    for (path, bytes) in [(&raw_path, &raw), (&wav_path, &wav)] {
        let name = path.file_name().unwrap().to_str().unwrap();
        let theirs = sox_samples(path);
        let saturated = theirs.iter().filter(|s| s.unsigned_abs() >= 32760).count();
        assert!(saturated > 100, "{name}: {saturated} samples at full scale");
        assert_same(&whole(bytes, (None, None)), &theirs, name);
    }
}

/// A `WAVE_FORMAT_EXTENSIBLE` copy of a mono 8-bit G.711 WAV (sub-format = its tag).
fn extensible(wav: &[u8]) -> Vec<u8> {
    let tag = format_tag(wav);
    let data = find_chunk(wav, b"data");
    let mut fmt = Vec::new();
    fmt.extend_from_slice(&0xFFFEu16.to_le_bytes());
    fmt.extend_from_slice(&wav[22..36]);
    fmt.extend_from_slice(&22u16.to_le_bytes());
    fmt.extend_from_slice(&8u16.to_le_bytes());
    fmt.extend_from_slice(&4u32.to_le_bytes()); // front centre
    fmt.extend_from_slice(&u32::from(tag).to_le_bytes());
    fmt.extend_from_slice(&[
        0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
    ]);
    riff(&[(b"fmt ", &fmt), (b"data", data)])
}

/// The same G.711 WAV with a 16-byte `fmt ` chunk (no extension size), as some writers make.
fn short_fmt(wav: &[u8]) -> Vec<u8> {
    let fmt = find_chunk(wav, b"fmt ");
    riff(&[(b"fmt ", &fmt[..16]), (b"data", find_chunk(wav, b"data"))])
}

fn find_chunk<'a>(wav: &'a [u8], id: &[u8; 4]) -> &'a [u8] {
    let mut pos = 12;
    while pos + 8 <= wav.len() {
        let size = u32::from_le_bytes(wav[pos + 4..pos + 8].try_into().unwrap()) as usize;
        if &wav[pos..pos + 4] == id {
            return &wav[pos + 8..(pos + 8 + size).min(wav.len())];
        }
        pos += 8 + size + (size & 1);
    }
    panic!("no {id:?} chunk");
}

fn riff(chunks: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
    let mut body = b"WAVE".to_vec();
    for (id, data) in chunks {
        body.extend_from_slice(*id);
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
        if data.len() % 2 == 1 {
            body.push(0);
        }
    }
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

#[test]
fn g711_wav_and_sun_audio_decode_exactly_as_sox_does() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("speech.wav");
    write_wav(&source, 8000, 1, &speech_like(3.0, 0.8));
    let d = dir.path();
    let mut files = Vec::new();
    for (name, args) in [
        ("mulaw.wav", &["-e", "u-law"][..]),
        ("alaw.wav", &["-e", "a-law"]),
        ("mulaw.au", &["-e", "u-law"]),
        ("alaw.au", &["-e", "a-law"]),
        ("s16.au", &["-e", "signed-integer", "-b", "16"]),
        ("s8.au", &["-e", "signed-integer", "-b", "8"]),
    ] {
        sox_convert(&source, &d.join(name), args);
        files.push(d.join(name));
    }
    // ffmpeg's own writers; its Sun audio from a pipe has an unknown data size.
    for (name, codec, format) in [
        ("ff-mulaw.wav", "pcm_mulaw", "wav"),
        ("ff-alaw.wav", "pcm_alaw", "wav"),
        ("ff-mulaw.au", "pcm_mulaw", "au"),
    ] {
        let out = d.join(name);
        let script = format!(
            "{} -nostdin -loglevel error -i {} -c:a {codec} -f {format} pipe:1 > {}",
            ffmpeg().display(),
            source.display(),
            out.display()
        );
        run(Path::new("/bin/sh"), &["-c", &script]);
        files.push(out);
    }
    let ff_au = std::fs::read(d.join("ff-mulaw.au")).unwrap();
    assert_eq!(
        &ff_au[8..12],
        &[0xFF; 4],
        "ffmpeg's piped .au has no length"
    );
    // Variants rewritten from sox's files, which sox reads as well.
    for (from, to, rewrite) in [
        (
            "mulaw.wav",
            "ext-mulaw.wav",
            extensible as fn(&[u8]) -> Vec<u8>,
        ),
        ("alaw.wav", "ext-alaw.wav", extensible),
        ("mulaw.wav", "short-fmt-mulaw.wav", short_fmt),
    ] {
        let bytes = std::fs::read(d.join(from)).unwrap();
        std::fs::write(d.join(to), rewrite(&bytes)).unwrap();
        files.push(d.join(to));
    }

    for path in &files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let bytes = std::fs::read(path).unwrap();
        let theirs = sox_samples(path);
        assert_eq!(theirs.len(), 24_000, "{name}");
        assert!(rms(&theirs) > 2000.0, "{name}");
        assert_same(&whole(&bytes, (None, None)), &theirs, name);
        let clip = decode_attachment(&bytes, None, Some(name)).unwrap_or_else(|e| panic!("{e}"));
        assert_clip_is(&clip, &theirs, name);
    }
    // The extensible μ-law copy holds the same audio as the plain one.
    assert_eq!(
        sox_samples(&d.join("ext-mulaw.wav")),
        sox_samples(&d.join("mulaw.wav"))
    );
}

#[test]
fn headerless_g711_is_named_by_the_content_type_or_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("speech.wav");
    write_wav(&source, 8000, 1, &speech_like(1.0, 0.8));
    for (law, encoding, hint) in [
        (Law::Pcmu, "u-law", (Some("audio/basic"), None)),
        (Law::Pcmu, "u-law", (None, Some("message.ul"))),
        (
            Law::Pcma,
            "a-law",
            (Some("audio/x-alaw-basic"), Some("message.bin")),
        ),
        (Law::Pcma, "a-law", (None, Some("message.AL"))),
    ] {
        let raw = dir.path().join(format!("{encoding}.raw"));
        sox_convert(&source, &raw, &["-t", "raw", "-e", encoding, "-b", "8"]);
        let bytes = std::fs::read(&raw).unwrap();
        let expected: Vec<i16> = bytes.iter().map(|&b| law.decode(b)).collect();
        assert_same(&whole(&bytes, hint), &expected, encoding);
        let clip = decode_attachment(&bytes, hint.0, hint.1).unwrap();
        assert_clip_is(&clip, &expected, encoding);
        // Without a hint nothing says what these bytes are.
        let err = decode_attachment(&bytes, None, Some("message")).unwrap_err();
        assert!(matches!(err, MediaError::Unsupported { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("message: not a recognised audio format"),
            "{err}"
        );
    }
}

/// What the crate's own path does with interleaved 16-bit audio: average, resample, round.
fn reference_8k(interleaved: &[i16], rate: u32, channels: usize) -> Vec<i16> {
    let samples = interleaved
        .chunks_exact(channels)
        .map(|f| f.iter().map(|&s| f32::from(s) / 32768.0).sum::<f32>() * (1.0 / channels as f32))
        .collect();
    resample_to_8k(&Pcm { rate, samples })
        .unwrap()
        .into_iter()
        .map(g711::f32_to_i16)
        .collect()
}

#[test]
fn other_rates_and_channel_counts_are_resampled_like_whole_files() {
    let dir = tempfile::tempdir().unwrap();
    // 16 kHz stereo: the speech on the left, a quieter copy delayed on the right.
    let mono = speech_like(2.0, 0.5);
    let left: Vec<i16> = mono.iter().flat_map(|&s| [s, s]).collect();
    let stereo: Vec<i16> = (0..left.len())
        .flat_map(|i| [left[i], if i >= 37 { left[i - 37] / 3 } else { 0 }])
        .collect();
    let wav = dir.path().join("stereo16k.wav");
    write_wav(&wav, 16_000, 2, &stereo);
    let au = dir.path().join("stereo16k.au");
    sox_convert(&wav, &au, &[]);
    let expected = reference_8k(&stereo, 16_000, 2);
    assert_eq!(expected.len(), 16_000);
    for path in [&wav, &au] {
        let name = path.file_name().unwrap().to_str().unwrap();
        let bytes = std::fs::read(path).unwrap();
        assert_same(&whole(&bytes, (None, None)), &expected, name);
        let sizes: Vec<usize> = (0..200).map(|i| 1 + (i * 7919) % 1500).collect();
        assert_same(&progressive(&bytes, (None, None), &sizes), &expected, name);
        let clip = decode_attachment(&bytes, None, Some(name)).unwrap();
        assert_clip_is(&clip, &expected, name);
    }
    // symphonia reads the PCM WAV to the same clip.
    let pcm = decode_bytes(std::fs::read(&wav).unwrap(), Some("wav")).unwrap();
    let theirs: Vec<i16> = resample_to_8k(&pcm)
        .unwrap()
        .into_iter()
        .map(g711::f32_to_i16)
        .collect();
    assert_same(&expected, &theirs, "symphonia");
}

/// Small files of every streamable kind, from sox.
fn small_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let source = dir.join("small.wav");
    write_wav(&source, 8000, 1, &speech_like(0.3, 0.6));
    let mut files = vec![("pcm16.wav".to_string(), std::fs::read(&source).unwrap())];
    for (name, args) in [
        ("gsm.wav", &["-e", "gsm-full-rate"][..]),
        ("raw.gsm", &[]),
        ("mulaw.wav", &["-e", "u-law"]),
        ("alaw.au", &["-e", "a-law"]),
        (
            "s16-22k.au",
            &["-r", "22050", "-e", "signed-integer", "-b", "16"],
        ),
        ("u8.wav", &["-e", "unsigned-integer", "-b", "8"]),
    ] {
        let path = dir.join(name);
        sox_convert(&source, &path, args);
        files.push((name.to_string(), std::fs::read(&path).unwrap()));
    }
    let mulaw = files[3].1.clone();
    files.push(("ext-mulaw.wav".into(), extensible(&mulaw)));
    files
}

#[test]
fn progressive_decoding_takes_pieces_split_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(42);
    for (name, bytes) in small_files(dir.path()) {
        let hint = (None, Some(name.as_str()));
        let reference = whole(&bytes, hint);
        assert!(
            reference.len() >= 2000,
            "{name}: {} samples",
            reference.len()
        );
        // Every offset; in the longest file (resampled), the header's and then every 61st.
        let stride = if bytes.len() > 6000 { 61 } else { 1 };
        for split in (0..=bytes.len()).filter(|&k| k < 100 || k % stride == 0) {
            let out = progressive(&bytes, hint, &[split]);
            assert_eq!(out, reference, "{name} split at byte {split}");
        }
        for _ in 0..30 {
            let sizes: Vec<usize> = (0..bytes.len()).map(|_| rng.below(300)).collect();
            assert_eq!(
                progressive(&bytes, hint, &sizes),
                reference,
                "{name}: {sizes:?}"
            );
        }
        assert_eq!(
            progressive(&bytes, hint, &vec![1; bytes.len()]),
            reference,
            "{name}: bytewise"
        );
    }
}

#[test]
fn audio_is_handed_out_while_the_attachment_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("long.wav");
    write_wav(&source, 8000, 1, &speech_like(10.0, 0.5));
    let gsm = dir.path().join("long-gsm.wav");
    sox_convert(&source, &gsm, &["-e", "gsm-full-rate"]);
    let bytes = std::fs::read(&gsm).unwrap();
    let mut d = ProgressiveDecoder::new(Some("audio/wav"), Some("msg0003.WAV"));
    let mut got = 0;
    for (i, piece) in bytes.chunks(1000).enumerate() {
        got += d.push(piece).unwrap().len();
        // Everything but the block in flight is out: 320 samples per 65 bytes.
        let arrived = (i + 1) * 1000;
        let complete_blocks = arrived.saturating_sub(60) / 65;
        assert_eq!(
            got,
            complete_blocks.min(bytes.len() / 65) * 320,
            "after {arrived} bytes"
        );
    }
    assert!(d.finish().unwrap().is_empty());
    assert_eq!(got, 80_000);
}

#[test]
fn compressed_formats_go_to_the_whole_file_decoder() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("speech.wav");
    write_wav(&source, 8000, 1, &speech_like(1.0, 0.5));
    let mp3 = dir.path().join("speech.mp3");
    run(
        &ffmpeg(),
        &[
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            source.to_str().unwrap(),
            "-ar",
            "22050",
            "-c:a",
            "libmp3lame",
            "-b:a",
            "32k",
            mp3.to_str().unwrap(),
        ],
    );
    let bytes = std::fs::read(&mp3).unwrap();
    assert_eq!(&bytes[..3], b"ID3");
    // Found by its signature whatever it is called, and decoded whole.
    for hint in [
        (Some("audio/mpeg"), Some("vm.mp3")),
        (Some("audio/wav"), Some("vm.wav")),
    ] {
        let clip = decode_attachment(&bytes, hint.0, hint.1).unwrap();
        let seconds = clip.duration().as_secs_f64();
        assert!((0.99..1.1).contains(&seconds), "{seconds} s");
        let level = rms(&clip
            .to_pcm()
            .iter()
            .map(|&x| (x * 32768.0) as i16)
            .collect::<Vec<_>>());
        assert!(level > 1000.0, "{level}");
    }
    // Without the ID3 tag, the MPEG frame header tells it.
    let tag_len = 10
        + bytes[6..10]
            .iter()
            .fold(0usize, |n, &b| (n << 7) | usize::from(b));
    let bare = &bytes[tag_len..];
    assert!(decode_attachment(bare, None, None).is_ok());
    let mut d = ProgressiveDecoder::new(None, Some("vm.mp3"));
    let err = d.push(&bytes).unwrap_err();
    assert_eq!(d.format(), Some(AttachmentFormat::Mp3));
    assert!(matches!(err, MediaError::Unsupported { .. }), "{err:?}");
    assert!(
        err.to_string().contains("decode the whole attachment"),
        "{err}"
    );
    // The decoder stays failed.
    assert!(matches!(
        d.push(b"more").unwrap_err(),
        MediaError::Unsupported { .. }
    ));

    // A WAV called .mp3 is a WAV.
    let wav = std::fs::read(&source).unwrap();
    let clip = decode_attachment(&wav, Some("audio/mpeg"), Some("vm.mp3")).unwrap();
    assert_eq!(clip.content_samples(), 8000);
}

fn decode_error(bytes: &[u8], content_type: Option<&str>, name: &str) -> String {
    let whole = decode_attachment(bytes, content_type, Some(name)).unwrap_err();
    // The progressive decoder reports the same fault, at the latest from finish().
    let mut d = ProgressiveDecoder::new(content_type, Some(name));
    let streamed = match d.push(bytes) {
        Err(e) => e,
        Ok(_) => d.finish().unwrap_err(),
    };
    assert_eq!(whole.to_string(), streamed.to_string());
    assert!(
        matches!(&whole, MediaError::Decode { path, .. } | MediaError::Unsupported { path, .. } if path == Path::new(name)),
        "{whole:?}"
    );
    whole.to_string()
}

fn expect_error(bytes: &[u8], content_type: Option<&str>, name: &str, wanted: &[&str]) {
    let msg = decode_error(bytes, content_type, name);
    for w in wanted {
        assert!(msg.contains(w), "{name}: {msg:?} lacks {w:?}");
    }
}

#[test]
fn truncated_and_corrupt_attachments_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let files = small_files(dir.path());
    let file = |n: &str| files.iter().find(|(name, _)| name == n).unwrap().1.clone();

    let gsm_wav = file("gsm.wav");
    expect_error(
        &gsm_wav[..gsm_wav.len() - 100],
        None,
        "cut.wav",
        &["cut.wav: cannot decode audio: WAV (GSM 6.10): truncated: the header declares"],
    );
    // A placeholder length: the last block is cut short.
    let mut unknown = gsm_wav.clone();
    let data = unknown.windows(4).position(|w| w == b"data").unwrap();
    unknown[data + 4..data + 8].copy_from_slice(&[0xFF; 4]);
    let whole_blocks = data + 8 + 65 * 3;
    expect_error(
        &unknown[..whole_blocks + 30],
        None,
        "open.wav",
        &["WAV (GSM 6.10): truncated: the attachment ends 30 bytes into a 65-byte block"],
    );
    assert_eq!(whole(&unknown[..whole_blocks], (None, None)).len(), 960);

    let raw = file("raw.gsm");
    let mut bad = raw.clone();
    bad[33 * 12] = 0x2A;
    expect_error(
        &bad,
        None,
        "bad.gsm",
        &[
            "raw GSM 06.10: frame 12 (byte 396): GSM frame does not start with the 0xD signature nibble (first byte 0x2a)",
        ],
    );
    let mut bad_early = raw.clone();
    bad_early[33 * 3] = 0x00;
    expect_error(
        &bad_early,
        Some("audio/x-gsm"),
        "early.gsm",
        &["frame 3 (byte 99)"],
    );
    expect_error(
        &raw[..raw.len() - 10],
        None,
        "short.gsm",
        &["raw GSM 06.10: truncated: the attachment ends 23 bytes into a 33-byte frame"],
    );

    let pcm = file("pcm16.wav");
    let fmt = find_chunk(&pcm, b"fmt ").to_vec();
    let data = find_chunk(&pcm, b"data").to_vec();
    let fmt_with = |offset: usize, value: &[u8]| {
        let mut f = fmt.clone();
        f[offset..offset + value.len()].copy_from_slice(value);
        riff(&[(b"fmt ", &f), (b"data", &data)])
    };
    expect_error(
        &fmt_with(2, &[0, 0]),
        None,
        "silent.wav",
        &["WAV (16-bit PCM): 0 channels"],
    );
    expect_error(
        &fmt_with(4, &[0, 0, 0, 0]),
        None,
        "norate.wav",
        &["a sample rate of 0 Hz"],
    );
    expect_error(
        &fmt_with(0, &[0x31, 0]),
        None,
        "notgsm.wav",
        &["WAV (GSM 6.10): blocks of 2 bytes, not Microsoft GSM 6.10's 65"],
    );
    expect_error(
        &riff(&[(b"data", &data), (b"fmt ", &fmt)]),
        None,
        "order.wav",
        &["WAV: the data chunk comes before the fmt chunk"],
    );
    expect_error(
        &riff(&[(b"fmt ", &fmt[..8]), (b"data", &data)]),
        None,
        "tiny.wav",
        &["WAV: a fmt chunk of 8 bytes"],
    );
    expect_error(
        &pcm[..30],
        None,
        "head.wav",
        &["WAV: the attachment ends inside its header"],
    );
    // A chunk claiming 4 GiB is skipped as far as the bytes go, not allocated.
    let mut huge = riff(&[(b"LIST", b"abcd"), (b"fmt ", &fmt), (b"data", &data)]);
    huge[16..20].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    expect_error(
        &huge,
        None,
        "huge.wav",
        &["WAV: the attachment ends inside its \"LIST\" chunk"],
    );
    // An odd data length short of a whole sample frame.
    let odd = riff(&[(b"fmt ", &fmt), (b"data", &data[..101])]);
    expect_error(
        &odd,
        None,
        "odd.wav",
        &["101 bytes of audio, which end 1 bytes into a 2-byte sample frame"],
    );

    let au = file("alaw.au");
    let au_at = |offset: usize, value: u32| {
        let mut a = au.clone();
        a[offset..offset + 4].copy_from_slice(&value.to_be_bytes());
        a
    };
    expect_error(
        &au_at(4, 10),
        None,
        "in.au",
        &["Sun audio: a data offset of 10, inside the 24-byte header"],
    );
    expect_error(
        &au_at(4, 0xFFFF_FFF0),
        None,
        "far.au",
        &["Sun audio: the attachment ends inside its header"],
    );
    expect_error(
        &au_at(12, 23),
        None,
        "g721.au",
        &["Sun audio with encoding 23"],
    );
    expect_error(
        &au_at(20, 70_000),
        None,
        "wide.au",
        &["Sun audio (A-law): 65535 channels"],
    );
    expect_error(
        &au_at(16, 4_000_000_000),
        None,
        "fast.au",
        &["a sample rate of 4000000000 Hz"],
    );
    expect_error(
        &au_at(8, 1_000_000),
        None,
        "long.au",
        &[
            "Sun audio (A-law): truncated: the header declares 1000000 bytes of audio, the attachment holds 2400",
        ],
    );

    expect_error(
        &[],
        None,
        "empty.wav",
        &["empty.wav: cannot decode audio: the attachment is empty"],
    );
    let header_only = riff(&[(b"fmt ", &fmt), (b"data", &[])]);
    expect_error(
        &header_only,
        None,
        "none.wav",
        &["WAV (16-bit PCM): no audio samples"],
    );
}

#[test]
fn damaged_attachments_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(7);
    for (name, bytes) in small_files(dir.path()) {
        for len in (0..bytes.len()).step_by(bytes.len() / 100).chain(0..80) {
            let _ = decode_attachment(&bytes[..len], None, Some(&name));
        }
        for _ in 0..200 {
            let mut damaged = bytes.clone();
            for _ in 0..1 + rng.below(4) {
                // Mostly the header, where the structure is.
                let at = if rng.below(2) == 0 {
                    rng.below(64)
                } else {
                    rng.below(damaged.len())
                };
                damaged[at] = rng.next() as u8;
            }
            let cut = damaged.len() - rng.below(damaged.len() / 4);
            let _ = decode_attachment(&damaged[..cut], None, Some(&name));
            let mut d = ProgressiveDecoder::new(None, Some(&name));
            if d.push(&damaged[..cut]).is_ok() {
                let _ = d.finish();
            }
        }
    }
}
