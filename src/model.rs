//! The in-memory description of a Real NVP flow: base distribution, layers in data→latent
//! order, and their parameters (float64 on the host). Validation and FLOP counting live here;
//! the file format is in [`crate::format`].

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A normalizing flow of dimension `dim`. Layer 0 is applied first to a data row x; the last
/// layer yields the latent z. `log p(x) = log base(z) + Σ_layers log|det J_layer|`.
#[derive(Clone, Debug, PartialEq)]
pub struct Flow {
    /// Dimension D of data and latent rows (D ≥ 1).
    pub dim: usize,
    /// Distribution of the latent z.
    pub base: Base,
    /// Layers in data→latent order.
    pub layers: Vec<Layer>,
    /// Names of the D data features, in order, when the model records them (`init`/`convert
    /// --features`): Parquet input reads these columns unless `--columns` says otherwise, and
    /// data-space Parquet outputs (`inverse`, `sample`) name their columns by them (else
    /// `x0…`).
    pub features: Option<Vec<String>>,
}

/// The latent (base) distribution.
#[derive(Clone, Debug, PartialEq)]
pub enum Base {
    /// N(0, I).
    StandardNormal,
    /// N(loc, diag(exp(log_scale))²); both vectors have length D.
    DiagonalNormal { loc: Vec<f64>, log_scale: Vec<f64> },
}

/// One invertible layer.
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    /// Affine coupling layer.
    Coupling(Coupling),
    /// Per-feature affine map (ActNorm, frozen batch norm): `y = x·exp(log_scale) + shift`
    /// in the stored `direction`.
    ElementwiseAffine { direction: Direction, log_scale: Vec<f64>, shift: Vec<f64> },
    /// Data→latent permutation: `y[j] = x[perm[j]]`.
    Permutation { perm: Vec<usize> },
}

/// Which way the stored affine map goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The stored map is data→latent: `y = x·f + t`, log-det `+Σ log f` (the seed's c).
    DataToLatent,
    /// The stored map is latent→data (normflows): data→latent is `y = (x − t)/f`,
    /// log-det `−Σ log f`.
    LatentToData,
}

/// An affine coupling layer. Features with `mask[i]` = true (b = 1) pass unchanged and
/// condition the transform of the others.
#[derive(Clone, Debug, PartialEq)]
pub struct Coupling {
    /// b: true = identity/conditioning feature, false = transformed feature. Length D.
    pub mask: Vec<bool>,
    /// Direction of the stored affine map.
    pub direction: Direction,
    /// How scale inputs u and shifts t are computed from the identity features.
    pub conditioner: Conditioner,
    /// The positive factor f = scale_fn(u).
    pub scale: ScaleFn,
}

/// Computes per transformed feature a scale input u_i and a shift t_i.
#[derive(Clone, Debug, PartialEq)]
pub enum Conditioner {
    /// Two MLPs R^D→R^D on the masked full vector b⊙x: u_i = s(b⊙x)_i, t_i = t(b⊙x)_i.
    MaskedSt { s: Mlp, t: Mlp },
    /// One MLP from the identity features (index order) to 2·d_tr outputs for the transformed
    /// features (index order), arranged by `layout`.
    Shared { st: Mlp, layout: Layout },
}

/// Arrangement of a shared conditioner's 2·d_tr outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Outputs `[0, d_tr)` are shifts, `[d_tr, 2·d_tr)` scale inputs.
    ShiftScale,
    /// Output 2k is the shift, 2k+1 the scale input of transformed feature k.
    Interleaved,
}

/// The map from scale input u to factor f > 0.
#[derive(Clone, Debug, PartialEq)]
pub enum ScaleFn {
    /// f = e^u.
    Exp,
    /// f = exp(α_i·tanh u); `alpha` has length D (identity entries unused).
    TanhExp { alpha: Vec<f64> },
    /// f = σ(u + offset) + eps.
    Sigmoid { offset: f64, eps: f64 },
    /// f = exp(c·tanh(u/c)) with bound c > 0.
    SoftClampExp { bound: f64 },
}

