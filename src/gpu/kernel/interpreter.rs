//! The interpreted kernel forms: `shaders/interpreter.wgsl` reads a layer plan (u32 records)
//! and packed float32 parameters built here, so the shader's size and compile time do not
//! depend on the model; only D, the scratch layout and the base are baked in as constants.
//! Two bodies share the plan: one row per invocation with private scratch
//! (`shaders/interpreter_rows.wgsl`, [`generate`]) and the tiled one, whose workgroup runs the
//! nets of its rows together (`shaders/interpreter_tiles.wgsl`, [`generate_tiled`]).

use crate::model::{Activation, Coupling, Direction, Flow, Layer, Linear, OutputFn, Post, PrunedNet, ScaleFn, Slot};

use super::abi::{self, BLOCK, WORKGROUP_ROWS};
use super::source::{
    header, io_loop_iterations, limiter_count, push_base, KernelForm, KernelSource, ROW_ENTRIES, TEMPLATE,
};

/// The plan interpreter's layers (`flow_to_latent`, `flow_to_data` for any model) over the
/// scratch and nets of one of the two bodies below.
const INTERPRETER: &str = include_str!("../../../shaders/interpreter.wgsl");
/// Scratch private to each row, nets run per row (entry points: [`ROW_ENTRIES`]).
const ROWS: &str = include_str!("../../../shaders/interpreter_rows.wgsl");
/// Scratch of the workgroup's tile, nets run by the tile together; with its entry points.
const TILES: &str = include_str!("../../../shaders/interpreter_tiles.wgsl");

/// A flow packed for the interpreter: its plan and parameters, the scratch layout, and the
/// loop iterations each body executes per invocation.
pub(super) struct Packed {
    weights: Vec<f32>,
    plan: Vec<u32>,
    /// WGSL constants: the scratch layout (SCRATCH, C_OFF, ST), N_LAYERS and the codes used.
    constants: String,
    base_off: Option<u32>,
    /// Scratch floats per row (`SCRATCH`).
    pub scratch_floats: usize,
    /// What llvmpipe's loop limiter counts for the row body and for the tiled body.
    rows_iterations: u64,
    tiles_iterations: u64,
}

