//! The GPU engine: a batch streamed through the fused kernel in chunks of whole workgroups,
//! two chunks in flight.
//!
//! Tiered kernels (`--kernel auto` for every model it unrolls, [`TierSwitch`]): on a hardware
//! GPU chunks run on the interpreter, sized from [`RAMP_ROWS`] by the measured rate, until the
//! unrolled kernel's pipeline for the pass, built on a background thread, is ready; every later
//! chunk runs unrolled. On a CPU adapter the batch size picks the form. Both forms
//! compute each row within float32 rounding of the float64 reference (the agreement suite
//! runs them and a mid-batch switch), so which chunk switched changes a row's result only in
//! its last bits and the batch mean within float32 rounding of a row's log p divided by N.
//! Runs that must be bit-identical from run to run fix the form (`--kernel unrolled` or
//! `interpreted`) or the switch row ([`TierSwitch::AtRow`]). Sampling never switches: it
//! runs the unrolled kernel from its first row, so a row of the stream is the same bits in
//! every run and every shard.
//!
//! Data flow for one batch: for each chunk upload the rows as float32 (float64 rows are
//! rounded on all cores first), dispatch the fused kernel, copy results to a readback
//! buffer, submit → while the next chunk computes, map the previous chunk's results into the
//! caller's buffers and add its per-workgroup partial sums to the reduction in chunk order.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use rayon::prelude::*;

use crate::engine::{Engine, KernelStats, LogLikelihoodSum, Pass};
use crate::error::{Error, Result};
use crate::model::Flow;
use crate::real::{Batch, Io, Real};
use crate::sample::Draw;

use super::adapter::{is_cpu_adapter, open_device};
use super::kernel::{self, abi, KernelForm, WORKGROUP_ROWS};
use super::resources::{Entry, Kernel, ReadbackLayout, Resources, Slot};

/// Options of the GPU engine.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Rows per dispatch (rounded up to whole workgroups of 256); 0 = about 8 MiB of input.
    pub chunk_rows: usize,
    /// Interpreted or unrolled kernel; `Auto` picks by model size and runs tiered when it
    /// unrolls ([`KernelForm::tiered`]).
    pub kernel: KernelForm,
    /// Tiered runs only: when chunks move to the unrolled kernel.
    pub switch: TierSwitch,
}

/// When a tiered engine's chunks move from the interpreter to the unrolled kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TierSwitch {
    /// `WhenBuilt` on a hardware GPU; on a CPU adapter (lavapipe), where a background build
    /// would take the cores the interpreter runs on, nothing builds in the background: a
    /// batch of [`CPU_WAIT_ROWS`] or more runs unrolled (built first), a shorter one
    /// interpreted unless the unrolled kernel is already built.
    #[default]
    Auto,
    /// The unrolled kernel builds on a background thread from the first chunk; chunks run
    /// interpreted, sized by [`WAITING_CHUNK_SECONDS`], until it is ready.
    WhenBuilt,
    /// Exactly at this row of each pass, counted over the engine's calls (a multiple of 256
    /// keeps the batch sum independent of the chunking), waiting there for the background
    /// build: results that do not depend on timing.
    AtRow(u64),
}

/// Rows of the first chunk a tiered engine runs on the interpreter. Later chunks before the
/// switch are sized to take about [`WAITING_CHUNK_SECONDS`] at the rate measured so far, so
/// that the switch comes soon after the unrolled build and the first results early (on
/// lavapipe the interpreter runs seed4d ≈ 50× slower than the unrolled kernel).
pub const RAMP_ROWS: usize = 4 * WORKGROUP_ROWS;

/// Target duration of one interpreted chunk while the unrolled kernel builds.
pub const WAITING_CHUNK_SECONDS: f64 = 0.05;

/// On a CPU adapter (lavapipe), batches of at least this many rows run on the unrolled
/// kernel, built first; shorter ones on the interpreter ([`TierSwitch::Auto`]). Measured
/// on lavapipe, 2 cores, seed4d, whole `score` processes: 30 k rows interpreted 1.5–1.7 s,
/// unrolled 1.9–2.0 s; 100 k rows 4.8–5.2 s against 2.2 s; with the build in the background
/// beside the interpreter, slower than either (30 k: 2.3–2.7 s).
pub const CPU_WAIT_ROWS: usize = 32_768;

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

    fn entry(self) -> Entry {
        match self {
            Job::Pass(Pass::LogProb) => Entry::LogProb,
            Job::Pass(Pass::ToLatent) => Entry::ToLatent,
            Job::Pass(Pass::ToData) => Entry::ToData,
            Job::Sample(_) => Entry::Sample,
        }
    }
}

