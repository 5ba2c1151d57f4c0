//! Importers for flows trained with PyTorch libraries (`realnvp convert`): a `state_dict`
//! saved with safetensors becomes a [`Flow`] with layers in data→latent order.
//!
//! - **normflows** (`NormalizingFlow(q0, flows)`): `MaskedAffineFlow` with `nets.MLP` s and t,
//!   `AffineCouplingBlock` (+ `Split`/`Merge`), `ActNorm`/`AffineConstFlow`, `Permute`
//!   (shuffle from its buffers; swap has no tensors, see [`Keyless`]), base `DiagGaussian`.
//!   normflows' `forward` maps latent→data and `log_prob` runs `inverse` over the flows in
//!   reverse, so every layer is stored `latent_to_data` and the list is reversed.
//! - **nflows** `SimpleRealNVP`: `AffineCouplingTransform` with `ResidualNet` conditioners
//!   (shift first, then scale = σ(u + 2) + 1e-3), optional `BatchNorm` between layers in eval
//!   mode (an elementwise affine from its running statistics), `StandardNormal` base; nflows'
//!   transform already maps data→latent.
//!
//! What a state_dict cannot say (activations, output functions, split and scale modes,
//! parameter-free flows, the architecture) comes from the options. Every tensor must be used:
//! a missing, unknown or mis-shaped key is an error that names it, never a silently wrong model.

use std::collections::{BTreeMap, BTreeSet};

use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::model::{
    Activation, Base, Conditioner, Coupling, Direction, Flow, Layer, Layout, Linear, Mlp, OutputFn, ScaleFn, MAX_LAYERS,
};

/// The tensors of a `state_dict`, as float64 (integer buffers such as permutations are
/// converted exactly), with a record of which keys a converter used.
pub struct StateDict {
    tensors: BTreeMap<String, (Vec<usize>, Vec<f64>)>,
    used: BTreeSet<String>,
}

impl StateDict {
    /// Parses a safetensors file holding a state_dict (F64, F32, F16, BF16, I64, I32 or BOOL).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| {
            convert_error(format!(
                "not a safetensors file ({e}); export the state_dict with safetensors.torch.save_file (see README), not torch.save"
            ))
        })?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            let values = decode(&name, view.dtype(), view.data())?;
            tensors.insert(name, (view.shape().to_vec(), values));
        }
        Ok(StateDict { tensors, used: BTreeSet::new() })
    }

    /// A state_dict held in memory: (key, shape, values in row-major order) per tensor, e.g.
    /// read from a live PyTorch module. A shape whose size is not the number of values is an
    /// error naming the key.
    pub fn from_tensors(tensors: impl IntoIterator<Item = (String, Vec<usize>, Vec<f64>)>) -> Result<Self> {
        let mut map = BTreeMap::new();
        for (name, shape, values) in tensors {
            if shape.iter().product::<usize>() != values.len() {
                return Err(convert_error(format!("key {name} has shape {shape:?} but {} values", values.len())));
            }
            map.insert(name, (shape, values));
        }
        Ok(StateDict { tensors: map, used: BTreeSet::new() })
    }

    /// The values of `name` (marking it used); its shape must have `len` elements in total.
    fn take(&mut self, name: &str, len: usize) -> Result<Vec<f64>> {
        let (shape, values) = self.tensors.get(name).ok_or_else(|| convert_error(format!("missing key {name}")))?;
        if values.len() != len {
            return Err(convert_error(format!("key {name} has shape {shape:?}; expected {len} values")));
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(convert_error(format!(
                "key {name} holds {} at index {i}; a trained model's tensors are finite",
                values[i]
            )));
        }
        self.used.insert(name.to_owned());
        Ok(values.clone())
    }

    /// `[out, in]` of a 2-D weight.
    fn matrix_shape(&self, name: &str) -> Result<(usize, usize)> {
        match self.tensors.get(name) {
            Some((shape, _)) if shape.len() == 2 => Ok((shape[0], shape[1])),
            Some((shape, _)) => Err(convert_error(format!("key {name} has shape {shape:?}; expected [out, in]"))),
            None => Err(convert_error(format!("missing key {name}"))),
        }
    }

    fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Keys starting with `prefix`.
    fn keys_with(&self, prefix: &str) -> Vec<String> {
        self.tensors.keys().filter(|k| k.starts_with(prefix)).cloned().collect()
    }

    /// A Linear from `{prefix}.weight` [out, in] and `{prefix}.bias` [out].
    fn linear(&mut self, prefix: &str) -> Result<Linear> {
        let (outputs, inputs) = self.matrix_shape(&format!("{prefix}.weight"))?;
        Ok(Linear {
            inputs,
            outputs,
            weight: self.take(&format!("{prefix}.weight"), outputs * inputs)?,
            bias: self.take(&format!("{prefix}.bias"), outputs)?,
        })
    }

    /// Fails naming every key no converter step used.
    fn ensure_all_used(&self, hint: &str) -> Result<()> {
        let unknown: Vec<&String> = self.tensors.keys().filter(|k| !self.used.contains(*k)).collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(convert_error(format!("unknown or unsupported key(s) {unknown:?}{hint}")))
        }
    }
}

