//! Streaming over files of any length: read a chunk → evaluate → reduce → write, with memory
//! bounded by the chunk size. Outputs appear only when complete (see [`crate::npy`]).
//!
//! Rows stay in one precision from file to file: float32 when the input file and the
//! outputs are float32 (a float32 engine then converts nothing on the host), else float64.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::engine::{Engine, LogLikelihoodSum, Pass};
use crate::error::{Error, Result};
use crate::npy::{NpyDtype, NpyReader, NpyWriter};
use crate::real::Real;
use crate::sample::Draw;

/// Host memory per chunk of input rows (as float64) that the default chunk size aims for.
pub const DEFAULT_CHUNK_BYTES: usize = 16 << 20;

/// How a file is streamed.
#[derive(Clone, Debug)]
pub struct StreamOptions {
    /// Rows per chunk; 0 picks about [`DEFAULT_CHUNK_BYTES`] of float64 input per chunk.
    pub chunk_rows: usize,
    /// Element type of the output files.
    pub output_dtype: NpyDtype,
    /// Show a progress bar on stderr (only drawn when stderr is a terminal).
    pub progress: bool,
    /// Asked between chunks; `true` stops the run with [`Error::Interrupted`] and writes no
    /// output (the Python package hooks Ctrl-C here).
    pub interrupted: fn() -> bool,
}

fn never() -> bool {
    false
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions { chunk_rows: 0, output_dtype: NpyDtype::F32, progress: true, interrupted: never }
    }
}

impl StreamOptions {
    /// [`Error::Interrupted`] when [`StreamOptions::interrupted`] says so.
    fn check_interrupted(&self) -> Result<()> {
        if (self.interrupted)() {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Rows per chunk for `engine`: the requested or default size, rounded up to the engine's
    /// row alignment.
    fn rows_per_chunk(&self, engine: &dyn Engine) -> usize {
        let rows = if self.chunk_rows > 0 {
            self.chunk_rows
        } else {
            (DEFAULT_CHUNK_BYTES / (8 * engine.flow().dim.max(1))).max(1)
        };
        rows.div_ceil(engine.row_alignment()) * engine.row_alignment()
    }
}

/// What `score` reports.
#[derive(Clone, Debug, Serialize)]
pub struct ScoreSummary {
    /// Engine and device that computed the scores.
    pub engine: String,
    /// Dimension D.
    pub dim: usize,
    /// Rows scored.
    pub rows: u64,
    /// Rows with a finite log p.
    pub finite_rows: u64,
    /// Rows whose input or result was NaN/±Inf.
    pub nonfinite_rows: u64,
    /// Mean log p over finite rows, nats.
    pub mean_log_likelihood: f64,
    /// −mean / (D ln 2): bits per dimension of the finite rows.
    pub bits_per_dim: f64,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Rows per second, end to end.
    pub rows_per_second: f64,
    /// Peak resident memory of this process so far, bytes (Linux; None elsewhere).
    pub peak_rss_bytes: Option<u64>,
}

/// Peak resident set size of this process (VmHWM from /proc/self/status), bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl ScoreSummary {
    /// Builds the summary from a finished reduction.
    pub fn new(engine: String, dim: usize, sum: &LogLikelihoodSum, seconds: f64) -> Self {
        let mean = sum.mean();
        ScoreSummary {
            engine,
            dim,
            rows: sum.rows,
            finite_rows: sum.finite_rows,
            nonfinite_rows: sum.rows - sum.finite_rows,
            mean_log_likelihood: mean,
            bits_per_dim: -mean / (dim as f64 * std::f64::consts::LN_2),
            seconds,
            rows_per_second: sum.rows as f64 / seconds.max(1e-12),
            peak_rss_bytes: peak_rss_bytes(),
        }
    }
}

impl std::fmt::Display for ScoreSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "engine               {}", self.engine)?;
        writeln!(f, "rows                 {} (D = {})", self.rows, self.dim)?;
        writeln!(f, "non-finite rows      {}", self.nonfinite_rows)?;
        writeln!(f, "mean log-likelihood  {:.6} nats", self.mean_log_likelihood)?;
        writeln!(f, "bits/dim             {:.6}", self.bits_per_dim)?;
        write!(f, "throughput           {:.0} rows/s ({:.3} s)", self.rows_per_second, self.seconds)?;
        if let Some(rss) = self.peak_rss_bytes {
            write!(f, "\npeak memory (RSS)    {:.0} MiB", rss as f64 / (1u64 << 20) as f64)?;
        }
        Ok(())
    }
}

