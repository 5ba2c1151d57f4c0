//! `Model` (a flow description: loaded, converted, saved) and `Engine` (that flow on one
//! device). Every pass runs in chunks of rows with the GIL released; between chunks the
//! calling thread takes the GIL back for a moment to run Python's signal handlers, so Ctrl-C
//! stops a long call within one chunk (at most about a tenth of a second of work).

use std::path::PathBuf;
use std::sync::Arc;

use numpy::Element;
use pyo3::prelude::*;
use realnvp::device::open_engine;
use realnvp::engine::{LogLikelihoodSum, Pass};
use realnvp::format::TensorDtype;
use realnvp::gpu::{GpuOptions, KernelForm};
use realnvp::model::{Base, Flow};
use realnvp::pipeline::{self, StreamOptions};
use realnvp::real::{Io, Real};
use realnvp::sample::Draw;
use realnvp::{Device, Error};
use serde::Serialize;

use crate::arrays::{rows_out, values_out, with_rows};
use crate::errors::to_py;

/// A flow: its dimension, base and layers in data→latent order.
#[pyclass(frozen, module = "realnvp._realnvp")]
pub struct Model {
    pub flow: Arc<Flow>,
    /// The precision `save` writes unless told: the loaded file's (float64 for a converted model).
    pub stored: TensorDtype,
}

/// What `Flow.info` reports about a model.
#[derive(Serialize)]
struct ModelInfo<'a> {
    dim: usize,
    base: &'static str,
    layers: Vec<&'static str>,
    parameters: usize,
    flops_per_row: u64,
    gpu_kernel: &'a str,
    /// The data features' names, when the model records them.
    features: Option<&'a [String]>,
}

#[pymethods]
impl Model {
    /// Reads a `.safetensors` model file (docs/FORMAT.md).
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Model> {
        let (flow, stored) = py.detach(|| Flow::load_with_dtype(&path)).map_err(to_py)?;
        Ok(Model { flow: Arc::new(flow), stored })
    }

    /// Writes the model atomically; parameters as float32 if `float32`, float64 if false, and
    /// in the precision the model was loaded in if None (float64 for a converted model).
    #[pyo3(signature = (path, float32 = None))]
    fn save(&self, py: Python<'_>, path: PathBuf, float32: Option<bool>) -> PyResult<()> {
        let dtype = match float32 {
            Some(true) => TensorDtype::F32,
            Some(false) => TensorDtype::F64,
            None => self.stored,
        };
        py.detach(|| self.flow.save(&path, dtype)).map_err(to_py)
    }

    /// D.
    #[getter]
    fn dim(&self) -> usize {
        self.flow.dim
    }

    /// `Flow.info` as JSON: dim, base, layer kinds (data→latent), parameters, FLOPs per row
    /// of log p, the GPU kernel form `kernel="auto"` picks, and the feature names (or null).
    fn info_json(&self) -> PyResult<String> {
        let flow = &self.flow;
        let info = ModelInfo {
            dim: flow.dim,
            base: match flow.base {
                Base::StandardNormal => "standard_normal",
                Base::DiagonalNormal { .. } => "diagonal_normal",
            },
            layers: flow.layers.iter().map(|l| l.kind()).collect(),
            parameters: flow.parameter_count(),
            flops_per_row: flow.flops_per_row(),
            gpu_kernel: if KernelForm::Auto.tiered(flow) { "tiered" } else { KernelForm::Auto.resolve(flow).name() },
            features: flow.features.as_deref(),
        };
        json(&info)
    }
}

/// One flow on one device.
#[pyclass(frozen, module = "realnvp._realnvp")]
pub struct Engine {
    engine: Box<dyn realnvp::Engine>,
    model: Py<Model>,
    /// The rayon pool of `threads=N`; `None`: the global pool (one thread per core).
    pool: Option<rayon::ThreadPool>,
    /// The float64 reference (`device="cpu"`) computes and returns float64; every other
    /// engine float32.
    wide: bool,
    /// Rows per GIL-free chunk.
    chunk_rows: usize,
}

/// Opens `model` on `device` (`auto`, `cpu`, `native`, `gpu`, `gpu:N`, `all`) with the GPU
/// kernel form `kernel` and, for the CPU engines, `threads` threads (default: one per core).
#[pyfunction]
#[pyo3(signature = (model, device = "auto", kernel = "auto", threads = None))]
pub fn open(py: Python<'_>, model: Py<Model>, device: &str, kernel: &str, threads: Option<usize>) -> PyResult<Engine> {
    let device: Device = device.parse().map_err(to_py)?;
    let kernel: KernelForm = kernel.parse().map_err(to_py)?;
    let pool = match threads {
        None => None,
        Some(0) => return Err(to_py(Error::Argument("threads must be at least 1 (None: one per core)".into()))),
        Some(n) => Some(
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .map_err(|e| to_py(Error::Argument(format!("cannot start {n} threads: {e}"))))?,
        ),
    };
    let flow = model.get().flow.clone();
    let options = GpuOptions { chunk_rows: 0, kernel, ..GpuOptions::default() };
    let engine = py.detach(|| open_engine(flow, &device, &options)).map_err(to_py)?;
    let wide = device == Device::Cpu;
    let chunk_rows = interruptible_chunk_rows(engine.as_ref(), wide);
    Ok(Engine { engine, model, pool, wide, chunk_rows })
}

