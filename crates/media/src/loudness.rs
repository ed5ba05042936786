//! Per-source loudness processing: a fixed gain, normalisation to a target loudness, the
//! telephone band-pass and a peak limiter, applied once in a live source's producer so the
//! cost does not grow with its listeners.
//!
//! The chain, in order: `gain_db` → band-pass 300–3,400 Hz → normaliser → limiter. The
//! normaliser measures what callers will hear (after the band-pass) and the limiter comes
//! last so that nothing after it can push a peak over the ceiling.
//!
//! The normaliser is feed-forward: every 100 ms it reads the EBU R128 momentary loudness
//! (400 ms, K-weighted, measured by the `ebur128` crate) of its input, averages the readings
//! over about 3 s (short-term), and moves its gain towards `target − average` with a 1 s time
//! constant; the first reading, 400 ms after the start, sets the gain at once, so a source
//! is at its level from then on rather than fading to it. Readings below −50 LUFS (silence, the pause between two songs) are gated out, so
//! a pause holds the gain instead of raising it; readings more than 20 LU below the average
//! (a quiet passage, a fade) are gated out too, unless the source stays that quiet for 10 s
//! (it really changed). The gain stays within −30…+20 dB, so a near-silent source is not
//! lifted into audible noise.

use ebur128::{EbuR128, Mode};

use crate::{BLOCK_SAMPLES, Clip, LiveBlock, LiveFeed, SAMPLE_RATE};

/// Default loudness target of `normalize`, LUFS: about −15 dBm0 for a 1 kHz tone, the
/// conventional mean level of a telephone signal (ITU-T G.223), a few dB above a talker at
/// the nominal −20 dBm0.
pub const DEFAULT_TARGET_LUFS: f64 = -21.0;
/// Default ceiling of the peak limiter, dBFS: 1 dB of headroom below G.711's overload point.
pub const DEFAULT_CEILING_DBFS: f64 = -1.0;

/// Readings quieter than this are silence: they hold the gain.
const ABSOLUTE_GATE_LUFS: f64 = -50.0;
/// Readings this far below the running loudness are a quiet passage: they hold the gain.
const RELATIVE_GATE_LU: f64 = 20.0;
/// How long (in 100 ms readings) a source must stay below the relative gate before its
/// running loudness follows it anyway.
const RELATIVE_GATE_PATIENCE: u32 = 100;
/// Time constant of the running loudness, s (the short-term loudness's 3 s).
const LOUDNESS_TAU_S: f64 = 3.0;
/// Time constant of the gain following the running loudness, s.
const GAIN_TAU_S: f64 = 1.0;
/// Bounds of the normaliser's gain, dB.
const MAX_GAIN_DB: f64 = 20.0;
const MIN_GAIN_DB: f64 = -30.0;
/// Blocks between two loudness readings (100 ms).
const BLOCKS_PER_READING: u32 = 10;
/// Readings before the first one counts: the 400 ms momentary window must be full.
const WARM_UP_READINGS: u32 = 4;

/// Limiter look-ahead, samples (2 ms): the gain is down before a peak arrives.
const LOOKAHEAD: usize = 16;
/// Limiter release time constant, s.
const RELEASE_TAU_S: f64 = 0.06;

/// Band edges of the telephone band-pass, Hz (ITU-T G.712's 300–3,400 Hz channel).
const BAND_LOW_HZ: f64 = 300.0;
const BAND_HIGH_HZ: f64 = 3400.0;
/// Q of the two sections of a 4th-order Butterworth filter.
const BUTTERWORTH_Q: [f64; 2] = [0.541_196_100_146_197, 1.306_562_964_876_376_5];

/// How a live source's audio is processed. The default changes nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Processing {
    /// Fixed gain, dB, applied first.
    pub gain_db: f64,
    /// Normalise to this loudness, LUFS (`None`: no normalisation).
    pub target_lufs: Option<f64>,
    /// The telephone band-pass, 300–3,400 Hz.
    pub band_pass: bool,
    /// Ceiling of the peak limiter, dBFS (`None`: no limiter).
    pub ceiling_dbfs: Option<f64>,
}

impl Processing {
    /// True when processing would leave the audio as it is.
    pub fn is_identity(&self) -> bool {
        self.gain_db == 0.0
            && self.target_lufs.is_none()
            && !self.band_pass
            && self.ceiling_dbfs.is_none()
    }

