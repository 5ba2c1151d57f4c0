//! Builds the fused kernels' WGSL module for one flow: `shaders/math.wgsl` (float32 functions
//! with error bounds) and `shaders/flow.wgsl` (row I/O, base density, reduction) with entry
//! points and a body that evaluates the layers, in one of three forms ([`KernelForm`]):
//!
//! - **interpreted** (`shaders/interpreter.wgsl`): one loop over layers and one MLP routine
//!   read a layer plan (u32) and packed parameters (f32) built here, so the shader's size and
//!   compile time do not depend on the model; only D, the scratch layout and the base are
//!   baked in as constants; one row per invocation;
//! - **unrolled** ([`unrolled`]): straight-line code with the parameters as literals,
//!   for small models (much faster where storage loads are expensive, e.g. lavapipe);
//! - **tiled** ([`tiled`]): the interpreter with a workgroup's tile of rows running its
//!   conditioner nets together from workgroup memory (same rows as interpreted, 2–2.5× faster
//!   on lavapipe; the design fast GPU MLP kernels use).
//!
//! `Auto` runs **tiered** for every model it unrolls ([`KernelForm::tiered`]): the
//! interpreter, quick to build, runs the first chunks while the unrolled kernel builds on a
//! background thread; the engine switches at a chunk boundary ([`Choice::upgrade`]). Larger
//! models run tiled, or interpreted where the adapter's workgroup memory holds no tile.
//!
//! Coupling nets are mask-pruned in every form: the first Linear keeps only the columns of
//! the identity (b = 1) features and the last Linear only the rows of the outputs that are
//! used, so masked-out products are never computed. Every coupling's conditioner output is
//! normalised to `[shifts (d_tr), scale inputs (d_tr)]` whatever its conditioner and layout.

pub mod abi;
mod interpreter;
mod source;
pub mod tiled;
pub mod unrolled;

pub use source::{KernelForm, KernelSource, MATH_WGSL, PHILOX_WGSL, TEMPLATE};

use crate::error::{Error, Result};
use crate::model::Flow;

use super::adapter::is_llvmpipe;

pub use abi::WORKGROUP_ROWS;

/// lavapipe/llvmpipe end every loop after this many iterations in total per invocation.
pub const LLVMPIPE_LOOP_LIMIT: u64 = 65_535;

/// Builds the kernel source for a validated flow in `form` (`Auto` as [`KernelForm::resolve`]
/// has it); the tiled form's tile fits `limits`, or it is an error.
pub fn generate(flow: &Flow, form: KernelForm, limits: &wgpu::Limits, adapter_name: &str) -> Result<KernelSource> {
    Ok(match form.resolve(flow) {
        KernelForm::Unrolled => unrolled::generate(flow),
        KernelForm::Tiled => tiled::generate(flow, limits, adapter_name)?,
        _ => interpreter::generate(flow),
    })
}

impl KernelForm {
    /// The form `flow` settles on (resolves `Auto` by size; a tiered run starts interpreted;
    /// [`choose`] runs `Auto`'s `Tiled` interpreted on an adapter without room for a tile).
    pub fn resolve(self, flow: &Flow) -> KernelForm {
        match self {
            KernelForm::Auto if unrolled::fits(flow) => KernelForm::Unrolled,
            KernelForm::Auto => KernelForm::Tiled,
            form => form,
        }
    }

    /// Whether a run starts on the interpreter and moves to the unrolled kernel once that is
    /// built on a background thread: `Auto` for every model it unrolls. The interpreter's
    /// pipeline is ready in a fraction of the unrolled one's build (lavapipe, seed4d: 0.2 s
    /// against 1.7 s), so short runs never wait for the build and long ones lose nothing.
    pub fn tiered(self, flow: &Flow) -> bool {
        self == KernelForm::Auto && self.resolve(flow) == KernelForm::Unrolled
    }
}

