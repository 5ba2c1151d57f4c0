//! `realnvp demo`: the main job on a built-in example.

use std::sync::Arc;

use anyhow::{bail, Context, Result};

use realnvp::device::{open_engine, Device};
use realnvp::engine::LogLikelihoodSum;
use realnvp::gpu::GpuOptions;
use realnvp::pipeline::ScoreSummary;
use realnvp::random::reference_model;
use realnvp::sample::Draw;
use realnvp::verify::verify;

#[derive(clap::Args)]
pub struct Args {
    #[arg(short = 'n', long, default_value_t = 100_000)]
    rows: usize,
    #[arg(long, default_value = "auto")]
    device: Device,
}

pub fn run(args: Args) -> Result<()> {
    demo(args.rows, &args.device)
}

/// The seed's 4-D flow: sample, score, check inverse∘forward, and check the device against
/// the float64 reference.
fn demo(rows: usize, device: &Device) -> Result<()> {
    if rows == 0 {
        bail!("demo needs at least one row (-n)");
    }
    let flow = Arc::new(reference_model("seed4d").context("built-in seed4d model")?);
    let engine = open_engine(flow.clone(), device, &GpuOptions::default())?;
    println!("Real NVP demo: the seed's 4-D flow, 6 affine couplings with masks b = (1,1,0,0) / (0,0,1,1),");
    println!(
        "s and t MLPs [4,32,32,4] (ReLU), standard normal base; {} FLOPs per row (mask-pruned).",
        flow.flops_per_row()
    );
    println!("device: {}\n", engine.name());
    let (mut x, mut log_q) = (vec![0.0; rows * flow.dim], vec![0.0; rows]);
    engine.sample_rows(&Draw::new(7, 0), &mut x, &mut log_q).context("sampling")?;
    println!("drew {rows} rows x = f⁻¹(z), z ~ N(0, I) (seed 7)");

    let start = std::time::Instant::now();
    let mut logp = vec![0.0; rows];
    let mut sum = LogLikelihoodSum::default();
    engine.log_prob(&x, &mut logp, &mut sum)?;
    let summary = ScoreSummary::new(engine.name(), flow.dim, &sum, start.elapsed().as_secs_f64());
    println!("{summary}\n");

    let report = verify(engine.as_ref(), &x)?;
    println!("{report}");
    if !report.passed() {
        bail!("the device disagrees with the float64 reference");
    }
    println!("OK");
    Ok(())
}