    /// Processes a whole recording (an announcement, a chime) the way the source's live
    /// audio is processed, except that normalisation is one static gain: the recording's
    /// integrated loudness (EBU R128, gated) is brought to the target.
    pub fn apply_to_samples(&self, samples: &mut [f32]) {
        let mut chain = Chain::new(self, false);
        chain.gain_and_filter(samples);
        if let Some(target) = self.target_lufs {
            let gain = static_gain_db(samples, target);
            let g = db_to_gain(gain) as f32;
            samples.iter_mut().for_each(|x| *x *= g);
        }
        if let Some(limiter) = &mut chain.limiter {
            limiter.process_whole(samples);
        }
    }

    /// A clip processed by [`apply_to_samples`](Processing::apply_to_samples).
    pub fn apply_to_clip(&self, clip: &Clip) -> Clip {
        let mut samples = clip.to_pcm();
        self.apply_to_samples(&mut samples);
        Clip::from_samples_8k(&samples)
    }
}

/// A live feed with [`Processing`] applied to every block it produces.
pub struct ProcessedFeed {
    inner: Box<dyn LiveFeed>,
    chain: Chain,
}

impl ProcessedFeed {
    /// Wraps `inner`.
    pub fn new(inner: Box<dyn LiveFeed>, processing: &Processing) -> ProcessedFeed {
        ProcessedFeed {
            inner,
            chain: Chain::new(processing, true),
        }
    }

    /// The normaliser's current gain, dB (0 without normalisation).
    pub fn normaliser_gain_db(&self) -> f64 {
        self.chain.normaliser.as_ref().map_or(0.0, |n| n.gain_db)
    }
}

impl LiveFeed for ProcessedFeed {
    fn next_block(&mut self, block: &mut LiveBlock) {
        self.inner.next_block(block);
        self.chain.process_block(block.pcm_mut());
    }

    fn set_listened(&mut self, listened: bool) {
        self.inner.set_listened(listened);
    }
}

/// The processing stages of one source.
struct Chain {
    pre_gain: f32,
    band_pass: Option<BandPass>,
    normaliser: Option<Normaliser>,
    limiter: Option<Limiter>,
}

impl Chain {
    /// With `live`, normalisation adapts as the audio goes; without it, the caller
    /// normalises statically.
    fn new(p: &Processing, live: bool) -> Chain {
        Chain {
            pre_gain: db_to_gain(p.gain_db) as f32,
            band_pass: p.band_pass.then(BandPass::telephone),
            normaliser: if live {
                p.target_lufs.and_then(Normaliser::new)
            } else {
                None
            },
            limiter: p.ceiling_dbfs.map(Limiter::new),
        }
    }

    fn gain_and_filter(&mut self, samples: &mut [f32]) {
        for x in samples.iter_mut() {
            // A decoder's NaN or infinity must not poison the filters' state for good.
            *x = if x.is_finite() {
                *x * self.pre_gain
            } else {
                0.0
            };
        }
        if let Some(bp) = &mut self.band_pass {
            bp.process(samples);
        }
    }

    fn process_block(&mut self, pcm: &mut [f32; BLOCK_SAMPLES]) {
        self.gain_and_filter(pcm);
        if let Some(n) = &mut self.normaliser {
            n.process(pcm);
        }
        if let Some(l) = &mut self.limiter {
            l.process(pcm);
        }
    }
}

fn db_to_gain(db: f64) -> f64 {
    10f64.powf(db / 20.0)
}

/// The gain, dB, that brings `samples` (8 kHz) to `target` LUFS, within the normaliser's
/// bounds; 0 for a recording too short or too quiet to measure.
fn static_gain_db(samples: &[f32], target: f64) -> f64 {
    let Ok(mut meter) = EbuR128::new(1, SAMPLE_RATE, Mode::I) else {
        return 0.0;
    };
    if meter.add_frames_f32(samples).is_err() {
        return 0.0;
    }
    match meter.loudness_global() {
        Ok(l) if l.is_finite() && l > ABSOLUTE_GATE_LUFS => {
            (target - l).clamp(MIN_GAIN_DB, MAX_GAIN_DB)
        }
        _ => 0.0,
    }
}

