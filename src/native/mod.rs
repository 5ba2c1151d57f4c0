//! The native float32 CPU engine (`--device native`): the whole flow fused per tile of
//! [`TILE_ROWS`] rows held in cache, feature-major, mask-pruned like the GPU kernel, tiles in
//! parallel with rayon.
//!
//! Data flow for one tile: transpose the rows `[rows, D]` (float32 as they are, float64
//! rounded) into a float32 feature-major tile `[D][rows]` (rows with NaN/±Inf are zeroed and flagged) → per layer:
//! gather the identity features, run each conditioner net as matrix products (`gemm` crate,
//! runtime-dispatched AVX-512/AVX2/NEON kernels) plus fused bias+activation passes
//! ([`kernels`]), then the affine update of the transformed features and the log-det → the
//! base density → transpose back to rows of the caller's precision, NaN for flagged rows.
//! log p is formed in float64 and each tile's finite values are summed in float64 before
//! rounding, so the reduction is the same for float32 and float64 outputs.

pub mod kernels;

use std::sync::Arc;

use rayon::prelude::*;

use crate::engine::{thread_count, Engine, LogLikelihoodSum, Pass};
use crate::error::Result;
use crate::model::{self, Base, Coupling, Direction, Flow, Layer, Linear, OutputFn, Post, ScaleFn, Slot};
use crate::real::{Batch, Io, Real};
use crate::sample::{row_normals, Draw, TemperedBase};
use kernels::LogScale;

/// Rows per tile: one tile's activations stay in L1/L2 (32×256 floats = 32 KiB).
pub const TILE_ROWS: usize = 256;

const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// The native float32 engine for one flow.
pub struct NativeEngine {
    flow: Arc<Flow>,
    plan: Plan,
    /// Why `--device auto` chose this engine, shown in its name.
    reason: Option<String>,
}

/// The flow converted for the native engine: float32 parameters, pruned nets.
struct Plan {
    dim: usize,
    steps: Vec<Step>,
    /// Base as (loc, 1/scale, Σ log scale) per feature; N(0, I) is (0, 1, 0).
    base: (Vec<f32>, Vec<f32>, f64),
    /// Widest hidden layer, widest identity set, widest conditioner output region.
    widths: Widths,
}

#[derive(Clone, Copy, Default)]
struct Widths {
    hidden: usize,
    identity: usize,
    region: usize,
}

enum Step {
    Coupling { identity: Vec<usize>, transformed: Vec<usize>, stored_to_latent: bool, scale: LogScale, nets: Vec<Net> },
    Affine { stored_to_latent: bool, log_scale: Vec<f32>, shift: Vec<f32> },
    Permutation { perm: Vec<usize> },
}

struct Net {
    /// (weight row-major [out, in], bias [out]) per Linear.
    linears: Vec<(Dense, Vec<f32>)>,
    /// Evaluation order and scratch slots (shared with the GPU engine).
    schedule: Vec<model::LinearStep>,
    activation: kernels::Activation,
    output_tanh: bool,
    region_offset: usize,
    /// Zeros, one per hidden unit: the bias of a pre-activation pass.
    zeros: Vec<f32>,
}

struct Dense {
    inputs: usize,
    outputs: usize,
    weight: Vec<f32>,
}

impl NativeEngine {
    /// Converts a validated flow to float32 and plans its pruned nets.
    pub fn new(flow: Arc<Flow>) -> Self {
        let plan = Plan::new(&flow);
        NativeEngine { flow, plan, reason: None }
    }

