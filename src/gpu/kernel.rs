//! Builds the fused kernels' WGSL module for one flow: `shaders/flow.wgsl` (row I/O, base
//! density, entry points) with a body that evaluates the layers, in one of two forms
//! ([`KernelForm`]):
//!
//! - **interpreted** (`shaders/interpreter.wgsl`): one loop over layers and one MLP routine
//!   read a layer plan (u32) and packed parameters (f32) built here, so the shader's size and
//!   compile time do not depend on the model; only D, the scratch width and the base are
//!   baked in as constants;
//! - **unrolled** ([`super::unrolled`]): straight-line code with the parameters as literals,
//!   for small models (much faster where storage loads are expensive, e.g. lavapipe).
//!
//! Coupling nets are mask-pruned in both forms: the first Linear keeps only the columns of
//! the identity (b = 1) features and the last Linear only the rows of the outputs that are
//! used, so masked-out products are never computed. Every coupling's conditioner output is
//! normalised to `[shifts (d_tr), scale inputs (d_tr)]` whatever its conditioner and layout.

use crate::model::{
    Activation, Base, Coupling, Direction, Flow, Layer, Linear, OutputFn, Post, PrunedNet, ScaleFn, Slot,
};

use super::unrolled;
use crate::error::{Error, Result};

/// Row I/O, base density and entry points, loaded at build time.
pub const TEMPLATE: &str = include_str!("../../shaders/flow.wgsl");

/// The plan interpreter (`flow_to_latent`, `flow_to_data` for any model).
pub const INTERPRETER: &str = include_str!("../../shaders/interpreter.wgsl");

/// How the kernel evaluates the layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KernelForm {
    /// Unrolled when the model has at most [`unrolled::MAX_MULTIPLY_ADDS`] multiply-adds
    /// per row, else interpreted.
    #[default]
    Auto,
    /// The plan interpreter (any model).
    Interpreted,
    /// Straight-line code with literal parameters (compile time grows with the model).
    Unrolled,
}

impl KernelForm {
    /// The form actually used for `flow` (resolves `Auto`).
    pub fn resolve(self, flow: &Flow) -> KernelForm {
        match self {
            KernelForm::Auto if unrolled::fits(flow) => KernelForm::Unrolled,
            KernelForm::Auto => KernelForm::Interpreted,
            form => form,
        }
    }

    /// Lower-case name, as parsed by `FromStr`.
    pub fn name(self) -> &'static str {
        match self {
            KernelForm::Auto => "auto",
            KernelForm::Interpreted => "interpreted",
            KernelForm::Unrolled => "unrolled",
        }
    }
}

impl std::str::FromStr for KernelForm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(KernelForm::Auto),
            "interpreted" => Ok(KernelForm::Interpreted),
            "unrolled" => Ok(KernelForm::Unrolled),
            _ => Err(Error::Argument(format!("unknown kernel form {s:?}; use auto, interpreted or unrolled"))),
        }
    }
}

/// Rows per workgroup (must equal `WG` in the shader).
pub const WORKGROUP_ROWS: usize = 256;

/// Outputs per accumulator block (must equal `BLOCK` in the shader).
const BLOCK: usize = 8;

/// WGSL source, plan and packed parameters for one flow.
pub struct KernelSource {
    /// The form generated (never `Auto`).
    pub form: KernelForm,
    /// Complete WGSL module: constants plus the shader.
    pub wgsl: String,
    /// Parameters read from the `weights` binding, float32: all of them for the interpreter
    /// (at the offsets the plan names), only the base's for the unrolled form.
    pub weights: Vec<f32>,
    /// The layer plan the interpreter reads (record layout in shaders/interpreter.wgsl);
    /// `[0]` for the unrolled form (a binding may not be empty).
    pub plan: Vec<u32>,
    /// Loop iterations one invocation executes, all loops together, for the longest entry
    /// point (log p: layers, row I/O, base density and the reduction).
    pub loop_iterations: u64,
}

/// lavapipe/llvmpipe end every loop after this many iterations in total per invocation.
pub const LLVMPIPE_LOOP_LIMIT: u64 = 65_535;

/// Builds the kernel source for a validated flow in `form`.
pub fn generate(flow: &Flow, form: KernelForm) -> KernelSource {
    match form.resolve(flow) {
        KernelForm::Unrolled => generate_unrolled(flow),
        _ => generate_interpreted(flow),
    }
}

fn generate_unrolled(flow: &Flow) -> KernelSource {
    let mut weights = Vec::new();
    let base_off = push_base(&mut weights, &flow.base);
    let wgsl = header(flow, base_off) + TEMPLATE + "\n" + &unrolled::flow_functions(flow);
    // row load, store, base density, reduction (16 + 16)
    let loop_iterations = 3 * flow.dim as u64 + 32;
    KernelSource { form: KernelForm::Unrolled, wgsl, weights, plan: vec![0], loop_iterations }
}

