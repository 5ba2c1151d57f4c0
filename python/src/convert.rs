//! Models from state_dicts read out of live PyTorch modules. The Python layer
//! (python/realnvp/convert.py) walks the module tree, reads what a state_dict cannot say
//! (activations, output functions, split modes, scale maps, the architecture) from the modules
//! themselves, and hands the tensors and those options to the same converters as
//! `realnvp convert` ([`realnvp::convert`]): a live model and its saved state_dict with the
//! right flags become the same file.

use std::sync::Arc;

use numpy::{PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use realnvp::convert::{self, Keyless, NflowsOptions, NormflowsOptions, StateDict};
use realnvp::format::TensorDtype;
use realnvp::model::{Activation, OutputFn};
use realnvp::Error;

use crate::engine::Model;
use crate::errors::to_py;

/// A state_dict from (key, float64 array) pairs.
fn state_dict(tensors: Vec<(String, PyReadonlyArrayDyn<'_, f64>)>) -> PyResult<StateDict> {
    let tensors = tensors.into_iter().map(|(name, a)| {
        let shape = a.shape().to_vec();
        let values: Vec<f64> = a.as_array().iter().copied().collect();
        (name, shape, values)
    });
    StateDict::from_tensors(tensors.collect::<Vec<_>>()).map_err(to_py)
}

fn parse<T: std::str::FromStr<Err = Error>>(s: &str) -> PyResult<T> {
    s.parse().map_err(to_py)
}

/// A normflows `NormalizingFlow` from its state_dict and the options `realnvp convert --from
/// normflows` takes as flags (same names, same values).
#[pyfunction]
#[pyo3(signature = (tensors, activation, s_output, t_output, split_modes, scale_map, keyless, flows))]
#[allow(clippy::too_many_arguments)]
pub fn normflows_model(
    py: Python<'_>,
    tensors: Vec<(String, PyReadonlyArrayDyn<'_, f64>)>,
    activation: &str,
    s_output: &str,
    t_output: &str,
    split_modes: Vec<String>,
    scale_map: &str,
    keyless: Option<&str>,
    flows: Option<usize>,
) -> PyResult<Model> {
    let mut sd = state_dict(tensors)?;
    let options = NormflowsOptions {
        activation: parse::<Activation>(activation)?,
        s_output: parse::<OutputFn>(s_output)?,
        t_output: parse::<OutputFn>(t_output)?,
        split_modes: split_modes.iter().map(|s| parse(s)).collect::<PyResult<_>>()?,
        scale_map: parse(scale_map)?,
        keyless: keyless.map(parse::<Keyless>).transpose()?,
        flows,
    };
    let flow = py.detach(|| convert::from_normflows(&mut sd, &options)).map_err(to_py)?;
    Ok(Model { flow: Arc::new(flow), stored: TensorDtype::F64 })
}

/// An nflows `SimpleRealNVP` from its state_dict and its constructor arguments.
#[pyfunction]
#[pyo3(signature = (tensors, features, hidden, layers, blocks_per_layer, batch_norm_between, activation))]
#[allow(clippy::too_many_arguments)]
pub fn nflows_model(
    py: Python<'_>,
    tensors: Vec<(String, PyReadonlyArrayDyn<'_, f64>)>,
    features: usize,
    hidden: usize,
    layers: usize,
    blocks_per_layer: usize,
    batch_norm_between: bool,
    activation: &str,
) -> PyResult<Model> {
    let mut sd = state_dict(tensors)?;
    let options = NflowsOptions {
        arch: convert::NflowsArch::SimpleRealNvp,
        features,
        hidden,
        layers,
        blocks_per_layer,
        batch_norm_between,
        activation: parse::<Activation>(activation)?,
    };
    let flow = py.detach(|| convert::from_nflows(&mut sd, &options)).map_err(to_py)?;
    Ok(Model { flow: Arc::new(flow), stored: TensorDtype::F64 })
}