/// The slowly adapting gain that brings a live source to its target loudness.
struct Normaliser {
    meter: EbuR128,
    target_lufs: f64,
    /// Blocks since the last reading.
    blocks: u32,
    /// Readings taken so far, up to the warm-up.
    readings: u32,
    /// Running loudness as mean energy (`10^(LUFS/10)`); `None` until the first reading
    /// that passed the gates.
    energy: Option<f64>,
    /// Consecutive readings below the relative gate only.
    quiet_readings: u32,
    /// Gain the normaliser is heading for, dB.
    wanted_db: f64,
    /// Gain applied at the end of the last block, dB, and as a factor.
    gain_db: f64,
    gain: f32,
    /// Per-reading weight of the running loudness, per-block weight of the gain.
    loudness_alpha: f64,
    gain_alpha: f64,
}

impl Normaliser {
    fn new(target_lufs: f64) -> Option<Normaliser> {
        let meter = EbuR128::new(1, SAMPLE_RATE, Mode::M).ok()?;
        let reading_s = f64::from(BLOCKS_PER_READING) * BLOCK_SECONDS;
        Some(Normaliser {
            meter,
            target_lufs,
            blocks: 0,
            readings: 0,
            energy: None,
            quiet_readings: 0,
            wanted_db: 0.0,
            gain_db: 0.0,
            gain: 1.0,
            loudness_alpha: (-reading_s / LOUDNESS_TAU_S).exp(),
            gain_alpha: (-BLOCK_SECONDS / GAIN_TAU_S).exp(),
        })
    }

    fn process(&mut self, pcm: &mut [f32; BLOCK_SAMPLES]) {
        // Cannot fail for one channel of f32 frames; a failure would only skip a reading.
        let _ = self.meter.add_frames_f32(pcm);
        self.blocks += 1;
        if self.blocks == BLOCKS_PER_READING {
            self.blocks = 0;
            self.read();
        }
        self.gain_db = self.wanted_db + (self.gain_db - self.wanted_db) * self.gain_alpha;
        let end = db_to_gain(self.gain_db) as f32;
        // A ramp across the block: no step, however the gain moves.
        let start = self.gain;
        let step = (end - start) / BLOCK_SAMPLES as f32;
        for (i, x) in pcm.iter_mut().enumerate() {
            *x *= start + step * (i + 1) as f32;
        }
        self.gain = end;
    }

    /// Takes one momentary-loudness reading and updates the gain wanted.
    fn read(&mut self) {
        if self.readings < WARM_UP_READINGS {
            self.readings += 1;
            if self.readings < WARM_UP_READINGS {
                return;
            }
        }
        let Ok(momentary) = self.meter.loudness_momentary() else {
            return;
        };
        // Silence reads −∞; NaN cannot happen, but would be silence too.
        if momentary.is_nan() || momentary <= ABSOLUTE_GATE_LUFS {
            return;
        }
        let reading = 10f64.powf(momentary / 10.0);
        let first = self.energy.is_none();
        let energy = match self.energy {
            None => reading,
            Some(e) if momentary < energy_to_lufs(e) - RELATIVE_GATE_LU => {
                self.quiet_readings += 1;
                if self.quiet_readings < RELATIVE_GATE_PATIENCE {
                    return;
                }
                self.quiet_readings = 0;
                reading
            }
            Some(e) => {
                self.quiet_readings = 0;
                e * self.loudness_alpha + reading * (1.0 - self.loudness_alpha)
            }
        };
        self.energy = Some(energy);
        self.wanted_db =
            (self.target_lufs - energy_to_lufs(energy)).clamp(MIN_GAIN_DB, MAX_GAIN_DB);
        if first {
            self.gain_db = self.wanted_db;
        }
    }
}

const BLOCK_SECONDS: f64 = BLOCK_SAMPLES as f64 / SAMPLE_RATE as f64;

fn energy_to_lufs(energy: f64) -> f64 {
    10.0 * energy.log10()
}

/// A look-ahead peak limiter: no output sample exceeds the ceiling.
///
/// The gain each sample needs (`ceiling / |x|`, at most 1) goes through a sliding minimum
/// over the look-ahead window, a release (the gain recovers with a 60 ms time constant, but
/// falls at once), then a moving average over the same window; the audio is delayed by the
/// window less one sample. The average at a peak's output time covers only values taken while
/// the peak was in the minimum's window, so the gain there is at most what the peak needs,
/// while the gain still changes smoothly, over 2 ms, rather than in one step.
struct Limiter {
    ceiling: f32,
    /// The last `LOOKAHEAD` input samples, needed gains and released gains, by `pos`.
    delay: [f32; LOOKAHEAD],
    needed: [f32; LOOKAHEAD],
    released: [f32; LOOKAHEAD],
    pos: usize,
    /// The released gain of the previous sample.
    held: f32,
    release: f32,
}

