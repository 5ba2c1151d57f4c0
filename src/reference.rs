//! The float64 CPU reference: the ground truth every other engine is held to. Written for
//! clarity, one row at a time, parallel over rows with rayon.
//!
//! The row functions are generic over the float type ([`Real`]): in `f64` they are the
//! reference; run in `f32` (parameters rounded to float32, every operation in float32, the
//! platform's correctly rounded-ish `expf`/`logf`) they are *plain float32 arithmetic* on the
//! same code path, the yardstick `verify` uses for how well float32 can do on a given row.
//! Every row function also reports the largest magnitude of any value it computed
//! ([`Magnitude`]), so that rows whose float64 values leave float32's range can be told apart.
//!
//! Rows are row-major `[n, D]` slices. A row that contains NaN or ±Inf yields NaN outputs for
//! that row only.

use rayon::prelude::*;

use crate::model::{
    Activation, Base, Conditioner, Coupling, Direction, Flow, Layer, Layout, Linear, Mlp, OutputFn, ScaleFn,
};
use crate::real::Real;

const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// The largest magnitude a row evaluation produced: every Linear output, activation,
/// conditioner output, scale factor f *and* its reciprocal 1/f, transformed feature, log-det
/// and the base density's sum of squares. A float64 row whose magnitude exceeds
/// `f32::MAX` cannot be evaluated in float32 (some intermediate overflows or underflows).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Magnitude(pub f64);

impl Magnitude {
    fn see<T: Real>(&mut self, v: T) {
        let a = v.wide().abs();
        // a NaN intermediate (from finite inputs) marks the row as beyond range
        if a.is_nan() {
            self.0 = f64::INFINITY;
        } else if a > self.0 {
            self.0 = a;
        }
    }

    fn see_all<T: Real>(&mut self, v: &[T]) {
        v.iter().for_each(|&x| self.see(x));
    }

    /// Whether every value stayed within float32's finite range.
    pub fn fits_f32(self) -> bool {
        self.0 <= f64::from(f32::MAX)
    }
}

/// Data→latent for a batch: writes z `[n, D]` and the per-row log|det ∂z/∂x| `[n]`.
///
/// Panics if the slice lengths disagree with `flow.dim` (callers check shapes first).
pub fn forward_to_latent(flow: &Flow, x: &[f64], z: &mut [f64], logdet: &mut [f64]) {
    for_each_row(flow.dim, x, z, logdet, |xr, zr| row_to_latent(flow, xr, zr));
}

/// Latent→data for a batch: writes x `[n, D]` and the per-row log|det ∂x/∂z| `[n]`
/// (the log-det of the inverse map, i.e. minus the forward log-det at x).
pub fn inverse_to_data(flow: &Flow, z: &[f64], x: &mut [f64], logdet: &mut [f64]) {
    for_each_row(flow.dim, z, x, logdet, |zr, xr| row_to_data(flow, zr, xr));
}

/// log p(x) in nats for each data row of `x` `[n, D]` into `logp` `[n]`.
pub fn log_prob(flow: &Flow, x: &[f64], logp: &mut [f64]) {
    let d = flow.dim;
    assert_eq!(x.len(), logp.len() * d, "x must be [n, D] with n = logp.len()");
    x.par_chunks(d).zip(logp.par_iter_mut()).for_each(|(xr, lp)| {
        let mut z = vec![0.0; d];
        *lp = row_log_prob(flow, xr, &mut z);
    });
}

/// log p(x) for one row; `z` (length D) receives the latent.
pub fn row_log_prob(flow: &Flow, x: &[f64], z: &mut [f64]) -> f64 {
    let logdet = row_to_latent(flow, x, z);
    base_log_density(&flow.base, z) + logdet
}

/// log density of the base distribution at latent row `z`.
pub fn base_log_density(base: &Base, z: &[f64]) -> f64 {
    base_log_density_in(base, z, &mut Magnitude::default())
}

/// [`base_log_density`] in `T`; `seen` records the sum of squares.
pub fn base_log_density_in<T: Real>(base: &Base, z: &[T], seen: &mut Magnitude) -> T {
    let d = T::of(z.len() as f64);
    let half = T::of(0.5);
    let value = match base {
        Base::StandardNormal => {
            let quad = z.iter().map(|&v| v * v).sum::<T>();
            seen.see(quad);
            -half * quad - half * d * T::of(LN_2PI)
        }
        Base::DiagonalNormal { loc, log_scale } => {
            let mut quad = T::zero();
            let mut log_scales = T::zero();
            for i in 0..z.len() {
                let ls = T::of(log_scale[i]);
                let r = (z[i] - T::of(loc[i])) / ls.exp();
                quad = quad + r * r;
                log_scales = log_scales + ls;
            }
            seen.see(quad);
            -half * quad - log_scales - half * d * T::of(LN_2PI)
        }
    };
    seen.see(value);
    value
}

