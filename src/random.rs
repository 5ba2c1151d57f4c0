//! Random, non-trivial flows: `realnvp init` models with alternating masks, the seed's 4-D
//! demo flow, and mixed flows covering every layer kind for tests. Weights follow PyTorch's
//! Linear init, U(−1/√fan_in, 1/√fan_in); nothing is zero.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::model::{
    Activation, Base, Conditioner, Coupling, Direction, Flow, Layer, Layout, Linear, Mlp, OutputFn, ScaleFn,
    MAX_INIT_PARAMETERS, MAX_LAYERS,
};

/// Scale-function family chosen for `init` (parameters take their documented defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleKind {
    Exp,
    TanhExp,
    Sigmoid,
    SoftClampExp,
}

impl std::str::FromStr for ScaleKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Error::choose(
            "scale function",
            s,
            &[
                ("exp", ScaleKind::Exp),
                ("tanh-exp", ScaleKind::TanhExp),
                ("sigmoid", ScaleKind::Sigmoid),
                ("soft-clamp-exp", ScaleKind::SoftClampExp),
            ],
        )
    }
}

/// What `realnvp init` builds: `layers` couplings with alternating half masks
/// (layer 0: b = 1 on the first ⌈D/2⌉ features), `masked_st` conditioners with s and t MLPs
/// `[D, hidden…, D]`.
#[derive(Clone, Debug)]
pub struct InitSpec {
    pub dim: usize,
    pub layers: usize,
    pub hidden: Vec<usize>,
    pub activation: Activation,
    pub scale: ScaleKind,
    pub s_output: OutputFn,
    pub direction: Direction,
}

impl InitSpec {
    /// The seed's flow: D = 4, b = (1,1,0,0) then (0,0,1,1), s and t MLPs `[4,32,32,4]`, ReLU.
    pub fn seed4d(layers: usize) -> Self {
        InitSpec {
            dim: 4,
            layers,
            hidden: vec![32, 32],
            activation: Activation::Relu,
            scale: ScaleKind::Exp,
            s_output: OutputFn::Identity,
            direction: Direction::DataToLatent,
        }
    }
}

/// Names of the three reference models of the benchmarks.
pub const REFERENCE_MODELS: [&str; 3] = ["seed4d", "d16", "d64"];

/// A reference model by name, as `realnvp init` builds it (the seed given):
/// - `seed4d`: D = 4, 6 couplings, s and t MLPs `[4,32,32,4]`, ReLU (`init --dim 4 --layers 6
///   --hidden 32,32 --seed 2024`);
/// - `d16`: D = 16, 8 couplings, `[16,64,64,16]`, leaky ReLU 0.01, s output tanh (`init --dim 16
///   --layers 8 --hidden 64,64 --activation leaky_relu --s-output tanh --seed 16`);
/// - `d64`: D = 64, 8 couplings, `[64,256,256,64]`, ReLU (`init --dim 64 --layers 8 --hidden
///   256,256 --seed 64`).
pub fn reference_model(name: &str) -> Option<Flow> {
    let (spec, seed) = match name {
        "seed4d" => (InitSpec::seed4d(6), 2024),
        "d16" => (
            InitSpec {
                dim: 16,
                hidden: vec![64, 64],
                activation: Activation::LeakyRelu { negative_slope: 0.01 },
                s_output: OutputFn::Tanh,
                ..InitSpec::seed4d(8)
            },
            16,
        ),
        "d64" => (InitSpec { dim: 64, hidden: vec![256, 256], ..InitSpec::seed4d(8) }, 64),
        _ => return None,
    };
    init_flow(&spec, seed).ok()
}

