//! The GPU engine: wgpu context and adapter selection, the fused WGSL kernels
//! ([`kernel`]), and streaming of batches through them with two chunks in flight.
//!
//! Data flow for one batch: split into chunks of whole workgroups → for each chunk convert to
//! float32 and upload, dispatch the fused kernel, copy results to a readback buffer, submit →
//! while the next chunk computes, map the previous chunk's results, convert to float64 and add
//! its per-workgroup partial sums into the running reduction in chunk order.

pub mod fma;
pub mod kernel;
pub mod unrolled;

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use crate::engine::{Engine, LogLikelihoodSum};
use crate::error::{Error, Result};
use crate::model::Flow;

pub use kernel::WORKGROUP_ROWS;

/// Target host→device bytes of float32 input per chunk when no chunk size is forced.
const DEFAULT_CHUNK_BYTES: usize = 8 << 20;

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
pub fn adapter_rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    (kind, u8::from(info.backend == wgpu::Backend::Gl))
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

/// Options of the GPU engine.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Rows per dispatch (rounded up to whole workgroups of 256); 0 = about 8 MiB of input.
    pub chunk_rows: usize,
    /// Interpreted or unrolled kernel; `Auto` picks by model size.
    pub kernel: kernel::KernelForm,
}

/// Which fused kernel to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    LogProb,
    ToLatent,
    ToData,
}

struct Pipelines {
    log_prob: wgpu::ComputePipeline,
    to_latent: wgpu::ComputePipeline,
    to_data: wgpu::ComputePipeline,
}

/// Buffers for one chunk in flight.
struct Slot {
    input: wgpu::Buffer,
    rows_out: wgpu::Buffer,
    scalar: wgpu::Buffer,
    partials: wgpu::Buffer,
    params: wgpu::Buffer,
    readback: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
    staging: Vec<f32>,
    /// Begin/end timestamps of the chunk's dispatch, where the adapter has them.
    timer: Option<(wgpu::QuerySet, wgpu::Buffer)>,
}

/// A chunk submitted and not yet collected.
struct Pending {
    first_row: usize,
    rows: usize,
    groups: usize,
    op: Op,
    submission: wgpu::SubmissionIndex,
    mapped: mpsc::Receiver<std::result::Result<(), wgpu::BufferAsyncError>>,
}

/// Evaluates a flow with fused WGSL kernels on one wgpu adapter.
pub struct GpuEngine {
    flow: Arc<Flow>,
    info: wgpu::AdapterInfo,
    /// The kernel form compiled (interpreted or unrolled).
    form: kernel::KernelForm,
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipelines: Pipelines,
    slots: Mutex<Vec<Slot>>,
    chunk_rows: usize,
    max_groups_x: usize,
    errors: Arc<Mutex<Vec<String>>>,
    /// Nanoseconds per timestamp tick; None without timestamp queries.
    tick_ns: Option<f64>,
    /// Kernel time and dispatches since the last [`GpuEngine::take_kernel_stats`].
    stats: Mutex<KernelStats>,
}

/// Device-side time of the fused kernels, from GPU timestamp queries.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KernelStats {
    /// Seconds the dispatches ran on the device (0 without timestamp queries).
    pub seconds: f64,
    /// Dispatches (one per chunk: the whole flow is one fused kernel).
    pub dispatches: u64,
}

