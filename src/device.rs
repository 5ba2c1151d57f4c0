//! Devices and the engines that run on them: the `--device` choice ([`Device`]), the one
//! place that opens an engine for a device ([`open_engine`]), and [`Flow::engine`], the
//! handle a library user holds.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::cpu::CpuReference;
use crate::engine::Engine;
use crate::error::{Error, Result};
#[cfg(feature = "gpu")]
use crate::gpu::{self, GpuEngine};
use crate::model::Flow;
use crate::native::NativeEngine;
#[cfg(feature = "gpu")]
use crate::split::SplitEngine;

/// The GPU engine's options ([`crate::gpu::GpuOptions`]).
#[cfg(feature = "gpu")]
pub use crate::gpu::GpuOptions;

/// A build without the `gpu` feature has no GPU engine, and so no GPU options: `auto` opens
/// the native engine, `gpu`, `gpu:N` and `all` are errors ([`open_engine`]).
#[cfg(not(feature = "gpu"))]
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {}

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
    /// Every distinct hardware GPU once, the batch split between them; the native engine
    /// where there is none ([`open_engine`]).
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

impl Flow {
    /// An engine for this flow on `device` with default options (see [`open_engine`]).
    pub fn engine(&self, device: &Device) -> Result<Box<dyn Engine>> {
        open_engine(Arc::new(self.clone()), device, &GpuOptions::default())
    }
}

/// Opens an engine for `flow` on `device`:
/// - `cpu`: the float64 reference;
/// - `native`: the float32 SIMD engine on the CPU;
/// - `auto`: the best hardware GPU adapter, else the native engine (CPU-emulated adapters
///   such as lavapipe run the WGSL kernels about 100× slower than native code, BENCHMARKS.md);
/// - `gpu`: the best adapter of any type (error if there is none); `gpu:N`: adapter N of
///   `realnvp devices`;
/// - `all`: every distinct hardware GPU once, through its best backend
///   ([`gpu::merged_into`]), batches split between them in proportion to their speed; the
///   native engine where the only adapters are CPU emulations or there are none.
pub fn open_engine(flow: Arc<Flow>, device: &Device, options: &GpuOptions) -> Result<Box<dyn Engine>> {
    match device {
        Device::Cpu => Ok(Box::new(CpuReference::new(flow))),
        Device::Native => Ok(Box::new(NativeEngine::new(flow))),
        #[cfg(feature = "gpu")]
        Device::Auto | Device::Gpu(None) => {
            let adapters = gpu::adapters(&gpu::instance());
            match gpu::best_adapter(&adapters).map(|k| &adapters[k]) {
                Some(a) if *device == Device::Auto && gpu::is_cpu_adapter(&a.get_info()) => {
                    Ok(Box::new(NativeEngine::new(flow).chosen_because(format!(
                        "auto: no hardware GPU; native code is faster than the CPU-emulated {}",
                        a.get_info().name
                    ))))
                }
                Some(a) => Ok(Box::new(GpuEngine::new(flow, a, options)?)),
                None if *device == Device::Auto => {
                    Ok(Box::new(NativeEngine::new(flow).chosen_because("auto: no GPU adapter found")))
                }
                None => Err(no_adapter()),
            }
        }
        #[cfg(feature = "gpu")]
        Device::Gpu(Some(n)) => {
            let adapters = gpu::adapters(&gpu::instance());
            let a = adapters.get(*n).ok_or_else(|| {
                Error::Gpu(format!("no adapter gpu:{n}; `realnvp devices` lists {} adapter(s)", adapters.len()))
            })?;
            Ok(Box::new(GpuEngine::new(flow, a, options)?))
        }
        #[cfg(feature = "gpu")]
        Device::All => {
            let adapters = gpu::adapters(&gpu::instance());
            let infos: Vec<wgpu::AdapterInfo> = adapters.iter().map(|a| a.get_info()).collect();
            let merged = gpu::merged_into(&infos);
            let hardware: Vec<usize> =
                (0..adapters.len()).filter(|&k| merged[k].is_none() && !gpu::is_cpu_adapter(&infos[k])).collect();
            if hardware.is_empty() {
                return Ok(Box::new(NativeEngine::new(flow).chosen_because(if infos.is_empty() {
                    "all: no GPU adapter".to_owned()
                } else {
                    let names: Vec<String> = infos.iter().map(|i| format!("{} ({:?})", i.name, i.backend)).collect();
                    format!(
                        "all: the only adapters are CPU emulations ({}), and native code is faster",
                        names.join(", ")
                    )
                })));
            }
            let engines = hardware
                .iter()
                .map(|&k| GpuEngine::new(flow.clone(), &adapters[k], options).map(|e| Box::new(e) as Box<dyn Engine>))
                .collect::<Result<Vec<_>>>()?;
            Ok(Box::new(SplitEngine::new(flow, engines)?))
        }
        #[cfg(not(feature = "gpu"))]
        Device::Auto => Ok(Box::new(NativeEngine::new(flow).chosen_because("auto: built without the gpu feature"))),
        #[cfg(not(feature = "gpu"))]
        Device::Gpu(_) | Device::All => {
            let _ = options;
            Err(Error::Gpu(format!(
                "--device {device} needs the GPU engine, and this build of realnvp has none (the `gpu` feature was off); use --device native or cpu"
            )))
        }
    }
}

/// The error for a GPU device on a machine without adapters.
pub fn no_adapter() -> Error {
    Error::Gpu(
        "no GPU adapter found (install a Vulkan driver, e.g. mesa-vulkan-drivers for lavapipe, or use --device native)"
            .into(),
    )
}
