//! Checks an engine against the float64 reference on the same rows: `realnvp verify`, the
//! demo, and the engine tests all use this.
//!
//! # What is compared
//! Per row, five outputs: z and log|det ∂z/∂x| (data→latent), log p, and x and log|det ∂x/∂z|
//! (latent→data, from the reference's z rounded to float32). Inputs are rounded to float32
//! first, so both sides see exactly the same rows and only the arithmetic differs. The error
//! of one value is `|engine − reference| / (1 + |reference|)` (absolute near zero, relative
//! for large values); a row's error is the worst of its values.
//!
//! # What a float32 engine must meet
//! A row passes when its error is at most [`FLOAT32_TOLERANCE`], *or* at most
//! [`YARDSTICK_FACTOR`] × the error that plain float32 arithmetic makes on that row. The
//! yardstick is the reference's own code path run in float32 (parameters rounded, every
//! operation rounded, the platform's `expf`/`logf`), on the row and on two copies of it moved
//! by one float32 ulp per feature; the worst of the three is float32's error there, i.e. the
//! row's conditioning. It is only computed for rows whose error exceeds the tolerance. Rows
//! excused that way are reported as *ill-conditioned*: float32 cannot do better there, and
//! `--device cpu` (float64) is the answer. Where plain float32's error reaches 1 (no correct
//! digit left, e.g. an inverse dividing by scales of 1e-9) any engine result, ±∞ included, is
//! excused the same way.
//!
//! Why 2e-4: float32 has a unit roundoff of 6e-8; each Linear accumulates up to `in` rounded
//! products (≲ √in·6e-8 relative to Σ|w·h|, ~1e-6 for in = 256), the scale functions add a
//! few ulps, and errors compound through the layers. Measured on random, init and trained
//! models the worst well-conditioned row is a few 1e-6, so 2e-4 leaves room while a real bug
//! (a wrong sign, mask or offset) gives errors of order 1. Why 16: rounding errors amplified
//! by a bad conditioning are random; two float32 computations of the same row (the engine's
//! and the yardstick's) differ by a factor of a few, rarely 10; 16 still separates an engine
//! that is as good as float32 from a wrong one, which fails on the well-conditioned rows.
//!
//! # Rows float32 cannot represent
//! Rows whose float64 reference leaves float32's finite range — the output, or any
//! intermediate value: activations, scale factors f and 1/f, the base density's sum of
//! squares ([`Magnitude`]) — are counted as *out of float32 range* and not compared: every
//! float32 engine (PyTorch's too) overflows there. An engine fails only where it returns a
//! non-finite value for a row the reference keeps in range and plain float32 keeps finite.
//! Rows with NaN/±Inf inputs must give NaN.
//!
//! The mean log-likelihood is compared over the rows finite in both and in range; the engine's
//! own reduction (its row count, finite-row count and mean) is checked against its per-row
//! values.

use std::fmt;

use rayon::prelude::*;
use serde::Serialize;

use crate::engine::{Engine, LogLikelihoodSum};
use crate::error::{Error, Result};
use crate::model::Flow;
use crate::real::Real;
use crate::reference::{self, Magnitude};

/// Largest accepted error of a row for a float32 engine against the float64 reference.
pub const FLOAT32_TOLERANCE: f64 = 2e-4;

/// A row whose error exceeds [`FLOAT32_TOLERANCE`] still passes when it is at most this many
/// times plain float32's error on it (see the module documentation).
pub const YARDSTICK_FACTOR: f64 = 16.0;

/// The check of one output (z, a log-det, log p or the inverse x) over all rows.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OutputCheck {
    /// Rows compared (finite input, reference within float32 range).
    pub compared: usize,
    /// Largest |engine − reference| over the compared rows' values.
    pub max_abs: f64,
    /// Largest row error `|Δ|/(1+|ref|)` over the compared rows, and its row.
    pub max_metric: f64,
    pub worst_row: Option<usize>,
    /// Rows beyond both the tolerance and the yardstick, or non-finite where the reference
    /// and plain float32 are finite, or finite where the input was not; the first of them.
    pub failed: usize,
    pub first_failed: Option<usize>,
    /// Rows beyond the tolerance but within [`YARDSTICK_FACTOR`] × plain float32's error
    /// there; the worst of them as (row, engine error, float32 error).
    pub ill_conditioned: usize,
    pub worst_ill_conditioned: Option<(usize, f64, f64)>,
}

