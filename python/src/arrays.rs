//! NumPy arrays in and out. Rows come in as `[n, D]` float32 or float64 arrays in any memory
//! order; they reach the engine without a copy when they are C-contiguous, aligned and already
//! in the engine's precision, and are copied (converted, reordered) otherwise.

use std::any::TypeId;
use std::sync::atomic::{AtomicU64, Ordering};

use numpy::ndarray::Array2;
use numpy::{Element, IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use realnvp::real::Real;

/// Input values copied (converted or reordered) instead of read in place, since the module
/// was loaded: `realnvp._realnvp.values_copied()`, for checking that a hot loop copies nothing.
pub static VALUES_COPIED: AtomicU64 = AtomicU64::new(0);

/// Calls `f` with the rows of `x` (`what`: its name in messages) as a row-major `[n, dim]`
/// slice of `T`, and n.
pub fn with_rows<T, R>(
    x: &Bound<'_, PyAny>,
    dim: usize,
    what: &str,
    f: impl FnOnce(&[T], usize) -> PyResult<R>,
) -> PyResult<R>
where
    T: Real + Element,
{
    let array = x.cast::<PyUntypedArray>().map_err(|_| {
        let kind = x.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
        PyTypeError::new_err(format!("{what} must be a NumPy array or a CPU torch tensor, got {kind}"))
    })?;
    let shape = array.shape();
    if shape.len() != 2 {
        return Err(PyValueError::new_err(format!(
            "{what} must be 2-D [n, D = {dim}], got shape {shape:?} (one row: x[None, :]; D = 1: x[:, None])"
        )));
    }
    if shape[1] != dim {
        return Err(crate::errors::to_py(realnvp::Error::Dimension { model: dim, input: shape[1] }));
    }
    let n = shape[0];
    if let Ok(a) = x.cast::<PyArray2<f32>>() {
        return typed::<f32, T, R>(a, n, f);
    }
    if let Ok(a) = x.cast::<PyArray2<f64>>() {
        return typed::<f64, T, R>(a, n, f);
    }
    Err(PyTypeError::new_err(format!(
        "{what} has dtype {}; realnvp reads float32 or float64 rows (convert with x.astype(numpy.float32))",
        array.dtype()
    )))
}

/// `f` over an `S` array's rows as `T`: borrowed when S is T and the array is C-contiguous and
/// aligned, else copied in row-major order.
fn typed<S, T, R>(a: &Bound<'_, PyArray2<S>>, n: usize, f: impl FnOnce(&[T], usize) -> PyResult<R>) -> PyResult<R>
where
    S: Real + Element,
    T: Real + Element,
{
    let aligned = (a.data() as usize) % std::mem::align_of::<S>() == 0;
    let ro = a.try_readonly().map_err(|e| PyValueError::new_err(format!("cannot read the array: {e}")))?;
    // as_slice alone also accepts Fortran-contiguous arrays, whose memory is column-major
    if TypeId::of::<S>() == TypeId::of::<T>() && aligned && ro.is_c_contiguous() {
        if let Ok(s) = ro.as_slice() {
            return f(bytemuck::cast_slice::<S, T>(s), n);
        }
    }
    let copy: Vec<T> = ro.as_array().iter().map(|&v| T::of(v.wide())).collect();
    VALUES_COPIED.fetch_add(copy.len() as u64, Ordering::Relaxed);
    f(&copy, n)
}

/// `[n, d]` rows into a NumPy array (no copy).
pub fn rows_out<'py, T: Element>(
    py: Python<'py>,
    values: Vec<T>,
    n: usize,
    d: usize,
) -> PyResult<Bound<'py, PyArray2<T>>> {
    let array = Array2::from_shape_vec((n, d), values).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(array.into_pyarray(py))
}

/// `[n]` values into a NumPy array (no copy).
pub fn values_out<T: Element>(py: Python<'_>, values: Vec<T>) -> Bound<'_, PyArray1<T>> {
    PyArray1::from_vec(py, values)
}