/// Appends the diagonal base's loc and log_scale; returns the offset of loc.
fn push_base(weights: &mut Vec<f32>, base: &Base) -> Option<u32> {
    let off = weights.len() as u32;
    match base {
        Base::StandardNormal => {
            if weights.is_empty() {
                weights.push(0.0); // a binding may not be empty
            }
            None
        }
        Base::DiagonalNormal { loc, log_scale } => {
            weights.extend(loc.iter().map(|&v| v as f32).chain(log_scale.iter().map(|&s| (-s).exp() as f32)));
            Some(off)
        }
    }
}

/// Constants every form needs: D and the base distribution (its log-normalizer computed
/// in float64).
fn header(flow: &Flow, base_off: Option<u32>) -> String {
    let d = flow.dim;
    let log_scales: f64 = match &flow.base {
        Base::StandardNormal => 0.0,
        Base::DiagonalNormal { log_scale, .. } => log_scale.iter().sum(),
    };
    let norm = unrolled::split(-log_scales - 0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln());
    format!(
        "// generated for this model by src/gpu/kernel.rs\nconst D: u32 = {d}u;\nconst BASE_DIAGONAL: bool = {};\nconst BASE_LOC_OFF: u32 = {}u;\nconst BASE_LOG_NORM_HI: f32 = {};\nconst BASE_LOG_NORM_LO: f32 = {};\n",
        base_off.is_some(),
        base_off.unwrap_or(0),
        unrolled::lit(norm.0),
        unrolled::lit(norm.1),
    )
}

fn generate_interpreted(flow: &Flow) -> KernelSource {
    let mut p = Packer {
        weights: Vec::new(),
        plan: vec![0; flow.layers.len()],
        width: 1,
        loop_iterations: 0,
        slot_c: false,
        slot_fixups: Vec::new(),
    };
    for (i, layer) in flow.layers.iter().enumerate() {
        p.plan[i] = p.plan.len() as u32;
        p.layer(layer);
    }
    let base_off = push_base(&mut p.weights, &flow.base);
    let maxw = (p.width.div_ceil(BLOCK) * BLOCK) as u32;
    let st = if p.slot_c { 4 * maxw } else { 3 * maxw };
    for &(at, slot, offset) in &p.slot_fixups {
        let region = match slot {
            Slot::Input => 0,
            Slot::A => maxw,
            Slot::B => 2 * maxw,
            Slot::C => 3 * maxw,
            Slot::Output => st,
        };
        p.plan[at] = region + offset;
    }
    let constants = format!(
        "const MAXW: u32 = {maxw}u;\nconst C_OFF: u32 = {}u;\nconst ST: u32 = {st}u;\nconst N_LAYERS: u32 = {}u;\n\n",
        3 * maxw,
        flow.layers.len(),
    );
    let wgsl = header(flow, base_off) + &constants + TEMPLATE + "\n" + INTERPRETER;
    // layers loop, load, store, base density, reduction (16 + 16)
    let loop_iterations = p.loop_iterations + flow.layers.len() as u64 + 3 * flow.dim as u64 + 32;
    KernelSource { form: KernelForm::Interpreted, wgsl, weights: p.weights, plan: p.plan, loop_iterations }
}

struct Packer {
    weights: Vec<f32>,
    plan: Vec<u32>,
    /// Widest scratch region needed so far.
    width: usize,
    /// Loop iterations one invocation executes (see `KernelSource::loop_iterations`).
    loop_iterations: u64,
    /// Whether some net needs scratch slot C (residual nets).
    slot_c: bool,
    /// Plan entries that hold a scratch offset: (index, slot, offset within the slot).
    slot_fixups: Vec<(usize, Slot, u32)>,
}

impl Packer {
    fn push(&mut self, values: impl IntoIterator<Item = f64>) -> u32 {
        let offset = self.weights.len() as u32;
        self.weights.extend(values.into_iter().map(|v| v as f32));
        offset
    }

    fn layer(&mut self, layer: &Layer) {
        match layer {
            Layer::Coupling(c) => self.coupling(c),
            Layer::ElementwiseAffine { direction, log_scale, shift } => {
                self.loop_iterations += log_scale.len() as u64;
                // log scales, shifts, then e^{±log scale} computed here in float64
                let ls = self.push(log_scale.iter().copied());
                let sh = self.push(shift.iter().copied());
                self.push(log_scale.iter().map(|v| v.exp()));
                self.push(log_scale.iter().map(|v| (-v).exp()));
                self.plan.extend([1, stored_to_latent(*direction), ls, sh]);
            }
            Layer::Permutation { perm } => {
                self.loop_iterations += perm.len() as u64;
                let at = self.plan.len() as u32 + 2;
                self.plan.extend([2, at]);
                self.plan.extend(perm.iter().map(|&p| p as u32));
            }
        }
    }