/// What `forward`, `inverse` and `sample` report.
#[derive(Clone, Debug, Serialize)]
pub struct TransformSummary {
    pub engine: String,
    pub rows: u64,
    /// Rows whose output contains NaN/±Inf.
    pub nonfinite_rows: u64,
    pub seconds: f64,
    pub rows_per_second: f64,
}

impl std::fmt::Display for TransformSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} rows ({} non-finite) in {:.3} s, {:.0} rows/s on {}",
            self.rows, self.nonfinite_rows, self.seconds, self.rows_per_second, self.engine
        )
    }
}

/// The precision rows are streamed in: float32 only when nothing on either side is float64.
fn working_dtype(reader: &NpyReader, opts: &StreamOptions) -> NpyDtype {
    if reader.dtype() == NpyDtype::F32 && opts.output_dtype == NpyDtype::F32 {
        NpyDtype::F32
    } else {
        NpyDtype::F64
    }
}

fn open_input(engine: &dyn Engine, input: &Path) -> Result<NpyReader> {
    let reader = NpyReader::open(input)?;
    let dim = engine.flow().dim;
    if reader.cols() != dim {
        return Err(Error::Data {
            path: input.to_owned(),
            reason: Error::Dimension { model: dim, input: reader.cols() }.to_string(),
        });
    }
    Ok(reader)
}

fn progress_bar(opts: &StreamOptions, rows: usize, what: &str) -> ProgressBar {
    if !opts.progress || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(rows as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} rows {per_sec} eta {eta}") {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar
}

/// Scores every row of `input` (`.npy`, `[N, D]`); writes per-row log p `[N]` to `output` if
/// given; returns the batch summary.
pub fn score_file(
    engine: &dyn Engine,
    input: &Path,
    output: Option<&Path>,
    opts: &StreamOptions,
) -> Result<ScoreSummary> {
    let start = Instant::now();
    let reader = open_input(engine, input)?;
    let dim = reader.cols();
    let sum = match working_dtype(&reader, opts) {
        NpyDtype::F32 => score_in::<f32>(engine, reader, output, opts)?,
        NpyDtype::F64 => score_in::<f64>(engine, reader, output, opts)?,
    };
    Ok(ScoreSummary::new(engine.name(), dim, &sum, start.elapsed().as_secs_f64()))
}

fn score_in<T: Real>(
    engine: &dyn Engine,
    mut reader: NpyReader,
    output: Option<&Path>,
    opts: &StreamOptions,
) -> Result<LogLikelihoodSum> {
    let rows = reader.rows();
    let mut writer = output.map(|p| NpyWriter::create(p, &[rows], opts.output_dtype)).transpose()?;
    let bar = progress_bar(opts, rows, "score");
    let chunk = opts.rows_per_chunk(engine);
    let (mut x, mut logp) = (Vec::<T>::new(), Vec::<T>::new());
    let mut sum = LogLikelihoodSum::default();
    loop {
        let n = reader.read_rows(chunk, &mut x)?;
        if n == 0 {
            break;
        }
        logp.resize(n, T::zero());
        engine.log_prob(&x, &mut logp, &mut sum)?;
        if let Some(w) = writer.as_mut() {
            w.write(&logp)?;
        }
        bar.inc(n as u64);
        opts.check_interrupted()?;
    }
    if let Some(w) = writer {
        w.finish()?;
    }
    bar.finish_and_clear();
    Ok(sum)
}

/// Maps every row of `input` data→latent ([`Pass::ToLatent`]) or latent→data
/// ([`Pass::ToData`]) into `output` `[N, D]`; writes the per-row log-det `[N]` of that map to
/// `logdet` if given.
pub fn transform_file(
    engine: &dyn Engine,
    pass: Pass,
    input: &Path,
    output: &Path,
    logdet: Option<&Path>,
    opts: &StreamOptions,
) -> Result<TransformSummary> {
    if !pass.maps_rows() {
        return Err(Error::Argument("transform_file maps rows; use score_file for log p".into()));
    }
    let start = Instant::now();
    let reader = open_input(engine, input)?;
    let rows = reader.rows();
    let nonfinite = match working_dtype(&reader, opts) {
        NpyDtype::F32 => transform_in::<f32>(engine, pass, reader, output, logdet, opts)?,
        NpyDtype::F64 => transform_in::<f64>(engine, pass, reader, output, logdet, opts)?,
    };
    Ok(transform_summary(engine, rows, nonfinite, start))
}

