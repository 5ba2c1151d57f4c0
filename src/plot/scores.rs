//! `plot scores`: the histogram of per-row log p (the output of `score`), with the mean,
//! bits/dim, the non-finite rows and a quantile threshold marked.
//!
//! Streams the file with bounded memory: one pass for the count, mean and extremes, one for
//! the histogram (and a fine 65,536-bin histogram that locates the quantile), and, with a
//! quantile, one that collects only the values in the quantile's fine bins to make it exact
//! (NumPy's default, linear interpolation between order statistics).

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Serialize;

use super::{draw_legend, drawn, short, text, Figure, Format};
use crate::error::{Error, Result};
use crate::pipeline::{progress_bar, Source, StreamOptions};

/// Bins of the fine histogram that locates a quantile.
const FINE_BINS: usize = 1 << 16;
/// Most values collected to make a quantile exact (else the fine bin's interpolation).
const MAX_COLLECTED: u64 = 1 << 24;

/// What to draw.
#[derive(Clone, Debug)]
pub struct ScoresOptions {
    /// Parquet input: the log p column (default `log_prob`, as `score` writes it).
    pub column: String,
    /// Histogram bars.
    pub bins: usize,
    /// Mark the threshold at this quantile of the finite rows (0 < q < 1).
    pub quantile: Option<f64>,
    /// Dimension D of the scored model, for bits/dim.
    pub dim: Option<usize>,
    /// Chunking, progress and interruption.
    pub stream: StreamOptions,
}

impl Default for ScoresOptions {
    fn default() -> Self {
        ScoresOptions {
            column: "log_prob".into(),
            bins: 100,
            quantile: None,
            dim: None,
            stream: StreamOptions::default(),
        }
    }
}

/// One histogram bar: log p in [from, to) (the last bar includes its upper end).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Bin {
    pub from: f64,
    pub to: f64,
    pub count: u64,
}

/// The threshold at a quantile.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Threshold {
    pub quantile: f64,
    /// log p at the quantile, nats.
    pub log_p: f64,
    /// Finite rows with log p strictly below it (`realnvp score --lowest K` lists them).
    pub rows_below: u64,
    /// Whether `log_p` is exact (else interpolated within a fine bin: too many equal values).
    pub exact: bool,
}

/// The numbers behind the picture (printed by the command; `--json` prints this object).
#[derive(Clone, Debug, Serialize)]
pub struct ScoresSummary {
    pub rows: u64,
    pub finite_rows: u64,
    pub nonfinite_rows: u64,
    /// Mean log p of the finite rows, nats.
    pub mean_log_likelihood: f64,
    /// −mean / (D ln 2), when D is known.
    pub bits_per_dim: Option<f64>,
    pub min: f64,
    pub max: f64,
    pub bins: Vec<Bin>,
    pub threshold: Option<Threshold>,
}

impl std::fmt::Display for ScoresSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "rows                 {} ({} non-finite)", self.rows, self.nonfinite_rows)?;
        writeln!(f, "mean log-likelihood  {:.6} nats", self.mean_log_likelihood)?;
        if let Some(b) = self.bits_per_dim {
            writeln!(f, "bits/dim             {b:.6}")?;
        }
        write!(f, "log p range          [{}, {}] in {} bins", short(self.min), short(self.max), self.bins.len())?;
        if let Some(t) = &self.threshold {
            write!(
                f,
                "\nquantile {}          log p = {:.6}{}; {} rows below it",
                t.quantile,
                t.log_p,
                if t.exact { "" } else { " (within a 1/65536 bin)" },
                t.rows_below
            )?;
        }
        Ok(())
    }
}

/// Compensated (Neumaier) sum, so the mean of 10⁹ rows keeps its digits.
#[derive(Default)]
struct Sum {
    sum: f64,
    carry: f64,
}

impl Sum {
    fn add(&mut self, v: f64) {
        let t = self.sum + v;
        self.carry += if self.sum.abs() >= v.abs() { (self.sum - t) + v } else { (v - t) + self.sum };
        self.sum = t;
    }

    fn value(&self) -> f64 {
        self.sum + self.carry
    }
}