/// A conditioner network in PyTorch layout: a plain MLP, or a residual net.
///
/// Plain (`residual_blocks == 0`): `h ← act(L_k(h))` for every Linear but the last, then
/// `out = output(L_last(h))`.
///
/// Residual (`residual_blocks = B > 0`, nflows' `ResidualNet`): `linears` are
/// `[initial, block_0.0, block_0.1, …, block_{B−1}.1, final]` (2 + 2B Linears, all hidden
/// widths equal); `h = L_initial(x)`; per block `h ← h + L_b1(act(L_b0(act(h))))`;
/// `out = output(L_final(h))`.
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    /// Linear layers in order; `linears[k]` maps `sizes[k]` → `sizes[k+1]`.
    pub linears: Vec<Linear>,
    /// Hidden activation.
    pub activation: Activation,
    /// Function applied to the last Linear's output.
    pub output: OutputFn,
    /// Number of residual blocks; 0 for a plain MLP.
    pub residual_blocks: usize,
}

/// `y = W x + b` with `weight` row-major `[out, in]` and `bias` `[out]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    pub inputs: usize,
    pub outputs: usize,
    /// Row-major [outputs, inputs].
    pub weight: Vec<f64>,
    /// Length `outputs`.
    pub bias: Vec<f64>,
}

/// Hidden-layer activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Relu,
    LeakyRelu {
        negative_slope: f64,
    },
    Tanh,
    /// ELU with α = 1.
    Elu,
    Silu,
    /// Exact GELU, x·Φ(x) with the erf form (PyTorch's default).
    Gelu,
}

/// Function applied to an MLP's final output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputFn {
    Identity,
    Tanh,
}

/// Default slope of `leaky_relu` when the file gives none (PyTorch's default).
pub const DEFAULT_NEGATIVE_SLOPE: f64 = 0.01;

/// Most layers a model may have: builders (`init`, `convert`) check it before they allocate
/// anything per layer.
pub const MAX_LAYERS: usize = 1 << 20;

/// Most parameters `init` builds (2³¹: 8 GiB as float32).
pub const MAX_INIT_PARAMETERS: u64 = 1 << 31;

impl std::str::FromStr for Activation {
    type Err = Error;

    /// `relu`, `leaky_relu` (slope [`DEFAULT_NEGATIVE_SLOPE`]), `leaky_relu:SLOPE`, `tanh`,
    /// `elu`, `silu`, `gelu`.
    fn from_str(s: &str) -> Result<Self> {
        if let Some(slope) = s.strip_prefix("leaky_relu:") {
            return match slope.parse::<f64>() {
                Ok(slope) if slope.is_finite() => Ok(Activation::LeakyRelu { negative_slope: slope }),
                _ => Err(Error::Argument(format!("leaky_relu slope {slope:?} is not a finite number"))),
            };
        }
        Ok(match s {
            "relu" => Activation::Relu,
            "leaky_relu" => Activation::LeakyRelu { negative_slope: DEFAULT_NEGATIVE_SLOPE },
            "tanh" => Activation::Tanh,
            "elu" => Activation::Elu,
            "silu" => Activation::Silu,
            "gelu" => Activation::Gelu,
            _ => {
                return Err(Error::Argument(format!(
                    "unknown activation {s:?}; use relu, leaky_relu[:SLOPE], tanh, elu, silu or gelu"
                )))
            }
        })
    }
}

impl std::str::FromStr for OutputFn {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Error::choose("output function", s, &[("identity", OutputFn::Identity), ("tanh", OutputFn::Tanh)])
    }
}

impl Mlp {
    /// Sizes `[in, h1, …, out]`.
    pub fn sizes(&self) -> Vec<usize> {
        let mut sizes = vec![self.linears.first().map_or(0, |l| l.inputs)];
        sizes.extend(self.linears.iter().map(|l| l.outputs));
        sizes
    }

