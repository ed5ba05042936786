//! The demo music the embedded defaults play as `moh` on a fresh start.

use std::f64::consts::PI;
use std::io::Write;
use std::path::Path;

const RATE: u32 = 16_000;
/// A slow C-major arpeggio with a bass note, MIDI note numbers, one per half second.
const NOTES: [u8; 16] = [
    60, 64, 67, 72, 67, 64, 60, 64, 57, 60, 64, 69, 64, 60, 57, 60,
];

/// Writes a 16 kHz, 16-bit mono WAV of about eight seconds of soft music to `path`.
pub fn write_demo_music(path: &Path) -> std::io::Result<()> {
    let note_len = RATE as usize / 2;
    let mut samples = Vec::with_capacity(NOTES.len() * note_len);
    for (i, &note) in NOTES.iter().enumerate() {
        let f = 440.0 * 2f64.powf((f64::from(note) - 69.0) / 12.0);
        let bass = 440.0 * 2f64.powf((f64::from(if i < 8 { 48u8 } else { 45 }) - 69.0) / 12.0);
        for n in 0..note_len {
            let t = n as f64 / f64::from(RATE);
            // Soft attack and exponential decay: no clicks at note boundaries.
            let env =
                (t / 0.02).min(1.0) * (-3.0 * t).exp() * (1.0 - n as f64 / note_len as f64).sqrt();
            let v = 0.25 * env * ((2.0 * PI * f * t).sin() + 0.3 * (4.0 * PI * f * t).sin())
                + 0.12 * (2.0 * PI * bass * t).sin() * (1.0 - n as f64 / note_len as f64).sqrt();
            samples.push((v.clamp(-1.0, 1.0) * 32767.0) as i16);
        }
    }
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&RATE.to_le_bytes());
    out.extend_from_slice(&(RATE * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    let tmp = path.with_extension("wav.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&out)?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}
