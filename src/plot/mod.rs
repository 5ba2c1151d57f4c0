//! Pictures (`realnvp plot`): a flow's density ([`density`]), the histogram of a log p file
//! ([`scores`]) and benchmark charts ([`bench`]), drawn with `plotters` into PNG or SVG by the
//! output's extension.
//!
//! Each figure computes its numbers first (streaming its input with bounded memory), then
//! draws them; [`save`] renders into memory and writes the file atomically. Text uses the
//! embedded DejaVu Sans (assets/fonts, Bitstream Vera licence), so no system font or
//! fontconfig is needed.

pub mod bench;
pub mod density;
pub mod scores;

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Error, Result};

/// The embedded font, registered with plotters as [`FONT`].
const FONT_FILE: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The font family every figure uses.
pub const FONT: &str = "sans-serif";

/// Smallest and largest image side accepted, pixels.
pub const MIN_SIDE: u32 = 200;
pub const MAX_SIDE: u32 = 4096;

/// Image format, by the output's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Png,
    Svg,
}

impl Format {
    /// `.png` or `.svg` (any case); anything else is an error naming the choices.
    pub fn of(path: &Path) -> Result<Format> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("png") => Ok(Format::Png),
            Some("svg") => Ok(Format::Svg),
            _ => Err(Error::Argument(format!("{}: a picture's name must end in .png or .svg", path.display()))),
        }
    }
}

/// Checks an image size (width, height in pixels).
pub fn check_size((w, h): (u32, u32)) -> Result<()> {
    if !(MIN_SIDE..=MAX_SIDE).contains(&w) || !(MIN_SIDE..=MAX_SIDE).contains(&h) {
        return Err(Error::Argument(format!("image size {w}×{h}: each side must be {MIN_SIDE} to {MAX_SIDE} pixels")));
    }
    Ok(())
}

/// A picture that can draw itself on any plotters backend.
pub trait Figure {
    /// Draws onto `root` (already filled white). `format` lets a figure pick its resolution
    /// (per-pixel rasters in PNG, coarser cells in SVG, where each cell is an element).
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>, format: Format) -> Result<()>;
}

/// Turns a plotters error into ours.
pub(crate) fn drawn<T, E: std::fmt::Display>(r: std::result::Result<T, E>) -> Result<T> {
    r.map_err(|e| Error::Argument(format!("drawing failed: {e}")))
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // the bytes are a valid TrueType font, checked by the unit test below
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, FONT_FILE);
    });
}

/// Renders `figure` at `size` (width, height in pixels) and writes it to `path` (PNG or SVG by
/// extension) atomically: the file appears complete or not at all.
pub fn save(figure: &impl Figure, path: &Path, size: (u32, u32)) -> Result<()> {
    check_size(size)?;
    let format = Format::of(path)?;
    register_font();
    let bytes = match format {
        Format::Png => {
            let (w, h) = size;
            let mut rgb = vec![0u8; w as usize * h as usize * 3];
            {
                let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
                drawn(root.fill(&WHITE))?;
                figure.draw(&root, format)?;
                drawn(root.present())?;
            }
            encode_png(&rgb, size)?
        }
        Format::Svg => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
                drawn(root.fill(&WHITE))?;
                figure.draw(&root, format)?;
                drawn(root.present())?;
            }
            svg.into_bytes()
        }
    };
    crate::output::write_atomically(path, &bytes)
}

/// 8-bit RGB rows → PNG bytes.
fn encode_png(rgb: &[u8], (w, h): (u32, u32)) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let err = |e: png::EncodingError| Error::Argument(format!("PNG encoding failed: {e}"));
    let mut writer = encoder.write_header().map_err(err)?;
    writer.write_image_data(rgb).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(out)
}

/// Viridis (matplotlib's perceptually uniform map) at nine stops; its luminance rises
/// monotonically, so the brightest pixel is the largest value.
const VIRIDIS: [(u8, u8, u8); 9] = [
    (68, 1, 84),
    (71, 44, 122),
    (59, 81, 139),
    (44, 113, 142),
    (33, 144, 141),
    (39, 173, 129),
    (92, 200, 99),
    (170, 220, 50),
    (253, 231, 37),
];

/// The colour of `t` ∈ [0, 1] (clamped; NaN gets light grey).
pub fn colormap(t: f64) -> RGBColor {
    if t.is_nan() {
        return RGBColor(220, 220, 220);
    }
    let x = t.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f64;
    let k = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - k as f64;
    let (a, b) = (VIRIDIS[k], VIRIDIS[k + 1]);
    let mix = |p: u8, q: u8| (p as f64 + f * (q as f64 - p as f64)).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Draws `chart`'s legend at `position`: 13 px labels on a translucent white box.
pub(crate) fn draw_legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<()> {
    drawn(
        chart
            .configure_series_labels()
            .position(position)
            .label_font(text(13.0))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw(),
    )
}

/// A text style in the embedded font.
pub(crate) fn text(size: f64) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

/// Formats a number for a label: up to 4 significant digits, scientific when far from 1.
pub(crate) fn short(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if (1e-3..1e5).contains(&a) {
        let digits = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
        let s = format!("{v:.digits$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    } else {
        format!("{v:.2e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_font_parses() {
        assert!(plotters::style::register_font("test-font", FontStyle::Normal, FONT_FILE).is_ok());
    }

    #[test]
    fn colormap_brightness_rises_with_the_value() {
        let lum = |c: RGBColor| 0.2126 * c.0 as f64 + 0.7152 * c.1 as f64 + 0.0722 * c.2 as f64;
        // rising, up to the rounding of each channel to 8 bits (< 1 unit of luminance)
        let mut last = -1.0;
        for k in 0..=1000 {
            let l = lum(colormap(k as f64 / 1000.0));
            assert!(l > last - 1.0, "luminance falls at {k}");
            last = last.max(l);
        }
        // strictly between the stops, and the top of the scale is the brightest colour
        for k in 0..VIRIDIS.len() - 1 {
            assert!(lum(colormap((k + 1) as f64 / 8.0)) > lum(colormap(k as f64 / 8.0)) + 10.0);
        }
        assert!((0..1000).all(|k| lum(colormap(k as f64 / 1000.0)) <= lum(colormap(1.0))));
    }

    #[test]
    fn short_labels() {
        assert_eq!(short(0.5), "0.5");
        assert_eq!(short(-12.345678), "-12.35");
        assert_eq!(short(1234.5), "1234");
        assert_eq!(short(2.5e7), "2.50e7");
    }
}
