// The plan interpreter: flow_to_latent and flow_to_data for any model (see shaders/flow.wgsl).
//
// The flow is *interpreted* from a compact plan (`plan`, u32) and a packed parameter buffer
// (`weights`, f32), both built by src/gpu/kernel/interpreter.rs. One loop over layers, one MLP routine:
// the shader's size does not grow with the model, so every model compiles in about the same
// time (code generated per layer made lavapipe's compile time grow with the square of the
// depth: 60 s for 6 layers). The host prepends the constants D (row width), N_LAYERS, the
// scratch layout (SCRATCH floats per row, C_OFF, ST) and the base
// distribution (see kernel/mod.rs), and which codes the plan holds (USES_LAYER, USES_ACT,
// USES_SCALE: bit k for code k; the code of the others is not compiled); the codes below
// (LAYER_*, ACT_*, SCALE_*) and BLOCK come from the kernel ABI (src/gpu/kernel/abi.rs).
//
// Plan records (offsets are u32 indices into `plan`, parameter offsets f32 indices into
// `weights`):
//   plan[l], l < N_LAYERS: offset of layer l's record
//   coupling:  [LAYER_COUPLING, stored_to_latent, scale_kind, scale_off, n_id, n_tr, n_nets, feat_off, net_off...]
//              feat_off: n_id identity features then n_tr transformed features
//   elementwise_affine: [LAYER_ELEMENTWISE, stored_to_latent, log_scale_off, shift_off]; log_scale_off + 2D holds
//                       e^{log_scale} and + 3D e^{−log_scale} (host float64, rounded)
//   permutation:        [LAYER_PERMUTATION, perm_off]
//   net:       [n_steps, slope_bits, (in_padded, out_padded, w, b, src, dst, pre_kind, post_kind, accumulate) × n_steps]
//              one step per Linear, in the order of model::PrunedNet::schedule: read buf[src..],
//              first activating it into the C region when pre_kind ≠ ACT_IDENTITY (residual blocks),
//              write (or with accumulate, add to) buf[dst..], post_kind applied after the bias.
// Linear weights are packed mask-pruned and transposed: weight (input i, output o) at
// w + i·out_padded + o; inputs and outputs are padded with zeros to multiples of BLOCK, so
// the matrix loops run in BLOCK×BLOCK tiles. Padded inputs read scratch entries that hold
// finite values (zeros written by the gather, or activations of zero-padded outputs).
//
// lavapipe (Mesa's llvmpipe) stops every loop after 65535 iterations *in total per
// invocation* (its loop limiter is shared by all loops of a shader). Tiling keeps realistic
// models far below that; kernel/interpreter.rs counts the iterations and refuses models that would hit
// the limit on such adapters instead of returning truncated results.

// Scratch regions, one after the other, each as wide as the plan's widest use of it
// (multiples of BLOCK): conditioner inputs at 0, hidden slots A and B, slot C at C_OFF (empty
// but for models with residual nets), and the conditioner outputs (shifts, scale inputs) at ST.
//
// Where the scratch lives, and the net routine `run_mlp` over it, is the form's:
// shaders/interpreter_rows.wgsl (private per row) or shaders/interpreter_tiles.wgsl (the
// workgroup's tile of rows in workgroup memory); each gives `scratch(i)`, `set_scratch(i, x)`
// for the current row and `run_mlp(net)`.

// kinds: ACT_* (ACT_IDENTITY: none). Only the kinds the plan holds are compiled (USES_ACT,
// bit k for ACT k: constant, so the others are dead code to the compiler).
fn activate(x: f32, kind: u32, slope: f32) -> f32 {
    switch kind {
        case ACT_RELU: { if (USES_ACT & (1u << ACT_RELU)) != 0u { return max(x, 0.0); } }
        case ACT_LEAKY_RELU: { if (USES_ACT & (1u << ACT_LEAKY_RELU)) != 0u { return leaky_relu(x, slope); } }
        case ACT_TANH: { if (USES_ACT & (1u << ACT_TANH)) != 0u { return tanh_safe(x); } }
        case ACT_ELU: { if (USES_ACT & (1u << ACT_ELU)) != 0u { return elu(x); } }
        case ACT_SILU: { if (USES_ACT & (1u << ACT_SILU)) != 0u { return silu(x); } }
        case ACT_GELU: { if (USES_ACT & (1u << ACT_GELU)) != 0u { return gelu(x); } }
        default: {}
    }
    return x;
}

// (log f, the factor) for scale input u of transformed feature k: the factor is f moving
// towards the latent-side of the stored map (forward) and 1/f moving back, each rounded once
// where it can be (e^{−l} rather than 1/e^l). kinds: 0 exp, 1 tanh_exp (alpha at p + k),
// 2 sigmoid (offset at p, eps at p + 1), 3 soft_clamp_exp (bound at p, 1/bound at p + 1).
fn scale(u: f32, kind: u32, p: u32, k: u32, forward: bool) -> vec2<f32> {
    var l = u;
    switch kind {
        case SCALE_TANH_EXP: {
            if (USES_SCALE & (1u << SCALE_TANH_EXP)) != 0u { l = weights[p + k] * tanh_safe(u); }
        }
        case SCALE_SIGMOID: {
            if (USES_SCALE & (1u << SCALE_SIGMOID)) != 0u {
                let f = sigmoid(u + weights[p]) + weights[p + 1u];
                return vec2<f32>(log_acc(f), select(recip(f), f, forward));
            }
        }
        case SCALE_SOFT_CLAMP_EXP: {
            if (USES_SCALE & (1u << SCALE_SOFT_CLAMP_EXP)) != 0u { l = weights[p] * tanh_safe(u * weights[p + 1u]); }
        }
        default: {}
    }
    return vec2<f32>(l, exp_acc(select(-l, l, forward)));
}

