//! `plot density`: the flow's density over two of its dimensions.
//!
//! For D = 2 the exact density p(x) = exp(log p(x)), evaluated by the engine at the centre of
//! every cell of a grid over the range (every pixel of a PNG's plotting area); for D > 2 the
//! 2-D marginal of dimensions (i, j), a histogram of rows sampled from the model. With a data
//! file, the data's histogram is drawn beside it on the same axes and colour scale (both as
//! densities: count / (rows × cell area); the model's largest density tops the scale). Memory
//! is bounded by the chunk size and the grid.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Serialize;

use super::{colormap, drawn, short, text, Figure, Format};
use crate::engine::{Engine, LogLikelihoodSum};
use crate::error::{Error, Result};
use crate::pipeline::{feature_columns, progress_bar, Source, StreamOptions};
use crate::sample::Draw;

/// Default number of rows sampled for a marginal (D > 2).
pub const DEFAULT_SAMPLES: usize = 1_000_000;
/// Rows sampled to choose the range when none is given.
const RANGE_SAMPLES: usize = 20_000;
/// Largest grid side of an SVG's exact density (each cell run is an element).
const SVG_MAX_CELLS: usize = 200;

/// What to draw.
#[derive(Clone, Debug)]
pub struct DensityOptions {
    /// The two dimensions on the x and y axes (0-based, distinct, < D).
    pub dims: (usize, usize),
    /// x from, x to, y from, y to; `None`: the central 99 % of rows sampled from the model,
    /// widened by 10 % on each side.
    pub range: Option<[f64; 4]>,
    /// Rows sampled for a marginal (D > 2).
    pub samples: usize,
    /// Seed of the sampled rows (see [`crate::sample`]).
    pub seed: u64,
    /// Histogram cells per side (marginals and the data's histogram).
    pub bins: usize,
    /// Data rows `[N, D]` (`.npy` or Parquet, see [`StreamOptions::columns`]) whose histogram
    /// is drawn beside the model.
    pub data: Option<PathBuf>,
    /// Colour by log₁₀ of the density over four decades below the maximum instead of linearly.
    pub log_scale: bool,
    /// Chunking, progress, Parquet columns and interruption of the sampling and data passes.
    pub stream: StreamOptions,
}

impl DensityOptions {
    /// Options for dimensions `dims` with defaults elsewhere.
    pub fn new(dims: (usize, usize)) -> Self {
        DensityOptions {
            dims,
            range: None,
            samples: DEFAULT_SAMPLES,
            seed: 0,
            bins: 120,
            data: None,
            log_scale: false,
            stream: StreamOptions::default(),
        }
    }
}

/// What was drawn (printed by the command).
#[derive(Clone, Debug, Serialize)]
pub struct DensitySummary {
    /// "exact" (D = 2) or "samples".
    pub method: &'static str,
    pub engine: String,
    pub dims: (usize, usize),
    pub names: (String, String),
    /// x from, x to, y from, y to.
    pub range: [f64; 4],
    /// Rows sampled (marginals; 0 for an exact density).
    pub samples: usize,
    /// Sampled rows outside the range.
    pub samples_outside: u64,
    /// Data rows read, and those outside the range or non-finite in the two dimensions.
    pub data_rows: Option<u64>,
    pub data_outside: Option<u64>,
    /// Largest density of the model on the picture: the top of the colour scale (data cells
    /// above it get its colour).
    pub max_density: f64,
}

impl std::fmt::Display for DensitySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [x0, x1, y0, y1] = self.range;
        let (a, b) = &self.names;
        if self.method == "exact" {
            write!(f, "density p({a}, {b}): exact, log p per cell through {}", self.engine)?;
        } else {
            write!(
                f,
                "density of ({a}, {b}): marginal from {} rows sampled through {} ({} outside the range)",
                self.samples, self.engine, self.samples_outside
            )?;
        }
        write!(f, "\nrange {a} ∈ [{}, {}], {b} ∈ [{}, {}]", short(x0), short(x1), short(y0), short(y1))?;
        if let (Some(n), Some(out)) = (self.data_rows, self.data_outside) {
            write!(f, "\ndata: {n} rows, {out} outside the range or not finite")?;
        }
        write!(f, "\nlargest density {}", short(self.max_density))
    }
}

