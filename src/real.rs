//! The two float types rows are held and computed in: `f32` and `f64`.
//!
//! [`Real`] is what the engine API ([`Batch`]), the `.npy` reader and writer,
//! and the reference's row functions are generic over. A float32 engine given `f32` rows
//! reads and writes them as they are; given `f64` rows it rounds on the way in and widens
//! exactly on the way out. The float64 reference widens `f32` rows exactly.

use crate::error::{Error, Result};

/// `f32` or `f64` (sealed: the engines handle exactly these two).
pub trait Real:
    num_traits::Float + std::iter::Sum + bytemuck::Pod + std::fmt::Debug + Send + Sync + sealed::Sealed + 'static
{
    /// Rounds a float64 value to this type (exact for `f64`).
    fn of(v: f64) -> Self;
    /// Widens exactly to float64.
    fn wide(self) -> f64;
    /// Converts from float32 (exact for both types).
    fn from_f32(v: f32) -> Self;
    /// Rounds to float32 (exact for `f32`).
    fn to_f32(self) -> f32;
    /// The error function.
    fn erf(self) -> Self;
    /// The rows themselves when they already are float32 (no copy), else `None`.
    fn as_f32(rows: &[Self]) -> Option<&[f32]>;
    /// Wraps an engine call's buffers in this type's [`Batch`] variant.
    fn batch(io: Io<'_, Self>) -> Batch<'_>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

impl Real for f64 {
    fn of(v: f64) -> Self {
        v
    }
    fn wide(self) -> f64 {
        self
    }
    fn from_f32(v: f32) -> Self {
        f64::from(v)
    }
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn erf(self) -> Self {
        libm::erf(self)
    }
    fn as_f32(_: &[Self]) -> Option<&[f32]> {
        None
    }
    fn batch(io: Io<'_, Self>) -> Batch<'_> {
        Batch::F64(io)
    }
}

impl Real for f32 {
    fn of(v: f64) -> Self {
        v as f32
    }
    fn wide(self) -> f64 {
        f64::from(self)
    }
    fn from_f32(v: f32) -> Self {
        v
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn erf(self) -> Self {
        libm::erff(self)
    }
    fn as_f32(rows: &[Self]) -> Option<&[f32]> {
        Some(rows)
    }
    fn batch(io: Io<'_, Self>) -> Batch<'_> {
        Batch::F32(io)
    }
}

/// The buffers of one engine call, in one precision `T`. `n` rows of dimension D.
pub struct Io<'a, T> {
    /// Input rows `[n, D]`: x for log p and data→latent, z for latent→data.
    pub input: &'a [T],
    /// Output rows `[n, D]`: z or x; empty for log p.
    pub rows: &'a mut [T],
    /// One value per row `[n]`: log p (nats), or the log-det of the pass's map (nats).
    pub per_row: &'a mut [T],
}

impl<T> Io<'_, T> {
    /// Checks the buffer lengths against D (`maps_rows`: the pass writes `[n, D]` output
    /// rows, see [`crate::engine::Pass::maps_rows`]); returns n.
    pub fn check(&self, maps_rows: bool, dim: usize) -> Result<usize> {
        let n = self.per_row.len();
        let need = |what: &str, found: usize, want: usize| {
            if found == want {
                Ok(())
            } else {
                Err(Error::Argument(format!("{what} holds {found} values but {n} rows of D = {dim} need {want}")))
            }
        };
        need("input", self.input.len(), n * dim)?;
        need("output", self.rows.len(), if maps_rows { n * dim } else { 0 })?;
        Ok(n)
    }
}

impl<T> Io<'_, T> {
    /// Checks the buffers of a sampling call (no input; `[n, D]` rows and `[n]` log q out);
    /// returns n.
    pub fn check_sample(&self, dim: usize) -> Result<usize> {
        let n = self.per_row.len();
        if !self.input.is_empty() || self.rows.len() != n * dim {
            return Err(Error::Argument(format!(
                "sampling takes no input and {n} output rows of D = {dim} ({} values), got {} input and {} output values",
                n * dim,
                self.input.len(),
                self.rows.len()
            )));
        }
        Ok(n)
    }
}

/// Runs `$body` with `$io` bound to the batch's [`Io`] in whichever precision it holds (the
/// body is compiled once per precision): `with_io!(batch, io => self.run_in(pass, io, sum))`.
#[macro_export]
macro_rules! with_io {
    ($batch:expr, $io:ident => $body:expr) => {
        match $batch {
            $crate::real::Batch::F32($io) => $body,
            $crate::real::Batch::F64($io) => $body,
        }
    };
}

/// One engine call's buffers in float32 or float64.
pub enum Batch<'a> {
    F32(Io<'a, f32>),
    F64(Io<'a, f64>),
}
