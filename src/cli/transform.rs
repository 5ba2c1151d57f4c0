//! `realnvp forward` (data→latent) and `realnvp inverse` (latent→data) of a `.npy` file or Parquet table.

use std::path::PathBuf;

use anyhow::Result;

use realnvp::engine::Pass;
use realnvp::pipeline::transform_file;

use super::options::Common;

#[derive(clap::Args)]
pub struct Args {
    /// A model file, or a built-in model: seed4d, d16, d64.
    #[arg(long)]
    model: PathBuf,
    /// Rows [N, D]: a .npy array, a .parquet table, or a directory of .parquet files read as one table in path order (see --columns, --keep)
    #[arg(long)]
    input: PathBuf,
    /// Mapped rows [N, D] (.npy), or a .parquet table with the kept columns, z0… (forward) or
    /// x0… (inverse) and logdet.
    #[arg(long)]
    output: PathBuf,
    /// The per-row log-det [N] (.npy; a Parquet output holds it as the column logdet).
    #[arg(long)]
    logdet: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

/// Maps the input with `pass` ([`Pass::ToLatent`] or [`Pass::ToData`]).
pub fn run(args: Args, pass: Pass) -> Result<()> {
    let outputs: Vec<&std::path::Path> = std::iter::once(args.output.as_path()).chain(args.logdet.as_deref()).collect();
    realnvp::output::check_distinct(&[&args.model], &outputs)?;
    let engine = args.common.engine(&args.model)?;
    let options = args.common.stream_options();
    let summary = transform_file(engine.as_ref(), pass, &args.input, &args.output, args.logdet.as_deref(), &options)?;
    println!("{summary} → {}", args.output.display());
    Ok(())
}
