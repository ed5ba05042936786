//! Received audio, placed on a timeline by RTP timestamp and written as a WAV file.

use crate::ClientError;
use imss_media::Law;
use std::path::Path;
use std::time::Duration;

/// Decoded sample magnitude above which a packet counts as sound (about -54 dBFS): G.711
/// silence decodes to 0 (μ-law) or 8 (A-law).
pub const SOUND_THRESHOLD: u16 = 64;
/// Most sound onsets and arrival gaps kept per call (a peer cannot make the lists grow
/// without bound).
pub const MAX_LANDMARKS: usize = 256;

/// A pause in the arrival of packets: no packet arrived between `from_ns` and `to_ns`
/// (kernel receive times, CLOCK_REALTIME ns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArrivalGap {
    /// Arrival of the last packet before the gap.
    pub from_ns: i64,
    /// Arrival of the first packet after it.
    pub to_ns: i64,
}

/// Decoded 8 kHz audio of one call, each packet at its RTP timestamp relative to the first.
///
/// Gaps (lost packets, silence suppression) stay silent, so a lost packet never shifts the
/// audio after it; a duplicate overwrites the same samples. When the SSRC changes, the new
/// stream is anchored at its arrival time relative to the first packet, since its
/// timestamps bear no relation to the old ones. The timeline is bounded by `max_samples`
/// (a peer's timestamp jump cannot make it allocate without limit).
///
/// Besides the audio, a capture notes landmarks by arrival time: where sound starts after
/// silence (a server's comfort silence before a SPEAK is not sound) and where packets stopped
/// arriving for longer than the gap threshold (a PAUSE).
#[derive(Debug)]
pub struct AudioCapture {
    samples: Vec<i16>,
    max_samples: usize,
    anchor: Option<Anchor>,
    first_arrival_ns: i64,
    clipped: u64,
    gap_threshold_ns: i64,
    last_arrival_ns: Option<i64>,
    sounding: bool,
    onsets: Vec<i64>,
    gaps: Vec<ArrivalGap>,
}

#[derive(Clone, Copy, Debug)]
struct Anchor {
    ssrc: u32,
    first_ts: u32,
    offset: i64,
}

impl AudioCapture {
    /// A capture holding at most `max_samples` samples (8000 per second).
    pub fn new(max_samples: usize) -> AudioCapture {
        AudioCapture {
            samples: Vec::new(),
            max_samples,
            anchor: None,
            first_arrival_ns: 0,
            clipped: 0,
            gap_threshold_ns: 100_000_000,
            last_arrival_ns: None,
            sounding: false,
            onsets: Vec::new(),
            gaps: Vec::new(),
        }
    }

    /// Arrival intervals at least this long are noted as gaps (default 100 ms; a few packet
    /// times is right).
    pub fn set_gap_threshold(&mut self, threshold: Duration) {
        self.gap_threshold_ns = i64::try_from(threshold.as_nanos()).unwrap_or(i64::MAX);
    }

    /// Arrival times (CLOCK_REALTIME ns) of packets carrying sound after silence or at the
    /// start, in arrival order; at most [`MAX_LANDMARKS`].
    pub fn onsets(&self) -> &[i64] {
        &self.onsets
    }

    /// Arrival gaps of at least the gap threshold, in arrival order; at most
    /// [`MAX_LANDMARKS`].
    pub fn gaps(&self) -> &[ArrivalGap] {
        &self.gaps
    }

    fn note_landmarks(&mut self, arrival_ns: i64, law: Law, payload: &[u8]) {
        if let Some(last) = self.last_arrival_ns {
            if arrival_ns - last >= self.gap_threshold_ns && self.gaps.len() < MAX_LANDMARKS {
                self.gaps.push(ArrivalGap {
                    from_ns: last,
                    to_ns: arrival_ns,
                });
            }
            if arrival_ns > last {
                self.last_arrival_ns = Some(arrival_ns);
            }
        } else {
            self.last_arrival_ns = Some(arrival_ns);
        }
        let sound = payload
            .iter()
            .any(|&b| law.decode(b).unsigned_abs() > SOUND_THRESHOLD);
        if sound && !self.sounding && self.onsets.len() < MAX_LANDMARKS {
            self.onsets.push(arrival_ns);
        }
        self.sounding = sound;
    }