impl OutputCheck {
    pub fn passed(&self) -> bool {
        self.failed == 0
    }

    fn fail(&mut self, row: usize) {
        self.failed += 1;
        self.first_failed.get_or_insert(row);
    }
}

/// The mean log-likelihood of engine and reference over the rows finite in both and in range.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MeanCheck {
    pub rows: usize,
    pub engine: f64,
    pub reference: f64,
    /// `|engine − reference| / (1 + |reference|)`.
    pub metric: f64,
}

/// The engine's own batch reduction against its per-row log p values.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReductionCheck {
    /// Rows and finite rows the reduction counted.
    pub rows: u64,
    pub finite_rows: u64,
    /// Rows and finite rows among the engine's per-row values.
    pub expected_rows: u64,
    pub expected_finite_rows: u64,
    /// `|reduction mean − mean of the per-row values| / (1 + |…|)`.
    pub metric: f64,
}

impl ReductionCheck {
    pub fn passed(&self) -> bool {
        self.rows == self.expected_rows
            && self.finite_rows == self.expected_finite_rows
            && self.metric <= FLOAT32_TOLERANCE
    }
}

/// The result of [`verify`].
#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub engine: String,
    pub rows: usize,
    pub tolerance: f64,
    /// Rows with NaN/±Inf input (the engine must return NaN for them).
    pub non_finite_input: usize,
    /// Rows whose data→latent (resp. latent→data) reference leaves float32's range, not
    /// compared; the first of them.
    pub out_of_range: usize,
    pub first_out_of_range: Option<usize>,
    pub inverse_out_of_range: usize,
    pub first_inverse_out_of_range: Option<usize>,
    /// Data→latent z.
    pub latent: OutputCheck,
    /// Data→latent log-det.
    pub logdet: OutputCheck,
    /// log p(x).
    pub log_prob: OutputCheck,
    /// Latent→data x from the reference z, against the reference's latent→data x.
    pub inverse: OutputCheck,
    /// Latent→data log-det.
    pub inverse_logdet: OutputCheck,
    /// Mean log-likelihood over the rows finite in both.
    pub mean: MeanCheck,
    /// The engine's reduction against its own rows.
    pub reduction: ReductionCheck,
}

