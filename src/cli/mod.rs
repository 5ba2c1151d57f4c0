//! The `realnvp` subcommands, one file each (cargo's `commands/` shape): each file holds the
//! subcommand's arguments and its `run`; [`options`] holds the options several share. This
//! module holds the command enum and the dispatch.

mod bench;
mod convert;
mod demo;
mod devices;
mod info;
mod init;
pub mod interrupt;
mod options;
mod plot;
mod sample;
mod score;
mod transform;
mod verify;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "realnvp",
    version,
    about = "Real NVP normalizing flows: bulk log-likelihood scoring, forward, inverse and sampling"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// CPU threads for the native engine and the float64 reference (default: all cores;
    /// RAYON_NUM_THREADS also works).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Build a random, non-trivial model with alternating masks and write it.
    Init(init::Args),
    /// Convert a trained PyTorch flow (a state_dict saved with safetensors) into a model file.
    Convert(convert::Args),
    /// Print a model's dimension, layers, parameters and FLOPs per row.
    Info(info::Args),
    /// Per-row log p(x) and the batch summary.
    Score(score::Args),
    /// Data→latent: z = f(x), with optional per-row log|det ∂z/∂x|.
    Forward(transform::Args),
    /// Latent→data: x = f⁻¹(z), with optional per-row log|det ∂x/∂z|.
    Inverse(transform::Args),
    /// Draw rows from the model: z from the base, mapped latent→data.
    Sample(sample::Args),
    /// The main job on a built-in example: the seed's 4-D flow, sampled, scored and inverted.
    Demo(demo::Args),
    /// Time log p, forward and inverse on each device next to its FMA ceiling: a markdown
    /// table on stdout, JSON with --json.
    Bench(bench::Args),
    /// List the GPU adapters (index for --device gpu:N, name, backend, type, driver, limits).
    Devices,
    /// Run a device and the float64 reference on the same rows and compare z, log-det, log p
    /// and the inverse; rows float32 cannot represent or compute well are reported as such.
    Verify(verify::Args),
    /// Pictures as PNG or SVG: the model's density, a histogram of scores, a benchmark chart.
    Plot(plot::Args),
}

/// Runs one subcommand.
pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Init(args) => init::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Info(args) => info::run(args),
        Command::Score(args) => score::run(args),
        Command::Forward(args) => transform::run(args, realnvp::engine::Pass::ToLatent),
        Command::Inverse(args) => transform::run(args, realnvp::engine::Pass::ToData),
        Command::Sample(args) => sample::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Devices => devices::run(),
        Command::Verify(args) => verify::run(args),
        Command::Plot(args) => plot::run(args),
    }
}