// ---- the flow ----

// Step k (one Linear) of the net record at plan[net] (layout above).
struct Step {
    n_in: u32,
    n_out: u32,
    w: u32,
    b: u32,
    src: u32,
    dst: u32,
    pre: u32,
    post: u32,
    accumulate: bool,
}

fn net_step(net: u32, k: u32) -> Step {
    let r = net + 2u + 9u * k;
    return Step(plan[r], plan[r + 1u], plan[r + 2u], plan[r + 3u], plan[r + 4u], plan[r + 5u], plan[r + 6u], plan[r + 7u], plan[r + 8u] != 0u);
}

// Where step `s` reads its inputs: `s.src`, or for a residual block's pre-activation this row's
// inputs activated into slot C first.
fn step_source(s: Step, slope: f32) -> u32 {
    var src = s.src;
    if s.pre != ACT_IDENTITY {
        for (var i = 0u; i < s.n_in; i++) {
            set_scratch(C_OFF + i, activate(scratch(s.src + i), s.pre, slope));
        }
        src = C_OFF;
    }
    return src;
}

// The stored affine map y = x·f + t goes data→latent when stored_to_latent; moving towards
// the latent applies it, moving towards the data applies its inverse. Returns the log-det.
fn coupling(rec: u32, to_latent: bool, acc: vec2<f32>) -> vec2<f32> {
    let forward = (plan[rec + 1u] != 0u) == to_latent;
    let scale_kind = plan[rec + 2u];
    let scale_off = plan[rec + 3u];
    let n_id = plan[rec + 4u];
    let n_tr = plan[rec + 5u];
    let n_nets = plan[rec + 6u];
    let feat = plan[rec + 7u];
    for (var j = 0u; j < n_id; j++) {
        set_scratch(j, v[plan[feat + j]]);
    }
    for (var j = n_id; j % BLOCK != 0u; j++) {
        set_scratch(j, 0.0);
    }
    var net = feat + n_id + n_tr;
    for (var m = 0u; m < n_nets; m++) {
        run_mlp(net);
        net += 2u + 9u * plan[net];
    }
    var ld = acc;
    for (var k = 0u; k < n_tr; k++) {
        let f = plan[feat + n_id + k];
        let t = scratch(ST + k);
        let lf = scale(scratch(ST + n_tr + k), scale_kind, scale_off, k, forward);
        if forward {
            v[f] = mul_add_acc(v[f], lf.y, t);
            ld = split_add(ld, lf.x);
        } else {
            v[f] = (v[f] - t) * lf.y;
            ld = split_add(ld, -lf.x);
        }
    }
    return ld;
}

fn elementwise(rec: u32, to_latent: bool, acc: vec2<f32>) -> vec2<f32> {
    let forward = (plan[rec + 1u] != 0u) == to_latent;
    let ls_off = plan[rec + 2u];
    let sh_off = plan[rec + 3u];
    var ld = acc;
    for (var i = 0u; i < D; i++) {
        let ls = weights[ls_off + i];
        let sh = weights[sh_off + i];
        if forward {
            v[i] = mul_add_acc(v[i], weights[ls_off + 2u * D + i], sh);
            ld = split_add(ld, ls);
        } else {
            v[i] = (v[i] - sh) * weights[ls_off + 3u * D + i];
            ld = split_add(ld, -ls);
        }
    }
    return ld;
}

fn permute(rec: u32, to_latent: bool) {
    let perm = plan[rec + 1u];
    let src = v;
    for (var j = 0u; j < D; j++) {
        let p = plan[perm + j];
        if to_latent {
            v[j] = src[p];
        } else {
            v[p] = src[j];
        }
    }
}

// Applies layer l to v and adds its log-det terms to the (hi, lo) accumulator.
fn apply_layer(l: u32, to_latent: bool, acc: vec2<f32>) -> vec2<f32> {
    let rec = plan[l];
    switch plan[rec] {
        case LAYER_COUPLING: {
            if (USES_LAYER & (1u << LAYER_COUPLING)) != 0u { return coupling(rec, to_latent, acc); }
        }
        case LAYER_ELEMENTWISE: {
            if (USES_LAYER & (1u << LAYER_ELEMENTWISE)) != 0u { return elementwise(rec, to_latent, acc); }
        }
        default: {
            if (USES_LAYER & (1u << LAYER_PERMUTATION)) != 0u { permute(rec, to_latent); }
        }
    }
    return acc;
}

// Data→latent in place on v; returns log|det ∂z/∂x| as (hi, lo).
fn flow_to_latent() -> vec2<f32> {
    var ld = vec2<f32>(0.0);
    for (var l = 0u; l < N_LAYERS + params.zero; l++) {
        ld = apply_layer(l, true, ld);
    }
    return ld;
}

// Latent→data in place on v; returns log|det ∂x/∂z| as (hi, lo).
fn flow_to_data() -> vec2<f32> {
    var ld = vec2<f32>(0.0);
    for (var l = N_LAYERS + params.zero; l > 0u; l--) {
        ld = apply_layer(l - 1u, false, ld);
    }
    return ld;
}
