//! `realnvp score`: per-row log p(x) of a `.npy` file or Parquet table, and the batch summary.

use std::path::PathBuf;

use anyhow::Result;

use realnvp::pipeline::score_file;

use super::options::Common;

#[derive(clap::Args)]
pub struct Args {
    /// A model file, or a built-in model: seed4d, d16, d64.
    #[arg(long)]
    model: PathBuf,
    /// Rows [N, D]: a .npy array, a .parquet table, or a directory of .parquet files read as one table in path order (see --columns, --keep)
    #[arg(long)]
    input: PathBuf,
    /// Per-row log p [N] (.npy), or a .parquet table with the kept columns and log_prob.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// Also list the K least likely rows with a finite log p (row index and log p, least
    /// likely first; in --json as "lowest": [{"row": i, "log_p": v}, …]). Holds only K rows.
    #[arg(long, value_name = "K", default_value_t = 0)]
    lowest: usize,
    #[command(flatten)]
    common: Common,
}

pub fn run(args: Args) -> Result<()> {
    realnvp::output::check_distinct(&[&args.model], &args.output.iter().map(|p| p.as_path()).collect::<Vec<_>>())?;
    let engine = args.common.engine(&args.model)?;
    let options = realnvp::pipeline::StreamOptions { lowest: args.lowest, ..args.common.stream_options() };
    let summary = score_file(engine.as_ref(), &args.input, args.output.as_deref(), &options)?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("{summary}");
    }
    Ok(())
}
