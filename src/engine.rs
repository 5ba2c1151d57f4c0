//! The evaluation API every engine implements ([`Engine`]), the passes it runs ([`Pass`]),
//! the buffers of one call in either precision ([`Batch`], in [`crate::real`]), and the batch log-likelihood
//! reduction. Which engine runs on which device is decided in [`crate::device`]; this module
//! knows no engine.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::Flow;
use crate::real::{Batch, Io, Real};
use crate::sample::{row_normals, Draw, TemperedBase};

/// One pass through the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Pass {
    /// log p(x) in nats: data rows in, one value per row out (and the batch reduction).
    #[serde(rename = "log_prob")]
    LogProb,
    /// Data→latent: x → z = f(x) and log|det ∂z/∂x|.
    #[serde(rename = "forward_to_latent")]
    ToLatent,
    /// Latent→data: z → x = f⁻¹(z) and log|det ∂x/∂z|.
    #[serde(rename = "inverse_to_data")]
    ToData,
}

impl Pass {
    /// Whether the pass writes `[n, D]` output rows (not only one value per row).
    pub fn maps_rows(self) -> bool {
        self != Pass::LogProb
    }

    /// The name used on the command line and in reports: `log_prob`, `forward`, `inverse`.
    pub fn label(self) -> &'static str {
        match self {
            Pass::LogProb => "log_prob",
            Pass::ToLatent => "forward",
            Pass::ToData => "inverse",
        }
    }
}

impl std::str::FromStr for Pass {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "log_prob" => Ok(Pass::LogProb),
            "forward" => Ok(Pass::ToLatent),
            "inverse" => Ok(Pass::ToData),
            other => Err(Error::Argument(format!("unknown pass {other:?}; use log_prob, forward, inverse"))),
        }
    }
}

/// Device-side time of an engine's kernels, from GPU timestamp queries.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KernelStats {
    /// Seconds the dispatches ran on the device; `None` where the adapter has no timestamps.
    pub seconds: Option<f64>,
    /// Dispatches (one per chunk: the whole flow is one fused kernel).
    pub dispatches: u64,
    /// Rows per dispatch.
    pub chunk_rows: usize,
}

/// Evaluates a flow on batches of rows. Rows are row-major `[n, D]` slices on the host, in
/// float32 or float64; an engine may compute in lower precision internally. Rows containing
/// NaN/±Inf yield NaN for that row only.
pub trait Engine: Send + Sync {
    /// Human-readable name of the engine and device, e.g. `cpu (float64 reference)`.
    fn name(&self) -> String;

    /// The flow this engine evaluates.
    fn flow(&self) -> &Flow;

    /// Runs `pass` over the rows of `batch`. For [`Pass::LogProb`] the batch is also added to
    /// the running reduction `sum` (in row order, so that the result does not depend on how
    /// a file is chunked, given chunks that are multiples of [`Engine::row_alignment`]);
    /// other passes leave `sum` alone.
    fn run(&self, pass: Pass, batch: Batch<'_>, sum: &mut LogLikelihoodSum) -> Result<()>;

    /// Draws rows from the model ([`crate::sample`]): row i of the batch is row
    /// `draw.first_row + i` of `draw.seed`'s stream, x = f⁻¹(z) goes to the batch's `rows`
    /// `[n, D]` and log q(x) of the (tempered) model to `per_row` `[n]` (nats); `input` must
    /// be empty. The default draws ε on the host in float64 and runs [`Pass::ToData`];
    /// engines that can draw where they compute override it.
    fn sample(&self, draw: &Draw, batch: Batch<'_>) -> Result<()> {
        crate::with_io!(batch, io => sample_on_host(self, draw, io))
    }

    /// Chunks handed to this engine should hold a multiple of this many rows for the
    /// reduction to be chunking-independent.
    fn row_alignment(&self) -> usize {
        1
    }

    /// Something the user should know before the first batch (e.g. a kernel compile that
    /// takes a minute), if anything.
    fn note(&self) -> Option<String> {
        None
    }

    /// Kernel time and dispatches since the last call (GPU engines); `None` for engines whose
    /// kernels are the whole call.
    fn take_kernel_stats(&self) -> Option<KernelStats> {
        None
    }
}

/// [`Engine::sample`]'s default: ε from Philox on all cores in float64, z = μ + T·σ⊙ε
/// rounded to `T`, the engine's latent→data pass, log q = log base(z) − log|det ∂x/∂z|.
fn sample_on_host<E: Engine + ?Sized, T: Real>(engine: &E, draw: &Draw, io: Io<'_, T>) -> Result<()> {
    let flow = engine.flow();
    let d = flow.dim;
    let n = io.check_sample(d)?;
    draw.check(n)?;
    let base = TemperedBase::new(&flow.base, d, draw.temperature);
    let mut z = vec![T::zero(); n * d];
    let mut log_base = vec![0.0f64; n];
    z.par_chunks_mut(d.max(1)).zip(log_base.par_iter_mut()).enumerate().for_each_init(
        || vec![0.0; d],
        |eps, (i, (z, log_base))| {
            row_normals(draw.seed, draw.first_row + i as u64, eps);
            *log_base = base.to_latent(eps);
            z.iter_mut().zip(eps.iter()).for_each(|(o, &v)| *o = T::of(v));
        },
    );
    let to_data = Io { input: &z, rows: io.rows, per_row: &mut *io.per_row };
    engine.run(Pass::ToData, T::batch(to_data), &mut LogLikelihoodSum::default())?;
    for (log_q, &b) in io.per_row.iter_mut().zip(&log_base) {
        *log_q = T::of(b - log_q.wide());
    }
    Ok(())
}

/// The named passes, in either precision: thin conveniences over [`Engine::run`] and
/// [`Engine::sample`].
impl dyn Engine + '_ {
    /// log p(x) in nats for each row of x `[n, D]` into `logp` `[n]`; adds the batch to `sum`.
    pub fn log_prob<T: Real>(&self, x: &[T], logp: &mut [T], sum: &mut LogLikelihoodSum) -> Result<()> {
        self.run(Pass::LogProb, T::batch(Io { input: x, rows: &mut [], per_row: logp }), sum)
    }

