//! The float64 CPU reference: the ground truth every other engine is held to. Written for
//! clarity, one row at a time, parallel over rows with rayon.
//!
//! Rows are row-major `[n, D]` slices. A row that contains NaN or ±Inf yields NaN outputs for
//! that row only.

use rayon::prelude::*;

use crate::model::{
    Activation, Base, Conditioner, Coupling, Direction, Flow, Layer, Layout, Linear, Mlp, OutputFn, ScaleFn,
};

const LN_2PI: f64 = 1.837_877_066_409_345_5;

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
    let d = z.len() as f64;
    match base {
        Base::StandardNormal => -0.5 * z.iter().map(|v| v * v).sum::<f64>() - 0.5 * d * LN_2PI,
        Base::DiagonalNormal { loc, log_scale } => {
            let mut quad = 0.0;
            let mut log_scales = 0.0;
            for i in 0..z.len() {
                let r = (z[i] - loc[i]) / log_scale[i].exp();
                quad += r * r;
                log_scales += log_scale[i];
            }
            -0.5 * quad - log_scales - 0.5 * d * LN_2PI
        }
    }
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
    if x.iter().any(|v| !v.is_finite()) {
        z.fill(f64::NAN);
        return f64::NAN;
    }
    z.copy_from_slice(x);
    let mut logdet = 0.0;
    for layer in &flow.layers {
        logdet += layer_to_latent(layer, z);
    }
    logdet
}

/// Latent→data for one row; returns log|det ∂x/∂z|.
pub fn row_to_data(flow: &Flow, z: &[f64], x: &mut [f64]) -> f64 {
    if z.iter().any(|v| !v.is_finite()) {
        x.fill(f64::NAN);
        return f64::NAN;
    }
    x.copy_from_slice(z);
    let mut logdet = 0.0;
    for layer in flow.layers.iter().rev() {
        logdet += layer_to_data(layer, x);
    }
    logdet
}

/// Applies one layer data→latent in place; returns its log-det.
fn layer_to_latent(layer: &Layer, v: &mut [f64]) -> f64 {
    match layer {
        Layer::Coupling(c) => coupling(c, v, true),
        Layer::ElementwiseAffine { direction, log_scale, shift } => elementwise(*direction, log_scale, shift, v, true),
        Layer::Permutation { perm } => {
            let src = v.to_vec();
            for (j, &p) in perm.iter().enumerate() {
                v[j] = src[p];
            }
            0.0
        }
    }
}

/// Applies one layer latent→data in place; returns its log-det.
fn layer_to_data(layer: &Layer, v: &mut [f64]) -> f64 {
    match layer {
        Layer::Coupling(c) => coupling(c, v, false),
        Layer::ElementwiseAffine { direction, log_scale, shift } => elementwise(*direction, log_scale, shift, v, false),
        Layer::Permutation { perm } => {
            let src = v.to_vec();
            for (j, &p) in perm.iter().enumerate() {
                v[p] = src[j];
            }
            0.0
        }
    }
}

/// The stored map is `y = x·f + t`, log-det `+Σ log f`; its inverse `x = (y − t)/f`,
/// log-det `−Σ log f`. Which of the two is applied depends on the stored direction and on
/// whether we move towards the latent.
fn apply_affine(direction: Direction, to_latent: bool, v: f64, log_f: f64, f: f64, t: f64) -> (f64, f64) {
    let stored_map = (direction == Direction::DataToLatent) == to_latent;
    if stored_map {
        (v * f + t, log_f)
    } else {
        ((v - t) / f, -log_f)
    }
}

fn elementwise(direction: Direction, log_scale: &[f64], shift: &[f64], v: &mut [f64], to_latent: bool) -> f64 {
    let mut logdet = 0.0;
    for i in 0..v.len() {
        let (y, ld) = apply_affine(direction, to_latent, v[i], log_scale[i], log_scale[i].exp(), shift[i]);
        v[i] = y;
        logdet += ld;
    }
    logdet
}

