//! G.711 encoding throughput: one second of 8 kHz audio per iteration.

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use imss_media::g711;

fn one_second() -> Vec<i16> {
    (0..8000)
        .map(|n| {
            let t = n as f64 / 8000.0;
            let v = 0.6 * (std::f64::consts::TAU * 440.0 * t).sin()
                + 0.3 * (std::f64::consts::TAU * 1330.0 * t).sin();
            (v * 32767.0) as i16
        })
        .collect()
}

fn encode(c: &mut Criterion) {
    let input = one_second();
    let mut out = vec![0u8; input.len()];
    let mut group = c.benchmark_group("g711_encode_1s");
    group.throughput(Throughput::Elements(input.len() as u64));
    group.bench_function("ulaw", |b| {
        b.iter(|| {
            for (o, &s) in out.iter_mut().zip(black_box(&input)) {
                *o = g711::ulaw_encode(s);
            }
            black_box(&out);
        })
    });
    group.bench_function("alaw", |b| {
        b.iter(|| {
            for (o, &s) in out.iter_mut().zip(black_box(&input)) {
                *o = g711::alaw_encode(s);
            }
            black_box(&out);
        })
    });
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