fn convert_error(msg: String) -> Error {
    Error::Model(format!("state_dict: {msg}"))
}

fn decode(name: &str, dtype: Dtype, data: &[u8]) -> Result<Vec<f64>> {
    let le = |b: &[u8]| -> [u8; 8] {
        let mut a = [0u8; 8];
        a[..b.len()].copy_from_slice(b);
        a
    };
    Ok(match dtype {
        Dtype::F64 => data.chunks_exact(8).map(|b| f64::from_le_bytes(le(b))).collect(),
        Dtype::F32 => data.chunks_exact(4).map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect(),
        Dtype::F16 => data.chunks_exact(2).map(|b| f16_to_f64(u16::from_le_bytes([b[0], b[1]]))).collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| f64::from(f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)))
            .collect(),
        Dtype::I64 => data.chunks_exact(8).map(|b| i64::from_le_bytes(le(b)) as f64).collect(),
        Dtype::I32 => data.chunks_exact(4).map(|b| f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect(),
        Dtype::BOOL => data.iter().map(|&b| f64::from(u8::from(b != 0))).collect(),
        other => {
            return Err(convert_error(format!("key {name} has dtype {other:?}, which this importer does not read")))
        }
    })
}

fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f64::from(h & 0x3ff);
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
    }
}

/// What normflows' parameter-free flows (which leave no key in a state_dict) are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keyless {
    /// `Permute(D, mode="swap")`.
    Swap,
}

impl std::str::FromStr for Keyless {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Error::choose("keyless flow", s, &[("swap", Keyless::Swap)])
    }
}

impl std::str::FromStr for SplitMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Error::choose(
            "split mode",
            s,
            &[
                ("channel", SplitMode::Channel),
                ("channel_inv", SplitMode::ChannelInv),
                ("checkerboard", SplitMode::Checkerboard),
                ("checkerboard_inv", SplitMode::CheckerboardInv),
            ],
        )
    }
}

impl std::str::FromStr for ScaleMap {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Error::choose("scale map", s, &[("exp", ScaleMap::Exp), ("sigmoid_inv", ScaleMap::SigmoidInv)])
    }
}

/// How `AffineCouplingBlock` splits the features (its `split_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitMode {
    /// z1 (conditioning) = the first ⌈D/2⌉ features.
    Channel,
    /// z1 = the last ⌊D/2⌋ features.
    ChannelInv,
    /// z1 = the odd-indexed features.
    Checkerboard,
    /// z1 = the even-indexed features.
    CheckerboardInv,
}

/// `AffineCouplingBlock`'s `scale_map`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleMap {
    /// latent→data `z2·e^u + shift`.
    Exp,
    /// latent→data `z2·σ(u + 2) + shift`.
    SigmoidInv,
}

/// Options for normflows models: what the state_dict cannot say.
#[derive(Clone, Debug)]
pub struct NormflowsOptions {
    /// Hidden activation of every `nets.MLP` (normflows' default `leaky=0.0` is ReLU).
    pub activation: Activation,
    /// `output_fn` of the s nets of `MaskedAffineFlow`.
    pub s_output: OutputFn,
    /// `output_fn` of the t nets (and, when equal to `s_output`, of `param_map` nets).
    pub t_output: OutputFn,
    /// Split modes of the `AffineCouplingBlock`s, used in turn (block k gets entry k mod len):
    /// one entry for models that use one mode, two for alternating modes.
    pub split_modes: Vec<SplitMode>,
    pub scale_map: ScaleMap,
    /// What flows without tensors are; None makes them an error.
    pub keyless: Option<Keyless>,
    /// Total number of flows, for models that end with a parameter-free flow.
    pub flows: Option<usize>,
}

