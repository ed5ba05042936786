//! Receiver statistics of one RTP stream (RFC 3550 appendix A) and the spacing histogram.
//!
//! Everything here is fixed-size and allocation-free after construction, so a bench receiver
//! thread can keep thousands of [`StreamStats`] in preallocated slots and update them per
//! packet; the one large structure, [`SpacingHistogram`], is shared by all the streams of a
//! thread and merged across threads at the end.

use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// RTP clock rate of G.711, in Hz.
const CLOCK_HZ: f64 = 8000.0;
/// RFC 3550 A.1: largest forward jump still taken as loss rather than a restart.
const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: largest backward step still taken as a late (reordered) packet.
const MAX_MISORDER: u16 = 100;
/// Sequence numbers remembered behind the highest one, for telling duplicates from late
/// packets (must exceed `MAX_MISORDER`).
const WINDOW: u16 = 128;

/// How [`SeqTracker::update`] classified a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqClass {
    /// The first packet of the stream.
    First,
    /// Newer than everything seen so far (`gap` = sequence numbers skipped, 0 when in order).
    Newer {
        /// Sequence numbers missing between the previous highest and this one.
        gap: u16,
    },
    /// Older than the highest seen and not seen before.
    Reordered,
    /// Seen before.
    Duplicate,
    /// A jump too large to be loss; discarded unless the next packet confirms it (A.1).
    Discarded,
    /// The jump above was confirmed: the sender restarted its sequence; counting goes on.
    Restarted,
}

/// RFC 3550 A.1 sequence number bookkeeping, with duplicate and reorder detection.
///
/// `expected` follows A.3 (extended highest − base + 1), summed over sequence restarts.
#[derive(Clone, Copy, Debug, Default)]
pub struct SeqTracker {
    started: bool,
    base_ext: u64,
    max_seq: u16,
    cycles: u64,
    bad_seq: Option<u16>,
    window: u128,
    expected_before_restart: u64,
    received: u64,
    duplicates: u64,
    reordered: u64,
    discarded: u64,
}

impl SeqTracker {
    /// Accounts for one packet with sequence number `seq`.
    pub fn update(&mut self, seq: u16) -> SeqClass {
        if !self.started {
            self.start(seq);
            self.received += 1;
            return SeqClass::First;
        }
        let udelta = seq.wrapping_sub(self.max_seq);
        if udelta == 0 {
            self.received += 1;
            self.duplicates += 1;
            return SeqClass::Duplicate;
        }
        if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles += 1 << 16;
            }
            self.max_seq = seq;
            self.window = if udelta >= WINDOW {
                1
            } else {
                (self.window << udelta) | 1
            };
            self.bad_seq = None;
            self.received += 1;
            return SeqClass::Newer { gap: udelta - 1 };
        }
        let behind = 0u16.wrapping_sub(udelta);
        if behind <= MAX_MISORDER {
            let ext = self.max_ext().saturating_sub(u64::from(behind));
            self.received += 1;
            let bit = 1u128 << behind;
            if self.window & bit != 0 {
                self.duplicates += 1;
                return SeqClass::Duplicate;
            }
            self.window |= bit;
            self.reordered += 1;
            // A late packet from before the first one widens the range it counts against.
            self.base_ext = self.base_ext.min(ext);
            return SeqClass::Reordered;
        }
        // A very large jump: the sender restarted, or a stray packet (A.1).
        if self.bad_seq == Some(seq) {
            self.expected_before_restart += self.segment_expected();
            self.start(seq);
            self.received += 1;
            SeqClass::Restarted
        } else {
            self.bad_seq = Some(seq.wrapping_add(1));
            self.discarded += 1;
            SeqClass::Discarded
        }
    }

    /// Starts counting a new sequence (new stream, or a new SSRC) without losing the totals.
    pub fn restart(&mut self) {
        if self.started {
            self.expected_before_restart += self.segment_expected();
            self.started = false;
        }
    }

    fn start(&mut self, seq: u16) {
        self.started = true;
        self.cycles = 0;
        self.max_seq = seq;
        self.base_ext = u64::from(seq);
        self.window = 1;
        self.bad_seq = None;
    }

    fn max_ext(&self) -> u64 {
        self.cycles + u64::from(self.max_seq)
    }

    fn segment_expected(&self) -> u64 {
        if self.started {
            self.max_ext() + 1 - self.base_ext
        } else {
            0
        }
    }

    /// Packets expected from the sequence number range (RFC 3550 A.3).
    pub fn expected(&self) -> u64 {
        self.expected_before_restart + self.segment_expected()
    }

    /// Packets accepted, duplicates included (A.1 "received").
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Distinct packets accepted.
    pub fn unique(&self) -> u64 {
        self.received - self.duplicates
    }

    /// Expected minus distinct packets received; never negative.
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.unique())
    }

    /// Packets seen twice (or more).
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Packets that arrived after a higher sequence number.
    pub fn reordered(&self) -> u64 {
        self.reordered
    }

    /// Packets dropped as a stray jump in sequence numbers.
    pub fn discarded(&self) -> u64 {
        self.discarded
    }
}