    /// Input width.
    pub fn inputs(&self) -> usize {
        self.linears.first().map_or(0, |l| l.inputs)
    }

    /// Output width.
    pub fn outputs(&self) -> usize {
        self.linears.last().map_or(0, |l| l.outputs)
    }

    /// Number of weights and biases.
    pub fn parameter_count(&self) -> usize {
        self.linears.iter().map(|l| l.weight.len() + l.bias.len()).sum()
    }

    /// Matrix FLOPs for one row (2 per multiply-add) when only `used_inputs` inputs are
    /// non-zero and only `used_outputs` outputs are needed (mask pruning). Biases and
    /// activations are not counted.
    pub fn flops(&self, used_inputs: usize, used_outputs: usize) -> u64 {
        let last = self.linears.len() - 1;
        let mut total = 0u64;
        for (k, l) in self.linears.iter().enumerate() {
            let inputs = if k == 0 { used_inputs } else { l.inputs };
            let outputs = if k == last { used_outputs } else { l.outputs };
            total += (2 * inputs * outputs) as u64;
        }
        total
    }
}

impl Coupling {
    /// Indices with b = 1, ascending.
    pub fn identity_features(&self) -> Vec<usize> {
        (0..self.mask.len()).filter(|&i| self.mask[i]).collect()
    }

    /// Indices with b = 0, ascending.
    pub fn transformed_features(&self) -> Vec<usize> {
        (0..self.mask.len()).filter(|&i| !self.mask[i]).collect()
    }
}

/// A coupling's conditioner with masked-out products removed, as both fast engines evaluate
/// it: every net reads only the identity features (ascending index order) and writes only
/// the outputs that are used, into one normalised region `[shifts (d_tr), scale inputs (d_tr)]`
/// for the transformed features (ascending index order), whatever the conditioner and layout.
#[derive(Clone, Debug, PartialEq)]
pub struct PrunedConditioner {
    /// Identity (b = 1) feature indices, ascending: the nets' inputs.
    pub identity: Vec<usize>,
    /// Transformed (b = 0) feature indices, ascending.
    pub transformed: Vec<usize>,
    /// The nets; their outputs tile the normalised region.
    pub nets: Vec<PrunedNet>,
}

/// One conditioner MLP after pruning: the first Linear has only the identity-feature input
/// columns, the last only the used output rows, in the order they are written.
#[derive(Clone, Debug, PartialEq)]
pub struct PrunedNet {
    /// Pruned Linear layers (same activation and output function as the original MLP).
    pub linears: Vec<Linear>,
    /// Hidden activation.
    pub activation: Activation,
    /// Output function of the last Linear.
    pub output: OutputFn,
    /// Where output 0 goes in the normalised region `[shifts, scale inputs]`.
    pub region_offset: usize,
    /// Residual blocks (see [`Mlp`]); 0 for a plain MLP.
    pub residual_blocks: usize,
}

/// A scratch vector (one value per hidden unit) that the fast engines evaluate nets in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// The gathered identity features (the net's input).
    Input,
    /// Hidden scratch A, B and C.
    A,
    B,
    C,
    /// The conditioner's normalised output region (at the net's offset).
    Output,
}

/// What follows a Linear's matrix product and bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Post {
    /// Nothing.
    None,
    /// The hidden activation.
    Activation,
    /// The net's output function.
    Output,
}

/// One Linear of a net as the fast engines run it:
/// `dst (+)= post(W · pre(src) + b)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearStep {
    /// Index into [`PrunedNet::linears`].
    pub linear: usize,
    pub src: Slot,
    pub dst: Slot,
    /// Apply the hidden activation to `src` first (into slot C, which then is the source).
    pub pre_activation: bool,
    pub post: Post,
    /// Add to `dst` instead of overwriting it (the residual connection; post is None).
    pub accumulate: bool,
}

