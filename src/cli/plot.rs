//! `realnvp plot density|scores|bench`: pictures as PNG or SVG (by the output's extension).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use realnvp::plot::bench::BenchFigure;
use realnvp::plot::density::{DensityFigure, DensityOptions, DEFAULT_SAMPLES};
use realnvp::plot::scores::{summarize, ScoresFigure, ScoresOptions};
use realnvp::plot::{save, Format};

use super::options::Common;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// The model's density over two dimensions: exact for D = 2 (log p per pixel through the
    /// engine), else the 2-D marginal of rows sampled from the model; --data draws the data's
    /// histogram beside it on the same axes and colour scale.
    Density(DensityArgs),
    /// The histogram of per-row log p (`realnvp score --output`), with the mean, bits/dim, the
    /// non-finite rows and a quantile threshold.
    Scores(ScoresArgs),
    /// Rows/s per device and pass from `realnvp bench --json`, with each device's FMA ceiling.
    Bench(BenchArgs),
}

/// Output picture and its size, shared by every plot.
#[derive(clap::Args)]
struct Picture {
    /// The picture: .png or .svg.
    #[arg(short, long)]
    output: PathBuf,
    /// Width×height in pixels.
    #[arg(long, default_value = "800x600", value_parser = parse_size)]
    size: (u32, u32),
}

impl Picture {
    /// Checks the output's format and size before any work is done.
    fn check(&self) -> Result<()> {
        Format::of(&self.output)?;
        realnvp::plot::check_size(self.size)?;
        Ok(())
    }
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once(['x', '×']).ok_or_else(|| format!("{s:?}: give WIDTHxHEIGHT, e.g. 800x600"))?;
    let side =
        |v: &str| v.trim().parse::<u32>().map_err(|_| format!("{s:?}: give WIDTHxHEIGHT in pixels, e.g. 800x600"));
    Ok((side(w)?, side(h)?))
}

