// FMA ceiling microbenchmark: each invocation runs ITERS iterations of 8 independent vec4
// fused multiply-adds (64 FLOP per iteration). The host prepends `const ITERS: u32`.
// The result is written so that the compiler cannot drop the loop.

@group(0) @binding(0) var<storage, read_write> sink: array<f32>;

@compute @workgroup_size(256)
fn fma_main(@builtin(global_invocation_id) id: vec3<u32>) {
    let seed = f32(id.x) * 1e-7;
    var a0 = vec4<f32>(seed, seed + 0.1, seed + 0.2, seed + 0.3);
    var a1 = a0 + 0.01;
    var a2 = a0 + 0.02;
    var a3 = a0 + 0.03;
    var a4 = a0 + 0.04;
    var a5 = a0 + 0.05;
    var a6 = a0 + 0.06;
    var a7 = a0 + 0.07;
    let m = vec4<f32>(0.9999);
    let c = vec4<f32>(1e-4);
    for (var i = 0u; i < ITERS; i = i + 1u) {
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a2 = fma(a2, m, c);
        a3 = fma(a3, m, c);
        a4 = fma(a4, m, c);
        a5 = fma(a5, m, c);
        a6 = fma(a6, m, c);
        a7 = fma(a7, m, c);
    }
    let s = (a0 + a1) + (a2 + a3) + (a4 + a5) + (a6 + a7);
    sink[id.x] = s.x + s.y + s.z + s.w;
}
