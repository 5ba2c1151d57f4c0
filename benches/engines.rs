//! Throughput (rows/s, criterion "elements") of log p, data→latent and latent→data for the
//! three reference models (`realnvp::random::reference_model`: seed4d, d16, d64) at 10⁴,
//! 10⁵ and 10⁶ rows, on the native engine, the default GPU adapter (when one exists) and the
//! float64 reference.
//!
//! Run: `WGPU_BACKEND=vulkan cargo bench` (all) or e.g. `cargo bench -- 'seed4d/log_prob'`.
//! Slow engine/size pairs whose one iteration would take longer than `MAX_ITERATION_SECONDS`
//! (predicted from 2,048 rows; e.g. lavapipe or the reference on d64 at 10⁶ rows) are skipped
//! with a note on stderr; `realnvp bench` times them on fewer rows instead.

use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use realnvp::bench::run_pass;
use realnvp::device::{open_engine, Device};
use realnvp::engine::{Engine, Pass};
use realnvp::model::Base;
use realnvp::random::{reference_model, sample_base, REFERENCE_MODELS};

const MAX_ITERATION_SECONDS: f64 = 3.0;

fn run(engine: &dyn Engine, pass: Pass, x: &[f64], out: &mut [f64], scalar: &mut [f64]) {
    run_pass(engine, pass, x, out, scalar).expect("engine call");
}

fn engines(c: &mut Criterion) {
    for name in REFERENCE_MODELS {
        let flow = Arc::new(reference_model(name).expect("reference model"));
        let d = flow.dim;
        let mut engines: Vec<(&str, Box<dyn Engine>)> = Vec::new();
        for (label, device) in [("native", Device::Native), ("gpu", Device::Gpu(None)), ("cpu-f64", Device::Cpu)] {
            match open_engine(flow.clone(), &device, &Default::default()) {
                Ok(e) => engines.push((label, e)),
                Err(e) => eprintln!("{name}: no {label} benchmark: {e}"),
            }
        }
        let x = sample_base(&Base::StandardNormal, d, 1_000_000, 1);
        let (mut out, mut scalar) = (vec![0.0; x.len()], vec![0.0; 1_000_000]);
        for pass in [Pass::LogProb, Pass::ToLatent, Pass::ToData] {
            let mut group = c.benchmark_group(format!("{name}/{pass:?}"));
            group.sample_size(10);
            for (label, engine) in &engines {
                // the first call compiles the pass's shader on GPUs: estimate from the second
                run(engine.as_ref(), pass, &x[..2048 * d], &mut out[..2048 * d], &mut scalar[..2048]);
                let start = Instant::now();
                run(engine.as_ref(), pass, &x[..2048 * d], &mut out[..2048 * d], &mut scalar[..2048]);
                let per_row = start.elapsed().as_secs_f64() / 2048.0;
                for rows in [10_000usize, 100_000, 1_000_000] {
                    if per_row * rows as f64 > MAX_ITERATION_SECONDS {
                        eprintln!(
                            "{name}/{pass:?}/{label}/{rows}: skipped (≈{:.0} s per iteration)",
                            per_row * rows as f64
                        );
                        continue;
                    }
                    group.throughput(Throughput::Elements(rows as u64));
                    group.bench_with_input(BenchmarkId::new(*label, rows), &rows, |b, &rows| {
                        b.iter(|| run(engine.as_ref(), pass, &x[..rows * d], &mut out[..rows * d], &mut scalar[..rows]))
                    });
                }
            }
            group.finish();
        }
    }
}

criterion_group!(benches, engines);
criterion_main!(benches);
