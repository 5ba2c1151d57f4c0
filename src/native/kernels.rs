//! The native engine's elementwise loops over feature-major float32 tiles, and the
//! vectorizable float32 math they use (exp, ln, tanh, erf).
//!
//! Every public function here is compiled for several instruction sets (AVX-512, AVX2+FMA,
//! NEON, …) by `multiversion` and picks the best one at run time, so one binary runs on any
//! x86-64 or ARM CPU. Loops run over contiguous rows of one feature; the per-element math is
//! branch-free so that the compiler vectorizes it. Matrix products are not here: they go to
//! the `gemm` crate (see [`super`]).

use multiversion::multiversion;

/// Hidden activation, float32 parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Relu,
    LeakyRelu(f32),
    Tanh,
    Elu,
    Silu,
    Gelu,
}

/// The map from scale input u to log f (the log of the positive factor).
#[derive(Clone, Debug, PartialEq)]
pub enum LogScale {
    /// log f = u.
    Exp,
    /// log f = α·tanh u, one α per transformed feature.
    TanhExp(Vec<f32>),
    /// log f = ln(σ(u + offset) + eps).
    Sigmoid { offset: f32, eps: f32 },
    /// log f = c·tanh(u/c).
    SoftClampExp(f32),
}

/// `h[o][r] = act(h[o][r] + bias[o])` for a feature-major `[bias.len()][rows]` block.
#[multiversion(targets = "simd")]
pub fn bias_activate(h: &mut [f32], rows: usize, bias: &[f32], act: Activation) {
    for (row, &b) in h.chunks_exact_mut(rows).zip(bias) {
        match act {
            Activation::Relu => row.iter_mut().for_each(|v| *v = (*v + b).max(0.0)),
            Activation::LeakyRelu(slope) => row.iter_mut().for_each(|v| {
                let x = *v + b;
                *v = if x >= 0.0 { x } else { slope * x };
            }),
            Activation::Tanh => row.iter_mut().for_each(|v| *v = tanh(*v + b)),
            Activation::Elu => row.iter_mut().for_each(|v| {
                let x = *v + b;
                *v = if x > 0.0 { x } else { exp(x) - 1.0 };
            }),
            Activation::Silu => row.iter_mut().for_each(|v| {
                let x = *v + b;
                *v = x * sigmoid(x);
            }),
            Activation::Gelu => row.iter_mut().for_each(|v| {
                let x = *v + b;
                *v = 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
            }),
        }
    }
}

/// `h[o][r] = out(h[o][r] + bias[o])` with `out` tanh or the identity, for an MLP's last Linear.
#[multiversion(targets = "simd")]
pub fn bias_output(h: &mut [f32], rows: usize, bias: &[f32], output_tanh: bool) {
    for (row, &b) in h.chunks_exact_mut(rows).zip(bias) {
        if output_tanh {
            row.iter_mut().for_each(|v| *v = tanh(*v + b));
        } else {
            row.iter_mut().for_each(|v| *v += b);
        }
    }
}

/// Turns scale inputs `u` (feature-major `[d_tr][rows]`) into log f in place.
#[multiversion(targets = "simd")]
pub fn log_scale(u: &mut [f32], rows: usize, scale: &LogScale) {
    match scale {
        LogScale::Exp => {}
        LogScale::TanhExp(alpha) => {
            for (row, &a) in u.chunks_exact_mut(rows).zip(alpha) {
                row.iter_mut().for_each(|v| *v = a * tanh(*v));
            }
        }
        LogScale::Sigmoid { offset, eps } => u.iter_mut().for_each(|v| *v = ln(sigmoid(*v + offset) + eps)),
        LogScale::SoftClampExp(c) => {
            let inv = 1.0 / c;
            u.iter_mut().for_each(|v| *v = c * tanh(*v * inv));
        }
    }
}

/// One feature of an affine map, in place over `rows` values `v`:
/// `apply_stored` → `v = v·e^{lf} + t`, `logdet += lf`; else the inverse
/// `v = (v − t)·e^{−lf}`, `logdet −= lf`. `lf` and `t` are per row; the log-det is float64.
#[multiversion(targets = "simd")]
pub fn affine_rows(v: &mut [f32], log_f: &[f32], shift: &[f32], logdet: &mut [f64], apply_stored: bool) {
    let it = v.iter_mut().zip(log_f).zip(shift).zip(logdet.iter_mut());
    if apply_stored {
        it.for_each(|(((v, &lf), &t), ld)| {
            *v = *v * exp(lf) + t;
            *ld += f64::from(lf);
        });
    } else {
        it.for_each(|(((v, &lf), &t), ld)| {
            *v = (*v - t) * exp(-lf);
            *ld -= f64::from(lf);
        });
    }
}

/// `q[r] += Σ_i ((v[i][r] − loc_i)·inv_scale_i)²` over a feature-major `[D][rows]` tile, the
/// standardized value in float32, its square and the sum in float64.
#[multiversion(targets = "simd")]
pub fn add_squares(v: &[f32], rows: usize, loc: &[f32], inv_scale: &[f32], q: &mut [f64]) {
    for ((row, &m), &s) in v.chunks_exact(rows).zip(loc).zip(inv_scale) {
        q.iter_mut().zip(row).for_each(|(q, &x)| {
            let r = f64::from((x - m) * s);
            *q += r * r;
        });
    }
}