/// RFC 3550 A.8 interarrival jitter, kept in RTP timestamp units as a float so that
/// sub-sample (125 µs) variations are not rounded away.
#[derive(Clone, Copy, Debug, Default)]
pub struct JitterEstimator {
    last: Option<(i64, u32)>,
    jitter: f64,
}

impl JitterEstimator {
    /// Updates with a packet that arrived at `arrival_ns` carrying RTP timestamp `ts`.
    pub fn update(&mut self, arrival_ns: i64, ts: u32) {
        if let Some((last_ns, last_ts)) = self.last {
            // D(i,j) = (Rj − Ri) − (Sj − Si), both in timestamp units (A.8).
            let arrival_units = (arrival_ns - last_ns) as f64 * CLOCK_HZ / 1e9;
            let sent_units = f64::from(ts.wrapping_sub(last_ts) as i32);
            let d = (arrival_units - sent_units).abs();
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last = Some((arrival_ns, ts));
    }

    /// Forgets the previous packet (new SSRC: its timestamps are unrelated).
    pub fn reset_reference(&mut self) {
        self.last = None;
    }

    /// The current estimate in RTP timestamp units.
    pub fn units(&self) -> f64 {
        self.jitter
    }

    /// The current estimate in milliseconds.
    pub fn ms(&self) -> f64 {
        self.jitter / CLOCK_HZ * 1000.0
    }
}

/// Width of a fine histogram bucket, in nanoseconds (10 µs).
pub const BUCKET_NS: u64 = 10_000;
/// Fine buckets: 10 µs each up to 100 ms.
pub const BUCKETS: usize = 10_000;
/// Width of a coarse bucket, in nanoseconds (1 ms), for 100 ms up to 2 s.
pub const COARSE_BUCKET_NS: u64 = 1_000_000;
/// Coarse buckets: 1 ms each from 100 ms to 2 s; larger values go to one overflow bucket.
pub const COARSE_BUCKETS: usize = 1_900;
const FINE_LIMIT_NS: u64 = BUCKET_NS * BUCKETS as u64;

/// Fixed-bucket histogram of non-negative durations: 10 µs buckets up to 100 ms, then 1 ms
/// buckets up to 2 s, then one overflow bucket.
///
/// Where spacing errors go: one histogram, or several split by arrival time.
pub trait SpacingSink {
    /// Records the spacing error `error_ns` of a packet that arrived at `arrival_ns`
    /// (CLOCK_REALTIME, ns).
    fn record_at(&mut self, arrival_ns: i64, error_ns: u64);
}

impl SpacingSink for SpacingHistogram {
    fn record_at(&mut self, _arrival_ns: i64, error_ns: u64) {
        self.record(error_ns);
    }
}

/// The steady state of a load run: every call up, none hung up yet. Published by the bench
/// as wall-clock nanoseconds and read by the receiver threads without locks.
#[derive(Debug)]
pub struct SteadyWindow {
    start_ns: AtomicI64,
    end_ns: AtomicI64,
}

impl Default for SteadyWindow {
    fn default() -> Self {
        SteadyWindow {
            start_ns: AtomicI64::new(i64::MAX),
            end_ns: AtomicI64::new(i64::MAX),
        }
    }
}

impl SteadyWindow {
    /// Marks now as the start of the steady state.
    pub fn open_now(&self) {
        self.start_ns.store(realtime_ns(), Ordering::Release);
    }
    /// Marks now as its end.
    pub fn close_now(&self) {
        self.end_ns.store(realtime_ns(), Ordering::Release);
    }
    /// Whether a packet that arrived at `ns` falls inside the window.
    pub fn contains(&self, ns: i64) -> bool {
        ns >= self.start_ns.load(Ordering::Acquire) && ns < self.end_ns.load(Ordering::Acquire)
    }
}

fn realtime_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Spacing errors of the whole run and of its steady window.
#[derive(Debug)]
pub struct SplitSpacing {
    /// Every packet.
    pub all: SpacingHistogram,
    /// Packets that arrived inside the steady window.
    pub steady: SpacingHistogram,
    window: Arc<SteadyWindow>,
}

impl SplitSpacing {
    /// Empty histograms split by `window`.
    pub fn new(window: Arc<SteadyWindow>) -> Self {
        SplitSpacing {
            all: SpacingHistogram::new(),
            steady: SpacingHistogram::new(),
            window,
        }
    }
}

impl SpacingSink for SplitSpacing {
    fn record_at(&mut self, arrival_ns: i64, error_ns: u64) {
        self.all.record(error_ns);
        if self.window.contains(arrival_ns) {
            self.steady.record(error_ns);
        }
    }
}

/// Percentiles report the upper edge of the bucket holding the rank, capped at the exact
/// maximum, so they err on the pessimistic side by at most one bucket.
#[derive(Clone, Debug)]
pub struct SpacingHistogram {
    buckets: Box<[u64]>,
    count: u64,
    sum_ns: u128,
    max_ns: u64,
}

impl Default for SpacingHistogram {
    fn default() -> Self {
        SpacingHistogram::new()
    }
}

impl SpacingHistogram {
    /// An empty histogram (allocates its ~12,000 buckets once).
    pub fn new() -> SpacingHistogram {
        SpacingHistogram {
            buckets: vec![0u64; BUCKETS + COARSE_BUCKETS + 1].into_boxed_slice(),
            count: 0,
            sum_ns: 0,
            max_ns: 0,
        }
    }

