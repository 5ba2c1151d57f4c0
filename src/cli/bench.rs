//! `realnvp bench`: log p, forward and inverse timed on each device next to its FMA ceiling.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use realnvp::bench::BenchOptions;
use realnvp::device::Device;
use realnvp::engine::Pass;
use realnvp::gpu::{self, GpuOptions};

use super::options::KernelArg;

#[derive(clap::Args)]
pub struct Args {
    /// A model file, or a built-in reference model: seed4d, d16, d64.
    #[arg(long, default_value = "seed4d")]
    model: String,
    #[arg(short = 'n', long, default_value_t = 1_000_000)]
    rows: usize,
    /// Comma-separated devices: all (native and every adapter), native, cpu (float64
    /// reference), gpu (best adapter), gpu:N.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    device: Vec<Device>,
    /// Passes to time: log_prob, forward, inverse.
    #[arg(long, value_delimiter = ',', default_value = "log_prob,forward,inverse")]
    passes: Vec<Pass>,
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
    #[command(flatten)]
    kernel: KernelArg,
}

pub fn run(args: Args) -> Result<()> {
    let options = BenchOptions {
        rows: args.rows,
        repeats: args.repeats,
        passes: args.passes,
        reference: false,
        native: false,
        adapters: Vec::new(),
        gpu: GpuOptions { chunk_rows: args.chunk_rows, kernel: args.kernel.kernel, ..GpuOptions::default() },
        max_seconds: args.max_seconds,
    };
    bench(&args.model, &args.device, options, args.json.as_deref())
}

fn bench(model: &str, devices: &[Device], mut options: BenchOptions, json: Option<&Path>) -> Result<()> {
    if options.rows == 0 || options.max_seconds.is_nan() || options.max_seconds <= 0.0 {
        bail!("--rows and --max-seconds must be positive");
    }
    let flow = super::options::load_model(Path::new(model))?;
    let adapters = || gpu::adapters(&gpu::instance());
    for device in devices {
        match device {
            Device::All => {
                // every device once: an adapter that is another's device under a less
                // preferred backend is left out, and said so
                options.native = true;
                let infos: Vec<_> = adapters().iter().map(|a| a.get_info()).collect();
                for (k, merged) in gpu::merged_into(&infos).into_iter().enumerate() {
                    match merged {
                        None => options.adapters.push(k),
                        Some(j) => eprintln!(
                            "gpu:{k} ({}, {:?}) is gpu:{j}'s device under another backend: measured once, as gpu:{j} ({:?})",
                            infos[k].name, infos[k].backend, infos[j].backend
                        ),
                    }
                }
            }
            Device::Native => options.native = true,
            Device::Cpu => options.reference = true,
            Device::Gpu(Some(n)) => options.adapters.push(*n),
            Device::Gpu(None) | Device::Auto => {
                let best = gpu::best_adapter(&adapters()).context("no GPU adapter found")?;
                options.adapters.push(best);
            }
        }
    }
    let report = realnvp::bench::run(Arc::new(flow), model, &options, &|line| eprintln!("{line}"));
    println!("{}", report.markdown());
    if let Some(path) = json {
        realnvp::output::write_atomically(path, serde_json::to_string_pretty(&report)?.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