impl PrunedNet {
    /// The order of Linear evaluations and the scratch slots they use; shared by the native
    /// and GPU engines so that both run plain and residual nets the same way.
    pub fn schedule(&self) -> Vec<LinearStep> {
        let n = self.linears.len();
        let step = |linear, src, dst, pre_activation, post, accumulate| LinearStep {
            linear,
            src,
            dst,
            pre_activation,
            post,
            accumulate,
        };
        if self.residual_blocks == 0 {
            let hidden = |k: usize| if k % 2 == 0 { Slot::A } else { Slot::B };
            return (0..n)
                .map(|k| {
                    let src = if k == 0 { Slot::Input } else { hidden(k - 1) };
                    if k + 1 == n {
                        step(k, src, Slot::Output, false, Post::Output, false)
                    } else {
                        step(k, src, hidden(k), false, Post::Activation, false)
                    }
                })
                .collect();
        }
        let mut steps = vec![step(0, Slot::Input, Slot::A, false, Post::None, false)];
        for b in 0..self.residual_blocks {
            steps.push(step(1 + 2 * b, Slot::A, Slot::B, true, Post::Activation, false));
            steps.push(step(2 + 2 * b, Slot::B, Slot::A, false, Post::None, true));
        }
        steps.push(step(n - 1, Slot::A, Slot::Output, false, Post::Output, false));
        steps
    }
}

impl Coupling {
    /// The mask-pruned conditioner (see [`PrunedConditioner`]).
    pub fn pruned_conditioner(&self) -> PrunedConditioner {
        let identity = self.identity_features();
        let transformed = self.transformed_features();
        let d_tr = transformed.len();
        let all = |n: usize| (0..n).collect::<Vec<_>>();
        let nets = match &self.conditioner {
            Conditioner::MaskedSt { s, t } => {
                vec![PrunedNet::new(t, &identity, &transformed, 0), PrunedNet::new(s, &identity, &transformed, d_tr)]
            }
            Conditioner::Shared { st, layout } => {
                let rows = match layout {
                    Layout::ShiftScale => all(2 * d_tr),
                    Layout::Interleaved => (0..d_tr).map(|k| 2 * k).chain((0..d_tr).map(|k| 2 * k + 1)).collect(),
                };
                vec![PrunedNet::new(st, &all(identity.len()), &rows, 0)]
            }
        };
        PrunedConditioner { identity, transformed, nets }
    }
}

impl PrunedNet {
    /// Keeps input columns `cols` of the first Linear and output rows `rows` of the last.
    fn new(mlp: &Mlp, cols: &[usize], rows: &[usize], region_offset: usize) -> Self {
        let last = mlp.linears.len() - 1;
        let linears = mlp
            .linears
            .iter()
            .enumerate()
            .map(|(k, l)| {
                let c: Vec<usize> = if k == 0 { cols.to_vec() } else { (0..l.inputs).collect() };
                let r: Vec<usize> = if k == last { rows.to_vec() } else { (0..l.outputs).collect() };
                Linear {
                    inputs: c.len(),
                    outputs: r.len(),
                    weight: r.iter().flat_map(|&o| c.iter().map(move |&i| l.weight[o * l.inputs + i])).collect(),
                    bias: r.iter().map(|&o| l.bias[o]).collect(),
                }
            })
            .collect();
        PrunedNet {
            linears,
            activation: mlp.activation,
            output: mlp.output,
            region_offset,
            residual_blocks: mlp.residual_blocks,
        }
    }
}