fn for_each_row(
    d: usize,
    input: &[f64],
    output: &mut [f64],
    logdet: &mut [f64],
    f: impl Fn(&[f64], &mut [f64]) -> f64 + Sync,
) {
    assert_eq!(input.len(), logdet.len() * d, "input must be [n, D] with n = logdet.len()");
    assert_eq!(input.len(), output.len(), "output must have the shape of the input");
    input.par_chunks(d).zip(output.par_chunks_mut(d)).zip(logdet.par_iter_mut()).for_each(|((i, o), ld)| *ld = f(i, o));
}

/// Data→latent for one row; returns log|det ∂z/∂x|.
pub fn row_to_latent(flow: &Flow, x: &[f64], z: &mut [f64]) -> f64 {
    row_to_latent_in(flow, x, z, &mut Magnitude::default())
}

/// Latent→data for one row; returns log|det ∂x/∂z|.
pub fn row_to_data(flow: &Flow, z: &[f64], x: &mut [f64]) -> f64 {
    row_to_data_in(flow, z, x, &mut Magnitude::default())
}

/// [`row_to_latent`] in `T`; `seen` records the largest magnitude computed.
pub fn row_to_latent_in<T: Real>(flow: &Flow, x: &[T], z: &mut [T], seen: &mut Magnitude) -> T {
    if x.iter().any(|v| !v.is_finite()) {
        z.fill(T::nan());
        return T::nan();
    }
    z.copy_from_slice(x);
    let mut logdet = T::zero();
    for layer in &flow.layers {
        logdet = logdet + layer_to_latent(layer, z, seen);
        seen.see(logdet);
    }
    logdet
}

/// [`row_to_data`] in `T`; `seen` records the largest magnitude computed.
pub fn row_to_data_in<T: Real>(flow: &Flow, z: &[T], x: &mut [T], seen: &mut Magnitude) -> T {
    if z.iter().any(|v| !v.is_finite()) {
        x.fill(T::nan());
        return T::nan();
    }
    x.copy_from_slice(z);
    let mut logdet = T::zero();
    for layer in flow.layers.iter().rev() {
        logdet = logdet + layer_to_data(layer, x, seen);
        seen.see(logdet);
    }
    logdet
}

/// Applies one layer data→latent in place; returns its log-det.
fn layer_to_latent<T: Real>(layer: &Layer, v: &mut [T], seen: &mut Magnitude) -> T {
    match layer {
        Layer::Coupling(c) => coupling(c, v, true, seen),
        Layer::ElementwiseAffine { direction, log_scale, shift } => {
            elementwise(*direction, log_scale, shift, v, true, seen)
        }
        Layer::Permutation { perm } => {
            let src = v.to_vec();
            for (j, &p) in perm.iter().enumerate() {
                v[j] = src[p];
            }
            T::zero()
        }
    }
}

/// Applies one layer latent→data in place; returns its log-det.
fn layer_to_data<T: Real>(layer: &Layer, v: &mut [T], seen: &mut Magnitude) -> T {
    match layer {
        Layer::Coupling(c) => coupling(c, v, false, seen),
        Layer::ElementwiseAffine { direction, log_scale, shift } => {
            elementwise(*direction, log_scale, shift, v, false, seen)
        }
        Layer::Permutation { perm } => {
            let src = v.to_vec();
            for (j, &p) in perm.iter().enumerate() {
                v[p] = src[j];
            }
            T::zero()
        }
    }
}

/// The stored map is `y = x·f + t`, log-det `+Σ log f`; its inverse `x = (y − t)/f`,
/// log-det `−Σ log f`. Which of the two is applied depends on the stored direction and on
/// whether we move towards the latent. `seen` records f, 1/f and y.
fn apply_affine<T: Real>(
    direction: Direction,
    to_latent: bool,
    (v, log_f, f, t): (T, T, T, T),
    seen: &mut Magnitude,
) -> (T, T) {
    seen.see(f);
    seen.see(f.recip());
    let stored_map = (direction == Direction::DataToLatent) == to_latent;
    let (y, ld) = if stored_map { (v * f + t, log_f) } else { ((v - t) / f, -log_f) };
    seen.see(y);
    (y, ld)
}

fn elementwise<T: Real>(
    direction: Direction,
    log_scale: &[f64],
    shift: &[f64],
    v: &mut [T],
    to_latent: bool,
    seen: &mut Magnitude,
) -> T {
    let mut logdet = T::zero();
    for i in 0..v.len() {
        let ls = T::of(log_scale[i]);
        let (y, ld) = apply_affine(direction, to_latent, (v[i], ls, ls.exp(), T::of(shift[i])), seen);
        v[i] = y;
        logdet = logdet + ld;
    }
    logdet
}

