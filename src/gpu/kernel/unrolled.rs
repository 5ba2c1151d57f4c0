//! Straight-line WGSL for one small flow: every layer, every Linear and every multiply-add
//! written out, with the parameters as float32 literals.
//!
//! Why: on lavapipe (Mesa's llvmpipe) every storage-buffer load is a per-lane loop with a
//! branch per lane, so the plan interpreter (one weight load per FMA) runs at a few percent
//! of the FMA rate. Literal weights turn each multiply-add into one vector FMA with a
//! broadcast constant, and on hardware GPUs into FMAs with immediate operands. The price is
//! code size: compile time grows with the number of multiply-adds, so [`fits`] limits this
//! form to small models and larger ones keep the interpreter.
//!
//! The generated `flow_to_latent` / `flow_to_data` work in place on the row `v` of
//! shaders/flow.wgsl and return the log-determinant, exactly like the interpreter's.

use std::fmt::Write;

use crate::model::{Activation, Coupling, Direction, Flow, Layer, Linear, OutputFn, Post, PrunedNet, ScaleFn, Slot};

use super::abi::WORKGROUP_ROWS;
use super::source::{
    header, io_loop_iterations, limiter_count, lit, push_base, split, KernelForm, KernelSource, ROW_ENTRIES, TEMPLATE,
};

/// Largest [`operations`] per row (both directions together are generated, so the shader holds
/// twice this many) for which `--kernel auto` picks the straight-line form.
pub const MAX_OPERATIONS: u64 = 20_000;

/// Largest unrolled model ([`operations`]) lavapipe/llvmpipe are asked to compile: their
/// compile time grows faster than linearly (measured: 13.8k multiply-adds 3 s, 55k 24 s, 82k
/// about a minute).
pub const LLVMPIPE_MAX_OPERATIONS: u64 = 200_000;

/// Multiply-adds per row of one direction (mask-pruned, as generated).
pub fn multiply_adds(flow: &Flow) -> u64 {
    let mut total = 0;
    for layer in &flow.layers {
        if let Layer::Coupling(c) = layer {
            for net in c.pruned_conditioner().nets {
                total += net.linears.iter().map(|l| (l.inputs * l.outputs) as u64).sum::<u64>();
            }
        }
    }
    total
}

/// Size of the straight-line code of one direction, in operations per row: the
/// multiply-adds, plus for every layer (parameter-free ones too: a permutation, an
/// elementwise affine) one per dimension and [`LAYER_OVERHEAD`] for its function. The
/// unrolled kernel's build time grows with this; 20,000 permutation layers have no
/// multiply-adds at all but take minutes and gigabytes to build.
pub fn operations(flow: &Flow) -> u64 {
    multiply_adds(flow) + flow.layers.len() as u64 * (flow.dim as u64 + LAYER_OVERHEAD)
}

/// Operations counted for each layer's function beside its per-dimension work.
pub const LAYER_OVERHEAD: u64 = 8;

/// Whether `flow` is small enough for straight-line code.
pub fn fits(flow: &Flow) -> bool {
    operations(flow) <= MAX_OPERATIONS
}

/// The module for a validated flow: the template plus [`flow_functions`].
pub(super) fn generate(flow: &Flow) -> KernelSource {
    let mut weights = Vec::new();
    let base_off = push_base(&mut weights, &flow.base);
    let wgsl = header(flow, base_off, WORKGROUP_ROWS) + TEMPLATE + ROW_ENTRIES + "\n" + &flow_functions(flow);
    let loop_iterations = limiter_count(io_loop_iterations(flow.dim), 0);
    KernelSource {
        form: KernelForm::Unrolled,
        group_rows: WORKGROUP_ROWS,
        wgsl,
        weights,
        plan: vec![0],
        loop_iterations,
    }
}

/// WGSL defining `flow_to_latent() -> vec2<f32>` and `flow_to_data() -> vec2<f32>` (the
/// log-det as (hi, lo), see `split_add` in shaders/math.wgsl) for `flow`, one
/// function per layer and direction (naga's WGSL front end takes time quadratic in the
/// number of expressions of one function: 9 s for 55k multiply-adds in one function).
pub fn flow_functions(flow: &Flow) -> String {
    let mut out = String::new();
    for (i, layer) in flow.layers.iter().enumerate() {
        for (to_latent, direction) in [(true, "to_latent"), (false, "to_data")] {
            let _ = writeln!(out, "fn layer{i}_{direction}(acc: vec2<f32>) -> vec2<f32> {{\n    var ld = acc;");
            layer_code(&mut out, layer, to_latent);
            out.push_str("    return ld;\n}\n\n");
        }
    }
    let n = flow.layers.len();
    let entry = |name: &str, doc: &str, direction: &str, order: Vec<usize>| -> String {
        let calls: String = order.iter().map(|i| format!("    ld = layer{i}_{direction}(ld);\n")).collect();
        format!("// {doc}\nfn {name}() -> vec2<f32> {{\n    var ld = vec2<f32>(0.0);\n{calls}    return ld;\n}}\n\n")
    };
    out +=
        &entry("flow_to_latent", "Data→latent in place on v; returns log|det ∂z/∂x|.", "to_latent", (0..n).collect());
    out +=
        &entry("flow_to_data", "Latent→data in place on v; returns log|det ∂x/∂z|.", "to_data", (0..n).rev().collect());
    out
}