    /// Decodes `payload` with `law` and writes it at the packet's timestamp.
    pub fn place(&mut self, ssrc: u32, ts: u32, arrival_ns: i64, law: Law, payload: &[u8]) {
        self.note_landmarks(arrival_ns, law, payload);
        let anchor = match self.anchor {
            Some(a) if a.ssrc == ssrc => a,
            Some(_) => {
                let elapsed = arrival_ns.saturating_sub(self.first_arrival_ns).max(0);
                let a = Anchor {
                    ssrc,
                    first_ts: ts,
                    offset: elapsed / 125_000, // 125 µs per sample at 8 kHz
                };
                self.anchor = Some(a);
                a
            }
            None => {
                self.first_arrival_ns = arrival_ns;
                let a = Anchor {
                    ssrc,
                    first_ts: ts,
                    offset: 0,
                };
                self.anchor = Some(a);
                a
            }
        };
        let start = anchor.offset + i64::from(ts.wrapping_sub(anchor.first_ts) as i32);
        let end = start + payload.len() as i64;
        let limit = self.max_samples as i64;
        if end <= 0 || start >= limit {
            self.clipped += payload.len() as u64;
            return;
        }
        let from = start.max(0);
        let to = end.min(limit);
        let (from_u, to_u) = (from as usize, to as usize);
        if self.samples.len() < to_u {
            self.samples.resize(to_u, 0);
        }
        let skip = (from - start) as usize;
        for (dst, &b) in self.samples[from_u..to_u]
            .iter_mut()
            .zip(payload.iter().skip(skip))
        {
            *dst = law.decode(b);
        }
        self.clipped += (payload.len() - (to_u - from_u)) as u64;
    }

    /// The timeline so far.
    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    /// Samples that fell outside the timeline (before the first packet or past the limit).
    pub fn clipped(&self) -> u64 {
        self.clipped
    }