impl VerifyReport {
    fn outputs(&self) -> [(&'static str, &OutputCheck); 5] {
        [
            ("z (data→latent)", &self.latent),
            ("log-det (data→latent)", &self.logdet),
            ("log p", &self.log_prob),
            ("x (latent→data)", &self.inverse),
            ("log-det (latent→data)", &self.inverse_logdet),
        ]
    }

    /// Every output passes, the mean agrees, and the engine's reduction counts its rows.
    pub fn passed(&self) -> bool {
        self.outputs().iter().all(|(_, c)| c.passed())
            && self.mean.metric.partial_cmp(&self.tolerance) != Some(std::cmp::Ordering::Greater)
            && self.reduction.passed()
    }

    /// Rows excused as ill-conditioned, over all outputs.
    pub fn ill_conditioned(&self) -> usize {
        self.outputs().iter().map(|(_, c)| c.ill_conditioned).sum()
    }
}

fn row_or_dash(r: Option<usize>) -> String {
    r.map_or("-".into(), |r| r.to_string())
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "verify {} against the float64 reference on {} rows", self.engine, self.rows)?;
        let in_range = self.rows - self.out_of_range - self.non_finite_input;
        writeln!(
            f,
            "  rows in float32 range: {in_range} data→latent, {} latent→data",
            self.rows - self.inverse_out_of_range - self.non_finite_input
        )?;
        if self.out_of_range + self.inverse_out_of_range > 0 {
            writeln!(
                f,
                "  out of float32 range (not compared; every float32 engine overflows there, use --device cpu): \
                 {} data→latent (first row {}), {} latent→data (first row {})",
                self.out_of_range,
                row_or_dash(self.first_out_of_range),
                self.inverse_out_of_range,
                row_or_dash(self.first_inverse_out_of_range)
            )?;
        }
        if self.non_finite_input > 0 {
            writeln!(f, "  rows with NaN/±Inf input (must give NaN): {}", self.non_finite_input)?;
        }
        writeln!(
            f,
            "  output                    max |Δ|   max |Δ|/(1+|ref|)  worst row  failed rows  ill-conditioned"
        )?;
        for (name, c) in self.outputs() {
            writeln!(
                f,
                "  {name:<22} {:>10.3e}  {:>17.3e}  {:>9}  {:>11}  {:>15}",
                c.max_abs,
                c.max_metric,
                row_or_dash(c.worst_row),
                c.failed,
                c.ill_conditioned
            )?;
        }
        writeln!(
            f,
            "  mean log-likelihood     engine {:.9e}, reference {:.9e} over {} rows: {:.3e}",
            self.mean.engine, self.mean.reference, self.mean.rows, self.mean.metric
        )?;
        let r = &self.reduction;
        writeln!(
            f,
            "  engine reduction        {} rows, {} finite (its rows: {}, {} finite), mean vs its rows {:.3e}",
            r.rows, r.finite_rows, r.expected_rows, r.expected_finite_rows, r.metric
        )?;
        for (name, c) in self.outputs() {
            if let Some((row, e, e32)) = c.worst_ill_conditioned {
                writeln!(
                    f,
                    "  ill-conditioned {name}: {} rows where plain float32 errs beyond the tolerance too; worst row {row} \
                     (engine {e:.2e}, float32 {e32:.2e}); use --device cpu (float64) for such rows",
                    c.ill_conditioned
                )?;
            }
            if let Some(row) = c.first_failed {
                writeln!(f, "  FAILED {name}: {} rows, first row {row}", c.failed)?;
            }
        }
        write!(
            f,
            "  tolerance {:.1e} per row, or {}× plain float32's error on ill-conditioned rows: {}",
            self.tolerance,
            YARDSTICK_FACTOR,
            if self.passed() { "PASS" } else { "FAIL" }
        )
    }
}

/// Draws `n` data rows from the flow itself: latents from the base (rows 0…n−1 of `seed`'s
/// sample stream, as `realnvp sample --seed` draws them), then the float64 reference's
/// latent→data map, rounded to float32. Rows that are not finite in float32 are dropped;
/// returns the rows (`[m, D]`, m ≤ n).
pub fn model_rows(flow: &Flow, n: usize, seed: u64) -> Result<Vec<f64>> {
    check_size(n, flow.dim)?;
    let eps = crate::random::sample_base(&flow.base, flow.dim, n, seed);
    let (mut x, mut ld) = (vec![0.0; eps.len()], vec![0.0; n]);
    reference::inverse_to_data(flow, &eps, &mut x, &mut ld);
    Ok(x.chunks(flow.dim)
        .filter(|r| r.iter().all(|&v| (v as f32).is_finite()))
        .flat_map(|r| r.iter().map(|&v| f64::from(v as f32)))
        .collect())
}

/// Most values (rows × D) one verify run checks: it holds its rows and about ten arrays of
/// results in memory (≈ 2.5 GiB at this size).
pub const MAX_VALUES: usize = 1 << 25;

/// Refuses a verify run of `rows` rows of `dim` values above [`MAX_VALUES`].
pub fn check_size(rows: usize, dim: usize) -> Result<()> {
    match rows.checked_mul(dim) {
        Some(v) if v <= MAX_VALUES => Ok(()),
        _ => Err(Error::Argument(format!(
            "verify holds its rows in memory: {rows} rows × D = {dim} is more than its {MAX_VALUES} values; check fewer rows (several seeds for more)"
        ))),
    }
}

