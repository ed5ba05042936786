//! GSM 06.10 full-rate speech decoding (ETSI EN 300 961, RPE-LTP at 13 kbit/s): the codec
//! voicemail systems put in `.gsm` files and in "WAV49" `.WAV` attachments (Asterisk's
//! default voicemail format).
//!
//! Hand-written because no maintained Rust decoder exists: neither symphonia nor any other
//! pure-Rust crate decodes GSM 06.10, and the one binding (`gsm-sys`, 0.0.2, no licence
//! stated) compiles libgsm's C sources, which this crate's build does without. The decoder
//! is small (the fixed-point steps of the ETSI reference, section 4.3) and follows the
//! reference's 16-bit saturating arithmetic operation for operation, so its output is
//! bit-exact with libgsm's (and hence with sox's and ffmpeg's `libgsm` decoders), which
//! the integration tests check on whole files.
//!
//! Two packings of the same 260-bit frame are read:
//! - [`Decoder::decode_frame`]: the 33-byte frame of libgsm and RTP (RFC 3551): a 0xD
//!   signature nibble, then the parameters most significant bit first;
//! - [`Decoder::decode_wav49_block`]: Microsoft's GSM 6.10 in WAV (format tag 0x0031): two
//!   frames in 65 bytes, one continuous bit stream least significant bit first.

/// Samples (8 kHz) in one GSM frame: 20 ms.
pub const FRAME_SAMPLES: usize = 160;
/// Bytes in one frame as libgsm, `.gsm` files and RTP carry it.
pub const FRAME_BYTES: usize = 33;
/// Bytes in one Microsoft GSM 6.10 (WAV49) block: two frames.
pub const WAV49_BLOCK_BYTES: usize = 65;
/// Samples in one WAV49 block: 40 ms.
pub const WAV49_BLOCK_SAMPLES: usize = 2 * FRAME_SAMPLES;
/// The high nibble of the first byte of every 33-byte frame.
pub const FRAME_SIGNATURE: u8 = 0xD;

/// A 33-byte frame whose first nibble is not [`FRAME_SIGNATURE`]: not GSM 06.10 data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("GSM frame does not start with the 0xD signature nibble (first byte {0:#04x})")]
pub struct BadSignature(pub u8);

/// Decoder state carried from frame to frame; frames must be fed in order.
#[derive(Clone, Debug)]
pub struct Decoder {
    /// Reconstructed short-term residual: `[0..120]` the past 120 samples (the long-term
    /// predictor's history), `[120..160]` the current sub-frame.
    drp: [i16; 160],
    /// Decoded log-area ratios of this frame and the previous one, alternately.
    larpp: [[i16; 8]; 2],
    /// Which `larpp` row the next frame writes.
    j: usize,
    /// The last valid long-term lag, used when a frame carries one out of range.
    nrp: i16,
    /// Short-term synthesis lattice state.
    v: [i16; 9],
    /// De-emphasis filter state.
    msr: i16,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

/// One frame's parameters (section 1.7 of the specification).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Frame {
    larc: [i16; 8],
    nc: [i16; 4],
    bc: [i16; 4],
    mc: [i16; 4],
    xmaxc: [i16; 4],
    xmc: [i16; 52],
}

/// Bits per log-area ratio, in transmission order.
const LAR_BITS: [u32; 8] = [6, 6, 5, 5, 4, 4, 3, 3];

impl Default for Frame {
    fn default() -> Frame {
        Frame {
            larc: [0; 8],
            nc: [0; 4],
            bc: [0; 4],
            mc: [0; 4],
            xmaxc: [0; 4],
            xmc: [0; 52],
        }
    }
}

impl Frame {
    /// Reads the 260 parameter bits in transmission order.
    fn read(mut bits: impl FnMut(u32) -> i16) -> Frame {
        let mut f = Frame::default();
        for (lar, n) in f.larc.iter_mut().zip(LAR_BITS) {
            *lar = bits(n);
        }
        for sub in 0..4 {
            f.nc[sub] = bits(7);
            f.bc[sub] = bits(2);
            f.mc[sub] = bits(2);
            f.xmaxc[sub] = bits(6);
            for x in &mut f.xmc[sub * 13..sub * 13 + 13] {
                *x = bits(3);
            }
        }
        f
    }
}

