//! What every kernel form shares: the form names ([`KernelForm`]), the generated module
//! ([`KernelSource`]), the WGSL template, and the constants every module starts with (the
//! ABI, D and the base distribution).

use crate::error::{Error, Result};
use crate::model::{Base, Flow};

use super::abi;

/// The float32 math, row I/O, base density and entry points, loaded at build time.
pub const TEMPLATE: &str = concat!(
    include_str!("../../../shaders/math.wgsl"),
    include_str!("../../../shaders/flow.wgsl"),
    include_str!("../../../shaders/philox.wgsl")
);

/// The entry points that run one row per invocation, alone (unrolled and interpreted forms).
pub const ROW_ENTRIES: &str = include_str!("../../../shaders/rows.wgsl");

/// exp/log/tanh, the reciprocal, x·f + t and the hi/lo sums with their error bounds in WGSL
/// (part of [`TEMPLATE`]; on its own for the accuracy test on a device). Needs a `params`
/// binding with a `zero: u32` field.
pub const MATH_WGSL: &str = include_str!("../../../shaders/math.wgsl");

/// Philox4x32-10 and the Box–Muller normals in WGSL (part of [`TEMPLATE`]; on its own for the
/// known-answer test on a device).
pub const PHILOX_WGSL: &str = include_str!("../../../shaders/philox.wgsl");

/// How the kernel evaluates the layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KernelForm {
    /// Tiered when the model has at most `unrolled::MAX_OPERATIONS` operations per row
    /// (interpreted while the unrolled kernel builds, then unrolled), else tiled (interpreted
    /// where the adapter's workgroup memory holds no tile).
    #[default]
    Auto,
    /// The plan interpreter (any model).
    Interpreted,
    /// Straight-line code with literal parameters (compile time grows with the model).
    Unrolled,
    /// The plan interpreter with the conditioner nets evaluated by a workgroup's tile of rows
    /// together (src/gpu/kernel/tiled.rs); the same rows as `Interpreted`, faster.
    Tiled,
}

impl KernelForm {
    /// Lower-case name, as parsed by `FromStr`.
    pub fn name(self) -> &'static str {
        match self {
            KernelForm::Auto => "auto",
            KernelForm::Interpreted => "interpreted",
            KernelForm::Unrolled => "unrolled",
            KernelForm::Tiled => "tiled",
        }
    }
}

impl std::str::FromStr for KernelForm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(KernelForm::Auto),
            "interpreted" => Ok(KernelForm::Interpreted),
            "unrolled" => Ok(KernelForm::Unrolled),
            "tiled" => Ok(KernelForm::Tiled),
            _ => Err(Error::Argument(format!("unknown kernel form {s:?}; use auto, interpreted, unrolled or tiled"))),
        }
    }
}

/// WGSL source, plan and packed parameters for one flow.
pub struct KernelSource {
    /// The form generated (never `Auto`).
    pub form: KernelForm,
    /// Rows per workgroup (`WG`): [`abi::WORKGROUP_ROWS`], or the tiled form's tile.
    pub group_rows: usize,
    /// Complete WGSL module: constants plus the shader.
    pub wgsl: String,
    /// Parameters read from the `weights` binding, float32: all of them for the interpreter
    /// (at the offsets the plan names), only the base's for the unrolled form.
    pub weights: Vec<f32>,
    /// The layer plan the interpreter reads (record layout in shaders/interpreter.wgsl);
    /// `[0]` for the unrolled form (a binding may not be empty).
    pub plan: Vec<u32>,
    /// An upper bound on what llvmpipe's loop limiter counts for one invocation of the
    /// longest entry point ([`limiter_count`] of the shader's loop iterations: layers plus
    /// [`io_loop_iterations`]).
    pub loop_iterations: u64,
}

