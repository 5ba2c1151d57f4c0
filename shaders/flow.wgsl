// Fused Real NVP kernels: every layer of the flow for a row, the row staying in private memory
// from the first layer to the base log-density; nothing intermediate goes to global memory
// and there is one dispatch per chunk of rows. A workgroup takes WG consecutive rows of the
// chunk, one invocation per row: shaders/rows.wgsl (each invocation alone) or
// shaders/interpreter_tiles.wgsl (the workgroup's conditioner nets evaluated together).
//
// The body of the flow (`flow_to_latent`, `flow_to_data`) is appended by src/gpu/kernel/:
// either shaders/interpreter.wgsl, which interprets a packed plan of any model, or straight-
// line code generated for one small model with its parameters as literals (kernel/unrolled.rs).
// shaders/math.wgsl (float32 functions with documented error bounds) comes first.
// The host prepends the kernel ABI (src/gpu/kernel/abi.rs: WG, the codes, `Params` and the
// bindings weights, rows_in, rows_out, row_scalar, partials, params, plan), then the
// constants WG (rows per workgroup), D (row width) and the base distribution.

// The log p reduction: per-row values, then RED partial sums of WG / RED rows each.
const RED: u32 = min(16u, WG);
var<workgroup> red_sum: array<f32, WG>;
var<workgroup> red_cnt: array<f32, WG>;
var<workgroup> red_sum2: array<f32, RED>;
var<workgroup> red_cnt2: array<f32, RED>;

// The row being transformed, feature i at v[i].
var<private> v: array<f32, D>;

// log density of the base at v: −½ Σ ((v_i − loc_i)·inv_scale_i)² + BASE_LOG_NORM, where the
// host computed inv_scale = e^{−log_scale} and BASE_LOG_NORM = −Σ log_scale − D/2·ln 2π in
// float64 (given as hi + lo, hi on the grid); standard normal: loc 0, inv_scale 1. The
// diagonal base's loc is at BASE_LOC_OFF, inv_scale at BASE_LOC_OFF + D.
fn base_log_density(ld: vec2<f32>) -> f32 {
    var q = vec2<f32>(0.0);
    for (var i = 0u; i < D; i++) {
        var r = v[i];
        if BASE_DIAGONAL {
            r = (r - weights[BASE_LOC_OFF + i]) * weights[BASE_LOC_OFF + D + i];
        }
        q = split_add(q, r * r);
    }
    // the hi parts are on the grid 2^-9 after halving: their sum is exact
    let hi = keep((ld.x + BASE_LOG_NORM_HI) - 0.5 * q.x);
    let lo = keep((ld.y + BASE_LOG_NORM_LO) - 0.5 * q.y);
    return hi + lo;
}

// ---- row I/O and entry points ----

fn group_index(wid: vec3<u32>) -> u32 {
    return wid.y * params.groups_x + wid.x;
}

fn load_row(row: u32) -> bool {
    var finite = true;
    for (var i = 0u; i < D; i++) {
        let x = rows_in[row * D + i];
        v[i] = x;
        finite = finite && is_finite(x);
    }
    return finite;
}

fn store_row(row: u32, finite: bool) {
    for (var i = 0u; i < D; i++) {
        rows_out[row * D + i] = select(nan(), v[i], finite);
    }
}

// The workgroup's partial sums of log p: `lp` of this invocation's row (invocations WG.. have
// none), `counted` when it is a row of the chunk with a finite value. Two levels (RED sums of WG / RED, then one of RED)
// and two barriers: lavapipe executes every workgroup-memory access lane by lane, so a
// log2(WG)-step tree costs ~10 % of seed4d. Call in uniform control flow.
fn reduce_group(wid: vec3<u32>, lid: u32, lp: f32, counted: bool) {
    if lid < WG {
        red_sum[lid] = select(0.0, lp, counted);
        red_cnt[lid] = select(0.0, 1.0, counted);
    }
    workgroupBarrier();
    if lid < RED {
        var s = 0.0;
        var c = 0.0;
        for (var k = 0u; k < WG / RED; k++) {
            s += red_sum[lid * (WG / RED) + k];
            c += red_cnt[lid * (WG / RED) + k];
        }
        red_sum2[lid] = s;
        red_cnt2[lid] = c;
    }
    workgroupBarrier();
    if lid == 0u {
        var s = 0.0;
        var c = 0.0;
        for (var k = 0u; k < RED; k++) {
            s += red_sum2[k];
            c += red_cnt2[k];
        }
        let g = group_index(wid);
        partials[2u * g] = s;
        partials[2u * g + 1u] = c;
    }
}

// Sampling: row `row` of the chunk is global row params.first_row + row of the seed's stream
// (shaders/philox.wgsl). Draws ε and puts z = loc + T·σ⊙ε into v (σ of a diagonal base at
// BASE_LOC_OFF + 2D); returns |ε|² as (hi, lo).
fn draw_latent(row: u32) -> vec2<f32> {
    let g_lo = params.first_row_lo + row;
    let g_hi = params.first_row_hi + select(0u, 1u, g_lo < row);
    let key = vec2<u32>(params.seed_lo, params.seed_hi);
    var q = vec2<f32>(0.0);
    for (var j = 0u; j < (D + 3u) / 4u; j++) {
        let e = normals4(g_lo, g_hi, j, key);
        for (var k = 0u; k < 4u; k++) {
            let i = 4u * j + k;
            if i < D {
                q = split_add(q, e[k] * e[k]);
                var z = params.temperature * e[k];
                if BASE_DIAGONAL {
                    z = weights[BASE_LOC_OFF + i] + z * weights[BASE_LOC_OFF + 2u * D + i];
                }
                v[i] = z;
            }
        }
    }
    return q;
}

// log q(x) of a sampled row of the tempered model: BASE_LOG_NORM − D ln T (params.log_t)
// − ½|ε|² − log|det ∂x/∂z|, from |ε|² (q) and the log-det (ld), each as (hi, lo).
fn sample_log_density(q: vec2<f32>, ld: vec2<f32>) -> f32 {
    let hi = (BASE_LOG_NORM_HI - ld.x) - 0.5 * q.x;
    let lo = (BASE_LOG_NORM_LO - ld.y) - 0.5 * q.y + params.log_t;
    return hi + lo;
}
