//! Clips that play while they are still being decoded: a voicemail attachment streamed out
//! of the mail server starts playing with its first second, not after its last byte.
//!
//! A [`GrowingClip`] is written by one [`GrowingClipWriter`] (a decoding thread) and read by
//! any number of pacing threads at once, without locks: its G.711 bytes live in atomic
//! 64-bit words, like a live source's ring, and the count of published samples is the only
//! synchronisation (the writer stores the words, then publishes the count with `Release`;
//! readers load it with `Acquire` and read only below it). Room is allocated one second at a
//! time as audio arrives, in segments that never move once made, up to a bound given at
//! creation.

use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::{Clip, Law, g711};

/// Samples per segment: one second.
const SEGMENT: usize = 8000;
const WORDS_PER_SEGMENT: usize = SEGMENT / 8;

/// One second of both laws, made when the first of its samples is written.
struct Segment {
    ulaw: Box<[AtomicU64]>,
    alaw: Box<[AtomicU64]>,
}

impl Segment {
    fn new() -> Segment {
        let zeros = || (0..WORDS_PER_SEGMENT).map(|_| AtomicU64::new(0)).collect();
        Segment {
            ulaw: zeros(),
            alaw: zeros(),
        }
    }
}

const GROWING: u8 = 0;
const FINISHED: u8 = 1;
const FAILED: u8 = 2;

/// Audio decoded so far, readable while more arrives.
pub struct GrowingClip {
    /// What is decoded (a URI), for messages.
    name: String,
    segments: Box<[OnceLock<Segment>]>,
    /// Samples readers may read.
    available: AtomicUsize,
    state: AtomicU8,
    /// Why the writer gave up: a short cause token and the reason.
    failure: Mutex<Option<(String, String)>>,
}

impl GrowingClip {
    /// An empty clip that may grow to `capacity` samples (at 8 kHz; rounded up to whole
    /// seconds), and its writer. Memory is taken as the audio arrives.
    pub fn new(capacity: usize) -> (Arc<GrowingClip>, GrowingClipWriter) {
        GrowingClip::named("", capacity)
    }

    /// As [`new`](GrowingClip::new), for the audio of `name` (a URI).
    pub fn named(name: &str, capacity: usize) -> (Arc<GrowingClip>, GrowingClipWriter) {
        let segments = capacity.div_ceil(SEGMENT);
        let clip = Arc::new(GrowingClip {
            name: name.to_string(),
            segments: (0..segments).map(|_| OnceLock::new()).collect(),
            available: AtomicUsize::new(0),
            state: AtomicU8::new(GROWING),
            failure: Mutex::new(None),
        });
        let writer = GrowingClipWriter {
            clip: Arc::clone(&clip),
            written: 0,
            pending_u: [0; 8],
            pending_a: [0; 8],
        };
        (clip, writer)
    }

    /// What is decoded, as given to [`named`](GrowingClip::named).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Room, in samples.
    pub fn capacity(&self) -> usize {
        self.segments.len() * SEGMENT
    }

    /// Samples that can be read now.
    pub fn available(&self) -> usize {
        self.available.load(Ordering::Acquire)
    }

    /// True once the writer finished or failed: [`available`](GrowingClip::available) is
    /// the whole length.
    pub fn is_complete(&self) -> bool {
        self.state.load(Ordering::Acquire) != GROWING
    }

    /// Why the writer gave up, if it did (what was written before still plays).
    pub fn failure(&self) -> Option<String> {
        self.failure_with_cause().map(|(_, reason)| reason)
    }

    /// The cause token and reason given to [`GrowingClipWriter::fail_because`] (the token
    /// is `incomplete` for [`GrowingClipWriter::fail`]).
    pub fn failure_with_cause(&self) -> Option<(String, String)> {
        if self.state.load(Ordering::Acquire) != FAILED {
            return None;
        }
        self.failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Copies the samples at `offset` in `law` into `out`, as many as are available;
    /// returns how many. Never locks, allocates or blocks.
    pub fn read(&self, law: Law, offset: usize, out: &mut [u8]) -> usize {
        let available = self.available();
        let n = out.len().min(available.saturating_sub(offset));
        let mut i = 0;
        while i < n {
            let at = offset + i;
            // Below `available`, so the writer made this segment before publishing it.
            let Some(segment) = self.segments[at / SEGMENT].get() else {
                break;
            };
            let words = match law {
                Law::Pcmu => &segment.ulaw,
                Law::Pcma => &segment.alaw,
            };
            let word = words[(at % SEGMENT) / 8]
                .load(Ordering::Relaxed)
                .to_le_bytes();
            let from = at % 8;
            let take = (8 - from).min(n - i);
            out[i..i + take].copy_from_slice(&word[from..from + take]);
            i += take;
        }
        i
    }

    /// The whole clip as an ordinary [`Clip`], once complete and not failed (to keep for
    /// replays).
    pub fn to_clip(&self) -> Option<Clip> {
        if self.state.load(Ordering::Acquire) != FINISHED {
            return None;
        }
        let n = self.available();
        let mut ulaw = vec![0u8; n];
        self.read(Law::Pcmu, 0, &mut ulaw);
        let pcm: Vec<f32> = ulaw
            .iter()
            .map(|&b| f32::from(g711::ulaw_decode(b)) / 32768.0)
            .collect();
        Some(Clip::from_samples_8k(&pcm))
    }
}

impl std::fmt::Debug for GrowingClip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrowingClip")
            .field("name", &self.name)
            .field("available", &self.available())
            .field("capacity", &self.capacity())
            .field("complete", &self.is_complete())
            .finish()
    }
}