/// One row's reference values in one direction: output row, log-det, log p (data→latent
/// only) and the magnitude of everything computed.
struct RowRef<T> {
    out: Vec<T>,
    logdet: T,
    log_prob: T,
    seen: Magnitude,
}

fn reference_row<T: Real>(flow: &Flow, input: &[f64], to_latent: bool) -> RowRef<T> {
    let input: Vec<T> = input.iter().map(|&v| T::of(v)).collect();
    let mut out = vec![T::zero(); input.len()];
    let mut seen = Magnitude::default();
    let (logdet, log_prob) = if to_latent {
        let ld = reference::row_to_latent_in(flow, &input, &mut out, &mut seen);
        (ld, reference::base_log_density_in(&flow.base, &out, &mut seen) + ld)
    } else {
        (reference::row_to_data_in(flow, &input, &mut out, &mut seen), T::nan())
    };
    RowRef { out, logdet, log_prob, seen }
}

/// Row error of `engine` values against `reference` values: the worst `|Δ|/(1+|ref|)`
/// (∞ when a value is not finite) and the worst `|Δ|`.
fn row_error(engine: &[f64], reference: &[f64]) -> (f64, f64) {
    let mut metric: f64 = 0.0;
    let mut abs: f64 = 0.0;
    for (&a, &b) in engine.iter().zip(reference) {
        let d = (a - b).abs();
        if !d.is_finite() {
            return (f64::INFINITY, f64::INFINITY);
        }
        abs = abs.max(d);
        metric = metric.max(d / (1.0 + b.abs()));
    }
    (metric, abs)
}

/// Plain float32's error on one output of one row: the worst over the row and two copies
/// moved by one ulp per feature (alternating directions), ∞ where float32 is not finite.
fn yardstick(
    flow: &Flow,
    input: &[f64],
    to_latent: bool,
    pick: impl Fn(&RowRef<f32>) -> Vec<f64>,
    reference: &[f64],
) -> f64 {
    let nudged = |up: bool| -> Vec<f64> {
        input
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let v = v as f32;
                let bits = v.to_bits();
                // one ulp away from zero for even features and towards it for odd ones (or the reverse)
                let away = (i % 2 == 0) == up;
                let moved = if v == 0.0 {
                    if away {
                        f32::from_bits(1)
                    } else {
                        -f32::from_bits(1)
                    }
                } else if away {
                    f32::from_bits(bits + 1)
                } else {
                    f32::from_bits(bits - 1)
                };
                f64::from(moved)
            })
            .collect()
    };
    [input.to_vec(), nudged(true), nudged(false)]
        .iter()
        .map(|x| row_error(&pick(&reference_row::<f32>(flow, x, to_latent)), reference).0)
        .fold(0.0, f64::max)
}

/// One output of every row: engine and reference values, `width` per row.
struct OutputRows<'a> {
    engine: &'a [f64],
    reference: &'a [f64],
    width: usize,
}

