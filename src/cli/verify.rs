//! `realnvp verify`: a device against the float64 reference on the same rows.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Result};

use realnvp::device::{open_engine, Device};
use realnvp::gpu::{GpuOptions, TierSwitch, WORKGROUP_ROWS};
use realnvp::model::Flow;
use realnvp::verify::{model_rows, verify};

use super::options::KernelArg;

#[derive(clap::Args)]
pub struct Args {
    /// A model file, or a built-in model: seed4d, d16, d64.
    #[arg(long)]
    model: PathBuf,
    /// Rows to check (.npy, [N, D]); without it, -n rows are drawn from the model itself
    /// (x = f⁻¹(ε), ε from the base, with --seed), i.e. where its probability mass is.
    #[arg(long)]
    input: Option<PathBuf>,
    #[arg(short = 'n', long, default_value_t = 100_000)]
    rows: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "auto")]
    device: Device,
    #[arg(long, default_value_t = 0)]
    chunk_rows: usize,
    #[command(flatten)]
    kernel: KernelArg,
}

pub fn run(args: Args) -> Result<()> {
    let flow = Arc::new(super::options::load_model(&args.model)?);
    let x = rows(&args, &flow)?;
    // a tiered kernel is checked in both forms: the first half of the rows interpreted, the
    // rest unrolled, in every pass
    let half = (x.len() / flow.dim.max(1) / 2 / WORKGROUP_ROWS * WORKGROUP_ROWS) as u64;
    let options =
        GpuOptions { chunk_rows: args.chunk_rows, kernel: args.kernel.kernel, switch: TierSwitch::AtRow(half) };
    let engine = open_engine(flow.clone(), &args.device, &options)?;
    let report = verify(engine.as_ref(), &x)?;
    println!("{report}");
    if !report.passed() {
        bail!("{} disagrees with the float64 reference beyond the float32 tolerance", engine.name());
    }
    Ok(())
}

/// The rows to check: `--input`, or `-n` rows drawn from the model.
fn rows(args: &Args, flow: &Flow) -> Result<Vec<f64>> {
    if let Some(path) = &args.input {
        let reader = realnvp::npy::NpyReader::open(path)?;
        if reader.cols() != flow.dim {
            bail!("{} has {} columns but the model's D is {}", path.display(), reader.cols(), flow.dim);
        }
        realnvp::verify::check_size(reader.rows(), flow.dim)?;
        let (x, _, _) = realnvp::npy::read_all(path)?;
        println!("rows: {} from {}", x.len() / flow.dim, path.display());
        return Ok(x);
    }
    let x = model_rows(flow, args.rows, args.seed)?;
    let drawn = x.len() / flow.dim;
    let dropped = if drawn < args.rows {
        format!("; {} draws were not finite in float32 and were dropped", args.rows - drawn)
    } else {
        String::new()
    };
    println!("rows: {drawn} drawn from the model (x = f⁻¹(ε), ε from its base, seed {}){dropped}", args.seed);
    Ok(x)
}