impl Decoder {
    /// A decoder at the start of a stream (all state zero).
    pub fn new() -> Decoder {
        Decoder {
            drp: [0; 160],
            larpp: [[0; 8]; 2],
            j: 0,
            nrp: 40,
            v: [0; 9],
            msr: 0,
        }
    }

    /// Decodes one 33-byte frame into 160 samples.
    pub fn decode_frame(
        &mut self,
        frame: &[u8; FRAME_BYTES],
        out: &mut [i16; FRAME_SAMPLES],
    ) -> Result<(), BadSignature> {
        if frame[0] >> 4 != FRAME_SIGNATURE {
            return Err(BadSignature(frame[0]));
        }
        // Most significant bit first, after the 4-bit signature.
        let mut pos = 4usize;
        let params = Frame::read(|n| {
            let byte = pos / 8;
            let window =
                u16::from_be_bytes([frame[byte], frame.get(byte + 1).copied().unwrap_or(0)]);
            let shift = 16 - (pos % 8) as u32 - n;
            pos += n as usize;
            ((window >> shift) & ((1 << n) - 1)) as i16
        });
        self.synthesise(&params, out);
        Ok(())
    }

    /// Decodes one 65-byte Microsoft GSM 6.10 block (two frames) into 320 samples.
    pub fn decode_wav49_block(
        &mut self,
        block: &[u8; WAV49_BLOCK_BYTES],
        out: &mut [i16; WAV49_BLOCK_SAMPLES],
    ) {
        // One least-significant-bit-first stream: the first frame is bits 0..260, the
        // second 260..520 (so it starts in the middle of byte 32).
        let mut pos = 0usize;
        let mut bits = |n: u32| {
            let byte = pos / 8;
            let window =
                u16::from_le_bytes([block[byte], block.get(byte + 1).copied().unwrap_or(0)]);
            let shift = (pos % 8) as u32;
            pos += n as usize;
            ((window >> shift) & ((1 << n) - 1)) as i16
        };
        let first = Frame::read(&mut bits);
        let second = Frame::read(&mut bits);
        let (a, b) = out.split_at_mut(FRAME_SAMPLES);
        self.synthesise(&first, a.try_into().expect("160 samples"));
        self.synthesise(&second, b.try_into().expect("160 samples"));
    }

    /// Section 4.3: RPE decoding and long-term synthesis per sub-frame, then short-term
    /// synthesis and post-processing over the frame.
    fn synthesise(&mut self, f: &Frame, out: &mut [i16; FRAME_SAMPLES]) {
        let mut wt = [0i16; FRAME_SAMPLES];
        for sub in 0..4 {
            let xmc: &[i16; 13] = f.xmc[sub * 13..sub * 13 + 13]
                .try_into()
                .expect("13 RPE pulses");
            let erp = rpe_decoding(f.xmaxc[sub], f.mc[sub], xmc);
            self.long_term_synthesis(f.nc[sub], f.bc[sub], &erp);
            wt[sub * 40..sub * 40 + 40].copy_from_slice(&self.drp[120..160]);
        }
        self.short_term_synthesis(&f.larc, &wt, out);
        self.postprocess(out);
    }

    /// 4.3.2: the long-term synthesis filter, then the shift of the residual history.
    fn long_term_synthesis(&mut self, ncr: i16, bcr: i16, erp: &[i16; 40]) {
        let nr = if (40..=120).contains(&ncr) {
            ncr
        } else {
            self.nrp
        };
        self.nrp = nr;
        let brp = QLB[bcr as usize & 3];
        let lag = nr as usize;
        for (k, &e) in erp.iter().enumerate() {
            // 120 + k - lag < 120: always the history, never this sub-frame.
            let drpp = mult_r(brp, self.drp[120 + k - lag]);
            self.drp[120 + k] = add(e, drpp);
        }
        self.drp.copy_within(40..160, 0);
    }

