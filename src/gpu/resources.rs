//! What the GPU engine allocates on its device: the bind group layout (the kernel ABI's
//! bindings, [`super::kernel::abi`]), two chunk slots (input, outputs, readback) so that one
//! chunk computes while the previous one is read back, and for each kernel form it runs
//! ([`Kernel`]) the model's buffers, a bind group per slot and the entry points' pipelines,
//! each compiled on first use, on the caller's thread or a background one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::error::{Error, Result};

use super::kernel::{abi, KernelForm, KernelSource, WORKGROUP_ROWS};

/// Target host→device bytes of float32 input per chunk when no chunk size is forced.
const DEFAULT_CHUNK_BYTES: usize = 8 << 20;

/// The bind group layout and the chunk slots of one engine.
pub(super) struct Resources {
    pub layout: wgpu::BindGroupLayout,
    pub slots: Vec<Slot>,
    /// Rows per chunk (whole workgroups).
    pub chunk_rows: usize,
    /// Workgroups per grid row (the rest of a chunk's groups go to further grid rows).
    pub max_groups_x: usize,
}

impl Resources {
    /// Allocates buffers for chunks of `requested_rows` rows (0: about
    /// [`DEFAULT_CHUNK_BYTES`] of input) of dimension `dim`, within the adapter's `limits`.
    pub fn new(
        device: &wgpu::Device,
        adapter_name: &str,
        limits: &wgpu::Limits,
        dim: usize,
        requested_rows: usize,
        timestamps: bool,
    ) -> Result<Self> {
        let layout = bind_group_layout(device);
        let chunk_rows = plan_chunk_rows(dim, requested_rows, limits);
        if chunk_rows == 0 {
            return Err(Error::Gpu(format!(
                "{adapter_name} cannot bind {WORKGROUP_ROWS} rows of D = {dim} floats (max_storage_buffer_binding_size = {} bytes)",
                limits.max_storage_buffer_binding_size
            )));
        }
        let max_groups_x = limits.max_compute_workgroups_per_dimension as usize;
        let spec = SlotSpec { dim, chunk_rows, max_groups_x, timestamps };
        let slots = (0..2).map(|k| create_slot(device, &spec, k)).collect();
        Ok(Resources { layout, slots, chunk_rows, max_groups_x })
    }
}

/// One form of the fused kernel on the device: its pipelines, the model's parameters and plan
/// as it reads them, and a bind group per chunk slot.
pub(super) struct Kernel {
    pub form: KernelForm,
    /// Rows per workgroup of its dispatches ([`KernelSource::group_rows`]).
    pub group_rows: usize,
    pub pipelines: Arc<Pipelines>,
    /// `bind_groups[k]` binds slot k's buffers and this kernel's parameters.
    pub bind_groups: Vec<wgpu::BindGroup>,
}

impl Kernel {
    /// Uploads `source`'s parameters and plan and binds them with every slot; compiles nothing
    /// yet ([`Pipelines::get`]).
    pub fn new(
        device: &wgpu::Device,
        resources: &Resources,
        source: &KernelSource,
        adapter_name: &str,
    ) -> Result<Self> {
        let weights = upload(device, "weights", bytemuck::cast_slice(&source.weights))?;
        let plan = upload(device, "plan", bytemuck::cast_slice(&source.plan))?;
        let bind_groups =
            resources.slots.iter().map(|slot| bind_group(device, &resources.layout, slot, &weights, &plan)).collect();
        let pipelines = Arc::new(Pipelines::new(device, &resources.layout, &source.wgsl, adapter_name));
        Ok(Kernel { form: source.form, group_rows: source.group_rows, pipelines, bind_groups })
    }
}

/// A storage buffer holding `bytes`, written at creation.
fn upload(device: &wgpu::Device, label: &str, bytes: &[u8]) -> Result<wgpu::Buffer> {
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
}

/// The fused kernel's entry points (shaders/flow.wgsl).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Entry {
    LogProb,
    ToLatent,
    ToData,
    Sample,
}

impl Entry {
    fn name(self) -> &'static str {
        match self {
            Entry::LogProb => "log_prob_main",
            Entry::ToLatent => "to_latent_main",
            Entry::ToData => "to_data_main",
            Entry::Sample => "sample_main",
        }
    }
}

