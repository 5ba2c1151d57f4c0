//! The agreement suite every fast engine must pass against the float64 reference: random
//! models of many shapes (N = 1 and partial chunks), the init models, inverse∘forward,
//! chunking-independent reductions and NaN isolation. `open(flow, chunk_rows)` returns the
//! engine under test, or None to skip (no adapter).
//!
//! [`agreement_suite!`](crate::agreement_suite) writes the whole suite as `#[test]`s for one
//! engine (candle's `test_device!`): every engine file instantiates it once per engine.

use realnvp::engine::{Engine, LogLikelihoodSum};
use realnvp::model::{Base, Flow};
use realnvp::random::{init_flow, random_mixed_flow, InitSpec};
use realnvp::verify::{verify, FLOAT32_TOLERANCE};

/// Opens the engine under test for a flow and a chunk size (0: its default).
pub type Open<'a> = &'a dyn Fn(&Flow, usize) -> Option<Box<dyn Engine>>;

/// (D, depth, max hidden width) covering D 1–64, depths 1–12, widths up to 256.
pub const CASES: [(usize, usize, usize); 9] =
    [(1, 3, 8), (2, 12, 16), (3, 7, 32), (4, 6, 64), (5, 10, 24), (8, 9, 48), (16, 5, 96), (33, 4, 128), (64, 3, 256)];

pub fn matches_reference_on_random_models(open: Open) {
    for (&(d, depth, hidden), seed) in CASES.iter().zip(super::seeds(9)) {
        let flow = random_mixed_flow(d, depth, hidden, seed);
        let Some(engine) = open(&flow, 256) else { return };
        // N = 1, a non-multiple of 256, and several 256-row chunks
        for n in [1, 700] {
            let x = super::gaussian_rows(n, d, seed + 1);
            let report = verify(engine.as_ref(), &x).unwrap();
            assert!(report.passed(), "D = {d}, depth {depth}, hidden ≤ {hidden}, seed {seed}, N = {n}:\n{report}");
        }
    }
}

pub fn init_models_pass_verify(open: Open) {
    for (d, hidden) in [(4, vec![32, 32]), (16, vec![64, 64]), (64, vec![256, 256])] {
        let spec = InitSpec { dim: d, layers: 8, hidden, ..InitSpec::seed4d(8) };
        let flow = init_flow(&spec, d as u64).unwrap();
        let Some(engine) = open(&flow, 0) else { return };
        let x = super::gaussian_rows(if d == 64 { 600 } else { 3000 }, d, 5);
        let report = verify(engine.as_ref(), &x).unwrap();
        assert!(report.passed(), "init model D = {d}:\n{report}");
    }
}

/// A flow without layers is its base density (a valid model: `log p = log N(x)`, z = x), with
/// a standard and a diagonal base.
pub fn a_flow_without_layers_is_its_base(open: Open) {
    let bases =
        [Base::StandardNormal, Base::DiagonalNormal { loc: vec![0.5, -1.0, 2.0], log_scale: vec![0.1, -0.3, 0.7] }];
    for base in bases {
        let flow = Flow { features: None, dim: 3, base, layers: vec![] };
        let Some(engine) = open(&flow, 0) else { return };
        let x: Vec<f64> = (0..30).map(|i| (i as f64 * 0.37).sin() * 2.0).collect();
        let (mut got, mut want) = (vec![0.0; 10], vec![0.0; 10]);
        engine.log_prob(&x, &mut got, &mut LogLikelihoodSum::default()).unwrap();
        realnvp::reference::log_prob(&flow, &x, &mut want);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= FLOAT32_TOLERANCE * (1.0 + w.abs()), "{}: {g} vs {w}", engine.name());
        }
    }
}

pub fn inverse_of_forward_is_identity(open: Open) {
    let flow = random_mixed_flow(6, 8, 32, 77);
    let Some(engine) = open(&flow, 256) else { return };
    let n = 1000;
    let x: Vec<f64> = super::gaussian_rows(n, 6, 3).iter().map(|&v| f64::from(v as f32)).collect();
    let (mut z, mut ld) = (vec![0.0; n * 6], vec![0.0; n]);
    engine.forward_to_latent(&x, &mut z, &mut ld).unwrap();
    let (mut back, mut ld_inv) = (vec![0.0; n * 6], vec![0.0; n]);
    engine.inverse_to_data(&z, &mut back, &mut ld_inv).unwrap();
    for (a, b) in x.iter().zip(&back) {
        assert!((a - b).abs() / (1.0 + a.abs()) < FLOAT32_TOLERANCE, "x = {a}, inverse(forward(x)) = {b}");
    }
    for (a, b) in ld.iter().zip(&ld_inv) {
        assert!((a + b).abs() / (1.0 + a.abs()) < FLOAT32_TOLERANCE);
    }
}

