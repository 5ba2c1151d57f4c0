//! Throughput of log p on the float64 reference and on the default GPU adapter (when one
//! exists), for the seed's 4-D flow (`realnvp init --dim 4 --layers 6 --hidden 32,32`).
//! Run: `WGPU_BACKEND=vulkan cargo bench`. Reported as rows/s (criterion "elements").

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::SeedableRng;
use realnvp::engine::{open_engine, Device, Engine, LogLikelihoodSum};
use realnvp::model::Base;
use realnvp::random::{init_flow, sample_base, InitSpec};

fn log_prob(c: &mut Criterion) {
    let flow = Arc::new(init_flow(&InitSpec::seed4d(6), 4).expect("seed4d"));
    let mut engines: Vec<(&str, Box<dyn Engine>)> = vec![("cpu-f64", open_engine(flow.clone(), &Device::Cpu, &Default::default()).expect("cpu"))];
    match open_engine(flow.clone(), &Device::Gpu(None), &Default::default()) {
        Ok(e) => engines.push(("gpu", e)),
        Err(e) => eprintln!("no GPU benchmark: {e}"),
    }
    let mut group = c.benchmark_group("seed4d_log_prob");
    group.sample_size(10);
    for rows in [10_000usize, 100_000] {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let x = sample_base(&Base::StandardNormal, 4, rows, &mut rng);
        let mut logp = vec![0.0; rows];
        group.throughput(Throughput::Elements(rows as u64));
        for (name, engine) in &engines {
            group.bench_with_input(BenchmarkId::new(*name, rows), &rows, |b, _| {
                b.iter(|| engine.log_prob(&x, &mut logp, &mut LogLikelihoodSum::default()).expect("log_prob"))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, log_prob);
criterion_main!(benches);
