//! `realnvp sample`: rows drawn from the model into a `.npy` file.

use std::path::PathBuf;

use anyhow::Result;

use realnvp::pipeline::sample_to_file;

use super::options::Common;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    model: PathBuf,
    #[arg(short = 'n', long)]
    rows: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    output: PathBuf,
    #[command(flatten)]
    common: Common,
}

pub fn run(args: Args) -> Result<()> {
    let engine = args.common.engine(&args.model)?;
    let summary = sample_to_file(engine.as_ref(), args.rows, args.seed, &args.output, &args.common.stream_options())?;
    println!("sampled {summary} → {}", args.output.display());
    Ok(())
}