/// log p of `x` handed to the engine in pieces of `piece_rows`.
pub fn log_prob_in_pieces(
    open: Open,
    flow: &Flow,
    x: &[f64],
    chunk_rows: usize,
    piece_rows: usize,
) -> Option<(Vec<f64>, LogLikelihoodSum)> {
    let engine = open(flow, chunk_rows)?;
    let d = flow.dim;
    let n = x.len() / d;
    let mut logp = vec![0.0; n];
    let mut sum = LogLikelihoodSum::default();
    for start in (0..n).step_by(piece_rows) {
        let end = (start + piece_rows).min(n);
        engine.log_prob(&x[start * d..end * d], &mut logp[start..end], &mut sum).unwrap();
    }
    Some((logp, sum))
}

/// How exactly an engine's reduction is independent of the chunking.
#[derive(Clone, Copy, PartialEq)]
pub enum Reduction {
    /// Bit for bit, given chunks of whole [`Engine::row_alignment`] multiples.
    Exact,
    /// Within float64 rounding: a split engine cuts each piece between its engines, and the
    /// engines' partial sums group differently for different piece sizes.
    Rounding,
}

pub fn batch_mean_does_not_depend_on_chunk_size(open: Open, reduction: Reduction) {
    let flow = random_mixed_flow(5, 6, 32, 11);
    let x = super::gaussian_rows(3000, 5, 4);
    let Some((logp_a, a)) = log_prob_in_pieces(open, &flow, &x, 256, 3000) else { return };
    let (logp_b, b) = log_prob_in_pieces(open, &flow, &x, 768, 512).unwrap();
    let (logp_c, c) = log_prob_in_pieces(open, &flow, &x, 0, 1024).unwrap();
    if reduction == Reduction::Exact {
        assert_eq!(a, b, "chunks of 256 vs 768 rows and host pieces of 512");
        assert_eq!(a, c, "default chunking");
    } else {
        for other in [&b, &c] {
            assert_eq!((a.rows, a.finite_rows), (other.rows, other.finite_rows));
            assert!((a.sum - other.sum).abs() <= 1e-13 * a.sum.abs(), "sums {} vs {}", a.sum, other.sum);
        }
    }
    assert_eq!(logp_a, logp_b);
    assert_eq!(logp_a, logp_c);
    assert_eq!(a.rows, 3000);
}

/// Rows far out (|x| ~ 100) drive tanh, sigmoid, exp and the log-det terms into saturation
/// and overflow: an engine may overflow where float32 must, but never returns NaN for a row
/// whose float64 reference stays within float32's range (the GPU's Newton-refined reciprocal
/// once turned 1/∞ into NaN there).
pub fn saturated_rows_never_turn_nan(open: Open) {
    use realnvp::reference::{base_log_density_in, row_to_data_in, row_to_latent_in, Magnitude};
    let mut checked = 0;
    for (&(d, depth, hidden), seed) in CASES[..6].iter().zip(super::seeds(6)) {
        let flow = random_mixed_flow(d, depth, hidden, seed);
        let Some(engine) = open(&flow, 256) else { return };
        let n = 700;
        let x: Vec<f64> = super::gaussian_rows(n, d, seed + 7).iter().map(|v| f64::from((100.0 * v) as f32)).collect();
        let mut lp = vec![0.0; n];
        engine.log_prob(&x, &mut lp, &mut LogLikelihoodSum::default()).unwrap();
        let (mut back, mut ld) = (vec![0.0; n * d], vec![0.0; n]);
        engine.inverse_to_data(&x, &mut back, &mut ld).unwrap();
        let mut out = vec![0.0; d];
        for r in 0..n {
            let row = &x[r * d..(r + 1) * d];
            let case = format!("D = {d}, depth {depth}, seed {seed}, row {r}");
            let mut seen = Magnitude::default();
            let ld_ref = row_to_latent_in(&flow, row, &mut out, &mut seen);
            let lp_ref = base_log_density_in(&flow.base, &out, &mut seen) + ld_ref;
            if seen.fits_f32() && lp_ref.is_finite() {
                checked += 1;
                assert!(!lp[r].is_nan(), "{case}: log p NaN, reference {lp_ref} in float32 range");
            }
            let mut seen = Magnitude::default();
            let ld_ref = row_to_data_in(&flow, row, &mut out, &mut seen);
            if seen.fits_f32() && ld_ref.is_finite() {
                checked += 1;
                assert!(!ld[r].is_nan(), "{case}: latent→data log-det NaN, reference {ld_ref} in float32 range");
            }
        }
    }
    assert!(checked > 1000, "only {checked} in-range rows: the test rows are too far out");
}