/// The size of the chunks a tiered engine runs while its upgrade builds: [`RAMP_ROWS`] first,
/// then about [`WAITING_CHUNK_SECONDS`] at the rate measured over the chunks collected so far
/// (whole workgroups, at most the engine's chunk size).
struct Ramp {
    rows: usize,
    max_rows: usize,
    start: Instant,
    collected_rows: usize,
}

impl Ramp {
    fn new(max_rows: usize) -> Self {
        Ramp { rows: RAMP_ROWS.min(max_rows), max_rows, start: Instant::now(), collected_rows: 0 }
    }

    /// Called before a chunk is collected (a dispatch ends where its collection begins).
    fn collected(&mut self, p: &Pending) {
        if !p.waiting {
            return;
        }
        self.collected_rows += p.rows;
        let rate = self.collected_rows as f64 / self.start.elapsed().as_secs_f64().max(1e-6);
        let rows = (rate * WAITING_CHUNK_SECONDS) as usize / WORKGROUP_ROWS * WORKGROUP_ROWS;
        self.rows = rows.clamp(RAMP_ROWS, self.max_rows.max(RAMP_ROWS));
    }
}

/// Rows the tiers of an engine have run.
#[derive(Default)]
struct TierRows {
    /// Rows of each pass ([`Entry`]) streamed so far, for [`TierSwitch::AtRow`].
    per_entry: [u64; 4],
    /// Rows run on the first kernel and on the upgrade, all passes.
    first: u64,
    upgraded: u64,
}