    /// Records why device selection picked this engine; [`Engine::name`] reports it.
    pub fn chosen_because(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Runs `pass` over the rows of `io`, tiles in parallel; for log p, adds each tile's
    /// partial sum to `sum` in row order.
    fn run_in<T: Real>(&self, pass: Pass, io: Io<'_, T>, sum: &mut LogLikelihoodSum) -> Result<()> {
        let d = self.plan.dim;
        let n = io.check(pass.maps_rows(), d)?;
        let tiles = n.div_ceil(TILE_ROWS);
        let outs: Vec<&mut [T]> = if pass.maps_rows() {
            io.rows.chunks_mut(TILE_ROWS * d).collect()
        } else {
            (0..tiles).map(|_| <&mut [T]>::default()).collect()
        };
        let partials: Vec<LogLikelihoodSum> = io
            .input
            .par_chunks(TILE_ROWS * d)
            .zip(outs)
            .zip(io.per_row.par_chunks_mut(TILE_ROWS))
            .map_init(|| Workspace::new(&self.plan), |ws, ((x, o), s)| ws.run_tile(&self.plan, pass, x, o, s))
            .collect();
        if pass == Pass::LogProb {
            partials.iter().for_each(|p| sum.merge(p));
        }
        Ok(())
    }
}

impl NativeEngine {
    fn sample_in<T: Real>(&self, draw: &Draw, io: Io<'_, T>) -> Result<()> {
        let d = self.plan.dim;
        draw.check(io.check_sample(d)?)?;
        let base = TemperedBase::new(&self.flow.base, d, draw.temperature);
        io.rows.par_chunks_mut(TILE_ROWS * d).zip(io.per_row.par_chunks_mut(TILE_ROWS)).enumerate().for_each_init(
            || (Workspace::new(&self.plan), vec![0.0; d]),
            |(ws, eps), (t, (x, log_q))| {
                let first = draw.first_row + (t * TILE_ROWS) as u64;
                ws.sample_tile(&self.plan, &base, draw.seed, first, eps, x, log_q);
            },
        );
        Ok(())
    }
}

impl Engine for NativeEngine {
    fn name(&self) -> String {
        let name = format!("native (float32 CPU, {})", thread_count());
        match &self.reason {
            Some(reason) => format!("{name}; {reason}"),
            None => name,
        }
    }

    fn flow(&self) -> &Flow {
        &self.flow
    }

    fn run(&self, pass: Pass, batch: Batch<'_>, sum: &mut LogLikelihoodSum) -> Result<()> {
        crate::with_io!(batch, io => self.run_in(pass, io, sum))
    }

    /// Draws in the tiles, on every core: each tile draws its rows' ε, maps them
    /// latent→data and forms log q in float64 (see [`crate::sample`]).
    fn sample(&self, draw: &Draw, batch: Batch<'_>) -> Result<()> {
        crate::with_io!(batch, io => self.sample_in(draw, io))
    }

    /// Tiles' partial sums are added in order: chunks of whole tiles reduce alike.
    fn row_alignment(&self) -> usize {
        TILE_ROWS
    }
}

impl Plan {
    fn new(flow: &Flow) -> Self {
        let mut widths = Widths::default();
        let steps = flow.layers.iter().map(|l| Step::new(l, &mut widths)).collect();
        let base = match &flow.base {
            Base::StandardNormal => (vec![0.0; flow.dim], vec![1.0; flow.dim], 0.0),
            Base::DiagonalNormal { loc, log_scale } => {
                (f32s(loc), log_scale.iter().map(|s| (-s).exp() as f32).collect(), log_scale.iter().sum())
            }
        };
        Plan { dim: flow.dim, steps, base, widths }
    }
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

impl Step {
    fn new(layer: &Layer, widths: &mut Widths) -> Self {
        match layer {
            Layer::Coupling(c) => Step::coupling(c, widths),
            Layer::ElementwiseAffine { direction, log_scale, shift } => Step::Affine {
                stored_to_latent: *direction == Direction::DataToLatent,
                log_scale: f32s(log_scale),
                shift: f32s(shift),
            },
            Layer::Permutation { perm } => Step::Permutation { perm: perm.clone() },
        }
    }

