//! Helpers shared by the integration tests: external programs and signal measures.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The path of `program`, or a failure naming the Debian package that provides it.
pub fn require(program: &str, package: &str) -> PathBuf {
    let path = Path::new("/usr/bin").join(program);
    if path.exists() {
        return path;
    }
    panic!("{program} is required by this test: install the Debian package `{package}`");
}

/// Runs a program and fails the test with its stderr if it does not succeed.
pub fn run(program: &Path, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert!(
        output.status.success(),
        "{} {:?} failed: {}",
        program.display(),
        args,
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn sox() -> PathBuf {
    require("sox", "sox")
}

pub fn ffmpeg() -> PathBuf {
    require("ffmpeg", "ffmpeg")
}

/// Least-squares fit of `a sin + b cos` at `freq` over `x` (first sample at index
/// `start` of a `rate` Hz signal): (amplitude, phase, residual power).
pub fn fit(x: &[f32], rate: u32, freq: f64, start: usize) -> (f64, f64, f64) {
    let tau = std::f64::consts::TAU;
    let (mut ss, mut sc, mut cc, mut ys, mut yc) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (i, &y) in x.iter().enumerate() {
        let (s, c) = (tau * freq * (start + i) as f64 / f64::from(rate)).sin_cos();
        let y = f64::from(y);
        ss += s * s;
        sc += s * c;
        cc += c * c;
        ys += y * s;
        yc += y * c;
    }
    let det = ss * cc - sc * sc;
    let a = (ys * cc - yc * sc) / det;
    let b = (yc * ss - ys * sc) / det;
    let mut err = 0.0;
    for (i, &y) in x.iter().enumerate() {
        let w = tau * freq * (start + i) as f64 / f64::from(rate);
        let e = f64::from(y) - (a * w.sin() + b * w.cos());
        err += e * e;
    }
    (a.hypot(b), b.atan2(a), err / x.len() as f64)
}

/// What a tone measures like: frequency (from the phase drift between the two halves),
/// amplitude and signal-to-noise ratio against the best-fitting ideal sine.
#[derive(Debug)]
pub struct ToneMeasure {
    pub frequency: f64,
    pub amplitude: f64,
    pub rms: f64,
    pub snr_db: f64,
}

pub fn measure_tone(x: &[f32], rate: u32, nominal: f64) -> ToneMeasure {
    let half = x.len() / 2;
    let (_, p1, _) = fit(&x[..half], rate, nominal, 0);
    let (_, p2, _) = fit(&x[half..2 * half], rate, nominal, half);
    let tau = std::f64::consts::TAU;
    let drift = (p2 - p1 + tau / 2.0).rem_euclid(tau) - tau / 2.0;
    let frequency = nominal + drift / tau / (half as f64 / f64::from(rate));
    let (amplitude, _, noise) = fit(x, rate, frequency, 0);
    let rms = (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt();
    let snr_db = 10.0 * ((amplitude * amplitude / 2.0) / noise).log10();
    ToneMeasure {
        frequency,
        amplitude,
        rms,
        snr_db,
    }
}
