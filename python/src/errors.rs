//! The library's errors as Python exceptions, with the Rust message.

use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PyRuntimeError, PyValueError};
use pyo3::PyErr;
use realnvp::Error;

/// `ValueError` for bad models, data, shapes and arguments; `OSError` for files that cannot be
/// read or written; `RuntimeError` for the GPU; `KeyboardInterrupt` for Ctrl-C.
pub fn to_py(e: Error) -> PyErr {
    let message = e.to_string();
    match e {
        Error::Io { .. } => PyOSError::new_err(message),
        Error::Gpu(_) => PyRuntimeError::new_err(message),
        Error::Interrupted => PyKeyboardInterrupt::new_err(message),
        Error::Model(_)
        | Error::ModelFile { .. }
        | Error::Data { .. }
        | Error::Dimension { .. }
        | Error::Argument(_) => PyValueError::new_err(message),
    }
}
