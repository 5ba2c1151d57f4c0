//! Streaming over files of any length: read a chunk → evaluate → reduce → write, with memory
//! bounded by the chunk size. Files are `.npy` arrays or Parquet tables ([`crate::parquet`]),
//! by extension. Outputs appear only when complete (see [`crate::npy`]).
//!
//! Rows stay in one precision from file to file: float32 when the input file and the
//! outputs are float32 (a float32 engine then converts nothing on the host), else float64.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use arrow_schema::Field;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::engine::{Engine, LogLikelihoodSum, Pass};
use crate::error::{Error, Result};
use crate::npy::{NpyDtype, NpyReader, NpyWriter};
use crate::parquet::{is_parquet, is_parquet_input, Chunk, ParquetReader, ParquetWriter};
use crate::real::{Io, Real};
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
    /// Parquet input: the feature columns, in the model's order (empty: every column not kept,
    /// in file order).
    pub columns: Vec<String>,
    /// Parquet input: columns copied to a Parquet output next to the results (e.g. an id).
    pub keep: Vec<String>,
    /// Asked between chunks; `true` stops the run with [`Error::Interrupted`] and writes no
    /// output (the Python package hooks Ctrl-C here).
    pub interrupted: fn() -> bool,
    /// `score`: also report the K least likely rows with a finite log p (0: none), holding
    /// only K rows whatever the file's length.
    pub lowest: usize,
}

fn never() -> bool {
    false
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            chunk_rows: 0,
            output_dtype: NpyDtype::F32,
            progress: true,
            columns: Vec::new(),
            keep: Vec::new(),
            interrupted: never,
            lowest: 0,
        }
    }
}

impl StreamOptions {
    /// [`Error::Interrupted`] when [`StreamOptions::interrupted`] says so.
    pub(crate) fn check_interrupted(&self) -> Result<()> {
        if (self.interrupted)() {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Rows per chunk for `engine`: the requested or default size, rounded up to the engine's
    /// row alignment.
    pub(crate) fn rows_per_chunk(&self, engine: &dyn Engine) -> usize {
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
    /// The [`StreamOptions::lowest`] least likely finite rows, least likely first (ties: the
    /// lower row index first); absent when not asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lowest: Option<Vec<LowRow>>,
}

/// One row of [`ScoreSummary::lowest`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LowRow {
    /// Index of the row in the input (0-based).
    pub row: u64,
    /// Its log p, nats (as written to the output, in its precision).
    pub log_p: f64,
}

/// The K smallest finite log p seen so far (a max-heap of K rows: memory O(K) for any N).
struct Lowest {
    k: usize,
    heap: std::collections::BinaryHeap<Ranked>,
}

/// Orders rows by (log p, row index), so that the heap's top is the row to drop first.
#[derive(Clone, Copy, PartialEq)]
struct Ranked(LowRow);

impl Eq for Ranked {}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.log_p.total_cmp(&other.0.log_p).then(self.0.row.cmp(&other.0.row))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Lowest {
    fn new(k: usize) -> Self {
        Lowest { k, heap: std::collections::BinaryHeap::with_capacity(k.min(1 << 20)) }
    }

    /// Offers the chunk of per-row values `log_p` whose first row is `first_row`.
    fn offer<T: Real>(&mut self, first_row: u64, log_p: &[T]) {
        if self.k == 0 {
            return;
        }
        for (i, v) in log_p.iter().enumerate() {
            let v = v.wide();
            if !v.is_finite() {
                continue;
            }
            let candidate = Ranked(LowRow { row: first_row + i as u64, log_p: v });
            if self.heap.len() < self.k {
                self.heap.push(candidate);
            } else if self.heap.peek().is_some_and(|top| candidate < *top) {
                self.heap.pop();
                self.heap.push(candidate);
            }
        }
    }

    /// The rows, least likely first.
    fn into_sorted(self) -> Vec<LowRow> {
        self.heap.into_sorted_vec().into_iter().map(|r| r.0).collect()
    }
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
            lowest: None,
        }
    }
}

