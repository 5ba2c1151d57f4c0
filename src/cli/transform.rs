//! `realnvp forward` (data→latent) and `realnvp inverse` (latent→data) of a `.npy` file.

use std::path::PathBuf;

use anyhow::Result;

use realnvp::engine::Pass;
use realnvp::pipeline::transform_file;

use super::options::Common;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    input: PathBuf,
    #[arg(long)]
    output: PathBuf,
    #[arg(long)]
    logdet: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

/// Maps the input with `pass` ([`Pass::ToLatent`] or [`Pass::ToData`]).
pub fn run(args: Args, pass: Pass) -> Result<()> {
    let engine = args.common.engine(&args.model)?;
    let options = args.common.stream_options();
    let summary = transform_file(engine.as_ref(), pass, &args.input, &args.output, args.logdet.as_deref(), &options)?;
    println!("{summary} → {}", args.output.display());
    Ok(())
}
