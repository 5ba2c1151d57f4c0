//! `plot bench`: rows/s per device and pass from `realnvp bench --json`, with each device's
//! FMA ceiling (its measured FMA GFLOP/s over the model's FLOPs per row) as a reference line.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{draw_legend, drawn, short, text, Figure, Format};
use crate::bench::BenchReport;
use crate::engine::Pass;
use crate::error::{Error, Result};

/// Colours of the passes, in [`PASSES`] order.
const PASSES: [(Pass, RGBColor); 3] = [
    (Pass::LogProb, RGBColor(59, 81, 139)),
    (Pass::ToLatent, RGBColor(33, 144, 141)),
    (Pass::ToData, RGBColor(170, 190, 50)),
];

/// Longest device label, characters.
const LABEL_CHARS: usize = 30;

/// The chart of one benchmark report.
pub struct BenchFigure {
    pub report: BenchReport,
}

impl BenchFigure {
    /// Reads `realnvp bench --json` output.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = crate::format::read_regular_file(path)?;
        let report: BenchReport = serde_json::from_slice(&bytes).map_err(|e| Error::Data {
            path: path.to_owned(),
            reason: format!("not the JSON that `realnvp bench --json` writes: {e}"),
        })?;
        if report.devices.iter().all(|d| d.passes.is_empty()) {
            return Err(Error::Data {
                path: path.to_owned(),
                reason: "no device has a timed pass: nothing to draw".into(),
            });
        }
        Ok(BenchFigure { report })
    }

    /// The FMA ceiling of a device in rows/s, if its FMA rate was measured.
    fn ceiling(&self, fma_gflops: Option<f64>) -> Option<f64> {
        let flops = self.report.flops_per_row as f64;
        fma_gflops.filter(|g| *g > 0.0 && flops > 0.0).map(|g| g * 1e9 / flops)
    }
}

impl Figure for BenchFigure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, _format: Format) -> Result<()> {
        let r = &self.report;
        let n = r.devices.len();
        let values = r
            .devices
            .iter()
            .flat_map(|d| d.passes.iter().map(|p| p.rows_per_second).chain(self.ceiling(d.fma_gflops)))
            .filter(|v| v.is_finite() && *v > 0.0);
        let (lo, hi) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let (lo, hi) = if lo.is_finite() { (lo / 3.0, hi * 3.0) } else { (1.0, 10.0) };
        let mut chart = drawn(
            ChartBuilder::on(root)
                .caption(
                    format!(
                        "{} (D = {}, {} FLOPs/row), {} rows, {} threads",
                        r.model, r.dim, r.flops_per_row, r.rows, r.threads
                    ),
                    text(18.0),
                )
                .margin(16)
                .x_label_area_size(64)
                .y_label_area_size(80)
                .build_cartesian_2d(0.0..n as f64, (lo..hi).log_scale()),
        )?;
        drawn(
            chart
                .configure_mesh()
                .disable_x_mesh()
                .disable_x_axis()
                .y_desc("rows/s (log scale)")
                .label_style(text(13.0))
                .axis_desc_style(text(15.0))
                .y_label_formatter(&|v| short(*v))
                .draw(),
        )?;
        let width = 0.8 / PASSES.len() as f64;
        for (k, (pass, colour)) in PASSES.iter().enumerate() {
            let bars: Vec<_> = r
                .devices
                .iter()
                .enumerate()
                .filter_map(|(d, dev)| dev.passes.iter().find(|p| p.pass == *pass).map(|p| (d, p.rows_per_second)))
                .filter(|(_, v)| v.is_finite() && *v > 0.0)
                .map(|(d, v)| {
                    let x = d as f64 + 0.1 + k as f64 * width;
                    Rectangle::new([(x, lo), (x + width * 0.92, v)], colour.filled())
                })
                .collect();
            if !bars.is_empty() {
                let c = *colour;
                drawn(chart.draw_series(bars))?
                    .label(pass.label())
                    .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], c.filled()));
            }
        }
        let ceilings: Vec<_> =
            r.devices.iter().enumerate().filter_map(|(d, dev)| self.ceiling(dev.fma_gflops).map(|c| (d, c))).collect();
        if !ceilings.is_empty() {
            drawn(
                chart.draw_series(ceilings.iter().map(|&(d, c)| {
                    PathElement::new([(d as f64 + 0.04, c), (d as f64 + 0.96, c)], RED.stroke_width(2))
                })),
            )?
            .label("FMA ceiling")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], RED.stroke_width(2)));
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        // device names under their groups
        for (d, dev) in r.devices.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(d as f64 + 0.5, lo));
            let mut name: String = dev.engine.chars().take(LABEL_CHARS).collect();
            if dev.engine.chars().count() > LABEL_CHARS {
                name.push('…');
            }
            let note = match (&dev.error, dev.fma_gflops) {
                (Some(_), _) => "failed".to_owned(),
                (None, Some(g)) => format!("FMA {} GFLOP/s", short(g)),
                (None, None) => String::new(),
            };
            let style = text(13.0).pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Top,
            ));
            drawn(root.draw(&Text::new(name, (x, y + 8), style.clone())))?;
            drawn(root.draw(&Text::new(note, (x, y + 26), style)))?;
        }
        Ok(())
    }
}