    fn coupling(c: &Coupling, widths: &mut Widths) -> Self {
        let pruned = c.pruned_conditioner();
        let scale = match &c.scale {
            ScaleFn::Exp => LogScale::Exp,
            ScaleFn::TanhExp { alpha } => {
                LogScale::TanhExp(pruned.transformed.iter().map(|&f| alpha[f] as f32).collect())
            }
            ScaleFn::Sigmoid { offset, eps } => LogScale::Sigmoid { offset: *offset as f32, eps: *eps as f32 },
            ScaleFn::SoftClampExp { bound } => LogScale::SoftClampExp(*bound as f32),
        };
        widths.identity = widths.identity.max(pruned.identity.len());
        widths.region = widths.region.max(2 * pruned.transformed.len());
        let nets = pruned.nets.iter().map(|n| Net::new(n, widths)).collect();
        Step::Coupling {
            identity: pruned.identity,
            transformed: pruned.transformed,
            stored_to_latent: c.direction == Direction::DataToLatent,
            scale,
            nets,
        }
    }
}

impl Net {
    fn new(net: &model::PrunedNet, widths: &mut Widths) -> Self {
        let last = net.linears.len() - 1;
        for l in &net.linears[..last] {
            widths.hidden = widths.hidden.max(l.outputs);
        }
        let activation = match net.activation {
            model::Activation::Relu => kernels::Activation::Relu,
            model::Activation::LeakyRelu { negative_slope } => kernels::Activation::LeakyRelu(negative_slope as f32),
            model::Activation::Tanh => kernels::Activation::Tanh,
            model::Activation::Elu => kernels::Activation::Elu,
            model::Activation::Silu => kernels::Activation::Silu,
            model::Activation::Gelu => kernels::Activation::Gelu,
        };
        let dense =
            |l: &Linear| (Dense { inputs: l.inputs, outputs: l.outputs, weight: f32s(&l.weight) }, f32s(&l.bias));
        Net {
            linears: net.linears.iter().map(dense).collect(),
            schedule: net.schedule(),
            activation,
            output_tanh: net.output == OutputFn::Tanh,
            region_offset: net.region_offset,
            zeros: vec![0.0; widths.hidden],
        }
    }
}

/// One thread's scratch: all buffers are feature-major with a stride of `rows`.
struct Workspace {
    /// The tile being transformed, `[D][rows]`.
    v: Vec<f32>,
    /// Permutation scratch, `[D][rows]`.
    swap: Vec<f32>,
    /// Gathered identity features, `[d_id][rows]`.
    cond_in: Vec<f32>,
    /// Hidden scratch slots A, B, C, `[width][rows]` each.
    hidden: [Vec<f32>; 3],
    /// Conditioner outputs `[shifts (d_tr); log f (d_tr)][rows]`.
    region: Vec<f32>,
    /// Running log-det per row (nats), accumulated in float64: it sums one term per transformed
    /// feature and layer, and float32 accumulation was the largest error of log p on trained
    /// models (tests/accuracy.rs).
    logdet: Vec<f64>,
    /// Σ of squared standardized latents per row, float64 for the same reason.
    quad: Vec<f64>,
    /// Rows whose input was not finite.
    bad: Vec<bool>,
}

impl Workspace {
    fn new(plan: &Plan) -> Self {
        let tile = |width: usize| vec![0.0f32; width.max(1) * TILE_ROWS];
        Workspace {
            v: tile(plan.dim),
            swap: tile(plan.dim),
            cond_in: tile(plan.widths.identity),
            hidden: [tile(plan.widths.hidden), tile(plan.widths.hidden), tile(plan.widths.hidden)],
            region: tile(plan.widths.region),
            logdet: vec![0.0; TILE_ROWS],
            quad: vec![0.0; TILE_ROWS],
            bad: vec![false; TILE_ROWS],
        }
    }

    /// Runs one tile: `input` `[rows, D]` → `out` `[rows, D]` (unless log p) and `per_row`
    /// `[rows]`; returns the tile's log-likelihood reduction (empty unless log p).
    fn run_tile<T: Real>(
        &mut self,
        plan: &Plan,
        pass: Pass,
        input: &[T],
        out: &mut [T],
        per_row: &mut [T],
    ) -> LogLikelihoodSum {
        let rows = per_row.len();
        self.load(input, plan.dim, rows);
        self.logdet[..rows].fill(0.0);
        if pass == Pass::ToData {
            for step in plan.steps.iter().rev() {
                self.step(step, rows, false);
            }
        } else {
            for step in &plan.steps {
                self.step(step, rows, true);
            }
        }
        if pass == Pass::LogProb {
            self.log_prob(plan, rows, per_row)
        } else {
            self.store(plan.dim, rows, out, per_row);
            LogLikelihoodSum::default()
        }
    }