    /// 4.2.8–4.2.10 and 4.3.4: LAR decoding, interpolation with the previous frame's LARs
    /// over the four segments (13, 14, 13 and 120 samples), and the lattice filter.
    fn short_term_synthesis(
        &mut self,
        larc: &[i16; 8],
        wt: &[i16; FRAME_SAMPLES],
        out: &mut [i16; FRAME_SAMPLES],
    ) {
        let cur = self.j;
        let prev = cur ^ 1;
        self.j = prev;
        for i in 0..8 {
            let t = add(larc[i], MIC[i]) << 10;
            let t = sub(t, B_TIMES_TWO[i]);
            let t = mult_r(INVA[i], t);
            self.larpp[cur][i] = add(t, t);
        }
        let (old, new) = (self.larpp[prev], self.larpp[cur]);
        let mut larp = [0i16; 8];

        for i in 0..8 {
            larp[i] = add(add(old[i] >> 2, new[i] >> 2), old[i] >> 1);
        }
        self.lattice(larp_to_rp(larp), &wt[0..13], &mut out[0..13]);

        for i in 0..8 {
            larp[i] = add(old[i] >> 1, new[i] >> 1);
        }
        self.lattice(larp_to_rp(larp), &wt[13..27], &mut out[13..27]);

        for i in 0..8 {
            larp[i] = add(add(old[i] >> 2, new[i] >> 2), new[i] >> 1);
        }
        self.lattice(larp_to_rp(larp), &wt[27..40], &mut out[27..40]);

        self.lattice(larp_to_rp(new), &wt[40..160], &mut out[40..160]);
    }

    fn lattice(&mut self, rrp: [i16; 8], wt: &[i16], sr: &mut [i16]) {
        let v = &mut self.v;
        for (out, &input) in sr.iter_mut().zip(wt) {
            let mut sri = input;
            for i in (0..8).rev() {
                sri = sub(sri, mult_r(rrp[i], v[i]));
                v[i + 1] = add(v[i], mult_r(rrp[i], sri));
            }
            v[0] = sri;
            *out = sri;
        }
    }

    /// 4.3.5–4.3.7: de-emphasis, truncation to 13 bits and upscaling.
    fn postprocess(&mut self, s: &mut [i16; FRAME_SAMPLES]) {
        let mut msr = self.msr;
        for x in s.iter_mut() {
            msr = add(*x, mult_r(msr, 28180));
            *x = add(msr, msr) & !7;
        }
        self.msr = msr;
    }
}

/// Table 4.1, B times two.
const B_TIMES_TWO: [i16; 8] = [0, 0, 4096, -5120, 188, -3584, -682, -2288];
/// Table 4.1, the smallest value of each coded LAR.
const MIC: [i16; 8] = [-32, -32, -16, -16, -8, -8, -4, -4];
/// Table 4.2: 1/A scaled.
const INVA: [i16; 8] = [13107, 13107, 13107, 13107, 19223, 17476, 31454, 29708];
/// Table 4.3b: the long-term predictor's gain levels.
const QLB: [i16; 4] = [3277, 11469, 21299, 32767];
/// Table 4.6: normalised mantissas of the RPE block maximum.
const FAC: [i16; 8] = [18431, 20479, 22527, 24575, 26623, 28671, 30719, 32767];

/// 4.2.9.2: interpolated LARs to reflection coefficients.
fn larp_to_rp(mut larp: [i16; 8]) -> [i16; 8] {
    for x in &mut larp {
        let magnitude = if *x == i16::MIN { i16::MAX } else { x.abs() };
        let r = if magnitude < 11059 {
            magnitude << 1
        } else if magnitude < 20070 {
            magnitude + 11059
        } else {
            add(magnitude >> 2, 26112)
        };
        *x = if *x < 0 { -r } else { r };
    }
    larp
}