/// A histogram over the range: `cells.0 × cells.1` counts, row-major from the top (largest y).
#[derive(Clone, Debug)]
struct Histogram {
    range: [f64; 4],
    cells: (usize, usize),
    counts: Vec<u64>,
    total: u64,
    outside: u64,
}

impl Histogram {
    fn new(range: [f64; 4], cells: (usize, usize)) -> Self {
        Histogram { range, cells, counts: vec![0; cells.0 * cells.1], total: 0, outside: 0 }
    }

    fn add(&mut self, x: f64, y: f64) {
        self.total += 1;
        let [x0, x1, y0, y1] = self.range;
        let (nx, ny) = self.cells;
        let a = ((x - x0) / (x1 - x0) * nx as f64).floor();
        let b = ((y1 - y) / (y1 - y0) * ny as f64).floor();
        if a >= 0.0 && a < nx as f64 && b >= 0.0 && b < ny as f64 {
            self.counts[b as usize * nx + a as usize] += 1;
        } else {
            self.outside += 1;
        }
    }

    /// count / (total × cell area): a density (integrates to the fraction inside the range).
    fn densities(&self) -> Vec<f64> {
        let [x0, x1, y0, y1] = self.range;
        let area = (x1 - x0) / self.cells.0 as f64 * (y1 - y0) / self.cells.1 as f64;
        let scale = 1.0 / (self.total.max(1) as f64 * area);
        self.counts.iter().map(|&c| c as f64 * scale).collect()
    }
}

/// The density picture of a flow; [`Figure::draw`] evaluates the exact grid at the
/// resolution of the picture.
pub struct DensityFigure<'a> {
    engine: &'a dyn Engine,
    opts: DensityOptions,
    summary: std::cell::RefCell<DensitySummary>,
    /// The marginal from samples (D > 2).
    model: Option<Histogram>,
    data: Option<Histogram>,
}

impl<'a> DensityFigure<'a> {
    /// Validates the options against `engine`'s flow, chooses the range, samples the marginal
    /// (D > 2) and reads the data's histogram: everything but the exact grid, which depends
    /// on the picture's size.
    pub fn new(engine: &'a dyn Engine, opts: DensityOptions) -> Result<Self> {
        let flow = engine.flow();
        let dim = flow.dim;
        let (i, j) = opts.dims;
        if dim < 2 {
            return Err(Error::Argument(format!("a density picture needs D ≥ 2; the model has D = {dim}")));
        }
        if i >= dim || j >= dim || i == j {
            return Err(Error::Argument(format!(
                "--dims {i},{j}: give two different dimensions below D = {dim} (0-based)"
            )));
        }
        if opts.bins < 2 || opts.bins > 4096 {
            return Err(Error::Argument(format!("--bins {}: give 2 to 4096", opts.bins)));
        }
        if dim > 2 && opts.samples == 0 {
            return Err(Error::Argument("--samples must be positive for a marginal (D > 2)".into()));
        }
        if let Some(r) = opts.range {
            if !r.iter().all(|v| v.is_finite()) || r[0] >= r[1] || r[2] >= r[3] {
                return Err(Error::Argument(format!(
                    "--range {}: give finite x_from,x_to,y_from,y_to with from < to",
                    r.map(|v| v.to_string()).join(",")
                )));
            }
        }
        let name = |k: usize| flow.features.as_ref().map_or_else(|| format!("x{k}"), |f| f[k].clone());
        let range = match opts.range {
            Some(r) => r,
            None => default_range(engine, &opts)?,
        };
        let exact = dim == 2;
        let model = if exact { None } else { Some(sample_histogram(engine, &opts, range)?) };
        let data = opts.data.as_ref().map(|path| data_histogram(engine, &opts, range, path)).transpose()?;
        let summary = DensitySummary {
            method: if exact { "exact" } else { "samples" },
            engine: engine.name(),
            dims: opts.dims,
            names: (name(i), name(j)),
            range,
            samples: if exact { 0 } else { opts.samples },
            samples_outside: model.as_ref().map_or(0, |h| h.outside),
            data_rows: data.as_ref().map(|h| h.total),
            data_outside: data.as_ref().map(|h| h.outside),
            max_density: f64::NAN,
        };
        Ok(DensityFigure { engine, opts, summary: std::cell::RefCell::new(summary), model, data })
    }

