//! The evaluation API shared by every engine (float64 CPU reference now; GPU beside it), and
//! device selection from the `--device` string.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::model::Flow;
use crate::reference;

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

    /// log p(x) in nats for each row of x `[n, D]` into `logp` `[n]`.
    fn log_prob(&self, x: &[f64], logp: &mut [f64]) -> Result<()>;
}

/// Which device to evaluate on, as given by `--device`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Device {
    /// The float64 CPU reference.
    Cpu,
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
            "auto" => Ok(Device::Auto),
            "gpu" => Ok(Device::Gpu(None)),
            "all" => Ok(Device::All),
            _ => match s.strip_prefix("gpu:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(Device::Gpu(Some(n))),
                _ => Err(Error::Argument(format!("unknown device {s:?}; use cpu, auto, gpu, gpu:N or all"))),
            },
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Auto => write!(f, "auto"),
            Device::Gpu(None) => write!(f, "gpu"),
            Device::Gpu(Some(n)) => write!(f, "gpu:{n}"),
            Device::All => write!(f, "all"),
        }
    }
}

/// Opens an engine for `flow` on `device`.
pub fn open_engine(flow: Arc<Flow>, device: &Device) -> Result<Box<dyn Engine>> {
    match device {
        Device::Cpu | Device::Auto => Ok(Box::new(CpuReference::new(flow))),
        other => Err(Error::Argument(format!(
            "device {other} is not available in this build: the GPU engine is not implemented yet; use --device cpu"
        ))),
    }
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

fn check_rows(flow: &Flow, input: &[f64], n: usize) -> Result<()> {
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
        format!("cpu (float64 reference, {} threads)", rayon::current_num_threads())
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

    fn log_prob(&self, x: &[f64], logp: &mut [f64]) -> Result<()> {
        check_rows(&self.flow, x, logp.len())?;
        reference::log_prob(&self.flow, x, logp);
        Ok(())
    }
}