/// e^x, relative error ≈ 1e-7; NaN propagates, overflow gives +∞, x < −86.6 gives 0.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding it rounds to an integer in the low bits
    let xc = x.clamp(-86.6, 88.72);
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1)
        * r
        + 5e-1;
    let p = p * r * r + r + 1.0;
    // 2^(n−1) from the integer in t's low bits, then ×2: reaches 2^128 without overflow.
    let half_scale = f32::from_bits(t.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(126) << 23);
    let y = p * half_scale * 2.0;
    if x < -86.6 {
        0.0
    } else if x > 88.72 {
        f32::INFINITY
    } else {
        y
    }
}

/// Natural logarithm for x > 0 (normal numbers), relative error ≈ 1e-7; x ≤ 0 or NaN gives NaN
/// or −∞ like `f32::ln`.
#[inline(always)]
pub fn ln(x: f32) -> f32 {
    let bits = x.to_bits();
    let e = ((bits >> 23) & 0xff) as i32 - 126;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000); // mantissa in [0.5, 1)
    let small = m < std::f32::consts::FRAC_1_SQRT_2;
    let e = (e - i32::from(small)) as f32;
    let m = if small { m + m - 1.0 } else { m - 1.0 };
    let z = m * m;
    const C: [f32; 9] = [
        7.037_683_6e-2,
        -1.151_461e-1,
        1.167_699_9e-1,
        -1.242_014_1e-1,
        1.424_932_3e-1,
        -1.666_805_8e-1,
        2.000_071_4e-1,
        -2.499_999_4e-1,
        3.333_333e-1,
    ];
    let mut p = C[0];
    for c in &C[1..] {
        p = p * m + c;
    }
    let y = m * z * p - 2.121_944_4e-4 * e - 0.5 * z;
    let r = m + y + 0.693_359_4 * e;
    if x.is_nan() || x < 0.0 {
        f32::NAN
    } else if x == 0.0 {
        f32::NEG_INFINITY
    } else if x == f32::INFINITY {
        x
    } else {
        r
    }
}

/// tanh x, absolute error ≈ 1e-7.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let a = x.abs();
    let z = x * x;
    let small =
        ((((-5.704_988_7e-3 * z + 2.063_909e-2) * z - 5.373_971_6e-2) * z + 1.333_144_2e-1) * z - 3.333_328e-1) * z * x
            + x;
    let large = (1.0 - 2.0 / (exp(2.0 * a) + 1.0)).copysign(x);
    if a < 0.625 {
        small
    } else {
        large
    }
}

/// The logistic function 1/(1 + e^{−x}).
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// erf x (Abramowitz & Stegun 7.1.26), absolute error < 1e-6 in float32 (measured 6.6e-7).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_7) * t - 0.284_496_74) * t + 0.254_829_6) * t;
    (1.0 - poly * exp(-a * a)).copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Largest error of `f` against the float64 `g` over [lo, hi], relative to max(1, |g|).
    fn worst(f: fn(f32) -> f32, g: fn(f64) -> f64, lo: f64, hi: f64) -> f64 {
        (0..=200_000)
            .map(|k| {
                let x = (lo + (hi - lo) * k as f64 / 200_000.0) as f32;
                let want = g(x as f64);
                (f(x) as f64 - want).abs() / want.abs().max(1.0)
            })
            .fold(0.0, f64::max)
    }

    fn rel_worst(f: fn(f32) -> f32, g: fn(f64) -> f64, lo: f64, hi: f64) -> f64 {
        (0..=200_000)
            .map(|k| {
                let x = (lo + (hi - lo) * k as f64 / 200_000.0) as f32;
                let want = g(x as f64);
                (f(x) as f64 - want).abs() / want.abs()
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn math_matches_float64_within_float32_rounding() {
        assert!(rel_worst(exp, f64::exp, -80.0, 80.0) < 3e-7, "exp");
        assert!(rel_worst(ln, f64::ln, 1e-30, 1e30) < 3e-7, "ln");
        assert!(worst(tanh, f64::tanh, -20.0, 20.0) < 3e-7, "tanh");
        // A&S 7.1.26 is good to 1.5e-7; float32 cancellation in 1 − p·e^{−x²} adds ~5e-7.
        let e = worst(erf, libm::erf, -6.0, 6.0);
        assert!(e < 1e-6, "erf {e}");
        assert!(worst(sigmoid, |x| 1.0 / (1.0 + (-x).exp()), -90.0, 90.0) < 3e-7, "sigmoid");
    }

    #[test]
    fn special_values() {
        assert!(exp(f32::NAN).is_nan() && tanh(f32::NAN).is_nan() && ln(f32::NAN).is_nan());
        assert_eq!(exp(100.0), f32::INFINITY);
        assert_eq!(exp(-100.0), 0.0);
        assert!((exp(88.7) as f64 / 88.7f32.exp() as f64 - 1.0).abs() < 1e-6);
        assert_eq!(ln(0.0), f32::NEG_INFINITY);
        assert!(ln(-1.0).is_nan());
        assert_eq!(tanh(50.0), 1.0);
        assert_eq!(tanh(-50.0), -1.0);
        assert_eq!(sigmoid(-200.0), 0.0);
    }
}
