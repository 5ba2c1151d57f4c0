//! The evaluation API shared by every engine (the float64 CPU reference and the GPU engine),
//! the batch log-likelihood reduction, and device selection from the `--device` string.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::{self, GpuEngine, GpuOptions};
use crate::model::Flow;
use crate::native::NativeEngine;
use crate::reference;
use crate::split::SplitEngine;

/// Evaluates a flow on batches of rows. Rows are row-major `[n, D]` float64 slices on the
/// host; an engine may compute in lower precision internally. Rows containing NaN/±Inf yield
/// NaN for that row only.
pub trait Engine: Send + Sync {
    /// Human-readable name of the engine and device, e.g. `cpu (float64 reference)`.
    fn name(&self) -> String;

    /// The flow this engine evaluates.
    fn flow(&self) -> &Flow;

    /// Data→latent: x `[n, D]` → z `[n, D]` and log|det ∂z/∂x| `[n]` (nats).
    fn forward_to_latent(&self, x: &[f64], z: &mut [f64], logdet: &mut [f64]) -> Result<()>;

    /// Latent→data: z `[n, D]` → x `[n, D]` and log|det ∂x/∂z| `[n]` (nats).
    fn inverse_to_data(&self, z: &[f64], x: &mut [f64], logdet: &mut [f64]) -> Result<()>;

    /// log p(x) in nats for each row of x `[n, D]` into `logp` `[n]`, and adds the batch to
    /// the running reduction `sum` (in row order, so that the result does not depend on how a
    /// file is chunked, given chunks that are multiples of [`Engine::row_alignment`]).
    fn log_prob(&self, x: &[f64], logp: &mut [f64], sum: &mut LogLikelihoodSum) -> Result<()>;

    /// Chunks handed to this engine should hold a multiple of this many rows (the GPU reduces
    /// in workgroups of 256 rows) for the reduction to be chunking-independent.
    fn row_alignment(&self) -> usize {
        1
    }
}

/// Batch reduction of per-row log-likelihoods: non-finite rows are counted, never summed.
/// Values (or per-workgroup partial sums) are added in row order in float64.
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
    pub fn add_rows(&mut self, logp: &[f64]) {
        for &v in logp {
            self.rows += 1;
            if v.is_finite() {
                self.finite_rows += 1;
                self.sum += v;
            }
        }
    }

    /// Adds a partial sum over `count` finite rows (the caller counts the rows themselves).
    pub fn add_partial(&mut self, partial: f64, count: u64) {
        self.finite_rows += count;
        self.sum += partial;
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

/// Which device to evaluate on, as given by `--device`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Device {
    /// The float64 CPU reference.
    Cpu,
    /// The native float32 SIMD engine on the CPU.
    Native,
    /// The best available device.
    Auto,
    /// The best GPU adapter, or adapter number N from `realnvp devices`.
    Gpu(Option<usize>),
    /// Every adapter, the batch split between them.
    All,
}

impl FromStr for Device {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "native" => Ok(Device::Native),
            "auto" => Ok(Device::Auto),
            "gpu" => Ok(Device::Gpu(None)),
            "all" => Ok(Device::All),
            _ => match s.strip_prefix("gpu:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(Device::Gpu(Some(n))),
                _ => Err(Error::Argument(format!("unknown device {s:?}; use cpu, native, auto, gpu, gpu:N or all"))),
            },
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Native => write!(f, "native"),
            Device::Auto => write!(f, "auto"),
            Device::Gpu(None) => write!(f, "gpu"),
            Device::Gpu(Some(n)) => write!(f, "gpu:{n}"),
            Device::All => write!(f, "all"),
        }
    }
}

