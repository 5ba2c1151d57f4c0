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

/// How `--device all` treats each adapter of [`adapters`] (given their infos): `None` for one
/// it runs, `Some(k)` for one that is adapter k's device under a less preferred backend. wgpu
/// lists a GPU once per backend that drives it (llvmpipe under Vulkan and GL; a desktop GPU
/// under Vulkan and GL): adapters of the same type and name (a GL renderer string's
/// "/PCIe/SSE2"-style suffix ignored) under different backends are one device, run through
/// the best backend by [`adapter_rank`] (ties: the first listed). Adapters of one backend are
/// never merged: two cards of one model are two devices.
pub fn merged_into(infos: &[wgpu::AdapterInfo]) -> Vec<Option<usize>> {
    let key = |info: &wgpu::AdapterInfo| {
        (info.device_type, info.name.split('/').next().unwrap_or_default().trim().to_owned())
    };
    let order = |k: usize| (adapter_rank(&infos[k]), k);
    (0..infos.len())
        .map(|k| {
            (0..infos.len())
                .filter(|&j| infos[j].backend != infos[k].backend && key(&infos[j]) == key(&infos[k]))
                .min_by_key(|&j| order(j))
                .filter(|&j| order(j) < order(k))
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::merged_into;
    use wgpu::{AdapterInfo, Backend, DeviceType};

    fn info(name: &str, device_type: DeviceType, backend: Backend) -> AdapterInfo {
        AdapterInfo { name: name.into(), ..AdapterInfo::new(device_type, backend) }
    }

    /// Issue #31: `--device all` split one CPU emulation across its Vulkan and GL adapters.
    #[test]
    fn one_device_under_two_backends_runs_once_through_the_better_one() {
        let llvmpipe = "llvmpipe (LLVM 15.0.6, 256 bits)";
        // GL listed first: the Vulkan adapter is still the one kept
        let infos = [info(llvmpipe, DeviceType::Cpu, Backend::Gl), info(llvmpipe, DeviceType::Cpu, Backend::Vulkan)];
        assert_eq!(merged_into(&infos), vec![Some(1), None]);
        // a desktop GPU under Vulkan and GL (GL's renderer string carries a suffix), and an
        // integrated one under Vulkan only
        let infos = [
            info("NVIDIA GeForce RTX 3080", DeviceType::DiscreteGpu, Backend::Vulkan),
            info("Intel(R) UHD Graphics 770", DeviceType::IntegratedGpu, Backend::Vulkan),
            info("NVIDIA GeForce RTX 3080/PCIe/SSE2", DeviceType::DiscreteGpu, Backend::Gl),
        ];
        assert_eq!(merged_into(&infos), vec![None, None, Some(0)]);
    }

    #[test]
    fn two_cards_of_one_model_are_two_devices() {
        let h100 = "NVIDIA H100 80GB HBM3";
        let infos = [
            info(h100, DeviceType::DiscreteGpu, Backend::Vulkan),
            info(h100, DeviceType::DiscreteGpu, Backend::Vulkan),
            info(h100, DeviceType::DiscreteGpu, Backend::Gl),
        ];
        assert_eq!(merged_into(&infos), vec![None, None, Some(0)]);
        // a name shared by a CPU emulation and a GPU does not merge them
        let infos =
            [info("same", DeviceType::DiscreteGpu, Backend::Vulkan), info("same", DeviceType::Cpu, Backend::Gl)];
        assert_eq!(merged_into(&infos), vec![None, None]);
    }
}
