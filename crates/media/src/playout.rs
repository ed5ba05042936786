//! The per-stream cursor through a play plan, driven packet by packet by a pacing thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Clip, GrowingClip, Law, LiveListener, LiveRing, duration_of, samples_in};

/// One entry of a play plan.
#[derive(Clone, Debug)]
pub enum PlayItem {
    /// A decoded clip, played from its start.
    Clip(Arc<Clip>),
    /// A live source at its current position; never ends by itself. Counts as one of the
    /// source's listeners while the plan holds it.
    Live(LiveListener),
    /// Audio still being decoded (a voicemail attachment arriving from the mail server):
    /// plays what is there; should playback catch up with the decoding, it waits in
    /// silence; the item ends where the clip ends once it is complete.
    Growing(Arc<GrowingClip>),
    /// Silence of the given length (rounded to whole samples).
    Silence(Duration),
    /// A point in the plan (SSML `<mark>`): takes no time; reaching it is reported by
    /// [`Playout::take_mark`] with this number.
    Mark(u32),
}

/// Marks reached within one packet that are kept until taken; more are dropped.
const PENDING_MARKS: usize = 8;

/// How many times a plan's item list plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repeat {
    /// This many times in total (`Times(1)` plays once, `Times(0)` not at all).
    Times(u32),
    /// Until stopped or `limit` runs out.
    Forever,
}

/// The outcome of [`Playout::fill`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Fill {
    /// `out` holds a packet of audio (padded with silence where the plan ended).
    Audio,
    /// Nothing written, the plan is over.
    Ended,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Item { index: usize, offset: u64 },
    Gap { remaining: u64 },
    Done,
}

/// The cursor a pacing thread drives for one stream. `fill` must not allocate, lock or log.
#[derive(Debug)]
pub struct Playout {
    items: Vec<PlayItem>,
    /// Samples of each item; `u64::MAX` for live items.
    lengths: Vec<u64>,
    repeat: Repeat,
    gap: u64,
    limit: Option<u64>,
    played: u64,
    rounds_done: u32,
    /// Samples the current round has produced, to stop a plan of empty items looping.
    round_samples: u64,
    phase: Phase,
    /// Marks reached and not yet taken (fixed capacity: `fill` must not allocate).
    marks: [u32; PENDING_MARKS],
    marks_len: usize,
    /// The plan ends when `fill` reaches this mark (MRCP `Speak-Length: <mark> Tag`).
    end_mark: Option<u32>,
}

impl Playout {
    /// A plan playing `items` in order, `repeat` times with `gap` of silence between
    /// repetitions (RFC 4240 `repeat`, `delay`); `limit` caps the total time played
    /// (RFC 4240 `duration`), gaps included.
    pub fn new(
        items: Vec<PlayItem>,
        repeat: Repeat,
        gap: Duration,
        limit: Option<Duration>,
    ) -> Playout {
        let lengths = items.iter().map(length_of).collect();
        let phase = if repeat == Repeat::Times(0) {
            Phase::Done
        } else {
            Phase::Item {
                index: 0,
                offset: 0,
            }
        };
        Playout {
            items,
            lengths,
            repeat,
            gap: samples_in(gap),
            limit: limit.map(samples_in),
            played: 0,
            rounds_done: 0,
            round_samples: 0,
            phase,
            marks: [0; PENDING_MARKS],
            marks_len: 0,
            end_mark: None,
        }
    }

    /// A plan of one live source, played forever.
    pub fn live(ring: Arc<LiveRing>) -> Playout {
        Playout::new(
            vec![PlayItem::Live(ring.listen())],
            Repeat::Forever,
            Duration::ZERO,
            None,
        )
    }