fn coupling(c: &Coupling, v: &mut [f64], to_latent: bool) -> f64 {
    let transformed = c.transformed_features();
    let (u, t) = conditioner_outputs(c, v);
    let mut logdet = 0.0;
    for (k, &i) in transformed.iter().enumerate() {
        let (log_f, f) = scale_factor(&c.scale, u[k], i);
        let (y, ld) = apply_affine(c.direction, to_latent, v[i], log_f, f, t[k]);
        v[i] = y;
        logdet += ld;
    }
    logdet
}

/// Scale inputs u and shifts t for the transformed features (index order), computed from
/// the identity features of `v` only.
pub fn conditioner_outputs(c: &Coupling, v: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let transformed = c.transformed_features();
    match &c.conditioner {
        Conditioner::MaskedSt { s, t } => {
            let masked: Vec<f64> = v.iter().zip(&c.mask).map(|(&x, &b)| if b { x } else { 0.0 }).collect();
            let s_out = mlp_forward(s, &masked);
            let t_out = mlp_forward(t, &masked);
            (transformed.iter().map(|&i| s_out[i]).collect(), transformed.iter().map(|&i| t_out[i]).collect())
        }
        Conditioner::Shared { st, layout } => {
            let inputs: Vec<f64> = c.identity_features().iter().map(|&i| v[i]).collect();
            let out = mlp_forward(st, &inputs);
            let n = transformed.len();
            match layout {
                Layout::ShiftScale => (out[n..].to_vec(), out[..n].to_vec()),
                Layout::Interleaved => ((0..n).map(|k| out[2 * k + 1]).collect(), (0..n).map(|k| out[2 * k]).collect()),
            }
        }
    }
}

/// Returns (log f, f) for scale input `u` of feature `i`.
pub fn scale_factor(scale: &ScaleFn, u: f64, i: usize) -> (f64, f64) {
    match scale {
        ScaleFn::Exp => (u, u.exp()),
        ScaleFn::TanhExp { alpha } => {
            let lf = alpha[i] * u.tanh();
            (lf, lf.exp())
        }
        ScaleFn::Sigmoid { offset, eps } => {
            let f = sigmoid(u + offset) + eps;
            (f.ln(), f)
        }
        ScaleFn::SoftClampExp { bound } => {
            let lf = bound * (u / bound).tanh();
            (lf, lf.exp())
        }
    }
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Evaluates a conditioner net (plain MLP or residual net, see [`Mlp`]) on one input vector.
pub fn mlp_forward(mlp: &Mlp, input: &[f64]) -> Vec<f64> {
    let last = mlp.linears.len() - 1;
    let act = |v: Vec<f64>| -> Vec<f64> { v.into_iter().map(|x| activate(mlp.activation, x)).collect() };
    let mut h = input.to_vec();
    if mlp.residual_blocks == 0 {
        for l in &mlp.linears[..last] {
            h = act(linear(l, &h));
        }
    } else {
        h = linear(&mlp.linears[0], &h);
        for pair in mlp.linears[1..last].chunks_exact(2) {
            let inner = linear(&pair[1], &act(linear(&pair[0], &act(h.clone()))));
            h.iter_mut().zip(inner).for_each(|(a, b)| *a += b);
        }
    }
    let mut out = linear(&mlp.linears[last], &h);
    if mlp.output == OutputFn::Tanh {
        out.iter_mut().for_each(|v| *v = v.tanh());
    }
    out
}

/// `W x + b` for one vector.
fn linear(l: &Linear, x: &[f64]) -> Vec<f64> {
    let mut out = l.bias.clone();
    for (o, acc) in out.iter_mut().enumerate() {
        let row = &l.weight[o * l.inputs..(o + 1) * l.inputs];
        *acc += row.iter().zip(x).map(|(w, x)| w * x).sum::<f64>();
    }
    out
}

/// Hidden activation, float64.
pub fn activate(a: Activation, x: f64) -> f64 {
    match a {
        Activation::Relu => x.max(0.0),
        Activation::LeakyRelu { negative_slope } => {
            if x >= 0.0 {
                x
            } else {
                negative_slope * x
            }
        }
        Activation::Tanh => x.tanh(),
        Activation::Elu => {
            if x > 0.0 {
                x
            } else {
                x.exp_m1()
            }
        }
        Activation::Silu => x * sigmoid(x),
        Activation::Gelu => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
    }
}