impl GpuEngine {
    /// Opens `adapter`, compiles the flow's kernels and uploads its parameters.
    pub fn new(flow: Arc<Flow>, adapter: &wgpu::Adapter, options: &GpuOptions) -> Result<Self> {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let llvmpipe = info.driver.to_lowercase().contains("llvmpipe");
        let multiply_adds = unrolled::multiply_adds(&flow);
        if llvmpipe
            && options.kernel.resolve(&flow) == kernel::KernelForm::Unrolled
            && multiply_adds > unrolled::LLVMPIPE_MAX_MULTIPLY_ADDS
        {
            return Err(Error::Gpu(format!(
                "the unrolled kernel of this model has {multiply_adds} multiply-adds per row; {} would compile it for many minutes (82k take about a minute), so it is refused above {}; use --kernel interpreted, or --device native",
                info.name,
                unrolled::LLVMPIPE_MAX_MULTIPLY_ADDS
            )));
        }
        let source = kernel::generate(&flow, options.kernel);
        let weight_bytes = (source.weights.len() * 4) as u64;
        if weight_bytes > limits.max_storage_buffer_binding_size {
            return Err(Error::Gpu(format!(
                "the model needs {weight_bytes} bytes of parameters but {} allows at most {} bytes per storage binding (max_storage_buffer_binding_size)",
                info.name, limits.max_storage_buffer_binding_size
            )));
        }
        if llvmpipe && source.loop_iterations > kernel::LLVMPIPE_LOOP_LIMIT {
            return Err(Error::Gpu(format!(
                "the model needs {} loop iterations per row but {} stops every shader after {} (Mesa's llvmpipe loop limiter); use --device native or a hardware GPU",
                source.loop_iterations,
                info.name,
                kernel::LLVMPIPE_LOOP_LIMIT
            )));
        }
        let (device, queue, timestamps) = open_device(adapter, "realnvp")?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        let lost = errors.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if let Ok(mut v) = lost.lock() {
                v.push(format!("device lost ({reason:?}): {msg}"));
            }
        });
        let layout = bind_group_layout(&device);
        let pipelines = create_pipelines(&device, &layout, &source.wgsl, &info.name)?;
        let upload = |label: &str, bytes: &[u8]| -> Result<wgpu::Buffer> {
            let buffer = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes.len() as u64,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: true,
            });
            buffer
                .slice(..)
                .get_mapped_range_mut()
                .map_err(|e| Error::Gpu(format!("uploading {label}: {e}")))?
                .copy_from_slice(bytes);
            buffer.unmap();
            Ok(buffer)
        };
        let weights = upload("weights", bytemuck::cast_slice(&source.weights))?;
        let plan = upload("plan", bytemuck::cast_slice(&source.plan))?;
        let chunk_rows = plan_chunk_rows(flow.dim, options.chunk_rows, &limits);
        if chunk_rows == 0 {
            return Err(Error::Gpu(format!(
                "{} cannot bind {WORKGROUP_ROWS} rows of D = {} floats (max_storage_buffer_binding_size = {} bytes)",
                info.name, flow.dim, limits.max_storage_buffer_binding_size
            )));
        }
        let max_groups_x = limits.max_compute_workgroups_per_dimension as usize;
        let model = ModelBuffers { weights, plan };
        let spec = SlotSpec { dim: flow.dim, chunk_rows, max_groups_x, timestamps };
        let slots = (0..2).map(|k| create_slot(&device, &layout, &model, &spec, k)).collect();
        let tick_ns = timestamps.then(|| f64::from(queue.get_timestamp_period()));
        let stats = Mutex::new(KernelStats::default());
        Ok(GpuEngine {
            flow,
            info,
            form: source.form,
            device,
            queue,
            pipelines,
            slots: Mutex::new(slots),
            chunk_rows,
            max_groups_x,
            errors,
            tick_ns,
            stats,
        })
    }

    /// True when kernel times come from GPU timestamp queries.
    pub fn has_timestamps(&self) -> bool {
        self.tick_ns.is_some()
    }

    /// Kernel time and dispatch count accumulated since the last call, then reset.
    pub fn take_kernel_stats(&self) -> KernelStats {
        self.stats.lock().map(|mut s| std::mem::take(&mut *s)).unwrap_or_default()
    }

    /// The adapter's description.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// Rows per dispatch.
    pub fn chunk_rows(&self) -> usize {
        self.chunk_rows
    }

    fn check_errors(&self) -> Result<()> {
        let mut errors = self.errors.lock().map_err(|_| Error::Gpu("error log poisoned".into()))?;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Gpu(format!("{}: {}", self.info.name, errors.drain(..).collect::<Vec<_>>().join("; "))))
        }
    }

    /// Runs `op` over all rows of `input` ([n, D]), two chunks in flight.
    fn run(
        &self,
        op: Op,
        input: &[f64],
        mut rows_out: Option<&mut [f64]>,
        scalar: &mut [f64],
        mut sum: Option<&mut LogLikelihoodSum>,
    ) -> Result<()> {
        let d = self.flow.dim;
        let n = scalar.len();
        check_len(input.len(), n * d)?;
        if let Some(out) = rows_out.as_deref() {
            check_len(out.len(), n * d)?;
        }
        let mut slots =
            self.slots.lock().map_err(|_| Error::Gpu("engine state poisoned by an earlier panic".into()))?;
        // Chunk c uses slot c % 2; before it is submitted, chunk c − 2 (same slot) is collected.
        // Chunks are collected in order, so partial sums are added in row order.
        let mut in_flight: VecDeque<(usize, Pending)> = VecDeque::with_capacity(2);
        for (c, first) in (0..n).step_by(self.chunk_rows).enumerate() {
            let k = c % 2;
            if in_flight.len() == 2 {
                if let Some((slot, p)) = in_flight.pop_front() {
                    self.collect(&slots[slot], p, rows_out.as_deref_mut(), scalar, sum.as_deref_mut())?;
                }
            }
            let rows = self.chunk_rows.min(n - first);
            let p = self.submit(&mut slots[k], op, &input[first * d..(first + rows) * d], first, rows)?;
            in_flight.push_back((k, p));
        }
        while let Some((slot, p)) = in_flight.pop_front() {
            self.collect(&slots[slot], p, rows_out.as_deref_mut(), scalar, sum.as_deref_mut())?;
        }
        self.check_errors()
    }

    fn submit(&self, slot: &mut Slot, op: Op, input: &[f64], first_row: usize, rows: usize) -> Result<Pending> {
        slot.staging.clear();
        // float64 → float32 on all cores: on a fast GPU a single thread would be the bottleneck
        slot.staging.par_extend(input.par_iter().map(|&v| v as f32));
        self.queue.write_buffer(&slot.input, 0, bytemuck::cast_slice(&slot.staging));
        let groups = rows.div_ceil(WORKGROUP_ROWS);
        let groups_x = groups.min(self.max_groups_x);
        let groups_y = groups.div_ceil(groups_x);
        let params = [rows as u32, groups_x as u32, 0, 0];
        self.queue.write_buffer(&slot.params, 0, bytemuck::cast_slice(&params));
        let pipeline = match op {
            Op::LogProb => &self.pipelines.log_prob,
            Op::ToLatent => &self.pipelines.to_latent,
            Op::ToData => &self.pipelines.to_data,
        };
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("chunk") });
        {
            let timestamp_writes = slot.timer.as_ref().map(|(set, _)| wgpu::ComputePassTimestampWrites {
                query_set: set,
                beginning_of_pass_write_index: Some(0),
                end_of_pass_write_index: Some(1),
            });
            let mut pass = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("fused flow"), timestamp_writes });
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &slot.bind_group, &[]);
            pass.dispatch_workgroups(groups_x as u32, groups_y as u32, 1);
        }
        let layout = ReadbackLayout::new(self.flow.dim, rows, groups);
        if op != Op::LogProb {
            encoder.copy_buffer_to_buffer(&slot.rows_out, 0, &slot.readback, 0, layout.rows_bytes);
        }
        encoder.copy_buffer_to_buffer(&slot.scalar, 0, &slot.readback, layout.scalar_at, layout.scalar_bytes);
        if op == Op::LogProb {
            encoder.copy_buffer_to_buffer(&slot.partials, 0, &slot.readback, layout.partials_at, layout.partials_bytes);
        }
        if let Some((set, resolved)) = &slot.timer {
            encoder.resolve_query_set(set, 0..2, resolved, 0);
            encoder.copy_buffer_to_buffer(resolved, 0, &slot.readback, layout.timer_at, 16);
        }
        let submission = self.queue.submit([encoder.finish()]);
        let (tx, rx) = mpsc::channel();
        slot.readback.slice(0..layout.total()).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        Ok(Pending { first_row, rows, groups, op, submission, mapped: rx })
    }

    fn collect(
        &self,
        slot: &Slot,
        p: Pending,
        rows_out: Option<&mut [f64]>,
        scalar: &mut [f64],
        sum: Option<&mut LogLikelihoodSum>,
    ) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait { submission_index: Some(p.submission), timeout: None })
            .map_err(|e| Error::Gpu(format!("{}: {e}", self.info.name)))?;
        self.check_errors()?;
        match p.mapped.recv() {
            Ok(Ok(())) => {}
            _ => return Err(Error::Gpu(format!("{}: reading results back failed", self.info.name))),
        }
        let d = self.flow.dim;
        let layout = ReadbackLayout::new(d, p.rows, p.groups);
        {
            let view = slot
                .readback
                .slice(0..layout.total())
                .get_mapped_range()
                .map_err(|e| Error::Gpu(format!("{}: {e}", self.info.name)))?;
            let floats: &[f32] = bytemuck::cast_slice(&view);
            let at = |bytes: u64| (bytes / 4) as usize;
            if p.op != Op::LogProb {
                if let Some(out) = rows_out {
                    let dst = &mut out[p.first_row * d..(p.first_row + p.rows) * d];
                    dst.par_iter_mut().zip(&floats[..p.rows * d]).for_each(|(o, &v)| *o = f64::from(v));
                }
            }
            let s = at(layout.scalar_at);
            scalar[p.first_row..p.first_row + p.rows]
                .iter_mut()
                .zip(&floats[s..s + p.rows])
                .for_each(|(o, &v)| *o = f64::from(v));
            let ticks = &view[layout.timer_at as usize..layout.total() as usize];
            let tick =
                |k: usize| ticks.get(8 * k..8 * k + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
            self.record_kernel_time(tick(0), tick(1));
            if let (Op::LogProb, Some(sum)) = (p.op, sum) {
                let q = at(layout.partials_at);
                sum.rows += p.rows as u64;
                for g in floats[q..q + 2 * p.groups].chunks_exact(2) {
                    sum.add_partial(f64::from(g[0]), g[1] as u64);
                }
            }
        }
        slot.readback.unmap();
        Ok(())
    }
}

