//! Band-limited resampling to 8 kHz with rubato's windowed-sinc `SincFixedIn`.
//!
//! The filter spans a fixed number of periods of the lower rate, so its transition band
//! is the same at every input rate, and its cutoff is placed below 4 kHz where the
//! stop band is already reached: nothing above the 8 kHz Nyquist frequency folds back.
//! When the rate ratio is a fraction with a small denominator (every common audio rate),
//! the sinc table holds exactly the phases needed and no interpolation between them is
//! done. The resampler's group delay is removed by padding the input with leading zeros
//! and dropping leading outputs, so output sample `k` is the input at time `k / 8000`
//! and the output has `round(len * 8000 / rate)` samples.

use rubato::{
    Resampler, SincFixedIn, SincInterpolationParameters, SincInterpolationType, WindowFunction,
    calculate_cutoff,
};

use crate::{MediaError, Pcm, SAMPLE_RATE};

/// Length of the sinc filter, in periods of the lower of the two rates.
const FILTER_PERIODS: usize = 160;
/// Largest sinc table (phases) used for exact rational resampling.
const MAX_EXACT_PHASES: usize = 1024;
/// Phases of the sinc table when interpolating between them.
const INTERPOLATED_PHASES: usize = 256;
/// Input frames per resampler call.
const CHUNK: usize = 2048;
/// Most leading outputs dropped to align output with input.
const MAX_ALIGNMENT_SKIP: usize = 4096;

/// Resamples mono PCM to 8 kHz, aligned with the input; a copy when already at 8 kHz.
pub fn resample_to_8k(pcm: &Pcm) -> Result<Vec<f32>, MediaError> {
    let mut resampler = Resampler8k::new(pcm.rate)?;
    let mut out = Vec::with_capacity(resampler.output_len(pcm.samples.len() as u64) + 1);
    resampler.push(&pcm.samples, &mut out)?;
    resampler.finish(&mut out)?;
    Ok(out)
}

/// A streaming mono resampler to 8 kHz: push input in pieces of any size, then finish.
pub struct Resampler8k {
    rate: u32,
    inner: Option<Sinc>,
    pushed: u64,
    produced: u64,
}

struct Sinc {
    resampler: SincFixedIn<f32>,
    /// Input waiting for a whole chunk.
    pending: Vec<f32>,
    output: Vec<Vec<f32>>,
    /// Leading outputs still to drop (the resampler's delay).
    skip: usize,
}

impl Resampler8k {
    /// Prepares a resampler from `rate` Hz.
    pub fn new(rate: u32) -> Result<Resampler8k, MediaError> {
        if rate == 0 {
            return Err(MediaError::Resample {
                rate,
                detail: "the sample rate is zero".into(),
            });
        }
        let inner = if rate == SAMPLE_RATE {
            None
        } else {
            Some(Sinc::new(rate)?)
        };
        Ok(Resampler8k {
            rate,
            inner,
            pushed: 0,
            produced: 0,
        })
    }

    /// The number of output samples `input_len` input samples resample to.
    pub fn output_len(&self, input_len: u64) -> usize {
        let num = u128::from(input_len) * u128::from(SAMPLE_RATE);
        let rate = u128::from(self.rate);
        usize::try_from((2 * num + rate) / (2 * rate)).unwrap_or(usize::MAX)
    }

    /// Resamples `input`, appending whatever output is ready to `out`.
    pub fn push(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), MediaError> {
        self.pushed += input.len() as u64;
        let before = out.len();
        match &mut self.inner {
            None => out.extend_from_slice(input),
            Some(sinc) => {
                let mut rest = input;
                while !rest.is_empty() {
                    let take = (CHUNK - sinc.pending.len()).min(rest.len());
                    sinc.pending.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if sinc.pending.len() == CHUNK {
                        sinc.run(self.rate, out)?;
                    }
                }
            }
        }
        self.produced += (out.len() - before) as u64;
        Ok(())
    }

    /// Flushes the filter, so that `out` holds exactly `output_len(total input)` samples
    /// from this resampler.
    pub fn finish(mut self, out: &mut Vec<f32>) -> Result<(), MediaError> {
        let target = self.output_len(self.pushed) as u64;
        if let Some(sinc) = &mut self.inner {
            while self.produced < target {
                let before = out.len();
                sinc.pending.resize(CHUNK, 0.0);
                sinc.run(self.rate, out)?;
                self.produced += (out.len() - before) as u64;
            }
        }
        let excess = self.produced.saturating_sub(target) as usize;
        out.truncate(out.len().saturating_sub(excess));
        Ok(())
    }
}

