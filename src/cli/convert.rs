//! `realnvp convert`: a trained PyTorch flow (normflows, nflows) into a model file.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;

use realnvp::convert::{self, Keyless, NflowsArch, NflowsOptions, NormflowsOptions, ScaleMap, SplitMode, StateDict};
use realnvp::format::TensorDtype;
use realnvp::model::{Activation, Flow, OutputFn};

/// The library a model was built with.
#[derive(Clone, Copy, ValueEnum)]
enum Library {
    Normflows,
    Nflows,
}

#[derive(clap::Args)]
pub struct Args {
    /// The library the model was built with.
    #[arg(long = "from", value_enum)]
    library: Library,
    /// The state_dict: `save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, PATH)`.
    state: PathBuf,
    #[arg(short, long)]
    output: PathBuf,
    /// Hidden activation of the nets: relu (normflows' and nflows' default), leaky_relu[:SLOPE], tanh, elu, silu, gelu.
    #[arg(long, default_value = "relu")]
    activation: Activation,
    /// normflows: output_fn of the s nets (and of param_map nets, with --t-output): identity, tanh.
    #[arg(long, default_value = "identity")]
    s_output: OutputFn,
    /// normflows: output_fn of the t nets: identity, tanh.
    #[arg(long, default_value = "identity")]
    t_output: OutputFn,
    /// normflows: AffineCouplingBlock split_mode (channel, channel_inv, checkerboard,
    /// checkerboard_inv); several (comma-separated) are used in turn, e.g.
    /// checkerboard,checkerboard_inv for alternating blocks.
    #[arg(long, value_delimiter = ',', default_value = "channel")]
    split_mode: Vec<SplitMode>,
    /// normflows: AffineCouplingBlock scale_map: exp, sigmoid_inv.
    #[arg(long, default_value = "exp")]
    scale_map: ScaleMap,
    /// normflows: what flows without tensors are (Permute(mode="swap") has none): swap.
    #[arg(long)]
    keyless: Option<Keyless>,
    /// normflows: total number of flows (needed when the last flows have no tensors).
    #[arg(long)]
    flows: Option<usize>,
    /// nflows: the architecture: simple-realnvp.
    #[arg(long)]
    arch: Option<NflowsArch>,
    /// nflows: SimpleRealNVP(features=…).
    #[arg(long)]
    features: Option<usize>,
    /// nflows: hidden_features.
    #[arg(long)]
    hidden: Option<usize>,
    /// nflows: num_layers.
    #[arg(long)]
    layers: Option<usize>,
    /// nflows: num_blocks_per_layer.
    #[arg(long)]
    blocks_per_layer: Option<usize>,
    /// nflows: batch_norm_between_layers=True.
    #[arg(long)]
    batch_norm_between: bool,
    /// Store parameters as float32 (default float64: derived values such as folded batch
    /// norms keep full precision).
    #[arg(long)]
    f32: bool,
    /// Names of the D data features, comma-separated, recorded in the model: Parquet input
    /// reads these columns by default, and data-space Parquet outputs are named by them.
    #[arg(long, value_delimiter = ',')]
    feature_names: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    let state = &args.state;
    realnvp::output::check_distinct(&[state], &[&args.output])?;
    let bytes = realnvp::format::read_regular_file(state)?;
    let mut sd = StateDict::from_bytes(&bytes).with_context(|| format!("reading {}", state.display()))?;
    let flow = match args.library {
        Library::Normflows => normflows(&args, &mut sd)?,
        Library::Nflows => nflows(&args, &mut sd)?,
    };
    let flow = super::options::with_feature_names(flow, &args.feature_names)?;
    let output = &args.output;
    Flow::save(&flow, output, if args.f32 { TensorDtype::F32 } else { TensorDtype::F64 })?;
    println!(
        "wrote {} (D = {}, {} layers, {} parameters, {} FLOPs/row); check it with `realnvp verify --model {}`",
        output.display(),
        flow.dim,
        flow.layers.len(),
        flow.parameter_count(),
        flow.flops_per_row(),
        output.display()
    );
    Ok(())
}

fn normflows(args: &Args, sd: &mut StateDict) -> Result<Flow> {
    let nflows_only = [
        args.features.is_some(),
        args.hidden.is_some(),
        args.layers.is_some(),
        args.blocks_per_layer.is_some(),
        args.batch_norm_between,
        args.arch.is_some(),
    ];
    if nflows_only.iter().any(|&given| given) {
        bail!("--arch, --features, --hidden, --layers, --blocks-per-layer and --batch-norm-between apply to --from nflows");
    }
    let options = NormflowsOptions {
        activation: args.activation,
        s_output: args.s_output,
        t_output: args.t_output,
        split_modes: args.split_mode.clone(),
        scale_map: args.scale_map,
        keyless: args.keyless,
        flows: args.flows,
    };
    convert::from_normflows(sd, &options).with_context(|| format!("converting {}", args.state.display()))
}

fn nflows(args: &Args, sd: &mut StateDict) -> Result<Flow> {
    let need = |v: Option<usize>, flag: &str| v.with_context(|| format!("--from nflows needs {flag}"));
    let options = NflowsOptions {
        arch: args.arch.context("--from nflows needs --arch simple-realnvp")?,
        features: need(args.features, "--features D")?,
        hidden: need(args.hidden, "--hidden H")?,
        layers: need(args.layers, "--layers L")?,
        blocks_per_layer: need(args.blocks_per_layer, "--blocks-per-layer B")?,
        batch_norm_between: args.batch_norm_between,
        activation: args.activation,
    };
    convert::from_nflows(sd, &options).with_context(|| format!("converting {}", args.state.display()))
}