    /// What was drawn (complete after [`super::save`]).
    pub fn summary(&self) -> DensitySummary {
        self.summary.borrow().clone()
    }

    /// The exact density at the centres of an `nx × ny` grid over the range (D = 2),
    /// row-major from the top, evaluated a band of grid rows (about one chunk) at a time.
    fn exact_grid(&self, nx: usize, ny: usize) -> Result<Vec<f64>> {
        let [x0, x1, y0, y1] = self.summary.borrow().range;
        let (i, j) = self.opts.dims;
        let band = (self.opts.stream.rows_per_chunk(self.engine) / nx).max(1);
        let bar = progress_bar(&self.opts.stream, nx * ny, "density");
        let mut density = Vec::with_capacity(nx * ny);
        let (mut x, mut logp) = (Vec::<f32>::new(), Vec::<f32>::new());
        for first in (0..ny).step_by(band) {
            let rows = band.min(ny - first);
            x.resize(2 * nx * rows, 0.0);
            logp.resize(nx * rows, 0.0);
            for b in 0..rows {
                let y = y1 - ((first + b) as f64 + 0.5) / ny as f64 * (y1 - y0);
                for a in 0..nx {
                    let row = &mut x[2 * (b * nx + a)..][..2];
                    row[i] = (x0 + (a as f64 + 0.5) / nx as f64 * (x1 - x0)) as f32;
                    row[j] = y as f32;
                }
            }
            self.engine.log_prob(&x, &mut logp, &mut LogLikelihoodSum::default())?;
            density.extend(logp.iter().map(|&v| (v as f64).exp()));
            bar.inc((nx * rows) as u64);
            self.opts.stream.check_interrupted()?;
        }
        bar.finish_and_clear();
        Ok(density)
    }

    /// Colour position of density `v` given the largest `max`.
    fn scale(&self, v: f64, max: f64) -> f64 {
        // NaN (no finite density) as well as zero
        if max.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return 0.0;
        }
        if self.opts.log_scale {
            if v > 0.0 {
                1.0 + (v / max).log10() / 4.0
            } else {
                0.0
            }
        } else {
            v / max
        }
    }
}

/// Runs of equal colour along each grid row become one rectangle (few elements in an SVG).
fn draw_cells<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    values: &[f64],
    (nx, ny): (usize, usize),
    colour: impl Fn(f64) -> RGBColor,
) -> Result<()> {
    let (w, h) = area.dim_in_pixel();
    let px = |a: usize| (a * w as usize / nx) as i32;
    let py = |b: usize| (b * h as usize / ny) as i32;
    for b in 0..ny {
        let mut a = 0;
        while a < nx {
            let c = colour(values[b * nx + a]);
            let mut end = a + 1;
            while end < nx && colour(values[b * nx + end]) == c {
                end += 1;
            }
            drawn(area.draw(&Rectangle::new([(px(a), py(b)), (px(end), py(b + 1))], c.filled())))?;
            a = end;
        }
    }
    Ok(())
}

