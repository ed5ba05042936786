//! Cost of a live source's processing per 10 ms block, on the producer thread: the feed
//! alone (and its G.711 encoding, which every block pays) against the same feed wrapped in
//! each processing stage and in the whole chain, measured in the same run.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use imss_media::{
    DEFAULT_CEILING_DBFS, DEFAULT_TARGET_LUFS, LiveBlock, LiveFeed, ProcessedFeed, Processing,
};

/// Two sines and a little noise: enough for the limiter and the normaliser to work on.
struct Music {
    n: u64,
    rng: u32,
}

impl LiveFeed for Music {
    fn next_block(&mut self, block: &mut LiveBlock) {
        for x in block.pcm_mut() {
            let t = self.n as f32 / 8000.0;
            self.n += 1;
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 17;
            self.rng ^= self.rng << 5;
            let noise = self.rng as f32 / u32::MAX as f32 - 0.5;
            *x = 0.5 * (std::f32::consts::TAU * 220.0 * t).sin()
                + 0.4 * (std::f32::consts::TAU * 1330.0 * t).sin()
                + 0.05 * noise;
        }
    }
}

fn music() -> Box<dyn LiveFeed> {
    Box::new(Music { n: 0, rng: 1 })
}

fn per_block(c: &mut Criterion) {
    let mut group = c.benchmark_group("live_block_10ms");
    let cases: [(&str, Option<Processing>); 5] = [
        ("feed_only", None),
        (
            "gain_limiter",
            Some(Processing {
                gain_db: 6.0,
                ceiling_dbfs: Some(DEFAULT_CEILING_DBFS),
                ..Processing::default()
            }),
        ),
        (
            "band_pass",
            Some(Processing {
                band_pass: true,
                ..Processing::default()
            }),
        ),
        (
            "normalize_limiter",
            Some(Processing {
                target_lufs: Some(DEFAULT_TARGET_LUFS),
                ceiling_dbfs: Some(DEFAULT_CEILING_DBFS),
                ..Processing::default()
            }),
        ),
        (
            "full_chain",
            Some(Processing {
                gain_db: 3.0,
                target_lufs: Some(DEFAULT_TARGET_LUFS),
                band_pass: true,
                ceiling_dbfs: Some(DEFAULT_CEILING_DBFS),
            }),
        ),
    ];
    for (name, processing) in cases {
        let mut feed: Box<dyn LiveFeed> = match &processing {
            None => music(),
            Some(p) => Box::new(ProcessedFeed::new(music(), p)),
        };
        let mut block = LiveBlock::silence();
        group.bench_function(name, |b| {
            b.iter(|| {
                feed.next_block(&mut block);
                black_box(block.g711(imss_media::Law::Pcmu));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, per_block);
criterion_main!(benches);
