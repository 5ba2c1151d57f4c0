//! The `realnvp` command-line tool.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use realnvp::bench::{BenchOptions, Pass};
use realnvp::engine::{open_engine, Device, Engine, LogLikelihoodSum};
use realnvp::format::{load_flow, save_flow, TensorDtype};
use realnvp::gpu::kernel::KernelForm;
use realnvp::gpu::GpuOptions;
use realnvp::model::{Activation, Base, Conditioner, Direction, Flow, Layer, OutputFn, ScaleFn};
use realnvp::npy::NpyDtype;
use realnvp::pipeline::{sample_to_file, score_file, transform_file, StreamOptions, Transform};
use realnvp::random::{init_flow, reference_model, sample_base, InitSpec, ScaleKind};
use realnvp::verify::verify;

#[derive(Parser)]
#[command(
    name = "realnvp",
    version,
    about = "Real NVP normalizing flows: bulk log-likelihood scoring, forward, inverse and sampling"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// CPU threads for the native engine and the float64 reference (default: all cores;
    /// RAYON_NUM_THREADS also works).
    #[arg(long, global = true)]
    threads: Option<usize>,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// Device: auto (best hardware GPU, else native), native (float32 SIMD CPU engine), cpu
    /// (float64 reference), gpu (best adapter, lavapipe included), gpu:N (see `realnvp
    /// devices`), all (every adapter).
    #[arg(long, default_value = "auto")]
    device: Device,
    /// Write outputs as float64 instead of float32.
    #[arg(long)]
    f64: bool,
    /// Rows per chunk (0: about 16 MiB of rows).
    #[arg(long, default_value_t = 0)]
    chunk_rows: usize,
    /// GPU kernel: auto (unrolled up to 20,000 multiply-adds per row, else interpreted),
    /// interpreted, unrolled (fastest; compile time grows with the model, see `realnvp info`).
    #[arg(long, default_value = "auto")]
    kernel: KernelForm,
    /// Never draw a progress bar.
    #[arg(long)]
    quiet: bool,
}

impl Common {
    fn stream_options(&self) -> StreamOptions {
        StreamOptions {
            chunk_rows: self.chunk_rows,
            output_dtype: if self.f64 { NpyDtype::F64 } else { NpyDtype::F32 },
            progress: !self.quiet,
        }
    }

