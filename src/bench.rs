//! `realnvp bench`: throughput of log p, data→latent and latent→data on each device, next to
//! the device's measured FMA ceiling, as a markdown table and as JSON.
//!
//! For every pass: a warm-up on a few thousand rows (shader compilation, page faults), then
//! the best of `repeats` timed runs over all rows held in memory. "End to end" is the wall
//! time of the engine call (conversion, host↔device transfers, kernels, readback); "kernel"
//! is the device time of the fused dispatches from GPU timestamp queries (for the native
//! engine the two are the same run). GFLOP/s use the model's mask-pruned FLOP count.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::cpu::CpuReference;
use crate::device::GpuOptions;
use crate::engine::{Engine, KernelStats, LogLikelihoodSum, Pass};
use crate::error::Result;
#[cfg(feature = "gpu")]
use crate::gpu::{self, GpuEngine, KernelForm};
use crate::model::Flow;
use crate::native::{self, NativeEngine};
use crate::real::{Io, Real};

/// Float32 bytes moved per row between host and device for `pass`: rows in, results out.
fn bytes_per_row(pass: Pass, dim: usize) -> usize {
    if pass.maps_rows() {
        8 * dim + 4
    } else {
        4 * dim + 4
    }
}

/// One timed pass on one device.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PassResult {
    pub pass: Pass,
    pub rows: usize,
    /// Wall seconds of the best run, end to end.
    pub seconds: f64,
    /// Rows per second end to end.
    pub rows_per_second: f64,
    /// Device seconds of the kernels in the same run (timestamp queries; native: = seconds).
    pub kernel_seconds: Option<f64>,
    /// Rows per second of the kernels alone.
    pub kernel_rows_per_second: Option<f64>,
    /// Mask-pruned GFLOP/s of the kernels (end to end where there is no kernel time).
    pub gflops: f64,
    /// `gflops` as a fraction of the device's FMA ceiling.
    pub fraction_of_fma_ceiling: Option<f64>,
    /// Float32 rows in + results out per end-to-end second, GB/s.
    pub gigabytes_per_second: f64,
    /// Kernel dispatches per chunk (GPU: one fused dispatch), and rows per chunk.
    pub dispatches_per_chunk: Option<f64>,
    pub chunk_rows: Option<usize>,
}

/// Every pass on one device.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceReport {
    /// Engine name (adapter name, backend and type for GPUs).
    pub engine: String,
    /// Driver name and version (GPUs).
    pub driver: Option<String>,
    /// Measured float32 FMA ceiling of the device, GFLOP/s.
    pub fma_gflops: Option<f64>,
    pub passes: Vec<PassResult>,
    /// Why this device could not run, if it could not.
    pub error: Option<String>,
}

/// The whole benchmark.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchReport {
    pub model: String,
    pub dim: usize,
    pub flops_per_row: u64,
    pub rows: usize,
    pub threads: usize,
    pub devices: Vec<DeviceReport>,
}

/// What to benchmark.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub rows: usize,
    pub repeats: usize,
    pub passes: Vec<Pass>,
    /// Also time the float64 reference (slow on large models).
    pub reference: bool,
    /// Benchmark the native engine.
    pub native: bool,
    /// Adapter indices (as `realnvp devices` numbers them) to benchmark.
    pub adapters: Vec<usize>,
    pub gpu: GpuOptions,
    /// Seconds one device may spend on one pass: slow devices time fewer rows (reported).
    pub max_seconds: f64,
}