impl Layer {
    /// Short kind name as in the file format.
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Coupling(_) => "coupling",
            Layer::ElementwiseAffine { .. } => "elementwise_affine",
            Layer::Permutation { .. } => "permutation",
        }
    }

    /// Trainable parameters held by this layer.
    pub fn parameter_count(&self) -> usize {
        match self {
            Layer::Coupling(c) => {
                let nets = match &c.conditioner {
                    Conditioner::MaskedSt { s, t } => s.parameter_count() + t.parameter_count(),
                    Conditioner::Shared { st, .. } => st.parameter_count(),
                };
                let alpha = match &c.scale {
                    ScaleFn::TanhExp { alpha } => alpha.len(),
                    _ => 0,
                };
                nets + alpha
            }
            Layer::ElementwiseAffine { log_scale, shift, .. } => log_scale.len() + shift.len(),
            Layer::Permutation { .. } => 0,
        }
    }

    /// Matrix FLOPs per row for the data→latent pass, with masked-out products pruned
    /// (the conventional count: elementwise work is not counted).
    pub fn flops_per_row(&self) -> u64 {
        match self {
            Layer::Coupling(c) => {
                let d_id = c.identity_features().len();
                let d_tr = c.transformed_features().len();
                match &c.conditioner {
                    Conditioner::MaskedSt { s, t } => s.flops(d_id, d_tr) + t.flops(d_id, d_tr),
                    Conditioner::Shared { st, .. } => st.flops(d_id, 2 * d_tr),
                }
            }
            Layer::ElementwiseAffine { .. } | Layer::Permutation { .. } => 0,
        }
    }
}

impl Flow {
    /// Total trainable parameters (including a diagonal base's loc and log_scale).
    pub fn parameter_count(&self) -> usize {
        let base = match &self.base {
            Base::StandardNormal => 0,
            Base::DiagonalNormal { loc, log_scale } => loc.len() + log_scale.len(),
        };
        base + self.layers.iter().map(Layer::parameter_count).sum::<usize>()
    }

    /// Mask-pruned matrix FLOPs per row of log p(x), summed over layers.
    pub fn flops_per_row(&self) -> u64 {
        self.layers.iter().map(Layer::flops_per_row).sum::<u64>()
    }

    /// Checks every structural and numerical invariant; errors name the layer and tensor.
    pub fn validate(&self) -> Result<()> {
        if self.dim == 0 {
            return Err(Error::Model("dim must be at least 1".into()));
        }
        if let Base::DiagonalNormal { loc, log_scale } = &self.base {
            check_tensor("base.loc", loc, self.dim)?;
            check_tensor("base.log_scale", log_scale, self.dim)?;
        }
        for (i, layer) in self.layers.iter().enumerate() {
            self.validate_layer(i, layer)?;
        }
        if let Some(names) = &self.features {
            check_feature_names(names, self.dim)?;
        }
        Ok(())
    }

    fn validate_layer(&self, i: usize, layer: &Layer) -> Result<()> {
        let d = self.dim;
        match layer {
            Layer::Coupling(c) => validate_coupling(i, c, d),
            Layer::ElementwiseAffine { log_scale, shift, .. } => {
                check_tensor(&format!("layers.{i}.log_scale"), log_scale, d)?;
                check_tensor(&format!("layers.{i}.shift"), shift, d)
            }
            Layer::Permutation { perm } => {
                // the length first: `d` comes from the file and must not size an allocation
                let ok = perm.len() == d && {
                    let mut seen = vec![false; d];
                    perm.iter().all(|&p| p < d && !std::mem::replace(&mut seen[p], true))
                };
                if ok {
                    Ok(())
                } else {
                    Err(Error::Model(format!("layer {i} (permutation): perm {perm:?} is not a permutation of 0..{d}")))
                }
            }
        }
    }
}

/// Feature names: D of them, each non-empty and different from the others.
pub fn check_feature_names(names: &[String], dim: usize) -> Result<()> {
    if names.len() != dim {
        return Err(Error::Model(format!("{} feature names {names:?} for D = {dim}", names.len())));
    }
    for (i, name) in names.iter().enumerate() {
        if name.trim().is_empty() {
            return Err(Error::Model(format!("feature name {i} is empty")));
        }
        if names[..i].contains(name) {
            return Err(Error::Model(format!("feature name {name:?} appears twice")));
        }
    }
    Ok(())
}

