//! Adapters: the wgpu instance, the adapters it finds, their preference order, and opening
//! one as a device.

use crate::error::{Error, Result};

/// Creates the wgpu instance, honouring `WGPU_BACKEND` and the other `WGPU_*` variables.
pub fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle().with_env())
}

/// Every adapter, in the order `realnvp devices` numbers them; `WGPU_ADAPTER_NAME` (a
/// case-insensitive substring) filters them.
pub fn adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    let all = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    match std::env::var("WGPU_ADAPTER_NAME") {
        Ok(name) if !name.is_empty() => {
            let name = name.to_lowercase();
            all.into_iter().filter(|a| a.get_info().name.to_lowercase().contains(&name)).collect()
        }
        _ => all,
    }
}

/// Preference order of adapters (lower is better): hardware first, CPU emulation last; within
/// a type, Vulkan/Metal/DX12 before GL (llvmpipe's GL backend takes 20–54 s per shader).
fn adapter_rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    (kind, u8::from(info.backend == wgpu::Backend::Gl))
}

/// The index of the preferred adapter of `adapters` by [`adapter_rank`] (CPU emulation
/// included, last); `None` when there are none.
pub fn best_adapter(adapters: &[wgpu::Adapter]) -> Option<usize> {
    (0..adapters.len()).min_by_key(|&k| adapter_rank(&adapters[k].get_info()))
}

/// True for adapters that emulate a GPU on the CPU (lavapipe, llvmpipe, WARP).
pub fn is_cpu_adapter(info: &wgpu::AdapterInfo) -> bool {
    info.device_type == wgpu::DeviceType::Cpu
}

/// One line per adapter for `realnvp devices`.
pub fn describe_adapter(index: usize, adapter: &wgpu::Adapter) -> String {
    let info = adapter.get_info();
    let limits = adapter.limits();
    let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
    format!(
        "gpu:{index}  {}  backend={:?} type={:?} driver=\"{} {}\"  max_storage_binding={} MiB max_buffer={} MiB max_workgroups_per_dim={} max_invocations={} timestamps={}",
        info.name,
        info.backend,
        info.device_type,
        info.driver,
        info.driver_info,
        limits.max_storage_buffer_binding_size >> 20,
        limits.max_buffer_size >> 20,
        limits.max_compute_workgroups_per_dimension,
        limits.max_compute_invocations_per_workgroup,
        timestamps
    )
}

/// Opens `adapter` with its own limits (the defaults cap a storage binding at 128 MiB) and
/// timestamp queries where it has them; returns whether it does.
pub fn open_device(adapter: &wgpu::Adapter, label: &str) -> Result<(wgpu::Device, wgpu::Queue, bool)> {
    let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some(label),
        required_features: if timestamps { wgpu::Features::TIMESTAMP_QUERY } else { wgpu::Features::empty() },
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .map_err(|e| Error::Gpu(format!("cannot open {}: {e}", adapter.get_info().name)))?;
    Ok((device, queue, timestamps))
}

/// True for Mesa's CPU rasterizer (lavapipe on Vulkan, llvmpipe on GL), whose compile times
/// and loop limiter the kernel choice must respect ([`super::kernel::choose`]).
pub(crate) fn is_llvmpipe(info: &wgpu::AdapterInfo) -> bool {
    info.driver.to_lowercase().contains("llvmpipe")
}
