//! The GPU engine on any wgpu adapter, by concern:
//!
//! - `adapter`: the instance, the adapters, their preference order;
//! - [`kernel`]: the fused WGSL kernel for one flow, interpreted or unrolled, the one place
//!   that decides the form for a model and an adapter, and the Rust↔WGSL ABI ([`kernel::abi`]);
//! - `resources`: bind group layout, pipelines, buffers and chunk slots;
//! - [`GpuEngine`]: batches streamed through the kernel, two chunks in flight;
//! - [`fma`]: the adapter's float32 FMA ceiling for `realnvp bench`.

mod adapter;
mod engine;
pub mod fma;
pub mod kernel;
mod resources;

pub use adapter::{adapters, best_adapter, describe_adapter, instance, is_cpu_adapter, merged_into, open_device};
pub use engine::{GpuEngine, GpuOptions, TierSwitch, CPU_WAIT_ROWS};
pub use kernel::{KernelForm, WORKGROUP_ROWS};
