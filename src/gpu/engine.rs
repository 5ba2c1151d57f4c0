//! The GPU engine: a batch streamed through the fused kernel in chunks of whole workgroups,
//! two chunks in flight.
//!
//! Data flow for one batch: for each chunk upload the rows as float32 (float64 rows are
//! rounded on all cores first), dispatch the fused kernel, copy results to a readback
//! buffer, submit → while the next chunk computes, map the previous chunk's results into the
//! caller's buffers and add its per-workgroup partial sums to the reduction in chunk order.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use crate::engine::{Engine, KernelStats, LogLikelihoodSum, Pass};
use crate::error::{Error, Result};
use crate::model::Flow;
use crate::real::{Batch, Io, Real};
use crate::sample::Draw;

use super::adapter::open_device;
use super::kernel::{self, abi, KernelForm, WORKGROUP_ROWS};
use super::resources::{Pipelines, ReadbackLayout, Resources, Slot};

/// Options of the GPU engine.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Rows per dispatch (rounded up to whole workgroups of 256); 0 = about 8 MiB of input.
    pub chunk_rows: usize,
    /// Interpreted or unrolled kernel; `Auto` picks by model size.
    pub kernel: KernelForm,
}

/// What one chunk runs: a pass over input rows, or drawing rows of a sample stream.
#[derive(Clone, Copy)]
enum Job {
    Pass(Pass),
    Sample(Draw),
}

impl Job {
    fn maps_rows(self) -> bool {
        !matches!(self, Job::Pass(Pass::LogProb))
    }
}

/// A chunk submitted and not yet collected.
struct Pending {
    first_row: usize,
    rows: usize,
    groups: usize,
    job: Job,
    submission: wgpu::SubmissionIndex,
    mapped: mpsc::Receiver<std::result::Result<(), wgpu::BufferAsyncError>>,
}

/// Evaluates a flow with fused WGSL kernels on one wgpu adapter.
pub struct GpuEngine {
    flow: Arc<Flow>,
    info: wgpu::AdapterInfo,
    /// The kernel form compiled (interpreted or unrolled).
    form: KernelForm,
    /// What the user should hear before the first chunk (see [`kernel::Choice::note`]).
    note: Option<String>,
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipelines: Pipelines,
    slots: Mutex<Vec<Slot>>,
    chunk_rows: usize,
    max_groups_x: usize,
    errors: Arc<Mutex<Vec<String>>>,
    /// Nanoseconds per timestamp tick; None without timestamp queries.
    tick_ns: Option<f64>,
    /// Kernel time and dispatches since the last [`Engine::take_kernel_stats`].
    stats: Mutex<KernelStats>,
}

