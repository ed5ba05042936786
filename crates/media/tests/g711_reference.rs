//! G.711 against sox and ffmpeg, for every 16-bit input and every code.
//!
//! What the references do, found by running them on all 65,536 inputs:
//! - sox rounds a 16-bit sample to the nearest 14-bit (μ-law) or 13-bit (A-law) value
//!   before companding (and dithers unless given `-D`); G.711 implementations truncate
//!   (Sun `g711.c`, spandsp, ITU-T G.191). So sox is given each input already truncated
//!   to the law's grid (μ-law toward zero, A-law by one's complement, i.e. floor) and
//!   must then agree byte for byte. The one input class sox cannot express is μ-law's
//!   negative zero: -3..=-1 truncate to "-0", code 0x7F, where sox's 0 gives 0xFF.
//! - ffmpeg builds its encoder tables from the midpoints between adjacent reconstruction
//!   values, which puts some decision thresholds elsewhere than G.711 does (even on the
//!   law's input grid it disagrees on 515 μ-law and 1,432 A-law inputs), so it serves as
//!   a decode reference only.
//! - Both decode all 256 codes of both laws to exactly Sun's `ulaw2linear`/`alaw2linear`.

mod common;

use std::path::Path;

use common::{ffmpeg, run, sox};
use imss_media::{Law, g711};

fn write_s16(path: &Path, samples: impl Iterator<Item = i16>) {
    let bytes: Vec<u8> = samples.flat_map(i16::to_le_bytes).collect();
    std::fs::write(path, bytes).unwrap();
}

fn read_s16(path: &Path) -> Vec<i16> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// The 16-bit value of the G.711 input-grid point a sample truncates to.
fn on_grid(law: Law, x: i16) -> i16 {
    match law {
        Law::Pcmu => x / 4 * 4,
        Law::Pcma => (x >> 3) << 3,
    }
}

fn sox_encoding(law: Law) -> &'static str {
    match law {
        Law::Pcmu => "u-law",
        Law::Pcma => "a-law",
    }
}

#[test]
fn every_input_encodes_like_sox() {
    let sox = sox();
    let dir = tempfile::tempdir().unwrap();
    for law in [Law::Pcmu, Law::Pcma] {
        let input = dir.path().join("in.raw");
        let output = dir.path().join("out.raw");
        write_s16(&input, (i16::MIN..=i16::MAX).map(|x| on_grid(law, x)));
        run(
            &sox,
            &[
                "-D",
                "-V1",
                "-t",
                "raw",
                "-r",
                "8000",
                "-e",
                "signed",
                "-b",
                "16",
                "-c",
                "1",
                input.to_str().unwrap(),
                "-t",
                "raw",
                "-e",
                sox_encoding(law),
                output.to_str().unwrap(),
            ],
        );
        let reference = std::fs::read(&output).unwrap();
        assert_eq!(reference.len(), 65_536);
        let mut mismatches = Vec::new();
        for (x, &want) in (i16::MIN..=i16::MAX).zip(&reference) {
            let want = if law == Law::Pcmu && (-3..=-1).contains(&x) {
                want & 0x7F
            } else {
                want
            };
            let got = law.encode(x);
            if got != want {
                mismatches.push((x, got, want));
            }
        }
        assert!(
            mismatches.is_empty(),
            "{law:?}: {} inputs differ from sox, first (input, ours, sox): {:?}",
            mismatches.len(),
            &mismatches[..mismatches.len().min(10)]
        );
    }
}

#[test]
fn every_code_decodes_like_sox_and_ffmpeg() {
    let (sox, ffmpeg) = (sox(), ffmpeg());
    let dir = tempfile::tempdir().unwrap();
    let codes = dir.path().join("codes.raw");
    std::fs::write(&codes, (0..=255u8).collect::<Vec<_>>()).unwrap();
    for law in [Law::Pcmu, Law::Pcma] {
        let by_sox = dir.path().join("sox.raw");
        run(
            &sox,
            &[
                "-V1",
                "-t",
                "raw",
                "-r",
                "8000",
                "-e",
                sox_encoding(law),
                "-b",
                "8",
                "-c",
                "1",
                codes.to_str().unwrap(),
                "-t",
                "raw",
                "-e",
                "signed",
                "-b",
                "16",
                by_sox.to_str().unwrap(),
            ],
        );
        let by_ffmpeg = dir.path().join("ffmpeg.raw");
        let format = if law == Law::Pcmu { "mulaw" } else { "alaw" };
        run(
            &ffmpeg,
            &[
                "-nostdin",
                "-loglevel",
                "error",
                "-y",
                "-f",
                format,
                "-ar",
                "8000",
                "-ac",
                "1",
                "-i",
                codes.to_str().unwrap(),
                "-f",
                "s16le",
                by_ffmpeg.to_str().unwrap(),
            ],
        );
        for (name, reference) in [("sox", read_s16(&by_sox)), ("ffmpeg", read_s16(&by_ffmpeg))] {
            assert_eq!(reference.len(), 256, "{name}");
            for code in 0..=255u8 {
                assert_eq!(
                    law.decode(code),
                    reference[usize::from(code)],
                    "{law:?} code {code:#04x} vs {name}"
                );
            }
        }
        let direct: Vec<i16> = match law {
            Law::Pcmu => (0..=255u8).map(g711::ulaw_decode).collect(),
            Law::Pcma => (0..=255u8).map(g711::alaw_decode).collect(),
        };
        assert_eq!(direct, read_s16(&by_sox));
    }
}

#[test]
fn ffmpeg_decodes_our_encoding_within_half_a_step() {
    // An end-to-end check through an independent decoder: our bytes, ffmpeg's expansion,
    // error bounded by half the quantisation step of the sample's segment.
    let ffmpeg = ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    for law in [Law::Pcmu, Law::Pcma] {
        let encoded = dir.path().join("enc.raw");
        let bytes: Vec<u8> = (i16::MIN..=i16::MAX).map(|x| law.encode(x)).collect();
        std::fs::write(&encoded, &bytes).unwrap();
        let decoded = dir.path().join("dec.raw");
        let format = if law == Law::Pcmu { "mulaw" } else { "alaw" };
        run(
            &ffmpeg,
            &[
                "-nostdin",
                "-loglevel",
                "error",
                "-y",
                "-f",
                format,
                "-ar",
                "8000",
                "-ac",
                "1",
                "-i",
                encoded.to_str().unwrap(),
                "-f",
                "s16le",
                decoded.to_str().unwrap(),
            ],
        );
        let back = read_s16(&decoded);
        for (x, y) in (i16::MIN..=i16::MAX).zip(back) {
            let err = (i32::from(x) - i32::from(y)).abs();
            let magnitude = i32::from(x).abs();
            // A segment whose inputs start at L has steps of L/16, so half a step is at
            // most |x|/32; the first segments have steps of 16 (A-law) or 8 (μ-law).
            let clip = if law == Law::Pcmu { 32124 } else { 32256 };
            if magnitude <= clip {
                assert!(err <= magnitude / 32 + 8, "{law:?}: {x} came back as {y}");
            }
        }
    }
}