    /// Draws rows `first_row…` of `seed`'s stream (`eps`: one row of scratch, D), maps them
    /// latent→data into `out` `[rows, D]` and writes log q `[rows]`.
    #[allow(clippy::too_many_arguments)]
    fn sample_tile<T: Real>(
        &mut self,
        plan: &Plan,
        base: &TemperedBase,
        seed: u64,
        first_row: u64,
        eps: &mut [f64],
        out: &mut [T],
        log_q: &mut [T],
    ) {
        let (d, rows) = (plan.dim, log_q.len());
        for r in 0..rows {
            row_normals(seed, first_row + r as u64, eps);
            // quad holds the log base density of the row here
            self.quad[r] = base.to_latent(eps);
            for (i, &z) in eps.iter().enumerate() {
                self.v[i * rows + r] = z as f32;
            }
            self.bad[r] = false;
        }
        self.logdet[..rows].fill(0.0);
        for step in plan.steps.iter().rev() {
            self.step(step, rows, false);
        }
        self.store(d, rows, out, log_q);
        for ((q, &quad), &ld) in log_q[..rows].iter_mut().zip(&self.quad[..rows]).zip(&self.logdet[..rows]) {
            *q = T::of(quad - ld);
        }
    }

    /// Transposes `[rows, D]` into `v` `[D][rows]` float32, zeroing non-finite rows.
    fn load<T: Real>(&mut self, input: &[T], d: usize, rows: usize) {
        for (r, x) in input.chunks_exact(d).enumerate() {
            let bad = x.iter().any(|v| !v.is_finite());
            self.bad[r] = bad;
            for (i, &value) in x.iter().enumerate() {
                self.v[i * rows + r] = if bad { 0.0 } else { value.to_f32() };
            }
        }
    }

    /// Transposes `v` back into rows and copies the log-det; flagged rows get NaN.
    fn store<T: Real>(&self, d: usize, rows: usize, out: &mut [T], logdet: &mut [T]) {
        for (r, (o, ld)) in out.chunks_exact_mut(d).zip(logdet.iter_mut()).enumerate() {
            if self.bad[r] {
                o.fill(T::nan());
                *ld = T::nan();
                continue;
            }
            for (i, value) in o.iter_mut().enumerate() {
                *value = T::from_f32(self.v[i * rows + r]);
            }
            *ld = T::of(self.logdet[r]);
        }
    }

    /// log p = log base(z) + log-det in float64, NaN for flagged rows; returns the tile's sum
    /// of the float64 values.
    fn log_prob<T: Real>(&mut self, plan: &Plan, rows: usize, logp: &mut [T]) -> LogLikelihoodSum {
        let d = plan.dim;
        let quad = &mut self.quad[..rows];
        quad.fill(0.0);
        let (loc, inv_scale, log_scales) = &plan.base;
        kernels::add_squares(&self.v[..d * rows], rows, loc, inv_scale, quad);
        let constant = -log_scales - 0.5 * d as f64 * LN_2PI;
        let mut sum = LogLikelihoodSum::default();
        for r in 0..rows {
            let v = if self.bad[r] { f64::NAN } else { -0.5 * quad[r] + constant + self.logdet[r] };
            sum.add_rows(&[v]);
            logp[r] = T::of(v);
        }
        sum
    }

