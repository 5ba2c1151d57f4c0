// Fused Real NVP kernels: one invocation evaluates every layer of the flow for one row, the
// row staying in private memory from the first layer to the base log-density; nothing
// intermediate goes to global memory and there is one dispatch per chunk of rows.
//
// The body of the flow (`flow_to_latent`, `flow_to_data`) is appended by src/gpu/kernel.rs:
// either shaders/interpreter.wgsl, which interprets a packed plan of any model, or straight-
// line code generated for one small model with its parameters as literals (src/gpu/unrolled.rs).
// The host prepends the constants D (row width) and the base distribution.

struct Params {
    rows: u32,      // rows in this dispatch
    groups_x: u32,  // workgroups along x; group index = wid.y * groups_x + wid.x
    _pad0: u32,     // always 0: added to the interpreter's layer-loop bound so it is not unrolled
    _pad1: u32,
}

const WG: u32 = 256u;

@group(0) @binding(0) var<storage, read> weights: array<f32>;
@group(0) @binding(1) var<storage, read> rows_in: array<f32>;          // [rows, D]
@group(0) @binding(2) var<storage, read_write> rows_out: array<f32>;   // [rows, D]: z or x
@group(0) @binding(3) var<storage, read_write> row_scalar: array<f32>; // [rows]: log-det or log p
@group(0) @binding(4) var<storage, read_write> partials: array<f32>;   // [groups, 2]: Σ finite log p, count
@group(0) @binding(5) var<uniform> params: Params;
@group(0) @binding(6) var<storage, read> plan: array<u32>;

// The log p reduction: per-row values, then RED partial sums of WG / RED rows each.
const RED: u32 = 16u;
var<workgroup> red_sum: array<f32, WG>;
var<workgroup> red_cnt: array<f32, WG>;
var<workgroup> red_sum2: array<f32, RED>;
var<workgroup> red_cnt2: array<f32, RED>;

// The row being transformed, feature i at v[i].
var<private> v: array<f32, D>;

fn is_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

fn nan() -> f32 {
    return bitcast<f32>(0x7fc00000u);
}

// ---- activations and scale functions (float32, overflow-safe) ----

fn tanh_safe(x: f32) -> f32 {
    let e = exp(-2.0 * abs(x));
    let t = (1.0 - e) / (1.0 + e);
    return select(t, -t, x < 0.0);
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7).
fn erf_approx(x: f32) -> f32 {
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let r = 1.0 - poly * exp(-a * a);
    return select(r, -r, x < 0.0);
}

fn leaky_relu(x: f32, slope: f32) -> f32 {
    return select(slope * x, x, x >= 0.0);
}

fn elu(x: f32) -> f32 {
    return select(exp(x) - 1.0, x, x > 0.0);
}

fn silu(x: f32) -> f32 {
    return x * sigmoid(x);
}

fn gelu(x: f32) -> f32 {
    return 0.5 * x * (1.0 + erf_approx(x * 0.70710678118654752));
}

// log density of the base at v: standard normal, or diagonal normal when BASE_LOC_OFF
// (loc) and BASE_LOC_OFF + D (log_scale) hold parameters.
fn base_log_density() -> f32 {
    var q = 0.0;
    var ls_sum = 0.0;
    for (var i = 0u; i < D; i++) {
        var r = v[i];
        if BASE_DIAGONAL {
            let ls = weights[BASE_LOC_OFF + D + i];
            r = (r - weights[BASE_LOC_OFF + i]) * exp(-ls);
            ls_sum += ls;
        }
        q = fma(r, r, q);
    }
    return -0.5 * q - ls_sum - HALF_D_LN_2PI;
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

// Data→latent log p(x) per row, and per-workgroup partial sums of the finite values.
@compute @workgroup_size(256)
fn log_prob_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = group_index(wid) * WG + lid;
    var lp = 0.0;
    if row < params.rows {
        if load_row(row) {
            let ld = flow_to_latent();
            lp = base_log_density() + ld;
        } else {
            lp = nan();
        }
        row_scalar[row] = lp;
    }
    let counted = row < params.rows && is_finite(lp);
    red_sum[lid] = select(0.0, lp, counted);
    red_cnt[lid] = select(0.0, 1.0, counted);
    // Two levels (16 sums of 16, then one of 16) and two barriers: lavapipe executes every
    // workgroup-memory access lane by lane, so a log2(256)-step tree costs ~10 % of seed4d.
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

// Data→latent: z and log|det ∂z/∂x| per row.
@compute @workgroup_size(256)
fn to_latent_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = group_index(wid) * WG + lid;
    if row >= params.rows {
        return;
    }
    let finite = load_row(row);
    var ld = nan();
    if finite {
        ld = flow_to_latent();
    }
    store_row(row, finite);
    row_scalar[row] = ld;
}

// Latent→data: x and log|det ∂x/∂z| per row.
@compute @workgroup_size(256)
fn to_data_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = group_index(wid) * WG + lid;
    if row >= params.rows {
        return;
    }
    let finite = load_row(row);
    var ld = nan();
    if finite {
        ld = flow_to_data();
    }
    store_row(row, finite);
    row_scalar[row] = ld;
}