fn layer_code(out: &mut String, layer: &Layer, to_latent: bool) {
    match layer {
        Layer::Coupling(c) => coupling_code(out, c, to_latent),
        Layer::ElementwiseAffine { direction, log_scale, shift } => {
            let forward = (*direction == Direction::DataToLatent) == to_latent;
            for (i, (&ls, &sh)) in log_scale.iter().zip(shift).enumerate() {
                let (factor, shift) = (lit(ls.exp()), lit(sh));
                if forward {
                    let _ = writeln!(out, "    v[{i}] = mul_add_acc(v[{i}], {factor}, {shift});");
                } else {
                    let _ = writeln!(out, "    v[{i}] = (v[{i}] - {shift}) * {};", lit((-ls).exp()));
                }
            }
            let sum: f64 = log_scale.iter().sum();
            let (hi, lo) = split(if forward { sum } else { -sum });
            let _ = writeln!(out, "    ld += vec2<f32>({}, {});", lit(hi), lit(lo));
        }
        Layer::Permutation { perm } => {
            out.push_str("    let p = v;\n");
            for (j, &p) in perm.iter().enumerate() {
                if to_latent {
                    let _ = writeln!(out, "    v[{j}] = p[{p}];");
                } else {
                    let _ = writeln!(out, "    v[{p}] = p[{j}];");
                }
            }
        }
    }
}

fn coupling_code(out: &mut String, c: &Coupling, to_latent: bool) {
    let pruned = c.pruned_conditioner();
    let d_tr = pruned.transformed.len();
    let input: Vec<String> = pruned.identity.iter().map(|f| format!("v[{f}]")).collect();
    let mut region = vec![String::new(); 2 * d_tr];
    for (n, net) in pruned.nets.iter().enumerate() {
        let outputs = net_code(out, net, &input, &format!("n{n}"));
        for (k, name) in outputs.into_iter().enumerate() {
            region[net.region_offset + k] = name;
        }
    }
    let forward = (c.direction == Direction::DataToLatent) == to_latent;
    for (k, &f) in pruned.transformed.iter().enumerate() {
        let (t, u) = (&region[k], &region[d_tr + k]);
        // log f, and the factor: f towards the latent side of the stored map, 1/f back, each
        // rounded once where it can be (e^{−l} rather than 1/e^l, sigmoid's f itself)
        let l = match &c.scale {
            ScaleFn::Exp => u.clone(),
            ScaleFn::TanhExp { alpha } => format!("{} * tanh_safe({u})", lit(alpha[f])),
            ScaleFn::Sigmoid { offset, eps } => {
                let _ = writeln!(out, "    let f{k} = sigmoid({u} + {}) + {};", lit(*offset), lit(*eps));
                format!("log_acc(f{k})")
            }
            ScaleFn::SoftClampExp { bound } => format!("{} * tanh_safe({u} * {})", lit(*bound), lit(1.0 / *bound)),
        };
        let _ = writeln!(out, "    let l{k} = {l};");
        let factor = match (&c.scale, forward) {
            (ScaleFn::Sigmoid { .. }, true) => format!("f{k}"),
            (ScaleFn::Sigmoid { .. }, false) => format!("recip(f{k})"),
            (_, true) => format!("exp_acc(l{k})"),
            (_, false) => format!("exp_acc(-l{k})"),
        };
        if forward {
            let _ = writeln!(out, "    v[{f}] = mul_add_acc(v[{f}], {factor}, {t});\n    ld = split_add(ld, l{k});");
        } else {
            let _ = writeln!(out, "    v[{f}] = (v[{f}] - {t}) * {factor};\n    ld = split_add(ld, -l{k});");
        }
    }
}

