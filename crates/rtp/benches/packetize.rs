//! Packetizer::write of one 20 ms G.711 frame (160 octets) — the per-packet header work.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use imss_rtp::{HEADER_LEN, Packetizer};

fn packetize(c: &mut Criterion) {
    let mut group = c.benchmark_group("packetize");
    group.throughput(Throughput::Elements(1));
    let payload = [0xd5u8; 160];
    let mut buf = [0u8; HEADER_LEN + 160];
    let mut p = Packetizer::new(8);
    group.bench_function("write_160", |b| {
        b.iter(|| black_box(p.write(black_box(&payload), false, &mut buf)))
    });
    let mut p = Packetizer::new(8);
    group.bench_function("write_header_160", |b| {
        b.iter(|| black_box(p.write_header(black_box(160), false, &mut buf)))
    });
    group.finish();
}

criterion_group!(benches, packetize);
criterion_main!(benches);