    fn step(&mut self, step: &Step, rows: usize, to_latent: bool) {
        match step {
            Step::Coupling { identity, transformed, stored_to_latent, scale, nets } => {
                for (j, &f) in identity.iter().enumerate() {
                    self.cond_in[j * rows..(j + 1) * rows].copy_from_slice(&self.v[f * rows..(f + 1) * rows]);
                }
                for net in nets {
                    self.net(net, rows);
                }
                let d_tr = transformed.len();
                let (shifts, log_f) = self.region[..2 * d_tr * rows].split_at_mut(d_tr * rows);
                kernels::log_scale(log_f, rows, scale);
                let apply_stored = *stored_to_latent == to_latent;
                for (k, &f) in transformed.iter().enumerate() {
                    kernels::affine_rows(
                        &mut self.v[f * rows..(f + 1) * rows],
                        &log_f[k * rows..(k + 1) * rows],
                        &shifts[k * rows..(k + 1) * rows],
                        &mut self.logdet[..rows],
                        apply_stored,
                    );
                }
            }
            Step::Affine { stored_to_latent, log_scale, shift } => {
                let apply_stored = *stored_to_latent == to_latent;
                for (f, (&ls, &sh)) in log_scale.iter().zip(shift).enumerate() {
                    let lf = &mut self.swap[..rows];
                    lf.fill(ls);
                    let t = &mut self.cond_in[..rows];
                    t.fill(sh);
                    kernels::affine_rows(
                        &mut self.v[f * rows..(f + 1) * rows],
                        lf,
                        t,
                        &mut self.logdet[..rows],
                        apply_stored,
                    );
                }
            }
            Step::Permutation { perm } => {
                for (j, &p) in perm.iter().enumerate() {
                    let (dst, src) = if to_latent { (j, p) } else { (p, j) };
                    self.swap[dst * rows..(dst + 1) * rows].copy_from_slice(&self.v[src * rows..(src + 1) * rows]);
                }
                let n = perm.len() * rows;
                self.v[..n].copy_from_slice(&self.swap[..n]);
            }
        }
    }

    /// Evaluates one conditioner net on `cond_in` `[d_id][rows]`, writing its outputs into
    /// `region` at the net's offset, following the net's schedule.
    fn net(&mut self, net: &Net, rows: usize) {
        for step in &net.schedule {
            let (dense, bias) = &net.linears[step.linear];
            let mut src_slot = step.src;
            if step.pre_activation {
                let n = dense.inputs * rows;
                let (src, c) = self.src_dst(step.src, Slot::C, net.region_offset, rows);
                c[..n].copy_from_slice(&src[..n]);
                kernels::bias_activate(&mut c[..n], rows, &net.zeros[..dense.inputs], net.activation);
                src_slot = Slot::C;
            }
            let (src, dst) = self.src_dst(src_slot, step.dst, net.region_offset, rows);
            let dst = &mut dst[..dense.outputs * rows];
            matmul(dense, &src[..dense.inputs * rows], rows, dst, step.accumulate);
            match step.post {
                Post::Activation => kernels::bias_activate(dst, rows, bias, net.activation),
                Post::Output => kernels::bias_output(dst, rows, bias, net.output_tanh),
                Post::None => kernels::bias_output(dst, rows, bias, false),
            }
        }
    }

    /// Borrows a source slot and a different destination slot.
    fn src_dst(&mut self, src: Slot, dst: Slot, region_offset: usize, rows: usize) -> (&[f32], &mut [f32]) {
        let [a, b, c] = &mut self.hidden;
        let slots: [(Slot, &mut [f32]); 5] = [
            (Slot::Input, &mut self.cond_in),
            (Slot::A, a),
            (Slot::B, b),
            (Slot::C, c),
            (Slot::Output, &mut self.region[region_offset * rows..]),
        ];
        let (mut s, mut d) = (None, None);
        for (slot, buf) in slots {
            if slot == src {
                s = Some(&*buf);
            } else if slot == dst {
                d = Some(buf);
            }
        }
        match (s, d) {
            (Some(s), Some(d)) => (s, d),
            _ => unreachable!("schedules never read and write one slot"),
        }
    }
}

/// `dst [out][rows] (+)= W [out, in] · src [in][rows]`, all row-major float32; adds to `dst`
/// when `accumulate`.
fn matmul(w: &Dense, src: &[f32], rows: usize, dst: &mut [f32], accumulate: bool) {
    assert!(w.weight.len() == w.outputs * w.inputs && src.len() >= w.inputs * rows && dst.len() >= w.outputs * rows);
    // SAFETY: the assertion above keeps every access of this row-major product in bounds:
    // W is outputs×inputs (row stride inputs), src inputs×rows and dst outputs×rows (row
    // stride rows); dst does not alias the inputs (distinct borrows).
    unsafe {
        gemm::gemm(
            w.outputs,
            rows,
            w.inputs,
            dst.as_mut_ptr(),
            1,
            rows as isize,
            accumulate,
            w.weight.as_ptr(),
            1,
            w.inputs as isize,
            src.as_ptr(),
            1,
            rows as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
