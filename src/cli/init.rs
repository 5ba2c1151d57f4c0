//! `realnvp init`: a random, non-trivial model.

use std::path::PathBuf;

use anyhow::Result;

use realnvp::format::TensorDtype;
use realnvp::model::Flow;
use realnvp::model::{Activation, Direction, OutputFn};
use realnvp::random::{init_flow, InitSpec, ScaleKind};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    dim: usize,
    /// Number of coupling layers.
    #[arg(long)]
    layers: usize,
    /// Hidden widths of the s and t MLPs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "64,64")]
    hidden: Vec<usize>,
    /// Hidden activation: relu, leaky_relu[:SLOPE], tanh, elu, silu, gelu.
    #[arg(long, default_value = "relu")]
    activation: Activation,
    /// Scale function of the couplings: exp, tanh-exp, sigmoid, soft-clamp-exp.
    #[arg(long, default_value = "exp")]
    scale_fn: ScaleKind,
    /// Output function of the s nets: identity, tanh.
    #[arg(long, default_value = "identity")]
    s_output: OutputFn,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Store parameters as float64 (default float32).
    #[arg(long)]
    f64: bool,
    /// Names of the D data features, comma-separated, recorded in the model: Parquet input
    /// reads these columns by default, and data-space Parquet outputs are named by them.
    #[arg(long, value_delimiter = ',')]
    feature_names: Vec<String>,
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let spec = InitSpec {
        dim: args.dim,
        layers: args.layers,
        hidden: args.hidden,
        activation: args.activation,
        scale: args.scale_fn,
        s_output: args.s_output,
        direction: Direction::DataToLatent,
    };
    let flow = super::options::with_feature_names(init_flow(&spec, args.seed)?, &args.feature_names)?;
    Flow::save(&flow, &args.output, if args.f64 { TensorDtype::F64 } else { TensorDtype::F32 })?;
    println!(
        "wrote {} ({} parameters, {} FLOPs/row)",
        args.output.display(),
        flow.parameter_count(),
        flow.flops_per_row()
    );
    Ok(())
}