/// Emits one net as `let` bindings; returns the names of its outputs.
fn net_code(out: &mut String, net: &PrunedNet, input: &[String], prefix: &str) -> Vec<String> {
    let mut slots: [Vec<String>; 4] = Default::default(); // A, B, C, Output
    let index = |s: Slot| match s {
        Slot::A => 0,
        Slot::B => 1,
        Slot::C => 2,
        Slot::Output => 3,
        Slot::Input => unreachable!("nets never write their input"),
    };
    for (k, step) in net.schedule().iter().enumerate() {
        let mut src = match step.src {
            Slot::Input => input.to_vec(),
            s => slots[index(s)].clone(),
        };
        if step.pre_activation {
            let names: Vec<String> = (0..src.len()).map(|i| format!("{prefix}c{k}_{i}")).collect();
            for (name, x) in names.iter().zip(&src) {
                let _ = writeln!(out, "    let {name} = {};", activation(net.activation, x));
            }
            src = names;
        }
        let l = &net.linears[step.linear];
        let previous = if step.accumulate { slots[index(step.dst)].clone() } else { Vec::new() };
        let mut outputs = Vec::with_capacity(l.outputs);
        for o0 in (0..l.outputs).step_by(GROUP) {
            let group: Vec<usize> = (o0..l.outputs.min(o0 + GROUP)).collect();
            let name = format!("{prefix}h{k}_{}", o0 / GROUP);
            let bias = vector(group.iter().map(|&o| lit(l.bias[o])));
            let sum = format!("({})", matrix_rows(l, &group, &src));
            let total = if previous.is_empty() {
                format!("{sum} + {bias}")
            } else {
                format!("{sum} + ({bias} + {})", vector(group.iter().map(|&o| previous[o].clone())))
            };
            let _ = writeln!(out, "    let {name}z = {total};");
            let value = match step.post {
                Post::None => format!("{name}z"),
                Post::Activation => vector_activation(net.activation, &format!("{name}z"), group.len()),
                Post::Output if net.output == OutputFn::Tanh => vector(
                    (0..group.len()).map(|c| format!("tanh_safe({})", component(&format!("{name}z"), group.len(), c))),
                ),
                Post::Output => format!("{name}z"),
            };
            let _ = writeln!(out, "    let {name} = {value};");
            outputs.extend((0..group.len()).map(|c| component(&name, group.len(), c)));
        }
        slots[index(step.dst)] = outputs;
    }
    slots[3].clone()
}

/// Outputs computed together as one WGSL vector (fewer, wider instructions for the shader
/// compilers; llvmpipe splits them into the same per-lane FMAs).
const GROUP: usize = 4;

/// Independent multiply-add chains per output: `Σ_i W[o, i]·x_i` is summed as CHAINS partial
/// sums over every CHAINS-th input, then added. Rounding error grows with the length of a chain,
/// and devices may compute WGSL's `fma` unfused (lavapipe does), so shorter chains keep the
/// Linears closer to the float32 accuracy of a fused GEMM (tests/accuracy.rs).
const CHAINS: usize = 2;

/// `Σ_i W[group, i]·x_i` for a group of outputs, as CHAINS chains of vector fma over the inputs
/// in order, added at the end.
fn matrix_rows(l: &Linear, group: &[usize], x: &[String]) -> String {
    let zero = if group.len() == 1 { "0.0".to_owned() } else { format!("vec{}f(0.0)", group.len()) };
    let mut chains = vec![zero; CHAINS.min(x.len()).max(1)];
    for (i, xi) in x.iter().enumerate() {
        let w = vector(group.iter().map(|&o| lit(l.weight[o * l.inputs + i])));
        let xv = if group.len() == 1 { xi.clone() } else { format!("vec{}f({xi})", group.len()) };
        let c = i % chains.len();
        chains[c] = format!("fma({xv}, {w}, {})", chains[c]);
    }
    chains.join(" + ")
}

/// A WGSL `vecNf` of the scalar expressions (or the scalar itself when there is one).
fn vector(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    if items.len() == 1 {
        items[0].clone()
    } else {
        format!("vec{}f({})", items.len(), items.join(", "))
    }
}

/// Component `c` of a value of `n` components named `name`.
fn component(name: &str, n: usize, c: usize) -> String {
    if n == 1 {
        name.to_owned()
    } else {
        format!("{name}.{}", ["x", "y", "z", "w"][c])
    }
}

/// The hidden activation of a bound value of `n` components.
fn vector_activation(a: Activation, z: &str, n: usize) -> String {
    let zero = if n == 1 { "0.0".to_owned() } else { format!("vec{n}f(0.0)") };
    match a {
        Activation::Relu => format!("max({z}, {zero})"),
        Activation::LeakyRelu { negative_slope } => {
            format!("select({z} * {}, {z}, {z} >= {zero})", lit(negative_slope))
        }
        _ => vector((0..n).map(|c| activation(a, &component(z, n, c)))),
    }
}

fn activation(a: Activation, x: &str) -> String {
    match a {
        Activation::Relu => format!("max({x}, 0.0)"),
        Activation::LeakyRelu { negative_slope } => format!("leaky_relu({x}, {})", lit(negative_slope)),
        Activation::Tanh => format!("tanh_safe({x})"),
        Activation::Elu => format!("elu({x})"),
        Activation::Silu => format!("silu({x})"),
        Activation::Gelu => format!("gelu({x})"),
    }
}