#[derive(clap::Args)]
struct DensityArgs {
    /// A model file, or a built-in model: seed4d, d16, d64.
    #[arg(long)]
    model: PathBuf,
    /// The two dimensions on the x and y axes: 0-based indices or the model's feature names.
    #[arg(long, value_delimiter = ',', default_value = "0,1")]
    dims: Vec<String>,
    /// x_from,x_to,y_from,y_to (default: the central 99 % of rows sampled from the model,
    /// widened by 10 %).
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    range: Vec<f64>,
    /// Data rows [N, D] (.npy or .parquet) whose histogram is drawn beside the model.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Rows sampled for a marginal (D > 2).
    #[arg(long, default_value_t = DEFAULT_SAMPLES)]
    samples: usize,
    /// Seed of the sampled rows.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Histogram cells per side (the marginal and the data).
    #[arg(long, default_value_t = 120)]
    bins: usize,
    /// Colour by log₁₀ density (four decades below the maximum) instead of linearly.
    #[arg(long)]
    log: bool,
    /// Print what was drawn as one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    picture: Picture,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args)]
struct ScoresArgs {
    /// Per-row log p: a .npy [N] (or [N, 1]) or a .parquet table (see --column).
    #[arg(long)]
    input: PathBuf,
    /// Parquet input: the log p column.
    #[arg(long, default_value = "log_prob")]
    column: String,
    /// Mark the threshold at this quantile of the finite rows (e.g. 0.01: the 1 % least
    /// likely rows lie below it; `realnvp score --lowest K` lists them).
    #[arg(long)]
    quantile: Option<f64>,
    /// Histogram bars.
    #[arg(long, default_value_t = 100)]
    bins: usize,
    /// D of the scored model, for bits/dim (or give --model).
    #[arg(long, conflicts_with = "model")]
    dim: Option<usize>,
    /// The scored model (its D gives bits/dim).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Print the summary (with every bar's count) as one JSON object.
    #[arg(long)]
    json: bool,
    /// Rows per chunk read (0: 2^20).
    #[arg(long, default_value_t = 0)]
    chunk_rows: usize,
    /// Never draw a progress bar.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    picture: Picture,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// The report of `realnvp bench --json FILE`.
    #[arg(long)]
    json: PathBuf,
    #[command(flatten)]
    picture: Picture,
}

pub fn run(args: Args) -> Result<()> {
    match args.what {
        What::Density(a) => density(a),
        What::Scores(a) => scores(a),
        What::Bench(a) => bench(a),
    }
}

fn density(a: DensityArgs) -> Result<()> {
    a.picture.check()?;
    if !a.common.keep.is_empty() || a.common.f64 {
        bail!("--keep and --f64 do not apply to a picture");
    }
    let inputs: Vec<&std::path::Path> = std::iter::once(a.model.as_path()).chain(a.data.as_deref()).collect();
    realnvp::output::check_distinct(&inputs, &[&a.picture.output])?;
    let range = match a.range[..] {
        [] => None,
        [x0, x1, y0, y1] => Some([x0, x1, y0, y1]),
        _ => bail!("--range takes four numbers: x_from,x_to,y_from,y_to"),
    };
    let engine = a.common.engine(&a.model)?;
    let flow = engine.flow();
    let dim_index = |s: &str| -> Result<usize> {
        if let Ok(k) = s.trim().parse::<usize>() {
            return Ok(k);
        }
        flow.features.as_ref().and_then(|names| names.iter().position(|n| n == s)).with_context(|| {
            format!("--dims: {s:?} is neither an index below D = {} nor a feature name of the model", flow.dim)
        })
    };
    let dims = match &a.dims[..] {
        [i, j] => (dim_index(i)?, dim_index(j)?),
        _ => bail!("--dims takes two dimensions, e.g. --dims 0,1"),
    };
    let mut stream = a.common.stream_options();
    stream.keep.clear();
    let options = DensityOptions {
        dims,
        range,
        samples: a.samples,
        seed: a.seed,
        bins: a.bins,
        data: a.data.clone(),
        log_scale: a.log,
        stream,
    };
    let figure = DensityFigure::new(engine.as_ref(), options)?;
    save(&figure, &a.picture.output, a.picture.size)?;
    let summary = figure.summary();
    if a.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("{summary}\nwrote {}", a.picture.output.display());
    }
    Ok(())
}

fn scores(a: ScoresArgs) -> Result<()> {
    a.picture.check()?;
    let inputs: Vec<&std::path::Path> = std::iter::once(a.input.as_path()).chain(a.model.as_deref()).collect();
    realnvp::output::check_distinct(&inputs, &[&a.picture.output])?;
    let dim = match (&a.model, a.dim) {
        (Some(m), _) => Some(super::options::load_model(m)?.dim),
        (None, d) => d,
    };
    let options = ScoresOptions {
        column: a.column,
        bins: a.bins,
        quantile: a.quantile,
        dim,
        stream: realnvp::pipeline::StreamOptions {
            chunk_rows: a.chunk_rows,
            progress: !a.quiet,
            interrupted: super::interrupt::requested,
            ..Default::default()
        },
    };
    let summary = summarize(&a.input, &options)?;
    let figure = ScoresFigure { summary, input: a.input.clone() };
    save(&figure, &a.picture.output, a.picture.size)?;
    if a.json {
        println!("{}", serde_json::to_string(&figure.summary)?);
    } else {
        println!("{}\nwrote {}", figure.summary, a.picture.output.display());
        if let Some(t) = &figure.summary.threshold {
            println!(
                "list the {} rows below the threshold: realnvp score --model MODEL --input DATA --lowest {}",
                t.rows_below, t.rows_below
            );
        }
    }
    Ok(())
}

fn bench(a: BenchArgs) -> Result<()> {
    a.picture.check()?;
    realnvp::output::check_distinct(&[&a.json], &[&a.picture.output])?;
    let figure = BenchFigure::load(&a.json)?;
    save(&figure, &a.picture.output, a.picture.size)?;
    println!("wrote {}", a.picture.output.display());
    Ok(())
}