    /// Writes `out.len()` G.711 bytes for the packet due at `at`.
    pub fn fill(&mut self, law: Law, at: Instant, out: &mut [u8]) -> Fill {
        if let Some(limit) = self.limit
            && self.played >= limit
        {
            self.phase = Phase::Done;
        }
        if self.phase == Phase::Done {
            return Fill::Ended;
        }
        let budget = match self.limit {
            Some(limit) => out
                .len()
                .min(usize::try_from(limit - self.played).unwrap_or(usize::MAX)),
            None => out.len(),
        };
        let mut written = 0;
        while written < budget {
            let want = budget - written;
            match self.phase {
                Phase::Done => break,
                Phase::Gap { remaining } => {
                    let n = want.min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    out[written..written + n].fill(law.silence());
                    written += n;
                    self.phase = if remaining == n as u64 {
                        Phase::Item {
                            index: 0,
                            offset: 0,
                        }
                    } else {
                        Phase::Gap {
                            remaining: remaining - n as u64,
                        }
                    };
                }
                Phase::Item { index, offset } => {
                    let Some(item) = self.items.get(index) else {
                        self.end_round();
                        continue;
                    };
                    if let PlayItem::Growing(clip) = item {
                        let offset_samples = usize::try_from(offset).unwrap_or(usize::MAX);
                        let dst = &mut out[written..budget];
                        let n = clip.read(law, offset_samples, dst);
                        if n == 0 {
                            if clip.is_complete() {
                                self.phase = Phase::Item {
                                    index: index + 1,
                                    offset: 0,
                                };
                                continue;
                            }
                            // Decoding is behind playback: wait in silence, in place.
                            dst.fill(law.silence());
                            written = budget;
                            break;
                        }
                        written += n;
                        self.round_samples += n as u64;
                        self.phase = Phase::Item {
                            index,
                            offset: offset + n as u64,
                        };
                        continue;
                    }
                    let left = self.lengths[index] - offset;
                    let n = want.min(usize::try_from(left).unwrap_or(usize::MAX));
                    let dst = &mut out[written..written + n];
                    let mut end_here = false;
                    match item {
                        PlayItem::Clip(clip) => {
                            let start = offset as usize;
                            dst.copy_from_slice(&clip.bytes(law)[start..start + n]);
                        }
                        PlayItem::Silence(_) => dst.fill(law.silence()),
                        PlayItem::Mark(mark) => {
                            if self.marks_len < PENDING_MARKS {
                                self.marks[self.marks_len] = *mark;
                                self.marks_len += 1;
                            }
                            end_here = self.end_mark == Some(*mark);
                        }
                        PlayItem::Live(ring) => {
                            // A lost block is silence; `read` has already written it.
                            let _ = ring.read(law, ring.position_at(at) + written as u64, dst);
                        }
                        PlayItem::Growing(_) => {}
                    }
                    written += n;
                    self.round_samples += n as u64;
                    self.phase = if left == n as u64 {
                        Phase::Item {
                            index: index + 1,
                            offset: 0,
                        }
                    } else {
                        Phase::Item {
                            index,
                            offset: offset + n as u64,
                        }
                    };
                    if end_here {
                        self.phase = Phase::Done;
                    }
                }
            }
        }
        if written == 0 && !out.is_empty() {
            self.phase = Phase::Done;
            return Fill::Ended;
        }
        out[written..].fill(law.silence());
        self.played += written as u64;
        Fill::Audio
    }

    /// Moves the cursor `delta` samples within the current item (negative: back), clamped to
    /// the item's start and end (MRCP CONTROL Jump-Size). No effect on a live item, in a gap
    /// or after the end.
    pub fn seek(&mut self, delta: i64) {
        let Phase::Item { index, offset } = self.phase else {
            return;
        };
        let Some(&length) = self.lengths.get(index) else {
            return;
        };
        let length = match &self.items[index] {
            // As far as it has been decoded.
            PlayItem::Growing(clip) => clip.available() as u64,
            _ if length == u64::MAX => return,
            _ => length,
        };
        let target = if delta >= 0 {
            offset.saturating_add(delta.unsigned_abs()).min(length)
        } else {
            offset.saturating_sub(delta.unsigned_abs())
        };
        self.phase = Phase::Item {
            index,
            offset: target,
        };
    }

    /// Plays at most `samples` more from the current point, replacing any earlier limit
    /// (MRCP CONTROL `Speak-Length` in seconds). Gaps count, as for the limit of [`new`].
    ///
    /// [`new`]: Playout::new
    pub fn limit_remaining(&mut self, samples: u64) {
        self.limit = Some(self.played.saturating_add(samples));
    }

    /// Ends the plan when `fill` next reaches mark `mark` (MRCP `Speak-Length: <mark> Tag`);
    /// the mark itself is still reported, and the packet that reaches it is padded with
    /// silence. `None` plays to the end again.
    pub fn end_at_mark(&mut self, mark: Option<u32>) {
        self.end_mark = mark;
    }

