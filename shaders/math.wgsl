// float32 math with documented error bounds, the same on every device, for the fused
// kernels (shaders/flow.wgsl, the flow bodies, shaders/philox.wgsl). Uses `params.zero` (the
// kernel ABI's runtime zero, src/gpu/kernel/abi.rs) in `keep`. Checked on the device against
// float64 by tests/gpu.rs (`device_math_is_within_its_bounds`).

fn is_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

fn nan() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}

// WGSL only requires the builtins exp/log to be within 3 + 2·|x| ULP (exp) or 3 ULP /
// 2^-21 absolute (log), and drivers use that freedom (lavapipe's exp goes through exp2 of
// x·log2 e, losing ~|x| ulps). The native engine's functions (src/native/kernels.rs) are used
// instead: range reduction and polynomials, ≤ 2 ulp, the same on every device.

fn inf() -> f32 {
    return bitcast<f32>(0x7f800000u);
}

fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

// 1/b: the device's division (Vulkan allows 2.5 ulp) refined by one Newton step, to ≤ 1 ulp
// where fma is fused; where it is not (lavapipe: WGSL permits an unfused fma) the step is harmless.
fn recip(b: f32) -> f32 {
    let r = 1.0 / b;
    // b = ±∞ or 0 (r = 0 or ±∞) would make the residual NaN: keep r there
    return select(fma(r, keep(fma(-b, r, 1.0)), r), r, r == 0.0 || !is_finite(r));
}

// x as it is, hidden from the compiler: its bits OR-ed with a runtime zero. Shader compilers
// may reassociate float expressions (lavapipe does: `(c − n·a) + n·b`, the Cody–Waite step of
// exp_acc, becomes `c − n·(a − b)`, and Dekker's product error comes out 0), which undoes every
// error-free transformation below; a value passed through `keep` is evaluated as written.
// Measured on lavapipe: exp_acc 0.49 → 0.31 ulp RMS (max 1.6 → 0.85), x·f + t 63 → 0.29.
fn keep(x: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(x) | params.zero);
}

// x·f + t rounded about once whether or not the device fuses `fma` (lavapipe does not; an
// unfused x·f + t rounds the product first, which costs up to ulp(x·f) where x·f and t
// cancel). The product's rounding error is recovered exactly (Dekker): x and f are cut into
// 12-bit halves by masking bits, every partial product is then exact and so is every sum
// below, each kept from reassociation. Non-finite products fall back to fma.
fn mul_add_acc(x: f32, f: f32, t: f32) -> f32 {
    let p = x * f;
    let xh = bitcast<f32>(bitcast<u32>(x) & 0xfffff000u);
    let fh = bitcast<f32>(bitcast<u32>(f) & 0xfffff000u);
    let xl = x - xh;
    let fl = f - fh;
    let err = keep(keep(keep(keep(xh * fh - p) + xh * fl) + xl * fh) + xl * fl);
    return select(fma(x, f, t), keep(p + t) + err, is_finite(err));
}

// Log-dets and sums of squares are accumulated as (hi, lo): hi on the grid of 2^-8 (sums of grid
// values are exact in float32 while |Σ| < 2^16), lo the remainders (|t − hi| ≤ 2^-9) summed in
// float32. No compensated-summation identity for a compiler to simplify away: round() is not one.
const GRID: f32 = 256.0;

fn split_add(acc: vec2<f32>, t: f32) -> vec2<f32> {
    // from 2^15 on, float32 values are on the grid already (and t·GRID could overflow)
    let hi = select(round(t * GRID) * (1.0 / GRID), t, abs(t) >= 32768.0);
    // t = ±∞ (an overflowed scale) goes to hi alone: ∞ − ∞ in lo would turn −∞ into NaN
    return vec2<f32>(acc.x + hi, acc.y + keep(select(t - hi, 0.0, t == hi)));
}