/// Rows per chunk: about 10⁹ FLOPs for the float32 engines (≈ 5 ms native, ≈ 0.2 s on
/// lavapipe) and 10⁸ for the float64 reference, at most the CLI's chunk, a multiple of the
/// engine's row alignment.
fn interruptible_chunk_rows(engine: &dyn realnvp::Engine, wide: bool) -> usize {
    let flow = engine.flow();
    let budget = if wide { 1e8 } else { 1e9 };
    let by_flops = (budget / flow.flops_per_row().max(1) as f64) as usize;
    let by_bytes = pipeline::DEFAULT_CHUNK_BYTES / (8 * flow.dim.max(1));
    let align = engine.row_alignment().max(1);
    by_flops.min(by_bytes).max(1).div_ceil(align) * align
}

/// For the file pipeline, which runs without the GIL: Python's signal handlers
/// (KeyboardInterrupt), with the GIL held briefly; true when one raised.
fn interrupted() -> bool {
    Python::attach(|py| py.check_signals().is_err())
}

/// Outputs of one pass: rows `[n, D]` row-major (empty for log p) and one value per row `[n]`.
type PassOut<T> = (Vec<T>, Vec<T>);

impl Engine {
    /// Runs `f` in this engine's thread pool with the GIL released.
    fn detached<R: Send>(&self, py: Python<'_>, f: impl FnOnce() -> R + Send) -> R {
        py.detach(|| match &self.pool {
            Some(pool) => pool.install(f),
            None => f(),
        })
    }

    /// `pass` over the rows of `x` in the engine's precision `T`.
    fn pass<T: Real + Element>(&self, py: Python<'_>, pass: Pass, x: &Bound<'_, PyAny>) -> PyResult<PassOut<T>> {
        let d = self.engine.flow().dim;
        let what = if pass == Pass::ToData { "z" } else { "x" };
        let maps = pass.maps_rows();
        with_rows::<T, _>(x, d, what, |input, n| {
            let mut rows = zeroed::<T>(n, if maps { d } else { 0 })?;
            let mut per_row = zeroed::<T>(n, 1)?;
            let mut sum = LogLikelihoodSum::default();
            let mut start = 0;
            while start < n {
                let end = (start + self.chunk_rows).min(n);
                let io = Io {
                    input: &input[start * d..end * d],
                    rows: if maps { &mut rows[start * d..end * d] } else { &mut [] },
                    per_row: &mut per_row[start..end],
                };
                self.detached(py, || self.engine.run(pass, T::batch(io), &mut sum)).map_err(to_py)?;
                py.check_signals()?;
                start = end;
            }
            Ok((rows, per_row))
        })
    }

    /// Rows `first_row…` of `seed`'s sample stream in the engine's precision `T`.
    fn sample_in<T: Real + Element>(&self, py: Python<'_>, n: usize, draw: Draw) -> PyResult<PassOut<T>> {
        let d = self.engine.flow().dim;
        draw.check(n).map_err(to_py)?;
        let mut x = zeroed::<T>(n, d)?;
        let mut log_q = zeroed::<T>(n, 1)?;
        let mut done = 0usize;
        for (x, log_q) in x.chunks_mut((self.chunk_rows * d).max(1)).zip(log_q.chunks_mut(self.chunk_rows)) {
            let draw = draw.skip(done as u64);
            done += log_q.len();
            let engine: &dyn realnvp::Engine = self.engine.as_ref();
            self.detached(py, || engine.sample_rows(&draw, x, log_q)).map_err(to_py)?;
            py.check_signals()?;
        }
        Ok((x, log_q))
    }
}

/// A result buffer of `n` rows × `width` values, zeroed; `MemoryError` (not an abort of the
/// interpreter) when it cannot be allocated, before anything is written to it.
fn zeroed<T: Real>(n: usize, width: usize) -> PyResult<Vec<T>> {
    let too_large = || {
        pyo3::exceptions::PyMemoryError::new_err(format!(
            "{n} rows of {width} values ({:.3e} bytes) do not fit in memory; stream them to a file instead \
             (`realnvp sample --model MODEL -n N --output x.npy` writes any number of rows in bounded memory; \
             Flow.score_file for scores)",
            n as f64 * width as f64 * std::mem::size_of::<T>() as f64
        ))
    };
    let len = n.checked_mul(width).ok_or_else(too_large)?;
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| too_large())?;
    v.resize(len, T::zero());
    Ok(v)
}

fn json<T: Serialize>(value: &T) -> PyResult<String> {
    serde_json::to_string(value).map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))
}

/// Stream options of the Python calls: no progress bar (the caller owns the terminal), Ctrl-C
/// checked between chunks.
fn stream_options() -> StreamOptions {
    StreamOptions { progress: false, interrupted, ..StreamOptions::default() }
}

