//! GSM 06.10 decoding speed: ten seconds of audio per iteration, as 33-byte frames, as
//! WAV49 blocks, and as a whole WAV49 attachment decoded to a clip (both G.711 laws).
//! Throughput is in samples: divide by 8000 for "times real time".
//!
//! The frames hold random parameters; the decoder does the same work for every frame
//! whatever its values.

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use imss_media::decode_attachment;
use imss_media::gsm610::{
    Decoder, FRAME_BYTES, FRAME_SAMPLES, WAV49_BLOCK_BYTES, WAV49_BLOCK_SAMPLES,
};

const SECONDS: usize = 10;

fn random_bytes(n: usize) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A Microsoft GSM 6.10 WAV file around `data`.
fn wav49(data: &[u8]) -> Vec<u8> {
    let mut fmt = Vec::new();
    for word in [0x31u16, 1] {
        fmt.extend_from_slice(&word.to_le_bytes());
    }
    fmt.extend_from_slice(&8000u32.to_le_bytes());
    fmt.extend_from_slice(&1625u32.to_le_bytes());
    for word in [65u16, 0, 2, 320] {
        fmt.extend_from_slice(&word.to_le_bytes());
    }
    let mut wav = b"RIFF".to_vec();
    wav.extend_from_slice(&((4 + 8 + fmt.len() + 8 + data.len()) as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
    wav.extend_from_slice(&fmt);
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(data);
    wav
}

fn decode(c: &mut Criterion) {
    let samples = SECONDS * 8000;
    let mut frames = random_bytes(samples / FRAME_SAMPLES * FRAME_BYTES);
    for frame in frames.chunks_mut(FRAME_BYTES) {
        frame[0] = 0xD0 | (frame[0] & 0x0F);
    }
    let blocks = random_bytes(samples / WAV49_BLOCK_SAMPLES * WAV49_BLOCK_BYTES);
    let attachment = wav49(&blocks);

    let mut group = c.benchmark_group("gsm_decode_10s");
    group.throughput(Throughput::Elements(samples as u64));
    group.bench_function("frames", |b| {
        let mut out = [0i16; FRAME_SAMPLES];
        b.iter(|| {
            let mut d = Decoder::new();
            for frame in black_box(&frames).chunks_exact(FRAME_BYTES) {
                d.decode_frame(frame.try_into().unwrap(), &mut out).unwrap();
                black_box(&out);
            }
        })
    });
    group.bench_function("wav49_blocks", |b| {
        let mut out = [0i16; WAV49_BLOCK_SAMPLES];
        b.iter(|| {
            let mut d = Decoder::new();
            for block in black_box(&blocks).chunks_exact(WAV49_BLOCK_BYTES) {
                d.decode_wav49_block(block.try_into().unwrap(), &mut out);
                black_box(&out);
            }
        })
    });
    group.bench_function("wav49_attachment_to_clip", |b| {
        b.iter(|| {
            decode_attachment(black_box(&attachment), Some("audio/x-wav"), Some("msg.WAV"))
                .unwrap()
                .samples()
        })
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