impl Default for NormflowsOptions {
    fn default() -> Self {
        NormflowsOptions {
            activation: Activation::Relu,
            s_output: OutputFn::Identity,
            t_output: OutputFn::Identity,
            split_modes: vec![SplitMode::Channel],
            scale_map: ScaleMap::Exp,
            keyless: None,
            flows: None,
        }
    }
}

/// Converts a normflows `NormalizingFlow` state_dict.
pub fn from_normflows(sd: &mut StateDict, o: &NormflowsOptions) -> Result<Flow> {
    let (_, dim) = sd.matrix_shape("q0.loc").map_err(|_| {
        convert_error("missing key q0.loc: only a DiagGaussian base (q0.loc, q0.log_scale) is supported".into())
    })?;
    let base = Base::DiagonalNormal { loc: sd.take("q0.loc", dim)?, log_scale: sd.take("q0.log_scale", dim)? };
    let indices: BTreeSet<usize> = sd
        .keys_with("flows.")
        .iter()
        .filter_map(|k| k.strip_prefix("flows.")?.split('.').next()?.parse().ok())
        .collect();
    let seen = indices.last().map_or(0, |&i| i + 1);
    let count = match o.flows {
        Some(n) if n < seen => {
            return Err(convert_error(format!("--flows {n} but the state_dict has keys for flows.{}", seen - 1)))
        }
        Some(n) => n,
        None => seen,
    };
    if count > MAX_LAYERS {
        return Err(convert_error(format!("{count} flows is more than the {MAX_LAYERS} layers a model may have")));
    }
    if o.split_modes.is_empty() {
        return Err(Error::Argument("at least one split mode is needed".into()));
    }
    let mut layers = Vec::with_capacity(count);
    let mut blocks = 0;
    for i in 0..count {
        layers.push(normflows_layer(sd, i, dim, o, &mut blocks)?);
    }
    sd.ensure_all_used("")?;
    layers.reverse();
    let flow = Flow { features: None, dim, base, layers };
    flow.validate()?;
    Ok(flow)
}