/// Packs the plan and parameters of a validated flow.
pub(super) fn pack(flow: &Flow) -> Packed {
    let mut p = Packer {
        weights: Vec::new(),
        plan: vec![0; flow.layers.len()],
        extent: [0; 5],
        loop_iterations: 0,
        mlp_rows_iterations: 0,
        mlp_tiles_iterations: 0,
        nets: 0,
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
    // the regions one after the other, each as wide as its widest use (at least 1)
    let mut region = [0u32; 5];
    let mut scratch = 0;
    for slot in [Slot::Input, Slot::A, Slot::B, Slot::C, Slot::Output] {
        region[slot_index(slot)] = scratch;
        scratch += p.extent[slot_index(slot)].max(1) as u32;
    }
    for &(at, slot, offset) in &p.slot_fixups {
        p.plan[at] = region[slot_index(slot)] + offset;
    }
    let constants = format!(
        "const SCRATCH: u32 = {scratch}u;\nconst C_OFF: u32 = {}u;\nconst ST: u32 = {}u;\nconst N_LAYERS: u32 = {}u;\n{}\n",
        region[slot_index(Slot::C)],
        region[slot_index(Slot::Output)],
        flow.layers.len(),
        p.uses.wgsl(),
    );
    // the layers loop and the loops outside the layers (row I/O, base density, reduction, draws)
    let outside = p.loop_iterations + flow.layers.len() as u64 + io_loop_iterations(flow.dim);
    let blocks = flow.layers.len() as u64 + p.nets;
    Packed {
        weights: p.weights,
        plan: p.plan,
        constants,
        base_off,
        scratch_floats: scratch as usize,
        rows_iterations: limiter_count(outside + p.mlp_rows_iterations, blocks),
        // the tiled entry points also zero the rows past the chunk's end
        tiles_iterations: limiter_count(outside + flow.dim as u64 + p.mlp_tiles_iterations, blocks),
    }
}

/// The row-per-invocation interpreter for a validated flow.
pub(super) fn generate(flow: &Flow) -> KernelSource {
    let packed = pack(flow);
    let wgsl = header(flow, packed.base_off, WORKGROUP_ROWS)
        + &packed.constants
        + TEMPLATE
        + ROW_ENTRIES
        + "\n"
        + INTERPRETER
        + ROWS;
    KernelSource {
        form: KernelForm::Interpreted,
        group_rows: WORKGROUP_ROWS,
        wgsl,
        weights: packed.weights,
        plan: packed.plan,
        loop_iterations: packed.rows_iterations,
    }
}

/// The tiled interpreter for a packed flow: workgroups of `invocations` take tiles of
/// `tile_rows` ≤ `invocations` rows (chosen by src/gpu/kernel/tiled.rs).
pub(super) fn generate_tiled(flow: &Flow, packed: Packed, tile_rows: usize, invocations: usize) -> KernelSource {
    let wgsl = header(flow, packed.base_off, tile_rows)
        + &packed.constants
        + &format!("const INV: u32 = {invocations}u;\n")
        + TEMPLATE
        + "\n"
        + INTERPRETER
        + TILES;
    KernelSource {
        form: KernelForm::Tiled,
        group_rows: tile_rows,
        wgsl,
        weights: packed.weights,
        plan: packed.plan,
        loop_iterations: packed.tiles_iterations,
    }
}

struct Packer {
    weights: Vec<f32>,
    plan: Vec<u32>,
    /// Floats of each scratch region read or written so far (index [`slot_index`]).
    extent: [usize; 5],
    /// Loop iterations one invocation executes in the layers' own loops, outside the nets'
    /// matrix loops.
    loop_iterations: u64,
    /// Loop iterations of the matrix loops: one invocation per row (BLOCK outputs × BLOCK
    /// inputs per iteration), and tiled (an invocation takes ⌈outputs / 32⌉ blocks of 4 rows ×
    /// BLOCK outputs, 2 inputs per iteration, whatever the tile).
    mlp_rows_iterations: u64,
    mlp_tiles_iterations: u64,
    /// Conditioner nets packed.
    nets: u64,
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
    /// Notes that `floats` entries of `slot`'s region are read or written.
    fn uses_region(&mut self, slot: Slot, floats: usize) {
        let e = &mut self.extent[slot_index(slot)];
        *e = (*e).max(floats);
    }

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
        self.uses_region(Slot::Input, pad(id.len()));
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
            self.uses_region(step.dst, dst_end);
            self.uses_region(step.src, pad(l.inputs));
            if step.pre_activation {
                self.uses_region(Slot::C, pad(l.inputs));
            }
            let (w, b) = self.pack_linear(l, padded);
            let post = match step.post {
                Post::None => abi::ACT_IDENTITY,
                Post::Activation => act,
                Post::Output => output,
            };
            records.push((pad(l.inputs), padded, w, b, step, post));
            let blocks = (padded / BLOCK) as u64;
            self.mlp_rows_iterations += blocks * (1 + (pad(l.inputs) / BLOCK) as u64);
            self.mlp_tiles_iterations += padded.div_ceil(4 * BLOCK) as u64 * (1 + (pad(l.inputs) / 2) as u64);
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
            // src and dst are filled in by `pack` once the regions' widths are known
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

/// The position of `slot`'s region in the scratch, first to last.
fn slot_index(slot: Slot) -> usize {
    match slot {
        Slot::Input => 0,
        Slot::A => 1,
        Slot::B => 2,
        Slot::C => 3,
        Slot::Output => 4,
    }
}

/// Rounds up to a multiple of BLOCK.
fn pad(n: usize) -> usize {
    n.div_ceil(BLOCK) * BLOCK
}

fn stored_to_latent(d: Direction) -> u32 {
    u32::from(d == Direction::DataToLatent)
}