/// Runs the benchmark; `progress` receives one line per finished measurement.
pub fn run(flow: Arc<Flow>, model: &str, options: &BenchOptions, progress: &dyn Fn(&str)) -> BenchReport {
    // Rows are drawn once into a buffer of at most BUFFER_VALUES values and cycled through, so
    // that 10⁸-row runs do not need 10⁸ rows in memory.
    let buffer_rows = options.rows.min((BUFFER_VALUES / flow.dim).max(1));
    // float32 rows: what the float32 engines consume without conversion
    let x: Vec<f32> = crate::random::sample_base(&crate::model::Base::StandardNormal, flow.dim, buffer_rows, 20261129)
        .iter()
        .map(|&v| v as f32)
        .collect();
    let mut devices = Vec::new();
    if options.native {
        let fma = native_fma_gflops();
        progress(&format!("native FMA ceiling: {fma:.1} GFLOP/s"));
        let engine = NativeEngine::new(flow.clone());
        let target = Target { engine: &engine, driver: None, fma: Some(fma), chunk_rows: Some(native::TILE_ROWS) };
        devices.push(time_device(&target, &x, options, progress));
    }
    time_adapters(&flow, &x, options, progress, &mut devices);
    if options.reference {
        let engine = CpuReference::new(flow.clone());
        let target = Target { engine: &engine, driver: None, fma: None, chunk_rows: None };
        devices.push(time_device(&target, &x, options, progress));
    }
    BenchReport {
        model: model.to_string(),
        dim: flow.dim,
        flops_per_row: flow.flops_per_row(),
        rows: options.rows,
        threads: rayon::current_num_threads(),
        devices,
    }
}

/// Times each of `options.adapters` (numbers of `realnvp devices`) into `devices`.
#[cfg(feature = "gpu")]
fn time_adapters(
    flow: &Arc<Flow>,
    x: &[f32],
    options: &BenchOptions,
    progress: &dyn Fn(&str),
    devices: &mut Vec<DeviceReport>,
) {
    let all = gpu::adapters(&gpu::instance());
    for &k in &options.adapters {
        let Some(adapter) = all.get(k) else {
            devices
                .push(failed(format!("gpu:{k}"), format!("no adapter gpu:{k}; `realnvp devices` lists {}", all.len())));
            continue;
        };
        let info = adapter.get_info();
        let label = format!("gpu:{k} {} ({:?})", info.name, info.backend);
        let driver = Some(format!("{} {}", info.driver, info.driver_info).trim().to_string());
        let fma = match gpu::fma::fma_gflops(adapter) {
            Ok(g) => Some(g),
            Err(e) => {
                devices.push(failed(label, e.to_string()));
                continue;
            }
        };
        progress(&format!("{label} FMA ceiling: {:.1} GFLOP/s", fma.unwrap_or(0.0)));
        // steady state: the form a tiered run settles on, compiled in the warm-up
        let kernel = if options.gpu.kernel.tiered(flow) { KernelForm::Unrolled } else { options.gpu.kernel };
        let gpu = GpuOptions { kernel, ..options.gpu };
        match GpuEngine::new(flow.clone(), adapter, &gpu) {
            Ok(engine) => {
                let target = Target { engine: &engine, driver, fma, chunk_rows: Some(engine.chunk_rows()) };
                devices.push(time_device(&target, x, options, progress))
            }
            Err(e) => devices.push(failed(label, e.to_string())),
        }
    }
}

/// A build without the `gpu` feature: each requested adapter is a failed device.
#[cfg(not(feature = "gpu"))]
fn time_adapters(
    _flow: &Arc<Flow>,
    _x: &[f32],
    options: &BenchOptions,
    _progress: &dyn Fn(&str),
    devices: &mut Vec<DeviceReport>,
) {
    for &k in &options.adapters {
        devices.push(failed(
            format!("gpu:{k}"),
            "this build of realnvp has no GPU engine (the `gpu` feature was off)".into(),
        ));
    }
}

fn failed(engine: String, error: String) -> DeviceReport {
    DeviceReport { engine, driver: None, fma_gflops: None, passes: Vec::new(), error: Some(error) }
}

/// One device under test.
struct Target<'a> {
    engine: &'a dyn Engine,
    driver: Option<String>,
    fma: Option<f64>,
    chunk_rows: Option<usize>,
}