    /// Puts `items` in place of the plan's items, except the one playing now (it has begun:
    /// its audio cannot change mid-way), keeping the cursor — e.g. the same plan with its
    /// text rendered in another prosody (MRCP CONTROL `Prosody-*`). `items` must be as long
    /// as the plan; otherwise nothing changes and false is returned. What is replaced is
    /// dropped here, by the caller's thread.
    pub fn replace_upcoming(&mut self, items: Vec<PlayItem>) -> bool {
        if items.len() != self.items.len() {
            return false;
        }
        let playing = match self.phase {
            Phase::Item { index, offset } if offset > 0 => Some(index),
            _ => None,
        };
        for (i, item) in items.into_iter().enumerate() {
            if Some(i) != playing {
                self.lengths[i] = length_of(&item);
                self.items[i] = item;
            }
        }
        true
    }

    /// The oldest mark reached by `fill` and not taken yet.
    pub fn take_mark(&mut self) -> Option<u32> {
        if self.marks_len == 0 {
            return None;
        }
        let first = self.marks[0];
        self.marks.copy_within(1..self.marks_len, 0);
        self.marks_len -= 1;
        Some(first)
    }

    /// Starts the plan again from its first item (MRCP CONTROL Speak-Restart).
    pub fn restart(&mut self) {
        self.played = 0;
        self.rounds_done = 0;
        self.round_samples = 0;
        self.phase = Phase::Item {
            index: 0,
            offset: 0,
        };
    }

    /// Samples of the plan played so far (gaps included, end padding excluded).
    pub fn played_samples(&self) -> u64 {
        self.played
    }

    /// Time of the plan played so far.
    pub fn played(&self) -> Duration {
        duration_of(self.played)
    }

    /// The item the next sample comes from; `None` in a gap or once the plan is over.
    pub fn current_item(&self) -> Option<usize> {
        match self.phase {
            Phase::Item { index, .. } if index < self.items.len() => Some(index),
            _ => None,
        }
    }

    /// True once `fill` has nothing more to play.
    pub fn is_ended(&self) -> bool {
        self.phase == Phase::Done || self.limit.is_some_and(|limit| self.played >= limit)
    }

    fn end_round(&mut self) {
        self.rounds_done = self.rounds_done.saturating_add(1);
        let finished = match self.repeat {
            Repeat::Times(n) => self.rounds_done >= n,
            Repeat::Forever => false,
        };
        // A round that produced nothing would repeat without end inside one `fill`.
        let empty = self.round_samples == 0 && self.gap == 0;
        self.round_samples = 0;
        self.phase = if finished || empty {
            Phase::Done
        } else if self.gap > 0 {
            Phase::Gap {
                remaining: self.gap,
            }
        } else {
            Phase::Item {
                index: 0,
                offset: 0,
            }
        };
    }
}