impl std::fmt::Display for ScoreSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "engine               {}", self.engine)?;
        writeln!(f, "rows                 {} (D = {})", self.rows, self.dim)?;
        writeln!(f, "non-finite rows      {}", self.nonfinite_rows)?;
        if self.finite_rows == 0 {
            let why = if self.rows == 0 { "the input has no rows" } else { "no row has a finite log p" };
            writeln!(f, "mean log-likelihood  none: {why}")?;
            writeln!(f, "bits/dim             none")?;
        } else {
            writeln!(f, "mean log-likelihood  {:.6} nats", self.mean_log_likelihood)?;
            writeln!(f, "bits/dim             {:.6}", self.bits_per_dim)?;
        }
        write!(f, "throughput           {:.0} rows/s ({:.3} s)", self.rows_per_second, self.seconds)?;
        if let Some(rss) = self.peak_rss_bytes {
            write!(f, "\npeak memory (RSS)    {:.0} MiB", rss as f64 / (1u64 << 20) as f64)?;
        }
        if let Some(lowest) = &self.lowest {
            write!(f, "\nleast likely rows    {} (row  log p)", lowest.len())?;
            for r in lowest {
                write!(f, "\n  {:>12}  {:.6}", r.row, r.log_p)?;
            }
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
fn working_dtype(input: NpyDtype, opts: &StreamOptions) -> NpyDtype {
    if input == NpyDtype::F32 && opts.output_dtype == NpyDtype::F32 {
        NpyDtype::F32
    } else {
        NpyDtype::F64
    }
}

/// Where rows come from: a `.npy` array `[N, D]`, or the feature columns of a Parquet table
/// (a `.parquet` file, or a directory of them read as one table; [`crate::parquet`]).
pub(crate) enum Source {
    Npy(NpyReader),
    Parquet(ParquetReader),
}

impl Source {
    /// Opens `input` for `engine`'s flow; its width must be D.
    fn open(engine: &dyn Engine, input: &Path, opts: &StreamOptions) -> Result<Source> {
        let columns = feature_columns(engine.flow(), input, &opts.columns);
        let source = Source::open_columns(input, columns, &opts.keep, opts.rows_per_chunk(engine))?;
        let (dim, cols) = (engine.flow().dim, source.cols());
        if cols != dim {
            return Err(Error::Data {
                path: input.to_owned(),
                reason: Error::Dimension { model: dim, input: cols }.to_string(),
            });
        }
        Ok(source)
    }

    /// Opens `input`: a `.npy` array, or the `columns` of a Parquet table (empty: every
    /// column not in `keep`) read `chunk_rows` rows at a time.
    pub(crate) fn open_columns(input: &Path, columns: &[String], keep: &[String], chunk_rows: usize) -> Result<Source> {
        if is_parquet_input(input) {
            Ok(Source::Parquet(ParquetReader::open(input, columns, keep, chunk_rows)?))
        } else if !columns.is_empty() || !keep.is_empty() {
            Err(Error::Argument(
                "--columns and --keep apply to Parquet input (a .parquet file or a directory of them)".into(),
            ))
        } else {
            Ok(Source::Npy(NpyReader::open(input)?))
        }
    }

    pub(crate) fn rows(&self) -> usize {
        match self {
            Source::Npy(r) => r.rows(),
            Source::Parquet(r) => r.rows(),
        }
    }

    pub(crate) fn cols(&self) -> usize {
        match self {
            Source::Npy(r) => r.cols(),
            Source::Parquet(r) => r.cols(),
        }
    }

    fn dtype(&self) -> NpyDtype {
        match self {
            Source::Npy(r) => r.dtype(),
            Source::Parquet(r) => r.dtype(),
        }
    }

    fn kept_fields(&self) -> &[Field] {
        match self {
            Source::Npy(_) => &[],
            Source::Parquet(r) => r.kept_fields(),
        }
    }

    /// The next chunk (at most `max_rows` rows) into `out`; `None` at the end.
    pub(crate) fn read<T: Real>(&mut self, max_rows: usize, out: &mut Vec<T>) -> Result<Option<Chunk>> {
        match self {
            Source::Npy(r) => match r.read_rows(max_rows, out)? {
                0 => Ok(None),
                rows => Ok(Some(Chunk { rows, nulls: None, kept: Vec::new() })),
            },
            Source::Parquet(r) => r.read(out),
        }
    }
}

/// The columns to read from `input` for `flow`: `columns`, else for a Parquet table the model's
/// feature names (else every column not kept).
pub(crate) fn feature_columns<'a>(flow: &'a crate::model::Flow, input: &Path, columns: &'a [String]) -> &'a [String] {
    match (&flow.features, columns.is_empty() && is_parquet_input(input)) {
        (Some(names), true) => names,
        _ => columns,
    }
}

/// What a pass writes: rows `[N, D]` (named `row_names` as Parquet columns) and/or one value
/// per row `[N]` (named `per_row_name`).
struct Outputs<'a> {
    rows: Option<&'a Path>,
    row_names: Vec<String>,
    per_row: Option<&'a Path>,
    per_row_name: &'a str,
    /// Parquet: a `row` column of global row indices first (sampling).
    row_index: bool,
}