impl Figure for DensityFigure<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, format: Format) -> Result<()> {
        let (w, _) = root.dim_in_pixel();
        let bar_width = 120.min(w / 4);
        let (main, bar) = root.split_horizontally(w - bar_width);
        let panels: Vec<DrawingArea<DB, Shift>> = if self.data.is_some() {
            let (left, right) = main.split_horizontally(main.dim_in_pixel().0 / 2);
            vec![left, right]
        } else {
            vec![main]
        };
        let summary = self.summary();
        let [x0, x1, y0, y1] = summary.range;
        let (xn, yn) = summary.names.clone();
        let model_title = if summary.method == "exact" {
            format!("model p({xn}, {yn}), exact")
        } else {
            format!("model, {} samples", summary.samples)
        };
        let mut charts = Vec::new();
        for (k, panel) in panels.iter().enumerate() {
            let title =
                if k == 0 { model_title.clone() } else { format!("data, {} rows", summary.data_rows.unwrap_or(0)) };
            let mut chart = drawn(
                ChartBuilder::on(panel)
                    .caption(title, text(18.0))
                    .margin(14)
                    .x_label_area_size(44)
                    .y_label_area_size(64)
                    .build_cartesian_2d(x0..x1, y0..y1),
            )?;
            drawn(
                chart
                    .configure_mesh()
                    .disable_mesh()
                    .x_desc(xn.as_str())
                    .y_desc(yn.as_str())
                    .label_style(text(13.0))
                    .axis_desc_style(text(15.0))
                    .x_label_formatter(&|v| short(*v))
                    .y_label_formatter(&|v| short(*v))
                    .draw(),
            )?;
            charts.push(chart);
        }
        // the model's densities at the picture's resolution, the data's on its bins
        let plot_area = charts[0].plotting_area().strip_coord_spec();
        let (model_values, model_cells) = match &self.model {
            Some(h) => (h.densities(), h.cells),
            None => {
                let (pw, ph) = plot_area.dim_in_pixel();
                let (nx, ny) = match format {
                    Format::Png => (pw as usize, ph as usize),
                    Format::Svg => {
                        let s = SVG_MAX_CELLS as f64 / pw.max(ph) as f64;
                        (((pw as f64 * s) as usize).max(2), ((ph as f64 * s) as usize).max(2))
                    }
                };
                (self.exact_grid(nx, ny)?, (nx, ny))
            }
        };
        let data_values = self.data.as_ref().map(|h| (h.densities(), h.cells));
        // the model's largest density tops the scale (the data's noisier cells above it clamp)
        let max = model_values.iter().filter(|v| v.is_finite()).fold(0.0f64, |m, &v| m.max(v));
        self.summary.borrow_mut().max_density = max;
        draw_cells(&plot_area, &model_values, model_cells, |v| colormap(self.scale(v, max)))?;
        if let (Some((values, cells)), Some(chart)) = (&data_values, charts.get(1)) {
            draw_cells(&chart.plotting_area().strip_coord_spec(), values, *cells, |v| colormap(self.scale(v, max)))?;
        }
        colour_bar(&bar, max, self.opts.log_scale)
    }
}

/// The colour scale: 256 steps from 0 (or 10⁻⁴ × max) to `max`, labelled.
fn colour_bar<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, max: f64, log_scale: bool) -> Result<()> {
    let (lo, hi) = if log_scale { (-4.0, 0.0) } else { (0.0, max.max(f64::MIN_POSITIVE)) };
    let label = if log_scale { "log₁₀ (p / max)" } else { "density" };
    let mut chart = drawn(
        ChartBuilder::on(area)
            .margin_top(46)
            .margin_bottom(58)
            .margin_right(8)
            .y_label_area_size(62)
            .caption(label, text(13.0))
            .build_cartesian_2d(0.0..1.0, lo..hi),
    )?;
    drawn(
        chart
            .configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .label_style(text(12.0))
            .y_label_formatter(&|v| short(*v))
            .draw(),
    )?;
    let steps = 256;
    drawn(chart.draw_series((0..steps).map(|k| {
        let (a, b) = (lo + (hi - lo) * k as f64 / steps as f64, lo + (hi - lo) * (k + 1) as f64 / steps as f64);
        Rectangle::new([(0.0, a), (1.0, b)], colormap((k as f64 + 0.5) / steps as f64).filled())
    })))?;
    Ok(())
}

