//! `realnvp._realnvp`: the Rust side of the Python package (python/realnvp/ is the thin Python
//! layer around it: torch tensors, argument defaults, docstrings).
//!
//! - [`engine`]: `Engine`, one flow on one device; every pass releases the GIL and checks for
//!   Ctrl-C between chunks of rows.
//! - [`arrays`]: NumPy arrays in (float32/float64, any order, without a copy when C-contiguous
//!   and already in the engine's precision) and out.
//! - [`convert`]: state_dicts read from live normflows / nflows modules.
//! - [`errors`]: the library's errors as `ValueError`, `OSError`, `RuntimeError`.

mod arrays;
mod convert;
mod engine;
mod errors;

use pyo3::prelude::*;

/// The GPU adapters wgpu finds, as `realnvp devices` prints them (index, backend, type,
/// driver, limits), one string each.
#[pyfunction]
fn devices(py: Python<'_>) -> Vec<String> {
    py.detach(|| {
        let adapters = realnvp::gpu::adapters(&realnvp::gpu::instance());
        adapters.iter().enumerate().map(|(i, a)| realnvp::gpu::describe_adapter(i, a)).collect()
    })
}

/// Input values copied (converted to the engine's precision or reordered to C order) instead
/// of read in place, since the module was loaded.
#[pyfunction]
fn values_copied() -> u64 {
    arrays::VALUES_COPIED.load(std::sync::atomic::Ordering::Relaxed)
}

#[pymodule]
fn _realnvp(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<engine::Model>()?;
    m.add_class::<engine::Engine>()?;
    m.add_function(wrap_pyfunction!(engine::open, m)?)?;
    m.add_function(wrap_pyfunction!(convert::normflows_model, m)?)?;
    m.add_function(wrap_pyfunction!(convert::nflows_model, m)?)?;
    m.add_function(wrap_pyfunction!(devices, m)?)?;
    m.add_function(wrap_pyfunction!(values_copied, m)?)?;
    m.add("FLOAT32_TOLERANCE", realnvp::verify::FLOAT32_TOLERANCE)?;
    Ok(())
}