/// A chunk submitted and not yet collected.
struct Pending {
    /// Ran on the first kernel while an upgrade was pending (sized by [`Ramp`]).
    waiting: bool,
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
    /// The kernel the first chunk of every pass runs.
    first: Kernel,
    /// Tiered runs: the unrolled kernel, built in the background, run once ready.
    upgrade: Option<Kernel>,
    /// When chunks move to `upgrade` (`Auto` resolved for the adapter).
    switch: TierSwitch,
    tier_rows: Mutex<TierRows>,
    /// What the user should hear before the first chunk (see [`kernel::Choice::note`]).
    note: Option<String>,
    device: wgpu::Device,
    queue: wgpu::Queue,
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
    /// and limits live there), opens the device and uploads the parameters. Pipelines are
    /// compiled on first use (a tiered engine starts the unrolled one's build then).
    pub fn new(flow: Arc<Flow>, adapter: &wgpu::Adapter, options: &GpuOptions) -> Result<Self> {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let choice = kernel::choose(&flow, &info, &limits, options.kernel)?;
        let (device, queue, timestamps) = open_device(adapter, "realnvp")?;
        let errors = collect_device_errors(&device);
        let resources = Resources::new(&device, &info.name, &limits, flow.dim, options.chunk_rows, timestamps)?;
        let first = Kernel::new(&device, &resources, &choice.source, &info.name)?;
        let upgrade = choice.upgrade.map(|source| Kernel::new(&device, &resources, &source, &info.name)).transpose()?;
        let Resources { slots, chunk_rows, max_groups_x, .. } = resources;
        let tick_ns = timestamps.then(|| f64::from(queue.get_timestamp_period()));
        let stats = Mutex::new(KernelStats { seconds: tick_ns.map(|_| 0.0), dispatches: 0, chunk_rows });
        let switch = match options.switch {
            TierSwitch::Auto if !is_cpu_adapter(&info) => TierSwitch::WhenBuilt,
            switch => switch,
        };
        Ok(GpuEngine {
            flow,
            info,
            first,
            upgrade,
            switch,
            tier_rows: Mutex::new(TierRows::default()),
            note: choice.note,
            device,
            queue,
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

    /// A tiered engine: the rows run interpreted and unrolled so far, all passes; None otherwise.
    pub fn rows_by_tier(&self) -> Option<(u64, u64)> {
        self.upgrade.as_ref()?;
        self.tier_rows().ok().map(|t| (t.first, t.upgraded))
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
        let mut ramp = Ramp::new(self.chunk_rows);
        let (mut first, mut c) = (0, 0);
        while first < n {
            let k = c % 2;
            if in_flight.len() == 2 {
                if let Some((slot, p)) = in_flight.pop_front() {
                    ramp.collected(&p);
                    self.collect(&slots[slot], p, io.rows, io.per_row, sum)?;
                }
            }
            let (kernel, rows, waiting) = self.next_chunk(job.entry(), n, n - first, ramp.rows)?;
            let (job, input) = match job {
                Job::Sample(draw) => (Job::Sample(draw.skip(first as u64)), &io.input[..0]),
                pass => (pass, &io.input[first * d..(first + rows) * d]),
            };
            let p = self.submit(kernel, k, &mut slots[k], job, input, first, rows)?;
            in_flight.push_back((k, Pending { waiting, ..p }));
            first += rows;
            c += 1;
        }
        while let Some((slot, p)) = in_flight.pop_front() {
            self.collect(&slots[slot], p, io.rows, io.per_row, sum)?;
        }
        self.check_errors()
    }

    fn tier_rows(&self) -> Result<MutexGuard<'_, TierRows>> {
        self.tier_rows.lock().map_err(|_| Error::Gpu("engine state poisoned by an earlier panic".into()))
    }

    /// The kernel and the row count of the next chunk of `entry`'s pass in a batch of
    /// `batch_rows`, `left` rows to go, and whether it runs while an upgrade builds in the
    /// background (chunks of at most `waiting_rows` then), by [`TierSwitch`]. Sampling always
    /// runs the upgrade: its rows are promised bit-identical across runs and shards.
    fn next_chunk(
        &self,
        entry: Entry,
        batch_rows: usize,
        left: usize,
        waiting_rows: usize,
    ) -> Result<(&Kernel, usize, bool)> {
        let mut tiers = self.tier_rows()?;
        let done = tiers.per_entry[entry as usize];
        let mut rows = self.chunk_rows.min(left);
        let (kernel, waiting) = match (&self.upgrade, self.switch) {
            (None, _) => (&self.first, false),
            // a row of the sample stream is the same bits in every run and shard
            (Some(up), _) if entry == Entry::Sample => (up, false),
            (Some(up), TierSwitch::AtRow(at)) if done >= at => (up, false),
            (Some(up), TierSwitch::Auto | TierSwitch::WhenBuilt) if up.pipelines.ready(entry) => (up, false),
            (Some(up), TierSwitch::Auto) => (if batch_rows >= CPU_WAIT_ROWS { up } else { &self.first }, false),
            (Some(up), switch) => {
                up.pipelines.build_in_background(entry);
                rows = rows.min(waiting_rows);
                if let TierSwitch::AtRow(at) = switch {
                    rows = rows.min((at - done) as usize);
                }
                (&self.first, true)
            }
        };
        if std::ptr::eq(kernel, &self.first) {
            tiers.first += rows as u64;
        } else {
            tiers.upgraded += rows as u64;
        }
        tiers.per_entry[entry as usize] += rows as u64;
        Ok((kernel, rows, waiting))
    }

    #[allow(clippy::too_many_arguments)]
    fn submit<T: Real>(
        &self,
        kernel: &Kernel,
        k: usize,
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
        let groups = rows.div_ceil(kernel.group_rows);
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
        let pipeline = kernel.pipelines.get(job.entry())?;
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("chunk") });
        {
            let timestamp_writes = slot.timer.as_ref().map(|(set, _)| wgpu::ComputePassTimestampWrites {
                query_set: set,
                beginning_of_pass_write_index: Some(0),
                end_of_pass_write_index: Some(1),
            });
            let mut compute = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("fused flow"), timestamp_writes });
            compute.set_pipeline(&pipeline);
            compute.set_bind_group(0, &kernel.bind_groups[k], &[]);
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
        Ok(Pending { waiting: false, first_row, rows, groups, job, submission, mapped: rx })
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
    /// The kernel form that ran, e.g. "unrolled kernel", or for a tiered engine how many
    /// rows each form ran so far.
    fn kernel_name(&self) -> String {
        let Some(up) = &self.upgrade else {
            return match self.first.form {
                KernelForm::Tiled => format!("tiled kernel, {}-row tiles", self.first.group_rows),
                form => format!("{} kernel", form.name()),
            };
        };
        let (first, upgraded) = self.tier_rows().map_or((0, 0), |t| (t.first, t.upgraded));
        format!("tiered kernel: {first} rows {}, {upgraded} rows {}", self.first.form.name(), up.form.name())
    }

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
            "gpu ({}, {:?}, {:?}, {})",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            self.kernel_name()
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
