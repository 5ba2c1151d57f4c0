//! Philox4x32-10 (Salmon, Moraes, Dror & Shaw, SC'11; the generator of cuRAND, JAX's and
//! TensorFlow's `philox` and PyTorch's CUDA backend): a counter-based generator, so that the
//! random numbers of any row are a pure function of (key, counter) — no state, no order.
//! `shaders/philox.wgsl` is the same function in WGSL; both are checked against Random123's
//! published known-answer vectors.

/// Round multipliers and key increments (Random123's `PHILOX_M4x32_*`, `PHILOX_W32_*`).
const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox4x32 with 10 rounds: four 32-bit outputs for a 128-bit counter and a 64-bit key.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let [mut c0, mut c1, mut c2, mut c3] = counter;
    let [mut k0, mut k1] = key;
    for round in 0..10 {
        if round > 0 {
            k0 = k0.wrapping_add(W0);
            k1 = k1.wrapping_add(W1);
        }
        let p0 = u64::from(M0) * u64::from(c0);
        let p1 = u64::from(M1) * u64::from(c2);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0);
    }
    [c0, c1, c2, c3]
}

/// A uniform in the open interval (0, 1) from the top 23 bits k of `bits`: (k + ½)·2⁻²³,
/// i.e. an odd multiple of 2⁻²⁴ — exactly representable in float32 and float64, so every
/// engine sees the same value. The smallest is 2⁻²⁴, so Box–Muller's radius is at most
/// √(2·24 ln 2) ≈ 5.77 (a normal exceeds that with probability 8·10⁻⁹).
pub fn uniform(bits: u32) -> f64 {
    (f64::from(bits >> 9) + 0.5) * (1.0 / 8_388_608.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random123's tests/kat_vectors for philox4x32 with 10 rounds.
    pub const KNOWN_ANSWERS: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
        ([0, 0, 0, 0], [0, 0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]),
        ([u32::MAX; 4], [u32::MAX; 2], [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]),
        (
            [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
            [0xa4093822, 0x299f31d0],
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
        ),
    ];

    #[test]
    fn random123_known_answers() {
        for (counter, key, expected) in KNOWN_ANSWERS {
            assert_eq!(philox4x32_10(counter, key), expected, "counter {counter:08x?} key {key:08x?}");
        }
    }

    #[test]
    fn uniforms_stay_inside_the_open_interval() {
        assert_eq!(uniform(0), 1.0 / 16_777_216.0);
        assert_eq!(uniform(u32::MAX), 1.0 - 1.0 / 16_777_216.0);
        for bits in [0, 1 << 9, 0x8000_0000, 0xdead_beef, u32::MAX] {
            assert_eq!(uniform(bits) as f32 as f64, uniform(bits), "{bits:#x}: exact in float32");
        }
    }
}
