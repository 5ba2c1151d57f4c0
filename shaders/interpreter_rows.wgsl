// The row-per-invocation scratch of the plan interpreter (shaders/interpreter.wgsl): every
// invocation keeps its row's scratch regions in a private array, and runs the nets alone.
// Entry points: shaders/rows.wgsl.

var<private> buf: array<f32, SCRATCH>;

fn scratch(i: u32) -> f32 {
    return buf[i];
}

fn set_scratch(i: u32, x: f32) {
    buf[i] = x;
}

// Runs the net described at plan[net]: reads the conditioner inputs at buf[0..), writes its
// outputs into the ST region. Each block of BLOCK outputs is one pass over the inputs, BLOCK
// inputs per iteration, with the accumulators in registers: two chains per output (even
// inputs in a*, odd in c*), added at the end and then the bias, as the unrolled kernel and
// PyTorch's addmm do; shorter chains round less (tests/accuracy.rs).
fn run_mlp(net: u32) {
    let n_steps = plan[net];
    let slope = bitcast<f32>(plan[net + 1u]);
    for (var k = 0u; k < n_steps; k++) {
        let step = net_step(net, k);
        let n_in = step.n_in;
        let n_out = step.n_out;
        let w = step.w;
        let b = step.b;
        let dst = step.dst;
        let kind = step.post;
        let accumulate = step.accumulate;
        let src = step_source(step, slope);
        for (var o0 = 0u; o0 < n_out; o0 += BLOCK) {
            var a0 = 0.0;
            var c0 = 0.0;
            var a1 = 0.0;
            var c1 = 0.0;
            var a2 = 0.0;
            var c2 = 0.0;
            var a3 = 0.0;
            var c3 = 0.0;
            var a4 = 0.0;
            var c4 = 0.0;
            var a5 = 0.0;
            var c5 = 0.0;
            var a6 = 0.0;
            var c6 = 0.0;
            var a7 = 0.0;
            var c7 = 0.0;
            for (var i = 0u; i < n_in; i += BLOCK) {
                let x0 = buf[src + i + 0u];
                let x1 = buf[src + i + 1u];
                let x2 = buf[src + i + 2u];
                let x3 = buf[src + i + 3u];
                let x4 = buf[src + i + 4u];
                let x5 = buf[src + i + 5u];
                let x6 = buf[src + i + 6u];
                let x7 = buf[src + i + 7u];
                let wi = w + i * n_out + o0;
                a0 = fma(weights[wi], x0, a0);
                a1 = fma(weights[wi + 1u], x0, a1);
                a2 = fma(weights[wi + 2u], x0, a2);
                a3 = fma(weights[wi + 3u], x0, a3);
                a4 = fma(weights[wi + 4u], x0, a4);
                a5 = fma(weights[wi + 5u], x0, a5);
                a6 = fma(weights[wi + 6u], x0, a6);
                a7 = fma(weights[wi + 7u], x0, a7);
                c0 = fma(weights[wi + 1u * n_out], x1, c0);
                c1 = fma(weights[wi + 1u * n_out + 1u], x1, c1);
                c2 = fma(weights[wi + 1u * n_out + 2u], x1, c2);
                c3 = fma(weights[wi + 1u * n_out + 3u], x1, c3);
                c4 = fma(weights[wi + 1u * n_out + 4u], x1, c4);
                c5 = fma(weights[wi + 1u * n_out + 5u], x1, c5);
                c6 = fma(weights[wi + 1u * n_out + 6u], x1, c6);
                c7 = fma(weights[wi + 1u * n_out + 7u], x1, c7);
                a0 = fma(weights[wi + 2u * n_out], x2, a0);
                a1 = fma(weights[wi + 2u * n_out + 1u], x2, a1);
                a2 = fma(weights[wi + 2u * n_out + 2u], x2, a2);
                a3 = fma(weights[wi + 2u * n_out + 3u], x2, a3);
                a4 = fma(weights[wi + 2u * n_out + 4u], x2, a4);
                a5 = fma(weights[wi + 2u * n_out + 5u], x2, a5);
                a6 = fma(weights[wi + 2u * n_out + 6u], x2, a6);
                a7 = fma(weights[wi + 2u * n_out + 7u], x2, a7);
                c0 = fma(weights[wi + 3u * n_out], x3, c0);
                c1 = fma(weights[wi + 3u * n_out + 1u], x3, c1);
                c2 = fma(weights[wi + 3u * n_out + 2u], x3, c2);
                c3 = fma(weights[wi + 3u * n_out + 3u], x3, c3);
                c4 = fma(weights[wi + 3u * n_out + 4u], x3, c4);
                c5 = fma(weights[wi + 3u * n_out + 5u], x3, c5);
                c6 = fma(weights[wi + 3u * n_out + 6u], x3, c6);
                c7 = fma(weights[wi + 3u * n_out + 7u], x3, c7);
                a0 = fma(weights[wi + 4u * n_out], x4, a0);
                a1 = fma(weights[wi + 4u * n_out + 1u], x4, a1);
                a2 = fma(weights[wi + 4u * n_out + 2u], x4, a2);
                a3 = fma(weights[wi + 4u * n_out + 3u], x4, a3);
                a4 = fma(weights[wi + 4u * n_out + 4u], x4, a4);
                a5 = fma(weights[wi + 4u * n_out + 5u], x4, a5);
                a6 = fma(weights[wi + 4u * n_out + 6u], x4, a6);
                a7 = fma(weights[wi + 4u * n_out + 7u], x4, a7);
                c0 = fma(weights[wi + 5u * n_out], x5, c0);
                c1 = fma(weights[wi + 5u * n_out + 1u], x5, c1);
                c2 = fma(weights[wi + 5u * n_out + 2u], x5, c2);
                c3 = fma(weights[wi + 5u * n_out + 3u], x5, c3);
                c4 = fma(weights[wi + 5u * n_out + 4u], x5, c4);
                c5 = fma(weights[wi + 5u * n_out + 5u], x5, c5);
                c6 = fma(weights[wi + 5u * n_out + 6u], x5, c6);
                c7 = fma(weights[wi + 5u * n_out + 7u], x5, c7);
                a0 = fma(weights[wi + 6u * n_out], x6, a0);
                a1 = fma(weights[wi + 6u * n_out + 1u], x6, a1);
                a2 = fma(weights[wi + 6u * n_out + 2u], x6, a2);
                a3 = fma(weights[wi + 6u * n_out + 3u], x6, a3);
                a4 = fma(weights[wi + 6u * n_out + 4u], x6, a4);
                a5 = fma(weights[wi + 6u * n_out + 5u], x6, a5);
                a6 = fma(weights[wi + 6u * n_out + 6u], x6, a6);
                a7 = fma(weights[wi + 6u * n_out + 7u], x6, a7);
                c0 = fma(weights[wi + 7u * n_out], x7, c0);
                c1 = fma(weights[wi + 7u * n_out + 1u], x7, c1);
                c2 = fma(weights[wi + 7u * n_out + 2u], x7, c2);
                c3 = fma(weights[wi + 7u * n_out + 3u], x7, c3);
                c4 = fma(weights[wi + 7u * n_out + 4u], x7, c4);
                c5 = fma(weights[wi + 7u * n_out + 5u], x7, c5);
                c6 = fma(weights[wi + 7u * n_out + 6u], x7, c6);
                c7 = fma(weights[wi + 7u * n_out + 7u], x7, c7);
            }
            buf[dst + o0] = activate((a0 + c0 + weights[b + o0]) + select(0.0, buf[dst + o0], accumulate), kind, slope);
            buf[dst + o0 + 1u] = activate((a1 + c1 + weights[b + o0 + 1u]) + select(0.0, buf[dst + o0 + 1u], accumulate), kind, slope);
            buf[dst + o0 + 2u] = activate((a2 + c2 + weights[b + o0 + 2u]) + select(0.0, buf[dst + o0 + 2u], accumulate), kind, slope);
            buf[dst + o0 + 3u] = activate((a3 + c3 + weights[b + o0 + 3u]) + select(0.0, buf[dst + o0 + 3u], accumulate), kind, slope);
            buf[dst + o0 + 4u] = activate((a4 + c4 + weights[b + o0 + 4u]) + select(0.0, buf[dst + o0 + 4u], accumulate), kind, slope);
            buf[dst + o0 + 5u] = activate((a5 + c5 + weights[b + o0 + 5u]) + select(0.0, buf[dst + o0 + 5u], accumulate), kind, slope);
            buf[dst + o0 + 6u] = activate((a6 + c6 + weights[b + o0 + 6u]) + select(0.0, buf[dst + o0 + 6u], accumulate), kind, slope);
            buf[dst + o0 + 7u] = activate((a7 + c7 + weights[b + o0 + 7u]) + select(0.0, buf[dst + o0 + 7u], accumulate), kind, slope);
        }
    }
}