fn time_device(t: &Target, x: &[f32], options: &BenchOptions, progress: &dyn Fn(&str)) -> DeviceReport {
    let name = t.engine.name();
    let mut report = DeviceReport {
        engine: name.clone(),
        driver: t.driver.clone(),
        fma_gflops: t.fma,
        passes: Vec::new(),
        error: None,
    };
    for &pass in &options.passes {
        match time_pass(t.engine, t.fma, pass, x, options.rows, options.repeats, options.max_seconds) {
            Ok(mut r) => {
                r.chunk_rows = t.chunk_rows;
                progress(&format!("{name}: {} {:.0} rows/s", pass.label(), r.rows_per_second));
                report.passes.push(r);
            }
            Err(e) => {
                report.error = Some(e.to_string());
                break;
            }
        }
    }
    report
}

/// Values (rows × D) of input held in memory by [`run`]: 256 MiB of float64.
const BUFFER_VALUES: usize = 1 << 25;

/// Times one pass: two warm-up runs (the first compiles), then the best of `repeats` runs
/// over `rows` rows taken cyclically from the buffer `x`, or over fewer rows (and one run)
/// when the second warm-up predicts more than `max_seconds`.
#[allow(clippy::too_many_arguments)]
pub fn time_pass(
    engine: &dyn Engine,
    fma: Option<f64>,
    pass: Pass,
    x: &[f32],
    rows: usize,
    repeats: usize,
    max_seconds: f64,
) -> Result<PassResult> {
    let flow = engine.flow();
    let d = flow.dim;
    let buffer_rows = x.len() / d;
    if buffer_rows == 0 || rows == 0 {
        return Err(crate::error::Error::Argument("a benchmark needs at least one row".into()));
    }
    let mut n = rows;
    let mut repeats = repeats;
    let (mut out, mut scalar) = (vec![0.0; x.len()], vec![0.0; buffer_rows]);
    let warm = buffer_rows.min(4096);
    // the first run compiles the kernel (lavapipe compiles at the first dispatch): untimed
    run_pass(engine, pass, &x[..warm * d], &mut out[..warm * d], &mut scalar[..warm])?;
    let start = Instant::now();
    run_pass(engine, pass, &x[..warm * d], &mut out[..warm * d], &mut scalar[..warm])?;
    let per_row = start.elapsed().as_secs_f64() / warm.max(1) as f64;
    if per_row * (n * repeats) as f64 > max_seconds {
        n = ((max_seconds / per_row) as usize).clamp(warm, n);
        repeats = 1;
    }
    let chunk_rows = engine.take_kernel_stats().map(|s| s.chunk_rows);
    let mut best: Option<(f64, Option<KernelStats>)> = None;
    let mut chunks = 0;
    for _ in 0..repeats.max(1) {
        engine.take_kernel_stats();
        let start = Instant::now();
        chunks = 0;
        for first in (0..n).step_by(buffer_rows) {
            let m = buffer_rows.min(n - first);
            run_pass(engine, pass, &x[..m * d], &mut out[..m * d], &mut scalar[..m])?;
            chunks += chunk_rows.map_or(0, |c| m.div_ceil(c));
        }
        let seconds = start.elapsed().as_secs_f64();
        let stats = engine.take_kernel_stats();
        if best.as_ref().is_none_or(|(s, _)| seconds < *s) {
            best = Some((seconds, stats));
        }
    }
    let (seconds, stats) = best.unwrap_or((f64::NAN, None));
    // engines without device kernels (native, reference): the kernel is the whole call
    let kernel_seconds = match stats {
        Some(s) => s.seconds,
        None => Some(seconds),
    };
    let flops = (n as f64) * flow.flops_per_row() as f64;
    let gflops = flops / kernel_seconds.unwrap_or(seconds) / 1e9;
    Ok(PassResult {
        pass,
        rows: n,
        seconds,
        rows_per_second: n as f64 / seconds,
        kernel_seconds,
        kernel_rows_per_second: kernel_seconds.map(|k| n as f64 / k),
        gflops,
        fraction_of_fma_ceiling: fma.map(|f| gflops / f),
        gigabytes_per_second: (n * bytes_per_row(pass, d)) as f64 / seconds / 1e9,
        dispatches_per_chunk: stats.map(|s| s.dispatches as f64 / chunks.max(1) as f64),
        chunk_rows,
    })
}

