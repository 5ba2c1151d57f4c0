//! The interpreted kernel form: `shaders/interpreter.wgsl` reads a layer plan (u32 records)
//! and packed float32 parameters built here, so the shader's size and compile time do not
//! depend on the model; only D, the scratch width and the base are baked in as constants.

use crate::model::{Activation, Coupling, Direction, Flow, Layer, Linear, OutputFn, Post, PrunedNet, ScaleFn, Slot};

use super::abi::{self, BLOCK};
use super::source::{header, io_loop_iterations, limiter_count, push_base, KernelForm, KernelSource, TEMPLATE};

/// The plan interpreter (`flow_to_latent`, `flow_to_data` for any model).
const INTERPRETER: &str = include_str!("../../../shaders/interpreter.wgsl");

/// Packs the plan and parameters of a validated flow and assembles the module.
pub(super) fn generate(flow: &Flow) -> KernelSource {
    let mut p = Packer {
        weights: Vec::new(),
        plan: vec![0; flow.layers.len()],
        width: 1,
        loop_iterations: 0,
        nets: 0,
        slot_c: false,
        slot_fixups: Vec::new(),
        uses: Uses::default(),
    };
    for (i, layer) in flow.layers.iter().enumerate() {
        p.plan[i] = p.plan.len() as u32;
        p.layer(layer);
    }
    if p.plan.is_empty() {
        p.plan.push(0); // a flow without layers (its base alone): a binding may not be empty
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
        "const MAXW: u32 = {maxw}u;\nconst C_OFF: u32 = {}u;\nconst ST: u32 = {st}u;\nconst N_LAYERS: u32 = {}u;\n{}\n",
        3 * maxw,
        flow.layers.len(),
        p.uses.wgsl(),
    );
    let wgsl = header(flow, base_off) + &constants + TEMPLATE + "\n" + INTERPRETER;
    // the layers loop and the loops outside the layers (row I/O, base density, reduction, draws)
    let iterations = p.loop_iterations + flow.layers.len() as u64 + io_loop_iterations(flow.dim);
    let loop_iterations = limiter_count(iterations, flow.layers.len() as u64 + p.nets);
    KernelSource { form: KernelForm::Interpreted, wgsl, weights: p.weights, plan: p.plan, loop_iterations }
}

struct Packer {
    weights: Vec<f32>,
    plan: Vec<u32>,
    /// Widest scratch region needed so far.
    width: usize,
    /// Loop iterations one invocation executes in the layers' own loops.
    loop_iterations: u64,
    /// Conditioner nets packed.
    nets: u64,
    /// Whether some net needs scratch slot C (residual nets).
    slot_c: bool,
    /// Plan entries that hold a scratch offset: (index, slot, offset within the slot).
    slot_fixups: Vec<(usize, Slot, u32)>,
    /// The record, activation and scale codes the plan holds.
    uses: Uses,
}

/// Which codes of each kind the plan holds (bit k: code k), as WGSL constants: the
/// interpreter skips the code of the others (fewer instructions for the driver to compile:
/// every `activate` call site inlines every activation otherwise).
#[derive(Default)]
struct Uses {
    layers: u32,
    activations: u32,
    scales: u32,
}

impl Uses {
    fn wgsl(&self) -> String {
        format!(
            "const USES_LAYER: u32 = {}u;\nconst USES_ACT: u32 = {}u;\nconst USES_SCALE: u32 = {}u;\n",
            self.layers, self.activations, self.scales
        )
    }
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
                self.plan.extend([abi::LAYER_ELEMENTWISE, stored_to_latent(*direction), ls, sh]);
                self.uses.layers |= 1 << abi::LAYER_ELEMENTWISE;
            }
            Layer::Permutation { perm } => {
                self.loop_iterations += perm.len() as u64;
                let at = self.plan.len() as u32 + 2;
                self.plan.extend([abi::LAYER_PERMUTATION, at]);
                self.uses.layers |= 1 << abi::LAYER_PERMUTATION;
                self.plan.extend(perm.iter().map(|&p| p as u32));
            }
        }
    }

    fn coupling(&mut self, c: &Coupling) {
        let pruned = c.pruned_conditioner();
        let (id, tr) = (&pruned.identity, &pruned.transformed);
        let d_tr = tr.len();
        let (scale_kind, scale_off) = match &c.scale {
            ScaleFn::Exp => (abi::SCALE_EXP, 0),
            ScaleFn::TanhExp { alpha } => (abi::SCALE_TANH_EXP, self.push(tr.iter().map(|&f| alpha[f]))),
            ScaleFn::Sigmoid { offset, eps } => (abi::SCALE_SIGMOID, self.push([*offset, *eps])),
            ScaleFn::SoftClampExp { bound } => (abi::SCALE_SOFT_CLAMP_EXP, self.push([*bound, 1.0 / *bound])),
        };
        let feat_at = self.plan.len() as u32 + 8;
        let header = [
            abi::LAYER_COUPLING,
            stored_to_latent(c.direction),
            scale_kind,
            scale_off,
            id.len() as u32,
            d_tr as u32,
            pruned.nets.len() as u32,
            feat_at,
        ];
        self.plan.extend(header);
        self.uses.layers |= 1 << abi::LAYER_COUPLING;
        self.uses.scales |= 1 << scale_kind;
        self.plan.extend(id.iter().chain(tr).map(|&f| f as u32));
        self.width = self.width.max(pad(id.len()));
        self.loop_iterations += (pad(id.len()) + d_tr) as u64 + pruned.nets.len() as u64;
        for net in &pruned.nets {
            self.net(net);
        }
    }

    fn net(&mut self, net: &PrunedNet) {
        let (act, slope) = match net.activation {
            Activation::Relu => (abi::ACT_RELU, 0.0),
            Activation::LeakyRelu { negative_slope } => (abi::ACT_LEAKY_RELU, negative_slope as f32),
            Activation::Tanh => (abi::ACT_TANH, 0.0),
            Activation::Elu => (abi::ACT_ELU, 0.0),
            Activation::Silu => (abi::ACT_SILU, 0.0),
            Activation::Gelu => (abi::ACT_GELU, 0.0),
        };
        let output = if net.output == OutputFn::Tanh { abi::ACT_TANH } else { abi::ACT_IDENTITY };
        let schedule = net.schedule();
        self.plan.extend([schedule.len() as u32, slope.to_bits()]);
        self.loop_iterations += 1 + schedule.len() as u64;
        self.nets += 1;
        let mut records = Vec::with_capacity(schedule.len());
        for step in &schedule {
            let l = &net.linears[step.linear];
            let padded = pad(l.outputs);
            let dst_end = if step.dst == Slot::Output { net.region_offset + padded } else { padded };
            self.width = self.width.max(dst_end).max(pad(l.inputs));
            self.slot_c |= step.pre_activation;
            let (w, b) = self.pack_linear(l, padded);
            let post = match step.post {
                Post::None => abi::ACT_IDENTITY,
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
            let pre = if step.pre_activation { act } else { abi::ACT_IDENTITY };
            let at = self.plan.len();
            self.slot_fixups.push((at + 4, step.src, 0));
            let dst_offset = if step.dst == Slot::Output { net.region_offset as u32 } else { 0 };
            self.slot_fixups.push((at + 5, step.dst, dst_offset));
            // src and dst are filled in by `generate` once the scratch width is known
            self.plan.extend([n_in as u32, n_out as u32, w, b, 0, 0, pre, post, u32::from(step.accumulate)]);
            self.uses.activations |= (1 << pre) | (1 << post);
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