/// 4.2.15–4.2.17: the coded block maximum to exponent and mantissa, APCM inverse
/// quantisation of the 13 pulses, and their placement on the grid `mc`.
fn rpe_decoding(xmaxc: i16, mc: i16, xmc: &[i16; 13]) -> [i16; 40] {
    let mut exp: i16 = if xmaxc > 15 { (xmaxc >> 3) - 1 } else { 0 };
    let mut mant = xmaxc - (exp << 3);
    if mant == 0 {
        exp = -4;
        mant = 7;
    } else {
        while mant <= 7 {
            mant = (mant << 1) | 1;
            exp -= 1;
        }
        mant -= 8;
    }
    let fac = FAC[mant as usize & 7];
    let shift = sub(6, exp);
    let round = asl(1, sub(shift, 1));
    let mut erp = [0i16; 40];
    for (i, &x) in xmc.iter().enumerate() {
        // 3-bit unsigned pulse to a signed 4-bit odd value, scaled to 16 bits.
        let t = ((x << 1) - 7) << 12;
        let t = add(mult_r(fac, t), round);
        erp[mc as usize + 3 * i] = asr(t, shift);
    }
    erp
}

#[inline]
fn add(a: i16, b: i16) -> i16 {
    a.saturating_add(b)
}

#[inline]
fn sub(a: i16, b: i16) -> i16 {
    a.saturating_sub(b)
}

/// Rounded Q15 multiplication; -1 × -1 saturates to the largest value.
#[inline]
fn mult_r(a: i16, b: i16) -> i16 {
    if a == i16::MIN && b == i16::MIN {
        i16::MAX
    } else {
        ((i32::from(a) * i32::from(b) + 16384) >> 15) as i16
    }
}

/// Arithmetic shift left by `n` (right for negative `n`), as the reference defines it.
fn asl(a: i16, n: i16) -> i16 {
    match n {
        16.. => 0,
        -15..0 => asr(a, -n),
        ..=-16 => -i16::from(a < 0),
        _ => (i32::from(a) << n) as i16,
    }
}