impl Sinc {
    fn new(rate: u32) -> Result<Sinc, MediaError> {
        let fail = |detail: String| MediaError::Resample { rate, detail };
        let ratio = f64::from(SAMPLE_RATE) / f64::from(rate);
        // Input samples per output sample, as the reduced fraction `up / phases`.
        let g = gcd(rate, SAMPLE_RATE);
        let phases = (SAMPLE_RATE / g) as usize;
        let exact = phases <= MAX_EXACT_PHASES;
        let step = 1.0 / ratio;
        let sinc_len = ((FILTER_PERIODS as f64 * step.max(1.0)).ceil() as usize).div_ceil(8) * 8;
        let window = WindowFunction::BlackmanHarris2;
        let parameters = SincInterpolationParameters {
            sinc_len,
            f_cutoff: calculate_cutoff(FILTER_PERIODS, window),
            oversampling_factor: parameters_phases(exact, phases),
            interpolation: if exact {
                SincInterpolationType::Nearest
            } else {
                SincInterpolationType::Cubic
            },
            window,
        };
        let resampler = SincFixedIn::<f32>::new(ratio, 1.0, parameters, CHUNK, 1)
            .map_err(|e| fail(e.to_string()))?;
        let output = resampler.output_buffer_allocate(true);

        // Output `k` of SincFixedIn is centred on input time `(k + 1) * step - 1 + 1/P`,
        // where `P` is the number of sinc phases. Prepend `lead` zeros and drop `skip`
        // outputs so that output `skip + j` is centred on input `j * step`: this needs
        // `lead = (skip + 1) * step - 1 + 1/P`, an integer. For a rational ratio with `P`
        // phases an exact solution exists with `skip < P`; otherwise take the closest.
        let table_phases = parameters_phases(exact, phases);
        let mut best = (f64::MAX, 0usize, 0usize);
        for skip in 0..=MAX_ALIGNMENT_SKIP {
            let centre = (skip + 1) as f64 * step - 1.0 + 1.0 / table_phases as f64;
            let lead = centre.round().max(0.0);
            let err = (centre - lead).abs();
            if err < best.0 {
                best = (err, lead as usize, skip);
            }
            if err < 1e-9 {
                break;
            }
        }
        let (_, lead, skip) = best;
        let mut pending = Vec::with_capacity(CHUNK);
        pending.resize(lead.min(CHUNK), 0.0);
        let mut sinc = Sinc {
            resampler,
            pending,
            output,
            skip,
        };
        // A lead longer than one chunk (very low input rates) is pushed through now.
        let mut remaining = lead.saturating_sub(CHUNK);
        let mut discard = Vec::new();
        while remaining > 0 {
            let take = remaining.min(CHUNK - sinc.pending.len());
            sinc.pending.resize(sinc.pending.len() + take, 0.0);
            remaining -= take;
            if sinc.pending.len() == CHUNK {
                sinc.run(rate, &mut discard)?;
            }
        }
        Ok(sinc)
    }

    fn run(&mut self, rate: u32, out: &mut Vec<f32>) -> Result<(), MediaError> {
        let input = [&self.pending[..]];
        let (_, produced) = self
            .resampler
            .process_into_buffer(&input, &mut self.output, None)
            .map_err(|e| MediaError::Resample {
                rate,
                detail: e.to_string(),
            })?;
        self.pending.clear();
        let fresh = &self.output[0][..produced];
        let dropped = self.skip.min(fresh.len());
        self.skip -= dropped;
        out.extend_from_slice(&fresh[dropped..]);
        Ok(())
    }
}