    fn gpu_options(&self) -> GpuOptions {
        GpuOptions { chunk_rows: self.chunk_rows, kernel: self.kernel }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Build a random, non-trivial model with alternating masks and write it.
    Init {
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
        activation: String,
        #[arg(long, value_enum, default_value = "exp")]
        scale_fn: ScaleArg,
        /// Output function of the s nets.
        #[arg(long, value_enum, default_value = "identity")]
        s_output: OutputArg,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Store parameters as float64 (default float32).
        #[arg(long)]
        f64: bool,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Convert a trained PyTorch flow (a state_dict saved with safetensors) into a model file.
    Convert {
        /// The library the model was built with.
        #[arg(long = "from", value_enum)]
        library: Library,
        /// The state_dict: `save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, PATH)`.
        state: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Hidden activation of the nets: relu (normflows' and nflows' default), leaky_relu[:SLOPE], tanh, elu, silu, gelu.
        #[arg(long, default_value = "relu")]
        activation: String,
        /// normflows: output_fn of the s nets (and of param_map nets, with --t-output).
        #[arg(long, value_enum, default_value = "identity")]
        s_output: OutputArg,
        /// normflows: output_fn of the t nets.
        #[arg(long, value_enum, default_value = "identity")]
        t_output: OutputArg,
        /// normflows: AffineCouplingBlock split_mode; several (comma-separated) are used in turn,
        /// e.g. checkerboard,checkerboard_inv for alternating blocks.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "channel")]
        split_mode: Vec<SplitArg>,
        /// normflows: AffineCouplingBlock scale_map.
        #[arg(long, value_enum, default_value = "exp")]
        scale_map: ScaleMapArg,
        /// normflows: what flows without tensors are (Permute(mode="swap") has none).
        #[arg(long, value_enum)]
        keyless: Option<KeylessArg>,
        /// normflows: total number of flows (needed when the last flows have no tensors).
        #[arg(long)]
        flows: Option<usize>,
        /// nflows: the architecture.
        #[arg(long, value_enum)]
        arch: Option<ArchArg>,
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
    },
    /// Print a model's dimension, layers, parameters and FLOPs per row.
    Info { model: PathBuf },
    /// Per-row log p(x) and the batch summary.
    Score {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        input: PathBuf,
        /// Per-row log p, shape [N].
        #[arg(long)]
        output: Option<PathBuf>,
        /// Print the summary as one JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Data→latent: z = f(x), with optional per-row log|det ∂z/∂x|.
    Forward {
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
    },
    /// Latent→data: x = f⁻¹(z), with optional per-row log|det ∂x/∂z|.
    Inverse {
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
    },
    /// Draw rows from the model: z from the base, mapped latent→data.
    Sample {
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
    },
    /// The main job on a built-in example: the seed's 4-D flow, sampled, scored and inverted.
    Demo {
        #[arg(short = 'n', long, default_value_t = 100_000)]
        rows: usize,
        #[arg(long, default_value = "auto")]
        device: Device,
    },
    /// Time log p, forward and inverse on each device next to its FMA ceiling: a markdown
    /// table on stdout, JSON with --json.
    Bench {
        /// A model file, or a built-in reference model: seed4d, d16, d64.
        #[arg(long, default_value = "seed4d")]
        model: String,
        #[arg(short = 'n', long, default_value_t = 1_000_000)]
        rows: usize,
        /// Comma-separated devices: all (native and every adapter), native, cpu (float64
        /// reference), gpu (best adapter), gpu:N.
        #[arg(long, value_delimiter = ',', default_value = "all")]
        device: Vec<String>,
        /// Passes to time: log_prob, forward, inverse.
        #[arg(long, value_delimiter = ',', default_value = "log_prob,forward,inverse")]
        passes: Vec<String>,
        /// Timed runs per pass (the best is reported).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Also write the results as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// GPU rows per dispatch (0: about 8 MiB of input).
        #[arg(long, default_value_t = 0)]
        chunk_rows: usize,
        /// Seconds a device may spend per pass; slower devices time fewer rows.
        #[arg(long, default_value_t = 60.0)]
        max_seconds: f64,
        /// GPU kernel: auto (unrolled up to 20,000 multiply-adds per row, else interpreted),
        /// interpreted, unrolled (fastest; compile time grows with the model, see `realnvp info`).
        #[arg(long, default_value = "auto")]
        kernel: KernelForm,
    },
    /// List the GPU adapters (index for --device gpu:N, name, backend, type, driver, limits).
    Devices,
    /// Run a device and the float64 reference on the same rows and compare z, log-det, log p
    /// and the inverse; rows float32 cannot represent or compute well are reported as such.
    Verify {
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
        /// GPU kernel: auto (unrolled up to 20,000 multiply-adds per row, else interpreted),
        /// interpreted, unrolled (fastest; compile time grows with the model, see `realnvp info`).
        #[arg(long, default_value = "auto")]
        kernel: KernelForm,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ScaleArg {
    Exp,
    TanhExp,
    Sigmoid,
    SoftClampExp,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputArg {
    Identity,
    Tanh,
}

#[derive(Clone, Copy, ValueEnum)]
enum Library {
    Normflows,
    Nflows,
}

#[derive(Clone, Copy, ValueEnum)]
enum SplitArg {
    Channel,
    #[value(name = "channel_inv")]
    ChannelInv,
    Checkerboard,
    #[value(name = "checkerboard_inv")]
    CheckerboardInv,
}

#[derive(Clone, Copy, ValueEnum)]
enum ScaleMapArg {
    Exp,
    #[value(name = "sigmoid_inv")]
    SigmoidInv,
}

#[derive(Clone, Copy, ValueEnum)]
enum KeylessArg {
    Swap,
}

#[derive(Clone, Copy, ValueEnum)]
enum ArchArg {
    SimpleRealnvp,
}

fn output_fn(o: OutputArg) -> OutputFn {
    match o {
        OutputArg::Identity => OutputFn::Identity,
        OutputArg::Tanh => OutputFn::Tanh,
    }
}

/// `realnvp … | head` closes stdout early; `println!` then panics. Exit quietly with the
/// status of a SIGPIPE death (128 + 13) instead, as other command-line tools do.
fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg =
            payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied());
        if msg.is_some_and(|m| m.contains("Broken pipe")) {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    exit_quietly_on_broken_pipe();
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        if let Err(e) = rayon::ThreadPoolBuilder::new().num_threads(n).build_global() {
            eprintln!("error: --threads {n}: {e}");
            return ExitCode::FAILURE;
        }
    }
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Init { dim, layers, hidden, activation, scale_fn, s_output, seed, f64, output } => {
            let spec = InitSpec {
                dim,
                layers,
                hidden,
                activation: parse_activation(&activation)?,
                scale: match scale_fn {
                    ScaleArg::Exp => ScaleKind::Exp,
                    ScaleArg::TanhExp => ScaleKind::TanhExp,
                    ScaleArg::Sigmoid => ScaleKind::Sigmoid,
                    ScaleArg::SoftClampExp => ScaleKind::SoftClampExp,
                },
                s_output: output_fn(s_output),
                direction: Direction::DataToLatent,
            };
            let flow = init_flow(&spec, seed)?;
            save_flow(&flow, &output, if f64 { TensorDtype::F64 } else { TensorDtype::F32 })?;
            println!(
                "wrote {} ({} parameters, {} FLOPs/row)",
                output.display(),
                flow.parameter_count(),
                flow.flops_per_row()
            );
            Ok(())
        }
        Command::Convert {
            library,
            state,
            output,
            activation,
            s_output,
            t_output,
            split_mode,
            scale_map,
            keyless,
            flows,
            arch,
            features,
            hidden,
            layers,
            blocks_per_layer,
            batch_norm_between,
            f32,
        } => {
            use realnvp::convert::{self, NflowsArch, NflowsOptions, NormflowsOptions, StateDict};
            let bytes = std::fs::read(&state).with_context(|| format!("reading {}", state.display()))?;
            let mut sd = StateDict::from_bytes(&bytes).with_context(|| format!("reading {}", state.display()))?;
            let activation = parse_activation(&activation)?;
            let nflows_only = [
                features.is_some(),
                hidden.is_some(),
                layers.is_some(),
                blocks_per_layer.is_some(),
                batch_norm_between,
                arch.is_some(),
            ];
            let flow = match library {
                Library::Normflows => {
                    if nflows_only.iter().any(|&given| given) {
                        bail!("--arch, --features, --hidden, --layers, --blocks-per-layer and --batch-norm-between apply to --from nflows");
                    }
                    let options = NormflowsOptions {
                        activation,
                        s_output: output_fn(s_output),
                        t_output: output_fn(t_output),
                        split_modes: split_mode
                            .iter()
                            .map(|m| match m {
                                SplitArg::Channel => convert::SplitMode::Channel,
                                SplitArg::ChannelInv => convert::SplitMode::ChannelInv,
                                SplitArg::Checkerboard => convert::SplitMode::Checkerboard,
                                SplitArg::CheckerboardInv => convert::SplitMode::CheckerboardInv,
                            })
                            .collect(),
                        scale_map: match scale_map {
                            ScaleMapArg::Exp => convert::ScaleMap::Exp,
                            ScaleMapArg::SigmoidInv => convert::ScaleMap::SigmoidInv,
                        },
                        keyless: keyless.map(|KeylessArg::Swap| convert::Keyless::Swap),
                        flows,
                    };
                    convert::from_normflows(&mut sd, &options)
                }
                Library::Nflows => {
                    let need = |v: Option<usize>, flag: &str| v.with_context(|| format!("--from nflows needs {flag}"));
                    let options = NflowsOptions {
                        arch: match arch {
                            Some(ArchArg::SimpleRealnvp) => NflowsArch::SimpleRealNvp,
                            None => bail!("--from nflows needs --arch simple-realnvp"),
                        },
                        features: need(features, "--features D")?,
                        hidden: need(hidden, "--hidden H")?,
                        layers: need(layers, "--layers L")?,
                        blocks_per_layer: need(blocks_per_layer, "--blocks-per-layer B")?,
                        batch_norm_between,
                        activation,
                    };
                    convert::from_nflows(&mut sd, &options)
                }
            }
            .with_context(|| format!("converting {}", state.display()))?;
            save_flow(&flow, &output, if f32 { TensorDtype::F32 } else { TensorDtype::F64 })?;
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
        Command::Info { model } => {
            print!("{}", describe(&load_flow(&model)?));
            Ok(())
        }
        Command::Score { model, input, output, json, common } => {
            let engine = engine_for(&model, &common)?;
            let summary = score_file(engine.as_ref(), &input, output.as_deref(), &common.stream_options())?;
            if json {
                println!("{}", serde_json::to_string(&summary)?);
            } else {
                println!("{summary}");
            }
            Ok(())
        }
        Command::Forward { model, input, output, logdet, common } => {
            transform(&model, Transform::DataToLatent, &input, &output, logdet.as_deref(), &common)
        }
        Command::Inverse { model, input, output, logdet, common } => {
            transform(&model, Transform::LatentToData, &input, &output, logdet.as_deref(), &common)
        }
        Command::Sample { model, rows, seed, output, common } => {
            let engine = engine_for(&model, &common)?;
            let summary = sample_to_file(engine.as_ref(), rows, seed, &output, &common.stream_options())?;
            println!("sampled {summary} → {}", output.display());
            Ok(())
        }
        Command::Demo { rows, device } => demo(rows, &device),
        Command::Bench { model, rows, device, passes, repeats, json, chunk_rows, max_seconds, kernel } => {
            let options = BenchOptions {
                rows,
                repeats,
                passes: Vec::new(),
                reference: false,
                native: false,
                adapters: Vec::new(),
                gpu: GpuOptions { chunk_rows, kernel },
                max_seconds,
            };
            bench(&model, &device, &passes, options, json.as_deref())
        }
        Command::Devices => {
            let instance = realnvp::gpu::instance();
            let adapters = realnvp::gpu::adapters(&instance);
            if adapters.is_empty() {
                println!(
                    "no GPU adapters (install a Vulkan driver, e.g. mesa-vulkan-drivers); --device cpu still works"
                );
            }
            for (i, a) in adapters.iter().enumerate() {
                println!("{}", realnvp::gpu::describe_adapter(i, a));
            }
            Ok(())
        }
        Command::Verify { model, input, rows, seed, device, chunk_rows, kernel } => {
            let flow = Arc::new(load_flow(&model)?);
            let engine = open_engine(flow.clone(), &device, &GpuOptions { chunk_rows, kernel })?;
            let x = match input {
                Some(path) => {
                    let (x, _, cols) = realnvp::npy::read_all(&path)?;
                    if cols != flow.dim {
                        bail!("{} has {cols} columns but the model's D is {}", path.display(), flow.dim);
                    }
                    println!("rows: {} from {}", x.len() / flow.dim, path.display());
                    x
                }
                None => {
                    let x = realnvp::verify::model_rows(&flow, rows, seed);
                    let drawn = x.len() / flow.dim;
                    println!(
                        "rows: {drawn} drawn from the model (x = f⁻¹(ε), ε from its base, seed {seed}){}",
                        if drawn < rows {
                            format!("; {} draws were not finite in float32 and were dropped", rows - drawn)
                        } else {
                            String::new()
                        }
                    );
                    x
                }
            };
            let report = verify(engine.as_ref(), &x)?;
            println!("{report}");
            if !report.passed() {
                bail!("{} disagrees with the float64 reference beyond the float32 tolerance", engine.name());
            }
            Ok(())
        }
    }
}

fn engine_for(model: &Path, common: &Common) -> Result<Box<dyn Engine>> {
    let flow = Arc::new(load_flow(model)?);
    let engine = open_engine(flow.clone(), &common.device, &common.gpu_options())?;
    if common.device == Device::Auto && !common.quiet {
        eprintln!("device: {}", engine.name());
    }
    let multiply_adds = realnvp::gpu::unrolled::multiply_adds(&flow);
    if engine.name().contains("unrolled kernel")
        && multiply_adds > realnvp::gpu::unrolled::MAX_MULTIPLY_ADDS
        && !common.quiet
    {
        eprintln!(
            "note: the unrolled kernel has {multiply_adds} multiply-adds per row; the first chunk waits for its compile (lavapipe: about a minute for 80k; cached for later runs)"
        );
    }
    Ok(engine)
}

fn transform(
    model: &Path,
    t: Transform,
    input: &Path,
    output: &Path,
    logdet: Option<&Path>,
    common: &Common,
) -> Result<()> {
    let engine = engine_for(model, common)?;
    let summary = transform_file(engine.as_ref(), t, input, output, logdet, &common.stream_options())?;
    println!("{summary} → {}", output.display());
    Ok(())
}

fn parse_activation(s: &str) -> Result<Activation> {
    Ok(match s {
        "relu" => Activation::Relu,
        "leaky_relu" => Activation::LeakyRelu { negative_slope: realnvp::format::DEFAULT_NEGATIVE_SLOPE },
        "tanh" => Activation::Tanh,
        "elu" => Activation::Elu,
        "silu" => Activation::Silu,
        "gelu" => Activation::Gelu,
        other => match other.strip_prefix("leaky_relu:").map(str::parse::<f64>) {
            Some(Ok(slope)) if slope.is_finite() => Activation::LeakyRelu { negative_slope: slope },
            _ => bail!("unknown activation {other:?}; use relu, leaky_relu[:SLOPE], tanh, elu, silu or gelu"),
        },
    })
}

/// A human-readable description of a flow for `realnvp info`.
fn describe(flow: &Flow) -> String {
    let mut out = format!("dimension        {}\n", flow.dim);
    let base = match &flow.base {
        Base::StandardNormal => "standard_normal",
        Base::DiagonalNormal { .. } => "diagonal_normal",
    };
    out += &format!("base             {base}\n");
    out += &format!("layers           {}\n", flow.layers.len());
    out += &format!("parameters       {}\n", flow.parameter_count());
    out += &format!("FLOPs per row    {} (log p, mask-pruned)\n", flow.flops_per_row());
    out += &format!(
        "GPU kernel       {} by default (--kernel auto: unrolled up to {} multiply-adds per row, this model has {})\n",
        KernelForm::Auto.resolve(flow).name(),
        realnvp::gpu::unrolled::MAX_MULTIPLY_ADDS,
        realnvp::gpu::unrolled::multiply_adds(flow),
    );
    out += "\n  #  kind                details                                             params    FLOPs/row\n";
    for (i, layer) in flow.layers.iter().enumerate() {
        out += &format!(
            "{i:>3}  {:<19} {:<50} {:>8} {:>12}\n",
            layer.kind(),
            layer_details(layer),
            layer.parameter_count(),
            layer.flops_per_row()
        );
    }
    out
}

fn layer_details(layer: &Layer) -> String {
    match layer {
        Layer::Coupling(c) => {
            let mask: String = c.mask.iter().map(|&b| if b { '1' } else { '0' }).collect();
            let mask = if mask.len() > 16 { format!("{}…", &mask[..16]) } else { mask };
            let cond = match &c.conditioner {
                Conditioner::MaskedSt { s, .. } => format!("masked_st {:?}", s.sizes()),
                Conditioner::Shared { st, .. } if st.residual_blocks > 0 => {
                    format!("shared residual×{} {:?}", st.residual_blocks, st.sizes())
                }
                Conditioner::Shared { st, .. } => format!("shared {:?}", st.sizes()),
            };
            let scale = match c.scale {
                ScaleFn::Exp => "exp",
                ScaleFn::TanhExp { .. } => "tanh_exp",
                ScaleFn::Sigmoid { .. } => "sigmoid",
                ScaleFn::SoftClampExp { .. } => "soft_clamp_exp",
            };
            format!("b={mask} {cond} {scale}")
        }
        Layer::ElementwiseAffine { direction, .. } => format!("{direction:?}"),
        Layer::Permutation { perm } => format!("{perm:?}").chars().take(50).collect(),
    }
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
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(7);
    let z = sample_base(&flow.base, flow.dim, rows, &mut rng);
    let (mut x, mut ld) = (vec![0.0; z.len()], vec![0.0; rows]);
    engine.inverse_to_data(&z, &mut x, &mut ld).context("sampling")?;
    println!("drew {rows} rows x = f⁻¹(z), z ~ N(0, I)");

    let start = std::time::Instant::now();
    let mut logp = vec![0.0; rows];
    let mut sum = LogLikelihoodSum::default();
    engine.log_prob(&x, &mut logp, &mut sum)?;
    let summary = realnvp::pipeline::ScoreSummary::new(engine.name(), flow.dim, &sum, start.elapsed().as_secs_f64());
    println!("{summary}\n");

    let report = verify(engine.as_ref(), &x)?;
    println!("{report}");
    if !report.passed() {
        bail!("the device disagrees with the float64 reference");
    }
    println!("OK");
    Ok(())
}

fn bench(
    model: &str,
    devices: &[String],
    passes: &[String],
    mut options: BenchOptions,
    json: Option<&Path>,
) -> Result<()> {
    if options.rows == 0 || options.max_seconds.is_nan() || options.max_seconds <= 0.0 {
        bail!("--rows and --max-seconds must be positive");
    }
    let flow = match reference_model(model) {
        Some(flow) => flow,
        None => load_flow(Path::new(model))
            .with_context(|| format!("{model} is neither a model file nor one of seed4d, d16, d64"))?,
    };
    options.passes = passes
        .iter()
        .map(|p| match p.as_str() {
            "log_prob" => Ok(Pass::LogProb),
            "forward" => Ok(Pass::ForwardToLatent),
            "inverse" => Ok(Pass::InverseToData),
            other => Err(anyhow::anyhow!("unknown pass {other:?}; use log_prob, forward, inverse")),
        })
        .collect::<Result<Vec<_>>>()?;
    let adapter_count = || realnvp::gpu::adapters(&realnvp::gpu::instance()).len();
    for d in devices {
        match d.parse::<Device>()? {
            Device::All => {
                options.native = true;
                options.adapters.extend(0..adapter_count());
            }
            Device::Native => options.native = true,
            Device::Cpu => options.reference = true,
            Device::Gpu(Some(n)) => options.adapters.push(n),
            Device::Gpu(None) | Device::Auto => {
                let instance = realnvp::gpu::instance();
                let adapters = realnvp::gpu::adapters(&instance);
                let best = (0..adapters.len()).min_by_key(|&k| realnvp::gpu::adapter_rank(&adapters[k].get_info()));
                options.adapters.push(best.ok_or_else(|| anyhow::anyhow!("no GPU adapter found"))?);
            }
        }
    }
    let report = realnvp::bench::run(Arc::new(flow), model, &options, &|line| eprintln!("{line}"));
    println!("{}", report.markdown());
    if let Some(path) = json {
        realnvp::format::write_atomically(path, serde_json::to_string_pretty(&report)?.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