impl Limiter {
    fn new(ceiling_dbfs: f64) -> Limiter {
        Limiter {
            ceiling: db_to_gain(ceiling_dbfs) as f32,
            delay: [0.0; LOOKAHEAD],
            needed: [1.0; LOOKAHEAD],
            released: [1.0; LOOKAHEAD],
            pos: 0,
            held: 1.0,
            release: (-1.0 / (RELEASE_TAU_S * f64::from(SAMPLE_RATE))).exp() as f32,
        }
    }

    fn process(&mut self, samples: &mut [f32]) {
        for x in samples.iter_mut() {
            *x = self.step(*x);
        }
    }

    /// Limits a whole recording, without the delay: the tail is flushed.
    fn process_whole(&mut self, samples: &mut [f32]) {
        let latency = LOOKAHEAD - 1;
        let n = samples.len();
        for i in 0..n + latency {
            let input = samples.get(i).copied().unwrap_or(0.0);
            let out = self.step(input);
            if i >= latency {
                samples[i - latency] = out;
            }
        }
    }

    fn step(&mut self, x: f32) -> f32 {
        let magnitude = x.abs();
        self.needed[self.pos] = if magnitude > self.ceiling {
            self.ceiling / magnitude
        } else {
            1.0
        };
        self.delay[self.pos] = x;
        let window_min = self.needed.iter().copied().fold(1.0f32, f32::min);
        self.held = if window_min < self.held {
            window_min
        } else {
            window_min + (self.held - window_min) * self.release
        };
        self.released[self.pos] = self.held;
        let gain = self.released.iter().sum::<f32>() / LOOKAHEAD as f32;
        self.pos = (self.pos + 1) % LOOKAHEAD;
        // The oldest sample of the window, which the slot just advanced to still holds.
        self.delay[self.pos] * gain
    }
}

/// One second-order section (RBJ cookbook coefficients), transposed direct form II, in f64:
/// a 300 Hz high-pass at 8 kHz puts its poles close enough to the unit circle for f32 state
/// to add audible noise.
struct Biquad {
    b0: f64,
    b1: f64,
    b2: f64,
    a1: f64,
    a2: f64,
    z1: f64,
    z2: f64,
}

impl Biquad {
    fn new(high_pass: bool, cutoff_hz: f64, q: f64) -> Biquad {
        let w0 = std::f64::consts::TAU * cutoff_hz / f64::from(SAMPLE_RATE);
        let (sin, cos) = w0.sin_cos();
        let alpha = sin / (2.0 * q);
        let a0 = 1.0 + alpha;
        let (b0, b1) = if high_pass {
            ((1.0 + cos) / 2.0, -(1.0 + cos))
        } else {
            ((1.0 - cos) / 2.0, 1.0 - cos)
        };
        Biquad {
            b0: b0 / a0,
            b1: b1 / a0,
            b2: b0 / a0,
            a1: -2.0 * cos / a0,
            a2: (1.0 - alpha) / a0,
            z1: 0.0,
            z2: 0.0,
        }
    }

    #[inline]
    fn step(&mut self, x: f64) -> f64 {
        let y = self.b0 * x + self.z1;
        self.z1 = self.b1 * x - self.a1 * y + self.z2;
        self.z2 = self.b2 * x - self.a2 * y;
        y
    }

    /// Zeroes state that has decayed below audibility, so silence does not leave the filter
    /// computing on subnormal numbers (slow on x86).
    fn flush_subnormal(&mut self) {
        if self.z1.abs() < 1e-25 {
            self.z1 = 0.0;
        }
        if self.z2.abs() < 1e-25 {
            self.z2 = 0.0;
        }
    }
}

/// 4th-order Butterworth high-pass at 300 Hz and low-pass at 3,400 Hz.
struct BandPass {
    sections: [Biquad; 4],
}

impl BandPass {
    fn telephone() -> BandPass {
        let [q1, q2] = BUTTERWORTH_Q;
        BandPass {
            sections: [
                Biquad::new(true, BAND_LOW_HZ, q1),
                Biquad::new(true, BAND_LOW_HZ, q2),
                Biquad::new(false, BAND_HIGH_HZ, q1),
                Biquad::new(false, BAND_HIGH_HZ, q2),
            ],
        }
    }