/// Checks one output of every row: `rows` holds the values, `in_range[r]` says whether the
/// reference stays in float32 range, `finite_input[r]` whether the input row was finite, and
/// `pick` extracts the same output from a float32 reference run (the yardstick).
fn check_output(
    flow: &Flow,
    inputs: &[f64],
    rows: OutputRows,
    in_range: &[bool],
    finite_input: &[bool],
    to_latent: bool,
    pick: impl Fn(&RowRef<f32>) -> Vec<f64> + Sync,
) -> OutputCheck {
    let d = flow.dim;
    let w = rows.width;
    // (row, outcome) per row, in parallel: the yardstick is only run where the tolerance is exceeded.
    enum Outcome {
        Skipped,
        Ok(f64, f64),
        Ill(f64, f64, f64),
        Failed(f64, f64),
    }
    let outcomes: Vec<Outcome> = (0..in_range.len())
        .into_par_iter()
        .map(|r| {
            let (e, b) = (&rows.engine[r * w..(r + 1) * w], &rows.reference[r * w..(r + 1) * w]);
            if !finite_input[r] {
                return if e.iter().all(|v| v.is_nan()) { Outcome::Skipped } else { Outcome::Failed(0.0, 0.0) };
            }
            if !in_range[r] {
                return Outcome::Skipped;
            }
            let (metric, abs) = row_error(e, b);
            if metric <= FLOAT32_TOLERANCE {
                return Outcome::Ok(metric, abs);
            }
            let e32 = yardstick(flow, &inputs[r * d..(r + 1) * d], to_latent, &pick, b);
            // e32 ≥ 1: float32 loses every digit of this row, whatever an engine returns there
            if metric <= YARDSTICK_FACTOR * e32 || e32 >= 1.0 {
                Outcome::Ill(metric, abs, e32)
            } else {
                Outcome::Failed(metric, abs)
            }
        })
        .collect();
    let mut c = OutputCheck::default();
    for (r, o) in outcomes.into_iter().enumerate() {
        let (metric, abs) = match o {
            Outcome::Skipped => continue,
            Outcome::Ok(m, a) => (m, a),
            Outcome::Ill(m, a, e32) => {
                c.ill_conditioned += 1;
                if c.worst_ill_conditioned.is_none_or(|(_, worst, _)| m > worst) {
                    c.worst_ill_conditioned = Some((r, m, e32));
                }
                (m, a)
            }
            Outcome::Failed(m, a) => {
                c.fail(r);
                (m, a)
            }
        };
        if !finite_input[r] {
            continue;
        }
        c.compared += 1;
        if metric > c.max_metric || c.worst_row.is_none() {
            c.worst_row = Some(r);
        }
        c.max_metric = c.max_metric.max(metric);
        c.max_abs = c.max_abs.max(abs);
    }
    c
}

/// Runs `engine` and the float64 reference on the rows of `x` (`[n, D]`, rounded to float32
/// first) and checks every output (see the module documentation).
pub fn verify(engine: &dyn Engine, x: &[f64]) -> Result<VerifyReport> {
    let flow: &Flow = engine.flow();
    let d = flow.dim;
    check_size(x.len() / d, d)?;
    let x: Vec<f64> = x.iter().map(|&v| f64::from(v as f32)).collect();
    let n = x.len() / d;
    if n == 0 || x.len() != n * d {
        return Err(Error::Argument(format!(
            "verify needs at least one row of D = {d} values, got {} values",
            x.len()
        )));
    }
    let finite_input: Vec<bool> = x.chunks(d).map(|r| r.iter().all(|v| v.is_finite())).collect();

    // the float64 reference, data→latent
    let forward: Vec<RowRef<f64>> = x.par_chunks(d).map(|r| reference_row::<f64>(flow, r, true)).collect();
    let in_range: Vec<bool> = forward
        .iter()
        .map(|f| f.seen.fits_f32() && f.log_prob.is_finite() && f.out.iter().all(|v| v.is_finite()))
        .collect();
    let z_ref: Vec<f64> = forward.iter().flat_map(|f| f.out.iter().copied()).collect();
    let ld_ref: Vec<f64> = forward.iter().map(|f| f.logdet).collect();
    let lp_ref: Vec<f64> = forward.iter().map(|f| f.log_prob).collect();

    // the engine, data→latent and log p
    let (mut z, mut ld) = (vec![0.0; n * d], vec![0.0; n]);
    engine.forward_to_latent(&x, &mut z, &mut ld)?;
    let (mut lp, mut sum) = (vec![0.0; n], LogLikelihoodSum::default());
    engine.log_prob(&x, &mut lp, &mut sum)?;

    // latent→data from the reference's z rounded to float32, in range only if the forward was
    let z_in: Vec<f64> = z_ref.iter().map(|&v| f64::from(v as f32)).collect();
    let inverse: Vec<RowRef<f64>> = z_in.par_chunks(d).map(|r| reference_row::<f64>(flow, r, false)).collect();
    let inverse_in_range: Vec<bool> = inverse
        .iter()
        .zip(&in_range)
        .map(|(f, &fwd)| fwd && f.seen.fits_f32() && f.logdet.is_finite() && f.out.iter().all(|v| v.is_finite()))
        .collect();
    let back_ref: Vec<f64> = inverse.iter().flat_map(|f| f.out.iter().copied()).collect();
    let ld_inv_ref: Vec<f64> = inverse.iter().map(|f| f.logdet).collect();
    let (mut back, mut ld_inv) = (vec![0.0; n * d], vec![0.0; n]);
    engine.inverse_to_data(&z_in, &mut back, &mut ld_inv)?;

    let forward_check = |engine: &[f64], reference: &[f64], width: usize, pick: fn(&RowRef<f32>) -> Vec<f64>| {
        check_output(flow, &x, OutputRows { engine, reference, width }, &in_range, &finite_input, true, pick)
    };
    let inverse_check = |engine: &[f64], reference: &[f64], width: usize, pick: fn(&RowRef<f32>) -> Vec<f64>| {
        check_output(
            flow,
            &z_in,
            OutputRows { engine, reference, width },
            &inverse_in_range,
            &finite_input,
            false,
            pick,
        )
    };
    let out = |r: &RowRef<f32>| r.out.iter().map(|&v| f64::from(v)).collect();
    let logdet = |r: &RowRef<f32>| vec![f64::from(r.logdet)];
    let log_prob_check = forward_check(&lp, &lp_ref, 1, |r| vec![f64::from(r.log_prob)]);

    let mean = mean_check(&lp, &lp_ref, &in_range);
    let reduction = reduction_check(&sum, &lp);

    let count = |v: &[bool]| v.iter().zip(&finite_input).filter(|(&ok, &fin)| fin && !ok).count();
    let first = |v: &[bool]| v.iter().zip(&finite_input).position(|(&ok, &fin)| fin && !ok);
    Ok(VerifyReport {
        engine: engine.name(),
        rows: n,
        tolerance: FLOAT32_TOLERANCE,
        non_finite_input: finite_input.iter().filter(|f| !**f).count(),
        out_of_range: count(&in_range),
        first_out_of_range: first(&in_range),
        inverse_out_of_range: count(&inverse_in_range),
        first_inverse_out_of_range: first(&inverse_in_range),
        latent: forward_check(&z, &z_ref, d, out),
        logdet: forward_check(&ld, &ld_ref, 1, logdet),
        log_prob: log_prob_check,
        inverse: inverse_check(&back, &back_ref, d, out),
        inverse_logdet: inverse_check(&ld_inv, &ld_inv_ref, 1, logdet),
        mean,
        reduction,
    })
}