/// Opens an engine for `flow` on `device`:
/// - `cpu`: the float64 reference;
/// - `native`: the float32 SIMD engine on the CPU;
/// - `auto`: the best hardware GPU adapter, else the native engine (CPU-emulated adapters
///   such as lavapipe run the WGSL kernels about 100× slower than native code, BENCHMARKS.md);
/// - `gpu`: the best adapter of any type (error if there is none); `gpu:N`: adapter N of
///   `realnvp devices`;
/// - `all`: every adapter, batches split between them in proportion to their speed.
pub fn open_engine(flow: Arc<Flow>, device: &Device, options: &GpuOptions) -> Result<Box<dyn Engine>> {
    let adapters = || gpu::adapters(&gpu::instance());
    match device {
        Device::Cpu => Ok(Box::new(CpuReference::new(flow))),
        Device::Native => Ok(Box::new(NativeEngine::new(flow))),
        Device::Auto | Device::Gpu(None) => {
            let mut adapters = adapters();
            adapters.sort_by_key(|a| gpu::adapter_rank(&a.get_info()));
            match adapters.first() {
                Some(a) if *device == Device::Auto && gpu::is_cpu_adapter(&a.get_info()) => {
                    Ok(Box::new(NativeEngine::new(flow).chosen_because(format!(
                        "no hardware GPU; native code is faster than the CPU-emulated {}",
                        a.get_info().name
                    ))))
                }
                Some(a) => Ok(Box::new(GpuEngine::new(flow, a, options)?)),
                None if *device == Device::Auto => {
                    Ok(Box::new(NativeEngine::new(flow).chosen_because("no GPU adapter found")))
                }
                None => Err(no_adapter()),
            }
        }
        Device::Gpu(Some(n)) => {
            let adapters = adapters();
            let a = adapters.get(*n).ok_or_else(|| {
                Error::Gpu(format!("no adapter gpu:{n}; `realnvp devices` lists {} adapter(s)", adapters.len()))
            })?;
            Ok(Box::new(GpuEngine::new(flow, a, options)?))
        }
        Device::All => {
            let adapters = adapters();
            if adapters.is_empty() {
                return Err(no_adapter());
            }
            let engines = adapters
                .iter()
                .map(|a| GpuEngine::new(flow.clone(), a, options).map(|e| Box::new(e) as Box<dyn Engine>))
                .collect::<Result<Vec<_>>>()?;
            Ok(Box::new(SplitEngine::new(flow, engines)?))
        }
    }
}

fn no_adapter() -> Error {
    Error::Gpu(
        "no GPU adapter found (install a Vulkan driver, e.g. mesa-vulkan-drivers for lavapipe, or use --device native)"
            .into(),
    )
}

/// The float64 CPU reference as an [`Engine`].
pub struct CpuReference {
    flow: Arc<Flow>,
}

impl CpuReference {
    /// Wraps a validated flow.
    pub fn new(flow: Arc<Flow>) -> Self {
        CpuReference { flow }
    }
}

/// "1 thread" / "N threads": the CPU engines' rayon pool, for engine names.
pub(crate) fn thread_count() -> String {
    match rayon::current_num_threads() {
        1 => "1 thread".into(),
        n => format!("{n} threads"),
    }
}

/// Checks that `input` holds `n` rows of `flow.dim` values.
pub(crate) fn check_rows(flow: &Flow, input: &[f64], n: usize) -> Result<()> {
    if input.len() != n * flow.dim {
        return Err(Error::Argument(format!(
            "input holds {} values but {n} rows of D = {} need {}",
            input.len(),
            flow.dim,
            n * flow.dim
        )));
    }
    Ok(())
}

impl Engine for CpuReference {
    fn name(&self) -> String {
        format!("cpu (float64 reference, {})", thread_count())
    }

    fn flow(&self) -> &Flow {
        &self.flow
    }

    fn forward_to_latent(&self, x: &[f64], z: &mut [f64], logdet: &mut [f64]) -> Result<()> {
        check_rows(&self.flow, x, logdet.len())?;
        check_rows(&self.flow, z, logdet.len())?;
        reference::forward_to_latent(&self.flow, x, z, logdet);
        Ok(())
    }

    fn inverse_to_data(&self, z: &[f64], x: &mut [f64], logdet: &mut [f64]) -> Result<()> {
        check_rows(&self.flow, z, logdet.len())?;
        check_rows(&self.flow, x, logdet.len())?;
        reference::inverse_to_data(&self.flow, z, x, logdet);
        Ok(())
    }

    fn log_prob(&self, x: &[f64], logp: &mut [f64], sum: &mut LogLikelihoodSum) -> Result<()> {
        check_rows(&self.flow, x, logp.len())?;
        reference::log_prob(&self.flow, x, logp);
        sum.add_rows(logp);
        Ok(())
    }
}