/// Converts flow `i`; `blocks` counts the AffineCouplingBlocks seen so far (for split modes).
fn normflows_layer(
    sd: &mut StateDict,
    i: usize,
    dim: usize,
    o: &NormflowsOptions,
    blocks: &mut usize,
) -> Result<Layer> {
    let p = format!("flows.{i}");
    let keys = sd.keys_with(&format!("{p}."));
    if sd.has(&format!("{p}.b")) {
        let mask = sd.take(&format!("{p}.b"), dim)?;
        if let Some(bad) = mask.iter().find(|&&b| b != 0.0 && b != 1.0) {
            return Err(convert_error(format!("key {p}.b holds {bad}; a MaskedAffineFlow mask must be 0 or 1")));
        }
        if mask.iter().all(|&b| b == 1.0) || mask.iter().all(|&b| b == 0.0) {
            return Err(convert_error(format!(
                "key {p}.b is all {}; a MaskedAffineFlow mask needs at least one 1 (kept) and one 0 (transformed)",
                mask.first().copied().unwrap_or(0.0)
            )));
        }
        let s = nf_mlp(sd, &format!("{p}.s.net"), o.activation, o.s_output)?;
        let t = nf_mlp(sd, &format!("{p}.t.net"), o.activation, o.t_output)?;
        return Ok(Layer::Coupling(Coupling {
            mask: mask.iter().map(|&b| b == 1.0).collect(),
            direction: Direction::LatentToData,
            conditioner: Conditioner::MaskedSt { s, t },
            scale: ScaleFn::Exp,
        }));
    }
    let param_map = format!("{p}.flows.1.param_map.net");
    if !sd.keys_with(&format!("{param_map}.")).is_empty() {
        let split = o.split_modes[*blocks % o.split_modes.len()];
        *blocks += 1;
        return coupling_block(sd, &param_map, dim, split, o);
    }
    if sd.has(&format!("{p}.s")) && sd.has(&format!("{p}.t")) {
        if sd.has(&format!("{p}.data_dep_init_done")) && sd.take(&format!("{p}.data_dep_init_done"), 1)?[0] == 0.0 {
            return Err(convert_error(format!(
                "{p} is an ActNorm that was never initialised ({p}.data_dep_init_done = 0): run the model on data once before saving"
            )));
        }
        return Ok(Layer::ElementwiseAffine {
            direction: Direction::LatentToData,
            log_scale: sd.take(&format!("{p}.s"), dim)?,
            shift: sd.take(&format!("{p}.t"), dim)?,
        });
    }
    if sd.has(&format!("{p}.perm")) {
        let perm = sd.take(&format!("{p}.perm"), dim)?;
        let inv = sd.take(&format!("{p}.inv_perm"), dim)?;
        let as_index = |v: &[f64]| -> Vec<usize> {
            v.iter().map(|&x| if x >= 0.0 && x < dim as f64 { x as usize } else { dim }).collect()
        };
        let (perm, inv) = (as_index(&perm), as_index(&inv));
        if (0..dim).any(|j| perm.get(j).and_then(|&q| inv.get(q)) != Some(&j)) {
            return Err(convert_error(format!("{p}.perm and {p}.inv_perm are not inverse permutations of 0..{dim}")));
        }
        // normflows' inverse (data→latent) is z[:, inv_perm]: y_j = x_{inv_perm[j]}
        return Ok(Layer::Permutation { perm: inv });
    }
    if keys.is_empty() {
        return match o.keyless {
            // Permute(swap).inverse: y = cat(x[h:], x[:h]) with h = ⌈D/2⌉
            Some(Keyless::Swap) => Ok(Layer::Permutation { perm: (0..dim).map(|j| (j + dim.div_ceil(2)) % dim).collect() }),
            None => Err(convert_error(format!(
                "flows.{i} has no tensors: a parameter-free flow such as Permute(mode=\"swap\"); pass --keyless swap (and --flows N when the model ends with one)"
            ))),
        };
    }
    Err(convert_error(format!("flows.{i} is not a supported normflows flow (keys {keys:?})")))
}

fn coupling_block(
    sd: &mut StateDict,
    param_map: &str,
    dim: usize,
    split: SplitMode,
    o: &NormflowsOptions,
) -> Result<Layer> {
    let identity: Vec<bool> = (0..dim)
        .map(|j| match split {
            SplitMode::Channel => j < dim.div_ceil(2),
            SplitMode::ChannelInv => j >= dim.div_ceil(2),
            SplitMode::Checkerboard => j % 2 == 1,
            SplitMode::CheckerboardInv => j % 2 == 0,
        })
        .collect();
    if o.s_output != o.t_output {
        return Err(convert_error(format!(
            "{param_map} computes shift and scale with one output function; --s-output and --t-output must agree"
        )));
    }
    let st = nf_mlp(sd, param_map, o.activation, o.s_output)?;
    let d_id = identity.iter().filter(|&&b| b).count();
    if st.inputs() != d_id || st.outputs() != 2 * (dim - d_id) {
        return Err(convert_error(format!(
            "{param_map} maps {} → {} features, but split mode {:?} on D = {dim} needs {d_id} → {} (2 per transformed feature): check --split-mode",
            st.inputs(),
            st.outputs(),
            split,
            2 * (dim - d_id)
        )));
    }
    let scale = match o.scale_map {
        ScaleMap::Exp => ScaleFn::Exp,
        ScaleMap::SigmoidInv => ScaleFn::Sigmoid { offset: 2.0, eps: 0.0 },
    };
    Ok(Layer::Coupling(Coupling {
        mask: identity,
        direction: Direction::LatentToData,
        conditioner: Conditioner::Shared { st, layout: Layout::Interleaved },
        scale,
    }))
}