/// Where results go: `.npy` files (rows and per-row values apart), or one Parquet table (the
/// kept columns, then the rows' columns and the per-row column), chosen by the rows' path (or
/// the per-row path when the pass writes no rows).
enum Sink {
    Npy {
        rows: Option<NpyWriter>,
        per_row: Option<NpyWriter>,
    },
    /// `dim`: columns of output rows (0 when the pass writes none); the per-row column follows.
    Parquet {
        writer: ParquetWriter,
        dim: usize,
    },
}

impl Sink {
    fn create(out: &Outputs<'_>, n: usize, dim: usize, kept: &[Field], opts: &StreamOptions) -> Result<Sink> {
        let table = out.rows.or(out.per_row).filter(|p| is_parquet(p));
        if let Some(path) = table {
            if out.rows.is_some() && out.per_row.is_some() {
                return Err(Error::Argument(format!(
                    "a Parquet output holds every result: {} gets the column {:?}; drop the separate {} output",
                    path.display(),
                    out.per_row_name,
                    out.per_row_name
                )));
            }
            let has_rows = out.rows.is_some();
            let mut names: Vec<String> = if has_rows { out.row_names.clone() } else { Vec::new() };
            names.push(out.per_row_name.to_owned());
            let writer = ParquetWriter::create(path, kept, out.row_index, &names, opts.output_dtype)?;
            return Ok(Sink::Parquet { writer, dim: if has_rows { dim } else { 0 } });
        }
        if !kept.is_empty() {
            return Err(Error::Argument("--keep needs a Parquet output (a .parquet file)".into()));
        }
        let rows = out.rows.map(|p| NpyWriter::create(p, &[n, dim], opts.output_dtype)).transpose()?;
        let per_row = out.per_row.map(|p| NpyWriter::create(p, &[n], opts.output_dtype)).transpose()?;
        Ok(Sink::Npy { rows, per_row })
    }

    /// Writes a chunk's results: `rows` `[n, D]` (empty for log p) and `per_row` `[n]`.
    fn write<T: Real>(&mut self, chunk: Chunk, first_row: u64, rows: &[T], per_row: &[T]) -> Result<()> {
        match self {
            Sink::Npy { rows: r, per_row: p } => {
                if let Some(w) = r {
                    w.write(rows)?;
                }
                if let Some(w) = p {
                    w.write(per_row)?;
                }
                Ok(())
            }
            Sink::Parquet { writer, dim } => {
                writer.write(chunk.kept, first_row, rows, *dim, per_row, chunk.nulls.as_ref())
            }
        }
    }

    /// Completes every output, then commits them together (all or none).
    fn finish(self) -> Result<()> {
        let files = match self {
            Sink::Npy { rows, per_row } => {
                rows.into_iter().chain(per_row).map(NpyWriter::finish).collect::<Result<Vec<_>>>()?
            }
            Sink::Parquet { writer, .. } => vec![writer.finish()?],
        };
        crate::output::commit_all(files)
    }
}