/// The kernel chosen for one flow on one adapter, and what the user should hear about it.
pub struct Choice {
    /// The kernel the first chunk runs.
    pub source: KernelSource,
    /// Tiered `Auto` ([`KernelForm::tiered`]): the unrolled kernel, built on a background
    /// thread while `source` (interpreted) runs, and run from the first chunk after its build.
    pub upgrade: Option<KernelSource>,
    /// Said before the first chunk, e.g. that a large unrolled kernel compiles for a minute, or
    /// why `Auto` runs a model interpreted rather than tiled.
    pub note: Option<String>,
}

/// The one place that decides the kernel for `flow` on an adapter: resolves `requested`
/// (`Auto` by model size: tiered when it unrolls, else tiled where a tile fits, else
/// interpreted), refuses what the adapter cannot run (llvmpipe's compile time for very large
/// unrolled kernels and its loop limiter; the storage binding size; workgroup memory) with an
/// error that says what to do instead, and generates the sources.
pub fn choose(flow: &Flow, info: &wgpu::AdapterInfo, limits: &wgpu::Limits, requested: KernelForm) -> Result<Choice> {
    let llvmpipe = is_llvmpipe(info);
    let operations = unrolled::operations(flow);
    let form = requested.resolve(flow);
    if llvmpipe && form == KernelForm::Unrolled && operations > unrolled::LLVMPIPE_MAX_OPERATIONS {
        return Err(Error::Gpu(format!(
            "the unrolled kernel of this model has {operations} operations per row; {} would compile it for many minutes (82k take about a minute), so it is refused above {}; use --kernel interpreted, or --device native",
            info.name,
            unrolled::LLVMPIPE_MAX_OPERATIONS
        )));
    }
    let mut note = None;
    let (source, upgrade) = if requested.tiered(flow) {
        (interpreter::generate(flow), Some(unrolled::generate(flow)))
    } else if requested == KernelForm::Auto && form == KernelForm::Tiled {
        // tiled where a tile fits the adapter's workgroup memory, else interpreted
        match tiled::generate(flow, limits, &info.name) {
            Ok(source) => (source, None),
            Err(e) => {
                note = Some(format!("running the interpreted kernel, not the tiled one: {e}"));
                (interpreter::generate(flow), None)
            }
        }
    } else {
        (generate(flow, form, limits, &info.name)?, None)
    };
    for source in std::iter::once(&source).chain(&upgrade) {
        check_limits(source, info, limits, llvmpipe)?;
    }
    if form == KernelForm::Unrolled && operations > unrolled::MAX_OPERATIONS {
        note = Some(format!(
            "the unrolled kernel has {operations} operations per row; the first chunk waits for its compile (lavapipe: about a minute for 80k; cached for later runs)"
        ));
    }
    Ok(Choice { source, upgrade, note })
}

/// Refuses a kernel whose parameters exceed the storage binding size, or whose loops exceed
/// llvmpipe's limiter.
fn check_limits(source: &KernelSource, info: &wgpu::AdapterInfo, limits: &wgpu::Limits, llvmpipe: bool) -> Result<()> {
    let weight_bytes = (source.weights.len() * 4) as u64;
    if weight_bytes > limits.max_storage_buffer_binding_size {
        return Err(Error::Gpu(format!(
            "the model needs {weight_bytes} bytes of parameters but {} allows at most {} bytes per storage binding (max_storage_buffer_binding_size)",
            info.name, limits.max_storage_buffer_binding_size
        )));
    }
    if llvmpipe && source.loop_iterations > LLVMPIPE_LOOP_LIMIT {
        return Err(Error::Gpu(format!(
            "the model needs {} loop iterations per row but {} stops every shader after {} (Mesa's llvmpipe loop limiter); use --device native or a hardware GPU",
            source.loop_iterations,
            info.name,
            LLVMPIPE_LOOP_LIMIT
        )));
    }
    Ok(())
}