impl GpuEngine {
    /// Adds one dispatch and its begin/end timestamps (ignored without timestamp queries).
    fn record_kernel_time(&self, begin: u64, end: u64) {
        if let Ok(mut stats) = self.stats.lock() {
            stats.dispatches += 1;
            if let Some(tick_ns) = self.tick_ns {
                stats.seconds += end.saturating_sub(begin) as f64 * tick_ns * 1e-9;
            }
        }
    }
}

/// Byte layout of a slot's readback buffer: [rows_out | scalar | partials | 2 timestamps],
/// 256-aligned.
struct ReadbackLayout {
    rows_bytes: u64,
    scalar_at: u64,
    scalar_bytes: u64,
    partials_at: u64,
    partials_bytes: u64,
    timer_at: u64,
}

impl ReadbackLayout {
    fn new(dim: usize, rows: usize, groups: usize) -> Self {
        let align = |b: u64| b.div_ceil(256) * 256;
        let rows_bytes = (rows * dim * 4) as u64;
        let scalar_at = align(rows_bytes);
        let scalar_bytes = (rows * 4) as u64;
        let partials_at = align(scalar_at + scalar_bytes);
        let partials_bytes = (groups * 8) as u64;
        let timer_at = align(partials_at + partials_bytes);
        ReadbackLayout { rows_bytes, scalar_at, scalar_bytes, partials_at, partials_bytes, timer_at }
    }