    fn process(&mut self, samples: &mut [f32]) {
        for x in samples.iter_mut() {
            let mut y = f64::from(*x);
            for s in &mut self.sections {
                y = s.step(y);
            }
            *x = y as f32;
        }
        self.sections.iter_mut().for_each(Biquad::flush_subnormal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::g711;

    /// A feed of a sine at `level_dbfs` peak, switched on and off by `on`.
    struct Sine {
        step: f64,
        phase: f64,
        amplitude: f64,
        /// Blocks played; the sine is silent for blocks where `on` says so.
        blocks: u64,
        on: fn(u64) -> bool,
    }

    impl Sine {
        fn new(frequency_hz: f64, level_dbfs: f64) -> Sine {
            Sine {
                step: frequency_hz / f64::from(SAMPLE_RATE),
                phase: 0.0,
                amplitude: db_to_gain(level_dbfs),
                blocks: 0,
                on: |_| true,
            }
        }
    }

    impl LiveFeed for Sine {
        fn next_block(&mut self, block: &mut LiveBlock) {
            let on = (self.on)(self.blocks);
            self.blocks += 1;
            let pcm = block.pcm_mut();
            for x in pcm.iter_mut() {
                *x = if on {
                    (self.amplitude * (std::f64::consts::TAU * self.phase).sin()) as f32
                } else {
                    0.0
                };
                self.phase = (self.phase + self.step).fract();
            }
        }
    }

    /// Runs `feed` for `blocks` blocks and returns what it produced.
    fn run(feed: &mut dyn LiveFeed, blocks: usize) -> Vec<f32> {
        let mut block = LiveBlock::silence();
        let mut out = Vec::with_capacity(blocks * BLOCK_SAMPLES);
        for _ in 0..blocks {
            feed.next_block(&mut block);
            out.extend_from_slice(block.pcm());
        }
        out
    }

    fn integrated_lufs(samples: &[f32]) -> f64 {
        let mut meter = EbuR128::new(1, SAMPLE_RATE, Mode::I).expect("meter");
        meter.add_frames_f32(samples).expect("frames");
        meter.loudness_global().expect("loudness")
    }

    fn rms(samples: &[f32]) -> f64 {
        (samples.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / samples.len() as f64).sqrt()
    }

    fn peak(samples: &[f32]) -> f32 {
        samples.iter().fold(0.0, |m, x| m.max(x.abs()))
    }

    const SECOND: usize = 100;

    fn normalising(target: f64) -> Processing {
        Processing {
            target_lufs: Some(target),
            ceiling_dbfs: Some(DEFAULT_CEILING_DBFS),
            ..Processing::default()
        }
    }

    #[test]
    fn quiet_and_loud_tones_settle_at_the_target() {
        for level in [-30.0, -6.0] {
            let before = integrated_lufs(&run(&mut Sine::new(1000.0, level), 5 * SECOND));
            let mut feed = ProcessedFeed::new(
                Box::new(Sine::new(1000.0, level)),
                &normalising(DEFAULT_TARGET_LUFS),
            );
            let out = run(&mut feed, 20 * SECOND);
            let settled = integrated_lufs(&out[10 * SECOND * BLOCK_SAMPLES..]);
            eprintln!("{level} dBFS tone: {before:.1} LUFS in, {settled:.2} LUFS out");
            assert!(
                (settled - DEFAULT_TARGET_LUFS).abs() <= 1.5,
                "{level} dBFS tone ({before:.1} LUFS in) came out at {settled:.1} LUFS"
            );
            assert!(
                (before - DEFAULT_TARGET_LUFS).abs() > 8.0,
                "the input must be far from the target for the test to mean anything"
            );
            // Settled means steady: the last 5 s do not drift.
            let tail = integrated_lufs(&out[15 * SECOND * BLOCK_SAMPLES..]);
            assert!((tail - settled).abs() < 0.3, "{tail:.2} vs {settled:.2}");
        }
    }

    #[test]
    fn other_targets_are_met() {
        for target in [-30.0, -14.0] {
            let mut feed =
                ProcessedFeed::new(Box::new(Sine::new(440.0, -20.0)), &normalising(target));
            let out = run(&mut feed, 15 * SECOND);
            let settled = integrated_lufs(&out[8 * SECOND * BLOCK_SAMPLES..]);
            assert!((settled - target).abs() <= 1.5, "{target}: {settled:.1}");
        }
    }

    #[test]
    fn pauses_hold_the_gain() {
        // 2 s of tone, 2 s of silence, repeated: the gain must not climb during the pauses.
        let mut sine = Sine::new(1000.0, -30.0);
        sine.on = |b| (b / 200).is_multiple_of(2);
        let mut feed = ProcessedFeed::new(Box::new(sine), &normalising(DEFAULT_TARGET_LUFS));
        run(&mut feed, 10 * SECOND);
        let gain_at_pause_start = feed.normaliser_gain_db();
        assert!(gain_at_pause_start > 8.0, "{gain_at_pause_start:.1} dB");
        // Block 1000 starts a pause (blocks 1000–1199 are silent).
        run(&mut feed, 2 * SECOND);
        let gain_at_pause_end = feed.normaliser_gain_db();
        assert!(
            (gain_at_pause_end - gain_at_pause_start).abs() < 0.5,
            "gain moved from {gain_at_pause_start:.2} to {gain_at_pause_end:.2} dB in a pause"
        );
        // And the tone after the pause comes out at the target at once.
        let out = run(&mut feed, 2 * SECOND);
        let level = integrated_lufs(&out);
        assert!((level - DEFAULT_TARGET_LUFS).abs() <= 1.5, "{level:.1}");
    }

    #[test]
    fn silence_stays_silence() {
        let mut silent = Sine::new(1000.0, -30.0);
        silent.on = |_| false;
        let processing = Processing {
            gain_db: 12.0,
            target_lufs: Some(DEFAULT_TARGET_LUFS),
            band_pass: true,
            ceiling_dbfs: Some(-1.0),
        };
        let mut feed = ProcessedFeed::new(Box::new(silent), &processing);
        let out = run(&mut feed, 60 * SECOND);
        assert!(out.iter().all(|&x| x == 0.0), "silence came out as sound");
        assert_eq!(
            feed.normaliser_gain_db(),
            0.0,
            "the gain ran away on silence"
        );
        // Quiet noise well under the gate is not lifted either.
        let mut noise = NoiseFeed(0x1234_5678, db_to_gain(-70.0) as f32);
        let in_level = rms(&run(&mut noise, 30 * SECOND));
        let mut feed = ProcessedFeed::new(Box::new(noise), &processing);
        let out = run(&mut feed, 30 * SECOND);
        // 12 dB is gain_db's; the band-pass only takes power away.
        assert!(
            rms(&out) <= in_level * db_to_gain(12.0) * 1.01,
            "noise at {in_level:.2e} rms lifted to {:.2e}",
            rms(&out)
        );
    }

    struct NoiseFeed(u64, f32);

    impl LiveFeed for NoiseFeed {
        fn next_block(&mut self, block: &mut LiveBlock) {
            for x in block.pcm_mut() {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                *x = ((self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * self.1;
            }
        }
    }

    struct Square(u64);

    impl LiveFeed for Square {
        fn next_block(&mut self, block: &mut LiveBlock) {
            for x in block.pcm_mut() {
                // 250 Hz, full scale.
                *x = if (self.0 / 16).is_multiple_of(2) {
                    1.0
                } else {
                    -1.0
                };
                self.0 += 1;
            }
        }
    }

    #[test]
    fn limiter_keeps_a_loud_square_under_the_ceiling() {
        for ceiling in [-1.0, -6.0] {
            let processing = Processing {
                gain_db: 6.0,
                ceiling_dbfs: Some(ceiling),
                ..Processing::default()
            };
            let mut feed = ProcessedFeed::new(Box::new(Square(0)), &processing);
            let out = run(&mut feed, 3 * SECOND);
            let limit = db_to_gain(ceiling) as f32;
            assert!(
                peak(&out) <= limit * (1.0 + 1e-6),
                "peak {} over the ceiling {limit}",
                peak(&out)
            );
            // Limited, not muted: the square's plateaus sit at the ceiling.
            let settled = &out[SECOND * BLOCK_SAMPLES..];
            let mean_abs = settled.iter().map(|x| x.abs()).sum::<f32>() / settled.len() as f32;
            assert!(
                mean_abs > limit * 0.8,
                "mean |x| {mean_abs} vs ceiling {limit}"
            );
            // And nothing clips once encoded: the G.711 codes stay below full scale.
            let mut block = LiveBlock::silence();
            let mut feed = ProcessedFeed::new(Box::new(Square(0)), &processing);
            for _ in 0..SECOND {
                feed.next_block(&mut block);
                for &code in block.g711(crate::Law::Pcmu) {
                    assert!(g711::ulaw_decode(code).unsigned_abs() < 32_000);
                }
            }
        }
    }

    #[test]
    fn limiter_leaves_quiet_audio_alone_apart_from_its_delay() {
        let processing = Processing {
            ceiling_dbfs: Some(-1.0),
            ..Processing::default()
        };
        let input = run(&mut Sine::new(700.0, -3.0), SECOND);
        let out = run(
            &mut ProcessedFeed::new(Box::new(Sine::new(700.0, -3.0)), &processing),
            SECOND,
        );
        let latency = LOOKAHEAD - 1;
        for (i, (&x, &y)) in input.iter().zip(&out[latency..]).enumerate() {
            assert!((x - y).abs() < 1e-6, "sample {i}: {x} became {y}");
        }
    }

    /// Gain of the band-pass at `frequency_hz`, dB, measured on a settled sine.
    fn band_pass_gain_db(frequency_hz: f64) -> f64 {
        let processing = Processing {
            band_pass: true,
            ..Processing::default()
        };
        let input = run(&mut Sine::new(frequency_hz, -6.0), 2 * SECOND);
        let out = run(
            &mut ProcessedFeed::new(Box::new(Sine::new(frequency_hz, -6.0)), &processing),
            2 * SECOND,
        );
        let skip = SECOND * BLOCK_SAMPLES;
        20.0 * (rms(&out[skip..]) / rms(&input[skip..])).log10()
    }

    #[test]
    fn band_pass_passes_the_voice_band_and_cuts_outside() {
        // 4th-order Butterworth edges through the bilinear transform:
        // |H|² = 1 / (1 + (Ω_c / Ω)^8) with Ω = tan(π f / 8000) for the high-pass.
        let warp = |f: f64| (std::f64::consts::PI * f / 8000.0).tan();
        let hp = |f: f64| -10.0 * (1.0 + (warp(300.0) / warp(f)).powi(8)).log10();
        let lp = |f: f64| -10.0 * (1.0 + (warp(f) / warp(3400.0)).powi(8)).log10();
        for (f, min_cut) in [(100.0, 35.0), (3800.0, 35.0)] {
            let expected = hp(f) + lp(f);
            let got = band_pass_gain_db(f);
            eprintln!("band-pass at {f} Hz: {got:.1} dB (expected {expected:.1} dB)");
            assert!(
                (got - expected).abs() < 1.0,
                "{f} Hz: {got:.1} dB, expected {expected:.1} dB"
            );
            assert!(got < -min_cut, "{f} Hz only {got:.1} dB down");
        }
        for f in [1000.0, 500.0, 3000.0] {
            let got = band_pass_gain_db(f);
            assert!(got.abs() < 0.5, "{f} Hz: {got:.2} dB in the pass band");
        }
        // The edges are the −3 dB points.
        for f in [300.0, 3400.0] {
            let got = band_pass_gain_db(f);
            assert!((got + 3.0).abs() < 0.3, "{f} Hz: {got:.2} dB at the edge");
        }
    }

    #[test]
    fn recordings_are_normalised_statically() {
        let mut quiet = run(&mut Sine::new(800.0, -35.0), 3 * SECOND);
        normalising(-21.0).apply_to_samples(&mut quiet);
        let level = integrated_lufs(&quiet);
        assert!((level + 21.0).abs() < 0.5, "{level:.2} LUFS");
        // One gain for the whole recording: the first and last second are equally loud.
        let head = integrated_lufs(&quiet[..8000]);
        let tail = integrated_lufs(&quiet[quiet.len() - 8000..]);
        assert!((head - tail).abs() < 0.2, "{head:.2} vs {tail:.2}");
        // The limiter runs without delay over a recording: the first sample stays first.
        let mut click = vec![0.0f32; 800];
        click[0] = 1.0;
        Processing {
            ceiling_dbfs: Some(-6.0),
            ..Processing::default()
        }
        .apply_to_samples(&mut click);
        assert!((click[0] - 0.501).abs() < 0.01, "{}", click[0]);
        assert!(peak(&click[1..]) < 0.01);
        assert!(Processing::default().is_identity());
    }
}
