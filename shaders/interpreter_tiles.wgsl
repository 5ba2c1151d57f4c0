// The tiled form of the plan interpreter (shaders/interpreter.wgsl), for wide conditioner nets
// on hardware GPUs: a workgroup of INV invocations takes a tile of WG ≤ INV rows; invocation r
// < WG does everything per row for row r (row I/O, gathers, the affine maps, the base density;
// the others run the same code on a row of zeros that touches no memory), while the
// conditioner nets are evaluated by all INV invocations together:
//
// - the scratch regions of all WG rows live in workgroup memory, `tile`, feature-major:
//   scratch entry i of the tile's row r at element i·WG + r, so consecutive invocations touch
//   consecutive words (no bank conflicts) and four rows of one entry are one vec4;
// - each Linear is split into register blocks of 4 rows × BLOCK outputs; an invocation takes
//   blocks lid, lid + INV, … and keeps 2 × BLOCK vec4 accumulators, so each weight it loads
//   serves 4 rows and each vec4 of activations serves BLOCK outputs. The invocations of one
//   SIMD group that share an output block load the same weights (one broadcast load from the
//   cache), and the rows of a block are consecutive words of `tile`;
// - the arithmetic per output is the interpreter's, in the same order (two chains, even and
//   odd inputs, then the bias, then the residual): results equal the row-per-invocation
//   interpreter's bit for bit on a device that rounds the same way.
//
// The host (src/gpu/kernel/tiled.rs) picks WG so that `tile` and the reduction fit the
// adapter's workgroup memory, and prepends it and INV with the interpreter's constants. Barriers need
// uniform control flow: every invocation runs every layer (a row past the end of the chunk, or
// a non-finite row, runs on zeros and is not stored), and the layer plan lives in read-only
// storage, which WGSL's uniformity analysis counts as uniform.

var<workgroup> tile: array<vec4<f32>, SCRATCH * WG / 4u>;

// The invocation's row within the tile (local_invocation_index); lanes WG.. have no row.
var<private> lane: u32;

// (No early return: Mesa's llvmpipe counts those towards its loop limiter.)
fn scratch(i: u32) -> f32 {
    let e = i * WG + min(lane, WG - 1u);
    return select(0.0, tile[e / 4u][e % 4u], lane < WG);
}

fn set_scratch(i: u32, x: f32) {
    let e = i * WG + lane;
    if lane < WG {
        tile[e / 4u][e % 4u] = x;
    }
}

// Stores the four rows r..r+3 of scratch entry `at` (4 | r): activate((sum + bias) + the
// entry's value when accumulating), as the row interpreter does per row.
fn store_block(at: u32, r: u32, sum: vec4<f32>, bias: f32, accumulate: bool, kind: u32, slope: f32) {
    let e = (at * WG + r) / 4u;
    let old = select(vec4<f32>(0.0), tile[e], accumulate);
    let y = (sum + bias) + old;
    tile[e] = vec4<f32>(activate(y.x, kind, slope), activate(y.y, kind, slope), activate(y.z, kind, slope), activate(y.w, kind, slope));
}