/// Runs one pass of `engine` over rows `x` `[n, D]`: `out` `[n, D]` (unused for log p) and
/// per-row `scalar` `[n]` (log p, or the log-det).
pub fn run_pass<T: Real>(engine: &dyn Engine, pass: Pass, x: &[T], out: &mut [T], scalar: &mut [T]) -> Result<()> {
    let rows = if pass.maps_rows() { out } else { &mut [] };
    engine.run(pass, T::batch(Io { input: x, rows, per_row: scalar }), &mut LogLikelihoodSum::default())
}

/// Float32 FMA throughput of this CPU on all rayon threads, GFLOP/s (independent
/// accumulators, best SIMD the CPU has).
pub fn native_fma_gflops() -> f64 {
    use rayon::prelude::*;
    const ITERS: usize = 40_000_000; // ≈ 0.1 s per thread: long enough to be stable
    let threads = rayon::current_num_threads();
    let mut best = 0.0f64;
    for _ in 0..3 {
        let start = Instant::now();
        let sink: f32 = (0..threads).into_par_iter().map(|t| fma_loop(ITERS, t as f32)).sum();
        let seconds = start.elapsed().as_secs_f64();
        std::hint::black_box(sink);
        best = best.max((threads * ITERS * FMA_LANES * 2) as f64 / seconds / 1e9);
    }
    best
}

const FMA_LANES: usize = 128;

#[multiversion::multiversion(targets = "simd")]
fn fma_loop(iters: usize, seed: f32) -> f32 {
    let mut acc = [0f32; FMA_LANES];
    for (j, a) in acc.iter_mut().enumerate() {
        *a = seed + j as f32 * 1e-3;
    }
    let (m, c) = (std::hint::black_box(0.9999f32), std::hint::black_box(1e-4f32));
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = a.mul_add(m, c);
        }
    }
    acc.iter().sum()
}

impl BenchReport {
    /// The markdown table printed by `realnvp bench`.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "model {} · D = {} · {} FLOP/row (mask-pruned) · {} rows · {} CPU threads\n\n",
            self.model, self.dim, self.flops_per_row, self.rows, self.threads
        );
        s += "| device | FMA ceiling GFLOP/s | pass | rows | rows/s end to end | rows/s kernel | GFLOP/s | % of ceiling | GB/s | dispatches/chunk (rows/chunk) |\n";
        s += "|---|---:|---|---:|---:|---:|---:|---:|---:|---|\n";
        for d in &self.devices {
            let name = match &d.driver {
                Some(driver) => format!("{} — {driver}", d.engine),
                None => d.engine.clone(),
            };
            let fma = d.fma_gflops.map_or("–".into(), |f| format!("{f:.1}"));
            if let Some(e) = &d.error {
                s += &format!("| {name} | {fma} | cannot run: {} | | | | | | | |\n", e.replace('|', "/"));
            }
            for p in &d.passes {
                s += &format!(
                    "| {name} | {fma} | {} | {} | {:.0} | {} | {:.1} | {} | {:.3} | {} ({}) |\n",
                    p.pass.label(),
                    p.rows,
                    p.rows_per_second,
                    p.kernel_rows_per_second.map_or("–".into(), |r| format!("{r:.0}")),
                    p.gflops,
                    p.fraction_of_fma_ceiling.map_or("–".into(), |f| format!("{:.0} %", 100.0 * f)),
                    p.gigabytes_per_second,
                    p.dispatches_per_chunk.map_or("–".into(), |k| format!("{k:.0}")),
                    p.chunk_rows.map_or("–".into(), |c| c.to_string()),
                );
            }
        }
        s
    }
}
