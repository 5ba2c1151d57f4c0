//! `realnvp sample`: rows drawn from the model into a `.npy` file or Parquet table (columns row, x0…, log_q).

use std::path::PathBuf;

use anyhow::Result;

use realnvp::pipeline::sample_to_file;
use realnvp::sample::Draw;

use super::options::Common;

#[derive(clap::Args)]
pub struct Args {
    /// A model file, or a built-in model: seed4d, d16, d64.
    #[arg(long)]
    model: PathBuf,
    #[arg(short = 'n', long)]
    rows: usize,
    /// Seed of the sample stream: row i is a pure function of (seed, i).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Index of the first row to draw: `--first-row K -n N` writes rows K…K+N−1 of the
    /// stream, the same rows a single larger run writes there (shard a run by row ranges).
    #[arg(long, default_value_t = 0)]
    first_row: u64,
    /// Multiplies the base's standard deviation (Glow's sampling temperature; 1 = the model).
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Also write log q(x) `[N]` (nats) of each row: the density of the tempered model (base
    /// N(μ, T²σ²), same flow), i.e. log p(x) at temperature 1.
    #[arg(long)]
    with_log_prob: Option<PathBuf>,
    /// Rows [N, D] (.npy), or a .parquet table with row (the global row index), x0… and log_q.
    #[arg(long)]
    output: PathBuf,
    #[command(flatten)]
    common: Common,
}

pub fn run(args: Args) -> Result<()> {
    let outputs: Vec<&std::path::Path> =
        std::iter::once(args.output.as_path()).chain(args.with_log_prob.as_deref()).collect();
    realnvp::output::check_distinct(&[&args.model], &outputs)?;
    let engine = args.common.engine(&args.model)?;
    let draw = Draw { seed: args.seed, first_row: args.first_row, temperature: args.temperature };
    draw.check(args.rows)?;
    let options = args.common.stream_options();
    let log_q = args.with_log_prob.as_deref();
    let summary = sample_to_file(engine.as_ref(), args.rows, &draw, &args.output, log_q, &options)?;
    println!("sampled {summary} → {}", args.output.display());
    Ok(())
}