/// Reads every value of the log p file, chunk by chunk.
fn for_each_value(path: &Path, opts: &ScoresOptions, what: &str, mut f: impl FnMut(f64)) -> Result<()> {
    let columns = if crate::parquet::is_parquet_input(path) { vec![opts.column.clone()] } else { Vec::new() };
    let chunk = if opts.stream.chunk_rows > 0 { opts.stream.chunk_rows } else { 1 << 20 };
    let mut source = Source::open_columns(path, &columns, &[], chunk)?;
    if source.cols() != 1 {
        return Err(Error::Data {
            path: path.to_owned(),
            reason: format!(
                "expected one log p per row (shape [N] or [N, 1], as `realnvp score` writes), found {} columns",
                source.cols()
            ),
        });
    }
    let bar = progress_bar(&opts.stream, source.rows(), what);
    let mut x = Vec::<f64>::new();
    while let Some(c) = source.read(chunk, &mut x)? {
        x[..c.rows].iter().for_each(|&v| f(v));
        bar.inc(c.rows as u64);
        opts.stream.check_interrupted()?;
    }
    bar.finish_and_clear();
    Ok(())
}

/// Computes the histogram, mean and threshold of `path`'s log p values.
pub fn summarize(path: &Path, opts: &ScoresOptions) -> Result<ScoresSummary> {
    if opts.bins == 0 || opts.bins > 10_000 {
        return Err(Error::Argument(format!("--bins {}: give 1 to 10000", opts.bins)));
    }
    if let Some(q) = opts.quantile {
        if !(q > 0.0 && q < 1.0) {
            return Err(Error::Argument(format!("--quantile {q}: give a fraction strictly between 0 and 1")));
        }
    }
    if opts.dim == Some(0) {
        return Err(Error::Argument("--dim must be positive".into()));
    }
    // pass 1: count, mean, extremes
    let (mut rows, mut finite, mut sum) = (0u64, 0u64, Sum::default());
    let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
    for_each_value(path, opts, "mean", |v| {
        rows += 1;
        if v.is_finite() {
            finite += 1;
            sum.add(v);
            min = min.min(v);
            max = max.max(v);
        }
    })?;
    let data_err = |reason: &str| Error::Data { path: path.to_owned(), reason: reason.into() };
    if rows == 0 {
        return Err(data_err("the file has no rows: nothing to draw"));
    }
    if finite == 0 {
        return Err(data_err(&format!("none of its {rows} rows has a finite log p: nothing to draw")));
    }
    let mean = sum.value() / finite as f64;
    let (lo, hi) = if max > min { (min, max) } else { (min - 0.5, max + 0.5) };
    let bin_of = |v: f64, n: usize| (((v - lo) / (hi - lo) * n as f64) as usize).min(n - 1);
    // pass 2: the bars, and the fine histogram for the quantile
    let mut counts = vec![0u64; opts.bins];
    let mut fine = vec![0u64; if opts.quantile.is_some() { FINE_BINS } else { 0 }];
    for_each_value(path, opts, "histogram", |v| {
        if v.is_finite() {
            counts[bin_of(v, opts.bins)] += 1;
            if !fine.is_empty() {
                fine[bin_of(v, FINE_BINS)] += 1;
            }
        }
    })?;
    let width = (hi - lo) / opts.bins as f64;
    let bins = counts
        .iter()
        .enumerate()
        .map(|(k, &count)| Bin { from: lo + k as f64 * width, to: lo + (k + 1) as f64 * width, count })
        .collect();
    let threshold = match opts.quantile {
        Some(q) => Some(threshold(path, opts, q, finite, &fine, (lo, hi))?),
        None => None,
    };
    Ok(ScoresSummary {
        rows,
        finite_rows: finite,
        nonfinite_rows: rows - finite,
        mean_log_likelihood: mean,
        bits_per_dim: opts.dim.map(|d| -mean / (d as f64 * std::f64::consts::LN_2)),
        min,
        max,
        bins,
        threshold,
    })
}