/// Arithmetic shift right by `n` (left for negative `n`), as the reference defines it.
fn asr(a: i16, n: i16) -> i16 {
    match n {
        16.. => -i16::from(a < 0),
        -15..0 => (i32::from(a) << -n) as i16,
        ..=-16 => 0,
        _ => a >> n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packs parameters most significant bit first after the signature (the inverse of
    /// `decode_frame`'s reader), as libgsm's `gsm_encode` does.
    fn pack_frame(f: &Frame) -> [u8; FRAME_BYTES] {
        let mut bits = vec![1u8, 1, 0, 1];
        let mut put = |v: i16, n: u32| {
            for b in (0..n).rev() {
                bits.push(((v >> b) & 1) as u8);
            }
        };
        put_all(f, &mut put);
        let mut out = [0u8; FRAME_BYTES];
        for (i, b) in bits.iter().enumerate() {
            out[i / 8] |= b << (7 - i % 8);
        }
        out
    }

    /// Packs two frames least significant bit first, as Microsoft's GSM 6.10 does.
    fn pack_block(a: &Frame, b: &Frame) -> [u8; WAV49_BLOCK_BYTES] {
        let mut bits = Vec::new();
        let mut put = |v: i16, n: u32| {
            for bit in 0..n {
                bits.push(((v >> bit) & 1) as u8);
            }
        };
        put_all(a, &mut put);
        put_all(b, &mut put);
        let mut out = [0u8; WAV49_BLOCK_BYTES];
        for (i, b) in bits.iter().enumerate() {
            out[i / 8] |= b << (i % 8);
        }
        out
    }

    fn put_all(f: &Frame, put: &mut impl FnMut(i16, u32)) {
        for (&v, n) in f.larc.iter().zip(LAR_BITS) {
            put(v, n);
        }
        for sub in 0..4 {
            put(f.nc[sub], 7);
            put(f.bc[sub], 2);
            put(f.mc[sub], 2);
            put(f.xmaxc[sub], 6);
            for &x in &f.xmc[sub * 13..sub * 13 + 13] {
                put(x, 3);
            }
        }
    }

    /// Parameters that use every bit of every field, different per seed.
    fn frame(seed: u32) -> Frame {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let mut next = |n: u32| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state % (1 << n)) as i16
        };
        let mut f = Frame::default();
        for (lar, n) in f.larc.iter_mut().zip(LAR_BITS) {
            *lar = next(n);
        }
        for sub in 0..4 {
            f.nc[sub] = next(7);
            f.bc[sub] = next(2);
            f.mc[sub] = next(2);
            f.xmaxc[sub] = next(6);
            for x in &mut f.xmc[sub * 13..sub * 13 + 13] {
                *x = next(3);
            }
        }
        f
    }

    #[test]
    fn both_packings_carry_the_same_parameters() {
        for seed in 0..200 {
            let (a, b) = (frame(seed), frame(seed + 1000));
            let mut raw = Decoder::new();
            let mut wav = Decoder::new();
            let mut from_raw = [0i16; WAV49_BLOCK_SAMPLES];
            let (first, second) = from_raw.split_at_mut(FRAME_SAMPLES);
            raw.decode_frame(&pack_frame(&a), first.try_into().unwrap())
                .unwrap();
            raw.decode_frame(&pack_frame(&b), second.try_into().unwrap())
                .unwrap();
            let mut from_wav = [0i16; WAV49_BLOCK_SAMPLES];
            wav.decode_wav49_block(&pack_block(&a, &b), &mut from_wav);
            assert_eq!(from_raw, from_wav, "seed {seed}");
        }
    }

    #[test]
    fn unpacking_reads_fields_in_transmission_order() {
        // A frame whose only set bits are Nc of the last sub-frame (value 0x7F).
        let mut f = Frame::default();
        f.nc[3] = 0x7F;
        let packed = pack_frame(&f);
        // 4 + 36 LAR bits + 3 sub-frames of 56 bits: Nc[3] starts at bit 208.
        let set: Vec<usize> = (0..264)
            .filter(|&i| packed[i / 8] >> (7 - i % 8) & 1 == 1)
            .collect();
        assert_eq!(set, [0, 1, 3, 208, 209, 210, 211, 212, 213, 214]);
        let mut pos = 4usize;
        let read = Frame::read(|n| {
            let mut v = 0;
            for _ in 0..n {
                v = (v << 1) | i16::from(packed[pos / 8] >> (7 - pos % 8) & 1);
                pos += 1;
            }
            v
        });
        assert_eq!(read, f);
    }

    #[test]
    fn a_frame_without_the_signature_is_refused() {
        let mut d = Decoder::new();
        let mut out = [0i16; FRAME_SAMPLES];
        let mut frame = [0u8; FRAME_BYTES];
        frame[0] = 0xC3;
        assert_eq!(d.decode_frame(&frame, &mut out), Err(BadSignature(0xC3)));
        frame[0] = 0xD3;
        assert_eq!(d.decode_frame(&frame, &mut out), Ok(()));
    }

    #[test]
    fn reference_arithmetic() {
        assert_eq!(mult_r(i16::MIN, i16::MIN), i16::MAX);
        assert_eq!(mult_r(16384, 16384), 8192);
        assert_eq!(mult_r(-1, 16384), 0);
        assert_eq!(mult_r(-3, 16384), -1);
        assert_eq!(add(32000, 1000), i16::MAX);
        assert_eq!(sub(-32000, 1000), i16::MIN);
        assert_eq!(asl(1, -1), 0);
        assert_eq!(asl(1, 9), 512);
        assert_eq!(asr(-5, 1), -3);
        assert_eq!(asr(-5, 20), -1);
        assert_eq!(asr(5, 20), 0);
        assert_eq!(
            larp_to_rp([i16::MIN, -11058, 11059, 20070, 0, 1, -1, 32767]),
            [-32767, -22116, 22118, 31129, 0, 2, -2, 32767]
        );
    }

    #[test]
    fn out_of_range_lags_reuse_the_last_valid_one() {
        let mut d = Decoder::new();
        let erp = [0i16; 40];
        d.long_term_synthesis(90, 0, &erp);
        assert_eq!(d.nrp, 90);
        d.long_term_synthesis(10, 0, &erp);
        assert_eq!(d.nrp, 90);
        d.long_term_synthesis(127, 0, &erp);
        assert_eq!(d.nrp, 90);
        d.long_term_synthesis(120, 0, &erp);
        assert_eq!(d.nrp, 120);
    }
}