    /// Writes the timeline as an 8 kHz mono 16-bit PCM WAV file.
    pub fn write_wav(&self, path: &Path) -> Result<(), ClientError> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: imss_media::SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let wav_err = |e: hound::Error| ClientError::Wav {
            path: path.to_path_buf(),
            detail: e.to_string(),
        };
        let mut w = hound::WavWriter::create(path, spec).map_err(wav_err)?;
        {
            let mut w16 = w.get_i16_writer(self.samples.len() as u32);
            for &s in &self.samples {
                w16.write_sample(s);
            }
            w16.flush().map_err(wav_err)?;
        }
        w.finalize().map_err(wav_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(law: Law, value: i16, n: usize) -> Vec<u8> {
        vec![law.encode(value); n]
    }

    #[test]
    fn packets_are_placed_by_timestamp_with_silent_gaps() {
        let law = Law::Pcmu;
        let mut c = AudioCapture::new(8000);
        let base = 4_000_000_000u32; // wraps after two packets
        let ms = 1_000_000;
        c.place(9, base, 0, law, &frame(law, 1000, 160));
        // Packet 2 (base+160) is lost; packet 4 arrives before packet 3.
        c.place(
            9,
            base.wrapping_add(480),
            60 * ms,
            law,
            &frame(law, 3000, 160),
        );
        c.place(
            9,
            base.wrapping_add(320),
            61 * ms,
            law,
            &frame(law, -2000, 160),
        );
        let s = c.samples();
        assert_eq!(s.len(), 640);
        let v1 = law.decode(law.encode(1000));
        let v3 = law.decode(law.encode(-2000));
        let v4 = law.decode(law.encode(3000));
        assert!(s[..160].iter().all(|&x| x == v1));
        assert!(
            s[160..320].iter().all(|&x| x == 0),
            "lost packet is silence"
        );
        assert!(s[320..480].iter().all(|&x| x == v3));
        assert!(s[480..640].iter().all(|&x| x == v4));
    }

    #[test]
    fn early_packets_and_the_limit_are_clipped() {
        let law = Law::Pcma;
        let mut c = AudioCapture::new(400);
        c.place(1, 1000, 0, law, &frame(law, 500, 160));
        c.place(1, 1000 - 80, 0, law, &frame(law, 500, 160)); // half before the start
        c.place(1, 1000 + 320, 0, law, &frame(law, 500, 160)); // crosses the 400 limit
        c.place(1, 1000 + 2_000_000, 0, law, &frame(law, 500, 160)); // far beyond
        assert_eq!(c.samples().len(), 400);
        assert_eq!(c.clipped(), 80 + 80 + 160);
    }

    #[test]
    fn new_ssrc_is_anchored_at_its_arrival_time() {
        let law = Law::Pcmu;
        let mut c = AudioCapture::new(8000);
        c.place(1, 0, 1_000_000_000, law, &frame(law, 100, 160));
        // New SSRC arrives 100 ms after the first packet, unrelated timestamp.
        c.place(2, 777_777, 1_100_000_000, law, &frame(law, 100, 160));
        assert_eq!(c.samples().len(), 800 + 160);
        assert!(c.samples()[160..800].iter().all(|&x| x == 0));
    }

    #[test]
    fn sound_onsets_and_arrival_gaps_are_noted() {
        let law = Law::Pcma;
        let ms = 1_000_000i64;
        let mut c = AudioCapture::new(80_000);
        c.set_gap_threshold(Duration::from_millis(60));
        let mut ts = 0u32;
        let mut at = 1_000 * ms;
        let mut send = |c: &mut AudioCapture, value: i16, gap_ms: i64| {
            at += gap_ms * ms;
            c.place(5, ts, at, law, &frame(law, value, 160));
            ts = ts.wrapping_add(160);
            at
        };
        // Comfort silence, then a tone, a 500 ms pause, the tone again, silence, a tone.
        for _ in 0..5 {
            send(&mut c, 0, 20);
        }
        let onset = send(&mut c, 8000, 20);
        send(&mut c, 8000, 20);
        let before_pause = send(&mut c, -8000, 20);
        let after_pause = send(&mut c, 8000, 500);
        send(&mut c, 0, 20);
        let second = send(&mut c, 3000, 40);
        assert_eq!(c.onsets(), &[onset, second]);
        assert_eq!(
            c.gaps(),
            &[ArrivalGap {
                from_ns: before_pause,
                to_ns: after_pause
            }]
        );
    }

    #[test]
    fn landmarks_are_bounded() {
        let law = Law::Pcmu;
        let mut c = AudioCapture::new(160);
        c.set_gap_threshold(Duration::from_millis(1));
        for i in 0..(3 * MAX_LANDMARKS as i64) {
            let value = if i % 2 == 0 { 4000 } else { 0 };
            c.place(1, 0, i * 10_000_000, law, &frame(law, value, 160));
        }
        assert_eq!(c.onsets().len(), MAX_LANDMARKS);
        assert_eq!(c.gaps().len(), MAX_LANDMARKS);
    }

    #[test]
    fn wav_file_round_trips() {
        let law = Law::Pcmu;
        let mut c = AudioCapture::new(8000);
        c.place(1, 0, 0, law, &frame(law, 1234, 160));
        let path = std::env::temp_dir().join(format!("imss-client-{}.wav", std::process::id()));
        c.write_wav(&path).expect("write");
        let mut r = hound::WavReader::open(&path).expect("open");
        let spec = r.spec();
        assert_eq!(
            (spec.sample_rate, spec.channels, spec.bits_per_sample),
            (8000, 1, 16)
        );
        let back: Vec<i16> = r.samples::<i16>().map(|s| s.expect("sample")).collect();
        assert_eq!(back, c.samples());
        let _ = std::fs::remove_file(&path);
    }
}