/// [`transform_file`] in precision `T`; returns the number of non-finite output rows.
fn transform_in<T: Real>(
    engine: &dyn Engine,
    pass: Pass,
    mut reader: NpyReader,
    output: &Path,
    logdet: Option<&Path>,
    opts: &StreamOptions,
) -> Result<u64> {
    let (rows, dim) = (reader.rows(), reader.cols());
    let mut out = NpyWriter::create(output, &[rows, dim], opts.output_dtype)?;
    let mut ld_out = logdet.map(|p| NpyWriter::create(p, &[rows], opts.output_dtype)).transpose()?;
    let bar = progress_bar(opts, rows, pass.label());
    let chunk = opts.rows_per_chunk(engine);
    let (mut x, mut y, mut ld) = (Vec::<T>::new(), Vec::<T>::new(), Vec::<T>::new());
    let mut nonfinite = 0u64;
    loop {
        let n = reader.read_rows(chunk, &mut x)?;
        if n == 0 {
            break;
        }
        y.resize(n * dim, T::zero());
        ld.resize(n, T::zero());
        if pass == Pass::ToLatent {
            engine.forward_to_latent(&x, &mut y, &mut ld)?;
        } else {
            engine.inverse_to_data(&x, &mut y, &mut ld)?;
        }
        nonfinite += count_nonfinite_rows(&y, &ld, dim);
        out.write(&y)?;
        if let Some(w) = ld_out.as_mut() {
            w.write(&ld)?;
        }
        bar.inc(n as u64);
        opts.check_interrupted()?;
    }
    out.finish()?;
    if let Some(w) = ld_out {
        w.finish()?;
    }
    bar.finish_and_clear();
    Ok(nonfinite)
}

/// Draws `n` rows from the model — rows `draw.first_row…` of `draw.seed`'s stream, at
/// `draw.temperature` ([`crate::sample`]) — into `output` `[n, D]`, and their log q `[n]` into
/// `log_q` if given. Memory is bounded by the chunk size; the rows do not depend on it.
pub fn sample_to_file(
    engine: &dyn Engine,
    n: usize,
    draw: &Draw,
    output: &Path,
    log_q: Option<&Path>,
    opts: &StreamOptions,
) -> Result<TransformSummary> {
    draw.check(n)?;
    let start = Instant::now();
    let nonfinite = match opts.output_dtype {
        NpyDtype::F32 => sample_in::<f32>(engine, n, draw, output, log_q, opts)?,
        NpyDtype::F64 => sample_in::<f64>(engine, n, draw, output, log_q, opts)?,
    };
    Ok(transform_summary(engine, n, nonfinite, start))
}

/// [`sample_to_file`] in precision `T`; returns the number of non-finite rows.
fn sample_in<T: Real>(
    engine: &dyn Engine,
    n: usize,
    draw: &Draw,
    output: &Path,
    log_q: Option<&Path>,
    opts: &StreamOptions,
) -> Result<u64> {
    let dim = engine.flow().dim;
    let mut out = NpyWriter::create(output, &[n, dim], opts.output_dtype)?;
    let mut lq_out = log_q.map(|p| NpyWriter::create(p, &[n], opts.output_dtype)).transpose()?;
    let bar = progress_bar(opts, n, "sample");
    let chunk = opts.rows_per_chunk(engine);
    let (mut x, mut lq) = (Vec::<T>::new(), Vec::<T>::new());
    let mut done = 0;
    let mut nonfinite = 0u64;
    while done < n {
        let m = chunk.min(n - done);
        x.resize(m * dim, T::zero());
        lq.resize(m, T::zero());
        engine.sample_rows(&draw.skip(done as u64), &mut x, &mut lq)?;
        nonfinite += count_nonfinite_rows(&x, &lq, dim);
        out.write(&x)?;
        if let Some(w) = lq_out.as_mut() {
            w.write(&lq)?;
        }
        done += m;
        bar.inc(m as u64);
        opts.check_interrupted()?;
    }
    out.finish()?;
    if let Some(w) = lq_out {
        w.finish()?;
    }
    bar.finish_and_clear();
    Ok(nonfinite)
}

fn transform_summary(engine: &dyn Engine, rows: usize, nonfinite: u64, start: Instant) -> TransformSummary {
    let seconds = start.elapsed().as_secs_f64();
    TransformSummary {
        engine: engine.name(),
        rows: rows as u64,
        nonfinite_rows: nonfinite,
        seconds,
        rows_per_second: rows as f64 / seconds.max(1e-12),
    }
}

fn count_nonfinite_rows<T: Real>(values: &[T], logdet: &[T], dim: usize) -> u64 {
    values.chunks(dim).zip(logdet).filter(|(row, ld)| !ld.is_finite() || row.iter().any(|v| !v.is_finite())).count()
        as u64
}