/// A progress bar over `rows` rows on stderr (hidden unless `opts.progress` and stderr is a
/// terminal).
pub(crate) fn progress_bar(opts: &StreamOptions, rows: usize, what: &str) -> ProgressBar {
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

/// Scores every row of `input` (`.npy` `[N, D]`, or a `.parquet` table's feature columns,
/// see [`StreamOptions::columns`]); writes per-row log p `[N]` to `output` if given (`.npy`,
/// or a `.parquet` table with the kept columns and `log_prob`; rows with a null feature get
/// a null log p and count as non-finite); returns the batch summary.
pub fn score_file(
    engine: &dyn Engine,
    input: &Path,
    output: Option<&Path>,
    opts: &StreamOptions,
) -> Result<ScoreSummary> {
    let start = Instant::now();
    crate::output::check_distinct(&[input], &output.into_iter().collect::<Vec<_>>())?;
    let source = Source::open(engine, input, opts)?;
    let dim = source.cols();
    let out =
        Outputs { rows: None, row_names: Vec::new(), per_row: output, per_row_name: "log_prob", row_index: false };
    let mut lowest = Lowest::new(opts.lowest);
    let sum = match working_dtype(source.dtype(), opts) {
        NpyDtype::F32 => stream::<f32>(engine, Pass::LogProb, source, &out, opts, &mut lowest)?.0,
        NpyDtype::F64 => stream::<f64>(engine, Pass::LogProb, source, &out, opts, &mut lowest)?.0,
    };
    let mut summary = ScoreSummary::new(engine.name(), dim, &sum, start.elapsed().as_secs_f64());
    if opts.lowest > 0 {
        summary.lowest = Some(lowest.into_sorted());
    }
    Ok(summary)
}

/// Maps every row of `input` data→latent ([`Pass::ToLatent`]) or latent→data
/// ([`Pass::ToData`]) into `output` `[N, D]`; writes the per-row log-det `[N]` of that map to
/// `logdet` if given. A `.parquet` output holds the kept columns, `z0…` (data→latent) or
/// `x0…` (latent→data), and `logdet`.
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
    let outputs: Vec<&Path> = std::iter::once(output).chain(logdet).collect();
    crate::output::check_distinct(&[input], &outputs)?;
    let source = Source::open(engine, input, opts)?;
    let rows = source.rows();
    let row_names = column_names(engine.flow(), pass == Pass::ToData);
    let out = Outputs { rows: Some(output), row_names, per_row: logdet, per_row_name: "logdet", row_index: false };
    let nonfinite = match working_dtype(source.dtype(), opts) {
        NpyDtype::F32 => stream::<f32>(engine, pass, source, &out, opts, &mut Lowest::new(0))?.1,
        NpyDtype::F64 => stream::<f64>(engine, pass, source, &out, opts, &mut Lowest::new(0))?.1,
    };
    Ok(transform_summary(engine, rows, nonfinite, start))
}

/// Streams `source` through `pass` into the outputs; returns the reduction (log p) and the
/// number of rows with a non-finite output.
fn stream<T: Real>(
    engine: &dyn Engine,
    pass: Pass,
    mut source: Source,
    out: &Outputs<'_>,
    opts: &StreamOptions,
    lowest: &mut Lowest,
) -> Result<(LogLikelihoodSum, u64)> {
    let (rows, dim) = (source.rows(), source.cols());
    let mut sink = Sink::create(out, rows, dim, source.kept_fields(), opts)?;
    let bar = progress_bar(opts, rows, pass.label());
    let chunk_rows = opts.rows_per_chunk(engine);
    let (mut x, mut y, mut per_row) = (Vec::<T>::new(), Vec::<T>::new(), Vec::<T>::new());
    let mut sum = LogLikelihoodSum::default();
    let (mut done, mut nonfinite) = (0u64, 0u64);
    while let Some(chunk) = source.read(chunk_rows, &mut x)? {
        let n = chunk.rows;
        y.resize(if pass.maps_rows() { n * dim } else { 0 }, T::zero());
        per_row.resize(n, T::zero());
        engine.run(pass, T::batch(Io { input: &x, rows: &mut y, per_row: &mut per_row }), &mut sum)?;
        if pass.maps_rows() {
            nonfinite += count_nonfinite_rows(&y, &per_row, dim);
        } else {
            lowest.offer(done, &per_row);
        }
        sink.write(chunk, done, &y, &per_row)?;
        done += n as u64;
        bar.inc(n as u64);
        opts.check_interrupted()?;
    }
    sink.finish()?;
    bar.finish_and_clear();
    Ok((sum, nonfinite))
}