/// The mean log p over rows finite in both, in range and not excused as ill-conditioned.
fn mean_check(lp: &[f64], lp_ref: &[f64], in_range: &[bool]) -> MeanCheck {
    let mut mean = MeanCheck::default();
    let (mut se, mut sr) = (0.0, 0.0);
    for r in 0..lp.len() {
        if in_range[r]
            && lp[r].is_finite()
            && lp_ref[r].is_finite()
            && (lp[r] - lp_ref[r]).abs() / (1.0 + lp_ref[r].abs()) <= FLOAT32_TOLERANCE
        {
            mean.rows += 1;
            se += lp[r];
            sr += lp_ref[r];
        }
    }
    if mean.rows > 0 {
        mean.engine = se / mean.rows as f64;
        mean.reference = sr / mean.rows as f64;
        mean.metric = (mean.engine - mean.reference).abs() / (1.0 + mean.reference.abs());
    }
    mean
}

/// The engine's reduction `sum` against its own per-row values `lp`.
fn reduction_check(sum: &LogLikelihoodSum, lp: &[f64]) -> ReductionCheck {
    let mut own = LogLikelihoodSum::default();
    own.add_rows(lp);
    ReductionCheck {
        rows: sum.rows,
        finite_rows: sum.finite_rows,
        expected_rows: lp.len() as u64,
        expected_finite_rows: own.finite_rows,
        metric: if own.finite_rows == 0 && sum.finite_rows == 0 {
            0.0
        } else {
            let m = (sum.mean() - own.mean()).abs() / (1.0 + own.mean().abs());
            if m.is_nan() {
                f64::INFINITY
            } else {
                m
            }
        },
    }
}
