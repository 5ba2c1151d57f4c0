//! The model file format (docs/FORMAT.md): one `.safetensors` file whose
//! `__metadata__["realnvp"]` holds the JSON config and whose F32/F64 tensors hold the
//! parameters. Reading validates everything and never trusts sizes it has not checked
//! against the bytes actually present.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{
    Activation, Base, Conditioner, Coupling, Direction, Flow, Layer, Layout, Linear, Mlp, OutputFn, ScaleFn,
};

/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The `__metadata__` key that holds the JSON config.
pub const METADATA_KEY: &str = "realnvp";

/// Floating-point type of the tensors written by [`save_flow`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorDtype {
    F32,
    F64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    version: u32,
    dim: usize,
    /// The data features' names (optional; see [`Flow::features`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    features: Option<Vec<String>>,
    base: BaseKind,
    layers: Vec<LayerConfig>,
}

#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum BaseKind {
    StandardNormal,
    DiagonalNormal,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum LayerConfig {
    Coupling {
        mask: Vec<u8>,
        direction: Direction,
        conditioner: ConditionerKind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        layout: Option<Layout>,
        #[serde(default)]
        scale: ScaleConfig,
        nets: BTreeMap<String, NetConfig>,
    },
    ElementwiseAffine {
        direction: Direction,
    },
    Permutation {
        perm: Vec<usize>,
    },
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
enum ConditionerKind {
    MaskedSt,
    Shared,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(tag = "fn", rename_all = "snake_case", deny_unknown_fields)]
enum ScaleConfig {
    #[default]
    Exp,
    TanhExp,
    Sigmoid {
        #[serde(default = "default_sigmoid_offset")]
        offset: f64,
        #[serde(default = "default_sigmoid_eps")]
        eps: f64,
    },
    SoftClampExp {
        bound: f64,
    },
}

fn default_sigmoid_offset() -> f64 {
    2.0
}

fn default_sigmoid_eps() -> f64 {
    1e-3
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetConfig {
    sizes: Vec<usize>,
    activation: ActivationName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    negative_slope: Option<f64>,
    #[serde(default = "default_output")]
    output: OutputFn,
    /// Residual blocks (nflows' ResidualNet); absent or 0 for a plain MLP.
    #[serde(default, skip_serializing_if = "is_zero")]
    residual_blocks: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn default_output() -> OutputFn {
    OutputFn::Identity
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
enum ActivationName {
    Relu,
    LeakyRelu,
    Tanh,
    Elu,
    Silu,
    Gelu,
}

/// Parses and validates a model from the bytes of a `.safetensors` file.
pub fn flow_from_bytes(bytes: &[u8]) -> Result<Flow> {
    flow_and_dtype_from_bytes(bytes).map(|(flow, _)| flow)
}

/// [`flow_from_bytes`], and the precision its parameters were stored in: float64 if any
/// tensor is, else float32 (a flow without tensors: float64), so that a model loaded and saved
/// again keeps its file's precision.
pub fn flow_and_dtype_from_bytes(bytes: &[u8]) -> Result<(Flow, TensorDtype)> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Model(format!("not a valid safetensors file: {e}")))?;
    let (_, metadata) =
        SafeTensors::read_metadata(bytes).map_err(|e| Error::Model(format!("not a valid safetensors file: {e}")))?;
    let json = metadata
        .metadata()
        .as_ref()
        .and_then(|m| m.get(METADATA_KEY))
        .ok_or_else(|| Error::Model(format!("__metadata__ has no \"{METADATA_KEY}\" key")))?;
    let config: Config = serde_json::from_str(json)
        .map_err(|e| Error::Model(format!("config JSON in __metadata__[\"{METADATA_KEY}\"]: {e}")))?;
    let mut tensors = TensorStore::new(&st);
    let flow = build_flow(&config, &mut tensors)?;
    flow.validate()?;
    tensors.ensure_all_used()?;
    let all_f32 = !st.is_empty() && st.tensors().iter().all(|(_, view)| view.dtype() == Dtype::F32);
    Ok((flow, if all_f32 { TensorDtype::F32 } else { TensorDtype::F64 }))
}

fn build_flow(config: &Config, tensors: &mut TensorStore) -> Result<Flow> {
    if config.version != FORMAT_VERSION {
        return Err(Error::Model(format!(
            "format version {} is not supported (this build reads version {FORMAT_VERSION})",
            config.version
        )));
    }
    let d = config.dim;
    if d == 0 {
        return Err(Error::Model("dim must be at least 1".into()));
    }
    let base = match config.base {
        BaseKind::StandardNormal => Base::StandardNormal,
        BaseKind::DiagonalNormal => Base::DiagonalNormal {
            loc: tensors.take("base.loc", &[d])?,
            log_scale: tensors.take("base.log_scale", &[d])?,
        },
    };
    let layers =
        config.layers.iter().enumerate().map(|(i, l)| build_layer(i, l, d, tensors)).collect::<Result<Vec<_>>>()?;
    Ok(Flow { features: config.features.clone(), dim: d, base, layers })
}

fn build_layer(i: usize, config: &LayerConfig, d: usize, tensors: &mut TensorStore) -> Result<Layer> {
    match config {
        LayerConfig::Coupling { mask, direction, conditioner, layout, scale, nets } => {
            let mask = parse_mask(i, mask, d)?;
            let conditioner = build_conditioner(i, *conditioner, *layout, nets, tensors)?;
            let scale = match scale {
                ScaleConfig::Exp => ScaleFn::Exp,
                ScaleConfig::TanhExp => ScaleFn::TanhExp { alpha: tensors.take(&format!("layers.{i}.alpha"), &[d])? },
                ScaleConfig::Sigmoid { offset, eps } => ScaleFn::Sigmoid { offset: *offset, eps: *eps },
                ScaleConfig::SoftClampExp { bound } => ScaleFn::SoftClampExp { bound: *bound },
            };
            Ok(Layer::Coupling(Coupling { mask, direction: *direction, conditioner, scale }))
        }
        LayerConfig::ElementwiseAffine { direction } => Ok(Layer::ElementwiseAffine {
            direction: *direction,
            log_scale: tensors.take(&format!("layers.{i}.log_scale"), &[d])?,
            shift: tensors.take(&format!("layers.{i}.shift"), &[d])?,
        }),
        LayerConfig::Permutation { perm } => Ok(Layer::Permutation { perm: perm.clone() }),
    }
}

fn parse_mask(i: usize, mask: &[u8], d: usize) -> Result<Vec<bool>> {
    if mask.len() != d {
        return Err(Error::Model(format!("layer {i} (coupling): mask has length {} but dim is {d}", mask.len())));
    }
    mask.iter()
        .map(|&b| match b {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(Error::Model(format!("layer {i} (coupling): mask entry {other} is not 0 or 1"))),
        })
        .collect()
}

fn build_conditioner(
    i: usize,
    kind: ConditionerKind,
    layout: Option<Layout>,
    nets: &BTreeMap<String, NetConfig>,
    tensors: &mut TensorStore,
) -> Result<Conditioner> {
    let expected: &[&str] = match kind {
        ConditionerKind::MaskedSt => &["s", "t"],
        ConditionerKind::Shared => &["st"],
    };
    let names: Vec<&str> = nets.keys().map(String::as_str).collect();
    if names != expected {
        return Err(Error::Model(format!(
            "layer {i} (coupling): conditioner needs nets {expected:?}, found {names:?}"
        )));
    }
    let mut mlp = |name: &str| build_mlp(&format!("layers.{i}.{name}"), &nets[name], tensors);
    match (kind, layout) {
        (ConditionerKind::MaskedSt, None) => Ok(Conditioner::MaskedSt { s: mlp("s")?, t: mlp("t")? }),
        (ConditionerKind::MaskedSt, Some(_)) => {
            Err(Error::Model(format!("layer {i} (coupling): \"layout\" applies only to the shared conditioner")))
        }
        (ConditionerKind::Shared, Some(layout)) => Ok(Conditioner::Shared { st: mlp("st")?, layout }),
        (ConditionerKind::Shared, None) => Err(Error::Model(format!(
            "layer {i} (coupling): the shared conditioner needs \"layout\": \"shift_scale\" or \"interleaved\""
        ))),
    }
}

fn build_mlp(prefix: &str, net: &NetConfig, tensors: &mut TensorStore) -> Result<Mlp> {
    if net.sizes.len() < 2 {
        return Err(Error::Model(format!("{prefix}: sizes {:?} need at least [in, out]", net.sizes)));
    }
    if net.negative_slope.is_some() && net.activation != ActivationName::LeakyRelu {
        return Err(Error::Model(format!("{prefix}: negative_slope is only valid with leaky_relu")));
    }
    let activation = match net.activation {
        ActivationName::Relu => Activation::Relu,
        ActivationName::LeakyRelu => {
            Activation::LeakyRelu { negative_slope: net.negative_slope.unwrap_or(crate::model::DEFAULT_NEGATIVE_SLOPE) }
        }
        ActivationName::Tanh => Activation::Tanh,
        ActivationName::Elu => Activation::Elu,
        ActivationName::Silu => Activation::Silu,
        ActivationName::Gelu => Activation::Gelu,
    };
    let linears = net
        .sizes
        .windows(2)
        .enumerate()
        .map(|(k, w)| {
            Ok(Linear {
                inputs: w[0],
                outputs: w[1],
                weight: tensors.take(&format!("{prefix}.{k}.weight"), &[w[1], w[0]])?,
                bias: tensors.take(&format!("{prefix}.{k}.bias"), &[w[1]])?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Mlp { linears, activation, output: net.output, residual_blocks: net.residual_blocks })
}

/// Hands out the file's tensors by name, checking dtype and shape, and remembers which were
/// used so that unexpected ones are reported.
struct TensorStore<'a> {
    st: &'a SafeTensors<'a>,
    used: BTreeSet<String>,
}

impl<'a> TensorStore<'a> {
    fn new(st: &'a SafeTensors<'a>) -> Self {
        TensorStore { st, used: BTreeSet::new() }
    }

    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f64>> {
        let view = self
            .st
            .tensor(name)
            .map_err(|_| Error::Model(format!("missing tensor {name} (expected shape {shape:?})")))?;
        if view.shape() != shape {
            return Err(Error::Model(format!("tensor {name} has shape {:?}, expected {shape:?}", view.shape())));
        }
        self.used.insert(name.to_owned());
        let data = view.data();
        let values: Vec<f64> = match view.dtype() {
            Dtype::F32 => {
                data.chunks_exact(4).map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect()
            }
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .collect(),
            other => {
                return Err(Error::Model(format!("tensor {name} has dtype {other:?}; only F32 and F64 are supported")))
            }
        };
        if let Some(k) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::Model(format!("tensor {name} has a non-finite value {} at flat index {k}", values[k])));
        }
        Ok(values)
    }

    fn ensure_all_used(&self) -> Result<()> {
        let unexpected: Vec<&str> = self.st.names().into_iter().filter(|n| !self.used.contains(*n)).collect();
        if unexpected.is_empty() {
            Ok(())
        } else {
            Err(Error::Model(format!("unexpected tensors not described by the config: {unexpected:?}")))
        }
    }
}

/// Serializes a flow to the bytes of a `.safetensors` file (validates it first).
pub fn flow_to_bytes(flow: &Flow, dtype: TensorDtype) -> Result<Vec<u8>> {
    flow.validate()?;
    let mut tensors: BTreeMap<String, (Vec<usize>, &[f64])> = BTreeMap::new();
    let config = describe_flow(flow, &mut tensors);
    let json = serde_json::to_string(&config).map_err(|e| Error::Model(format!("config: {e}")))?;
    let encoded: Vec<(String, Vec<usize>, Vec<u8>)> =
        tensors.into_iter().map(|(name, (shape, values))| (name, shape, encode(values, dtype))).collect();
    let st_dtype = match dtype {
        TensorDtype::F32 => Dtype::F32,
        TensorDtype::F64 => Dtype::F64,
    };
    let views = encoded
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(st_dtype, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Model(format!("tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = HashMap::from([(METADATA_KEY.to_owned(), json)]);
    safetensors::serialize(views, Some(metadata)).map_err(|e| Error::Model(format!("serialize: {e}")))
}

impl Flow {
    /// Reads and validates a model file.
    pub fn load(path: impl AsRef<Path>) -> Result<Flow> {
        Flow::load_with_dtype(path).map(|(flow, _)| flow)
    }

    /// [`Flow::load`], and the precision of the file's parameters
    /// ([`flow_and_dtype_from_bytes`]): what a save of the same model keeps.
    pub fn load_with_dtype(path: impl AsRef<Path>) -> Result<(Flow, TensorDtype)> {
        let path = path.as_ref();
        let bytes = read_regular_file(path)?;
        flow_and_dtype_from_bytes(&bytes).map_err(|e| match e {
            Error::Model(reason) => Error::ModelFile { path: path.to_owned(), reason },
            other => other,
        })
    }

    /// Writes a flow atomically (temporary file in the same folder, then rename).
    pub fn save(&self, path: impl AsRef<Path>, dtype: TensorDtype) -> Result<()> {
        crate::output::write_atomically(path.as_ref(), &flow_to_bytes(self, dtype)?)
    }
}

/// The bytes of a model or state_dict file. Only regular files are read (a device such as
/// `/dev/zero` or a FIFO would be read without bound), and never more than the size the file
/// had when opened.
pub fn read_regular_file(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    // stat before opening: opening a FIFO blocks until someone writes to it
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err(Error::ModelFile {
            path: path.to_owned(),
            reason: "not a regular file (a directory, device or pipe); give a .safetensors file".into(),
        });
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(meta.len() as usize).map_err(|e| Error::io(path, std::io::Error::other(e)))?;
    file.take(meta.len()).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    Ok(bytes)
}

fn encode(values: &[f64], dtype: TensorDtype) -> Vec<u8> {
    match dtype {
        TensorDtype::F32 => values.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect(),
        TensorDtype::F64 => values.iter().flat_map(|&v| v.to_le_bytes()).collect(),
    }
}

type TensorMap<'a> = BTreeMap<String, (Vec<usize>, &'a [f64])>;

fn describe_flow<'a>(flow: &'a Flow, tensors: &mut TensorMap<'a>) -> Config {
    let d = flow.dim;
    let base = match &flow.base {
        Base::StandardNormal => BaseKind::StandardNormal,
        Base::DiagonalNormal { loc, log_scale } => {
            tensors.insert("base.loc".into(), (vec![d], loc));
            tensors.insert("base.log_scale".into(), (vec![d], log_scale));
            BaseKind::DiagonalNormal
        }
    };
    let layers = flow.layers.iter().enumerate().map(|(i, l)| describe_layer(i, l, d, tensors)).collect();
    Config { version: FORMAT_VERSION, dim: d, features: flow.features.clone(), base, layers }
}

fn describe_layer<'a>(i: usize, layer: &'a Layer, d: usize, tensors: &mut TensorMap<'a>) -> LayerConfig {
    match layer {
        Layer::Coupling(c) => {
            let (kind, layout, nets) = match &c.conditioner {
                Conditioner::MaskedSt { s, t } => (ConditionerKind::MaskedSt, None, vec![("s", s), ("t", t)]),
                Conditioner::Shared { st, layout } => (ConditionerKind::Shared, Some(*layout), vec![("st", st)]),
            };
            let nets = nets
                .into_iter()
                .map(|(name, mlp)| (name.to_owned(), describe_mlp(&format!("layers.{i}.{name}"), mlp, tensors)))
                .collect();
            let scale = match &c.scale {
                ScaleFn::Exp => ScaleConfig::Exp,
                ScaleFn::TanhExp { alpha } => {
                    tensors.insert(format!("layers.{i}.alpha"), (vec![d], alpha));
                    ScaleConfig::TanhExp
                }
                ScaleFn::Sigmoid { offset, eps } => ScaleConfig::Sigmoid { offset: *offset, eps: *eps },
                ScaleFn::SoftClampExp { bound } => ScaleConfig::SoftClampExp { bound: *bound },
            };
            LayerConfig::Coupling {
                mask: c.mask.iter().map(|&b| u8::from(b)).collect(),
                direction: c.direction,
                conditioner: kind,
                layout,
                scale,
                nets,
            }
        }
        Layer::ElementwiseAffine { direction, log_scale, shift } => {
            tensors.insert(format!("layers.{i}.log_scale"), (vec![d], log_scale));
            tensors.insert(format!("layers.{i}.shift"), (vec![d], shift));
            LayerConfig::ElementwiseAffine { direction: *direction }
        }
        Layer::Permutation { perm } => LayerConfig::Permutation { perm: perm.clone() },
    }
}

fn describe_mlp<'a>(prefix: &str, mlp: &'a Mlp, tensors: &mut TensorMap<'a>) -> NetConfig {
    for (k, l) in mlp.linears.iter().enumerate() {
        tensors.insert(format!("{prefix}.{k}.weight"), (vec![l.outputs, l.inputs], &l.weight));
        tensors.insert(format!("{prefix}.{k}.bias"), (vec![l.outputs], &l.bias));
    }
    let (activation, negative_slope) = match mlp.activation {
        Activation::Relu => (ActivationName::Relu, None),
        Activation::LeakyRelu { negative_slope } => (ActivationName::LeakyRelu, Some(negative_slope)),
        Activation::Tanh => (ActivationName::Tanh, None),
        Activation::Elu => (ActivationName::Elu, None),
        Activation::Silu => (ActivationName::Silu, None),
        Activation::Gelu => (ActivationName::Gelu, None),
    };
    NetConfig {
        sizes: mlp.sizes(),
        activation,
        negative_slope,
        output: mlp.output,
        residual_blocks: mlp.residual_blocks,
    }
}