/// A `normflows.nets.MLP`: Linears at `{prefix}.{j}` (activations and output functions sit
/// between them and have no tensors).
fn nf_mlp(sd: &mut StateDict, prefix: &str, activation: Activation, output: OutputFn) -> Result<Mlp> {
    let mut js: Vec<usize> = sd
        .keys_with(&format!("{prefix}."))
        .iter()
        .filter_map(|k| k.strip_prefix(&format!("{prefix}."))?.strip_suffix(".weight")?.parse().ok())
        .collect();
    js.sort_unstable();
    if js.is_empty() {
        return Err(convert_error(format!("missing key {prefix}.0.weight (an nf.nets.MLP)")));
    }
    let mut linears: Vec<Linear> = Vec::with_capacity(js.len());
    for j in js {
        let l = sd.linear(&format!("{prefix}.{j}"))?;
        if let Some(prev) = linears.last() {
            if prev.outputs != l.inputs {
                return Err(convert_error(format!(
                    "key {prefix}.{j}.weight has {} inputs but the previous Linear has {} outputs",
                    l.inputs, prev.outputs
                )));
            }
        }
        linears.push(l);
    }
    Ok(Mlp { linears, activation, output, residual_blocks: 0 })
}

/// Which nflows architecture the state_dict holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NflowsArch {
    /// `nflows.flows.SimpleRealNVP`.
    SimpleRealNvp,
}

impl std::str::FromStr for NflowsArch {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Error::choose("nflows architecture", s, &[("simple-realnvp", NflowsArch::SimpleRealNvp)])
    }
}

/// Options for nflows models: the constructor arguments.
#[derive(Clone, Debug)]
pub struct NflowsOptions {
    pub arch: NflowsArch,
    pub features: usize,
    pub hidden: usize,
    pub layers: usize,
    pub blocks_per_layer: usize,
    pub batch_norm_between: bool,
    /// ResidualNet activation (nflows' default `F.relu`).
    pub activation: Activation,
}

/// `nflows.transforms.normalization.BatchNorm`'s eps (SimpleRealNVP uses the default).
const NFLOWS_BATCH_NORM_EPS: f64 = 1e-5;

/// Converts an nflows `SimpleRealNVP` state_dict.
pub fn from_nflows(sd: &mut StateDict, o: &NflowsOptions) -> Result<Flow> {
    let d = o.features;
    let has_batch_norm = sd.keys_with("_transform._transforms.").iter().any(|k| k.ends_with(".running_mean"));
    if has_batch_norm != o.batch_norm_between {
        return Err(convert_error(if has_batch_norm {
            "the state_dict has batch norm layers (_transform._transforms.1.running_mean): pass --batch-norm-between"
                .into()
        } else {
            "--batch-norm-between given, but the state_dict has no batch norm (no _transform._transforms.*.running_mean)".into()
        }));
    }
    let per_layer = if o.batch_norm_between { 2 } else { 1 };
    let mut layers = Vec::new();
    for l in 0..o.layers {
        let p = format!("_transform._transforms.{}", per_layer * l);
        layers.push(nflows_coupling(sd, &p, l, o)?);
        if o.batch_norm_between {
            layers.push(nflows_batch_norm(sd, &format!("_transform._transforms.{}", per_layer * l + 1), d)?);
        }
    }
    sd.ensure_all_used(" (check --layers and --blocks-per-layer)")?;
    let flow = Flow { features: None, dim: d, base: Base::StandardNormal, layers };
    flow.validate()?;
    Ok(flow)
}