    fn total(&self) -> u64 {
        self.timer_at + 16
    }
}

fn check_len(found: usize, expected: usize) -> Result<()> {
    if found == expected {
        Ok(())
    } else {
        Err(Error::Argument(format!("buffer holds {found} values, expected {expected}")))
    }
}

fn plan_chunk_rows(dim: usize, forced: usize, limits: &wgpu::Limits) -> usize {
    let row_bytes = (dim * 4) as u64;
    let by_binding = (limits.max_storage_buffer_binding_size.min(limits.max_buffer_size) / row_bytes) as usize;
    let wanted = if forced > 0 { forced } else { DEFAULT_CHUNK_BYTES / (dim * 4) };
    let rows = wanted.min(by_binding).max(1);
    let whole = rows.div_ceil(WORKGROUP_ROWS) * WORKGROUP_ROWS;
    if whole as u64 * row_bytes > limits.max_storage_buffer_binding_size {
        whole - WORKGROUP_ROWS
    } else {
        whole
    }
}

fn storage_entry(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

fn bind_group_layout(device: &wgpu::Device) -> wgpu::BindGroupLayout {
    let uniform = wgpu::BindGroupLayoutEntry {
        binding: 5,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    };
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("flow"),
        entries: &[
            storage_entry(0, true),
            storage_entry(1, true),
            storage_entry(2, false),
            storage_entry(3, false),
            storage_entry(4, false),
            uniform,
            storage_entry(6, true),
        ],
    })
}