/// The central 99 % of `RANGE_SAMPLES` rows sampled from the model in each plotted
/// dimension, widened by 10 % of its width on each side.
fn default_range(engine: &dyn Engine, opts: &DensityOptions) -> Result<[f64; 4]> {
    let dim = engine.flow().dim;
    let n = RANGE_SAMPLES;
    let (mut x, mut lq) = (vec![0f32; n * dim], vec![0f32; n]);
    engine.sample_rows(&Draw::new(opts.seed, 0), &mut x, &mut lq)?;
    let mut bounds = [0.0; 4];
    for (k, d) in [opts.dims.0, opts.dims.1].into_iter().enumerate() {
        let mut v: Vec<f64> = x.chunks(dim).map(|r| r[d] as f64).filter(|v| v.is_finite()).collect();
        if v.len() < n / 2 {
            return Err(Error::Argument(format!(
                "most rows sampled from the model are not finite in dimension {d}: give --range"
            )));
        }
        v.sort_by(f64::total_cmp);
        let (lo, hi) = (v[v.len() / 200], v[v.len() - 1 - v.len() / 200]);
        let pad = ((hi - lo) * 0.1).max(1e-6 * (1.0 + lo.abs().max(hi.abs())));
        bounds[2 * k] = lo - pad;
        bounds[2 * k + 1] = hi + pad;
    }
    Ok(bounds)
}

/// The marginal of dimensions `opts.dims` from `opts.samples` rows sampled in chunks.
fn sample_histogram(engine: &dyn Engine, opts: &DensityOptions, range: [f64; 4]) -> Result<Histogram> {
    let dim = engine.flow().dim;
    let (i, j) = opts.dims;
    let mut hist = Histogram::new(range, (opts.bins, opts.bins));
    let chunk = opts.stream.rows_per_chunk(engine);
    let bar = progress_bar(&opts.stream, opts.samples, "sample");
    let (mut x, mut lq) = (Vec::<f32>::new(), Vec::<f32>::new());
    let draw = Draw::new(opts.seed, 0);
    let mut done = 0;
    while done < opts.samples {
        let m = chunk.min(opts.samples - done);
        x.resize(m * dim, 0.0);
        lq.resize(m, 0.0);
        engine.sample_rows(&draw.skip(done as u64), &mut x, &mut lq)?;
        for row in x.chunks(dim) {
            hist.add(row[i] as f64, row[j] as f64);
        }
        done += m;
        bar.inc(m as u64);
        opts.stream.check_interrupted()?;
    }
    bar.finish_and_clear();
    Ok(hist)
}

/// The histogram of a data file's dimensions `opts.dims` on `opts.bins` cells.
fn data_histogram(engine: &dyn Engine, opts: &DensityOptions, range: [f64; 4], path: &Path) -> Result<Histogram> {
    let flow = engine.flow();
    let columns = feature_columns(flow, path, &opts.stream.columns);
    let chunk = opts.stream.rows_per_chunk(engine);
    let mut source = Source::open_columns(path, columns, &[], chunk)?;
    if source.cols() != flow.dim {
        return Err(Error::Data {
            path: path.to_path_buf(),
            reason: Error::Dimension { model: flow.dim, input: source.cols() }.to_string(),
        });
    }
    let (i, j) = opts.dims;
    let mut hist = Histogram::new(range, (opts.bins, opts.bins));
    let bar = progress_bar(&opts.stream, source.rows(), "data");
    let mut x = Vec::<f64>::new();
    while let Some(c) = source.read(chunk, &mut x)? {
        for row in x.chunks(flow.dim).take(c.rows) {
            hist.add(row[i], row[j]);
        }
        bar.inc(c.rows as u64);
        opts.stream.check_interrupted()?;
    }
    bar.finish_and_clear();
    Ok(hist)
}