    /// Data→latent: x `[n, D]` → z `[n, D]` and log|det ∂z/∂x| `[n]` (nats).
    pub fn forward_to_latent<T: Real>(&self, x: &[T], z: &mut [T], logdet: &mut [T]) -> Result<()> {
        self.run(Pass::ToLatent, T::batch(Io { input: x, rows: z, per_row: logdet }), &mut LogLikelihoodSum::default())
    }

    /// Rows `draw.first_row…` of the model's sample stream into x `[n, D]`, with log q(x)
    /// `[n]` (nats) of the tempered model (see [`crate::sample`]).
    pub fn sample_rows<T: Real>(&self, draw: &Draw, x: &mut [T], log_q: &mut [T]) -> Result<()> {
        self.sample(draw, T::batch(Io { input: &[], rows: x, per_row: log_q }))
    }

    /// Latent→data: z `[n, D]` → x `[n, D]` and log|det ∂x/∂z| `[n]` (nats).
    pub fn inverse_to_data<T: Real>(&self, z: &[T], x: &mut [T], logdet: &mut [T]) -> Result<()> {
        self.run(Pass::ToData, T::batch(Io { input: z, rows: x, per_row: logdet }), &mut LogLikelihoodSum::default())
    }
}

/// Batch reduction of per-row log-likelihoods: non-finite rows are counted, never summed.
/// Values (or per-tile / per-workgroup partial sums) are added in row order in float64.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogLikelihoodSum {
    /// Rows seen.
    pub rows: u64,
    /// Rows whose log p is finite.
    pub finite_rows: u64,
    /// Sum of the finite log p values (nats).
    pub sum: f64,
}

impl LogLikelihoodSum {
    /// Adds per-row log p values in order.
    pub fn add_rows<T: Real>(&mut self, logp: &[T]) {
        for &v in logp {
            self.rows += 1;
            if v.is_finite() {
                self.finite_rows += 1;
                self.sum += v.wide();
            }
        }
    }

    /// Adds a partial sum over `count` finite rows (the caller counts the rows themselves).
    pub fn add_partial(&mut self, partial: f64, count: u64) {
        self.finite_rows += count;
        self.sum += partial;
    }

    /// Adds another reduction of the rows that follow.
    pub fn merge(&mut self, later: &LogLikelihoodSum) {
        self.rows += later.rows;
        self.add_partial(later.sum, later.finite_rows);
    }

    /// Mean log-likelihood over finite rows in nats (NaN when there are none).
    pub fn mean(&self) -> f64 {
        if self.finite_rows == 0 {
            f64::NAN
        } else {
            self.sum / self.finite_rows as f64
        }
    }
}

/// "1 thread" / "N threads": the CPU engines' rayon pool, for engine names.
pub(crate) fn thread_count() -> String {
    match rayon::current_num_threads() {
        1 => "1 thread".into(),
        n => format!("{n} threads"),
    }
}