// Runs the net described at plan[net] for the whole tile: reads the conditioner inputs at
// scratch 0.., writes its outputs into the ST region. Call in uniform control flow; the
// gathered inputs must be written (each invocation its own row) before the call.
fn run_mlp(net: u32) {
    let n_steps = plan[net];
    let slope = bitcast<f32>(plan[net + 1u]);
    let row_blocks = WG / 4u;
    for (var k = 0u; k < n_steps; k++) {
        let step = net_step(net, k);
        let n_in = step.n_in;
        let n_out = step.n_out;
        let w = step.w;
        let b = step.b;
        let dst = step.dst;
        let kind = step.post;
        let accumulate = step.accumulate;
        // a residual block's pre-activation: each invocation its own row
        let src = step_source(step, slope);
        // every row's inputs (the gather, the pre-activation or the previous step) are written
        workgroupBarrier();
        let n_blocks = row_blocks * (n_out / BLOCK);
        for (var blk = lane; blk < n_blocks; blk += INV) {
            let r = (blk % row_blocks) * 4u;
            let o0 = (blk / row_blocks) * BLOCK;
            var a0 = vec4<f32>(0.0);
            var c0 = vec4<f32>(0.0);
            var a1 = vec4<f32>(0.0);
            var c1 = vec4<f32>(0.0);
            var a2 = vec4<f32>(0.0);
            var c2 = vec4<f32>(0.0);
            var a3 = vec4<f32>(0.0);
            var c3 = vec4<f32>(0.0);
            var a4 = vec4<f32>(0.0);
            var c4 = vec4<f32>(0.0);
            var a5 = vec4<f32>(0.0);
            var c5 = vec4<f32>(0.0);
            var a6 = vec4<f32>(0.0);
            var c6 = vec4<f32>(0.0);
            var a7 = vec4<f32>(0.0);
            var c7 = vec4<f32>(0.0);
            // n_in is a multiple of BLOCK: inputs in pairs, even ones into a*, odd into c*
            for (var i = 0u; i < n_in; i += 2u) {
                let x0 = tile[((src + i) * WG + r) / 4u];
                let x1 = tile[((src + i + 1u) * WG + r) / 4u];
                let wi = w + i * n_out + o0;
                a0 = fma(vec4<f32>(weights[wi]), x0, a0);
                a1 = fma(vec4<f32>(weights[wi + 1u]), x0, a1);
                a2 = fma(vec4<f32>(weights[wi + 2u]), x0, a2);
                a3 = fma(vec4<f32>(weights[wi + 3u]), x0, a3);
                a4 = fma(vec4<f32>(weights[wi + 4u]), x0, a4);
                a5 = fma(vec4<f32>(weights[wi + 5u]), x0, a5);
                a6 = fma(vec4<f32>(weights[wi + 6u]), x0, a6);
                a7 = fma(vec4<f32>(weights[wi + 7u]), x0, a7);
                let wj = wi + n_out;
                c0 = fma(vec4<f32>(weights[wj]), x1, c0);
                c1 = fma(vec4<f32>(weights[wj + 1u]), x1, c1);
                c2 = fma(vec4<f32>(weights[wj + 2u]), x1, c2);
                c3 = fma(vec4<f32>(weights[wj + 3u]), x1, c3);
                c4 = fma(vec4<f32>(weights[wj + 4u]), x1, c4);
                c5 = fma(vec4<f32>(weights[wj + 5u]), x1, c5);
                c6 = fma(vec4<f32>(weights[wj + 6u]), x1, c6);
                c7 = fma(vec4<f32>(weights[wj + 7u]), x1, c7);
            }
            let bias = b + o0;
            let out = dst + o0;
            store_block(out, r, a0 + c0, weights[bias], accumulate, kind, slope);
            store_block(out + 1u, r, a1 + c1, weights[bias + 1u], accumulate, kind, slope);
            store_block(out + 2u, r, a2 + c2, weights[bias + 2u], accumulate, kind, slope);
            store_block(out + 3u, r, a3 + c3, weights[bias + 3u], accumulate, kind, slope);
            store_block(out + 4u, r, a4 + c4, weights[bias + 4u], accumulate, kind, slope);
            store_block(out + 5u, r, a5 + c5, weights[bias + 5u], accumulate, kind, slope);
            store_block(out + 6u, r, a6 + c6, weights[bias + 6u], accumulate, kind, slope);
            store_block(out + 7u, r, a7 + c7, weights[bias + 7u], accumulate, kind, slope);
        }
        // the outputs are written before the next step or the rows read them
        workgroupBarrier();
    }
}

// Whether this lane has a row of the chunk: `row` is inside it.
fn has_row(row: u32) -> bool {
    return lane < WG && row < params.rows;
}

// Loads row `row` of the chunk into v; a lane without a row, or a row that is not finite, runs
// on zeros (with the others, and is never stored as a value). Whether it has a finite row.
fn load_tile_row(row: u32) -> bool {
    var finite = false;
    if has_row(row) {
        finite = load_row(row);
    }
    if !finite {
        for (var i = 0u; i < D; i++) {
            v[i] = 0.0;
        }
    }
    return finite;
}

// Data→latent log p(x) per row, and per-workgroup partial sums of the finite values.
@compute @workgroup_size(INV)
fn log_prob_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    lane = lid;
    let row = group_index(wid) * WG + lid;
    let finite = load_tile_row(row);
    let lp = select(nan(), base_log_density(flow_to_latent()), finite);
    if has_row(row) {
        row_scalar[row] = lp;
    }
    reduce_group(wid, lid, lp, has_row(row) && is_finite(lp));
}

// Data→latent: z and log|det ∂z/∂x| per row.
@compute @workgroup_size(INV)
fn to_latent_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    lane = lid;
    let row = group_index(wid) * WG + lid;
    let finite = load_tile_row(row);
    let acc = flow_to_latent();
    if has_row(row) {
        store_row(row, finite);
        row_scalar[row] = select(nan(), acc.x + acc.y, finite);
    }
}

// Latent→data: x and log|det ∂x/∂z| per row.
@compute @workgroup_size(INV)
fn to_data_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    lane = lid;
    let row = group_index(wid) * WG + lid;
    let finite = load_tile_row(row);
    let acc = flow_to_data();
    if has_row(row) {
        store_row(row, finite);
        row_scalar[row] = select(nan(), acc.x + acc.y, finite);
    }
}

// Sampling: ε → z → x = f⁻¹(z) into rows_out, and log q(x) into row_scalar (rows past the
// end of the chunk are drawn too, and not stored).
@compute @workgroup_size(INV)
fn sample_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    lane = lid;
    let row = group_index(wid) * WG + lid;
    let q = draw_latent(row);
    let ld = flow_to_data();
    if has_row(row) {
        store_row(row, true);
        row_scalar[row] = sample_log_density(q, ld);
    }
}
