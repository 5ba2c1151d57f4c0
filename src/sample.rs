//! Sampling as a pure function of (seed, row): the base draw of row i never depends on
//! chunking, engine, device, threads or the rows before it.
//!
//! Row i's standard-normal vector ε (length D) comes from Philox4x32-10 ([`crate::philox`])
//! with key = the 64-bit seed (low word first) and counter = (i low, i high, j, 0) for
//! features 4j…4j+3: the four 32-bit outputs become four uniforms u₀…u₃ in (0, 1)
//! ([`crate::philox::uniform`], 23 bits, exact in float32 and float64), and Box–Muller turns
//! (u₀, u₁) and (u₂, u₃) into two pairs of normals,
//! `ε = √(−2 ln u₀)·cos(2π u₁)`, `√(−2 ln u₀)·sin(2π u₁)`, … Box–Muller, because float32
//! and float64 compute it alike from the same uniforms (a logarithm, a square root, a sine and
//! a cosine; no rejection loop whose branch could differ between precisions), and it is
//! what cuRAND's `curand_normal4` does.
//!
//! **Temperature** T scales the base's standard deviation (Glow's sampling temperature):
//! z = μ + T·σ⊙ε for a diagonal base N(μ, σ²) (μ = 0, σ = 1 for N(0, I)), then x = f⁻¹(z).
//! The returned log q(x) is the log-density of that *tempered* model — base N(μ, T²σ²), the
//! same flow: `log q(x) = −½|ε|² − Σ log σ − D ln T − ½ D ln 2π − log|det ∂x/∂z|`. At T = 1
//! it equals the model's log p(x).

use crate::error::{Error, Result};
use crate::model::Base;
use crate::philox::{philox4x32_10, uniform};

const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// What to draw: rows `first_row…` of the stream of `seed`, at `temperature`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Draw {
    pub seed: u64,
    /// Global index of the first row of the batch: rows K…K+n−1 of any run are the same.
    pub first_row: u64,
    /// Multiplies the base's standard deviation (1: the model itself; must be > 0).
    pub temperature: f64,
}

impl Draw {
    /// Rows from `first_row` of `seed`'s stream at temperature 1.
    pub fn new(seed: u64, first_row: u64) -> Self {
        Draw { seed, first_row, temperature: 1.0 }
    }

    /// Checks a draw of `rows` rows: the temperature is finite and positive, and the row
    /// indices `first_row…first_row + rows − 1` fit in 64 bits (the stream does not wrap).
    pub fn check(&self, rows: usize) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(Error::Argument(format!("temperature must be finite and > 0, got {}", self.temperature)));
        }
        if self.first_row.checked_add(rows as u64).is_none() {
            return Err(Error::Argument(format!(
                "--first-row {} + {rows} rows run past the stream's last row index 2^64 − 1",
                self.first_row
            )));
        }
        Ok(())
    }

    /// The same draw shifted `rows` further into the stream.
    pub fn skip(&self, rows: u64) -> Self {
        Draw { first_row: self.first_row + rows, ..*self }
    }
}

/// Writes row `row`'s standard normals ε (`out.len()` = D) for `seed`, in float64.
pub fn row_normals(seed: u64, row: u64, out: &mut [f64]) {
    let key = [seed as u32, (seed >> 32) as u32];
    for (j, block) in out.chunks_mut(4).enumerate() {
        let bits = philox4x32_10([row as u32, (row >> 32) as u32, j as u32, 0], key);
        let u = bits.map(uniform);
        let (r0, r1) = ((-2.0 * u[0].ln()).sqrt(), (-2.0 * u[2].ln()).sqrt());
        let (s0, c0) = (std::f64::consts::TAU * u[1]).sin_cos();
        let (s1, c1) = (std::f64::consts::TAU * u[3]).sin_cos();
        let normals = [r0 * c0, r0 * s0, r1 * c1, r1 * s1];
        block.copy_from_slice(&normals[..block.len()]);
    }
}

/// The tempered base as per-feature (μ, T·σ) and the constant of log q:
/// `−Σ log σ − D ln T − ½ D ln 2π`.
pub struct TemperedBase {
    pub loc: Vec<f64>,
    pub scale: Vec<f64>,
    pub log_norm: f64,
}

impl TemperedBase {
    /// The base of dimension `d` at `temperature`.
    pub fn new(base: &Base, d: usize, temperature: f64) -> Self {
        let (loc, log_scale) = match base {
            Base::StandardNormal => (vec![0.0; d], vec![0.0; d]),
            Base::DiagonalNormal { loc, log_scale } => (loc.clone(), log_scale.clone()),
        };
        let scale = log_scale.iter().map(|s| temperature * s.exp()).collect();
        let log_norm = -log_scale.iter().sum::<f64>() - d as f64 * temperature.ln() - 0.5 * d as f64 * LN_2PI;
        TemperedBase { loc, scale, log_norm }
    }

    /// z = μ + T·σ⊙ε for one row, in place; returns −½|ε|² + the constant (log base density).
    pub fn to_latent(&self, eps_to_z: &mut [f64]) -> f64 {
        let mut quad = 0.0;
        for ((v, &m), &s) in eps_to_z.iter_mut().zip(&self.loc).zip(&self.scale) {
            quad += *v * *v;
            *v = m + s * *v;
        }
        -0.5 * quad + self.log_norm
    }
}