/// Draws `n` rows from the model — rows `draw.first_row…` of `draw.seed`'s stream, at
/// `draw.temperature` ([`crate::sample`]) — into `output` `[n, D]`, and their log q `[n]` into
/// `log_q` if given. A `.parquet` output holds `row` (the global row index), `x0…` and
/// `log_q`. Memory is bounded by the chunk size; the rows do not depend on it.
pub fn sample_to_file(
    engine: &dyn Engine,
    n: usize,
    draw: &Draw,
    output: &Path,
    log_q: Option<&Path>,
    opts: &StreamOptions,
) -> Result<TransformSummary> {
    draw.check(n)?;
    let outputs: Vec<&Path> = std::iter::once(output).chain(log_q).collect();
    crate::output::check_distinct(&[], &outputs)?;
    let start = Instant::now();
    let row_names = column_names(engine.flow(), true);
    let out = Outputs { rows: Some(output), row_names, per_row: log_q, per_row_name: "log_q", row_index: true };
    let nonfinite = match opts.output_dtype {
        NpyDtype::F32 => sample_in::<f32>(engine, n, draw, &out, opts)?,
        NpyDtype::F64 => sample_in::<f64>(engine, n, draw, &out, opts)?,
    };
    Ok(transform_summary(engine, n, nonfinite, start))
}

/// [`sample_to_file`] in precision `T`; returns the number of non-finite rows.
fn sample_in<T: Real>(
    engine: &dyn Engine,
    n: usize,
    draw: &Draw,
    out: &Outputs<'_>,
    opts: &StreamOptions,
) -> Result<u64> {
    let dim = engine.flow().dim;
    let mut sink = Sink::create(out, n, dim, &[], opts)?;
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
        let rows = Chunk { rows: m, nulls: None, kept: Vec::new() };
        sink.write(rows, draw.first_row + done as u64, &x, &lq)?;
        done += m;
        bar.inc(m as u64);
        opts.check_interrupted()?;
    }
    sink.finish()?;
    bar.finish_and_clear();
    Ok(nonfinite)
}

/// Parquet column names of output rows: data-space rows (`inverse`, `sample`) by the model's
/// feature names, else `x0…`; latent rows `z0…`.
fn column_names(flow: &crate::model::Flow, data_space: bool) -> Vec<String> {
    match (&flow.features, data_space) {
        (Some(names), true) => names.clone(),
        _ => (0..flow.dim).map(|j| format!("{}{j}", if data_space { "x" } else { "z" })).collect(),
    }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::cpu::CpuReference;
    use crate::random::reference_model;

    fn seed4d() -> CpuReference {
        CpuReference::new(Arc::new(reference_model("seed4d").unwrap()))
    }

    /// The default chunk holds about 16 MiB of float64 rows (a 1-row chunk would be correct
    /// but thousands of times slower); a requested size is kept.
    #[test]
    fn default_chunk_is_sixteen_mib_of_rows() {
        let engine = seed4d();
        assert_eq!(StreamOptions::default().rows_per_chunk(&engine), (16 << 20) / (8 * 4));
        let opts = StreamOptions { chunk_rows: 1000, ..StreamOptions::default() };
        assert_eq!(opts.rows_per_chunk(&engine), 1000);
    }

    #[test]
    fn transform_summary_rate_is_rows_over_seconds() {
        let start = Instant::now() - Duration::from_secs(4);
        let s = transform_summary(&seed4d(), 10_000, 3, start);
        assert_eq!((s.rows, s.nonfinite_rows), (10_000, 3));
        assert!(s.seconds >= 4.0 && s.seconds < 5.0, "{}", s.seconds);
        assert!((s.rows_per_second * s.seconds - 10_000.0).abs() < 1e-6, "{}", s.rows_per_second);
    }

    #[test]
    fn lowest_keeps_the_k_smallest_finite_values_in_order() {
        let mut lowest = Lowest::new(3);
        lowest.offer(0, &[5.0f32, f32::NAN, -1.0, 2.0]);
        lowest.offer(4, &[f32::NEG_INFINITY, -1.0, 7.0, 0.5]);
        let got: Vec<(u64, f64)> = lowest.into_sorted().iter().map(|r| (r.row, r.log_p)).collect();
        assert_eq!(got, [(2, -1.0), (5, -1.0), (7, 0.5)]);
    }
}
