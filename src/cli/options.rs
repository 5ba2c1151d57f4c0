//! Options several subcommands share.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;

use realnvp::device::{open_engine, Device};
use realnvp::engine::Engine;
use realnvp::gpu::{GpuOptions, KernelForm};
use realnvp::model::Flow;
use realnvp::npy::NpyDtype;
use realnvp::pipeline::StreamOptions;

/// Options of the subcommands that stream a file through an engine.
#[derive(clap::Args, Clone)]
pub struct Common {
    /// Device: auto (best hardware GPU, else native), native (float32 SIMD CPU engine), cpu
    /// (float64 reference), gpu (best adapter, lavapipe included), gpu:N (see `realnvp
    /// devices`), all (every adapter).
    #[arg(long, default_value = "auto")]
    pub device: Device,
    /// Write outputs as float64 instead of float32.
    #[arg(long)]
    pub f64: bool,
    /// Rows per chunk (0: about 16 MiB of rows).
    #[arg(long, default_value_t = 0)]
    pub chunk_rows: usize,
    #[command(flatten)]
    pub kernel: KernelArg,
    /// Never draw a progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Parquet input: the feature columns in the model's order, comma-separated (default:
    /// every column not kept, in file order). Columns must be float32 or float64; a null makes
    /// the row's result null (counted as non-finite).
    #[arg(long, value_delimiter = ',')]
    pub columns: Vec<String>,
    /// Parquet input and output: columns copied next to the results (e.g. --keep id).
    #[arg(long, value_delimiter = ',')]
    pub keep: Vec<String>,
}

/// `--kernel`, shared by every subcommand that opens a GPU engine.
#[derive(clap::Args, Clone, Copy)]
pub struct KernelArg {
    /// GPU kernel: auto (up to 20,000 operations per row, see `realnvp info`: tiered, the interpreter
    /// while the unrolled kernel builds, then unrolled; larger models tiled), interpreted,
    /// unrolled (fastest on small models; compile time grows with the model), tiled (a workgroup
    /// runs the nets of a tile of rows together; the same rows as interpreted). auto may switch
    /// forms mid-run: results agree within float32 rounding; fix the form for bit-identical
    /// reruns.
    #[arg(long, default_value = "auto")]
    pub kernel: KernelForm,
}

impl Common {
    pub fn stream_options(&self) -> StreamOptions {
        StreamOptions {
            chunk_rows: self.chunk_rows,
            output_dtype: if self.f64 { NpyDtype::F64 } else { NpyDtype::F32 },
            progress: !self.quiet,
            columns: self.columns.clone(),
            keep: self.keep.clone(),
            interrupted: super::interrupt::requested,
            lowest: 0,
        }
    }

    /// Loads the model and opens its engine on `--device`; tells the user which device
    /// `auto` chose and anything the engine wants them to know before it starts.
    pub fn engine(&self, model: &Path) -> Result<Box<dyn Engine>> {
        let flow = Arc::new(load_model(model)?);
        let options = GpuOptions { chunk_rows: self.chunk_rows, kernel: self.kernel.kernel, ..GpuOptions::default() };
        let engine = open_engine(flow, &self.device, &options)?;
        if !self.quiet {
            if matches!(self.device, Device::Auto | Device::All) {
                eprintln!("device: {}", engine.name());
            }
            if let Some(note) = engine.note() {
                eprintln!("note: {note}");
            }
        }
        Ok(engine)
    }
}

/// `--model`: a model file, else one of the built-in reference models by name (seed4d, d16,
/// d64; see [`realnvp::random::reference_model`]) when no such file exists.
pub fn load_model(model: &Path) -> Result<Flow> {
    if !model.exists() {
        if let Some(flow) = model.to_str().and_then(realnvp::random::reference_model) {
            return Ok(flow);
        }
    }
    Flow::load(model).map_err(|e| {
        if model.exists() {
            e.into()
        } else {
            anyhow::anyhow!("{e} (nor is it a built-in model: seed4d, d16, d64)")
        }
    })
}

/// `flow` with `--feature-names` recorded (none given: as it was), validated against its D.
pub fn with_feature_names(mut flow: Flow, names: &[String]) -> Result<Flow> {
    if !names.is_empty() {
        realnvp::model::check_feature_names(names, flow.dim)
            .map_err(|e| anyhow::anyhow!("--feature-names: {}", e.to_string().trim_start_matches("invalid model: ")))?;
        flow.features = Some(names.to_vec());
    }
    Ok(flow)
}