    fn index(ns: u64) -> usize {
        if ns < FINE_LIMIT_NS {
            (ns / BUCKET_NS) as usize
        } else {
            let coarse = (ns - FINE_LIMIT_NS) / COARSE_BUCKET_NS;
            BUCKETS + usize::try_from(coarse).map_or(COARSE_BUCKETS, |c| c.min(COARSE_BUCKETS))
        }
    }

    /// The exclusive upper edge of bucket `i`, in ns (`u64::MAX` for the overflow bucket).
    fn upper_edge(i: usize) -> u64 {
        if i < BUCKETS {
            (i as u64 + 1) * BUCKET_NS
        } else if i < BUCKETS + COARSE_BUCKETS {
            FINE_LIMIT_NS + ((i - BUCKETS) as u64 + 1) * COARSE_BUCKET_NS
        } else {
            u64::MAX
        }
    }

    /// Records one value.
    pub fn record(&mut self, ns: u64) {
        self.buckets[Self::index(ns)] += 1;
        self.count += 1;
        self.sum_ns += u128::from(ns);
        self.max_ns = self.max_ns.max(ns);
    }

    /// Adds another histogram's counts to this one.
    pub fn merge(&mut self, other: &SpacingHistogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.sum_ns += other.sum_ns;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The exact largest value, in nanoseconds.
    pub fn max_ns(&self) -> u64 {
        self.max_ns
    }

    /// The mean, in nanoseconds (0 when empty).
    pub fn mean_ns(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_ns as f64 / self.count as f64
        }
    }