    fn coupling(&mut self, c: &Coupling) {
        let pruned = c.pruned_conditioner();
        let (id, tr) = (&pruned.identity, &pruned.transformed);
        let d_tr = tr.len();
        let (scale_kind, scale_off) = match &c.scale {
            ScaleFn::Exp => (0, 0),
            ScaleFn::TanhExp { alpha } => (1, self.push(tr.iter().map(|&f| alpha[f]))),
            ScaleFn::Sigmoid { offset, eps } => (2, self.push([*offset, *eps])),
            ScaleFn::SoftClampExp { bound } => (3, self.push([*bound, 1.0 / *bound])),
        };
        let feat_at = self.plan.len() as u32 + 8;
        let header = [
            0,
            stored_to_latent(c.direction),
            scale_kind,
            scale_off,
            id.len() as u32,
            d_tr as u32,
            pruned.nets.len() as u32,
            feat_at,
        ];
        self.plan.extend(header);
        self.plan.extend(id.iter().chain(tr).map(|&f| f as u32));
        self.width = self.width.max(pad(id.len()));
        self.loop_iterations += (pad(id.len()) + d_tr) as u64 + pruned.nets.len() as u64;
        for net in &pruned.nets {
            self.net(net);
        }
    }

    fn net(&mut self, net: &PrunedNet) {
        let (act, slope) = match net.activation {
            Activation::Relu => (0, 0.0),
            Activation::LeakyRelu { negative_slope } => (1, negative_slope as f32),
            Activation::Tanh => (2, 0.0),
            Activation::Elu => (3, 0.0),
            Activation::Silu => (4, 0.0),
            Activation::Gelu => (5, 0.0),
        };
        const IDENTITY: u32 = 6;
        let output = if net.output == OutputFn::Tanh { 2 } else { IDENTITY };
        let schedule = net.schedule();
        self.plan.extend([schedule.len() as u32, slope.to_bits()]);
        self.loop_iterations += 1 + schedule.len() as u64;
        let mut records = Vec::with_capacity(schedule.len());
        for step in &schedule {
            let l = &net.linears[step.linear];
            let padded = pad(l.outputs);
            let dst_end = if step.dst == Slot::Output { net.region_offset + padded } else { padded };
            self.width = self.width.max(dst_end).max(pad(l.inputs));
            self.slot_c |= step.pre_activation;
            let (w, b) = self.pack_linear(l, padded);
            let post = match step.post {
                Post::None => IDENTITY,
                Post::Activation => act,
                Post::Output => output,
            };
            records.push((pad(l.inputs), padded, w, b, step, post));
            let blocks = (padded / BLOCK) as u64;
            self.loop_iterations += blocks * (1 + (pad(l.inputs) / BLOCK) as u64);
            if step.pre_activation {
                self.loop_iterations += pad(l.inputs) as u64;
            }
        }
        for (n_in, n_out, w, b, step, post) in records {
            let pre = if step.pre_activation { act } else { IDENTITY };
            let at = self.plan.len();
            self.slot_fixups.push((at + 4, step.src, 0));
            let dst_offset = if step.dst == Slot::Output { net.region_offset as u32 } else { 0 };
            self.slot_fixups.push((at + 5, step.dst, dst_offset));
            // src and dst are filled in by `generate` once the scratch width is known
            self.plan.extend([n_in as u32, n_out as u32, w, b, 0, 0, pre, post, u32::from(step.accumulate)]);
        }
    }

    /// Packs a (pruned) Linear transposed (weight of input i, output o at `w + i·padded + o`),
    /// inputs and outputs zero-padded to multiples of BLOCK.
    fn pack_linear(&mut self, l: &Linear, padded: usize) -> (u32, u32) {
        let mut w_vals = vec![0.0; pad(l.inputs) * padded];
        for o in 0..l.outputs {
            for i in 0..l.inputs {
                w_vals[i * padded + o] = l.weight[o * l.inputs + i];
            }
        }
        let w = self.push(w_vals);
        let mut bias = l.bias.clone();
        bias.resize(padded, 0.0);
        let b = self.push(bias);
        (w, b)
    }
}

/// Rounds up to a multiple of BLOCK.
fn pad(n: usize) -> usize {
    n.div_ceil(BLOCK) * BLOCK
}

fn stored_to_latent(d: Direction) -> u32 {
    u32::from(d == Direction::DataToLatent)
}