/// What llvmpipe's loop limiter counts (at most) for a shader that executes `iterations` loop
/// iterations per invocation over `blocks` layers and conditioner nets. The limiter counts
/// more than the WGSL's own loops: Mesa wraps other control flow (the layer `switch`,
/// early returns) in loops of its own, and unrolls short constant-trip loops. Measured on
/// lavapipe (Mesa 22.3.6, tests/gpu.rs `llvmpipe_runs_every_model_it_accepts`), by appending
/// elementwise layers to a model until its output broke: an elementwise layer costs 9 at
/// D ≤ 8 (its loop unrolled), D + 10 at D = 16…64; coupling layers 1.2–1.5× their loop
/// iterations (seed4d 788 against 517 counted). So: ×1.5, plus 12 per layer and per net.
pub(super) fn limiter_count(iterations: u64, blocks: u64) -> u64 {
    iterations + iterations.div_ceil(2) + 12 * blocks
}

/// Appends the diagonal base's loc and log_scale; returns the offset of loc.
/// Loop iterations outside the layers, for the longest entry point: log p loads the row,
/// sums the base density and reduces (16 + 16); sampling draws ⌈D/4⌉ blocks of four normals
/// (10 Philox rounds and 4 features each) and stores the row.
pub(super) fn io_loop_iterations(dim: usize) -> u64 {
    let d = dim as u64;
    let log_prob = 2 * d + 32;
    let sample = d.div_ceil(4) * 15 + d;
    log_prob.max(sample) + d
}

pub(super) fn push_base(weights: &mut Vec<f32>, base: &Base) -> Option<u32> {
    let off = weights.len() as u32;
    match base {
        Base::StandardNormal => {
            if weights.is_empty() {
                weights.push(0.0); // a binding may not be empty
            }
            None
        }
        Base::DiagonalNormal { loc, log_scale } => {
            // loc, 1/σ (densities), σ (sampling)
            weights.extend(loc.iter().map(|&v| v as f32));
            weights.extend(log_scale.iter().map(|&s| (-s).exp() as f32));
            weights.extend(log_scale.iter().map(|&s| s.exp() as f32));
            Some(off)
        }
    }
}

/// Constants every form needs: D and the base distribution (its log-normalizer computed
/// in float64).
pub(super) fn header(flow: &Flow, base_off: Option<u32>, group_rows: usize) -> String {
    let d = flow.dim;
    let log_scales: f64 = match &flow.base {
        Base::StandardNormal => 0.0,
        Base::DiagonalNormal { log_scale, .. } => log_scale.iter().sum(),
    };
    let norm = split(-log_scales - 0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln());
    format!(
        "{}// generated for this model by src/gpu/kernel/\nconst D: u32 = {d}u;\nconst BASE_DIAGONAL: bool = {};\nconst BASE_LOC_OFF: u32 = {}u;\nconst BASE_LOG_NORM_HI: f32 = {};\nconst BASE_LOG_NORM_LO: f32 = {};\n",
        abi::wgsl(group_rows),
        base_off.is_some(),
        base_off.unwrap_or(0),
        lit(norm.0),
        lit(norm.1),
    )
}

/// A float64 constant as (hi, lo): hi on the log-det grid of shaders/flow.wgsl (2^-8), lo the
/// rest rounded to float32, so that hi + lo is within float32 rounding of the remainder.
pub(super) fn split(v: f64) -> (f64, f64) {
    let hi = (v * 256.0).round() / 256.0;
    (hi, v - hi)
}

/// A WGSL literal of the float32 value (shortest form that reads back exactly).
pub(super) fn lit(v: f64) -> String {
    format!("{:?}f", v as f32)
}

#[cfg(test)]
mod tests {
    use super::KernelForm;

    /// `--kernel NAME` parses every form's own name back to it, and nothing else.
    #[test]
    fn kernel_form_names_parse_back() {
        for form in [KernelForm::Auto, KernelForm::Interpreted, KernelForm::Unrolled, KernelForm::Tiled] {
            assert_eq!(form.name().parse::<KernelForm>().unwrap(), form);
        }
        let err = "fast".parse::<KernelForm>().unwrap_err().to_string();
        assert!(err.contains("auto, interpreted, unrolled or tiled"), "{err}");
    }
}