    /// The `p`-th percentile (`p` in 0..=100) in nanoseconds; 0 when empty.
    pub fn percentile_ns(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::upper_edge(i).min(self.max_ns);
            }
        }
        self.max_ns
    }

    /// p50, p99 and max in milliseconds.
    pub fn summary_ms(&self) -> SpacingSummary {
        SpacingSummary {
            samples: self.count,
            p50_ms: ns_to_ms(self.percentile_ns(50.0)),
            p99_ms: ns_to_ms(self.percentile_ns(99.0)),
            max_ms: ns_to_ms(self.max_ns),
        }
    }
}

/// Spacing error figures (|arrival gap − ptime|), in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct SpacingSummary {
    /// Packet pairs measured.
    pub samples: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

pub(crate) fn ns_to_ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// What the receiver does with a packet after [`StreamStats::on_packet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// New audio: decode and place it.
    Audio,
    /// A duplicate, or a packet the receiver must not use (discarded jump, event payload).
    Skip,
}

/// One received RTP packet, as the statistics see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// Synchronisation source.
    pub ssrc: u32,
    /// Sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub ts: u32,
    /// Kernel receive time (CLOCK_REALTIME ns).
    pub arrival_ns: i64,
    /// True for a G.711 payload type (`payload_len` octets = samples).
    pub audio: bool,
    /// Payload length in octets.
    pub payload_len: usize,
}

/// Per-stream receiver state: sequence, jitter, spacing and audio counters. Fixed size.
#[derive(Clone, Copy, Debug)]
pub struct StreamStats {
    seq: SeqTracker,
    jitter: JitterEstimator,
    ssrc: Option<u32>,
    ssrc_changes: u32,
    ptime_ns: u64,
    skip_spacing_ns: i64,
    first_arrival_ns: Option<i64>,
    last_arrival: Option<(i64, u16)>,
    audio_samples: u64,
    other_payload: u64,
}

impl StreamStats {
    /// A stream with packet time `ptime_ns`, whose first `skip_spacing_ns` after the first
    /// packet are left out of the spacing figures (set-up transient).
    pub fn new(ptime_ns: u64, skip_spacing_ns: u64) -> StreamStats {
        StreamStats {
            seq: SeqTracker::default(),
            jitter: JitterEstimator::default(),
            ssrc: None,
            ssrc_changes: 0,
            ptime_ns,
            skip_spacing_ns: i64::try_from(skip_spacing_ns).unwrap_or(i64::MAX),
            first_arrival_ns: None,
            last_arrival: None,
            audio_samples: 0,
            other_payload: 0,
        }
    }

    /// Changes the packet time the spacing error is measured against.
    pub fn set_ptime_ns(&mut self, ptime_ns: u64) {
        self.ptime_ns = ptime_ns;
    }

    /// Accounts for one RTP packet and records its spacing error into `spacing`.
    pub fn on_packet(&mut self, p: Arrival, spacing: &mut impl SpacingSink) -> Verdict {
        let Arrival {
            ssrc,
            seq,
            ts,
            arrival_ns,
            audio,
            payload_len,
        } = p;
        match self.ssrc {
            Some(s) if s != ssrc => {
                self.ssrc_changes += 1;
                self.seq.restart();
                self.jitter.reset_reference();
                self.last_arrival = None;
            }
            _ => {}
        }
        self.ssrc = Some(ssrc);
        let first = *self.first_arrival_ns.get_or_insert(arrival_ns);
        let class = self.seq.update(seq);
        if matches!(class, SeqClass::Discarded) {
            return Verdict::Skip;
        }
        // A.8 counts every packet received in arrival order, duplicates included.
        self.jitter.update(arrival_ns, ts);
        if let Some((last_ns, last_seq)) = self.last_arrival
            && seq == last_seq.wrapping_add(1)
            && arrival_ns - first >= self.skip_spacing_ns
        {
            let gap = arrival_ns.saturating_sub(last_ns).max(0) as u64;
            spacing.record_at(arrival_ns, gap.abs_diff(self.ptime_ns));
        }
        self.last_arrival = Some((arrival_ns, seq));
        if matches!(class, SeqClass::Duplicate) {
            return Verdict::Skip;
        }
        if audio {
            self.audio_samples += payload_len as u64;
            Verdict::Audio
        } else {
            self.other_payload += 1;
            Verdict::Skip
        }
    }