#[pymethods]
impl Engine {
    /// The engine and device, e.g. `native float32 (2 threads)`.
    #[getter]
    fn name(&self, py: Python<'_>) -> String {
        self.detached(py, || self.engine.name())
    }

    /// What the engine wants the user to know before the first batch (a long kernel compile,
    /// why `auto` chose it), or None.
    #[getter]
    fn note(&self) -> Option<String> {
        self.engine.note()
    }

    /// Whether the engine computes and returns float64 (the reference) rather than float32.
    #[getter]
    fn float64(&self) -> bool {
        self.wide
    }

    /// The model this engine evaluates.
    #[getter]
    fn model(&self, py: Python<'_>) -> Py<Model> {
        self.model.clone_ref(py)
    }

    /// log p(x) in nats, `[n]`, for x `[n, D]`.
    fn log_prob<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        Ok(if self.wide {
            values_out(py, self.pass::<f64>(py, Pass::LogProb, x)?.1).into_any()
        } else {
            values_out(py, self.pass::<f32>(py, Pass::LogProb, x)?.1).into_any()
        })
    }

    /// Data→latent: (z `[n, D]`, log|det ∂z/∂x| `[n]`).
    fn forward<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        self.map_rows(py, Pass::ToLatent, x)
    }

    /// Latent→data: (x `[n, D]`, log|det ∂x/∂z| `[n]`).
    fn inverse<'py>(&self, py: Python<'py>, z: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        self.map_rows(py, Pass::ToData, z)
    }

    /// Rows `first_row … first_row + n − 1` of `seed`'s sample stream: (x `[n, D]`, log q(x)
    /// `[n]` of the model at `temperature`).
    #[pyo3(signature = (n, seed, first_row = 0, temperature = 1.0))]
    fn sample<'py>(
        &self,
        py: Python<'py>,
        n: usize,
        seed: u64,
        first_row: u64,
        temperature: f64,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let draw = Draw { seed, first_row, temperature };
        if self.wide {
            self.sample_in::<f64>(py, n, draw).and_then(|out| self.arrays(py, out))
        } else {
            self.sample_in::<f32>(py, n, draw).and_then(|out| self.arrays(py, out))
        }
    }

    /// Scores a `.npy` file (`[N, D]`), a `.parquet` table or a directory of them (the
    /// `columns`, else the model's feature names, else every column not kept; `keep` copied to
    /// a Parquet output) in bounded memory, writing per-row log p `[N]` to `output`
    /// (atomically) if given, as `realnvp score` does; the CLI's summary as JSON.
    /// `chunk_rows` 0: this engine's interruptible chunk.
    #[pyo3(signature = (input, output = None, chunk_rows = 0, float64_output = false, columns = None, keep = None))]
    #[allow(clippy::too_many_arguments)]
    fn score_file(
        &self,
        py: Python<'_>,
        input: PathBuf,
        output: Option<PathBuf>,
        chunk_rows: usize,
        float64_output: bool,
        columns: Option<Vec<String>>,
        keep: Option<Vec<String>>,
    ) -> PyResult<String> {
        let options = StreamOptions {
            chunk_rows: if chunk_rows == 0 { self.chunk_rows } else { chunk_rows },
            output_dtype: if float64_output { realnvp::npy::NpyDtype::F64 } else { realnvp::npy::NpyDtype::F32 },
            columns: columns.unwrap_or_default(),
            keep: keep.unwrap_or_default(),
            ..stream_options()
        };
        let summary = self
            .detached(py, || pipeline::score_file(self.engine.as_ref(), &input, output.as_deref(), &options))
            .map_err(to_py)?;
        json(&summary)
    }

    /// This engine against the float64 reference on the rows of x (`[n, D]`): the report as
    /// JSON (with `passed`) and as the CLI's text.
    fn verify(&self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<(String, String)> {
        let d = self.engine.flow().dim;
        let report = with_rows::<f64, _>(x, d, "x", |rows, _| {
            self.detached(py, || realnvp::verify::verify(self.engine.as_ref(), rows)).map_err(to_py)
        })?;
        let mut value =
            serde_json::to_value(&report).map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))?;
        value["passed"] = report.passed().into();
        Ok((json(&value)?, report.to_string()))
    }
}

impl Engine {
    fn map_rows<'py>(
        &self,
        py: Python<'py>,
        pass: Pass,
        x: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        if self.wide {
            self.pass::<f64>(py, pass, x).and_then(|out| self.arrays(py, out))
        } else {
            self.pass::<f32>(py, pass, x).and_then(|out| self.arrays(py, out))
        }
    }

    /// Rows `[n, D]` and values `[n]` as NumPy arrays (no copy).
    fn arrays<'py, T: Element>(
        &self,
        py: Python<'py>,
        (rows, per_row): PassOut<T>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let n = per_row.len();
        Ok((rows_out(py, rows, n, self.engine.flow().dim)?.into_any(), values_out(py, per_row).into_any()))
    }
}