/// The q-quantile of the `n` finite values (linear interpolation between the order
/// statistics at ranks ⌊q(n−1)⌋ and ⌈q(n−1)⌉, as NumPy's default) and the rows below it.
fn threshold(
    path: &Path,
    opts: &ScoresOptions,
    q: f64,
    n: u64,
    fine: &[u64],
    (lo, hi): (f64, f64),
) -> Result<Threshold> {
    let pos = q * (n - 1) as f64;
    let (r0, r1) = (pos.floor() as u64, pos.ceil() as u64);
    // the fine bins holding ranks r0 and r1, and how many values come before the first
    let (mut before, mut b0, mut b1) = (0u64, 0usize, 0usize);
    let mut seen = 0u64;
    for (k, &c) in fine.iter().enumerate() {
        if seen + c > r0 && seen <= r0 {
            b0 = k;
            before = seen;
        }
        if seen + c > r1 {
            b1 = k;
            break;
        }
        seen += c;
    }
    let collected: u64 = fine[b0..=b1].iter().sum();
    let edge = |k: usize| lo + (hi - lo) * k as f64 / FINE_BINS as f64;
    if collected > MAX_COLLECTED {
        // interpolate within the bin (too many values in it to hold)
        let at =
            |r: u64, b: usize| edge(b) + (hi - lo) / FINE_BINS as f64 * ((r - before) as f64 + 0.5) / fine[b] as f64;
        let t = at(r0, b0) + (pos - r0 as f64) * (at(r1, b0) - at(r0, b0));
        return Ok(Threshold { quantile: q, log_p: t, rows_below: before, exact: false });
    }
    let mut values = Vec::with_capacity(collected as usize);
    let bin_of = |v: f64| (((v - lo) / (hi - lo) * FINE_BINS as f64) as usize).min(FINE_BINS - 1);
    for_each_value(path, opts, "quantile", |v| {
        if v.is_finite() && (b0..=b1).contains(&bin_of(v)) {
            values.push(v);
        }
    })?;
    values.sort_by(f64::total_cmp);
    let (v0, v1) = (values[(r0 - before) as usize], values[(r1 - before) as usize]);
    let t = v0 + (pos - r0 as f64) * (v1 - v0);
    let rows_below = before + values.iter().filter(|&&v| v < t).count() as u64;
    Ok(Threshold { quantile: q, log_p: t, rows_below, exact: true })
}

/// The histogram picture of a summary.
pub struct ScoresFigure {
    pub summary: ScoresSummary,
    /// Shown in the title.
    pub input: PathBuf,
}

impl Figure for ScoresFigure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, _format: Format) -> Result<()> {
        let s = &self.summary;
        let (lo, hi) = (s.bins[0].from, s.bins[s.bins.len() - 1].to);
        let top = s.bins.iter().map(|b| b.count).max().unwrap_or(1).max(1) as f64 * 1.12;
        let name =
            self.input.file_name().map_or_else(|| self.input.display().to_string(), |n| n.to_string_lossy().into());
        let mut chart = drawn(
            ChartBuilder::on(root)
                .caption(format!("log p of {} ({} rows)", name, s.rows), text(20.0))
                .margin(16)
                .x_label_area_size(48)
                .y_label_area_size(72)
                .build_cartesian_2d(lo..hi, 0.0..top),
        )?;
        drawn(
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_desc("log p (nats)")
                .y_desc("rows")
                .label_style(text(13.0))
                .axis_desc_style(text(15.0))
                .x_label_formatter(&|v| short(*v))
                .y_label_formatter(&|v| short(*v))
                .draw(),
        )?;
        let bar = RGBColor(59, 81, 139);
        drawn(chart.draw_series(
            s.bins.iter().map(|b| Rectangle::new([(b.from, 0.0), (b.to, b.count as f64)], bar.mix(0.85).filled())),
        ))?;
        let mean = RGBColor(39, 150, 80);
        drawn(chart.draw_series(LineSeries::new(
            [(s.mean_log_likelihood, 0.0), (s.mean_log_likelihood, top)],
            mean.stroke_width(2),
        )))?
        .label(format!("mean {}", short(s.mean_log_likelihood)))
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], mean.stroke_width(2)));
        if let Some(t) = &s.threshold {
            drawn(chart.draw_series(LineSeries::new([(t.log_p, 0.0), (t.log_p, top)], RED.stroke_width(2))))?
                .label(format!("q = {}: {} ({} rows below)", t.quantile, short(t.log_p), t.rows_below))
                .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], RED.stroke_width(2)));
        }
        // the numbers, as legend lines without a mark
        let mut lines = vec![format!("finite rows {}", s.finite_rows), format!("non-finite rows {}", s.nonfinite_rows)];
        lines.push(match s.bits_per_dim {
            Some(b) => format!("bits/dim {b:.4}"),
            None => "bits/dim: give --dim or --model".into(),
        });
        for line in lines {
            drawn(chart.draw_series(std::iter::empty::<Circle<(f64, f64), i32>>()))?
                .label(line)
                .legend(|(x, y)| EmptyElement::at((x, y)));
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        Ok(())
    }
}
