//! The crate's one error type.

use std::path::PathBuf;

/// Every failure the library reports. Messages name the file, layer, tensor or limit at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model description or its tensors are invalid (shape, value, missing or extra key).
    #[error("invalid model: {0}")]
    Model(String),
    /// A model file could not be parsed as safetensors (truncated, corrupt, hostile header).
    #[error("cannot read model file {path}: {reason}")]
    ModelFile { path: PathBuf, reason: String },
    /// A data file is not a usable `.npy` array (dtype, order, shape, truncation).
    #[error("cannot use data file {path}: {reason}")]
    Data { path: PathBuf, reason: String },
    /// Input rows whose width does not match the model dimension.
    #[error("dimension mismatch: the model has D = {model} but the input has {input} column{}", if *input == 1 { "" } else { "s" })]
    Dimension { model: usize, input: usize },
    /// The GPU could not be used: no adapter, device lost, shader compilation, a limit.
    #[error("GPU: {0}")]
    Gpu(String),
    /// A caller-supplied argument is out of range.
    #[error("invalid argument: {0}")]
    Argument(String),
    /// The caller asked a long run to stop (Ctrl-C in Python); no output was written.
    #[error("interrupted")]
    Interrupted,
    /// Underlying I/O failure, with the path involved. The cause is part of the message (and
    /// not also a `source()`, which `{:#}` would print a second time).
    #[error("I/O error on {path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Parses one of a fixed set of names (`what`: e.g. "scale function"), naming the
    /// choices when `s` is none of them.
    pub(crate) fn choose<T: Copy>(what: &str, s: &str, choices: &[(&str, T)]) -> Result<T> {
        match choices.iter().find(|(name, _)| *name == s) {
            Some(&(_, value)) => Ok(value),
            None => {
                let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
                Err(Error::Argument(format!("unknown {what} {s:?}; use {}", names.join(", "))))
            }
        }
    }

    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Error::Io { path: path.into(), cause }
    }
}