/// Samples of `item`; `u64::MAX` for live and growing items.
fn length_of(item: &PlayItem) -> u64 {
    match item {
        PlayItem::Clip(clip) => clip.samples() as u64,
        PlayItem::Live(_) | PlayItem::Growing(_) => u64::MAX,
        PlayItem::Silence(d) => samples_in(*d),
        PlayItem::Mark(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LiveBlock, g711};

    /// A clip of `n` samples whose sample `i` is distinct for i < 200 or so.
    fn ramp(n: usize, base: f32) -> Arc<Clip> {
        let s: Vec<f32> = (0..n).map(|i| base + i as f32 * 0.001).collect();
        Arc::new(Clip::from_samples_8k(&s))
    }

    #[test]
    fn a_growing_clip_plays_as_it_arrives_waits_in_silence_and_ends_with_it() {
        let samples: Vec<f32> = (0..500).map(|i| 0.1 + (i % 50) as f32 * 0.01).collect();
        let whole = Clip::from_samples_8k(&samples);
        let (clip, mut writer) = GrowingClip::new(500);
        let after = ramp(160, -0.5);
        let mut p = Playout::new(
            vec![
                PlayItem::Growing(Arc::clone(&clip)),
                PlayItem::Clip(after.clone()),
            ],
            Repeat::Times(1),
            Duration::ZERO,
            None,
        );
        let at = Instant::now();
        let mut out = [0u8; 160];
        writer.push(&samples[..200]);
        assert_eq!(p.fill(Law::Pcmu, at, &mut out), Fill::Audio);
        assert_eq!(&out[..], &whole.bytes(Law::Pcmu)[..160]);
        // 40 samples left, then silence in place while the decoder is behind.
        assert_eq!(p.fill(Law::Pcmu, at, &mut out), Fill::Audio);
        assert_eq!(&out[..40], &whole.bytes(Law::Pcmu)[160..200]);
        assert!(out[40..].iter().all(|&b| b == Law::Pcmu.silence()));
        assert_eq!(p.fill(Law::Pcmu, at, &mut out), Fill::Audio);
        assert!(out.iter().all(|&b| b == Law::Pcmu.silence()));
        // A jump back stays within what has arrived.
        p.seek(-100);
        assert_eq!(p.fill(Law::Pcmu, at, &mut out), Fill::Audio);
        assert_eq!(&out[..100], &whole.bytes(Law::Pcmu)[100..200]);
        writer.push(&samples[200..]);
        writer.finish();
        let (rest, _) = drain(&mut p, Law::Pcmu, 160);
        assert_eq!(&rest[..60], &whole.bytes(Law::Pcmu)[200..260]);
        let tail = &rest[..300 + 160];
        assert_eq!(&tail[..300], &whole.bytes(Law::Pcmu)[200..500]);
        assert_eq!(&tail[300..], &after.bytes(Law::Pcmu)[..160]);
    }

    /// Everything the playout produces, packet by packet, until Ended.
    fn drain(p: &mut Playout, law: Law, packet: usize) -> (Vec<u8>, usize) {
        let at = Instant::now();
        let mut all = Vec::new();
        let mut packets = 0;
        let mut out = vec![0u8; packet];
        while p.fill(law, at, &mut out) == Fill::Audio {
            all.extend_from_slice(&out);
            packets += 1;
            assert!(packets < 100_000, "never ends");
        }
        assert_eq!(p.fill(law, at, &mut out), Fill::Ended, "Ended is final");
        assert!(p.is_ended());
        (all, packets)
    }

    fn silence(law: Law, n: usize) -> Vec<u8> {
        vec![law.silence(); n]
    }

    #[test]
    fn marks_are_reported_in_the_packet_that_reaches_them() {
        let a = ramp(240, 0.0);
        let mut p = Playout::new(
            vec![
                PlayItem::Mark(7),
                PlayItem::Clip(a.clone()),
                PlayItem::Mark(8),
                PlayItem::Mark(9),
                PlayItem::Clip(a),
            ],
            Repeat::Times(1),
            Duration::ZERO,
            None,
        );
        let at = Instant::now();
        let mut out = vec![0u8; 160];
        assert_eq!(p.fill(Law::Pcmu, at, &mut out), Fill::Audio);
        assert_eq!(p.take_mark(), Some(7));
        assert_eq!(p.take_mark(), None, "marks 8 and 9 come at sample 240");
        assert_eq!(p.fill(Law::Pcmu, at, &mut out), Fill::Audio);
        assert_eq!(
            (p.take_mark(), p.take_mark(), p.take_mark()),
            (Some(8), Some(9), None)
        );
        assert_eq!(p.played_samples(), 320, "marks take no time");
    }

    #[test]
    fn limit_remaining_counts_from_the_current_point_and_replaces_the_old_limit() {
        let a = ramp(8000, 0.0);
        let law = Law::Pcmu;
        let at = Instant::now();
        let mut out = vec![0u8; 160];
        // A 100 ms limit from the start, replaced after 40 ms by "60 ms more": 100 ms in all.
        let mut p = Playout::new(
            vec![PlayItem::Clip(Arc::clone(&a))],
            Repeat::Times(1),
            Duration::ZERO,
            Some(Duration::from_millis(100)),
        );
        for _ in 0..2 {
            assert_eq!(p.fill(law, at, &mut out), Fill::Audio);
        }
        p.limit_remaining(480);
        let (all, packets) = drain(&mut p, law, 160);
        assert_eq!(packets, 3);
        assert_eq!(all, a.bytes(law)[320..800]);
        assert_eq!(p.played_samples(), 800);

        // Lengthening works too: an unlimited live-like plan gets a limit mid-way, and a
        // limit of nothing more ends it at the next packet.
        let mut p = Playout::new(
            vec![PlayItem::Silence(Duration::from_secs(3600))],
            Repeat::Forever,
            Duration::ZERO,
            Some(Duration::from_millis(20)),
        );
        p.limit_remaining(1600);
        assert_eq!(drain(&mut p, law, 160).1, 10);
        let mut p = Playout::new(
            vec![PlayItem::Clip(Arc::clone(&a))],
            Repeat::Times(1),
            Duration::ZERO,
            None,
        );
        assert_eq!(p.fill(law, at, &mut out), Fill::Audio);
        p.limit_remaining(0);
        assert_eq!(p.fill(law, at, &mut out), Fill::Ended);
        assert_eq!(p.played_samples(), 160);
    }

    #[test]
    fn end_at_mark_stops_in_the_packet_that_reaches_it() {
        let a = ramp(240, 0.0);
        let b = ramp(800, 0.5);
        let law = Law::Pcmu;
        let plan = || {
            Playout::new(
                vec![
                    PlayItem::Clip(Arc::clone(&a)),
                    PlayItem::Mark(3),
                    PlayItem::Clip(Arc::clone(&b)),
                    PlayItem::Mark(4),
                ],
                Repeat::Times(1),
                Duration::ZERO,
                None,
            )
        };
        let at = Instant::now();
        let mut out = vec![0u8; 160];
        let mut p = plan();
        p.end_at_mark(Some(3));
        assert_eq!(p.fill(law, at, &mut out), Fill::Audio);
        assert_eq!(p.take_mark(), None);
        // Sample 240 is the mark: the packet carries 80 samples of `a`, then silence.
        assert_eq!(p.fill(law, at, &mut out), Fill::Audio);
        assert_eq!(out[..80], a.bytes(law)[160..240]);
        assert!(out[80..].iter().all(|&x| x == law.silence()));
        assert_eq!((p.take_mark(), p.take_mark()), (Some(3), None));
        assert!(p.is_ended());
        assert_eq!(p.fill(law, at, &mut out), Fill::Ended);
        assert_eq!(p.played_samples(), 240);

        // A mark already behind the cursor, or absent, does not end the plan early.
        let mut p = plan();
        for _ in 0..2 {
            assert_eq!(p.fill(law, at, &mut out), Fill::Audio);
        }
        p.end_at_mark(Some(3));
        let (_, packets) = drain(&mut p, law, 160);
        assert_eq!(packets, 5, "plays to the end: 1040 samples in 7 packets");
        let mut p = plan();
        p.end_at_mark(Some(99));
        assert_eq!(drain(&mut p, law, 160).1, 7);
        // Ending at a mark that falls on a packet boundary: no padded packet follows.
        let mut p = Playout::new(
            vec![
                PlayItem::Clip(ramp(160, 0.1)),
                PlayItem::Mark(1),
                PlayItem::Clip(a),
            ],
            Repeat::Times(1),
            Duration::ZERO,
            None,
        );
        p.end_at_mark(Some(1));
        assert_eq!(p.fill(law, at, &mut out), Fill::Audio);
        assert_eq!(p.fill(law, at, &mut out), Fill::Ended);
        assert_eq!(p.take_mark(), Some(1), "the mark is still reported");
    }

    #[test]
    fn replace_upcoming_keeps_the_item_playing_and_the_cursor() {
        let (a, b, c) = (ramp(240, 0.0), ramp(320, 0.3), ramp(400, -0.3));
        let (b2, c2) = (ramp(160, 0.6), ramp(480, -0.6));
        let law = Law::Pcmu;
        let at = Instant::now();
        let mut out = vec![0u8; 160];
        let mut p = Playout::new(
            vec![
                PlayItem::Clip(Arc::clone(&a)),
                PlayItem::Clip(Arc::clone(&b)),
                PlayItem::Clip(Arc::clone(&c)),
            ],
            Repeat::Times(1),
            Duration::ZERO,
            None,
        );
        assert_eq!(p.fill(law, at, &mut out), Fill::Audio);
        // `a` is half played: it stays; `b` and `c` are replaced.
        let new = |x: &Arc<Clip>, y: &Arc<Clip>, z: &Arc<Clip>| {
            vec![
                PlayItem::Clip(Arc::clone(x)),
                PlayItem::Clip(Arc::clone(y)),
                PlayItem::Clip(Arc::clone(z)),
            ]
        };
        assert!(p.replace_upcoming(new(&c2, &b2, &c2)));
        assert!(
            !p.replace_upcoming(vec![]),
            "another plan's shape is refused"
        );
        let (rest, _) = drain(&mut p, law, 160);
        let expected = [&a.bytes(law)[160..], b2.bytes(law), c2.bytes(law)].concat();
        assert_eq!(&rest[..expected.len()], &expected[..]);
        assert_eq!(p.played_samples(), 160 + 80 + 160 + 480);

        // At an item's very start nothing of it has played: it is replaced too.
        let mut p = Playout::new(
            vec![
                PlayItem::Clip(Arc::clone(&b)),
                PlayItem::Clip(Arc::clone(&c)),
            ],
            Repeat::Times(1),
            Duration::ZERO,
            None,
        );
        for _ in 0..2 {
            assert_eq!(p.fill(law, at, &mut out), Fill::Audio);
        }
        assert_eq!(p.current_item(), Some(1));
        assert!(p.replace_upcoming(vec![
            PlayItem::Clip(Arc::clone(&a)),
            PlayItem::Clip(Arc::clone(&b2)),
        ]));
        let (rest, _) = drain(&mut p, law, 160);
        assert_eq!(rest, b2.bytes(law));
    }

    #[test]
    fn seek_moves_within_the_current_item_and_restart_starts_over() {
        let a = ramp(1600, 0.0);
        let b = ramp(800, 0.5);
        let mut p = Playout::new(
            vec![PlayItem::Clip(a.clone()), PlayItem::Clip(b.clone())],
            Repeat::Times(1),
            Duration::ZERO,
            None,
        );
        let at = Instant::now();
        let mut out = vec![0u8; 160];
        assert_eq!(p.fill(Law::Pcmu, at, &mut out), Fill::Audio);
        // Forward 400 samples: the next packet starts at sample 560 of `a`.
        p.seek(400);
        assert_eq!(p.fill(Law::Pcmu, at, &mut out), Fill::Audio);
        assert_eq!(out, a.bytes(Law::Pcmu)[560..720]);
        // Back beyond the start clamps to sample 0.
        p.seek(-10_000);
        assert_eq!(p.fill(Law::Pcmu, at, &mut out), Fill::Audio);
        assert_eq!(out, a.bytes(Law::Pcmu)[0..160]);
        // Forward beyond the end clamps to the end: the next packet is `b`.
        p.seek(1_000_000);
        assert_eq!(p.fill(Law::Pcmu, at, &mut out), Fill::Audio);
        assert_eq!(out, b.bytes(Law::Pcmu)[0..160]);
        p.restart();
        assert_eq!(p.played_samples(), 0);
        assert_eq!(p.fill(Law::Pcmu, at, &mut out), Fill::Audio);
        assert_eq!(out, a.bytes(Law::Pcmu)[0..160]);
    }

    #[test]
    fn items_play_in_order_across_packet_boundaries() {
        let a = ramp(160, 0.1);
        let b = ramp(240, -0.3);
        for law in [Law::Pcmu, Law::Pcma] {
            let mut expected = a.bytes(law).to_vec();
            expected.extend_from_slice(&silence(law, 96)); // 12 ms
            expected.extend_from_slice(b.bytes(law));
            for packet in [80, 100, 160, 240, 333, 480] {
                let mut p = Playout::new(
                    vec![
                        PlayItem::Clip(Arc::clone(&a)),
                        PlayItem::Silence(Duration::from_millis(12)),
                        PlayItem::Clip(Arc::clone(&b)),
                    ],
                    Repeat::Times(1),
                    Duration::ZERO,
                    None,
                );
                let (all, packets) = drain(&mut p, law, packet);
                assert_eq!(packets, expected.len().div_ceil(packet), "{packet}");
                assert_eq!(&all[..expected.len()], &expected[..], "{law:?} {packet}");
                assert!(all[expected.len()..].iter().all(|&x| x == law.silence()));
                assert_eq!(p.played_samples(), expected.len() as u64);
            }
        }
    }

    #[test]
    fn repeat_plays_the_list_n_times_with_gaps_between() {
        let a = ramp(80, 0.2);
        let b = ramp(160, -0.2);
        let law = Law::Pcmu;
        let round = [a.bytes(law), b.bytes(law)].concat();
        let gap = silence(law, 200); // 25 ms
        let expected = [&round[..], &gap, &round, &gap, &round].concat();
        assert_eq!(expected.len(), 3 * 240 + 2 * 200);
        for packet in [80, 160, 170] {
            let mut p = Playout::new(
                vec![
                    PlayItem::Clip(Arc::clone(&a)),
                    PlayItem::Clip(Arc::clone(&b)),
                ],
                Repeat::Times(3),
                Duration::from_millis(25),
                None,
            );
            let (all, _) = drain(&mut p, law, packet);
            assert_eq!(&all[..expected.len()], &expected[..], "{packet}");
            assert_eq!(all.len(), expected.len().div_ceil(packet) * packet);
            assert_eq!(p.played(), Duration::from_millis(140));
        }
    }

    #[test]
    fn limit_cuts_the_plan_and_pads_the_last_packet() {
        let a = ramp(800, 0.1);
        let law = Law::Pcma;
        let mut p = Playout::new(
            vec![PlayItem::Clip(Arc::clone(&a))],
            Repeat::Forever,
            Duration::from_millis(10),
            Some(Duration::from_millis(250)),
        );
        let (all, packets) = drain(&mut p, law, 160);
        // 2000 samples: 800 clip, 80 gap, 800 clip, 80 gap, 240 clip; 13 packets of 160.
        assert_eq!(packets, 13);
        assert_eq!(p.played_samples(), 2000);
        let mut expected = [
            a.bytes(law),
            &silence(law, 80),
            a.bytes(law),
            &silence(law, 80),
        ]
        .concat();
        expected.extend_from_slice(&a.bytes(law)[..240]);
        assert_eq!(&all[..2000], &expected[..]);
        assert!(all[2000..].iter().all(|&x| x == law.silence()));

        // A limit shorter than the plan of a single clip.
        let mut p = Playout::new(
            vec![PlayItem::Clip(Arc::clone(&a))],
            Repeat::Times(1),
            Duration::ZERO,
            Some(Duration::from_millis(20)),
        );
        let (all, packets) = drain(&mut p, law, 100);
        assert_eq!(packets, 2);
        assert_eq!(&all[..160], &a.bytes(law)[..160]);
        assert!(all[160..].iter().all(|&x| x == law.silence()));

        // A limit at a packet boundary ends without a padded packet.
        let mut p = Playout::new(
            vec![PlayItem::Silence(Duration::from_secs(1))],
            Repeat::Forever,
            Duration::ZERO,
            Some(Duration::from_millis(60)),
        );
        assert_eq!(drain(&mut p, law, 160).1, 3);
    }

    #[test]
    fn degenerate_plans_end_at_once() {
        let law = Law::Pcmu;
        let mut out = [0u8; 160];
        let at = Instant::now();
        let clip = ramp(80, 0.1);
        let plans = [
            Playout::new(
                vec![PlayItem::Clip(clip)],
                Repeat::Times(0),
                Duration::ZERO,
                None,
            ),
            Playout::new(vec![], Repeat::Times(3), Duration::ZERO, None),
            Playout::new(vec![], Repeat::Forever, Duration::ZERO, None),
            Playout::new(
                vec![
                    PlayItem::Clip(Arc::new(Clip::from_samples_8k(&[]))),
                    PlayItem::Silence(Duration::ZERO),
                ],
                Repeat::Forever,
                Duration::ZERO,
                None,
            ),
            Playout::new(
                vec![PlayItem::Silence(Duration::from_secs(1))],
                Repeat::Forever,
                Duration::ZERO,
                Some(Duration::ZERO),
            ),
        ];
        for (i, mut p) in plans.into_iter().enumerate() {
            assert_eq!(p.fill(law, at, &mut out), Fill::Ended, "plan {i}");
        }
        // An empty list repeated forever with a gap is silence forever.
        let mut p = Playout::new(vec![], Repeat::Forever, Duration::from_millis(5), None);
        for _ in 0..10 {
            assert_eq!(p.fill(law, at, &mut out), Fill::Audio);
            assert!(out.iter().all(|&b| b == 0xFF));
        }
    }

    fn marked_ring(blocks: u64) -> Arc<LiveRing> {
        let ring = LiveRing::new("live");
        for b in 0..blocks {
            let mut block = LiveBlock::silence();
            let pcm: [f32; 80] =
                std::array::from_fn(|i| ((b * 80 + i as u64) % 200) as f32 / 256.0 - 0.4);
            block.set_pcm(&pcm);
            ring.write(b, &mut block);
        }
        Arc::new(ring)
    }

    #[test]
    fn live_items_read_the_ring_at_the_packet_time() {
        let ring = marked_ring(100);
        let law = Law::Pcma;
        let at = ring.epoch() + Duration::from_micros(31_250); // sample 250
        let mut p = Playout::live(Arc::clone(&ring));
        let mut out = [0u8; 240];
        assert_eq!(p.fill(law, at, &mut out), Fill::Audio);
        let mut want = [0u8; 240];
        assert!(ring.read(law, 250, &mut want));
        assert_eq!(out, want);
        // Two listeners at the same instant hear the same samples whatever their ptime.
        let mut other = Playout::live(Arc::clone(&ring));
        let mut short = [0u8; 80];
        assert_eq!(other.fill(law, at, &mut short), Fill::Audio);
        assert_eq!(short[..], want[..80]);

        // A clip first (100 samples, padded to 160): the live part of the packet
        // continues at the packet's position plus its offset in the packet.
        let clip = ramp(100, 0.3);
        let mut p = Playout::new(
            vec![
                PlayItem::Clip(Arc::clone(&clip)),
                PlayItem::Live(ring.listen()),
            ],
            Repeat::Times(1),
            Duration::ZERO,
            Some(Duration::from_millis(50)),
        );
        let mut out = [0u8; 240];
        assert_eq!(p.fill(law, at, &mut out), Fill::Audio);
        assert_eq!(out[..160], clip.bytes(law)[..]);
        assert!(out[100..160].iter().all(|&b| b == law.silence()));
        let mut live = [0u8; 80];
        assert!(ring.read(law, 410, &mut live));
        assert_eq!(out[160..], live[..]);
        assert_eq!(p.current_item(), Some(1));
        // Live never ends on its own; the 50 ms limit ends it after 400 samples.
        let later = at + Duration::from_millis(30);
        assert_eq!(p.fill(law, later, &mut out), Fill::Audio);
        let mut live = [0u8; 160];
        assert!(ring.read(law, 490, &mut live));
        assert_eq!(out[..160], live[..]);
        assert!(out[160..].iter().all(|&b| b == law.silence()));
        assert_eq!(p.played_samples(), 400);
        assert_eq!(p.fill(law, later, &mut out), Fill::Ended);
    }

    #[test]
    fn live_without_audio_is_silence_not_the_end() {
        let ring = marked_ring(2);
        let mut p = Playout::live(Arc::clone(&ring));
        let mut out = [0u8; 160];
        let at = ring.epoch() + Duration::from_secs(1);
        for _ in 0..5 {
            assert_eq!(p.fill(Law::Pcmu, at, &mut out), Fill::Audio);
            assert!(out.iter().all(|&b| b == 0xFF));
        }
        assert!(!p.is_ended());
    }

    #[test]
    fn encoded_clip_bytes_are_what_playout_sends() {
        // The byte stream is the G.711 of the clip's samples, sample for sample.
        let clip = Arc::new(Clip::from_samples_8k(&[0.5, -0.25, 0.0]));
        let mut p = Playout::new(
            vec![PlayItem::Clip(clip)],
            Repeat::Times(1),
            Duration::ZERO,
            None,
        );
        let mut out = [0u8; 80];
        assert_eq!(p.fill(Law::Pcmu, Instant::now(), &mut out), Fill::Audio);
        assert_eq!(
            out[..3],
            [g711::ulaw_encode(16384), g711::ulaw_encode(-8192), 0xFF]
        );
        assert_eq!(p.fill(Law::Pcmu, Instant::now(), &mut out), Fill::Ended);
    }
}
