//! A recording inserted into a live source at a fixed interval ("your call is important to
//! us"), in the producer, so that every listener hears it at the same moment.

use std::sync::Arc;
use std::time::Duration;

use crate::{BLOCK_SAMPLES, LiveBlock, LiveFeed, samples_in};

/// Samples over which the source fades out under the chime's start and back in at its end
/// (5 ms): no click at either edge.
const FADE: usize = 40;

/// Wraps a live feed and, every `every`, plays a chime *instead of* the feed's audio.
///
/// The chime replaces the source rather than being mixed over it: a spoken announcement
/// over music is hard to understand on a narrow-band phone line. The feed keeps running
/// underneath (a live stream cannot wait), and what it produced meanwhile is not heard; a
/// playlist therefore skips the chime's length of its current song. The first chime comes
/// one interval after the source starts; a chime longer than the interval is not cut, and the
/// chimes due while it plays are left out.
pub struct ChimeFeed {
    inner: Box<dyn LiveFeed>,
    chime: Arc<[f32]>,
    /// Blocks from one chime's start to the next.
    period_blocks: u64,
    /// Blocks until the next chime is due.
    until_next: u64,
    /// Position in the chime while one plays.
    playing: Option<usize>,
}

impl ChimeFeed {
    /// Inserts `chime` (8 kHz linear samples, as they should sound) into `inner`'s audio
    /// every `every` (rounded to 10 ms blocks, at least one block).
    pub fn new(inner: Box<dyn LiveFeed>, chime: Arc<[f32]>, every: Duration) -> ChimeFeed {
        let period_blocks = (samples_in(every) / BLOCK_SAMPLES as u64).max(1);
        ChimeFeed {
            inner,
            chime,
            period_blocks,
            until_next: period_blocks,
            playing: None,
        }
    }

    /// The source's weight at position `at` of the chime: 1 outside, fading to 0 over
    /// [`FADE`] samples at either edge.
    fn source_weight(&self, at: usize) -> f32 {
        let from_edge = at.min(self.chime.len() - 1 - at);
        if from_edge >= FADE {
            0.0
        } else {
            1.0 - (from_edge + 1) as f32 / (FADE + 1) as f32
        }
    }
}

impl LiveFeed for ChimeFeed {
    fn set_listened(&mut self, listened: bool) {
        self.inner.set_listened(listened);
    }

    fn next_block(&mut self, block: &mut LiveBlock) {
        self.inner.next_block(block);
        if self.until_next == 0 {
            self.until_next = self.period_blocks;
            if self.playing.is_none() && !self.chime.is_empty() {
                self.playing = Some(0);
            }
        }
        self.until_next -= 1;
        let Some(mut at) = self.playing else {
            return;
        };
        let chime = Arc::clone(&self.chime);
        let pcm = block.pcm_mut();
        for x in pcm.iter_mut() {
            if at == chime.len() {
                break;
            }
            *x = *x * self.source_weight(at) + chime[at];
            at += 1;
        }
        self.playing = (at < chime.len()).then_some(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Music stand-in: a constant level, so what the chime does is plain to see.
    struct Level(f32);

    impl LiveFeed for Level {
        fn next_block(&mut self, block: &mut LiveBlock) {
            block.pcm_mut().fill(self.0);
        }
    }

    fn blocks(feed: &mut ChimeFeed, n: usize) -> Vec<[f32; BLOCK_SAMPLES]> {
        let mut block = LiveBlock::silence();
        (0..n)
            .map(|_| {
                feed.next_block(&mut block);
                *block.pcm()
            })
            .collect()
    }

    #[test]
    fn chime_replaces_the_source_every_period() {
        // A 2-block chime every second (100 blocks) over silence.
        let chime: Arc<[f32]> = vec![0.5; 160].into();
        let mut feed = ChimeFeed::new(Box::new(Level(0.0)), chime, Duration::from_secs(1));
        let out = blocks(&mut feed, 350);
        let chimed: Vec<usize> = out
            .iter()
            .enumerate()
            .filter(|(_, b)| b.iter().any(|&x| x != 0.0))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(chimed, vec![100, 101, 200, 201, 300, 301]);
        assert!(out[100].iter().chain(&out[101]).all(|&x| x == 0.5));
    }

    #[test]
    fn source_fades_out_under_the_chime_and_back() {
        // A 3-block chime that is silent itself, every 50 blocks, over a constant source.
        let chime: Arc<[f32]> = vec![0.0; 240].into();
        let mut feed = ChimeFeed::new(Box::new(Level(0.25)), chime, Duration::from_millis(500));
        let out = blocks(&mut feed, 60);
        assert!(out[..50].iter().flatten().all(|&x| x == 0.25));
        let under: Vec<f32> = out[50..53].iter().flatten().copied().collect();
        // Fading out over the first 40 samples, monotonically, then gone, then back.
        assert!(
            under[..FADE].windows(2).all(|w| w[1] < w[0]),
            "{:?}",
            &under[..FADE]
        );
        assert!(under[0] > 0.24 && under[FADE - 1] < 0.01);
        assert!(under[FADE..240 - FADE].iter().all(|&x| x == 0.0));
        assert!(under[240 - FADE..].windows(2).all(|w| w[1] > w[0]));
        assert!(out[53..].iter().flatten().all(|&x| x == 0.25));
    }

    #[test]
    fn a_chime_longer_than_its_period_is_not_cut_and_skips_the_next() {
        // 250 blocks of chime every 100 blocks: chimes start at 100 and 400 (200 and 300
        // fall while the first plays).
        let chime: Arc<[f32]> = vec![0.5; 250 * BLOCK_SAMPLES].into();
        let mut feed = ChimeFeed::new(Box::new(Level(0.0)), chime, Duration::from_secs(1));
        let out = blocks(&mut feed, 700);
        let starts: Vec<usize> = (1..out.len())
            .filter(|&i| out[i][0] != 0.0 && out[i - 1][BLOCK_SAMPLES - 1] == 0.0)
            .collect();
        assert_eq!(starts, vec![100, 400]);
        let chimed = out.iter().filter(|b| b[0] != 0.0).count();
        assert_eq!(chimed, 500);
    }

    #[test]
    fn an_empty_chime_changes_nothing() {
        let mut feed = ChimeFeed::new(
            Box::new(Level(0.1)),
            Vec::new().into(),
            Duration::from_millis(10),
        );
        assert!(blocks(&mut feed, 20).iter().flatten().all(|&x| x == 0.1));
    }
}