fn nflows_coupling(sd: &mut StateDict, p: &str, l: usize, o: &NflowsOptions) -> Result<Layer> {
    let d = o.features;
    // SimpleRealNVP: mask[::2] = −1 (identity) in layer 0, flipped every layer
    let expected: Vec<bool> = (0..d).map(|j| (j % 2 == 0) == (l % 2 == 0)).collect();
    let d_id = expected.iter().filter(|&&b| b).count();
    let d_tr = d - d_id;
    let id = sd.take(&format!("{p}.identity_features"), d_id)?;
    let tr = sd.take(&format!("{p}.transform_features"), d_tr)?;
    let mut mask = vec![None; d];
    for (values, is_identity) in [(&id, true), (&tr, false)] {
        for &f in values.iter() {
            match mask.get_mut(f as usize) {
                Some(slot @ None) if f >= 0.0 => *slot = Some(is_identity),
                _ => {
                    return Err(convert_error(format!(
                        "{p}.identity_features / transform_features do not partition 0..{d}"
                    )))
                }
            }
        }
    }
    let mask: Vec<bool> = mask.into_iter().map(|m| m.unwrap_or(false)).collect();
    if mask != expected {
        return Err(convert_error(format!(
            "{p}.identity_features is {id:?}, not SimpleRealNVP's alternating mask for layer {l}"
        )));
    }
    let net = format!("{p}.transform_net");
    let mut linears = vec![nflows_linear(sd, &format!("{net}.initial_layer"), o.hidden, d_id)?];
    for b in 0..o.blocks_per_layer {
        for k in 0..2 {
            linears.push(nflows_linear(sd, &format!("{net}.blocks.{b}.linear_layers.{k}"), o.hidden, o.hidden)?);
        }
    }
    linears.push(nflows_linear(sd, &format!("{net}.final_layer"), 2 * d_tr, o.hidden)?);
    let st = Mlp { linears, activation: o.activation, output: OutputFn::Identity, residual_blocks: o.blocks_per_layer };
    Ok(Layer::Coupling(Coupling {
        mask,
        direction: Direction::DataToLatent,
        conditioner: Conditioner::Shared { st, layout: Layout::ShiftScale },
        scale: ScaleFn::Sigmoid { offset: 2.0, eps: 1e-3 },
    }))
}

/// A Linear whose shape the architecture options fix; a mismatch names the key.
fn nflows_linear(sd: &mut StateDict, prefix: &str, outputs: usize, inputs: usize) -> Result<Linear> {
    let key = format!("{prefix}.weight");
    let shape = sd.matrix_shape(&key)?;
    if shape != (outputs, inputs) {
        return Err(convert_error(format!(
            "key {key} has shape [{}, {}], but the options (--features, --hidden) give [{outputs}, {inputs}]",
            shape.0, shape.1
        )));
    }
    sd.linear(prefix)
}

/// nflows `BatchNorm` in eval mode: `y = w·(x − mean)/√(var + eps) + bias`, w = softplus(u) + eps.
fn nflows_batch_norm(sd: &mut StateDict, p: &str, d: usize) -> Result<Layer> {
    let eps = NFLOWS_BATCH_NORM_EPS;
    let u = sd.take(&format!("{p}.unconstrained_weight"), d)?;
    let bias = sd.take(&format!("{p}.bias"), d)?;
    let mean = sd.take(&format!("{p}.running_mean"), d)?;
    let var = sd.take(&format!("{p}.running_var"), d)?;
    // torch's softplus switches to the identity above 20
    let softplus = |x: f64| if x > 20.0 { x } else { x.exp().ln_1p() };
    let log_scale: Vec<f64> = (0..d).map(|i| (softplus(u[i]) + eps).ln() - 0.5 * (var[i] + eps).ln()).collect();
    let shift = (0..d).map(|i| bias[i] - mean[i] * log_scale[i].exp()).collect();
    Ok(Layer::ElementwiseAffine { direction: Direction::DataToLatent, log_scale, shift })
}

#[cfg(test)]
mod tests {
    use super::f16_to_f64;

    /// IEEE 754 binary16 known answers: normals, the extremes, subnormals, zeros, ±∞, NaN.
    #[test]
    fn float16_known_answers() {
        let cases: [(u16, f64); 12] = [
            (0x3C00, 1.0),
            (0xC000, -2.0),
            (0x3E00, 1.5),
            (0x3555, 0.333_251_953_125),
            (0x7BFF, 65504.0),
            (0x0400, 6.103_515_625e-5),
            (0x0001, 5.960_464_477_539_063e-8),
            (0x03FF, 6.097_555_160_522_461e-5),
            (0x0000, 0.0),
            (0x8001, -5.960_464_477_539_063e-8),
            (0x7C00, f64::INFINITY),
            (0xFC00, f64::NEG_INFINITY),
        ];
        for (bits, want) in cases {
            assert_eq!(f16_to_f64(bits), want, "{bits:#06x}");
        }
        assert!(f16_to_f64(0x8000) == 0.0 && f16_to_f64(0x8000).is_sign_negative());
        assert!(f16_to_f64(0x7E00).is_nan() && f16_to_f64(0xFE01).is_nan());
    }
}
