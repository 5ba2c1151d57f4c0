//! The FMA ceiling of an adapter: a WGSL kernel of independent fused multiply-adds
//! (`shaders/fma.wgsl`), timed with GPU timestamps where the adapter has them, else by the
//! wall clock around submit and wait.

use std::time::Instant;

use crate::error::{Error, Result};

const SHADER: &str = include_str!("../../shaders/fma.wgsl");
const ITERS: u32 = 4096;
/// FLOPs per invocation: 8 vec4 FMAs (2 FLOPs each per lane) per iteration.
const FLOP_PER_INVOCATION: f64 = ITERS as f64 * 8.0 * 4.0 * 2.0;
const WORKGROUP: u32 = 256;

/// Measured float32 FMA throughput of `adapter` in GFLOP/s (best of a few dispatches that each
/// take at least ~0.1 s).
pub fn fma_gflops(adapter: &wgpu::Adapter) -> Result<f64> {
    let info = adapter.get_info();
    let (device, queue, timestamps) = super::open_device(adapter, "fma")?;
    let max_groups = adapter.limits().max_compute_workgroups_per_dimension.min(65_535);
    let source = format!("const ITERS: u32 = {ITERS}u;\n{SHADER}");
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("fma"),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("fma"),
        layout: None,
        module: &module,
        entry_point: Some("fma_main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let sink = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("sink"),
        size: u64::from(max_groups) * u64::from(WORKGROUP) * 4,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("fma"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[wgpu::BindGroupEntry { binding: 0, resource: sink.as_entire_binding() }],
    });
    let timer = timestamps.then(|| Timer::new(&device));
    let tick_s = f64::from(queue.get_timestamp_period()) * 1e-9;
    let mut groups = 16u32;
    let mut best = 0.0f64;
    let mut long_runs = 0;
    while long_runs < 3 {
        let mut encoder = device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("fma"),
                timestamp_writes: timer.as_ref().map(Timer::writes),
            });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups, 1, 1);
        }
        if let Some(t) = &timer {
            t.resolve(&mut encoder);
        }
        let start = Instant::now();
        queue.submit([encoder.finish()]);
        device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(format!("{}: {e}", info.name)))?;
        let wall = start.elapsed().as_secs_f64();
        let seconds = match &timer {
            Some(t) => t.read(&device)? as f64 * tick_s,
            None => wall,
        };
        let flops = f64::from(groups) * f64::from(WORKGROUP) * FLOP_PER_INVOCATION;
        if seconds > 0.0 {
            best = best.max(flops / seconds / 1e9);
        }
        if wall >= 0.1 || groups == max_groups {
            long_runs += 1;
        } else {
            groups = (groups * 2).min(max_groups);
        }
    }
    Ok(best)
}

/// A begin/end timestamp pair and the buffers to read it back.
struct Timer {
    set: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    readback: wgpu::Buffer,
}

impl Timer {
    fn new(device: &wgpu::Device) -> Self {
        let set = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("fma"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let buffer = |usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("fma time"),
                size: 16,
                usage,
                mapped_at_creation: false,
            })
        };
        let resolved = buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC);
        let readback = buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
        Timer { set, resolved, readback }
    }

    fn writes(&self) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: Some(0),
            end_of_pass_write_index: Some(1),
        }
    }

    fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.resolve_query_set(&self.set, 0..2, &self.resolved, 0);
        encoder.copy_buffer_to_buffer(&self.resolved, 0, &self.readback, 0, 16);
    }

    /// Ticks between the two timestamps (after the submission has completed).
    fn read(&self, device: &wgpu::Device) -> Result<u64> {
        let slice = self.readback.slice(..);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(e.to_string()))?;
        let ticks = {
            let view = slice.get_mapped_range().map_err(|e| Error::Gpu(e.to_string()))?;
            let word =
                |k: usize| view.get(8 * k..8 * k + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
            word(1).saturating_sub(word(0))
        };
        self.readback.unmap();
        Ok(ticks)
    }
}