    /// The sequence counters.
    pub fn seq(&self) -> &SeqTracker {
        &self.seq
    }

    /// The figures of this stream so far.
    pub fn summary(&self) -> StreamSummary {
        StreamSummary {
            packets: self.seq.received(),
            expected: self.seq.expected(),
            lost: self.seq.lost(),
            duplicates: self.seq.duplicates(),
            reordered: self.seq.reordered(),
            discarded: self.seq.discarded(),
            jitter_ms: self.jitter.ms(),
            audio_seconds: self.audio_samples as f64 / CLOCK_HZ,
            ssrc_changes: self.ssrc_changes,
            first_arrival_ns: self.first_arrival_ns,
        }
    }
}

/// The figures of one received stream.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StreamSummary {
    /// Packets received, duplicates included.
    pub packets: u64,
    /// Packets expected from the sequence number range (RFC 3550 A.3).
    pub expected: u64,
    /// Expected minus distinct packets received.
    pub lost: u64,
    /// Packets received more than once.
    pub duplicates: u64,
    /// Packets that arrived after a higher sequence number.
    pub reordered: u64,
    /// Packets dropped as stray sequence jumps (A.1).
    pub discarded: u64,
    /// RFC 3550 interarrival jitter, ms.
    pub jitter_ms: f64,
    /// Seconds of distinct G.711 audio received.
    pub audio_seconds: f64,
    /// Times the SSRC changed.
    pub ssrc_changes: u32,
    /// Kernel arrival time of the first packet (CLOCK_REALTIME ns), if any arrived.
    pub first_arrival_ns: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_stream_with_one_gap() {
        let mut s = SeqTracker::default();
        assert_eq!(s.update(10), SeqClass::First);
        assert_eq!(s.update(11), SeqClass::Newer { gap: 0 });
        assert_eq!(s.update(14), SeqClass::Newer { gap: 2 });
        assert_eq!((s.expected(), s.received(), s.lost()), (5, 3, 2));
    }

    #[test]
    fn expected_across_sequence_wrap() {
        let mut s = SeqTracker::default();
        for seq in [65533u16, 65534, 65535, 0, 1, 3] {
            s.update(seq);
        }
        // 65533 ..= 65535 (3) + 0 ..= 3 (4) = 7 expected, 2 (=seq 2) lost.
        assert_eq!(s.expected(), 7);
        assert_eq!(s.received(), 6);
        assert_eq!(s.lost(), 1);
        // A full second cycle keeps counting.
        let mut s = SeqTracker::default();
        let mut seq = 60000u16;
        for _ in 0..70_000 {
            s.update(seq);
            seq = seq.wrapping_add(1);
        }
        assert_eq!((s.expected(), s.lost()), (70_000, 0));
    }

    #[test]
    fn duplicates_and_reordering_are_told_apart() {
        let mut s = SeqTracker::default();
        s.update(65534);
        s.update(0); // 65535 is late
        assert_eq!(s.update(65535), SeqClass::Reordered);
        assert_eq!(s.update(65535), SeqClass::Duplicate);
        assert_eq!(s.update(0), SeqClass::Duplicate);
        assert_eq!(s.update(1), SeqClass::Newer { gap: 0 });
        assert_eq!((s.expected(), s.unique(), s.lost()), (4, 4, 0));
        assert_eq!((s.duplicates(), s.reordered()), (2, 1));
        assert_eq!(s.received(), 6);
    }

    #[test]
    fn packet_from_before_the_first_extends_the_range() {
        let mut s = SeqTracker::default();
        s.update(100);
        s.update(101);
        assert_eq!(s.update(99), SeqClass::Reordered);
        assert_eq!((s.expected(), s.lost()), (3, 0));
    }

    #[test]
    fn stray_jump_is_discarded_and_confirmed_jump_restarts() {
        let mut s = SeqTracker::default();
        s.update(1000);
        s.update(1001);
        assert_eq!(s.update(30_000), SeqClass::Discarded);
        assert_eq!(s.update(1002), SeqClass::Newer { gap: 0 });
        assert_eq!(s.update(40_000), SeqClass::Discarded);
        assert_eq!(s.update(40_001), SeqClass::Restarted);
        s.update(40_002);
        // 1000..=1002 then 40001..=40002.
        assert_eq!(s.expected(), 5);
        assert_eq!(s.lost(), 0);
        assert_eq!(s.discarded(), 2);
    }

    #[test]
    fn jitter_matches_a_hand_computation() {
        // Sent every 160 samples (20 ms); arrivals at 0, 20, 45, 60, 80 ms.
        let mut j = JitterEstimator::default();
        let ms = 1_000_000i64;
        let arrivals = [0, 20 * ms, 45 * ms, 60 * ms, 80 * ms];
        let mut ts = 1000u32;
        for a in arrivals {
            j.update(a, ts);
            ts = ts.wrapping_add(160);
        }
        // |D| per pair: 20−20=0, 25−20=5 ms=40 units, 15−20=−5 ms → 40 units, 20−20=0.
        // J1 = 0; J2 = 40/16 = 2.5; J3 = 2.5 + (40−2.5)/16 = 4.84375; J4 = 4.84375·15/16.
        let expected = (2.5 + (40.0 - 2.5) / 16.0) * 15.0 / 16.0;
        assert!((j.units() - expected).abs() < 1e-9, "{}", j.units());
        assert!((j.ms() - expected / 8.0).abs() < 1e-9);
    }

    #[test]
    fn jitter_survives_timestamp_wrap() {
        let mut j = JitterEstimator::default();
        j.update(0, u32::MAX - 79);
        j.update(20_000_000, 80); // +160 across the wrap, on time
        assert_eq!(j.units(), 0.0);
    }

    #[test]
    fn histogram_percentiles() {
        let mut h = SpacingHistogram::new();
        assert_eq!(h.percentile_ns(50.0), 0);
        // 98 values of 5 µs, one of 1.234 ms, one of 250 ms (coarse range).
        for _ in 0..98 {
            h.record(5_000);
        }
        h.record(1_234_000);
        h.record(250_000_000);
        assert_eq!(h.count(), 100);
        assert_eq!(h.percentile_ns(50.0), 10_000); // upper edge of [0, 10 µs)
        assert_eq!(h.percentile_ns(98.0), 10_000);
        assert_eq!(h.percentile_ns(99.0), 1_240_000); // upper edge of [1.23, 1.24) ms
        assert_eq!(h.percentile_ns(100.0), 250_000_000);
        assert_eq!(h.max_ns(), 250_000_000);
        let mut other = SpacingHistogram::new();
        for _ in 0..100 {
            other.record(2_000_000);
        }
        h.merge(&other);
        assert_eq!(h.count(), 200);
        assert_eq!(h.percentile_ns(50.0), 2_010_000.min(h.max_ns()));
        assert_eq!(h.percentile_ns(49.0), 10_000);
        let s = h.summary_ms();
        assert!((s.max_ms - 250.0).abs() < 1e-9);
    }

    #[test]
    fn coarse_and_overflow_ranges() {
        let mut h = SpacingHistogram::new();
        for _ in 0..90 {
            h.record(20_000_000);
        }
        for i in 0..9u64 {
            h.record(300_000_000 + i * 100_000); // 300.0 .. 300.8 ms: one 1 ms bucket
        }
        h.record(5_000_000_000); // 5 s: overflow
        assert_eq!(h.percentile_ns(90.0), 20_010_000);
        assert_eq!(h.percentile_ns(99.0), 301_000_000); // upper edge of [300, 301) ms
        assert_eq!(h.percentile_ns(100.0), 5_000_000_000);
        // The boundaries of the tiers.
        assert_eq!(SpacingHistogram::index(99_999_999), BUCKETS - 1);
        assert_eq!(SpacingHistogram::index(100_000_000), BUCKETS);
        assert_eq!(
            SpacingHistogram::index(1_999_999_999),
            BUCKETS + COARSE_BUCKETS - 1
        );
        assert_eq!(
            SpacingHistogram::index(2_000_000_000),
            BUCKETS + COARSE_BUCKETS
        );
        assert_eq!(SpacingHistogram::index(u64::MAX), BUCKETS + COARSE_BUCKETS);
    }

    #[test]
    fn percentile_capped_at_exact_max() {
        let mut h = SpacingHistogram::new();
        h.record(3_001);
        assert_eq!(h.percentile_ns(50.0), 3_001);
    }

    /// A 160-sample G.711 packet.
    fn pkt(ssrc: u32, seq: u16, ts: u32, arrival_ns: i64) -> Arrival {
        Arrival {
            ssrc,
            seq,
            ts,
            arrival_ns,
            audio: true,
            payload_len: 160,
        }
    }

    #[test]
    fn stream_stats_spacing_skips_transient_and_gaps() {
        let ms = 1_000_000i64;
        let mut h = SpacingHistogram::new();
        let mut s = StreamStats::new(20 * ms as u64, 200 * ms as u64);
        // 20 packets exactly 20 ms apart; pairs ending before 200 ms are left out.
        for i in 0..20u16 {
            let v = s.on_packet(
                pkt(7, i, u32::from(i) * 160, i64::from(i) * 20 * ms),
                &mut h,
            );
            assert_eq!(v, Verdict::Audio);
        }
        assert_eq!(h.count(), 10); // pairs ending at 200..=380 ms
        assert_eq!(h.max_ns(), 0);
        // Seq 20 lost: the 40 ms gap before seq 21 is not a spacing sample.
        s.on_packet(pkt(7, 21, 21 * 160, 420 * ms), &mut h);
        assert_eq!(h.count(), 10);
        // Seq 22 arrives 3 ms late.
        s.on_packet(pkt(7, 22, 22 * 160, 443 * ms), &mut h);
        assert_eq!(h.count(), 11);
        assert_eq!(h.max_ns(), 3_000_000);
        // A duplicate is not audio again.
        assert_eq!(
            s.on_packet(pkt(7, 22, 22 * 160, 444 * ms), &mut h),
            Verdict::Skip
        );
        let sum = s.summary();
        assert_eq!(sum.packets, 23);
        assert_eq!(sum.expected, 23);
        assert_eq!(sum.lost, 1);
        assert_eq!(sum.duplicates, 1);
        assert!((sum.audio_seconds - 22.0 * 0.02).abs() < 1e-9);
    }

    #[test]
    fn new_ssrc_restarts_sequence_counting() {
        let mut h = SpacingHistogram::new();
        let mut s = StreamStats::new(20_000_000, 0);
        s.on_packet(pkt(1, 100, 0, 0), &mut h);
        s.on_packet(pkt(1, 101, 160, 20_000_000), &mut h);
        s.on_packet(pkt(2, 5000, 9999, 40_000_000), &mut h);
        s.on_packet(pkt(2, 5001, 10159, 60_000_000), &mut h);
        let sum = s.summary();
        assert_eq!((sum.packets, sum.expected, sum.lost), (4, 4, 0));
        assert_eq!(sum.ssrc_changes, 1);
    }
}
