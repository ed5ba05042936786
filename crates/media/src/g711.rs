//! ITU-T G.711 μ-law and A-law, on 16-bit linear samples.
//!
//! G.711 itself is defined on 14-bit (μ-law) and 13-bit (A-law) uniform codes; how a
//! 16-bit sample reaches that grid is a convention. We follow the one of Sun's `g711.c`
//! lineage as telephony stacks (spandsp, the ITU-T G.191 tools for A-law) use it:
//! - μ-law: sign and magnitude, magnitude clipped at 32635, bias 0x84, so the 14-bit
//!   magnitude is truncated toward zero (-1 encodes to 0x7F, the negative zero);
//! - A-law: one's complement for negative samples, then the 13-bit segment search
//!   (a sample and its bitwise complement map to mirror-image codes).
//!
//! Expansion returns the segment midpoints of Sun's `ulaw2linear`/`alaw2linear`, which
//! sox and ffmpeg produce as well. Encoding needs a leading-zero count and a few shifts,
//! no table, so it is as fast as a 64 KiB lookup without its cache footprint.

use crate::Law;

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32635;

/// Compresses a 16-bit linear sample to a μ-law code.
#[inline]
pub fn ulaw_encode(s: i16) -> u8 {
    let x = i32::from(s);
    let (magnitude, mask) = if x < 0 { (-x, 0x7F) } else { (x, 0xFF) };
    // At most 32635 + 132 = 0x7FFF: segments 0..=7 by the highest set bit above bit 7.
    let biased = (magnitude.min(ULAW_CLIP) + ULAW_BIAS) as u32;
    let segment = 24 - (biased | 0xFF).leading_zeros();
    let mantissa = (biased >> (segment + 3)) & 0x0F;
    (((segment << 4) | mantissa) as u8) ^ mask
}

/// Expands a μ-law code to 16-bit linear.
#[inline]
pub fn ulaw_decode(b: u8) -> i16 {
    ULAW_DECODE[usize::from(b)]
}

/// Compresses a 16-bit linear sample to an A-law code.
#[inline]
pub fn alaw_encode(s: i16) -> u8 {
    let x = i32::from(s);
    // 12-bit magnitude (0..=2047 after the shift); the sign selects the even-bit mask.
    let (magnitude, mask) = if x >= 0 {
        ((x >> 4) as u32, 0xD5)
    } else {
        ((!x >> 4) as u32, 0x55)
    };
    let segment = 28 - (magnitude | 0x0F).leading_zeros();
    let mantissa = (magnitude >> segment.saturating_sub(1)) & 0x0F;
    (((segment << 4) | mantissa) as u8) ^ mask
}

/// Expands an A-law code to 16-bit linear.
#[inline]
pub fn alaw_decode(b: u8) -> i16 {
    ALAW_DECODE[usize::from(b)]
}

/// Converts a float sample in [-1.0, 1.0) to 16-bit, rounding and saturating.
#[inline]
pub fn f32_to_i16(x: f32) -> i16 {
    // `as` saturates and maps NaN to 0.
    (x * 32768.0).round() as i16
}

/// Encodes float samples into `out` (which must be at least as long) in `law`.
pub fn encode_f32(law: Law, input: &[f32], out: &mut [u8]) {
    match law {
        Law::Pcmu => {
            for (o, &x) in out.iter_mut().zip(input) {
                *o = ulaw_encode(f32_to_i16(x));
            }
        }
        Law::Pcma => {
            for (o, &x) in out.iter_mut().zip(input) {
                *o = alaw_encode(f32_to_i16(x));
            }
        }
    }
}

const fn ulaw_expand(code: u8) -> i16 {
    let u = !code;
    let t = (((u & 0x0F) as i32) << 3) + ULAW_BIAS;
    let t = t << ((u & 0x70) >> 4);
    (if u & 0x80 != 0 {
        ULAW_BIAS - t
    } else {
        t - ULAW_BIAS
    }) as i16
}

const fn alaw_expand(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let segment = (a & 0x70) >> 4;
    match segment {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= segment - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

const fn expand_table(ulaw: bool) -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = if ulaw {
            ulaw_expand(i as u8)
        } else {
            alaw_expand(i as u8)
        };
        i += 1;
    }
    table
}

static ULAW_DECODE: [i16; 256] = expand_table(true);
static ALAW_DECODE: [i16; 256] = expand_table(false);

#[cfg(test)]
mod tests {
    use super::*;

    /// Sun's `linear2ulaw` with the segment search spelled out, as a second opinion.
    fn ulaw_reference(x: i32) -> u8 {
        const SEG_END: [i32; 8] = [0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF];
        let (v, mask) = if x < 0 {
            (ULAW_BIAS - x, 0x7F)
        } else {
            (x + ULAW_BIAS, 0xFF)
        };
        let v = v.min(ULAW_CLIP + ULAW_BIAS);
        let seg = SEG_END.iter().position(|&e| v <= e).unwrap_or(8) as i32;
        (((seg << 4) | ((v >> (seg + 3)) & 0xF)) as u8) ^ mask
    }

    /// ITU-T G.191 `alaw_compress`, as a second opinion.
    fn alaw_reference(x: i32) -> u8 {
        let mut ix = if x < 0 { !x >> 4 } else { x >> 4 };
        if ix > 15 {
            let mut exp = 1;
            while ix > 16 + 15 {
                ix >>= 1;
                exp += 1;
            }
            ix -= 16;
            ix += exp << 4;
        }
        if x >= 0 {
            ix |= 0x80;
        }
        (ix ^ 0x55) as u8
    }

    #[test]
    fn encoders_match_the_reference_algorithms_for_every_input() {
        for x in i16::MIN..=i16::MAX {
            assert_eq!(ulaw_encode(x), ulaw_reference(i32::from(x)), "μ-law {x}");
            assert_eq!(alaw_encode(x), alaw_reference(i32::from(x)), "A-law {x}");
        }
    }

    #[test]
    fn known_codes() {
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(-1), 0x7F);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
    }

    #[test]
    fn decode_then_encode_is_identity() {
        for code in 0..=255u8 {
            // μ-law 0x7F (negative zero) expands to 0, which re-encodes as 0xFF.
            if code != 0x7F {
                assert_eq!(ulaw_encode(ulaw_decode(code)), code, "μ-law {code:#04x}");
            }
            assert_eq!(alaw_encode(alaw_decode(code)), code, "A-law {code:#04x}");
        }
    }

    #[test]
    fn encoding_is_monotonic() {
        let mut last = (i32::MIN, i32::MIN);
        for x in i16::MIN..=i16::MAX {
            let u = i32::from(ulaw_decode(ulaw_encode(x)));
            let a = i32::from(alaw_decode(alaw_encode(x)));
            assert!(u >= last.0 && a >= last.1, "not monotonic at {x}");
            last = (u, a);
        }
    }

    #[test]
    fn float_conversion_saturates() {
        assert_eq!(f32_to_i16(1.5), i16::MAX);
        assert_eq!(f32_to_i16(-1.5), i16::MIN);
        assert_eq!(f32_to_i16(f32::NAN), 0);
        assert_eq!(f32_to_i16(0.5), 16384);
        let mut out = [0u8; 2];
        encode_f32(Law::Pcma, &[0.0, -1.0], &mut out);
        assert_eq!(out, [0xD5, 0x2A]);
    }
}