fn parameters_phases(exact: bool, phases: usize) -> usize {
    if exact { phases } else { INTERPOLATED_PHASES }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::TAU;

    fn sine(rate: u32, freq: f64, len: usize, phase: f64) -> Vec<f32> {
        (0..len)
            .map(|n| (0.5 * (TAU * freq * n as f64 / f64::from(rate) + phase).sin()) as f32)
            .collect()
    }

    /// Least-squares fit of `a sin + b cos` at `freq`; returns (amplitude, phase, residual rms).
    fn fit(samples: &[f32], rate: u32, freq: f64, start: usize) -> (f64, f64, f64) {
        let (mut ss, mut sc, mut cc, mut ys, mut yc) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (i, &y) in samples.iter().enumerate() {
            let w = TAU * freq * (start + i) as f64 / f64::from(rate);
            let (s, c) = w.sin_cos();
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
        for (i, &y) in samples.iter().enumerate() {
            let w = TAU * freq * (start + i) as f64 / f64::from(rate);
            let e = f64::from(y) - (a * w.sin() + b * w.cos());
            err += e * e;
        }
        (a.hypot(b), b.atan2(a), (err / samples.len() as f64).sqrt())
    }

    #[test]
    fn output_length_is_rounded_ratio() {
        for (rate, len, expected) in [
            (44_100, 44_100, 8000),
            (44_100, 100, 18),
            (48_000, 48_003, 8001),
            (16_000, 1, 1),
            (16_000, 3, 2),
            (22_050, 0, 0),
            (8000, 123, 123),
            (11_025, 12_345, 8958),
        ] {
            let out = resample_to_8k(&Pcm {
                rate,
                samples: vec![0.1; len],
            })
            .unwrap();
            assert_eq!(out.len(), expected, "{rate} Hz, {len} samples");
        }
    }

    #[test]
    fn passthrough_at_8k() {
        let samples = sine(8000, 440.0, 1000, 0.3);
        let out = resample_to_8k(&Pcm {
            rate: 8000,
            samples: samples.clone(),
        })
        .unwrap();
        assert_eq!(out, samples);
    }

    #[test]
    fn zero_rate_is_an_error() {
        let err = resample_to_8k(&Pcm {
            rate: 0,
            samples: vec![0.0; 10],
        })
        .unwrap_err();
        assert!(err.to_string().contains("0 Hz"), "{err}");
    }

    #[test]
    fn output_is_aligned_with_input() {
        // A phase error of 1e-3 rad at 1 kHz is 0.16 µs, 1/800 of an 8 kHz sample.
        for rate in [
            44_100, 48_000, 22_050, 11_025, 16_000, 32_000, 12_000, 44_056, 44_101, 6000,
        ] {
            let phase = 0.7;
            let input = sine(rate, 1000.0, rate as usize, phase);
            let out = resample_to_8k(&Pcm {
                rate,
                samples: input,
            })
            .unwrap();
            let (amp, got, rms) = fit(&out[800..7200], 8000, 1000.0, 800);
            let dphi = (got - phase + TAU / 2.0).rem_euclid(TAU) - TAU / 2.0;
            assert!(dphi.abs() < 2e-3, "{rate} Hz: phase off by {dphi} rad");
            assert!((amp - 0.5).abs() < 0.005, "{rate} Hz: amplitude {amp}");
            assert!(rms < 0.5e-3, "{rate} Hz: residual {rms}");
        }
    }

    #[test]
    fn streaming_in_odd_pieces_equals_one_shot() {
        let input = sine(44_100, 700.0, 30_000, 0.0);
        let one_shot = resample_to_8k(&Pcm {
            rate: 44_100,
            samples: input.clone(),
        })
        .unwrap();
        let mut r = Resampler8k::new(44_100).unwrap();
        let mut out = Vec::new();
        for piece in input.chunks(777) {
            r.push(piece, &mut out).unwrap();
        }
        r.finish(&mut out).unwrap();
        assert_eq!(out, one_shot);
    }

    #[test]
    fn passband_is_flat_and_aliases_are_removed() {
        let rate = 44_100;
        for (freq, min_db, max_db) in [(300.0, -0.05, 0.05), (3000.0, -0.2, 0.05)] {
            let out = resample_to_8k(&Pcm {
                rate,
                samples: sine(rate, freq, rate as usize, 0.0),
            })
            .unwrap();
            let (amp, _, _) = fit(&out[800..7200], 8000, freq, 800);
            let db = 20.0 * (amp / 0.5).log10();
            assert!(db > min_db && db < max_db, "{freq} Hz: {db} dB");
        }
        // 5 kHz would fold to 3 kHz, 7.5 kHz to 500 Hz.
        for (freq, alias) in [(5000.0, 3000.0), (7500.0, 500.0), (4400.0, 3600.0)] {
            let out = resample_to_8k(&Pcm {
                rate,
                samples: sine(rate, freq, rate as usize, 0.0),
            })
            .unwrap();
            let (amp, _, _) = fit(&out[800..7200], 8000, alias, 800);
            let db = 20.0 * (amp / 0.5).log10();
            assert!(db < -60.0, "{freq} Hz leaks to {alias} Hz at {db} dB");
        }
    }

    #[test]
    fn upsampling_works() {
        let out = resample_to_8k(&Pcm {
            rate: 6000,
            samples: sine(6000, 1000.0, 6000, 0.0),
        })
        .unwrap();
        assert_eq!(out.len(), 8000);
        let (amp, _, rms) = fit(&out[800..7200], 8000, 1000.0, 800);
        assert!((amp - 0.5).abs() < 0.005 && rms < 1e-3, "{amp} {rms}");
    }
}