fn create_pipelines(
    device: &wgpu::Device,
    layout: &wgpu::BindGroupLayout,
    wgsl: &str,
    adapter: &str,
) -> Result<Pipelines> {
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    // Runtime checks stay on. Every index is in bounds by construction (see shaders/flow.wgsl),
    // but with bounds checks off (`create_shader_module_trusted`, with or without loop
    // bounding) lavapipe (Mesa 22.3.6) never completed a dispatch of these kernels; measured
    // 2026-11-29, see BENCHMARKS.md. Workgroup zero-init is off below.
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("fused flow"),
        source: wgpu::ShaderSource::Wgsl(wgsl.into()),
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some("flow"),
        bind_group_layouts: &[Some(layout)],
        immediate_size: 0,
    });
    let make = |entry: &str| {
        device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &[],
                // red_sum / red_cnt are fully written before they are read
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        })
    };
    let pipelines =
        Pipelines { log_prob: make("log_prob_main"), to_latent: make("to_latent_main"), to_data: make("to_data_main") };
    match pollster::block_on(scope.pop()) {
        None => Ok(pipelines),
        Some(e) => Err(Error::Gpu(format!("shader compilation failed on {adapter}: {e}"))),
    }
}

/// The model's parameters and plan, uploaded once.
struct ModelBuffers {
    weights: wgpu::Buffer,
    plan: wgpu::Buffer,
}

/// What every chunk slot is sized for.
#[derive(Clone, Copy)]
struct SlotSpec {
    dim: usize,
    chunk_rows: usize,
    max_groups_x: usize,
    timestamps: bool,
}

fn create_slot(
    device: &wgpu::Device,
    layout: &wgpu::BindGroupLayout,
    model: &ModelBuffers,
    spec: &SlotSpec,
    k: usize,
) -> Slot {
    let SlotSpec { dim, chunk_rows, max_groups_x, timestamps } = *spec;
    let groups = chunk_rows.div_ceil(WORKGROUP_ROWS);
    let groups_x = groups.min(max_groups_x);
    let grid_groups = groups_x * groups.div_ceil(groups_x);
    let buffer = |label: &str, size: u64, usage: wgpu::BufferUsages| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.max(16),
            usage,
            mapped_at_creation: false,
        })
    };
    use wgpu::BufferUsages as U;
    let rows_bytes = (chunk_rows * dim * 4) as u64;
    let input = buffer(&format!("input{k}"), rows_bytes, U::STORAGE | U::COPY_DST);
    let rows_out = buffer(&format!("rows_out{k}"), rows_bytes, U::STORAGE | U::COPY_SRC);
    let scalar = buffer(&format!("scalar{k}"), (chunk_rows * 4) as u64, U::STORAGE | U::COPY_SRC);
    let partials = buffer(&format!("partials{k}"), (grid_groups * 8) as u64, U::STORAGE | U::COPY_SRC);
    let params = buffer(&format!("params{k}"), 16, U::UNIFORM | U::COPY_DST);
    let readback = buffer(
        &format!("readback{k}"),
        ReadbackLayout::new(dim, chunk_rows, grid_groups).total(),
        U::MAP_READ | U::COPY_DST,
    );
    let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("flow"),
        layout,
        entries: &[
            wgpu::BindGroupEntry { binding: 0, resource: model.weights.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 1, resource: input.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 2, resource: rows_out.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 3, resource: scalar.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 4, resource: partials.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 5, resource: params.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 6, resource: model.plan.as_entire_binding() },
        ],
    });
    let timer = timestamps.then(|| {
        let set = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("kernel time"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        (set, buffer(&format!("timestamps{k}"), 16, U::QUERY_RESOLVE | U::COPY_SRC))
    });
    Slot {
        input,
        rows_out,
        scalar,
        partials,
        params,
        readback,
        bind_group,
        staging: Vec::with_capacity(chunk_rows * dim),
        timer,
    }
}

impl Engine for GpuEngine {
    fn name(&self) -> String {
        format!(
            "gpu ({}, {:?}, {:?}, {} kernel)",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            self.form.name()
        )
    }

    fn flow(&self) -> &Flow {
        &self.flow
    }

    fn row_alignment(&self) -> usize {
        WORKGROUP_ROWS
    }

    fn forward_to_latent(&self, x: &[f64], z: &mut [f64], logdet: &mut [f64]) -> Result<()> {
        self.run(Op::ToLatent, x, Some(z), logdet, None)
    }

    fn inverse_to_data(&self, z: &[f64], x: &mut [f64], logdet: &mut [f64]) -> Result<()> {
        self.run(Op::ToData, z, Some(x), logdet, None)
    }

    fn log_prob(&self, x: &[f64], logp: &mut [f64], sum: &mut LogLikelihoodSum) -> Result<()> {
        self.run(Op::LogProb, x, None, logp, Some(sum))
    }
}
