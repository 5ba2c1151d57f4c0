// Philox4x32-10 and the Box–Muller normals of one row: the WGSL twin of src/philox.rs and
// src/sample.rs (same counter layout, same uniforms), so that row i of a seed is the same
// draw on every engine. Needs log_acc from shaders/flow.wgsl.

// (hi, lo) of the 64-bit product a·b from 16-bit halves (WGSL has no 64-bit integers).
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    let hi = a1 * b1 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

fn philox4x32_10(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var round = 0u; round < 10u; round++) {
        if round > 0u {
            k += vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
        }
        let p0 = mulhilo(0xD2511F53u, c.x);
        let p1 = mulhilo(0xCD9E8D57u, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    }
    return c;
}

// (k + ½)·2⁻²³ from the top 23 bits: an odd multiple of 2⁻²⁴, exact in float32.
fn uniform01(bits: u32) -> f32 {
    return f32(bits >> 9u) * (1.0 / 8388608.0) + (1.0 / 16777216.0);
}

// (cos 2πu, sin 2πu) to float32 accuracy: u is reduced exactly to r ∈ [−⅛, ⅛] plus a
// quarter turn k (u − round(u) and r = w − k/4 are exact for multiples of 2⁻²⁴), then Taylor
// polynomials on |2πr| ≤ π/4 (truncation < 4e-9). The builtins may be off by 2⁻¹¹ (Vulkan).
fn cos_sin_turns(u: f32) -> vec2<f32> {
    let w = u - round(u);
    let k = round(4.0 * w);
    let a = 6.2831853071795864 * (w - 0.25 * k);
    let a2 = a * a;
    let s = a * (1.0 + a2 * (-1.0 / 6.0 + a2 * (1.0 / 120.0 + a2 * (-1.0 / 5040.0 + a2 * (1.0 / 362880.0)))));
    let c = 1.0 + a2 * (-0.5 + a2 * (1.0 / 24.0 + a2 * (-1.0 / 720.0 + a2 * (1.0 / 40320.0))));
    let q = (i32(k) + 4) % 4;
    switch q {
        case 1: { return vec2<f32>(-s, c); }
        case 2: { return vec2<f32>(-c, -s); }
        case 3: { return vec2<f32>(s, -c); }
        default: { return vec2<f32>(c, s); }
    }
}

// The four standard normals of features 4j…4j+3 of global row (row_lo, row_hi) for key
// (seed_lo, seed_hi): Box–Muller on (u0, u1) and (u2, u3).
fn normals4(row_lo: u32, row_hi: u32, j: u32, key: vec2<u32>) -> vec4<f32> {
    let bits = philox4x32_10(vec4<u32>(row_lo, row_hi, j, 0u), key);
    let r0 = sqrt(-2.0 * log_acc(uniform01(bits.x)));
    let r1 = sqrt(-2.0 * log_acc(uniform01(bits.z)));
    let t0 = cos_sin_turns(uniform01(bits.y));
    let t1 = cos_sin_turns(uniform01(bits.w));
    return vec4<f32>(r0 * t0.x, r0 * t0.y, r1 * t1.x, r1 * t1.y);
}