/// The one writer of a [`GrowingClip`]. Dropping it without [`finish`] fails the clip.
///
/// [`finish`]: GrowingClipWriter::finish
pub struct GrowingClipWriter {
    clip: Arc<GrowingClip>,
    written: usize,
    pending_u: [u8; 8],
    pending_a: [u8; 8],
}

impl GrowingClipWriter {
    /// The clip written.
    pub fn clip(&self) -> &Arc<GrowingClip> {
        &self.clip
    }

    /// Appends 8 kHz samples (−1.0…1.0); false, with nothing more taken, once the clip is
    /// full.
    pub fn push(&mut self, samples: &[f32]) -> bool {
        let room = self.clip.capacity() - self.written;
        let take = samples.len().min(room);
        for &s in &samples[..take] {
            let v = g711::f32_to_i16(s);
            let slot = self.written % 8;
            self.pending_u[slot] = g711::ulaw_encode(v);
            self.pending_a[slot] = g711::alaw_encode(v);
            self.written += 1;
            if slot == 7 {
                self.store_word();
                self.clip.available.store(self.written, Ordering::Release);
            }
        }
        take == samples.len()
    }

    fn store_word(&mut self) {
        let at = self.written - 1;
        let segment = self.clip.segments[at / SEGMENT].get_or_init(Segment::new);
        let word = (at % SEGMENT) / 8;
        segment.ulaw[word].store(u64::from_le_bytes(self.pending_u), Ordering::Relaxed);
        segment.alaw[word].store(u64::from_le_bytes(self.pending_a), Ordering::Relaxed);
    }

    /// Samples written so far.
    pub fn written(&self) -> usize {
        self.written
    }

    fn publish_rest(&mut self) {
        if !self.written.is_multiple_of(8) {
            self.store_word();
        }
        self.clip.available.store(self.written, Ordering::Release);
    }

    /// Everything is written: readers play to the end and stop there.
    pub fn finish(mut self) {
        self.publish_rest();
        self.clip.state.store(FINISHED, Ordering::Release);
    }

    /// The rest cannot be had (`why`): what was written still plays, then the clip ends.
    pub fn fail(mut self, why: &str) {
        self.set_failed("incomplete", why);
    }

    /// As [`fail`](GrowingClipWriter::fail), with a short token saying why (e.g.
    /// `undecodable`), for the reader to report.
    pub fn fail_because(mut self, cause: &str, why: &str) {
        self.set_failed(cause, why);
    }

    fn set_failed(&mut self, cause: &str, why: &str) {
        if self.clip.is_complete() {
            return;
        }
        self.publish_rest();
        *self
            .clip
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((cause.to_string(), why.to_string()));
        self.clip.state.store(FAILED, Ordering::Release);
    }
}

impl Drop for GrowingClipWriter {
    fn drop(&mut self) {
        if !self.clip.is_complete() {
            self.set_failed("incomplete", "the audio ended before it was complete");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize) -> Vec<f32> {
        (0..n).map(|i| (i % 200) as f32 / 200.0 - 0.5).collect()
    }

    #[test]
    fn readers_see_what_is_published_byte_exact_in_both_laws() {
        let samples = ramp(1003);
        let (clip, mut w) = GrowingClip::new(1003);
        assert_eq!(clip.capacity(), 8000);
        assert!(w.push(&samples[..13]));
        // Published in whole words: 8 of 13.
        assert_eq!(clip.available(), 8);
        assert!(w.push(&samples[13..]));
        assert!(!clip.is_complete());
        w.finish();
        assert!(clip.is_complete());
        assert_eq!(clip.available(), 1003);
        let whole = Clip::from_samples_8k(&samples);
        for law in [Law::Pcmu, Law::Pcma] {
            for (offset, len) in [(0, 160), (5, 160), (1000, 160), (7, 1), (1003, 10)] {
                let mut out = vec![0xAAu8; len];
                let n = clip.read(law, offset, &mut out);
                let want = len.min(1003usize.saturating_sub(offset));
                assert_eq!(n, want, "{offset}+{len}");
                assert_eq!(&out[..n], &whole.bytes(law)[offset..offset + n]);
            }
        }
        let copy = clip.to_clip().expect("finished");
        assert_eq!(copy.content_samples(), 1003);
        assert_eq!(copy.bytes(Law::Pcmu), whole.bytes(Law::Pcmu));
    }

    #[test]
    fn a_full_clip_refuses_more_and_a_dropped_writer_fails_it() {
        let (clip, mut w) = GrowingClip::new(16);
        assert!(!w.push(&ramp(8001)));
        assert_eq!(w.written(), 8000);
        drop(w);
        assert!(clip.is_complete());
        assert_eq!(clip.available(), 8000);
        assert!(
            clip.failure()
                .is_some_and(|f| f.contains("before it was complete"))
        );
        assert!(clip.to_clip().is_none(), "a failed clip is not kept");
    }

    #[test]
    fn a_reader_on_another_thread_never_sees_unwritten_audio() {
        let samples = ramp(80_000);
        let (clip, mut w) = GrowingClip::new(samples.len());
        let reader = {
            let clip = Arc::clone(&clip);
            std::thread::spawn(move || {
                let expected = Clip::from_samples_8k(&ramp(80_000));
                let mut offset = 0;
                let mut out = [0u8; 160];
                while offset < 80_000 {
                    let n = clip.read(Law::Pcmu, offset, &mut out);
                    assert_eq!(&out[..n], &expected.bytes(Law::Pcmu)[offset..offset + n]);
                    offset += n;
                }
            })
        };
        for chunk in samples.chunks(777) {
            w.push(chunk);
        }
        w.finish();
        reader.join().expect("reader");
    }
}