fn validate_coupling(i: usize, c: &Coupling, d: usize) -> Result<()> {
    if c.mask.len() != d {
        return Err(Error::Model(format!("layer {i} (coupling): mask has length {} but dim is {d}", c.mask.len())));
    }
    let d_id = c.mask.iter().filter(|&&b| b).count();
    let d_tr = d - d_id;
    if d_id == 0 || d_tr == 0 {
        return Err(Error::Model(format!(
            "layer {i} (coupling): mask needs at least one 1 (identity) and one 0 (transformed) entry"
        )));
    }
    let nets: Vec<(&str, &Mlp, usize, usize)> = match &c.conditioner {
        Conditioner::MaskedSt { s, t } => vec![("s", s, d, d), ("t", t, d, d)],
        Conditioner::Shared { st, .. } => vec![("st", st, d_id, 2 * d_tr)],
    };
    for (name, mlp, inputs, outputs) in nets {
        validate_mlp(&format!("layers.{i}.{name}"), mlp, inputs, outputs)?;
    }
    match &c.scale {
        ScaleFn::Exp => Ok(()),
        ScaleFn::TanhExp { alpha } => check_tensor(&format!("layers.{i}.alpha"), alpha, d),
        ScaleFn::Sigmoid { offset, eps } => {
            if offset.is_finite() && eps.is_finite() && *eps >= 0.0 {
                Ok(())
            } else {
                Err(Error::Model(format!(
                    "layer {i} (coupling): sigmoid scale needs finite offset and eps ≥ 0, got {offset}, {eps}"
                )))
            }
        }
        ScaleFn::SoftClampExp { bound } => {
            if bound.is_finite() && *bound > 0.0 {
                Ok(())
            } else {
                Err(Error::Model(format!(
                    "layer {i} (coupling): soft_clamp_exp bound must be finite and > 0, got {bound}"
                )))
            }
        }
    }
}

fn validate_mlp(name: &str, mlp: &Mlp, inputs: usize, outputs: usize) -> Result<()> {
    if mlp.linears.is_empty() {
        return Err(Error::Model(format!("{name}: an MLP needs at least one Linear")));
    }
    if mlp.inputs() != inputs || mlp.outputs() != outputs {
        return Err(Error::Model(format!(
            "{name}: sizes {:?} must start at {inputs} and end at {outputs}",
            mlp.sizes()
        )));
    }
    if let Activation::LeakyRelu { negative_slope } = mlp.activation {
        if !negative_slope.is_finite() {
            return Err(Error::Model(format!("{name}: negative_slope must be finite")));
        }
    }
    if mlp.residual_blocks > 0 {
        let sizes = mlp.sizes();
        let hidden = &sizes[1..sizes.len() - 1];
        if mlp.linears.len() != 2 + 2 * mlp.residual_blocks || hidden.iter().any(|&h| h != hidden[0]) {
            return Err(Error::Model(format!(
                "{name}: a residual net with {} blocks needs 2 + 2·{} Linears of one hidden width, found sizes {sizes:?}",
                mlp.residual_blocks, mlp.residual_blocks
            )));
        }
    }
    for (k, pair) in mlp.linears.windows(2).enumerate() {
        if pair[0].outputs != pair[1].inputs {
            return Err(Error::Model(format!(
                "{name}: Linear {k} has {} outputs but Linear {} has {} inputs",
                pair[0].outputs,
                k + 1,
                pair[1].inputs
            )));
        }
    }
    for (k, l) in mlp.linears.iter().enumerate() {
        check_tensor(&format!("{name}.{k}.weight"), &l.weight, l.inputs * l.outputs)?;
        check_tensor(&format!("{name}.{k}.bias"), &l.bias, l.outputs)?;
    }
    Ok(())
}

fn check_tensor(name: &str, v: &[f64], len: usize) -> Result<()> {
    if v.len() != len {
        return Err(Error::Model(format!("{name}: expected {len} values, found {}", v.len())));
    }
    if let Some(k) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::Model(format!("{name}: non-finite value {} at flat index {k}", v[k])));
    }
    Ok(())
}