/// The fused kernel's module and its entry points' pipelines, each compiled on first use.
pub(super) struct Pipelines {
    device: wgpu::Device,
    wgsl: String,
    adapter: String,
    layout: wgpu::PipelineLayout,
    module: OnceLock<std::result::Result<wgpu::ShaderModule, String>>,
    /// Indexed by [`Entry`]: set once, by whichever thread builds it first.
    compiled: [OnceLock<std::result::Result<wgpu::ComputePipeline, String>>; 4],
    /// Indexed by [`Entry`]: a background build was started.
    building: [AtomicBool; 4],
}

impl Pipelines {
    fn new(device: &wgpu::Device, layout: &wgpu::BindGroupLayout, wgsl: &str, adapter: &str) -> Self {
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("flow"),
            bind_group_layouts: &[Some(layout)],
            immediate_size: 0,
        });
        Pipelines {
            device: device.clone(),
            wgsl: wgsl.to_owned(),
            adapter: adapter.to_owned(),
            layout,
            module: OnceLock::new(),
            compiled: Default::default(),
            building: Default::default(),
        }
    }

    /// The shader module: parsed, validated and translated once, on first use.
    fn module(&self) -> Result<&wgpu::ShaderModule> {
        let module = self.module.get_or_init(|| {
            let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
            // Runtime checks stay on. Every index is in bounds by construction (see
            // shaders/flow.wgsl), but with bounds checks off (`create_shader_module_trusted`,
            // with or without loop bounding) lavapipe (Mesa 22.3.6) never completed a dispatch
            // of these kernels; measured 2026-11-29, see BENCHMARKS.md.
            let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some("fused flow"),
                source: wgpu::ShaderSource::Wgsl(self.wgsl.as_str().into()),
            });
            match pollster::block_on(scope.pop()) {
                None => Ok(module),
                Some(e) => Err(format!("shader compilation failed on {}: {e}", self.adapter)),
            }
        });
        module.as_ref().map_err(|e| Error::Gpu(e.clone()))
    }

    /// The compiled pipeline of `entry`: compiled now on the first call (or awaited, when a
    /// background build of it is running). On lavapipe each entry point costs about as much
    /// as the module's whole build, so a `score` compiles only log p's.
    pub fn get(&self, entry: Entry) -> Result<wgpu::ComputePipeline> {
        let compiled = self.compiled[entry as usize].get_or_init(|| {
            let module = self.module().map_err(|e| e.to_string())?;
            let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
            let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry.name()),
                layout: Some(&self.layout),
                module,
                entry_point: Some(entry.name()),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &[],
                    // red_sum / red_cnt are fully written before they are read
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
            match pollster::block_on(scope.pop()) {
                None => Ok(pipeline),
                Some(e) => Err(format!("shader compilation failed on {}: {e}", self.adapter)),
            }
        });
        compiled.clone().map_err(Error::Gpu)
    }

    /// Whether `entry`'s build has finished (successfully or not: [`Pipelines::get`] says).
    pub fn ready(&self, entry: Entry) -> bool {
        self.compiled[entry as usize].get().is_some()
    }

    /// Starts building `entry` on a background thread, once. The thread holds the pipelines
    /// (and the device) until its build finishes, also when the engine is dropped sooner.
    pub fn build_in_background(self: &Arc<Self>, entry: Entry) {
        if self.ready(entry) || self.building[entry as usize].swap(true, Ordering::AcqRel) {
            return;
        }
        let pipelines = Arc::clone(self);
        let spawned = std::thread::Builder::new().name(format!("realnvp {}", entry.name())).spawn(move || {
            // an error is kept in `compiled` and returned by the next `get`
            let _ = pipelines.get(entry);
        });
        if spawned.is_err() {
            // no thread: the build happens on the caller's thread when the engine switches
            self.building[entry as usize].store(false, Ordering::Release);
        }
    }
}

