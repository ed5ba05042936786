//! Resampling throughput: ten seconds of 44.1 kHz mono to 8 kHz per iteration.

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use imss_media::{Pcm, resample_to_8k};

fn resample(c: &mut Criterion) {
    let rate = 44_100;
    let pcm = Pcm {
        rate,
        samples: (0..rate as usize * 10)
            .map(|n| {
                let t = n as f64 / f64::from(rate);
                (0.5 * (std::f64::consts::TAU * 1000.0 * t).sin()) as f32
            })
            .collect(),
    };
    let mut group = c.benchmark_group("resample_10s");
    group.sample_size(10);
    group.throughput(Throughput::Elements(pcm.samples.len() as u64));
    group.bench_function("44k1_to_8k", |b| {
        b.iter(|| resample_to_8k(black_box(&pcm)).map(|v| v.len()))
    });
    group.finish();
}

criterion_group!(benches, resample);
criterion_main!(benches);