/// Builds a random `init` model from `spec`, reproducibly from `seed`.
pub fn init_flow(spec: &InitSpec, seed: u64) -> Result<Flow> {
    if spec.dim < 2 {
        return Err(Error::Argument(format!(
            "a coupling flow needs dim ≥ 2 (one conditioning and one transformed feature), got {}",
            spec.dim
        )));
    }
    if spec.layers == 0 {
        return Err(Error::Argument("--layers must be at least 1".into()));
    }
    if spec.hidden.contains(&0) {
        return Err(Error::Argument("hidden widths must be positive".into()));
    }
    if spec.layers > MAX_LAYERS {
        return Err(Error::Argument(format!(
            "--layers {} is more than the {MAX_LAYERS} a model may have",
            spec.layers
        )));
    }
    // s and t nets of sizes D → hidden… → D, weights and biases, per layer; checked before
    // anything is allocated
    let sizes: Vec<u64> =
        std::iter::once(spec.dim).chain(spec.hidden.iter().copied()).chain([spec.dim]).map(|v| v as u64).collect();
    let per_net = sizes.windows(2).try_fold(0u64, |acc, w| w[0].checked_add(1)?.checked_mul(w[1])?.checked_add(acc));
    let total = per_net.and_then(|p| p.checked_mul(2)?.checked_mul(spec.layers as u64));
    match total {
        Some(p) if p <= MAX_INIT_PARAMETERS => {}
        _ => {
            return Err(Error::Argument(format!(
                "--dim {} --layers {} --hidden {:?} would have {} parameters; at most {MAX_INIT_PARAMETERS} (8 GiB as float32)",
                spec.dim,
                spec.layers,
                spec.hidden,
                total.map_or("more than 2⁶⁴".to_owned(), |p| p.to_string())
            )))
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = spec.dim;
    let half = d.div_ceil(2);
    let layers = (0..spec.layers)
        .map(|k| {
            let mask: Vec<bool> = (0..d).map(|i| (i < half) != (k % 2 == 1)).collect();
            let mut sizes = vec![d];
            sizes.extend(&spec.hidden);
            sizes.push(d);
            let s = random_mlp(&mut rng, &sizes, spec.activation, spec.s_output);
            let t = random_mlp(&mut rng, &sizes, spec.activation, OutputFn::Identity);
            let scale = default_scale(&mut rng, spec.scale, d);
            Layer::Coupling(Coupling {
                mask,
                direction: spec.direction,
                conditioner: Conditioner::MaskedSt { s, t },
                scale,
            })
        })
        .collect();
    let flow = Flow { features: None, dim: d, base: Base::StandardNormal, layers };
    flow.validate()?;
    Ok(flow)
}

fn default_scale(rng: &mut ChaCha8Rng, kind: ScaleKind, d: usize) -> ScaleFn {
    match kind {
        ScaleKind::Exp => ScaleFn::Exp,
        ScaleKind::TanhExp => ScaleFn::TanhExp { alpha: (0..d).map(|_| rng.random_range(0.5..1.5)).collect() },
        ScaleKind::Sigmoid => ScaleFn::Sigmoid { offset: 2.0, eps: 1e-3 },
        ScaleKind::SoftClampExp => ScaleFn::SoftClampExp { bound: 3.0 },
    }
}

/// A random MLP with the given sizes; weights and biases U(−1/√fan_in, 1/√fan_in), never zero.
pub fn random_mlp(rng: &mut ChaCha8Rng, sizes: &[usize], activation: Activation, output: OutputFn) -> Mlp {
    let linears = sizes
        .windows(2)
        .map(|w| {
            let bound = 1.0 / (w[0] as f64).sqrt();
            let mut draw = |n: usize| -> Vec<f64> { (0..n).map(|_| nonzero_uniform(rng, bound)).collect() };
            Linear { inputs: w[0], outputs: w[1], weight: draw(w[0] * w[1]), bias: draw(w[1]) }
        })
        .collect();
    Mlp { linears, activation, output, residual_blocks: 0 }
}

/// A random residual net (nflows' ResidualNet shape, see [`Mlp`]): `inputs → hidden`,
/// `blocks` residual blocks, `hidden → outputs`; weights as [`random_mlp`].
pub fn random_residual_net(
    rng: &mut ChaCha8Rng,
    inputs: usize,
    hidden: usize,
    outputs: usize,
    blocks: usize,
    activation: Activation,
    output: OutputFn,
) -> Mlp {
    let sizes = [vec![inputs], vec![hidden; 1 + 2 * blocks], vec![outputs]].concat();
    Mlp { residual_blocks: blocks, ..random_mlp(rng, &sizes, activation, output) }
}

fn nonzero_uniform(rng: &mut ChaCha8Rng, bound: f64) -> f64 {
    let magnitude = rng.random_range(0.05 * bound..bound);
    if rng.random_bool(0.5) {
        magnitude
    } else {
        -magnitude
    }
}

/// Every hidden activation the format knows, for tests that must cover them all.
pub const ALL_ACTIVATIONS: [Activation; 6] = [
    Activation::Relu,
    Activation::LeakyRelu { negative_slope: 0.1 },
    Activation::Tanh,
    Activation::Elu,
    Activation::Silu,
    Activation::Gelu,
];

/// A random flow mixing every layer kind: couplings with random masks, conditioners, layouts,
/// scale functions, directions, activations and output functions, plus elementwise affine and
/// permutation layers, and a random base. `depth` counts all layers. For D = 1 (no coupling
/// possible) only elementwise and permutation layers are drawn.
pub fn random_mixed_flow(dim: usize, depth: usize, max_hidden: usize, seed: u64) -> Flow {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let layers = (0..depth)
        .map(|k| {
            let kind = if dim < 2 { 1 + k % 2 } else { rng.random_range(0..5usize).saturating_sub(2) };
            match kind {
                0 => Layer::Coupling(random_coupling(&mut rng, dim, max_hidden)),
                1 => Layer::ElementwiseAffine {
                    direction: random_direction(&mut rng),
                    log_scale: (0..dim).map(|_| nonzero_uniform(&mut rng, 0.5)).collect(),
                    shift: (0..dim).map(|_| nonzero_uniform(&mut rng, 1.0)).collect(),
                },
                _ => Layer::Permutation { perm: random_permutation(&mut rng, dim) },
            }
        })
        .collect();
    let base = if rng.random_bool(0.5) {
        Base::StandardNormal
    } else {
        Base::DiagonalNormal {
            loc: (0..dim).map(|_| nonzero_uniform(&mut rng, 0.5)).collect(),
            log_scale: (0..dim).map(|_| nonzero_uniform(&mut rng, 0.3)).collect(),
        }
    };
    Flow { features: None, dim, base, layers }
}

/// A random coupling layer of dimension `dim` ≥ 2 with hidden widths up to `max_hidden`.
pub fn random_coupling(rng: &mut ChaCha8Rng, dim: usize, max_hidden: usize) -> Coupling {
    let mut mask: Vec<bool> = (0..dim).map(|_| rng.random_bool(0.5)).collect();
    let a = rng.random_range(0..dim);
    let b = (a + rng.random_range(1..dim)) % dim;
    mask[a] = true;
    mask[b] = false;
    let d_id = mask.iter().filter(|&&m| m).count();
    let d_tr = dim - d_id;
    let activation = ALL_ACTIVATIONS[rng.random_range(0..ALL_ACTIVATIONS.len())];
    let output = if rng.random_bool(0.5) { OutputFn::Identity } else { OutputFn::Tanh };
    let hidden: Vec<usize> = (0..rng.random_range(0..3usize)).map(|_| rng.random_range(1..=max_hidden)).collect();
    let sizes = |inputs: usize, outputs: usize| [vec![inputs], hidden.clone(), vec![outputs]].concat();
    let conditioner = if rng.random_bool(0.5) {
        Conditioner::MaskedSt {
            s: random_mlp(rng, &sizes(dim, dim), activation, output),
            t: random_mlp(rng, &sizes(dim, dim), activation, OutputFn::Identity),
        }
    } else {
        let layout = if rng.random_bool(0.5) { Layout::ShiftScale } else { Layout::Interleaved };
        let st = if rng.random_bool(0.5) {
            random_mlp(rng, &sizes(d_id, 2 * d_tr), activation, output)
        } else {
            let (blocks, width) = (rng.random_range(1..=2), rng.random_range(1..=max_hidden));
            random_residual_net(rng, d_id, width, 2 * d_tr, blocks, activation, output)
        };
        Conditioner::Shared { st, layout }
    };
    let scale = match rng.random_range(0..4) {
        0 => ScaleFn::Exp,
        1 => default_scale(rng, ScaleKind::TanhExp, dim),
        2 => ScaleFn::Sigmoid { offset: rng.random_range(1.0..3.0), eps: 1e-3 },
        _ => ScaleFn::SoftClampExp { bound: rng.random_range(1.0..4.0) },
    };
    Coupling { mask, direction: random_direction(rng), conditioner, scale }
}

fn random_direction(rng: &mut ChaCha8Rng) -> Direction {
    if rng.random_bool(0.5) {
        Direction::DataToLatent
    } else {
        Direction::LatentToData
    }
}

fn random_permutation(rng: &mut ChaCha8Rng, dim: usize) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..dim).collect();
    for i in (1..dim).rev() {
        perm.swap(i, rng.random_range(0..=i));
    }
    perm
}

/// Rows 0…n−1 of the base distribution's sample stream of `seed` (`[n, dim]`, float64):
/// the latents `realnvp sample --seed` maps to data (see [`crate::sample`]).
pub fn sample_base(base: &Base, dim: usize, n: usize, seed: u64) -> Vec<f64> {
    use rayon::prelude::*;
    let base = crate::sample::TemperedBase::new(base, dim, 1.0);
    let mut z = vec![0.0; n * dim];
    z.par_chunks_mut(dim.max(1)).enumerate().for_each(|(i, row)| {
        crate::sample::row_normals(seed, i as u64, row);
        base.to_latent(row);
    });
    z
}