// e^x: x = n·ln 2 + r with |r| ≤ ln2/2 (Cody–Waite, two-part ln 2), Cephes' degree-6
// polynomial, then ×2^n; relative error ≤ 2 ulp, 0 below −87.3, +∞ above 88.72, NaN kept.
fn exp_acc(x: f32) -> f32 {
    let xc = clamp(x, -87.3, 88.72);
    let n = round(xc * 1.44269504);
    let r = keep(keep(xc - n * 0.693359375) + n * 2.12194440e-4);
    var p = 1.9875691500e-4;
    p = fma(p, r, 1.3981999507e-3);
    p = fma(p, r, 8.3334519073e-3);
    p = fma(p, r, 4.1665795894e-2);
    p = fma(p, r, 1.6666665459e-1);
    p = fma(p, r, 5.0000001201e-1);
    let y = ldexp(keep(fma(p, r * r, r)) + 1.0, i32(n));
    let out = select(select(y, 0.0, x < -87.3), inf(), x > 88.72);
    return select(out, x, is_nan(x));
}

// ln x for x > 0: x = m·2^e with m in [√½, √2), Cephes' degree-9 polynomial in m − 1;
// relative error ≤ 2 ulp; 0 → −∞, x < 0 or NaN → NaN, +∞ → +∞, subnormals rescaled.
fn log_acc(x: f32) -> f32 {
    let tiny = x < 1.17549435e-38;
    let xs = select(x, x * 8388608.0, tiny);
    let bits = bitcast<u32>(xs);
    var e = f32(i32((bits >> 23u) & 0xffu) - 126) - select(0.0, 23.0, tiny);
    var m = bitcast<f32>((bits & 0x007fffffu) | 0x3f000000u);
    let small = m < 0.70710678;
    e = e - select(0.0, 1.0, small);
    m = select(m - 1.0, m + m - 1.0, small);
    let z = m * m;
    var p = 7.0376836292e-2;
    p = fma(p, m, -1.1514610310e-1);
    p = fma(p, m, 1.1676998740e-1);
    p = fma(p, m, -1.2420140846e-1);
    p = fma(p, m, 1.4249322787e-1);
    p = fma(p, m, -1.6668057665e-1);
    p = fma(p, m, 2.0000714765e-1);
    p = fma(p, m, -2.4999993993e-1);
    p = fma(p, m, 3.3333331174e-1);
    let y = keep(keep(m * z * p - 2.12194440e-4 * e) - 0.5 * z);
    let r = keep(m + y) + 0.693359375 * e;
    let special = select(select(r, -inf(), x == 0.0), inf(), x == inf());
    return select(special, bitcast<f32>(0x7fc00000u), x < 0.0 || is_nan(x));
}

// tanh: a polynomial below 0.625 (relative error ~1 ulp where 1 − e^{−2|x|} would cancel),
// 1 − 2/(e^{2|x|} + 1) above; ±1 for large |x|, NaN kept.
fn tanh_safe(x: f32) -> f32 {
    let a = abs(x);
    let z = x * x;
    var p = -5.70498872745e-3;
    p = fma(p, z, 2.06390887954e-2);
    p = fma(p, z, -5.37397155531e-2);
    p = fma(p, z, 1.33314422036e-1);
    p = fma(p, z, -3.33332819422e-1);
    let small = fma(p * z, x, x);
    let t = 1.0 - 2.0 * recip(exp_acc(2.0 * a) + 1.0);
    return select(select(t, -t, x < 0.0), small, a < 0.625);
}

// ---- activations and scale functions (float32, overflow-safe) ----

fn sigmoid(x: f32) -> f32 {
    return recip(1.0 + exp_acc(-x));
}

// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7).
fn erf_approx(x: f32) -> f32 {
    let a = abs(x);
    let t = recip(1.0 + 0.3275911 * a);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let r = 1.0 - poly * exp_acc(-a * a);
    return select(r, -r, x < 0.0);
}

fn leaky_relu(x: f32, slope: f32) -> f32 {
    return select(slope * x, x, x >= 0.0);
}

fn elu(x: f32) -> f32 {
    return select(exp_acc(x) - 1.0, x, x > 0.0);
}

fn silu(x: f32) -> f32 {
    return x * sigmoid(x);
}

fn gelu(x: f32) -> f32 {
    return 0.5 * x * (1.0 + erf_approx(x * 0.70710678118654752));
}
