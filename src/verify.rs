//! Checks an engine against the float64 reference on the same rows: `realnvp verify`, the
//! demo, and the GPU tests all use this.
//!
//! Error metric: for each output value, `|engine − reference| / (1 + |reference|)` (absolute
//! near zero, relative for large values). Inputs are rounded to float32 first, so both sides
//! see exactly the same rows and only the arithmetic differs.
//!
//! Tolerance for float32 engines: [`FLOAT32_TOLERANCE`]. float32 has a unit roundoff of
//! 6e-8; each Linear accumulates up to `in` rounded products (error ≲ √in·6e-8 relative to
//! Σ|w·h|, ~1e-6 for in = 256), the scale functions add a few ulps, and errors compound
//! multiplicatively through the layers (the Jacobian's conditioning). log p sums D squared
//! latents, so its absolute error grows with |log p|, which the metric's relative part
//! absorbs. Measured on the `init` models of D = 4, 16, 64 and on random mixed flows of depth
//! ≤ 12 the worst metric is a few 1e-6 (see BENCHMARKS.md); 2e-4 leaves an order of magnitude
//! of headroom for badly conditioned user models while still catching any real bug (a wrong
//! sign, mask or offset gives errors of order 1).

use std::fmt;

use crate::engine::{Engine, LogLikelihoodSum};
use crate::error::Result;
use crate::model::Flow;
use crate::reference;

/// Largest accepted error metric for a float32 engine against the float64 reference.
pub const FLOAT32_TOLERANCE: f64 = 2e-4;

/// Worst disagreement of one output.
#[derive(Clone, Debug, Default)]
pub struct Comparison {
    /// Largest |engine − reference|.
    pub max_abs: f64,
    /// Largest |engine − reference| / (1 + |reference|).
    pub max_metric: f64,
    /// Values where exactly one side is finite.
    pub finiteness_mismatches: usize,
}

impl Comparison {
    /// Compares two equally long slices.
    pub fn of(engine: &[f64], reference: &[f64]) -> Self {
        let mut c = Comparison::default();
        for (&a, &b) in engine.iter().zip(reference) {
            if a.is_finite() != b.is_finite() {
                c.finiteness_mismatches += 1;
            } else if b.is_finite() {
                let err = (a - b).abs();
                c.max_abs = c.max_abs.max(err);
                c.max_metric = c.max_metric.max(err / (1.0 + b.abs()));
            }
        }
        c
    }

    fn passed(&self, tolerance: f64) -> bool {
        self.finiteness_mismatches == 0 && self.max_metric <= tolerance
    }
}

/// The result of [`verify`].
#[derive(Clone, Debug)]
pub struct VerifyReport {
    pub engine: String,
    pub rows: usize,
    pub tolerance: f64,
    /// Data→latent z.
    pub latent: Comparison,
    /// Data→latent log-det.
    pub logdet: Comparison,
    /// log p(x).
    pub log_prob: Comparison,
    /// Latent→data x from the reference z, against the input rows.
    pub inverse: Comparison,
    /// Mean log-likelihood of the engine's reduction against the reference's.
    pub mean: Comparison,
}

impl VerifyReport {
    /// Every output within tolerance and no finiteness mismatch.
    pub fn passed(&self) -> bool {
        [&self.latent, &self.logdet, &self.log_prob, &self.inverse, &self.mean].iter().all(|c| c.passed(self.tolerance))
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "verify {} against the float64 reference on {} rows", self.engine, self.rows)?;
        writeln!(f, "  output                max |Δ|      max |Δ|/(1+|ref|)  finiteness mismatches")?;
        for (name, c) in [
            ("z (data→latent)", &self.latent),
            ("log-det", &self.logdet),
            ("log p", &self.log_prob),
            ("x (latent→data)", &self.inverse),
            ("mean log-likelihood", &self.mean),
        ] {
            writeln!(f, "  {name:<20} {:>10.3e}  {:>17.3e}  {}", c.max_abs, c.max_metric, c.finiteness_mismatches)?;
        }
        write!(f, "  tolerance {:.1e}: {}", self.tolerance, if self.passed() { "PASS" } else { "FAIL" })
    }
}

/// Runs `engine` and the float64 reference on the rows of `x` (`[n, D]`, rounded to float32
/// first) and compares every output.
pub fn verify(engine: &dyn Engine, x: &[f64]) -> Result<VerifyReport> {
    let flow: &Flow = engine.flow();
    let d = flow.dim;
    let x: Vec<f64> = x.iter().map(|&v| f64::from(v as f32)).collect();
    let n = x.len() / d;
    if n == 0 || x.len() != n * d {
        return Err(crate::error::Error::Argument(format!(
            "verify needs at least one row of D = {d} values, got {} values",
            x.len()
        )));
    }
    let (mut z, mut ld) = (vec![0.0; n * d], vec![0.0; n]);
    let (mut z_ref, mut ld_ref) = (vec![0.0; n * d], vec![0.0; n]);
    engine.forward_to_latent(&x, &mut z, &mut ld)?;
    reference::forward_to_latent(flow, &x, &mut z_ref, &mut ld_ref);
    let (mut lp, mut lp_ref) = (vec![0.0; n], vec![0.0; n]);
    let mut sum = LogLikelihoodSum::default();
    engine.log_prob(&x, &mut lp, &mut sum)?;
    reference::log_prob(flow, &x, &mut lp_ref);
    let mut sum_ref = LogLikelihoodSum::default();
    sum_ref.add_rows(&lp_ref);
    // the inverse is checked from the exactly representable float32 latent of the reference
    let z_in: Vec<f64> = z_ref.iter().map(|&v| f64::from(v as f32)).collect();
    let (mut back, mut ld_inv) = (vec![0.0; n * d], vec![0.0; n]);
    engine.inverse_to_data(&z_in, &mut back, &mut ld_inv)?;
    let (mut back_ref, mut ld_inv_ref) = (vec![0.0; n * d], vec![0.0; n]);
    reference::inverse_to_data(flow, &z_in, &mut back_ref, &mut ld_inv_ref);
    let mut inverse = Comparison::of(&back, &back_ref);
    let ld_inverse = Comparison::of(&ld_inv, &ld_inv_ref);
    inverse.max_abs = inverse.max_abs.max(ld_inverse.max_abs);
    inverse.max_metric = inverse.max_metric.max(ld_inverse.max_metric);
    inverse.finiteness_mismatches += ld_inverse.finiteness_mismatches;
    let mut mean = Comparison::of(&[sum.mean()], &[sum_ref.mean()]);
    mean.finiteness_mismatches += usize::from(sum.finite_rows != sum_ref.finite_rows);
    Ok(VerifyReport {
        engine: engine.name(),
        rows: n,
        tolerance: FLOAT32_TOLERANCE,
        latent: Comparison::of(&z, &z_ref),
        logdet: Comparison::of(&ld, &ld_ref),
        log_prob: Comparison::of(&lp, &lp_ref),
        inverse,
        mean,
    })
}