/// Buffers for one chunk in flight.
pub(super) struct Slot {
    pub input: wgpu::Buffer,
    pub rows_out: wgpu::Buffer,
    pub scalar: wgpu::Buffer,
    pub partials: wgpu::Buffer,
    pub params: wgpu::Buffer,
    pub readback: wgpu::Buffer,
    pub staging: Vec<f32>,
    /// Begin/end timestamps of the chunk's dispatch, where the adapter has them.
    pub timer: Option<(wgpu::QuerySet, wgpu::Buffer)>,
}

/// Byte layout of a slot's readback buffer: [rows_out | scalar | partials | 2 timestamps],
/// 256-aligned.
pub(super) struct ReadbackLayout {
    pub rows_bytes: u64,
    pub scalar_at: u64,
    pub scalar_bytes: u64,
    pub partials_at: u64,
    pub partials_bytes: u64,
    pub timer_at: u64,
}

impl ReadbackLayout {
    pub fn new(dim: usize, rows: usize, groups: usize) -> Self {
        let align = |b: u64| b.div_ceil(256) * 256;
        let rows_bytes = (rows * dim * 4) as u64;
        let scalar_at = align(rows_bytes);
        let scalar_bytes = (rows * 4) as u64;
        let partials_at = align(scalar_at + scalar_bytes);
        let partials_bytes = (groups * 8) as u64;
        let timer_at = align(partials_at + partials_bytes);
        ReadbackLayout { rows_bytes, scalar_at, scalar_bytes, partials_at, partials_bytes, timer_at }
    }

    pub fn total(&self) -> u64 {
        self.timer_at + 16
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

/// The layout of the one bind group: every binding of the kernel ABI ([`abi::BINDINGS`]:
/// parameters, rows in, rows out, per-row values, partial sums, dispatch params, plan).
fn bind_group_layout(device: &wgpu::Device) -> wgpu::BindGroupLayout {
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("flow"),
        entries: &abi::layout_entries(),
    })
}

/// What every chunk slot is sized for.
#[derive(Clone, Copy)]
struct SlotSpec {
    dim: usize,
    chunk_rows: usize,
    max_groups_x: usize,
    timestamps: bool,
}

fn create_slot(device: &wgpu::Device, spec: &SlotSpec, k: usize) -> Slot {
    let SlotSpec { dim, chunk_rows, max_groups_x, timestamps } = *spec;
    // partial sums for the smallest workgroups of any form
    let groups = chunk_rows.div_ceil(abi::MIN_WORKGROUP_ROWS);
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
    let params = buffer(&format!("params{k}"), abi::PARAMS_BYTES, U::UNIFORM | U::COPY_DST);
    let readback = buffer(
        &format!("readback{k}"),
        ReadbackLayout::new(dim, chunk_rows, grid_groups).total(),
        U::MAP_READ | U::COPY_DST,
    );
    let timer = timestamps.then(|| {
        let set = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("kernel time"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        (set, buffer(&format!("timestamps{k}"), 16, U::QUERY_RESOLVE | U::COPY_SRC))
    });
    Slot { input, rows_out, scalar, partials, params, readback, staging: Vec::with_capacity(chunk_rows * dim), timer }
}

/// The one bind group of a kernel form for one slot ([`abi::BINDINGS`]).
fn bind_group(
    device: &wgpu::Device,
    layout: &wgpu::BindGroupLayout,
    slot: &Slot,
    weights: &wgpu::Buffer,
    plan: &wgpu::Buffer,
) -> wgpu::BindGroup {
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("flow"),
        layout,
        entries: &[
            wgpu::BindGroupEntry { binding: abi::WEIGHTS.index, resource: weights.as_entire_binding() },
            wgpu::BindGroupEntry { binding: abi::ROWS_IN.index, resource: slot.input.as_entire_binding() },
            wgpu::BindGroupEntry { binding: abi::ROWS_OUT.index, resource: slot.rows_out.as_entire_binding() },
            wgpu::BindGroupEntry { binding: abi::ROW_SCALAR.index, resource: slot.scalar.as_entire_binding() },
            wgpu::BindGroupEntry { binding: abi::PARTIALS.index, resource: slot.partials.as_entire_binding() },
            wgpu::BindGroupEntry { binding: abi::PARAMS.index, resource: slot.params.as_entire_binding() },
            wgpu::BindGroupEntry { binding: abi::PLAN.index, resource: plan.as_entire_binding() },
        ],
    })
}
