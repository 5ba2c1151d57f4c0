//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod agreement;
pub mod pytorch;

use realnvp::model::Flow;
use realnvp::reference;

/// Seeds for randomized tests: a fixed spread, or `REALNVP_TEST_SEED` to try another.
pub fn seeds(count: u64) -> Vec<u64> {
    let start = std::env::var("REALNVP_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    (start..start + count).collect()
}

/// A flow of data→latent elementwise affine layers `y = x·e^{log_scale} + shift`, one per
/// `(log_scale, shift)` pair (each of length `dim`), over a standard normal base.
pub fn elementwise_flow(dim: usize, layers: impl IntoIterator<Item = (Vec<f64>, Vec<f64>)>) -> Flow {
    use realnvp::model::{Base, Direction, Layer};
    let layers = layers
        .into_iter()
        .map(|(log_scale, shift)| Layer::ElementwiseAffine { direction: Direction::DataToLatent, log_scale, shift })
        .collect();
    Flow { features: None, dim, base: Base::StandardNormal, layers }
}

/// Standard normal rows `[n, dim]`: rows 0…n−1 of `seed`'s sample stream.
pub fn gaussian_rows(n: usize, dim: usize, seed: u64) -> Vec<f64> {
    realnvp::random::sample_base(&realnvp::model::Base::StandardNormal, dim, n, seed)
}

/// log|det J| of the data→latent map at `x`, from a central-difference Jacobian and an LU
/// decomposition with partial pivoting, all in float64.
pub fn finite_difference_logdet(flow: &Flow, x: &[f64], h: f64) -> f64 {
    let d = flow.dim;
    let mut jac = vec![0.0; d * d];
    let (mut zp, mut zm) = (vec![0.0; d], vec![0.0; d]);
    for j in 0..d {
        let (mut xp, mut xm) = (x.to_vec(), x.to_vec());
        xp[j] += h;
        xm[j] -= h;
        reference::row_to_latent(flow, &xp, &mut zp);
        reference::row_to_latent(flow, &xm, &mut zm);
        for i in 0..d {
            jac[i * d + j] = (zp[i] - zm[i]) / (2.0 * h);
        }
    }
    log_abs_det(&mut jac, d)
}

/// log|det A| of a row-major d×d matrix by LU with partial pivoting (destroys `a`).
pub fn log_abs_det(a: &mut [f64], d: usize) -> f64 {
    let mut total = 0.0;
    for col in 0..d {
        let pivot = (col..d).max_by(|&r, &s| a[r * d + col].abs().total_cmp(&a[s * d + col].abs())).unwrap();
        if pivot != col {
            for k in 0..d {
                a.swap(pivot * d + k, col * d + k);
            }
        }
        let p = a[col * d + col];
        total += p.abs().ln();
        for r in col + 1..d {
            let factor = a[r * d + col] / p;
            for k in col..d {
                a[r * d + k] -= factor * a[col * d + k];
            }
        }
    }
    total
}

/// A fresh temporary folder, deleted on drop.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary folder")
}