pub fn nan_rows_are_isolated(open: Open) {
    let flow = random_mixed_flow(4, 6, 16, 21);
    let clean = super::gaussian_rows(600, 4, 8);
    let mut dirty = clean.clone();
    dirty[10 * 4 + 2] = f64::NAN;
    dirty[300 * 4] = f64::INFINITY;
    let Some((lp_clean, _)) = log_prob_in_pieces(open, &flow, &clean, 256, 600) else { return };
    let (lp_dirty, sum) = log_prob_in_pieces(open, &flow, &dirty, 256, 600).unwrap();
    assert!(lp_dirty[10].is_nan() && lp_dirty[300].is_nan());
    for r in (0..600).filter(|&r| r != 10 && r != 300) {
        assert_eq!(lp_dirty[r].to_bits(), lp_clean[r].to_bits(), "row {r} changed");
    }
    assert_eq!(sum.finite_rows, 598);
    assert_eq!(sum.rows, 600);
    let expected: f64 =
        lp_clean.iter().enumerate().filter(|(r, _)| *r != 10 && *r != 300).map(|(_, v)| v).sum::<f64>() / 598.0;
    assert!((sum.mean() - expected).abs() < 1e-5 * expected.abs(), "finite-row mean {} vs {expected}", sum.mean());
    let (mut z, mut ld) = (vec![0.0; 2400], vec![0.0; 600]);
    open(&flow, 256).unwrap().forward_to_latent(&dirty, &mut z, &mut ld).unwrap();
    assert!(ld[10].is_nan() && z[40..44].iter().all(|v| v.is_nan()) && z[44..48].iter().all(|v| v.is_finite()));
    // latent→data: the same rows as latents
    let (mut x, mut ld_inv) = (vec![0.0; 2400], vec![0.0; 600]);
    open(&flow, 256).unwrap().inverse_to_data(&dirty, &mut x, &mut ld_inv).unwrap();
    for r in 0..600 {
        let bad = r == 10 || r == 300;
        let row = &x[r * 4..r * 4 + 4];
        assert_eq!(ld_inv[r].is_nan(), bad, "latent→data log-det of row {r}");
        assert!(row.iter().all(|v| v.is_nan() == bad), "latent→data row {r}: {row:?}");
    }
}

/// Writes the agreement suite as `#[test]` functions for the engine `open` returns (an
/// expression of type [`Open`]), in the module where it is invoked; with `rounding`, the
/// reduction is checked within float64 rounding instead of bit for bit ([`Reduction`]).
#[macro_export]
macro_rules! agreement_suite {
    ($open:expr) => {
        $crate::agreement_suite!($open, $crate::common::agreement::Reduction::Exact);
    };
    ($open:expr, rounding) => {
        $crate::agreement_suite!($open, $crate::common::agreement::Reduction::Rounding);
    };
    ($open:expr, $reduction:expr) => {
        #[test]
        fn matches_reference_on_random_models() {
            $crate::common::agreement::matches_reference_on_random_models($open);
        }

        #[test]
        fn init_models_pass_verify() {
            $crate::common::agreement::init_models_pass_verify($open);
        }

        #[test]
        fn a_flow_without_layers_is_its_base() {
            $crate::common::agreement::a_flow_without_layers_is_its_base($open);
        }

        #[test]
        fn inverse_of_forward_is_identity() {
            $crate::common::agreement::inverse_of_forward_is_identity($open);
        }

        #[test]
        fn batch_mean_does_not_depend_on_chunk_size() {
            $crate::common::agreement::batch_mean_does_not_depend_on_chunk_size($open, $reduction);
        }

        #[test]
        fn saturated_rows_never_turn_nan() {
            $crate::common::agreement::saturated_rows_never_turn_nan($open);
        }

        #[test]
        fn nan_rows_are_isolated() {
            $crate::common::agreement::nan_rows_are_isolated($open);
        }
    };
}