fn coupling<T: Real>(c: &Coupling, v: &mut [T], to_latent: bool, seen: &mut Magnitude) -> T {
    let transformed = c.transformed_features();
    let (u, t) = conditioner_outputs_in(c, v, seen);
    let mut logdet = T::zero();
    for (k, &i) in transformed.iter().enumerate() {
        let (log_f, f) = scale_factor_in(&c.scale, u[k], i);
        let (y, ld) = apply_affine(c.direction, to_latent, (v[i], log_f, f, t[k]), seen);
        v[i] = y;
        logdet = logdet + ld;
    }
    logdet
}

/// Scale inputs u and shifts t for the transformed features (index order), computed from
/// the identity features of `v` only.
fn conditioner_outputs_in<T: Real>(c: &Coupling, v: &[T], seen: &mut Magnitude) -> (Vec<T>, Vec<T>) {
    let transformed = c.transformed_features();
    match &c.conditioner {
        Conditioner::MaskedSt { s, t } => {
            let masked: Vec<T> = v.iter().zip(&c.mask).map(|(&x, &b)| if b { x } else { T::zero() }).collect();
            let s_out = mlp_forward_in(s, &masked, seen);
            let t_out = mlp_forward_in(t, &masked, seen);
            (transformed.iter().map(|&i| s_out[i]).collect(), transformed.iter().map(|&i| t_out[i]).collect())
        }
        Conditioner::Shared { st, layout } => {
            let inputs: Vec<T> = c.identity_features().iter().map(|&i| v[i]).collect();
            let out = mlp_forward_in(st, &inputs, seen);
            let n = transformed.len();
            match layout {
                Layout::ShiftScale => (out[n..].to_vec(), out[..n].to_vec()),
                Layout::Interleaved => ((0..n).map(|k| out[2 * k + 1]).collect(), (0..n).map(|k| out[2 * k]).collect()),
            }
        }
    }
}

/// Returns (log f, f) for scale input `u` of feature `i`.
fn scale_factor_in<T: Real>(scale: &ScaleFn, u: T, i: usize) -> (T, T) {
    match scale {
        ScaleFn::Exp => (u, u.exp()),
        ScaleFn::TanhExp { alpha } => {
            let lf = T::of(alpha[i]) * u.tanh();
            (lf, lf.exp())
        }
        ScaleFn::Sigmoid { offset, eps } => {
            let f = sigmoid(u + T::of(*offset)) + T::of(*eps);
            (f.ln(), f)
        }
        ScaleFn::SoftClampExp { bound } => {
            let bound = T::of(*bound);
            let lf = bound * (u / bound).tanh();
            (lf, lf.exp())
        }
    }
}

fn sigmoid<T: Real>(x: T) -> T {
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

/// Evaluates a conditioner net (plain MLP or residual net, see [`Mlp`]) on one input vector.
fn mlp_forward_in<T: Real>(mlp: &Mlp, input: &[T], seen: &mut Magnitude) -> Vec<T> {
    let last = mlp.linears.len() - 1;
    let act = |v: Vec<T>| -> Vec<T> { v.into_iter().map(|x| activate(mlp.activation, x)).collect() };
    let mut h = input.to_vec();
    if mlp.residual_blocks == 0 {
        for l in &mlp.linears[..last] {
            h = act(linear(l, &h, seen));
        }
    } else {
        h = linear(&mlp.linears[0], &h, seen);
        for pair in mlp.linears[1..last].chunks_exact(2) {
            let inner = linear(&pair[1], &act(linear(&pair[0], &act(h.clone()), seen)), seen);
            h.iter_mut().zip(inner).for_each(|(a, b)| *a = *a + b);
            seen.see_all(&h);
        }
    }
    let mut out = linear(&mlp.linears[last], &h, seen);
    if mlp.output == OutputFn::Tanh {
        out.iter_mut().for_each(|v| *v = v.tanh());
    }
    out
}

/// `W x + b` for one vector (sums in input order).
fn linear<T: Real>(l: &Linear, x: &[T], seen: &mut Magnitude) -> Vec<T> {
    let mut out: Vec<T> = l.bias.iter().map(|&b| T::of(b)).collect();
    for (o, acc) in out.iter_mut().enumerate() {
        let row = &l.weight[o * l.inputs..(o + 1) * l.inputs];
        *acc = *acc + row.iter().zip(x).map(|(&w, &x)| T::of(w) * x).sum::<T>();
    }
    seen.see_all(&out);
    out
}

/// Hidden activation in `T`.
pub fn activate<T: Real>(a: Activation, x: T) -> T {
    match a {
        Activation::Relu => x.max(T::zero()),
        Activation::LeakyRelu { negative_slope } => {
            if x >= T::zero() {
                x
            } else {
                T::of(negative_slope) * x
            }
        }
        Activation::Tanh => x.tanh(),
        Activation::Elu => {
            if x > T::zero() {
                x
            } else {
                x.exp_m1()
            }
        }
        Activation::Silu => x * sigmoid(x),
        Activation::Gelu => T::of(0.5) * x * (T::one() + (x / T::of(std::f64::consts::SQRT_2)).erf()),
    }
}