impl GpuEngine {
    /// Chooses and generates the flow's kernel for `adapter` ([`kernel::choose`]: refusals
    /// and limits live there), opens the device, compiles and uploads the parameters.
    pub fn new(flow: Arc<Flow>, adapter: &wgpu::Adapter, options: &GpuOptions) -> Result<Self> {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let choice = kernel::choose(&flow, &info, &limits, options.kernel)?;
        let (device, queue, timestamps) = open_device(adapter, "realnvp")?;
        let errors = collect_device_errors(&device);
        let Resources { pipelines, slots, chunk_rows, max_groups_x } =
            Resources::new(&device, &info.name, &limits, &choice.source, flow.dim, options.chunk_rows, timestamps)?;
        let tick_ns = timestamps.then(|| f64::from(queue.get_timestamp_period()));
        let stats = Mutex::new(KernelStats { seconds: tick_ns.map(|_| 0.0), dispatches: 0, chunk_rows });
        Ok(GpuEngine {
            flow,
            info,
            form: choice.source.form,
            note: choice.note,
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

    /// Runs `pass` over all rows of `io`.
    fn run_in<T: Real>(&self, pass: Pass, io: Io<'_, T>, sum: &mut LogLikelihoodSum) -> Result<()> {
        io.check(pass.maps_rows(), self.flow.dim)?;
        self.stream(Job::Pass(pass), io, sum)
    }

    /// Draws the batch's rows in the fused sampling kernel: nothing is uploaded.
    fn sample_in<T: Real>(&self, draw: &Draw, io: Io<'_, T>) -> Result<()> {
        draw.check(io.check_sample(self.flow.dim)?)?;
        self.stream(Job::Sample(*draw), io, &mut LogLikelihoodSum::default())
    }

    /// Streams the batch through the kernel in chunks, two in flight.
    fn stream<T: Real>(&self, job: Job, io: Io<'_, T>, sum: &mut LogLikelihoodSum) -> Result<()> {
        let d = self.flow.dim;
        let n = io.per_row.len();
        let mut slots =
            self.slots.lock().map_err(|_| Error::Gpu("engine state poisoned by an earlier panic".into()))?;
        // Chunk c uses slot c % 2; before it is submitted, chunk c − 2 (same slot) is collected.
        // Chunks are collected in order, so partial sums are added in row order.
        let mut in_flight: VecDeque<(usize, Pending)> = VecDeque::with_capacity(2);
        for (c, first) in (0..n).step_by(self.chunk_rows).enumerate() {
            let k = c % 2;
            if in_flight.len() == 2 {
                if let Some((slot, p)) = in_flight.pop_front() {
                    self.collect(&slots[slot], p, io.rows, io.per_row, sum)?;
                }
            }
            let rows = self.chunk_rows.min(n - first);
            let (job, input) = match job {
                Job::Sample(draw) => (Job::Sample(draw.skip(first as u64)), &io.input[..0]),
                pass => (pass, &io.input[first * d..(first + rows) * d]),
            };
            let p = self.submit(&mut slots[k], job, input, first, rows)?;
            in_flight.push_back((k, p));
        }
        while let Some((slot, p)) = in_flight.pop_front() {
            self.collect(&slots[slot], p, io.rows, io.per_row, sum)?;
        }
        self.check_errors()
    }

    fn submit<T: Real>(
        &self,
        slot: &mut Slot,
        job: Job,
        input: &[T],
        first_row: usize,
        rows: usize,
    ) -> Result<Pending> {
        match T::as_f32(input) {
            _ if input.is_empty() => {}
            Some(floats) => self.queue.write_buffer(&slot.input, 0, bytemuck::cast_slice(floats)),
            None => {
                slot.staging.clear();
                // float64 → float32 on all cores: on a fast GPU a single thread would be the bottleneck
                slot.staging.par_extend(input.par_iter().map(|&v| v.to_f32()));
                self.queue.write_buffer(&slot.input, 0, bytemuck::cast_slice(&slot.staging));
            }
        }
        let groups = rows.div_ceil(WORKGROUP_ROWS);
        let groups_x = groups.min(self.max_groups_x);
        let groups_y = groups.div_ceil(groups_x);
        let sample = match job {
            Job::Sample(draw) => {
                let log_t = -(self.flow.dim as f64) * draw.temperature.ln();
                Some((draw.seed, draw.first_row, draw.temperature as f32, log_t as f32))
            }
            Job::Pass(_) => None,
        };
        let params = abi::params(rows as u32, groups_x as u32, sample);
        self.queue.write_buffer(&slot.params, 0, bytemuck::cast_slice(&params));
        let pipeline = match job {
            Job::Pass(Pass::LogProb) => &self.pipelines.log_prob,
            Job::Pass(Pass::ToLatent) => &self.pipelines.to_latent,
            Job::Pass(Pass::ToData) => &self.pipelines.to_data,
            Job::Sample(_) => &self.pipelines.sample,
        };
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("chunk") });
        {
            let timestamp_writes = slot.timer.as_ref().map(|(set, _)| wgpu::ComputePassTimestampWrites {
                query_set: set,
                beginning_of_pass_write_index: Some(0),
                end_of_pass_write_index: Some(1),
            });
            let mut compute = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("fused flow"), timestamp_writes });
            compute.set_pipeline(pipeline);
            compute.set_bind_group(0, &slot.bind_group, &[]);
            compute.dispatch_workgroups(groups_x as u32, groups_y as u32, 1);
        }
        let layout = ReadbackLayout::new(self.flow.dim, rows, groups);
        if job.maps_rows() {
            encoder.copy_buffer_to_buffer(&slot.rows_out, 0, &slot.readback, 0, layout.rows_bytes);
        }
        encoder.copy_buffer_to_buffer(&slot.scalar, 0, &slot.readback, layout.scalar_at, layout.scalar_bytes);
        if matches!(job, Job::Pass(Pass::LogProb)) {
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
        Ok(Pending { first_row, rows, groups, job, submission, mapped: rx })
    }

    /// Waits for chunk `p`, copies its rows and per-row values into the caller's buffers
    /// (`rows_out` `[n, D]`, `per_row` `[n]`) and adds its partial sums to `sum` (log p).
    fn collect<T: Real>(
        &self,
        slot: &Slot,
        p: Pending,
        rows_out: &mut [T],
        per_row: &mut [T],
        sum: &mut LogLikelihoodSum,
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
            if p.job.maps_rows() {
                let dst = &mut rows_out[p.first_row * d..(p.first_row + p.rows) * d];
                dst.par_iter_mut().zip(&floats[..p.rows * d]).for_each(|(o, &v)| *o = T::from_f32(v));
            }
            let s = at(layout.scalar_at);
            per_row[p.first_row..p.first_row + p.rows]
                .iter_mut()
                .zip(&floats[s..s + p.rows])
                .for_each(|(o, &v)| *o = T::from_f32(v));
            let ticks = &view[layout.timer_at as usize..layout.total() as usize];
            let tick =
                |k: usize| ticks.get(8 * k..8 * k + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
            self.record_kernel_time(tick(0), tick(1));
            if matches!(p.job, Job::Pass(Pass::LogProb)) {
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
            if let (Some(tick_ns), Some(seconds)) = (self.tick_ns, stats.seconds.as_mut()) {
                *seconds += end.saturating_sub(begin) as f64 * tick_ns * 1e-9;
            }
        }
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

    fn run(&self, pass: Pass, batch: Batch<'_>, sum: &mut LogLikelihoodSum) -> Result<()> {
        crate::with_io!(batch, io => self.run_in(pass, io, sum))
    }

    fn sample(&self, draw: &Draw, batch: Batch<'_>) -> Result<()> {
        crate::with_io!(batch, io => self.sample_in(draw, io))
    }

    fn note(&self) -> Option<String> {
        self.note.clone()
    }

    /// Kernel time and dispatch count accumulated since the last call, then reset.
    fn take_kernel_stats(&self) -> Option<KernelStats> {
        let fresh = KernelStats { seconds: self.tick_ns.map(|_| 0.0), dispatches: 0, chunk_rows: self.chunk_rows };
        self.stats.lock().map(|mut s| std::mem::replace(&mut *s, fresh)).ok()
    }
}

/// Validation errors and device loss are reported by wgpu on its own threads; they are kept
/// here and turned into the next call's error.
fn collect_device_errors(device: &wgpu::Device) -> Arc<Mutex<Vec<String>>> {
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
    errors
}
